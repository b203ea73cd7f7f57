"""``nqs bench-fci --realspace``: the options and the run of the real-space benchmark
(:mod:`nqs.bench.realspace`), registered on the ``bench-fci`` parser by
:mod:`nqs.commands.molecule`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from nqs.bench.fci import SUITES
from nqs.bench.realspace import (
    DEFAULT_SUITE,
    NOTE,
    RealSpaceJob,
    RealSpaceSettings,
    job_from_text,
    markdown_table,
    run_realspace_benchmark,
)
from nqs.commands.common import (
    fmt_atoms,
    is_main,
    nonnegative_float,
    positive_float,
    positive_int,
    run_record,
)
from nqs.commands.realspace import check_pretrain_basis, check_sizes
from nqs.errors import InputError


def add_options(p: argparse.ArgumentParser) -> None:
    """The ``--realspace`` options of ``nqs bench-fci`` (``--steps``, ``--basis``, ``--seed``,
    ``--molecule``, ``--out``, ``--charge``, ``--spin``, ``--unit`` are shared)."""
    g = p.add_argument_group(
        "real space (--realspace)",
        "Run the molecules in real space with a FermiNet instead of a basis-set network, beside "
        "HF, CCSD(T) and FCI in --basis (all electrons) and the exact energy where tabulated. "
        "--seed applies; the optimization steps are --rs-steps (--steps is the basis-set "
        "runs'); --frozen-core, --cas, --fcidump do not apply.",
    )
    g.add_argument("--realspace", action="store_true",
                   help="real-space FermiNet benchmark (default molecules: H2 at R = 1.4 bohr, "
                   "LiH at R = 3.015 bohr, the geometries of the tabulated exact energies)")
    g.add_argument("--walkers", type=positive_int, default=256,
                   help="real space: walkers (default: 256)")
    g.add_argument("--rs-layers", type=positive_int, default=2,
                   help="real space: FermiNet layers (default: 2)")
    g.add_argument("--rs-hidden", type=positive_int, nargs=2, default=[32, 8],
                   metavar=("D1", "D2"),
                   help="real space: one-/two-electron stream widths (default: 32 8)")
    g.add_argument("--rs-determinants", type=positive_int, default=4,
                   help="real space: determinants (default: 4)")
    g.add_argument("--rs-steps", type=positive_int, default=200,
                   help="real space: optimization steps (default: 200)")
    g.add_argument("--rs-optimizer", choices=("kfac", "adam", "sr"), default="sr",
                   help="real space: optimizer; sr with --rs-momentum is SPRING (default: sr)")
    g.add_argument("--rs-momentum", type=nonnegative_float, default=0.9,
                   help="real space: SPRING momentum for --rs-optimizer sr, 0 for plain minSR "
                   "(default: 0.9)")
    g.add_argument("--rs-lr", type=positive_float, default=None,
                   help="real space: learning rate (default: the optimizer's, as nqs realspace)")
    g.add_argument("--mcmc-steps", type=positive_int, default=10,
                   help="real space: Metropolis moves per step and per measurement (default: 10)")
    g.add_argument("--eval-steps", type=positive_int, default=100,
                   help="real space: measurements of the final evaluation, >= 2 (default: 100)")
    g.add_argument("--pretrain-steps", type=int, default=200,
                   help="real space: Hartree-Fock pretraining steps (default: 200)")
    g.add_argument("--laplacian", choices=("folx", "hessian"), default="folx",
                   help="real space: kinetic energy by forward Laplacian or Hessian trace "
                   "(default: folx)")


def settings_from_args(args: argparse.Namespace) -> RealSpaceSettings:
    """Validated :class:`RealSpaceSettings` from the parsed options."""
    if args.eval_steps < 2:
        raise InputError(f"--eval-steps must be >= 2, got {args.eval_steps}")
    if args.pretrain_steps < 0:
        raise InputError(f"--pretrain-steps must be >= 0, got {args.pretrain_steps}")
    if not 0.0 <= args.rs_momentum < 1.0:
        raise InputError(f"--rs-momentum must be in [0, 1), got {args.rs_momentum}")
    return RealSpaceSettings(
        layers=args.rs_layers, hidden=(args.rs_hidden[0], args.rs_hidden[1]),
        n_determinants=args.rs_determinants, optimizer=args.rs_optimizer,
        learning_rate=args.rs_lr, momentum=args.rs_momentum, steps=args.rs_steps,
        walkers=args.walkers,
        mcmc_steps=args.mcmc_steps, eval_steps=args.eval_steps,
        pretrain_steps=args.pretrain_steps, laplacian=args.laplacian, seed=args.seed,
        time_limit=args.time_limit,
    )


def jobs_from_args(args: argparse.Namespace) -> list[RealSpaceJob]:
    """The molecules: ``--molecule`` entries, else ``--suite`` names, else :data:`DEFAULT_SUITE`."""
    if args.fcidump:
        raise InputError("--realspace needs geometries: --fcidump does not apply")
    if args.frozen_core or args.cas:
        raise InputError("--realspace compares all-electron energies: --frozen-core and --cas "
                         "do not apply")
    spin = None if args.spin == 0 else args.spin  # 0 (the default) means the lowest spin
    jobs = [job_from_text(t, args.unit, args.charge, spin) for t in args.molecule]
    if args.suite is not None or not jobs:
        names = SUITES[args.suite] if args.suite is not None else DEFAULT_SUITE
        jobs = [job_from_text(n, "angstrom", args.charge, spin) for n in names] + jobs
    return jobs


def run_from_args(args: argparse.Namespace) -> int:
    """``nqs bench-fci --realspace``: table on stdout, results.{json,md} in ``--out``."""
    from hamiltonians.realspace import make_atoms
    from nqs.io import write_json_atomic, write_text_atomic
    from nqs.rundir import open_run_dir, unique_names

    settings = settings_from_args(args)
    jobs = jobs_from_args(args)
    names = unique_names([job.name for job in jobs])
    jobs = [replace(job, name=n) for job, n in zip(jobs, names, strict=True)]
    if args.resume:
        raise InputError("--resume does not apply to bench-fci --realspace (each molecule "
                         "starts afresh); use nqs realspace --resume for one molecule")
    for job in jobs:
        atoms = make_atoms(job.geometry, charge=job.charge, spin=job.spin)
        check_pretrain_basis(args.basis, list(atoms.symbols))  # the basis-set references
        if settings.pretrain_steps > 0:
            check_pretrain_basis(settings.pretrain_basis, list(atoms.symbols))
        check_sizes(args, atoms.n_electrons, settings.walkers, settings.layers, settings.hidden,
                    settings.n_determinants, settings.eval_steps, settings.optimizer)
    with open_run_dir(args.out, args.resume, args.overwrite, is_main()):
        for job in jobs:
            atoms = make_atoms(job.geometry, charge=job.charge, spin=job.spin)
            print(f"{job.name}: geometry (bohr) {fmt_atoms(atoms.symbols, atoms.positions)}",
                  flush=True)
        records = run_realspace_benchmark(jobs, settings, args.basis, args.out,
                                          lambda m: print(m, flush=True))
        common = run_record(args)
        for job, record in zip(jobs, records, strict=True):
            record["config"] = common["config"]
            record["provenance"] = common["provenance"] | {
                "geometry": {"atoms": job.geometry, "unit": "bohr"}}
        table = markdown_table(records)
        print("\n" + table + "\n\n" + NOTE)
        write_json_atomic(args.out / "results.json", records)
        write_text_atomic(args.out / "results.md", table + "\n\n" + NOTE + "\n")
    print(f"wrote {args.out}/results.json, results.md", file=sys.stderr)
    return 0
