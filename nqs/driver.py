"""The VMC loop: the impure shell around the pure step (logs, checkpoints, progress, resume).

    result = run_vmc(ansatz, operator, sampler, optimizer, n_steps=300, seed=0, out_dir="runs/x")

Each step appends one JSON line to ``out_dir/log.jsonl`` (flushed); checkpoints are written
atomically every ``checkpoint_every`` steps and at the end; ``resume=True`` continues from the
last checkpoint and gives the same parameters as an uninterrupted run with the same seed.

The steps run in the loop both drivers share (:func:`nqs.loop.run_steps`, with
:class:`nqs.guard.Guard`; a resume through :func:`nqs.loop.resume`). Guards (the impure
shell's, around the pure step):

* **fingerprint**: the options that change the trajectory (model, sizes, learning rate, ...)
  are stored in the checkpoint and must match on resume (:class:`CheckpointError` otherwise);
* **recovery**: a step whose energy is not finite or jumps above the last accepted energy by
  more than ``jump_sigmas`` combined error bars (plus 1 % of |E|) is rejected: the parameters,
  optimizer and sampler state go back to those of the last accepted energy and the learning
  rate is scaled by ``lr_factor`` (an interpolation of the step's update, for every optimizer);
  ``max_rejections`` consecutive rejections stop the run with :class:`RunDiverged`;
* **signals**: SIGINT / SIGTERM finish the current step, write a checkpoint and raise
  :class:`nqs.interrupt.RunInterrupted`;
* **time limit**: ``time_limit`` seconds of optimization steps in this call: the step that
  passes it is the last, it is checkpointed, the final evaluation follows and the result records
  ``stopped_by_time_limit``; ``resume=True`` continues the run;
* **plateau**: with a :class:`nqs.plateau.Plateau`, the step after which the accepted energies
  have stopped falling is the last in the same way (``stopped_on_plateau``).

Progress (:class:`nqs.progress.Progress`): a tqdm bar on a terminal or in Jupyter, plain lines
in a log file, with a line for the compilation and one for the final evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import jax
import numpy as np

from nqs.ansatz import Ansatz, Params, n_parameters
from nqs.errors import InputError
from nqs.guard import Guard, check_time_limit
from nqs.io import (
    load_checkpoint,
    load_checkpoint_entries,
    load_checkpoint_metadata,
    require_finite,
    to_jsonable,
)
from nqs.loop import (
    CHECKPOINT_NAME,
    LoopIO,
    RunEnv,
    RunResult,
    StepOutcome,
    StepProblem,
    Steps,
    check_final_energy,
    checkpoint_to_resume,
    open_log,
    resume_run,
    run_steps,
    write_checkpoint,
)
from nqs.operator import DiscreteOperator
from nqs.optim.optimizer import Optimizer
from nqs.parallel import (
    Mesh,
    auto_chunk,
    check_divisible,
    gather,
    put,
    replicated,
    run_record,
    tree_shardings,
    without_global_mesh,
)
from nqs.plateau import Plateau
from nqs.precision import ansatz_dtype
from nqs.progress import Progress
from nqs.sampling.base import Sampler
from nqs.sampling.exact import ExactSampler
from nqs.state import VariationalState, make_observer
from nqs.vmc import VMCState, make_energy_evaluator, make_vmc, per_sample_functions

#: Monte Carlo runs on spaces up to this many configurations end with an exact final energy
#: (the 4x4 Heisenberg model's 12870, a molecule's 1e5 determinants) ...
EXACT_FINAL_MAX_STATES = 200_000
#: ... when H has at most this many nonzero elements (16 bytes each: 320 MB)
EXACT_FINAL_MAX_ELEMENTS = 20_000_000
#: Past that, a sampler of distinct draws (autoregressive) that draws from |psi|^2 gives the
#: final energy from tempered draws with this power, reweighted exactly: a state fitted to part
#: of a selected space has a long tail of small amplitudes with large local energies that plain
#: draws rarely reach (H2O / 6-31G frozen core, 2.45e5 determinants: scatter 0.02 against
#: 0.4 mHa at twice the cost; experiments/choo_2020/results/tempered_estimates_*)
FINAL_SAMPLING_POWER = 0.5


@dataclass(kw_only=True)
class VMCResult(RunResult):
    """Outcome of a run: final energy estimate (Hartree or model units), history, timings."""

    SUMMARY: ClassVar[tuple[str, ...]] = (
        "energy", "energy_error", "variance", "exact_energy", "relative_error", "n_parameters",
        "n_samples", "steps", "steps_planned", "time_limit_s", "stopped_by_time_limit",
        "stopped_on_plateau", "wall_time_s", "time_per_step_s", "exact_sampling", "n_devices",
        "n_processes", "chunk_size", "peak_memory_bytes", "peak_memory_source", "dtype",
        "final_exact_sum")

    n_samples: int
    exact_energy: float | None = None
    exact_sampling: bool = False
    final_exact_sum: bool = False
    ansatz: Any = field(default=None, repr=False)
    sampler: Any = field(default=None, repr=False)
    sampler_state: Any = field(default=None, repr=False)
    marshall_sublattice: Any = field(default=None, repr=False)

    @property
    def state(self) -> VariationalState:
        """The final state: ansatz, final parameters, sampler and its chains
        (:class:`nqs.state.VariationalState`; ``result.state.expect(operator)``)."""
        if self.ansatz is None or self.sampler is None:
            raise ValueError("this result holds no ansatz / sampler (built by hand)")
        return VariationalState(self.ansatz, self.params, self.sampler, self.sampler_state,
                                chunk_size=self.chunk_size,
                                marshall_sublattice=self.marshall_sublattice)

    @property
    def reference(self) -> float | None:
        """The exact energy, or None."""
        return self.exact_energy

    @property
    def relative_error(self) -> float | None:
        """|E - E_exact| / |E_exact|, or None without an exact value."""
        if self.exact_energy is None:
            return None
        return abs(self.energy - self.exact_energy) / abs(self.exact_energy)

    def to_pandas(self):  # noqa: ANN201  (pandas is optional)
        """The per-step history as a ``pandas.DataFrame`` (one row per step)."""
        import pandas as pd

        return pd.DataFrame(self.history)


@without_global_mesh
def run_vmc(
    ansatz: Ansatz, operator: DiscreteOperator, sampler: Sampler, optimizer: Optimizer,
    n_steps: int, *, seed: int = 0, out_dir: str | Path | None = None,
    checkpoint_every: int = 50, resume: bool = False, exact_energy: float | None = None,
    n_eval_batches: int = 4, chunk_size: int | str | None = None, dedupe: bool = False,
    packed: bool = True, progress: bool | None = None,
    echo: Callable[[str], None] | None = None, mesh: Mesh | None = None,
    initial_params: Params | None = None, fingerprint: dict[str, Any] | None = None,
    callback: Callable[[dict], None] | None = None, jump_sigmas: float | None = 10.0,
    lr_factor: float = 0.3, max_rejections: int = 10, time_limit: float | None = None,
    observables: dict[str, Any] | None = None, observe_every: int = 10,
    connected_rows: int = 0, plateau: Plateau | None = None,
    exact_final_max: int = EXACT_FINAL_MAX_STATES,
) -> VMCResult:
    """Optimize ``ansatz`` for ``operator`` by VMC for ``n_steps`` steps, then evaluate.

    Args:
      n_eval_batches: sampler calls with the final parameters for the final energy (1 if exact);
        0 skips the evaluation and reports the last step's estimate.
      exact_final_max: a Monte Carlo run's final energy is summed exactly over the space, with
        no sampling error (``final_exact_sum`` in the result), when the space has at most this
        many configurations and H at most ``EXACT_FINAL_MAX_ELEMENTS`` nonzero elements
        (:func:`exact_final_applies`); 0: always sampled.
      chunk_size: evaluate samples in chunks of this many rows per device (bounds memory);
        ``"auto"`` picks one from the device memory and XLA's estimate of the memory per sample
        (:func:`nqs.parallel.auto_chunk_size`); None: no chunking.
      dedupe: evaluate each distinct Monte Carlo configuration once (molecules).
      packed: with ``dedupe`` on one device, the local energies of the steps and of the final
        evaluation come from the packed batch path
        (:func:`nqs.packed_local_energy.make_packed_local_energy`: only the nonzero connections
        of all distinct configurations); the same values to rounding, faster. False keeps the
        per-sample path; on several devices (a mesh) the per-sample path is always used.
      progress: report progress on stdout (default: True on process 0; module docstring).
      echo: where messages (rejected steps, resume) go; default stderr.
      mesh: devices the Markov chains and samples are split over (default: every device of
        every process, :func:`nqs.parallel.make_mesh`). The number of chains must be divisible
        by the number of devices. With several processes only process 0 writes files.
      initial_params: start from these parameters instead of ``ansatz.init`` (a resumed run
        takes the checkpoint's).
      fingerprint: JSON-able options that change the trajectory (model, sizes, learning rate);
        stored in the checkpoint, and a resume with other values is refused.
      callback: called with each step's log record after it is written (and checkpointed).
      jump_sigmas, lr_factor, max_rejections: the recovery guard (module docstring); None
        turns the energy-jump test off (non-finite steps are still rejected).
      observables: ``{name: operator}`` measured every ``observe_every`` steps and after the
        last one (also the last before the time limit), on a separate draw from the current
        chains (:func:`nqs.state.make_observer`; the trajectory is the same as without them);
        those steps' records get ``"observables": {name: {"mean", "error", ..., "r_hat"}}``.
        Operators are bound to the sampler's space before the first step (InputError for one
        on another space).
      time_limit: wall seconds for the optimization steps of this call (None: no limit; module
        docstring): the result records ``stopped_by_time_limit``, ``resume`` continues.
      plateau: stop after the step at which the accepted energies stop falling
        (:class:`nqs.plateau.Plateau`; None: every step); the result records
        ``stopped_on_plateau``.
      connected_rows: K > 0, with a sampler of distinct configurations (autoregressive) and
        SR: the K determinants H connects to each step's draws, of largest first-order
        amplitude, join the draws as rows of SR with exact weights
        (:func:`nqs.vmc.make_vmc`), and the guard adapts SR's diagonal shift
        (Levenberg-Marquardt, :class:`nqs.guard.Guard`): together they lift amplitudes the
        draws never see. Ignored by other samplers and optimizers.

    Raises:
      InputError: a time limit that is not a positive number of seconds; an operator that is
        not a DiscreteOperator (a NetKet one: convert it with
        ``hamiltonians.netket_interop.from_netket``).
      CheckpointError: nothing to resume, a corrupt checkpoint, or one of another run.
      RunDiverged: ``max_rejections`` consecutive rejected steps, or a non-finite final energy.
      RunInterrupted: SIGINT / SIGTERM (checkpointed after the current step).
    """
    _check_options(operator, max_rejections, lr_factor, time_limit)
    marshall = _marshall_sublattice(operator)
    observe = _observer(ansatz, operator, sampler, observables, observe_every, marshall)
    env = RunEnv.of(out_dir, echo, mesh, progress, make_out_dir=True)
    n_chains = _n_chains(sampler, env.mesh)
    state = _initial_state(ansatz, operator, sampler, optimizer, seed, initial_params, dedupe)
    chunk_size = _chunk_size(chunk_size, ansatz, operator, sampler, optimizer, state, env.mesh)
    step, state, shardings = _compiled_step(ansatz, operator, sampler, optimizer, state,
                                            chunk_size, dedupe, packed, env.mesh, n_chains,
                                            connected_rows)
    meta = _meta(seed, n_steps, ansatz_dtype(ansatz), fingerprint)
    guard = Guard(jump_sigmas, lr_factor, max_rejections,
                  adaptive_shift=bool(getattr(step, "takes_shift_scale", False)))
    state, start = (_resume(env, state, shardings, n_steps, meta, guard) if resume
                    else (state, 0))
    logger, history = open_log(env.out, env.main, resume, start)
    t_run = time.perf_counter()
    bar = Progress(n_steps, start, enabled=env.progress)
    problem = _discrete_problem(step, env.out, env.main, meta, guard, observe, observe_every)
    steps = run_steps(problem, state, start, n_steps, guard=guard,
                      io=LoopIO(history, logger, bar, env.echo, t_run, callback),
                      checkpoint_every=checkpoint_every, time_limit=time_limit,
                      plateau=plateau)
    unique = bool(getattr(sampler, "is_unique", False))
    exact_final = n_eval_batches > 0 and exact_final_applies(operator, sampler, exact_final_max)
    final = _final_estimate(ansatz, operator, ExactSampler(operator.hilbert) if exact_final
                            else final_sampler(sampler), steps.state, history, n_eval_batches,
                            chunk_size, env.mesh, packed and (dedupe or unique), bar)
    result = _result(ansatz, operator, sampler, steps, final, history, exact_energy, meta,
                     time_limit, t_run, marshall, env.mesh, chunk_size)
    result.final_exact_sum = exact_final or result.exact_sampling
    return result


def final_sampler(sampler: Sampler) -> Sampler:
    """The sampler of a run's sampled final energy: a sampler of distinct draws from
    ``|psi|^2`` (a ``power`` field of 1) tempered to ``FINAL_SAMPLING_POWER``; any other
    as it is."""
    if getattr(sampler, "is_unique", False) and getattr(sampler, "power", None) == 1.0:
        return replace(sampler, power=FINAL_SAMPLING_POWER)
    return sampler


def exact_final_applies(operator: DiscreteOperator, sampler: Sampler, max_states: int) -> bool:
    """Whether a run of ``sampler`` (not exact summation itself) can end with an exact final
    energy: the space the sampler draws from is ``operator.hilbert`` (a sampler over a sector
    of it could leave amplitudes elsewhere untrained), it has 1 to ``max_states``
    configurations on at most ``MAX_INT_KEY_SITES`` sites, and its states times the operator's
    connections per state are at most ``EXACT_FINAL_MAX_ELEMENTS``."""
    from nqs.exact import MAX_INT_KEY_SITES

    if max_states <= 0 or getattr(sampler, "is_exact", False):
        return False
    hilbert = operator.hilbert
    drawn_from = getattr(sampler, "hilbert", None)
    if drawn_from is not None and drawn_from != hilbert:
        return False
    n = _n_states(operator)
    if not 0 < n <= max_states or hilbert.n_sites > MAX_INT_KEY_SITES:
        return False
    x0 = hilbert.random_state(jax.random.PRNGKey(0), 1)
    _, mels = jax.eval_shape(jax.vmap(operator.flips), x0)
    return n * int(mels.shape[-1]) <= EXACT_FINAL_MAX_ELEMENTS


def _meta(seed: int, n_steps: int, dtype: str, fingerprint: dict[str, Any] | None
          ) -> dict[str, Any]:
    """The metadata of the run's checkpoints: seed, planned steps, dtype and fingerprint."""
    meta = {"seed": seed, "n_steps_planned": n_steps, "dtype": dtype}
    if fingerprint is not None:
        meta["fingerprint"] = to_jsonable(dict(fingerprint))
    return meta


