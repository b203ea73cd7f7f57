"""``nqs realspace``: electrons in real space with a FermiNet, a Psiformer or a LapNet, against
exact energies."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from hamiltonians.realspace import PRESETS, Preset  # noqa: F401  (re-exported: the presets' old home)
from nqs.commands.common import (
    add_parallel_options,
    add_run_dir_options,
    add_time_limit_option,
    check_memory,
    fmt_atoms,
    is_main,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    quiet,
    run_record,
    seed_int,
    setup_parallel,
    write_plot,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``realspace`` subcommand."""
    p = sub.add_parser(
        "realspace",
        help="solve an atom or small molecule in real space with a FermiNet or Psiformer",
        description="Optimize a FermiNet (Pfau et al. 2020) for the electrons of an atom or "
        "molecule by VMC (optional Hartree-Fock pretraining; KFAC, Adam or minSR), evaluate the "
        "energy at fixed parameters with an autocorrelation-corrected error bar, and compare with "
        "the exact non-relativistic energy where tabulated. Hartree and bohr. Network, walkers, "
        "steps and optimizer not given are sized to the device and printed at the start: on a "
        "CPU 2 layers of (32, 8), 4 determinants, 256 walkers, 400 steps, SPRING at lr 0.2; on "
        "a GPU FermiNet's 4 layers of (256, 32), 16 determinants, 1024 walkers, 1000 steps, "
        "SPRING. --ansatz psiformer uses a Psiformer (von Glehn et al. 2023) instead: "
        "self-attention over the electrons and a Jastrow factor (CPU 2 heads of width 32, GPU "
        "the paper's 4 heads of width 256); --ansatz lapnet a LapNet (Li et al. 2024: the "
        "Psiformer's sizes, attention weights from per-electron features, folx Laplacian with "
        "sparsity).",
    )
    _add_system_options(p)
    _add_network_options(p)
    _add_optimizer_options(p)
    _add_run_options(p)
    p.set_defaults(handler=run, resolve_options=resolve_options)


def _add_system_options(p: argparse.ArgumentParser) -> None:
    """The system: atoms, charge, spin, unit, effective core potentials."""
    p.add_argument("--molecule", default=None,
                   help='atoms, e.g. "Li 0 0 0; H 0 0 1.595" (unit: --unit, default angstrom), '
                   'a preset name (bohr, see --preset) or an .xyz file (angstrom)')
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a tabulated system with its exact energy: "
                   + ", ".join(f"{k} ({v.geometry})" for k, v in PRESETS.items())
                   + " (bohr)")
    p.add_argument("--charge", type=int, default=0, help="net charge (default: 0)")
    p.add_argument("--spin", type=int, default=None,
                   help="2S = N_alpha - N_beta (default: 0 or 1 by parity)")
    p.add_argument("--unit", choices=("angstrom", "bohr"), default="angstrom",
                   help="unit of the --molecule coordinates, as in nqs molecule; the run itself "
                   "is in bohr (default: angstrom)")
    p.add_argument("--ecp", default=None, metavar="SPEC",
                   help="effective core potentials (pseudopotentials) from PySCF's library: a "
                   "name for every atom (e.g. ccecp, bfd, lanl2dz) or per element "
                   "(\"Na:ccecp,Cl:ccecp\"; the others all-electron). The core electrons "
                   "leave, the nuclei keep Z - n_core, the nonlocal part is a 12-point "
                   "quadrature on the sphere (default: all-electron)")


