"""``nqs spin``: a spin Hamiltonian on a lattice solved with an RBM or a GCNN, against the exact
energy."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from nqs.commands.common import (
    add_dtype_option,
    add_parallel_options,
    add_run_dir_options,
    add_time_limit_option,
    check_memory,
    finite_float,
    fmt_energy,
    is_main,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    run_record,
    seed_int,
    setup_parallel,
    write_plot,
)
from nqs.commands.observe import SPIN_OBSERVABLES, add_observe_option

MODELS = ("ising", "heisenberg", "xxz", "j1j2")
MOVES = ("auto", "all", "antiparallel")
"""``--moves``: the exchanges of the fixed-S^z Metropolis chains (:func:`build_problem`)."""

AUTO_SYMM_ALPHA = 8
"""``--alpha`` of ``rbm-symm`` when not given (filters per translation orbit)."""
OPEN_HIDDEN_PER_SITE = 4
"""``rbm-symm`` on an open lattice, whose point group is small (2 to 8 elements): at least this
many hidden units (filters x group elements) per site."""
FRUSTRATED_J2 = 0.5
"""On periodic 2D lattices the J1-J2 model gets the symmetric RBM (with the Marshall sign) below
this J2 / J1 and the GCNN from it on: the Marshall sign is close to the ground state's deep in
the Neel phase and not near or in the stripe phase, where the symmetric RBM collapsed onto one
configuration (4x4, J2 = 0.8: relative error 0.83) or diverged (J2 = 1). At J2 = 0.5 it stalls
at 4.3e-3 on the 4x4 (exact summation; 5.0e-3 sampled) and 8.3e-3 on the 6x6, where the complex
space-group GCNN reaches 2.0e-3 and about 3e-3."""
SPACE_GROUP_CPU_SITES = 36
"""On a CPU the default GCNN of a frustrated lattice goes over the space group up to this many
sites (the 6x6 lattices), over the translations past it. The space group costs more per step
(2-core Intel Xeon: triangular 4x4 6.1 s against 0.34 s; J1-J2 6x6 11 s against 1.4 s,
triangular 6x6 about 15 s) and is worth it: triangular 4x4 6.5e-4 in 100 steps against 9.6e-3
in 300; J1-J2 6x6 at J2 = 0.5 3.1e-3 after 400 steps against 1.7e-2 after 300 over the
translations."""
AUTO_STEPS = 300
"""``--steps`` when not given, but for a space-group GCNN on a CPU: :data:`SPACE_GROUP_CPU_STEPS`."""
SPACE_GROUP_CPU_STEPS = 100
"""``--steps`` of a space-group GCNN on a CPU (triangular 4x4: 1e-3 by step 30, 11 minutes)."""
GCNN_DTYPE = "float32"
"""``--dtype auto`` of the GCNN: its network in float32 (parameters, sums, local energies and
SR stay float64: :mod:`nqs.precision`). J1-J2 6x6 at J2 = 0.5: 8.3 s a step against 14.5,
relative error 1.5e-3 after 112 minutes against 2.3e-3; at the defaults the J1-J2 4x4 (seeds
0-2) and the triangular 4x4 end at float64's errors to 1e-8, the triangular's step 2.3 s
against 3.1 (experiments/spin_defaults/results/gcnn_float32/)."""
AUTO_EVAL_BATCHES = 16
"""``--eval-batches`` of the symmetric ansatze when not given (a final error bar below 1e-4 E)."""
SYMMETRIC = ("rbm-symm", "gcnn", "vit")

CPU_CHUNK = 64
"""Samples whose local energies and log-derivatives are evaluated at a time on a CPU with
``--chunk-size auto`` and Markov chains: blocks whose intermediates stay in the cache. Steps
1.2-1.5x faster for the GCNN and rbm-symm, the same for the RBM (2-core Intel Xeon,
2026-12-06: the triangular 4x4 space-group GCNN 6.5 -> 4.3 s, rbm-symm on the 4x4 0.27 ->
0.24 s). Measured again with the packed GCNN local energies (the chunk then bounds the
log-derivatives only; 8-step medians, none / 64): triangular 4x4 5.7 / 3.7 s, J1-J2 4x4 at
J2 = 0.5 (complex) 2.65 / 2.25 s, Heisenberg 4x4 real space-group GCNN 0.57-0.59 / 0.60-0.62
s: 64 stays."""


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the ``auto`` / unset options of ``args`` in place (and return it): the ansatz from
    the lattice (``rbm-symm`` on periodic bipartite lattices, chains of the exchange models
    included, the GCNN for exchange models on periodic 2D lattices that are not bipartite,
    ``rbm`` otherwise), its
    symmetries (space group for ``rbm-symm`` and for the GCNN of a frustrated lattice,
    :func:`_frustrated_space_group`; translations otherwise), the steps (:data:`AUTO_STEPS`;
    :data:`SPACE_GROUP_CPU_STEPS` for a space-group GCNN on a CPU), ``alpha``
    (:data:`AUTO_SYMM_ALPHA` for ``rbm-symm``, more on an open lattice: :func:`_symm_alpha`;
    else 1), the learning-rate schedule
    (cosine for a symmetric ansatz, else constant), the final evaluation's sampler calls
    (:data:`AUTO_EVAL_BATCHES` for a symmetric ansatz, else 4) and real parameters for the
    GCNN of a sign-free Hamiltonian (:func:`_sign_free`; half the cost of complex ones).
    Options given explicitly stay."""
    if getattr(args, "momentum", None) is not None:
        # a momentum is projected on a plain RBM over the translations
        args.project = True
        if getattr(args, "ansatz", "auto") == "auto":
            args.ansatz = "rbm"
        if getattr(args, "symmetries", "auto") == "auto":
            args.symmetries = "translations"
    if getattr(args, "ansatz", "auto") == "auto":
        args.ansatz = ("rbm-symm" if _symmetric_default(args)
                       else "gcnn" if _frustrated_default(args) else "rbm")
    if getattr(args, "symmetries", "auto") == "auto":
        space_group = args.ansatz == "rbm-symm" or (
            args.ansatz == "gcnn" and _frustrated_default(args) and _frustrated_space_group(args))
        args.symmetries = "space-group" if space_group else "translations"
    if getattr(args, "steps", AUTO_STEPS) is None:
        args.steps = (SPACE_GROUP_CPU_STEPS if args.ansatz == "gcnn"
                      and args.symmetries == "space-group" and _on_cpu() else AUTO_STEPS)
    if getattr(args, "alpha", None) is None:
        args.alpha = float(_symm_alpha(args)) if args.ansatz == "rbm-symm" else 1.0
    if getattr(args, "lr_schedule", "auto") == "auto":
        args.lr_schedule = "cosine" if args.ansatz in SYMMETRIC else "constant"
    if getattr(args, "eval_batches", None) is None:
        args.eval_batches = AUTO_EVAL_BATCHES if args.ansatz in SYMMETRIC else 4
    if getattr(args, "real", None) is None:
        args.real = args.ansatz == "gcnn" and _sign_free(args)
    if getattr(args, "dtype", "float64") == "auto":
        args.dtype = GCNN_DTYPE if args.ansatz == "gcnn" else "float64"
    if not hasattr(args, "final_lr_fraction"):
        args.final_lr_fraction = 0.1
    return args


