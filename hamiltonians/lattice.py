"""Lattices (chain, square, triangular, honeycomb) with neighbour bonds and symmetry permutations.

One mechanism builds every edge list: a lattice is a Bravais lattice (primitive vectors) with a
basis of sites per unit cell; the k-th neighbour shell is the set of displacements of the k-th
smallest distance on the infinite lattice, and :func:`bonds_from_shifts` applies such
displacements to an ``L x L`` (or ``L``) patch of unit cells, periodic or open. Users can call
:func:`bonds_from_shifts` with their own displacements, or ``Lattice.bonds_at_order(k)``.

Geometry (NetKet's conventions, so site numbers agree with ``nk.graph.Square`` /
``Triangular`` / ``Honeycomb``):

* chain: ``a1 = (1,)``; square: ``a1 = (1, 0)``, ``a2 = (0, 1)``; one site per cell;
* triangular: ``a1 = (1, 0)``, ``a2 = (1/2, sqrt(3)/2)``; one site per cell;
* honeycomb: the triangular vectors with two sites per cell at ``(1/2, sqrt(3)/6)`` (A) and
  ``(1, sqrt(3)/3)`` (B); nearest-neighbour distance ``1/sqrt(3)``.

Sites are numbered row-major over cells, basis index fastest:
``site = (cell_x * L + cell_y) * n_basis + b``. On the chain site ``i`` is at ``x = i``; on the
square lattice site ``i = x * L + y`` is at ``(x, y)``.

Bonds are int arrays ``[n_bonds, 2]`` with ``i < j``, no self-bonds and no duplicates (on a
periodic chain of length 2 the bonds ``0-1`` and ``1-0`` across the boundary are one bond).

Symmetries are site permutations ``perm [n_g, n_sites]``: element ``g`` maps site ``i`` to
site ``perm[g, i]``; row 0 is the identity.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from nqs.errors import InputError

_KINDS = ("chain", "square", "triangular", "honeycomb")
_S3 = float(np.sqrt(3.0))
_TOL = 1e-6


@dataclass(frozen=True)
class Geometry:
    """A Bravais lattice with a basis.

    Attributes:
      vectors: primitive vectors, float ``[d, d]`` (row ``k`` is ``a_k``).
      basis: site offsets inside a unit cell, float ``[n_basis, d]``.
      rotation_order: order ``n`` of the point group's rotations (``C_nv`` about the origin;
        1 for the chain, whose point group is the reflection ``x -> -x``).
    """

    vectors: tuple[tuple[float, ...], ...]
    basis: tuple[tuple[float, ...], ...]
    rotation_order: int

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.vectors)

    def point_group_matrices(self) -> list[np.ndarray]:
        """Orthogonal matrices of the point group, identity first: ``C_nv`` (rotations, then
        rotations times the reflection ``y -> -y``); ``[[1]], [[-1]]`` in one dimension."""
        if self.ndim == 1:
            return [np.eye(1), -np.eye(1)]
        mats = []
        for k in range(self.rotation_order):
            t = 2 * np.pi * k / self.rotation_order
            mats.append(np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]))
        flip = np.diag([1.0, -1.0])
        return mats + [m @ flip for m in mats]


GEOMETRIES: dict[str, Geometry] = {
    "chain": Geometry(((1.0,),), ((0.0,),), 1),
    "square": Geometry(((1.0, 0.0), (0.0, 1.0)), ((0.0, 0.0),), 4),
    "triangular": Geometry(((1.0, 0.0), (0.5, _S3 / 2)), ((0.0, 0.0),), 6),
    "honeycomb": Geometry(((1.0, 0.0), (0.5, _S3 / 2)), ((0.5, _S3 / 6), (1.0, _S3 / 3)), 6),
}
"""The geometries of the lattice kinds (NetKet's vectors and site offsets)."""

Shift = tuple[int, int, tuple[int, ...]]
"""A displacement ``(b_from, b_to, cell_offset)``: site ``(c, b_from)`` to ``(c + offset, b_to)``."""


def neighbour_shells(geometry: Geometry, n_shells: int = 2) -> list[list[Shift]]:
    """Displacements of the first ``n_shells`` neighbour shells of the infinite lattice.

    Shell ``k`` lists every ``(b_from, b_to, cell_offset)`` whose distance
    ``|offset . vectors + basis[b_to] - basis[b_from]|`` is the ``k``-th smallest nonzero one
    (both orientations of each bond appear).
    """
    vec = np.asarray(geometry.vectors)
    basis = np.asarray(geometry.basis)
    reach = range(-3, 4)
    found: list[tuple[float, Shift]] = []
    for offset in itertools.product(reach, repeat=geometry.ndim):
        for b1, b2 in itertools.product(range(len(basis)), repeat=2):
            dist = float(np.linalg.norm(np.asarray(offset) @ vec + basis[b2] - basis[b1]))
            if dist > _TOL:
                found.append((dist, (b1, b2, tuple(int(o) for o in offset))))
    dists = sorted({round(d / _TOL) for d, _ in found})
    shells = []
    for level in dists[:n_shells]:
        shells.append([s for d, s in found if round(d / _TOL) == level])
    return shells


def bonds_from_shifts(
    extent: tuple[int, ...], n_basis: int, shifts: list[Shift], pbc: bool = True
) -> np.ndarray:
    """Unique bonds ``(i < j)`` from displacements on a patch of ``extent`` unit cells.

    Args:
      extent: number of unit cells per direction, e.g. ``(L, L)``.
      n_basis: sites per unit cell.
      shifts: displacements ``(b_from, b_to, cell_offset)`` (see :data:`Shift`).
      pbc: wrap cell offsets modulo ``extent`` (else drop bonds that leave the patch).

    Returns int ``[n_bonds, 2]``, sorted, without self-bonds or duplicates; sites numbered
    ``cell_row_major * n_basis + b``.
    """
    ext = np.asarray(extent)
    n_cells = int(np.prod(ext))
    cells = np.stack(np.unravel_index(np.arange(n_cells), tuple(extent)), axis=1)
    pairs = set()
    for b1, b2, offset in shifts:
        target = cells + np.asarray(offset)
        if pbc:
            target = target % ext
            valid = np.ones(n_cells, dtype=bool)
        else:
            valid = np.all((target >= 0) & (target < ext), axis=1)
        src = np.arange(n_cells)[valid] * n_basis + b1
        dst = np.ravel_multi_index(tuple(target[valid].T), tuple(extent)) * n_basis + b2
        for i, j in zip(src.tolist(), np.atleast_1d(dst).tolist(), strict=True):
            if i != j:
                pairs.add((min(i, j), max(i, j)))
    return np.asarray(sorted(pairs), dtype=np.int64).reshape(-1, 2)


@dataclass(frozen=True)
class Lattice:
    """A periodic or open chain, square, triangular or honeycomb lattice.

    Attributes:
      kind: ``"chain"``, ``"square"``, ``"triangular"`` or ``"honeycomb"``.
      extent: unit cells per dimension, ``(L,)`` or ``(L, L)``.
      pbc: periodic boundary conditions in every direction.

    Derived (cached) attributes: ``n_sites``, ``coords`` [n_sites, d] (integer cell coordinates;
    the two honeycomb sites of a cell share them), ``basis_index`` [n_sites], ``positions``
    [n_sites, d] (real space), ``bonds`` [n_bonds, 2] (nearest neighbours),
    ``next_nearest_bonds`` [n_nnn, 2] (second shell: ``i, i+2`` on the chain, the diagonals of
    the square lattice), ``is_bipartite``, ``sublattice`` [n_sites].
    Equality and hashing use ``(kind, extent, pbc)`` only, so a lattice can be closed over in jit.
    """

    kind: str
    extent: tuple[int, ...]
    pbc: bool = True

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InputError(f"unknown lattice {self.kind!r}; valid lattices: {', '.join(_KINDS)}")
        expected = GEOMETRIES[self.kind].ndim
        if len(self.extent) != expected:
            raise InputError(f"a {self.kind} lattice needs {expected} sizes, got {self.extent}")
        for length in self.extent:
            _check_length(length)
        object.__setattr__(self, "extent", tuple(int(n) for n in self.extent))
        object.__setattr__(self, "pbc", bool(self.pbc))
        if self.pbc and self.kind in ("triangular", "honeycomb") and min(self.extent) < 2:
            raise InputError(
                f"a periodic {self.kind} lattice needs at least 2 cells per direction, "
                f"got {self.extent}"
            )

    @property
    def geometry(self) -> Geometry:
        """Primitive vectors, basis and point-group order of this kind."""
        return GEOMETRIES[self.kind]

    @property
    def ndim(self) -> int:
        """Number of dimensions (1 for a chain, 2 otherwise)."""
        return len(self.extent)

    @property
    def n_basis(self) -> int:
        """Sites per unit cell (2 for the honeycomb lattice, else 1)."""
        return len(self.geometry.basis)

    @property
    def n_cells(self) -> int:
        """Number of unit cells, the product of ``extent``."""
        return int(np.prod(self.extent))

    @property
    def n_sites(self) -> int:
        """Number of sites, ``n_cells * n_basis``."""
        return self.n_cells * self.n_basis

    @cached_property
    def coords(self) -> np.ndarray:
        """Integer cell coordinates of every site, ``[n_sites, ndim]`` (site ``i`` is row ``i``)."""
        cells = np.stack(np.unravel_index(np.arange(self.n_cells), self.extent), axis=1)
        return np.repeat(cells, self.n_basis, axis=0)

    @cached_property
    def basis_index(self) -> np.ndarray:
        """Basis site (0 or 1 on the honeycomb lattice, else 0) of every site, ``[n_sites]``."""
        return np.tile(np.arange(self.n_basis), self.n_cells)

    @cached_property
    def positions(self) -> np.ndarray:
        """Real-space positions ``[n_sites, ndim]`` (NetKet's ``graph.positions``)."""
        geo = self.geometry
        return self.coords @ np.asarray(geo.vectors) + np.asarray(geo.basis)[self.basis_index]

    def bonds_at_order(self, order: int) -> np.ndarray:
        """Bonds of the ``order``-th neighbour shell (1: nearest, 2: next-nearest), ``[nb, 2]``."""
        shells = neighbour_shells(self.geometry, order)
        return bonds_from_shifts(self.extent, self.n_basis, shells[order - 1], self.pbc)

    @cached_property
    def bonds(self) -> np.ndarray:
        """Nearest-neighbour bonds, int ``[n_bonds, 2]``, ``i < j``, sorted and unique."""
        return self.bonds_at_order(1)

    @cached_property
    def next_nearest_bonds(self) -> np.ndarray:
        """Second-shell bonds: ``(i, i+2)`` on the chain, diagonals ``(+1, +-1)`` on the square."""
        return self.bonds_at_order(2)

    @property
    def n_bonds(self) -> int:
        """Number of nearest-neighbour bonds, each counted once."""
        return len(self.bonds)

    def _two_colouring(self) -> np.ndarray:
        if self.kind == "honeycomb":
            return self.basis_index.astype(np.int64)
        return (self.coords.sum(axis=1) % 2).astype(np.int64)

    @cached_property
    def is_bipartite(self) -> bool:
        """True when every nearest-neighbour bond joins the two sublattices (checkerboard on the
        chain and square lattice, A/B on the honeycomb lattice; never the triangular lattice)."""
        if self.kind == "triangular":
            return False
        parity = self._two_colouring()
        b = self.bonds
        return bool(np.all(parity[b[:, 0]] != parity[b[:, 1]]))

    @property
    def sublattice(self) -> np.ndarray:
        """Sublattice (0 or 1) of each site, ``[n_sites]``: ``sum(coords) % 2`` on chains and
        square lattices, the basis index on the honeycomb lattice.

        Raises InputError when the lattice is not bipartite (an odd periodic length, a
        triangular lattice).
        """
        if not self.is_bipartite:
            why = "triangles" if self.kind == "triangular" else "odd periodic length"
            raise InputError(
                f"the {self.describe()} is not bipartite ({why}): no sublattice / Marshall sign"
            )
        return self._two_colouring()

    def _site_index(self, cells: np.ndarray, basis: np.ndarray) -> np.ndarray:
        return np.ravel_multi_index(tuple(cells.T), self.extent) * self.n_basis + basis

    def translations(self) -> np.ndarray:
        """All lattice translations as site permutations, int ``[n_translations, n_sites]``.

        Row ``t`` maps site ``i`` to site ``perm[t, i]`` (cell shifted by the ``t``-th vector,
        row-major over shifts; row 0 is the identity). Periodic lattices have ``n_cells``
        translations; open lattices only the identity.
        """
        if not self.pbc:
            return np.arange(self.n_sites, dtype=np.int64)[None, :]
        ext = np.asarray(self.extent)
        perms = []
        for shift in itertools.product(*(range(n) for n in self.extent)):
            target = (self.coords + np.asarray(shift)) % ext
            perms.append(self._site_index(target, self.basis_index))
        return np.asarray(perms, dtype=np.int64)

    def point_group(self) -> np.ndarray:
        """Point-group permutations ``[n_p, n_sites]`` (identity first) of a periodic lattice.

        ``C_4v`` (8) on the square lattice, ``C_6v`` (12) on the triangular and honeycomb
        lattices (about a site, resp. a hexagon centre), the reflection on the chain. Elements
        that coincide on a small torus are kept once. Open lattices: the elements of that point
        group, about the patch's centre, that map its sites onto its sites (``C_4v`` on an
        ``L x L`` square, ``C_2v`` on a triangular or honeycomb rhombus, the reflection on a
        chain).
        """
        if not self.pbc:
            return self._open_point_group()
        geo = self.geometry
        vec = np.asarray(geo.vectors)
        basis = np.asarray(geo.basis)
        inv = np.linalg.inv(vec)
        perms = []
        for mat in geo.point_group_matrices():
            moved = self.positions @ mat.T
            cells = np.zeros_like(self.coords)
            sub = np.full(self.n_sites, -1)
            for b in range(len(basis)):
                frac = (moved - basis[b]) @ inv
                ok = np.all(np.abs(frac - np.round(frac)) < _TOL, axis=1) & (sub < 0)
                cells[ok] = np.round(frac[ok]).astype(np.int64)
                sub[ok] = b
            if np.any(sub < 0):
                raise InputError(f"the point group does not map the {self.describe()} to itself")
            perms.append(self._site_index(cells % np.asarray(self.extent), sub))
        return _unique_rows(np.asarray(perms, dtype=np.int64))

    def _open_point_group(self) -> np.ndarray:
        """The point-group elements (about the centroid) that permute an open patch's sites
        (nearest sites from a k-d tree: memory linear in the sites)."""
        from scipy.spatial import cKDTree

        pos = self.positions
        centre = pos.mean(axis=0)
        tree = cKDTree(pos)
        perms = []
        for mat in self.geometry.point_group_matrices():
            dist, target = tree.query((pos - centre) @ mat.T + centre)
            if np.all(dist < _TOL) and len(np.unique(target)) == self.n_sites:
                perms.append(target)
        return _unique_rows(np.asarray(perms, dtype=np.int64))

    def space_group(self) -> np.ndarray:
        """Translations times point group, ``[n_g, n_sites]``: ``perm[t * n_p + p] =
        T_t(P_p(i))``, identity first, duplicate permutations dropped."""
        t, p = self.translations(), self.point_group()
        return _unique_rows(t[:, p].reshape(-1, self.n_sites))

    def describe(self) -> str:
        """One line, e.g. ``periodic 4x4 square lattice (16 sites, 32 bonds)``."""
        bc = "periodic" if self.pbc else "open"
        if self.kind == "chain":
            return f"{bc} chain of {self.n_sites} sites ({self.n_bonds} bonds)"
        size = "x".join(str(n) for n in self.extent)
        return f"{bc} {size} {self.kind} lattice ({self.n_sites} sites, {self.n_bonds} bonds)"


def _unique_rows(perms: np.ndarray) -> np.ndarray:
    seen: set[bytes] = set()
    keep = []
    for row in perms:
        key = row.tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(row)
    return np.asarray(keep, dtype=np.int64)


def _check_length(length: object) -> None:
    if isinstance(length, bool) or not isinstance(length, int | np.integer):
        raise InputError(f"lattice size must be a positive integer, got {length!r}")
    if length <= 0:
        raise InputError(f"lattice size must be a positive integer, got {length}")


def chain(length: int, pbc: bool = True) -> Lattice:
    """Chain of ``length`` sites; bonds ``(i, i+1)`` (and ``(0, L-1)`` if periodic, L > 2)."""
    _check_length(length)
    return Lattice("chain", (int(length),), pbc)


def square(length: int, pbc: bool = True) -> Lattice:
    """``length x length`` square lattice; site ``i = x * length + y``."""
    _check_length(length)
    return Lattice("square", (int(length), int(length)), pbc)


def triangular(length: int, pbc: bool = True) -> Lattice:
    """``length x length`` triangular lattice (``length^2`` sites, 6 neighbours each)."""
    _check_length(length)
    return Lattice("triangular", (int(length), int(length)), pbc)


def honeycomb(length: int, pbc: bool = True) -> Lattice:
    """``length x length`` cells of the honeycomb lattice (``2 length^2`` sites)."""
    _check_length(length)
    return Lattice("honeycomb", (int(length), int(length)), pbc)


def make_lattice(name: str, size: int, pbc: bool = True) -> Lattice:
    """Lattice by name (``chain``, ``square``, ``triangular``, ``honeycomb``), for the CLI."""
    factories = {"chain": chain, "square": square, "triangular": triangular,
                 "honeycomb": honeycomb}
    if name not in factories:
        raise InputError(f"unknown lattice {name!r}; valid lattices: {', '.join(_KINDS)}")
    return factories[name](size, pbc)


@dataclass(frozen=True)
class EdgeLattice:
    """A lattice given by its edge list alone (ladders, clusters, a NetKet ``Graph``).

    Attributes:
      n_sites: number of sites.
      edges: bonds ``((i, j), ...)`` (stored sorted, ``i < j``, unique; self-bonds refused).
      name: a short label for :meth:`describe`.
      site_positions: optional real-space positions, one tuple per site (for correlations
        against distance); None when unknown.

    Offers what the spin models need (``n_sites``, ``bonds``, ``n_bonds``, ``is_bipartite``,
    ``sublattice`` by two-colouring, ``translations()`` / ``space_group()``: the identity
    only); it has no Bravais geometry, so next-nearest bonds and the momenta of ``S(q)``
    raise InputError.
    """

    n_sites: int
    edges: tuple[tuple[int, int], ...]
    name: str = "graph"
    site_positions: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        _check_length(self.n_sites)
        pairs = set()
        for e in self.edges:
            if len(e) != 2:
                raise InputError(f"an edge joins two sites, got {tuple(e)}")
            i, j = (int(v) for v in e)
            if i == j or min(i, j) < 0 or max(i, j) >= self.n_sites:
                raise InputError(f"edge ({i}, {j}) is not between two distinct sites of "
                                 f"0..{self.n_sites - 1}")
            pairs.add((min(i, j), max(i, j)))
        object.__setattr__(self, "n_sites", int(self.n_sites))
        object.__setattr__(self, "edges", tuple(sorted(pairs)))
        if self.site_positions is not None:
            pos = np.asarray(self.site_positions, dtype=float).reshape(self.n_sites, -1)
            object.__setattr__(self, "site_positions", tuple(tuple(p) for p in pos.tolist()))

    kind: str = field(default="graph", init=False, repr=False)
    pbc: bool = field(default=False, init=False, repr=False)

    @property
    def bonds(self) -> np.ndarray:
        """The edges as int ``[n_bonds, 2]``, ``i < j``, sorted and unique."""
        return np.asarray(self.edges, dtype=np.int64).reshape(-1, 2)

    @property
    def n_bonds(self) -> int:
        """Number of bonds."""
        return len(self.edges)

    @property
    def positions(self) -> np.ndarray:
        """Real-space positions ``[n_sites, d]``; InputError when none were given."""
        if self.site_positions is None:
            raise InputError(f"the {self.describe()} has no site positions")
        return np.asarray(self.site_positions, dtype=float)

    @property
    def ndim(self) -> int:
        """Dimension of the positions (0 without positions)."""
        return 0 if self.site_positions is None else len(self.site_positions[0])

    @property
    def next_nearest_bonds(self) -> np.ndarray:
        """Not defined for an edge list: InputError."""
        raise InputError(f"the {self.describe()} is an edge list: it has no next-nearest bonds")

    @property
    def geometry(self) -> Geometry:
        """Not defined for an edge list (no primitive vectors): InputError."""
        raise InputError(f"the {self.describe()} is an edge list: it has no Bravais lattice "
                         "(no momenta)")

    @cached_property
    def _colouring(self) -> np.ndarray | None:
        colour = np.full(self.n_sites, -1, dtype=np.int64)
        adj: list[list[int]] = [[] for _ in range(self.n_sites)]
        for i, j in self.edges:
            adj[i].append(j)
            adj[j].append(i)
        for root in range(self.n_sites):
            if colour[root] >= 0:
                continue
            colour[root] = 0
            stack = [root]
            while stack:
                i = stack.pop()
                for j in adj[i]:
                    if colour[j] < 0:
                        colour[j] = 1 - colour[i]
                        stack.append(j)
                    elif colour[j] == colour[i]:
                        return None
        return colour

    @property
    def is_bipartite(self) -> bool:
        """True when the graph is two-colourable."""
        return self._colouring is not None

    @property
    def sublattice(self) -> np.ndarray:
        """Two-colouring (0/1, site 0 of each component on 0), ``[n_sites]``; InputError when the
        graph has an odd cycle."""
        if self._colouring is None:
            raise InputError(f"the {self.describe()} is not bipartite (an odd cycle): no "
                             "sublattice / Marshall sign")
        return self._colouring

    def translations(self) -> np.ndarray:
        """The identity only, ``[1, n_sites]`` (no symmetries are inferred from edges)."""
        return np.arange(self.n_sites, dtype=np.int64)[None, :]

    point_group = translations
    space_group = translations

    def describe(self) -> str:
        """One line, e.g. ``graph of 6 sites (7 bonds)``."""
        return f"{self.name} of {self.n_sites} sites ({self.n_bonds} bonds)"


AnyLattice = Lattice | EdgeLattice


def from_edges(edges: Any, n_sites: int | None = None, positions: Any = None,
               name: str = "graph") -> EdgeLattice:
    """An :class:`EdgeLattice` from ``[(i, j), ...]`` (``n_sites``: 1 + the largest index)."""
    pairs = [tuple(int(v) for v in e) for e in np.asarray(edges, dtype=np.int64).reshape(-1, 2)]
    if n_sites is None:
        n_sites = 1 + max((max(p) for p in pairs), default=-1)
    pos = None if positions is None else tuple(map(tuple, np.asarray(positions, float).tolist()))
    return EdgeLattice(int(n_sites), tuple(pairs), name, pos)


def as_lattice(obj: Any) -> AnyLattice:
    """A lattice of this module from itself or from a NetKet graph (duck-typed: ``n_nodes`` and
    ``edges()``; every edge colour counts as a bond).

    A NetKet ``Lattice`` whose edges and positions equal those of a chain, square, triangular
    or honeycomb :class:`Lattice` of the same extent and boundary conditions becomes that
    lattice (with its symmetries and momenta; the site numbers agree, module docstring), and
    an edge list alone whose edges are those of a periodic or open chain that chain; any
    other graph an :class:`EdgeLattice`. Raises InputError naming what is accepted otherwise.
    """
    if isinstance(obj, Lattice | EdgeLattice):
        return obj
    if hasattr(obj, "n_nodes") and callable(getattr(obj, "edges", None)):
        n = int(obj.n_nodes)
        edges = np.asarray(obj.edges(), dtype=np.int64).reshape(-1, 2)
        positions = getattr(obj, "positions", None)
        match = _matching_lattice(obj, n, edges, positions)
        if match is not None:
            return match
        return from_edges(edges, n, positions, "netket graph")
    raise InputError(
        f"expected a lattice (hamiltonians.lattice.chain/square/triangular/honeycomb/from_edges) "
        f"or a NetKet graph (nk.graph.*), got {type(obj).__name__}"
    )


def _matching_lattice(graph: Any, n: int, edges: np.ndarray, positions: Any) -> Lattice | None:
    extent = getattr(graph, "extent", None)
    pbc = getattr(graph, "pbc", None)
    mine = {tuple(sorted(e)) for e in edges.tolist()}
    if extent is None or pbc is None or positions is None:  # edges only: a chain?
        for periodic in (True, False):
            lat = Lattice("chain", (n,), periodic)
            if {tuple(b) for b in lat.bonds.tolist()} == mine:
                return lat
        return None
    pbc_all = np.asarray(pbc, dtype=bool).reshape(-1)
    if not (pbc_all.all() or not pbc_all.any()):
        return None
    ext = tuple(int(e) for e in np.asarray(extent).reshape(-1))
    for kind, geo in GEOMETRIES.items():
        if geo.ndim != len(ext) or len(geo.basis) * int(np.prod(ext)) != n:
            continue
        try:
            lat = Lattice(kind, ext, bool(pbc_all.all()))
        except InputError:
            continue
        same_pos = np.allclose(lat.positions, np.asarray(positions, float), atol=1e-6)
        if same_pos and {tuple(b) for b in lat.bonds.tolist()} == mine:
            return lat
    return None
