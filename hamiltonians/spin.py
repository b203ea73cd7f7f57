"""Spin-1/2 lattice models as discrete operators (see :mod:`nqs.operator`).

Conventions (configurations ``x_i = +-1``, +1 = spin up = sigma^z eigenvalue +1):

* :class:`TransverseFieldIsing`: ``H = -J sum_<ij> sz_i sz_j - h sum_i sx_i`` (Pauli matrices).
* :class:`Heisenberg`: ``H = J sum_<ij> S_i . S_j`` with ``S = sigma / 2``.
* :class:`XXZ`: ``H = J sum_<ij> (Sx_i Sx_j + Sy_i Sy_j + delta Sz_i Sz_j)``.
* :class:`J1J2`: ``H = j1 sum_<ij> S_i . S_j + j2 sum_<<ij>> S_i . S_j``.

``lattice`` is a :class:`hamiltonians.lattice.Lattice`, an edge list
(:func:`hamiltonians.lattice.from_edges`) or a NetKet graph (``nk.graph.Chain(6)``; converted by
:func:`hamiltonians.lattice.as_lattice`).

For the S.S models a bond contributes ``Jz/4 x_i x_j`` to the diagonal and, when
``x_i != x_j``, the off-diagonal element ``Jxy/2`` to the configuration with both spins flipped.
With ``marshall_sign=True`` the basis is rotated by the Marshall sign ``(-1)^(number of up
spins on sublattice 1)``, which flips the sign of the off-diagonal element of every bond that
joins the two sublattices (the J1 bonds of a bipartite lattice, never the J2 bonds).

Heisenberg-type models conserve S^z and work by default in the ``S^z = 0`` sector when the
number of spins is even (``total_sz="auto"``); pass ``total_sz=None`` for the full space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from hamiltonians.lattice import AnyLattice, as_lattice, make_lattice
from nqs.errors import InputError
from nqs.hilbert import SpinHilbert
from nqs.operator import FlipTerms

TotalSz = int | None | Literal["auto"]


def _resolve_total_sz(lattice: AnyLattice, total_sz: TotalSz) -> int | None:
    if total_sz == "auto":
        return 0 if lattice.n_sites % 2 == 0 else None
    if total_sz is not None and (isinstance(total_sz, bool) or not isinstance(total_sz, int)):
        raise InputError(
            f"total_sz must be an integer (sum of x_i), None or 'auto', got {total_sz!r}"
        )
    return total_sz


def _fmt(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class TransverseFieldIsing:
    """``H = -J sum_<ij> sz_i sz_j - h sum_i sx_i`` (Pauli matrices) on ``lattice``.

    ``flips(x)`` returns ``max_conn = 1 + n_sites`` rows: the diagonal ``-J sum_<ij> x_i x_j``
    and one single-spin flip per site with element ``-h``. The same flips as static patterns
    (:class:`nqs.operator.TermOperator`): ``flip_terms`` = one site each, ``term_elements``.
    """

    lattice: AnyLattice
    h: float
    J: float = 1.0

    hilbert: SpinHilbert = field(init=False, repr=False, compare=False)
    max_conn: int = field(init=False, repr=False, compare=False)
    flip_terms: FlipTerms = field(init=False, repr=False, compare=False)

    name: ClassVar[str] = "tfim"
    max_flips: ClassVar[int] = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "lattice", as_lattice(self.lattice))
        n = self.lattice.n_sites
        object.__setattr__(self, "h", float(self.h))
        object.__setattr__(self, "J", float(self.J))
        object.__setattr__(self, "hilbert", SpinHilbert(n))
        object.__setattr__(self, "max_conn", 1 + n)
        sites = np.full((1 + n, 2), n, dtype=np.int32)
        sites[1:, 0] = np.arange(n)
        object.__setattr__(self, "_sites", sites)
        object.__setattr__(self, "_bonds", np.asarray(self.lattice.bonds, dtype=np.int32))
        terms = FlipTerms(np.arange(n, dtype=np.int32)[:, None], np.ones((n, 1)))
        object.__setattr__(self, "flip_terms", terms)

    def flips(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Connected configurations of one ``x`` [n_sites]: sites int32 [1+n, 2], mels [1+n]."""
        diag, off = self.term_elements(x)
        return jnp.asarray(self._sites), jnp.concatenate([diag[None], off])

    def term_elements(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(diagonal, mels [n_sites])`` of one ``x [n_sites]``: a flip of site ``t`` has ``-h``."""
        b = self._bonds
        diag = -self.J * jnp.sum(x[b[:, 0]] * x[b[:, 1]]) if len(b) else jnp.zeros((), x.dtype)
        n = self.lattice.n_sites
        return diag.astype(jnp.float64), jnp.full((n,), -self.h, dtype=jnp.float64)

    def describe(self) -> str:
        """One line: the model, its couplings, the lattice and the sector (for logs and plots)."""
        return (
            f"transverse-field Ising J={_fmt(self.J)}, h={_fmt(self.h)} "
            f"on the {self.lattice.describe()}"
        )

    def to_netket(self) -> Any:
        """The same operator in NetKet (``nk.operator.Ising`` has ``+J sum sz sz``: J -> -J)."""
        import netket as nk

        hi = nk.hilbert.Spin(0.5, self.lattice.n_sites)
        if self.lattice.n_bonds == 0:
            return sum(
                (-self.h * nk.operator.spin.sigmax(hi, i) for i in range(hi.size)),
                nk.operator.LocalOperator(hi),
            )
        graph = nk.graph.Graph(edges=self.lattice.bonds.tolist(), n_nodes=self.lattice.n_sites)
        return nk.operator.Ising(hi, graph, h=self.h, J=-self.J)


class _BondSpinModel:
    """Shared machinery of the S^z-conserving models: ``sum_b [jz_b/4 x_i x_j + jxy_b/2 flip]``.

    Subclasses (frozen dataclasses with fields ``lattice``, ``marshall_sign``, ``total_sz``)
    define ``_bond_terms() -> (bonds [nb, 2], jz [nb], jxy [nb])`` *before* any Marshall sign;
    the sign is applied here to bonds joining the two sublattices.
    """

    lattice: AnyLattice
    marshall_sign: bool
    total_sz: int | None
    hilbert: SpinHilbert
    max_conn: int
    flip_terms: FlipTerms | None

    max_flips: ClassVar[int] = 2
    name: ClassVar[str] = ""

    def _bond_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __post_init__(self) -> None:
        object.__setattr__(self, "lattice", as_lattice(self.lattice))
        tsz = _resolve_total_sz(self.lattice, self.total_sz)
        object.__setattr__(self, "total_sz", tsz)
        object.__setattr__(self, "marshall_sign", bool(self.marshall_sign))
        n = self.lattice.n_sites
        object.__setattr__(self, "hilbert", SpinHilbert(n, tsz))
        bonds, jz, jxy = self._bond_terms()
        bonds = np.asarray(bonds, dtype=np.int32).reshape(-1, 2)
        jxy = np.asarray(jxy, dtype=np.float64).copy()
        if self.marshall_sign:
            if not self.lattice.is_bipartite:
                raise InputError(
                    f"the Marshall sign needs a bipartite lattice; the {self.lattice.describe()} "
                    "is not (odd periodic length)"
                )
            sub = self.lattice.sublattice
            jxy[sub[bonds[:, 0]] != sub[bonds[:, 1]]] *= -1.0
        object.__setattr__(self, "_bonds", bonds)
        object.__setattr__(self, "_jz", np.asarray(jz, dtype=np.float64))
        object.__setattr__(self, "_jxy", jxy)
        object.__setattr__(self, "max_conn", 1 + len(bonds))
        # the exchange of bond (i, j) connects antiparallel spins only: signs (1, -1)
        terms = FlipTerms(bonds, np.tile([1.0, -1.0], (len(bonds), 1))) if len(bonds) else None
        object.__setattr__(self, "flip_terms", terms)

    def flips(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Connected configurations of one ``x`` [n_sites]: sites int32 [1+nb, 2], mels [1+nb].

        Row 0 is the diagonal; row ``1+b`` flips both spins of bond ``b`` when they are
        antiparallel, else it is padding (sites ``n_sites``, element 0).
        """
        n = self.lattice.n_sites
        bonds = jnp.asarray(self._bonds)
        if len(self._bonds) == 0:
            return jnp.full((1, 2), n, jnp.int32), jnp.zeros((1,), jnp.float64)
        diag, off = self.term_elements(x)
        off_sites = jnp.where((off != 0)[:, None], bonds, n).astype(jnp.int32)
        sites = jnp.concatenate([jnp.full((1, 2), n, jnp.int32), off_sites])
        return sites, jnp.concatenate([diag[None], off])

    def term_elements(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(diagonal, mels [nb])`` of one ``x [n_sites]``: bond ``b``'s exchange element
        ``jxy_b / 2`` (Marshall sign included) where its spins are antiparallel, else 0."""
        bonds = self._bonds
        xi, xj = x[bonds[:, 0]], x[bonds[:, 1]]
        diag = 0.25 * jnp.sum(jnp.asarray(self._jz) * xi * xj)
        off = jnp.where(xi != xj, 0.5 * jnp.asarray(self._jxy), 0.0)
        return diag.astype(jnp.float64), off.astype(jnp.float64)

    def _netket_hilbert(self) -> Any:
        import netket as nk

        tsz = self.hilbert.total_sz
        return nk.hilbert.Spin(0.5, self.lattice.n_sites, total_sz=None if tsz is None else tsz / 2)

    def to_netket(self) -> Any:
        """The same matrix as a NetKet ``LocalOperator`` built from 4x4 bond matrices.

        NetKet's local basis order is ``(+1, -1)``, so a bond's basis is ``uu, ud, du, dd``.
        """
        import netket as nk

        hi = self._netket_hilbert()
        op = nk.operator.LocalOperator(hi, dtype=np.float64)
        for (i, j), jz, jxy in zip(self._bonds.tolist(), self._jz, self._jxy, strict=True):
            mat = np.diag([jz / 4, -jz / 4, -jz / 4, jz / 4])
            mat[1, 2] = mat[2, 1] = jxy / 2
            op = op + nk.operator.LocalOperator(hi, [mat], [[i, j]], dtype=np.float64)
        return op

    def _sector(self) -> str:
        tsz = self.hilbert.total_sz
        sector = "full space" if tsz is None else f"S^z={_fmt(tsz / 2)} sector"
        return sector + (", Marshall sign" if self.marshall_sign else "")


@dataclass(frozen=True)
class Heisenberg(_BondSpinModel):
    """``H = J sum_<ij> S_i . S_j`` (``S = sigma/2``) on the nearest-neighbour bonds."""

    lattice: AnyLattice
    J: float = 1.0
    marshall_sign: bool = False
    total_sz: TotalSz = "auto"

    hilbert: SpinHilbert = field(init=False, repr=False, compare=False)
    max_conn: int = field(init=False, repr=False, compare=False)
    flip_terms: FlipTerms | None = field(init=False, repr=False, compare=False)

    name: ClassVar[str] = "heisenberg"

    def _bond_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.lattice.bonds
        return b, np.full(len(b), float(self.J)), np.full(len(b), float(self.J))

    def describe(self) -> str:
        """One line: the model, its couplings, the lattice and the sector (for logs and plots)."""
        return f"Heisenberg J={_fmt(self.J)} on the {self.lattice.describe()}, {self._sector()}"

    def to_netket(self) -> Any:
        """``nk.operator.Heisenberg`` with J/4 (it uses Pauli matrices) and ``sign_rule``."""
        import netket as nk

        if self.lattice.n_bonds == 0:
            return super().to_netket()
        hi = self._netket_hilbert()
        graph = nk.graph.Graph(edges=self.lattice.bonds.tolist(), n_nodes=self.lattice.n_sites)
        return nk.operator.Heisenberg(hi, graph, J=self.J / 4, sign_rule=self.marshall_sign)


@dataclass(frozen=True)
class XXZ(_BondSpinModel):
    """``H = J sum_<ij> (Sx_i Sx_j + Sy_i Sy_j + delta Sz_i Sz_j)`` (``S = sigma/2``)."""

    lattice: AnyLattice
    delta: float = 1.0
    J: float = 1.0
    marshall_sign: bool = False
    total_sz: TotalSz = "auto"

    hilbert: SpinHilbert = field(init=False, repr=False, compare=False)
    max_conn: int = field(init=False, repr=False, compare=False)
    flip_terms: FlipTerms | None = field(init=False, repr=False, compare=False)

    name: ClassVar[str] = "xxz"

    def _bond_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.lattice.bonds
        return b, np.full(len(b), float(self.J * self.delta)), np.full(len(b), float(self.J))

    def describe(self) -> str:
        """One line: the model, its couplings, the lattice and the sector (for logs and plots)."""
        return (
            f"XXZ J={_fmt(self.J)}, delta={_fmt(self.delta)} on the {self.lattice.describe()}, "
            f"{self._sector()}"
        )


@dataclass(frozen=True)
class J1J2(_BondSpinModel):
    """``H = j1 sum_<ij> S_i.S_j + j2 sum_<<ij>> S_i.S_j`` (next-nearest bonds of the lattice)."""

    lattice: AnyLattice
    j2: float = 0.5
    j1: float = 1.0
    marshall_sign: bool = False
    total_sz: TotalSz = "auto"

    hilbert: SpinHilbert = field(init=False, repr=False, compare=False)
    max_conn: int = field(init=False, repr=False, compare=False)
    flip_terms: FlipTerms | None = field(init=False, repr=False, compare=False)

    name: ClassVar[str] = "j1j2"

    def _bond_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b1, b2 = self.lattice.bonds, self.lattice.next_nearest_bonds
        bonds = np.concatenate([b1, b2])
        j = np.concatenate([np.full(len(b1), float(self.j1)), np.full(len(b2), float(self.j2))])
        return bonds, j, j

    def describe(self) -> str:
        """One line: the model, its couplings, the lattice and the sector (for logs and plots)."""
        return (
            f"J1-J2 Heisenberg j1={_fmt(self.j1)}, j2={_fmt(self.j2)} on the "
            f"{self.lattice.describe()}, {self._sector()}"
        )


SpinModel = TransverseFieldIsing | Heisenberg | XXZ | J1J2

MODEL_NAMES = ("tfim", "heisenberg", "xxz", "j1j2")


def make_spin_model(
    model: str,
    lattice: str,
    size: int,
    pbc: bool = True,
    h: float = 1.0,
    j2: float = 0.5,
    delta: float = 1.0,
    marshall_sign: bool = False,
) -> SpinModel:
    """Spin model by name for the CLI: ``model`` in ``tfim, heisenberg, xxz, j1j2`` (``ising``
    is an alias of ``tfim``), ``lattice`` in ``chain, square, triangular, honeycomb`` of linear
    size ``size`` (unit cells per direction; see :mod:`hamiltonians.lattice`)."""
    key = model.lower()
    if key == "ising":
        key = "tfim"
    if key not in MODEL_NAMES:
        raise InputError(f"unknown spin model {model!r}; valid models: {', '.join(MODEL_NAMES)}")
    lat = make_lattice(lattice.lower(), size, pbc)
    if key == "tfim":
        return TransverseFieldIsing(lat, h=h)
    if key == "heisenberg":
        return Heisenberg(lat, marshall_sign=marshall_sign)
    if key == "xxz":
        return XXZ(lat, delta=delta, marshall_sign=marshall_sign)
    return J1J2(lat, j2=j2, marshall_sign=marshall_sign)