def _check_options(operator: Any, max_rejections: int, lr_factor: float,
                   time_limit: float | None) -> None:
    """Refuse a bad guard setting (ValueError), time limit or operator (InputError)."""
    if not (isinstance(max_rejections, int) and max_rejections >= 1 and 0 < lr_factor <= 1):
        raise ValueError("max_rejections must be >= 1 and lr_factor in (0, 1]")
    check_time_limit(time_limit)
    check_operator(operator)


def _n_chains(sampler: Sampler, mesh: Mesh) -> int | None:
    """The sampler's Markov chains, checked to divide over ``mesh``; None for exact
    summation and exact draws (no chains)."""
    exact = bool(getattr(sampler, "is_exact", False))
    unique = bool(getattr(sampler, "is_unique", False))  # exact draws, no chains
    n_chains = None if exact or unique else int(sampler.n_chains)
    if n_chains is not None:
        check_divisible(n_chains, mesh, "the number of Markov chains")
    return n_chains


def _initial_state(ansatz: Ansatz, operator: DiscreteOperator, sampler: Sampler,
                   optimizer: Optimizer, seed: int, initial_params: Params | None,
                   dedupe: bool) -> VMCState:
    """The state of step 0 from ``seed`` (on the host), at ``initial_params`` when given."""
    key0 = jax.random.PRNGKey(seed)
    init, _ = make_vmc(ansatz, operator, sampler, optimizer, None, dedupe)
    state = jax.jit(init)(key0)  # one program, not the network op by op (~100 compilations)
    if initial_params is not None:  # e.g. fitted to CISD (nqs.models.ar_pretrain)
        state = state._replace(
            params=initial_params,
            opt_state=jax.jit(optimizer.transformation.init)(initial_params),
            sampler_state=sampler.init(jax.random.fold_in(key0, 1), ansatz, initial_params),
        )
    return state


