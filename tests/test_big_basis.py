"""Bigger bases: 6-31G / cc-pVDZ with frozen core and CAS, screening of small two-electron
integrals (its effect is bounded), and configurations of more than 50 (and 63) spin orbitals."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hamiltonians.chem_reference import fci_from_integrals
from hamiltonians.molecule import (
    compute_integrals,
    from_preset,
    screen_integrals,
    screening_bound,
)
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.errors import InputError
from nqs.exact import MAX_INT_KEY_SITES, configuration_keys, configurations_from_keys
from nqs.hilbert import FermionHilbert, apply_flips


@pytest.fixture(autouse=True)
def _quiet_pyscf():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_screening_changes_the_energy_by_less_than_its_bound():
    """LiH/6-31G (11 orbitals, 3025 determinants): FCI and the HF determinant with the
    integrals screened at 1e-12 (default) and 1e-3 against the unscreened ones."""
    full, _ = compute_integrals(from_preset("LiH", basis="6-31g"), eri_threshold=0.0)
    e_fci = fci_from_integrals(full)[0]
    for threshold in (1e-12, 1e-3):
        screened = screen_integrals(full, threshold)
        bound = screening_bound(full, threshold)
        d_fci = abs(fci_from_integrals(screened)[0] - e_fci)
        d_hf = abs(screened.hf_energy() - full.hf_energy())
        assert d_fci <= bound + 1e-12 and d_hf <= bound + 1e-12, (threshold, d_fci, bound)
        MolecularHamiltonian(screened)  # the 8-fold symmetry survives the screening
    # the bound is not vacuous: 1e-3 removes integrals and moves the energy measurably
    assert screening_bound(full, 1e-3) > 1e-4 and d_fci > 1e-7
    with pytest.raises(InputError, match=">= 0"):
        screen_integrals(full, -1.0)


def test_frozen_core_and_cas_in_bigger_bases():
    from pyscf import mcscf

    # cc-pVDZ N2, frozen 1s: 26 orbitals, 5 + 5 electrons; the HF determinant of the active
    # integrals reproduces the SCF energy (the core is in e_core)
    n2, mf = compute_integrals(from_preset("N2", basis="cc-pvdz"), frozen_core=True)
    assert (n2.n_orbitals, n2.n_alpha, n2.n_beta) == (26, 5, 5)
    assert n2.hf_energy() == pytest.approx(mf.e_tot, abs=1e-8)
    # 6-31G H2O, CAS(4, 4): ground state of our integrals = PySCF CASCI
    cas, mf = compute_integrals(from_preset("H2O", basis="6-31g"), cas=(4, 4))
    mc = mcscf.CASCI(mf, 4, 4)
    mc.verbose = 0
    assert fci_from_integrals(cas)[0] == pytest.approx(mc.kernel()[0], abs=1e-8)


def _strings(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """PySCF's alpha and beta strings (bit p = orbital p occupied) of configurations [k, 2n]."""
    weights = np.int64(1) << np.arange(n, dtype=np.int64)
    bits = x.astype(np.int64)
    return bits[:, :n] @ weights, bits[:, n:] @ weights


def _excited(string: int, n: int, max_rank: int) -> np.ndarray:
    """The string and every string up to ``max_rank`` (1 or 2) electrons away, sorted."""
    occ = [p for p in range(n) if string >> p & 1]
    vir = [p for p in range(n) if not string >> p & 1]
    out = {string}
    for i in occ:
        for a in vir:
            out.add(string ^ (1 << i) ^ (1 << a))
    if max_rank == 2:
        for ii, i in enumerate(occ):
            for j in occ[ii + 1:]:
                for aa, a in enumerate(vir):
                    for b in vir[aa + 1:]:
                        out.add(string ^ (1 << i) ^ (1 << j) ^ (1 << a) ^ (1 << b))
    return np.array(sorted(out), dtype=np.int64)


def _pyscf_column(h2e, x_a, x_b, strs_a, strs_b, n, nelec):
    """<a b|H_el|x> for every (a, b) in strs_a x strs_b (PySCF's selected-CI contraction)."""
    from pyscf.fci import selected_ci

    civec = np.zeros((len(strs_a), len(strs_b)))
    civec[np.searchsorted(strs_a, x_a), np.searchsorted(strs_b, x_b)] = 1.0
    vec = selected_ci._as_SCIvector(civec.ravel(), (strs_a, strs_b))
    return np.asarray(selected_ci.contract_2e(h2e, vec, n, nelec)).reshape(civec.shape)


