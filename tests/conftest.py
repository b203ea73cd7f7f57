"""Test-session setup: cheap XLA compilation, a session compilation cache, and the subprocess
checks (many devices, many processes) run in the background.

* The suite is dominated by XLA compilation of many small programs, not by running them: cheaper
  backend optimization roughly halves its time, and the classic CPU fusion emitters take ~30 %
  off the rest. Set before JAX is imported; an XLA_FLAGS already in the environment wins.
* Many tests compile the same program again (a run and its resumed twin, the same CLI settings
  in several tests): JAX's persistent compilation cache, in a temporary directory that lives for
  this session only, turns the repeats into a file read. The subprocesses the tests start
  inherit it through the environment (the background helpers below: folders of their own). A
  cached executable is the same binary, so results are unchanged.
* Two helper subprocesses run in the background (tests/helpers/): every check that needs 4
  simulated devices, in ONE process (the device count is fixed when JAX starts), then a run split
  over two ``jax.distributed`` processes. They start, one after the other, as soon as
  collection has finished, and the tests that read their results (fixtures ``multi_device`` and
  ``two_processes``) run last: the helpers work on the second core while the rest of the suite
  runs (the suite itself keeps about one core busy, compilation being single-threaded). Each
  test module that uses ``multi_device`` names the checks it needs in ``MULTI_DEVICE_CHECKS``;
  only those run. Under pytest-xdist (the README's ``-n 2``: one worker per core; ``--dist
  loadfile`` in pyproject.toml keeps each file in one worker, so the problems its tests share
  are compiled once; ``--no-loadscope-reorder`` keeps the file order of
  ``pytest_collection_modifyitems``, the heaviest first) the first worker to collect runs the
  jobs and every worker reads their result files.
* NetKet's numba code (the reference operators) is compiled at ``NUMBA_OPT=0``.
* ``NQS_TEST_TIMES=path``: one JSON line per test with its wall time and this process's CPU
  time (setup, call and teardown together), to compare test costs on a loaded machine where
  wall times mislead; also the xdist worker and the time it ended (the load balance).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest


def _jaxlib_version() -> tuple[int, ...]:
    """jaxlib's version from its metadata (without importing JAX), ``()`` if unknown."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return tuple(int(p) for p in version("jaxlib").split(".")[:2] if p.isdigit())
    except PackageNotFoundError:
        return ()


# The classic CPU fusion emitters (--xla_cpu_use_fusion_emitters=false) compile the suite's
# programs in ~30 % less CPU time than the MLIR ones at this optimization level (LiH backflow
# VMC step: 5.5 s -> 3.6 s; the molecule VMC, dtype and packed VMC tests 127 -> 93 CPU s), and
# one LLVM module per program instead of a split for parallel codegen (no spare core while two
# xdist workers run) saves another ~12 % (3.84 -> 3.39 s, mean of 3). Checked with jaxlib 0.10,
# where both flags exist (XLA aborts on an unknown flag, so older versions go without them).
_XLA_TEST_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                   "--xla_cpu_multi_thread_eigen=false")
if _jaxlib_version() >= (0, 10):
    _XLA_TEST_FLAGS += (" --xla_cpu_use_fusion_emitters=false"
                        " --xla_cpu_parallel_codegen_split_count=1")
os.environ.setdefault("XLA_FLAGS", _XLA_TEST_FLAGS)
os.environ.setdefault("MPLBACKEND", "Agg")
# NetKet's reference operators (and the ``sparse`` arrays it builds them from) are numba code
# compiled in every session; LLVM at -O0 compiles them ~25 % faster and they run on a few
# hundred states only. Optimization levels do not change IEEE results (no fast-math).
os.environ.setdefault("NUMBA_OPT", "0")

# pytest-xdist workers inherit the controller's environment: each makes a cache of its own
# (cache writes are not atomic), unless the user named one
_OWN_CACHE = ("JAX_COMPILATION_CACHE_DIR" not in os.environ
              or os.environ["JAX_COMPILATION_CACHE_DIR"] == os.environ.get("NQS_TEST_OWN_CACHE"))
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="nqs-test-jax-cache-")
    os.environ["NQS_TEST_OWN_CACHE"] = os.environ["JAX_COMPILATION_CACHE_DIR"]
