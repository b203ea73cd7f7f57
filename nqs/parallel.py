"""Data parallelism over every device JAX sees, several hosts, and bounded memory.

One code path serves one device and many. A :class:`jax.sharding.Mesh` with one axis,
``"samples"``, spans all devices (of every process); the per-sample arrays (Markov chains,
walkers, samples, local energies, Jacobian rows) are sharded along their leading axis with
``NamedSharding(mesh, P("samples"))`` and everything else (parameters, optimizer state, keys,
scalars) is replicated. The steps are ordinary ``jax.jit`` functions: XLA's SPMD partitioner
turns the sums over samples (energy, gradient, ``J^T J``, ``J J^T``, KFAC's curvature blocks)
into local sums plus an all-reduce, so the estimators are written once, for the global batch.
With one device the mesh has one entry and every constraint is a no-op.

Several hosts (processes) join through :func:`initialize_distributed`
(``jax.distributed.initialize``) before any computation; the mesh then holds the devices of
all processes, every process runs the same program on the same host data (all of it is
derived from the seed), and only process 0 writes files (:func:`is_main_process`).

Memory: :func:`chunked_map` evaluates a per-sample function over the local rows of each device
in chunks (``lax.map`` over chunks, ``vmap`` inside), and :func:`auto_chunk_size` picks a chunk
from the memory a device has (``memory_stats()['bytes_limit']`` on accelerators, the available
RAM on the CPU) and a per-sample estimate from XLA's compiled memory analysis.
"""

from __future__ import annotations

import functools
import os
import resource
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nqs.errors import InputError

SAMPLE_AXIS = "samples"
"""Name of the single mesh axis, along which samples / walkers are sharded."""

PyTree = Any


# --------------------------------------------------------------------------------------------
# Several processes


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
) -> bool:
    """Join a multi-process run through ``jax.distributed.initialize`` (before any computation).

    Args:
        coordinator_address: ``HOST:PORT`` of process 0.
        num_processes, process_id: size of the run and the rank of this process.
        auto: no explicit values: let JAX detect the cluster (SLURM, Open MPI, ...).

    Returns:
        True if ``jax.distributed.initialize`` was called, False for a single-process run.

    Raises:
        InputError: an incomplete or inconsistent set of values.
    """
    explicit = (coordinator_address, num_processes, process_id)
    if auto:
        if any(v is not None for v in explicit):
            raise InputError("--distributed-auto takes no --coordinator-address, "
                             "--num-processes or --process-id")
        _cpu_collectives()
        jax.distributed.initialize()
        return True
    if all(v is None for v in explicit):
        return False
    if any(v is None for v in explicit):
        raise InputError("a multi-process run needs all of --coordinator-address HOST:PORT, "
                         "--num-processes N and --process-id I")
    assert coordinator_address is not None and num_processes is not None
    assert process_id is not None
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--coordinator-address must be HOST:PORT, got {coordinator_address!r}")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise InputError(f"--process-id must be in [0, {num_processes}), got {process_id}")
    if num_processes == 1:
        return False
    _cpu_collectives()
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    return True


def _cpu_collectives() -> None:
    # CPU devices of different processes talk through gloo; the setting only matters on CPU
    # and must be in place before the backend starts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def is_main_process() -> bool:
    """True on process 0 (the only one that writes logs, results and checkpoints)."""
    return jax.process_index() == 0


def device_info() -> dict[str, Any]:
    """``n_devices``, ``n_processes``, ``n_local_devices``, ``platform`` (for result files)."""
    return {
        "n_devices": jax.device_count(),
        "n_processes": jax.process_count(),
        "n_local_devices": jax.local_device_count(),
        "platform": jax.devices()[0].platform,
    }


# --------------------------------------------------------------------------------------------
# Mesh and shardings


def without_global_mesh(fn: Callable) -> Callable:
    """Run ``fn`` with no global mesh set (restored afterwards).

    ``import netket`` sets a global one-axis mesh named ``"S"``; eager operations on arrays
    sharded over our own ``"samples"`` mesh then fail with "Mesh for all inputs should be
    equal". The drivers shard explicitly over their own mesh, so they run without it.
    """

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with jax.sharding.set_mesh(None):
            return fn(*args, **kwargs)

    return wrapped


