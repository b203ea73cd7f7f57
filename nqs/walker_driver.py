"""The VMC run of walkers in continuous space: the impure shell around a pure walker step.

    result = run_walker_vmc(problem, settings, env, t_run, WalkerResult, extra={}, ckpt=path)

The engine's driver for problems whose samples are walkers (:class:`nqs.sampling.walkers`;
electrons in real space, :mod:`nqs.realspace`, is the plug-in that uses it): the problem hands
over its pure pieces in a :class:`WalkerProblem` (the network ``log_psi``, the local energy,
the VMC method :class:`nqs.vmc.WalkerVMC` and the one to fall back to, the initial parameters
and walkers, the keys, the checkpoint metadata and a ``prepare`` hook such as pretraining);
this module does the rest, the same way for every such problem:

* a fresh run: ``prepare`` (e.g. Hartree-Fock pretraining), the optimizer state, a Metropolis
  burn-in, a checkpoint at step 0;
* ``resume``: :func:`nqs.loop.resume_run` (a checkpoint of other options, non-finite or past
  ``n_steps`` is refused); the result equals that of an uninterrupted run with the same seed,
  as the key of step ``k`` is ``fold_in(run_key, k)``;
* the steps in the loop both drivers share (:func:`nqs.loop.run_steps`: log lines,
  checkpoints, progress, time limit, SIGINT / SIGTERM) with its guard
  (:class:`nqs.guard.Guard`, no energy-jump test here): a step whose energy or new parameters
  are not finite is rejected (a non-finite energy goes back to the *anchor*, the state of the
  last accepted energy; non-finite new parameters to the state before the step, copied first
  when the method donates its inputs, as KFAC), later updates are scaled by
  :data:`LR_FACTOR` per rejection and :data:`MAX_REJECTIONS` in a row raise
  :class:`nqs.errors.RunDiverged`;
* an optimizer that fails to build, to initialise or in its first step is replaced by the
  problem's :class:`Fallback` (one warning line) when it has one;
* a final evaluation at fixed parameters (:func:`nqs.sampling.walkers.evaluate_energy`) and
  the result (:class:`WalkerResult`, or the problem's subclass of it).

Files (only with an output directory): ``log.jsonl`` gets one flushed JSON line per step
(``step, energy, energy_error, variance, acceptance, width, step_time_s, wall_time_s``);
``checkpoint.msgpack`` holds ``{"state": WalkerState, "key", "step"}`` and the guard's anchor,
written atomically at step 0, every ``checkpoint_every`` steps and at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import jax

from nqs.ansatz import n_parameters
from nqs.guard import Guard, copy_tree, failure_reason, step_is_finite
from nqs.io import JsonlLogger, require_finite
from nqs.loop import (
    LoopIO,
    RunEnv,
    RunResult,
    StepOutcome,
    StepProblem,
    Steps,
    check_final_energy,
    open_log,
    resume_run,
    run_steps,
    write_checkpoint,
)
from nqs.parallel import (
    Mesh,
    auto_chunk_size,
    bytes_per_sample,
    gather,
    put,
    replicated,
    run_record,
    sample_sharding,
    tree_shardings,
)
from nqs.progress import Progress
from nqs.sampling.walkers import MCMCState, WalkerSampler, burn_in, evaluate_energy
from nqs.vmc import WalkerState, WalkerVMC

MAX_REJECTIONS = 10  # consecutive rejected steps that stop a run (RunDiverged)
LR_FACTOR = 0.3  # each rejected step scales the later updates by this factor
WIDTH = 0.2  # the initial Metropolis step width (bohr)


@dataclass(kw_only=True)
class WalkerResult(RunResult):
    """Outcome of a walker run: the final evaluation's estimate and the run's record."""

    tau_corr: float
    acceptance: float
    n_walkers: int
    eval_steps: int
    reference_energy: float | None = None
    reference_source: str | None = None
    optimizer: str | None = None
    momentum: float = 0.0
    kfac_fallback: str | None = None  # why the optimizer fell back (None: it did not)
    log_psi: Any = field(default=None, repr=False)  # the network (params, r) -> log|psi|
    walkers: Any = field(default=None, repr=False)  # MCMCState after the final evaluation

    @property
    def reference(self) -> float | None:
        """The tabulated exact energy, or None."""
        return self.reference_energy


@dataclass
class Fallback:
    """The VMC method to continue with when the problem's optimizer fails to build, to
    initialise or in its first step: ``build()`` makes it; ``optimizer`` and ``momentum`` name
    it (result and checkpoints); ``warning(reason)`` is the line echoed; ``label`` names it in
    messages."""

    build: Callable[[], WalkerVMC]
    optimizer: str
    momentum: float
    warning: Callable[[str], str]
    label: str = "SPRING"  # the method's name in messages


@dataclass
class WalkerProblem:
    """The pure pieces of one walker run, built by the problem from the seed.

    apply: the network ``(params, r) -> log|psi|``; e_loc_fn: ``(params, r) -> E_loc``.
    vmc: the VMC method (None when it failed to build: ``fallback`` replaces it at once).
    params, walkers: the initial parameters and walker positions ``[n_walkers, ...]``.
    keys: ``(k_pre, k_opt, k_burn, k_run, k_eval)``: ``prepare``'s, the optimizer state's, the
      burn-in's, the steps' (``fold_in(k_run, k)``) and the final evaluation's.
    meta: the checkpoints' metadata (``seed``, ``dtype``, ``n_steps_planned``,
      ``fingerprint``). optimizer, momentum: the method's names (result, fallback).
    prepare: ``(params, walkers, logger) -> (params, walkers, info)`` before the optimizer
      state of a fresh run (e.g. pretraining), ``info`` JSON-able entries added to the
      checkpoints' metadata (read back on resume under the keys ``info_keys``).
    fallback: what replaces a failed optimizer (None: its errors propagate);
      fallback_error: the optimizer's error when it failed to build.
    """

    apply: Callable[[Any, jax.Array], Any]
    e_loc_fn: Callable[[Any, jax.Array], jax.Array]
    vmc: WalkerVMC | None
    params: Any
    walkers: jax.Array
    keys: tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]
    meta: dict[str, Any]
    optimizer: str
    momentum: float = 0.0
    prepare: Callable[[Any, jax.Array, JsonlLogger | None],
                      tuple[Any, jax.Array, dict[str, Any]]] | None = None
    info_keys: tuple[str, ...] = ()
    fallback: Fallback | None = None
    fallback_error: BaseException | str | None = None


@dataclass(frozen=True)
class WalkerSettings:
    """The sizes of a walker run: steps, walkers, Metropolis moves per step and measurement,
    burn-in calls, final measurements, checkpoint period, time limit (seconds of steps, None:
    none), chunk size (walkers per device evaluated at a time, None: all), whether to resume,
    and the hint of a diverged run's message."""

    n_steps: int
    n_walkers: int
    mcmc_steps: int
    burn_in_calls: int
    eval_steps: int
    checkpoint_every: int
    time_limit: float | None
    chunk_size: int | None
    resume: bool
    hint: str = "lower --lr or raise --damping"


