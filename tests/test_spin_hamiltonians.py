"""Spin Hamiltonians: matrices against NetKet, the Marshall sign, jit/vmap, exact references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hamiltonians.lattice import chain, square
from hamiltonians.spin import (
    J1J2,
    XXZ,
    Heisenberg,
    TransverseFieldIsing,
    make_spin_model,
)
from hamiltonians.spin_reference import (
    exact_energy,
    heisenberg_chain_energy,
    lanczos_ground_state,
    model_sparse,
    netket_sparse,
    tfim_chain_energy,
    tfim_open_chain_energy,
)
from nqs.errors import InputError
from nqs.operator import DiscreteOperator, to_sparse

MODELS = [
    TransverseFieldIsing(chain(6), h=0.7, J=1.3),
    TransverseFieldIsing(chain(2), h=0.4),
    TransverseFieldIsing(square(3, pbc=False), h=0.5, J=-0.8),
    Heisenberg(chain(6)),
    Heisenberg(chain(6), marshall_sign=True),
    Heisenberg(chain(5), total_sz=None),
    Heisenberg(square(2), marshall_sign=True, total_sz=None),
    Heisenberg(square(3, pbc=False), marshall_sign=True),
    XXZ(chain(6), delta=0.3, J=0.9),
    XXZ(chain(6), delta=-1.5, marshall_sign=True),
    J1J2(chain(6), j2=0.4),
    J1J2(chain(6), j2=0.4, marshall_sign=True),
    J1J2(square(3, pbc=False), j2=0.5, marshall_sign=True),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.describe())
def test_matrix_equals_netket(model) -> None:
    assert isinstance(model, DiscreteOperator)
    ours = to_sparse(model).toarray()
    ref = netket_sparse(model).toarray()
    np.testing.assert_allclose(ours, ref, atol=1e-13)
    np.testing.assert_allclose(ours, ours.T, atol=1e-13)
    np.testing.assert_allclose(model_sparse(model).toarray(), ref, atol=1e-13)


def test_netket_basis_convention() -> None:
    """Our full-space order equals NetKet's; +1 (spin up, sigma^z = +1) comes first in both.

    A fixed-S^z sector holds the same states in both (NetKet's ``total_sz`` is physical, ours
    is ``sum x_i``), so the sign of sigma^z agrees too.
    """
    import netket as nk

    model = TransverseFieldIsing(chain(4), h=0.0)
    hi = model.to_netket().hilbert
    np.testing.assert_array_equal(np.asarray(hi.all_states()), model.hilbert.all_states())
    assert list(np.asarray(hi.local_states)) == [1, -1]
    ours = Heisenberg(chain(5), total_sz=3).hilbert.all_states()
    theirs = np.asarray(nk.hilbert.Spin(0.5, 5, total_sz=1.5).all_states())
    assert {r.tobytes() for r in ours.astype(np.int8)} == {
        r.tobytes() for r in theirs.astype(np.int8)
    }
    assert len(ours) == 5 and np.all(ours.sum(axis=1) == 3)


def _marshall_unitary(model) -> np.ndarray:
    states = model.hilbert.all_states()
    sub = model.lattice.sublattice
    n_up_sub1 = np.sum((states > 0) & (sub[None, :] == 1), axis=1)
    return np.diag((-1.0) ** n_up_sub1)


@pytest.mark.parametrize(
    ("plain", "rotated"),
    [
        (Heisenberg(chain(6)), Heisenberg(chain(6), marshall_sign=True)),
        (
            Heisenberg(square(2), total_sz=None),
            Heisenberg(square(2), marshall_sign=True, total_sz=None),
        ),
        (J1J2(chain(6), j2=0.4), J1J2(chain(6), j2=0.4, marshall_sign=True)),
        (J1J2(square(3, False), j2=0.6), J1J2(square(3, False), j2=0.6, marshall_sign=True)),
    ],
)
def test_marshall_sign_is_the_marshall_rotation(plain, rotated) -> None:
    u = _marshall_unitary(plain)
    np.testing.assert_allclose(
        to_sparse(rotated).toarray(), u @ to_sparse(plain).toarray() @ u, atol=1e-13
    )


def test_j1j2_against_netket_heisenberg_with_two_couplings() -> None:
    """Independent construction: NetKet's Heisenberg with edge colours and per-colour sign rule."""
    import netket as nk

    model = J1J2(square(3, pbc=False), j2=0.45, marshall_sign=True)
    edges = [(i, j, 0) for i, j in model.lattice.bonds.tolist()]
    edges += [(i, j, 1) for i, j in model.lattice.next_nearest_bonds.tolist()]
    graph = nk.graph.Graph(edges=edges, n_nodes=9)
    hi = nk.hilbert.Spin(0.5, 9)
    assert model.hilbert.total_sz is None  # odd number of spins: full space by default
    op = nk.operator.Heisenberg(hi, graph, J=[0.25, 0.45 / 4], sign_rule=[True, False])
    mat = op.to_numba_operator().to_sparse().toarray()
    idx = np.asarray(hi.states_to_numbers(model.hilbert.all_states()))
    np.testing.assert_allclose(to_sparse(model).toarray(), mat[np.ix_(idx, idx)], atol=1e-13)