def make_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh (``"samples"``) over ``devices`` (default: every device of every process)."""
    devs = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devs), (SAMPLE_AXIS,))


def n_shards(mesh: Mesh | None) -> int:
    """Number of devices the sample axis is split over (1 without a mesh)."""
    return 1 if mesh is None else int(mesh.devices.size)


def sample_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the devices, other axes whole."""
    return NamedSharding(mesh, P(SAMPLE_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """The whole array on every device."""
    return NamedSharding(mesh, P())


def check_divisible(n: int, mesh: Mesh | None, what: str) -> None:
    """Raise :class:`InputError` unless ``n`` splits evenly over the devices of ``mesh``."""
    d = n_shards(mesh)
    if n % d != 0:
        raise InputError(f"{what} ({n}) must be divisible by the number of devices ({d})")


def constrain_samples(tree: PyTree, mesh: Mesh | None) -> PyTree:
    """Inside ``jit``: shard the leading (sample) axis of every leaf over ``mesh``.

    A no-op without a mesh, and for leaves whose leading axis does not split evenly.
    """
    if mesh is None:
        return tree
    d = n_shards(mesh)

    def one(x: jax.Array) -> jax.Array:
        if x.ndim == 0 or x.shape[0] % d != 0:
            return x
        return jax.lax.with_sharding_constraint(x, sample_sharding(mesh))

    return jax.tree_util.tree_map(one, tree)


def tree_shardings(tree: PyTree, mesh: Mesh, n_rows: int | None) -> PyTree:
    """Shardings for ``tree``: leaves with leading dimension ``n_rows`` are split along it
    (walkers, chains), all others replicated. ``n_rows=None`` replicates everything."""
    d = n_shards(mesh)

    def one(x: Any) -> NamedSharding:
        shape = np.shape(x)
        if n_rows is not None and len(shape) >= 1 and shape[0] == n_rows and n_rows % d == 0:
            return sample_sharding(mesh)
        return replicated(mesh)

    return jax.tree_util.tree_map(one, tree)


def put(tree: PyTree, shardings: PyTree) -> PyTree:
    """Place host (or device) values on the mesh with the given shardings.

    Every process must pass the same values (they all derive from the seed or a checkpoint):
    each keeps the shards of its own devices.
    """
    def one(x: Any, s: NamedSharding) -> jax.Array:
        if isinstance(x, jax.Array) and (jax.process_count() == 1 or not x.is_fully_addressable):
            return jax.device_put(x, s)  # already on devices: reshard
        # host values (the same on every process): each process fills its own shards
        return jax.device_put(np.asarray(x), s)

    return jax.tree_util.tree_map(one, tree, shardings)


def gather(tree: PyTree) -> PyTree:
    """Whole host (numpy) arrays of a possibly sharded, possibly multi-process ``tree``.

    Checkpoints store these, so they load on any number of devices and processes. Every
    process must call it (with several processes it is a collective).
    """
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        def one(x: Any) -> Any:
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                if x.is_fully_replicated:
                    return np.asarray(x.addressable_data(0))
                return np.asarray(multihost_utils.process_allgather(x, tiled=True))
            return x

        tree = jax.tree_util.tree_map(one, tree)
    return jax.device_get(tree)


def process_zero_decides(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (e.g. a clock-based stop, which each process would
    otherwise read from its own clock and could disagree on, leaving a collective half-joined)."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


# --------------------------------------------------------------------------------------------
# Chunked evaluation


def chunked_map(
    fn: Callable[[Any, jax.Array], Any],
    chunk_size: int | None,
    mesh: Mesh | None = None,
) -> Callable[[Any, Any], Any]:
    """``fn(params, x)`` of ONE sample mapped over ``xs`` [n, ...] (leading axis sharded).

    Without ``chunk_size`` it is ``vmap``. With it, each device evaluates its own ``n / D``
    rows ``chunk_size`` at a time: the rows are viewed as ``[D, n/D]`` (device axis first, so
    no data moves), padded per device to a multiple of the chunk, and ``lax.map`` runs over the
    chunks with all D devices working on one chunk each in every iteration. The chunks are
    equal, of at most ``chunk_size`` rows, so fewer rows than chunks are padding (2048 rows at
    ``chunk_size`` 2032 are two chunks of 1024, not 4064 rows). ``xs`` may be a pytree of
    arrays sharing the leading axis.
    """
    vfn = jax.vmap(fn, in_axes=(None, 0))
    if chunk_size is None:
        return vfn
    if chunk_size < 1:
        raise InputError(f"chunk size must be a positive integer, got {chunk_size}")
    d = n_shards(mesh)

    def mapped(params: Any, xs: Any) -> Any:
        leaves = jax.tree_util.tree_leaves(xs)
        n = leaves[0].shape[0]
        if n % d != 0:
            raise InputError(f"{n} samples must be divisible by the number of devices ({d})")
        m = n // d
        n_chunks = -(-m // min(chunk_size, m))
        c = -(-m // n_chunks)  # equal chunks: fewer than n_chunks padded rows, not up to c - 1
        pad = n_chunks * c - m

        def split(x: jax.Array) -> jax.Array:
            x = x.reshape((d, m) + x.shape[1:])
            if pad:  # repeat each device's last row: cheap, finite, sliced off below
                x = jnp.concatenate([x, jnp.repeat(x[:, -1:], pad, axis=1)], axis=1)
            x = x.reshape((d, n_chunks, c) + x.shape[2:])
            return jnp.swapaxes(x, 0, 1)  # [n_chunks, d, c, ...]

        def body(x: Any) -> Any:
            x = _constrain_axis(x, mesh, 0)
            out = jax.vmap(vfn, in_axes=(None, 0))(params, x)  # [d, c, ...]
            return _constrain_axis(out, mesh, 0)

        out = jax.lax.map(body, jax.tree_util.tree_map(split, xs))  # [n_chunks, d, c, ...]

        def merge(y: jax.Array) -> jax.Array:
            y = jnp.swapaxes(y, 0, 1).reshape((d, n_chunks * c) + y.shape[3:])
            return y[:, :m].reshape((n,) + y.shape[2:])

        return constrain_samples(jax.tree_util.tree_map(merge, out), mesh)

    return mapped


def _constrain_axis(tree: PyTree, mesh: Mesh | None, axis: int) -> PyTree:
    if mesh is None or n_shards(mesh) == 1:
        return tree
    spec = P(*([None] * axis + [SAMPLE_AXIS]))
    return jax.tree_util.tree_map(
        lambda x: jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec)), tree
    )


# --------------------------------------------------------------------------------------------
# Memory


def device_memory_bytes(device: Any | None = None) -> tuple[int, str]:
    """``(bytes, source)`` a device may use: ``memory_stats()['bytes_limit']`` where the backend
    reports it (GPU, TPU), else the available RAM shared by the local CPU devices."""
    device = device if device is not None else jax.local_devices()[0]
    stats = _memory_stats(device)
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), "bytes_limit"
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        avail = 4 << 30
    return int(avail) // max(jax.local_device_count(), 1), "available RAM / local devices"


def _memory_stats(device: Any) -> dict | None:
    try:
        return device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without the API raise various errors
        return None


def peak_memory() -> dict[str, Any]:
    """Peak memory of this process so far, for result files.

    ``{"peak_memory_bytes": int, "peak_memory_source": str}``: the largest
    ``memory_stats()['peak_bytes_in_use']`` of the local devices where the backend reports it,
    else the process's maximum resident set size (``"process max RSS"``; on the CPU the devices
    live in host RAM).
    """
    peaks = [(_memory_stats(d) or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
    peaks = [int(p) for p in peaks if p is not None]
    if peaks:
        return {"peak_memory_bytes": max(peaks), "peak_memory_source": "device peak_bytes_in_use"}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss = rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB
    return {"peak_memory_bytes": int(rss), "peak_memory_source": "process max RSS"}


def bytes_per_sample(fn: Callable[[Any, jax.Array], Any], params: Any, x_one: Any,
                     probe: int = 8) -> int:
    """Estimated device memory per sample of ``vmap(fn)``: XLA's memory analysis of the
    function compiled for ``probe`` samples (temporaries + outputs), divided by ``probe``.

    The fixed part of the program is counted per sample too, so the estimate errs high.
    """
    xs = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct((probe,) + np.shape(a), jnp.result_type(a)), x_one
    )
    ps = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)),
                                params)
    compiled = jax.jit(jax.vmap(fn, in_axes=(None, 0))).lower(ps, xs).compile()
    mem = compiled.memory_analysis()
    if mem is None:  # pragma: no cover - backends without the analysis
        return 0
    total = int(mem.temp_size_in_bytes) + int(mem.output_size_in_bytes)
    return max(total // probe, 1)


def auto_chunk_size(
    per_sample_bytes: int,
    n_samples: int,
    mesh: Mesh | None,
    budget_bytes: int | None = None,
    fraction: float = 0.5,
) -> int | None:
    """A chunk (per device) so that ``chunk * per_sample_bytes`` fits ``fraction`` of the
    device memory; None (no chunking) when all of a device's ``n_samples / D`` rows fit.

    The chunk is rounded down to a power of two (fewer distinct shapes to compile).
    """
    if budget_bytes is None:
        budget_bytes, _ = device_memory_bytes()
    per_device = -(-n_samples // n_shards(mesh))
    allowed = int(fraction * budget_bytes) // max(int(per_sample_bytes), 1)
    if allowed >= per_device:
        return None
    return 1 << max(int(allowed).bit_length() - 1, 0)


def auto_chunk(fn: Callable[[Any, jax.Array], Any], params: Any, x_one: Any, n_samples: int,
               mesh: Mesh | None, row_bytes: int = 0) -> int | None:
    """Rows per device per chunk that fit the device memory (None: no chunking needed), from
    XLA's memory estimate of the per-sample ``fn`` (the local energy; compiled for a few
    samples like ``x_one`` and measured) and ``row_bytes``, a bound on a log-derivative row
    (no compile), whichever is larger, for ``n_samples`` rows split over ``mesh``."""
    per_sample = max(bytes_per_sample(fn, params, x_one), int(row_bytes))
    return auto_chunk_size(per_sample, n_samples, mesh)


def run_record(mesh: Mesh, chunk_size: int | None) -> dict[str, Any]:
    """The result fields describing where a run ran: ``n_devices``, ``n_processes``,
    ``chunk_size`` and the peak memory (:func:`peak_memory`)."""
    return {"n_devices": int(mesh.devices.size), "n_processes": device_info()["n_processes"],
            "chunk_size": chunk_size, **peak_memory()}


def process_echo(echo: Callable[[str], None] | None) -> Callable[[str], None]:
    """Progress printer: ``echo`` (default: stderr) on process 0, silent on the others."""
    if not is_main_process():
        return lambda msg: None
    return echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