# every compilation is cached: most of the repeated ones take well under the 1 s default
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

ROOT = Path(__file__).resolve().parents[1]
HELPERS = ROOT / "tests" / "helpers"
BACKGROUND_TIMEOUT_S = 1800  # per job


class _Job:
    """One helper script run in the background; it prints its result as ``RESULT {json}``."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv, self.env = argv, env
        self.done = threading.Event()
        self.proc: subprocess.Popen | None = None

    def run(self, workdir: Path, stopped: threading.Event) -> None:
        """Run to the end (or until the session stops); output and exit code go to files in
        ``workdir`` (``returncode`` last, written atomically), which any process can read."""
        code = -1
        try:
            if stopped.is_set():
                return
            # output to files, not pipes: nobody reads a pipe while the suite runs
            with open(workdir / "stdout", "w") as out, open(workdir / "stderr", "w") as err:
                self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, env=self.env,
                                             cwd=ROOT)
                code = self.proc.wait(timeout=BACKGROUND_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001  (reported to the test that reads the job)
            with open(workdir / "stderr", "a") as err:
                err.write(f"\nbackground job failed: {exc!r}")
        finally:
            (workdir / "returncode.tmp").write_text(str(code))
            os.replace(workdir / "returncode.tmp", workdir / "returncode")
            self.done.set()


def _job_result(workdir: Path) -> dict:
    """The JSON result of the job run in ``workdir``; waits for it. Fails the calling test if
    the job failed."""
    deadline = time.monotonic() + BACKGROUND_TIMEOUT_S
    while not (workdir / "returncode").exists():
        assert time.monotonic() < deadline, "background job did not finish"
        time.sleep(0.5)
    code = int((workdir / "returncode").read_text())
    stdout = (workdir / "stdout").read_text() if (workdir / "stdout").exists() else ""
    stderr = (workdir / "stderr").read_text() if (workdir / "stderr").exists() else ""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert code == 0 and lines, stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


class _Background:
    """Helper subprocesses started when collection ends, one after the other in a thread (so
    at most one job, beside the suite, at a time), read by the tests that run last.

    Under pytest-xdist every worker collects the same tests; the first worker to claim the
    folder the controller made (``NQS_TEST_BACKGROUND_DIR``) runs the jobs, and the others
    read their result files from it."""

    def __init__(self) -> None:
        self.jobs: dict[str, _Job] = {}
        self.stopped = threading.Event()
        self.dir: Path | None = None
        self.owner = False

    def start(self, jobs: dict[str, list[str]], extra_xla_flags: dict[str, str],
              uncached: tuple[str, ...] = ()) -> None:
        """Start ``jobs`` (fixture name -> helper argv) unless already started. Each job has a
        compilation cache of its own, except those named in ``uncached``, which have none."""
        if self.jobs or self.dir is not None or not jobs:
            return
        shared = os.environ.get(_SHARED_ENV)
        if shared and os.environ.get("PYTEST_XDIST_WORKER"):
            self.dir = Path(shared)
            try:
                os.close(os.open(self.dir / "owner", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return  # another worker runs the jobs
        else:
            self.dir = Path(tempfile.mkdtemp(prefix="nqs-test-background-"))
        self.owner = True
        for name, argv in jobs.items():
            env = dict(os.environ)
            env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + extra_xla_flags.get(name, "")
            env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
            if name in uncached:
                env.pop("JAX_COMPILATION_CACHE_DIR", None)
            elif "JAX_COMPILATION_CACHE_DIR" in env:
                # a folder of its own: cache writes are not atomic, and this process and the
                # job may compile the same program at the same moment (the device count is
                # not part of the cache key)
                env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(env["JAX_COMPILATION_CACHE_DIR"],
                                                                name)
            self.jobs[name] = _Job([sys.executable, *argv], env)
        workdirs = {name: self.dir / name for name in self.jobs}
        for d in workdirs.values():
            d.mkdir()

        def run_all() -> None:
            for name, job in self.jobs.items():
                job.run(workdirs[name], self.stopped)

        threading.Thread(target=run_all, daemon=True).start()

    def read(self, name: str) -> dict:
        """The result of job ``name`` (a fixture name)."""
        assert self.dir is not None, f"background job {name!r} was not started"
        return _job_result(self.dir / name)

    def stop(self, wait: bool) -> None:
        """At the end of this process's session. A job still running is killed, unless
        ``wait`` (an xdist worker that ran the jobs and ended normally: other workers may
        still read them), then it is awaited. Start no more. The folder is removed here
        unless it is the controller's, which removes it when all workers are done."""
        if wait and self.owner:
            for job in self.jobs.values():
                job.done.wait(BACKGROUND_TIMEOUT_S)
        self.stopped.set()
        for job in self.jobs.values():
            if job.proc is not None and job.proc.poll() is None:
                job.proc.kill()
        if self.dir is not None and not os.environ.get("PYTEST_XDIST_WORKER"):
            shutil.rmtree(self.dir, ignore_errors=True)


