"""Convergence plots (matplotlib, Agg canvas; imported lazily, no pyplot global state)."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _as_float(v: Any) -> float:
    """A log value as a float: None -> nan, {"real", "imag"} or complex -> real part."""
    if v is None:
        return math.nan
    if isinstance(v, Mapping):
        v = v.get("real")
        return math.nan if v is None else float(v)
    if isinstance(v, complex):
        return v.real
    return float(np.real(v))


def _columns(
    history: Sequence[Mapping[str, Any]] | Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(step [k], energy [k], energy_error [k] or None) from records or a dict of columns."""
    if isinstance(history, Mapping):
        energy = np.asarray([_as_float(v) for v in np.asarray(history["energy"]).tolist()])
        n = energy.shape[0]
        step = np.asarray(history.get("step", np.arange(n)), dtype=float)
        err = history.get("energy_error")
        error = None if err is None else np.asarray([_as_float(v) for v in np.asarray(err).tolist()])
    else:
        records = [r for r in history if r.get("energy") is not None]
        energy = np.asarray([_as_float(r["energy"]) for r in records])
        step = np.asarray([_as_float(r.get("step", i)) for i, r in enumerate(records)])
        if any("energy_error" in r for r in records):
            error = np.asarray([_as_float(r.get("energy_error")) for r in records])
        else:
            error = None
    return step, energy, error


def plot_convergence(
    history: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    exact_energy: float | None,
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """Plot energy vs step with an error band, and |E - E_exact| / |E_exact| when known.

    history: a list of log records (dicts with ``step``, ``energy`` and optionally
      ``energy_error``; records without an energy are skipped) or a dict of arrays with those
      keys. Complex energies (or ``{"real", "imag"}`` dicts) are plotted by their real part.
    exact_energy: reference value drawn as a horizontal line, or None.
    Writes a PNG to ``path`` (parent directories are created) and returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    step, energy, error = _columns(history)
    has_exact = exact_energy is not None and math.isfinite(exact_energy)
    fig = Figure(figsize=(7.0, 6.5 if has_exact else 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    if has_exact:
        ax, ax_rel = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    else:
        ax, ax_rel = fig.subplots(1, 1), None

    ax.plot(step, energy, color="C0", lw=1.2, label="VMC energy")
    if error is not None and np.any(np.isfinite(error)):
        err = np.nan_to_num(error, nan=0.0)
        ax.fill_between(step, energy - err, energy + err, color="C0", alpha=0.25, lw=0)
    if has_exact:
        ax.axhline(exact_energy, color="k", ls="--", lw=1.0, label=f"exact {exact_energy:.8g}")
    ax.set_ylabel("energy")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)

    if ax_rel is not None:
        scale = abs(exact_energy) if exact_energy != 0 else 1.0
        rel = np.abs(energy - exact_energy) / scale
        ax_rel.semilogy(step, np.maximum(rel, 1e-16), color="C3", lw=1.2)
        if error is not None and np.any(np.isfinite(error)):
            ax_rel.semilogy(
                step,
                np.maximum(np.abs(error) / scale, 1e-16),
                color="C3",
                lw=0.8,
                ls=":",
                label="error bar / |E_exact|",
            )
            ax_rel.legend(loc="upper right")
        ax_rel.set_ylabel("|E - E_exact| / |E_exact|" if exact_energy != 0 else "|E - E_exact|")
        ax_rel.grid(alpha=0.3, which="both")
        ax_rel.set_xlabel("step")
    else:
        ax.set_xlabel("step")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from nqs.io import save_figure_atomic

    save_figure_atomic(fig, path, dpi=120)
    return path


def write_plot(plot: Callable[[], object], path: Path) -> None:
    """Call ``plot`` (which writes ``path``); a failure (disk full, a broken matplotlib) is a
    warning on stderr, not a failed run: the results are already written."""
    try:
        plot()
    except Exception as err:  # noqa: BLE001 - any plotting failure is only a warning
        msg = " ".join(str(err).split()) or type(err).__name__
        print(f"warning: could not write {path}: {msg}", file=sys.stderr, flush=True)
