"""Benchmark against FCI: a neural-network state per molecule, beside HF, CCSD(T) and FCI.

    records = run_benchmark(jobs, settings, out_dir)
    print(markdown_table(records))

Each record holds the reference energies of the same basis and active space, the VMC energy
with its error bar, its distance to the reference in mHa, and the sampler mode (exact
summation or Monte Carlo) that produced it. The reference (``e_ref``, named in ``reference``)
is PySCF FCI where it fits and otherwise DMRG (block2, extrapolated in the bond dimension,
with an uncertainty ``e_ref_error``) or selected CI: see
:mod:`hamiltonians.large_reference` and ``ReferenceOptions``
(:class:`hamiltonians.chem_reference.ReferenceOptions`). Each record also holds the wall time
of the reference (``ref_wall_time_s``) beside that of the VMC run (``nqs_wall_time_s``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nqs.errors import InputError

CHEMICAL_ACCURACY_MHA = 1.6

SUITES: dict[str, tuple[str, ...]] = {
    "default": ("H2", "LiH"),
    "choo2020": ("H2", "LiH", "H2O", "NH3", "N2", "C2"),
    "sampled": ("H2O-6-31G", "N2-6-31G-fc"),
}

#: molecules of a suite with their own basis and frozen core: name -> (preset, basis, frozen)
SUITE_MOLECULES: dict[str, tuple[str, str, bool]] = {
    # past the exact-summation cap: 1.7e6 and 1.9e7 determinants, sampled autoregressively
    "H2O-6-31G": ("H2O", "6-31g", False),
    "N2-6-31G-fc": ("N2", "6-31g", True),
}


@dataclass(frozen=True)
class Job:
    """One molecule: a spec (PySCF integrals) or an FCIDUMP file, with its active space."""

    name: str
    spec: object | None = None  # hamiltonians.molecule.MoleculeSpec
    fcidump: str | None = None
    frozen_core: bool = False
    cas: tuple[int, int] | None = None
    eri_threshold: float | None = None  # None: hamiltonians.molecule.ERI_SCREENING_THRESHOLD


#: ``--plateau`` of the molecule commands: a fitted start is often where SR leaves it
#: (docs/molecules.md), and a fall below this in 150 steps is far below chemical accuracy.
PLATEAU_TOLERANCE = 2e-5


@dataclass(frozen=True)
class Settings:
    """How each molecule is solved (the same for every molecule of a run)."""

    ansatz: str = "auto"  # autoregressive; backflow with an explicit exact / mcmc sampler
    sampler: str = "auto"  # to match the ansatz (nqs.problems.molecule_method)
    steps: int = 600
    samples: int | None = None  # None: 2048 (mcmc) or 100000 draws (autoregressive)
    chains: int = 16
    optimizer: str = "auto"  # adam; sr for the autoregressive ansatz
    # None: 3e-3 (adam, sgd, backflow SR); AR + SR: 0.05, 0.01 beyond EXACT_AUTO_LIMIT det.
    learning_rate: float | None = None
    # None: 1e-6 with connected rows (the guard adapts it, Levenberg-Marquardt), else 1e-3
    diag_shift: float | None = None
    # None: 64 (backflow), 256 (autoregressive: its amplitudes and its phase network)
    hidden: tuple[int, ...] | None = None
    n_determinants: int = 1
    alpha: float = 2.0
    init_scale: float | None = None  # backflow: None = 0.05 (exact) or 0.3 (mcmc)
    seed: int = 0
    chunk_size: int | str | None = None  # samples per device at a time; "auto": fit memory
    lr_schedule: str = "constant"  # or "cosine": decay to final_lr_fraction * lr over the run
    final_lr_fraction: float = 0.1
    rule: str = "pair-hop"  # Metropolis moves: "pair-hop" or "connected" (see problems.py)
    sampling_power: float = 1.0  # Metropolis samples |psi|^(2 q), reweighted to |psi|^2
    sector: str = "full"  # exact summation over "full" space or the "hf" symmetry block
    metric_states: int | None = None  # exact + SR: metric from the K largest-weight states
    dtype: str = "float64"  # network precision, "float64" or "float32" (nqs.precision)
    backbone: str = "made"  # autoregressive ansatz: "made" or "transformer"
    # autoregressive phase: "mlp" or "conditional" (nqs.models.autoregressive); "auto":
    # conditional beyond EXACT_AUTO_LIMIT determinants, the MLP up to it (resolve_settings)
    phase: str = "auto"
    max_unique: int = 1024  # autoregressive sampler: distinct determinants per step at most
    # autoregressive sampler + SR: determinants H connects to the draws added as rows of SR
    # (nqs.sampling.connected); 0: the draws alone
    connected_rows: int = 0
    # autoregressive: "prior" (the selected-CI vector under the network, nqs.models.ci_prior),
    # fit "selected" (CISD + CIPSI rounds), "cisd" or "none" first (nqs.models.ar_pretrain);
    # "auto": prior up to 32 orbitals, selected beyond
    start: str = "auto"
    start_grow: float = 1.0  # selected start: determinants a round adds, times the space
    start_rounds: int = 3  # selected start: selection rounds at most
    start_pt2: float = 1e-3  # rounds after the first while the target's E_PT2 < -this (Ha)
    # the selected vector: "cipsi" (CISD + rounds, nqs.models.ar_pretrain.selected_target),
    # "pyscf" (PySCF's selected CI at start_sci_cutoff, hamiltonians.large_reference.sci_vector);
    # "auto": cipsi while its first round's space can be passed over again (see
    # SELECTIONS), pyscf beyond
    start_selection: str = "auto"
    start_sci_cutoff: float = 1e-3
    start_steps: int = 12000  # Adam steps of the start fit at most
    start_final_lr_fraction: float = 0.01  # < 1: cosine decay of the start fit's learning rate
    start_refine_steps: int = 20  # Gauss-Newton steps after the start's Adam fit (0: none)
    start_fit_max: int | None = None  # determinants the start fits at most (None: 2^17 / orbitals)
    start_fit_growth: int = 1  # the cap doubles up to this multiple while the kept root is high
    # --start prior: the network fitted to the first-order amplitudes of this many
    # determinants outside the vector, beside prior_fit_rows of the vector's in each step (a
    # third of them its largest, the rest drawn), for prior_fit_steps Adam steps (0: the
    # network starts at zero, the state is the vector)
    prior_external: int = 8192
    prior_fit_rows: int = 6144
    prior_fit_steps: int = 1000
    # a checkpoint (or run directory) whose parameters start the run, in place of the start
    # fit: a new run (new optimizer, learning rate, steps) continued from another's state
    init_from: str | None = None
    # stop once the 25-step energy means fall by no more than this (Ha) in 150 steps; 0: never
    plateau: float = PLATEAU_TOLERANCE


AR_SAMPLES = 100_000
AR_HIDDEN = (256,)  # MADE and phase-network width of the autoregressive ansatz
MCMC_SAMPLES = 2048


def resolve_settings(settings: Settings, n_determinants: int,
                     n_orbitals: int | None = None) -> Settings:
    """``settings`` with every ``auto`` / None choice made for a space of ``n_determinants``
    over ``n_orbitals`` spatial orbitals (ansatz and sampler by
    :func:`nqs.problems.molecule_method`, then the optimizer, learning rate, sample count,
    autoregressive phase network and start that go with them; the start stays ``auto`` when
    ``n_orbitals`` is not given)."""

    from nqs.models.ci_prior import MAX_PRIOR_ORBITALS
    from nqs.problems import EXACT_AUTO_LIMIT, molecule_method

    ansatz, sampler = molecule_method(n_determinants, settings.ansatz, settings.sampler)
    ar = ansatz == "autoregressive"
    optimizer = settings.optimizer
    if optimizer == "auto":
        optimizer = "sr" if ar else "adam"
    lr = settings.learning_rate
    if lr is None:
        lr = 3e-3
        if ar and optimizer in ("sr", "minsr"):
            # past the exact cap a step's gradient rests on a few hundred distinct determinants
            # (H2O/6-31G, 1e5 draws), and SR at 0.05 lifts a 2.5 mHa start to 3 mHa within 20
            # steps; at 0.01 it holds and slowly lowers it
            lr = 0.05 if n_determinants <= EXACT_AUTO_LIMIT else 0.01
    samples = settings.samples
    if samples is None:
        samples = AR_SAMPLES if sampler == "autoregressive" else MCMC_SAMPLES
    phase = settings.phase
    if phase == "auto":
        # the per-orbital phases carry the signs of a large selected target that the phase
        # MLP alone fits poorly (H2O/6-31G: start 4.4 instead of 9.8 mHa above FCI, same fit)
        phase = "conditional" if n_determinants > EXACT_AUTO_LIMIT else "mlp"
    hidden = settings.hidden
    if hidden is None:
        # the autoregressive state's error is in its width: fitted starts of H2O/6-31G are
        # 1.97, 1.25 and 0.68 mHa above FCI at widths 64, 128 and 256, of C2 1.17, 0.36 and
        # 0.27 mHa, and SR hardly moves them
        hidden = AR_HIDDEN if ar else (64,)
    # connected rows act with the autoregressive sampler and SR only
    connected = settings.connected_rows if (sampler == "autoregressive"
                                            and optimizer in ("sr", "minsr")) else 0
    shift = settings.diag_shift
    if shift is None:
        shift = 1e-6 if connected else 1e-3
    start = settings.start
    if start == "auto" and n_orbitals is not None:
        # the selected vector itself under the network (no fit of it): N2 / 6-31G fc starts
        # 1.29 mHa above FCI, where the fitted start (its 8183 largest of 38523) is 6.8; the
        # table's keys hold 32 orbitals
        start = "prior" if n_orbitals <= MAX_PRIOR_ORBITALS else "selected"
    return replace(settings, start=start, ansatz=ansatz, sampler=sampler, optimizer=optimizer,
                   learning_rate=lr, samples=samples, phase=phase, hidden=tuple(hidden),
                   connected_rows=connected, diag_shift=shift)


LR_SCHEDULES = ("constant", "cosine")


def make_scheduled_optimizer(settings: Settings):
    """The optimizer of ``settings`` with its learning-rate schedule (``nqs.optim.Optimizer``).

    ``"cosine"``: ``lr * (f + (1 - f) (1 + cos(pi t / steps)) / 2)`` at step ``t`` with
    ``f = final_lr_fraction`` (optax's cosine decay), for Adam, SGD, SR and minSR alike.
    """

    import optax

    from nqs.optim import Optimizer, make_optimizer
    from nqs.optim.optimizer import sr_optimizer

    if settings.optimizer == "auto" or settings.learning_rate is None:
        # not resolved for a molecule yet: the choices of a small space (explicit ansatz or
        # sampler choices still count)
        settings = resolve_settings(settings, 1)
    if settings.lr_schedule not in LR_SCHEDULES:
        raise InputError(f"unknown learning-rate schedule {settings.lr_schedule!r}; "
                         f"choose one of {', '.join(LR_SCHEDULES)}")
    if settings.diag_shift is None:
        settings = replace(settings, diag_shift=1e-3)
    sr_mode = {"sr": "auto", "minsr": "minsr"}.get(settings.optimizer)
    base = make_optimizer(settings.optimizer, settings.learning_rate, settings.diag_shift)
    if settings.lr_schedule == "constant":
        if sr_mode is not None:
            return sr_optimizer(settings.learning_rate, settings.diag_shift, sr_mode,
                                settings.metric_states)
        return base
    if not 0.0 < settings.final_lr_fraction <= 1.0:
        raise InputError(f"final learning-rate fraction must be in (0, 1], "
                         f"got {settings.final_lr_fraction}")
    lr = optax.cosine_decay_schedule(settings.learning_rate, max(settings.steps, 1),
                                     alpha=settings.final_lr_fraction)
    if settings.optimizer == "adam":
        return Optimizer(optax.adam(lr), False)
    if settings.optimizer == "sgd":
        return Optimizer(optax.sgd(lr), False)
    return sr_optimizer(lr, settings.diag_shift, sr_mode, settings.metric_states)


def load_job(job: Job, cache_dir: str | None = None, reference=None,
             echo: Callable[[str], None] | None = None):
    """``(integrals, references dict, basis label)`` for one job; a failure inside PySCF is an
    :class:`InputError` naming the molecule (one line on the command line).

    ``reference``: a :class:`hamiltonians.chem_reference.ReferenceOptions` (default: auto). The
    dict holds HF, MP2, CCSD, CCSD(T) (None for an FCIDUMP) and the chosen reference:
    ``e_ref``, ``e_ref_error``, ``reference`` (fci, dmrg or sci), ``ref_wall_time_s``,
    ``ref_cached``, and ``e_fci`` when FCI was the one computed. ``echo`` gets DMRG's progress.
    """
    try:
        return _load_job(job, cache_dir, reference, echo)
    except InputError:
        raise
    except (RuntimeError, ValueError, KeyError, ArithmeticError, np.linalg.LinAlgError) as err:
        msg = " ".join(str(err).split())[:200] or type(err).__name__
        raise InputError(f"molecule {job.name!r}: PySCF failed: {msg}") from None


def _load_job(job: Job, cache_dir: str | None, reference, echo):
    """:func:`load_job` without the translation of library errors."""
    from hamiltonians.chem_reference import (
        ReferenceOptions,
        compute_reference,
        reference_energies,
        reference_energy,
    )
    from hamiltonians.large_reference import choose_reference, n_determinants
    from hamiltonians.molecule import (
        ERI_SCREENING_THRESHOLD,
        compute_integrals,
        read_fcidump,
        screen_integrals,
    )

    opts = (reference or ReferenceOptions()).validated()
    threshold = ERI_SCREENING_THRESHOLD if job.eri_threshold is None else job.eri_threshold
    if job.fcidump is not None:
        integrals = screen_integrals(read_fcidump(job.fcidump), threshold)
        method = choose_reference(opts.method, n_determinants(integrals), opts.max_fci_determinants)
        refs = {"e_hf": integrals.hf_energy(), "e_mp2": None, "e_ccsd": None, "e_ccsd_t": None,
                "notes": {}}
        if method != "none":
            refs.update(compute_reference(integrals, method, opts, refs["notes"], echo))
        refs.setdefault("e_fci", None)
        return integrals, refs | reference_energy(refs, method), "FCIDUMP"
    integrals, _ = compute_integrals(job.spec, frozen_core=job.frozen_core, cas=job.cas,
                                     eri_threshold=threshold)
    method = choose_reference(opts.method, n_determinants(integrals), opts.max_fci_determinants)
    methods = ("hf", "mp2", "ccsd", "ccsd_t") + (() if method == "none" else (method,))
    refs = reference_energies(job.spec, frozen_core=job.frozen_core, cas=job.cas, methods=methods,
                              cache_dir=cache_dir, eri_threshold=threshold, options=opts,
                              echo=echo)
    refs.setdefault("e_fci", None)
    return integrals, refs | reference_energy(refs, method), job.spec.basis


def fingerprint(integrals, settings: Settings) -> dict:
    """What a molecule's checkpoint must match on resume: a digest of the integrals and the
    settings that change the trajectory (not the steps, chunk size, seed or dtype, which the
    driver handles)."""
    import hashlib
    from dataclasses import asdict

    h = hashlib.sha256()
    for a in (integrals.h1, integrals.h2, [integrals.e_core, integrals.n_alpha, integrals.n_beta]):
        h.update(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes())
    # how the run began (the start's refinement, --init-from) does not change the trajectory
    # from a checkpoint on, and checkpoints from before those options stay resumable
    fp = {k: v for k, v in asdict(settings).items()
          if k not in ("steps", "chunk_size", "seed", "dtype", "start_refine_steps", "init_from",
                       "start_fit_max", "start_fit_growth", "plateau", "prior_external",
                       "prior_fit_rows", "prior_fit_steps", "start_selection", "start_sci_cutoff")}
    if not fp.get("connected_rows"):  # off: checkpoints from before the option match
        fp.pop("connected_rows", None)
    return {"integrals": h.hexdigest()[:16], **fp}


def solve(integrals, settings: Settings, out_dir: Path | None, echo: Callable[[str], None],
          resume: bool = False, exact_energy: float | None = None,
          checkpoint_every: int = 100, time_limit: float | None = None,
          start_record: dict | None = None):
    """VMC for one set of integrals. Returns ``(VMCResult, sampler mode)``; the checkpoint
    records :func:`fingerprint` and a resume with other integrals or settings is refused.
    ``time_limit``: wall seconds of optimization (:func:`nqs.driver.run_vmc`).
    ``start_record`` (a dict) receives the autoregressive start's phases (:func:`_fitted_start`)."""
    import jax.numpy as jnp

    from nqs.driver import load_checkpoint_params, run_vmc
    from nqs.parallel import is_main_process
    from nqs.plateau import Plateau

    if resume and out_dir is not None:
        integrals = run_integrals(out_dir, integrals, "the run to resume")
    elif settings.init_from is not None:
        source = Path(settings.init_from)
        integrals = run_integrals(source if source.is_dir() else source.parent, integrals,
                                  "--init-from")
    from nqs.precision import check_dtype

    check_dtype(settings.dtype)  # before anything is computed
    if settings.start not in START_TARGETS:
        raise InputError(f"unknown start {settings.start!r}; choose {', '.join(START_TARGETS)}")
    if settings.start == "auto":
        settings = replace(settings, start=resolve_settings(
            settings, n_determinants(integrals), integrals.n_orbitals).start)
    prior = prior_target = None
    if resume and out_dir is not None:
        prior = load_prior(out_dir)
    elif settings.init_from is not None:
        source = Path(settings.init_from)
        prior = load_prior(source if source.is_dir() else source.parent)
    elif (settings.start == "prior"
          and resolve_settings(settings, n_determinants(integrals)).ansatz == "autoregressive"):
        from hamiltonians.second_quantized import MolecularHamiltonian

        prior, prior_target = _prior_start(MolecularHamiltonian(integrals), settings, echo,
                                           start_record)
    if settings.start == "prior" and resume and prior is None:
        raise InputError(f"the run to resume ({out_dir}) has no {PRIOR_NAME}: it was not "
                         "started with --start prior")
    hamiltonian, sampler, ansatz, mode, settings = build_problem(integrals, settings, echo,
                                                                 prior=prior)
    optimizer = make_scheduled_optimizer(settings)
    initial_params = None
    if settings.init_from is not None and not resume:  # refused before --out is written to
        initial_params = load_checkpoint_params(
            settings.init_from, ansatz, jnp.asarray(hamiltonian.hilbert.hartree_fock_state()))
        echo(f"  start: the parameters of {settings.init_from}")
    if (out_dir is not None and is_main_process()
            and integrals.n_orbitals <= SAVE_INTEGRALS_MAX_ORBITALS):  # the state is loadable
        save_integrals(out_dir, integrals)
        if prior is not None:
            save_prior(out_dir, prior)
    if (initial_params is None and settings.ansatz == "autoregressive"
            and settings.start in ("selected", "cisd") and not resume):
        initial_params = _fitted_start(ansatz, hamiltonian, settings, echo, start_record)
    if prior_target is not None and settings.prior_fit_steps > 0 and prior_target[2] is not None:
        initial_params = _first_order_fit(ansatz, hamiltonian, prior_target, settings, echo,
                                          start_record)
    result = run_vmc(ansatz, hamiltonian, sampler, optimizer, settings.steps, seed=settings.seed,
                     out_dir=out_dir, resume=resume, exact_energy=exact_energy, echo=echo,
                     checkpoint_every=checkpoint_every, dedupe=mode == "mcmc",
                     chunk_size=settings.chunk_size, initial_params=initial_params,
                     fingerprint=fingerprint(integrals, settings), time_limit=time_limit,
                     connected_rows=settings.connected_rows or 0,
                     plateau=Plateau(settings.plateau) if settings.plateau > 0 else None)
    return result, mode


#: The integrals of a molecule's run, beside its checkpoint (:func:`nqs.commands.load.load_run`).
INTEGRALS_NAME = "integrals.npz"
#: Larger active spaces do not write them (n^4 two-electron integrals: 20 MB at 40 orbitals).
SAVE_INTEGRALS_MAX_ORBITALS = 40


def run_integrals(run_dir: str | Path, integrals, what: str):
    """The integrals a run in ``run_dir`` was trained on (its ``integrals.npz``), when they are
    ``integrals`` in other orbital signs or rotations (:func:`hamiltonians.molecule.
    same_hamiltonian`); ``integrals`` when the run saved none. A network's amplitudes belong to
    the orbitals it was trained in, and PySCF may return them with other signs in another
    process, so a resumed or continued run reads them back instead of recomputing them.
    Raises :class:`InputError` (one line) when the run is of another Hamiltonian."""
    from hamiltonians.molecule import load_npz, same_hamiltonian

    path = Path(run_dir) / INTEGRALS_NAME
    if not path.is_file():
        return integrals
    saved = load_npz(path)
    if not same_hamiltonian(saved, integrals):
        raise InputError(f"{what} ({run_dir}) is a run of another Hamiltonian: its "
                         f"{INTEGRALS_NAME} is not these integrals in other orbitals (another "
                         "molecule, geometry, basis or active space)")
    return saved


def save_integrals(out_dir: Path, integrals) -> None:
    """``out_dir/integrals.npz`` (atomically), so that the run's state can be loaded back."""
    import io

    from hamiltonians.molecule import save_npz
    from nqs.io import write_bytes_atomic

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    save_npz(buf, integrals)
    write_bytes_atomic(Path(out_dir) / INTEGRALS_NAME, buf.getvalue())


#: The selected-CI vector under a ``--start prior`` state (:mod:`nqs.models.ci_prior`), beside
#: its checkpoint: the state is the network's parameters and this table.
PRIOR_NAME = "prior.npz"


def save_prior(out_dir: Path, table) -> None:
    """``out_dir/prior.npz`` (atomically)."""
    import io

    from nqs.io import write_bytes_atomic
    from nqs.models.ci_prior import table_arrays

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **table_arrays(table))
    write_bytes_atomic(Path(out_dir) / PRIOR_NAME, buf.getvalue())


