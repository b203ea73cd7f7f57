"""Pauli strings users build: ``sigmax(i)``, ``sigmay(i)``, ``sigmaz(i)`` and their algebra.

    op = 0.5 * sigmax(0) * sigmax(1) + sigmaz(2) - 1j * sigmay(0) * sigmaz(3)

A :class:`PauliSum` is ``sum_t c_t P_t`` with ``P_t`` a product of Pauli matrices on distinct
sites (**Pauli matrices**, eigenvalues +-1, not ``S = sigma/2``; basis as in
``docs/conventions.md``: ``x_i = +1`` is spin up, ``sigma^z x = x``). Sums, products (the
products of two Paulis on one site follow ``sigma_a sigma_b = delta_ab + i eps_abc sigma_c``),
scalar multiples, differences and ``adjoint()`` give new sums.

A sum built without a Hilbert space is bound to one with :meth:`PauliSum.on` (or, with
``hilbert=`` in the constructors); the bound sum is a :class:`nqs.operator.DiscreteOperator`:
``flips(x)`` lists one row per distinct set of flipped sites (the diagonal first) with the
matrix element ``<x|O|x'>`` of the whole sum. In the symplectic form ``P = c i^(n_Y) X^a Z^b``
(``sigma^y = i sigma^x sigma^z``, ``a``: flipped sites, ``b``: sites with a ``Z`` factor),

    <x|P|x'> = c i^(n_Y) (-1)^(|a & b|) prod_{j in b} x_j,    x' = x with the sites a flipped.

In a space with fixed ``S^z`` (``SpinHilbert.total_sz``) a row that would leave the sector has
its element set to 0: the operator is ``P_sector O P_sector``, which has the same expectation
values in every state of the sector (``sigma^x_i`` then has expectation 0).

Multi-component operators: :func:`pauli_components` stacks ``K`` sums into one operator whose
rows carry a component index (``row_components [max_conn]``, ``n_components = K``); its
local values are ``[K]`` (see :mod:`nqs.state`), so ``K`` observables share the same samples and
connected configurations.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hamiltonians.tabled import TabledComponents, TabledOperator
from nqs.errors import InputError
from nqs.hilbert import SpinHilbert
from nqs.operator import FlipTerms, matches_terms

PauliString = tuple[tuple[int, str], ...]
"""A product of Pauli matrices on distinct sites, ``((site, "X" | "Y" | "Z"), ...)`` sorted by
site; ``()`` is the identity."""

# sigma_a sigma_b = delta_ab + i eps_abc sigma_c: (a, b) -> (phase, c)
_PRODUCT: dict[tuple[str, str], tuple[complex, str | None]] = {
    ("X", "X"): (1, None), ("Y", "Y"): (1, None), ("Z", "Z"): (1, None),
    ("X", "Y"): (1j, "Z"), ("Y", "Z"): (1j, "X"), ("Z", "X"): (1j, "Y"),
    ("Y", "X"): (-1j, "Z"), ("Z", "Y"): (-1j, "X"), ("X", "Z"): (-1j, "Y"),
}
_ZERO = 1e-15  # coefficients below this in magnitude are dropped


def _multiply_strings(p: PauliString, q: PauliString) -> tuple[complex, PauliString]:
    """``p q = phase * r`` for two Pauli strings."""
    ops = dict(p)
    phase: complex = 1
    for site, b in q:
        a = ops.pop(site, None)
        if a is None:
            ops[site] = b
            continue
        ph, c = _PRODUCT[(a, b)]
        phase *= ph
        if c is not None:
            ops[site] = c
    return phase, tuple(sorted(ops.items()))


def _as_hilbert(hilbert: SpinHilbert | int | None) -> SpinHilbert | None:
    if hilbert is None or isinstance(hilbert, SpinHilbert):
        return hilbert
    if isinstance(hilbert, numbers.Integral) and not isinstance(hilbert, bool):
        return SpinHilbert(int(hilbert))
    raise InputError(
        f"Pauli operators act on a SpinHilbert or a number of spins, got {type(hilbert).__name__}"
    )


def _merge_hilbert(a: SpinHilbert | None, b: SpinHilbert | None) -> SpinHilbert | None:
    if a is None:
        return b
    if b is None or a == b:
        return a
    raise InputError(f"cannot combine operators on different spaces: {a} and {b}")


@dataclass(frozen=True, eq=False)
class PauliSum(TabledOperator):
    """``sum_t c_t P_t`` (module docstring); a :class:`nqs.operator.DiscreteOperator` once bound.

    Attributes:
      terms: ``{PauliString: coefficient}`` (complex coefficients allowed; a non-Hermitian sum
        has complex expectation values).
      hilbert: the :class:`nqs.hilbert.SpinHilbert` it acts on, or None (bind with :meth:`on`).
    """

    terms: dict[PauliString, complex] = field(default_factory=dict)
    hilbert: SpinHilbert | None = None

    def __post_init__(self) -> None:
        clean = {}
        for string, c in self.terms.items():
            c = complex(c)
            if not np.isfinite(c.real) or not np.isfinite(c.imag):
                raise InputError(f"Pauli coefficient {c} of {string} is not finite")
            if abs(c) > _ZERO:
                clean[tuple(string)] = c
        object.__setattr__(self, "terms", clean)
        object.__setattr__(self, "hilbert", _as_hilbert(self.hilbert))
        if self.hilbert is not None:
            top = self.max_site
            if top >= self.hilbert.n_sites:
                raise InputError(
                    f"the operator acts on site {top}, but the space has {self.hilbert.n_sites} "
                    f"spins (sites 0..{self.hilbert.n_sites - 1})"
                )

    # ---------------------------------------------------------------- algebra

    @property
    def max_site(self) -> int:
        """Largest site index any term acts on (-1 for a multiple of the identity)."""
        return max((s for string in self.terms for s, _ in string), default=-1)

    def on(self, hilbert: SpinHilbert | int) -> PauliSum:
        """The same sum acting on ``hilbert`` (a :class:`SpinHilbert` or a number of spins).

        Raises InputError when a term acts on a site outside the space, or when the sum is
        already bound to another space.
        """
        hilbert = _as_hilbert(hilbert)
        return PauliSum(self.terms, _merge_hilbert(self.hilbert, hilbert))

    def rebind(self, hilbert: SpinHilbert | int) -> PauliSum:
        """The same terms on another space of as many spins (e.g. an ``S^z`` sector)."""
        return PauliSum(self.terms, _as_hilbert(hilbert))

    def marshall_rotated(self, sublattice: Any) -> PauliSum:
        """``U O U^dagger`` in the Marshall-rotated basis of ``sublattice [n_sites]`` (0/1):
        ``U = (-1)^(number of up spins on sublattice 1)``, so every ``sigma^x``, ``sigma^y`` on
        sublattice 1 changes sign. A state of a model with ``marshall_sign=True`` lives in that
        basis (:class:`nqs.state.VariationalState` applies this to Pauli sums itself)."""
        sub = np.asarray(sublattice).reshape(-1)
        if self.max_site >= len(sub):
            raise InputError(f"the operator acts on site {self.max_site}, the sublattice labels "
                             f"cover {len(sub)} sites")
        terms = {s: c * (-1) ** sum(1 for site, o in s if o in "XY" and sub[site] == 1)
                 for s, c in self.terms.items()}
        return PauliSum(terms, self.hilbert)

    def _coerce(self, other: Any) -> PauliSum | None:
        if isinstance(other, PauliSum):
            return other
        if isinstance(other, numbers.Number):
            return PauliSum({(): complex(other)})
        return None

    def __add__(self, other: Any) -> PauliSum:
        other = self._coerce(other)
        if other is None:
            return NotImplemented
        terms = dict(self.terms)
        for s, c in other.terms.items():
            terms[s] = terms.get(s, 0) + c
        return PauliSum(terms, _merge_hilbert(self.hilbert, other.hilbert))

    __radd__ = __add__

    def __neg__(self) -> PauliSum:
        return PauliSum({s: -c for s, c in self.terms.items()}, self.hilbert)

    def __sub__(self, other: Any) -> PauliSum:
        other = self._coerce(other)
        if other is None:
            return NotImplemented
        return self + (-other)

    def __rsub__(self, other: Any) -> PauliSum:
        other = self._coerce(other)
        if other is None:
            return NotImplemented
        return other + (-self)

    def __mul__(self, other: Any) -> PauliSum:
        if isinstance(other, numbers.Number):
            return PauliSum({s: c * complex(other) for s, c in self.terms.items()}, self.hilbert)
        if not isinstance(other, PauliSum):
            return NotImplemented
        terms: dict[PauliString, complex] = {}
        for p, cp in self.terms.items():
            for q, cq in other.terms.items():
                phase, r = _multiply_strings(p, q)
                terms[r] = terms.get(r, 0) + phase * cp * cq
        return PauliSum(terms, _merge_hilbert(self.hilbert, other.hilbert))

    def __rmul__(self, other: Any) -> PauliSum:
        if isinstance(other, numbers.Number):
            return self * other
        return NotImplemented

    def __truediv__(self, other: Any) -> PauliSum:
        if isinstance(other, numbers.Number):
            return self * (1.0 / other)
        return NotImplemented

    def adjoint(self) -> PauliSum:
        """The Hermitian conjugate ``sum_t conj(c_t) P_t`` (Pauli strings are Hermitian)."""
        return PauliSum({s: np.conj(c) for s, c in self.terms.items()}, self.hilbert)

    @property
    def is_hermitian(self) -> bool:
        """All coefficients real (Pauli strings are Hermitian and linearly independent)."""
        return all(abs(c.imag) <= 1e-14 * max(1.0, abs(c)) for c in self.terms.values())

    def __repr__(self) -> str:
        def word(string: PauliString) -> str:
            return "*".join(f"{op}{site}" for site, op in string) or "I"

        body = " + ".join(f"({c:g}) {word(s)}" for s, c in sorted(self.terms.items())) or "0"
        where = "" if self.hilbert is None else f" on {self.hilbert.n_sites} spins"
        return f"PauliSum({body}{where})"

    # ---------------------------------------------------------------- DiscreteOperator

    @cached_property
    def _tables(self) -> _PauliTables:
        return _PauliTables.build([self], self._bound_hilbert())

    def _bound_hilbert(self) -> SpinHilbert:
        if self.hilbert is None:
            raise InputError("the Pauli operator has no Hilbert space: bind it with op.on(hilbert)")
        return self.hilbert




    @property
    def flip_terms(self) -> FlipTerms | None:
        """The off-diagonal rows as static flip patterns (:class:`nqs.operator.TermOperator`,
        the fast local-value path of the RBM), or None when the rows flip different numbers of
        sites."""
        return self._tables.patterns

    def term_elements(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(diagonal, mels [P])`` of one ``x`` for :attr:`flip_terms` (0 off a pattern)."""
        diag, mels = self._tables.term_values(x)
        return diag[0], mels


