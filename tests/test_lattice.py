"""Lattices: bond counts, translations, sublattices, input validation."""

import numpy as np
import pytest

from hamiltonians.lattice import Lattice, chain, make_lattice, square
from nqs.errors import InputError


def _check_bonds(bonds: np.ndarray, n_sites: int) -> None:
    assert bonds.ndim == 2 and bonds.shape[1] == 2
    assert np.all(bonds[:, 0] < bonds[:, 1])
    assert np.all((bonds >= 0) & (bonds < n_sites))
    assert len({tuple(b) for b in bonds.tolist()}) == len(bonds)


@pytest.mark.parametrize(
    ("lattice", "n_sites", "n_bonds", "n_nnn"),
    [
        (chain(1), 1, 0, 0),
        (chain(2), 2, 1, 0),
        (chain(2, pbc=False), 2, 1, 0),
        (chain(4), 4, 4, 2),
        (chain(6), 6, 6, 6),
        (chain(6, pbc=False), 6, 5, 4),
        (square(2), 4, 4, 2),
        (square(3), 9, 18, 18),
        (square(3, pbc=False), 9, 12, 8),
        (square(4), 16, 32, 32),
        (square(4, pbc=False), 16, 24, 18),
    ],
)
def test_bond_counts(lattice: Lattice, n_sites: int, n_bonds: int, n_nnn: int) -> None:
    assert lattice.n_sites == n_sites
    assert len(lattice.bonds) == n_bonds == lattice.n_bonds
    assert len(lattice.next_nearest_bonds) == n_nnn
    _check_bonds(lattice.bonds, n_sites)
    _check_bonds(lattice.next_nearest_bonds, n_sites)


def test_square_site_index_is_row_major() -> None:
    lat = square(4)
    # site i = x * L + y: (1, 2) is site 6; its neighbours are (0,2)=2, (2,2)=10, (1,1)=5, (1,3)=7
    nbrs = {int(j) for i, j in lat.bonds.tolist() if i == 6} | {
        int(i) for i, j in lat.bonds.tolist() if j == 6
    }
    assert nbrs == {2, 10, 5, 7}
    assert np.array_equal(lat.coords[6], [1, 2])
    diag = {j for i, j in lat.next_nearest_bonds.tolist() if i == 6} | {
        i for i, j in lat.next_nearest_bonds.tolist() if j == 6
    }
    assert diag == {1, 3, 9, 11}


@pytest.mark.parametrize("lattice", [chain(5), chain(6), square(3), square(4), chain(4, False)])
def test_translations_are_bond_preserving_permutations(lattice: Lattice) -> None:
    t = lattice.translations()
    expected = lattice.n_sites if lattice.pbc else 1
    assert t.shape == (expected, lattice.n_sites)
    assert np.array_equal(t[0], np.arange(lattice.n_sites))
    for bonds in (lattice.bonds, lattice.next_nearest_bonds):
        bond_set = {tuple(b) for b in bonds.tolist()}
        for perm in t:
            assert np.array_equal(np.sort(perm), np.arange(lattice.n_sites))
            mapped = {tuple(sorted((int(perm[i]), int(perm[j])))) for i, j in bonds.tolist()}
            assert mapped == bond_set
    # all translations are distinct
    assert len({row.tobytes() for row in t}) == len(t)


def test_bipartite_and_sublattice() -> None:
    for lat in (chain(6), chain(5, pbc=False), square(4), square(3, pbc=False), chain(2)):
        assert lat.is_bipartite
        sub = lat.sublattice
        b = lat.bonds
        assert np.all(sub[b[:, 0]] != sub[b[:, 1]])
        nnn = lat.next_nearest_bonds
        assert np.all(sub[nnn[:, 0]] == sub[nnn[:, 1]])
    for lat in (chain(5), square(3)):
        assert not lat.is_bipartite
        with pytest.raises(InputError, match="not bipartite"):
            _ = lat.sublattice


def test_hashable_and_equal() -> None:
    assert chain(6) == chain(6)
    assert hash(square(4)) == hash(square(4))
    assert chain(6) != chain(6, pbc=False)
    assert "16 sites" in square(4).describe()


@pytest.mark.parametrize("bad", [0, -3, 2.5, "4", True, None])
def test_invalid_sizes(bad: object) -> None:
    for factory in (chain, square):
        with pytest.raises(InputError, match="positive integer"):
            factory(bad)  # type: ignore[arg-type]


def test_make_lattice() -> None:
    assert make_lattice("square", 3, pbc=False) == square(3, pbc=False)
    with pytest.raises(InputError, match="valid lattices: chain, square"):
        make_lattice("triangle", 3)
