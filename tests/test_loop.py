"""The step loop both drivers share (:mod:`nqs.loop`) on a toy problem: no network, no sampler,
so what is tested is the loop itself (records, the guard's rejections and update scaling,
checkpoints, the time limit, the stop after too many rejections, the shared result base)."""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import jax.numpy as jnp
import pytest

from nqs.errors import RunDiverged
from nqs.guard import Guard
from nqs.loop import LoopIO, RunResult, StepOutcome, StepProblem, run_steps
from nqs.progress import Progress


class Toy(NamedTuple):
    params: jnp.ndarray


def _problem(bad_steps: set[int], saved: list[tuple[float, int]]) -> StepProblem[Toy]:
    """Each step adds 1 to the parameter; its energy is -k, NaN at ``bad_steps``."""

    def step(k: int, state: Toy) -> StepOutcome[Toy]:
        energy = math.nan if k in bad_steps else -float(k)
        return StepOutcome(state, Toy(state.params + 1.0), {"energy": energy,
                                                             "energy_error": 0.1})

    def checkpoint(state: Toy, k: int) -> None:
        saved.append((float(state.params), k))

    return StepProblem(step, lambda after, back: back, checkpoint)


def _io(n_steps: int, messages: list[str]) -> LoopIO:
    return LoopIO([], None, Progress(n_steps, 0, enabled=False), messages.append,
                  time.perf_counter())


def test_rejection_goes_back_and_scales_later_updates() -> None:
    saved: list[tuple[float, int]] = []
    messages: list[str] = []
    io = _io(5, messages)
    guard = Guard(None, 0.5, 3)
    steps = run_steps(_problem({2}, saved), Toy(jnp.asarray(0.0)), 0, 5, guard=guard, io=io,
                      checkpoint_every=2)
    assert [r["step"] for r in io.history] == [0, 1, 2, 3, 4]
    assert [r.get("rejected", False) for r in io.history] == [False, False, True, False, False]
    assert io.history[2]["lr_scale"] == 0.5 and "rejected" in messages[0]
    # step 2's NaN energy condemns the parameters it was measured at: back to 1 (the anchor);
    # steps 3 and 4 then move by half an update each
    assert float(steps.state.params) == pytest.approx(2.0)
    assert [k for _, k in saved] == [2, 4, 5] and steps.done == 5
    assert set(io.history[0]) == {"step", "energy", "energy_error", "step_time_s",
                                  "wall_time_s"}


def test_time_limit_and_divergence() -> None:
    saved: list[tuple[float, int]] = []
    messages: list[str] = []
    steps = run_steps(_problem(set(), saved), Toy(jnp.asarray(0.0)), 0, 5,
                      guard=Guard(None, 0.5, 3), io=_io(5, messages), checkpoint_every=100,
                      time_limit=1e-9)
    assert steps.done == 1 and saved == [(1.0, 1)] and "time limit" in messages[-1]
    with pytest.raises(RunDiverged, match="3 consecutive steps rejected"):
        run_steps(_problem(set(range(10)), []), Toy(jnp.asarray(0.0)), 0, 10,
                  guard=Guard(None, 0.5, 3, hint="lower --lr"), io=_io(10, []),
                  checkpoint_every=100)


def test_result_summary_follows_its_field_list() -> None:
    class Result(RunResult):
        SUMMARY = ("energy", "steps", "stopped_by_time_limit")

    r = Result(energy=-1.0, energy_error=0.1, variance=0.2, n_parameters=3, steps=2,
               wall_time_s=1.0, time_per_step_s=0.5, history=[], steps_planned=4)
    assert r.summary() == {"energy": -1.0, "steps": 2, "stopped_by_time_limit": True}


def test_run_options_refuse_seed_dtype_and_read_the_fingerprint(tmp_path) -> None:
    """Both drivers read a checkpoint's options through ``run_options``: another seed or dtype
    is refused (one line); the fingerprint is ``metadata["fingerprint"]``, or, for an older
    real-space checkpoint, the named options at the metadata's top level."""
    from nqs.errors import CheckpointError
    from nqs.guard import check_fingerprint
    from nqs.loop import run_options

    ckpt = tmp_path / "checkpoint.msgpack"
    now = {"n_walkers": 16, "learning_rate": 0.01}
    read = run_options(ckpt, 3, "float64", legacy=now)
    new = {"seed": 3, "dtype": "float64", "fingerprint": now | {"learning_rate": 0.02}}
    with pytest.raises(CheckpointError, match="learning_rate was 0.02, now 0.01") as err:
        check_fingerprint(ckpt, read(new), now)
    assert len(str(err.value).splitlines()) == 1
    assert read({"seed": 3, "n_walkers": 16, "learning_rate": 0.01, "step": 4}) == now  # older
    with pytest.raises(CheckpointError, match="seed 4, not 3"):
        read(new | {"seed": 4})
    with pytest.raises(CheckpointError, match="float32, not float64"):
        read(new | {"dtype": "float32"})
    assert run_options(ckpt, 3, "float64")({"seed": 3}) is None  # a discrete one without