def _add_network_options(p: argparse.ArgumentParser) -> None:
    """The network: FermiNet, Psiformer or LapNet and its sizes."""
    p.add_argument("--ansatz", choices=ANSATZE, default="ferminet",
                   help="the network: ferminet (Pfau et al. 2020), psiformer (von Glehn et "
                   "al. 2023: self-attention over electrons, electron-electron cusp Jastrow; "
                   "sized by --layers, --heads, --width) or lapnet (Li et al. 2024: a "
                   "Psiformer whose attention weights come from per-electron features, so the "
                   "forward Laplacian runs with sparsity; sized as a Psiformer) "
                   "(default: ferminet)")
    p.add_argument("--layers", type=positive_int, default=None,
                   help="number of FermiNet or Psiformer layers (default: CPU 2, GPU 4)")
    p.add_argument("--hidden", type=positive_int, nargs=2, default=None,
                   metavar=("D1", "D2"),
                   help="FermiNet: widths of the one- and two-electron streams (default: CPU "
                   "32 8, GPU 256 32)")
    p.add_argument("--heads", type=positive_int, default=None,
                   help="Psiformer, LapNet: attention heads per layer, dividing --width "
                   "(default: CPU 2, GPU 4)")
    p.add_argument("--width", type=positive_int, default=None,
                   help="Psiformer, LapNet: width of the attention stream (default: CPU 32, "
                   "GPU 256)")
    p.add_argument("--layer-norm", choices=("pre", "post", "none"), default=None,
                   help="Psiformer, LapNet: LayerNorm before each attention and MLP block, "
                   "after each residual sum, or none (default: pre)")
    p.add_argument("--no-jastrow", action="store_true",
                   help="Psiformer, LapNet: leave out the electron-electron cusp Jastrow "
                   "factor")
    p.add_argument("--determinants", type=positive_int, default=None,
                   help="number of determinants (default: CPU 4, GPU 16)")
    p.add_argument("--envelope", choices=("isotropic", "full"), default="isotropic",
                   help="orbital envelope (default: isotropic)")
    p.add_argument("--full-det", action="store_true",
                   help="dense n_el x n_el determinants instead of spin blocks")


