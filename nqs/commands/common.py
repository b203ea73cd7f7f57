"""Options every ``nqs`` subcommand shares: devices and processes, memory, precision.

    --chunk-size {auto,none,N}     samples / walkers per device evaluated at a time
    --coordinator-address HOST:PORT --num-processes N --process-id I    several processes
    --distributed-auto             let jax.distributed.initialize() find SLURM / Open MPI
    --dtype {float64,float32}      network precision (spin, molecule, bench-fci)

Every device JAX sees is used (samples split over them); see docs/scaling.md.
"""

from __future__ import annotations

import argparse

from nqs.cli import positive_int


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
                   "estimate of the memory per sample), none, or a number (default: auto)")
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


def add_dtype_option(p: argparse.ArgumentParser) -> None:
    """Add ``--dtype`` (network precision of the discrete engine, :mod:`nqs.precision`)."""
    from nqs.precision import DTYPES

    p.add_argument("--dtype", choices=DTYPES, default="float64",
                   help="precision of the network: float32 evaluates it (and the RBM's cached "
                   "tables) in float32 / complex64 from a float64 master copy of the "
                   "parameters; log psi, determinants, local energies, statistics, gradients "
                   "and the SR solve stay float64 (default: float64)")


def setup_parallel(args: argparse.Namespace) -> None:
    """Join a multi-process run if the flags ask for one (before any computation)."""
    from nqs.parallel import initialize_distributed

    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id,
                           auto=args.distributed_auto)


def is_main() -> bool:
    """Whether this process writes the result files (process 0)."""
    from nqs.parallel import is_main_process

    return is_main_process()
