"""Stochastic reconfiguration for real-space VMC (small networks).

The natural gradient of the engine (:func:`nqs.optim.sr.natural_gradient_minsr`) on the flat real
Jacobian of ``log|psi|`` over the walkers:

    J   [W, P] = (d log|psi(r_w)|/d theta - mean_w) / sqrt(W)
    eps [W]    = 2 (E_clip(r_w) - mean E_clip) / sqrt(W)
    delta      = J^T (J J^T + lambda I)^-1 eps              (= (S + lambda)^-1 g, S = J^T J)

so ``J^T eps`` is the clipped energy gradient. With ``momentum`` mu > 0 the direction is SPRING's
(:func:`nqs.optim.sr.natural_gradient_spring`), ``delta = mu delta_prev + J^T (J J^T + lambda)^-1
(eps - mu J delta_prev)``. The step is ``theta <- theta - eta delta`` with
``eta = lr / (1 + t / delay)`` and KFAC's norm constraint ``eta^2 delta . g <= norm_constraint``.
The Jacobian is dense (``W x P``): use it for networks of up to a few ten thousand parameters.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.errors import InputError
from nqs.optim.sr import natural_gradient_minsr, natural_gradient_spring
from nqs.parallel import Mesh, chunked_map, constrain_samples
from nqs.realspace.mcmc import make_mcmc
from nqs.realspace.system import log_abs
from nqs.realspace.train import VMC, LocalEnergyFn, LogPsiFn, Params, VMCState, clip_local_energy


class SRState(NamedTuple):
    """Optimizer state of :func:`make_sr_vmc`.

    Attributes:
        count: the number of updates done (int scalar).
        previous: ``[P]`` the last update direction ``phi`` (float64; SPRING's momentum term,
            zeros for plain minSR).
    """

    count: jax.Array
    previous: jax.Array



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
        :class:`nqs.realspace.train.VMC` with :class:`SRState` as the optimizer state.
    """
    if learning_rate <= 0 or delay <= 0:
        raise InputError(f"learning rate and delay must be positive, got {learning_rate}, {delay}")
    if diag_shift < 0 or norm_constraint < 0:
        raise InputError("diag_shift and norm_constraint must be >= 0")
    if not 0.0 <= momentum < 1.0:
        raise InputError(f"the SPRING momentum must be in [0, 1), got {momentum}")
    if momentum > 0 and diag_shift <= 0:
        raise InputError("SPRING momentum needs a positive diagonal shift")
    mcmc_init, mcmc_step = make_mcmc(log_abs_psi_fn, mcmc_steps, target_acceptance,
                                     chunk_size=chunk_size, mesh=mesh)
    batch_e_loc = chunked_map(local_energy_fn, chunk_size, mesh)

    def init(key: jax.Array, params: Params, walkers: jax.Array, width: float = 0.2) -> VMCState:
        del key
        n_params = sum(int(jnp.size(x)) for x in jax.tree_util.tree_leaves(params))
        opt_state = SRState(jnp.zeros((), jnp.int32), jnp.zeros((n_params,), jnp.float64))
        return VMCState(params, opt_state, mcmc_init(params, walkers, width))

    @jax.jit
    def step(key: jax.Array, state: VMCState) -> tuple[VMCState, dict[str, jax.Array]]:
        params = state.params
        mc = mcmc_init(params, state.mcmc.r, state.mcmc.width)
        mc, acc = mcmc_step(key, params, mc)
        mc = mc._replace(r=constrain_samples(mc.r, mesh), log_prob=constrain_samples(mc.log_prob, mesh))
        e_loc = batch_e_loc(params, mc.r).astype(jnp.float64)
        energy = jnp.mean(e_loc)
        variance = jnp.mean((e_loc - energy) ** 2)
        e_clip = clip_local_energy(e_loc, clip_scale)
        n = e_loc.shape[0]
        flat, unravel = ravel_pytree(params)

        def log_abs_flat(p_flat: jax.Array, x: jax.Array) -> jax.Array:
            return log_abs(log_abs_psi_fn(unravel(p_flat), x))

        jac = chunked_map(jax.grad(log_abs_flat), chunk_size, mesh)(flat, mc.r)  # [W, P]
        # float64 reductions (J J^T, J^T eps) whatever the network's dtype
        jac = jac.astype(jnp.float64)
        jac = (jac - jnp.mean(jac, axis=0)) / jnp.sqrt(n)
        eps = 2.0 * (e_clip - jnp.mean(e_clip)) / jnp.sqrt(n)
        previous = state.opt_state.previous
        if momentum > 0:
            delta = natural_gradient_spring(jac, eps, previous, diag_shift, momentum)
        else:  # plain minSR: no J phi_prev product with a zero phi_prev
            delta = natural_gradient_minsr(jac, eps, diag_shift)
        grad = jac.T @ eps
        count = state.opt_state.count
        eta = learning_rate / (1.0 + count / delay)
        if norm_constraint > 0:
            sq = eta**2 * jnp.abs(jnp.dot(delta, grad))
            eta = eta * jnp.minimum(1.0, jnp.sqrt(norm_constraint / jnp.maximum(sq, 1e-300)))
        params = unravel((flat - eta * delta).astype(flat.dtype))
        stats = {"energy": energy, "variance": variance, "acceptance": acc, "width": mc.width}
        new_previous = delta if momentum > 0 else previous
        return VMCState(params, SRState(count + 1, new_previous), mc), stats

    return VMC(init, step)
