"""The VMC loop: the impure shell around the pure step (logs, checkpoints, progress, resume).

    result = run_vmc(ansatz, operator, sampler, optimizer, n_steps=300, seed=0, out_dir="runs/x")

Each step appends one JSON line to ``out_dir/log.jsonl`` (flushed); checkpoints are written
atomically every ``checkpoint_every`` steps and at the end; ``resume=True`` continues from the
last checkpoint and gives the same parameters as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from nqs.ansatz import Ansatz, n_parameters
from nqs.errors import CheckpointError
from nqs.io import JsonlLogger, load_checkpoint, read_jsonl, save_checkpoint
from nqs.operator import DiscreteOperator
from nqs.optim.optimizer import Optimizer
from nqs.sampling.base import Sampler
from nqs.vmc import VMCState, make_energy_evaluator, make_vmc

CHECKPOINT_NAME = "checkpoint.msgpack"
LOG_NAME = "log.jsonl"


@dataclass
class VMCResult:
    """Outcome of a run: final energy estimate (Hartree or model units), history, timings."""

    energy: float
    energy_error: float
    variance: float
    n_parameters: int
    n_samples: int
    steps: int
    wall_time_s: float
    time_per_step_s: float
    history: list[dict] = field(repr=False)
    exact_energy: float | None = None
    params: Any = field(default=None, repr=False)
    exact_sampling: bool = False

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

    def plot(self, path: str | Path | None = None, title: str = "VMC convergence"):  # noqa: ANN201
        """Energy vs step with the exact value as a line; saved to ``path`` if given."""
        from nqs.plotting import plot_convergence

        return plot_convergence(self.history, self.exact_energy, path, title)

    def summary(self) -> dict:
        """JSON-able summary (the fields of ``result.json``)."""
        return {
            "energy": self.energy,
            "energy_error": self.energy_error,
            "variance": self.variance,
            "exact_energy": self.exact_energy,
            "relative_error": self.relative_error,
            "n_parameters": self.n_parameters,
            "n_samples": self.n_samples,
            "steps": self.steps,
            "wall_time_s": self.wall_time_s,
            "time_per_step_s": self.time_per_step_s,
            "exact_sampling": self.exact_sampling,
        }


def run_vmc(
    ansatz: Ansatz,
    operator: DiscreteOperator,
    sampler: Sampler,
    optimizer: Optimizer,
    n_steps: int,
    *,
    seed: int = 0,
    out_dir: str | Path | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    exact_energy: float | None = None,
    n_eval_batches: int = 4,
    chunk_size: int | None = None,
    dedupe: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
) -> VMCResult:
    """Optimize ``ansatz`` for ``operator`` by VMC for ``n_steps`` steps, then evaluate.

    Args:
      n_eval_batches: sampler calls with the final parameters for the final energy (1 if exact);
        0 skips the evaluation and reports the last step's estimate.
      chunk_size: evaluate samples in chunks of this size (bounds memory).
      dedupe: evaluate each distinct Monte Carlo configuration once (molecules).
      progress: show a progress line (default: only when stderr is a terminal).
      echo: where messages (rejected steps, resume) go; default stderr.
    """
    echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    progress = sys.stderr.isatty() if progress is None else progress
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    init, step = make_vmc(ansatz, operator, sampler, optimizer, chunk_size, dedupe)
    if not getattr(step, "is_host_step", False):
        step = jax.jit(step)
    state = init(jax.random.PRNGKey(seed))
    meta = {"seed": seed, "n_steps_planned": n_steps}

    start = 0
    history: list[dict] = []
    if resume:
        if out is None:
            raise CheckpointError("--resume needs an output directory holding a checkpoint")
        ckpt = out / CHECKPOINT_NAME
        if not ckpt.exists():
            raise CheckpointError(f"no checkpoint to resume from: {ckpt} does not exist")
        state, saved = load_checkpoint(ckpt, state)
        if saved.get("seed") != seed:
            raise CheckpointError(
                f"checkpoint {ckpt} was written with seed {saved.get('seed')}, not {seed}"
            )
        start = int(state.step)
        echo(f"resuming from step {start} ({ckpt})")
    logger = None
    if out is not None:
        logger = JsonlLogger(out / LOG_NAME, truncate_after_step=start if resume else 0)
        if resume:
            history = read_jsonl(out / LOG_NAME)

    t_run = time.perf_counter()
    t_steps = 0.0
    for k in range(start, n_steps):
        t0 = time.perf_counter()
        state, info = step(state)
        info = jax.device_get(info)
        dt = time.perf_counter() - t0
        if k > start:  # the first step includes compilation
            t_steps += dt
        record = _record(k, info, dt, time.perf_counter() - t_run)
        if not bool(info.accepted):
            record["rejected"] = True
            echo(f"step {k}: non-finite energy or gradient; reverted to the last good parameters")
        history.append(record)
        if logger is not None:
            logger.append(record)
            if (k + 1) % checkpoint_every == 0 or k + 1 == n_steps:
                save_checkpoint(out / CHECKPOINT_NAME, state, meta | {"step": k + 1})
        if progress:
            _progress(k + 1, n_steps, record)
    if progress:
        print(file=sys.stderr)

    if n_eval_batches > 0:
        energy, error, variance = _final_energy(
            ansatz, operator, sampler, state, n_eval_batches, chunk_size
        )
    else:  # no separate evaluation: the last step's estimate (parameters before its update)
        last = history[-1] if history else {"energy": np.nan, "energy_error": np.nan,
                                            "variance": np.nan}
        energy, error, variance = last["energy"], last["energy_error"], last["variance"]
    n_timed = max(n_steps - start - 1, 1)
    n_samples = int(getattr(sampler, "n_samples", 0) or 0) or _n_states(operator)
    return VMCResult(
        energy=energy,
        energy_error=error,
        variance=variance,
        n_parameters=n_parameters(state.params),
        n_samples=n_samples,
        steps=n_steps,
        wall_time_s=time.perf_counter() - t_run,
        time_per_step_s=t_steps / n_timed,
        history=history,
        exact_energy=exact_energy,
        params=state.params,
        exact_sampling=bool(getattr(sampler, "is_exact", False)),
    )


def _final_energy(
    ansatz: Ansatz,
    operator: DiscreteOperator,
    sampler: Sampler,
    state: VMCState,
    n_batches: int,
    chunk_size: int | None,
) -> tuple[float, float, float]:
    """Energy of the final parameters from fresh samples (n_batches sampler calls)."""
    from nqs.stats import statistics

    evaluate = jax.jit(make_energy_evaluator(ansatz, operator, sampler, chunk_size))
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
        e_locs.append(np.asarray(e_loc))
        batch_stats.append(stats)
    if n_batches > 1 and getattr(sampler, "power", 1.0) != 1.0:
        # importance-weighted draws (|psi|^(2q) chains): each batch's weighted estimate is
        # self-normalised, so average the batch estimates (independent errors combined)
        means = np.array([float(np.real(s.mean)) for s in batch_stats])
        errors = np.array([float(s.error_of_mean) for s in batch_stats])
        variances = np.array([float(s.variance) for s in batch_stats])
        return (float(means.mean()), float(np.sqrt(np.sum(errors**2)) / n_batches),
                float(variances.mean()))
    if n_batches > 1:
        e_all = np.concatenate(e_locs)
        n_chains = int(getattr(sampler, "n_chains", 1))
        stats = statistics(e_all, np.full(len(e_all), 1.0 / len(e_all)), n_chains)
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


def _record(step: int, info: Any, dt: float, wall: float) -> dict:
    return {
        "step": step,
        "energy": float(info.energy),
        "energy_imag": float(info.energy_imag),
        "energy_error": float(info.energy_error),
        "variance": float(info.variance),
        "tau_corr": float(info.tau_corr),
        "r_hat": float(info.r_hat),
        "acceptance": float(info.acceptance),
        "grad_norm": float(info.grad_norm),
        "step_time_s": dt,
        "wall_time_s": wall,
    }


def _progress(done: int, total: int, record: dict) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    bar = "#" * filled + "-" * (width - filled)
    print(
        f"\r[{bar}] {done}/{total}  E = {record['energy']:.6f} +- {record['energy_error']:.1e}",
        end="",
        file=sys.stderr,
        flush=True,
    )