@dataclass
class _Run:
    """The state of one run besides the walkers' state: the problem, where it runs, the
    checkpoint, the guard and the method in use (which a fallback replaces)."""

    problem: WalkerProblem
    env: RunEnv
    settings: WalkerSettings
    ckpt: Path | None
    guard: Guard
    vmc: WalkerVMC | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    optimizer: str = ""
    momentum: float = 0.0
    fallback: Fallback | None = None
    fallback_reason: str | None = None

    def fall_back(self, err: BaseException | str) -> None:
        """Replace a failed optimizer by the fallback (one warning line; the next checkpoints
        say so)."""
        fb = self.fallback
        assert fb is not None
        reason = err if isinstance(err, str) else failure_reason(err)
        self.env.echo(fb.warning(reason))
        self.vmc = fb.build()
        self.fallback = None
        self.fallback_reason = reason
        self.optimizer, self.momentum = fb.optimizer, fb.momentum
        # the checkpoints say so (not the reason: a resume may fail at another point)
        self.meta = self.meta | {"kfac_fallback": True, "fingerprint": self.meta["fingerprint"]
                                 | {"optimizer": fb.optimizer, "momentum": fb.momentum}}

    def shardings_of(self, state: WalkerState) -> WalkerState:
        """Parameters and optimizer state replicated; walkers and their log|psi|^2 split."""
        mesh = self.env.mesh
        return WalkerState(
            tree_shardings(state.params, mesh, None),
            tree_shardings(state.opt_state, mesh, None),
            MCMCState(sample_sharding(mesh), sample_sharding(mesh), replicated(mesh)),
        )

    def checkpoint(self, state: WalkerState, step: int, info: dict[str, Any]) -> None:
        """Write ``state`` at ``step`` (and the recovery's anchor and state) atomically (the
        gather runs on all processes)."""
        if self.ckpt is not None:
            tree = {"state": state, "key": self.problem.keys[3], "step": step}
            write_checkpoint(self.ckpt, tree, self.meta | info, step, self.guard, self.env.main)


