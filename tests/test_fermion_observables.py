"""Molecular observables on the FCI ground state against PySCF (spin_square, make_rdm1).

The state is the FCI vector itself, as a table ansatz (one amplitude per determinant, in
PySCF's ``|alpha string>|beta string>`` sign convention, which is ours); exact summation must
give PySCF's <S^2> and 1-RDM to 1e-8. Fermionic operators are also checked against dense
Jordan-Wigner matrices.
"""

from __future__ import annotations

import itertools
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.fermion_operators import (
    create,
    destroy,
    natural_occupations,
    number,
    number_alpha,
    number_beta,
    one_rdm,
    one_rdm_element,
    one_rdm_operator,
    spin_squared,
    spin_z,
)
from hamiltonians.molecule import MoleculeSpec, compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.ansatz import Ansatz
from nqs.errors import InputError
from nqs.hilbert import FermionHilbert
from nqs.operator import to_sparse
from nqs.sampling import ExactSampler, HopRule, MetropolisSampler
from nqs.state import VariationalState


class Table(nn.Module):
    """log psi from a table of amplitudes keyed by the occupation bits (tests only)."""

    keys: tuple[int, ...]
    log_amp: tuple[complex, ...]

    @nn.compact
    def __call__(self, x):
        key = jnp.sum((x > 0.5).astype(jnp.int64) << jnp.arange(x.shape[-1], dtype=jnp.int64))
        i = jnp.clip(jnp.searchsorted(jnp.asarray(self.keys), key), 0, len(self.keys) - 1)
        found = jnp.asarray(self.keys)[i] == key
        return jnp.where(found, jnp.asarray(self.log_amp)[i], -jnp.inf + 0j)


def fci_state(spec):
    from pyscf.fci import cistring, direct_spin1, spin_op

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ints, _ = compute_integrals(spec)
    n, nelec = ints.n_orbitals, (ints.n_alpha, ints.n_beta)
    e, ci = direct_spin1.FCI().kernel(ints.h1, ints.h2, n, nelec, ecore=ints.e_core)
    sa = cistring.make_strings(range(n), nelec[0])
    sb = cistring.make_strings(range(n), nelec[1])
    keys = [int(a) | (int(b) << n) for a in sa for b in sb]  # bit p alpha, bit n + p beta
    order = np.argsort(keys)
    amps = ci.reshape(-1).astype(complex)
    log_amp = np.log(np.where(amps == 0, 1e-300, amps))
    module = Table(tuple(int(keys[i]) for i in order), tuple(complex(v) for v in log_amp[order]))
    hilbert = FermionHilbert(n, *nelec)
    ss = spin_op.spin_square(ci, n, nelec)[0]
    rdm1 = direct_spin1.make_rdm1(ci, n, nelec)
    return ints, hilbert, Ansatz(module), ci, e, ss, rdm1


