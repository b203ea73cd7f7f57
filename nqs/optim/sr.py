"""Stochastic reconfiguration (SR) as optax transformations.

With real parameters theta (complex ones split into real and imaginary parts), samples x_i with
weights w_i, centred log-derivatives dO_i = d log psi(x_i)/d theta - <d log psi/d theta> and
centred local energies e_i = E_loc(x_i) - <E_loc>, the engine passes

    jacobian  J   [2n, P] = sqrt(w_i) [Re dO_i ; Im dO_i]
    residuals eps [2n]    = 2 sqrt(w_i) [Re e_i ; Im e_i]

so that the energy gradient is g = J^T eps and the quantum geometric tensor is S = J^T J
(= Re <dO^* dO>). SR replaces the gradient by the natural gradient

    dense:  delta = (S + lambda I)^-1 g                         (P x P solve)
    minSR:  delta = J^T (J J^T + lambda I)^-1 eps               (2n x 2n solve, Chen & Heyl 2023)

Without residuals (exact summation with the metric built from only the K largest-weight
configurations, ``Optimizer.metric_states``), g is the exact gradient and not ``J^T eps``;
``(J^T J + lambda)^-1 g`` is then solved through the 2K x 2K system (Woodbury identity).

which are equal (push-through identity); minSR is cheaper when P > 2n. The update is then
scaled by the next transformation in the chain, e.g.
``optax.chain(sr(diag_shift=1e-3), optax.sgd(0.05))``.

For a holomorphic ansatz the engine passes a :class:`nqs.optim.jacobian.HolomorphicJacobian`
(the complex ``O [n, P_c]``) instead of ``J``; both modes then solve the equivalent complex
Hermitian system (``n x n`` or ``P_c x P_c``) and return the same real-view update. For an
ansatz with factored log-derivatives (the RBM) it passes a
:class:`nqs.optim.jacobian.StructuredJacobian`: minSR then builds the ``n x n`` kernel and
``O^H z`` from the factors (:func:`natural_gradient_minsr_structured`), never forming ``O``;
dense SR materialises ``O`` from the factors. For an amplitude-phase ansatz (the autoregressive
state) it passes a :class:`nqs.optim.jacobian.SplitJacobian`: minSR then solves the amplitude
and phase blocks apart (the real view's ``J J^T`` is block diagonal), the same update for a
quarter of the kernel's cost.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nqs.optim.flat import real_flat
from nqs.optim.jacobian import (
    HolomorphicJacobian,
    SplitJacobian,
    StructuredJacobian,
    complex_rows,
)

SRMode = Literal["dense", "minsr", "auto"]


class SRState(NamedTuple):
    """SR keeps no state: the transformation is a pure function of its inputs."""


def sr(diag_shift: float = 1e-3, mode: SRMode = "auto", param_chunk: int | None = None
       ) -> optax.GradientTransformationExtraArgs:
    """Natural-gradient preconditioner; needs ``jacobian`` and ``residuals`` as extra arguments.

    Args:
      diag_shift: lambda, added to the diagonal of S (dense) or of J J^T (minSR); an extra
        argument ``shift_scale`` (a scalar, the guard's adaptive shift) multiplies it.
      mode: "dense", "minsr", or "auto" (minSR when parameters outnumber the rows of J).
      param_chunk: minSR on a dense Jacobian builds ``J J^T`` and ``J^T y`` from blocks of this
        many parameter columns (:func:`minsr_kernel`), bounding the temporaries by
        ``rows x param_chunk``; None: one product.
    """
    if param_chunk is not None and param_chunk < 1:
        raise ValueError(f"param_chunk must be a positive integer, got {param_chunk}")
    if diag_shift < 0:
        raise ValueError(f"diag_shift must be >= 0, got {diag_shift}")
    if mode not in ("dense", "minsr", "auto"):
        raise ValueError(f"unknown SR mode {mode!r}")

    def init_fn(params: optax.Params) -> SRState:
        del params
        return SRState()

    def update_fn(updates, state, params=None, *, jacobian=None, residuals=None,
                  shift_scale=None, **extra):
        del params, extra
        # the guard's adaptive shift (Levenberg-Marquardt, nqs.guard.Guard) scales lambda
        shift = diag_shift if shift_scale is None else diag_shift * shift_scale
        if jacobian is None:
            raise ValueError("sr() needs the per-sample jacobian (and residuals) as extra args")
        grad, unflatten = real_flat(updates)
        if isinstance(jacobian, StructuredJacobian):
            n_rows, n_params = jacobian.n_rows, grad.shape[0] // (1 if jacobian.real else 2)
            if residuals is not None and (
                mode == "minsr" or (mode == "auto" and n_params > n_rows)
            ):
                d = natural_gradient_minsr_structured(jacobian, residuals, shift)
                return unflatten(jacobian.real_view(d).astype(grad.dtype)), state
            jacobian = jacobian.dense()  # dense SR needs the P x P matrix anyway
        if isinstance(jacobian, SplitJacobian):
            if residuals is not None and (mode == "minsr" or (
                    mode == "auto" and grad.shape[0] > 2 * jacobian.amplitude.shape[0])):
                n = jacobian.amplitude.shape[0]  # two independent blocks (jacobian module)
                delta = jacobian.assemble(
                    natural_gradient_minsr(jacobian.amplitude, residuals[:n], shift,
                                           param_chunk),
                    natural_gradient_minsr(jacobian.phase, residuals[n:], shift, param_chunk))
                return unflatten(delta.astype(grad.dtype)), state
            jacobian = jacobian.dense()
        if residuals is None:
            # J spans only part of the samples (a metric from the largest-weight configurations
            # with the exact gradient): g is not J^T eps, so solve with g itself.
            if isinstance(jacobian, HolomorphicJacobian):
                d = natural_gradient_dense_holomorphic(jacobian.o, grad, shift)
                delta = jnp.concatenate([d.real, d.imag])
            else:
                delta = natural_gradient_woodbury(jacobian, grad, shift)
            return unflatten(delta.astype(grad.dtype)), state
        if isinstance(jacobian, HolomorphicJacobian):
            n_rows, n_params = jacobian.o.shape  # the real view has twice both
            use_minsr = mode == "minsr" or (mode == "auto" and n_params > n_rows)
            if use_minsr:
                d = natural_gradient_minsr_holomorphic(jacobian.o, residuals, shift,
                                                       param_chunk)
            else:
                d = natural_gradient_dense_holomorphic(jacobian.o, grad, shift)
            delta = jnp.concatenate([d.real, d.imag])
            return unflatten(delta.astype(grad.dtype)), state
        n_rows, n_params = jacobian.shape
        use_minsr = mode == "minsr" or (mode == "auto" and n_params > n_rows)
        if use_minsr:
            delta = natural_gradient_minsr(jacobian, residuals, shift, param_chunk)
        else:
            delta = natural_gradient_dense(jacobian, grad, shift)
        return unflatten(delta.astype(grad.dtype)), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def natural_gradient_dense(jacobian: jax.Array, grad: jax.Array, diag_shift: float) -> jax.Array:
    """``(J^T J + lambda I)^-1 g`` by a Cholesky solve. jacobian [R, P], grad [P] -> [P]."""
    s = jacobian.T @ jacobian
    s = s + diag_shift * jnp.eye(s.shape[0], dtype=s.dtype)
    return _spd_solve(s, grad)


def natural_gradient_minsr(
    jacobian: jax.Array, residuals: jax.Array, diag_shift: float,
    param_chunk: int | None = None,
) -> jax.Array:
    """``J^T (J J^T + lambda I)^-1 eps``. jacobian [R, P], residuals [R] -> [P].

    ``param_chunk``: build ``J J^T`` and ``J^T y`` from column blocks (:func:`minsr_kernel`).
    """
    t = minsr_kernel(jacobian, param_chunk)
    t = t + diag_shift * jnp.eye(t.shape[0], dtype=t.dtype)
    return conj_transpose_dot(jacobian, _spd_solve(t, residuals), param_chunk)


def minsr_kernel(o: jax.Array, param_chunk: int | None = None) -> jax.Array:
    """``T = O O^H`` ``[R, R]`` of a (real or complex) ``O [R, P]``, summed over blocks of
    ``param_chunk`` columns sliced from ``O`` in a loop (temporaries of one block, ``R x
    param_chunk``, never a copy of ``O``); None: one product. Equal to rounding."""
    if param_chunk is None or param_chunk >= o.shape[1]:
        return o @ o.conj().T
    n_full, rest = divmod(o.shape[1], param_chunk)

    def add(b: int, t: jax.Array) -> jax.Array:
        block = jax.lax.dynamic_slice_in_dim(o, b * param_chunk, param_chunk, axis=1)
        return t + block @ block.conj().T

    t = jax.lax.fori_loop(0, n_full, add, jnp.zeros((o.shape[0], o.shape[0]), dtype=o.dtype))
    if rest:
        tail = o[:, n_full * param_chunk:]
        t = t + tail @ tail.conj().T
    return t


def conj_transpose_dot(o: jax.Array, y: jax.Array, param_chunk: int | None = None
                       ) -> jax.Array:
    """``O^H y`` ``[P]`` for ``O [R, P]`` and ``y [R]``, one column block of ``param_chunk``
    at a time (see :func:`minsr_kernel`); None: one product."""
    if param_chunk is None or param_chunk >= o.shape[1]:
        return o.conj().T @ y
    n_full, rest = divmod(o.shape[1], param_chunk)
    dtype = jnp.result_type(o.dtype, y.dtype)

    def put(b: int, out: jax.Array) -> jax.Array:
        block = jax.lax.dynamic_slice_in_dim(o, b * param_chunk, param_chunk, axis=1)
        return jax.lax.dynamic_update_slice_in_dim(out, (block.conj().T @ y).astype(dtype),
                                                   b * param_chunk, axis=0)

    out = jax.lax.fori_loop(0, n_full, put, jnp.zeros(o.shape[1], dtype=dtype))
    if rest:
        out = out.at[n_full * param_chunk:].set(o[:, n_full * param_chunk:].conj().T @ y)
    return out


def natural_gradient_spring(
    jacobian: jax.Array, residuals: jax.Array, previous: jax.Array, diag_shift: float,
    momentum: float,
) -> jax.Array:
    """SPRING (Goldshlager, Abrahamsen & Lin, J. Comput. Phys. 2024): minSR with momentum,

        phi = mu phi_prev + J^T (J J^T + lambda I)^-1 (eps - mu J phi_prev),

    the minimizer of ``|J phi - eps|^2 + lambda |phi - mu phi_prev|^2`` (``mu = 0``: minSR).
    jacobian [R, P], residuals [R], previous [P] -> [P].
    """
    shifted = residuals - momentum * (jacobian @ previous)
    return momentum * previous + natural_gradient_minsr(jacobian, shifted, diag_shift)


def natural_gradient_woodbury(
    jacobian: jax.Array, grad: jax.Array, diag_shift: float
) -> jax.Array:
    """``(J^T J + lambda I)^-1 g`` through the R x R system (Woodbury), for any ``g``:

        (J^T J + lambda)^-1 g = (g - J^T (J J^T + lambda)^-1 J g) / lambda

    jacobian [R, P], grad [P] -> [P]; needs lambda > 0. Cheaper than the dense solve when
    P > R; unlike minSR it does not assume ``g = J^T eps``.
    """
    t = jacobian @ jacobian.T
    t = t + diag_shift * jnp.eye(t.shape[0], dtype=t.dtype)
    return (grad - jacobian.T @ _spd_solve(t, jacobian @ grad)) / diag_shift


def natural_gradient_minsr_holomorphic(
    o: jax.Array, residuals: jax.Array, diag_shift: float, param_chunk: int | None = None
) -> jax.Array:
    """minSR with the complex Jacobian: ``O^H (O O^H + lambda)^-1 e``, complex ``[P_c]``.

    o: complex ``[n, P_c]``; residuals: real ``[2n]`` (``[Re e; Im e]``). Equal to
    :func:`natural_gradient_minsr` on the real view ``[[Re O, -Im O], [Im O, Re O]]`` written
    as ``Re + i Im`` (see :mod:`nqs.optim.jacobian`). ``param_chunk``: build ``O O^H`` and
    ``O^H y`` from column blocks (:func:`minsr_kernel`).
    """
    k = minsr_kernel(o, param_chunk)
    k = k + diag_shift * jnp.eye(k.shape[0], dtype=k.dtype)
    return conj_transpose_dot(o, _spd_solve(k, complex_rows(residuals)), param_chunk)


def natural_gradient_minsr_structured(
    jacobian: StructuredJacobian, residuals: jax.Array, diag_shift: float
) -> jax.Array:
    """minSR from factored log-derivatives: ``O^H (K + lambda)^-1 e``, complex ``[P_c]``.

    residuals: real ``[2n]`` (``[Re e; Im e]``). ``K = O O^H`` comes from
    :meth:`StructuredJacobian.kernel` (``n^2 (N + M)`` for the RBM instead of ``n^2 N M``); for
    real parameters the real part of the result is the real-view update.
    """
    k = jacobian.kernel()
    k = k + diag_shift * jnp.eye(k.shape[0], dtype=k.dtype)
    e = complex_rows(residuals)
    if jacobian.real:  # K real: the imaginary part of e meets only zero rows of J
        e = e.real
    return jacobian.conj_transpose_dot(_spd_solve(k, e).astype(e.dtype))


def natural_gradient_dense_holomorphic(
    o: jax.Array, grad: jax.Array, diag_shift: float
) -> jax.Array:
    """Dense SR with the complex Jacobian: ``(O^H O + lambda)^-1 g_c``, complex ``[P_c]``.

    o: complex ``[n, P_c]``; grad: real-view gradient ``[2 P_c]`` (``[Re g_c; Im g_c]``).
    """
    s = o.conj().T @ o
    s = s + diag_shift * jnp.eye(s.shape[0], dtype=s.dtype)
    return _spd_solve(s, complex_rows(grad))


def _spd_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solve a symmetric / Hermitian positive (semi)definite system; eigh fallback if needed."""
    factor = jax.scipy.linalg.cho_factor(a, lower=True)
    x = jax.scipy.linalg.cho_solve(factor, b)
    # Cholesky fails (NaN) only for a numerically singular S with a zero shift; eigh is the
    # robust but slower fallback, evaluated only then.
    return jax.lax.cond(jnp.all(jnp.isfinite(x)), lambda: x, lambda: _eigh_solve(a, b))


def _eigh_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    evals, evecs = jnp.linalg.eigh(a)
    cutoff = 1e-12 * jnp.max(jnp.abs(evals))
    inv = jnp.where(evals > cutoff, 1.0 / jnp.where(evals > cutoff, evals, 1.0), 0.0)
    return evecs @ (inv * (evecs.conj().T @ b))
