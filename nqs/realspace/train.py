"""The optimizers of electrons in real space: their choice and defaults, and KFAC's glue.

:func:`make_vmc_method` builds the VMC method of an optimizer name (``"kfac"``, ``"adam"``,
``"sr"``: minSR, SPRING with a momentum) with its learning-rate defaults (:data:`DEFAULT_LR`);
:func:`make_vmc_with_fallback` adds KFAC's fallback to SPRING (a
:class:`nqs.walker_driver.Fallback`) for a kfac-jax that fails to import or to run.

The energy and its gradient come from the estimator every engine shares
(:func:`nqs.vmc.make_energy_estimator` with ``real=True``: log|psi| is real), with local
energies clipped to ``median +- clip_scale * mean|E_loc - median|`` (``clip_scale=5``, as
FermiNet; :func:`nqs.vmc.clip_local_energy`) in the gradient so rare spikes near nodes and
coalescence points do not dominate:

    dE/dtheta = 2 mean_w[(E_clip(r_w) - mean E_clip) d log|psi(r_w)|/dtheta].

The step with an optimizer of :mod:`nqs.optim` (Adam, minSR, SPRING) is the engine's
(:func:`nqs.vmc.make_walker_vmc`, here also under its old name :func:`make_optax_vmc`, its
state :class:`nqs.vmc.WalkerState` as :class:`VMCState`). This module adds
:func:`make_kfac_vmc` (kfac-jax, whose loss is the estimator's surrogate
:func:`nqs.vmc.energy_surrogate` with ``log|psi|`` registered by
``kfac_jax.register_normal_predictive_distribution``, so KFAC sees the Fisher of ``|psi|^2``).
The walkers are a :class:`nqs.sampling.walkers.WalkerSampler`. Shapes: walkers
``r [n_walkers, n_el, 3]`` in bohr; energies in Hartree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.ansatz import log_abs
from nqs.errors import InputError
from nqs.optim.kfac import kfac_optimizer, register_log_psi
from nqs.optim.optimizer import scheduled_optimizer
from nqs.parallel import Mesh, chunked_map
from nqs.sampling.walkers import MCMCState, WalkerSampler
from nqs.stats import Stats, statistics
from nqs.vmc import (
    WalkerState,
    WalkerVMC,
    centred_energies,
    energy_surrogate,
    make_walker_vmc,
)
from nqs.walker_driver import Fallback

OPTIMIZERS = ("kfac", "adam", "sr")
OptimizerName = Literal["kfac", "adam", "sr"]

# Per optimizer: (learning rate, delay of lr / (1 + t / delay)).
DEFAULT_LR: dict[str, tuple[float, float]] = {
    "kfac": (0.05, 10000.0),  # FermiNet (Pfau et al. 2020)
    "adam": (1e-3, 1000.0),
    "sr": (0.05, 1000.0),
}

Params = Any
LogPsiFn = Callable[[Params, jax.Array], Any]
LocalEnergyFn = Callable[[Params, jax.Array], jax.Array]


def make_energy_loss(
    log_abs_psi_fn: LogPsiFn,
    local_energy_fn: LocalEnergyFn,
    clip_scale: float = 5.0,
    chunk_size: int | None = None,
) -> Callable[[Params, jax.Array], tuple[jax.Array, Stats]]:
    """KFAC's loss ``loss(params, r [n_walkers, n_el, 3]) -> (surrogate, Stats)``: the
    estimator's :func:`nqs.vmc.energy_surrogate` of the clipped, centred local energies (a
    constant: they are evaluated at ``stop_gradient(params)``), whose gradient is the clipped
    energy gradient, with ``log|psi|`` registered as a normal predictive distribution for
    kfac-jax; the statistics (energy: ``Stats.mean``, Hartree) of the unclipped energies.

    ``chunk_size`` chunks the local energies only: kfac-jax finds its layers by tracing
    ``log|psi|`` and does not look inside the loop of a chunked map. No mesh: kfac-jax's graph
    matcher does not expect sharding constraints; the walkers arrive sharded and XLA
    propagates that.
    """
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


# The step containers and the step with an optimizer of nqs.optim are the engine's (walkers in
# continuous space, :mod:`nqs.vmc`); the names real space has always exported stay.
VMCState = WalkerState
VMC = WalkerVMC
make_optax_vmc = make_walker_vmc


def make_kfac_vmc(
    log_abs_psi_fn: LogPsiFn,
    local_energy_fn: LocalEnergyFn,
    learning_rate: float = 0.05,
    delay: float = 10000.0,
    damping: float = 1e-3,
    norm_constraint: float = 1e-3,
    curvature_ema: float = 0.95,
    mcmc_steps: int = 10,
    clip_scale: float = 5.0,
    target_acceptance: float = 0.5,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> VMC:
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

    def init(key: jax.Array, params: Params, walkers: jax.Array, width: float = 0.2) -> VMCState:
        mc = sampler.init_at(log_abs_psi_fn, params, walkers, width)
        return VMCState(params, optimizer.init(params, key, mc.r), mc)

    def step(key: jax.Array, state: VMCState) -> tuple[VMCState, dict[str, jax.Array]]:
        k1, k2 = jax.random.split(key)
        mc, acc = sample(k1, state.params, state.mcmc)
        params, opt_state, kstats = optimizer.step(state.params, state.opt_state, k2, mc.r)
        aux = kstats["aux"]
        stats = {"energy": aux.mean, "variance": aux.variance, "acceptance": acc,
                 "width": mc.width}
        return VMCState(params, opt_state, mc), stats

    return VMC(init, step, donates=True)


def make_vmc_method(
    name: OptimizerName,
    log_abs_psi_fn: Callable[[Any, jax.Array], Any],
    local_energy_fn: Callable[[Any, jax.Array], jax.Array],
    learning_rate: float | None = None,
    delay: float | None = None,
    mcmc_steps: int = 10,
    clip_scale: float = 5.0,
    damping: float = 1e-3,
    norm_constraint: float = 1e-3,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    momentum: float = 0.0,
) -> VMC:
    """The pure VMC method of an optimizer name: ``"kfac"``, ``"adam"`` or ``"sr"`` (minSR).

    ``learning_rate`` / ``delay`` default to :data:`DEFAULT_LR`; ``damping`` is KFAC's damping
    and SR's diagonal shift; ``norm_constraint`` applies to KFAC and SR. ``chunk_size``: walkers
    per device evaluated at a time; ``mesh``: devices the walkers are split over. ``momentum``:
    SPRING's mu for ``"sr"`` (0: minSR).
    """
    lr, dl = learning_rate_and_delay(name, learning_rate, delay, momentum)
    if name == "kfac":
        return make_kfac_vmc(
            log_abs_psi_fn, local_energy_fn, learning_rate=lr, delay=dl, damping=damping,
            norm_constraint=norm_constraint, mcmc_steps=mcmc_steps, clip_scale=clip_scale,
            chunk_size=chunk_size, mesh=mesh,
        )
    return make_optax_vmc(
        log_abs_psi_fn, local_energy_fn,
        scheduled_optimizer(name, lr, dl, damping, norm_constraint, momentum),
        mcmc_steps=mcmc_steps, clip_scale=clip_scale, chunk_size=chunk_size, mesh=mesh,
    )


def learning_rate_and_delay(name: str, learning_rate: float | None, delay: float | None,
                            momentum: float = 0.0) -> tuple[float, float]:
    """``(lr, delay)`` of optimizer ``name`` (None: :data:`DEFAULT_LR`), checked (InputError)."""
    if name not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if momentum != 0 and name != "sr":
        raise InputError("momentum (SPRING) applies to --optimizer sr only")
    lr0, delay0 = DEFAULT_LR[name]
    lr = lr0 if learning_rate is None else float(learning_rate)
    dl = delay0 if delay is None else float(delay)
    if not (lr > 0 and math.isfinite(lr)) or not (dl > 0 and math.isfinite(dl)):
        raise InputError(f"learning rate and delay must be positive, got {lr}, {dl}")
    return lr, dl


def make_vmc_with_fallback(build: Callable[[OptimizerName, float], VMC],
                           optimizer: OptimizerName, momentum: float, kfac_fallback: bool
                           ) -> tuple[VMC | None, Fallback | None, BaseException | None]:
    """``(vmc, fallback, error)``: the VMC method of ``optimizer`` built by ``build``; with
    ``kfac_fallback`` (KFAC only) SPRING to fall back to, and KFAC's error when it failed to
    build (then ``vmc`` is None)."""
    from nqs.realspace.defaults import FALLBACK_MOMENTUM, FALLBACK_OPTIMIZER

    fallback = None
    if optimizer == "kfac" and kfac_fallback:
        fallback = Fallback(
            lambda: build(FALLBACK_OPTIMIZER, FALLBACK_MOMENTUM), FALLBACK_OPTIMIZER,
            FALLBACK_MOMENTUM,
            lambda reason: f"warning: KFAC failed ({reason}); continuing with SPRING "
            f"(--optimizer {FALLBACK_OPTIMIZER} --momentum {FALLBACK_MOMENTUM:g})")
    try:
        return build(optimizer, momentum), fallback, None
    except Exception as err:  # kfac-jax's import (or a jax it does not support)
        if fallback is None:
            raise
        return None, fallback, err
