"""Samplers: exact weights, Metropolis histograms against |psi|^2, sectors, rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import chisquare

import nqs  # noqa: F401  (float64)
from nqs.errors import InputError
from nqs.hilbert import FermionHilbert, SpinHilbert, state_index
from nqs.models.rbm import make_rbm, make_rbm_symm, translation_group
from nqs.sampling import (
    AntiparallelExchangeRule,
    ExactSampler,
    ExchangeRule,
    HopRule,
    LocalRule,
    MetropolisSampler,
    PairHopRule,
    Samples,
    default_rule,
)


def random_params(ansatz, hilbert, seed=0, scale=0.4):
    """Parameters ``scale * (N + 0.7 i N)`` (numpy random numbers: no per-shape compilation)."""
    x0 = jnp.asarray(hilbert.all_states()[0])
    params = ansatz.init(jax.random.PRNGKey(seed), x0)
    rng = np.random.default_rng(seed)

    def draw(leaf):
        v = scale * (rng.normal(size=leaf.shape) + 0.7j * rng.normal(size=leaf.shape))
        return jnp.asarray(v if jnp.iscomplexobj(leaf) else v.real, dtype=leaf.dtype)

    return jax.tree_util.tree_map(draw, params)


def exact_probabilities(ansatz, params, hilbert):
    states = hilbert.all_states()
    lp = np.asarray(jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, jnp.asarray(states)))
    p = np.exp(2 * lp.real - np.max(2 * lp.real))
    return states, p / p.sum()


def histogram(x, states):
    index = state_index(None, states)
    keys = np.ascontiguousarray(np.rint(np.asarray(x)).astype(np.int8))
    counts = np.zeros(len(states))
    for row in keys:
        counts[index[row.tobytes()]] += 1  # KeyError = sample outside the sector
    return counts


def chi2_pvalue(counts, probs):
    expected = probs * counts.sum()
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return chisquare(obs, exp).pvalue


def ring_bonds(n):
    return np.array([[i, (i + 1) % n] for i in range(n)])


def all_pairs(n):
    return np.array([[i, j] for i in range(n) for j in range(i + 1, n)])


# (hilbert, rule, parameter scale). Exchange on all pairs: nearest-neighbour exchange mixes too
# slowly for a peaked random RBM (correct, but the chi-square test would see the autocorrelation).
CASES = {
    "local": (SpinHilbert(6), LocalRule(), 0.4),
    "exchange": (SpinHilbert(8, total_sz=0), ExchangeRule(all_pairs(8)), 0.25),
    # asymmetric: every proposal moves, with the Hastings ratio n(x) / n(x') of unequal pairs
    "antiparallel": (SpinHilbert(8, total_sz=0), AntiparallelExchangeRule(all_pairs(8)), 0.25),
    "antiparallel_ring": (SpinHilbert(8, total_sz=2), AntiparallelExchangeRule(ring_bonds(8)),
                          0.15),
    "hop_fermion": (FermionHilbert(4, 2, 1), default_rule(FermionHilbert(4, 2, 1)), 0.4),
    "pair_hop_fermion": (
        FermionHilbert(4, 2, 2),
        PairHopRule(((0, 1, 2, 3), (4, 5, 6, 7)), 1.0, pair_probability=0.5),
        0.4,
    ),
}


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize("case", list(CASES))
def test_metropolis_histogram_matches_born_rule(case, fast):
    hilbert, rule, scale = CASES[case]
    ansatz = make_rbm(hilbert.n_sites, 1.0, flip_constant=hilbert.flip_constant)
    if not fast:
        ansatz = ansatz.without_fast_path()
    params = random_params(ansatz, hilbert, scale=scale)
    states, probs = exact_probabilities(ansatz, params, hilbert)
    assert probs.max() / probs.min() > 20  # far from uniform
    # sweeps of 4 n_sites steps: nearly independent samples, so the chi-square test is valid
    sweep = 4 * hilbert.n_sites
    sampler = MetropolisSampler(
        hilbert, rule, n_chains=32, n_samples=3000, sweep_size=sweep, n_discard_sweeps=5
    )
    state = sampler.init(jax.random.PRNGKey(1), ansatz, params)
    samples, state, info = sampler.sample(jax.random.PRNGKey(2), ansatz, params, state)
    assert samples.x.shape == (sampler.n_samples_total, hilbert.n_sites)
    assert samples.n_chains == 32
    np.testing.assert_allclose(np.asarray(samples.weights).sum(), 1.0)
    acc = float(info["acceptance"])
    assert 0.0 < acc <= 1.0
    counts = histogram(samples.x, states)  # also checks the sector
    # second call continues the chains
    samples2, state2, info2 = sampler.sample(jax.random.PRNGKey(3), ansatz, params, state)
    counts = counts + histogram(samples2.x, states)
    assert 0.0 < float(info2["acceptance"]) <= 1.0
    n_prop = 2 * (5 + sampler.n_samples_per_chain) * sweep
    assert np.all(np.asarray(state2.n_proposed) == n_prop)
    assert np.all(np.asarray(state2.n_accepted) <= np.asarray(state2.n_proposed))
    p = chi2_pvalue(counts, probs)
    assert p > 1e-3, f"chi-square p = {p}"


def test_metropolis_rbm_symm_fixed_sz_sector():
    hilbert = SpinHilbert(8, total_sz=2)
    ansatz = make_rbm_symm(translation_group((8,)), 2)
    # the symmetric RBM is multimodal (translated peaks): a moderate scale keeps mixing fast
    params = random_params(ansatz, hilbert, scale=0.1)
    sampler = MetropolisSampler(
        hilbert, default_rule(hilbert), n_chains=16, n_samples=3000, sweep_size=32
    )
    state = sampler.init(jax.random.PRNGKey(0), ansatz, params)
    samples, state, info = sampler.sample(jax.random.PRNGKey(1), ansatz, params, state)
    np.testing.assert_allclose(np.asarray(samples.x).sum(axis=1), 2.0)
    states, probs = exact_probabilities(ansatz, params, hilbert)
    assert chi2_pvalue(histogram(samples.x, states), probs) > 1e-3
    # the state's log psi is that of its configurations
    direct = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, state.x)
    np.testing.assert_allclose(np.asarray(state.log_psi), np.asarray(direct), atol=1e-10)


def test_metropolis_sample_rounding_and_jit():
    hilbert = FermionHilbert(4, 2, 2)
    ansatz = make_rbm(8, 1.0, flip_constant=1.0)
    params = random_params(ansatz, hilbert)
    sampler = MetropolisSampler(hilbert, default_rule(hilbert), n_chains=16, n_samples=100,
                                sweep_size=3, n_discard_sweeps=0)
    assert sampler.n_samples_per_chain == 7 and sampler.n_samples_total == 112

    @jax.jit
    def draw(key, params, state):
        samples, state, info = sampler.sample(key, ansatz, params, state)
        return samples.x, samples.weights, state, info

    state = sampler.init(jax.random.PRNGKey(0), ansatz, params)
    x, w, state, info = draw(jax.random.PRNGKey(1), params, state)
    assert x.shape == (112, 8)
    np.testing.assert_allclose(np.asarray(w), 1 / 112)
    xs = np.asarray(x)
    np.testing.assert_allclose(xs[:, :4].sum(axis=1), 2.0)
    np.testing.assert_allclose(xs[:, 4:].sum(axis=1), 2.0)
    assert np.all(np.asarray(state.n_proposed) == 21)
    assert 0.0 <= float(info["acceptance"]) <= 1.0


def test_exact_sampler_weights():
    hilbert = SpinHilbert(6)
    ansatz = make_rbm(6, 2.0)
    params = random_params(ansatz, hilbert)
    sampler = ExactSampler(hilbert)
    assert sampler.is_exact and sampler.init(jax.random.PRNGKey(0), ansatz, params) is None
    samples, state, info = sampler.sample(jax.random.PRNGKey(0), ansatz, params, None)
    assert isinstance(samples, Samples) and samples.n_chains == 0 and state is None
    assert float(info["acceptance"]) == 1.0
    states, probs = exact_probabilities(ansatz, params, hilbert)
    np.testing.assert_array_equal(np.asarray(samples.x), states)
    np.testing.assert_allclose(np.asarray(samples.weights).sum(), 1.0, atol=1e-14)
    np.testing.assert_allclose(np.asarray(samples.weights), probs, rtol=1e-10)
    # chunked evaluation gives the same weights
    chunked, _, _ = ExactSampler(hilbert, chunk_size=7).sample(None, ansatz, params, None)
    np.testing.assert_allclose(np.asarray(chunked.weights), probs, rtol=1e-10)


def test_exact_sampler_large_log_psi_is_stable():
    hilbert = FermionHilbert(3, 1, 1)
    ansatz = make_rbm(6, 1.0, flip_constant=1.0)
    params = random_params(ansatz, hilbert, scale=300.0)
    samples, _, _ = ExactSampler(hilbert).sample(None, ansatz, params, None)
    w = np.asarray(samples.weights)
    assert np.all(np.isfinite(w)) and abs(w.sum() - 1) < 1e-12


def test_rules_are_hashable_and_symmetric_moves():
    assert hash(ExchangeRule(ring_bonds(4))) == hash(ExchangeRule(tuple(map(tuple, ring_bonds(4)))))
    rule = HopRule((np.arange(3), np.arange(3, 6)), 1.0)
    assert rule.groups == ((0, 1, 2), (3, 4, 5))
    hash(rule)
    x = jnp.asarray([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # second group full
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    sites = np.asarray(jax.vmap(lambda k: rule.propose(k, x))(keys))
    identity = np.all(sites == 6, axis=1)
    assert 0.3 < identity.mean() < 0.7
    moves = sites[~identity]
    assert np.all(moves[:, 0] == 0) and set(moves[:, 1]) == {1, 2}
    ex = ExchangeRule(ring_bonds(4))
    x = np.array([1.0, 1.0, -1.0, -1.0])
    s = np.asarray(jax.vmap(lambda k: ex.propose(k, jnp.asarray(x)))(keys))
    padded = s[:, 0] == 4
    assert np.all(s[padded, 1] == 4) and 0 < padded.mean() < 1
    assert np.all(x[s[~padded, 0]] != x[s[~padded, 1]])


def test_rule_hilbert_checks():
    with pytest.raises(InputError):
        MetropolisSampler(SpinHilbert(4, total_sz=0), LocalRule(), n_chains=2, n_samples=4)
    with pytest.raises(InputError):
        MetropolisSampler(FermionHilbert(2, 1, 1), LocalRule(), n_chains=2, n_samples=4)
    with pytest.raises(InputError):
        MetropolisSampler(SpinHilbert(4), ExchangeRule([[0, 4]]), n_chains=2, n_samples=4)
    with pytest.raises(InputError):
        HopRule(((0, 1), (1, 2)))
    assert isinstance(default_rule(SpinHilbert(4)), LocalRule)
    assert default_rule(SpinHilbert(4, total_sz=0)).groups == ((0, 1, 2, 3),)
