"""NetKet operators and graphs in and out: the same matrices as NetKet's (its ``to_dense()``,
assembled from its connected elements: ``nk_dense``)."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.lattice import EdgeLattice, Lattice, chain, from_edges, honeycomb, square
from hamiltonians.netket_interop import from_netket, pauli_decomposition, to_netket
from hamiltonians.pauli import PauliSum, pauli_matrix, sigmax, sigmay, sigmaz
from hamiltonians.spin import Heisenberg, TransverseFieldIsing
from nqs.driver import run_vmc
from nqs.errors import InputError
from nqs.hilbert import SpinHilbert
from nqs.operator import to_sparse

nk = pytest.importorskip("netket")
warnings.filterwarnings("ignore", module="netket")

LADDER = [(0, 1), (1, 2), (3, 4), (4, 5), (0, 3), (1, 4), (2, 5)]


def dense(op) -> np.ndarray:
    return np.asarray(to_sparse(op).toarray())


@jax.jit
def _netket_connections(op, x):
    xp, mels = op.get_conn_padded(x)
    return op.hilbert.states_to_numbers(xp), mels


def nk_dense(op) -> np.ndarray:
    """NetKet's matrix of ``op`` (a NetKet JAX operator), as its ``to_dense()``: the connected
    elements of every state (``get_conn_padded``, one jitted program) summed into a dense array
    on the host. NetKet's own ``to_dense`` assembles a sparse matrix op by op, a few hundred
    small compilations per operator."""
    states = np.asarray(op.hilbert.all_states())
    cols, mels = (np.asarray(a) for a in _netket_connections(op, states))
    out = np.zeros((len(states),) * 2, dtype=np.result_type(mels.dtype, np.float64))
    np.add.at(out, (np.arange(len(states))[:, None], cols), mels)
    return out


def netket_dense(op, hilbert: SpinHilbert) -> np.ndarray:
    """NetKet's matrix in the order of ``hilbert.all_states()`` (a sector's order differs)."""
    theirs = {r.tobytes(): i for i, r in
              enumerate(np.asarray(op.hilbert.all_states()).astype(np.int8))}
    perm = [theirs[r.tobytes()] for r in hilbert.all_states().astype(np.int8)]
    return np.asarray(nk_dense(op))[np.ix_(perm, perm)]


def test_ising_imports_as_tfim_with_the_sign_of_j_flipped() -> None:
    hi = nk.hilbert.Spin(0.5, 5)
    ising = nk.operator.Ising(hi, nk.graph.Chain(5), h=0.7, J=0.3)
    op = from_netket(ising)
    assert isinstance(op, TransverseFieldIsing)
    assert op.J == pytest.approx(-0.3) and op.h == pytest.approx(0.7)
    assert op.lattice == chain(5)
    np.testing.assert_allclose(dense(op), nk_dense(ising), atol=1e-12)


def test_ising_on_an_edge_list() -> None:
    hi = nk.hilbert.Spin(0.5, 6)
    ising = nk.operator.Ising(hi, nk.graph.Graph(edges=LADDER), h=1.3, J=-0.8)
    op = from_netket(ising)
    assert isinstance(op.lattice, EdgeLattice) and op.lattice.n_bonds == len(LADDER)
    np.testing.assert_allclose(dense(op), nk_dense(ising), atol=1e-12)


@pytest.mark.parametrize("total_sz", [None, 0])
@pytest.mark.parametrize("sign_rule", [False, True])
def test_heisenberg_imports_with_pauli_matrices(total_sz, sign_rule) -> None:
    hi = nk.hilbert.Spin(0.5, 6, total_sz=total_sz)
    heis = nk.operator.Heisenberg(hi, nk.graph.Chain(6), J=0.6, sign_rule=sign_rule)
    op = from_netket(heis)
    assert isinstance(op, PauliSum)
    assert op.hilbert == SpinHilbert(6, None if total_sz is None else 2 * total_sz)
    np.testing.assert_allclose(dense(op), netket_dense(heis, op.hilbert), atol=1e-12)
    # Pauli matrices: J sigma.sigma = 4 J S.S, i.e. nqs's Heisenberg with 4 J
    if not sign_rule:
        ref = Heisenberg(chain(6), J=2.4, total_sz=None if total_sz is None else 0)
        np.testing.assert_allclose(dense(op), dense(ref), atol=1e-12)


def test_random_local_operator_of_pauli_products() -> None:
    rng = np.random.default_rng(3)
    n = 4
    hi = nk.hilbert.Spin(0.5, n)
    make = {"X": nk.operator.spin.sigmax, "Y": nk.operator.spin.sigmay,
            "Z": nk.operator.spin.sigmaz}
    op = nk.operator.LocalOperator(hi, constant=0.4, dtype=complex)
    for _ in range(12):
        k = rng.integers(1, 4)
        sites = rng.choice(n, size=k, replace=False)
        term = nk.operator.LocalOperator(hi, constant=complex(rng.normal(), rng.normal()),
                                         dtype=complex)
        for s in sites:
            term = term @ make[rng.choice(list("XYZ"))](hi, int(s), dtype=complex)
        op = op + term
    mine = from_netket(op)
    np.testing.assert_allclose(pauli_matrix(mine), nk_dense(op), atol=1e-12)
    # a random matrix on 3 sites (not a product of Paulis) expands exactly as well
    m = rng.normal(size=(8, 8)) + 1j * rng.normal(size=(8, 8))
    local = nk.operator.LocalOperator(hi, [m], [[3, 0, 2]], dtype=complex)
    np.testing.assert_allclose(pauli_matrix(from_netket(local)), nk_dense(local), atol=1e-12)


def test_round_trip_of_a_pauli_sum() -> None:
    op = (0.5 * sigmax(0) * sigmax(1) + sigmaz(2) - 0.3j * sigmay(0) * sigmaz(3) + 1.5
          + 0.2 * sigmay(1) * sigmay(3))
    theirs = to_netket(op, n_sites=4)
    np.testing.assert_allclose(nk_dense(theirs), pauli_matrix(op, 4), atol=1e-12)
    back = from_netket(theirs)
    assert set(back.terms) == set(op.terms)
    for s, c in op.terms.items():
        assert back.terms[s] == pytest.approx(c, abs=1e-12)
    real = to_netket(sigmax(0) * sigmax(1) + sigmay(0) * sigmay(1), n_sites=2)
    assert np.dtype(real.dtype) == np.float64
    np.testing.assert_allclose(nk_dense(real), pauli_matrix(sigmax(0) * sigmax(1)
                                                             + sigmay(0) * sigmay(1)))


def test_round_trip_in_a_sector() -> None:
    op = (sigmax(0) * sigmax(1) + sigmay(0) * sigmay(1) + sigmaz(2) * sigmaz(3)
          + 0.3 * sigmaz(0)).on(SpinHilbert(4, 0))
    theirs = to_netket(op)
    np.testing.assert_allclose(netket_dense(theirs, op.hilbert), dense(op), atol=1e-12)


@pytest.mark.parametrize("graph, mine", [
    (lambda: nk.graph.Chain(6), chain(6)),
    (lambda: nk.graph.Chain(5, pbc=False), chain(5, pbc=False)),
    (lambda: nk.graph.Square(3), square(3)),
    (lambda: nk.graph.Honeycomb([2, 2]), honeycomb(2)),
])
def test_standard_graphs_become_lattices(graph, mine) -> None:
    lat = from_netket(graph())
    assert isinstance(lat, Lattice) and lat == mine


def test_other_graphs_become_edge_lattices() -> None:
    lat = from_netket(nk.graph.Graph(edges=LADDER))
    assert isinstance(lat, EdgeLattice) and lat.n_sites == 6
    assert from_edges(LADDER).edges == lat.edges
    np.testing.assert_array_equal(lat.bonds, sorted(LADDER))
    assert lat.is_bipartite and list(lat.sublattice) == [0, 1, 0, 1, 0, 1]
    odd = from_edges([(0, 1), (1, 2), (0, 2)])
    assert not odd.is_bipartite
    with pytest.raises(InputError, match="not bipartite"):
        _ = odd.sublattice
    back = to_netket(lat)
    assert sorted(map(tuple, back.edges())) == sorted(LADDER)


def test_models_take_netket_graphs() -> None:
    tfim = TransverseFieldIsing(nk.graph.Chain(6), h=0.9)
    assert tfim.lattice == chain(6)
    np.testing.assert_allclose(dense(tfim), dense(TransverseFieldIsing(chain(6), h=0.9)))
    ladder = Heisenberg(nk.graph.Graph(edges=LADDER), total_sz=None)
    hi = nk.hilbert.Spin(0.5, 6)
    ref = nk.operator.Heisenberg(hi, nk.graph.Graph(edges=LADDER), J=0.25,
                                 sign_rule=False)
    np.testing.assert_allclose(dense(ladder), nk_dense(ref), atol=1e-12)
    with pytest.raises(InputError, match="NetKet graph"):
        TransverseFieldIsing("chain", h=1.0)


def test_pauli_decomposition_rejects_a_wrong_shape() -> None:
    with pytest.raises(InputError, match="does not act"):
        pauli_decomposition(np.eye(3), [0, 1])


def test_foreign_objects_give_one_line() -> None:
    with pytest.raises(InputError, match="from_netket accepts"):
        from_netket(object())
    spin1 = nk.operator.spin.sigmaz(nk.hilbert.Spin(1.0, 2), 0)
    with pytest.raises(InputError, match="spin-1/2"):
        from_netket(spin1)
    with pytest.raises(InputError, match="to_netket accepts"):
        to_netket(object())
    ising = nk.operator.Ising(nk.hilbert.Spin(0.5, 4), nk.graph.Chain(4), h=1.0)
    with pytest.raises(InputError, match="from_netket") as err:
        run_vmc(None, ising, None, None, 1)
    assert "\n" not in str(err.value)


def test_an_imported_operator_runs_in_run_vmc() -> None:
    """An imported Heisenberg (a PauliSum on the S^z = 0 sector) is a Hamiltonian of run_vmc:
    exact summation reaches NetKet's ground-state energy."""
    from nqs.models.rbm import make_rbm
    from nqs.optim import sr_optimizer
    from nqs.sampling import ExactSampler

    hi = nk.hilbert.Spin(0.5, 4, total_sz=0)
    heis = nk.operator.Heisenberg(hi, nk.graph.Chain(4), J=0.25, sign_rule=True)
    e0 = float(np.linalg.eigvalsh(nk_dense(heis))[0])
    op = from_netket(heis)
    result = run_vmc(make_rbm(4, 2.0), op, ExactSampler(op.hilbert), sr_optimizer(0.05, 1e-3),
                     150, progress=False)
    assert e0 == pytest.approx(-2.0)
    assert result.energy == pytest.approx(e0, abs=1e-3)


