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
    """

    hilbert: FermionHilbert
    n_samples: int = 1_000_000
    max_unique: int = 2048

    is_exact: ClassVar[bool] = False
    is_unique: ClassVar[bool] = True
    n_chains: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if int(self.n_samples) < 1 or int(self.max_unique) < N_TOKENS:
            raise InputError(f"the autoregressive sampler needs n_samples >= 1 and max_unique "
                             f">= {N_TOKENS}, got {self.n_samples} and {self.max_unique}")

    def init(self, key: jax.Array, ansatz: Ansatz, params: Params) -> jax.Array:
        """State: the number of draws of the next call (float64 0-d array)."""
        del key, params
        _check_ansatz(ansatz)
        return jnp.asarray(float(self.n_samples))

    def sample(self, key: jax.Array, ansatz: Ansatz, params: Params, state: jax.Array
               ) -> tuple[Samples, jax.Array, dict[str, jax.Array]]:
        """``Samples(x [max_unique, n_sites], counts / n_draws, UNIQUE_DRAWS, n_draws)``.

        Rows are sorted by count, largest first; rows past ``info["n_unique"]`` have weight 0
        (copies of the first row).
        """
        _check_ansatz(ansatz)
        n_orb, u = self.hilbert.n_orbitals, int(self.max_unique)

        def log_probs(tokens: jax.Array) -> jax.Array:
            return ansatz.module.apply(params, tokens,
                                       method=AutoregressiveState.conditional_log_probs)

        def walk(key: jax.Array, n_draws: jax.Array):
            tokens = jnp.zeros((u, n_orb), jnp.int32)
            counts = jnp.zeros(u).at[0].set(n_draws)

            def body(k, carry):
                tokens, counts, overflow = carry
                logp = jax.vmap(log_probs)(tokens)  # [u, n_orb, 4]
                probs = jnp.exp(jax.lax.dynamic_index_in_dim(logp, k, axis=1, keepdims=False))
                child = multinomial_split(jax.random.fold_in(key, k), counts, probs)
                flat = child.reshape(-1)
                overflow = overflow | (jnp.sum(flat > 0) > u)
                counts, idx = jax.lax.top_k(flat, u)
                tokens = tokens[idx // N_TOKENS].at[:, k].set(idx % N_TOKENS)
                return tokens, counts, overflow

            return jax.lax.fori_loop(0, n_orb, body, (tokens, counts, jnp.asarray(False)))

        def cond(carry):
            return carry[-1]

        def retry(carry):
            attempt, n_draws, _, _, _ = carry
            n_try = jnp.where(attempt == 0, n_draws, jnp.maximum(jnp.floor(n_draws / 2), 1.0))
            tokens, counts, overflow = walk(jax.random.fold_in(key, attempt), n_try)
            return attempt + 1, n_try, tokens, counts, overflow & (n_try > 1)

        start = (jnp.asarray(0), jnp.asarray(state, jnp.float64),
                 jnp.zeros((u, n_orb), jnp.int32), jnp.zeros(u), jnp.asarray(True))
        _, n_draws, tokens, counts, _ = jax.lax.while_loop(cond, retry, start)
        n_unique = jnp.sum(counts > 0)
        grow = n_unique < u // 2
        next_state = jnp.where(grow, jnp.minimum(2 * n_draws, float(self.n_samples)), n_draws)
        # empty rows hold copies of the first (a valid determinant, weight 0), so that
        # per-sample local energies of the whole buffer stay finite
        tokens = jnp.where((counts > 0)[:, None], tokens, tokens[:1])
        samples = Samples(tokens_to_occupations(tokens), counts / n_draws, UNIQUE_DRAWS, n_draws)
        info = {"acceptance": jnp.asarray(1.0), "n_unique": n_unique, "n_draws": n_draws}
        return samples, next_state, info


def _check_ansatz(ansatz: Ansatz) -> None:
    if not is_autoregressive(ansatz):
        raise InputError("the autoregressive sampler needs an autoregressive ansatz "
                         "(nqs.models.autoregressive.make_autoregressive)")
