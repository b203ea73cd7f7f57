"""The plateau stop (:mod:`nqs.plateau`): the rule on energy sequences, and the step loop that
ends on it (checkpointed; a resumed run already on its plateau takes no step)."""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from nqs.errors import InputError
from nqs.guard import Guard
from nqs.loop import LoopIO, RunResult, StepOutcome, StepProblem, run_steps
from nqs.plateau import Plateau, accepted_energies
from nqs.progress import Progress


def test_flat_noise_stops_after_window_plus_patience() -> None:
    rule = Plateau(1e-3, window=5, patience=20)
    noise = np.random.default_rng(0).normal(0.0, 1e-4, 200)
    stops = [k for k in range(1, 201) if rule.reached(noise[:k])]
    assert stops[0] == 25  # the first block is the best; four more blocks cover 20 steps


def test_a_steady_descent_never_stops() -> None:
    """A fall of 2 tolerances per patience sets a new best within every patience window."""
    rule = Plateau(1e-3, window=5, patience=20)
    energies = -np.arange(400) * 2e-3 / 20
    assert not any(rule.reached(energies[:k]) for k in range(1, 401))


def test_descent_then_flat_stops_a_patience_after_the_last_fall() -> None:
    rule = Plateau(1e-3, window=5, patience=20)
    energies = np.concatenate([-np.linspace(0, 1, 50), np.full(100, -1.0)])
    first = next(k for k in range(1, 151) if rule.reached(energies[:k]))
    # the last block that fell by more than the tolerance ends at step 55 (its mean includes
    # the last descending step); the stop comes 20 steps later
    assert first == 75


def test_noise_larger_than_the_tolerance_only_delays() -> None:
    rng = np.random.default_rng(1)
    noisy = rng.normal(0.0, 1e-2, 2000)
    quiet = rng.normal(0.0, 1e-5, 2000)
    rule = Plateau(1e-3, window=5, patience=20)
    first = {name: next((k for k in range(1, 2001) if rule.reached(e[:k])), None)
             for name, e in (("noisy", noisy), ("quiet", quiet))}
    assert first["quiet"] == 25 and (first["noisy"] is None or first["noisy"] > 25)


def test_rejected_steps_are_left_out_and_bad_rules_refused() -> None:
    history = [{"step": 0, "energy": -1.0}, {"step": 1, "energy": 5.0, "rejected": True},
               {"note": "no step"}, {"step": 2, "energy": -1.5}]
    assert accepted_energies(history) == [-1.0, -1.5]
    for bad in (dict(tolerance=0.0), dict(tolerance=math.nan), dict(tolerance=1e-3, window=0),
                dict(tolerance=1e-3, window=10, patience=5)):
        with pytest.raises(InputError):
            Plateau(**bad)


class Toy(NamedTuple):
    params: jnp.ndarray


def _flat_problem(saved: list[int]) -> StepProblem[Toy]:
    """Energies -1, -2, -3, then -3 for ever."""

    def step(k: int, state: Toy) -> StepOutcome[Toy]:
        return StepOutcome(state, Toy(state.params + 1.0),
                           {"energy": -float(min(k + 1, 3)), "energy_error": 0.1})

    return StepProblem(step, lambda after, back: back, lambda state, k: saved.append(k))


def _io(history: list[dict], messages: list[str], n_steps: int) -> LoopIO:
    return LoopIO(history, None, Progress(n_steps, 0, enabled=False), messages.append,
                  time.perf_counter())


def test_the_loop_stops_on_the_plateau_and_a_resume_takes_no_step() -> None:
    rule = Plateau(0.5, window=1, patience=4)
    saved: list[int] = []
    messages: list[str] = []
    history: list[dict] = []
    steps = run_steps(_flat_problem(saved), Toy(jnp.asarray(0.0)), 0, 100,
                      guard=Guard(None, 0.5, 3), io=_io(history, messages, 100),
                      checkpoint_every=1000, plateau=rule)
    # the best (-3) comes at step 2; four flat steps later (steps 3..6) the run ends
    assert steps.done == 7 and steps.on_plateau and saved == [7]
    assert "plateau" in messages[-1] and "after step 7 of 100" in messages[-1]
    again = run_steps(_flat_problem(saved), steps.state, 7, 100, guard=Guard(None, 0.5, 3),
                      io=_io(history, messages, 100), checkpoint_every=1000, plateau=rule)
    assert again.done == 7 and again.on_plateau and len(history) == 7
    # without the rule every step runs
    full = run_steps(_flat_problem([]), Toy(jnp.asarray(0.0)), 0, 20,
                     guard=Guard(None, 0.5, 3), io=_io([], [], 20), checkpoint_every=1000)
    assert full.done == 20 and not full.on_plateau


def test_a_plateau_stop_is_not_a_time_limit() -> None:
    class Result(RunResult):
        SUMMARY = ("stopped_by_time_limit", "stopped_on_plateau")

    base = dict(energy=-1.0, energy_error=0.1, variance=0.2, n_parameters=3, steps=2,
                wall_time_s=1.0, time_per_step_s=0.5, history=[], steps_planned=4)
    assert Result(**base).summary() == {"stopped_by_time_limit": True,
                                        "stopped_on_plateau": False}
    assert Result(**base, stopped_on_plateau=True).summary() == {
        "stopped_by_time_limit": False, "stopped_on_plateau": True}
