"""Hypercubic lattices (chain, square) with nearest and next-nearest neighbour bonds.

Sites are numbered row-major (C order) from their integer coordinates: on the chain site ``i`` is
at ``x = i``; on the ``L x L`` square lattice site ``i = x * L + y`` is at ``(x, y)``.

Bonds are int arrays ``[n_bonds, 2]`` with ``i < j``, no self-bonds and no duplicates (on a
periodic chain of length 2 the bonds ``0-1`` and ``1-0`` across the boundary are one bond).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from nqs.errors import InputError

_KINDS = ("chain", "square")


@dataclass(frozen=True)
class Lattice:
    """A periodic or open chain or square lattice.

    Attributes:
      kind: ``"chain"`` or ``"square"``.
      extent: linear sizes per dimension, ``(L,)`` or ``(L, L)``.
      pbc: periodic boundary conditions in every direction.

    Derived (cached) attributes: ``n_sites``, ``coords`` [n_sites, d], ``bonds`` [n_bonds, 2],
    ``next_nearest_bonds`` [n_nnn, 2] (``i, i+2`` on the chain, the two diagonals on the square
    lattice), ``is_bipartite``, ``sublattice`` [n_sites] (checkerboard ``sum(coords) % 2``).
    Equality and hashing use ``(kind, extent, pbc)`` only, so a lattice can be closed over in jit.
    """

    kind: str
    extent: tuple[int, ...]
    pbc: bool = True

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InputError(f"unknown lattice {self.kind!r}; valid lattices: {', '.join(_KINDS)}")
        expected = 1 if self.kind == "chain" else 2
        if len(self.extent) != expected:
            raise InputError(f"a {self.kind} lattice needs {expected} sizes, got {self.extent}")
        for length in self.extent:
            _check_length(length)
        object.__setattr__(self, "extent", tuple(int(n) for n in self.extent))
        object.__setattr__(self, "pbc", bool(self.pbc))

    @property
    def ndim(self) -> int:
        """Number of dimensions (1 for a chain, 2 for a square lattice)."""
        return len(self.extent)

    @property
    def n_sites(self) -> int:
        """Number of sites, the product of ``extent``."""
        return int(np.prod(self.extent))

    @cached_property
    def coords(self) -> np.ndarray:
        """Integer coordinates of every site, ``[n_sites, ndim]`` (site ``i`` is row ``i``)."""
        return np.stack(np.unravel_index(np.arange(self.n_sites), self.extent), axis=1)

    def _neighbour_pairs(self, shifts: list[tuple[int, ...]]) -> np.ndarray:
        """Unique pairs ``(i < j)`` with ``coords_j = coords_i + shift`` (mod L if periodic)."""
        ext = np.asarray(self.extent)
        pairs = set()
        for shift in shifts:
            target = self.coords + np.asarray(shift)
            if self.pbc:
                target = target % ext
                valid = np.ones(self.n_sites, dtype=bool)
            else:
                valid = np.all((target >= 0) & (target < ext), axis=1)
            src = np.arange(self.n_sites)[valid]
            dst = np.ravel_multi_index(tuple(target[valid].T), self.extent)
            for i, j in zip(src.tolist(), np.atleast_1d(dst).tolist(), strict=True):
                if i != j:
                    pairs.add((min(i, j), max(i, j)))
        return np.asarray(sorted(pairs), dtype=np.int64).reshape(-1, 2)

    @cached_property
    def bonds(self) -> np.ndarray:
        """Nearest-neighbour bonds, int ``[n_bonds, 2]``, ``i < j``, sorted and unique."""
        shifts = [tuple(int(a == d) for a in range(self.ndim)) for d in range(self.ndim)]
        return self._neighbour_pairs(shifts)

    @cached_property
    def next_nearest_bonds(self) -> np.ndarray:
        """Next-nearest bonds: ``(i, i+2)`` on the chain, diagonals ``(+1, +-1)`` on the square."""
        shifts = [(2,)] if self.ndim == 1 else [(1, 1), (1, -1)]
        return self._neighbour_pairs(shifts)

    @property
    def n_bonds(self) -> int:
        """Number of nearest-neighbour bonds, each counted once."""
        return len(self.bonds)

    @cached_property
    def is_bipartite(self) -> bool:
        """True when every nearest-neighbour bond joins the two checkerboard sublattices."""
        parity = self.coords.sum(axis=1) % 2
        b = self.bonds
        return bool(np.all(parity[b[:, 0]] != parity[b[:, 1]]))

    @property
    def sublattice(self) -> np.ndarray:
        """Checkerboard sublattice ``sum(coords) % 2`` (0 or 1) of each site, ``[n_sites]``.

        Raises InputError when the lattice is not bipartite (periodic with an odd length).
        """
        if not self.is_bipartite:
            raise InputError(
                f"the {self.describe()} is not bipartite (odd periodic length): "
                "no sublattice / Marshall sign"
            )
        return (self.coords.sum(axis=1) % 2).astype(np.int64)

    def translations(self) -> np.ndarray:
        """All lattice translations as site permutations, int ``[n_translations, n_sites]``.

        Row ``t`` maps site ``i`` to site ``perm[t, i]`` (coordinates shifted by the ``t``-th
        vector, row-major over shifts; row 0 is the identity). Periodic lattices have
        ``n_sites`` translations; open lattices only the identity.
        """
        if not self.pbc:
            return np.arange(self.n_sites, dtype=np.int64)[None, :]
        ext = np.asarray(self.extent)
        perms = []
        for shift in itertools.product(*(range(n) for n in self.extent)):
            target = (self.coords + np.asarray(shift)) % ext
            perms.append(np.ravel_multi_index(tuple(target.T), self.extent))
        return np.asarray(perms, dtype=np.int64)

    def describe(self) -> str:
        """One line, e.g. ``periodic 4x4 square lattice (16 sites, 32 bonds)``."""
        bc = "periodic" if self.pbc else "open"
        if self.kind == "chain":
            return f"{bc} chain of {self.n_sites} sites ({self.n_bonds} bonds)"
        size = "x".join(str(n) for n in self.extent)
        return f"{bc} {size} {self.kind} lattice ({self.n_sites} sites, {self.n_bonds} bonds)"


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


def make_lattice(name: str, size: int, pbc: bool = True) -> Lattice:
    """Lattice by name (``"chain"`` or ``"square"``), for the CLI."""
    factories = {"chain": chain, "square": square}
    if name not in factories:
        raise InputError(f"unknown lattice {name!r}; valid lattices: {', '.join(_KINDS)}")
    return factories[name](size, pbc)
