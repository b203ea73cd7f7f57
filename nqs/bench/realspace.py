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

The command line (``nqs bench-fci --realspace``) is :mod:`nqs.commands.bench_realspace`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nqs.errors import InputError
from nqs.plotting import write_plot

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
    time_limit: float | None = None  # wall seconds of optimization per molecule (None: none)


def _presets() -> dict:
    from hamiltonians.realspace import PRESETS  # the tabulated exact energies

    return PRESETS


def _distances(symbols: tuple[str, ...], positions: np.ndarray) -> list[tuple[str, str, float]]:
    """Sorted (symbol, symbol, distance) over atom pairs: invariant under rigid motions."""
    pairs = []
    for a, b in itertools.combinations(range(len(symbols)), 2):
        s = tuple(sorted((symbols[a], symbols[b])))
        pairs.append((s[0], s[1], float(np.linalg.norm(positions[a] - positions[b]))))
    return sorted(pairs)


def exact_reference(atoms) -> tuple[float | None, str | None]:
    """``(exact energy, source)`` when ``atoms`` (neutral, in the tabulated spin state) is a
    tabulated system at its tabulated geometry (interatomic distances within
    ``GEOMETRY_TOLERANCE_BOHR``, any orientation), else ``(None, None)``."""
    from hamiltonians.realspace import make_atoms

    if atoms.charge != 0:
        return None, None
    mine = _distances(atoms.symbols, np.asarray(atoms.positions))
    for preset in _presets().values():
        ref = make_atoms(preset.geometry)
        ground_spin = preset.spin if preset.spin is not None else ref.n_electrons % 2
        if sorted(ref.symbols) != sorted(atoms.symbols) or atoms.spin != ground_spin:
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
    from hamiltonians.molecule import ANGSTROM_TO_BOHR, parse_atoms
    from hamiltonians.molecule import PRESETS as BASIS_PRESETS

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
    entries = parse_atoms(atoms_text)  # InputError for no atoms or a malformed line
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
    from nqs.problems.realspace import run_realspace

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
            reference_source=source, echo=echo, progress=False, time_limit=s.time_limit,
        )
        if sub is not None:
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
        "stopped_by_time_limit": result.stopped_by_time_limit,
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