#: On a CPU, ``--chunk-size auto`` evaluates the walkers in blocks whose local-energy
#: intermediates (XLA's estimate per walker) fit about this many bytes, as the spins' CPU
#: chunk does: blocks that stay in the cache. Steps at the CPU defaults (2-core AMD EPYC,
#: 2026-12-07, 256 walkers): the N atom 0.143 -> 0.109 s (chunk 16 of 318 KB walkers), He
#: unchunked (256 walkers of 26 KB; chunk 16 would be 0.032 -> 0.039 s). It also avoids a
#: hang of XLA's CPU runtime: N2, CO, C2 and O2 with 256 walkers in one block never finished
#: their first Metropolis call (docs/troubleshooting.md).
CPU_CHUNK_BYTES = 8 << 20


def walker_chunk_size(chunk_size: int | str | None, e_loc_fn: Callable[[Any, jax.Array], Any],
                      params: Any, walkers: jax.Array, mesh: Mesh) -> int | None:
    """The chunk size to run with: ``"auto"`` from the device memory and XLA's estimate of the
    memory per walker (the same bound for every optimizer), on a CPU at most
    :data:`CPU_CHUNK_BYTES` of local-energy intermediates a block; else ``chunk_size``."""
    if chunk_size != "auto":
        return chunk_size
    n = int(walkers.shape[0])
    per_walker = bytes_per_sample(e_loc_fn, params, walkers[0])
    # a log-derivative row: a few copies of n_parameters float64 numbers
    chunk = auto_chunk_size(max(per_walker, 4 * 8 * n_parameters(params)), n, mesh)
    if jax.default_backend() == "cpu":
        cache = auto_chunk_size(per_walker, n, mesh, budget_bytes=CPU_CHUNK_BYTES, fraction=1.0)
        bounds = [c for c in (chunk, cache) if c is not None]
        chunk = min(bounds) if bounds else None
    return chunk


R = TypeVar("R", bound=WalkerResult)


