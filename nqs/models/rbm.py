"""Restricted Boltzmann machines with O(k M) cached log-psi ratios.

The RBM of Carleo & Troyer (2017),

    log psi(x) = a . x + sum_j log cosh(b_j + sum_i W_ij x_i),

works unchanged on spins (``x_i = +-1``) and on spin-orbital occupations (``x_i in {0, 1}``,
the molecular RBM of Choo et al. 2020). Flipping site ``i`` changes ``x_i`` by
``delta_i = c - 2 x_i`` with ``c`` the Hilbert space's ``flip_constant`` (0 for spins, 1 for
occupations), so with the cache ``theta = b + x W`` the ratio for ``k`` flipped sites costs
``O(k M)`` instead of ``O(n M)``.

:class:`RBMSymm` is the translation-symmetric RBM: one filter per hidden feature, applied to
every translated copy of the configuration, so ``log psi`` is invariant under the translations.

Use :func:`make_rbm` / :func:`make_rbm_symm` to get an :class:`nqs.ansatz.Ansatz` with the fast
path attached.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz, LocalUpdates, Params
from nqs.errors import InputError

_LOG2 = float(np.log(2.0))


def log_cosh(z: jax.Array) -> jax.Array:
    """Elementwise ``log cosh z`` for real or complex ``z``, without overflow.

    Uses ``cosh`` even: with ``w = sign(Re z) z`` (``Re w >= 0``),
    ``log cosh z = w + log1p(exp(-2 w)) - log 2``. For complex ``z`` the imaginary part is
    defined modulo ``2 pi`` (irrelevant for ``psi = exp(log psi)``).
    """
    sign = jnp.where(jnp.real(z) < 0, -1.0, 1.0).astype(z.dtype)
    w = sign * z
    return w + jnp.log1p(jnp.exp(-2.0 * w)) - _LOG2


def _normal(stddev: float) -> nn.initializers.Initializer:
    return nn.initializers.normal(stddev=stddev)


def _as_complex(v: jax.Array) -> jax.Array:
    """Discrete ansatze return complex log psi (see :mod:`nqs.ansatz`)."""
    if jnp.iscomplexobj(v):
        return v
    return v.astype(jnp.complex128 if v.dtype == jnp.float64 else jnp.complex64)


class RBM(nn.Module):
    """Restricted Boltzmann machine, ``M = max(1, int(alpha * n_sites))`` hidden units.

    Attributes:
      alpha: hidden-unit density.
      use_visible_bias: include ``a . x``.
      param_dtype: ``jnp.complex128`` (default) or ``jnp.float64`` (real, positive psi).
      init_scale: standard deviation of the normal initialisation (NetKet uses 0.01).

    Parameters: ``visible_bias [n_sites]``, ``hidden_bias [M]``, ``kernel [n_sites, M]``.
    """

    alpha: float = 1.0
    use_visible_bias: bool = True
    param_dtype: Any = jnp.complex128
    init_scale: float = 0.01

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``log psi`` of ``x [..., n_sites]``, complex ``[...]`` (scalar for one configuration)."""
        n_sites = x.shape[-1]
        n_hidden = max(1, int(self.alpha * n_sites))
        init = _normal(self.init_scale)
        kernel = self.param("kernel", init, (n_sites, n_hidden), self.param_dtype)
        hidden_bias = self.param("hidden_bias", init, (n_hidden,), self.param_dtype)
        theta = x @ kernel + hidden_bias
        out = jnp.sum(log_cosh(theta), axis=-1)
        if self.use_visible_bias:
            visible_bias = self.param("visible_bias", init, (n_sites,), self.param_dtype)
            out = out + x @ visible_bias
        return _as_complex(out)