def _chunk_size(chunk_size: int | str | None, ansatz: Ansatz, operator: DiscreteOperator,
                sampler: Sampler, optimizer: Optimizer, state: VMCState, mesh: Mesh
                ) -> int | None:
    """The chunk size to run with: ``"auto"`` sized to the device memory, else checked."""
    if chunk_size == "auto":
        return _auto_chunk(ansatz, operator, sampler, optimizer, state, mesh)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        _bad_chunk(chunk_size)
    return chunk_size


def _compiled_step(ansatz: Ansatz, operator: DiscreteOperator, sampler: Sampler,
                   optimizer: Optimizer, state: VMCState, chunk_size: int | None,
                   dedupe: bool, packed: bool, mesh: Mesh, n_chains: int | None,
                   connected_rows: int = 0
                   ) -> tuple[Callable[[VMCState], tuple[VMCState, Any]], VMCState, VMCState]:
    """``(step, state, shardings)``: the VMC step (jitted onto the state's shardings unless it
    is a host step), ``state`` placed on the devices and its shardings over ``mesh``."""
    _, step = make_vmc(ansatz, operator, sampler, optimizer, chunk_size, dedupe, mesh,
                       packed=packed, connected_rows=connected_rows)
    shardings = _state_shardings(state, mesh, n_chains)
    if not getattr(step, "is_host_step", False):
        step = jax.jit(step, out_shardings=(shardings, replicated(mesh)))
    return step, put(state, shardings), shardings