def load_prior(run_dir: str | Path):
    """The table a run's state is built on (:data:`PRIOR_NAME`), or None if it has none."""
    from nqs.models.ci_prior import table_from_arrays

    path = Path(run_dir) / PRIOR_NAME
    if not path.is_file():
        return None
    with np.load(path) as data:
        return table_from_arrays({k: data[k] for k in data.files})


def build_problem(integrals, settings: Settings, echo: Callable[[str], None] = lambda _: None,
                  prior=None):
    """``(hamiltonian, sampler, ansatz, mode, resolved settings)`` of one set of integrals:
    what :func:`solve` runs and :func:`nqs.commands.load.load_run` rebuilds. ``prior``: the
    :class:`nqs.models.ci_prior.DeterminantTable` of an autoregressive state's prior."""
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.precision import check_dtype, with_dtype
    from nqs.problems import molecule_ansatz, molecule_sampler

    check_dtype(settings.dtype)
    hamiltonian = MolecularHamiltonian(integrals)
    hilbert = hamiltonian.hilbert
    settings = resolve_settings(settings, hilbert.n_states, hilbert.n_orbitals)
    sampler, mode = molecule_sampler(hilbert, settings.sampler, settings.samples, settings.chains,
                                     rule=settings.rule, power=settings.sampling_power,
                                     integrals=integrals, max_unique=settings.max_unique)
    if settings.sector not in ("full", "hf"):
        raise InputError(f"unknown sector {settings.sector!r}; choose full or hf")
    if mode == "exact" and settings.sector == "hf":
        from nqs.problems import hartree_fock_sector
        from nqs.sampling.exact import ExactSampler

        hamiltonian = hartree_fock_sector(hamiltonian)
        sampler = ExactSampler(hamiltonian.hilbert)
        echo(f"  exact summation over the {hamiltonian.hilbert.n_states} of {hilbert.n_states} "
             "determinants connected to Hartree-Fock by H (its symmetry block)")
    init_scale = settings.init_scale
    if init_scale is None:
        init_scale = 0.05 if mode == "exact" else 0.3
    ansatz = molecule_ansatz(hilbert, settings.ansatz, alpha=settings.alpha,
                             hidden=settings.hidden, n_determinants=settings.n_determinants,
                             init_scale=init_scale, backbone=settings.backbone,
                             phase=settings.phase, prior=prior)
    ansatz = with_dtype(ansatz, settings.dtype)
    return hamiltonian, sampler, ansatz, mode, settings


