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

import functools
import math
from collections.abc import Callable
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


def statistics_columns(values: np.ndarray, weights: np.ndarray, n_chains: int) -> Stats:
    """:func:`statistics` of every column of ``values [n, K]`` (Markov chains, ``n_chains >=
    1``), on the host, all fields ``[K]``, R-hat included (:func:`split_rhat_columns`).

    The same definitions as :func:`statistics`, computed for many columns at once: the
    autocovariances by direct sums over the lags up to Geyer's cutoff (typically a few lags;
    a numba loop), and by FFT (as :func:`integrated_time`) for the columns whose cutoff lies
    beyond ``_DIRECT_PAIRS`` pairs of lags. Equal to the per-column statistics to rounding.
    """
    v = np.asarray(values)
    w = np.asarray(weights, dtype=np.float64)
    n, k = v.shape
    if n_chains < 1 or n % n_chains != 0:
        raise ValueError(f"{n} samples cannot be split into {n_chains} chains")
    mean = w @ v
    dev = v - mean
    absdev2 = dev.real ** 2 + dev.imag ** 2 if np.iscomplexobj(dev) else dev ** 2
    variance = w @ absdev2
    y = (n * w)[:, None] * dev  # the linearised ratio estimator (module docstring)
    y_abs2 = (n * w)[:, None] ** 2 * absdev2
    n_per = n // n_chains
    rows = np.ascontiguousarray(np.real(y).T)  # [K, n]
    if n_per < 2:
        tau = np.full(k, 0.5)
    else:
        tau, unresolved = _tau_kernel()(rows, n_chains, _DIRECT_PAIRS)
        cols = np.flatnonzero(unresolved)
        if len(cols):  # all at once, padded to a power of two (few compiled shapes)
            chains = rows[np.append(cols, np.full(_next_pow_two(len(cols)) - len(cols),
                                                  cols[-1]))]
            tau[cols] = np.asarray(_integrated_times(
                jnp.asarray(chains.reshape(-1, n_per, n_chains))))[: len(cols)]
    error = np.sqrt(np.mean(y_abs2, axis=0) * 2.0 * tau / n)
    return Stats(mean, error, variance, tau, split_rhat_columns(v, n_chains))


#: Pairs of lags :func:`statistics_columns` sums directly before it takes the FFT.
_DIRECT_PAIRS = 16


@jax.jit
def _integrated_times(chains: jax.Array) -> jax.Array:
    """:func:`integrated_time` of every ``chains[k] [n_per, n_chains]``, ``[K]``."""
    return jax.vmap(integrated_time)(chains)