def test_connected_elements_with_52_spin_orbitals():
    """N2/cc-pVDZ with a frozen core (52 spin orbitals, 4.3e9 determinants): the connected
    elements of a random determinant equal PySCF's (its selected-CI sigma vector over every string
    within two electrons of theirs), none missing, none extra."""
    from pyscf.fci import direct_spin1

    integrals, _ = compute_integrals(from_preset("N2", basis="cc-pvdz"), frozen_core=True)
    ham = MolecularHamiltonian(integrals)
    n, nelec = integrals.n_orbitals, (integrals.n_alpha, integrals.n_beta)
    assert ham.hilbert.n_sites == 52
    h2e = direct_spin1.absorb_h1e(integrals.h1, integrals.h2, n, nelec, 0.5)
    x = np.asarray(ham.hilbert.random_state(jax.random.PRNGKey(3), 1), float)[0]
    flips = jax.jit(ham.flips)
    # one determinant: PySCF's sigma vectors cost ~5 s each here
    sites, mels = (np.asarray(a) for a in flips(jnp.asarray(x)))
    conn = np.asarray(jax.vmap(lambda s, x=x: apply_flips(jnp.asarray(x), s, 1.0))(sites))
    keep = np.abs(mels) > 1e-10
    s_a, s_b = _strings(conn[keep], n)
    ours = {(int(a), int(b)): m for a, b, m in zip(s_a, s_b, mels[keep], strict=True)}
    assert len(ours) == int(keep.sum())  # distinct rows
    (x_a,), (x_b,) = _strings(x[None], n)
    x_a, x_b = int(x_a), int(x_b)
    # same-spin excitations (the other string kept), then alpha single x beta single
    spaces = [(_excited(x_a, n, 2), np.array([x_b])), (np.array([x_a]), _excited(x_b, n, 2)),
              (_excited(x_a, n, 1), _excited(x_b, n, 1))]
    theirs = {}
    for strs_a, strs_b in spaces:
        col = _pyscf_column(h2e, x_a, x_b, strs_a, strs_b, n, nelec)
        for i, j in zip(*np.nonzero(np.abs(col) > 1e-10), strict=True):
            theirs[(int(strs_a[i]), int(strs_b[j]))] = col[i, j]
    theirs[(x_a, x_b)] += integrals.e_core
    assert ours.keys() == theirs.keys()
    for key, m in ours.items():
        assert m == pytest.approx(theirs[key], abs=1e-10), key


def test_configuration_keys_past_63_spin_orbitals():
    from nqs.vmc import distinct_draws

    for n_orb in (26, 31, 32, 45):  # 52, 62, 64, 90 sites
        hilbert = FermionHilbert(n_orb, 7, 6)
        x = np.asarray(hilbert.random_state(jax.random.PRNGKey(n_orb), 64))
        x = np.concatenate([x, x[::3]])  # repeats
        keys = configuration_keys(x, hilbert)
        assert len(keys) == len(x)
        n_distinct = len(np.unique(x, axis=0))
        assert len(np.unique(keys)) == n_distinct
        same = (x[:, None, :] == x[None, :, :]).all(-1)
        assert np.array_equal(keys[:, None] == keys[None, :], same)
        if 2 * n_orb <= MAX_INT_KEY_SITES:  # int keys: bit i = site i, no overflow
            assert keys.dtype == np.int64 and (keys >= 0).all()
            expect = [sum(1 << i for i in np.flatnonzero(row)) for row in x]
            assert keys.tolist() == expect
        assert np.array_equal(configurations_from_keys(keys, hilbert), x)  # the inverse
        x_u, w_u, inverse, n_u = distinct_draws(x, np.full(len(x), 1 / len(x)), hilbert)
        assert n_u == n_distinct and np.array_equal(x_u[inverse], x)
        assert w_u.sum() == pytest.approx(1.0)
    occupations = FermionHilbert(2, 1, 1)  # only its local values (0, 1) matter here
    x = np.zeros((1, 63))
    x[0, 62] = 1  # 63 sites: the top bit (62) stays positive
    assert configuration_keys(x, occupations)[0] == 1 << 62
    assert configuration_keys(np.zeros((1, 64)), occupations).dtype.kind == "V"