START_TARGETS = ("auto", "selected", "cisd", "prior", "none")
#: The start fit stops early at this fidelity with its target. An infidelity of 1e-3 is
#: already several mHa (C2/STO-3G: 2.4e-3 is 14 mHa above FCI), so the fit runs its decaying
#: learning rate to the end unless it is nearly exact.
START_TARGET_FIDELITY = 0.99995
_START_TEXT = {"selected": "CISD grown by CIPSI selection rounds",  # with their count
               "cisd": "CISD over HF and its singles and doubles"}


#: ``--start-selection``: how the selected start vector is made.
SELECTIONS = ("auto", "cipsi", "pyscf")


def choose_selection(hamiltonian, selection: str, grow: float) -> str:
    """``"cipsi"`` or ``"pyscf"`` for ``selection`` (``"auto"``: CIPSI while its first
    round's space, ``(1 + grow) |CISD|`` determinants, can be passed over again within
    :data:`nqs.models.ar_pretrain.MAX_ROUND_ROWS` connections, so that the rounds go on;
    PySCF's compiled selected CI beyond, whose string selection needs no pass over every
    connection. N2 / cc-pVDZ frozen core (CISD 15436 determinants x max_conn 15436: 4.8e8)
    stays with CIPSI, whose three rounds reach 0.4 mHa below the DMRG reference in 30 minutes
    on the 2-core CPU, where PySCF at 1e-3 ends 10.7 mHa above it in 408 s)."""
    from nqs.models.ar_pretrain import MAX_ROUND_ROWS

    if selection not in SELECTIONS:
        raise InputError(f"unknown selection {selection!r}; choose {', '.join(SELECTIONS)}")
    if selection != "auto":
        return selection
    first_round = (1 + grow) * _cisd_size(hamiltonian.hilbert)
    return "cipsi" if first_round * int(hamiltonian.max_conn) <= MAX_ROUND_ROWS else "pyscf"


