"""Benchmark against FCI: a neural-network state per molecule, beside HF, CCSD(T) and FCI.

    records = run_benchmark(jobs, settings, out_dir)
    print(markdown_table(records))

Each record holds the reference energies of the same basis and active space, the VMC energy
with its error bar, its distance to FCI in mHa, and the sampler mode (exact summation or
Monte Carlo) that produced it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nqs.errors import InputError

CHEMICAL_ACCURACY_MHA = 1.6

SUITES: dict[str, tuple[str, ...]] = {
    "default": ("H2", "LiH"),
    "choo2020": ("H2", "LiH", "H2O", "NH3", "N2", "C2"),
}


@dataclass(frozen=True)
class Job:
    """One molecule: a spec (PySCF integrals) or an FCIDUMP file, with its active space."""

    name: str
    spec: object | None = None  # hamiltonians.molecule.MoleculeSpec
    fcidump: str | None = None
    frozen_core: bool = False
    cas: tuple[int, int] | None = None


@dataclass(frozen=True)
class Settings:
    """How each molecule is solved (the same for every molecule of a run)."""

    ansatz: str = "backflow"
    sampler: str = "auto"
    steps: int = 600
    samples: int = 2048
    chains: int = 16
    optimizer: str = "adam"
    learning_rate: float = 3e-3
    diag_shift: float = 1e-3
    hidden: tuple[int, ...] = (64,)
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


LR_SCHEDULES = ("constant", "cosine")


def make_scheduled_optimizer(settings: Settings):
    """The optimizer of ``settings`` with its learning-rate schedule (``nqs.optim.Optimizer``).

    ``"cosine"``: ``lr * (f + (1 - f) (1 + cos(pi t / steps)) / 2)`` at step ``t`` with
    ``f = final_lr_fraction`` (optax's cosine decay), for Adam, SGD, SR and minSR alike.
    """
    import optax

    from nqs.optim import Optimizer, make_optimizer
    from nqs.optim.optimizer import sr_optimizer

    if settings.lr_schedule not in LR_SCHEDULES:
        raise InputError(f"unknown learning-rate schedule {settings.lr_schedule!r}; "
                         f"choose one of {', '.join(LR_SCHEDULES)}")
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


def load_job(job: Job, cache_dir: str | None = None):
    """``(integrals, references dict, basis label)`` for one job; a failure inside PySCF is an
    :class:`InputError` naming the molecule (one line on the command line)."""
    try:
        return _load_job(job, cache_dir)
    except InputError:
        raise
    except (RuntimeError, ValueError, KeyError, ArithmeticError, np.linalg.LinAlgError) as err:
        msg = " ".join(str(err).split())[:200] or type(err).__name__
        raise InputError(f"molecule {job.name!r}: PySCF failed: {msg}") from None


def _load_job(job: Job, cache_dir: str | None = None):
    from hamiltonians.chem_reference import fci_from_integrals, reference_energies
    from hamiltonians.molecule import compute_integrals, read_fcidump

    if job.fcidump is not None:
        integrals = read_fcidump(job.fcidump)
        refs = {"e_hf": integrals.hf_energy(), "e_mp2": None, "e_ccsd": None,
                "e_ccsd_t": None, "e_fci": fci_from_integrals(integrals)[0]}
        return integrals, refs, "FCIDUMP"
    integrals, _ = compute_integrals(job.spec, frozen_core=job.frozen_core, cas=job.cas)
    refs = reference_energies(job.spec, frozen_core=job.frozen_core, cas=job.cas,
                              cache_dir=cache_dir)
    return integrals, refs, job.spec.basis


def fingerprint(integrals, settings: Settings) -> dict:
    """What a molecule's checkpoint must match on resume: a digest of the integrals and the
    settings that change the trajectory (not the steps, chunk size, seed or dtype, which the
    driver handles)."""
    import hashlib
    from dataclasses import asdict

    h = hashlib.sha256()
    for a in (integrals.h1, integrals.h2, [integrals.e_core, integrals.n_alpha, integrals.n_beta]):
        h.update(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes())
    fp = {k: v for k, v in asdict(settings).items()
          if k not in ("steps", "chunk_size", "seed", "dtype")}
    return {"integrals": h.hexdigest()[:16], **fp}


def solve(integrals, settings: Settings, out_dir: Path | None, echo: Callable[[str], None],
          resume: bool = False, exact_energy: float | None = None,
          checkpoint_every: int = 100):
    """VMC for one set of integrals. Returns ``(VMCResult, sampler mode)``; the checkpoint
    records :func:`fingerprint` and a resume with other integrals or settings is refused."""
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.driver import run_vmc
    from nqs.precision import check_dtype, with_dtype
    from nqs.problems import molecule_ansatz, molecule_sampler

    check_dtype(settings.dtype)
    hamiltonian = MolecularHamiltonian(integrals)
    hilbert = hamiltonian.hilbert
    sampler, mode = molecule_sampler(hilbert, settings.sampler, settings.samples, settings.chains,
                                     rule=settings.rule, power=settings.sampling_power,
                                     integrals=integrals)
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
                             init_scale=init_scale)
    ansatz = with_dtype(ansatz, settings.dtype)
    optimizer = make_scheduled_optimizer(settings)
    result = run_vmc(ansatz, hamiltonian, sampler, optimizer, settings.steps, seed=settings.seed,
                     out_dir=out_dir, resume=resume, exact_energy=exact_energy, echo=echo,
                     checkpoint_every=checkpoint_every, dedupe=mode == "mcmc",
                     chunk_size=settings.chunk_size,
                     fingerprint=fingerprint(integrals, settings))
    return result, mode


def run_benchmark(jobs: list[Job], settings: Settings, out_dir: Path | None = None,
                  echo: Callable[[str], None] = print, cache_dir: str | None = None,
                  resume: bool = False, checkpoint_every: int = 100) -> list[dict]:
    """Solve every job and return one record per molecule (see module docstring).

    ``resume``: continue each molecule from the checkpoint in ``out_dir/<name>`` (molecules
    with no checkpoint yet start afresh)."""
    records = []
    for job in jobs:
        t0 = time.perf_counter()
        integrals, refs, basis = load_job(job, cache_dir)
        n_det = _n_determinants(integrals)
        echo(f"{job.name} ({basis}): {2 * integrals.n_orbitals} spin orbitals, "
             f"{integrals.n_electrons} electrons, {n_det} determinants; "
             f"E(FCI) = {_fmt(refs.get('e_fci'))}")
        sub = out_dir / job.name if out_dir is not None else None
        resume_job = resume and sub is not None and (sub / "checkpoint.msgpack").exists()
        result, mode = solve(integrals, settings, sub, echo, resume=resume_job,
                             exact_energy=refs.get("e_fci"), checkpoint_every=checkpoint_every)
        records.append(_record(job, basis, integrals, n_det, refs, result, mode,
                               time.perf_counter() - t0, settings))
        echo(_summary_line(records[-1]))
    return records


def _n_determinants(integrals) -> int:
    from math import comb

    n = integrals.n_orbitals
    return comb(n, integrals.n_alpha) * comb(n, integrals.n_beta)


def _record(job, basis, integrals, n_det, refs, result, mode, wall, settings) -> dict:
    e_fci = refs.get("e_fci")
    e_ccsd_t = refs.get("e_ccsd_t")
    error = None if e_fci is None else (result.energy - e_fci) * 1e3
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
        "e_fci": e_fci,
        "e_nqs": result.energy,
        "e_nqs_error": result.energy_error,
        "error_mha": error,
        "ccsd_t_error_mha": None if (e_fci is None or e_ccsd_t is None)
        else (e_ccsd_t - e_fci) * 1e3,
        "chemical_accuracy": None if error is None else bool(abs(error) < CHEMICAL_ACCURACY_MHA),
        "sampler": mode,
        "ansatz": settings.ansatz,
        "dtype": settings.dtype,
        "n_parameters": result.n_parameters,
        "steps": result.steps,
        "wall_time_s": wall,
        "time_per_step_s": result.time_per_step_s,
    }


def _fmt(value, digits: int = 8) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _summary_line(r: dict) -> str:
    return (f"  {r['name']}: E(NQS) = {r['e_nqs']:.8f} +- {r['e_nqs_error']:.1e}, "
            f"E(NQS) - E(FCI) = {_fmt(r['error_mha'], 4)} mHa ({r['sampler']}), "
            f"{r['wall_time_s']:.0f} s")


def markdown_table(records: list[dict]) -> str:
    """The benchmark table in markdown (energies in Hartree, errors in mHa)."""
    head = ("| molecule | basis | spin orb. | electrons | determinants | E(HF) | E(CCSD(T)) | "
            "E(FCI) | E(NQS) | E(NQS)-E(FCI) mHa | chem. acc. | sampler | time s |")
    lines = [head, "|" + "---|" * 13]
    for r in records:
        err = "-" if r["e_nqs_error"] is None else f"{r['e_nqs_error']:.1e}"
        acc = {True: "yes", False: "no", None: "-"}[r["chemical_accuracy"]]
        lines.append(
            f"| {r['name']} | {r['basis']} | {r['n_spin_orbitals']} | {r['n_electrons']} | "
            f"{r['n_determinants']} | {_fmt(r['e_hf'])} | {_fmt(r['e_ccsd_t'])} | "
            f"{_fmt(r['e_fci'])} | {r['e_nqs']:.8f} +- {err} | {_fmt(r['error_mha'], 4)} | "
            f"{acc} | {r['sampler']} | {r['wall_time_s']:.0f} |"
        )
    return "\n".join(lines)


def plot_errors(records: list[dict], path: Path) -> None:
    """Bar chart of |E - E(FCI)| per molecule (log scale), NQS beside CCSD(T), with 1.6 mHa."""
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
    ax.set_xticks(x, names)
    ax.set_ylabel("|E - E(FCI)| (mHa)")
    ax.set_title("Error against FCI in the same basis")
    ax.legend()
    fig.tight_layout()
    from nqs.io import save_figure_atomic

    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)


def suite_jobs(suite: str, basis: str, frozen_core: bool, cas) -> list[Job]:
    """The molecules of a named suite as jobs."""
    from hamiltonians.molecule import from_preset

    if suite not in SUITES:
        raise InputError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    return [Job(name, from_preset(name, basis=basis), None, frozen_core, cas)
            for name in SUITES[suite]]