class RBMSymm(nn.Module):
    """Translation-symmetric RBM.

    ``log psi(x) = a sum_i x_i + sum_g sum_f log cosh(b_f + sum_i W_{f,i} x_{T_g(i)})``.

    Attributes:
      translations: ``[n_g][n_sites]`` tuple of tuples; ``translations[g][i] = T_g(i)`` is a site
        permutation (include the identity). Use :func:`translation_group` for hypercubic lattices
        or ``tuple(map(tuple, array))`` for any ``int [n_g, n_sites]`` array.
      alpha: number of filters (hidden units per translation).
      param_dtype: complex128 (default) or float64.
      init_scale: standard deviation of the normal initialisation.

    Parameters (``alpha (n_sites + 1) + 1`` of them): ``visible_bias []``, ``hidden_bias
    [alpha]``, ``kernel [alpha, n_sites]``.
    """

    translations: tuple[tuple[int, ...], ...]
    alpha: int = 1
    use_visible_bias: bool = True
    param_dtype: Any = jnp.complex128
    init_scale: float = 0.01

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``log psi`` of ``x [..., n_sites]``, complex ``[...]``."""
        perms = np.asarray(self.translations, dtype=np.int32)  # [n_g, n_sites]
        n_sites = x.shape[-1]
        if perms.ndim != 2 or perms.shape[1] != n_sites:
            raise InputError(
                f"translations must have shape [n_g, {n_sites}], got {perms.shape}"
            )
        init = _normal(self.init_scale)
        kernel = self.param("kernel", init, (self.alpha, n_sites), self.param_dtype)
        hidden_bias = self.param("hidden_bias", init, (self.alpha,), self.param_dtype)
        x_t = x[..., perms]  # [..., n_g, n_sites]
        theta = x_t @ kernel.T + hidden_bias  # [..., n_g, alpha]
        out = jnp.sum(log_cosh(theta), axis=(-2, -1))
        if self.use_visible_bias:
            visible_bias = self.param("visible_bias", init, (), self.param_dtype)
            out = out + visible_bias * jnp.sum(x, axis=-1)
        return _as_complex(out)


def translation_group(shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """All translations of a periodic hypercubic lattice of ``shape`` (row-major site order).

    Returns ``prod(shape)`` permutations; ``result[g][i]`` is the image of site ``i``.
    """
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape))
    coords = np.stack(np.unravel_index(np.arange(n), shape), axis=1)  # [n, d]
    perms = []
    for shift in np.ndindex(*shape):
        moved = (coords + np.asarray(shift)) % np.asarray(shape)
        perms.append(tuple(int(v) for v in np.ravel_multi_index(moved.T, shape)))
    return tuple(perms)


def _flip_deltas(
    x: jax.Array, sites: jax.Array, flip_constant: float
) -> tuple[jax.Array, jax.Array]:
    """``(idx [k], delta [k])``: clamped site indices and ``x'_i - x_i`` (0 for padding)."""
    n_sites = x.shape[-1]
    valid = sites < n_sites
    idx = jnp.minimum(sites, n_sites - 1)
    delta = jnp.where(valid, flip_constant - 2.0 * x[idx], 0.0)
    return idx, delta


