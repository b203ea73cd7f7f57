"""Stochastic reconfiguration for real-space VMC (small networks): the walkers' dense Jacobian.

Each step builds the flat real Jacobian of ``log|psi|`` over the walkers and the residuals,

    J   [W, P] = (d log|psi(r_w)|/d theta - mean_w) / sqrt(W)
    eps [W]    = 2 (E_clip(r_w) - mean E_clip) / sqrt(W),

so ``J^T eps`` is the clipped energy gradient, and hands them to the optax transformation
:func:`nqs.optim.spring.spring` (minSR, or SPRING with ``momentum`` > 0; schedule
``lr / (1 + t / delay)`` and KFAC's norm constraint). The Jacobian is dense (``W x P``): use it
for networks of up to a few ten thousand parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.ansatz import log_abs
from nqs.optim.spring import spring
from nqs.parallel import Mesh, chunked_map
from nqs.realspace.train import VMC, LocalEnergyFn, LogPsiFn, Params, VMCState, clip_local_energy
from nqs.sampling.walkers import WalkerSampler


def make_sr_vmc(
    log_abs_psi_fn: LogPsiFn,
    local_energy_fn: LocalEnergyFn,
    learning_rate: float = 0.05,
    delay: float = 1000.0,
    diag_shift: float = 1e-3,
    norm_constraint: float = 1e-3,
    momentum: float = 0.0,
    mcmc_steps: int = 10,
    clip_scale: float = 5.0,
    target_acceptance: float = 0.5,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> VMC:
    """VMC with minSR natural-gradient steps; ``step`` is jitted.

    Args:
        log_abs_psi_fn: ``(params, r [n_el, 3]) -> log|psi|`` or ``(sign, log|psi|)``.
        local_energy_fn: ``(params, r [n_el, 3]) -> E_loc`` (Hartree).
        learning_rate, delay: step size ``learning_rate / (1 + t / delay)``.
        diag_shift: lambda added to the diagonal of ``J J^T``.
        norm_constraint: bound on ``eta^2 delta . g`` (0 disables).
        momentum: SPRING's mu in [0, 1) (0: minSR).
        mcmc_steps, clip_scale, target_acceptance: as :func:`nqs.realspace.train.make_optax_vmc`.
        chunk_size: local energies and Jacobian rows this many walkers per device at a time.
        mesh: devices the walkers (rows of J) are split over; ``J J^T`` and ``J^T x`` are
            reduced across them by XLA.

    Returns:
        :class:`nqs.realspace.train.VMC` with :class:`nqs.optim.spring.SpringState` as the optimizer state.
    """
    tx = spring(learning_rate, delay, diag_shift, norm_constraint, momentum)
    sampler = WalkerSampler(mcmc_steps, target_acceptance, chunk_size=chunk_size, mesh=mesh)
    batch_e_loc = chunked_map(local_energy_fn, chunk_size, mesh)

    def init(key: jax.Array, params: Params, walkers: jax.Array, width: float = 0.2) -> VMCState:
        del key
        return VMCState(params, tx.init(ravel_pytree(params)[0]),
                        sampler.init_at(log_abs_psi_fn, params, walkers, width))

    @jax.jit
    def step(key: jax.Array, state: VMCState) -> tuple[VMCState, dict[str, jax.Array]]:
        params = state.params
        samples, mc, info = sampler.sample(key, log_abs_psi_fn, params, state.mcmc)
        acc = info["acceptance"]
        e_loc = batch_e_loc(params, samples.x).astype(jnp.float64)
        energy = jnp.mean(e_loc)
        variance = jnp.mean((e_loc - energy) ** 2)
        e_clip = clip_local_energy(e_loc, clip_scale)
        n = e_loc.shape[0]
        flat, unravel = ravel_pytree(params)

        def log_abs_flat(p_flat: jax.Array, x: jax.Array) -> jax.Array:
            return log_abs(log_abs_psi_fn(unravel(p_flat), x))

        jac = chunked_map(jax.grad(log_abs_flat), chunk_size, mesh)(flat, samples.x)  # [W, P]
        # float64 reductions (J J^T, J^T eps) whatever the network's dtype
        jac = jac.astype(jnp.float64)
        jac = (jac - jnp.mean(jac, axis=0)) / jnp.sqrt(n)
        eps = 2.0 * (e_clip - jnp.mean(e_clip)) / jnp.sqrt(n)
        update, opt_state = tx.update(jac.T @ eps, state.opt_state, jacobian=jac, residuals=eps)
        params = unravel((flat + update).astype(flat.dtype))
        stats = {"energy": energy, "variance": variance, "acceptance": acc, "width": mc.width}
        return VMCState(params, opt_state, mc), stats

    return VMC(init, step)
