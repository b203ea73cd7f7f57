"""Run directories that no run destroys: checked, locked, named safely (impure shell).

    with open_run_dir(args.out, resume=args.resume, overwrite=args.overwrite):
        ...  # the run writes its files into args.out

:func:`open_run_dir` is entered only after every option has been validated (so a bad input
never touches ``--out``). It refuses

* an ``--out`` that is a file, or a directory it cannot write to (:class:`InputError`);
* an ``--out`` holding another run's files (a log, a checkpoint, results) unless ``resume``
  (continue that run) or ``overwrite`` (delete nqs's own files there first, nothing else);
* a second live run in the same directory: a lock file ``.nqs.lock`` holds the pid of the run
  that owns it; a lock left by a dead process (a killed run) is taken over.

:func:`safe_name` turns a name given on the command line (a molecule's) into a file name.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

from nqs.errors import InputError

LOCK_NAME = ".nqs.lock"
RUN_FILES = ("log.jsonl", "checkpoint.msgpack", "result.json", "results.json", "results.md",
             "convergence.png", "errors.png", "integrals.npz", "observables.json")
"""Files a run writes at the top of its directory (bench-fci: also one directory per molecule
holding the first four and ``integrals.npz``)."""
_MOLECULE_DIR_FILES = RUN_FILES[:4] + ("integrals.npz",)


def safe_name(name: str) -> str:
    """``name`` as a file name: letters, digits, ``.``, ``_``, ``+``, ``-`` kept, every other
    character (separators, spaces, quotes) replaced by ``_``; no leading dot (so no ``..``).

    Raises:
        InputError: a name with nothing usable left.
    """
    cleaned = re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9._+-]", "_", str(name))).lstrip(".")
    if not cleaned.strip("_"):
        raise InputError(f"name {name!r} gives no usable file name; use letters and digits")
    return cleaned[:100]


def unique_names(names: Iterable[str], what: str = "molecule") -> list[str]:
    """:func:`safe_name` of every name; two names that give the same file name are refused."""
    seen: dict[str, str] = {}
    out = []
    for name in names:
        safe = safe_name(name)
        key = safe.lower()  # case-insensitive file systems
        if key in seen:
            raise InputError(f"two {what}s are named {seen[key]!r} and {name!r}: their files "
                             f"would overwrite each other; give them different names "
                             f"(NAME=\"ATOMS\")")
        seen[key] = name
        out.append(safe)
    return out


def run_files(out: Path) -> list[Path]:
    """The files of an nqs run in ``out`` (top level, and one level down for bench-fci)."""
    found = [out / n for n in RUN_FILES if (out / n).exists()]
    if out.is_dir():
        for sub in sorted(out.iterdir()):
            if sub.is_dir() and not sub.is_symlink():
                found += [sub / n for n in _MOLECULE_DIR_FILES if (sub / n).exists()]
    return found


def check_out_dir(out: Path, resume: bool = False, overwrite: bool = False) -> None:
    """Raise :class:`InputError` (one line) unless a run may use ``out``; touches nothing."""
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a directory")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"--out {out}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: {parent} is not writable")
    if not out.exists():
        if resume:
            raise InputError(f"no checkpoint to resume from: {out} does not exist")
        return
    if resume or overwrite:
        return
    files = run_files(out)
    if files:
        raise InputError(
            f"--out {out} holds another run's files ({files[0].relative_to(out)}); continue it "
            "with --resume, replace it with --overwrite, or choose another --out"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read_lock(lock: Path) -> tuple[int, str] | None:
    try:
        pid, _, host = lock.read_text().strip().partition(" ")
        return int(pid), host
    except (OSError, ValueError):
        return None


def acquire_lock(out: Path) -> Path:
    """Create ``out/.nqs.lock`` (pid and host) or raise :class:`InputError` if a live run holds
    it; a lock of a dead process on this host is taken over. Returns the lock's path."""
    lock = out / LOCK_NAME
    me = f"{os.getpid()} {socket.gethostname()}\n"
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_lock(lock)
            same_host = owner is not None and owner[1] == socket.gethostname()
            if owner is not None and (not same_host or _pid_alive(owner[0])):
                where = "" if same_host else f" on {owner[1]}"
                raise InputError(
                    f"--out {out} is in use by another nqs run (pid {owner[0]}{where}; lock "
                    f"{lock}); wait for it or choose another --out (delete the lock only if "
                    "that run is gone)"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return lock
    raise InputError(f"--out {out}: cannot take the lock {lock}")


def release_lock(lock: Path) -> None:
    """Remove a lock this process holds (no-op if it is gone or another's)."""
    owner = _read_lock(lock)
    if owner is not None and owner[0] == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def clear_run_files(out: Path) -> None:
    """Delete the files of a previous run in ``out`` (``--overwrite``): nqs's own files and
    per-molecule directories holding them; nothing else."""
    emptied = set()
    for path in run_files(out):
        path.unlink()
        if path.parent != out:
            emptied.add(path.parent)
    for sub in sorted(emptied):
        if not any(sub.iterdir()):
            sub.rmdir()


@contextlib.contextmanager
def open_run_dir(out: Path | None, resume: bool = False, overwrite: bool = False,
                 main: bool = True) -> Iterator[Path | None]:
    """Check ``out`` (:func:`check_out_dir`), create it, hold its lock for the block, and with
    ``overwrite`` delete the previous run's files. Only process 0 (``main``) touches files."""
    if out is None or not main:
        yield out
        return
    out = Path(out)
    check_out_dir(out, resume, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(out)
    try:
        if overwrite:
            clear_run_files(out)
        yield out
    finally:
        release_lock(lock)
