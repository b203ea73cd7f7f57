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

:class:`StructuredJacobian` goes one step further for ansatze with a
:class:`nqs.ansatz.JacobianStructure` (the RBM): it keeps only the per-sample factors of ``O``
and gives minSR the centred kernel ``K = O O^H`` and the product ``O^H z`` without ever forming
``O``. With ``K0`` the uncentred kernel of the factors, ``D = diag(sqrt(w))`` and ``v = K0 w``,

    K = D (K0 - v 1^T - 1 v^H + w^T K0 w) D,        O^H z = O_raw^H (D z - (1^T D z) w),

(``O_raw`` the uncentred rows), i.e. exactly the centring and weighting of the dense path.
For the RBM this costs ``n^2 (N + M)`` instead of ``n^2 N M`` multiply-adds.

:class:`SplitJacobian` is for real parameters in two groups, one setting ``Re log psi`` alone
and the other ``Im log psi`` alone (:attr:`nqs.ansatz.Ansatz.amplitude_phase`: the
autoregressive state's amplitude and phase networks). The real view is then block diagonal,

    J = [[A, 0],          rows (Re, Im) of the samples, columns (amplitude, phase),
         [0, B]]

so ``J J^T = diag(A A^T, B B^T)`` and minSR splits into two ``n x n`` solves,
``delta_A = A^T (A A^T + lambda)^-1 eps_r`` and ``delta_B = B^T (B B^T + lambda)^-1 eps_i``:
the same update for ``n^2 P`` multiply-adds instead of ``4 n^2 P``, and a Jacobian half the
size (one backward pass per sample through each network instead of two through both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from nqs.ansatz import JacobianStructure
from nqs.parallel import Mesh, chunked_map

Params = Any


class HolomorphicJacobian(NamedTuple):
    """``o``: complex ``[n, P_c]``, centred and scaled by ``sqrt(w_i)`` (see module docstring)."""

    o: jax.Array


@dataclass(frozen=True)
class StructuredJacobian:
    """The centred, weighted Jacobian of SR kept as per-sample factors (module docstring).

    Attributes:
      features: pytree of per-sample factors, leading axis ``n`` (split over the devices of a
        mesh like the samples).
      weights: ``[n]`` sample weights summing to 1.
      structure: the ansatz's :class:`nqs.ansatz.JacobianStructure` (static).
      real: the parameters are real (the real view is then ``[Re O; 0]``), else holomorphic.
    """

    features: Any
    weights: jax.Array
    structure: JacobianStructure
    real: bool

    @property
    def n_rows(self) -> int:
        """Number of samples ``n``."""
        return int(self.weights.shape[0])

    def kernel(self) -> jax.Array:
        """Centred, weighted ``K = O O^H``, ``[n, n]`` (complex; real parts only if ``real``)."""
        w = self.weights
        k0 = self.structure.gram(self.features, self.features)
        v = k0 @ w.astype(k0.dtype)  # [n]
        s = jnp.real(jnp.vdot(w.astype(k0.dtype), v))  # w^T K0 w, real: K0 is Hermitian
        d = jnp.sqrt(w)
        return d[:, None] * (k0 - v[:, None] - jnp.conj(v)[None, :] + s) * d[None, :]

    def conj_transpose_dot(self, z: jax.Array) -> jax.Array:
        """``O^H z`` for complex ``z [n]``, complex ``[P_c]`` in ``ravel_pytree`` order."""
        w = self.weights
        y = jnp.sqrt(w) * z
        # centring: sum_a y_a conj(O_a - m) = sum_a (y_a - (sum_b y_b) w_a) conj(O_a)
        tree = self.structure.transpose(self.features, y - jnp.sum(y) * w)
        flat, _ = ravel_pytree(tree)
        return flat

    def real_view(self, v: jax.Array) -> jax.Array:
        """The real-view vector ``[P]`` of a complex parameter-space vector ``v [P_c]``."""
        if self.real:
            return jnp.real(v)
        return jnp.concatenate([v.real, v.imag])

    def dense(self) -> jax.Array | HolomorphicJacobian:
        """The dense Jacobian it stands for: real ``J [2n, P]`` or :class:`HolomorphicJacobian`."""
        rows = jax.vmap(lambda f: ravel_pytree(self.structure.row(f))[0])(self.features)
        w = self.weights
        rows = rows - jnp.einsum("i,ik->k", w.astype(rows.dtype), rows)[None]
        o = jnp.sqrt(w)[:, None] * rows
        if self.real:
            o = jnp.real(o)
            return jnp.concatenate([o, jnp.zeros_like(o)], axis=0)
        return HolomorphicJacobian(o)


jax.tree_util.register_dataclass(
    StructuredJacobian, data_fields=["features", "weights"], meta_fields=["structure", "real"]
)


def structured_jacobian(
    structure: JacobianStructure,
    params: Params,
    xs: jax.Array,
    weights: jax.Array,
    real: bool,
    chunk_size: int | None = None,
    mesh: Any = None,
) -> StructuredJacobian:
    """The factored Jacobian of ``xs [n, n_sites]`` with ``weights [n]`` (sum 1).

    ``real``: the parameters are real (``log psi`` real); otherwise the ansatz must be
    holomorphic. Features are computed per sample, split over ``mesh`` and ``chunk_size`` rows
    at a time like every per-sample map.
    """
    feats = chunked_map(structure.features, chunk_size, mesh)(params, xs)
    return StructuredJacobian(feats, weights, structure, bool(real))


@dataclass(frozen=True)
class SplitJacobian:
    """The block-diagonal real-view Jacobian of an amplitude-phase ansatz (module docstring).

    Attributes:
      amplitude: ``A [n, P_a]``, ``sqrt(w_i) (d Re log psi(x_i) / d theta_a - mean)``.
      phase: ``B [n, P_p]``, the same for ``Im log psi`` and the phase parameters.
      runs: static ``((length, is_amplitude), ...)``: the real flat view's columns
        (:func:`nqs.optim.flat.real_flat` order) as consecutive runs of either group.
    """

    amplitude: jax.Array
    phase: jax.Array
    runs: tuple[tuple[int, bool], ...]

    def assemble(self, a: jax.Array, b: jax.Array) -> jax.Array:
        """The ``[..., P]`` array whose amplitude columns are ``a [..., P_a]`` and phase columns
        ``b [..., P_p]``, in the real flat view's order."""
        pieces, i, j = [], 0, 0
        for length, is_amplitude in self.runs:
            if is_amplitude:
                pieces.append(a[..., i : i + length])
                i += length
            else:
                pieces.append(b[..., j : j + length])
                j += length
        return jnp.concatenate(pieces, axis=-1)

    def dense(self) -> jax.Array:
        """The real-view ``J [2n, P]`` it stands for."""
        a, b = self.amplitude, self.phase
        return jnp.concatenate([self.assemble(a, jnp.zeros((a.shape[0], b.shape[1]), a.dtype)),
                                self.assemble(jnp.zeros((b.shape[0], a.shape[1]), b.dtype), b)])


jax.tree_util.register_dataclass(
    SplitJacobian, data_fields=["amplitude", "phase"], meta_fields=["runs"]
)


def centred_rows(rows: jax.Array, weights: jax.Array) -> jax.Array:
    """``sqrt(w_i) (rows_i - sum_j w_j rows_j)`` for real ``rows [n, P]``, in float64 whatever
    the network's dtype (float64 reductions in J J^T and J^T eps). The mean is a plain weighted
    sum: with the walkers' uniform power-of-two weights it is their mean to the bit."""
    rows = rows.astype(jnp.promote_types(rows.dtype, jnp.float64))
    w = weights.astype(rows.dtype)[:, None]
    return jnp.sqrt(w) * (rows - jnp.sum(w * rows, axis=0)[None])


def split_jacobian(
    log_psi: Callable[[Params, jax.Array], jax.Array],
    params: Params,
    groups: tuple[str, str],
    xs: jax.Array,
    weights: jax.Array,
    chunk_size: int | None = None,
    mesh: Any = None,
) -> SplitJacobian:
    """:class:`SplitJacobian` of ``xs [n, n_sites]`` with ``weights [n]`` (sum 1).

    ``params["params"]`` holds exactly the two submodules ``groups = (amplitude, phase)``
    (real parameters); ``Re log psi`` must depend on the first alone and ``Im log psi`` on the
    second alone (:attr:`nqs.ansatz.Ansatz.amplitude_phase`). Rows are computed per sample,
    split over ``mesh`` and ``chunk_size`` rows at a time, in float64.
    """
    amp_name, phase_name = groups
    inner = params["params"]
    if set(inner) != {amp_name, phase_name} or set(params) != {"params"}:
        raise ValueError(f"split Jacobian needs parameters of exactly {groups}, got "
                         f"{sorted(inner)}")
    flat_a, unravel_a = ravel_pytree(inner[amp_name])
    flat_b, unravel_b = ravel_pytree(inner[phase_name])

    def joined(a: Params, b: Params) -> Params:
        return {"params": {amp_name: a, phase_name: b}}

    def row(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        ga = jax.grad(lambda v: jnp.real(log_psi(joined(unravel_a(v), inner[phase_name]), x)))
        gb = jax.grad(lambda v: jnp.imag(log_psi(joined(inner[amp_name], unravel_b(v)), x)))
        return ga(flat_a), gb(flat_b)

    a, b = chunked_map(lambda _, x: row(x), chunk_size, mesh)(None, xs)

    # which columns of the real flat view (ravel order of the whole tree) hold either group
    mask_tree = joined(jax.tree_util.tree_map(lambda t: np.ones(t.size, bool), inner[amp_name]),
                       jax.tree_util.tree_map(lambda t: np.zeros(t.size, bool),
                                              inner[phase_name]))
    mask = np.concatenate(jax.tree_util.tree_leaves(mask_tree))
    edges = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [mask.size]])
    runs = tuple((int(e - b0), bool(mask[b0])) for b0, e in zip(starts, stops, strict=True))
    return SplitJacobian(centred_rows(a, weights), centred_rows(b, weights), runs)


Jacobian = jax.Array | HolomorphicJacobian | StructuredJacobian | SplitJacobian


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
    if isinstance(jacobian, StructuredJacobian):
        return jacobian.real_view(jacobian.conj_transpose_dot(complex_rows(residuals)))
    if isinstance(jacobian, HolomorphicJacobian):
        v = jacobian.o.conj().T @ complex_rows(residuals)
        return jnp.concatenate([v.real, v.imag])
    if isinstance(jacobian, SplitJacobian):
        n = jacobian.amplitude.shape[0]
        return jacobian.assemble(jacobian.amplitude.T @ residuals[:n],
                                 jacobian.phase.T @ residuals[n:])
    return jacobian.T @ residuals


def to_real(jacobian: Jacobian) -> jax.Array:
    """The real-view ``J [2n, P]`` (for checks; SR never materialises it)."""
    if isinstance(jacobian, StructuredJacobian | SplitJacobian):
        jacobian = jacobian.dense()
    if not isinstance(jacobian, HolomorphicJacobian):
        return jacobian
    a, b = jacobian.o.real, jacobian.o.imag
    return jnp.block([[a, -b], [b, a]])


def complex_rows(v: jax.Array) -> jax.Array:
    """``[2n]`` real ``[v_r; v_i]`` -> complex ``v_r + i v_i`` ``[n]``."""
    n = v.shape[0] // 2
    return v[:n] + 1j * v[n:]


def centred_jacobian_rows(
    log_psi_flat: Callable[[jax.Array, jax.Array], jax.Array],
    flat: jax.Array,
    xs: jax.Array,
    weights: jax.Array,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    real: bool = False,
) -> jax.Array:
    """``sqrt(w_i) (O_i - <O>)`` as ``[n, 2, P]`` (real and imaginary part of each row), or
    ``[n, P]`` with ``real`` (a real log psi: log|psi| of a real wavefunction), in float64
    whatever the network's dtype.

    ``log_psi_flat(v, x)`` is log psi of one configuration as a function of the real flat
    parameters ``v`` [P]; ``xs`` [n, ...] (configurations or walkers); ``weights`` [n] sum to 1.
    The one per-sample Jacobian of every engine.
    """

    def jac_one(v: jax.Array, x: jax.Array) -> jax.Array:
        if real:
            return jax.grad(log_psi_flat)(v, x)  # [P]

        def re_im(u: jax.Array) -> jax.Array:
            lp = log_psi_flat(u, x)
            return jnp.stack([jnp.real(lp), jnp.imag(lp)])

        return jax.jacrev(re_im)(v)  # [2, P]

    jac = chunked_map(jac_one, chunk_size, mesh)(flat, xs)  # [n, (2,) P]
    if real:
        return centred_rows(jac, weights)
    jac = jac - jnp.einsum("i,ijk->jk", weights, jac)[None]
    return jnp.sqrt(weights)[:, None, None] * jac


def sr_jacobian(
    log_psi_flat: Callable[[jax.Array, jax.Array], jax.Array],
    flat: jax.Array,
    xs: jax.Array,
    weights: jax.Array,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    real: bool = False,
) -> jax.Array:
    """``J [2n, P] = sqrt(w_i) [Re; Im] (O_i - <O>)``, O_i = d log psi(x_i) / d theta (real view);
    with ``real`` (a real log psi) ``J [n, P]``, the rows whose imaginary part would be 0.

    Arguments as :func:`centred_jacobian_rows`.
    """
    rows = centred_jacobian_rows(log_psi_flat, flat, xs, weights, chunk_size, mesh, real)
    if real:
        return rows
    # J^T J, J^T eps and J J^T over rows split across devices are left to XLA's partitioner.
    return jnp.concatenate([rows[:, 0], rows[:, 1]], axis=0)