def run_walker_vmc(problem: WalkerProblem, settings: WalkerSettings, env: RunEnv, t_run: float,
                   result_type: type[R], extra: dict[str, Any],
                   ckpt: Path | None, callback: Callable[[dict], None] | None = None) -> R:
    """Run ``problem`` (module docstring): a fresh start or a resume, the steps, the final
    evaluation; ``result_type(**fields, **extra, **info)`` (``info``: ``prepare``'s entries,
    or the resumed checkpoint's). ``ckpt``: the checkpoint file (None: no files)."""
    run = _run_of(problem, settings, env, ckpt)
    _, k_opt, _, _, k_eval = problem.keys
    s = settings
    start, info = 0, {k: None for k in problem.info_keys}
    if s.resume:
        state, start, info = _resume(run, run.vmc.init(k_opt, problem.params, problem.walkers,
                                                       WIDTH))
    logger, history = open_log(env.out, env.main, s.resume, start)
    if not s.resume:
        state, info = _start(run, logger)
        run.checkpoint(state, 0, info)
    bar = Progress(s.n_steps, start, enabled=env.progress)
    done = _optimize(run, state, start, info, LoopIO(history, logger, bar, env.echo, t_run,
                                                     callback))
    bar.phase(f"final evaluation ({s.eval_steps} measurements at the final parameters)")
    st, acceptance, walkers = evaluate_energy(k_eval, problem.apply, problem.e_loc_fn,
                                              done.state.params, done.state.mcmc, s.eval_steps,
                                              s.mcmc_steps, s.chunk_size, env.mesh)
    check_final_energy(float(st.mean), s.hint)
    return _result(run, done, history, st, acceptance, walkers, t_run, result_type,
                   extra | info)


def _run_of(problem: WalkerProblem, settings: WalkerSettings, env: RunEnv,
            ckpt: Path | None) -> _Run:
    """The run's state: the problem's method (or its fallback when it failed to build, or
    when the run being resumed had fallen back)."""
    run = _Run(problem, env, settings, ckpt,
               Guard(None, LR_FACTOR, MAX_REJECTIONS, hint=settings.hint), problem.vmc,
               problem.meta, problem.optimizer, problem.momentum, problem.fallback)
    if problem.fallback_error is not None:
        run.fall_back(problem.fallback_error)
    elif run.fallback is not None and settings.resume:
        from nqs.io import load_checkpoint_metadata

        if load_checkpoint_metadata(ckpt).get("kfac_fallback"):  # so does its continuation
            run.fall_back(f"the run being resumed had fallen back to {run.fallback.label}")
    return run


def _resume(run: _Run, vmc_template: WalkerState
            ) -> tuple[WalkerState, int, dict[str, Any]]:
    """``(state, step, info)`` from the checkpoint, after :func:`nqs.loop.resume_run` has
    checked that it is this run's (the options sit beside the step and the guard's state in
    the checkpoint's metadata), finite and within the planned steps."""
    assert run.ckpt is not None
    template = {"state": vmc_template, "key": run.problem.keys[3], "step": 0}
    fingerprint = run.meta["fingerprint"]
    resumed = resume_run(run.ckpt, template, run.shardings_of(vmc_template), run.guard,
                         n_steps=run.settings.n_steps, meta=run.meta, echo=run.env.echo,
                         legacy=fingerprint)
    state: WalkerState = resumed.tree["state"]
    require_finite(state.mcmc.r, run.ckpt, "walker positions")
    return state, resumed.start, {k: resumed.meta.get(k) for k in run.problem.info_keys}


def _start(run: _Run, logger: JsonlLogger | None) -> tuple[WalkerState, dict[str, Any]]:
    """A fresh state: the problem's ``prepare`` (if any), the optimizer state, a burn-in."""
    p = run.problem
    _, k_opt, k_burn, _, _ = p.keys
    params, walkers, info = p.params, p.walkers, {k: None for k in p.info_keys}
    if p.prepare is not None:
        params, walkers, info = p.prepare(params, walkers, logger)
    try:
        state = run.vmc.init(k_opt, params, walkers, WIDTH)
    except Exception as err:  # kfac-jax traces the loss here: a jax it does not know fails
        if run.fallback is None:
            raise
        run.fall_back(err)
        state = run.vmc.init(k_opt, params, walkers, WIDTH)
    state = put(state, run.shardings_of(state))
    s = run.settings
    if s.burn_in_calls > 0:
        sampler = WalkerSampler(s.mcmc_steps, chunk_size=s.chunk_size, mesh=run.env.mesh)
        move = jax.jit(lambda k, q, mc: sampler.move(k, p.apply, q, mc))
        mc, _ = burn_in(k_burn, move, state.params,
                        sampler.init_at(p.apply, state.params, state.mcmc.r, WIDTH),
                        s.burn_in_calls)
        state = state._replace(mcmc=mc)
    return state, info