SPECS = {
    "H2O": from_preset("H2O"),
    "LiH": from_preset("LiH"),
    "OH-doublet": MoleculeSpec("O 0 0 0; H 0 0 0.97", spin=1, name="OH"),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_fci_observables_equal_pyscf(name):
    ints, hilbert, ansatz, ci, e_fci, ss_ref, rdm_ref = fci_state(SPECS[name])
    n = hilbert.n_orbitals
    state = VariationalState(ansatz, {}, ExactSampler(hilbert))
    # the state is the FCI ground state: its energy is PySCF's
    energy = state.expect(MolecularHamiltonian(ints))
    assert float(np.real(energy.mean)) == pytest.approx(e_fci, abs=1e-8)
    ss = state.expect(spin_squared(n))
    assert float(np.real(ss.mean)) == pytest.approx(ss_ref, abs=1e-8)
    assert float(ss.variance) < 1e-8  # an S^2 eigenstate
    assert float(np.real(state.expect(number_alpha(n)).mean)) == pytest.approx(hilbert.n_alpha)
    assert float(np.real(state.expect(number_beta(n)).mean)) == pytest.approx(hilbert.n_beta)
    sz = 0.5 * (hilbert.n_alpha - hilbert.n_beta)
    assert float(np.real(state.expect(spin_z(hilbert)).mean)) == pytest.approx(sz, abs=1e-12)
    gamma, err = one_rdm(state.expect(one_rdm_operator(n)), n)
    np.testing.assert_allclose(gamma, rdm_ref.T, atol=1e-8)
    assert np.all(err == 0)
    occ = natural_occupations(gamma)
    assert occ.sum() == pytest.approx(hilbert.n_electrons)
    np.testing.assert_allclose(occ, np.sort(np.linalg.eigvalsh(rdm_ref))[::-1], atol=1e-8)


def test_sampled_rdm_and_s2_within_error_bars():
    """An RBM with random parameters (a spread-out state): Metropolis against exact sums."""
    from nqs.models.rbm import make_rbm
    from nqs.optim.flat import real_flat

    n = 4
    hilbert = FermionHilbert(n, 2, 1)
    ansatz = make_rbm(2 * n, 1.0, flip_constant=1.0)
    params = ansatz.init(jax.random.PRNGKey(0), jnp.ones(2 * n))
    flat, unflatten = real_flat(params)
    params = unflatten(0.3 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))
    ops = [one_rdm_operator(n), spin_squared(n)]
    exact = [VariationalState(ansatz, params, ExactSampler(hilbert)).expect(op) for op in ops]
    alpha, beta = tuple(range(n)), tuple(range(n, 2 * n))
    sampler = MetropolisSampler(hilbert, HopRule((alpha, beta)), n_chains=16, n_samples=4096)
    state = VariationalState(ansatz, params, sampler, seed=2)
    for op, ref in zip(ops, exact, strict=True):
        stats = state.expect(op)
        dev = np.abs(np.atleast_1d(stats.mean) - np.atleast_1d(ref.mean))
        err = np.atleast_1d(stats.error_of_mean)
        assert np.all(err > 0) and np.all(dev < 4 * err)


def jordan_wigner(n_sites):
    """Dense a_p in the occupation basis, |x> = prod_{p occupied, increasing} a+_p |0>."""
    states = np.array(list(itertools.product([0, 1], repeat=n_sites)), dtype=float)
    index = {s.tobytes(): i for i, s in enumerate(states)}
    ops = []
    for p in range(n_sites):
        a = np.zeros((len(states), len(states)))
        for j, s in enumerate(states):
            if s[p] == 1:
                t = s.copy()
                t[p] = 0
                a[index[t.tobytes()], j] = (-1) ** s[:p].sum()
        ops.append(a)
    return states, ops


def test_operators_equal_jordan_wigner_matrices():
    n_orb, hilbert = 3, FermionHilbert(3, 2, 1)
    states, a = jordan_wigner(2 * n_orb)
    ad = [m.T for m in a]
    ours = hilbert.all_states()
    rows = [int(np.flatnonzero((states == s).all(axis=1))[0]) for s in ours]
    cases = {
        "hop": (create(0) * destroy(2) + create(2) * destroy(0), ad[0] @ a[2] + ad[2] @ a[0]),
        "pair": (create(1) * create(4) * destroy(5) * destroy(0),
                 ad[1] @ ad[4] @ a[5] @ a[0]),
        "n": (number(3) * number(1), ad[3] @ a[3] @ ad[1] @ a[1]),
        "E02": (one_rdm_element(0, 2, n_orb), ad[0] @ a[2] + ad[3] @ a[5]),
        "S2": (spin_squared(n_orb), None),
    }
    sp = sum(ad[p] @ a[n_orb + p] for p in range(n_orb))
    nz = sum(ad[p] @ a[p] - ad[n_orb + p] @ a[n_orb + p] for p in range(n_orb)) / 2
    cases["S2"] = (cases["S2"][0], sp.T @ sp + nz @ nz + nz)
    for name, (op, dense) in cases.items():
        mat = to_sparse(op.on(hilbert)).toarray()
        np.testing.assert_allclose(mat, dense[np.ix_(rows, rows)], atol=1e-12, err_msg=name)


@pytest.mark.parametrize("bad, message", [
    (lambda: number(6).on(FermionHilbert(3, 1, 1)), "spin orbital 6"),
    (lambda: spin_squared(4).on(FermionHilbert(3, 1, 1)), "built for 4 orbitals"),
    (lambda: one_rdm_element(0, 3, 3), "outside 0..2"),
    (lambda: create(-1), "non-negative"),
    (lambda: number(0).flips(jnp.zeros(2)), "no Hilbert space"),
])
def test_bad_input(bad, message):
    with pytest.raises(InputError, match=message) as err:
        bad()
    assert "\n" not in str(err.value)