def _result(ansatz: Ansatz, operator: DiscreteOperator, sampler: Sampler,
            steps: Steps[VMCState], final: tuple[float, float, float], history: list[dict],
            exact_energy: float | None, meta: dict[str, Any], time_limit: float | None,
            t_run: float, marshall: np.ndarray | None, mesh: Mesh,
            chunk_size: int | None) -> VMCResult:
    """The run's result: the final estimate ``(energy, error, variance)``, the steps done and
    the run's sizes and devices."""
    state = steps.state
    energy, error, variance = final
    n_samples = int(getattr(sampler, "n_samples", 0) or 0) or _n_states(operator)
    return VMCResult(
        energy=energy,
        energy_error=error,
        variance=variance,
        n_parameters=n_parameters(state.params),
        n_samples=n_samples,
        steps=steps.done,
        wall_time_s=time.perf_counter() - t_run,
        time_per_step_s=steps.time_per_step,
        history=history,
        exact_energy=exact_energy,
        params=gather(state.params),
        exact_sampling=bool(getattr(sampler, "is_exact", False)),
        dtype=meta["dtype"],
        steps_planned=meta["n_steps_planned"],
        time_limit_s=None if time_limit is None else float(time_limit),
        stopped_on_plateau=steps.on_plateau,
        ansatz=ansatz,
        sampler=sampler,
        sampler_state=gather(state.sampler_state),
        marshall_sublattice=marshall,
        **run_record(mesh, chunk_size),
    )