def test_pauli_strings_and_an_ising_on_a_sector() -> None:
    hi = nk.hilbert.Spin(0.5, 4)
    ps = nk.operator.PauliStrings(hi, ["XXII", "IZZI", "YIIY"], [0.5, -1.0, 0.25])
    mine = from_netket(ps)
    assert isinstance(mine, PauliSum)
    np.testing.assert_allclose(pauli_matrix(mine), nk_dense(ps), atol=1e-12)
    sector = nk.hilbert.Spin(0.5, 4, total_sz=0)
    ising = nk.operator.Ising(sector, nk.graph.Chain(4), h=0.0, J=0.7)
    op = from_netket(ising)
    assert isinstance(op, PauliSum) and op.hilbert == SpinHilbert(4, 0)
    np.testing.assert_allclose(dense(op), netket_dense(ising, op.hilbert), atol=1e-12)
    # a field leaves the sector: projected out (NetKet itself cannot build that matrix)
    field = from_netket(nk.operator.Ising(sector, nk.graph.Chain(4), h=0.3, J=0.7))
    assert ((0, "X"),) in field.terms
    np.testing.assert_allclose(dense(field), dense(op), atol=1e-12)


def test_exact_references_on_an_edge_lattice() -> None:
    """Lanczos on a ladder given by its edges equals NetKet's dense ground energy."""
    from hamiltonians.spin_reference import exact_energy

    lat = from_edges(LADDER)
    graph = nk.graph.Graph(edges=LADDER)
    hi = nk.hilbert.Spin(0.5, 6)
    for model, theirs in (
        (Heisenberg(lat, marshall_sign=True),
         nk.operator.Heisenberg(hi, graph, J=0.25, sign_rule=True)),
        (TransverseFieldIsing(lat, h=0.8), nk.operator.Ising(hi, graph, h=0.8, J=-1.0)),
    ):
        e, source = exact_energy(model)
        assert "Lanczos" in source or "exact" in source
        assert e == pytest.approx(np.linalg.eigvalsh(nk_dense(theirs))[0], abs=1e-9)
