"""Runs that never lose or corrupt data: checksummed checkpoints, guarded run directories,
signals that checkpoint, the recovery guard, and one-line errors with their exit codes."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket

import numpy as np
import pytest

import nqs  # noqa: F401
from nqs.cli import main
from nqs.errors import CheckpointError, InputError
from nqs.io import (
    file_mode,
    load_checkpoint,
    read_jsonl,
    save_checkpoint,
    write_json_atomic,
)
from nqs.rundir import acquire_lock, check_out_dir, open_run_dir, release_lock, safe_name


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err.strip()


# ------------------------------------------------------------------------ checkpoint integrity


def test_every_flipped_byte_of_a_checkpoint_is_detected(tmp_path):
    import jax

    tree = {"w": np.linspace(0, 1, 6).reshape(2, 3), "c": np.array([1 + 2j, -3j]),
            "n": np.arange(3, dtype=np.int32), "key": jax.random.PRNGKey(3), "step": 7}
    path = tmp_path / "c.msgpack"
    save_checkpoint(path, tree, {"seed": 1, "note": "x"})
    load_checkpoint(path, tree)  # intact: loads
    data = path.read_bytes()
    undetected = []
    for pos in range(len(data)):  # every position, two kinds of damage
        for mask in (0x01, 0xFF):
            bad = bytearray(data)
            bad[pos] ^= mask
            path.write_bytes(bytes(bad))
            try:
                load_checkpoint(path, tree)
            except CheckpointError:
                continue
            undetected.append((pos, mask))
    assert not undetected, f"{len(undetected)} of {2 * len(data)} flips undetected: {undetected[:10]}"
    path.write_bytes(data[:-1])  # a torn file
    with pytest.raises(CheckpointError):
        load_checkpoint(path, tree)


def test_result_files_get_the_ordinary_mode(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"a": 1})
    save_checkpoint(tmp_path / "c.msgpack", {"a": np.ones(2)})
    for name in ("r.json", "c.msgpack"):
        assert (tmp_path / name).stat().st_mode & 0o777 == file_mode()
    assert file_mode() == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------ run directories


def test_run_directory_is_refused_locked_and_overwritten_only_in_part(tmp_path):
    out = tmp_path / "run"
    check_out_dir(out)  # a new directory is fine, and is not created by the check
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    check_out_dir(out)  # only the user's own files: fine
    (out / "result.json").write_text("{}")
    (out / "H2").mkdir()
    (out / "H2" / "log.jsonl").write_text("")
    with pytest.raises(InputError, match="another run's files"):
        check_out_dir(out)
    check_out_dir(out, resume=True)
    with pytest.raises(InputError, match="exclude"):
        check_out_dir(out, resume=True, overwrite=True)
    with open_run_dir(out, overwrite=True):
        assert (out / ".nqs.lock").exists()
        assert sorted(p.name for p in out.iterdir()) == [".nqs.lock", "notes.txt"]
        with pytest.raises(InputError, match="in use by another nqs run"):
            with open_run_dir(out, resume=True):
                pass
    assert not (out / ".nqs.lock").exists()
    # a lock left by a live process elsewhere (our parent) is respected; a dead one's is taken
    (out / ".nqs.lock").write_text(f"{os.getppid()} {socket.gethostname()}\n")
    with pytest.raises(InputError, match=f"pid {os.getppid()}"):
        acquire_lock(out)
    (out / ".nqs.lock").write_text(f"{2 ** 22 + 12345} {socket.gethostname()}\n")
    lock = acquire_lock(out)
    assert (out / ".nqs.lock").read_text().split()[0] == str(os.getpid())
    release_lock(lock)
    assert not lock.exists()
    a_file = tmp_path / "f"
    a_file.write_text("")
    for bad in (a_file, a_file / "sub"):
        with pytest.raises(InputError, match="is a file"):
            check_out_dir(bad)


@pytest.mark.parametrize("name,safe", [
    ("H2", "H2"), ("../../escaped", "____escaped"), ("/etc/passwd", "_etc_passwd"),
    ("a b", "a_b"), ("..", None), ("///", None), (".hidden", "hidden"), ("x..y", "x_y"),
])
def test_safe_names(name, safe):
    if safe is None:
        with pytest.raises(InputError):
            safe_name(name)
    else:
        assert safe_name(name) == safe
        assert "/" not in safe and ".." not in safe


# ------------------------------------------------------------------------ exit codes


def test_environment_errors_are_one_line_exit_3(tmp_path, capsys, monkeypatch):
    from nqs.commands import spin

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "log.jsonl"))

    monkeypatch.setattr(spin, "_run", disk_full)
    code, err = _run(["spin", "--size", "4", "--out", str(tmp_path / "o")], capsys)
    assert code == 3 and len(err.splitlines()) == 1 and "No space left" in err, err
    assert not (tmp_path / "o" / ".nqs.lock").exists()  # the lock is released


# ------------------------------------------------------------------------ signals, resume


# The settings of test_cli.py's spin run (programs shared through the compilation cache).
SPIN = ["spin", "--model", "ising", "--size", "6", "--samples", "32", "--chains", "8",
        "--chunk-size", "none", "--steps", "6", "--checkpoint-every", "100"]


def _signal_at(monkeypatch, step: int, signum: int) -> None:
    """Send ``signum`` to this process while the shared step loop judges step ``step``."""
    from nqs import loop

    judge = loop._judge

    def sending(problem, guard, k, *args, **kwargs):
        if k == step:
            os.kill(os.getpid(), signum)
        return judge(problem, guard, k, *args, **kwargs)

    monkeypatch.setattr(loop, "_judge", sending)


def test_sigterm_checkpoints_and_resume_is_bit_identical(tmp_path, capsys, monkeypatch):

    a, b = tmp_path / "a", tmp_path / "b"
    code, err = _run([*SPIN, "--out", str(a)], capsys)
    assert code == 0, err
    with monkeypatch.context() as m:
        _signal_at(m, 2, signal.SIGTERM)
        code, err = _run([*SPIN, "--out", str(b)], capsys)
    assert code == 128 + signal.SIGTERM, err
    assert len(err.splitlines()) == 1 and "SIGTERM after step 3" in err and "--resume" in err
    assert [r["step"] for r in read_jsonl(b / "log.jsonl")] == [0, 1, 2]
    assert not (b / "result.json").exists() and not (b / ".nqs.lock").exists()
    # resume with other options or fewer steps than the checkpoint holds: refused
    for extra, word in ((["--lr", "0.1"], "lr"), (["--h", "0.5"], "h was 1.0"),
                        (["--steps", "2"], "past --steps")):
        code, err = _run([*SPIN, *extra, "--out", str(b), "--resume"], capsys)
        assert code == 2 and len(err.splitlines()) == 1 and word in err, err
    # a re-run without --resume or --overwrite is refused; the resumed run's plot fails
    code, err = _run([*SPIN, "--out", str(b)], capsys)
    assert code == 2 and "--overwrite" in err
    with monkeypatch.context() as m:
        import nqs.plotting

        def no_space(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        m.setattr(nqs.plotting, "plot_convergence", no_space)
        code, err = _run([*SPIN, "--out", str(b), "--resume"], capsys)
    assert code == 0, err
    assert "warning: could not write" in err and "convergence.png" in err
    ra = json.loads((a / "result.json").read_text())
    rb = json.loads((b / "result.json").read_text())
    assert ra["energy"] == rb["energy"] and ra["energy_error"] == rb["energy_error"]
    log_a, log_b = read_jsonl(a / "log.jsonl"), read_jsonl(b / "log.jsonl")
    assert [r["step"] for r in log_b] == list(range(6))
    assert [r["energy"] for r in log_a] == [r["energy"] for r in log_b]
    assert (b / "log.jsonl").read_text().endswith("\n")


def test_sigint_on_a_molecule_then_resume_is_bit_identical(tmp_path, capsys, monkeypatch):

    mol = ["molecule", "--molecule", "H2", "--steps", "5", "--checkpoint-every", "100"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run([*mol, "--out", str(a)], capsys)[0] == 0
    with monkeypatch.context() as m:
        _signal_at(m, 1, signal.SIGINT)
        code, err = _run([*mol, "--out", str(b)], capsys)
    assert code == 130 and "SIGINT after step 2" in err and len(err.splitlines()) == 1, err
    code, err = _run([*mol, "--out", str(b), "--resume", "--lr", "0.01"], capsys)
    assert code == 2 and "learning_rate" in err, err
    assert _run([*mol, "--out", str(b), "--resume"], capsys)[0] == 0
    ra = json.loads((a / "result.json").read_text())
    rb = json.loads((b / "result.json").read_text())
    assert ra["energy"] == rb["energy"]
    assert [r["step"] for r in read_jsonl(b / "log.jsonl")] == list(range(5))


# ------------------------------------------------------------------------ recovery guard


def test_huge_learning_rate_never_ends_with_exit_0_and_no_energy(tmp_path, capsys):
    out = tmp_path / "lr"
    code, err = _run([*SPIN, "--lr", "1e3", "--steps", "8", "--out", str(out)], capsys)
    if code == 0:
        result = json.loads((out / "result.json").read_text())
        assert result["energy"] is not None and np.isfinite(result["energy"])
    else:
        assert code == 4 and len(err.splitlines()) == 1 and "--lr" in err, err
    log = read_jsonl(out / "log.jsonl")
    assert any(r.get("rejected") for r in log)  # the guard acted


def test_guard_rejects_jumps_and_non_finite_steps():
    from nqs.guard import Guard

    g = Guard(jump_sigmas=10.0, lr_factor=0.5, max_rejections=3)
    assert g.judge(-10.0, 0.1, True) is None  # no reference yet
    g.e_ref, g.err_ref = -10.0, 0.1
    assert g.judge(-9.0, 0.1, True) is None  # 1.0 < 10 * 0.14 + 0.1
    assert "jumped" in g.judge(-7.0, 0.1, True)
    assert g.judge(-20.0, 0.1, True) is None  # going down with a sound error bar is no jump
    assert g.judge(-20.0, 2.5, True) is None  # nor with a grown one (2.5 < 30 * 0.1 + 0.1)
    # an error bar grown past 30x while the energy moved: a collapsed estimate, either way
    assert "collapsed" in g.judge(-20.0, 4.0, True)
    assert "collapsed" in g.judge(0.0, 4.0, True)
    assert g.judge(-10.05, 4.0, True) is None  # (the energy did not move: an outlier)
    c = Guard(jump_sigmas=10.0, lr_factor=0.3, max_rejections=5, e_ref=-3.447, err_ref=0.009)
    assert "collapsed" in c.judge(-4.058, 0.732, True)  # the triangular XXZ RBM's steps
    assert "collapsed" in c.judge(63.5, 173.0, True)
    assert c.judge(-3.46, 0.05, True) is None
    # a rise excused only by its own error bar grown past 10x (the J1-J2 4x4 at J2 = 0.3)
    r = Guard(jump_sigmas=10.0, lr_factor=0.3, max_rejections=5, e_ref=-8.55741, err_ref=0.0457)
    assert "rose" in r.judge(-6.86109, 0.939, True)
    assert r.judge(-8.3, 0.939, True) is None  # within 10 of its error bars + 1 %: noise
    assert r.judge(-9.5, 0.939, True) is None  # going down: not a rise
    assert r.judge(-7.9, 0.3, True) is None  # a rise whose error bar grew 6.6x: the jump test
    assert "non-finite" in g.judge(float("nan"), 0.1, True)
    assert "non-finite" in g.judge(-10.0, 0.1, False)
    assert Guard(None, 0.5, 3, e_ref=-10.0).judge(1e6, 0.1, True) is None  # jump test off


def test_sigkill_then_resume_continues_the_same_trajectory(tmp_path, capsys):
    """A real ``kill -9`` of a running ``nqs spin`` (a subprocess: the compiled programs come
    from the session's compilation cache), then ``--resume``: the stale lock is taken over, the
    log is cut back to the checkpoint (no gap, no duplicate, no torn line) and the result equals
    that of an uninterrupted run of as many steps."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from nqs.io import load_checkpoint_metadata

    root = Path(__file__).resolve().parents[1]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH",
                                                                                 "")])}
    argv = [*SPIN[:SPIN.index("--steps")], "--checkpoint-every", "3"]
    cut, ref = tmp_path / "cut", tmp_path / "ref"
    proc = subprocess.Popen([sys.executable, "-m", "nqs.cli", *argv, "--steps", "100000",
                             "--out", str(cut)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        log = cut / "log.jsonl"
        if log.exists() and log.read_text().count("\n") >= 7:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (cut / ".nqs.lock").exists()  # left behind by the killed run
    steps = load_checkpoint_metadata(cut / "checkpoint.msgpack")["step"]
    assert steps >= 6 and steps % 3 == 0
    n = ["--steps", str(steps)]
    code, err = _run([*argv, *n, "--out", str(cut), "--resume"], capsys)
    assert code == 0, err
    code, err = _run([*argv, *n, "--out", str(ref)], capsys)
    assert code == 0, err
    log_cut, log_ref = read_jsonl(cut / "log.jsonl"), read_jsonl(ref / "log.jsonl")
    assert [r["step"] for r in log_cut] == list(range(steps))
    assert [r["energy"] for r in log_cut] == [r["energy"] for r in log_ref]
    result_cut = json.loads((cut / "result.json").read_text())
    result_ref = json.loads((ref / "result.json").read_text())
    assert result_cut["energy"] == result_ref["energy"]