def _cisd_size(hilbert) -> int:
    """Hartree-Fock, its singles and its doubles in the sector: ``1 + sum_s N_s V_s +
    sum_s C(N_s, 2) C(V_s, 2) + N_a V_a N_b V_b`` (``V_s = n_orbitals - N_s``; a
    :class:`hamiltonians.second_quantized.MolecularHamiltonian`'s ``n_candidates``, from the
    sector alone)."""
    from math import comb

    n, na, nb = hilbert.n_orbitals, hilbert.n_alpha, hilbert.n_beta
    va, vb = n - na, n - nb
    return (1 + na * va + nb * vb + comb(na, 2) * comb(va, 2) + comb(nb, 2) * comb(vb, 2)
            + na * va * nb * vb)


def _selected_start_target(hamiltonian, settings: Settings, echo: Callable[[str], None],
                           info: dict) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """``((x, c), text)``: the selected-CI start target (:func:`choose_selection`: CISD
    grown by :func:`nqs.models.ar_pretrain.selected_target`'s rounds, or PySCF's selected CI),
    its phases echoed and recorded in ``info``, and a line that says what it is."""
    from nqs.models.ar_pretrain import selected_target

    if choose_selection(hamiltonian, settings.start_selection, settings.start_grow) == "pyscf":
        why = ("" if settings.start_selection == "pyscf" else " (a pass over CIPSI's first "
               "round would pass MAX_ROUND_ROWS connections)")
        return _pyscf_start_target(hamiltonian, settings, echo, info, why)
    def on_phase(ph: dict) -> None:
        echo(f"  start: {ph['phase']}: {ph['size']} determinants, "
             f"{ph['connections']:.3g} connections"
             + (f", {ph['external']} outside" if "external" in ph else "")
             + (f", <S^2> {ph['s2']:.2g}" if "s2" in ph else "")
             + f" ({ph['seconds']:.1f} s)")

    target = selected_target(hamiltonian, grow=settings.start_grow, rounds=settings.start_rounds,
                             pt2_tolerance=settings.start_pt2, info=info, on_phase=on_phase)
    pt2 = ", ".join(f"{1e3 * e:.2f}" for e in info["e_pt2"])
    text = (f"CISD grown by {info['rounds']} CIPSI selection round(s) ({info['size']} "
            f"determinants; PT2 estimates {pt2 or '-'} mHa; stopped: {info['stopped']})")
    if info["target"] == "first-order":
        text = f"first-order amplitudes ({info['size']} determinants; {info['stopped']})"
    return target, text


