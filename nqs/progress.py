"""Progress of a run on a terminal, in Jupyter and in a log file.

    progress = Progress(n_steps, start, desc="VMC")
    progress.phase("compiling the step")
    for k in range(start, n_steps):
        ...
        progress.step(k + 1, energy, error)
    progress.close()
    progress.phase("final evaluation")

On a terminal (the stream is a TTY) or in a Jupyter kernel the steps drive a tqdm bar with the
elapsed time, the ETA, seconds per step and the energy with its error bar. Anywhere else (nohup,
SLURM, a pipe) a bar would be a stream of carriage returns, so the steps give plain lines: the
first step, then one line whenever ``every_fraction`` of the run or ``every_seconds`` have passed
since the last one, and the last step::

    VMC step 40/200 (20%)  E = -7.123456 +- 1.2e-03  elapsed 0:00:31  ETA 0:01:52  0.70 s/step

The seconds per step leave out the first step of the call (it includes the compilation).
Phases (compiling, burn-in, final evaluation) are one line each. Output goes to stdout (with the
commands' own messages; stderr keeps the one-line errors).
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Literal, TextIO

Mode = Literal["auto", "bar", "lines"]


def _in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel (whose streams are no TTY but render a bar)."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - an IPython without get_ipython
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _is_terminal(file: TextIO) -> bool:
    """Whether ``file`` is a terminal a bar can be drawn on (a TTY with a width: a pseudo-
    terminal of zero columns, as under ``script``, would show an empty bar)."""
    isatty = getattr(file, "isatty", None)
    if not (callable(isatty) and isatty()):
        return False
    try:
        return os.get_terminal_size(file.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):  # no file descriptor (a test's stream)
        return True


def _clock(seconds: float) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_energy(energy: float | None, error: float | None) -> str:
    """``E = -7.123456 +- 1.2e-03`` (no error bar when it is unknown)."""
    if energy is None or not math.isfinite(energy):
        return f"E = {energy}"
    if error is None or not math.isfinite(error):
        return f"E = {energy:.6f}"
    return f"E = {energy:.6f} +- {error:.1e}"


class Progress:
    """Step progress of one run (see the module docstring).

    Args:
        total: the last step of the run (steps are counted from 0 to ``total``).
        start: steps already done (a resumed run).
        enabled: False makes every method a no-op (other processes, ``progress=False``).
        desc: the run's label at the start of each line.
        file: the stream (default: ``sys.stdout`` at construction).
        mode: ``"bar"`` (tqdm), ``"lines"`` (plain lines) or ``"auto"``: a bar on a TTY or in
            Jupyter, else lines.
        every_fraction, every_seconds: line mode prints a step when this share of the run or
            this many seconds passed since the last line printed.
    """

    def __init__(self, total: int, start: int = 0, *, enabled: bool = True, desc: str = "VMC",
                 file: TextIO | None = None, mode: Mode = "auto", every_fraction: float = 0.1,
                 every_seconds: float = 60.0) -> None:
        self.total, self.start, self.enabled, self.desc = int(total), int(start), enabled, desc
        self.file = sys.stdout if file is None else file
        if mode == "auto":
            mode = "bar" if _is_terminal(self.file) or _in_jupyter() else "lines"
        self.mode: Mode = mode
        self.every_steps = max(1, int(math.ceil(every_fraction * max(self.total - self.start, 1))))
        self.every_seconds = every_seconds
        self.t0 = time.perf_counter()
        self._bar: Any = None
        self._first: tuple[int, float] | None = None  # (steps done, time) after the first step
        self._last_line: tuple[int, float] | None = None
        self._done = self.start
        self._shown: str | None = None  # the figure of the last step reported

    # ---------------------------------------------------------------- output

    def _print(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.file)
        else:
            print(text, file=self.file, flush=True)

    def phase(self, text: str) -> None:
        """One line for a phase of the run (compiling, burn-in, final evaluation)."""
        if self.enabled:
            self._print(f"{self.desc}: {text}")

    def seconds_per_step(self, now: float | None = None) -> float:
        """Mean wall seconds of the steps after the first of this call (nan before two)."""
        now = time.perf_counter() if now is None else now
        if self._first is None or self._done <= self._first[0]:
            return math.nan
        return (now - self._first[1]) / (self._done - self._first[0])

    def step(self, done: int, energy: float | None = None, error: float | None = None, *,
             text: str | None = None) -> None:
        """Report that ``done`` steps are finished, the last with this energy estimate (or,
        for a run that is not a VMC, with ``text`` in its place: ``"fidelity 0.99912"``)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        self._done = int(done)
        if self._first is None:
            self._first = (self._done, now)
        shown = format_energy(energy, error) if text is None else text
        self._shown = shown
        if self.mode == "bar":
            self._bar_step(shown)
            return
        last = self._last_line
        due = (last is None or self._done >= self.total
               or self._done - last[0] >= self.every_steps or now - last[1] >= self.every_seconds)
        if due:
            self._last_line = (self._done, now)
            self._print(self.line(energy, error, now, text=shown))

    def line(self, energy: float | None, error: float | None, now: float | None = None, *,
             text: str | None = None) -> str:
        """The plain progress line of the current step (``text`` in place of the energy)."""
        now = time.perf_counter() if now is None else now
        per_step = self.seconds_per_step(now)
        eta = per_step * (self.total - self._done) if self._done < self.total else 0.0
        pct = 100.0 * self._done / max(self.total, 1)
        rate = "" if not math.isfinite(per_step) else f"  {per_step:.3g} s/step"
        return (f"{self.desc} step {self._done}/{self.total} ({pct:.0f}%)  "
                f"{format_energy(energy, error) if text is None else text}  "
                f"elapsed {_clock(now - self.t0)}  "
                f"ETA {_clock(eta)}{rate}")

    def _bar_step(self, shown: str) -> None:
        if self._bar is None:
            self._bar = _make_bar(self.total, self.start, self.desc, self.file)
            # elapsed from the start of the run (the first step's compilation included)
            self._bar.start_t -= time.perf_counter() - self.t0
        self._bar.set_postfix_str(shown, refresh=False)
        self._bar.update(self._done - self._bar.n)

    def flush(self) -> None:
        """Line mode: print the last step reported if its line was held back (a run that
        stopped before its last step: the start fit at its target fidelity)."""
        if (self.enabled and self.mode == "lines" and self._shown is not None
                and (self._last_line is None or self._last_line[0] != self._done)):
            now = time.perf_counter()
            self._last_line = (self._done, now)
            self._print(self.line(None, None, now, text=self._shown))

    def close(self) -> None:
        """End the bar (line mode: nothing to do)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _make_bar(total: int, start: int, desc: str, file: TextIO) -> Any:
    """A tqdm bar: the notebook widget in Jupyter when ipywidgets is there, else the text bar."""
    fmt = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, " \
          "{rate_inv_fmt}{postfix}]"
    kw = dict(total=total, initial=start, desc=desc, unit="step", bar_format=fmt,
              dynamic_ncols=True, smoothing=0.1)
    if _in_jupyter():
        try:
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(**kw)
        except ImportError:  # no ipywidgets: the text bar renders in Jupyter too
            pass
    from tqdm import tqdm

    return tqdm(file=file, **kw)
