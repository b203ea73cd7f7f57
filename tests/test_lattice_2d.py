"""Triangular and honeycomb lattices, symmetry permutations: against NetKet's graphs and ED."""

import numpy as np
import pytest

from hamiltonians.lattice import (
    Lattice,
    bonds_from_shifts,
    honeycomb,
    make_lattice,
    neighbour_shells,
    square,
    triangular,
)
from hamiltonians.spin import J1J2, Heisenberg, make_spin_model
from hamiltonians.spin_reference import lanczos_ground_state
from nqs.errors import InputError

LATTICES = [
    (square(3), "Square"),
    (square(4, pbc=False), "Square"),
    (triangular(3), "Triangular"),
    (triangular(4), "Triangular"),
    (triangular(3, pbc=False), "Triangular"),
    (honeycomb(2), "Honeycomb"),
    (honeycomb(3), "Honeycomb"),
    (honeycomb(3, pbc=False), "Honeycomb"),
]


def _netket_graph(lat: Lattice, name: str):
    import netket as nk

    if name == "Square":
        return nk.graph.Square(lat.extent[0], pbc=lat.pbc)
    return getattr(nk.graph, name)([lat.extent[0], lat.extent[1]], pbc=lat.pbc)


@pytest.mark.parametrize(("lat", "name"), LATTICES, ids=lambda v: getattr(v, "describe", str)())
def test_edges_and_positions_equal_netket(lat: Lattice, name: str) -> None:
    g = _netket_graph(lat, name)
    assert g.n_nodes == lat.n_sites
    np.testing.assert_allclose(lat.positions, np.asarray(g.positions), atol=1e-12)
    theirs = sorted((min(i, j), max(i, j)) for i, j in g.edges())
    assert lat.bonds.tolist() == [list(e) for e in theirs]


@pytest.mark.parametrize(("lat", "name"), LATTICES, ids=lambda v: getattr(v, "describe", str)())
def test_symmetries_preserve_bonds_and_form_a_group(lat: Lattice, name: str) -> None:
    group = lat.space_group()
    assert np.array_equal(group[0], np.arange(lat.n_sites))
    keys = {row.tobytes() for row in group}
    assert len(keys) == len(group)
    for bonds in (lat.bonds, lat.next_nearest_bonds):
        bond_set = {tuple(b) for b in bonds.tolist()}
        for perm in group:
            assert np.array_equal(np.sort(perm), np.arange(lat.n_sites))
            mapped = {tuple(sorted((int(perm[i]), int(perm[j])))) for i, j in bonds.tolist()}
            assert mapped == bond_set
    # closed under composition (perm_a after perm_b)
    for a in group[:: max(1, len(group) // 7)]:
        for b in group[:: max(1, len(group) // 5)]:
            assert a[b].tobytes() in keys
    if lat.pbc:
        assert len(group) == len(_netket_graph(lat, name).space_group())
    else:  # the patch's own symmetries about its centre: all of its graph automorphisms
        assert len(group) == len(_netket_graph(lat, name).automorphisms())
        assert len(group) == (8 if lat.kind == "square" else 4)


def test_group_orders() -> None:
    assert len(square(4).point_group()) == 8 and len(square(4).space_group()) == 128
    assert len(triangular(4).point_group()) == 12 and len(triangular(4).space_group()) == 192
    assert len(honeycomb(3).point_group()) == 12 and len(honeycomb(3).space_group()) == 108
    # an open chain's reflection about its centre
    chain = Lattice("chain", (5,), False).point_group()
    assert chain.tolist() == [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]
    # the C6 rotation about a hexagon centre swaps the honeycomb sublattices
    rot = honeycomb(3).point_group()[1]
    sub = honeycomb(3).sublattice
    assert np.all(sub[rot] != sub)


def test_bipartite_and_neighbours() -> None:
    assert honeycomb(3).is_bipartite and not triangular(4).is_bipartite
    with pytest.raises(InputError, match="triangles"):
        _ = triangular(4).sublattice
    deg = np.bincount(triangular(4).bonds.ravel(), minlength=16)
    assert np.all(deg == 6)
    deg = np.bincount(honeycomb(3).bonds.ravel(), minlength=18)
    assert np.all(deg == 3)
    # the shells are distances 1 and sqrt(3) on the triangular lattice
    shells = neighbour_shells(triangular(4).geometry, 2)
    assert (len(shells[0]), len(shells[1])) == (6, 6)
    # user-built edge lists: a ladder from the square geometry's first shell
    ladder = bonds_from_shifts((4, 2), 1, [(0, 0, (1, 0)), (0, 0, (0, 1))], pbc=False)
    assert len(ladder) == 3 * 2 + 4


@pytest.mark.parametrize("bad", [("triangular", 1), ("honeycomb", 1), ("kagome", 3)])
def test_bad_lattices(bad: tuple[str, int]) -> None:
    with pytest.raises(InputError):
        make_lattice(*bad)


@pytest.mark.parametrize(
    ("model", "graph"),
    [
        (Heisenberg(triangular(3), total_sz=None), ("Triangular", [3, 3])),
        (Heisenberg(honeycomb(2), marshall_sign=True), ("Honeycomb", [2, 2])),
        (Heisenberg(honeycomb(2, pbc=False)), ("Honeycomb", [2, 2], False)),
    ],
    ids=lambda v: v.describe() if hasattr(v, "describe") else v[0],
)
def test_lanczos_equals_netket_ed(model, graph) -> None:
    """Our Lanczos (own edges, own matrix) against NetKet's ED on NetKet's own graph."""
    import netket as nk

    name, extent, *pbc = graph
    g = getattr(nk.graph, name)(extent, pbc=pbc[0] if pbc else True)
    tsz = model.hilbert.total_sz
    hi = nk.hilbert.Spin(0.5, g.n_nodes, total_sz=None if tsz is None else 0)
    op = nk.operator.Heisenberg(hi, g, J=0.25).to_numba_operator()
    ref = float(nk.exact.lanczos_ed(op, k=1)[0])
    assert lanczos_ground_state(model) == pytest.approx(ref, abs=1e-8)


def test_models_on_new_lattices() -> None:
    assert make_spin_model("heisenberg", "honeycomb", 2).lattice == honeycomb(2)
    model = J1J2(triangular(4), j2=0.2)
    assert model.max_conn == 1 + 48 + 48 and model.hilbert.total_sz == 0


@pytest.mark.parametrize(
    "model",
    [Heisenberg(honeycomb(2)), J1J2(square(2), j2=0.3, total_sz=None)],
    ids=lambda m: m.describe(),
)
def test_momentum_sectors_split_the_spectrum(model) -> None:
    """The spectra of all momentum sectors together are the spectrum of the S^z sector."""
    import itertools

    from hamiltonians.momentum_sectors import momentum_sector_energies
    from hamiltonians.spin_reference import model_sparse

    full = np.linalg.eigvalsh(model_sparse(model).toarray())
    parts = [momentum_sector_energies(model, m, k=len(full))
             for m in itertools.product(*(range(n) for n in model.lattice.extent))]
    np.testing.assert_allclose(np.sort(np.concatenate(parts)), full, atol=1e-12)


def test_momentum_zero_ground_state_4x4() -> None:
    from hamiltonians.momentum_sectors import momentum_sector_energies

    # docs/references.md: -11.228483208 (exact diagonalization)
    e = momentum_sector_energies(Heisenberg(square(4), marshall_sign=True))
    assert e[0] == pytest.approx(-11.228483208, abs=1e-8)
    with pytest.raises(InputError, match="periodic"):
        momentum_sector_energies(Heisenberg(square(4, pbc=False)))