def spin_optimizer(args: argparse.Namespace):  # noqa: ANN201
    """The optimizer of ``args`` (resolved by :func:`resolve_defaults`) with its learning-rate
    schedule: ``"cosine"`` is ``lr (f + (1 - f) (1 + cos(pi t / steps)) / 2)`` at step ``t``,
    ``f = --final-lr-fraction``."""
    import optax

    from nqs.errors import InputError
    from nqs.optim import Optimizer, make_optimizer, sr_optimizer

    chunk = getattr(args, "param_chunk", None)
    mode = "minsr" if args.optimizer == "minsr" else "auto"
    if args.lr_schedule == "constant":
        if args.optimizer in ("sr", "minsr"):
            make_optimizer(args.optimizer, args.lr, args.diag_shift)  # validates
            return sr_optimizer(args.lr, args.diag_shift, mode, param_chunk=chunk)
        return make_optimizer(args.optimizer, args.lr, args.diag_shift)
    if not 0.0 < args.final_lr_fraction <= 1.0:
        raise InputError(f"--final-lr-fraction must be in (0, 1], got {args.final_lr_fraction}")
    make_optimizer(args.optimizer, args.lr, args.diag_shift)  # validates the name and lr
    lr = optax.cosine_decay_schedule(args.lr, max(args.steps, 1), alpha=args.final_lr_fraction)
    if args.optimizer == "adam":
        return Optimizer(optax.adam(lr), False)
    if args.optimizer == "sgd":
        return Optimizer(optax.sgd(lr), False)
    return sr_optimizer(lr, args.diag_shift, mode, param_chunk=chunk)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``spin`` subcommand."""
    p = sub.add_parser(
        "spin",
        help="solve a spin model (TFIM, Heisenberg, XXZ, J1-J2) with an RBM or a GCNN",
        description="Optimize an RBM or a GCNN for a spin Hamiltonian by VMC with SR and compare "
        "with the exact ground-state energy (free fermions, Bethe ansatz or Lanczos), with the V-score "
        "N Var(E) / (E - E_inf)^2 of varbench (E_inf = Tr H / 2^N = 0). Energies use the "
        "conventions of docs/conventions.md: Pauli matrices for the Ising model, S = sigma/2 "
        "for Heisenberg-type models.",
    )
    _add_model_options(p)
    _add_ansatz_options(p)
    _add_sampler_options(p)
    _add_run_options(p)
    p.set_defaults(handler=run, resolve_options=resolve_defaults)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The Hamiltonian and its lattice: model, lattice, size, boundaries, couplings, Marshall sign."""
    p.add_argument("--model", choices=MODELS, default="ising",
                   help="ising: -J sum zz - h sum x (Pauli); heisenberg: J sum S.S; "
                   "xxz: J sum (SxSx + SySy + delta SzSz); j1j2: J1 nearest + J2 next-nearest "
                   "(default: ising)")
    p.add_argument("--lattice", choices=("chain", "square", "triangular", "honeycomb"),
                   default="chain",
                   help="chain of L sites, L x L square or triangular lattice, or L x L cells of "
                   "the honeycomb lattice (2 L^2 sites) (default: chain)")
    p.add_argument("--size", type=int, default=16,
                   help="linear size L (default: 16)")
    p.add_argument("--open", action="store_true", help="open instead of periodic boundaries")
    p.add_argument("--h", type=finite_float, default=1.0, help="transverse field of the Ising model "
                   "(default: 1.0)")
    p.add_argument("--j2", type=finite_float, default=0.5, help="next-nearest coupling J2 of the J1-J2 "
                   "model, J1 = 1 (default: 0.5)")
    p.add_argument("--delta", type=finite_float, default=1.0, help="anisotropy of the XXZ model "
                   "(default: 1.0)")
    p.add_argument("--marshall", action=argparse.BooleanOptionalAction, default=None,
                   help="apply the Marshall sign rule to the J1 bonds (a basis rotation: same "
                   "spectrum, positive ground state for the unfrustrated Heisenberg model). "
                   "Default: on for Heisenberg-type models on bipartite lattices, off otherwise")


