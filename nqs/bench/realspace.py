"""Real-space benchmark: a FermiNet energy per molecule beside the basis-set references.

    records = run_realspace_benchmark(jobs, settings, basis="sto-3g", out_dir=Path("runs/x"))
    print(markdown_table(records))

For each molecule: HF, CCSD(T) and FCI in a Gaussian basis (PySCF, all electrons, same
geometry), the real-space VMC energy of a FermiNet (all electrons, no basis), and the exact
non-relativistic energy where ``docs/references.md`` tabulates one for that geometry. Energies
in Hartree, differences in mHa.

The basis-set FCI is exact only *within its basis*; the exact non-relativistic energy lies below
every basis-set FCI, so a real-space energy below E(FCI) is expected for a good wavefunction and
is no error. Real-space VMC is variational with respect to the exact energy: E(VMC) >= E(exact)
up to the statistical error.

``add_options`` / ``run_from_args`` hook the harness into ``nqs bench-fci --realspace``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nqs.errors import InputError

DEFAULT_SUITE: tuple[str, ...] = ("H2", "LiH")
"""Molecules of the default real-space run (both with a tabulated exact energy)."""

GEOMETRY_TOLERANCE_BOHR = 1e-4
"""Largest difference of interatomic distances for a geometry to match a tabulated one."""

NOTE = (
    "E(FCI) is exact only within the basis set, so it is NOT a lower bound for the real-space "
    "energy: the exact non-relativistic energy lies below every basis-set FCI, and a real-space "
    "E(VMC) below E(FCI) means the basis is incomplete, not that VMC failed. Real-space VMC is "
    "variational with respect to the exact energy: E(VMC) >= E(exact) up to the error bar."
)


@dataclass(frozen=True)
class RealSpaceJob:
    """One system: a geometry in bohr with its charge and spin (2S = n_alpha - n_beta)."""

    name: str
    geometry: str  # "Li 0 0 0; H 0 0 3.015", bohr
    charge: int = 0
    spin: int | None = None  # None: the lowest (0 or 1 by parity)


@dataclass(frozen=True)
class RealSpaceSettings:
    """The network and VMC run used for every molecule (small defaults: minutes on a CPU)."""

    layers: int = 2
    hidden: tuple[int, int] = (32, 8)
    n_determinants: int = 4
    envelope: str = "isotropic"
    optimizer: str = "sr"
    learning_rate: float | None = None  # None: the driver's default for the optimizer
    momentum: float = 0.9  # SPRING (optimizer "sr" only)
    steps: int = 200
    walkers: int = 256
    mcmc_steps: int = 10
    eval_steps: int = 100
    pretrain_steps: int = 200
    pretrain_basis: str = "ccpvdz"
    laplacian: str = "folx"
    seed: int = 0


def _presets():
    from nqs.commands.realspace import PRESETS  # the tabulated exact energies live there

    return PRESETS


def _distances(symbols: tuple[str, ...], positions: np.ndarray) -> list[tuple[str, str, float]]:
    """Sorted (symbol, symbol, distance) over atom pairs: invariant under rigid motions."""
    pairs = []
    for a, b in itertools.combinations(range(len(symbols)), 2):
        s = tuple(sorted((symbols[a], symbols[b])))
        pairs.append((s[0], s[1], float(np.linalg.norm(positions[a] - positions[b]))))
    return sorted(pairs)


def exact_reference(atoms) -> tuple[float | None, str | None]:
    """``(exact energy, source)`` when ``atoms`` (neutral, lowest spin) is a tabulated system
    at its tabulated geometry (interatomic distances within ``GEOMETRY_TOLERANCE_BOHR``, any
    orientation), else ``(None, None)``."""
    from hamiltonians.realspace import make_atoms

    if atoms.charge != 0 or atoms.spin != atoms.n_electrons % 2:
        return None, None
    mine = _distances(atoms.symbols, np.asarray(atoms.positions))
    for preset in _presets().values():
        ref = make_atoms(preset.geometry)
        if sorted(ref.symbols) != sorted(atoms.symbols):
            continue
        theirs = _distances(ref.symbols, np.asarray(ref.positions))
        if all(a[:2] == b[:2] and abs(a[2] - b[2]) < GEOMETRY_TOLERANCE_BOHR
               for a, b in zip(mine, theirs, strict=True)):
            return preset.exact_energy, preset.source
    return None, None


def job_from_text(text: str, unit: str = "angstrom", charge: int = 0,
                  spin: int | None = None) -> RealSpaceJob:
    """A job from ``NAME="ATOMS"``, a real-space preset name (He, H2, LiH, ...: its tabulated
    geometry) or a basis-set preset name (H2O, N2, ...: its geometry); ATOMS are in ``unit``."""
    from hamiltonians.molecule import PRESETS as BASIS_PRESETS
    from hamiltonians.realspace import ANGSTROM_TO_BOHR, parse_geometry

    if "=" in text:
        name, atoms_text = (s.strip() for s in text.split("=", 1))
        atoms_text = atoms_text.strip('"').strip("'")
        if not name:
            raise InputError(f"--molecule {text!r}: the name before '=' is empty")
    else:
        key = text.strip().lower()
        rs = {k.lower(): k for k in _presets()}
        basis = {k.lower(): k for k in BASIS_PRESETS}
        if key in rs:
            return RealSpaceJob(rs[key], _presets()[rs[key]].geometry, charge, spin)
        if key in basis:
            name, atoms_text, unit = basis[key], BASIS_PRESETS[basis[key]], "angstrom"
        else:
            name, atoms_text = "", text
    unit_l = unit.lower()
    if unit_l not in ("angstrom", "bohr"):
        raise InputError(f"unknown unit {unit!r}: use 'angstrom' or 'bohr'")
    scale = ANGSTROM_TO_BOHR if unit_l == "angstrom" else 1.0
    entries = parse_geometry(atoms_text)
    if not entries:
        raise InputError(f"--molecule {text!r}: no atoms")
    geometry = "; ".join(f"{s} {x * scale:.10g} {y * scale:.10g} {z * scale:.10g}"
                         for s, (x, y, z) in entries)
    name = name or "".join(s for s, _ in entries)
    return RealSpaceJob(name, geometry, charge, spin)


def basis_references(job: RealSpaceJob, basis: str, cache_dir: str | None = None) -> dict:
    """All-electron HF, CCSD(T) and FCI of ``job`` in ``basis`` (PySCF, cached), at the same
    geometry (bohr). A method that fails or is too large gives None."""
    from hamiltonians.chem_reference import reference_energies
    from hamiltonians.molecule import MoleculeSpec, validate
    from hamiltonians.realspace import make_atoms

    atoms = make_atoms(job.geometry, charge=job.charge, spin=job.spin)
    spec = MoleculeSpec(job.geometry, basis=basis, charge=job.charge, spin=atoms.spin,
                        unit="bohr", name=job.name)
    validate(spec)
    return reference_energies(spec, cache_dir=cache_dir)


def run_realspace_benchmark(
    jobs: list[RealSpaceJob],
    settings: RealSpaceSettings,
    basis: str = "sto-3g",
    out_dir: Path | None = None,
    echo: Callable[[str], None] = print,
    cache_dir: str | None = None,
) -> list[dict]:
    """Basis-set references and a real-space FermiNet run per job; one record per molecule
    (energies in Hartree, differences in mHa, times in seconds)."""
    from hamiltonians.realspace import make_atoms
    from nqs.realspace.driver import run_realspace

    records = []
    for job in jobs:
        atoms = make_atoms(job.geometry, charge=job.charge, spin=job.spin)
        exact, source = exact_reference(atoms)
        refs = basis_references(job, basis, cache_dir)
        echo(f"{job.name}: {atoms.n_alpha} alpha + {atoms.n_beta} beta electrons; "
             f"{basis}: E(HF) = {_fmt(refs.get('e_hf'))}, E(FCI) = {_fmt(refs.get('e_fci'))}; "
             f"exact = {_fmt(exact)}")
        sub = out_dir / job.name if out_dir is not None else None
        s = settings
        result = run_realspace(
            atoms, layers=(tuple(s.hidden),) * s.layers, n_determinants=s.n_determinants,
            envelope=s.envelope, optimizer=s.optimizer, learning_rate=s.learning_rate,
            momentum=s.momentum if s.optimizer == "sr" else 0.0,
            pretrain_steps=s.pretrain_steps, pretrain_basis=s.pretrain_basis, n_steps=s.steps,
            n_walkers=s.walkers, mcmc_steps=s.mcmc_steps, eval_steps=s.eval_steps,
            laplacian=s.laplacian, seed=s.seed, out_dir=sub, reference_energy=exact,
            reference_source=source, echo=echo, progress=False,
        )
        if sub is not None:
            from nqs.commands.common import write_plot

            write_plot(lambda sub=sub, job=job, s=s, result=result: result.plot(
                sub / "convergence.png", title=f"{job.name}: FermiNet / {s.optimizer}"),
                sub / "convergence.png")
        records.append(_record(job, atoms, basis, refs, exact, source, result, settings))
        echo(_summary_line(records[-1]))
    return records


def _diff_mha(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else (a - b) * 1e3


def _record(job, atoms, basis, refs, exact, source, result, settings) -> dict:
    e = result.energy
    return {
        "name": job.name,
        "geometry_bohr": job.geometry,
        "n_electrons": atoms.n_electrons,
        "spin": atoms.spin,
        "basis": basis,
        "e_hf": refs.get("e_hf"),
        "e_ccsd_t": refs.get("e_ccsd_t"),
        "e_fci": refs.get("e_fci"),
        "e_realspace": e,
        "e_realspace_error": result.energy_error,
        "e_exact": exact,
        "exact_source": source,
        "realspace_minus_exact_mha": _diff_mha(e, exact),
        "realspace_minus_fci_mha": _diff_mha(e, refs.get("e_fci")),
        "fci_minus_exact_mha": _diff_mha(refs.get("e_fci"), exact),
        "ansatz": f"FermiNet {settings.layers}x{tuple(settings.hidden)}, "
                  f"{settings.n_determinants} det",
        "optimizer": settings.optimizer,
        "momentum": settings.momentum if settings.optimizer == "sr" else 0.0,
        "n_parameters": result.n_parameters,
        "steps": result.steps,
        "walkers": result.n_walkers,
        "time_per_step_s": result.time_per_step_s,
        "wall_time_s": result.wall_time_s,
    }


def _fmt(value: float | None, digits: int = 6) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _summary_line(r: dict) -> str:
    return (f"  {r['name']}: E(real space) = {r['e_realspace']:.6f} +- "
            f"{r['e_realspace_error']:.1e}, - E(exact) = {_fmt(r['realspace_minus_exact_mha'], 2)}"
            f" mHa, - E(FCI/{r['basis']}) = {_fmt(r['realspace_minus_fci_mha'], 2)} mHa, "
            f"{r['wall_time_s']:.0f} s")


TABLE_COLUMNS = ("molecule", "electrons", "basis", "E(HF)", "E(CCSD(T))", "E(FCI)",
                 "E(real space)", "E(exact)", "real space - exact (mHa)",
                 "real space - FCI (mHa)", "FCI - exact (mHa)", "steps", "time s")


def markdown_table(records: list[dict]) -> str:
    """The real-space benchmark table in markdown (Hartree; differences in mHa)."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for r in records:
        lines.append(
            f"| {r['name']} | {r['n_electrons']} | {r['basis']} | {_fmt(r['e_hf'])} | "
            f"{_fmt(r['e_ccsd_t'])} | {_fmt(r['e_fci'])} | {r['e_realspace']:.6f} +- "
            f"{r['e_realspace_error']:.1e} | {_fmt(r['e_exact'])} | "
            f"{_fmt(r['realspace_minus_exact_mha'], 2)} | {_fmt(r['realspace_minus_fci_mha'], 2)} | "
            f"{_fmt(r['fci_minus_exact_mha'], 2)} | {r['steps']} | {r['wall_time_s']:.0f} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------ command line (bench-fci)


def add_options(p: argparse.ArgumentParser) -> None:
    """The ``--realspace`` options of ``nqs bench-fci`` (``--steps``, ``--basis``, ``--seed``,
    ``--molecule``, ``--out``, ``--charge``, ``--spin``, ``--unit`` are shared)."""
    from nqs.cli import nonnegative_float, positive_float, positive_int

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
    )


def jobs_from_args(args: argparse.Namespace) -> list[RealSpaceJob]:
    """The molecules: ``--molecule`` entries, else ``--suite`` names, else :data:`DEFAULT_SUITE`."""
    from nqs.bench.fci import SUITES

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
    from dataclasses import replace

    from nqs.commands.common import is_main
    from nqs.commands.realspace import check_pretrain_basis, check_sizes
    from nqs.io import write_json_atomic, write_text_atomic
    from nqs.rundir import open_run_dir, unique_names

    settings = settings_from_args(args)
    jobs = jobs_from_args(args)
    names = unique_names([job.name for job in jobs])
    jobs = [replace(job, name=n) for job, n in zip(jobs, names, strict=True)]
    from hamiltonians.realspace import make_atoms

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
        records = run_realspace_benchmark(jobs, settings, args.basis, args.out,
                                          lambda m: print(m, flush=True))
        table = markdown_table(records)
        print("\n" + table + "\n\n" + NOTE)
        write_json_atomic(args.out / "results.json", records)
        write_text_atomic(args.out / "results.md", table + "\n\n" + NOTE + "\n")
    print(f"wrote {args.out}/results.json, results.md", file=sys.stderr)
    return 0
