"""Fermionic operators users build, and the molecular observables built from them.

    op = create(0) * destroy(3) + 0.5 * number(2)          # spin-orbital indices
    s2 = spin_squared(n_orbitals)                           # <S^2> of a molecular state

A :class:`FermionOperator` is ``sum_t c_t o_t1 o_t2 ... o_tL`` with ``o`` creation
(``a+_p``) or annihilation (``a_p``) operators on spin orbitals, ordered as in
``docs/conventions.md``: site ``p < n_orbitals`` is alpha orbital ``p``, site ``n_orbitals + p``
beta orbital ``p``; a determinant is ``|x> = prod_{p occupied, increasing} a+_p |0>`` (alpha
creators before beta ones), so ``a+_p`` and ``a_p`` acting on ``|x>`` carry the sign
``(-1)^(number of occupied sites q < p)``. Products concatenate the operator strings (no normal
ordering is needed: every string is applied to the determinant as written).

Bound to a :class:`nqs.hilbert.FermionHilbert` (:meth:`FermionOperator.on`) it is a
:class:`nqs.operator.DiscreteOperator`: ``flips(x)`` has one row per term, the determinant
``x'`` the adjoint string reaches from ``x`` and ``<x|O|x'> = c_t * sign * [x' reachable]``.
Terms that change ``N_alpha`` or ``N_beta`` have their rows set to 0 (the operator projected on
the space; the same expectation values in its states). :func:`fermion_components` stacks ``K``
operators into one with ``[K]`` local values (e.g. the 1-RDM).

Molecular observables (``n`` spatial orbitals, ``S = sigma / 2``):

* ``N_alpha = sum_p n_{p alpha}``, ``N_beta``, ``S_z = (N_alpha - N_beta) / 2``;
* ``S^2 = S_- S_+ + S_z (S_z + 1)``, ``S_+ = sum_p a+_{p alpha} a_{p beta}``,
  ``S_- = S_+^dagger``;
* the spin-summed one-particle density matrix ``gamma_pq = sum_s <a+_{ps} a_{qs}>``
  (``n^2`` components; PySCF's ``make_rdm1`` is its transpose, the same for real states) and
  the natural-orbital occupations (its eigenvalues).
"""

from __future__ import annotations

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
from nqs.hilbert import FermionHilbert
from nqs.stats import Stats

LadderString = tuple[tuple[int, bool], ...]
"""``((site, dagger), ...)`` left to right: ``((0, True), (3, False))`` is ``a+_0 a_3``."""

_ZERO = 1e-15


def _merge(a: FermionHilbert | None, b: FermionHilbert | None) -> FermionHilbert | None:
    if a is None:
        return b
    if b is None or a == b:
        return a
    raise InputError(f"cannot combine operators on different spaces: {a} and {b}")


