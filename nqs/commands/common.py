"""Options every ``nqs`` subcommand shares: devices and processes, memory, precision.

    --chunk-size {auto,none,N}     samples / walkers per device evaluated at a time
    --coordinator-address HOST:PORT --num-processes N --process-id I    several processes
    --distributed-auto             let jax.distributed.initialize() find SLURM / Open MPI
    --dtype {float64,float32}      network precision (spin, molecule, bench-fci)
    --resume / --overwrite         continue the run in --out / replace its files (else an
                                   --out holding another run's files is refused)
    --checkpoint-every K           checkpoint period (also written at the end and on a signal)

Also the checks every command runs before touching ``--out``: :func:`check_memory` (a run that
cannot fit one device is refused in one line) and :func:`write_plot` (a failed plot is a
warning); the argparse types (:func:`positive_int`, ...) of every option. The ``nqs`` parser
(:mod:`nqs.cli`) is built from the commands; no command imports :mod:`nqs.cli`.

Every device JAX sees is used (samples split over them); see docs/scaling.md.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, TypeVar

from nqs.plotting import write_plot  # noqa: F401  (re-exported: every command writes plots)

_T = TypeVar("_T")


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a random seed, an integer in [-2**63, 2**63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [-2**63, 2**63), got {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite float (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value




def chunk_size_arg(text: str) -> int | str | None:
    """argparse type: ``auto``, ``none`` or a positive integer."""
    low = text.strip().lower()
    if low == "auto":
        return "auto"
    if low in ("none", "off", "0"):
        return None
    try:
        value = int(low)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'none' or a positive integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_parallel_options(p: argparse.ArgumentParser) -> None:
    """Add ``--chunk-size`` and the multi-process flags to a subcommand."""
    g = p.add_argument_group("devices, processes and memory (see docs/scaling.md)")
    g.add_argument("--chunk-size", type=chunk_size_arg, default="auto",
                   help="samples (walkers) per device whose local energies and gradients are "
                   "evaluated at a time, to bound memory: auto (fit the device memory from an "
                   "estimate of the memory per sample; on a CPU cache-sized blocks: nqs spin "
                   "with Markov chains 64, nqs realspace up to 8 MB of local-energy "
                   "intermediates), none, or a number (default: auto)")
    g.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                   help="multi-process run: address of process 0 (with --num-processes and "
                   "--process-id)")
    g.add_argument("--num-processes", type=positive_int, default=None, metavar="N",
                   help="multi-process run: number of processes")
    g.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="multi-process run: rank of this process, 0..N-1")
    g.add_argument("--distributed-auto", action="store_true",
                   help="multi-process run configured by the cluster (SLURM, Open MPI): "
                   "jax.distributed.initialize() with no arguments")


def add_dtype_option(p: argparse.ArgumentParser, auto: str | None = None) -> None:
    """Add ``--dtype`` (network precision of the discrete engine, :mod:`nqs.precision`);
    ``auto``: the words for an ``auto`` choice, then the default (resolved by the command)."""
    from nqs.precision import DTYPES

    p.add_argument("--dtype", choices=(*DTYPES, "auto") if auto else DTYPES,
                   default="auto" if auto else "float64",
                   help="precision of the network: float32 evaluates it (and the RBM's cached "
                   "tables) in float32 / complex64 from a float64 master copy of the "
                   "parameters; log psi, determinants, local energies, statistics, gradients "
                   "and the SR solve stay float64 (default: "
                   + (f"auto, {auto})" if auto else "float64)"))


def setup_parallel(args: argparse.Namespace) -> None:
    """Join a multi-process run if the flags ask for one (before any computation); failing to
    find a cluster or to reach the coordinator is one line (:class:`InputError`)."""
    from nqs.errors import InputError
    from nqs.parallel import initialize_distributed

    try:
        initialize_distributed(args.coordinator_address, args.num_processes, args.process_id,
                               auto=args.distributed_auto)
    except InputError:
        raise
    except (ValueError, RuntimeError) as err:
        msg = " ".join(str(err).split())[:300] or type(err).__name__
        what = "--distributed-auto" if args.distributed_auto else "--coordinator-address"
        raise InputError(f"{what}: cannot join a multi-process run: {msg}") from None


def is_main() -> bool:
    """Whether this process writes the result files (process 0)."""
    from nqs.parallel import is_main_process

    return is_main_process()


def add_time_limit_option(p: argparse.ArgumentParser, per: str = "") -> None:
    """Add ``--time-limit SECONDS`` (the drivers' ``time_limit``; ``per``: e.g. " per molecule")."""
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS",
                   help=f"stop the optimization{per} after the step that passes this many wall "
                   "seconds (checkpointed; the final evaluation follows and result.json records "
                   "stopped_by_time_limit; --resume continues). Default: no limit")


