"""The discrete-operator protocol shared by spin and molecular Hamiltonians.

A discrete operator ``H`` acting on configurations of a :mod:`nqs.hilbert` space lists, for ONE
configuration ``x``, the configurations ``x'`` with ``<x|H|x'> != 0`` as *flipped sites* of ``x``
and the matrix elements ``<x|H|x'>``:

    sites, mels = operator.flips(x)
    sites: int32 [max_conn, max_flips]   (index n_sites = no flip; the diagonal has no flips)
    mels:  [max_conn]                    (padding rows have mel 0)

``flips`` is a pure JAX function (jit/vmap-able). The local energy of a wavefunction is then

    E_loc(x) = sum_k mels_k psi(x'_k) / psi(x).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax
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


def connected_configurations(operator: DiscreteOperator, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(x_conn [max_conn, n_sites], mels [max_conn])`` for one configuration ``x``."""
    sites, mels = operator.flips(x)
    c = operator.hilbert.flip_constant
    x_conn = jax.vmap(lambda s: apply_flips(x, s, c))(sites)
    return x_conn, mels


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