def _add_ansatz_options(p: argparse.ArgumentParser) -> None:
    """The ansatz (RBM, symmetric RBM, GCNN, ViT), its sizes, symmetries and projections."""
    p.add_argument("--ansatz", choices=("auto", "rbm", "rbm-symm", "gcnn", "vit"),
                   default="auto",
                   help="RBM, RBM symmetric under --symmetries, group-convolutional network over "
                   "--symmetries, or vision transformer (square lattices); auto: rbm-symm on "
                   "periodic bipartite lattices (square with even L, honeycomb; even chains "
                   "of the exchange models) and for the exchange models on open bipartite "
                   "ones, gcnn for the exchange models on other periodic 2D lattices "
                   f"(triangular) and for J1-J2 from J2 = {FRUSTRATED_J2:g}, rbm otherwise "
                   "(default: auto)")
    p.add_argument("--features", type=positive_int, default=4,
                   help="GCNN channels per layer (default: 4)")
    p.add_argument("--layers", type=positive_int, default=2,
                   help="GCNN layers: one embedding and layers-1 group convolutions (default: 2)")
    p.add_argument("--patch", type=positive_int, default=2,
                   help="ViT patch side b (divides L) (default: 2)")
    p.add_argument("--embed", type=positive_int, default=8,
                   help="ViT embedding dimension (a multiple of --heads) (default: 8)")
    p.add_argument("--depth", type=positive_int, default=2,
                   help="ViT encoder blocks (default: 2)")
    p.add_argument("--heads", type=positive_int, default=2,
                   help="ViT attention heads (default: 2)")
    p.add_argument("--symmetries", choices=("auto", "translations", "space-group"),
                   default="auto",
                   help="symmetry group of rbm-symm, the GCNN and --project: the lattice "
                   "translations, or translations times point group (G^2 times costlier per "
                   "GCNN layer; on an open lattice: the patch's point group); auto: "
                   "space-group for rbm-symm and for the default GCNN of frustrated lattices (on a "
                   f"CPU up to {SPACE_GROUP_CPU_SITES} sites), translations otherwise "
                   "(default: auto)")
    p.add_argument("--project", action="store_true",
                   help="project the ansatz on the trivial irrep of --symmetries (momentum zero, "
                   "fully symmetric; costs one evaluation per group element)")
    p.add_argument("--momentum", type=int, nargs="+", default=None, metavar="K",
                   help="project on the momentum k = 2 pi K / L per lattice direction (one "
                   "integer per direction) instead of zero: implies --project over the "
                   "translations and, with --ansatz auto, the plain RBM. For ground states "
                   "outside momentum zero (the run's note names the momentum where Lanczos "
                   "gives it)")
    p.add_argument("--parity", choices=("none", "even", "odd"), default="none",
                   help="project the ansatz on a spin-flip parity (default: none)")
    p.add_argument("--alpha", type=positive_float, default=None,
                   help="hidden-unit density M/N; for rbm-symm the filters, an integer (default: "
                   f"{AUTO_SYMM_ALPHA} for rbm-symm, on an open lattice at least "
                   f"{OPEN_HIDDEN_PER_SITE} hidden units a site; 1 otherwise)")
    p.add_argument("--real", action=argparse.BooleanOptionalAction, default=None,
                   help="real network parameters (a positive wavefunction) or complex (any "
                   "sign). Default: real for the GCNN where the Hamiltonian is sign-free in "
                   "the chosen basis (Ising with h >= 0; Heisenberg, XXZ, or J1-J2 at J2 = 0, "
                   "with the Marshall sign on a bipartite lattice), complex otherwise")