def _merge_orbitals(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None or a == b:
        return a
    raise InputError(f"cannot combine operators built for {a} and {b} orbitals")


@dataclass(frozen=True, eq=False)
class FermionOperator(TabledOperator):
    """``sum_t c_t`` (string of ladder operators) (module docstring).

    Attributes:
      terms: ``{LadderString: coefficient}``.
      hilbert: the :class:`nqs.hilbert.FermionHilbert` it acts on, or None (bind with ``on``).
      n_orbitals: the number of spatial orbitals the operator was built for (the beta block
        starts there), or None for operators written in spin-orbital indices only; binding
        to a space with another number of orbitals is refused.
    """

    terms: dict[LadderString, complex] = field(default_factory=dict)
    hilbert: FermionHilbert | None = None
    n_orbitals: int | None = None

    def __post_init__(self) -> None:
        clean = {}
        for string, c in self.terms.items():
            c = complex(c)
            if not np.isfinite(c.real) or not np.isfinite(c.imag):
                raise InputError(f"fermion operator coefficient {c} is not finite")
            if abs(c) > _ZERO:
                clean[tuple((int(s), bool(d)) for s, d in string)] = c
        object.__setattr__(self, "terms", clean)
        h = self.hilbert
        if h is not None:
            if not isinstance(h, FermionHilbert):
                raise InputError(f"fermion operators act on a FermionHilbert, got "
                                 f"{type(h).__name__}")
            if self.n_orbitals is not None and self.n_orbitals != h.n_orbitals:
                raise InputError(f"the operator was built for {self.n_orbitals} orbitals, the "
                                 f"space has {h.n_orbitals}")
            if self.max_site >= h.n_sites:
                raise InputError(f"the operator acts on spin orbital {self.max_site}, but the "
                                 f"space has {h.n_sites} (sites 0..{h.n_sites - 1})")

    @property
    def max_site(self) -> int:
        """Largest spin-orbital index of any term (-1 for a multiple of the identity)."""
        return max((s for string in self.terms for s, _ in string), default=-1)

    def on(self, hilbert: FermionHilbert) -> FermionOperator:
        """The same operator acting on ``hilbert`` (InputError for sites outside it)."""
        return FermionOperator(self.terms, _merge(self.hilbert, hilbert), self.n_orbitals)

    def rebind(self, hilbert: FermionHilbert) -> FermionOperator:
        """The same terms on another space of the same size (used by :mod:`nqs.state`)."""
        return FermionOperator(self.terms, hilbert, self.n_orbitals)

    def _coerce(self, other: Any) -> FermionOperator | None:
        if isinstance(other, FermionOperator):
            return other
        if isinstance(other, numbers.Number):
            return FermionOperator({(): complex(other)})
        return None

    def __add__(self, other: Any) -> FermionOperator:
        other = self._coerce(other)
        if other is None:
            return NotImplemented
        return fermion_sum([self, other])

    __radd__ = __add__

    def __neg__(self) -> FermionOperator:
        return self * -1.0

    def __sub__(self, other: Any) -> FermionOperator:
        other = self._coerce(other)
        if other is None:
            return NotImplemented
        return self + (-other)

    def __rsub__(self, other: Any) -> FermionOperator:
        other = self._coerce(other)
        if other is None:
            return NotImplemented
        return other + (-self)

    def __mul__(self, other: Any) -> FermionOperator:
        if isinstance(other, numbers.Number):
            return FermionOperator({s: c * complex(other) for s, c in self.terms.items()},
                                   self.hilbert, self.n_orbitals)
        if not isinstance(other, FermionOperator):
            return NotImplemented
        terms: dict[LadderString, complex] = {}
        for p, cp in self.terms.items():
            for q, cq in other.terms.items():
                terms[p + q] = terms.get(p + q, 0) + cp * cq
        return FermionOperator(terms, _merge(self.hilbert, other.hilbert),
                               _merge_orbitals(self.n_orbitals, other.n_orbitals))

    def __rmul__(self, other: Any) -> FermionOperator:
        if isinstance(other, numbers.Number):
            return self * other
        return NotImplemented

    def __truediv__(self, other: Any) -> FermionOperator:
        if isinstance(other, numbers.Number):
            return self * (1.0 / other)
        return NotImplemented

    def adjoint(self) -> FermionOperator:
        """``sum_t conj(c_t) o_tL^dagger ... o_t1^dagger``."""
        terms = {tuple((s, not d) for s, d in reversed(string)): np.conj(c)
                 for string, c in self.terms.items()}
        return FermionOperator(terms, self.hilbert, self.n_orbitals)

    def __repr__(self) -> str:
        def word(string: LadderString) -> str:
            return " ".join(f"a+{s}" if d else f"a{s}" for s, d in string) or "I"

        body = " + ".join(f"({c:g}) {word(s)}" for s, c in self.terms.items()) or "0"
        return f"FermionOperator({body})"

    # ---------------------------------------------------------------- DiscreteOperator

    @cached_property
    def _tables(self) -> _LadderTables:
        if self.hilbert is None:
            raise InputError("the fermion operator has no Hilbert space: bind it with "
                             "op.on(hilbert)")
        return _LadderTables.build([self], self.hilbert)





@dataclass(frozen=True, eq=False)
class FermionComponents(TabledComponents):
    """``K`` fermion operators on one space as one operator with ``[K]`` local values
    (``row_components [max_conn]``, ``n_components``); built by :func:`fermion_components`."""

    operators: tuple[FermionOperator, ...]
    hilbert: FermionHilbert

    @cached_property
    def _tables(self) -> _LadderTables:
        return _LadderTables.build(list(self.operators), self.hilbert)

    def rebind(self, hilbert: FermionHilbert) -> FermionComponents:
        """The same operators on another space of the same size."""
        return fermion_components([op.rebind(hilbert) for op in self.operators], hilbert)

    def on(self, hilbert: FermionHilbert) -> FermionComponents:
        """Bound to ``hilbert`` (the same space or an equal one)."""
        return fermion_components(list(self.operators), _merge(self.hilbert, hilbert))







def fermion_sum(operators: Iterable[FermionOperator]) -> FermionOperator:
    """``sum_k operators[k]`` in one pass."""
    terms: dict[LadderString, complex] = {}
    h, n_orb = None, None
    for op in operators:
        h, n_orb = _merge(h, op.hilbert), _merge_orbitals(n_orb, op.n_orbitals)
        for s, c in op.terms.items():
            terms[s] = terms.get(s, 0) + c
    return FermionOperator(terms, h, n_orb)


def fermion_components(operators: Sequence[FermionOperator],
                       hilbert: FermionHilbert | None = None) -> FermionComponents:
    """Stack ``K`` operators (bound to ``hilbert`` or the space they share) into one."""
    if len(operators) == 0:
        raise InputError("fermion_components needs at least one operator")
    h = hilbert
    for op in operators:
        if not isinstance(op, FermionOperator):
            raise InputError(f"fermion_components takes FermionOperators, got "
                             f"{type(op).__name__}")
        h = _merge(h, op.hilbert)
    if h is None:
        # unbound: kept as a template, bound by nqs.state (bind_operator -> rebind)
        return _UnboundComponents(tuple(operators))
    return FermionComponents(tuple(op.on(h) for op in operators), h)


@dataclass(frozen=True, eq=False)
class _UnboundComponents:
    """Components not yet bound to a space (``hilbert`` None; ``on`` binds them)."""

    operators: tuple[FermionOperator, ...]
    hilbert: None = None

    @property
    def n_components(self) -> int:
        return len(self.operators)

    def on(self, hilbert: FermionHilbert) -> FermionComponents:
        return fermion_components(list(self.operators), hilbert)

    def flips(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        raise InputError("the fermion operator has no Hilbert space: bind it with "
                         "op.on(hilbert)")


@dataclass(frozen=True)
class _LadderTables:
    """Static tables: per term (row) the ladder string padded to ``L`` (site -1 = none), with
    the daggers of the ADJOINT string applied left to right; the distinct touched sites."""

    n_orbitals: int
    n_alpha: int
    n_beta: int
    op_sites: np.ndarray  # [R, L] int, -1 padding
    op_create: np.ndarray  # [R, L] bool: the adjoint's operator creates
    touched: np.ndarray  # [R, U] int32, padding n_sites
    coeff: np.ndarray  # [R]
    row_components: np.ndarray  # [R]

    @property
    def max_conn(self) -> int:
        return int(self.touched.shape[0])

    @property
    def max_flips(self) -> int:
        return int(self.touched.shape[1])

    @classmethod
    def build(cls, operators: list[FermionOperator], hilbert: FermionHilbert) -> _LadderTables:
        n_sites = hilbert.n_sites
        rows = [(k, s, c) for k, op in enumerate(operators) for s, c in op.terms.items()]
        if not rows:  # the zero operator: one padding row
            rows = [(0, (), 0.0)]
        length = max(1, max(len(s) for _, s, _ in rows))
        n_touch = max(1, max(len({p for p, _ in s}) for _, s, _ in rows))
        op_sites = np.full((len(rows), length), -1, dtype=np.int32)
        op_create = np.zeros((len(rows), length), dtype=bool)
        touched = np.full((len(rows), n_touch), n_sites, dtype=np.int32)
        for r, (_, string, _) in enumerate(rows):
            # O = c o_1 ... o_L; O^dagger |x> applies o_1^dagger first, then o_2^dagger, ...
            for pos, (site, dagger) in enumerate(string):
                op_sites[r, pos] = site
                op_create[r, pos] = not dagger
            sites = sorted({p for p, _ in string})
            touched[r, : len(sites)] = sites
        coeff = np.asarray([c for _, _, c in rows], dtype=np.complex128)
        if np.all(coeff.imag == 0):
            coeff = coeff.real.copy()
        comps = np.asarray([k for k, _, _ in rows], dtype=np.int32)
        return cls(hilbert.n_orbitals, hilbert.n_alpha, hilbert.n_beta, op_sites, op_create,
                   touched, coeff, comps)

    def flips(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        n_sites = 2 * self.n_orbitals
        n_rows = self.max_conn
        occ = jnp.broadcast_to((x > 0.5).astype(jnp.int32), (n_rows, n_sites))
        ok = jnp.ones((n_rows,), bool)
        parity = jnp.zeros((n_rows,), jnp.int32)
        below = jnp.arange(n_sites)[None, :]
        for pos in range(self.op_sites.shape[1]):
            site = jnp.asarray(self.op_sites[:, pos])
            create = jnp.asarray(self.op_create[:, pos])
            active = site >= 0
            s = jnp.where(active, site, 0)
            here = jnp.take_along_axis(occ, s[:, None], axis=1)[:, 0]
            ok = ok & (~active | jnp.where(create, here == 0, here == 1))
            before = jnp.sum(jnp.where(below < s[:, None], occ, 0), axis=1)
            parity = parity + jnp.where(active, before, 0)
            new = jnp.where(create, 1, 0)
            occ = jnp.where(active[:, None] & (below == s[:, None]), new[:, None], occ)
        n = self.n_orbitals
        in_space = (jnp.sum(occ[:, :n], axis=1) == self.n_alpha) & (
            jnp.sum(occ[:, n:], axis=1) == self.n_beta)
        sign = 1 - 2 * (parity % 2)
        coeff = jnp.asarray(self.coeff)
        mels = jnp.where(ok & in_space, coeff * sign, jnp.zeros((), coeff.dtype))
        touched = jnp.asarray(self.touched)
        x_int = (x > 0.5).astype(jnp.int32)
        safe = jnp.minimum(touched, n_sites - 1)
        changed = (touched < n_sites) & (
            jnp.take_along_axis(occ, safe, axis=1) != x_int[safe])
        sites = jnp.where(changed & (mels != 0)[:, None], touched, n_sites).astype(jnp.int32)
        return sites, mels


# ------------------------------------------------------------------ builders


def _site(p: int) -> int:
    if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 0:
        raise InputError(f"spin-orbital index must be a non-negative integer, got {p!r}")
    return int(p)


def create(p: int) -> FermionOperator:
    """``a+_p`` on spin orbital ``p``."""
    return FermionOperator({((_site(p), True),): 1.0})


def destroy(p: int) -> FermionOperator:
    """``a_p`` on spin orbital ``p``."""
    return FermionOperator({((_site(p), False),): 1.0})


def number(p: int) -> FermionOperator:
    """``n_p = a+_p a_p``."""
    return FermionOperator({((_site(p), True), (_site(p), False)): 1.0})


def _orbitals(space: int | FermionHilbert) -> tuple[int, FermionHilbert | None]:
    if isinstance(space, FermionHilbert):
        return space.n_orbitals, space
    if isinstance(space, numbers.Integral) and not isinstance(space, bool) and space > 0:
        return int(space), None
    raise InputError(f"expected a number of orbitals or a FermionHilbert, got {space!r}")


def _finish(op: FermionOperator, n: int, hilbert: FermionHilbert | None) -> FermionOperator:
    op = FermionOperator(op.terms, None, n)
    return op if hilbert is None else op.on(hilbert)


def number_alpha(space: int | FermionHilbert) -> FermionOperator:
    """``N_alpha = sum_p n_{p alpha}`` (sites ``0 .. n-1``)."""
    n, h = _orbitals(space)
    return _finish(fermion_sum(number(p) for p in range(n)), n, h)


def number_beta(space: int | FermionHilbert) -> FermionOperator:
    """``N_beta = sum_p n_{p beta}`` (sites ``n .. 2n-1``)."""
    n, h = _orbitals(space)
    return _finish(fermion_sum(number(n + p) for p in range(n)), n, h)


def spin_z(space: int | FermionHilbert) -> FermionOperator:
    """``S_z = (N_alpha - N_beta) / 2``."""
    n, h = _orbitals(space)
    return _finish(0.5 * (number_alpha(n) - number_beta(n)), n, h)


def spin_raising(space: int | FermionHilbert) -> FermionOperator:
    """``S_+ = sum_p a+_{p alpha} a_{p beta}`` (leaves a fixed-``N_alpha`` space: use it in
    products such as ``S_- S_+``)."""
    n, h = _orbitals(space)
    return _finish(fermion_sum(create(p) * destroy(n + p) for p in range(n)), n, h)


def spin_squared(space: int | FermionHilbert) -> FermionOperator:
    """``S^2 = S_- S_+ + S_z^2 + S_z`` (``n^2 + 4 n^2 + 2 n`` terms)."""
    n, h = _orbitals(space)
    sp = spin_raising(n)
    sz = spin_z(n)
    return _finish(fermion_sum([sp.adjoint() * sp, sz * sz, sz]), n, h)


def one_rdm_element(p: int, q: int, space: int | FermionHilbert) -> FermionOperator:
    """``E_pq = sum_s a+_{ps} a_{qs}`` (spatial orbitals ``p``, ``q``)."""
    n, h = _orbitals(space)
    for r in (p, q):
        if isinstance(r, bool) or not isinstance(r, numbers.Integral) or not 0 <= r < n:
            raise InputError(f"orbital index {r!r} is outside 0..{n - 1}")
    op = create(p) * destroy(q) + create(n + p) * destroy(n + q)
    return _finish(op, n, h)


def one_rdm_operator(space: int | FermionHilbert) -> FermionComponents:
    """All ``E_pq`` as one operator with ``n^2`` components, row-major ``k = p n + q``."""
    n, h = _orbitals(space)
    ops = [one_rdm_element(p, q, n) for p in range(n) for q in range(n)]
    return fermion_components(ops, h)


def one_rdm(stats: Stats, n_orbitals: int) -> tuple[np.ndarray, np.ndarray]:
    """``(gamma [n, n], error [n, n])`` from the ``Stats`` of :func:`one_rdm_operator`,
    ``gamma_pq = sum_s <a+_{ps} a_{qs}>``."""
    mean = np.asarray(stats.mean)
    if mean.shape != (n_orbitals**2,):
        raise InputError(f"expected the statistics of {n_orbitals**2} elements, got "
                         f"{mean.shape}")
    gamma = mean.reshape(n_orbitals, n_orbitals)
    if np.all(np.abs(np.imag(gamma)) < 1e-12):
        gamma = np.real(gamma)
    return gamma, np.asarray(stats.error_of_mean).reshape(n_orbitals, n_orbitals)


def natural_occupations(gamma: np.ndarray) -> np.ndarray:
    """Eigenvalues of the Hermitian part of the 1-RDM, descending (they sum to N)."""
    g = np.asarray(gamma)
    return np.linalg.eigvalsh(0.5 * (g + g.conj().T))[::-1]