@functools.cache
def _tau_kernel() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``tau(rows [K, n], n_chains, max_pairs) -> (tau [K], unresolved bool [K])``: the
    integrated time of :func:`integrated_time` of every row (``[n_per, n_chains]`` chains,
    row-major), from direct autocovariance sums up to Geyer's cutoff; ``unresolved`` where the
    cutoff lies beyond ``max_pairs`` pairs of lags (then ``tau`` is not set)."""
    import numba

    @numba.njit
    def tau_columns(rows, n_chains, max_pairs):  # pragma: no cover (compiled)
        k, n = rows.shape
        m = n_chains
        n_per = n // m
        n_pairs = n_per // 2
        tau = np.empty(k)
        unresolved = np.zeros(k, np.bool_)
        d = np.empty(n)
        chain_means = np.empty(m)
        floor = 1.0 / np.log10(max(n, 10.0))
        for col in range(k):
            for c in range(m):
                s = 0.0
                for t in range(n_per):
                    s += rows[col, t * m + c]
                chain_means[c] = s / n_per
            for i in range(n):
                d[i] = rows[col, i] - chain_means[i % m]

            a0 = 0.0
            for i in range(n):
                a0 += d[i] * d[i]
            a0 /= n  # the mean over chains of the biased autocovariance at lag 0
            within = a0 * n_per / (n_per - 1.0)
            var_plus = within * (n_per - 1.0) / n_per
            if m > 1:
                grand = chain_means.mean()
                between = 0.0
                for c in range(m):
                    between += (chain_means[c] - grand) ** 2
                var_plus += between / (m - 1.0)
            if not var_plus > 0:
                tau[col] = 0.5
                continue
            total = 0.0
            running = np.inf
            resolved = False
            for p in range(n_pairs):
                if p >= max_pairs:
                    break
                pair = 0.0
                for lag in range(2 * p, 2 * p + 2):
                    if lag == 0:
                        pair += 1.0
                        continue
                    s = 0.0
                    for i in range((n_per - lag) * m):
                        s += d[i] * d[i + lag * m]
                    pair += 1.0 - (within - s / n) / var_plus
                if pair <= 0:
                    resolved = True
                    break
                running = min(running, pair)
                total += running
            else:
                resolved = True  # every pair positive: all kept
            if not resolved:
                unresolved[col] = True
                continue
            tau[col] = 0.5 * max(-1.0 + 2.0 * total, floor)
        return tau, unresolved

    return tau_columns


def split_rhat_columns(values: np.ndarray, n_chains: int) -> np.ndarray:
    """:func:`split_rhat` of every column of ``values [n, K]`` (real parts; row
    ``i = sample_index * n_chains + chain``), ``[K]``, on the host: one ``numpy.argsort`` of
    every column, then, per column, the average ranks (``ndtri`` of the half-integer ranks from
    a table), the order of the folded values ``|v - median|`` (a merge of the two sides of the
    median in the sorted column: no second sort) and :func:`split_rhat`'s formula, in one
    compiled loop (numba). ``nan`` for fewer than 4 samples per chain and for a column holding a
    NaN."""
    from scipy.special import ndtri as np_ndtri

    v = np.real(np.asarray(values, dtype=np.complex128 if np.iscomplexobj(values)
                           else np.float64))
    n, k = v.shape
    n_per = n // n_chains
    if n_per < 4:
        return np.full(k, np.nan)

    # average ranks are half-integers: ndtri tabulated over the 2 n + 2 possible values
    table = np_ndtri((np.arange(2 * n + 2) / 2.0 - 0.375) / (n + 0.25))

    nan = np.isnan(v).any(axis=0)
    rows = np.ascontiguousarray(v.T)  # [K, n]: each column contiguous for the sort
    rows[nan] = 0.0
    order = np.argsort(rows, axis=1)
    r_hat = _rank_rhat_kernel()(rows, order, table, n_chains)
    r_hat[nan] = np.nan  # a column holding a NaN has none
    return r_hat


@functools.cache
def _rank_rhat_kernel() -> Callable[..., np.ndarray]:
    """The compiled loop of :func:`split_rhat_columns` (numba imported and compiled on first
    use in a process, about a second; not cached on disk, where a copy compiled at another
    ``NUMBA_OPT``, the test suite's 0, would be reused)."""
    import numba

    @numba.njit
    def rank_rhat(rows, order, table, n_chains):  # pragma: no cover (compiled)
        k, n = rows.shape
        n_per = n // n_chains
        half = n_per // 2
        groups = 2 * n_chains
        out = np.empty(k)
        s = np.empty(n)  # the sorted column
        values = np.empty(n)  # sorted values of this pass: the column, then |v - median|
        index = np.empty(n, np.int64)  # their rows
        z = np.empty(n)
        means = np.empty(groups)
        for col in range(k):
            o = order[col]
            for p in range(n):
                s[p] = rows[col, o[p]]
                values[p] = s[p]
                index[p] = o[p]
            median = 0.5 * (s[(n - 1) // 2] + s[n // 2])
            r_hat = 0.0
            for fold in range(2):
                if fold == 1:
                    # |v - median| in ascending order: merge the lower side (read downwards)
                    # and the upper side (upwards) of the sorted column
                    hi = 0
                    while hi < n and s[hi] < median:
                        hi += 1
                    lo = hi - 1
                    for p in range(n):
                        if lo < 0 or (hi < n and abs(s[hi] - median) <= abs(s[lo] - median)):
                            values[p] = abs(s[hi] - median)
                            index[p] = o[hi]
                            hi += 1
                        else:
                            values[p] = abs(s[lo] - median)
                            index[p] = o[lo]
                            lo -= 1
                # z-scores of the average ranks (ties share their mean rank)
                p = 0
                while p < n:
                    q = p
                    while q + 1 < n and values[q + 1] == values[p]:
                        q += 1
                    score = table[p + q + 2]  # twice the 1-based average rank of p..q
                    for r in range(p, q + 1):
                        z[index[r]] = score
                    p = q + 1
                # split R-hat: the first and last halves of every chain (row t * m + c)
                means[:] = 0.0
                for c in range(n_chains):
                    for t in range(half):
                        means[c] += z[t * n_chains + c]
                        means[n_chains + c] += z[(n_per - half + t) * n_chains + c]
                means /= half
                w = 0.0
                for c in range(n_chains):
                    for t in range(half):
                        d0 = z[t * n_chains + c] - means[c]
                        d1 = z[(n_per - half + t) * n_chains + c] - means[n_chains + c]
                        w += d0 * d0 + d1 * d1
                w /= groups * (half - 1.0)
                grand = means.mean()
                b = 0.0
                for g in range(groups):
                    b += (means[g] - grand) ** 2
                b /= groups - 1.0
                if w > 0:
                    one = np.sqrt(((half - 1.0) / half * w + b) / w)
                else:
                    one = np.inf if b > 0 else 1.0
                r_hat = max(r_hat, one)
            out[col] = r_hat
        return out

    return rank_rhat


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

    Importance-weighted draws (tempered, ``weights`` = counts x p/Q, normalized) give
    ``n_draws`` per row [n]: the plain draws each row's weight stands for, ``sum_y c_y r_y /
    r_x``; the error is then the self-normalized importance-sampling (delta-method) one,
    ``sqrt(sum_x w_x |f_x - mean|^2 / n_x)``, which a scalar ``n_draws`` reduces to.
    """
    mean = jnp.sum(weights * values)
    deviation = jnp.abs(values - mean) ** 2
    variance = jnp.sum(weights * deviation)
    n = jnp.asarray(n_draws, variance.dtype)
    error = jnp.sqrt(variance / n if n.ndim == 0 else jnp.sum(weights * deviation / n))
    return Stats(mean, error, variance, jnp.asarray(0.5, variance.dtype),
                 jnp.asarray(jnp.nan, variance.dtype))


def format_estimate(value: float, error: float | None, exact_sum: bool = False,
                    digits: int = 8) -> str:
    """An estimate for the console and tables: ``-1.13728383 +- 1.2e-05``, or
    ``-1.13728383 (exact sum)`` for an expectation value summed over the whole space."""
    if exact_sum:
        return f"{value:.{digits}f} (exact sum)"
    return f"{value:.{digits}f} +- {'-' if error is None else f'{error:.1e}'}"