def _add_sampler_options(p: argparse.ArgumentParser) -> None:
    """The sampler: Metropolis or exact enumeration, samples, chains, thermalization."""
    p.add_argument("--sampler", choices=("mcmc", "exact"), default="mcmc",
                   help="Metropolis sampling, or exact enumeration of all configurations "
                   "(small systems; no Monte Carlo noise) (default: mcmc)")
    p.add_argument("--samples", type=positive_int, default=1024,
                   help="samples per step (default: 1024)")
    p.add_argument("--chains", type=positive_int, default=128,
                   help="parallel Markov chains (default: 128)")
    p.add_argument("--discard-sweeps", type=nonnegative_int, default=4,
                   help="thermalization sweeps discarded before each step's samples; chains "
                   "continue from the previous step (default: 4)")
    p.add_argument("--moves", choices=MOVES, default="auto",
                   help="exchange moves of the fixed-S^z chains: 'all' draws any bond (a bond "
                   "of parallel spins is the identity move), 'antiparallel' only bonds whose "
                   "spins differ (every proposal moves; Metropolis-Hastings ratio); 'auto': "
                   "antiparallel for networks that evaluate log psi per proposal (gcnn, vit, "
                   "--project), all bonds for the RBMs, whose per-pattern tables make an "
                   "identity move cheap (default: auto)")
    p.add_argument("--ratio-dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the Metropolis acceptance ratios (RBM per-pattern tables; "
                   "float32: faster sampling, log-ratio error ~1e-6; samples, log psi and "
                   "energies stay float64) (default: float64)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Steps, optimizer and schedule, final evaluation, seed, observables, files, precision and devices."""
    p.add_argument("--steps", type=positive_int, default=None,
                   help=f"optimization steps (default: {AUTO_STEPS}; {SPACE_GROUP_CPU_STEPS} for "
                   "a space-group GCNN on a CPU)")
    add_time_limit_option(p)
    p.add_argument("--optimizer", choices=("sr", "minsr", "adam", "sgd"), default="sr",
                   help="sr: stochastic reconfiguration (dense, or minSR when parameters "
                   "outnumber samples); minsr: always the samples x samples form (default: sr)")
    p.add_argument("--param-chunk", type=positive_int, default=None,
                   help="minSR on a dense Jacobian: build the samples x samples kernel O O^H and "
                   "O^H y from blocks of this many parameters (bounds their temporaries; same "
                   "result to rounding) (default: one product)")
    p.add_argument("--lr", type=positive_float, default=0.05,
                   help="learning rate (default: 0.05)")
    p.add_argument("--lr-schedule", choices=("auto", "constant", "cosine"), default="auto",
                   help="learning rate: constant, or cosine decay to --final-lr-fraction x lr "
                   "over --steps; auto: cosine for the symmetric 2D default (rbm-symm, gcnn, "
                   "vit), constant otherwise (default: auto)")
    p.add_argument("--final-lr-fraction", type=positive_float, default=0.1,
                   help="end of the cosine schedule as a fraction of --lr (default: 0.1)")
    p.add_argument("--eval-batches", type=nonnegative_int, default=None,
                   help="sampler calls of --samples each for the final energy (0: the last "
                   f"step's estimate) (default: {AUTO_EVAL_BATCHES} with rbm-symm, gcnn or vit, "
                   "4 otherwise)")
    p.add_argument("--diag-shift", type=nonnegative_float, default=1e-2,
                   help="SR diagonal shift (default: 1e-2)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (default: 0)")
    add_observe_option(p, SPIN_OBSERVABLES)
    p.add_argument("--out", type=Path, default=Path("runs/spin"),
                   help="output directory for result.json, log.jsonl, checkpoints and "
                   "convergence.png (default: runs/spin)")
    add_run_dir_options(p)
    add_dtype_option(p, auto="float32 for the GCNN, float64 otherwise; a resumed run keeps "
                     "its checkpoint's")
    add_parallel_options(p)


MAX_SITES = 100_000


def check_sizes(args: argparse.Namespace) -> None:
    """Refuse sizes no machine can run, from the options alone (nothing is built; after
    :func:`setup_parallel`, since it asks JAX for the device memory): the number
    of sites, and the memory of parameters, samples, Jacobian and exact space against the
    device memory (:func:`nqs.commands.common.check_memory`)."""
    from math import comb

    from nqs.errors import InputError

    resolve_defaults(args)
    if args.size <= 0:
        raise InputError(f"--size must be a positive integer, got {args.size}")
    n = args.size if args.lattice == "chain" else args.size ** 2
    if args.lattice == "honeycomb":
        n *= 2
    if n > MAX_SITES:
        raise InputError(f"--size {args.size} gives {n} spins, more than the {MAX_SITES} "
                         "this solver handles; reduce --size")
    if args.ansatz == "rbm-symm" and args.alpha != int(args.alpha):
        raise InputError(f"--alpha must be an integer for rbm-symm, got {args.alpha}")
    number = 8 if args.real else 16
    hidden = max(int(round(args.alpha * n)), 1)
    n_params = (args.alpha * n + args.alpha + 1) if args.ansatz == "rbm-symm" \
        else n * hidden + n + hidden
    if args.ansatz == "rbm-symm":  # alpha G hidden units, G <= 12 n
        hidden *= 1 if args.symmetries == "translations" else 12
    if args.ansatz == "gcnn":  # G group elements: at most n sites x 12 point-group operations
        group = n * (1 if args.symmetries == "translations" else 12)
        f = args.features
        n_params = n * f + f + (args.layers - 1) * (group * f * f + f)
        hidden = group * f  # per-configuration activations
    elif args.ansatz == "vit":
        d = args.embed
        n_params = args.patch ** 2 * d + args.depth * (8 * d * d + n) + 2 * d * d
        hidden = n * d
    net = "--alpha or --size"
    if args.sampler == "exact":
        n_states = comb(n, n // 2) if args.model != "ising" else 2 ** n
        samples, conn = float(n_states), 2.0 * n
        flag = "--size (or use --sampler mcmc)"
        parts = {"the enumerated space": (samples * n, flag),
                 "the sparse Hamiltonian": (samples * conn * 16, flag)}
    else:
        samples = float(args.samples)
        flag = "--samples"
        parts = {"samples": (samples * n * 8, f"{flag} or --size"),
                 "chain caches": (args.chains * hidden * 32.0, f"--chains or {net}")}
    parts["parameters and optimizer state"] = (6.0 * n_params * number, net)
    if args.optimizer in ("sr", "minsr"):
        parts["the SR Jacobian"] = (samples * n_params * number, f"{flag} or {net}")
        k = min(samples, n_params) if args.optimizer == "sr" else samples
        parts["the SR matrix"] = (k * k * 8.0, f"{flag} or {net}")
    if args.chunk_size is None:
        parts["local energies"] = (samples * 2 * n * hidden * 16.0,
                                   f"{flag} or {net}, or set --chunk-size")
    check_memory(parts)


def fingerprint(args: argparse.Namespace) -> dict:
    """The options that change a spin run's trajectory (stored in its checkpoint)."""
    keys = ("model", "lattice", "size", "open", "h", "j2", "delta", "marshall", "ansatz",
            "alpha", "real", "sampler", "samples", "chains", "discard_sweeps", "ratio_dtype",
            "optimizer", "lr", "diag_shift", "features", "layers", "symmetries", "project",
            "parity", "patch", "embed", "depth", "heads")
    fp = {k: getattr(args, k) for k in keys}
    if args.moves != "auto":  # (checkpoints of runs with the automatic moves predate the key)
        fp["moves"] = args.moves
    if _momentum(args) is not None:  # (checkpoints of momentum-zero runs predate the key)
        fp["momentum"] = list(_momentum(args))
    if args.lr_schedule != "constant":  # (checkpoints of constant-rate runs predate the key)
        fp |= {"lr_schedule": args.lr_schedule, "final_lr_fraction": args.final_lr_fraction}
    return fp


def _symmetric_default(args: argparse.Namespace) -> bool:
    """The symmetric RBM is the default on periodic lattices that are bipartite: square with
    even L and honeycomb for every model, and chains with even L for the exchange models
    (Heisenberg, XXZ, J1-J2; the Ising chain keeps the plain RBM of Carleo & Troyer). There
    the Marshall sign makes the Heisenberg ground state positive and the symmetric RBM
    converges well, J2 = 0.5 included (chain of 16: relative error 1.8e-5 against the plain
    RBM's 4.9e-4; J1-J2 at J2 = 0.5: 1.2e-4 against 8.4e-3); on frustrated geometries
    (triangular) it can collapse onto a few configurations. On open lattices (the patch's
    point group only) the same holds for the exchange models on the bipartite geometries
    (square 4x4 Heisenberg: 1.9e-4 against the plain RBM's 2.1e-3; chain of 16: 9.8e-6
    against 2.2e-4); the open Ising model keeps the plain RBM. Decided from the geometry alone
    (no lattice is built: the size is checked later)."""
    if args.size <= 0:
        return False
    if args.open:
        return args.model != "ising" and args.lattice != "triangular"
    if args.lattice == "chain":
        return args.model != "ising" and args.size % 2 == 0
    if args.model == "j1j2" and args.j2 >= FRUSTRATED_J2:
        return False  # the GCNN over the space group (_frustrated_default)
    return args.lattice == "honeycomb" or (args.lattice == "square" and args.size % 2 == 0)


def _symm_alpha(args: argparse.Namespace) -> int:
    """Filters of the default symmetric RBM: :data:`AUTO_SYMM_ALPHA`, and on an open lattice
    enough for :data:`OPEN_HIDDEN_PER_SITE` hidden units a site (its point group has 2 to 8
    elements: chain of 16 with 8 filters 6.6e-4, with 32 9.8e-6)."""
    from math import ceil

    from hamiltonians.lattice import make_lattice

    if not args.open or args.size <= 0:
        return AUTO_SYMM_ALPHA
    lattice = make_lattice(args.lattice, args.size, pbc=False)
    n_group = len(lattice.point_group())
    return max(AUTO_SYMM_ALPHA, ceil(OPEN_HIDDEN_PER_SITE * lattice.n_sites / n_group))


def _frustrated_default(args: argparse.Namespace) -> bool:
    """The GCNN is the default for the exchange models (Heisenberg, XXZ, J1-J2) on periodic 2D
    lattices that are not bipartite (triangular, square with odd L), and for the J1-J2 model
    from :data:`FRUSTRATED_J2` on the others: no Marshall sign exists there (or it is far
    from the ground state's), the network must learn the sign structure, and the plain RBM
    stays far from the
    ground state (triangular 4x4 Heisenberg: relative error 3.7e-2 against 9.6e-3 for the
    GCNN over the translations and 6.5e-4 over the space group, docs/spins.md; its group:
    :func:`_frustrated_space_group`). Decided from the geometry alone."""
    if args.model == "ising" or args.lattice == "chain" or args.open or args.size <= 0:
        return False
    return not _symmetric_default(args)  # (odd chains and odd squares: no S^z = 0 sector)


def _frustrated_space_group(args: argparse.Namespace) -> bool:
    """The frustrated lattice's GCNN goes over the space group (the translations times the
    point group), except on a CPU past :data:`SPACE_GROUP_CPU_SITES` sites. The frustrated
    models need the point group: triangular 4x4 Heisenberg, relative error 6.5e-4 in 100 steps
    (11 min) over the space group, 9.6e-3 in 300 (2 min) over the translations."""
    if not _on_cpu():
        return True
    cells = args.size if args.lattice == "chain" else args.size ** 2
    return cells * (2 if args.lattice == "honeycomb" else 1) <= SPACE_GROUP_CPU_SITES


def resolve_chunk_size(args: argparse.Namespace) -> int | str | None:
    """``--chunk-size``, with ``auto`` on a CPU with Markov chains :data:`CPU_CHUNK` samples at
    a time (fewer samples: no chunking); elsewhere ``auto`` is sized to the device memory."""
    if args.chunk_size == "auto" and args.sampler == "mcmc" and _on_cpu():
        return CPU_CHUNK if args.samples > CPU_CHUNK else None
    return args.chunk_size


def _on_cpu() -> bool:
    """Whether JAX computes on the CPU (no accelerator)."""
    import jax

    return jax.default_backend() == "cpu"


def _sign_free(args: argparse.Namespace) -> bool:
    """Whether every off-diagonal element of H is <= 0 in the basis the run uses, so that its
    ground state is positive (Perron-Frobenius) and real parameters lose nothing: the Ising
    model with h >= 0, and the Heisenberg, XXZ and unfrustrated (J2 = 0) J1-J2 models with the
    Marshall sign (which exists only on a bipartite lattice: the lattice refuses it elsewhere)."""
    if args.size <= 0:
        return False
    if args.model == "ising":
        return args.h >= 0
    if args.model == "j1j2" and args.j2 != 0:
        return False
    return _marshall_default(args) if args.marshall is None else bool(args.marshall)


def _marshall_default(args: argparse.Namespace) -> bool:
    """Marshall sign on for Heisenberg-type models on bipartite lattices."""
    from hamiltonians.lattice import make_lattice

    if args.model == "ising" or args.size <= 0:
        return False
    return make_lattice(args.lattice, args.size, pbc=not args.open).is_bipartite


def run(args: argparse.Namespace) -> int:
    """Build the problem from ``args``, run VMC, write the result files."""
    from nqs.commands.observe import spin_operators
    from nqs.rundir import open_run_dir

    given = copy.copy(args)  # the options as given, before the defaults fill them
    if getattr(args, "dtype", None) == "auto" and args.resume:
        args.dtype = _checkpoint_dtype(args.out)  # runs from before the auto default resume
    resolve_defaults(args)
    setup_parallel(args)
    check_sizes(args)
    model, ansatz, sampler = build_problem(args)
    reference = symmetric = None
    if _sector_is_default(given):
        reference, change, symmetric = choose_sector(args, given, model)
        if change is not None:
            print(f"note: {change}", flush=True)
            check_sizes(args)
            model, ansatz, sampler = build_problem(args)
    optimizer = spin_optimizer(args)
    observables = spin_operators(args.observe, model)  # bad names: InputError before --out
    with open_run_dir(args.out, args.resume, args.overwrite, is_main()):
        return _run(args, model, ansatz, sampler, optimizer, observables, reference, symmetric)


def _checkpoint_dtype(out: str | None) -> str:
    """The ``--dtype`` the checkpoint in ``out`` was written with (``auto`` when there is
    none: the resume then says why in its own words)."""
    from nqs.io import load_checkpoint_metadata
    from nqs.loop import CHECKPOINT_NAME

    path = Path(out) / CHECKPOINT_NAME if out else None
    if path is None or not path.exists():
        return "auto"
    return load_checkpoint_metadata(path).get("dtype", "float64")


def _sector_is_default(given: argparse.Namespace) -> bool:
    """Whether the run's symmetry sector is the defaults' choice: no ``--ansatz``,
    ``--symmetries``, ``--project`` or ``--momentum`` given."""
    return (getattr(given, "ansatz", "auto") == "auto"
            and getattr(given, "symmetries", "auto") == "auto"
            and not getattr(given, "project", False)
            and getattr(given, "momentum", None) is None)


def choose_sector(args: argparse.Namespace, given: argparse.Namespace, model  # noqa: ANN001
                  ) -> tuple[tuple[float | None, str], str | None, float | None]:
    """``((exact, source), change, symmetric)``: the model's exact energy; where the default
    ansatz is symmetric (``rbm-symm``, the GCNN) and Lanczos shows that no state invariant
    under its group reaches the ground state, ``args`` changed in place to the first default
    whose sector holds it, and ``change`` says which in words (else None): the translations
    alone (the point group was the cause; on an open lattice no symmetry), the ground state's
    momentum (the plain RBM projected on it, as ``--momentum``), or the plain RBM;
    ``symmetric``: the lowest energy invariant under the group when it stays (None when not
    computed). ``given``: the options before :func:`resolve_defaults` (re-resolved for the new
    choice). Small systems only: past Lanczos (or the symmetric sector's work limit) the
    defaults stay as they are. The Heisenberg triangular 2x2 (its singlets not invariant under
    the point group) goes over the translations; the J1-J2 chain of 12 at J2 = 1, ground state
    at momentum pi, to ``--momentum 6``."""
    from hamiltonians.spin_reference import symmetric_ground_energy

    exact, source = _exact_reference(model)
    if exact is None or "Lanczos" not in source or args.ansatz not in ("rbm-symm", "gcnn"):
        return (exact, source), None, None
    lattice = model.lattice
    group = lattice.space_group() if args.symmetries == "space-group" else lattice.translations()
    symmetric = symmetric_ground_energy(model, group)
    if _reaches(symmetric, exact) is not False:  # it holds the ground state, or too large to tell
        return (exact, source), None, symmetric
    chosen = copy.copy(given)
    was = f"{args.ansatz} over the {args.symmetries.replace('-', ' ')}"
    name = "the space group" if args.symmetries == "space-group" else "the translations"
    if (args.symmetries == "space-group"
            and _reaches(symmetric_ground_energy(model, lattice.translations()), exact)):
        chosen.symmetries = "translations"
        change = (f"the {args.ansatz} goes over the translations alone" if lattice.pbc
                  else f"the {args.ansatz} without the point group")
    else:
        momentum = _ground_momentum(model, exact)
        if momentum is not None:
            chosen.momentum = list(momentum)
            k = " ".join(map(str, momentum))
            change = f"a plain RBM projected on the ground state's momentum {k} (--momentum {k})"
        else:
            chosen.ansatz = "rbm"
            change = "a plain RBM (no symmetry)"
    vars(args).update(vars(resolve_defaults(chosen)))
    return (exact, source), (f"no state invariant under {name} reaches the ground state "
                             f"(Lanczos); instead of the default {was}: {change}"), None


def _reaches(energy: float | None, exact: float) -> bool | None:
    """Whether a sector whose lowest energy is ``energy`` holds the ground state ``exact``
    (to 1e-8 relative); None when the sector's energy is not known."""
    return None if energy is None else energy - exact <= 1e-8 * max(1.0, abs(exact))


def _ground_momentum(model, exact: float) -> tuple[int, ...] | None:  # noqa: ANN001
    """The momentum of the ground state where it is not zero and its sector reaches ``exact``
    (:func:`hamiltonians.momentum_sectors.ground_state_momentum`), else None."""
    from hamiltonians.momentum_sectors import ground_state_momentum

    found = ground_state_momentum(model)
    if found is None or not any(found[0]) or not _reaches(found[1], exact):
        return None
    return found[0]


def build_problem(args: argparse.Namespace):  # noqa: ANN201
    """``(model, ansatz, sampler)`` of the options ``args`` (the keys of :func:`fingerprint`
    and ``dtype``): what :func:`run` runs and :func:`nqs.commands.load.load_run` rebuilds."""
    from hamiltonians.spin import make_spin_model
    from nqs.errors import InputError
    from nqs.precision import with_dtype
    from nqs.problems import exchange_antiparallel, spin_ansatz, spin_sampler

    resolve_defaults(args)
    model = make_spin_model(
        model=args.model,
        lattice=args.lattice,
        size=args.size,
        pbc=not args.open,
        h=args.h,
        j2=args.j2,
        delta=args.delta,
        marshall_sign=_marshall_default(args) if args.marshall is None else args.marshall,
    )
    if args.model != "ising" and model.hilbert.total_sz is None:
        raise InputError(
            f"{model.hilbert.n_sites} spins: an odd number of spins has no S^z = 0 sector, which "
            f"the exchange sampler of the {args.model} model needs; use an even size"
        )
    ansatz = with_dtype(spin_ansatz(model, args.ansatz, args.alpha,
                                    complex_params=not args.real, features=args.features,
                                    layers=args.layers, symmetries=args.symmetries,
                                    project=args.project, parity=args.parity,
                                    momentum=_momentum(args), patch=args.patch,
                                    embed=args.embed, depth=args.depth, heads=args.heads),
                         args.dtype)
    if args.moves != "auto" and model.hilbert.total_sz is None:
        raise InputError(f"--moves {args.moves}: the {args.model} model's chains flip single "
                         "spins (no fixed S^z sector), they make no exchanges")
    antiparallel = (exchange_antiparallel(ansatz) if args.moves == "auto"
                    else args.moves == "antiparallel")
    sampler = spin_sampler(model, args.sampler, args.samples, args.chains, args.discard_sweeps,
                           args.ratio_dtype, antiparallel=antiparallel)
    return model, ansatz, sampler


def _exact_reference(model) -> tuple[float | None, str]:  # noqa: ANN001
    """:func:`hamiltonians.spin_reference.exact_energy`, saying first when it will take
    minutes (the momentum sectors)."""
    from hamiltonians.spin_reference import (
        MAX_AUTO_LANCZOS_STATES,
        exact_energy,
        momentum_sectors_fit,
    )

    if momentum_sectors_fit(model) and model.hilbert.n_states > MAX_AUTO_LANCZOS_STATES:
        print(f"exact energy: Lanczos in the momentum sectors of {model.hilbert.n_states} "
              "states (a minute or two)", flush=True)
    return exact_energy(model)


def _run(args: argparse.Namespace, model, ansatz, sampler, optimizer,  # noqa: ANN001
         observables: dict | None = None,
         reference: tuple[float | None, str] | None = None,
         symmetric: float | None = None) -> int:
    from hamiltonians.spin_reference import infinite_temperature_energy
    from nqs.driver import run_vmc
    from nqs.io import write_json_atomic
    from nqs.stats import v_score

    exact, source = _exact_reference(model) if reference is None else reference
    known = f"{fmt_energy(exact, 10)} ({source})" if exact is not None else "not known for this size"
    print(f"{model.describe()}: exact energy {known}", flush=True)
    if symmetric is None:  # (choose_sector's, where it kept the group and computed it)
        symmetric = (_symmetric_reference(model, ansatz, exact, source)
                     if args.ansatz in ("rbm-symm", "gcnn") or args.project else None)
    shape = (f"{args.layers} layers x {args.features} features" if args.ansatz == "gcnn"
             else f"alpha {args.alpha:g}")
    group = (f", {args.symmetries}" if args.ansatz in ("gcnn", "rbm-symm") or args.project
             else "")
    if group and args.open:  # an open lattice has no translations
        group = ", point group" if args.symmetries == "space-group" else ", no symmetries"
    if _momentum(args) is not None:
        group += f", momentum {' '.join(map(str, _momentum(args)))} (2 pi / L)"
    numbers = "" if args.ansatz == "vit" else (", real" if args.real else ", complex")
    moves = sampler_moves(sampler)
    moves = f" ({moves})" if moves else ""
    print(f"ansatz {args.ansatz} ({shape}{group}{numbers}), {args.samples} samples{moves} x "
          f"{args.steps} steps, {args.optimizer} lr {args.lr:g} ({args.lr_schedule}), diag shift "
          f"{args.diag_shift:g}, final energy from {args.eval_batches} x {args.samples} samples",
          flush=True)
    result = run_vmc(
        ansatz,
        model,
        sampler,
        optimizer,
        args.steps,
        seed=args.seed,
        out_dir=args.out,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        exact_energy=exact,
        chunk_size=resolve_chunk_size(args),
        fingerprint=fingerprint(args),
        time_limit=args.time_limit,
        n_eval_batches=args.eval_batches,
    )
    e_inf = infinite_temperature_energy(model)
    vscore = v_score(result.energy, result.variance, model.hilbert.n_sites, e_inf)
    summary = (result.summary() | _summary(args, model, result.energy, vscore, e_inf, source)
               | {"exact_energy_symmetric": symmetric, "moves": sampler_moves(sampler)}
               | run_record(args))
    if not is_main():  # process 0 writes the files
        return 0
    write_json_atomic(args.out / "result.json", summary)
    write_plot(lambda: result.plot(args.out / "convergence.png", title=model.describe()),
               args.out / "convergence.png")
    if observables:
        from nqs.commands.observe import measure, spin_plots, write_observables

        records = measure(result.state, observables)
        path = write_observables(args.out, records)
        spin_plots(args.out, records, model)
        print(f"measured {', '.join(records)}; wrote {path}", flush=True)
    from nqs.stats import format_estimate

    rel = result.relative_error
    versus = "no exact energy" if exact is None or rel is None \
        else f"exact {exact:.10f}, relative error {rel:.2e}"
    print(
        f"E = {format_estimate(result.energy, result.energy_error, result.final_exact_sum)}  "
        f"({versus}, V-score {vscore:.2e})  "
        f"{result.time_per_step_s:.3f} s/step; wrote {args.out}/result.json",
        flush=True,
    )
    return 0


def _momentum(args: argparse.Namespace) -> tuple[int, ...] | None:
    """``--momentum`` as a tuple (None: momentum zero or not projected)."""
    momentum = getattr(args, "momentum", None)
    return None if momentum is None else tuple(int(k) for k in momentum)


def _symmetric_reference(model, ansatz, exact: float | None,  # noqa: ANN001
                         source: str) -> float | None:
    """The lowest energy an ansatz invariant under its group can reach (the trivial irrep:
    ``rbm-symm``, the GCNN, ``--project``;
    :func:`hamiltonians.spin_reference.symmetric_ground_energy`) where the exact energy comes
    from Lanczos; printed when the ground state lies outside it (J1-J2 chain of 16 at J2 = 0.8:
    1.5 % above, honeycomb 3x3 at J2 = 0.8 over the space group: 2.7 %). None otherwise."""
    from hamiltonians.spin_reference import symmetric_ground_energy

    if exact is None or "Lanczos" not in source or ansatz.symmetries is None:
        return None
    characters = getattr(ansatz.module, "characters", None)  # a momentum's, else trivial
    symmetric = symmetric_ground_energy(model, ansatz.symmetries, characters)
    if _reaches(symmetric, exact) is False:
        momentum = _ground_momentum(model, exact)
        sector = "its irrep" if characters is not None else "invariant"
        if momentum is not None:
            k = " ".join(map(str, momentum))
            hint = f"the ground state has momentum {k} (2 pi / L): --momentum {k}"
        else:
            hint = "--ansatz rbm, or --symmetries translations where the point group is the cause"
        print(f"note: the ground state is not in the ansatz's symmetry sector; the lowest state "
              f"{sector} is {symmetric:.10f} (relative {(symmetric - exact) / abs(exact):.2e} "
              f"above), which this ansatz cannot pass: {hint}", flush=True)
    return symmetric


def sampler_moves(sampler) -> str | None:  # noqa: ANN001
    """The Metropolis moves of ``sampler`` in words (``result.json``'s ``moves``); None for
    exact enumeration."""
    from nqs.sampling.rules import AntiparallelExchangeRule, ExchangeRule, LocalRule

    rule = getattr(sampler, "rule", None)
    return {LocalRule: "single flips", ExchangeRule: "exchanges on all bonds",
            AntiparallelExchangeRule: "exchanges of antiparallel spins"}.get(type(rule))


def _summary(args: argparse.Namespace, model, energy: float, vscore: float,  # noqa: ANN001
             e_inf: float, source: str | None) -> dict:
    """The fields ``result.json`` adds to the run's summary: V-score, model, ansatz, optimizer
    and sampler options."""
    return {
        "v_score": vscore,
        "v_score_e_inf": e_inf,
        "model": args.model,
        "lattice": args.lattice,
        "size": args.size,
        "n_sites": model.hilbert.n_sites,
        "energy_per_site": energy / model.hilbert.n_sites,
        "exact_energy_source": source,
        "ansatz": args.ansatz,
        "alpha": args.alpha,
        "features": args.features if args.ansatz == "gcnn" else None,
        "layers": args.layers if args.ansatz == "gcnn" else None,
        "symmetries": (args.symmetries if args.ansatz in ("gcnn", "rbm-symm") or args.project
                       else None),
        "vit": ({"patch": args.patch, "embed": args.embed, "depth": args.depth,
                 "heads": args.heads} if args.ansatz == "vit" else None),
        "real": None if args.ansatz == "vit" else bool(args.real),
        "project": args.project,
        "momentum": None if _momentum(args) is None else list(_momentum(args)),
        "parity": args.parity,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "diag_shift": args.diag_shift,
        "eval_batches": args.eval_batches,
        "sampler": args.sampler,
        "ratio_dtype": args.ratio_dtype,
        "marshall_sign": bool(getattr(model, "marshall_sign", False)),
        "seed": args.seed,
    }
