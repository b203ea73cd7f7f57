"""KFAC's glue: :func:`make_kfac_vmc`, the walker VMC step with kfac-jax (:mod:`nqs.optim.kfac`)
on the loss :func:`make_energy_loss` (the shared estimator's surrogate with ``log|psi|``
registered). Other optimizers' step is the engine's (:func:`nqs.vmc.make_walker_vmc`); the
choice among them the application's (:func:`nqs.problems.realspace.make_vmc_method`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.ansatz import log_abs
from nqs.optim.kfac import kfac_optimizer, register_log_psi
from nqs.parallel import Mesh, chunked_map
from nqs.sampling.walkers import MCMCState, WalkerSampler
from nqs.stats import Stats, statistics
from nqs.vmc import WalkerState, WalkerVMC, centred_energies, energy_surrogate

Params = Any
LogPsiFn = Callable[[Params, jax.Array], Any]
LocalEnergyFn = Callable[[Params, jax.Array], jax.Array]


def make_energy_loss(log_abs_psi_fn: LogPsiFn, local_energy_fn: LocalEnergyFn,
                     clip_scale: float = 5.0, chunk_size: int | None = None,
                     ) -> Callable[[Params, jax.Array], tuple[jax.Array, Stats]]:
    """KFAC's loss ``loss(params, r [n_walkers, n_el, 3]) -> (surrogate, Stats)``: the
    estimator's :func:`nqs.vmc.energy_surrogate` of the clipped, centred local energies (taken
    at ``stop_gradient(params)``), ``log|psi|`` registered for kfac-jax; the ``Stats`` (Hartree)
    of the unclipped energies. ``chunk_size`` chunks the local energies only (kfac-jax traces
    ``log|psi|`` for its layers, not inside a chunked map's loop). No mesh: kfac-jax's graph
    matcher does not expect sharding constraints; the walkers arrive sharded and XLA propagates
    that."""
    batch_log_abs = chunked_map(lambda p, x: log_abs(log_abs_psi_fn(p, x)), None, None)
    batch_e_loc = chunked_map(local_energy_fn, chunk_size, None)

    def loss(params: Params, r: jax.Array) -> tuple[jax.Array, Stats]:
        n = r.shape[0]
        e_loc = batch_e_loc(jax.lax.stop_gradient(params), r).astype(jnp.float64)
        w = jnp.full(n, 1.0 / n)
        stats = statistics(e_loc, w, n)
        logs = batch_log_abs(params, r)
        register_log_psi(logs)
        return energy_surrogate(logs, w, centred_energies(e_loc, w, stats.mean, clip_scale)), stats

    return loss


def make_kfac_vmc(log_abs_psi_fn: LogPsiFn, local_energy_fn: LocalEnergyFn,
                  learning_rate: float = 0.05, delay: float = 10000.0, damping: float = 1e-3,
                  norm_constraint: float = 1e-3, curvature_ema: float = 0.95,
                  mcmc_steps: int = 10, clip_scale: float = 5.0, target_acceptance: float = 0.5,
                  chunk_size: int | None = None, mesh: Mesh | None = None) -> WalkerVMC:
    """VMC with KFAC (:func:`nqs.optim.kfac.kfac_optimizer`), FermiNet's defaults:
    ``lr / (1 + t / delay)``, constant damping, no momentum, norm constraint, Fisher of the
    registered ``log|psi|``; its loss is :func:`make_energy_loss`. ``chunk_size`` chunks the
    local energies only; ``mesh``: the devices the walkers are split over.
    """
    loss = make_energy_loss(log_abs_psi_fn, local_energy_fn, clip_scale, chunk_size)
    optimizer = kfac_optimizer(loss, learning_rate, delay, damping, norm_constraint,
                               curvature_ema)
    sampler = WalkerSampler(mcmc_steps, target_acceptance, chunk_size=chunk_size, mesh=mesh)

    @jax.jit
    def sample(key: jax.Array, params: Params, mc: MCMCState) -> tuple[MCMCState, jax.Array]:
        _, mc, info = sampler.sample(key, log_abs_psi_fn, params, mc)
        return mc, info["acceptance"]

    def init(key: jax.Array, params: Params, walkers: jax.Array, width: float = 0.2) -> WalkerState:
        mc = sampler.init_at(log_abs_psi_fn, params, walkers, width)
        return WalkerState(params, optimizer.init(params, key, mc.r), mc)

    def step(key: jax.Array, state: WalkerState) -> tuple[WalkerState, dict[str, jax.Array]]:
        k1, k2 = jax.random.split(key)
        mc, acc = sample(k1, state.params, state.mcmc)
        params, opt_state, kstats = optimizer.step(state.params, state.opt_state, k2, mc.r)
        aux = kstats["aux"]
        stats = {"energy": aux.mean, "variance": aux.variance, "acceptance": acc,
                 "width": mc.width}
        return WalkerState(params, opt_state, mc), stats

    return WalkerVMC(init, step, donates=True)