def _pyscf_start_target(hamiltonian, settings: Settings, echo: Callable[[str], None],
                        info: dict, why: str = "") -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """``((x, c), text)`` of :func:`hamiltonians.large_reference.sci_vector` at
    ``settings.start_sci_cutoff``, recorded in ``info`` as :func:`selected_target`'s (one phase)."""
    from hamiltonians.large_reference import sci_vector

    echo(f"  start: PySCF's selected CI at cutoff {settings.start_sci_cutoff:g}{why}")
    v = sci_vector(hamiltonian.integrals, settings.start_sci_cutoff)
    na, nb = v.n_strings
    info.update(target="selected", selection="pyscf", cutoff=v.cutoff, n_strings=[na, nb],
                rounds=0, e_var=v.energy, e_pt2=[], size=len(v.c), connections=0, s2=v.s2,
                stopped="PySCF's selection converged at its cutoff",
                phases=[{"phase": "pyscf selected CI", "seconds": v.wall_time_s,
                         "size": len(v.c), "connections": 0, "s2": v.s2}])
    echo(f"  start: pyscf selected CI: {na} x {nb} strings, {len(v.c)} determinants, "
         f"<S^2> {v.s2:.2g} ({v.wall_time_s:.1f} s)")
    text = (f"PySCF's selected CI at cutoff {v.cutoff:g} ({na} x {nb} strings, {len(v.c)} "
            "determinants)")
    return (v.x, v.c), text


def _prior_start(hamiltonian, settings: Settings, echo: Callable[[str], None],
                 record: dict | None = None):
    """``(table, (x, c, E0))``: the :class:`nqs.models.ci_prior.DeterminantTable` of the
    selected-CI start target (``--start prior``: the autoregressive state starts as that
    vector), the vector and its energy. ``record`` receives the target's phases, as
    :func:`_fitted_start`'s."""
    from nqs.models.ci_prior import make_table

    t0 = time.perf_counter()
    info: dict = {"start": "prior"}
    (x, c), text = _selected_start_target(hamiltonian, settings, echo, info)
    x, c = np.asarray(x), np.asarray(c)
    table = make_table(x, c, hamiltonian.hilbert.n_orbitals)
    info.update(seconds=time.perf_counter() - t0)
    e_var = info.get("e_var")
    echo(f"  start: the state is {text} under the network's correction (zero at the start"
         + (f"; its energy {e_var:.8f} Ha" if e_var is not None else "") + ")")
    if record is not None:
        record.update(info)
    return table, (x, c, e_var)


#: Adam's initial learning rate in the first-order fit of a ``--start prior`` state (cosine
#: decay to ``start_final_lr_fraction`` of it). H2O / 6-31G fc (exact energies), 1000 steps
#: over the vector's 5802 determinants and 5802 outside: 0.688 mHa (the vector) -> 0.215 mHa
#: (the floor at 1e-8: 0.245 at 3e-2, 0.269 at 1e-2; 0.186 after 2000 steps at 1e-2).
PRIOR_FIT_LEARNING_RATE = 3e-2


class _FitProgress:
    """Console lines of a start fit's phases (``on_step(phase, done, total, fidelity)``): one
    now and then (every 25 % or minute) with the fidelity and the ETA, since a large target's
    fit runs for many minutes."""

    def __init__(self) -> None:
        self.bars: list = []  # (phase, Progress); the phase whose steps are reported, last

    def end_phase(self) -> None:
        if self.bars:
            self.bars[-1][1].flush()
            self.bars[-1][1].close()

    def on_step(self, phase: str, done: int, total: int, fid: float) -> None:
        from nqs.parallel import is_main_process
        from nqs.progress import Progress

        if not self.bars or self.bars[-1][0] != phase:
            self.end_phase()
            self.bars.append((phase, Progress(total, desc=f"  start: {phase}",
                                              every_fraction=0.25, enabled=is_main_process())))
        self.bars[-1][1].step(done, text=f"fidelity {fid:.5f}")


