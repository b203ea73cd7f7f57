"""Exact sampling of an autoregressive state: distinct configurations with their counts.

No Markov chain, burn-in or autocorrelation. ``N`` independent draws from ``p(x) = |psi(x)|^2``
are made all at once by walking down the autoregressive tree orbital by orbital: every distinct
prefix carries the number of draws that share it, and at orbital ``k`` those draws are split
among the four tokens by one multinomial draw with the conditional probabilities
``p(t_k | t_<k)`` (as in NNQS-Transformer and QiankunNet). The cost is that of the distinct
prefixes, not of ``N``: a state close to Hartree-Fock gives 10^6 draws in a few hundred
distinct determinants.

The prefixes live in a fixed buffer of ``max_unique`` rows (fixed shapes, one compiled program).
If a walk needs more, it is redone with half the draws (so the draws stay exact, with no
truncation bias), and the next call starts from the halved count; when fewer than half the rows
are used, the next call doubles the count, up to ``n_samples``. ``Samples.n_draws`` holds the
count actually drawn, which sets the error bar (:func:`nqs.stats.unique_statistics`).

Tempered draws (``power`` q < 1): at every orbital the draws are split with the conditionals
raised to q and normalized, ``q_k(t | t_<k) ~ p(t | t_<k)^q``, so they come from another
normalized autoregressive distribution ``Q(x) = prod_k q_k`` that reaches further into the
tail of small amplitudes (the determinants a fitted state barely holds). Both ``log p(x)`` and
``log Q(x)`` are summed along the walk, so each distinct determinant carries the exact
importance weight ``counts(x) p(x) / Q(x)``, normalized (self-normalized importance
sampling: unbiased as the draws grow). ``Samples.n_draws`` is then per row [max_unique]: the
plain draws its weight stands for, ``sum_y c_y r_y / r_x`` (``r = p / Q``), which gives the
importance-sampling error bar (:func:`nqs.stats.unique_statistics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from nqs.ansatz import Ansatz, Params
from nqs.errors import InputError
from nqs.hilbert import FermionHilbert
from nqs.models.autoregressive import (
    N_TOKENS,
    AutoregressiveState,
    is_autoregressive,
    tokens_to_occupations,
)
from nqs.sampling.base import UNIQUE_DRAWS, Samples


def multinomial_split(key: jax.Array, counts: jax.Array, probs: jax.Array) -> jax.Array:
    """Split ``counts`` [U] draws among ``probs`` [U, K] (rows sum to 1) -> [U, K] counts.

    Sequential binomials ``c_j ~ Bin(n - sum_{i<j} c_i, p_j / sum_{i>=j} p_i)``; a category of
    probability 0 gets exactly 0 draws, and the row sums equal ``counts`` exactly.
    """
    k = probs.shape[1]
    suffix = jnp.cumsum(probs[:, ::-1], axis=1)[:, ::-1]  # sum_{i>=j} p_i
    keys = jax.random.split(key, k - 1)
    remaining = counts
    out = []
    for j in range(k - 1):
        q = jnp.where(suffix[:, j] > 0, probs[:, j] / jnp.where(suffix[:, j] > 0, suffix[:, j], 1),
                      0.0)
        q = jnp.clip(q, 0.0, 1.0)
        drawn = jax.random.binomial(keys[j], remaining, q)
        c = jnp.where(q >= 1.0, remaining, jnp.where((q <= 0.0) | (remaining <= 0), 0.0, drawn))
        c = jnp.clip(jnp.round(c), 0.0, remaining)
        out.append(c)
        remaining = remaining - c
    out.append(remaining)
    return jnp.stack(out, axis=1)


@dataclass(frozen=True)
class AutoregressiveSampler:
    """Exact draws from an autoregressive ansatz, returned as distinct configurations.

    Attributes:
      hilbert: the molecular space (fixed ``n_alpha``, ``n_beta``).
      n_samples: largest number of draws per call (nominal sample count, e.g. 1e5 to 1e8).
      max_unique: rows of the prefix buffer: the most distinct configurations per call.
      power: q in (0, 1]: the draws follow the conditionals raised to q (module docstring),
        reweighted exactly to ``|psi|^2``; 1: plain draws from ``|psi|^2``.
    """

    hilbert: FermionHilbert
    n_samples: int = 1_000_000
    max_unique: int = 2048
    power: float = 1.0

    is_exact: ClassVar[bool] = False
    is_unique: ClassVar[bool] = True
    n_chains: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if int(self.n_samples) < 1 or int(self.max_unique) < N_TOKENS:
            raise InputError(f"the autoregressive sampler needs n_samples >= 1 and max_unique "
                             f">= {N_TOKENS}, got {self.n_samples} and {self.max_unique}")
        if not 0.0 < float(self.power) <= 1.0:
            raise InputError(f"the sampling power must be in (0, 1], got {self.power}")

    def init(self, key: jax.Array, ansatz: Ansatz, params: Params) -> jax.Array:
        """State: the number of draws of the next call (float64 0-d array)."""
        del key, params
        _check_ansatz(ansatz)
        return jnp.asarray(float(self.n_samples))

    def sample(self, key: jax.Array, ansatz: Ansatz, params: Params, state: jax.Array
               ) -> tuple[Samples, jax.Array, dict[str, jax.Array]]:
        """``Samples(x [max_unique, n_sites], counts / n_draws, UNIQUE_DRAWS, n_draws)``
        (tempered: importance weights and per-row draws, module docstring); ``info["n_draws"]``
        is the number of draws made.

        Rows are sorted by count, largest first; rows past ``info["n_unique"]`` have weight 0
        (copies of the first row).
        """
        _check_ansatz(ansatz)
        n_orb, u = self.hilbert.n_orbitals, int(self.max_unique)

        def log_probs(tokens: jax.Array) -> jax.Array:
            return ansatz.module.apply(params, tokens,
                                       method=AutoregressiveState.conditional_log_probs)

        power = float(self.power)

        def walk(key: jax.Array, n_draws: jax.Array):
            tokens = jnp.zeros((u, n_orb), jnp.int32)
            counts = jnp.zeros(u).at[0].set(n_draws)
            log_r = jnp.zeros(u)  # log p(prefix) - log Q(prefix), summed along the walk

            def body(k, carry):
                tokens, counts, log_r, overflow = carry
                logp = jax.vmap(log_probs)(tokens)  # [u, n_orb, 4]
                logp_k = jax.lax.dynamic_index_in_dim(logp, k, axis=1, keepdims=False)
                if power == 1.0:
                    log_q = logp_k
                else:  # tempered conditionals p^q / sum p^q (-inf stays -inf: masked tokens)
                    log_q = jax.nn.log_softmax(power * logp_k, axis=-1)
                child = multinomial_split(jax.random.fold_in(key, k), counts, jnp.exp(log_q))
                flat = child.reshape(-1)
                child_r = (log_r[:, None] + jnp.where(jnp.isfinite(log_q), logp_k - log_q, 0.0))
                overflow = overflow | (jnp.sum(flat > 0) > u)
                counts, idx = jax.lax.top_k(flat, u)
                tokens = tokens[idx // N_TOKENS].at[:, k].set(idx % N_TOKENS)
                return tokens, counts, child_r.reshape(-1)[idx], overflow

            tokens, counts, log_r, overflow = jax.lax.fori_loop(
                0, n_orb, body, (tokens, counts, log_r, jnp.asarray(False)))
            return tokens, counts, log_r, overflow

        def cond(carry):
            return carry[-1]

        def retry(carry):
            attempt, n_draws, _, _, _, _ = carry
            n_try = jnp.where(attempt == 0, n_draws, jnp.maximum(jnp.floor(n_draws / 2), 1.0))
            tokens, counts, log_r, overflow = walk(jax.random.fold_in(key, attempt), n_try)
            return attempt + 1, n_try, tokens, counts, log_r, overflow & (n_try > 1)

        start = (jnp.asarray(0), jnp.asarray(state, jnp.float64),
                 jnp.zeros((u, n_orb), jnp.int32), jnp.zeros(u), jnp.zeros(u),
                 jnp.asarray(True))
        _, n_draws, tokens, counts, log_r, _ = jax.lax.while_loop(cond, retry, start)
        n_unique = jnp.sum(counts > 0)
        grow = n_unique < u // 2
        next_state = jnp.where(grow, jnp.minimum(2 * n_draws, float(self.n_samples)), n_draws)
        # empty rows hold copies of the first (a valid determinant, weight 0), so that
        # per-sample local energies of the whole buffer stay finite
        tokens = jnp.where((counts > 0)[:, None], tokens, tokens[:1])
        if power == 1.0:
            weights, row_draws = counts / n_draws, n_draws
        else:
            r = jnp.where(counts > 0, jnp.exp(log_r - jnp.max(jnp.where(counts > 0, log_r,
                                                                         -jnp.inf))), 0.0)
            cr = counts * r
            weights = cr / jnp.sum(cr)
            row_draws = jnp.where(counts > 0, jnp.sum(cr) / jnp.where(counts > 0, r, 1.0), 1.0)
        samples = Samples(tokens_to_occupations(tokens), weights, UNIQUE_DRAWS, row_draws)
        info = {"acceptance": jnp.asarray(1.0), "n_unique": n_unique, "n_draws": n_draws}
        return samples, next_state, info


def _check_ansatz(ansatz: Ansatz) -> None:
    if not is_autoregressive(ansatz):
        raise InputError("the autoregressive sampler needs an autoregressive ansatz "
                         "(nqs.models.autoregressive.make_autoregressive)")
