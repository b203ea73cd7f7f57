"""The ``nqs`` command: bad input gives one line and exit code 2; a small run writes its files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nqs.cli import main
from nqs.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err.strip()


BAD_SPIN = [
    (["--size", "0"], "size"),
    (["--size", "-3"], "size"),
    (["--alpha", "0"], "alpha"),
    (["--alpha", "-1"], "alpha"),
    (["--samples", "abc"], "samples"),
    (["--samples", "0"], "samples"),
    (["--samples", "2.5"], "samples"),
    (["--model", "potts"], "model"),
    (["--model", "heisenberg", "--size", "5"], "odd"),
    (["--lr", "nan"], "lr"),
    (["--ansatz", "transformer"], "ansatz"),
    (["--ansatz", "vit", "--lattice", "square", "--size", "4", "--patch", "3"], "patch"),
    (["--parity", "up"], "parity"),
    (["--lattice", "kagome"], "lattice"),
    (["--model", "heisenberg", "--lattice", "honeycomb", "--size", "1"], "cells"),
    (["--ansatz", "gcnn", "--features", "0"], "features"),
    # an open lattice past the site limit: its point group (for the default alpha) does not
    # run out of memory first
    (["--model", "heisenberg", "--lattice", "square", "--size", "1000", "--open"], "spins"),
    (["--model", "heisenberg", "--size", "6", "--momentum", "3", "--ansatz", "rbm-symm"],
     "momentum zero"),
    (["--model", "heisenberg", "--size", "6", "--momentum", "1", "2"], "one per lattice direction"),
    (["--model", "heisenberg", "--size", "6", "--momentum", "1", "--open"], "open lattice"),
    (["--model", "heisenberg", "--size", "6", "--momentum", "1", "--symmetries", "space-group"],
     "translations"),
    (["--model", "ising", "--moves", "antiparallel"], "single"),
    (["--model", "heisenberg", "--moves", "pairs"], "moves"),
]


@pytest.mark.parametrize("args,word", BAD_SPIN, ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_bad_spin_input_one_line_exit_2(args, word, capsys, tmp_path):
    code, err = _run(["spin", *args, "--steps", "1", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert word in err.lower()
    assert "Traceback" not in err


def test_resume_without_checkpoint(capsys, tmp_path):
    code, err = _run(["spin", "--size", "4", "--steps", "1", "--out", str(tmp_path / "none"),
                      "--resume"], capsys)
    assert code == 2
    assert "checkpoint" in err and len(err.splitlines()) == 1


def test_spin_command_writes_result(tmp_path, capsys):
    out = tmp_path / "run"
    # the settings of the one-process run in test_parallel's two-process comparison
    # (tests/helpers/two_process_check.py ARGS): the programs compiled here are reused there
    code, err = _run(["spin", "--model", "ising", "--size", "6", "--steps", "20",
                      "--samples", "32", "--chains", "8", "--chunk-size", "none",
                      "--out", str(out)], capsys)
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    for key in ("energy", "energy_error", "variance", "energy_per_site", "exact_energy",
                "relative_error", "n_parameters", "n_samples", "steps", "wall_time_s",
                "time_per_step_s", "v_score", "v_score_e_inf"):
        assert key in result
    assert result["steps"] == 20 and result["n_samples"] == 32
    assert (out / "log.jsonl").exists() and (out / "convergence.png").exists()


def test_help_mentions_every_option():
    out = subprocess.run([sys.executable, "-m", "nqs.cli", "spin", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for opt in ("--model", "--lattice", "--size", "--open", "--h", "--j2", "--delta", "--ansatz",
                "--alpha", "--samples", "--steps", "--lr", "--diag-shift", "--seed", "--out",
                "--resume", "--features", "--layers", "--symmetries", "--project", "--parity"):
        assert opt in out


def test_readme_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has a Python example"
    code = blocks[0]
    # the example as written, with fewer optimization steps: this test checks that it runs
    # and reports a relative error (every line executes); convergence of the same kind of run
    # is checked in tests/test_driver.py. 100 -> 10 steps saves ~90 step executions.
    code, n_sub = re.subn(r"n_steps=\d+", "n_steps=10", code)
    assert n_sub == 1, "the README example sets n_steps once"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["result"].relative_error is not None


def test_spin_time_limit_stops_early_and_resume_completes(tmp_path, capsys):
    """``--time-limit``: the step that passes the limit is the last, checkpointed, evaluated and
    flagged in result.json; ``--resume`` continues to ``--steps``. The progress lines reach a
    stdout that is no terminal (a log file)."""
    out = tmp_path / "timed"
    # the settings of test_spin_command_writes_result (the same compiled programs)
    argv = ["spin", "--model", "ising", "--size", "6", "--steps", "20", "--samples", "32",
            "--chains", "8", "--chunk-size", "none", "--out", str(out)]
    assert main([*argv, "--time-limit", "1e-9"]) == 0
    stdout = capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert result["stopped_by_time_limit"] is True and result["time_limit_s"] == 1e-9
    assert result["steps"] == 1 and result["steps_planned"] == 20
    assert np.isfinite(result["energy"])
    assert [r["step"] for r in read_jsonl(out / "log.jsonl")] == [0]
    assert "compiling" in stdout and "VMC step 1/20 (5%)" in stdout and "ETA" in stdout
    assert "final evaluation" in stdout
    assert main([*argv, "--resume"]) == 0
    stdout = capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert result["stopped_by_time_limit"] is False and result["steps"] == 20
    assert [r["step"] for r in read_jsonl(out / "log.jsonl")] == list(range(20))
    assert "VMC step 20/20 (100%)" in stdout and "s/step" in stdout