def _first_order_fit(ansatz, hamiltonian, target, settings: Settings,
                     echo: Callable[[str], None], record: dict | None = None):
    """Parameters of a ``--start prior`` state whose network is fitted to the first-order
    amplitudes outside its vector: ``target = (x, c, E0)``, the selected vector and its
    energy. The :data:`Settings.prior_external` determinants outside ``x`` of largest
    Epstein-Nesbet amplitude ``a(y) = sum_x H_yx c(x) / (E0 - H_yy)``
    (:func:`nqs.models.ar_pretrain.first_order_amplitudes`) join the vector, and the network
    is fitted to ``c + a`` (normalized) by the start fit's cross-entropy and phase loss, for
    :data:`Settings.prior_fit_steps` Adam steps, each over the first-order determinants and
    :data:`Settings.prior_fit_rows` of the vector's (a third its largest, the rest drawn).
    The vector's own conditionals and signs stay the prior's; what the fit moves is where the
    state leaves the vector."""
    import jax
    import jax.numpy as jnp

    from nqs.models.ar_pretrain import first_order_amplitudes, fit_singles_doubles

    t0 = time.perf_counter()
    x, c, e0 = target
    y, a = first_order_amplitudes(hamiltonian, x, c, e0, settings.prior_external)
    if len(a) == 0:  # the vector spans every determinant H connects it to
        echo("  start: first order: no determinant outside the vector; no fit")
        return None
    # rows: the vector's largest (Hartree-Fock first) and the first-order ones in every step,
    # the rest of the vector drawn (minibatch): the cross-entropy over the whole vector holds
    # each of its determinants, where a fit that left some out would drain them
    order = np.argsort(-np.abs(c), kind="stable")
    n_top = min(max(settings.prior_fit_rows // 3, 1), len(c))
    xt = np.concatenate([x[order[:n_top]], y, x[order[n_top:]]])
    tt = np.concatenate([c[order[:n_top]], a, c[order[n_top:]]])
    tt = tt / np.linalg.norm(tt)
    n_drawn = max(settings.prior_fit_rows - n_top, 0)
    echo(f"  start: first order: {len(a)} determinants outside the vector (sum a^2 "
         f"{np.sum(a**2):.3g}); each fit step sees them, the vector's {n_top} of largest weight "
         f"and {min(n_drawn, len(c) - n_top)} of its other {len(c) - n_top} "
         f"({time.perf_counter() - t0:.1f} s)")
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(settings.seed),
                                  jnp.asarray(hamiltonian.hilbert.hartree_fock_state()))
    info: dict = {}
    progress = _FitProgress()
    # no early stop: the vector alone already has fidelity 1 / (1 + sum a^2) with the target
    params, fidelity = fit_singles_doubles(
        ansatz, hamiltonian, params, target=(xt, tt), steps=settings.prior_fit_steps,
        learning_rate=PRIOR_FIT_LEARNING_RATE,
        final_lr_fraction=settings.start_final_lr_fraction, target_fidelity=2.0,
        max_fit=len(tt), info=info, progress=progress.on_step,
        minibatch=(n_top + len(a), n_drawn))
    progress.end_phase()
    echo(f"  start: first-order fit: {info['fit_steps']} Adam steps, fidelity {fidelity:.6f} "
         f"with the {len(tt)} determinants ({info['fit_s']:.1f} s, "
         f"{1e3 * info['fit_s'] / max(info['fit_steps'], 1):.1f} ms a step)")
    if record is not None:
        record.update(first_order={"external": len(a), "external_weight": float(np.sum(a**2)),
                                   "rows": len(tt), "steps": info["fit_steps"],
                                   "fidelity": fidelity, "seconds": time.perf_counter() - t0})
    return params


def _fitted_start(ansatz, hamiltonian, settings: Settings, echo: Callable[[str], None],
                  record: dict | None = None):
    """Parameters of ``ansatz`` fitted to ``settings.start`` (``"selected"`` or ``"cisd"``, see
    :func:`nqs.models.ar_pretrain.fit_singles_doubles`), from the run's seed. Each phase's
    wall time and size is echoed; ``record`` (a dict) receives them (``result.json``'s
    ``start``: the target, its rounds, why the selection stopped, the phases, the fit)."""
    import jax
    import jax.numpy as jnp

    from nqs.models.ar_pretrain import FIT_ROOT_TOLERANCE, fit_singles_doubles

    t0 = time.perf_counter()
    x0 = jnp.asarray(hamiltonian.hilbert.hartree_fock_state())
    target, text = settings.start, _START_TEXT[settings.start]
    info: dict = {"start": settings.start}
    if settings.start == "selected":
        target, text = _selected_start_target(hamiltonian, settings, echo, info)
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(settings.seed), x0)
    progress = _FitProgress()
    params, fidelity = fit_singles_doubles(
        ansatz, hamiltonian, params, target=target,
        steps=settings.start_steps, final_lr_fraction=settings.start_final_lr_fraction,
        target_fidelity=START_TARGET_FIDELITY, refine_steps=settings.start_refine_steps,
        max_fit=settings.start_fit_max, given_is_root=info.get("target") == "selected",
        target_energy=info.get("e_var") if info.get("target") == "selected" else None,
        fit_growth=settings.start_fit_growth, info=info, progress=progress.on_step)
    progress.end_phase()
    info.update(fidelity=fidelity, seconds=time.perf_counter() - t0)
    fitted = (f"{info['fit_size']} determinants" if info["fit_size"] == info["target_size"]
              else f"the {info['fit_size']} determinants of largest weight of "
                   f"{info['target_size']} (weight {info['fit_weight']:.6f}"
                   + (f"; H's root there {info['fit_e_var']:.8f} Ha"
                      if info["fit_e_var"] is not None else "") + ")")
    if len(info["fit_caps"]) > 1 and info.get("e_var") is not None:
        grown = ", ".join(f"{kept}: {1e3 * (e - info['e_var']):.2f}"
                          for _, kept, e in info["fit_caps"])
        echo(f"  start: fit cap doubled while H's root in the kept determinants was more than "
             f"{1e3 * FIT_ROOT_TOLERANCE:.1f} mHa above the whole target's (at most "
             f"{settings.start_fit_growth}x): determinants kept: mHa above ({grown})")
    echo(f"  start: fit: {info['fit_steps']} Adam steps over {fitted} ("
         f"{info['fit_s']:.1f} s, "
         f"{1e3 * info['fit_s'] / max(info['fit_steps'], 1):.1f} ms a step)")
    if info.get("refine_steps"):
        echo(f"  start: refine: {info['refine_steps']} Gauss-Newton steps, fidelity "
             f"{info['adam_fidelity']:.5f} -> {fidelity:.5f} ({info['refine_s']:.1f} s)")
    echo(f"  start: fitted to {text} (fidelity {fidelity:.4f}, {info['seconds']:.0f} s)")
    if record is not None:
        record.update(info)
    return params


