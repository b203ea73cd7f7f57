"""The fast paths of many-component observables equal the plain ones: the statistics of all
columns at once, the term path that evaluates only the matched patterns, and S(q) from the
pair correlations' rows."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
import nqs.state as state_module
from hamiltonians.lattice import chain, square
from hamiltonians.pauli import pauli_components, sigmax, sigmay, sigmaz
from hamiltonians.spin import Heisenberg
from hamiltonians.spin_observables import (
    spin_correlations,
    structure_factor,
    structure_factors,
)
from nqs.hilbert import SpinHilbert
from nqs.models.rbm import make_rbm
from nqs.operator import matches_terms
from nqs.optim.flat import real_flat
from nqs.sampling import ExchangeRule, MetropolisSampler
from nqs.state import VariationalState, expect_samples, make_local_values
from nqs.stats import split_rhat, split_rhat_columns, statistics


def random_params(ansatz, n, scale=0.3, seed=0):
    params = ansatz.init(jax.random.PRNGKey(seed), jnp.ones(n))
    flat, unflatten = real_flat(params)
    return unflatten(scale * jax.random.normal(jax.random.PRNGKey(seed + 1), flat.shape))


def _values(n, k, seed=0):
    """Complex columns like the correlations': many ties, a constant column, a drifting one."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, k)) + 0.1j * rng.normal(size=(n, k))
    v[rng.random((n, k)) < 0.5] = 0.25  # parallel spins: the diagonal value only
    v[:, 1] = -0.75
    v[:, 2] = np.round(v[:, 2].real)
    v[:, 3] += np.arange(n) * 1e-3
    return v


@pytest.mark.parametrize("weights", ["uniform", "importance"])
@pytest.mark.parametrize("direct_pairs", [16, 1], ids=["direct", "fft"])
def test_column_statistics_equal_per_column_statistics(weights, direct_pairs, monkeypatch):
    """Every field of the statistics of K columns at once (the sampled path of a component
    operator) equals nqs.stats.statistics of each column, R-hat included, to 1e-12: tau from
    direct autocovariance sums up to Geyer's cutoff, and from the FFT where the cutoff lies
    beyond the direct lags (all columns with one pair of direct lags; the AR(1) column with
    the default)."""
    import nqs.stats as stats_module

    monkeypatch.setattr(stats_module, "_DIRECT_PAIRS", direct_pairs)
    n_per, n_chains, k = 64, 8, 8
    n = n_per * n_chains
    v = _values(n, k)
    rng = np.random.default_rng(3)
    ar = np.zeros((n_per, n_chains))  # strongly correlated chains: a long Geyer sequence
    for t in range(1, n_per):
        ar[t] = 0.97 * ar[t - 1] + rng.normal(size=n_chains)
    v[:, 7] = ar.reshape(-1)
    w = np.full(n, 1.0 / n) if weights == "uniform" else rng.uniform(0.5, 1.5, n)
    w = w / w.sum()
    stats = stats_module.statistics_columns(v, w, n_chains)
    for c in range(k):
        ref = statistics(jnp.asarray(v[:, c]), jnp.asarray(w), n_chains)
        for got, want in ((stats.mean[c], ref.mean), (stats.error_of_mean[c], ref.error_of_mean),
                          (stats.variance[c], ref.variance), (stats.tau_corr[c], ref.tau_corr),
                          (stats.r_hat[c], ref.r_hat)):
            assert abs(complex(got) - complex(want)) <= 1e-12 * max(1.0, abs(complex(want)))
    assert stats.r_hat[1] == 1.0 and stats.tau_corr[1] == 0.5  # constant column
    assert stats.tau_corr[7] > 8  # beyond 16 lags: the FFT fallback