def test_xxz_delta_one_is_heisenberg() -> None:
    a = model_sparse(XXZ(square(4), delta=1.0, J=0.7))
    b = model_sparse(Heisenberg(square(4), J=0.7))
    assert abs(a - b).max() < 1e-14


@pytest.mark.parametrize(
    "model",
    [TransverseFieldIsing(square(3), h=1.1), Heisenberg(chain(8), marshall_sign=True),
     J1J2(square(4), j2=0.5)],
    ids=lambda m: m.name,
)
def test_flips_jit_vmap(model) -> None:
    key = jax.random.PRNGKey(0)
    x = model.hilbert.random_state(key, 7)
    sites, mels = jax.jit(jax.vmap(model.flips))(x)
    n = model.hilbert.n_sites
    assert sites.shape == (7, model.max_conn, model.max_flips)
    assert sites.dtype == jnp.int32 and mels.dtype == jnp.float64
    assert mels.shape == (7, model.max_conn)
    # row 0 is the diagonal, with no flips
    assert np.all(np.asarray(sites[:, 0]) == n)
    # padding rows (element 0) flip nothing, so they never leave the sector
    s, m = np.asarray(sites), np.asarray(mels)
    assert np.all(s[m == 0] == n)
    s0, m0 = jax.jit(model.flips)(x[3])
    np.testing.assert_allclose(np.asarray(m0), m[3])
    np.testing.assert_array_equal(np.asarray(s0), s[3])
    assert hash(model) == hash(model)


def test_max_conn() -> None:
    assert TransverseFieldIsing(square(4), h=1.0).max_conn == 17
    assert Heisenberg(square(4)).max_conn == 33
    assert J1J2(square(4), j2=0.5).max_conn == 65


# ---------------------------------------------------------------- exact references


def test_tfim_free_fermions_vs_lanczos() -> None:
    """The formula is the true ground state for every h (even-parity sector), L = 3..12."""
    for length in (3, 4, 5, 8, 9, 10, 11, 12):
        for h in (0.1, 0.5, 0.9, 1.0, 1.7, -0.6):
            model = TransverseFieldIsing(chain(length), h=h)
            exact = lanczos_ground_state(model)
            assert abs(tfim_chain_energy(length, h) - exact) < 1e-9, (length, h)


@pytest.mark.parametrize(("length", "h", "J"), [(8, 0.5, -1.0), (6, 2.0, 0.5), (7, 0.3, 2.0)])
def test_tfim_free_fermions_other_couplings(length: int, h: float, J: float) -> None:
    model = TransverseFieldIsing(chain(length), h=h, J=J)
    assert abs(tfim_chain_energy(length, h, J) - lanczos_ground_state(model)) < 1e-9


@pytest.mark.parametrize(("length", "h", "J"), [(2, 1.0, 1.0), (5, 0.5, 1.0), (8, 2.0, -1.0),
                                              (11, -0.7, 0.3), (12, 1.0, 1.0)])
def test_tfim_open_chain_free_fermions_vs_lanczos(length: int, h: float, J: float) -> None:
    model = TransverseFieldIsing(chain(length, pbc=False), h=h, J=J)
    exact = lanczos_ground_state(model)
    assert abs(tfim_open_chain_energy(length, h, J) - exact) < 1e-9
    # past Lanczos's reach the open chain still has its exact energy
    big = TransverseFieldIsing(chain(32, pbc=False), h=h, J=J)
    assert exact_energy(big) == (pytest.approx(tfim_open_chain_energy(32, h, J)),
                                 "free fermions")


def test_tfim_reference_values() -> None:
    assert tfim_chain_energy(16, 1.0) == pytest.approx(-20.404594474756657, abs=1e-12)
    for h, e_per_site in [(0.5, -1.063544409973), (1.0, -1.273321360724), (2.0, -2.127088819947)]:
        assert tfim_chain_energy(80, h) / 80 == pytest.approx(e_per_site, abs=1e-11)
    assert exact_energy(TransverseFieldIsing(chain(16), h=1.0)) == (
        pytest.approx(-20.404594474756657),
        "free fermions",
    )


