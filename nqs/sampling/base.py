"""Sampler interface.

A sampler draws configurations ``x ~ |psi(x)|^2`` (Metropolis) or enumerates the whole space
with exact weights. Both return :class:`Samples`: estimators always use weighted averages
``<f> = sum_i w_i f(x_i)``, with ``w_i = 1/n`` for Monte Carlo samples.

    state = sampler.init(key, ansatz, params)
    samples, state, info = sampler.sample(key, ansatz, params, state)

``init`` and ``sample`` are pure and jit-able (the sampler and the ansatz are static).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax

from nqs.ansatz import Ansatz, Params


class Samples(NamedTuple):
    """Configurations with weights.

    x: [n, n_sites] configurations ([n_walkers, n_el, 3] positions in real space).
    weights: [n] non-negative, summing to 1.
    n_chains: number of Markov chains the rows come from (row = sample_index * n_chains + chain);
      0 for exact enumeration (no Monte Carlo error); ``UNIQUE_DRAWS`` (-1) for independent
      exact draws reduced to distinct configurations with weights = counts / n_draws.
    n_draws: with ``UNIQUE_DRAWS``, the number of draws the counts add up to (0-d array), or
      for importance-weighted draws the plain draws each row's weight stands for ([n], see
      :func:`nqs.stats.unique_statistics`); None otherwise.
    """

    x: jax.Array
    weights: jax.Array
    n_chains: int
    n_draws: jax.Array | None = None


UNIQUE_DRAWS = -1


class Sampler(Protocol):
    """Draws :class:`Samples` for an ansatz."""

    is_exact: bool

    def init(self, key: jax.Array, ansatz: Ansatz, params: Params) -> Any:
        """Initial sampler state (chains, caches); ``None`` for exact enumeration."""
        ...

    def sample(
        self, key: jax.Array, ansatz: Ansatz, params: Params, state: Any
    ) -> tuple[Samples, Any, dict[str, jax.Array]]:
        """New samples, new state, and info (``acceptance``: mean acceptance rate, 1 if exact)."""
        ...