def add_run_dir_options(p: argparse.ArgumentParser, resume: bool = True,
                        checkpoint_every: int | None = 50) -> None:
    """Add ``--overwrite`` (and ``--resume``, ``--checkpoint-every``) to a subcommand."""
    if resume:
        p.add_argument("--resume", action="store_true",
                       help="continue from the checkpoint in --out (same options and seed; "
                       "the checkpoint records them and a mismatch is refused)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the previous run's files in --out (log, checkpoint, results, "
                   "plots; nothing else). Without it (or --resume) an --out holding another "
                   "run's files is refused")
    if checkpoint_every is not None:
        p.add_argument("--checkpoint-every", type=positive_int, default=checkpoint_every,
                       help="write a checkpoint every K steps (also at the end and on "
                       f"SIGINT / SIGTERM) (default: {checkpoint_every})")


def fmt_bytes(n: float) -> str:
    """``1.5 GiB`` etc."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def check_memory(parts: dict[str, tuple[float, str]]) -> None:
    """Refuse (:class:`InputError`, one line) a run whose estimated memory exceeds what one
    device may use (:func:`nqs.parallel.device_memory_bytes`). ``parts`` maps what needs the
    memory (parameters, samples, Jacobian, ...) to ``(bytes, the flags that change it)``; the
    message names the total, the largest part and its flags."""
    from nqs.errors import InputError
    from nqs.parallel import device_memory_bytes

    total = float(sum(b for b, _ in parts.values()))
    available, source = device_memory_bytes()
    if total > available:
        big = max(parts, key=lambda k: parts[k][0])
        size, flags = parts[big]
        raise InputError(
            f"the run needs about {fmt_bytes(total)} of memory ({big}: {fmt_bytes(size)}), "
            f"more than the {fmt_bytes(available)} one device has ({source}); reduce {flags}"
        )


def quiet(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)`` with PySCF's console chatter (warnings printed while loading a
    basis) captured, so a refused input prints only its one line."""
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def run_record(args: argparse.Namespace, geometry: dict | None = None) -> dict:
    """The ``"config"`` (every option, :mod:`nqs.commands.config`: ``--config`` reruns it) and
    ``"provenance"`` (command line, version, git commit, device, dtype, geometry with its unit:
    :mod:`nqs.provenance`) entries of a result file."""
    from nqs.commands.config import config_record
    from nqs.provenance import provenance

    return {"config": config_record(args),
            "provenance": provenance(getattr(args, "_nqs_argv", None),
                                     dtype=getattr(args, "dtype", None), geometry=geometry)}


def fmt_atoms(symbols: Any, positions: Any) -> str:
    """``"Li 0 0 0; H 0 0 3.015"`` from symbols and an ``[n, 3]`` array of positions."""
    return "; ".join(f"{s} " + " ".join(f"{float(x):.6g}" for x in pos)
                     for s, pos in zip(symbols, positions, strict=True))


def fmt_energy(value: float | None, digits: int = 8, missing: str = "not computed") -> str:
    """An energy for the console: ``-1.13728383`` or ``missing`` (never a raw ``None``)."""
    return missing if value is None else f"{value:.{digits}f}"
