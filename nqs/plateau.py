"""When the energy has stopped falling: the step loop's optional early stop.

A run on a plateau spends its remaining steps for nothing (a molecule's fitted autoregressive
start is often where SR leaves it). :class:`Plateau` reads the energies of the accepted steps
in order, averages them in consecutive blocks of ``window`` steps, and says the run is on a
plateau once ``patience`` accepted steps have passed since a block mean last fell below the
best earlier one by more than ``tolerance``:

    means  m_b = mean(E[b w : (b + 1) w])            (complete blocks only)
    best   the m_b that last undercut every earlier best by more than ``tolerance``
    stop   when the blocks after that best cover at least ``patience`` steps

A slow steady descent undercuts the best by ``tolerance`` within ``patience`` steps and goes
on; noise larger than ``tolerance`` sets new bests by chance and only delays the stop. The
rule is a function of the history alone, so a resumed run stops where an uninterrupted one
would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nqs.errors import InputError


@dataclass(frozen=True)
class Plateau:
    """Stop once the block means of ``window`` accepted steps have not fallen by more than
    ``tolerance`` (energy units: Hartree for molecules) for ``patience`` accepted steps."""

    tolerance: float
    window: int = 25
    patience: int = 150

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise InputError(f"the plateau tolerance must be a positive energy, got "
                             f"{self.tolerance!r}")
        if self.window < 1 or self.patience < self.window:
            raise InputError(f"the plateau needs window >= 1 and patience >= window, got "
                             f"{self.window} and {self.patience}")

    def reached(self, energies: Sequence[float]) -> bool:
        """Whether the accepted steps' ``energies`` (in order) end on a plateau."""
        n_blocks = len(energies) // self.window
        if n_blocks * self.window < self.window + self.patience:
            return False
        means = np.asarray(energies[: n_blocks * self.window], dtype=np.float64)
        means = means.reshape(n_blocks, self.window).mean(axis=1)
        best, best_block = means[0], 0
        for b in range(1, n_blocks):
            if means[b] < best - self.tolerance:
                best, best_block = means[b], b
        return (n_blocks - 1 - best_block) * self.window >= self.patience

    def describe(self) -> str:
        """One line, e.g. ``25-step means fell by no more than 2e-05 in 150 steps``."""
        return (f"{self.window}-step means fell by no more than {self.tolerance:g} in "
                f"{self.patience} steps")


def accepted_energies(history: Sequence[dict]) -> list[float]:
    """The energies of the accepted step records of ``history`` (rejected ones left out)."""
    return [float(r["energy"]) for r in history
            if "step" in r and not r.get("rejected") and r.get("energy") is not None]
