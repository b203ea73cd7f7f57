"""Restricted Boltzmann machines with O(k M) cached log-psi ratios.

The RBM of Carleo & Troyer (2017),

    log psi(x) = a . x + sum_j log cosh(b_j + sum_i W_ij x_i),

works unchanged on spins (``x_i = +-1``) and on spin-orbital occupations (``x_i in {0, 1}``,
the molecular RBM of Choo et al. 2020). Flipping site ``i`` changes ``x_i`` by
``delta_i = c - 2 x_i`` with ``c`` the Hilbert space's ``flip_constant`` (0 for spins, 1 for
occupations), so with the cache ``tanh(b + x W)`` the ratio for ``k`` flipped sites costs
``O(k M)`` complex multiply-adds instead of ``O(n M)`` plus ``M`` transcendentals (see
:func:`make_rbm_updates`).

:class:`RBMSymm` is the translation-symmetric RBM: one filter per hidden feature, applied to
every translated copy of the configuration, so ``log psi`` is invariant under the translations.

Use :func:`make_rbm` / :func:`make_rbm_symm` to get an :class:`nqs.ansatz.Ansatz` with the fast
path attached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz, JacobianStructure, LocalUpdates, Params, TermUpdates
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


class RBMTables(NamedTuple):
    """Parameter-only tables of the RBM fast path, in dense form (``M`` hidden units).

    kernel: ``W [n_sites, M]``; hidden_bias: ``b [M]``; visible_bias: ``a [n_sites]`` (zeros
    without a visible bias); cosh_w, sinh_w: ``cosh(m W)``, ``sinh(m W)`` ``[n_sites, M]`` with
    ``m = |x'_i - x_i|`` the size of a flip (2 for spins, 1 for occupations).
    """

    kernel: jax.Array
    hidden_bias: jax.Array
    visible_bias: jax.Array
    cosh_w: jax.Array
    sinh_w: jax.Array


class RBMTermTables(NamedTuple):
    """Per-pattern tables of the RBM (spins; ``T`` flip patterns, ``M`` hidden units).

    With ``V_t = sum_q signs[t, q] W[sites[t, q]]`` ``[M]`` and ``A_t = sum_q signs[t, q]
    a[sites[t, q]]``, flipping pattern ``t`` of a matching ``x`` shifts ``theta`` by
    ``u = -2 x[sites[t, 0]] V_t``:

    cosh_v, sinh_v: ``cosh(2 V)``, ``sinh(2 V)`` ``[T, M]``; visible: ``2 A [T]``;
    first: int32 ``[T]`` the site whose spin sets the overall sign, ``sites[:, 0]``;
    visible_cos, visible_sin: ``cos``, ``sin`` of ``Im 2 A`` ``[T]`` (real).
    """

    cosh_v: jax.Array
    sinh_v: jax.Array
    visible: jax.Array
    first: jax.Array
    visible_cos: jax.Array
    visible_sin: jax.Array


DenseRBM = Callable[[Params], tuple[jax.Array, jax.Array, jax.Array]]

# Hidden units per partial product of ratios: a block of 16 factors cannot overflow unless a
# single factor exceeds ~1e19, and it costs one complex log per block instead of per unit.
_BLOCK = 16


def _log_prod(r: jax.Array) -> jax.Array:
    """``sum_j log r_j`` of ``r [M]`` as a complex scalar, with one log per ``_BLOCK`` units."""
    n_blocks = -(-r.shape[-1] // _BLOCK)
    pad = n_blocks * _BLOCK - r.shape[-1]
    if pad:
        r = jnp.concatenate([r, jnp.ones((pad,), r.dtype)])
    # block b = units b, b + n_blocks, ...; a reduction, so XLA fuses the computation of the
    # factors into it instead of writing all [n_connections, M] factors to memory first
    r = jnp.prod(r.reshape(_BLOCK, n_blocks), axis=0)
    if jnp.iscomplexobj(r):
        return jnp.sum(jnp.log(r))
    # real RBM: every factor is cosh(theta')/cosh(theta) > 0; abs only guards rounding
    return _as_complex(jnp.sum(jnp.log(jnp.abs(r))))


def _log_prod_real(r: jax.Array) -> jax.Array:
    """``sum_j log r_j`` of positive ``r [M]`` with a single logarithm.

    Blocks of ``_BLOCK`` factors are multiplied directly (as in :func:`_log_prod`); the block
    products ``z_b = m_b 2^e_b`` (``frexp``, ``m_b`` in ``[1/2, 1)``) then give
    ``log(prod_b m_b) + log 2 sum_b e_b``: the product of the mantissas cannot underflow for up
    to 1022 blocks, and one log replaces one per block (Metropolis steps ~15 % faster).
    """
    n_blocks = -(-r.shape[-1] // _BLOCK)
    pad = n_blocks * _BLOCK - r.shape[-1]
    if pad:
        r = jnp.concatenate([r, jnp.ones((pad,), r.dtype)])
    z = jnp.prod(r.reshape(_BLOCK, n_blocks), axis=0)
    if n_blocks > 1022:
        return jnp.sum(jnp.log(z))
    mantissa, exponent = jnp.frexp(z)
    return jnp.log(jnp.prod(mantissa)) + _LOG2 * jnp.sum(exponent).astype(z.dtype)


def _polar_prod(r: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``prod_j r_j`` of ``r [..., M]`` as ``(log |prod| [...], prod / |prod| [...])``.

    Blocks of ``_BLOCK`` factors are multiplied directly (as in :func:`_log_prod`); each block
    product ``z`` then contributes ``log |z| = 1/2 log |z|^2`` (a real logarithm) and the unit
    number ``z / |z|``, so neither does the product overflow nor is a complex log (an
    ``atan2``) or a complex exp taken: that halves the time of the spin local energy. A block
    product that is exactly 0 gives ``log |z| = -inf`` and phase 1, so ``exp(log |z|) * phase
    = 0``.
    """
    n = r.shape[-1]
    n_blocks = -(-n // _BLOCK)
    pad = n_blocks * _BLOCK - n
    if pad:
        r = jnp.concatenate([r, jnp.ones(r.shape[:-1] + (pad,), r.dtype)], axis=-1)
    z = jnp.prod(r.reshape(r.shape[:-1] + (_BLOCK, n_blocks)), axis=-2)  # [..., n_blocks]
    z2 = jnp.real(z) ** 2 + jnp.imag(z) ** 2 if jnp.iscomplexobj(z) else z * z
    nonzero = z2 > 0
    unit = z * jnp.where(nonzero, jax.lax.rsqrt(jnp.where(nonzero, z2, 1.0)), 1.0)
    return 0.5 * jnp.sum(jnp.log(z2), axis=-1), jnp.prod(unit, axis=-1)


def _materialised(compute: Callable[[], Any], data: jax.Array) -> Any:
    """``compute()``, evaluated once into memory.

    Without this, XLA's CPU fusion copies the ``cosh`` / ``sinh`` of the tables into every
    consumer (the gathers of table rows), i.e. evaluates them again for every connected
    configuration and every proposal, which is what the tables are there to avoid
    (``optimization_barrier`` is removed before fusion on the CPU). A conditional on a
    data-dependent predicate (true unless ``data`` holds a NaN, and then both branches are
    the same computation anyway) is a fusion boundary.
    """
    probe = jnp.real(data.ravel()[0])
    return jax.lax.cond(probe == probe, compute, compute)


def make_rbm_updates(dense: DenseRBM, n_sites: int, flip_constant: float) -> LocalUpdates:
    """Transcendental-free cached ratios for any RBM that can be written in dense form.

    ``dense(params) -> (W [n_sites, M], b [M], a [n_sites])`` gives ``theta = b + x W`` and
    the visible term ``a . x``. The cache of a configuration is ``t = tanh(theta) [M]``.
    Flipping sites ``i_1..i_k`` shifts ``theta`` by ``u = sum_q delta_q W_{i_q}`` and, by
    ``cosh(theta + u) = cosh(theta) (cosh u + tanh(theta) sinh u)``,

        psi(x') / psi(x) = exp(a . delta) prod_j (C_j + t_j S_j),
        tanh(theta'_j) = (t_j C_j + S_j) / (C_j + t_j S_j),

    where ``(C, S) = (cosh u, sinh u)`` is composed from the tables ``cosh(m W_i)``,
    ``sinh(m W_i)`` by the addition formulas (``k - 1`` complex products per unit). So a ratio
    costs ``O(k M)`` multiply-adds and one complex log per block of ``_BLOCK`` units, and no
    transcendental per hidden unit; the tables are computed once per :meth:`prepare`.

    Accuracy: ``C + t S`` cancels when ``|Re m W|`` is large (``cosh(m W) ~ 1e3``, say): the
    relative error of a ratio grows like ``eps cosh(m |W|)^2``. RBM weights of spin and
    molecular problems are O(1) or less; the generic path (:meth:`Ansatz.without_fast_path`)
    has no such limit.
    """
    c = float(flip_constant)
    if c not in (0.0, 1.0):
        raise InputError(f"flip_constant must be 0 (spins) or 1 (occupations), got {c}")
    m = 2.0 if c == 0.0 else 1.0  # |x'_i - x_i|: +-1 -> -+1, or 0 <-> 1

    def prepare(params: Params) -> RBMTables:
        w, b, a = dense(params)
        return RBMTables(w, b, a, *_materialised(lambda: (jnp.cosh(m * w), jnp.sinh(m * w)), w))

    def init_cache(tables: RBMTables, x: jax.Array) -> jax.Array:
        return jnp.tanh(x @ tables.kernel + tables.hidden_bias)

    def check_size(x: jax.Array) -> None:
        if x.shape[-1] != n_sites:
            raise InputError(f"RBM built for {n_sites} sites got a configuration of {x.shape[-1]}")

    def flip_factors(
        tables: RBMTables, x: jax.Array, t: jax.Array, sites: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(r, t', a . delta)``: ``r = cosh(theta') / cosh(theta)`` and ``t' = tanh(theta')``
        ``[M]`` (complex ones as ``(Re, Im)`` pairs), and the visible term."""
        check_size(x)
        valid = sites < n_sites
        idx = jnp.minimum(sites, n_sites - 1)
        delta = jnp.where(valid, c - 2.0 * x[idx], 0.0)  # [k]: +-m, or 0 for padding
        cosh_u = jnp.where(valid[:, None], tables.cosh_w[idx], 1.0)  # [k, M]
        sinh_u = (delta / m)[:, None] * tables.sinh_w[idx]  # sinh is odd; 0 for padding
        visible = delta @ tables.visible_bias[idx]
        if not jnp.iscomplexobj(t):
            cu, su = cosh_u[0], sinh_u[0]
            for q in range(1, sites.shape[0]):  # k is static and small (<= 4)
                cu, su = cu * cosh_u[q] + su * sinh_u[q], su * cosh_u[q] + cu * sinh_u[q]
            r, t_new = _ratio_and_tanh(cu, su, t)
            return r, t_new, visible
        # complex products written out in real arithmetic: XLA's complex elementwise code does
        # not vectorise on the CPU (sampling 1.7x faster this way)
        cr, ci, sr, si = cosh_u[0].real, cosh_u[0].imag, sinh_u[0].real, sinh_u[0].imag
        for q in range(1, sites.shape[0]):  # addition formulas, k static and small (<= 4)
            c2r, c2i, s2r, s2i = cosh_u[q].real, cosh_u[q].imag, sinh_u[q].real, sinh_u[q].imag
            cr, ci, sr, si = (cr * c2r - ci * c2i + sr * s2r - si * s2i,
                              cr * c2i + ci * c2r + sr * s2i + si * s2r,
                              sr * c2r - si * c2i + cr * s2r - ci * s2i,
                              sr * c2i + si * c2r + cr * s2i + ci * s2r)
        r, t_new = _ratio_and_tanh((cr, ci), (sr, si), t)
        return r, t_new, visible

    def log_ratio(
        tables: RBMTables, x: jax.Array, t: jax.Array, sites: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        r, t_new, visible = flip_factors(tables, x, t, sites)
        if isinstance(r, tuple):
            # a complex product reduction, into which XLA fuses the factors (the local energy
            # never writes [n, n_connections, M] factors to memory); as fast as real pairs
            r = jax.lax.complex(*r)
        return _log_prod(r) + visible, t_new

    def log_abs_ratio(
        tables: RBMTables, x: jax.Array, t: jax.Array, sites: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        # log |psi'/psi| only (Metropolis): log |r|^2 = log(Re r^2 + Im r^2), no complex log
        r, t_new, visible = flip_factors(tables, x, t, sites)
        r2 = r[0] * r[0] + r[1] * r[1] if isinstance(r, tuple) else r * r
        return 0.5 * _log_prod_real(r2) + jnp.real(visible), t_new

    terms = _rbm_term_updates(n_sites, check_size) if c == 0.0 else None
    return LocalUpdates(init_cache, log_ratio, prepare, log_abs_ratio, terms)


def _ratio_and_tanh(cu: Any, su: Any, t: jax.Array) -> tuple[Any, jax.Array]:
    """``(r, t')`` with ``r = C + t S`` and ``t' = (t C + S) / r`` ``[...]`` (elementwise).

    ``(C, S) = (cosh u, sinh u)``: real arrays for a real RBM, ``(Re, Im)`` pairs for a complex
    one (``t`` complex; ``r`` is then returned as a ``(Re, Im)`` pair, ``t'`` complex).
    """
    if not isinstance(cu, tuple):
        r = cu + t * su
        return r, (t * cu + su) / r
    (cr, ci), (sr, si) = cu, su
    tr, ti = t.real, t.imag
    rr = cr + tr * sr - ti * si  # r = C + t S
    ri = ci + tr * si + ti * sr
    nr = tr * cr - ti * ci + sr  # t C + S
    ni = tr * ci + ti * cr + si
    inv = 1.0 / (rr * rr + ri * ri)
    return (rr, ri), jax.lax.complex((nr * rr + ni * ri) * inv, (ni * rr - nr * ri) * inv)


def _rbm_term_updates(n_sites: int, check_size: Callable[[jax.Array], None]) -> TermUpdates:
    """:class:`nqs.ansatz.TermUpdates` of a spin RBM (see :class:`RBMTermTables`).

    A pattern ``t`` of a matching ``x`` (sign ``s = x[sites[t, 0]]``) changes ``theta`` by
    ``u = -2 s V_t``, so with cosh even and sinh odd

        psi(x'_t) / psi(x) = exp(-s 2 A_t) prod_j (cosh(2 V_tj) - s t_j sinh(2 V_tj)):

    one complex multiply-add per hidden unit from two contiguous table rows, where the
    per-site path (:func:`make_rbm_updates`) gathers ``2 k`` rows and composes them by the
    addition formulas. For all ``T`` patterns at once the tables are read in order, no gather.
    """

    def prepare(tables: RBMTables, sites: Any, signs: Any) -> RBMTermTables:
        sites = np.asarray(sites, dtype=np.int32)
        signs = np.asarray(signs, dtype=np.float64)
        if sites.ndim != 2 or signs.shape != sites.shape or np.any(sites >= n_sites):
            raise InputError(f"flip patterns must be int [T, k] sites below {n_sites} with "
                             f"signs of the same shape, got {sites.shape} and {signs.shape}")
        w = tables.kernel
        s = jnp.asarray(signs, w.dtype)

        def compute() -> tuple[jax.Array, jax.Array]:
            v = 2.0 * jnp.einsum("tq,tqm->tm", s, w[sites])  # [T, M]
            return jnp.cosh(v), jnp.sinh(v)

        cosh_v, sinh_v = _materialised(compute, w)
        visible = 2.0 * jnp.sum(s * tables.visible_bias[sites], axis=-1)
        angle = jnp.imag(visible)
        return RBMTermTables(cosh_v, sinh_v, visible, jnp.asarray(sites[:, 0]),
                             jnp.cos(angle), jnp.sin(angle))

    def ratios(tt: RBMTermTables, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        check_size(x)
        sgn = x[tt.first].astype(jnp.real(t).dtype)[:, None]  # [T, 1], +-1
        if not jnp.iscomplexobj(t):
            r = tt.cosh_v - sgn * (t * tt.sinh_v)
        else:  # r = C - s t S in real arithmetic (XLA's complex elementwise code is scalar)
            tr, ti = t.real, t.imag
            sr, si = tt.sinh_v.real, tt.sinh_v.imag
            r = jax.lax.complex(tt.cosh_v.real - sgn * (tr * sr - ti * si),
                                tt.cosh_v.imag - sgn * (tr * si + ti * sr))
        log_abs, phase = _polar_prod(r)
        visible = -sgn[:, 0] * tt.visible  # a . delta
        if jnp.iscomplexobj(visible):
            # exp(i Im(a . delta)) from the tabulated cos, sin of Im 2A (even / odd in the
            # sign): no trigonometry per configuration
            phase = phase * jax.lax.complex(tt.visible_cos, -sgn[:, 0] * tt.visible_sin)
        return log_abs + jnp.real(visible), phase

    def log_abs_ratio(
        tt: RBMTermTables, x: jax.Array, t: jax.Array, term: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        check_size(x)
        cu, su = tt.cosh_v[term], tt.sinh_v[term]
        neg = -x[tt.first[term]].astype(jnp.real(cu).dtype)  # sinh(u) = -s sinh(2 V)
        if jnp.iscomplexobj(cu):
            r, t_new = _ratio_and_tanh((cu.real, cu.imag), (neg * su.real, neg * su.imag), t)
            r2 = r[0] * r[0] + r[1] * r[1]
        else:
            r, t_new = _ratio_and_tanh(cu, neg * su, t)
            r2 = r * r
        return 0.5 * _log_prod_real(r2) + jnp.real(neg * tt.visible[term]), t_new

    return TermUpdates(prepare, ratios, log_abs_ratio)


class RBMFeatures(NamedTuple):
    """Factors of the RBM's log-derivatives for a batch (or one sample, without ``n``).

    x: ``[n, n_sites]`` configurations (real); g: ``[n, M]`` ``tanh(theta(x))``.
    """

    x: jax.Array
    g: jax.Array


def make_rbm_jacobian_structure(use_visible_bias: bool, real: bool) -> JacobianStructure:
    """Factored log-derivatives of :class:`RBM` (:class:`nqs.ansatz.JacobianStructure`).

    With ``theta = b + x W`` and ``g = tanh(theta)``, ``d log psi / d a = x``, ``d / d b = g``,
    ``d / d W = x g^T`` (holomorphic derivatives for complex parameters), so for two samples

        K0_ab = (x_a . x_b) + (g_a . conj g_b) + (x_a . x_b)(g_a . conj g_b)

    (the first term only with a visible bias; ``x`` is real), ``n_a n_b (N + M)`` work instead
    of ``n_a n_b N M``, and ``sum_a y_a conj O_a = (sum_a y_a x_a, sum_a y_a conj g_a,
    x^T diag(y) conj g)``. ``real``: real parameters (the transpose returns its real part).
    """

    def features(params: Params, x: jax.Array) -> RBMFeatures:
        p = params["params"]
        x = x.astype(jnp.finfo(p["kernel"].dtype).dtype)  # real, like the kernel's precision
        return RBMFeatures(x, jnp.tanh(x @ p["kernel"] + p["hidden_bias"]))

    def gram(fa: RBMFeatures, fb: RBMFeatures) -> jax.Array:
        xx = fa.x @ fb.x.T  # [n_a, n_b] real
        gg = fa.g @ jnp.conj(fb.g).T  # [n_a, n_b]
        k = gg + xx * gg
        return k + xx if use_visible_bias else k

    def finish(tree: dict[str, jax.Array]) -> Params:
        if real:
            tree = {k: jnp.real(v) for k, v in tree.items()}
        if not use_visible_bias:
            del tree["visible_bias"]
        return {"params": tree}

    def transpose(f: RBMFeatures, y: jax.Array) -> Params:
        yg = y[:, None] * jnp.conj(f.g)  # [n, M]
        return finish({"hidden_bias": jnp.sum(yg, axis=0), "kernel": f.x.T @ yg,
                       "visible_bias": y @ f.x.astype(y.dtype)})

    def row(f: RBMFeatures) -> Params:
        return finish({"hidden_bias": f.g, "kernel": f.x[:, None] * f.g[None, :],
                       "visible_bias": f.x.astype(f.g.dtype)})

    return JacobianStructure(features, gram, transpose, row)


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

    Fast path: :func:`make_rbm_updates` (cache ``tanh(theta) [M]``). ``sites`` passed to
    ``log_ratio`` must be distinct (apart from the padding value ``n_sites``). A complex RBM is
    holomorphic (``Ansatz.holomorphic``). Factored log-derivatives for minSR:
    :func:`make_rbm_jacobian_structure`.
    """
    module = RBM(
        alpha=alpha,
        use_visible_bias=use_visible_bias,
        param_dtype=param_dtype,
        init_scale=init_scale,
    )

    def dense(params: Params) -> tuple[jax.Array, jax.Array, jax.Array]:
        p = params["params"]
        a = p["visible_bias"] if use_visible_bias else jnp.zeros((n_sites,), p["kernel"].dtype)
        return p["kernel"], p["hidden_bias"], a

    holomorphic = bool(jnp.issubdtype(param_dtype, jnp.complexfloating))
    structure = make_rbm_jacobian_structure(use_visible_bias, real=not holomorphic)
    return Ansatz(module, make_rbm_updates(dense, n_sites, flip_constant), holomorphic, structure)


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

    Fast path: :func:`make_rbm_updates` on the equivalent dense RBM with ``n_g alpha`` hidden
    units (``W_dense[j, (g, f)] = W[f, T_g^{-1}(j)]``, expanded once per ``prepare``); cache
    ``tanh(theta) [n_g alpha]``.
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
    n_g = perms.shape[0]

    def dense(params: Params) -> tuple[jax.Array, jax.Array, jax.Array]:
        # theta[g, f] = b_f + sum_j W[f, T_g^-1(j)] x_j: a dense RBM with n_g * alpha units
        p = params["params"]
        kernel = p["kernel"]  # [alpha, n_sites]
        w = jnp.transpose(kernel[:, inverse], (2, 1, 0)).reshape(n_sites, -1)  # [n, g*f]
        b = jnp.broadcast_to(p["hidden_bias"], (n_g, kernel.shape[0])).reshape(-1)
        vb = p["visible_bias"] if use_visible_bias else jnp.zeros((), kernel.dtype)
        return w, b, jnp.full((n_sites,), vb, kernel.dtype)

    holomorphic = bool(jnp.issubdtype(param_dtype, jnp.complexfloating))
    return Ansatz(module, make_rbm_updates(dense, n_sites, flip_constant), holomorphic,
                  symmetries=_declared_group(module.translations))


def _declared_group(perms: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...] | None:
    """``perms`` when they form a group (then ``log psi`` of the symmetric RBM, a sum over
    them, is invariant under each), else None: nothing is declared."""
    from nqs.models.gcnn import group_tables

    try:
        group_tables(perms)
    except InputError:
        return None
    return perms