def test_tfim_formula_domain() -> None:
    with pytest.raises(InputError, match=">= 3 sites"):
        tfim_chain_energy(2, 1.0)
    with pytest.raises(InputError, match="odd ring"):
        tfim_chain_energy(5, 1.0, J=-1.0)
    # outside the formula's domain exact_energy falls back to exact diagonalisation
    model = TransverseFieldIsing(chain(5), h=0.5, J=-1.0)
    e, source = exact_energy(model)
    assert source == "exact diagonalization (Lanczos)"
    assert e == pytest.approx(np.linalg.eigvalsh(netket_sparse(model).toarray())[0])
    e, source = exact_energy(TransverseFieldIsing(chain(8, pbc=False), h=1.0))
    assert source == "free fermions"  # the open chain has its own free-fermion solution
    assert e == pytest.approx(lanczos_ground_state(TransverseFieldIsing(chain(8, pbc=False),
                                                                        h=1.0)))


def test_heisenberg_chain_10_dense_netket() -> None:
    # NetKet's full space (its fixed-S^z kernels recompile per size); the singlet ground state
    # lies in the S^z = 0 sector, where exact_energy works by default.
    dense = np.linalg.eigvalsh(netket_sparse(Heisenberg(chain(10), total_sz=None)).toarray())[0]
    assert dense == pytest.approx(-4.515446354492, abs=1e-10)
    for marshall in (False, True):
        model = Heisenberg(chain(10), marshall_sign=marshall)
        assert model.hilbert.total_sz == 0
        assert lanczos_ground_state(model) == pytest.approx(dense, abs=1e-10)
        e, source = exact_energy(model)
        assert source == "exact diagonalization (Lanczos)"
        assert e == pytest.approx(dense, abs=1e-10)


def test_heisenberg_tabulated() -> None:
    assert heisenberg_chain_energy(20) == pytest.approx(-8.904386529876)
    assert heisenberg_chain_energy(80) == pytest.approx(-35.4620761497)
    assert heisenberg_chain_energy(12) is None
    e, source = exact_energy(Heisenberg(chain(80)))
    assert (e, source) == (pytest.approx(-35.4620761497), "Bethe ansatz (tabulated)")
    assert exact_energy(Heisenberg(square(10))) == (None, "none")


def test_heisenberg_square_4x4() -> None:
    e, source = exact_energy(Heisenberg(square(4), marshall_sign=True))
    assert source == "exact diagonalization (Lanczos)"
    assert e == pytest.approx(-11.228483208, abs=1e-8)


def test_lanczos_vectors_and_limits() -> None:
    model = Heisenberg(chain(8))
    e, v = lanczos_ground_state(model, return_vector=True)
    mat = to_sparse(model)
    np.testing.assert_allclose(mat @ v, e * v, atol=1e-8)
    es = lanczos_ground_state(TransverseFieldIsing(chain(10), h=1.0), k=3)
    assert es.shape == (3,) and np.all(np.diff(es) >= 0)
    with pytest.raises(InputError, match="26 spins"):
        lanczos_ground_state(Heisenberg(square(6)))


# ---------------------------------------------------------------- inputs


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="odd number of spins"):
        Heisenberg(chain(5), total_sz=0)
    with pytest.raises(InputError, match="bipartite"):
        Heisenberg(chain(5), marshall_sign=True, total_sz=None)
    with pytest.raises(InputError, match="valid models: tfim, heisenberg, xxz, j1j2"):
        make_spin_model("potts", "chain", 4)
    with pytest.raises(InputError, match="valid lattices"):
        make_spin_model("tfim", "hexagon", 4)
    with pytest.raises(InputError, match="positive integer"):
        make_spin_model("heisenberg", "square", 0)


def test_make_spin_model() -> None:
    m = make_spin_model("ising", "chain", 8, pbc=True, h=0.5)
    assert m == TransverseFieldIsing(chain(8), h=0.5)
    m = make_spin_model("j1j2", "square", 4, pbc=True, j2=0.3, marshall_sign=True)
    assert m == J1J2(square(4), j2=0.3, marshall_sign=True)
    assert m.hilbert.total_sz == 0
    assert Heisenberg(chain(5)).hilbert.total_sz is None
    m = make_spin_model("XXZ", "chain", 6, delta=0.5)
    assert isinstance(m, XXZ) and m.delta == 0.5
    assert "XXZ" in m.describe() and "S^z=0" in m.describe()
