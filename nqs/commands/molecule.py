"""``nqs molecule`` (one molecule with the VMC driver) and ``nqs bench-fci`` (the benchmark)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nqs.bench.fci import PLATEAU_TOLERANCE
from nqs.commands.common import (
    add_dtype_option,
    add_parallel_options,
    add_run_dir_options,
    add_time_limit_option,
    check_memory,
    fmt_energy,
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
from nqs.commands.observe import MOLECULE_OBSERVABLES, add_observe_option


def _molecule_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--basis", default="sto-3g", help="Gaussian basis known to PySCF "
                   "(default: sto-3g)")
    p.add_argument("--charge", type=int, default=0, help="net charge (default: 0)")
    p.add_argument("--spin", type=int, default=0, help="2S = N_alpha - N_beta (default: 0)")
    p.add_argument("--unit", choices=("angstrom", "bohr"), default="angstrom",
                   help="unit of the atom coordinates given with --molecule (presets and .xyz "
                   "files are in angstrom whatever --unit says) (default: angstrom)")
    p.add_argument("--frozen-core", action="store_true",
                   help="freeze the chemical core orbitals (1s of B-Ne, ...)")
    p.add_argument("--cas", nargs=2, type=int, metavar=("NE", "NO"), default=None,
                   help="active space of NE electrons in NO orbitals around the Fermi level")
    p.add_argument("--eri-threshold", type=nonnegative_float, default=None, metavar="EPS",
                   help="set two-electron MO integrals |(pq|rs)| < EPS to 0 (Hartree; 0 keeps "
                   "all) (default: 1e-12)")
    _reference_options(p)


def _reference_options(p: argparse.ArgumentParser) -> None:
    from hamiltonians.large_reference import (
        DEFAULT_BOND_DIMS,
        DEFAULT_SCI_CUTOFFS,
        MAX_FCI_DETERMINANTS,
        REFERENCE_CHOICES,
    )

    p.add_argument("--reference", choices=REFERENCE_CHOICES, default="auto",
                   help="the energy the network is compared with: PySCF FCI, DMRG (block2, "
                   "extrapolated in the bond dimension), PySCF selected CI, or auto: FCI up to "
                   "--max-fci-determinants, else DMRG (selected CI without block2); none: no "
                   "reference, Hartree-Fock only (a GPU machine without the solvers) "
                   "(default: auto)")
    p.add_argument("--bond-dims", type=positive_int, nargs="+", metavar="M",
                   default=list(DEFAULT_BOND_DIMS),
                   help="DMRG bond dimensions of the extrapolation; the largest is the final "
                   f"MPS (default: {' '.join(map(str, DEFAULT_BOND_DIMS))})")
    p.add_argument("--dmrg-sweeps", type=positive_int, default=4,
                   help="DMRG sweeps at each bond dimension of the extrapolation (default: 4)")
    p.add_argument("--dmrg-threads", type=positive_int, default=1,
                   help="DMRG (block2) threads; on a shared machine set OMP_WAIT_POLICY=PASSIVE "
                   "before using more than 1 (default: 1)")
    p.add_argument("--sci-cutoffs", type=positive_float, nargs="+", metavar="C",
                   default=list(DEFAULT_SCI_CUTOFFS),
                   help="selected-CI selection cutoffs, the smallest gives the energy "
                   f"(default: {' '.join(map(str, DEFAULT_SCI_CUTOFFS))})")
    p.add_argument("--max-fci-determinants", type=positive_int, default=MAX_FCI_DETERMINANTS,
                   help="largest space given to PySCF FCI, about 240 bytes of memory per "
                   f"determinant (default: {MAX_FCI_DETERMINANTS})")


def _reference(args: argparse.Namespace):
    """The ReferenceOptions of the command line, checked (DMRG needs block2: fail early)."""
    from hamiltonians.chem_reference import ReferenceOptions
    from hamiltonians.large_reference import require_block2

    opts = ReferenceOptions(method=args.reference, bond_dims=tuple(args.bond_dims),
                            sweeps_per_dim=args.dmrg_sweeps, dmrg_threads=args.dmrg_threads,
                            sci_cutoffs=tuple(args.sci_cutoffs),
                            max_fci_determinants=args.max_fci_determinants).validated()
    if opts.method == "dmrg":
        require_block2()
    return opts


def _solver_options(p: argparse.ArgumentParser, steps: int, per: str = "") -> None:
    """The solver's options (``molecule`` and ``bench-fci``), ``--steps`` defaulting to
    ``steps``; ``per``: what ``--time-limit`` applies to."""
    _add_ansatz_options(p)
    _add_start_options(p)
    p.add_argument("--steps", type=positive_int, default=steps,
                   help=f"optimization steps (default: {steps})")
    add_time_limit_option(p, per)
    p.add_argument("--plateau", type=nonnegative_float, default=PLATEAU_TOLERANCE,
                   metavar="HARTREE",
                   help="stop once the means of 25 accepted steps have fallen by no more than "
                   "this in 150 steps (result.json: stopped_on_plateau); 0: run every step "
                   f"(default: {PLATEAU_TOLERANCE:g})")
    _add_step_options(p)
    _add_schedule_and_sampling_options(p)
    add_dtype_option(p)
    add_parallel_options(p)


def _add_ansatz_options(p: argparse.ArgumentParser) -> None:
    """The ansatz and sampler, and the autoregressive ansatz's backbone and phase."""
    p.add_argument("--ansatz", choices=("auto", "backflow", "rbm", "autoregressive"),
                   default="auto",
                   help="neural-network backflow determinant(s), complex RBM (Choo et al. "
                   "2020), or autoregressive (exact sampling, fitted to selected CI first); auto: "
                   "autoregressive, or backflow with --sampler exact or mcmc (default: auto)")
    p.add_argument("--sampler", choices=("auto", "exact", "mcmc", "autoregressive"),
                   default="auto",
                   help="exact summation over all determinants, Metropolis electron hops, or "
                   "exact autoregressive draws; auto: autoregressive for the autoregressive "
                   "ansatz, else exact up to 100000 determinants and mcmc beyond (default: "
                   "auto)")
    p.add_argument("--backbone", choices=("made", "transformer"), default="made",
                   help="autoregressive ansatz: masked MLP (MADE, widths --hidden) or causal "
                   "transformer (default: made)")
    p.add_argument("--phase", choices=("auto", "mlp", "conditional"), default="auto",
                   help="autoregressive ansatz: the phase as an MLP of the occupations, or "
                   "per-orbital phases conditioned on the earlier orbitals plus that MLP; "
                   "auto: conditional beyond 100000 determinants, mlp up to it "
                   "(default: auto)")


