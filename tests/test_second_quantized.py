"""MolecularHamiltonian against PySCF's FCI Hamiltonian, NetKet's molecular operator and CASCI."""

import math
import warnings

import jax
import numpy as np
import pytest

from hamiltonians.molecule import (
    MolecularIntegrals,
    MoleculeSpec,
    build_mole,
    compute_integrals,
    from_preset,
)
from hamiltonians.second_quantized import MolecularHamiltonian, screened_row_bound
from nqs.errors import InputError
from nqs.hilbert import apply_flips
from nqs.operator import DiscreteOperator, to_sparse

OH_RADICAL = MoleculeSpec("O 0 0 0; H 0 0 0.97", spin=1, name="OH")


@pytest.fixture(autouse=True)
def _quiet_pyscf():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _keys(states: np.ndarray) -> list[bytes]:
    return [row.tobytes() for row in np.rint(states).astype(np.int8)]


def pyscf_fci_matrix(integrals: MolecularIntegrals) -> tuple[np.ndarray, np.ndarray]:
    """PySCF's FCI Hamiltonian (+ e_core) column by column, and its determinants [D, 2n].

    PySCF's CI vector is c[alpha string, beta string] with strings from
    ``cistring.make_strings`` (bit k = orbital k occupied).
    """
    from pyscf.fci import cistring, direct_spin1

    n, nelec = integrals.n_orbitals, (integrals.n_alpha, integrals.n_beta)
    h2eff = direct_spin1.absorb_h1e(integrals.h1, integrals.h2, n, nelec, 0.5)
    sa = cistring.make_strings(range(n), nelec[0])
    sb = cistring.make_strings(range(n), nelec[1])
    dim = len(sa) * len(sb)
    mat = np.zeros((dim, dim))
    for k in range(dim):
        v = np.zeros(dim)
        v[k] = 1.0
        ci = direct_spin1.contract_2e(h2eff, v.reshape(len(sa), len(sb)), n, nelec)
        mat[:, k] = ci.ravel()

    def bits(s):
        return [(int(s) >> k) & 1 for k in range(n)]

    states = np.array([bits(a) + bits(b) for a in sa for b in sb], dtype=float)
    return mat + integrals.e_core * np.eye(dim), states


def dense_in_order(ham: MolecularHamiltonian, states: np.ndarray) -> np.ndarray:
    """Our matrix in the determinant order ``states``."""
    mat = to_sparse(ham).toarray()
    index = {k: i for i, k in enumerate(_keys(ham.hilbert.all_states()))}
    perm = np.array([index[k] for k in _keys(states)])
    return mat[np.ix_(perm, perm)]


@pytest.mark.parametrize(
    ("spec", "e_fci"),
    [
        (from_preset("H2"), -1.13730541),
        (from_preset("LiH"), -7.88276220),
        (OH_RADICAL, None),
    ],
    ids=["H2", "LiH", "OH-doublet"],
)
def test_matrix_equals_pyscf_fci_hamiltonian(spec, e_fci):
    integrals, _ = compute_integrals(spec)
    ham = MolecularHamiltonian(integrals)
    assert isinstance(ham, DiscreteOperator)
    reference, states = pyscf_fci_matrix(integrals)
    ours = dense_in_order(ham, states)
    np.testing.assert_allclose(ours, reference, atol=1e-12, rtol=0)
    e0 = np.linalg.eigvalsh(ours)[0]
    if e_fci is not None:
        assert e0 == pytest.approx(e_fci, abs=1e-6)
    else:
        from pyscf import fci

        e_ref = fci.direct_spin1.FCI().kernel(
            integrals.h1,
            integrals.h2,
            integrals.n_orbitals,
            (integrals.n_alpha, integrals.n_beta),
            ecore=integrals.e_core,
        )[0]
        assert e0 == pytest.approx(e_ref, abs=1e-9)


def test_max_conn_and_rows_are_distinct_valid_determinants():
    integrals, _ = compute_integrals(from_preset("N2"))
    ham = MolecularHamiltonian(integrals, compact=False)
    o, v = 7, 3
    assert ham.max_conn == 1 + 2 * o * v + 2 * math.comb(o, 2) * math.comb(v, 2) + (o * v) ** 2
    assert ham.n_candidates == ham.max_conn
    assert ham.max_flips == 4
    x = ham.hilbert.random_state(jax.random.PRNGKey(3), 1)[0]
    sites, mels = jax.jit(ham.flips)(x)
    assert sites.shape == (ham.max_conn, 4) and sites.dtype == np.int32
    assert mels.shape == (ham.max_conn,)
    assert np.all(np.asarray(sites[0]) == ham.hilbert.n_sites)
    conn = np.asarray(jax.vmap(lambda s: apply_flips(x, s, 1.0))(sites))
    n = ham.n_orbitals
    assert np.all(conn[:, :n].sum(1) == 7) and np.all(conn[:, n:].sum(1) == 7)
    assert len(set(_keys(conn))) == ham.max_conn
    assert float(mels[0]) == pytest.approx(float(ham.diagonal(x)))


