"""The discrete-operator protocol shared by spin and molecular Hamiltonians.

A discrete operator ``H`` acting on configurations of a :mod:`nqs.hilbert` space lists, for ONE
configuration ``x``, the configurations ``x'`` with ``<x|H|x'> != 0`` as *flipped sites* of ``x``
and the matrix elements ``<x|H|x'>``:

    sites, mels = operator.flips(x)
    sites: int32 [max_conn, max_flips]   (index n_sites = no flip; the diagonal has no flips)
    mels:  [max_conn]                    (padding rows have mel 0)

``flips`` is a pure JAX function (jit/vmap-able). The local energy of a wavefunction is then

    E_loc(x) = sum_k mels_k psi(x'_k) / psi(x).

Spin operators may also list their off-diagonal terms as a *static* set of flip patterns
(:class:`FlipTerms`, :class:`TermOperator`): term ``t`` flips the same sites for every ``x``
and connects only the configurations whose spins there have a fixed relative orientation (a
Heisenberg bond: antiparallel spins). Ansatze can then tabulate each pattern once per batch
(:class:`nqs.ansatz.TermUpdates`), and :func:`nqs.local_energy.make_local_energy` uses

    E_loc(x) = diag(x) + sum_t mels_t(x) psi(x'_t) / psi(x).

Observables (:mod:`nqs.state`) are discrete operators as well; one may also carry
*components*: ``n_components = K`` and ``row_components int [max_conn]`` (the component of each
row of ``flips``), giving ``K`` local values per configuration from one set of rows; and
:class:`CombinedComponents` are ``Q`` fixed linear combinations of another operator's
components (the structure factor from the spin correlations), measured from its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from nqs.hilbert import Hilbert, apply_flips


@runtime_checkable
class DiscreteOperator(Protocol):
    """A Hermitian operator on a discrete Hilbert space (see module docstring)."""

    hilbert: Hilbert
    max_conn: int
    max_flips: int

    def flips(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Connected configurations of one ``x`` [n_sites] as flipped sites and matrix elements."""
        ...


class FlipTerms(NamedTuple):
    """The off-diagonal terms of a spin operator as static flip patterns (``x_i = +-1``).

    sites: int32 ``[T, k]``, distinct sites flipped by term ``t`` (no padding).
    signs: float64 ``[T, k]`` of ``+-1`` with ``signs[:, 0] = 1``: term ``t`` connects ``x`` to
      ``x'_t`` (``x`` with ``sites[t]`` flipped) only if ``x[sites[t, q]] = signs[t, q] *
      x[sites[t, 0]]`` for every ``q`` (a Heisenberg bond: ``(1, -1)``, antiparallel spins; a
      transverse field: ``k = 1``, always).
    """

    sites: np.ndarray
    signs: np.ndarray