def _observer(ansatz: Ansatz, operator: DiscreteOperator, sampler: Sampler,
              observables: dict[str, Any] | None, observe_every: int,
              marshall: np.ndarray | None) -> Callable[[Any, Any, jax.Array], dict] | None:
    """The measurement of ``observables`` (None without them), after checking
    ``observe_every``."""
    if not observables:
        return None
    if isinstance(observe_every, bool) or not isinstance(observe_every, int) \
            or observe_every < 1:
        raise InputError(f"observe_every must be a positive integer, got {observe_every!r}")
    hilbert = getattr(sampler, "hilbert", None) or operator.hilbert
    return make_observer(ansatz, sampler, dict(observables), hilbert,
                         marshall_sublattice=marshall)


def _final_estimate(ansatz: Ansatz, operator: DiscreteOperator, sampler: Sampler,
                    state: VMCState, history: list[dict], n_eval_batches: int,
                    chunk_size: int | None, mesh: Mesh, packed: bool, bar: Progress
                    ) -> tuple[float, float, float]:
    """``(energy, error, variance)`` of the final parameters from ``n_eval_batches`` sampler
    calls, or with none the last step's estimate (parameters before its update).
    Raises :class:`RunDiverged` for a non-finite energy."""
    if n_eval_batches > 0:
        if getattr(sampler, "is_exact", False):
            bar.phase(f"final evaluation (exact sum over the {_n_states(operator)} "
                      "configurations at the final parameters)")
        else:
            power = getattr(sampler, "power", 1.0)
            tempered = f", draws tempered to q = {power}" if power != 1.0 else ""
            bar.phase(f"final evaluation ({n_eval_batches} sampler call"
                      f"{'s' if n_eval_batches > 1 else ''} at the final parameters{tempered})")
        energy, error, variance = _final_energy(
            ansatz, operator, sampler, state, n_eval_batches, chunk_size, mesh, packed=packed)
    else:
        last = history[-1] if history else {"energy": np.nan, "energy_error": np.nan,
                                            "variance": np.nan}
        energy, error, variance = last["energy"], last["energy_error"], last["variance"]
    if n_eval_batches > 0 or history:
        check_final_energy(energy, "lower --lr (or raise --diag-shift)")
    return energy, error, variance