def _add_start_options(p: argparse.ArgumentParser) -> None:
    """The autoregressive start: the selected-CI vector under the network (its prior), or the
    network fitted to it or to CISD before VMC."""
    p.add_argument("--start", choices=("auto", "prior", "selected", "cisd", "none"),
                   default="auto",
                   help="autoregressive: prior: the state is CISD grown by CIPSI selection "
                   "rounds exactly, under the network (fitted to the first-order amplitudes "
                   "outside it); selected, cisd: the network fitted to that vector, or to CISD; "
                   "none: no start; auto: prior up to 32 orbitals, selected beyond "
                   "(default: auto)")
    p.add_argument("--prior-external", type=positive_int, default=8192, metavar="N",
                   help="--start prior: the network is fitted to the first-order amplitudes of "
                   "the N determinants outside the vector of largest amplitude (default: 8192)")
    p.add_argument("--prior-fit-rows", type=positive_int, default=6144, metavar="N",
                   help="--start prior: each step of that fit sees N of the vector's "
                   "determinants, a third of them its largest, the rest drawn (default: 6144)")
    p.add_argument("--prior-fit-steps", type=nonnegative_int, default=1000, metavar="N",
                   help="--start prior: Adam steps of that fit; 0: no fit, the state starts "
                   "as the vector (default: 1000)")
    p.add_argument("--start-grow", type=float, default=1.0,
                   help="selected start: determinants a selection round adds, as a multiple "
                   "of the space so far (default: 1)")
    p.add_argument("--start-rounds", type=positive_int, default=3,
                   help="selected start: selection rounds at most (default: 3)")
    p.add_argument("--start-pt2", type=float, default=1e-3, metavar="HARTREE",
                   help="selected start: rounds after the first only while the target's "
                   "Epstein-Nesbet PT2 estimate is below -HARTREE (default: 1e-3)")
    p.add_argument("--start-selection", choices=("auto", "cipsi", "pyscf"), default="auto",
                   help="the selected start vector: cipsi (CISD grown by selection rounds), "
                   "pyscf (PySCF's selected CI at --start-sci-cutoff); auto: cipsi while a pass over "
                   "its first round's space fits in 2e8 connections, pyscf beyond (default: auto)")
    p.add_argument("--start-sci-cutoff", type=float, default=1e-3, metavar="C",
                   help="--start-selection pyscf: the selection and coefficient cutoff, in (0, 1) "
                   "(default: 1e-3)")
    p.add_argument("--start-steps", type=positive_int, default=12000,
                   help="Adam steps of the start fit at most (default: 12000)")
    p.add_argument("--start-final-lr-fraction", type=float, default=0.01,
                   help="below 1: the start fit's learning rate decays to this fraction of "
                   "1e-2 (cosine); 1: constant (default: 0.01)")
    p.add_argument("--start-refine-steps", type=nonnegative_int, default=20,
                   help="Gauss-Newton (Levenberg-Marquardt) steps on the overlap with the "
                   "start's target after its Adam fit; 0: none (default: 20)")
    p.add_argument("--start-fit-max", type=positive_int, default=None, metavar="N",
                   help="the start fit covers the target's spin families of largest weight "
                   "up to N determinants (a fit step costs determinants x orbitals) "
                   "(default: 131072 / orbitals)")
    p.add_argument("--start-fit-growth", type=positive_int, default=1, metavar="K",
                   help="the start's fit cap doubles, up to K times --start-fit-max, while H's "
                   "root in the kept determinants is more than 0.5 mHa above the whole "
                   "target's (a larger fit needs more --start-steps) (default: 1)")
    p.add_argument("--init-from", metavar="RUN", default=None,
                   help="start from the parameters of another run's checkpoint (its "
                   "directory or checkpoint file; same molecule, basis and ansatz) instead of "
                   "the start fit: a new run with its own optimizer, learning rate and steps")


