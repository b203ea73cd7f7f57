"""Progress display: plain lines off a terminal (log files), a tqdm bar on one."""

from __future__ import annotations

import io

from nqs.progress import Progress, format_energy


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_off_a_terminal_are_throttled_and_complete() -> None:
    out = io.StringIO()  # no TTY: plain lines
    p = Progress(100, 0, file=out, every_fraction=0.1, every_seconds=1e9)
    assert p.mode == "lines"
    p.phase("compiling the step")
    for k in range(1, 101):
        p.step(k, -1.5 + 1e-3 * k, 1e-3)
    p.close()
    p.phase("final evaluation")
    lines = out.getvalue().splitlines()
    assert lines[0] == "VMC: compiling the step" and lines[-1] == "VMC: final evaluation"
    steps = [ln for ln in lines if ln.startswith("VMC step ")]
    assert steps[0].startswith("VMC step 1/100 (1%)  E = -1.499000 +- 1.0e-03  elapsed ")
    assert steps[-1].startswith("VMC step 100/100 (100%)") and "ETA 0:00:00" in steps[-1]
    assert 10 <= len(steps) <= 12  # every 10 % of the run, plus the first and the last
    assert all("ETA" in ln and "elapsed" in ln for ln in steps)
    assert "s/step" in steps[-1]


def test_resumed_run_counts_from_its_start_and_disabled_prints_nothing() -> None:
    out = io.StringIO()
    p = Progress(10, 6, file=out, every_fraction=0.5)
    for k in range(7, 11):
        p.step(k, float("nan"), None)
    assert out.getvalue().splitlines()[0].startswith("VMC step 7/10 (70%)  E = nan")
    quiet = io.StringIO()
    q = Progress(10, 0, file=quiet, enabled=False)
    q.phase("compiling")
    q.step(1, -1.0, 0.1)
    q.close()
    assert quiet.getvalue() == ""


def test_bar_on_a_terminal() -> None:
    out = _Tty()
    with Progress(5, 0, file=out, desc="VMC") as p:
        assert p.mode == "bar"
        p.phase("compiling")
        for k in range(1, 6):
            p.step(k, -2.0, 1e-2)
    text = out.getvalue()
    assert "VMC: compiling" in text and "5/5" in text and "s/step" in text
    assert format_energy(-2.0, 1e-2) in text


def test_format_energy() -> None:
    assert format_energy(-1.0, 0.01) == "E = -1.000000 +- 1.0e-02"
    assert format_energy(-1.0, None) == "E = -1.000000"
    assert format_energy(None, None) == "E = None"


def test_text_takes_the_place_of_the_energy() -> None:
    """A run that is not a VMC (the start fit) shows its own figure where the energy goes."""
    out = io.StringIO()
    p = Progress(4, 0, file=out, desc="  start: fit", every_fraction=0.5, every_seconds=1e9)
    for k in range(1, 5):
        p.step(k, text=f"fidelity {0.9 + 0.01 * k:.5f}")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  start: fit step 1/4 (25%)  fidelity 0.91000  elapsed ")
    assert lines[-1].startswith("  start: fit step 4/4 (100%)  fidelity 0.94000  elapsed ")
    assert "E =" not in out.getvalue()
    p.flush()  # the last step was printed: nothing more
    assert len(out.getvalue().splitlines()) == len(lines)
    early = io.StringIO()
    p = Progress(100, 0, file=early, every_fraction=0.5, every_seconds=1e9)
    for k in range(1, 8):  # stops at step 7 of 100 (a fit at its target)
        p.step(k, text="fidelity 0.99996")
    p.flush()
    assert [ln.split("  ")[0] for ln in early.getvalue().splitlines()] == [
        "VMC step 1/100 (1%)", "VMC step 7/100 (7%)"]