def run_benchmark(jobs: list[Job], settings: Settings, out_dir: Path | None = None,
                  echo: Callable[[str], None] = print, cache_dir: str | None = None,
                  resume: bool = False, reference=None, checkpoint_every: int = 100,
                  time_limit: float | None = None) -> list[dict]:
    """Solve every job and return one record per molecule (see module docstring).

    ``resume``: continue each molecule from the checkpoint in ``out_dir/<name>`` (molecules
    with no checkpoint yet start afresh).
    ``reference``: :class:`hamiltonians.chem_reference.ReferenceOptions` (default: auto, FCI
    where it fits). ``time_limit``: wall seconds of optimization per molecule."""
    records = []
    for job in jobs:
        t0 = time.perf_counter()
        integrals, refs, basis = load_job(job, cache_dir, reference, echo)
        n_det = n_determinants(integrals)
        echo(f"{job.name} ({basis}): {2 * integrals.n_orbitals} spin orbitals, "
             f"{integrals.n_electrons} electrons, {n_det} determinants; "
             f"{_reference_text(refs)}")
        sub = out_dir / job.name if out_dir is not None else None
        resume_job = resume and sub is not None and (sub / "checkpoint.msgpack").exists()
        t1 = time.perf_counter()
        start: dict = {}
        result, mode = solve(integrals, settings, sub, echo, resume=resume_job,
                             exact_energy=refs.get("e_ref"), checkpoint_every=checkpoint_every,
                             time_limit=time_limit, start_record=start)
        nqs_wall = time.perf_counter() - t1
        records.append(_record(job, basis, integrals, n_det, refs, result, mode,
                               time.perf_counter() - t0, settings, nqs_wall)
                       | {"start": start or None})
        echo(_summary_line(records[-1]))
    return records


def _reference_text(refs: dict) -> str:
    """``E(fci) = ...`` or ``E(dmrg) = ... +- ...`` with its wall time, for the console."""
    method, e = refs.get("reference", "fci"), refs.get("e_ref")
    label = method.upper()
    if e is None:
        note = "--reference none" if method == "none" else refs.get("notes", {}).get(method,
                                                                                   "not computed")
        return f"E({label}) = - ({note})"
    err = refs.get("e_ref_error")
    text = f"E({label}) = {e:.8f}" + ("" if method == "fci" or err is None else f" +- {err:.1e}")
    t = refs.get("ref_wall_time_s")
    if t is not None:
        text += f" ({t:.1f} s{', cached' if refs.get('ref_cached') else ''})"
    return text


def n_determinants(integrals) -> int:
    """Size of the determinant space of ``integrals`` (fixed N_alpha, N_beta)."""
    from math import comb

    n = integrals.n_orbitals
    return comb(n, integrals.n_alpha) * comb(n, integrals.n_beta)


def _record(job, basis, integrals, n_det, refs, result, mode, wall, settings,
            nqs_wall=None) -> dict:
    settings = resolve_settings(settings, n_det, integrals.n_orbitals)
    e_ref = refs.get("e_ref")
    e_ccsd_t = refs.get("e_ccsd_t")
    error = None if e_ref is None else (result.energy - e_ref) * 1e3
    return {
        "name": job.name,
        "basis": basis,
        "n_spin_orbitals": 2 * integrals.n_orbitals,
        "n_electrons": integrals.n_electrons,
        "n_determinants": n_det,
        "e_hf": refs.get("e_hf"),
        "e_mp2": refs.get("e_mp2"),
        "e_ccsd": refs.get("e_ccsd"),
        "e_ccsd_t": e_ccsd_t,
        "e_fci": refs.get("e_fci"),
        "e_ref": e_ref,
        "e_ref_error": refs.get("e_ref_error"),
        "reference": refs.get("reference", "fci"),
        "ref_details": refs.get(f"{refs.get('reference')}_details"),
        "ref_wall_time_s": refs.get("ref_wall_time_s"),
        "ref_cached": refs.get("ref_cached"),
        "e_nqs": result.energy,
        "e_nqs_error": result.energy_error,
        "final_exact_sum": result.final_exact_sum,
        "error_mha": error,
        "ccsd_t_error_mha": None if (e_ref is None or e_ccsd_t is None)
        else (e_ccsd_t - e_ref) * 1e3,
        "chemical_accuracy": None if error is None else bool(abs(error) < CHEMICAL_ACCURACY_MHA),
        "above_hf": above_hartree_fock(result.energy, refs.get("e_hf")),
        "below_fci": below_fci(result.energy, result.energy_error, e_ref,
                               refs.get("reference", "fci")),
        "sampler": mode,
        "ansatz": settings.ansatz,
        "optimizer": settings.optimizer,
        "dtype": settings.dtype,
        "n_parameters": result.n_parameters,
        "steps": result.steps,
        "stopped_by_time_limit": result.stopped_by_time_limit,
        "stopped_on_plateau": result.stopped_on_plateau,
        "wall_time_s": wall,
        "nqs_wall_time_s": nqs_wall,
        "time_per_step_s": result.time_per_step_s,
    }


ABOVE_HF_TOLERANCE = 1e-8
"""Hartree: a final energy this close above E(HF) is E(HF) itself (a space of one determinant,
He or the H atom, gives E(NQS) = E(HF) = E(FCI) up to the last bits)."""


def above_hartree_fock(energy: float, e_hf: float | None) -> bool | None:
    """Whether a final energy lies above Hartree-Fock by more than ``ABOVE_HF_TOLERANCE`` (a
    failed run: the state has not even reached the mean-field energy); None when E(HF) is
    unknown."""
    if e_hf is None or energy is None or not np.isfinite(energy):
        return None
    return bool(energy > e_hf + ABOVE_HF_TOLERANCE)


ABOVE_HF_WARNING = ("WARNING: E(NQS) is above E(HF): the optimization failed (try more steps, "
                    "a smaller --lr, or --sampler exact on a small space)")

BELOW_FCI_SIGMAS = 3.0
"""Error bars by which a final energy may lie below E(FCI) before its error bar is called
underestimated."""