def _add_step_options(p: argparse.ArgumentParser) -> None:
    """Samples per step, optimizer and learning rate, network sizes, chains and seed."""
    p.add_argument("--samples", type=positive_int, default=None,
                   help="samples per step: Metropolis draws (default 2048), or autoregressive "
                   "draws, counted once per distinct determinant (default 100000)")
    p.add_argument("--max-unique", type=positive_int, default=1024,
                   help="autoregressive: distinct determinants per step at most (the draws are "
                   "halved when more would be needed) (default: 1024)")
    p.add_argument("--optimizer", choices=("auto", "adam", "sr", "minsr", "sgd"),
                   default="auto",
                   help="optimizer; auto: sr for the autoregressive ansatz, adam otherwise "
                   "(default: auto)")
    p.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: "
                   "for the autoregressive ansatz with SR 0.05, 0.01 beyond 100000 "
                   "determinants; 3e-3 otherwise)")
    p.add_argument("--diag-shift", type=nonnegative_float, default=None,
                   help="SR diagonal shift; with connected rows its floor, raised x10 after a "
                   "step that raises the energy and lowered /10 after one that does not "
                   "(default: 1e-6 with connected rows, 1e-3 otherwise)")
    p.add_argument("--connected-rows", type=nonnegative_int, default=0,
                   help="autoregressive sampler with SR: determinants H connects to each "
                   "step's draws, of largest first-order amplitude, added as rows of SR with "
                   "exact weights (e.g. 512; lifts what a truncated start fit left out); 0: "
                   "the draws alone (default: 0)")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=None,
                   help="hidden-layer widths of the backflow, or of the autoregressive "
                   "network's amplitudes and phase (default: 64 for the backflow, 256 for the "
                   "autoregressive ansatz)")
    p.add_argument("--determinants", type=positive_int, default=1,
                   help="number of backflow determinants (default: 1)")
    p.add_argument("--alpha", type=positive_float, default=2.0,
                   help="RBM hidden-unit density (default: 2)")
    p.add_argument("--init-scale", type=positive_float, default=None,
                   help="backflow: random perturbation of the Hartree-Fock orbitals at start "
                   "(default: 0.05 with exact summation, 0.3 with Monte Carlo, which needs a "
                   "state that is not sampled as HF alone)")
    p.add_argument("--chains", type=positive_int, default=16,
                   help="Markov chains (mcmc only; divisible by the number of devices) "
                   "(default: 16)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (default: 0)")


