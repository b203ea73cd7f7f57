"""The step loop both drivers share (:func:`nqs.driver.run_vmc`, and
:func:`nqs.walker_driver.run_walker_vmc`, whose plug-in is real space): the impure shell around a
problem's pure step.

    steps = run_steps(problem, state, start, n_steps, guard=guard, ...)

A problem hands the loop a :class:`StepProblem`: its step ``(k, state) -> StepOutcome`` (the
state to go back to, the new state, the log fields and whether it is finite), how to go back
after a rejection, how to write a checkpoint and what to measure beside the steps. The loop
does the rest, the same way for spins, molecules and electrons in real space:

* each step's record ``{"step", <the problem's fields>, "step_time_s", "wall_time_s"}`` is
  appended to ``history`` and to ``log.jsonl`` (flushed);
* the :class:`nqs.guard.Guard` judges it; a rejected step goes back (to the state before it, or
  to the anchor when its energy is condemned), scales the later updates and is logged with
  ``"rejected": true``; too many in a row raise :class:`nqs.errors.RunDiverged`;
* a checkpoint every ``checkpoint_every`` steps, after the last, at the time limit and on
  SIGINT / SIGTERM (then :class:`nqs.interrupt.RunInterrupted`);
* ``time_limit`` seconds of steps: the step that passes it is the last (process 0's clock);
* a :class:`nqs.plateau.Plateau`: the step after which the accepted energies stop falling is
  the last (checkpointed; a resumed run already on its plateau takes no step);
* progress (:class:`nqs.progress.Progress`) and a ``callback`` per record.

:func:`resume` reads a checkpoint back for both drivers: the options it was written with must
match (one line naming the first difference; the CLI exits 2), the state and the guard's anchor
must be finite and within the planned steps; the guard's state is restored.
:func:`resume_run` places what it read on the devices; :class:`RunEnv` is where a run happens
(process, messages, devices, output directory, progress). :class:`RunResult` is the base of
both drivers' results (``summary()`` -> ``result.json``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from nqs.errors import CheckpointError, RunDiverged
from nqs.guard import Guard, check_fingerprint, scale_update
from nqs.interrupt import RunInterrupted, deferred_signals
from nqs.io import (
    JsonlLogger,
    load_checkpoint,
    load_checkpoint_metadata,
    read_jsonl,
    require_finite,
    save_checkpoint,
)
from nqs.parallel import (
    Mesh,
    gather,
    is_main_process,
    make_mesh,
    process_echo,
    process_zero_decides,
    put,
)
from nqs.plateau import Plateau, accepted_energies
from nqs.progress import Progress

CHECKPOINT_NAME = "checkpoint.msgpack"
LOG_NAME = "log.jsonl"
S = TypeVar("S")  # the problem's state: a NamedTuple with a ``params`` field


@dataclass
class StepOutcome(Generic[S]):
    """One step of a problem: ``before`` is the state it started from (a copy when the step
    donates its input), ``after`` the new state, ``fields`` the log record's fields (with
    ``energy`` and ``energy_error``) and ``finite`` whether the gradient and new parameters
    are finite (the energy is checked by the guard)."""

    before: S
    after: S
    fields: dict[str, Any]
    finite: bool = True


@dataclass
class StepProblem(Generic[S]):
    """What the loop needs of a problem.

    step: ``(k, state) -> StepOutcome`` (``k``: the step's index).
    restore: ``(after, back) -> state``: the state to continue from after a rejected step
      whose new state was ``after`` and that goes back to ``back``.
    checkpoint: ``(state, steps_done)``: write a checkpoint (None: no files).
    checkpoint_path: the file ``checkpoint`` writes (named by RunInterrupted).
    observe: ``state -> {name: statistics}`` every ``observe_every`` steps and after the last
      (also the last before the time limit), stored in the record as ``"observables"``.
    """

    step: Callable[[int, S], StepOutcome[S]]
    restore: Callable[[S, S], S]
    checkpoint: Callable[[S, int], None] | None = None
    checkpoint_path: Path | None = None
    observe: Callable[[S], dict] | None = None
    observe_every: int = 10


@dataclass
class Steps(Generic[S]):
    """What the loop hands back: the final state, the steps done (``done``, counting those of
    earlier calls), the time spent in the ``n_timed`` steps after the first of this call (the
    first includes compilation) and the whole loop's time."""

    state: S
    done: int
    t_steps: float
    n_timed: int
    loop_time: float
    start: int = 0
    on_plateau: bool = False

    @property
    def time_per_step(self) -> float:
        """Seconds per step: of the steps after the first (compilation), of the one step when
        there was one, NaN without steps."""
        if self.n_timed:
            return self.t_steps / self.n_timed
        if self.done > self.start:
            return self.loop_time / (self.done - self.start)
        return math.nan


@dataclass
class LoopIO:
    """Where the loop's records and messages go: ``history`` (appended), the log file,
    progress display, echo and the run's clock (``t_run``, for ``wall_time_s``)."""

    history: list[dict]
    logger: JsonlLogger | None
    progress: Progress
    echo: Callable[[str], None]
    t_run: float
    callback: Callable[[dict], None] | None = None


def run_steps(problem: StepProblem[S], state: S, start: int, n_steps: int, *, guard: Guard,
              io: LoopIO, checkpoint_every: int, time_limit: float | None = None,
              plateau: Plateau | None = None) -> Steps[S]:
    """Steps ``start .. n_steps - 1`` of ``problem`` from ``state`` (or until ``time_limit``
    seconds have passed, or the energy is on a ``plateau``): logged, judged by ``guard``,
    checkpointed (module docstring). The progress bar and the log are closed when the loop
    ends, also on an error."""
    try:
        return _loop(problem, state, start, n_steps, guard, io, checkpoint_every, time_limit,
                     plateau)
    finally:
        io.progress.close()
        if io.logger is not None:
            io.logger.close()


def _loop(problem: StepProblem[S], state: S, start: int, n_steps: int, guard: Guard, io: LoopIO,
          checkpoint_every: int, time_limit: float | None, plateau: Plateau | None) -> Steps[S]:
    t_loop = time.perf_counter()
    t_steps, n_timed, done = 0.0, 0, start
    if start < n_steps and _on_plateau(plateau, io.history):  # resumed after a plateau stop
        io.echo(f"the energy was already on a plateau ({plateau.describe()}) at step {start}; "
                "no further steps")
        return Steps(state, done, t_steps, n_timed, time.perf_counter() - t_loop, start, True)
    flat = False  # the last step ended on the plateau
    if start < n_steps:
        io.progress.phase(f"steps {start}..{n_steps - 1}; compiling the step (the first step "
                          "includes it)")
    with deferred_signals() as pending:
        for k in range(start, n_steps):
            t0 = time.perf_counter()
            outcome = problem.step(k, state)
            dt = time.perf_counter() - t0
            if k > start:  # the first step includes compilation
                t_steps += dt
                n_timed += 1
            record = {"step": k, **outcome.fields, "step_time_s": dt,
                      "wall_time_s": time.perf_counter() - io.t_run}
            state, reason = _judge(problem, guard, k, outcome, record, io.echo)
            # every process stops after the same step (process 0's clock decides)
            out_of_time = time_limit is not None and k + 1 < n_steps and process_zero_decides(
                time.perf_counter() - t_loop > time_limit)
            flat = (plateau is not None and k + 1 < n_steps and not out_of_time
                    and process_zero_decides(_on_plateau(plateau, io.history + [record])))
            last = out_of_time or flat  # observed, checkpointed and echoed alike
            if problem.observe is not None and ((k + 1) % problem.observe_every == 0
                                                or k + 1 == n_steps or last):
                record["observables"] = problem.observe(state)
            io.history.append(record)
            if io.logger is not None:
                io.logger.append(record)
            if guard.rejections >= guard.max_rejections:
                raise RunDiverged(
                    f"{guard.rejections} consecutive steps rejected (last at step {k}: "
                    f"{reason}); the optimization diverged: {guard.hint}")
            done = k + 1
            signum = pending()
            if problem.checkpoint is not None and (
                    (k + 1) % checkpoint_every == 0 or k + 1 == n_steps
                    or signum is not None or last):
                problem.checkpoint(state, k + 1)
            io.progress.step(k + 1, record["energy"], record["energy_error"])
            if signum is not None:
                raise RunInterrupted(signum, k + 1, problem.checkpoint_path)
            if io.callback is not None:
                io.callback(record)
            if last:
                what = (f"the energy is on a plateau ({plateau.describe()})" if flat
                        else f"time limit of {time_limit:g} s reached")
                io.echo(f"{what} after step {k + 1} of {n_steps}"
                        + ("; checkpointed" if problem.checkpoint is not None else ""))
                break
    return Steps(state, done, t_steps, n_timed, time.perf_counter() - t_loop, start, flat)


def _on_plateau(plateau: Plateau | None, history: list[dict]) -> bool:
    return plateau is not None and plateau.reached(accepted_energies(history))


def _judge(problem: StepProblem[S], guard: Guard, k: int, outcome: StepOutcome[S],
           record: dict[str, Any], echo: Callable[[str], None]) -> tuple[S, str | None]:
    """The state to continue from after step ``k`` and the guard's reason to reject it (None:
    accepted); a rejection is noted in ``record`` and echoed."""
    before, after = outcome.before, outcome.after
    if guard.anchor is None:
        guard.anchor = before
    energy = float(outcome.fields["energy"])
    reason = guard.judge(energy, outcome.fields.get("energy_error"), outcome.finite)
    if reason is None:
        guard.e_ref = energy
        error = outcome.fields.get("energy_error")
        guard.err_ref = float(error) if error is not None else math.nan
        guard.accepted()
        guard.anchor = before
        if guard.lr_scale != 1.0:
            after = after._replace(params=scale_update(
                after.params, before.params, np.float64(guard.lr_scale)))
        return after, None
    change = guard.rejected()
    # a bad energy condemns the parameters it was measured at (the last update's result): back
    # to the anchor; a bad gradient or update only this step's update: back to the state before
    back = guard.anchor if not math.isfinite(energy) or "jumped" in reason or "rose" in reason \
        else before
    record["rejected"] = True
    record["lr_scale"] = guard.lr_scale
    if guard.adaptive_shift:
        record["shift_scale"] = guard.shift_scale
    echo(f"step {k}: rejected ({reason}); back to the last accepted parameters, {change}")
    return problem.restore(after, back), reason


def write_checkpoint(ckpt: Path, tree: dict[str, Any], meta: dict[str, Any], step: int,
                     guard: Guard, main: bool) -> None:
    """Write ``tree`` (``{"state": ..., ...}``; with the guard's anchor as ``"anchor"``, the
    state itself before the first step, unless ``tree`` has one) and ``meta`` with the steps
    done and the guard's state, atomically. The gather runs on every process, process 0
    (``main``) writes."""
    anchor = guard.anchor if guard.anchor is not None else tree["state"]
    host = gather({"anchor": anchor} | tree)
    if main:
        save_checkpoint(ckpt, host, meta | {"step": step, "guard": guard.meta()})


def open_log(out: Path | None, main: bool, resume: bool, start: int
             ) -> tuple[JsonlLogger | None, list[dict]]:
    """``out/log.jsonl`` (on process 0 with an output directory, else None) and the step
    records already in it: a fresh run starts a new log; a resumed one keeps the records of
    the steps before ``start`` (and those without a step) and drops the rest."""
    if out is None or not main:
        return None, []
    path = out / LOG_NAME
    if not resume and path.exists():
        path.unlink()
    logger = JsonlLogger(path, truncate_after_step=start if resume else None)
    return logger, [r for r in read_jsonl(path) if "step" in r] if resume else []


def checkpoint_to_resume(out: Path | None, name: str = CHECKPOINT_NAME) -> Path:
    """The checkpoint a resume reads, ``out/name``; :class:`CheckpointError` without an output
    directory or without the file."""
    if out is None:
        raise CheckpointError("resume needs an output directory holding a checkpoint")
    ckpt = Path(out) / name
    if not ckpt.exists():
        raise CheckpointError(f"no checkpoint to resume from: {ckpt} does not exist")
    return ckpt


def run_options(ckpt: Path, seed: int, dtype: str, legacy: Iterable[str] = ()
                ) -> Callable[[dict[str, Any]], Any]:
    """The ``saved_options`` of :func:`resume` for both drivers, which record ``seed``,
    ``dtype`` and ``fingerprint`` (the options that change the trajectory) in a checkpoint's
    metadata: refuses one of another seed or dtype (one line), then gives its fingerprint.
    ``legacy``: the option names a checkpoint from before the fingerprint entry kept at the top
    level of its metadata (older real-space runs); None for older discrete ones."""

    def options(saved: dict[str, Any]) -> Any:
        if saved.get("seed") != seed:
            raise CheckpointError(
                f"checkpoint {ckpt} was written with seed {saved.get('seed')}, not {seed}")
        # float32 and float64 runs may store the same float64 master parameters, so only the
        # recorded dtype tells them apart (checkpoints from before it existed were float64)
        if saved.get("dtype", "float64") != dtype:
            raise CheckpointError(
                f"checkpoint {ckpt} was written with --dtype {saved.get('dtype', 'float64')}, "
                f"not {dtype}; resume with the same dtype")
        if "fingerprint" in saved or not legacy:
            return saved.get("fingerprint")
        return {k: saved.get(k) for k in legacy}

    return options


@dataclass
class Resumed:
    """A checkpoint read for a resume: the loaded ``tree`` (``tree["state"]`` the state, beside
    the problem's other entries), its metadata and the steps it had done."""

    tree: dict[str, Any]
    meta: dict[str, Any]
    start: int


def resume(ckpt: Path, template: dict[str, Any], guard: Guard, *, n_steps: int,
           saved_options: Callable[[dict[str, Any]], Any], options: Any,
           echo: Callable[[str], None], place: Callable[[Any], Any]) -> Resumed:
    """Read ``ckpt`` into ``template`` (``{"state": host state, ...}``; the guard's anchor, a
    second state, is added when the checkpoint has one) for a resume of a run planned for
    ``n_steps``, after checking that it is this run's: ``saved_options(metadata)`` (which may
    itself refuse, :class:`CheckpointError`) must equal ``options``
    (:func:`nqs.guard.check_fingerprint`; one line naming the first difference). The state and
    anchor must be finite (parameters, optimizer state) and the steps done within ``n_steps``.
    Restores the guard (its anchor placed by ``place``, e.g. on the devices)."""
    saved = load_checkpoint_metadata(ckpt)
    check_fingerprint(ckpt, saved_options(saved), options, echo)
    if "guard" in saved:  # written with the guard's state and anchor
        tree, saved = load_checkpoint(ckpt, template | {"anchor": template["state"]})
    elif set(template) == {"state"}:  # a discrete checkpoint without the guard: the bare state
        state, saved = load_checkpoint(ckpt, template["state"])
        tree = {"state": state}
    else:
        tree, saved = load_checkpoint(ckpt, template)
    anchor = tree.get("anchor", tree["state"])
    for part in (tree["state"], anchor):
        require_finite(part.params, ckpt, "parameters")
        require_finite(part.opt_state, ckpt, "optimizer state")
    start = int(tree["step"]) if "step" in tree else int(tree["state"].step)
    if start > n_steps:
        raise CheckpointError(
            f"checkpoint {ckpt} is at step {start}, past --steps {n_steps}: resume with "
            f"--steps {start} or more (or start a new run)"
        )
    guard.restore(saved)
    guard.anchor = place(anchor)
    echo(f"resuming from step {start} ({ckpt})")
    planned = saved.get("n_steps_planned")
    if planned is not None and planned != n_steps:
        # optimizer and sampler state are restored exactly, but a learning-rate schedule
        # that depends on the run length (cosine) now takes other values from here on
        echo(f"note: the run was planned for {planned} steps and now runs to {n_steps}; "
             "a learning-rate schedule over the run length (e.g. cosine) changes from here")
    return Resumed(tree, saved, start)


def resume_run(ckpt: Path, template: dict[str, Any], shardings: Any, guard: Guard, *,
               n_steps: int, meta: dict[str, Any], echo: Callable[[str], None],
               legacy: Iterable[str] = ()) -> Resumed:
    """:func:`resume` of a run whose checkpoints record ``meta`` (``seed``, ``dtype`` and the
    ``fingerprint``; ``legacy``: see :func:`run_options`): ``ckpt`` is read into the host copy
    of ``template`` (``{"state": state, ...}``, checkpoints hold whole host arrays, so they load
    on any number of devices), and the state and the guard's anchor are placed on
    ``shardings`` (the state's)."""

    def place(tree: Any) -> Any:
        return put(tree, shardings)

    resumed = resume(ckpt, gather(template), guard, n_steps=n_steps,
                     saved_options=run_options(ckpt, meta["seed"], meta["dtype"], legacy),
                     options=meta.get("fingerprint"), echo=echo, place=place)
    resumed.tree["state"] = place(resumed.tree["state"])
    return resumed


@dataclass
class RunEnv:
    """Where a run happens, the same for both drivers: on process 0 (``main``: it writes the
    files and shows progress) or another, its messages (``echo``), devices (``mesh``), output
    directory (``out``; None: no files) and whether progress is shown."""

    main: bool
    echo: Callable[[str], None]
    mesh: Mesh
    out: Path | None
    progress: bool

    @classmethod
    def of(cls, out_dir: str | Path | None, echo: Callable[[str], None] | None,
           mesh: Mesh | None, progress: bool | None, make_out_dir: bool = True) -> RunEnv:
        """The run's surroundings from a driver's arguments (defaults: messages to stderr,
        every device of every process, progress on process 0); ``make_out_dir``: create the
        output directory now (else :meth:`make_out_dir` later)."""
        main = is_main_process()
        env = cls(main, process_echo(echo), make_mesh() if mesh is None else mesh,
                  Path(out_dir) if out_dir is not None else None,
                  (True if progress is None else bool(progress)) and main)
        if make_out_dir:
            env.make_out_dir()
        return env

    def checkpoint_path(self, resume: bool) -> Path | None:
        """The checkpoint the run writes (None without an output directory); with ``resume``
        the one it reads, refused (:class:`CheckpointError`) when there is none."""
        if resume:
            return checkpoint_to_resume(self.out)
        return None if self.out is None else self.out / CHECKPOINT_NAME

    def make_out_dir(self) -> None:
        """Create the output directory (process 0)."""
        if self.out is not None and self.main:
            self.out.mkdir(parents=True, exist_ok=True)


def check_final_energy(energy: float, hint: str) -> None:
    """Raise :class:`RunDiverged` (one line, ending with ``hint``) for a final energy that is
    not finite."""
    if not np.isfinite(energy):
        raise RunDiverged(f"the final energy is not finite ({energy}); the parameters "
                          f"diverged: {hint}")


@dataclass(kw_only=True)
class RunResult:
    """What both drivers return (their results add the problem's fields): the final energy
    estimate, its history and timings, the run's size and devices. ``summary()`` gives the
    fields of ``result.json``, the names in :attr:`SUMMARY` in that order."""

    SUMMARY: ClassVar[tuple[str, ...]] = ()
    PLOT_TITLE: ClassVar[str] = "VMC convergence"

    energy: float
    energy_error: float
    variance: float
    n_parameters: int
    steps: int
    wall_time_s: float
    time_per_step_s: float
    history: list[dict] = field(repr=False)
    params: Any = field(default=None, repr=False)
    dtype: str = "float64"  # network precision (nqs.precision)
    n_devices: int = 1
    n_processes: int = 1
    chunk_size: int | None = None
    peak_memory_bytes: int | None = None
    peak_memory_source: str | None = None
    steps_planned: int | None = None
    time_limit_s: float | None = None
    stopped_on_plateau: bool = False  # the energy stopped falling (nqs.plateau)

    @property
    def stopped_by_time_limit(self) -> bool:
        """Whether the optimization stopped at ``time_limit_s`` before ``steps_planned``."""
        return (self.steps_planned is not None and self.steps < self.steps_planned
                and not self.stopped_on_plateau)

    @property
    def reference(self) -> float | None:
        """The energy to compare with (exact or tabulated), or None."""
        return None

    def summary(self) -> dict:
        """JSON-able summary (the fields of ``result.json``)."""
        return {name: getattr(self, name) for name in self.SUMMARY}

    def plot(self, path: str | Path | None = None, title: str | None = None):  # noqa: ANN201
        """Energy vs step with the reference as a line; saved to ``path`` if given."""
        from nqs.plotting import plot_convergence

        return plot_convergence([r for r in self.history if "step" in r], self.reference, path,
                                self.PLOT_TITLE if title is None else title)