@dataclass(frozen=True, eq=False)
class PauliComponents(TabledComponents):
    """``K`` Pauli sums on one space as one operator with ``[K]`` local values.

    ``flips(x)`` has one row per distinct (component, flipped sites); ``row_components``
    ``int [max_conn]`` is the component of each row, ``n_components = K``. Built by
    :func:`pauli_components`.
    """

    operators: tuple[PauliSum, ...]
    hilbert: SpinHilbert

    @cached_property
    def _tables(self) -> _PauliTables:
        return _PauliTables.build(list(self.operators), self.hilbert)

    def on(self, hilbert: SpinHilbert | int) -> PauliComponents:
        """Bound to ``hilbert`` (the same space or an equal one)."""
        return pauli_components(list(self.operators), _merge_hilbert(self.hilbert,
                                                                      _as_hilbert(hilbert)))

    def rebind(self, hilbert: SpinHilbert | int) -> PauliComponents:
        """The same sums on another space of as many spins."""
        return pauli_components([op.rebind(hilbert) for op in self.operators], hilbert)

    def marshall_rotated(self, sublattice: Any) -> PauliComponents:
        """Every component in the Marshall-rotated basis (:meth:`PauliSum.marshall_rotated`)."""
        return PauliComponents(tuple(op.marshall_rotated(sublattice) for op in self.operators),
                               self.hilbert)

    def component_images(self, perms: Any) -> np.ndarray | None:
        """``int [G, K]``: the component each site permutation of ``perms [G, n_sites]``
        carries each component to, ``U_g O_k U_g^dagger = O_{images[g, k]}``, or None when
        the permutations do not permute the components
        (:func:`hamiltonians.pauli_symmetry.component_images`)."""
        from hamiltonians.pauli_symmetry import component_images

        return component_images(self.operators, self.hilbert.n_sites, np.asarray(perms))






    @property
    def flip_terms(self) -> FlipTerms | None:
        """The off-diagonal rows as static flip patterns, or None (see :class:`PauliSum`)."""
        return self._tables.patterns

    @property
    def max_matched_terms(self) -> int | None:
        """At most this many patterns of :attr:`flip_terms` match one configuration of the
        space (e.g. ``N^2 / 4`` of the ``N (N - 1) / 2`` exchange patterns of all spin pairs,
        the antiparallel pairs); None without patterns."""
        return self._tables.max_matched

    @property
    def term_components(self) -> np.ndarray | None:
        """Component of every pattern of :attr:`flip_terms`, int ``[P]``."""
        t = self._tables
        return None if t.patterns is None else t.row_components[t.pattern_row]

    def term_values(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(diagonal [K], mels [P])`` of one ``x``: the diagonal of every component and the
        element of every pattern (0 where ``x`` does not have its orientation)."""
        return self._tables.term_values(x)


def pauli_sum(operators: Iterable[PauliSum], hilbert: SpinHilbert | int | None = None
              ) -> PauliSum:
    """``sum_k operators[k]`` in one pass (``a + b + ...`` copies the terms at every ``+``)."""
    terms: dict[PauliString, complex] = {}
    h = _as_hilbert(hilbert)
    for op in operators:
        h = _merge_hilbert(h, op.hilbert)
        for s, c in op.terms.items():
            terms[s] = terms.get(s, 0) + c
    return PauliSum(terms, h)


def pauli_components(operators: Sequence[PauliSum], hilbert: SpinHilbert | int | None = None
                     ) -> PauliComponents:
    """Stack ``K`` sums (bound to ``hilbert``, or to the space they share) into one operator."""
    if len(operators) == 0:
        raise InputError("pauli_components needs at least one operator")
    h = _as_hilbert(hilbert)
    for op in operators:
        if not isinstance(op, PauliSum):
            raise InputError(f"pauli_components takes PauliSums, got {type(op).__name__}")
        h = _merge_hilbert(h, op.hilbert)
    if h is None:
        raise InputError("pauli_components needs a Hilbert space: pass hilbert=")
    return PauliComponents(tuple(op.on(h) for op in operators), h)


@dataclass(frozen=True)
class _PauliTables:
    """Static numpy tables of ``flips`` (module docstring).

    sites [R, k] flipped sites of each row (padding n); row_components [R];
    zmask [T, n] 0/1 Z factors of each term; coeff [T] ``c i^nY (-1)^|a&b|``; term_row [T];
    flip_mask [R, n] (sector test). Rows ``0 .. K-1`` are the diagonals of the K components.

    patterns: the off-diagonal rows as static flip patterns (:class:`nqs.operator.FlipTerms`),
    one per relative orientation of the flipped spins (``2^(k-1)`` for ``k`` flipped sites),
    when every off-diagonal row flips the same number of sites; orientations whose element
    vanishes identically (``S^+ S^-`` structure: all Z factors on the flipped sites) or that
    leave a fixed-``S^z`` sector are dropped. ``pattern_row [P]``: the row of each pattern.
    None when not applicable (then only ``flips`` is offered). ``max_matched``: an upper bound
    on the patterns one configuration of the space matches (:func:`_max_matched`).
    ``pattern_elements [P, 2]``: the element of each pattern when its first flipped spin is up
    / down, when no term has a Z factor off its flipped sites (spin correlations, exchange):
    then :meth:`term_values` needs only the diagonal terms, not every row.
    """

    n_sites: int
    fixed_sz: bool
    sites: np.ndarray
    row_components: np.ndarray
    zmask: np.ndarray
    coeff: np.ndarray
    term_row: np.ndarray
    flip_mask: np.ndarray
    n_components: int = 1
    patterns: FlipTerms | None = None
    pattern_row: np.ndarray | None = None
    max_matched: int | None = None
    pattern_elements: np.ndarray | None = None

    @property
    def max_conn(self) -> int:
        return int(self.sites.shape[0])

    @property
    def max_flips(self) -> int:
        return int(self.sites.shape[1])

    @classmethod
    def build(cls, operators: Iterable[PauliSum], hilbert: SpinHilbert) -> _PauliTables:
        n = hilbert.n_sites
        rows: dict[tuple[int, tuple[int, ...]], int] = {}
        zmask, coeff, term_row = [], [], []
        operators = list(operators)
        for k in range(len(operators)):  # every component gets a diagonal row
            rows[(k, ())] = len(rows)
        for k, op in enumerate(operators):
            for string, c in op.terms.items():
                a = tuple(s for s, o in string if o in "XY")
                b = [s for s, o in string if o in "YZ"]
                n_y = sum(o == "Y" for _, o in string)
                n_ab = sum(o == "Y" for _, o in string)  # |a & b| = number of Y factors
                z = np.zeros(n)
                z[b] = 1.0
                zmask.append(z)
                coeff.append(c * (1j ** n_y) * (-1) ** n_ab)
                term_row.append(rows.setdefault((k, a), len(rows)))
        max_flips = max([len(a) for _, a in rows] + [1])
        sites = np.full((len(rows), max_flips), n, dtype=np.int32)
        flip_mask = np.zeros((len(rows), n))
        comps = np.zeros(len(rows), dtype=np.int32)
        for (k, a), r in rows.items():
            sites[r, : len(a)] = a
            flip_mask[r, list(a)] = 1.0
            comps[r] = k
        coeff = np.asarray(coeff, dtype=np.complex128).reshape(-1)
        if np.all(np.abs(coeff.imag) <= 1e-15 * np.maximum(1.0, np.abs(coeff))):
            coeff = coeff.real.copy()
        zmask = np.asarray(zmask).reshape(-1, n)
        term_row = np.asarray(term_row, dtype=np.int32)
        fixed_sz = hilbert.total_sz is not None
        patterns, pattern_row, elements = _flip_patterns(rows, zmask, coeff, term_row, n,
                                                         fixed_sz)
        return cls(n, fixed_sz, sites, comps, zmask, coeff, term_row, flip_mask,
                   len(operators), patterns, pattern_row,
                   None if patterns is None else _max_matched(patterns, hilbert), elements)

    def term_values(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(diagonal [K], mels [P])`` of one ``x``: pattern ``p``'s element is its row's
        where ``x`` has the pattern's orientation, else 0."""
        if self.pattern_elements is not None:
            return self._tabled_term_values(x)
        _, mels = self.flips(x)
        match = matches_terms(self.patterns, x)
        pm = jnp.where(match, mels[jnp.asarray(self.pattern_row)], 0)
        return mels[: self.n_components], pm

    @cached_property
    def _diagonal_terms(self) -> np.ndarray:
        """Indices of the terms on the diagonal rows ``0 .. K-1`` (no flipped site)."""
        return np.flatnonzero(self.term_row < self.n_components)

    def _tabled_term_values(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """:meth:`term_values` from :attr:`pattern_elements`: the Z signs of the diagonal
        terms only, and each matched pattern's tabulated element."""
        dtype = jnp.complex128 if np.iscomplexobj(self.coeff) else jnp.float64
        d = self._diagonal_terms
        down = (x < 0).astype(jnp.float64)
        sign = 1.0 - 2.0 * jnp.mod(jnp.asarray(self.zmask[d]) @ down, 2.0)
        diag = jax.ops.segment_sum(jnp.asarray(self.coeff[d]) * sign,
                                   jnp.asarray(self.term_row[d]),
                                   num_segments=self.n_components, indices_are_sorted=True)
        elements = jnp.asarray(self.pattern_elements)
        up = x[jnp.asarray(self.patterns.sites[:, 0])] > 0
        pm = jnp.where(up, elements[:, 0], elements[:, 1])
        pm = jnp.where(matches_terms(self.patterns, x), pm, 0)
        return diag.astype(dtype), pm.astype(dtype)

    def flips(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        n_rows = self.max_conn
        dtype = jnp.complex128 if np.iscomplexobj(self.coeff) else jnp.float64
        if len(self.coeff) == 0:
            return jnp.asarray(self.sites), jnp.zeros((n_rows,), dtype)
        down = (x < 0).astype(jnp.float64)
        parity = jnp.asarray(self.zmask) @ down  # number of Z factors on down spins
        sign = 1.0 - 2.0 * jnp.mod(parity, 2.0)
        values = jnp.asarray(self.coeff) * sign
        mels = jax.ops.segment_sum(values, jnp.asarray(self.term_row), num_segments=n_rows)
        if self.fixed_sz:  # rows leaving the S^z sector: 0 (the projected operator)
            stays = jnp.asarray(self.flip_mask) @ x == 0
            mels = jnp.where(stays, mels, 0)
        return jnp.asarray(self.sites), mels.astype(dtype)


def _flip_patterns(rows: dict[tuple[int, tuple[int, ...]], int], zmask: np.ndarray,
                   coeff: np.ndarray, term_row: np.ndarray, n: int, fixed_sz: bool
                   ) -> tuple[FlipTerms | None, np.ndarray | None, np.ndarray | None]:
    """The static flip patterns of :class:`_PauliTables` (see there), their rows, and their
    elements ``[P, 2]`` for the first flipped spin up / down when every pattern's element
    depends on the flipped spins only (else None); or ``(None, None, None)``."""
    flipping = [(a, r) for (_, a), r in rows.items() if a]
    if not flipping or len({len(a) for a, _ in flipping}) != 1:
        return None, None, None
    k = len(flipping[0][0])
    by_row: dict[int, list[int]] = {}
    for t, r in enumerate(term_row):
        by_row.setdefault(int(r), []).append(t)
    sites, signs, pattern_row, elements = [], [], [], []
    all_inside = True
    for a, r in flipping:
        terms = by_row.get(r, [])
        inside = all(set(np.flatnonzero(zmask[t]).tolist()) <= set(a) for t in terms)
        all_inside = all_inside and inside
        for rest in itertools.product((1.0, -1.0), repeat=k - 1):
            orient = np.array((1.0, *rest))
            if fixed_sz and orient.sum() != 0:
                continue  # leaves the sector: the element is masked to 0
            if inside:  # the element depends on the flipped spins only: test both overall signs
                values = []
                for overall in (1.0, -1.0):
                    down = np.zeros(n)
                    down[list(a)] = overall * orient < 0
                    values.append(sum(coeff[t] * (-1.0) ** (zmask[t] @ down) for t in terms))
                if all(abs(v) < 1e-14 for v in values):
                    continue
            sites.append(a)
            signs.append(orient)
            pattern_row.append(r)
            elements.append(values if inside else [0.0, 0.0])
    if not sites:
        return None, None, None
    return (FlipTerms(np.asarray(sites, dtype=np.int32), np.asarray(signs, dtype=np.float64)),
            np.asarray(pattern_row, dtype=np.int32),
            np.asarray(elements, dtype=coeff.dtype).reshape(-1, 2) if all_inside else None)


def _max_matched(patterns: FlipTerms, hilbert: SpinHilbert) -> int:
    """An upper bound on the number of ``patterns`` one configuration of ``hilbert`` matches
    (at most ``P``). Patterns on two sites: a configuration with ``u`` up spins has
    ``u (n - u)`` antiparallel and ``C(u, 2) + C(n - u, 2)`` parallel site pairs, each matched
    by at most as many patterns as the most on one pair with that orientation; the bound is
    the largest over the ``u`` of the space (one, in a fixed-``S^z`` sector). Other patterns:
    ``P``."""
    n_patterns, k = patterns.sites.shape
    if k != 2:
        return n_patterns
    anti = patterns.signs[:, 1] < 0
    pair = np.sort(patterns.sites, axis=1)
    bound = 0
    n = hilbert.n_sites
    ups = range(n + 1) if hilbert.total_sz is None else [(n + int(hilbert.total_sz)) // 2]
    counts = []
    for group in (anti, ~anti):
        if group.any():
            _, mult = np.unique(pair[group], axis=0, return_counts=True)
            counts.append((int(group.sum()), int(mult.max())))
        else:
            counts.append((0, 0))
    (n_anti, m_anti), (n_par, m_par) = counts
    for u in ups:
        par_pairs = u * (u - 1) // 2 + (n - u) * (n - u - 1) // 2
        bound = max(bound, min(n_anti, m_anti * u * (n - u)) + min(n_par, m_par * par_pairs))
    return min(bound, n_patterns)


def _single(op: str, i: int, hilbert: SpinHilbert | int | None) -> PauliSum:
    if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0:
        raise InputError(f"site index must be a non-negative integer, got {i!r}")
    return PauliSum({((int(i), op),): 1.0}, hilbert)


def sigmax(i: int, hilbert: SpinHilbert | int | None = None) -> PauliSum:
    """``sigma^x`` on site ``i`` (``[[0, 1], [1, 0]]``); bound to ``hilbert`` if given."""
    return _single("X", i, hilbert)


def sigmay(i: int, hilbert: SpinHilbert | int | None = None) -> PauliSum:
    """``sigma^y`` on site ``i`` (``[[0, -i], [i, 0]]`` in the basis up, down)."""
    return _single("Y", i, hilbert)


def sigmaz(i: int, hilbert: SpinHilbert | int | None = None) -> PauliSum:
    """``sigma^z`` on site ``i`` (``diag(1, -1)``: ``+1`` on ``x_i = +1``)."""
    return _single("Z", i, hilbert)


def identity(hilbert: SpinHilbert | int | None = None) -> PauliSum:
    """The identity (a scalar times it: ``c * identity()``)."""
    return PauliSum({(): 1.0}, hilbert)


def pauli_matrix(op: PauliSum | PauliComponents, n_sites: int | None = None) -> np.ndarray:
    """Dense ``[2^n, 2^n]`` matrix of an unbound or bound sum in the full space, built from
    Kronecker products of 2x2 Pauli matrices (site 0 most significant, ``x = +1`` first: the
    order of ``SpinHilbert(n).all_states()``). An independent construction, for tests."""
    if isinstance(op, PauliComponents):
        raise InputError("pauli_matrix takes one PauliSum")
    n = n_sites if n_sites is not None else (op.hilbert.n_sites if op.hilbert else op.max_site + 1)
    mats = {"X": np.array([[0, 1], [1, 0]], complex), "Y": np.array([[0, -1j], [1j, 0]]),
            "Z": np.diag([1.0 + 0j, -1.0])}
    out = np.zeros((2**n, 2**n), complex)
    for string, c in op.terms.items():
        ops = dict(string)
        m = np.ones((1, 1), complex)
        for site in range(n):
            m = np.kron(m, mats[ops[site]] if site in ops else np.eye(2))
        out += c * m
    return out