def below_fci(energy: float, error: float | None, e_fci: float | None,
              reference: str) -> bool | None:
    """Whether a final energy lies below an FCI reference by more than ``BELOW_FCI_SIGMAS``
    error bars (plus ``ABOVE_HF_TOLERANCE`` of rounding). A variational energy cannot: its
    sampled error bar is then underestimated (the draws missed rare determinants whose local
    energies dominate the variance). None without an FCI reference (DMRG and selected CI are
    estimates, not bounds)."""
    if reference != "fci" or e_fci is None or energy is None or not np.isfinite(energy):
        return None
    sigma = 0.0 if error is None or not np.isfinite(error) else float(error)
    return bool(energy < e_fci - BELOW_FCI_SIGMAS * sigma - ABOVE_HF_TOLERANCE)


BELOW_FCI_NOTE = ("NOTE: E(NQS) is below E(FCI) by more than 3 error bars; a variational "
                  "energy cannot be, so its sampled error bar is underestimated (rare "
                  "determinants missed by the draws): more --samples give a truer one")


def _fmt(value, digits: int = 8) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _summary_line(r: dict) -> str:
    from nqs.stats import format_estimate

    estimate = format_estimate(r["e_nqs"], r["e_nqs_error"], bool(r.get("final_exact_sum")))
    return (f"  {r['name']}: E(NQS) = {estimate}, "
            f"E(NQS) - E({r.get('reference', 'fci').upper()}) = {_fmt(r['error_mha'], 4)} mHa "
            f"({r['sampler']}), {r['wall_time_s']:.0f} s"
            + (f"\n  {r['name']}: {ABOVE_HF_WARNING}" if r.get("above_hf") else "")
            + (f"\n  {r['name']}: {BELOW_FCI_NOTE}" if r.get("below_fci") else ""))


def _reference_cell(r: dict) -> str:
    method = r.get("reference", "fci")
    err = r.get("e_ref_error")
    if method == "fci" or err is None or r.get("e_ref") is None:
        return method.upper()
    return f"{method.upper()} +- {err:.1e}"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def markdown_table(records: list[dict]) -> str:
    """The benchmark table in markdown (energies in Hartree, errors in mHa, times in s).

    ``E(ref)`` is the reference named in the ``reference`` column (fci, or dmrg / sci with its
    uncertainty in Hartree); ``ref s`` its wall time, ``NQS s`` that of the VMC run, ``time s``
    the whole molecule (SCF and all references included)."""
    head = ("| molecule | basis | spin orb. | electrons | determinants | E(HF) | E(CCSD(T)) | "
            "E(ref) | reference | E(NQS) | E(NQS)-E(ref) mHa | chem. acc. | sampler | ref s | "
            "NQS s | time s |")
    from nqs.stats import format_estimate

    lines = [head, "|" + "---|" * 16]
    for r in records:
        acc = {True: "yes", False: "no", None: "-"}[r["chemical_accuracy"]]
        lines.append(
            f"| {r['name']} | {r['basis']} | {r['n_spin_orbitals']} | {r['n_electrons']} | "
            f"{r['n_determinants']} | {_fmt(r['e_hf'])} | {_fmt(r['e_ccsd_t'])} | "
            f"{_fmt(r.get('e_ref', r.get('e_fci')))} | {_reference_cell(r)} | "
            f"{format_estimate(r['e_nqs'], r['e_nqs_error'], bool(r.get('final_exact_sum')))} | "
            f"{_fmt(r['error_mha'], 4)} | "
            f"{acc} | {r['sampler']} | {_seconds(r.get('ref_wall_time_s'))} | "
            f"{_seconds(r.get('nqs_wall_time_s'))} | {r['wall_time_s']:.0f} |"
        )
    return "\n".join(lines)


def plot_wall_times(records: list[dict], path: Path) -> None:
    """Wall time of the reference (marker per method) and of the VMC run against the number of
    determinants, log-log (one point per molecule)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    markers = {"fci": "o", "dmrg": "s", "sci": "^"}
    for method, marker in markers.items():
        pts = [(r["n_determinants"], r["ref_wall_time_s"]) for r in records
               if r.get("reference", "fci") == method and r.get("ref_wall_time_s") is not None]
        if pts:
            x, y = zip(*pts, strict=True)
            ax.scatter(x, y, marker=marker, color="C1", label=f"reference ({method.upper()})")
    pts = [(r["n_determinants"], r["nqs_wall_time_s"]) for r in records
           if r.get("nqs_wall_time_s") is not None]
    if pts:
        x, y = zip(*pts, strict=True)
        ax.scatter(x, y, marker="x", color="C0", label="NQS (VMC)")
    for r in records:
        ax.annotate(r["name"], (r["n_determinants"], r.get("nqs_wall_time_s") or 1.0),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("determinants")
    ax.set_ylabel("wall time (s)")
    ax.set_title("Wall time: reference and NQS")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_errors(records: list[dict], path: Path) -> None:
    """Bar chart of |E - E(ref)| per molecule (log scale), NQS beside CCSD(T), with 1.6 mHa."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in records]
    floor = 1e-6
    nqs_err = [max(abs(r["error_mha"]), floor) if r["error_mha"] is not None else np.nan
               for r in records]
    cc_err = [max(abs(r["ccsd_t_error_mha"]), floor) if r["ccsd_t_error_mha"] is not None
              else np.nan for r in records]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 3, 4))
    ax.bar(x - 0.2, nqs_err, 0.4, label="NQS (VMC)")
    ax.bar(x + 0.2, cc_err, 0.4, label="CCSD(T)")
    ax.axhline(CHEMICAL_ACCURACY_MHA, color="k", ls="--", lw=1, label="chemical accuracy")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{r['name']}\n({r.get('reference', 'fci').upper()})" for r in records])
    ax.set_ylabel("|E - E(ref)| (mHa)")
    ax.set_title("Error against the reference in the same basis")
    ax.legend()
    fig.tight_layout()
    from nqs.io import save_figure_atomic

    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)


def suite_jobs(suite: str, basis: str, frozen_core: bool, cas,
               eri_threshold: float | None = None) -> list[Job]:
    """The molecules of a named suite as jobs (``eri_threshold``: None for the default)."""

    from hamiltonians.molecule import from_preset

    if suite not in SUITES:
        raise InputError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    jobs = []
    for name in SUITES[suite]:
        if name in SUITE_MOLECULES:  # fixed basis and core: the suite's point
            preset, own_basis, frozen = SUITE_MOLECULES[name]
            spec = replace(from_preset(preset, basis=own_basis), name=name)
            jobs.append(Job(name, spec, None, frozen, cas, eri_threshold))
        else:
            jobs.append(Job(name, from_preset(name, basis=basis), None, frozen_core, cas,
                            eri_threshold))
    return jobs
