"""Pure VMC steps for electrons in real space (FermiNet style).

The energy and its gradient come from the estimator every engine shares
(:func:`nqs.vmc.make_energy_estimator` with ``real=True``: log|psi| is real), with local
energies clipped to ``median +- clip_scale * mean|E_loc - median|`` (``clip_scale=5``, as
FermiNet; :func:`nqs.vmc.clip_local_energy`) in the gradient so rare spikes near nodes and
coalescence points do not dominate:

    dE/dtheta = 2 mean_w[(E_clip(r_w) - mean E_clip) d log|psi(r_w)|/dtheta].

Two kinds of step: :func:`make_optax_vmc` with an optimizer of :mod:`nqs.optim` (the object
the discrete engine applies: Adam, or minSR / SPRING from the walkers' Jacobian
(:func:`nqs.optim.jacobian.sr_jacobian`), all with ``lr / (1 + t / delay)``,
:func:`nqs.optim.scheduled_optimizer`) and :func:`make_kfac_vmc` (kfac-jax, whose loss is the
estimator's surrogate :func:`nqs.vmc.energy_surrogate` with ``log|psi|`` registered by
``kfac_jax.register_normal_predictive_distribution``, so KFAC sees the Fisher of ``|psi|^2``).
The walkers are a :class:`nqs.sampling.walkers.WalkerSampler`. Shapes: walkers
``r [n_walkers, n_el, 3]`` in bohr; energies in Hartree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.ansatz import log_abs
from nqs.optim.kfac import kfac_optimizer, register_log_psi
from nqs.optim.optimizer import Optimizer
from nqs.parallel import Mesh, chunked_map
from nqs.sampling.walkers import MCMCState, WalkerSampler
from nqs.stats import Stats, statistics
from nqs.vmc import (
    apply_estimate,
    centred_energies,
    energy_surrogate,
    make_energy_estimator,
)

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


class VMCState(NamedTuple):
    """State of a real-space VMC run.

    Attributes:
        params: network parameters.
        opt_state: optimiser state (optax or kfac-jax).
        mcmc: walkers (:class:`nqs.sampling.walkers.MCMCState`).
    """

    params: Params
    opt_state: Any
    mcmc: MCMCState


class VMC(NamedTuple):
    """A VMC method: ``init(key, params, walkers, width=0.2) -> VMCState`` and
    ``step(key, state) -> (state, stats)`` with ``stats`` a dict of scalars: ``energy``
    (mean unclipped E_loc, Hartree), ``variance``, ``acceptance``, ``width``."""

    init: Callable[..., VMCState]
    step: Callable[[jax.Array, VMCState], tuple[VMCState, dict[str, jax.Array]]]


def make_optax_vmc(
    log_abs_psi_fn: LogPsiFn,
    local_energy_fn: LocalEnergyFn,
    optimizer: Optimizer | optax.GradientTransformation,
    mcmc_steps: int = 10,
    clip_scale: float = 5.0,
    target_acceptance: float = 0.5,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> VMC:
    """VMC with an optimizer of :mod:`nqs.optim` (a bare optax transformation: one without the
    Jacobian), e.g. :func:`nqs.optim.scheduled_optimizer` (Adam, minSR, SPRING); ``step`` is
    jitted.

    Each step: the walkers' :meth:`~nqs.sampling.walkers.WalkerSampler.sample` at the current
    parameters (``mcmc_steps`` moves, width adapted afterwards), then
    :meth:`nqs.optim.Optimizer.apply` of the clipped energy gradient of the shared estimator
    (:func:`nqs.vmc.make_energy_estimator`; with ``optimizer.needs_jacobian`` also the
    walkers' Jacobian ``J [W, P]`` and residuals). ``chunk_size``: walkers per device whose
    local energies and log-derivatives are evaluated at a time; ``mesh``: the devices the
    walkers are split over (the sums over walkers are reduced across them by XLA).
    """
    if not isinstance(optimizer, Optimizer):
        optimizer = Optimizer(optimizer)
    estimate = make_energy_estimator(
        lambda p, x: log_abs(log_abs_psi_fn(p, x)), local_energy_fn,
        needs_jacobian=optimizer.needs_jacobian, real=True, clip_scale=clip_scale,
        chunk_size=chunk_size, mesh=mesh)
    sampler = WalkerSampler(mcmc_steps, target_acceptance, chunk_size=chunk_size, mesh=mesh)

    def init(key: jax.Array, params: Params, walkers: jax.Array, width: float = 0.2) -> VMCState:
        del key
        return VMCState(params, optimizer.transformation.init(params),
                        sampler.init_at(log_abs_psi_fn, params, walkers, width))

    @jax.jit
    def step(key: jax.Array, state: VMCState) -> tuple[VMCState, dict[str, jax.Array]]:
        params = state.params
        samples, mc, info = sampler.sample(key, log_abs_psi_fn, params, state.mcmc)
        est = estimate(params, samples)
        params, opt_state = apply_estimate(optimizer, est, state.opt_state, params)
        stats = {"energy": est.stats.mean, "variance": est.stats.variance,
                 "acceptance": info["acceptance"], "width": mc.width}
        return VMCState(params, opt_state, mc), stats

    return VMC(init, step)


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

    return VMC(init, step)
