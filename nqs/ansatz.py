"""Ansatz: a flax module giving log psi of ONE configuration, plus optional fast local updates.

Discrete ansatze return a complex ``log psi(x)`` (NetKet's convention), so ``psi(x) =
exp(log_psi(x))``. An ansatz whose log-psi ratios for a few flipped sites are cheap (the RBM:
``O(M)`` from the cached ``theta = b + W x``) also provides :class:`LocalUpdates`; the sampler and
the local energy use it when present and fall back to full evaluations otherwise.

A *holomorphic* ansatz (complex parameters, ``log psi`` analytic in them, e.g. the complex RBM)
lets the SR solver work with the complex Jacobian ``d log psi / d theta`` instead of the real
view of twice the size (see :mod:`nqs.optim.jacobian`).
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


def _no_preparation(params: Params) -> Params:
    return params


class LocalUpdates(NamedTuple):
    """Pure functions for cached log-psi ratios of one configuration.

    prepare(params) -> tables
        everything that depends on the parameters only (e.g. the RBM's ``cosh`` / ``sinh``
        tables), computed ONCE per sampler call or local-energy batch and passed to the two
        functions below in place of the parameters. Default: the parameters themselves.
    init_cache(tables, x [n_sites]) -> cache
    log_ratio(tables, x [n_sites], cache, sites int32 [k]) -> (log psi(x') - log psi(x), cache(x'))
        where x' is x with ``sites`` flipped (index n_sites = padding, no flip).

    Callers: ``tables = fast.prepare(params)`` outside any vmap over configurations, then
    ``fast.log_ratio(tables, x, fast.init_cache(tables, x), sites)``.
    """

    init_cache: Callable[[Any, jax.Array], Cache]
    log_ratio: Callable[[Any, jax.Array, Cache, jax.Array], tuple[jax.Array, Cache]]
    prepare: Callable[[Params], Any] = _no_preparation


@dataclass(frozen=True)
class Ansatz:
    """A variational wavefunction on a discrete Hilbert space.

    Attributes:
      module: flax module; ``module.apply(params, x)`` is log psi of one configuration ``x``.
      local_updates: optional fast path (see :class:`LocalUpdates`).
      holomorphic: ``log psi`` is a holomorphic function of complex parameters, so
        ``d log psi / d Im theta = i d log psi / d Re theta`` and SR may use the complex
        Jacobian (half the size of the real view). False is always safe.
    """

    module: nn.Module
    local_updates: LocalUpdates | None = None
    holomorphic: bool = False

    def init(self, key: jax.Array, x: jax.Array) -> Params:
        """Parameters for configurations shaped like ``x`` [n_sites]."""
        return self.module.init(key, jnp.asarray(x))

    def log_psi(self, params: Params, x: jax.Array) -> jax.Array:
        """log psi(x) for one configuration ``x`` [n_sites] (complex scalar)."""
        return self.module.apply(params, x)

    def without_fast_path(self) -> Ansatz:
        """The same wavefunction evaluated by the generic path (tests compare both)."""
        return Ansatz(self.module, None, self.holomorphic)


def n_parameters(params: Params) -> int:
    """Number of real parameters (a complex parameter counts twice)."""
    leaves = jax.tree_util.tree_leaves(params)
    return int(sum(x.size * (2 if jnp.iscomplexobj(x) else 1) for x in leaves))
