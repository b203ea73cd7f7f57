"""SIGINT / SIGTERM during a run: finish the step, checkpoint, stop (impure shell).

    with deferred_signals() as pending:
        for k in range(...):
            step ...
            if pending() is not None:
                checkpoint ...
                raise RunInterrupted(pending(), k + 1, checkpoint_path)

Inside the block SIGINT and SIGTERM (what SLURM sends before killing a job) only record the
signal; the loop checks it after each step, writes a checkpoint and raises
:class:`RunInterrupted`, which the command line turns into a one-line message naming the
checkpoint and exit code 128 + the signal number (130, 143). A second SIGINT while one is
pending interrupts at once (``KeyboardInterrupt``). Outside the main thread nothing is
installed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from nqs.parallel import process_zero_decides

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal after ``step`` steps, checkpointed at ``checkpoint``."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        self.signum = int(signum)
        self.step = int(step)
        self.checkpoint = checkpoint
        name = signal.Signals(self.signum).name
        where = (f"checkpoint at step {step} written to {checkpoint}" if checkpoint is not None
                 else "no output directory, nothing saved")
        super().__init__(f"stopped by {name} after step {step}; {where}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number (the shell's convention)."""
        return 128 + self.signum


@contextlib.contextmanager
def deferred_signals() -> Iterator[Callable[[], int | None]]:
    """Defer SIGINT / SIGTERM inside the block; yields ``pending()``: the first signal received
    (on every process: process 0's), or None."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def handler(signum: int, frame: object) -> None:
        if signum == signal.SIGINT and received:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        received.append(signum)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)

    def pending() -> int | None:
        got = received[0] if received else 0
        if process_zero_decides(got != 0):
            return got or int(signal.SIGTERM)
        return None

    try:
        yield pending
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
