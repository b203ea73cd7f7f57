"""Hamiltonian-guided Metropolis moves and |psi|^(2q) sampling: histograms against |psi|^2."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import chisquare

import nqs  # noqa: F401  (float64)
from nqs.errors import InputError
from nqs.hilbert import FermionHilbert, state_index
from nqs.models.rbm import make_rbm
from nqs.sampling import ConnectedRule, MetropolisSampler
from nqs.sampling.rules import connected_excitations
from nqs.stats import statistics

HILBERT = FermionHilbert(4, 2, 2)  # 36 determinants


def parity_integrals(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random real integrals with a Z2 "point group": orbital p has parity p % 2, and
    h1[p, q], (pq|rs) vanish unless the parities of their indices add up to an even number.
    h2 has the 8-fold symmetry of real orbitals."""
    rng = np.random.default_rng(seed)
    par = np.arange(n) % 2
    h1 = rng.normal(size=(n, n))
    h1 = (h1 + h1.T) * (par[:, None] == par[None, :])
    h2 = rng.normal(size=(n, n, n, n))
    for perm in [(1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)]:
        h2 = h2 + h2.transpose(perm)
    h2 = h2 + h2.transpose(1, 0, 3, 2)
    total = par[:, None, None, None] + par[None, :, None, None] + par[None, None, :, None] + par
    h2 = h2 * (total % 2 == 0)
    return h1, h2


def determinant_parity(states: np.ndarray, n: int) -> np.ndarray:
    occ = states.reshape(len(states), 2, n).sum(axis=1)
    return (occ * (np.arange(n) % 2)).sum(axis=1) % 2


def test_connected_excitations_follow_the_integrals():
    n = HILBERT.n_orbitals
    h1, h2 = parity_integrals(n)
    singles, doubles = connected_excitations(h1, h2)
    # singles keep spin and orbital parity; both directions are present
    assert np.all(singles[:, 0] // n == singles[:, 1] // n)
    assert np.all((singles[:, 0] % n) % 2 == (singles[:, 1] % n) % 2)
    pairs = {tuple(s) for s in singles}
    assert all((a, i) in pairs for i, a in pairs)
    # doubles: spin and parity conserved, reverse move present, no move twice
    spin = doubles // n
    assert np.all(spin[:, 0] + spin[:, 1] == spin[:, 2] + spin[:, 3])
    parity = (doubles % n) % 2
    assert np.all((parity[:, 0] + parity[:, 1] - parity[:, 2] - parity[:, 3]) % 2 == 0)
    quads = {tuple(d) for d in doubles}
    assert len(quads) == len(doubles)
    assert all((a, b, i, j) in quads for i, j, a, b in quads)
    # every parity-allowed same-spin double of orbitals (0, 2) -> (1, 3)? forbidden; (0,2)->(2,0)
    # is no move; (0, 1) -> (2, 3) (alpha) is allowed by parity
    assert (0, 1, 2, 3) in quads


def _rbm_and_probs(seed: int = 0, scale: float = 0.5):
    ansatz = make_rbm(HILBERT.n_sites, 1.0, flip_constant=1.0)
    states = HILBERT.all_states()
    params = ansatz.init(jax.random.PRNGKey(seed), jnp.asarray(states[0]))
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(
        lambda p: jnp.asarray(scale * (rng.normal(size=p.shape) + 0.7j * rng.normal(size=p.shape)),
                              p.dtype), params)
    lp = np.asarray(jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, jnp.asarray(states)))
    p = np.exp(2 * lp.real - np.max(2 * lp.real))
    return ansatz, params, states, p / p.sum()


