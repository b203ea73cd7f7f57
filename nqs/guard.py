"""What both drivers (:mod:`nqs.driver`, :mod:`nqs.walker_driver`) use to guard a run.

Rejected steps: :func:`tree_all_finite` tells whether new parameters are finite
(:func:`step_is_finite`: and the energy),
:func:`scale_update` shrinks the later updates after a rejection and :func:`copy_tree` keeps a
state to go back to when an optimizer donates its inputs (kfac-jax). Resume:
:func:`check_fingerprint` refuses a checkpoint written with other options and
:func:`check_time_limit` a time limit that is not a positive number of seconds.
:func:`failure_reason` names an exception in one line. :class:`Guard` judges each step of
the shared step loop (:mod:`nqs.loop`) and holds the recovery's state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nqs.errors import CheckpointError, InputError


@jax.jit
def tree_all_finite(tree: Any) -> jax.Array:
    """Whether every array of ``tree`` is finite (a 0-d bool array; True for no leaves)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def step_is_finite(energy: float, params: Any) -> bool:
    """Whether a step may be accepted: a finite energy and finite new parameters."""
    return math.isfinite(energy) and bool(tree_all_finite(params))


@jax.jit
def scale_update(new: Any, old: Any, scale: jax.Array) -> Any:
    """``old + scale * (new - old)`` leaf by leaf (in each leaf's dtype): the update from
    ``old`` to ``new`` scaled by ``scale``."""
    return jax.tree_util.tree_map(lambda a, b: b + (a - b) * scale.astype(a.dtype), new, old)


def copy_tree(tree: Any) -> Any:
    """Fresh device copies of the arrays of ``tree`` (kfac-jax donates the parameters and the
    optimizer state passed to its step, so a state to revert to must be a copy)."""
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), tree)


def check_fingerprint(ckpt: Path, saved: Any, now: Any,
                      echo: Callable[[str], None] | None = None) -> None:
    """Raise :class:`CheckpointError` naming the first option whose value differs between the
    checkpoint's fingerprint ``saved`` and this run's ``now`` (dicts of JSON-able values); a
    checkpoint without one (an older nqs) only gets a note through ``echo``."""
    if now is None:
        return
    if saved is None:  # written before fingerprints: nothing to compare
        if echo is not None:
            echo(f"note: checkpoint {ckpt} records no options (written by an older nqs); "
                 "resuming without checking that they match")
        return
    for name in sorted(set(saved) | set(now)):
        if saved.get(name) != now.get(name):
            raise CheckpointError(
                f"checkpoint {ckpt} belongs to a different run: {name} was "
                f"{saved.get(name)!r}, now {now.get(name)!r}; resume with the same options"
            )


def check_time_limit(time_limit: float | None) -> None:
    """Refuse (:class:`InputError`) a time limit that is not a positive, finite number of
    seconds (None: no limit)."""
    if time_limit is not None and not (time_limit > 0 and math.isfinite(time_limit)):
        raise InputError(f"the time limit must be a positive number of seconds, got {time_limit}")