def test_batched_matches_single():
    integrals, _ = compute_integrals(from_preset("H2O"))
    ham = MolecularHamiltonian(integrals)
    xs = ham.hilbert.random_state(jax.random.PRNGKey(0), 8)
    sites_b, mels_b = jax.jit(ham.flips_batch)(xs)
    flips = jax.jit(ham.flips)
    for k in range(len(xs)):
        s, m = flips(xs[k])
        np.testing.assert_array_equal(np.asarray(s), np.asarray(sites_b[k]))
        np.testing.assert_allclose(np.asarray(m), np.asarray(mels_b[k]), atol=1e-13)


@pytest.mark.slow  # NetKet builds its operator and compiles its connections: ~10 s
def test_matches_netket_h2o():
    """Full matrix and connected elements of random determinants vs NetKet (same MO coefficients)."""
    import netket as nk
    import netket.experimental as nkx

    spec = from_preset("H2O")
    integrals, mf = compute_integrals(spec)
    ham = MolecularHamiltonian(integrals)
    # NetKet's generic second-quantized operator of the same integrals (its default, the
    # particle-number-conserving one, spends ~30 s compiling numba code of the ``sparse``
    # package); its connected elements of every determinant in one jitted program
    nk_op = nkx.operator.from_pyscf_molecule(build_mole(spec), mo_coeff=mf.mo_coeff,
                                             implementation=nk.operator.FermionOperator2nd)
    # NetKet: SpinOrbitalFermions with the alpha block (n_fermions_per_spin[0]) first
    assert nk_op.hilbert.n_fermions_per_spin == (integrals.n_alpha, integrals.n_beta)
    nk_states = np.asarray(nk_op.hilbert.all_states())

    @jax.jit
    def connections(op, x):
        xp, mp = op.get_conn_padded(x)
        return op.hilbert.states_to_numbers(xp), mp

    cols, mp = (np.asarray(a) for a in connections(nk_op, nk_states))
    theirs_dense = np.zeros((len(nk_states),) * 2, dtype=mp.dtype)
    # NetKet may list a determinant several times (and pads with zeros): sum
    np.add.at(theirs_dense, (np.arange(len(nk_states))[:, None], cols), mp)
    ours = dense_in_order(ham, nk_states)
    np.testing.assert_allclose(ours, theirs_dense, atol=1e-10, rtol=0)

    xs = np.asarray(ham.hilbert.random_state(jax.random.PRNGKey(7), 8))
    sites, mels = jax.jit(ham.flips_batch)(xs)
    rows = np.asarray(nk_op.hilbert.states_to_numbers(xs.astype(nk_states.dtype)))
    for k, x in enumerate(xs):
        xj = jax.numpy.asarray(x)
        conn = np.asarray(jax.vmap(lambda s, xj=xj: apply_flips(xj, s, 1.0))(sites[k]))
        ours = {key: m for key, m in zip(_keys(conn), np.asarray(mels[k]), strict=True) if abs(m) > 1e-10}
        np.testing.assert_array_equal(nk_states[rows[k]], x)
        # NetKet's connected elements of x: its row of the matrix
        theirs = {key: m for key, m in zip(_keys(nk_states), theirs_dense[rows[k]], strict=True)
                  if abs(m) > 1e-10}
        assert ours.keys() == theirs.keys()
        for key, m in ours.items():
            assert m == pytest.approx(theirs[key], abs=1e-10)


@pytest.mark.parametrize(
    ("spec", "kwargs", "n_cas"),
    [
        (from_preset("H2O"), dict(frozen_core=True), (8, 6)),
        (from_preset("N2"), dict(cas=(6, 6)), (6, 6)),
        (OH_RADICAL, dict(cas=(5, 4)), (5, 4)),
    ],
    ids=["H2O-frozen-core", "N2-CAS(6,6)", "OH-CAS(5,4)"],
)
def test_active_space_ground_state_equals_casci(spec, kwargs, n_cas):
    from pyscf import mcscf

    integrals, mf = compute_integrals(spec, **kwargs)
    ham = MolecularHamiltonian(integrals)
    n_el, n_orb = n_cas
    na = (n_el + spec.spin) // 2
    mc = mcscf.CASCI(mf, n_orb, (na, n_el - na))
    mc.verbose = 0
    mc.fcisolver.nroots = 4
    e_cas = np.min(np.atleast_1d(mc.kernel()[0]))
    e0 = np.linalg.eigvalsh(to_sparse(ham).toarray())[0]
    assert e0 == pytest.approx(e_cas, abs=1e-8)


