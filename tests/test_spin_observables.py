"""Built-in spin observables (S = sigma/2) against dense Kronecker-product operators."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.lattice import chain, honeycomb, triangular
from hamiltonians.spin_observables import (
    correlation_matrix,
    lattice_momenta,
    magnetization,
    spin_correlations,
    staggered_magnetization,
    staggered_magnetization_squared,
    structure_factors,
)
from nqs.errors import InputError
from nqs.hilbert import SpinHilbert
from nqs.models.rbm import make_rbm
from nqs.optim.flat import real_flat
from nqs.sampling import ExactSampler, LocalRule, MetropolisSampler
from nqs.state import VariationalState

HALF = {"x": np.array([[0, 0.5], [0.5, 0]], complex), "y": np.array([[0, -0.5j], [0.5j, 0]]),
        "z": np.diag([0.5 + 0j, -0.5])}


def s_op(n, i, a):
    m = np.ones((1, 1), complex)
    for site in range(n):
        m = np.kron(m, HALF[a] if site == i else np.eye(2))
    return m


def state_and_psi(n, seed=0, scale=0.3):
    ansatz = make_rbm(n, 1.0)
    params = ansatz.init(jax.random.PRNGKey(seed), jnp.ones(n))
    flat, unflatten = real_flat(params)
    params = unflatten(scale * jax.random.normal(jax.random.PRNGKey(seed + 1), flat.shape))
    hilbert = SpinHilbert(n)
    lp = np.asarray(jax.vmap(ansatz.log_psi, (None, 0))(params, jnp.asarray(hilbert.all_states())))
    psi = np.exp(lp - lp.real.max())
    return ansatz, params, hilbert, psi / np.linalg.norm(psi)


@pytest.mark.parametrize("lattice", [chain(6), honeycomb(2)], ids=["chain6", "honeycomb2x2"])
def test_spin_observables_equal_dense(lattice):
    n = lattice.n_sites
    ansatz, params, hilbert, psi = state_and_psi(n)
    state = VariationalState(ansatz, params, ExactSampler(hilbert))

    def ev(mat):
        return psi.conj() @ mat @ psi

    s = {(i, a): s_op(n, i, a) for i in range(n) for a in "xyz"}
    corr = np.array([[sum(ev(s[i, a] @ s[j, a]) for a in "xyz") for j in range(n)]
                     for i in range(n)]).real
    for a in "xz":
        m = sum(s[i, a] for i in range(n))
        assert complex(state.expect(magnetization(n, a)).mean) == pytest.approx(ev(m), abs=1e-10)
    eps = 1.0 - 2.0 * lattice.sublattice
    ms = sum(eps[i] * s[i, "z"] for i in range(n))
    assert complex(state.expect(staggered_magnetization(lattice)).mean) == pytest.approx(
        ev(ms), abs=1e-10)
    ms2 = sum(np.linalg.matrix_power(sum(eps[i] * s[i, a] for i in range(n)), 2)
              for a in "xyz") / n**2
    assert float(np.real(state.expect(staggered_magnetization_squared(lattice)).mean)) == \
        pytest.approx(ev(ms2).real, abs=1e-10)
    c, err = correlation_matrix(state.expect(spin_correlations(n)), n)
    np.testing.assert_allclose(c, corr, atol=1e-10)
    assert np.all(err == 0)
    # S(q) with the complex phases e^{i q.(r_i - r_j)} (the operator keeps the cosines)
    qs = lattice_momenta(lattice)
    r = lattice.positions
    sq_ref = [np.sum(np.exp(1j * (r @ q)[:, None] - 1j * (r @ q)[None, :]) * corr).real / n
              for q in qs]
    sq = state.expect(structure_factors(lattice))
    np.testing.assert_allclose(np.real(np.asarray(sq.mean)), sq_ref, atol=1e-10)


def test_lattice_momenta():
    np.testing.assert_allclose(lattice_momenta(chain(4))[:, 0], [0, np.pi / 2, np.pi, 1.5 * np.pi])
    q = lattice_momenta(triangular(3))
    assert q.shape == (9, 2)
    # e^{i q.R} = 1 for every lattice translation R = L a_k
    a = np.asarray(triangular(3).geometry.vectors)
    np.testing.assert_allclose(np.exp(1j * 3 * q @ a.T), 1.0, atol=1e-12)


def test_correlations_by_metropolis_within_error_bars():
    n = 6
    ansatz, params, hilbert, psi = state_and_psi(n, seed=2, scale=0.2)
    exact = VariationalState(ansatz, params, ExactSampler(hilbert)).expect(spin_correlations(n))
    mc = VariationalState(ansatz, params, MetropolisSampler(hilbert, LocalRule(), n_chains=16,
                                                            n_samples=4096), seed=4)
    stats = mc.expect(spin_correlations(n))
    dev = np.abs(np.asarray(stats.mean) - np.asarray(exact.mean))
    err = np.asarray(stats.error_of_mean)
    assert np.all(err > 0) and np.all(dev < 4 * err)


@pytest.mark.parametrize("bad, message", [
    (lambda: staggered_magnetization(chain(5)), "not bipartite"),
    (lambda: staggered_magnetization_squared(triangular(3)), "not bipartite"),
    (lambda: magnetization(4, "w"), "unknown spin axis"),
    (lambda: spin_correlations(1), "at least 2"),
    (lambda: magnetization(0), "number of spins"),
])
def test_bad_input(bad, message):
    with pytest.raises(InputError, match=message):
        bad()


def test_marshall_rotated_state_measures_physical_operators():
    """A state of a model with marshall_sign=True is written in the rotated basis
    psi_r(x) = (-1)^(up spins on sublattice 1) psi(x): Pauli sums are rotated into it."""
    from hamiltonians.spin import Heisenberg

    lattice = chain(6)
    model = Heisenberg(lattice, marshall_sign=True)
    ansatz, params, _, _ = state_and_psi(6, seed=7)
    hilbert = model.hilbert
    states = hilbert.all_states()
    lp = np.asarray(jax.vmap(ansatz.log_psi, (None, 0))(params, jnp.asarray(states)))
    psi_r = np.exp(lp - lp.real.max())
    psi_r /= np.linalg.norm(psi_r)
    ups_b = ((states > 0) & (lattice.sublattice[None, :] == 1)).sum(axis=1)
    psi = (-1.0) ** ups_b * psi_r  # the physical state
    keep = np.flatnonzero(SpinHilbert(6).all_states().sum(axis=1) == 0)
    c_ref = np.array([[psi.conj() @ sum(s_op(6, i, a) @ s_op(6, j, a) for a in "xyz")[
        np.ix_(keep, keep)] @ psi for j in range(6)] for i in range(6)]).real
    state = VariationalState(ansatz, params, ExactSampler(hilbert),
                             marshall_sublattice=lattice.sublattice)
    c, _ = correlation_matrix(state.expect(spin_correlations(6)), 6)
    np.testing.assert_allclose(c, c_ref, atol=1e-10)
    # without the rotation the exchange part of odd-distance pairs has the wrong sign
    plain = VariationalState(ansatz, params, ExactSampler(hilbert))
    c_plain, _ = correlation_matrix(plain.expect(spin_correlations(6)), 6)
    assert abs(c_plain[0, 1] - c_ref[0, 1]) > 1e-3
    # the model itself is already written in the rotated basis: not rotated again
    e_ref = sum(c_ref[i, j] for i, j in lattice.bonds)
    assert float(np.real(state.expect(model).mean)) == pytest.approx(e_ref, abs=1e-10)


def test_operator_on_another_sector_is_refused():
    from hamiltonians.spin import TransverseFieldIsing

    ansatz, params, _, _ = state_and_psi(6)
    state = VariationalState(ansatz, params, ExactSampler(SpinHilbert(6, 0)))
    with pytest.raises(InputError, match="state's space"):
        state.expect(TransverseFieldIsing(chain(6), h=1.0))