def make_rbm(
    n_sites: int,
    alpha: float = 1.0,
    *,
    use_visible_bias: bool = True,
    param_dtype: Any = jnp.complex128,
    init_scale: float = 0.01,
    flip_constant: float = 0.0,
) -> Ansatz:
    """An :class:`RBM` ansatz with the ``O(k M)`` cached ratio.

    Args:
      n_sites: number of sites (the padding index of flipped sites).
      alpha: hidden-unit density.
      flip_constant: ``hilbert.flip_constant`` (0.0 for spins, 1.0 for spin orbitals).

    Cache: ``(theta, sum_j log cosh theta_j)`` with ``theta = b + x W`` of shape ``[M]``.
    ``sites`` passed to ``log_ratio`` must be distinct
    (apart from the padding value ``n_sites``).
    """
    module = RBM(
        alpha=alpha,
        use_visible_bias=use_visible_bias,
        param_dtype=param_dtype,
        init_scale=init_scale,
    )
    c = float(flip_constant)

    def init_cache(params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        p = params["params"]
        theta = x @ p["kernel"] + p["hidden_bias"]
        return theta, jnp.sum(log_cosh(theta))

    def log_ratio(
        params: Params, x: jax.Array, cache: tuple[jax.Array, jax.Array], sites: jax.Array
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        p = params["params"]
        if x.shape[-1] != n_sites:
            raise InputError(f"RBM built for {n_sites} sites got a configuration of {x.shape[-1]}")
        theta, sum_log_cosh = cache
        idx, delta = _flip_deltas(x, sites, c)
        theta_new = theta + delta.astype(theta.dtype) @ p["kernel"][idx]
        # log cosh dominates the cost (transcendentals): the cached sum halves it
        sum_new = jnp.sum(log_cosh(theta_new))
        lr = sum_new - sum_log_cosh
        if use_visible_bias:
            lr = lr + delta @ p["visible_bias"][idx]
        return _as_complex(lr), (theta_new, sum_new)

    return Ansatz(module, LocalUpdates(init_cache, log_ratio))


def make_rbm_symm(
    translations: Any,
    alpha: int = 1,
    *,
    use_visible_bias: bool = True,
    param_dtype: Any = jnp.complex128,
    init_scale: float = 0.01,
    flip_constant: float = 0.0,
) -> Ansatz:
    """An :class:`RBMSymm` ansatz with the ``O(k n_g alpha)`` cached ratio.

    Args:
      translations: ``int [n_g, n_sites]`` permutations (array or nested sequence).
      alpha: number of filters.
      flip_constant: ``hilbert.flip_constant`` (0.0 for spins, 1.0 for spin orbitals).

    Cache: ``(theta [n_g, alpha], sum log cosh theta)``. Flipping site ``i`` changes ``theta[g, f]`` by
    ``W[f, T_g^{-1}(i)] delta_i``.
    """
    perms = np.asarray(translations, dtype=np.int64)
    if perms.ndim != 2:
        raise InputError(f"translations must be a 2-d array [n_g, n_sites], got {perms.shape}")
    n_sites = perms.shape[1]
    for row in perms:
        if sorted(row.tolist()) != list(range(n_sites)):
            raise InputError(f"translation {row.tolist()} is not a permutation of the sites")
    inverse = np.argsort(perms, axis=1).astype(np.int32)  # inverse[g, T_g(i)] = i
    module = RBMSymm(
        translations=tuple(tuple(int(v) for v in row) for row in perms),
        alpha=int(alpha),
        use_visible_bias=use_visible_bias,
        param_dtype=param_dtype,
        init_scale=init_scale,
    )
    c = float(flip_constant)
    perms_j = perms.astype(np.int32)

    def init_cache(params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        p = params["params"]
        theta = x[perms_j] @ p["kernel"].T + p["hidden_bias"]  # [n_g, alpha]
        return theta, jnp.sum(log_cosh(theta))

    def log_ratio(
        params: Params, x: jax.Array, cache: tuple[jax.Array, jax.Array], sites: jax.Array
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        p = params["params"]
        theta, sum_log_cosh = cache
        idx, delta = _flip_deltas(x, sites, c)
        cols = jnp.asarray(inverse)[:, idx]  # [n_g, k]: T_g^{-1}(i)
        w = p["kernel"][:, cols]  # [alpha, n_g, k]
        theta_new = theta + jnp.einsum("fgk,k->gf", w, delta.astype(theta.dtype))
        sum_new = jnp.sum(log_cosh(theta_new))
        lr = sum_new - sum_log_cosh
        if use_visible_bias:
            lr = lr + p["visible_bias"] * jnp.sum(delta)
        return _as_complex(lr), (theta_new, sum_new)

    return Ansatz(module, LocalUpdates(init_cache, log_ratio))
