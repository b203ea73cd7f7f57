"""The complex Jacobian of a holomorphic ansatz, standing in for the real-view Jacobian of SR.

SR works in the real view (complex parameters split into real and imaginary parts, see
:mod:`nqs.optim.flat`) with ``J [2n, P] = sqrt(w_i) [Re dO_i ; Im dO_i]``. When ``log psi`` is a
holomorphic function of complex parameters ``theta`` (the complex RBM), ``d log psi / d Im theta
= i d log psi / d Re theta``, so with the complex centred, weighted Jacobian
``O [n, P_c] = sqrt(w_i) (d log psi(x_i) / d theta - <d log psi / d theta>)`` (``P = 2 P_c``):

    J = [[Re O, -Im O],
         [Im O,  Re O]]           rows (Re, Im) of the samples, columns (Re, Im) of theta.

Then ``J J^T`` and ``J^T J`` have the same block form built from ``K = O O^H`` and
``S_c = O^H O``, and with ``eps = [e_r; e_i]``, ``e = e_r + i e_i``:

    (J J^T + lambda) y = eps   <=>   (K + lambda) z = e,        y = [Re z; Im z]
    J^T y = [Re(O^H z); Im(O^H z)],     J^T eps = [Re(O^H e); Im(O^H e)]

So SR solves an ``n x n`` Hermitian system built from one complex ``n x P_c x n`` product
(half the multiply-adds of the real ``2n x 2P_c x 2n`` one, and the Jacobian itself comes from
one backward pass per sample instead of two). :class:`HolomorphicJacobian` carries ``O``; the SR
transformation (:mod:`nqs.optim.sr`) accepts it wherever it accepts a real ``J``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from nqs.parallel import chunked_map

Params = Any


class HolomorphicJacobian(NamedTuple):
    """``o``: complex ``[n, P_c]``, centred and scaled by ``sqrt(w_i)`` (see module docstring)."""

    o: jax.Array


Jacobian = jax.Array | HolomorphicJacobian


def holomorphic_jacobian(
    log_psi: Callable[[Params, jax.Array], jax.Array],
    params: Params,
    xs: jax.Array,
    weights: jax.Array,
    chunk_size: int | None = None,
    mesh: Any = None,
) -> HolomorphicJacobian:
    """``O [n, P_c]`` for ``log_psi(params, x)`` holomorphic in ``params`` (all leaves complex).

    xs: ``[n, n_sites]`` configurations; weights: ``[n]``, summing to 1. The column order is
    that of ``ravel_pytree(params)``, the order of :func:`nqs.optim.flat.real_flat`.
    """
    flat, unravel = ravel_pytree(params)
    if not jnp.iscomplexobj(flat):
        raise ValueError("holomorphic_jacobian needs complex parameters")

    def row(x: jax.Array) -> jax.Array:
        return jax.grad(lambda v: log_psi(unravel(v), x), holomorphic=True)(flat)

    # Rows split over the devices of ``mesh``, each device ``chunk_size`` rows at a time.
    o = chunked_map(lambda _, x: row(x), chunk_size, mesh)(None, xs)
    o = o - jnp.einsum("i,ik->k", weights.astype(o.real.dtype), o)[None]
    return HolomorphicJacobian(jnp.sqrt(weights)[:, None] * o)


def transpose_dot(jacobian: Jacobian, residuals: jax.Array) -> jax.Array:
    """``J^T eps`` in the real view: real ``[P]`` from residuals ``[2n]``."""
    if isinstance(jacobian, HolomorphicJacobian):
        v = jacobian.o.conj().T @ complex_rows(residuals)
        return jnp.concatenate([v.real, v.imag])
    return jacobian.T @ residuals


def to_real(jacobian: Jacobian) -> jax.Array:
    """The real-view ``J [2n, P]`` (for checks; SR never materialises it)."""
    if not isinstance(jacobian, HolomorphicJacobian):
        return jacobian
    a, b = jacobian.o.real, jacobian.o.imag
    return jnp.block([[a, -b], [b, a]])


def complex_rows(v: jax.Array) -> jax.Array:
    """``[2n]`` real ``[v_r; v_i]`` -> complex ``v_r + i v_i`` ``[n]``."""
    n = v.shape[0] // 2
    return v[:n] + 1j * v[n:]