@runtime_checkable
class TermOperator(Protocol):
    """A spin operator whose off-diagonal part is a static list of flip patterns (optional).

    ``term_elements(x)`` and :meth:`DiscreteOperator.flips` describe the same matrix: the row
    of ``x`` is the diagonal plus ``mels[t]`` at ``x'_t``; ``mels[t]`` is 0 wherever ``x`` does
    not match pattern ``t``'s signs.
    """

    flip_terms: FlipTerms

    def term_elements(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(diagonal element (scalar), mels [T])`` of one configuration ``x [n_sites]``."""
        ...


@dataclass(frozen=True, eq=False)
class CombinedComponents:
    """``Q`` observables that are fixed linear combinations of the ``K`` components ``B_k`` of
    another operator ``base``: ``O_q = offset_q + sum_k matrix[k, q] B_k``.

    Measured from the base's rows (:mod:`nqs.state`): the local values are
    ``offset + B_loc(x) @ matrix``, one pass over the base's connected configurations however
    many combinations there are (``S(q)`` on every momentum from the spin correlations).
    Exact, not approximate: ``O_loc`` is linear in the operator. There is no ``flips``: a row
    of the base contributes to every combination.

    Attributes:
      base: an operator with components (``n_components``, ``row_components``), bound to a
        space or not (then ``on`` binds it).
      matrix: real or complex ``[K, Q]``.
      offset: ``[Q]``, multiples of the identity.
    """

    base: Any
    matrix: np.ndarray
    offset: np.ndarray

    def __post_init__(self) -> None:
        from nqs.errors import InputError

        matrix = np.asarray(self.matrix)
        offset = np.asarray(self.offset).reshape(-1)
        k = int(getattr(self.base, "n_components", -1))
        if matrix.ndim != 2 or matrix.shape[0] != k or offset.shape != (matrix.shape[1],):
            raise InputError(f"a combination of {k} components needs matrix [{k}, Q] and "
                             f"offset [Q], got {matrix.shape} and {offset.shape}")
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "offset", offset)

    @property
    def hilbert(self) -> Hilbert | None:
        """The base's space (None while unbound)."""
        return getattr(self.base, "hilbert", None)

    @property
    def n_components(self) -> int:
        """Number of combinations ``Q``."""
        return int(self.matrix.shape[1])

    @property
    def max_conn(self) -> int:
        """The base's rows per configuration."""
        return int(self.base.max_conn)

    def _with(self, base: Any) -> CombinedComponents:
        return CombinedComponents(base, self.matrix, self.offset)

    def on(self, hilbert: Any) -> CombinedComponents:
        """The base bound to ``hilbert``."""
        return self._with(self.base.on(hilbert))

    def rebind(self, hilbert: Any) -> CombinedComponents:
        """The base on another space of as many sites (its ``rebind``)."""
        return self._with(self.base.rebind(hilbert))

    def marshall_rotated(self, sublattice: Any) -> CombinedComponents:
        """The base in the Marshall-rotated basis (its ``marshall_rotated``; unchanged when it
        has none: an operator written in the state's basis already)."""
        rotate = getattr(self.base, "marshall_rotated", None)
        return self if rotate is None else self._with(rotate(sublattice))


def matches_terms(terms: FlipTerms, x: jax.Array) -> jax.Array:
    """bool ``[T]``: ``x [n_sites]`` has the relative orientation pattern ``t`` needs."""
    xs = x[terms.sites]  # [T, k]
    return jnp.all(xs == terms.signs * xs[:, :1], axis=-1)


def connected_configurations(operator: DiscreteOperator, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(x_conn [max_conn, n_sites], mels [max_conn])`` for one configuration ``x``."""
    sites, mels = operator.flips(x)
    c = operator.hilbert.flip_constant
    x_conn = jax.vmap(lambda s: apply_flips(x, s, c))(sites)
    return x_conn, mels


def split_rows(sites: jax.Array, mels: jax.Array, n_sites: int) -> tuple[jax.Array, jax.Array]:
    """``(needs [..., C], e_diag [...])`` of ``flips`` output ``sites [..., C, k]``, ``mels [..., C]``:
    the rows that need the ansatz (a nonzero element and a flipped site; an all-padding row is
    the diagonal, whose ratio is 1) and the sum of the diagonal rows' elements."""
    diagonal = jnp.all(sites >= n_sites, axis=-1)
    return (mels != 0) & ~diagonal, jnp.sum(jnp.where(diagonal, mels, 0), axis=-1)


def to_sparse(operator: DiscreteOperator, batch_size: int = 4096) -> sp.csr_matrix:
    """The operator as a sparse matrix in the basis ``operator.hilbert.all_states()``.

    Built from ``flips`` itself, so it checks consistency (hermiticity, sector), not physics:
    tests compare it with independent constructions (NetKet operators, PySCF).
    """
    states = operator.hilbert.all_states()
    n = len(states)
    keys = _keys(states)
    index = {k: i for i, k in enumerate(keys)}
    conn_fn = jax.jit(jax.vmap(lambda x: connected_configurations(operator, x)))
    rows, cols, vals = [], [], []
    for start in range(0, n, batch_size):
        xb = states[start : start + batch_size]
        x_conn, mels = (np.asarray(a) for a in conn_fn(xb))
        for r in range(len(xb)):
            nz = np.nonzero(mels[r])[0]
            conn_keys = _keys(x_conn[r, nz])
            for k, m in zip(conn_keys, mels[r, nz], strict=True):
                j = index.get(k)
                if j is None:
                    raise ValueError("operator leaves the Hilbert-space sector")
                rows.append(start + r)
                cols.append(j)
                vals.append(m)
    return sp.csr_matrix((np.asarray(vals), (rows, cols)), shape=(n, n))


def _keys(states: np.ndarray) -> list[bytes]:
    arr = np.ascontiguousarray(np.rint(states).astype(np.int8))
    return [row.tobytes() for row in arr]
