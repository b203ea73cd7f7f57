"""Ansatz: a flax module giving log psi of ONE configuration, plus optional fast local updates.

Discrete ansatze return a complex ``log psi(x)`` (NetKet's convention), so ``psi(x) =
exp(log_psi(x))``. An ansatz whose log-psi ratios for a few flipped sites are cheap (the RBM:
``O(M)`` from the cached ``theta = b + W x``) also provides :class:`LocalUpdates`; the sampler and
the local energy use it when present and fall back to full evaluations otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = Any
Cache = Any


class LocalUpdates(NamedTuple):
    """Pure functions for cached log-psi ratios of one configuration.

    init_cache(params, x [n_sites]) -> cache
    log_ratio(params, x [n_sites], cache, sites int32 [k]) -> (log psi(x') - log psi(x), cache(x'))
        where x' is x with ``sites`` flipped (index n_sites = padding, no flip).
    """

    init_cache: Callable[[Params, jax.Array], Cache]
    log_ratio: Callable[[Params, jax.Array, Cache, jax.Array], tuple[jax.Array, Cache]]


@dataclass(frozen=True)
class Ansatz:
    """A variational wavefunction on a discrete Hilbert space.

    Attributes:
      module: flax module; ``module.apply(params, x)`` is log psi of one configuration ``x``.
      local_updates: optional fast path (see :class:`LocalUpdates`).
    """

    module: nn.Module
    local_updates: LocalUpdates | None = None

    def init(self, key: jax.Array, x: jax.Array) -> Params:
        """Parameters for configurations shaped like ``x`` [n_sites]."""
        return self.module.init(key, jnp.asarray(x))

    def log_psi(self, params: Params, x: jax.Array) -> jax.Array:
        """log psi(x) for one configuration ``x`` [n_sites] (complex scalar)."""
        return self.module.apply(params, x)

    def without_fast_path(self) -> Ansatz:
        """The same wavefunction evaluated by the generic path (tests compare both)."""
        return Ansatz(self.module, None)


def n_parameters(params: Params) -> int:
    """Number of real parameters (a complex parameter counts twice)."""
    leaves = jax.tree_util.tree_leaves(params)
    return int(sum(x.size * (2 if jnp.iscomplexobj(x) else 1) for x in leaves))