def check_operator(operator: Any) -> None:
    """Refuse (:class:`InputError`, one line) an operator that is not a
    :class:`nqs.operator.DiscreteOperator` (no ``flips``), e.g. a NetKet operator."""
    if callable(getattr(operator, "flips", None)) and hasattr(operator, "hilbert"):
        return
    hint = ("; convert a NetKet operator with hamiltonians.netket_interop.from_netket(op)"
            if type(operator).__module__.startswith("netket") else "")
    raise InputError(
        "run_vmc takes an nqs DiscreteOperator (a spin model, a PauliSum, a molecular "
        f"Hamiltonian), got {type(operator).__name__}{hint}"
    )


def _marshall_sublattice(operator: DiscreteOperator) -> np.ndarray | None:
    """The sublattice labels of a model written in the Marshall-rotated basis, else None."""
    if not getattr(operator, "marshall_sign", False):
        return None
    return np.asarray(operator.lattice.sublattice)


def _resume(env: RunEnv, state: VMCState, shardings: VMCState, n_steps: int,
            meta: dict[str, Any], guard: Guard) -> tuple[VMCState, int]:
    """The state of ``out/checkpoint.msgpack`` placed on ``shardings``, and its step, after
    :func:`nqs.loop.resume_run` has checked that it is intact, finite, within ``n_steps`` and
    written by this run (seed, dtype and fingerprint). Restores the guard's state."""
    resumed = resume_run(checkpoint_to_resume(env.out), {"state": state}, shardings, guard,
                         n_steps=n_steps, meta=meta, echo=env.echo)
    return resumed.tree["state"], resumed.start


def load_checkpoint_state(ckpt: str | Path, ansatz: Ansatz, operator: DiscreteOperator,
                          sampler: Sampler, optimizer: Any) -> tuple[VMCState, dict[str, Any]]:
    """``(VMCState, metadata)`` of the checkpoint ``ckpt`` of a run of ``ansatz`` on
    ``operator`` with ``sampler`` and ``optimizer`` (the structure it is read into: the same
    objects the run was built with), as a resume restores it, on the host. Raises
    :class:`CheckpointError` for a missing, corrupt or mismatched file or non-finite
    parameters."""
    ckpt = Path(ckpt)
    saved = load_checkpoint_metadata(ckpt)
    init, _ = make_vmc(ansatz, operator, sampler, optimizer, None, False)
    template = gather(jax.jit(init)(jax.random.PRNGKey(int(saved.get("seed", 0)))))
    if _nested(saved):
        tree, _ = load_checkpoint(ckpt, {"state": template, "anchor": template})
        state = tree["state"]
    else:
        state, _ = load_checkpoint(ckpt, template)
    require_finite(state.params, ckpt, "parameters")
    return state, saved