def _optimize(run: _Run, state: WalkerState, start: int, info: dict[str, Any],
              io: LoopIO) -> Steps[WalkerState]:
    """Steps ``start .. n_steps - 1`` (or until the time limit) in the shared loop
    (:func:`nqs.loop.run_steps`): logged, checkpointed, a non-finite step rejected."""
    s = run.settings
    return run_steps(_walker_problem(run, start, info), state, start, s.n_steps,
                     guard=run.guard, io=io, checkpoint_every=s.checkpoint_every,
                     time_limit=s.time_limit)


def _walker_problem(run: _Run, start: int, info: dict[str, Any]) -> StepProblem[WalkerState]:
    """The walker step as the shared loop's problem: the key of step ``k`` is
    ``fold_in(run_key, k)``; a method that donates its inputs (KFAC) gets a copy of the state
    to go back to; a failure of the first step falls back (``run.fallback``) and retries."""
    _, k_opt, _, k_run, _ = run.problem.keys
    n_walkers = run.settings.n_walkers

    def step(k: int, state: WalkerState) -> StepOutcome[WalkerState]:
        before = copy_tree(state) if run.vmc.donates else state
        key = jax.random.fold_in(k_run, k)
        try:
            after, stats = run.vmc.step(key, state)
        except Exception as err:  # KFAC's first step: fall back (later errors propagate)
            if k != start or run.fallback is None:
                raise
            run.fall_back(err)
            state = run.vmc.init(k_opt, before.params, before.mcmc.r, before.mcmc.width)
            state = before = put(state, run.shardings_of(state))
            after, stats = run.vmc.step(key, state)
        stats = {name: float(v) for name, v in jax.device_get(stats).items()}
        return StepOutcome(before, after, _record(stats, n_walkers),
                           step_is_finite(stats["energy"], after.params))

    def restore(after: WalkerState, back: WalkerState) -> WalkerState:
        return copy_tree(back) if run.vmc.donates else back

    def checkpoint(state: WalkerState, k: int) -> None:
        run.checkpoint(state, k, info)

    return StepProblem(step, restore, checkpoint if run.ckpt is not None else None, run.ckpt)


def _record(stats: dict[str, float], n_walkers: int) -> dict[str, Any]:
    """A step's log fields from its statistics (the error bar of uncorrelated walkers)."""
    variance = stats["variance"]
    return {
        "energy": stats["energy"],
        "energy_error": math.sqrt(max(variance, 0.0) / n_walkers)
        if math.isfinite(variance) else None,
        "variance": variance,
        "acceptance": stats["acceptance"],
        "width": stats["width"],
    }


def _result(run: _Run, done: Steps[WalkerState], history: list[dict], st: Any,
            acceptance: float, walkers: MCMCState, t_run: float, result_type: type[R],
            extra: dict[str, Any]) -> R:
    """The result: the final evaluation's statistics ``st``, the steps ``done``, the run's
    sizes and devices, and the problem's ``extra`` fields."""
    s = run.settings
    return result_type(
        energy=float(st.mean),
        energy_error=float(st.error_of_mean),
        variance=float(st.variance),
        tau_corr=float(st.tau_corr),
        acceptance=acceptance,
        n_parameters=n_parameters(done.state.params),
        steps=int(done.done),
        wall_time_s=time.perf_counter() - t_run,
        time_per_step_s=done.time_per_step,
        history=history,
        params=gather(done.state.params),
        optimizer=run.optimizer,
        momentum=run.momentum,
        kfac_fallback=run.fallback_reason,
        log_psi=run.problem.apply,
        walkers=walkers,
        n_walkers=int(s.n_walkers),
        steps_planned=int(s.n_steps),
        time_limit_s=None if s.time_limit is None else float(s.time_limit),
        eval_steps=int(s.eval_steps),
        dtype=run.meta["dtype"],
        **extra,
        **run_record(run.env.mesh, s.chunk_size),
    )