def test_screening_and_bad_integrals():
    integrals, _ = compute_integrals(from_preset("H2"))
    # H2 by symmetry: the single excitations sigma_g -> sigma_u vanish
    _, mels = MolecularHamiltonian(integrals).flips(np.array([1.0, 0, 1, 0]))
    assert np.count_nonzero(np.asarray(mels)) == 2  # diagonal + the double excitation
    h1 = integrals.h1.copy()
    h1[0, 1] += 1.0
    bad = MolecularIntegrals(h1, integrals.h2, 0.0, 2, 1, 1)
    with pytest.raises(InputError, match="not symmetric"):
        MolecularHamiltonian(bad)


def test_empty_excitation_classes():
    """A single electron (no doubles) and a full shell (no excitations) have consistent shapes."""
    rng = np.random.default_rng(0)
    n = 3
    h1 = rng.normal(size=(n, n))
    h1 = h1 + h1.T
    a = rng.normal(size=(n, n, n, n))
    h2 = a + a.transpose(1, 0, 2, 3)
    h2 = h2 + h2.transpose(0, 1, 3, 2)
    h2 = h2 + h2.transpose(2, 3, 0, 1)
    for na, nb, conn in ((1, 0, 3), (3, 0, 1), (3, 1, 3), (0, 0, 1)):
        ham = MolecularHamiltonian(MolecularIntegrals(h1, h2, 0.5, n, na, nb))
        assert ham.n_candidates == conn
        assert ham.max_conn <= conn
        mat = to_sparse(ham).toarray()
        np.testing.assert_allclose(mat, mat.T, atol=1e-12)


def _nonzero_rows_per_state(ham: MolecularHamiltonian) -> np.ndarray:
    """Brute force: rows with |mel| >= screening (diagonal included) of every determinant."""
    _, mels = jax.jit(jax.vmap(ham.candidate_flips))(ham.hilbert.all_states())
    kept = np.abs(np.asarray(mels)) >= ham.screening
    kept[:, 0] = True
    return kept.sum(axis=1)


def test_packed_rows_equal_all_candidates():
    """Packing the nonzero rows changes nothing in the matrix, and max_conn is the exact maximum."""
    integrals, _ = compute_integrals(from_preset("H2O"))
    packed = MolecularHamiltonian(integrals)
    full = MolecularHamiltonian(integrals, compact=False)
    assert packed.max_conn < full.max_conn == packed.n_candidates
    diff = to_sparse(packed) - to_sparse(full)
    assert abs(diff).max() == 0.0
    # the bound is reached: no determinant has more nonzero rows, one has exactly that many
    assert _nonzero_rows_per_state(full).max() == packed.max_conn
    x = packed.hilbert.all_states()[5]
    sites, mels = jax.jit(packed.flips)(x)
    assert sites.shape == (packed.max_conn, 4) and mels.shape == (packed.max_conn,)
    assert np.all(np.asarray(sites[0]) == packed.hilbert.n_sites)  # row 0 stays the diagonal
    n_kept = int(np.count_nonzero(np.asarray(mels)))
    assert np.all(np.asarray(mels[n_kept:]) == 0)  # padding at the end, no flips
    assert np.all(np.asarray(sites[n_kept:]) == packed.hilbert.n_sites)


def test_screened_row_bound_on_random_sparse_integrals():
    """Random integrals with a random pattern of zeros (8-fold symmetric): bound >= every state."""
    rng = np.random.default_rng(1)
    n, na, nb = 6, 3, 2
    h1 = rng.normal(size=(n, n)) * (rng.random((n, n)) < 0.3)
    h1 = h1 + h1.T
    a = rng.normal(size=(n, n, n, n)) * (rng.random((n, n, n, n)) < 0.15)
    h2 = a + a.transpose(1, 0, 2, 3)
    h2 = h2 + h2.transpose(0, 1, 3, 2)
    h2 = h2 + h2.transpose(2, 3, 0, 1)
    integrals = MolecularIntegrals(h1, h2, 0.0, n, na, nb)
    packed = MolecularHamiltonian(integrals)
    full = MolecularHamiltonian(integrals, compact=False)
    counts = _nonzero_rows_per_state(full)
    assert counts.max() <= packed.max_conn < full.max_conn
    assert abs(to_sparse(packed) - to_sparse(full)).max() == 0.0
    # too many string pairs to enumerate: no bound, every candidate kept
    assert screened_row_bound(h1, h2, na, nb, 1e-12, max_string_pairs=10) is None
    unpacked = MolecularHamiltonian(integrals, max_string_pairs=10)
    assert unpacked.max_conn == unpacked.n_candidates