def load_checkpoint_params(ckpt: str | Path, ansatz: Ansatz, x0: jax.Array) -> Params:
    """Only the parameters of the checkpoint ``ckpt`` (a file, or a run directory holding
    ``checkpoint.msgpack``), read into the structure of ``ansatz`` (initialized at one
    configuration ``x0``); the optimizer, sampler and step are not read, so a run with another
    optimizer can start from them. Raises :class:`CheckpointError` (one line) for a missing or
    corrupt file, parameters of another ansatz or size, or non-finite parameters."""
    ckpt = Path(ckpt)
    if ckpt.is_dir():
        ckpt = ckpt / CHECKPOINT_NAME
    only_params = VMCState(jax.jit(ansatz.init)(jax.random.PRNGKey(0), x0), None, None, None,
                           None)
    if _nested(load_checkpoint_metadata(ckpt)):
        params = load_checkpoint_entries(ckpt, {"state": only_params})[0]["state"].params
    else:
        params = load_checkpoint_entries(ckpt, only_params)[0].params
    require_finite(params, ckpt, "parameters")
    return params


def _nested(saved: dict[str, Any]) -> bool:
    """Whether a checkpoint (its metadata ``saved``) holds the state under ``"state"`` beside
    the guard's anchor (current files) rather than at its root (files from before the guard)."""
    return "guard" in saved


def _discrete_problem(step: Callable[[VMCState], tuple[VMCState, Any]], out: Path | None,
                      main: bool, meta: dict[str, Any], guard: Guard,
                      observe: Callable[[Any, Any, jax.Array], dict] | None,
                      observe_every: int) -> StepProblem[VMCState]:
    """The discrete VMC step as the shared loop's problem (:mod:`nqs.loop`): the key lives in
    the state; a rejected step keeps the new key and step counter and takes the parameters,
    optimizer and sampler state of the state it goes back to; observables from a key derived
    from the state's (not consumed)."""

    takes_shift = getattr(step, "takes_shift_scale", False)

    def run_step(k: int, state: VMCState) -> StepOutcome[VMCState]:
        new, info = step(state, guard.shift_scale) if takes_shift else step(state)
        info = jax.device_get(info)
        return StepOutcome(state, new, _record(info), bool(info.accepted))

    def restore(after: VMCState, back: VMCState) -> VMCState:
        return after._replace(params=back.params, opt_state=back.opt_state,
                              sampler_state=back.sampler_state)

    def checkpoint(state: VMCState, k: int) -> None:
        anchor = guard.anchor if guard.anchor is not None else state
        tree = {"state": state, "anchor": anchor._replace(key=state.key, step=state.step)}
        write_checkpoint(out / CHECKPOINT_NAME, tree, meta, k, guard, main)

    def measure(state: VMCState) -> dict:
        key = jax.random.fold_in(gather(state.key), 104729)
        return observe(gather(state.params), gather(state.sampler_state), key)

    return StepProblem(
        run_step, restore, checkpoint if out is not None else None,
        out / CHECKPOINT_NAME if out is not None else None,
        measure if observe is not None else None, observe_every)


def _bad_chunk(chunk_size: Any) -> None:
    from nqs.errors import InputError

    raise InputError(f"chunk size must be a positive integer or 'auto', got {chunk_size!r}")


def _state_shardings(state: VMCState, mesh: Mesh, n_chains: int | None) -> VMCState:
    """Parameters, optimizer state, key and step replicated; the sampler's per-chain arrays
    (leading axis ``n_chains``) split over the devices."""
    rep = replicated(mesh)
    return VMCState(
        params=tree_shardings(state.params, mesh, None),
        opt_state=tree_shardings(state.opt_state, mesh, None),
        sampler_state=tree_shardings(state.sampler_state, mesh, n_chains),
        key=rep,
        step=rep,
    )


