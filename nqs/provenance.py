"""Provenance of a run: what produced a result file (impure: asks git and JAX).

    record = provenance(argv=["spin", "--size", "8"], dtype="float64",
                        geometry={"atoms": "H 0 0 0; H 0 0 0.74", "unit": "angstrom"})

gives the command line, the package version, the git commit of the source tree (``None``
outside a git checkout, never an error), Python, JAX and the device (backend, device kind,
number of devices and processes), the precision and, for a molecule, its geometry with its
unit. The commands (:mod:`nqs.commands`) add it to every ``result.json`` beside the run's full
options (``"config"``), so a result says how to reproduce it.
"""

from __future__ import annotations

import datetime
import functools
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SOURCE_ROOT = Path(__file__).resolve().parents[1]
"""The directory holding the ``nqs`` package (the repository root in a source checkout)."""


def version() -> str:
    """The installed version of nqs (``nqs.__version__``)."""
    import nqs

    return nqs.__version__


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):  # no git, a hung git, ...
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the source tree nqs runs from.

    ``None`` (no error) when nqs is not run from a git checkout of its own (an installed wheel,
    a tarball, no ``git`` on the machine, or a package that sits inside another repository)."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != SOURCE_ROOT:
        return {"commit": None, "dirty": None}
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def device_info() -> dict[str, Any]:
    """The JAX backend, device kind and counts, and whether 64-bit types are enabled."""
    import jax

    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind if devices else None,
        "n_devices": jax.device_count(),
        "n_processes": jax.process_count(),
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
    }


def command_line(argv: Sequence[str] | None) -> str:
    """``nqs ARGS`` as one shell-quoted string (``sys.argv`` when ``argv`` is None)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["nqs", *args])


def provenance(argv: Sequence[str] | None = None, dtype: str | None = None,
               geometry: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance record of a run (see the module docstring); JSON-able."""
    import jax

    git = git_state()
    record: dict[str, Any] = {
        "command_line": command_line(argv),
        "nqs_version": version(),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "python": platform.python_version(),
        "jax_version": jax.__version__,
        "platform": platform.platform(terse=True),
        **device_info(),
        "dtype": dtype,
        "written_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if geometry is not None:
        record["geometry"] = geometry
    return record
