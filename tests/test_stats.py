"""Monte Carlo statistics: error bars, autocorrelation time, R-hat, exact weights."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from nqs.stats import Stats, statistics, stats_to_dict


def _uniform(n: int) -> jnp.ndarray:
    return jnp.full(n, 1.0 / n)


def _ar1(rho: float, n_per_chain: int, n_chains: int, seed: int) -> np.ndarray:
    """Stationary AR(1) chains [n_per_chain, n_chains] with unit innovation variance."""
    rng = np.random.default_rng(seed)
    x = np.empty((n_per_chain, n_chains))
    x[0] = rng.normal(size=n_chains) / math.sqrt(1.0 - rho**2)
    noise = rng.normal(size=(n_per_chain, n_chains))
    for t in range(1, n_per_chain):
        x[t] = rho * x[t - 1] + noise[t]
    return x


def test_iid_gaussian_error():
    rng = np.random.default_rng(0)
    n_chains, n_per_chain, sigma = 16, 1000, 2.0
    v = rng.normal(loc=3.0, scale=sigma, size=n_chains * n_per_chain)
    s = statistics(jnp.asarray(v), _uniform(v.size), n_chains)
    assert isinstance(s, Stats)
    naive = sigma / math.sqrt(v.size)
    assert abs(float(s.error_of_mean) / naive - 1.0) < 0.10
    assert abs(float(s.mean) - 3.0) < 4 * naive
    assert abs(float(s.variance) / sigma**2 - 1.0) < 0.05
    assert abs(float(s.tau_corr) - 0.5) < 0.1
    assert abs(float(s.r_hat) - 1.0) < 0.01


def test_ar1_tau_and_error():
    rho, n_per_chain, n_chains = 0.9, 4000, 64
    x = _ar1(rho, n_per_chain, n_chains, seed=1)
    v = jnp.asarray(x.reshape(-1))  # row = t * n_chains + chain
    s = statistics(v, _uniform(v.size), n_chains)
    tau_exact = (1 + rho) / (2 * (1 - rho))
    assert abs(float(s.tau_corr) / tau_exact - 1.0) < 0.2
    # Exact standard deviation of the mean of M independent stationary AR(1) chains.
    var_x = 1.0 / (1.0 - rho**2)
    t = np.arange(1, n_per_chain)
    corr_sum = 1.0 + 2.0 * np.sum((1.0 - t / n_per_chain) * rho**t)
    std_mean = math.sqrt(var_x / n_per_chain * corr_sum / n_chains)
    assert abs(float(s.error_of_mean) / std_mean - 1.0) < 0.25
    # The naive error would be ~sqrt(19) times too small.
    assert float(s.error_of_mean) > 3 * math.sqrt(float(s.variance) / v.size)


def test_single_chain_ar1():
    rho = 0.5
    x = _ar1(rho, 20000, 1, seed=2)
    s = statistics(jnp.asarray(x.reshape(-1)), _uniform(x.size), 1)
    tau_exact = (1 + rho) / (2 * (1 - rho))
    assert abs(float(s.tau_corr) / tau_exact - 1.0) < 0.2
    assert np.isfinite(float(s.r_hat))


def test_rhat_detects_shifted_chain():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1000, 4))
    same = statistics(jnp.asarray(x.reshape(-1)), _uniform(x.size), 4)
    assert abs(float(same.r_hat) - 1.0) < 0.02
    x[:, 2] += 2.0
    shifted = statistics(jnp.asarray(x.reshape(-1)), _uniform(x.size), 4)
    assert float(shifted.r_hat) > 1.1
    # Between-chain spread also inflates the error bar.
    assert float(shifted.error_of_mean) > 3 * float(same.error_of_mean)


def test_rhat_nan_when_too_short():
    v = jnp.arange(6.0)
    s = statistics(v, _uniform(6), 2)  # 3 samples per chain
    assert math.isnan(float(s.r_hat))
    assert np.isfinite(float(s.error_of_mean))


def test_exact_weights():
    rng = np.random.default_rng(4)
    v = rng.normal(size=10) + 1j * rng.normal(size=10)
    w = rng.random(10)
    w /= w.sum()
    s = statistics(jnp.asarray(v), jnp.asarray(w), 0)
    mean = np.sum(w * v)
    np.testing.assert_allclose(complex(s.mean), mean, rtol=1e-12)
    np.testing.assert_allclose(float(s.variance), np.sum(w * np.abs(v - mean) ** 2), rtol=1e-12)
    assert float(s.error_of_mean) == 0.0
    assert float(s.tau_corr) == 0.0
    assert math.isnan(float(s.r_hat))


def test_complex_values_and_constant():
    rng = np.random.default_rng(5)
    v = rng.normal(size=800) + 1j * rng.normal(size=800)
    s = statistics(jnp.asarray(v), _uniform(800), 8)
    assert jnp.iscomplexobj(s.mean)
    assert abs(float(s.variance) - 2.0) < 0.3
    const = statistics(jnp.full(64, -1.5 + 0j), _uniform(64), 8)
    assert complex(const.mean) == -1.5
    assert float(const.error_of_mean) == 0.0
    assert float(const.r_hat) == 1.0
    d = stats_to_dict(const, prefix="energy_")
    assert d["energy_mean"] == -1.5 and isinstance(d["energy_mean"], float)


def test_bad_chain_count():
    with pytest.raises(ValueError):
        statistics(jnp.zeros(10), _uniform(10), 3)