def test_split_rhat_columns_nan_and_short_chains():
    v = _values(256, 4)
    v[7, 0] = np.nan
    got = split_rhat_columns(v, 8)
    want = [float(split_rhat(jnp.asarray(v[:, c].real).reshape(32, 8))) for c in range(1, 4)]
    np.testing.assert_allclose(got[1:], want, rtol=1e-12)
    assert np.isnan(got[0])  # a column holding a NaN has no R-hat
    assert np.all(np.isnan(split_rhat_columns(v[:24], 8)))


@pytest.mark.parametrize("sector", [None, 0], ids=["full", "sz0"])
def test_matched_pattern_bound_is_tight(sector):
    """max_matched_terms bounds the patterns every configuration matches, and is reached."""
    n = 8
    hilbert = SpinHilbert(n, sector)
    corr = spin_correlations(hilbert)
    assert corr.max_matched_terms == (n // 2) ** 2 < len(corr.flip_terms.sites)
    terms = corr.flip_terms
    xs = hilbert.all_states()
    xt = xs[:, terms.sites]  # [S, P, 2]
    matched = np.all(xt == terms.signs[None] * xt[..., :1], axis=-1).sum(axis=1)
    assert matched.max() == corr.max_matched_terms
    # a sum of parallel and antiparallel patterns on shared pairs: still a bound
    ops = [sigmax(0) * sigmax(1) + 0.5 * sigmay(0) * sigmay(1), sigmax(0) * sigmax(1),
           sigmax(2) * sigmay(3) + sigmaz(4)]
    mixed = pauli_components(ops, hilbert)
    terms = mixed.flip_terms
    xt = xs[:, terms.sites]
    matched = np.all(xt == terms.signs[None] * xt[..., :1], axis=-1).sum(axis=1)
    assert matched.max() <= mixed.max_matched_terms <= len(terms.sites)


@pytest.mark.parametrize("sector", [None, 0], ids=["full", "sz0"])
def test_compact_term_path_equals_full_and_generic(sector, monkeypatch):
    """The correlations' term path evaluating only the matched patterns equals the one
    evaluating all of them and the generic path (log psi of every connected configuration)."""
    n = 10
    hilbert = SpinHilbert(n, sector)
    ansatz = make_rbm(n, 1.0)
    params = random_params(ansatz, n, seed=4)
    corr = spin_correlations(hilbert)
    xs = jnp.asarray(hilbert.random_state(jax.random.PRNGKey(5), 16))

    def values(a, compact_below):
        monkeypatch.setattr(state_module, "COMPACT_BELOW", compact_below)
        fn = jax.jit(jax.vmap(make_local_values(corr, a), (None, 0)))
        return np.asarray(fn(params, xs))

    assert state_module._antiparallel_pairs(corr.flip_terms, hilbert,
                                            corr.max_matched_terms) is not None
    compact = values(ansatz, 0.75)  # the antiparallel pairs from the up and down sites
    full = values(ansatz, 0.0)
    generic = values(ansatz.without_fast_path(), 0.75)
    monkeypatch.setattr(state_module, "_antiparallel_pairs", lambda *args: None)
    nonzero = values(ansatz, 0.75)  # the matched patterns by jnp.nonzero
    np.testing.assert_allclose(compact, full, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(compact, nonzero, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(compact, generic, rtol=1e-10, atol=1e-12)
    # exchange parts present (not only the diagonal): some pair values differ from +-1/4
    assert np.any(np.abs(np.abs(compact) - 0.25) > 1e-3)


@pytest.mark.parametrize("sector", [None, 0, 2], ids=["full", "sz0", "sz2"])
def test_antiparallel_pairs_are_the_matched_patterns(sector):
    """The enumeration of antiparallel pairs gives exactly the patterns a configuration
    matches, each once, on every configuration of the space; operators whose patterns are not
    every pair once get None (the jnp.nonzero path)."""
    n = 6
    hilbert = SpinHilbert(n, sector)
    corr = spin_correlations(hilbert)
    pairs = state_module._antiparallel_pairs(corr.flip_terms, hilbert, corr.max_matched_terms)
    assert pairs is not None
    xs = hilbert.all_states()
    idx, valid = (np.asarray(a) for a in jax.jit(jax.vmap(pairs))(jnp.asarray(xs)))
    match = np.asarray(jax.vmap(lambda x: matches_terms(corr.flip_terms, x))(jnp.asarray(xs)))
    for r in range(len(xs)):
        got = idx[r][valid[r]]
        assert len(got) == len(set(got.tolist()))
        assert set(got.tolist()) == set(np.flatnonzero(match[r]).tolist())
    some = pauli_components([sigmax(0) * sigmax(j) + sigmay(0) * sigmay(j)
                             for j in range(1, n)], hilbert)
    assert state_module._antiparallel_pairs(some.flip_terms, hilbert, n) is None


@pytest.mark.parametrize("sector", [None, 0], ids=["full", "sz0"])
def test_sampled_correlations_with_born_weights_equal_exact_sums(sector):
    """All pair correlations through the sampled path (pair enumeration, local values, the
    statistics of many columns) on every configuration with Born weights equal the exact
    <psi|S_i.S_j|psi> / <psi|psi> summed independently over the space, to 1e-10."""
    from nqs.sampling.base import Samples

    n = 8
    hilbert = SpinHilbert(n, sector)
    ansatz = make_rbm(n, 1.0)
    params = random_params(ansatz, n, seed=7, scale=0.3)
    xs = np.asarray(hilbert.all_states(), dtype=np.float64)
    psi = np.exp(np.asarray(jax.vmap(ansatz.log_psi, (None, 0))(params, jnp.asarray(xs))))
    born = np.abs(psi) ** 2 / np.sum(np.abs(psi) ** 2)
    index = {tuple(x.astype(int)): r for r, x in enumerate(xs)}
    want = []
    for i, j in itertools.combinations(range(n), 2):  # S_i.S_j = Sz Sz + (S+S- + S-S+) / 2
        value = np.sum(born * xs[:, i] * xs[:, j]) / 4
        for r, x in enumerate(xs):
            if x[i] != x[j]:
                y = x.copy()
                y[[i, j]] = y[[j, i]]
                value += 0.5 * np.conj(psi[index[tuple(y.astype(int))]]) * psi[r] / np.sum(
                    np.abs(psi) ** 2)
        want.append(value)
    samples = Samples(jnp.asarray(xs), jnp.asarray(born), 1)
    stats = expect_samples(ansatz, params, samples, spin_correlations(hilbert))
    np.testing.assert_allclose(np.asarray(stats.mean), np.asarray(want), rtol=0, atol=1e-10)
    assert np.all(np.isfinite(np.asarray(stats.r_hat)))


def _stacked_structure_factors(lattice, hilbert):
    """The explicit operator: one Pauli sum per momentum (every pair's rows once per q)."""
    from hamiltonians.spin_observables import lattice_momenta

    return pauli_components([structure_factor(lattice, q) for q in lattice_momenta(lattice)],
                            hilbert)


@pytest.mark.parametrize("lattice", [chain(8), square(3)], ids=["chain8", "square3"])
def test_structure_factors_from_pairs_equal_explicit_sums(lattice):
    """S(q) as the Fourier transform of the pair correlations' local values equals the
    explicit per-momentum Pauli sums on Metropolis samples: local values and the statistics to
    1e-12 (Marshall-rotated state, S^z = 0 sector where there is one)."""
    n = lattice.n_sites
    model = Heisenberg(lattice, marshall_sign=lattice.is_bipartite)
    hilbert = model.hilbert
    ansatz = make_rbm(n, 1.0)
    params = random_params(ansatz, n, seed=6, scale=0.2)
    sub = np.asarray(lattice.sublattice) if lattice.is_bipartite else None
    sampler = MetropolisSampler(hilbert, ExchangeRule(lattice.bonds), n_chains=8,
                                n_samples=256)
    state = VariationalState(ansatz, params, sampler, marshall_sublattice=sub, seed=1)
    samples = state.sample()
    fast = state_module._bind_cached(structure_factors(lattice), hilbert, sub)
    slow = state_module.bind_operator(_stacked_structure_factors(lattice, hilbert), hilbert, sub)
    for op in (fast, slow):
        assert op.n_components == n
    xs = samples.x[:32]
    a = np.asarray(jax.jit(jax.vmap(make_local_values(fast, ansatz), (None, 0)))(params, xs))
    b = np.asarray(jax.jit(jax.vmap(make_local_values(slow, ansatz), (None, 0)))(params, xs))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    sa = expect_samples(ansatz, params, samples, fast)
    sb = expect_samples(ansatz, params, samples, slow)
    for fa, fb in zip(sa[:4], sb[:4], strict=True):  # mean, error, variance, tau
        np.testing.assert_allclose(np.asarray(fa), np.asarray(fb), rtol=1e-12, atol=1e-12)
    # R-hat ranks the values: rounding-level differences can split or merge ties
    np.testing.assert_allclose(np.asarray(sa.r_hat), np.asarray(sb.r_hat), rtol=1e-3)
    assert np.all(np.asarray(sa.error_of_mean) > 0)


def test_combined_components_refuse_bad_shapes():
    from nqs.errors import InputError
    from nqs.operator import CombinedComponents

    corr = spin_correlations(4)
    with pytest.raises(InputError, match="matrix"):
        CombinedComponents(corr, np.ones((5, 2)), np.zeros(2))
    with pytest.raises(InputError, match="offset"):
        CombinedComponents(corr, np.ones((6, 2)), np.zeros(3))


def test_pair_patterns_cover_every_pair_once():
    """One exchange pattern per pair i < j (the rows the S(q) combination reuses)."""
    corr = spin_correlations(SpinHilbert(6, 0))
    pairs = {tuple(sorted(p)) for p in corr.flip_terms.sites.tolist()}
    assert pairs == set(itertools.combinations(range(6), 2))
    assert len(corr.flip_terms.sites) == 15


@pytest.mark.parametrize("sector", [None, 0], ids=["full", "sz0"])
def test_tabled_pattern_elements_equal_rows(sector):
    """Patterns whose element depends on the flipped spins only (exchange, correlations,
    Marshall-rotated) take it from a table: equal to the element of their row in ``flips``
    on every configuration."""
    n = 6
    hilbert = SpinHilbert(n, sector)
    sub = np.array([0, 1, 0, 1, 0, 1])
    ops = [spin_correlations(hilbert).marshall_rotated(sub),
           pauli_components([sigmax(0) * sigmax(2) + 0.5 * sigmay(0) * sigmay(2) + sigmaz(1),
                             (1 + 2j) * sigmax(1) * sigmay(4) - sigmaz(3) * sigmaz(5)], hilbert)]
    xs = jnp.asarray(hilbert.all_states())
    for op in ops:
        tables = op._tables
        assert tables.pattern_elements is not None

        def from_rows(x, tables=tables):
            _, mels = tables.flips(x)
            match = matches_terms(tables.patterns, x)
            return mels[: tables.n_components], jnp.where(match, mels[tables.pattern_row], 0)

        d0, p0 = jax.jit(jax.vmap(from_rows))(xs)
        d1, p1 = jax.jit(jax.vmap(op.term_values))(xs)
        np.testing.assert_allclose(np.asarray(d1), np.asarray(d0), rtol=0, atol=1e-14)
        np.testing.assert_allclose(np.asarray(p1), np.asarray(p0), rtol=0, atol=1e-14)
        assert np.any(np.asarray(p0) != 0)
    # a Z factor off the flipped sites: the element depends on x elsewhere, no table
    other = pauli_components([sigmax(0) * sigmax(1) * sigmaz(2)], hilbert)
    assert other._tables.pattern_elements is None