def test_autoregressive_draws_within_error_bars():
    """Distinct exact draws with counts (no chains): S^2 and the 1-RDM against exact sums."""
    from nqs.models.autoregressive import make_autoregressive
    from nqs.sampling.autoregressive import AutoregressiveSampler

    hilbert = FermionHilbert(4, 2, 2)
    ansatz = make_autoregressive(hilbert, "made", hidden=(16,), phase_hidden=(8,), hf_logit=1.0)
    params = ansatz.init(jax.random.PRNGKey(0), hilbert.hartree_fock_state())
    ops = [spin_squared(4), one_rdm_operator(4)]
    exact = [VariationalState(ansatz, params, ExactSampler(hilbert)).expect(op) for op in ops]
    state = VariationalState(ansatz, params, AutoregressiveSampler(hilbert, 20000, 64), seed=1)
    for op, ref in zip(ops, exact, strict=True):
        stats = state.expect(op)
        dev = np.abs(np.atleast_1d(stats.mean) - np.atleast_1d(ref.mean))
        err = np.atleast_1d(stats.error_of_mean)
        assert np.all(dev <= 4 * err + 1e-12)
        assert np.all(np.asarray(stats.tau_corr) == 0.5)  # independent draws
    assert float(exact[0].variance) > 1e-3  # a state with spin fluctuations: a real test


def test_exact_sums_over_a_symmetry_block():
    """ExactSampler over the Hartree-Fock symmetry block (nqs.problems.hartree_fock_sector):
    the state is the ansatz restricted to the block, so connections leaving it count as 0
    (1-RDM elements between orbitals of different symmetry vanish)."""
    from nqs.models.rbm import make_rbm
    from nqs.optim.flat import real_flat
    from nqs.problems import hartree_fock_sector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ints, _ = compute_integrals(SPECS["H2O"])
    sector = hartree_fock_sector(MolecularHamiltonian(ints))
    full = FermionHilbert(ints.n_orbitals, ints.n_alpha, ints.n_beta)
    n = full.n_orbitals
    assert sector.hilbert.n_states < full.n_states  # a proper block: the test means something
    ansatz = make_rbm(2 * n, 1.0, flip_constant=1.0)
    params = ansatz.init(jax.random.PRNGKey(0), jnp.ones(2 * n))
    flat, unflatten = real_flat(params)
    params = unflatten(0.3 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))
    states = full.all_states()
    lp = np.asarray(jax.vmap(ansatz.log_psi, (None, 0))(params, jnp.asarray(states)))
    in_block = np.isin(_keys(states), _keys(sector.hilbert.states))
    psi = np.where(in_block, np.exp(lp - lp.real.max()), 0.0)
    psi /= np.linalg.norm(psi)
    # gamma_pq = sum_s <psi| a+_ps a_qs |psi>, by hand over the determinants
    index = {k: i for i, k in enumerate(_keys(states))}
    gamma = np.zeros((n, n), complex)
    for j, x in enumerate(states):
        for p, q, s in itertools.product(range(n), range(n), (0, n)):
            if x[q + s] == 0 or (x[p + s] == 1 and p != q):
                continue
            y = x.copy()
            sign = (-1) ** y[: q + s].sum()
            y[q + s] = 0
            sign *= (-1) ** y[: p + s].sum()
            y[p + s] = 1
            gamma[p, q] += np.conj(psi[index[_keys(y[None])[0]]]) * sign * psi[j]
    assert np.abs(gamma).max() > 0.1 and np.sum(np.abs(gamma) < 1e-12) > 0  # zeros by symmetry
    state = VariationalState(ansatz, params, ExactSampler(sector.hilbert))
    got, _ = one_rdm(state.expect(one_rdm_operator(n)), n)
    np.testing.assert_allclose(got, gamma, atol=1e-10)


def _keys(states):
    return [row.tobytes() for row in np.rint(states).astype(np.int8)]