_BACKGROUND = _Background()
_SHARED_ENV = "NQS_TEST_BACKGROUND_DIR"


def pytest_configure(config) -> None:
    """Under pytest-xdist, the controller makes the background jobs' folder before it starts
    the workers (they inherit the environment)."""
    if (getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput")
            and _SHARED_ENV not in os.environ):
        os.environ[_SHARED_ENV] = tempfile.mkdtemp(prefix="nqs-test-background-")
BACKGROUND_FIXTURES = ("multi_device", "two_processes")


def _background_rank(item) -> int:
    """0: no background job; k: reads the k-th job (jobs run in the order of the fixtures)."""
    used = [k + 1 for k, name in enumerate(BACKGROUND_FIXTURES)
            if name in getattr(item, "fixturenames", ())]
    return max(used, default=0)


def _jobs_of(items) -> dict[str, list[str]]:
    """Helper argv per background fixture the selected ``items`` use. The multi-device checks
    are the union, in a fixed order, of ``MULTI_DEVICE_CHECKS`` of the modules that use it."""
    checks: list[str] = []
    jobs: dict[str, list[str]] = {}
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "multi_device" in names:
            for check in getattr(getattr(item, "module", None), "MULTI_DEVICE_CHECKS", ()):
                if check not in checks:
                    checks.append(check)
        if "two_processes" in names:
            jobs["two_processes"] = [str(HELPERS / "two_process_check.py")]
    if checks:
        jobs = {"multi_device": [str(HELPERS / "multi_device_check.py"), *checks], **jobs}
    return jobs


# Test files that cost the most CPU (measured with NQS_TEST_TIMES), most first: a scheduling
# hint only. pytest-xdist hands whole files to the workers in collection order
# (``--no-loadscope-reorder`` in pyproject.toml); the longest first leaves short files to fill
# the end of the run evenly, rather than one long file running alone at the end.
HEAVY_FIRST = (
    "test_psiformer.py", "test_ecp.py", "test_autoregressive.py", "test_molecule_vmc.py",
    "test_fermion_observables.py", "test_backflow.py", "test_realspace_cli.py",
    "test_realspace.py", "test_lapnet.py", "test_reduced_correlations.py", "test_packed_vmc.py",
    "test_driver.py", "test_dtype.py", "test_second_quantized.py", "test_vmc.py",
    "test_sampling.py", "test_gcnn.py", "test_observables_paths.py", "test_rbm.py",
    "test_spin_packed_local_energy.py", "test_observables_driver.py", "test_spin_observables.py",
    "test_load_state.py", "test_robust.py", "test_state.py", "test_provenance.py",
    "test_spin_hamiltonians.py", "test_chem_reference.py", "test_precision_hooks.py",
    "test_connected_rule.py", "test_spring.py", "test_realspace_forces.py",
    "test_realspace_observables.py", "test_packed_local_energy.py", "test_observe_cli.py",
    "test_netket_interop.py", "test_exact_metric.py", "test_vit.py", "test_cli.py",
)


