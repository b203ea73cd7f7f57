"""Monte Carlo statistics of a weighted sample: mean, error bar, autocorrelation time, R-hat.

Conventions (all documented here once):

* ``mean = sum_i w_i v_i`` and ``variance = sum_i w_i |v_i - mean|^2`` for any weights.
* Exact enumeration (``n_chains == 0``): no Monte Carlo error, ``error_of_mean = tau_corr = 0``
  and ``r_hat = nan``.
* Markov chains (``n_chains >= 1``, row ``i = t * n_chains + c``): the values
  are viewed as ``[n_per_chain, n_chains]``. ``tau_corr`` is Sokal's *integrated*
  autocorrelation time ``tau = 1/2 + sum_{t>=1} rho(t)`` in samples per chain (``1/2`` for
  independent samples, ``(1 + rho) / (2 (1 - rho))`` for an AR(1) process), estimated from the
  FFT autocovariance of every chain combined across chains as in Stan / Vehtari et al. (2021):
  ``rho(t) = 1 - (W - mean_c acov_c(t)) / var_plus``, truncated with Geyer's initial positive
  (and monotone) sequence. The error of the mean is ``sqrt(variance * 2 tau / n)``, i.e.
  ``sqrt(variance / ESS)``. It can be *smaller* than the naive ``sqrt(variance / n)`` for
  anti-correlated chains; like Stan, ``2 tau`` is floored at ``1 / log10(n)`` so the effective
  sample size never exceeds ``n log10(n)``.
* Importance-weighted Markov chains (draws from ``p`` with ``w_i ~ |psi|^2 / p``, normalised):
  the error and ``tau_corr`` are those of ``y_i = n w_i (v_i - mean)`` (the linearised ratio
  estimator), ``sqrt(mean |y|^2 * 2 tau_y / n)``; for uniform weights this is the formula above.
* ``r_hat`` is the rank-normalized split R-hat of Vehtari et al. (2021): the max of the split
  R-hat of the rank-normalized values and of the rank-normalized folded values
  ``|v - median|``. It needs ``n_per_chain >= 4``; otherwise it is ``nan``. All-equal values
  (a zero-variance eigenstate) give ``r_hat = 1``.
* Complex values: ``tau_corr`` and ``r_hat`` use the real part; the mean stays complex and the
  variance is ``sum w |v - mean|^2``.

:func:`statistics` is pure and jit-compiled with ``n_chains`` static.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

import nqs  # noqa: F401  (enables float64)


class Stats(NamedTuple):
    """Statistics of a Monte Carlo estimate (all 0-d arrays).

    mean: weighted mean (complex if the values are complex).
    error_of_mean: standard error of ``mean`` (0 for exact enumeration).
    variance: weighted variance ``sum w |v - mean|^2`` (real).
    tau_corr: integrated autocorrelation time in samples per chain (Sokal convention, 1/2 for
      independent samples; 0 for exact enumeration).
    r_hat: rank-normalized split R-hat (nan when it cannot be computed).
    """

    mean: jax.Array
    error_of_mean: jax.Array
    variance: jax.Array
    tau_corr: jax.Array
    r_hat: jax.Array


def _next_pow_two(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


def autocovariance(chains: jax.Array) -> jax.Array:
    """Biased autocovariance of each chain via FFT.

    chains: [n_per_chain, n_chains] real. Returns [n_per_chain, n_chains] with
    ``acov[t, c] = 1/N sum_s (x[s, c] - m_c)(x[s + t, c] - m_c)``.
    """
    n = chains.shape[0]
    centered = chains - jnp.mean(chains, axis=0, keepdims=True)
    size = _next_pow_two(2 * n)
    f = jnp.fft.rfft(centered, n=size, axis=0)
    acov = jnp.fft.irfft(f * jnp.conj(f), n=size, axis=0)[:n]
    return acov / n


def integrated_time(chains: jax.Array) -> jax.Array:
    """Integrated autocorrelation time ``1/2 + sum_{t>=1} rho(t)`` of a set of chains.

    chains: [n_per_chain, n_chains] real (n_per_chain >= 2). Multi-chain estimator of
    Vehtari et al. (2021) with Geyer's initial monotone sequence; returns a 0-d array, floored
    so that ``2 tau >= 1 / log10(n_total)``. All-constant chains give ``1/2``.
    """
    n, m = chains.shape
    acov = autocovariance(chains)
    mean_acov = jnp.mean(acov, axis=1)  # [n]
    w = mean_acov[0] * n / (n - 1.0)  # mean within-chain variance (ddof=1)
    var_plus = w * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + jnp.var(jnp.mean(chains, axis=0), ddof=1)
    safe = jnp.where(var_plus > 0, var_plus, 1.0)
    rho = 1.0 - (w - mean_acov) / safe  # rho[0] = 1 exactly when m == 1
    rho = rho.at[0].set(1.0)
    # Pairs P_k = rho(2k) + rho(2k+1); keep the initial positive run, made monotone.
    n_pairs = n // 2
    pairs = rho[: 2 * n_pairs].reshape(n_pairs, 2).sum(axis=1)
    nonpositive = pairs <= 0
    first_bad = jnp.where(jnp.any(nonpositive), jnp.argmax(nonpositive), n_pairs)
    keep = jnp.arange(n_pairs) < first_bad
    # Running minimum (a plain scan: much cheaper to compile than lax.cummin on CPU).
    _, pairs = jax.lax.scan(lambda c, p: (jnp.minimum(c, p),) * 2, jnp.inf, pairs)
    two_tau = -1.0 + 2.0 * jnp.sum(jnp.where(keep, pairs, 0.0))
    floor = 1.0 / jnp.log10(jnp.maximum(n * m, 10.0))
    two_tau = jnp.maximum(two_tau, floor)
    two_tau = jnp.where(var_plus > 0, two_tau, 1.0)
    return 0.5 * two_tau


def _split_rhat(chains: jax.Array) -> jax.Array:
    """Classic split R-hat of [n_per_chain, n_chains] real chains (n_per_chain >= 4)."""
    n, m = chains.shape
    half = n // 2
    split = jnp.concatenate([chains[:half], chains[n - half :]], axis=1)  # [half, 2m]
    w = jnp.mean(jnp.var(split, axis=0, ddof=1))
    b_over_n = jnp.var(jnp.mean(split, axis=0), ddof=1)
    var_plus = (half - 1.0) / half * w + b_over_n
    rhat = jnp.sqrt(var_plus / jnp.where(w > 0, w, 1.0))
    return jnp.where(w > 0, rhat, jnp.where(b_over_n > 0, jnp.inf, 1.0))


def _rank_normalize(x: jax.Array, sorted_flat: jax.Array) -> jax.Array:
    """Rank-normalized z-scores (average ranks for ties) of ``x``; ``sorted_flat`` = sort(x)."""
    flat = x.reshape(-1)
    lo = jnp.searchsorted(sorted_flat, flat, side="left", method="sort")
    hi = jnp.searchsorted(sorted_flat, flat, side="right", method="sort")
    rank = 0.5 * (lo + hi + 1.0)  # 1-based average rank
    z = ndtri((rank - 0.375) / (flat.size + 0.25))
    return z.reshape(x.shape)


def split_rhat(chains: jax.Array) -> jax.Array:
    """Rank-normalized split R-hat (max of bulk and folded) of [n_per_chain, n_chains] chains."""
    if chains.shape[0] < 4:
        return jnp.array(jnp.nan)
    s = jnp.sort(chains.reshape(-1))
    bulk = _split_rhat(_rank_normalize(chains, s))
    median = 0.5 * (s[(s.size - 1) // 2] + s[s.size // 2])
    folded = jnp.abs(chains - median)
    tail = _split_rhat(_rank_normalize(folded, jnp.sort(folded.reshape(-1))))
    return jnp.maximum(bulk, tail)


@partial(jax.jit, static_argnames=("n_chains", "with_r_hat"))
def statistics(values: jax.Array, weights: jax.Array, n_chains: int,
               with_r_hat: bool = True) -> Stats:
    """Statistics of ``values`` [n] with ``weights`` [n] (summing to 1).

    ``n_chains`` (a Python int, static) is the number of Markov chains, row
    ``i = sample_index * n_chains + chain``; 0 means exact enumeration (no Monte Carlo error).
    Markov-chain draws may carry importance weights (see the module docstring).
    ``with_r_hat=False`` skips the R-hat (``nan``): its rank normalization is the costly part
    when thousands of observables are vmapped (:func:`split_rhat_columns` does them at once).
    """
    values = jnp.asarray(values)
    weights = jnp.asarray(weights, dtype=jnp.result_type(float))
    if values.ndim != 1 or weights.shape != values.shape:
        raise ValueError(f"values and weights must be [n]; got {values.shape}, {weights.shape}")
    mean = jnp.sum(weights * values)
    variance = jnp.sum(weights * jnp.abs(values - mean) ** 2)
    if n_chains == 0:
        zero = jnp.zeros((), variance.dtype)
        return Stats(mean, zero, variance, zero, jnp.full((), jnp.nan, variance.dtype))
    n = values.shape[0]
    if n_chains < 0 or n % n_chains != 0:
        raise ValueError(f"{n} samples cannot be split into {n_chains} chains")
    n_per_chain = n // n_chains
    chains = jnp.real(values).reshape(n_per_chain, n_chains).astype(variance.dtype)
    # Importance-weighted draws (e.g. chains sampling |psi|^(2q)): the weighted mean is a ratio
    # estimator whose error is that of the mean of y_i = n w_i (v_i - mean). For uniform weights
    # y_i = v_i - mean, and this is the usual sqrt(variance 2 tau / n).
    y = n * weights * (values - mean)
    y_chains = jnp.real(y).reshape(n_per_chain, n_chains).astype(variance.dtype)
    if n_per_chain < 2:
        # One sample per chain: the chains are independent draws.
        tau = jnp.full((), 0.5, variance.dtype)
    else:
        tau = integrated_time(y_chains)
    error = jnp.sqrt(jnp.mean(jnp.abs(y) ** 2) * 2.0 * tau / n)
    if with_r_hat:
        r_hat = split_rhat(chains).astype(variance.dtype)
    else:
        r_hat = jnp.full((), jnp.nan, variance.dtype)
    return Stats(mean, error, variance, tau, r_hat)


def split_rhat_columns(values: np.ndarray, n_chains: int) -> np.ndarray:
    """:func:`split_rhat` of every column of ``values [n, K]`` (real parts; row
    ``i = sample_index * n_chains + chain``), ``[K]``: the average ranks come from
    ``scipy.stats.rankdata`` along the sample axis (one vectorized sort; ``ndtri`` of the
    half-integer ranks from a table), the rest is
    :func:`split_rhat`'s formula. ``nan`` for fewer than 4 samples per chain and for a column
    holding a NaN."""
    from scipy.special import ndtri as np_ndtri
    from scipy.stats import rankdata

    v = np.real(np.asarray(values, dtype=np.complex128 if np.iscomplexobj(values)
                           else np.float64))
    n, k = v.shape
    n_per = n // n_chains
    if n_per < 4:
        return np.full(k, np.nan)

    # average ranks are half-integers: ndtri tabulated over the 2 n + 2 possible values
    table = np_ndtri((np.arange(2 * n + 2) / 2.0 - 0.375) / (n + 0.25))

    nan = np.isnan(v).any(axis=0)
    v = np.where(nan[None, :], 0.0, v)

    def z(a: np.ndarray) -> jax.Array:
        twice = (rankdata(a, axis=0, method="average") * 2.0).astype(np.int64)
        return jnp.asarray(table[twice].reshape(n_per, n_chains, k))

    bulk = z(v)
    tail = z(np.abs(v - np.median(v, axis=0, keepdims=True)))
    r_hat = np.array(_split_rhat_columns(bulk, tail))
    r_hat[nan] = np.nan  # a column holding a NaN has none
    return r_hat


@jax.jit
def _split_rhat_columns(bulk: jax.Array, tail: jax.Array) -> jax.Array:
    """``max(split R-hat(bulk), split R-hat(tail))`` of every column of ``[n_per, m, K]``."""
    per_column = jax.vmap(_split_rhat, in_axes=2)
    return jnp.maximum(per_column(bulk), per_column(tail))


def v_score(energy: float, variance: float, n_dof: int, e_inf: float = 0.0) -> float:
    """V-score of varbench (Wu et al., Science 2024): ``N Var(E) / (E - E_inf)^2``.

    ``energy`` and ``variance`` are the variational energy and the variance of the local
    energy (``<H^2> - <H>^2``), ``n_dof`` the number of degrees of freedom (sites of a spin
    model), ``e_inf = Tr H / dim`` the infinite-temperature energy (0 for every spin model of
    :mod:`hamiltonians.spin`). Zero for an eigenstate; ``nan`` when ``energy == e_inf`` or an
    input is not finite.
    """
    denom = (float(energy) - float(e_inf)) ** 2
    if not denom > 0 or not math.isfinite(float(variance)):
        return float("nan")
    return float(n_dof) * float(variance) / denom


def stats_to_dict(stats: Stats, prefix: str = "") -> dict[str, float | complex]:
    """Python scalars for logging: ``{prefix + "mean": ..., prefix + "error": ..., ...}``.

    A complex mean with zero imaginary part is reported as a float.
    """
    mean = complex(stats.mean) if jnp.iscomplexobj(stats.mean) else float(stats.mean)
    if isinstance(mean, complex) and mean.imag == 0.0:
        mean = mean.real
    return {
        f"{prefix}mean": mean,
        f"{prefix}error": float(stats.error_of_mean),
        f"{prefix}variance": float(stats.variance),
        f"{prefix}tau_corr": float(stats.tau_corr),
        f"{prefix}r_hat": float(stats.r_hat),
    }


@jax.jit
def unique_statistics(values: jax.Array, weights: jax.Array, n_draws: jax.Array) -> Stats:
    """Statistics of ``n_draws`` independent exact draws reduced to distinct configurations.

    ``values`` [n] and ``weights`` [n] = counts / n_draws (rows of count 0 weigh nothing), as
    returned by :class:`nqs.sampling.autoregressive.AutoregressiveSampler`. The draws are
    independent, so ``error_of_mean = sqrt(variance / n_draws)``, ``tau_corr = 1/2`` and
    ``r_hat = nan`` (there are no chains).
    """
    mean = jnp.sum(weights * values)
    variance = jnp.sum(weights * jnp.abs(values - mean) ** 2)
    error = jnp.sqrt(variance / jnp.asarray(n_draws, variance.dtype))
    return Stats(mean, error, variance, jnp.asarray(0.5, variance.dtype),
                 jnp.asarray(jnp.nan, variance.dtype))