def _auto_chunk(ansatz: Ansatz, operator: DiscreteOperator, sampler: Sampler,
                optimizer: Optimizer, state: VMCState, mesh: Mesh) -> int | None:
    """Chunk size that fits the device memory (None when no chunking is needed)."""
    exact = bool(getattr(sampler, "is_exact", False))
    x0 = operator.hilbert.random_state(jax.random.PRNGKey(0), 1)[0]
    local_energy, _ = per_sample_functions(ansatz, operator, optimizer.needs_jacobian)
    n = _n_states(operator) if exact else int(getattr(sampler, "n_samples_total", 0)
                                              or sampler.n_samples)
    # exact summation splits the (padded) space over the devices like samples; a
    # log-derivative row: a few copies of 2 x n_parameters float64 numbers
    return auto_chunk(local_energy, state.params, x0, n, mesh,
                      row_bytes=4 * 8 * 2 * n_parameters(state.params))


def _final_energy(
    ansatz: Ansatz,
    operator: DiscreteOperator,
    sampler: Sampler,
    state: VMCState,
    n_batches: int,
    chunk_size: int | None,
    mesh: Mesh | None = None,
    packed: bool = False,
) -> tuple[float, float, float]:
    """Energy of the final parameters from fresh samples (n_batches sampler calls); ``packed``:
    molecular packed local energies (see :func:`nqs.vmc.make_energy_evaluator`)."""
    from nqs.stats import statistics

    evaluate = make_energy_evaluator(ansatz, operator, sampler, chunk_size, mesh, packed=packed)
    if not getattr(evaluate, "is_host_step", False):
        evaluate = jax.jit(evaluate)
    if getattr(sampler, "is_exact", False):
        n_batches = 1
    key = jax.random.fold_in(state.key, 7919)
    sampler_state = state.sampler_state
    e_locs = []
    batch_stats = []
    stats = None
    for b in range(n_batches):
        stats, sampler_state, e_loc = evaluate(
            state.params, sampler_state, jax.random.fold_in(key, b)
        )
        e_locs.append(np.asarray(gather(e_loc)))
        batch_stats.append(stats)
    if n_batches > 1 and (getattr(sampler, "power", 1.0) != 1.0
                          or getattr(sampler, "is_unique", False)):
        # importance-weighted draws (|psi|^(2q) chains): each batch's weighted estimate is
        # self-normalised; distinct draws with counts: each batch has its own draw count. So
        # average the batch estimates (independent errors combined).
        means = np.array([float(np.real(s.mean)) for s in batch_stats])
        errors = np.array([float(s.error_of_mean) for s in batch_stats])
        variances = np.array([float(s.variance) for s in batch_stats])
        return (float(means.mean()), float(np.sqrt(np.sum(errors**2)) / n_batches),
                float(variances.mean()))
    if n_batches > 1:
        e_all = np.concatenate(e_locs)
        n_chains = int(getattr(sampler, "n_chains", 1))
        stats = statistics(e_all, np.full(len(e_all), 1.0 / len(e_all)), n_chains)
    stats = gather(stats)
    return (
        float(np.real(stats.mean)),
        float(stats.error_of_mean),
        float(stats.variance),
    )


def _n_states(operator: DiscreteOperator) -> int:
    try:
        return int(operator.hilbert.n_states)
    except (AttributeError, OverflowError):
        return 0


def _record(info: Any) -> dict:
    """The log fields of a step's ``info`` (the loop adds the step and its times)."""
    record = {
        "energy": float(info.energy),
        "energy_imag": float(info.energy_imag),
        "energy_error": float(info.energy_error),
        "variance": float(info.variance),
        "tau_corr": float(info.tau_corr),
        "r_hat": float(info.r_hat),
        "acceptance": float(info.acceptance),
        "grad_norm": float(info.grad_norm),
    }
    if getattr(info, "n_unique", None) is not None:  # distinct-configuration samplers
        record["n_unique"] = int(info.n_unique)
        record["n_draws"] = int(info.n_draws)
    return record