def pytest_collection_modifyitems(session, config, items) -> None:
    """Files whose tests wait for a background job go last, in the order the jobs finish, and
    those tests last in their file; the other files heaviest first (``HEAVY_FIRST``), then in
    collection order."""
    file_rank: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        file_rank[path] = max(file_rank.get(path, 0), _background_rank(item))
    position = {path: k for k, path in enumerate(file_rank)}
    heavy = {name: k for k, name in enumerate(HEAVY_FIRST)}

    def key(item) -> tuple[int, int, int, int]:
        path = item.nodeid.split("::", 1)[0]
        return (file_rank[path], heavy.get(Path(path).name, len(heavy)), position[path],
                _background_rank(item))

    items.sort(key=key)


def pytest_collection_finish(session) -> None:
    """Start the background jobs as soon as the selected tests are known."""
    if session.config.option.collectonly:
        return
    # the two jax.distributed processes compile the same programs at the same moment: they
    # gain nothing from the cache, and its writes are not atomic (one could read the other's
    # half-written entry)
    _BACKGROUND.start(_jobs_of(session.items),
                      {"multi_device": " --xla_force_host_platform_device_count=4"
                       # the default emitters: the 1- vs 4-device bounds (1e-12) were set with them
                       " --xla_cpu_use_fusion_emitters=true"},
                      uncached=("two_processes",))


def pytest_sessionfinish(session, exitstatus) -> None:
    """Stop the background jobs and remove this session's compilation cache (and, in the
    xdist controller, the background jobs' folder)."""
    _BACKGROUND.stop(wait=exitstatus == 0)
    if not hasattr(session.config, "workerinput") and os.environ.get(_SHARED_ENV):
        shutil.rmtree(os.environ[_SHARED_ENV], ignore_errors=True)
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
                  "cpu_s": round(time.process_time() - cpu, 3), "load": os.getloadavg()[0],
                  "worker": os.environ.get("PYTEST_XDIST_WORKER"), "end": round(time.time(), 1)}
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


@pytest.fixture(scope="session")
def multi_device() -> dict:
    """Results of the 4-device checks (tests/helpers/multi_device_check.py) as one dict."""
    return _BACKGROUND.read("multi_device")


@pytest.fixture(scope="session")
def two_processes() -> dict:
    """A spin run split over two ``jax.distributed`` processes
    (tests/helpers/two_process_check.py): exit codes, output flags and its result file."""
    return _BACKGROUND.read("two_processes")


@pytest.fixture(scope="session")
def hf_fitted_ferminet():
    """Factory ``make(geometry, n_walkers, n_sample_steps)`` for two-electron systems (one
    electron of each spin): a tiny FermiNet (2 x (8, 4), one determinant) pretrained 60 steps on
    the STO-3G Hartree-Fock orbitals, burnt in, and Metropolis samples of it. Returns
    ``(atoms, apply, pretrain_result, positions [T, W, 2, 3])`` (bohr)."""

    def make(geometry: str, n_walkers: int, n_sample_steps: int):
        import jax

        from hamiltonians.realspace import make_atoms
        from hamiltonians.realspace_observables import sample_positions
        from nqs.models.ferminet import make_ferminet, make_ferminet_orbitals
        from nqs.realspace.mcmc import burn_in, init_walkers, make_mcmc
        from nqs.realspace.pretrain import pretrain

        atoms = make_atoms(geometry)
        kw = dict(layers=((8, 4), (8, 4)), n_determinants=1)
        init, apply = make_ferminet(atoms, 1, 1, **kw)
        orbitals = make_ferminet_orbitals(atoms, 1, 1, **kw)
        res = pretrain(jax.random.PRNGKey(2), init(jax.random.PRNGKey(0)), atoms, orbitals,
                       apply, init_walkers(jax.random.PRNGKey(1), atoms, n_walkers), n_steps=60,
                       basis="sto-3g", learning_rate=2e-2)
        mc_init, step = make_mcmc(apply, n_steps=10)
        state = mc_init(res.params, res.walkers, 0.3)
        state, _ = burn_in(jax.random.PRNGKey(3), jax.jit(step), res.params, state, 10)
        r = sample_positions(jax.random.PRNGKey(4), res.params, apply, state,
                             n_steps=n_sample_steps, mcmc_steps=5)
        return atoms, apply, res, r

    return make
