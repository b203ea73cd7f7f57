"""Test-session setup: cheap XLA compilation, a session compilation cache, and the multi-device
checks run in one background subprocess.

* The suite is dominated by XLA compilation of many small programs, not by running them: cheaper
  backend optimization roughly halves its time. Set before JAX is imported; an XLA_FLAGS already
  in the environment wins.
* Many tests compile the same program again (a run and its resumed twin, the same CLI settings
  in several tests): JAX's persistent compilation cache, in a temporary directory that lives for
  this session only, turns the repeats into a file read. The subprocesses the tests start inherit
  it through the environment. A cached executable is the same binary, so results are unchanged.
* The device count is fixed when JAX starts, so every check that needs 4 simulated devices runs
  in ONE subprocess (tests/helpers/multi_device_check.py). It is started as soon as collection
  has finished, and the tests that read its results run last: the subprocess works on the
  second core while the rest of the suite runs (the suite itself is about one core busy,
  compilation being single-threaded). Each test module that uses the ``multi_device`` fixture
  names the checks it needs in ``MULTI_DEVICE_CHECKS``; only those run.
* ``NQS_TEST_TIMES=path``: one JSON line per test with its wall time and this process's CPU
  time (setup, call and teardown together), to compare test costs on a loaded machine where
  wall times mislead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_multi_thread_eigen=false",
)
os.environ.setdefault("MPLBACKEND", "Agg")

_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="nqs-test-jax-cache-")
# every compilation is cached: most of the repeated ones take well under the 1 s default
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "tests" / "helpers" / "multi_device_check.py"
MULTI_DEVICE_TIMEOUT_S = 1800


class _MultiDeviceRun:
    """The one subprocess with 4 simulated CPU devices: started once, read by many tests."""

    def __init__(self) -> None:
        self.checks: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.dir: Path | None = None
        self.result: dict | None = None

    def start(self, checks: list[str]) -> None:
        """Start the helper on ``checks`` (names of its check functions) unless it runs."""
        if self.proc is not None or not checks:
            return
        self.checks = checks
        env = dict(os.environ)
        env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.dir = Path(tempfile.mkdtemp(prefix="nqs-multi-device-"))
        # output to files, not pipes: nobody reads a pipe while the suite runs
        with open(self.dir / "stdout", "w") as out, open(self.dir / "stderr", "w") as err:
            self.proc = subprocess.Popen([sys.executable, str(HELPER), *checks], stdout=out,
                                         stderr=err, env=env, cwd=ROOT)

    def read(self, checks: list[str]) -> dict:
        """The helper's JSON result; waits for it. Fails the calling test if it failed."""
        self.start(checks)
        missing = set(checks) - set(self.checks)
        assert not missing, f"multi-device checks {missing} were not started"
        if self.result is None:
            assert self.proc is not None and self.dir is not None
            self.proc.wait(timeout=MULTI_DEVICE_TIMEOUT_S)
            stdout = (self.dir / "stdout").read_text()
            stderr = (self.dir / "stderr").read_text()
            lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
            assert self.proc.returncode == 0 and lines, stderr[-3000:]
            self.result = json.loads(lines[-1][len("RESULT "):])
        return self.result

    def stop(self) -> None:
        """Kill the subprocess if the session ends before it does (e.g. ``-x``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


_MULTI = _MultiDeviceRun()


def _checks_of(items) -> list[str]:
    """The union, in a fixed order, of ``MULTI_DEVICE_CHECKS`` of the modules of ``items``."""
    names: list[str] = []
    for item in items:
        if "multi_device" in getattr(item, "fixturenames", ()):
            for name in getattr(getattr(item, "module", None), "MULTI_DEVICE_CHECKS", ()):
                if name not in names:
                    names.append(name)
    return names


def pytest_collection_modifyitems(session, config, items) -> None:
    """Tests that wait for the multi-device subprocess go last (stable order otherwise)."""
    items.sort(key=lambda item: "multi_device" in getattr(item, "fixturenames", ()))


def pytest_collection_finish(session) -> None:
    """Start the multi-device subprocess as soon as the selected tests are known."""
    _MULTI.start(_checks_of(session.items))


def pytest_sessionfinish(session, exitstatus) -> None:
    """Stop the subprocess and remove this session's compilation cache."""
    _MULTI.stop()
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With ``NQS_TEST_TIMES`` set: append the test's wall and CPU seconds to that file."""
    path = os.environ.get("NQS_TEST_TIMES")
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    if path:
        record = {"test": item.nodeid, "wall_s": round(time.perf_counter() - wall, 3),
                  "cpu_s": round(time.process_time() - cpu, 3), "load": os.getloadavg()[0]}
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


@pytest.fixture(scope="session")
def multi_device(request) -> dict:
    """Results of the 4-device checks (tests/helpers/multi_device_check.py) as one dict."""
    return _MULTI.read(_checks_of(request.session.items))