def failure_reason(err: BaseException) -> str:
    """One line naming an exception: its type and the first line of its message."""
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass
class Guard:
    """The recovery guard of both drivers' step loop (:func:`nqs.loop.run_steps`): its
    settings and its state (stored in checkpoints for an exact resume).

    A step is rejected when it is not finite (energy, gradient or new parameters) or, with
    ``jump_sigmas``, when its energy rises above the last accepted one (``e_ref`` +-
    ``err_ref``) by more than ``jump_sigmas`` combined error bars plus 1 % of |E|, or moves
    either way by more than ``jump_sigmas`` of the last accepted error bars plus 1 % while
    its own error bar grew more than :data:`ERROR_GROWTH` times (:data:`RISE_ERROR_GROWTH`
    times when it rose) (plus 1 % of |E|): a state
    collapsing onto a few configurations whose local energies diverge (the plain RBM on the
    triangular XXZ model went from -3.447 +- 0.009 to -4.06 +- 0.73, then 63 +- 173, then
    -2e14 after 283 steps).
    ``lr_scale`` multiplies every later update (``lr_factor`` per rejection), ``rejections``
    counts consecutive rejections (``max_rejections`` stop the run; ``hint`` says what to
    change) and ``anchor`` is the state at which the last accepted energy was measured.

    ``adaptive_shift`` (Levenberg-Marquardt on SR's diagonal shift): a step is also rejected
    when its energy rises above the last accepted one by more than two combined error bars
    (no 1 % slack); a rejection multiplies ``shift_scale`` (the factor on the shift of the
    next updates) by 10 instead of scaling the learning rate, an accepted step divides it by
    10, down to 1 and up to ``MAX_SHIFT_SCALE``."""

    jump_sigmas: float | None
    lr_factor: float
    max_rejections: int
    hint: str = "lower --lr (or raise --diag-shift)"
    adaptive_shift: bool = False
    shift_scale: float = 1.0
    lr_scale: float = 1.0
    e_ref: float | None = None
    err_ref: float = 0.0
    rejections: int = 0
    anchor: Any = None

    def meta(self) -> dict[str, Any]:
        """The JSON-able state for a checkpoint's metadata."""
        return {"lr_scale": self.lr_scale, "e_ref": self.e_ref, "err_ref": self.err_ref,
                "rejections": self.rejections, "shift_scale": self.shift_scale}

    def restore(self, saved: dict[str, Any]) -> None:
        """Take the state of a checkpoint's metadata (absent: a fresh guard)."""
        g = saved.get("guard") or {}
        self.lr_scale = float(g.get("lr_scale", 1.0))
        self.e_ref = g.get("e_ref")
        self.err_ref = float(g.get("err_ref") or 0.0)
        self.rejections = int(g.get("rejections", 0))
        self.shift_scale = float(g.get("shift_scale", 1.0))

    def judge(self, energy: float, error: float | None, finite: bool) -> str | None:
        """None to accept a step with this energy +- error (``finite``: its energy, gradient
        and new parameters are finite), else the reason to reject it."""
        energy = float(energy)
        if not finite or not math.isfinite(energy):
            return "non-finite energy, gradient or parameters"
        if self.jump_sigmas is not None and self.e_ref is not None:
            err = float(error) if error is not None else 0.0
            err = err if math.isfinite(err) else 0.0
            floor = 1e-2 * abs(self.e_ref) + 1e-8
            allowed = self.jump_sigmas * float(np.hypot(err, self.err_ref)) + floor
            # an error bar that exploded while the energy moved: a state collapsing onto a
            # few configurations whose local energies diverge (then the step's own error bar
            # would excuse any jump, so the move is measured in the last accepted one's); a
            # rise needs less growth (the J1-J2 4x4 at J2 = 0.3, seed 0: -8.56 +- 0.05, then
            # -6.86 +- 0.94, then a state stuck on a few configurations at -5.05 +- 0.15)
            if abs(energy - self.e_ref) > self.jump_sigmas * self.err_ref + floor:
                if err > ERROR_GROWTH * self.err_ref + floor:
                    return (f"energy {energy:.6g} +- {err:.3g} moved from the last accepted "
                            f"{self.e_ref:.6g} +- {self.err_ref:.3g}, its error bar grown more "
                            f"than {ERROR_GROWTH:g}x: a collapsed estimate")
                if energy > self.e_ref and err > RISE_ERROR_GROWTH * self.err_ref + floor:
                    return (f"energy {energy:.6g} +- {err:.3g} rose from the last accepted "
                            f"{self.e_ref:.6g} +- {self.err_ref:.3g}, its error bar grown more "
                            f"than {RISE_ERROR_GROWTH:g}x")
            if energy - self.e_ref > allowed:
                return (f"energy {energy:.6g} jumped above the last accepted {self.e_ref:.6g} "
                        f"by more than {self.jump_sigmas:g} error bars + 1 %")
        if self.adaptive_shift and self.e_ref is not None:
            err = float(error) if error is not None and math.isfinite(error) else 0.0
            ref = self.err_ref if math.isfinite(self.err_ref) else 0.0
            if energy - self.e_ref > 2.0 * float(np.hypot(err, ref)) + 1e-9:
                return (f"energy {energy:.8g} rose above the last accepted {self.e_ref:.8g} "
                        "by more than 2 error bars")
        return None

    def accepted(self) -> None:
        """After an accepted step: the adaptive shift relaxes (÷ 10, down to 1)."""
        self.rejections = 0
        if self.adaptive_shift:
            self.shift_scale = max(self.shift_scale / 10.0, 1.0)

    def rejected(self) -> str:
        """After a rejected step: the adaptive shift grows (x 10) or, without it, the
        learning rate shrinks (x ``lr_factor``); returns what changed, for the message."""
        self.rejections += 1
        if self.adaptive_shift:
            self.shift_scale = min(self.shift_scale * 10.0, MAX_SHIFT_SCALE)
            return f"diagonal shift x{self.shift_scale:.3g}"
        self.lr_scale *= self.lr_factor
        return f"learning rate x{self.lr_scale:.3g}"


#: How much an error bar may grow in one step, with the energy moving by more than the jump
#: allowance, before the step counts as a collapsed estimate (:meth:`Guard.judge`).
ERROR_GROWTH = 30.0
#: The same for a step whose energy rose (:meth:`Guard.judge`): a rise is never progress.
RISE_ERROR_GROWTH = 10.0
#: Largest factor the adaptive shift puts on SR's diagonal shift (1e-6 becomes 1 at most).
MAX_SHIFT_SCALE = 1e6