def _add_schedule_and_sampling_options(p: argparse.ArgumentParser) -> None:
    """Learning-rate schedule, Metropolis moves, exact-summation sector and metric, sampling power."""
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="learning rate: constant, or cosine decay to --final-lr-fraction x lr "
                   "over the run (default: constant)")
    p.add_argument("--final-lr-fraction", type=positive_float, default=0.1,
                   help="end of the cosine schedule as a fraction of --lr (default: 0.1)")
    p.add_argument("--rule", choices=("pair-hop", "connected"), default="pair-hop",
                   help="Metropolis moves: uniform electron (pair) hops, or excitations the "
                   "Hamiltonian connects (default: pair-hop)")
    p.add_argument("--sector", choices=("full", "hf"), default="full",
                   help="exact summation over all determinants, or over those H connects to "
                   "Hartree-Fock (its symmetry block; default: full)")
    p.add_argument("--metric-states", type=positive_int, default=None, metavar="K",
                   help="with exact summation and --optimizer sr/minsr: build the SR metric "
                   "from the K largest-weight determinants and precondition the exact "
                   "gradient with it (default: all determinants)")
    p.add_argument("--sampling-power", type=positive_float, default=1.0,
                   help="q in (0, 1]: Metropolis samples |psi|^(2q), the autoregressive "
                   "sampler its conditionals raised to q; both reweighted exactly to |psi|^2 "
                   "(a sampled final energy of the autoregressive sampler always uses 0.5) "
                   "(default: 1)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``molecule`` and ``bench-fci`` subcommands."""
    m = sub.add_parser(
        "molecule",
        help="solve one molecule in a basis by VMC and compare with FCI",
        description="Build the second-quantized Hamiltonian of a molecule from PySCF integrals "
        "(or an FCIDUMP file), optimize a neural-network state by VMC, and compare with HF, "
        "CCSD(T) and FCI in the same basis and active space. Energies in Hartree.",
    )
    m.add_argument("--molecule", default=None,
                   help='preset name (H2, LiH, H2O, NH3, N2, C2), atoms "Li 0 0 0; H 0 0 1.548" '
                   'or an .xyz file (Angstrom)')
    m.add_argument("--fcidump", default=None, help="read the Hamiltonian from an FCIDUMP file")
    _molecule_options(m)
    _solver_options(m, steps=600)
    add_observe_option(m, MOLECULE_OBSERVABLES)
    m.add_argument("--out", type=Path, default=Path("runs/molecule"),
                   help="output directory (default: runs/molecule)")
    add_run_dir_options(m, checkpoint_every=100)
    m.set_defaults(handler=run_molecule)

    b = sub.add_parser(
        "bench-fci",
        help="benchmark neural-network states against FCI on a suite of molecules",
        description="For each molecule: PySCF HF, CCSD(T) and FCI in the chosen basis, and a "
        "VMC-optimized neural-network state. Prints a table (energies in Hartree, errors in "
        "mHa; chemical accuracy is 1.6 mHa) and writes results.json, results.md and errors.png.",
    )
    b.add_argument("--suite", choices=("default", "choo2020", "sampled"), default=None,
                   help="default: H2 and LiH (minutes on a CPU); choo2020: H2, LiH, H2O, NH3, "
                   "N2, C2; sampled: H2O/6-31G and N2/6-31G with frozen core, past the "
                   "exact-summation cap (hours on a CPU) (used when no --molecule/--fcidump "
                   "is given; default: default)")
    b.add_argument("--molecule", action="append", default=[], metavar='NAME="ATOMS"',
                   help='extra molecule, e.g. --molecule HF="H 0 0 0; F 0 0 0.917" or a preset '
                   "name; repeatable")
    b.add_argument("--fcidump", action="append", default=[], metavar="FILE",
                   help="a Hamiltonian from an FCIDUMP file; repeatable")
    _molecule_options(b)
    _solver_options(b, steps=600, per=" of each molecule (--realspace: each real-space run)")
    b.add_argument("--out", type=Path, default=Path("runs/bench-fci"),
                   help="output directory (default: runs/bench-fci; one directory per "
                   "molecule inside)")
    add_run_dir_options(b, checkpoint_every=100)
    from nqs.commands.bench_realspace import add_options as add_realspace_options

    add_realspace_options(b)  # --realspace and its options (nqs/commands/bench_realspace.py)
    b.set_defaults(handler=run_bench)


def _settings(args: argparse.Namespace):
    """The harness settings of the command line, after checking that the ansatz and the sampler
    go together (before any integral or reference is computed)."""
    from nqs.bench.fci import Settings
    from nqs.problems import molecule_method

    molecule_method(1, args.ansatz, args.sampler)

    return Settings(ansatz=args.ansatz, sampler=args.sampler, steps=args.steps,
                    samples=args.samples, optimizer=args.optimizer, learning_rate=args.lr,
                    diag_shift=args.diag_shift,
                    hidden=None if args.hidden is None else tuple(args.hidden),
                    n_determinants=args.determinants, alpha=args.alpha,
                    init_scale=args.init_scale, seed=args.seed, chains=args.chains,
                    chunk_size=args.chunk_size, lr_schedule=args.lr_schedule,
                    final_lr_fraction=args.final_lr_fraction, rule=args.rule,
                    sampling_power=args.sampling_power, sector=args.sector,
                    metric_states=args.metric_states, dtype=args.dtype,
                    backbone=args.backbone, phase=args.phase, max_unique=args.max_unique,
                    connected_rows=args.connected_rows, start=args.start, start_grow=args.start_grow,
                    start_rounds=args.start_rounds, start_pt2=args.start_pt2,
                    start_selection=args.start_selection, start_sci_cutoff=args.start_sci_cutoff,
                    start_steps=args.start_steps,
                    start_final_lr_fraction=args.start_final_lr_fraction,
                    start_refine_steps=args.start_refine_steps,
                    start_fit_max=args.start_fit_max, start_fit_growth=args.start_fit_growth,
                    prior_external=args.prior_external, prior_fit_rows=args.prior_fit_rows,
                    prior_fit_steps=args.prior_fit_steps,
                    init_from=args.init_from, plateau=args.plateau)


def _echo(msg: str) -> None:
    print(msg, flush=True)


def _job_sizes(job, label: str) -> tuple[int, int, int]:  # noqa: ANN001
    """``(spatial orbitals, n_alpha, n_beta)`` of a job's active space, checked without an SCF
    (PySCF's Mole for a spec, the header and integrals for an FCIDUMP)."""
    from hamiltonians.molecule import _check_cas, build_mole, read_fcidump
    from nqs.errors import InputError

    if job.cas is not None and job.frozen_core:
        raise InputError("give either --frozen-core or --cas, not both (a CAS already freezes "
                         "its core)")
    if job.fcidump is not None:
        ints = quiet(read_fcidump, job.fcidump)
        return ints.n_orbitals, ints.n_alpha, ints.n_beta
    try:
        mol = quiet(build_mole, job.spec)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - PySCF raises RuntimeError, KeyError, ...
        msg = " ".join(str(err).split())[:200] or type(err).__name__
        raise InputError(f"{label}: PySCF cannot build it: {msg}") from None
    n, n_elec, spin = int(mol.nao_nr()), int(mol.nelectron), int(mol.spin)
    na, nb = (n_elec + spin) // 2, (n_elec - spin) // 2
    if na > n or nb > n:
        raise InputError(f"{label}: {n_elec} electrons do not fit in the {n} orbitals of "
                         f"basis {job.spec.basis!r} (check --charge)")
    if job.cas is not None:
        n_el, n = _check_cas(job.cas, n_elec, spin, n)
        na, nb = (n_el + spin) // 2, (n_el - spin) // 2
    elif job.frozen_core:
        from pyscf.data import elements

        core = int(elements.chemcore(mol))
        n, na, nb = n - core, na - core, nb - core
    return n, na, nb


def check_job_memory(job, settings, sizes: tuple[int, int, int]) -> None:  # noqa: ANN001
    """Refuse (one line) a molecule whose run cannot fit the device memory: parameters,
    samples or the enumerated space, the SR Jacobian and matrix. ``sizes``: ``(orbitals,
    n_alpha, n_beta)`` of its active space (:func:`_job_sizes`)."""
    from math import comb

    from nqs.bench.fci import resolve_settings

    n, na, nb = sizes
    n_states = float(comb(n, na) * comb(n, nb))
    settings = resolve_settings(settings, int(n_states), n)
    exact = settings.sampler == "exact"
    n_el = na + nb
    if settings.ansatz == "rbm":
        n_params = settings.alpha * (2 * n) ** 2 * 2 + 4 * n
    elif settings.ansatz == "autoregressive":  # MADE (or a transformer of similar size) + phase
        widths = [4 * n, *settings.hidden, 4 * n]  # the phase: as many, and an MLP
        n_params = 2 * sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
        n_params += 2 * (4 * n) ** 2 + (2 * n + 2) * settings.hidden[0]
    else:
        widths = [2 * n, *settings.hidden, n * n_el * settings.n_determinants]
        n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
        n_params += n * n_el * settings.n_determinants
    singles = na * (n - na) + nb * (n - nb)
    conn = min(n_states, 1.0 + singles + singles * singles / 2)
    net = "--alpha" if settings.ansatz == "rbm" else "--hidden or --determinants"
    if exact:
        samples = n_states
        flag = "the basis or active space (--basis, --cas, --frozen-core) or use --sampler mcmc"
        parts = {"the enumerated determinants": (samples * 2 * n, flag),
                 "the sparse Hamiltonian": (samples * conn * 16.0, flag)}
    elif settings.sampler == "autoregressive":  # the cost is in the distinct determinants
        samples = float(settings.max_unique + settings.connected_rows)
        flag = "--max-unique or --connected-rows"
        parts = {"samples": (samples * 2 * n * 8.0, flag)}
    else:
        samples = float(settings.samples)
        flag = "--samples"
        parts = {"samples": (samples * 2 * n * 8.0, flag)}
    parts["parameters and optimizer state"] = (6.0 * n_params * 8, net)
    if settings.optimizer in ("sr", "minsr"):
        parts["the SR Jacobian"] = (samples * n_params * 16.0, f"{net} or {flag}")
        k = min(samples, n_params) if settings.optimizer == "sr" else samples
        parts["the SR matrix"] = (k * k * 8.0, f"{net} or {flag}")
    check_memory(parts)


def run_molecule(args: argparse.Namespace) -> int:
    """One molecule with the VMC driver: result.json, log.jsonl, checkpoints, convergence.png."""
    from hamiltonians.molecule import parse_molecule
    from nqs.bench.fci import Job
    from nqs.commands.observe import check_names
    from nqs.errors import InputError
    from nqs.rundir import open_run_dir

    if (args.molecule is None) == (args.fcidump is None):
        raise InputError("give exactly one of --molecule or --fcidump")
    if args.fcidump is not None:
        job = Job(Path(args.fcidump).stem, fcidump=args.fcidump, eri_threshold=args.eri_threshold)
    else:
        spec = quiet(parse_molecule, args.molecule, basis=args.basis, charge=args.charge,
                      spin=args.spin, unit=args.unit)
        job = Job(spec.name or "molecule", spec, None, args.frozen_core,
                  tuple(args.cas) if args.cas else None, args.eri_threshold)
    settings = _settings(args)
    reference = _reference(args)
    check_settings(settings)
    sizes = _job_sizes(job, f"molecule {job.name!r}")
    setup_parallel(args)
    check_job_memory(job, settings, sizes)
    observe = check_names(args.observe, MOLECULE_OBSERVABLES, "molecule")
    if "dipole" in observe and job.spec is None:
        raise InputError("--observe dipole needs --molecule (an FCIDUMP file has no geometry)")
    with open_run_dir(args.out, args.resume, args.overwrite, is_main()):
        return _run_molecule(args, job, settings, reference, observe)


def check_settings(settings) -> None:  # noqa: ANN001
    """The checks of the solver options that need no molecule (before any file is touched)."""
    from nqs.bench.fci import LR_SCHEDULES
    from nqs.errors import InputError
    from nqs.precision import check_dtype
    from nqs.problems import MOLECULE_RULES

    check_dtype(settings.dtype)
    if settings.lr_schedule not in LR_SCHEDULES:
        raise InputError(f"unknown learning-rate schedule {settings.lr_schedule!r}")
    if settings.lr_schedule == "cosine" and not 0.0 < settings.final_lr_fraction <= 1.0:
        raise InputError(f"final learning-rate fraction must be in (0, 1], "
                         f"got {settings.final_lr_fraction}")
    if settings.rule not in MOLECULE_RULES:
        raise InputError(f"unknown Metropolis rule {settings.rule!r}")
    if not settings.start_grow >= 0:
        raise InputError(f"--start-grow must be >= 0, got {settings.start_grow}")
    if not settings.start_pt2 >= 0:
        raise InputError(f"--start-pt2 must be >= 0, got {settings.start_pt2}")
    if not 0 < settings.start_sci_cutoff < 1:
        raise InputError(f"--start-sci-cutoff must be in (0, 1), got {settings.start_sci_cutoff}")
    if not 0.0 < settings.start_final_lr_fraction <= 1.0:
        raise InputError(f"--start-final-lr-fraction must be in (0, 1], "
                         f"got {settings.start_final_lr_fraction}")
    if not 0.0 < settings.sampling_power <= 1.0:
        raise InputError(f"the sampling power must be in (0, 1], got {settings.sampling_power}")
    if settings.max_unique < 4:  # one row per token at the first orbital
        raise InputError(f"--max-unique must be at least 4, got {settings.max_unique}")


def _run_molecule(args: argparse.Namespace, job, settings, reference,  # noqa: ANN001
                  observe: list[str] | None = None) -> int:
    from nqs.bench.fci import (
        ABOVE_HF_WARNING,
        BELOW_FCI_NOTE,
        _reference_text,
        above_hartree_fock,
        below_fci,
        load_job,
        n_determinants,
        resolve_settings,
        solve,
    )
    from nqs.io import write_json_atomic

    _echo(geometry_line(job))
    integrals, refs, basis = load_job(job, reference=reference, echo=_echo)
    e_ref, method = refs.get("e_ref"), refs["reference"]
    _echo(f"{job.name} ({basis}): E(HF) = {fmt_energy(refs.get('e_hf'))}, E(CCSD(T)) = "
          f"{fmt_energy(refs.get('e_ccsd_t'))}, {_reference_text(refs)}")
    start: dict = {}
    result, mode = solve(integrals, settings, args.out, _echo, resume=args.resume,
                         exact_energy=e_ref, checkpoint_every=args.checkpoint_every,
                         time_limit=args.time_limit, start_record=start)
    resolved = resolve_settings(settings, n_determinants(integrals), integrals.n_orbitals)
    above_hf = above_hartree_fock(result.energy, refs.get("e_hf"))
    below = below_fci(result.energy, result.energy_error, e_ref, method)
    summary = result.summary() | {
        "name": job.name, "basis": basis, "sampler": mode, "ansatz": resolved.ansatz,
        "optimizer": resolved.optimizer, "above_hf": above_hf, "below_fci": below,
        "n_spin_orbitals": 2 * integrals.n_orbitals, "n_electrons": integrals.n_electrons,
        "e_hf": refs.get("e_hf"), "e_ccsd_t": refs.get("e_ccsd_t"), "e_fci": refs.get("e_fci"),
        "e_ref": e_ref, "e_ref_error": refs.get("e_ref_error"), "reference": method,
        "ref_wall_time_s": refs.get("ref_wall_time_s"),
        "error_mha": None if e_ref is None else (result.energy - e_ref) * 1e3,
        "seed": args.seed, "start": start or None,
    } | run_record(args, job_geometry(job))
    if not is_main():  # process 0 writes the files
        return 0
    write_json_atomic(args.out / "result.json", summary)
    write_plot(lambda: result.plot(args.out / "convergence.png", title=f"{job.name} / {basis}"),
               args.out / "convergence.png")
    if observe:
        _observe(args.out, job, integrals, result, observe, f"{job.name} / {basis}")
    from nqs.stats import format_estimate

    err = summary["error_mha"]
    _echo(f"E(NQS) = {format_estimate(result.energy, result.energy_error, result.final_exact_sum)}"
          " Ha"
          + ("" if err is None else f", E(NQS) - E({method.upper()}) = {err:.4f} mHa")
          + f" ({mode}); wrote {args.out}/result.json")
    if above_hf:
        _echo(ABOVE_HF_WARNING)
    if below:
        _echo(BELOW_FCI_NOTE)
    return 0


def job_geometry(job) -> dict:  # noqa: ANN001
    """The geometry of a job for result files: atoms with their unit (or the FCIDUMP file)."""
    if job.spec is None:
        return {"fcidump": str(job.fcidump)}
    return {"atoms": job.spec.atoms, "unit": job.spec.unit}


def geometry_line(job) -> str:  # noqa: ANN001
    """The console line that echoes a job's geometry with its unit at the start of a run."""
    if job.spec is None:
        return f"{job.name}: Hamiltonian from the FCIDUMP file {job.fcidump} (no geometry)"
    atoms = " ".join(job.spec.atoms.split())
    return (f"{job.name}: geometry ({job.spec.unit}) {atoms}; basis {job.spec.basis}, charge "
            f"{job.spec.charge}, 2S = {job.spec.spin}")


def _observe(out: Path, job, integrals, result, names: list[str], title: str) -> None:  # noqa: ANN001
    """``--observe``: measure on the final state, write observables.json and the plots."""
    from nqs.commands.observe import (
        measure,
        molecule_operators,
        molecule_plots,
        molecule_records,
        write_observables,
    )

    constant = matrices = None
    if "dipole" in names:
        from hamiltonians.molecule import compute_integrals, core_orbitals, dipole_one_body

        _, mf = quiet(compute_integrals, job.spec, frozen_core=job.frozen_core, cas=job.cas)
        constant, matrices = dipole_one_body(mf.mol, integrals.mo_coeff,
                                             core_orbitals(mf, integrals))
    n = integrals.n_orbitals
    measured = measure(result.state, molecule_operators(names, n, matrices))
    records = molecule_records(measured, names, n, constant)
    path = write_observables(out, records)
    molecule_plots(out, records, n, title)
    _echo(f"measured {', '.join(records)}; wrote {path}")


def _named_molecule(text: str):
    from hamiltonians.molecule import is_xyz_path, parse_molecule
    from nqs.errors import InputError

    if "=" in text:
        name, atoms = text.split("=", 1)
        name, atoms = name.strip(), atoms.strip().strip('"').strip("'")
        if not name:
            raise InputError(f"--molecule {text!r}: the name before '=' is empty")
        return name, atoms  # an .xyz path is read by parse_molecule (Angstrom)
    if is_xyz_path(text):
        return Path(text.strip()).stem, text
    return parse_molecule(text).name or text, text


def run_bench(args: argparse.Namespace) -> int:
    """The benchmark against FCI: table on stdout, results.{json,md}, errors.png."""
    if getattr(args, "realspace", False):
        from nqs.commands.bench_realspace import run_from_args

        if args.dtype != "float64":
            from nqs.errors import InputError

            raise InputError("--dtype applies to the basis-set benchmark; the real-space one "
                             "runs in float64 (nqs realspace has its own --dtype)")
        return run_from_args(args)
    from dataclasses import replace

    from hamiltonians.molecule import parse_molecule
    from nqs.bench.fci import Job, suite_jobs
    from nqs.errors import InputError
    from nqs.rundir import open_run_dir, unique_names

    cas = tuple(args.cas) if args.cas else None
    eri = args.eri_threshold
    jobs: list[Job] = []
    for text in args.molecule:
        name, atoms = quiet(_named_molecule, text)
        spec = quiet(parse_molecule, atoms, basis=args.basis, charge=args.charge,
                      spin=args.spin, unit=args.unit)
        jobs.append(Job(name, replace(spec, name=name), None, args.frozen_core, cas, eri))
    for path in args.fcidump:
        if not Path(path).is_file():
            raise InputError(f"FCIDUMP file {path} does not exist")
        jobs.append(Job(Path(path).stem, fcidump=path, eri_threshold=eri))
    if args.suite is not None or not jobs:
        jobs = suite_jobs(args.suite or "default", args.basis, args.frozen_core, cas, eri) + jobs
    names = unique_names([job.name for job in jobs])
    jobs = [replace(job, name=name) for job, name in zip(jobs, names, strict=True)]
    settings = _settings(args)
    reference = _reference(args)
    check_settings(settings)
    sizes = [_job_sizes(job, f"molecule {job.name!r}") for job in jobs]
    setup_parallel(args)
    for job, size in zip(jobs, sizes, strict=True):
        check_job_memory(job, settings, size)
    with open_run_dir(args.out, args.resume, args.overwrite, is_main()):
        return _run_bench(args, jobs, settings, reference)


def _run_bench(args: argparse.Namespace, jobs, settings, reference) -> int:  # noqa: ANN001
    from nqs.bench.fci import (
        ABOVE_HF_WARNING,
        BELOW_FCI_NOTE,
        markdown_table,
        plot_errors,
        plot_wall_times,
        run_benchmark,
    )
    from nqs.io import write_json_atomic, write_text_atomic

    for job in jobs:
        _echo(geometry_line(job))
    records = run_benchmark(jobs, settings, args.out, _echo, resume=args.resume,
                            checkpoint_every=args.checkpoint_every, reference=reference,
                            time_limit=args.time_limit)
    if not is_main():  # process 0 writes the files
        return 0
    common = run_record(args)
    for job, record in zip(jobs, records, strict=True):  # the geometry of each molecule
        record["config"] = common["config"]
        record["provenance"] = common["provenance"] | {"geometry": job_geometry(job)}
    table = markdown_table(records)
    note = ("\nE(ref) is FCI (exact in the basis) or, past FCI's limit, DMRG extrapolated in the "
            "bond dimension or selected CI, +- its uncertainty (Hartree) in the reference column; "
            "E(NQS) is variational in the same basis, so E(NQS) >= E(FCI) up to the error bar. "
            "Chemical accuracy: |E(NQS) - E(ref)| < 1.6 mHa. ref s / NQS s: wall time of the "
            "reference (when it was computed, possibly in an earlier run: see ref_cached in "
            "results.json) and of the VMC run.")
    failed = [r["name"] for r in records if r.get("above_hf")]
    if failed:
        note += f"\n\n**{', '.join(failed)}: {ABOVE_HF_WARNING}**"
    below = [r["name"] for r in records if r.get("below_fci")]
    if below:
        note += f"\n\n{', '.join(below)}: {BELOW_FCI_NOTE}"
    print("\n" + table + "\n" + note)
    write_json_atomic(args.out / "results.json", records)
    write_text_atomic(args.out / "results.md", table + "\n" + note + "\n")
    write_plot(lambda: plot_errors(records, args.out / "errors.png"), args.out / "errors.png")
    write_plot(lambda: plot_wall_times(records, args.out / "times.png"), args.out / "times.png")
    print(f"wrote {args.out}/results.json, results.md, errors.png, times.png", file=sys.stderr)
    return 0