def _histogram(x: np.ndarray, states: np.ndarray, weights: np.ndarray) -> np.ndarray:
    index = state_index(None, states)
    counts = np.zeros(len(states))
    for row, w in zip(np.rint(np.asarray(x)).astype(np.int8), weights, strict=True):
        counts[index[row.tobytes()]] += w  # KeyError = outside the sector
    return counts


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_connected_rule_samples_born_rule(power: float):
    """Chi-square of the (reweighted) histogram against |psi|^2 over all 36 determinants.

    The parity integrals make the number of connected excitations differ between determinants,
    so the Metropolis-Hastings correction matters; the uniform hops (10 %) cross parities."""
    h1, h2 = parity_integrals(HILBERT.n_orbitals)
    rule = ConnectedRule.from_integrals(h1, h2, hop_probability=0.1)
    counts = [int(jnp.sum(rule._possible(jnp.asarray(s)))) for s in HILBERT.all_states()]
    assert len(set(counts)) > 1  # asymmetric proposal
    ansatz, params, states, probs = _rbm_and_probs()
    assert probs.max() / probs.min() > 20
    sampler = MetropolisSampler(HILBERT, rule, n_chains=32, n_samples=3000,
                                sweep_size=4 * HILBERT.n_sites, n_discard_sweeps=5, power=power)
    state = sampler.init(jax.random.PRNGKey(1), ansatz, params)
    samples, state, info = sampler.sample(jax.random.PRNGKey(2), ansatz, params, state)
    assert 0.0 < float(info["acceptance"]) <= 1.0
    w = np.asarray(samples.weights)
    np.testing.assert_allclose(w.sum(), 1.0)
    if power == 1.0:
        counts = _histogram(samples.x, states, np.ones(len(w)))
        expected = probs * len(w)
        big = expected >= 5
        obs = np.append(counts[big], counts[~big].sum())
        exp = np.append(expected[big], expected[~big].sum())
        assert chisquare(obs, exp).pvalue > 1e-3
    else:
        # importance weights: visit frequencies follow |psi|, weighted frequencies |psi|^2
        visits = _histogram(samples.x, states, np.ones(len(w)))
        p_q = np.sqrt(probs) / np.sqrt(probs).sum()
        expected = p_q * len(w)
        big = expected >= 5
        obs = np.append(visits[big], visits[~big].sum())
        exp = np.append(expected[big], expected[~big].sum())
        assert chisquare(obs, exp).pvalue > 1e-3
        weighted = _histogram(samples.x, states, w)
        np.testing.assert_allclose(weighted, probs, atol=0.02)


def test_reweighted_mean_and_error_bar():
    """sum w_i v_i with |psi|^(2q) chains estimates <v> in |psi|^2 within its error bar."""
    h1, h2 = parity_integrals(HILBERT.n_orbitals)
    rule = ConnectedRule.from_integrals(h1, h2)
    ansatz, params, states, probs = _rbm_and_probs(seed=3)
    values = np.arange(len(states), dtype=float) ** 1.5  # an observable of the determinant
    exact = float(probs @ values)
    sampler = MetropolisSampler(HILBERT, rule, n_chains=16, n_samples=2048,
                                sweep_size=2 * HILBERT.n_sites, n_discard_sweeps=5, power=0.5)
    state = sampler.init(jax.random.PRNGKey(4), ansatz, params)
    samples, _, _ = sampler.sample(jax.random.PRNGKey(5), ansatz, params, state)
    index = state_index(None, states)
    v = np.array([values[index[r.tobytes()]] for r in np.rint(np.asarray(samples.x)).astype(np.int8)])
    stats = statistics(jnp.asarray(v), samples.weights, samples.n_chains)
    assert 0 < float(stats.error_of_mean) < 0.1 * exact
    assert abs(float(stats.mean) - exact) < 4 * float(stats.error_of_mean)


def test_connected_rule_inputs():
    h1, h2 = parity_integrals(4)
    rule = ConnectedRule.from_integrals(h1, h2)
    assert hash(rule) == hash(ConnectedRule.from_integrals(h1, h2))
    assert rule == ConnectedRule.from_integrals(h1, h2)
    with pytest.raises(InputError):
        ConnectedRule.from_integrals(h1, h2, hop_probability=1.0)
    with pytest.raises(InputError):
        MetropolisSampler(FermionHilbert(5, 2, 2), rule)
    with pytest.raises(InputError):
        MetropolisSampler(HILBERT, rule, power=0.0)