def _add_optimizer_options(p: argparse.ArgumentParser) -> None:
    """The optimizer and its schedule, and the Hartree-Fock pretraining."""
    p.add_argument("--optimizer", choices=("kfac", "sr", "adam"), default=None,
                   help="kfac (kfac-jax; needs jax < 0.11, else falls back to SPRING with a "
                   "warning), sr (minSR or SPRING, dense Jacobian) or adam (default: sr with "
                   "--momentum 0.9, i.e. SPRING)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate lr in lr / (1 + t / delay) (default: kfac 0.05, "
                   "sr 0.05, adam 1e-3; without --optimizer on a CPU 0.2)")
    p.add_argument("--lr-delay", type=positive_float, default=None,
                   help="delay of the schedule (default: kfac 10000, sr and adam 1000)")
    p.add_argument("--damping", type=nonnegative_float, default=1e-3,
                   help="KFAC damping / SR diagonal shift (default: 1e-3)")
    p.add_argument("--momentum", type=nonnegative_float, default=None,
                   help="SPRING momentum mu in [0, 1) for --optimizer sr (Goldshlager et al. "
                   "2024; e.g. 0.99); 0: plain minSR (default: 0.9 without --optimizer, 0 with "
                   "--optimizer sr)")
    p.add_argument("--pretrain-steps", type=nonnegative_int, default=0,
                   help="Hartree-Fock pretraining steps (default: 0)")
    p.add_argument("--pretrain-basis", default=None,
                   help="Gaussian basis of the pretraining HF (default: ccpvdz; with --ecp the "
                   "ECP's own basis: ccecp-ccpvdz for ccecp, bfd-vdz for bfd, the ECP's name "
                   "for lanl2dz, sbkjc and crenbl)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Steps, walkers, sampling, evaluation, precision, seed, observables, files and devices."""
    p.add_argument("--steps", type=nonnegative_int, default=None,
                   help="optimization steps (default: CPU 400, GPU 1000)")
    add_time_limit_option(p)
    p.add_argument("--walkers", type=positive_int, default=None,
                   help="walkers / Markov chains (default: CPU 256, GPU 1024)")
    p.add_argument("--mcmc-steps", type=positive_int, default=10,
                   help="Metropolis moves per step and per measurement (default: 10)")
    p.add_argument("--eval-steps", type=positive_int, default=200,
                   help="measurements of the final fixed-parameter evaluation, >= 2 (default: 200)")
    p.add_argument("--laplacian", choices=("folx", "hessian"), default="folx",
                   help="forward Laplacian (folx) or Hessian trace (default: folx)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the network's parameters and activations; determinants, "
                   "local energies and reductions stay float64. float32 needs --optimizer adam "
                   "or sr (default: float64)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (default: 0)")
    from hamiltonians.realspace_observables import REALSPACE_OBSERVABLES
    from nqs.commands.observe import add_observe_option

    add_observe_option(p, REALSPACE_OBSERVABLES)
    p.add_argument("--out", type=Path, default=Path("runs/realspace"),
                   help="output directory for result.json, log.jsonl, checkpoint.msgpack and "
                   "convergence.png (default: runs/realspace)")
    add_run_dir_options(p)
    add_parallel_options(p)


def resolve_options(args: argparse.Namespace) -> None:
    """``--dump-config``: fill the options sized to the device (:func:`apply_device_defaults`),
    so the written file reruns the same network on another machine."""
    import jax

    apply_device_defaults(args, jax.default_backend(), resolve_system(args)[1].n_electrons)


def resolve_system(args: argparse.Namespace):  # noqa: ANN201
    """``(name, atoms, reference_energy, reference_source)`` from the options.

    The exact energy is reported for a preset (given by --preset or as the --molecule name) with
    the default charge and spin, all-electron (the tabulated energies are; with ``--ecp`` none).
    """
    from hamiltonians.molecule import is_xyz_path, read_xyz
    from hamiltonians.realspace import make_atoms
    from nqs.errors import InputError

    molecule = args.molecule
    preset_name = args.preset
    ecp = getattr(args, "ecp", None)
    if molecule is not None and preset_name is not None:
        raise InputError("give either --molecule or --preset, not both")
    if molecule is None and preset_name is None:
        raise InputError("give --molecule \"ATOMS\" or --preset NAME")
    if molecule is not None:
        lookup = {k.lower(): k for k in PRESETS}
        if molecule.strip().lower() in lookup:
            preset_name = lookup[molecule.strip().lower()]
    if preset_name is not None:
        preset = PRESETS[preset_name]
        spin = args.spin if args.spin is not None else preset.spin
        atoms = make_atoms(preset.geometry, charge=args.charge, spin=spin, unit="bohr", ecp=ecp)
        if _is_preset_state(atoms, args.charge, preset) and not atoms.has_ecp:
            return preset_name, atoms, preset.exact_energy, preset.source
        return preset_name, atoms, None, None
    if is_xyz_path(molecule):  # an .xyz file is in Angstrom whatever --unit says
        atoms = make_atoms(read_xyz(molecule), charge=args.charge, spin=args.spin,
                           unit="angstrom", ecp=ecp)
        return Path(molecule.strip()).stem, atoms, None, None
    atoms = make_atoms(molecule, charge=args.charge, spin=args.spin, unit=args.unit, ecp=ecp)
    name = "".join(atoms.symbols)
    match = None if atoms.has_ecp else _matching_preset(atoms)
    if match is not None and _is_preset_state(atoms, args.charge, PRESETS[match]):
        return name, atoms, PRESETS[match].exact_energy, PRESETS[match].source
    return name, atoms, None, None


def _is_preset_state(atoms, charge: int, preset: Preset) -> bool:  # noqa: ANN001
    """Whether ``atoms`` (charge, 2S) is the state the preset's exact energy belongs to."""
    ground_spin = preset.spin if preset.spin is not None else atoms.n_electrons % 2
    return charge == 0 and atoms.spin == ground_spin


def _matching_preset(atoms) -> str | None:  # noqa: ANN001
    """The preset whose nuclei equal those of ``atoms`` up to a translation (1e-6 bohr), if any:
    ``--molecule "H 0 0 0"`` gets the hydrogen atom's exact energy."""
    import numpy as np

    from hamiltonians.realspace import make_atoms

    pos = np.asarray(atoms.positions, dtype=float)
    for key, preset in PRESETS.items():
        ref = make_atoms(preset.geometry, unit="bohr")
        ref_pos = np.asarray(ref.positions, dtype=float)
        if list(ref.symbols) != list(atoms.symbols) or ref_pos.shape != pos.shape:
            continue
        if np.allclose(pos - pos[0], ref_pos - ref_pos[0], atol=1e-6, rtol=0):
            return key
    return None


def _check(args: argparse.Namespace) -> None:
    from nqs.errors import InputError

    psiformer_only = [name for name, given in (
        ("--heads", args.heads is not None), ("--width", args.width is not None),
        ("--layer-norm", args.layer_norm is not None), ("--no-jastrow", args.no_jastrow))
        if given]
    if args.ansatz == "ferminet" and psiformer_only:
        raise InputError(f"{', '.join(psiformer_only)} size a Psiformer or LapNet: add --ansatz "
                         "psiformer or lapnet (a FermiNet is sized by --layers, --hidden and "
                         "--determinants)")
    if args.ansatz in ATTENTION_ANSATZE and args.hidden is not None:
        raise InputError(f"--hidden sizes a FermiNet: a {NET_NAMES[args.ansatz]} is sized by "
                         "--layers, --heads and --width")
    if args.walkers is not None and args.walkers < 1:
        raise InputError(f"--walkers must be a positive integer, got {args.walkers}")
    if args.steps is not None and args.steps < 0:
        raise InputError(f"--steps must be >= 0, got {args.steps}")
    if args.eval_steps < 2:
        raise InputError(f"--eval-steps must be >= 2, got {args.eval_steps}")
    if args.momentum is not None and not 0.0 <= args.momentum < 1.0:
        raise InputError(f"--momentum must be in [0, 1), got {args.momentum}")
    if args.momentum not in (None, 0) and args.optimizer not in (None, "sr"):
        raise InputError("--momentum (SPRING) applies to --optimizer sr only")
    if args.dtype == "float32" and args.optimizer == "kfac":
        raise InputError("--dtype float32 works with --optimizer adam or sr, not kfac")


DEVICE_SIZED = ("layers", "hidden", "determinants", "walkers", "steps", "optimizer")
PSIFORMER_SIZED = ("layers", "heads", "width", "determinants", "walkers", "steps", "optimizer")
ANSATZE = ("ferminet", "psiformer", "lapnet")
ATTENTION_ANSATZE = ("psiformer", "lapnet")  # sized by --layers, --heads, --width
NET_NAMES = {"ferminet": "FermiNet", "psiformer": "Psiformer", "lapnet": "LapNet"}


def _device_sized(args: argparse.Namespace) -> tuple[str, ...]:
    return (PSIFORMER_SIZED if getattr(args, "ansatz", "ferminet") in ATTENTION_ANSATZE
            else DEVICE_SIZED)


def apply_device_defaults(args: argparse.Namespace, platform: str,
                          n_electrons: int | None = None) -> str | None:
    """Fill the options left unset (``None``) among :data:`DEVICE_SIZED` (a Psiformer:
    :data:`PSIFORMER_SIZED`, and ``--layer-norm``) and ``--momentum`` from
    :func:`nqs.problems.realspace_defaults.realspace_defaults` for ``platform`` and a system of
    ``n_electrons``; explicit values are kept. Returns the line to print (None when every sized
    option was given)."""
    from dataclasses import replace

    from nqs.problems.realspace_defaults import realspace_defaults

    d = realspace_defaults(platform, n_electrons)
    psiformer = getattr(args, "ansatz", "ferminet") in ATTENTION_ANSATZE
    unset = tuple(name for name in _device_sized(args) if getattr(args, name) is None)
    if args.optimizer is None:
        args.optimizer = d.optimizer
        if args.momentum is None:
            args.momentum = d.momentum if d.optimizer == "sr" else 0.0
        if args.lr is None:
            args.lr = d.learning_rate
    if args.momentum is None:
        args.momentum = 0.0
    sized = (("layers", d.layers), ("determinants", d.determinants), ("walkers", d.walkers),
             ("steps", d.steps))
    sized += ((("heads", d.heads), ("width", d.width)) if psiformer
              else (("hidden", list(d.hidden)),))
    for name, value in sized:
        if getattr(args, name) is None:
            setattr(args, name, value)
    if psiformer and args.layer_norm is None:
        args.layer_norm = "pre"
    if not unset:
        return None
    d = replace(d, momentum=args.momentum, learning_rate=args.lr)  # what the run will use
    if psiformer and d.platform != "cpu":
        d = replace(d, reason=f"an accelerator ({d.platform}): the Psiformer's network (von "
                    "Glehn et al. 2023)" + (" as a LapNet" if args.ansatz == "lapnet" else ""))
    return (f"defaults for {d.platform} ({d.reason}): {d.describe(unset)}; set "
            + ", ".join(f"--{n}" for n in unset) + " to change; the ETA follows the first steps")


def check_charge(atoms) -> None:  # noqa: ANN001
    """Refuse an anion with more than two extra electrons per atom (no such anion is bound:
    the extra electrons would drift away and the run would not converge)."""
    from nqs.errors import InputError

    extra = -int(atoms.charge)
    if extra > 2 * len(atoms.symbols):
        raise InputError(f"--charge {atoms.charge} adds {extra} electrons to "
                         f"{len(atoms.symbols)} atom(s): such an anion is not bound; use a "
                         "charge >= -2 per atom")


ECP_BASIS = {"ccecp": "ccecp-ccpvdz", "bfd": "bfd-vdz", "lanl2dz": "lanl2dz", "sbkjc": "sbkjc",
             "crenbl": "crenbl"}
"""The Gaussian basis made for each ECP (the pretraining default with ``--ecp``)."""


def default_pretrain_basis(atoms) -> str:  # noqa: ANN001
    """``ccpvdz``; with ECPs the basis of :data:`ECP_BASIS` of the (first) ECP named, if any."""
    for name in getattr(atoms, "ecp_names", {}).values():
        if name in ECP_BASIS:
            return ECP_BASIS[name]
    return "ccpvdz"


def check_pretrain_basis(basis: str, symbols: list[str]) -> None:
    """Refuse (one line) a pretraining basis PySCF does not know for these elements."""
    from hamiltonians.molecule import _check_basis

    quiet(_check_basis, basis, sorted(set(symbols)))


def check_sizes(args: argparse.Namespace, n_el: int, walkers: int, layers: int,
                hidden: tuple[int, int], determinants: int, eval_steps: int,
                optimizer: str, psiformer: tuple[int, int] | None = None,
                n_atoms: int = 1) -> None:
    """Refuse (one line) a FermiNet run whose memory cannot fit the device: parameters and
    optimizer state, walkers, the evaluation's local energies, the minSR Jacobian and, without
    chunking, the forward-Laplacian buffers of every walker. ``psiformer``: ``(width, heads)``
    of a Psiformer or LapNet (``args.ansatz``; then ``hidden`` is unused)."""
    if psiformer is not None:
        from nqs.models.lapnet import lapnet_parameter_count
        from nqs.models.psiformer import psiformer_parameter_count

        width, heads = psiformer
        count = (lapnet_parameter_count if getattr(args, "ansatz", None) == "lapnet"
                 else psiformer_parameter_count)
        n_params = count(n_atoms, n_el, layers, width, determinants,
                         bool(getattr(args, "full_det", False)))
        h1, h2 = 6 * width, heads  # per electron and layer: activations; per pair: attention
        net = "--width, --layers or --determinants"
    else:
        h1, h2 = hidden
        n_params = (4 * h1 + 4 * h2) + (layers - 1) * ((3 * h1 + 2 * h2) * h1 + h2 * h2) \
            + 2 * h1 * n_el * determinants + n_el * determinants * 4
        net = "--hidden, --layers or --determinants"
    walkers = float(walkers)
    parts = {"parameters and optimizer state": (6.0 * n_params * 8, net),
             "walkers": (walkers * n_el * 3 * 8 * 4, "--walkers"),
             "the evaluation's local energies": (walkers * eval_steps * 8,
                                                 "--walkers or --eval-steps")}
    if optimizer == "sr":
        parts["the minSR Jacobian"] = (walkers * n_params * 8 + walkers * walkers * 8,
                                       f"--walkers or {net}")
    if optimizer == "kfac":
        kfac = (layers * 12.0 * psiformer[0] ** 2 * 8 if psiformer is not None
                else layers * 2.0 * ((3 * h1 + 2 * h2) ** 2 + h1 ** 2) * 8)
        parts["the KFAC factors"] = (kfac, "--width" if psiformer is not None else "--hidden")
    if args.chunk_size is None:
        parts["local-energy buffers"] = (
            walkers * (3 * n_el + 1) * n_el * (h1 + n_el * h2) * layers * 8,
            f"--walkers or {net}, or set --chunk-size")
    check_memory(parts)


def run(args: argparse.Namespace) -> int:
    """Build the system and network from ``args``, run VMC, write the result files."""
    from hamiltonians.realspace_observables import REALSPACE_OBSERVABLES
    from nqs.commands.observe import check_names
    from nqs.rundir import open_run_dir

    _check(args)
    args.observe = check_names(args.observe, REALSPACE_OBSERVABLES, "realspace")
    name, atoms, reference, source = resolve_system(args)
    check_charge(atoms)
    if "forces" in args.observe:  # before the run, not after it
        from hamiltonians.realspace_forces import check_all_electron

        check_all_electron(atoms)
    if args.pretrain_basis is None:
        args.pretrain_basis = default_pretrain_basis(atoms)
    if args.pretrain_steps > 0 or "density" in args.observe:  # density: the HF reference
        check_pretrain_basis(args.pretrain_basis, list(atoms.symbols))
    setup_parallel(args)
    import jax

    chosen = apply_device_defaults(args, jax.default_backend(), atoms.n_electrons)
    if chosen is not None and is_main():
        print(chosen, flush=True)
    psiformer = None
    if args.ansatz in ATTENTION_ANSATZE:
        from nqs.models.psiformer import check_psiformer_sizes

        check_psiformer_sizes(args.layers, args.heads, args.width)
        psiformer = (args.width, args.heads)
    check_sizes(args, atoms.n_electrons, args.walkers, args.layers,
                tuple(args.hidden) if args.hidden is not None else (0, 0), args.determinants,
                args.eval_steps, args.optimizer, psiformer, len(atoms.symbols))
    with open_run_dir(args.out, args.resume, args.overwrite, is_main()):
        return _run(args, name, atoms, reference, source)


def input_unit(args: argparse.Namespace) -> str:
    """The unit the geometry was given in: bohr for a preset, angstrom for an .xyz file, else
    ``--unit``."""
    from hamiltonians.molecule import is_xyz_path

    if args.preset is not None or (args.molecule is not None
                                   and args.molecule.strip().lower() in
                                   {k.lower() for k in PRESETS}):
        return "bohr"
    if args.molecule is not None and is_xyz_path(args.molecule):
        return "angstrom"
    return args.unit


def geometry_line(name: str, atoms, args: argparse.Namespace) -> str:  # noqa: ANN001
    """The console line echoing the geometry at the start: in bohr (the unit of the run), and
    as given when that was angstrom."""
    from hamiltonians.realspace import ANGSTROM_TO_BOHR

    line = f"{name}: geometry (bohr) {fmt_atoms(atoms.symbols, atoms.positions)}"
    if input_unit(args) == "angstrom":
        given = fmt_atoms(atoms.symbols, atoms.positions / ANGSTROM_TO_BOHR)
        line += f" = (angstrom) {given}"
    line += f"; charge {atoms.charge}, 2S = {atoms.spin}"
    if getattr(atoms, "has_ecp", False):
        line += "; ECP " + ", ".join(
            f"{e.symbol}: {e.name} ({e.n_core} core electrons)"
            for e in {e.symbol: e for e in atoms.ecp if e is not None}.values())
    return line


def _run(args: argparse.Namespace, name: str, atoms, reference, source) -> int:  # noqa: ANN001
    from nqs.io import write_json_atomic
    from nqs.problems.realspace import run_realspace

    print(geometry_line(name, atoms, args), flush=True)
    print(f"{name}: {atoms.n_alpha} alpha + {atoms.n_beta} beta electrons; exact energy "
          f"{reference if reference is not None else 'not tabulated'}", flush=True)
    psiformer = args.ansatz in ATTENTION_ANSATZE
    network = (dict(ansatz=args.ansatz, psiformer_layers=args.layers, heads=args.heads,
                    width=args.width, layer_norm=args.layer_norm, jastrow=not args.no_jastrow)
               if psiformer else dict(layers=((args.hidden[0], args.hidden[1]),) * args.layers))
    result = run_realspace(
        atoms,
        **network,
        n_determinants=args.determinants,
        envelope=args.envelope,
        full_det=args.full_det,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        lr_delay=args.lr_delay,
        damping=args.damping,
        momentum=args.momentum,
        pretrain_steps=args.pretrain_steps,
        pretrain_basis=args.pretrain_basis,
        n_steps=args.steps,
        n_walkers=args.walkers,
        mcmc_steps=args.mcmc_steps,
        eval_steps=args.eval_steps,
        laplacian=args.laplacian,
        seed=args.seed,
        out_dir=args.out,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        reference_energy=reference,
        reference_source=source,
        echo=lambda msg: print(msg, flush=True),
        chunk_size=args.chunk_size,
        dtype=args.dtype,
        time_limit=args.time_limit,
        kfac_fallback=True,
    )
    summary = result.summary() | {
        "name": name,
        "symbols": list(atoms.symbols),
        "positions_bohr": atoms.positions.tolist(),
        "charge": atoms.charge,
        "spin": atoms.spin,
        "n_electrons": atoms.n_electrons,
        "ecp": atoms.ecp_names or None,
        "pretrain_basis": args.pretrain_basis,
        "ansatz": args.ansatz,
        "layers": args.layers,
        "hidden": list(args.hidden) if not psiformer else None,
        **({"heads": args.heads, "width": args.width, "layer_norm": args.layer_norm,
            "jastrow": not args.no_jastrow} if psiformer else {}),
        "determinants": args.determinants,
        "envelope": args.envelope,
        "optimizer": result.optimizer,
        "momentum": result.momentum,
        "laplacian": args.laplacian,
        "seed": args.seed,
    } | run_record(args, {"symbols": list(atoms.symbols), "positions": atoms.positions.tolist(),
                          "unit": "bohr", "input_unit": input_unit(args)})
    if not is_main():  # process 0 writes the files
        return 0
    write_json_atomic(args.out / "result.json", summary)
    net_name = NET_NAMES[args.ansatz]
    write_plot(lambda: result.plot(args.out / "convergence.png",
                                   title=f"{name}: {net_name} / {result.optimizer}"),
               args.out / "convergence.png")
    if args.observe:
        _observe(args, name, atoms, result)
    err = result.error_mha
    print(f"E = {result.energy:.6f} +- {result.energy_error:.1e} Ha"
          + ("" if err is None else f", E - E_exact = {err:.2f} mHa")
          + ("" if not math.isfinite(result.time_per_step_s)  # no optimization steps
             else f"  ({result.time_per_step_s:.3f} s/step)")
          + f"; wrote {args.out}/result.json", flush=True)
    return 0


def _observe(args: argparse.Namespace, name: str, atoms, result) -> None:  # noqa: ANN001
    """``--observe``: positions from the final walkers at the final parameters
    (``--eval-steps`` measurements), observables.json and the plots."""
    import jax

    from hamiltonians.realspace_observables import measure
    from nqs.commands.observe import realspace_plots, write_observables

    hf = None
    if "density" in args.observe:
        from nqs.realspace.pretrain import run_hartree_fock

        try:
            hf = quiet(run_hartree_fock, atoms, args.pretrain_basis)
        except Exception as err:  # noqa: BLE001 - the reference is optional: a warning
            print(f"warning: no Hartree-Fock density ({type(err).__name__}: {err})",
                  flush=True)
    key = jax.random.fold_in(jax.random.PRNGKey(args.seed), 104729)
    records = measure(args.observe, key, result.params, result.log_psi, result.walkers, atoms,
                      n_steps=args.eval_steps, mcmc_steps=args.mcmc_steps, hf=hf,
                      chunk_size=result.chunk_size)
    if "density" in records and hf is not None:
        records["density"]["hf_basis"] = args.pretrain_basis
    path = write_observables(args.out, records)
    realspace_plots(args.out, records, name)
    print(f"measured {', '.join(records)}; wrote {path}", flush=True)
