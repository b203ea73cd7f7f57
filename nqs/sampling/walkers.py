"""All-electron Gaussian random-walk Metropolis for real-space wavefunctions (walkers).

Many walkers move in parallel (vmap over walkers, ``lax.scan`` over steps). Each step proposes
``r' = r + width * N(0, 1)`` for all electrons of a walker at once and accepts with probability
``min(1, |psi(r')|^2 / |psi(r)|^2)``. The width is fixed within one call (detailed balance holds)
and adapted BETWEEN calls towards a target acceptance (0.5 by default). Where the walkers start
is the problem's (:func:`nqs.realspace.mcmc.init_walkers`: electrons at their atoms).

Shapes: walkers ``r [n_walkers, n_el, 3]`` in bohr; ``log_prob = 2 log|psi|`` ``[n_walkers]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.ansatz import log_abs
from nqs.errors import InputError
from nqs.parallel import Mesh, chunked_map, constrain_samples

LogPsiFn = Callable[[Any, jax.Array], Any]
"""``(params, r [n_el, 3]) -> log|psi|`` or ``-> (sign, log|psi|)``."""


class MCMCState(NamedTuple):
    """Walker state.

    Attributes:
        r: ``[n_walkers, n_el, 3]`` positions in bohr.
        log_prob: ``[n_walkers]`` ``2 log|psi(r)|`` at the current parameters.
        width: scalar proposal standard deviation in bohr.
    """

    r: jax.Array
    log_prob: jax.Array
    width: jax.Array



def adapt_width(
    width: jax.Array, acceptance: jax.Array, target: float = 0.5, max_factor: float = 1.5
) -> jax.Array:
    """New proposal width from the acceptance of the last call.

    ``width * clip((acceptance + 0.05) / (target + 0.05), 1/max_factor, max_factor)``: wider when
    too many moves are accepted, narrower when too few.
    """
    factor = jnp.clip((acceptance + 0.05) / (target + 0.05), 1.0 / max_factor, max_factor)
    return width * factor


def make_mcmc(
    log_abs_psi_fn: LogPsiFn,
    n_steps: int = 10,
    target_acceptance: float = 0.5,
    adapt: bool = True,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> tuple[
    Callable[[Any, jax.Array, float], MCMCState],
    Callable[[jax.Array, Any, MCMCState], tuple[MCMCState, jax.Array]],
]:
    """Random-walk Metropolis on ``|psi|^2``.

    Args:
        log_abs_psi_fn: ``(params, r [n_el, 3]) -> log|psi|`` (or ``(sign, log|psi|)``).
        n_steps: Metropolis steps per call (all electrons of all walkers move each step).
        target_acceptance: the width is adapted between calls towards this acceptance.
        adapt: if False the width is kept fixed.
        chunk_size: evaluate ``log|psi|`` this many walkers per device at a time (None: all).
        mesh: devices the walkers are split over (None: no constraint). The acceptance is a
            mean over all walkers, so the adapted width is the same on every device.

    Returns:
        ``init(params, r [n_walkers, n_el, 3], width=0.2) -> MCMCState`` and
        ``step(key, params, state) -> (state, acceptance)``, both jit-able; ``acceptance`` is
        the mean acceptance rate of this call.
    """
    if n_steps < 1:
        raise InputError(f"n_steps must be >= 1, got {n_steps}")

    log_abs_all = chunked_map(lambda p, x: log_abs(log_abs_psi_fn(p, x)), chunk_size, mesh)

    def batch_log_prob(params: Any, r: jax.Array) -> jax.Array:
        # float64 whatever the network's dtype: the acceptance test compares differences
        return 2.0 * log_abs_all(params, constrain_samples(r, mesh)).astype(r.dtype)

    # jitted: callers outside a jit (driver start-up, pretraining, resume) would otherwise run
    # the network op by op, compiling every operation separately (seconds per call)
    @jax.jit
    def init(params: Any, r: jax.Array, width: float = 0.2) -> MCMCState:
        r = jnp.asarray(r)
        return MCMCState(r, batch_log_prob(params, r), jnp.asarray(width, r.dtype))

    def step(key: jax.Array, params: Any, state: MCMCState) -> tuple[MCMCState, jax.Array]:
        width = state.width

        def one(carry: tuple[jax.Array, jax.Array], k: jax.Array):
            r, lp = carry
            k1, k2 = jax.random.split(k)
            r_new = r + width * jax.random.normal(k1, r.shape, r.dtype)
            lp_new = batch_log_prob(params, r_new)
            log_u = jnp.log(jax.random.uniform(k2, lp.shape, lp.dtype))
            accept = log_u < lp_new - lp
            r = jnp.where(accept[:, None, None], r_new, r)
            lp = jnp.where(accept, lp_new, lp)
            return (r, lp), jnp.mean(accept.astype(r.dtype))

        (r, lp), acc = jax.lax.scan(one, (state.r, state.log_prob), jax.random.split(key, n_steps))
        acceptance = jnp.mean(acc)
        if adapt:
            width = adapt_width(width, acceptance, target_acceptance)
        return MCMCState(r, lp, width), acceptance

    return init, step


def burn_in(
    key: jax.Array,
    step: Callable[[jax.Array, Any, MCMCState], tuple[MCMCState, jax.Array]],
    params: Any,
    state: MCMCState,
    n_calls: int,
) -> tuple[MCMCState, jax.Array]:
    """Run ``step`` ``n_calls`` times (width adapted between calls), discarding the samples.

    Returns:
        the equilibrated state and the acceptance of each call ``[n_calls]``.
    """
    step_j = step if hasattr(step, "lower") else jax.jit(step)  # reuse an already jitted step
    accs = []
    for k in jax.random.split(key, max(n_calls, 1))[:n_calls]:
        state, acc = step_j(k, params, state)
        accs.append(acc)
    return state, jnp.asarray(accs)


def make_energy_sampler(
    log_abs_psi_fn: Callable[[Any, jax.Array], Any],
    local_energy_fn: Callable[[Any, jax.Array], jax.Array],
    mcmc_steps: int = 10,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> Callable[[jax.Array, Any, MCMCState, int], tuple[MCMCState, jax.Array, jax.Array]]:
    """Fixed-parameter sampler: ``run(key, params, mcmc, n) -> (mcmc, e_loc [n, W], acc [n])``
    (jitted, ``n`` static); ``mcmc_steps`` moves at a fixed width between measurements.
    ``chunk_size`` / ``mesh``: walkers per device at a time / devices they are split over."""
    mcmc_init, mcmc_step = make_mcmc(log_abs_psi_fn, mcmc_steps, adapt=False,
                                     chunk_size=chunk_size, mesh=mesh)
    batch_e_loc = chunked_map(local_energy_fn, chunk_size, mesh)

    def run(key: jax.Array, params: Any, mc: MCMCState, n: int):
        mc = mcmc_init(params, mc.r, mc.width)

        def body(mc: MCMCState, k: jax.Array):
            mc, acc = mcmc_step(k, params, mc)
            e_loc = batch_e_loc(params, constrain_samples(mc.r, mesh)).astype(jnp.float64)
            return mc, (e_loc, acc)

        mc, (e_loc, acc) = jax.lax.scan(body, mc, jax.random.split(key, n))
        return mc, e_loc, acc

    return jax.jit(run, static_argnums=3)
