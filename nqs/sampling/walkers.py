"""All-electron Gaussian random-walk Metropolis for real-space wavefunctions (walkers).

:class:`WalkerSampler` implements the :class:`nqs.sampling.base.Sampler` protocol with the
conventions of :class:`nqs.sampling.metropolis.MetropolisSampler`:

    state = sampler.init(key, log_psi, params)                    # or init_at(log_psi, params, r)
    samples, state, info = sampler.sample(key, log_psi, params, state)

``sample`` re-evaluates ``log|psi|^2`` of the walkers at ``params`` (the parameters changed
since the last call), then makes ``n_steps`` moves; ``samples.x`` are the walkers after them
(weights ``1 / n_walkers``, ``n_chains = n_walkers``), ``info`` holds ``acceptance`` (mean of
this call). The "ansatz" is the real-space network ``(params, r [n_el, 3]) -> log|psi|`` or
``(sign, log|psi|)`` (an :class:`nqs.ansatz.Ansatz` works too, by its ``log_psi``).

Many walkers move in parallel (vmap over walkers, ``lax.scan`` over steps). Each step proposes
``r' = r + width * N(0, 1)`` for all electrons of a walker at once and accepts with probability
``min(1, |psi(r')|^2 / |psi(r)|^2)``. The width is fixed within one call (detailed balance holds)
and adapted BETWEEN calls towards a target acceptance (0.5 by default). Where the walkers start
is the problem's (``start``; :func:`nqs.realspace.mcmc.init_walkers`: electrons at their atoms).

Shapes: walkers ``r [n_walkers, n_el, 3]`` in bohr; ``log_prob = 2 log|psi|`` ``[n_walkers]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.ansatz import Ansatz, log_abs
from nqs.errors import InputError
from nqs.parallel import Mesh, chunked_map, constrain_samples
from nqs.sampling.base import Samples

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


def _log_psi_fn(ansatz: Ansatz | LogPsiFn) -> LogPsiFn:
    return ansatz.log_psi if isinstance(ansatz, Ansatz) else ansatz


@dataclass(frozen=True)
class WalkerSampler:
    """Random-walk Metropolis on ``|psi|^2`` of electrons in real space (module docstring).

    Attributes:
        n_steps: Metropolis steps per call (all electrons of all walkers move each step).
        target_acceptance: the width is adapted between calls towards this acceptance.
        adapt: if False the width is kept fixed (fixed-parameter measurements).
        chunk_size: evaluate ``log|psi|`` this many walkers per device at a time (None: all).
        mesh: devices the walkers are split over (None: no constraint). The acceptance is a
            mean over all walkers, so the adapted width is the same on every device.
        start: ``key -> r [n_walkers, n_el, 3]``, where :meth:`init` starts the walkers (the
            problem's; None: only :meth:`init_at`).
        width: the initial proposal width in bohr.
    """

    n_steps: int = 10
    target_acceptance: float = 0.5
    adapt: bool = True
    chunk_size: int | None = None
    mesh: Mesh | None = None
    start: Callable[[jax.Array], jax.Array] | None = None
    width: float = 0.2

    is_exact: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.n_steps < 1:
            raise InputError(f"n_steps must be >= 1, got {self.n_steps}")

    def log_prob(self, ansatz: Ansatz | LogPsiFn, params: Any, r: jax.Array) -> jax.Array:
        """``2 log|psi|`` ``[n_walkers]`` of walkers ``r`` (float64 whatever the network's
        dtype: the acceptance test compares differences)."""
        fn = _log_psi_fn(ansatz)
        log_abs_all = chunked_map(lambda p, x: log_abs(fn(p, x)), self.chunk_size, self.mesh)
        return 2.0 * log_abs_all(params, constrain_samples(r, self.mesh)).astype(r.dtype)

    def init(self, key: jax.Array, ansatz: Ansatz | LogPsiFn, params: Any) -> MCMCState:
        """Walkers from ``start(key)`` at the initial width."""
        if self.start is None:
            raise InputError("WalkerSampler.init needs start (where the walkers begin); "
                             "or use init_at with positions")
        return self.init_at(ansatz, params, self.start(key))

    def init_at(self, ansatz: Ansatz | LogPsiFn, params: Any, r: jax.Array,
                width: float | jax.Array | None = None) -> MCMCState:
        """The state of walkers ``r`` (``[n_walkers, n_el, 3]``) at ``params``, proposal
        ``width`` (None: :attr:`width`). Jitted: callers outside a jit (start-up,
        pretraining, resume) would otherwise run the network op by op."""
        return _init_at(self, ansatz, params, jnp.asarray(r),
                        self.width if width is None else width)

    def move(self, key: jax.Array, ansatz: Ansatz | LogPsiFn, params: Any, state: MCMCState
             ) -> tuple[MCMCState, jax.Array]:
        """``n_steps`` moves at fixed ``params`` from ``state`` (whose ``log_prob`` must be at
        ``params``; the width adapted afterwards when :attr:`adapt`): ``(state, acceptance)``.
        Pure (jit it)."""
        width = state.width

        def one(carry: tuple[jax.Array, jax.Array], k: jax.Array):
            r, lp = carry
            k1, k2 = jax.random.split(k)
            r_new = r + width * jax.random.normal(k1, r.shape, r.dtype)
            lp_new = self.log_prob(ansatz, params, r_new)
            log_u = jnp.log(jax.random.uniform(k2, lp.shape, lp.dtype))
            accept = log_u < lp_new - lp
            r = jnp.where(accept[:, None, None], r_new, r)
            lp = jnp.where(accept, lp_new, lp)
            return (r, lp), jnp.mean(accept.astype(r.dtype))

        (r, lp), acc = jax.lax.scan(one, (state.r, state.log_prob),
                                    jax.random.split(key, self.n_steps))
        acceptance = jnp.mean(acc)
        if self.adapt:
            width = adapt_width(width, acceptance, self.target_acceptance)
        return MCMCState(r, lp, width), acceptance

    def sample(self, key: jax.Array, ansatz: Ansatz | LogPsiFn, params: Any, state: MCMCState
               ) -> tuple[Samples, MCMCState, dict[str, jax.Array]]:
        """``log|psi|^2`` refreshed at ``params``, then :meth:`move`: the walkers as
        :class:`Samples`, the new state and ``{"acceptance"}``. Pure (jit it)."""
        mc = self.init_at(ansatz, params, state.r, state.width)
        mc, acc = self.move(key, ansatz, params, mc)
        mc = mc._replace(r=constrain_samples(mc.r, self.mesh),
                         log_prob=constrain_samples(mc.log_prob, self.mesh))
        n = mc.r.shape[0]
        return Samples(mc.r, jnp.full(n, 1.0 / n, mc.log_prob.dtype), n), mc, {"acceptance": acc}


@partial(jax.jit, static_argnums=(0, 1))
def _init_at(sampler: WalkerSampler, ansatz: Any, params: Any, r: jax.Array,
             width: Any) -> MCMCState:
    return MCMCState(r, sampler.log_prob(ansatz, params, r), jnp.asarray(width, r.dtype))


def make_mcmc(
    log_abs_psi_fn: LogPsiFn,
    n_steps: int = 10,
    target_acceptance: float = 0.5,
    adapt: bool = True,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> tuple[
    Callable[..., MCMCState],
    Callable[[jax.Array, Any, MCMCState], tuple[MCMCState, jax.Array]],
]:
    """The ``(init, step)`` pair of a :class:`WalkerSampler` (arguments: its fields) for a
    fixed network: ``init(params, r [n_walkers, n_el, 3], width=0.2) -> MCMCState`` (jitted)
    and ``step(key, params, state) -> (state, acceptance)`` (:meth:`WalkerSampler.move`)."""
    sampler = WalkerSampler(n_steps, target_acceptance, adapt, chunk_size, mesh)

    def init(params: Any, r: jax.Array, width: float = 0.2) -> MCMCState:
        return sampler.init_at(log_abs_psi_fn, params, r, width)

    def step(key: jax.Array, params: Any, state: MCMCState) -> tuple[MCMCState, jax.Array]:
        return sampler.move(key, log_abs_psi_fn, params, state)

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
    sampler = WalkerSampler(mcmc_steps, adapt=False, chunk_size=chunk_size, mesh=mesh)
    batch_e_loc = chunked_map(local_energy_fn, chunk_size, mesh)

    def run(key: jax.Array, params: Any, mc: MCMCState, n: int):
        mc = sampler.init_at(log_abs_psi_fn, params, mc.r, mc.width)

        def body(mc: MCMCState, k: jax.Array):
            mc, acc = sampler.move(k, log_abs_psi_fn, params, mc)
            e_loc = batch_e_loc(params, constrain_samples(mc.r, mesh)).astype(jnp.float64)
            return mc, (e_loc, acc)

        mc, (e_loc, acc) = jax.lax.scan(body, mc, jax.random.split(key, n))
        return mc, e_loc, acc

    return jax.jit(run, static_argnums=3)


def evaluate_energy(
    key: jax.Array,
    log_abs_psi_fn: Callable[[Any, jax.Array], Any],
    local_energy_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    state: MCMCState,
    n_measurements: int,
    mcmc_steps: int = 10,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> tuple[Any, float, MCMCState]:
    """The final evaluation of a real-space run: ``(Stats, mean acceptance, walkers)`` of the
    local energies (Hartree) over ``n_measurements`` measurements of all walkers at fixed
    parameters (:func:`make_energy_sampler`; each walker one Markov chain, row
    ``measurement * n_walkers + walker``); the walkers after it, gathered to the host."""
    import numpy as np

    from nqs.parallel import gather
    from nqs.stats import statistics

    sampler = make_energy_sampler(log_abs_psi_fn, local_energy_fn, mcmc_steps, chunk_size, mesh)
    state, e_loc, accs = sampler(key, params, state, int(n_measurements))
    e_loc, accs, state = gather((e_loc, accs, state))
    values = np.asarray(e_loc).reshape(-1)
    stats = statistics(values, np.full(values.size, 1.0 / values.size), int(state.r.shape[0]))
    return stats, float(np.mean(np.asarray(accs))), state
