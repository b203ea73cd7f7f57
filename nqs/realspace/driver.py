"""The real-space VMC loop: the impure shell around the pure FermiNet steps.

    result = run_realspace(make_atoms("He 0 0 0"), layers=((16, 4),) * 2, n_determinants=2,
                           optimizer="kfac", n_steps=500, n_walkers=256, out_dir="runs/he")

Order of work: network and walkers from the seed; optional Hartree-Fock pretraining
(:mod:`nqs.realspace.pretrain`); a Metropolis burn-in; ``n_steps`` optimization steps (KFAC, Adam
or minSR); a final evaluation with fixed parameters.

Files (only when ``out_dir`` is given): ``log.jsonl`` gets one flushed JSON line per step
(``step, energy, energy_error, variance, acceptance, width, step_time_s, wall_time_s``; pretraining
adds ``{"phase": "pretrain", "pretrain_step", "loss"}`` lines without a ``step``);
``checkpoint.msgpack`` is written atomically after pretraining/burn-in (step 0), every
``checkpoint_every`` steps and at the end, and holds the parameters, optimizer state, walkers,
MCMC width, the key and the step. The key of step ``k`` is ``fold_in(run_key, k)``, so
``resume=True`` continues exactly: the result equals that of an uninterrupted run with the same
seed and options.

The steps run in the loop both drivers share (:func:`nqs.loop.run_steps`: log lines,
checkpoints, progress, time limit, SIGINT / SIGTERM) with its guard (:class:`nqs.guard.Guard`,
no energy-jump test here): a step whose energy or new parameters are not finite is rejected (a
non-finite energy goes back to the *anchor*, the state of the last accepted energy; non-finite
new parameters to the state before the step, copied first for KFAC, which donates its inputs),
later updates are scaled by :data:`LR_FACTOR` per rejection and :data:`MAX_REJECTIONS` in a
row raise :class:`nqs.errors.RunDiverged`. A resume goes through :func:`nqs.loop.resume`: a
checkpoint of other options (the fingerprint), non-finite or past ``n_steps`` is refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.ansatz import n_parameters
from nqs.errors import CheckpointError, InputError
from nqs.guard import (
    Guard,
    check_time_limit,
    copy_tree,
    failure_reason,
    step_is_finite,
)
from nqs.io import (
    JsonlLogger,
    load_checkpoint_entries,
    load_checkpoint_metadata,
    require_finite,
)
from nqs.loop import (
    CHECKPOINT_NAME,
    LoopIO,
    RunResult,
    StepOutcome,
    StepProblem,
    Steps,
    check_final_energy,
    checkpoint_to_resume,
    open_log,
    resume,
    run_options,
    run_steps,
    write_checkpoint,
)
from nqs.models.electrons import (
    ATTENTION_ANSATZE,
    folx_sparsity,
    make_network,
    network_options,
    with_dtype,
)
from nqs.models.ferminet import DEFAULT_LAYERS
from nqs.optim.optimizer import scheduled_optimizer
from nqs.parallel import (
    Mesh,
    auto_chunk,
    check_divisible,
    gather,
    is_main_process,
    make_mesh,
    process_echo,
    put,
    replicated,
    run_record,
    sample_sharding,
    tree_shardings,
    without_global_mesh,
)
from nqs.precision import DTYPES
from nqs.progress import Progress
from nqs.realspace.mcmc import init_walkers
from nqs.realspace.system import RealSpaceSystem
from nqs.realspace.train import VMC, VMCState, make_kfac_vmc, make_optax_vmc
from nqs.sampling.walkers import MCMCState, WalkerSampler, burn_in, evaluate_energy

OPTIMIZERS = ("kfac", "adam", "sr")
OptimizerName = Literal["kfac", "adam", "sr"]
MAX_REJECTIONS = 10  # consecutive rejected steps that stop a run (RunDiverged)
LR_FACTOR = 0.3  # each rejected step scales the later updates by this factor

# Per optimizer: (learning rate, delay of lr / (1 + t / delay)).
DEFAULT_LR: dict[str, tuple[float, float]] = {
    "kfac": (0.05, 10000.0),  # FermiNet (Pfau et al. 2020)
    "adam": (1e-3, 1000.0),
    "sr": (0.05, 1000.0),
}


@dataclass(kw_only=True)
class RealSpaceResult(RunResult):
    """Outcome of a real-space run (Hartree)."""

    SUMMARY: ClassVar[tuple[str, ...]] = (
        "energy", "energy_error", "variance", "tau_corr", "acceptance", "reference_energy",
        "reference_source", "error_mha", "hf_energy", "n_parameters", "n_walkers", "steps",
        "steps_planned", "time_limit_s", "stopped_by_time_limit", "eval_steps",
        "pretrain_steps", "wall_time_s", "time_per_step_s", "dtype", "n_devices",
        "n_processes", "chunk_size", "peak_memory_bytes", "peak_memory_source", "optimizer",
        "momentum", "kfac_fallback")
    PLOT_TITLE: ClassVar[str] = "real-space VMC"

    tau_corr: float
    acceptance: float
    n_walkers: int
    eval_steps: int
    pretrain_steps: int
    reference_energy: float | None = None
    reference_source: str | None = None
    hf_energy: float | None = None
    optimizer: str | None = None
    momentum: float = 0.0
    kfac_fallback: str | None = None
    log_psi: Any = field(default=None, repr=False)  # the network (params, r) -> log|psi|
    walkers: Any = field(default=None, repr=False)  # MCMCState after the final evaluation

    @property
    def reference(self) -> float | None:
        """The tabulated exact energy, or None."""
        return self.reference_energy

    @property
    def error_mha(self) -> float | None:
        """(E - E_reference) in mHa, or None without a reference."""
        if self.reference_energy is None:
            return None
        return (self.energy - self.reference_energy) * 1e3


def make_vmc_method(
    name: OptimizerName,
    log_abs_psi_fn: Callable[[Any, jax.Array], Any],
    local_energy_fn: Callable[[Any, jax.Array], jax.Array],
    learning_rate: float | None = None,
    delay: float | None = None,
    mcmc_steps: int = 10,
    clip_scale: float = 5.0,
    damping: float = 1e-3,
    norm_constraint: float = 1e-3,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    momentum: float = 0.0,
) -> VMC:
    """The pure VMC method of an optimizer name: ``"kfac"``, ``"adam"`` or ``"sr"`` (minSR).

    ``learning_rate`` / ``delay`` default to :data:`DEFAULT_LR`; ``damping`` is KFAC's damping
    and SR's diagonal shift; ``norm_constraint`` applies to KFAC and SR. ``chunk_size``: walkers
    per device evaluated at a time; ``mesh``: devices the walkers are split over. ``momentum``:
    SPRING's mu for ``"sr"`` (0: minSR).
    """
    lr, dl = learning_rate_and_delay(name, learning_rate, delay, momentum)
    if name == "kfac":
        return make_kfac_vmc(
            log_abs_psi_fn, local_energy_fn, learning_rate=lr, delay=dl, damping=damping,
            norm_constraint=norm_constraint, mcmc_steps=mcmc_steps, clip_scale=clip_scale,
            chunk_size=chunk_size, mesh=mesh,
        )
    return make_optax_vmc(
        log_abs_psi_fn, local_energy_fn,
        scheduled_optimizer(name, lr, dl, damping, norm_constraint, momentum),
        mcmc_steps=mcmc_steps, clip_scale=clip_scale, chunk_size=chunk_size, mesh=mesh,
    )


def learning_rate_and_delay(name: str, learning_rate: float | None, delay: float | None,
                            momentum: float = 0.0) -> tuple[float, float]:
    """``(lr, delay)`` of optimizer ``name`` (None: :data:`DEFAULT_LR`), checked (InputError)."""
    if name not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if momentum != 0 and name != "sr":
        raise InputError("momentum (SPRING) applies to --optimizer sr only")
    lr0, delay0 = DEFAULT_LR[name]
    lr = lr0 if learning_rate is None else float(learning_rate)
    dl = delay0 if delay is None else float(delay)
    if not (lr > 0 and math.isfinite(lr)) or not (dl > 0 and math.isfinite(dl)):
        raise InputError(f"learning rate and delay must be positive, got {lr}, {dl}")
    return lr, dl


def _fingerprint(atoms: RealSpaceSystem, **options: Any) -> dict[str, Any]:
    return {
        "symbols": list(atoms.symbols),
        "positions": np.round(np.asarray(atoms.positions), 10).tolist(),
        "n_alpha": atoms.n_alpha,
        "n_beta": atoms.n_beta,
        # with ECPs, which (all-electron runs keep the fingerprint they had)
        **({"ecp": dict(atoms.ecp_names)} if getattr(atoms, "ecp_names", None) else {}),
        **options,
    }


@dataclass
class _Run:
    """The fixed pieces of one run: pure functions, devices, files and keys."""

    apply: Callable[[Any, jax.Array], Any]
    e_loc_fn: Callable[[Any, jax.Array], jax.Array]
    vmc: VMC
    mesh: Mesh
    chunk_size: int | None
    meta: dict[str, Any]
    ckpt: Path | None
    main: bool
    echo: Callable[[str], None]
    k_run: jax.Array
    meta_n_steps: int = 0  # the planned steps (a checkpoint past them is refused)
    guard: Guard = field(default_factory=lambda: Guard(None, LR_FACTOR, MAX_REJECTIONS,
                                                       hint="lower --lr or raise --damping"))
    optimizer: str = "sr"
    momentum: float = 0.0
    # builds the fallback VMC method when KFAC fails (None: no fallback, errors propagate)
    fallback: Callable[[], VMC] | None = None
    fallback_reason: str | None = None
    # the network's orbital matrices (Hartree-Fock pretraining)
    orbitals: Callable[[Any, jax.Array], list[jax.Array]] | None = None

    def fall_back(self, err: BaseException | str) -> None:
        """Replace a failed KFAC by SPRING (one warning line; the next checkpoints say so)."""
        from nqs.realspace.defaults import FALLBACK_MOMENTUM, FALLBACK_OPTIMIZER

        assert self.fallback is not None
        reason = err if isinstance(err, str) else failure_reason(err)
        self.echo(f"warning: KFAC failed ({reason}); continuing with SPRING (--optimizer "
                  f"{FALLBACK_OPTIMIZER} --momentum {FALLBACK_MOMENTUM:g})")
        self.vmc = self.fallback()
        self.fallback = None
        self.fallback_reason = reason
        self.optimizer, self.momentum = FALLBACK_OPTIMIZER, FALLBACK_MOMENTUM
        # the checkpoints say so (not the reason: a resume may fail at another point)
        self.meta = self.meta | {"kfac_fallback": True, "fingerprint": self.meta["fingerprint"]
                                 | {"optimizer": FALLBACK_OPTIMIZER,
                                    "momentum": FALLBACK_MOMENTUM}}

    def shardings_of(self, state: VMCState) -> VMCState:
        """Parameters and optimizer state replicated; walkers and their log|psi|^2 split."""
        return VMCState(
            tree_shardings(state.params, self.mesh, None),
            tree_shardings(state.opt_state, self.mesh, None),
            MCMCState(sample_sharding(self.mesh), sample_sharding(self.mesh),
                      replicated(self.mesh)),
        )

    def checkpoint(self, state: VMCState, step: int, hf_energy: float | None) -> None:
        """Write ``state`` at ``step`` (and the recovery's anchor and state) atomically (the
        gather runs on all processes)."""
        if self.ckpt is not None:
            write_checkpoint(self.ckpt, {"state": state, "key": self.k_run, "step": step},
                             self.meta | {"hf_energy": hf_energy}, step, self.guard, self.main)


@dataclass(frozen=True, kw_only=True)
class RealSpaceOptions:
    """Every option of a real-space run (:func:`run_realspace`), checked by :meth:`check`.

    Attributes:
        layers, n_determinants, envelope, full_det: the network (:func:`make_ferminet`).
        ansatz: ``"ferminet"``, ``"psiformer"`` (:mod:`nqs.models.psiformer`) or ``"lapnet"``
            (:mod:`nqs.models.lapnet`; folx with sparsity); the last two are sized by
            ``psiformer_layers``, ``heads``, ``width``, ``layer_norm`` and ``jastrow``, with
            ``n_determinants``, ``envelope`` and ``full_det``, and ``layers`` is unused).
        optimizer: ``"kfac"``, ``"adam"`` or ``"sr"`` (minSR; small networks).
        learning_rate, lr_delay: ``lr / (1 + t / delay)``; ``None`` takes :data:`DEFAULT_LR`.
        damping: KFAC damping / SR diagonal shift. norm_constraint: KFAC and SR.
        momentum: SPRING's momentum for ``"sr"`` (0: plain minSR).
        pretrain_steps: Hartree-Fock pretraining steps (0: none) in ``pretrain_basis``, at
            ``pretrain_lr``.
        n_steps: optimization steps (0: evaluate the initial / pretrained network).
        n_walkers: walkers (parallel Markov chains).
        mcmc_steps: Metropolis moves per optimization step and per measurement.
        burn_in_calls: Metropolis calls (of ``mcmc_steps`` moves) before the first step.
        eval_steps: measurements of the final evaluation (>= 2).
        clip_scale: local-energy clipping of the gradient (0: none).
        laplacian: ``"folx"`` (forward Laplacian) or ``"hessian"``.
        seed: the only source of randomness.
        out_dir: where ``log.jsonl`` and ``checkpoint.msgpack`` go (None: no files).
        checkpoint_every: checkpoint period in steps.
        resume: continue from ``out_dir/checkpoint.msgpack`` (same options and seed).
        reference_energy, reference_source: exact energy to compare with (result only).
        chunk_size: walkers per device whose local energies and log-derivatives are evaluated
            at a time (bounds memory); ``"auto"``: from the device memory and XLA's memory
            estimate per walker; None: all at once.
        dtype: ``"float64"`` or ``"float32"``: the network's parameters and activations
            (:func:`with_dtype`); energies, determinants and reductions stay float64.
        time_limit: wall seconds for the optimization steps of this call (None: no limit). The
            step that passes it is the last one; it is checkpointed and the evaluation follows,
            so a run sized by the clock ends with a result, and ``resume`` continues it.
        kfac_fallback: with ``optimizer="kfac"``: if kfac-jax fails to import, to initialize or
            in the first step, echo one warning line naming the reason and continue with SPRING
            (``"sr"``, momentum 0.9); the result's ``optimizer`` and ``kfac_fallback`` say so.
            False: the error propagates.
    """

    layers: Sequence[tuple[int, int]] = DEFAULT_LAYERS
    n_determinants: int = 16
    envelope: Literal["isotropic", "full"] = "isotropic"
    full_det: bool = False
    ansatz: Literal["ferminet", "psiformer", "lapnet"] = "ferminet"
    psiformer_layers: int = 2
    heads: int = 2
    width: int = 32
    layer_norm: Literal["pre", "post", "none"] = "pre"
    jastrow: bool = True
    optimizer: OptimizerName = "kfac"
    learning_rate: float | None = None
    lr_delay: float | None = None
    damping: float = 1e-3
    norm_constraint: float = 1e-3
    momentum: float = 0.0
    pretrain_steps: int = 0
    pretrain_basis: str = "ccpvdz"
    pretrain_lr: float = 1e-2
    n_steps: int = 100
    n_walkers: int = 256
    mcmc_steps: int = 10
    burn_in_calls: int = 10
    eval_steps: int = 100
    clip_scale: float = 5.0
    laplacian: Literal["folx", "hessian"] = "folx"
    seed: int = 0
    out_dir: str | Path | None = None
    checkpoint_every: int = 50
    resume: bool = False
    reference_energy: float | None = None
    reference_source: str | None = None
    chunk_size: int | str | None = None
    dtype: str = "float64"
    time_limit: float | None = None
    kfac_fallback: bool = False

    def check(self) -> None:
        """Refuse bad sizes and options (:class:`InputError`)."""
        for name, low in (("n_walkers", 1), ("n_steps", 0), ("eval_steps", 2),
                          ("pretrain_steps", 0), ("mcmc_steps", 1), ("burn_in_calls", 0),
                          ("checkpoint_every", 1)):
            value = getattr(self, name)
            if int(value) != value or value < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value}")
        check_time_limit(self.time_limit)
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.dtype == "float32" and self.optimizer == "kfac":
            # kfac-jax checks that its curvature vectors and the parameters share one dtype
            raise InputError("--dtype float32 works with --optimizer adam or sr, not kfac")
        c = self.chunk_size
        if c is not None and c != "auto" and (not isinstance(c, int) or c < 1):
            raise InputError(f"chunk size must be a positive integer or 'auto', got {c!r}")
        learning_rate_and_delay(self.optimizer, self.learning_rate, self.lr_delay, self.momentum)

    def fingerprint(self, atoms: RealSpaceSystem) -> dict[str, Any]:
        """The options that change the trajectory, as a checkpoint records them (with the
        system); seed and dtype are recorded beside them."""
        net = self.network()
        return _fingerprint(
            atoms, n_walkers=int(self.n_walkers), optimizer=self.optimizer,
            learning_rate=self.learning_rate, lr_delay=self.lr_delay,
            mcmc_steps=int(self.mcmc_steps), pretrain_steps=int(self.pretrain_steps),
            laplacian=self.laplacian,
            **{k: (list(map(list, v)) if k == "layers" else v) for k, v in net.items()},
            **({} if self.momentum == 0 else {"momentum": float(self.momentum)}))

    def network(self) -> dict[str, Any]:
        """The network's options (:func:`nqs.models.electrons.network_options`)."""
        return network_options(self.ansatz, self.layers, self.n_determinants, self.envelope,
                               self.full_det, self.psiformer_layers, self.heads, self.width,
                               self.layer_norm, self.jastrow)


def _resume(run: _Run, vmc_template: VMCState) -> tuple[VMCState, int, float | None]:
    """``(state, step, hf_energy)`` from the checkpoint, after :func:`nqs.loop.resume` has
    checked that it is this run's (the options sit beside the step and the guard's state in
    the checkpoint's metadata), finite and within the planned steps."""
    assert run.ckpt is not None
    # Checkpoints hold whole host arrays: they load on any number of devices.
    template = gather({"state": vmc_template, "key": run.k_run, "step": 0})
    shardings = run.shardings_of(vmc_template)
    fingerprint = run.meta["fingerprint"]
    resumed = resume(run.ckpt, template, run.guard, n_steps=run.meta_n_steps,
                     saved_options=run_options(run.ckpt, run.meta["seed"], run.meta["dtype"],
                                               legacy=fingerprint),
                     options=fingerprint, echo=run.echo, place=lambda tree: put(tree, shardings))
    state: VMCState = resumed.tree["state"]
    require_finite(state.mcmc.r, run.ckpt, "walker positions")
    return put(state, shardings), resumed.start, resumed.meta.get("hf_energy")


def _start(run: _Run, atoms: RealSpaceSystem, params: Any, walkers: jax.Array,
           keys: tuple[jax.Array, jax.Array, jax.Array], o: RealSpaceOptions,
           logger: JsonlLogger | None) -> tuple[VMCState, float | None]:
    """A fresh state: Hartree-Fock pretraining (if asked), the optimizer state, a burn-in."""
    k_pre, k_opt, k_burn = keys
    width = 0.2
    hf_energy = None
    if o.pretrain_steps > 0:
        from nqs.realspace.pretrain import pretrain

        orbitals = run.orbitals
        pre = pretrain(k_pre, params, atoms, orbitals, run.apply, walkers,
                       n_steps=o.pretrain_steps, basis=o.pretrain_basis,
                       learning_rate=o.pretrain_lr, mcmc_steps=o.mcmc_steps)
        params, walkers, hf_energy = pre.params, pre.walkers, pre.hf.energy
        run.echo(f"pretrained {o.pretrain_steps} steps on HF/{o.pretrain_basis} (E_HF = "
                 f"{hf_energy:.6f}): loss {pre.losses[0]:.3e} -> {pre.losses[-1]:.3e} "
                 f"({pre.seconds:.1f} s)")
        if logger is not None:
            for i, loss in enumerate(pre.losses):
                logger.append({"phase": "pretrain", "pretrain_step": i, "loss": float(loss)})
    try:
        state = run.vmc.init(k_opt, params, walkers, width)
    except Exception as err:  # kfac-jax traces the loss here: a jax it does not know fails
        if run.fallback is None:
            raise
        run.fall_back(err)
        state = run.vmc.init(k_opt, params, walkers, width)
    state = put(state, run.shardings_of(state))
    if o.burn_in_calls > 0:
        sampler = WalkerSampler(o.mcmc_steps, chunk_size=run.chunk_size, mesh=run.mesh)
        move = jax.jit(lambda k, p, mc: sampler.move(k, run.apply, p, mc))
        mc, _ = burn_in(k_burn, move, state.params,
                        sampler.init_at(run.apply, state.params, state.mcmc.r, width),
                        o.burn_in_calls)
        state = state._replace(mcmc=mc)
    return state, hf_energy


def _make_vmc(build: Callable[[OptimizerName, float], VMC], optimizer: OptimizerName,
              momentum: float, kfac_fallback: bool
              ) -> tuple[VMC | None, Callable[[], VMC] | None, BaseException | None]:
    """``(vmc, fallback, error)``: the VMC method of ``optimizer`` built by ``build``; with
    ``kfac_fallback`` (KFAC only) the builder of SPRING to fall back to, and KFAC's error when
    it failed to build (then ``vmc`` is None)."""
    from nqs.realspace.defaults import FALLBACK_MOMENTUM, FALLBACK_OPTIMIZER

    fallback = None
    if optimizer == "kfac" and kfac_fallback:
        fallback = lambda: build(FALLBACK_OPTIMIZER, FALLBACK_MOMENTUM)  # noqa: E731
    try:
        return build(optimizer, momentum), fallback, None
    except Exception as err:  # kfac-jax's import (or a jax it does not support)
        if fallback is None:
            raise
        return None, fallback, err


def _optimize(run: _Run, state: VMCState, start: int, o: RealSpaceOptions,
              hf_energy: float | None, k_opt: jax.Array, io: LoopIO) -> Steps[VMCState]:
    """Steps ``start .. n_steps - 1`` (or until the time limit) in the shared loop
    (:func:`nqs.loop.run_steps`): logged, checkpointed, a non-finite step rejected."""
    problem = _realspace_problem(run, start, o.n_walkers, hf_energy, k_opt)
    return run_steps(problem, state, start, o.n_steps, guard=run.guard, io=io,
                     checkpoint_every=o.checkpoint_every, time_limit=o.time_limit)


def _realspace_problem(run: _Run, start: int, n_walkers: int, hf_energy: float | None,
                       k_opt: jax.Array) -> StepProblem[VMCState]:
    """The real-space step as the shared loop's problem: the key of step ``k`` is
    ``fold_in(run_key, k)``; KFAC donates its inputs, so the state to go back to is a copy;
    a failure of KFAC's first step falls back to SPRING (``run.fallback``) and retries."""

    def step(k: int, state: VMCState) -> StepOutcome[VMCState]:
        before = copy_tree(state) if run.optimizer == "kfac" else state
        key = jax.random.fold_in(run.k_run, k)
        try:
            after, stats = run.vmc.step(key, state)
        except Exception as err:  # KFAC's first step: fall back (later errors propagate)
            if k != start or run.fallback is None:
                raise
            run.fall_back(err)
            state = run.vmc.init(k_opt, before.params, before.mcmc.r, before.mcmc.width)
            state = before = put(state, run.shardings_of(state))
            after, stats = run.vmc.step(key, state)
        stats = {name: float(v) for name, v in jax.device_get(stats).items()}
        variance = stats["variance"]
        fields = {
            "energy": stats["energy"],
            "energy_error": math.sqrt(max(variance, 0.0) / n_walkers)
            if math.isfinite(variance) else None,
            "variance": variance,
            "acceptance": stats["acceptance"],
            "width": stats["width"],
        }
        return StepOutcome(before, after, fields, step_is_finite(stats["energy"], after.params))

    def restore(after: VMCState, back: VMCState) -> VMCState:
        return copy_tree(back) if run.optimizer == "kfac" else back

    def checkpoint(state: VMCState, k: int) -> None:
        run.checkpoint(state, k, hf_energy)

    return StepProblem(step, restore, checkpoint if run.ckpt is not None else None, run.ckpt)


@without_global_mesh
def run_realspace(
    atoms: RealSpaceSystem,
    options: RealSpaceOptions | None = None,
    *,
    echo: Callable[[str], None] | None = None,
    progress: bool | None = None,
    callback: Callable[[dict], None] | None = None,
    mesh: Mesh | None = None,
    **overrides: Any,
) -> RealSpaceResult:
    """Optimize a FermiNet (or a Psiformer) for ``atoms`` (a :class:`RealSpaceSystem`, e.g.
    :func:`hamiltonians.realspace.make_atoms`: nuclei, electrons, local energy) by VMC, then
    evaluate its energy at fixed parameters.

    ``options`` (:class:`RealSpaceOptions`), with any of its fields overridden by name
    (``run_realspace(atoms, n_steps=500, optimizer="sr")``). ``echo``: where messages go
    (default stderr); ``progress``: report progress on stdout (default: True on process 0; a
    bar on a terminal or in Jupyter, plain lines in a log file); ``callback``: called with each
    step's log record after it is written (and checkpointed); ``mesh``: devices the walkers are
    split over (default: all devices of all processes; the number of walkers must be divisible
    by their number; only process 0 writes files).

    Raises:
        InputError: bad sizes or options. CheckpointError: nothing to resume or a mismatch.
    """
    o = replace(options or RealSpaceOptions(), **overrides)
    o.check()
    main = is_main_process()
    mesh = make_mesh() if mesh is None else mesh
    check_divisible(int(o.n_walkers), mesh, "the number of walkers")
    out = Path(o.out_dir) if o.out_dir is not None else None
    t_run = time.perf_counter()
    run, params, walkers, (k_pre, k_opt, k_burn, k_eval) = _setup(atoms, o, mesh, out, main,
                                                                   process_echo(echo))
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
    start, hf_energy = 0, None
    if o.resume:
        state, start, hf_energy = _resume(run, run.vmc.init(k_opt, params, walkers, 0.2))
    logger, history = open_log(out, main, o.resume, start)
    if not o.resume:
        state, hf_energy = _start(run, atoms, params, walkers, (k_pre, k_opt, k_burn), o, logger)
        run.checkpoint(state, 0, hf_energy)
    bar = Progress(o.n_steps, start, enabled=(True if progress is None else progress) and main)
    done = _optimize(run, state, start, o, hf_energy, k_opt,
                     LoopIO(history, logger, bar, run.echo, t_run, callback))
    bar.phase(f"final evaluation ({o.eval_steps} measurements at the final parameters)")
    st, acceptance, walkers = evaluate_energy(k_eval, run.apply, run.e_loc_fn, done.state.params,
                                              done.state.mcmc, o.eval_steps, o.mcmc_steps,
                                              run.chunk_size, run.mesh)
    check_final_energy(float(st.mean), "lower --lr or raise --damping")
    return _result(run, done, history, st, acceptance, walkers, hf_energy, t_run, o)


def _setup(atoms: RealSpaceSystem, o: RealSpaceOptions, mesh: Mesh, out: Path | None,
           main: bool, echo: Callable[[str], None]
           ) -> tuple[_Run, Any, jax.Array, tuple[jax.Array, ...]]:
    """The pure pieces of a run: ``(run, initial parameters, initial walkers, (k_pre, k_opt,
    k_burn, k_eval))``, all from the seed; the VMC method (KFAC falling back to SPRING when
    asked) and the checkpoint's metadata."""
    ckpt = checkpoint_to_resume(out) if o.resume else None if out is None else out / CHECKPOINT_NAME
    init, apply, orbitals = make_network(
        atoms, o.network(), jnp.float32 if o.dtype == "float32" else jnp.float64)
    apply = with_dtype(apply, o.dtype)
    e_loc_fn = atoms.local_energy(apply, o.laplacian, folx_sparsity(o.network()))
    k_init, k_walk, k_pre, k_opt, k_burn, k_run, k_eval = jax.random.split(
        jax.random.PRNGKey(o.seed), 7
    )
    params = init(k_init)
    walkers = init_walkers(k_walk, atoms, o.n_walkers)
    chunk_size = o.chunk_size
    if chunk_size == "auto":  # the same bound for every optimizer
        # a log-derivative row: a few copies of n_parameters float64 numbers
        chunk_size = auto_chunk(e_loc_fn, params, walkers[0], int(walkers.shape[0]), mesh,
                                row_bytes=4 * 8 * n_parameters(params))

    def build(name: OptimizerName, mu: float) -> VMC:
        return make_vmc_method(name, apply, e_loc_fn, o.learning_rate, o.lr_delay, o.mcmc_steps,
                               o.clip_scale, o.damping, o.norm_constraint, chunk_size, mesh, mu)

    vmc, fallback, kfac_error = _make_vmc(build, o.optimizer, o.momentum, o.kfac_fallback)
    meta = {"seed": int(o.seed), "dtype": o.dtype, "n_steps_planned": int(o.n_steps),
            "fingerprint": o.fingerprint(atoms)}
    run = _Run(apply, e_loc_fn, vmc, mesh, chunk_size, meta, ckpt, main, echo, k_run,
               int(o.n_steps), optimizer=o.optimizer, momentum=float(o.momentum),
               fallback=fallback, orbitals=orbitals)
    if kfac_error is not None:
        run.fall_back(kfac_error)
    elif run.fallback is not None and o.resume:
        if load_checkpoint_metadata(ckpt).get("kfac_fallback"):  # so does its continuation
            run.fall_back("the run being resumed had fallen back to SPRING")
    return run, params, walkers, (k_pre, k_opt, k_burn, k_eval)


def _result(run: _Run, done: Steps[VMCState], history: list[dict], st: Any, acceptance: float,
            walkers: MCMCState, hf_energy: float | None, t_run: float,
            o: RealSpaceOptions) -> RealSpaceResult:
    """The result of a run: the final evaluation's statistics ``st``, the steps ``done``, the
    run's options ``o`` (sizes, reference, dtype) and its devices."""
    options = {
        "n_walkers": int(o.n_walkers), "steps_planned": int(o.n_steps),
        "time_limit_s": None if o.time_limit is None else float(o.time_limit),
        "eval_steps": int(o.eval_steps), "pretrain_steps": int(o.pretrain_steps),
        "reference_energy": o.reference_energy, "reference_source": o.reference_source,
        "dtype": o.dtype}
    return RealSpaceResult(
        energy=float(st.mean),
        energy_error=float(st.error_of_mean),
        variance=float(st.variance),
        tau_corr=float(st.tau_corr),
        acceptance=acceptance,
        n_parameters=n_parameters(done.state.params),
        steps=int(done.done),
        wall_time_s=time.perf_counter() - t_run,
        time_per_step_s=done.time_per_step,
        history=history,
        hf_energy=hf_energy,
        params=gather(done.state.params),
        optimizer=run.optimizer,
        momentum=run.momentum,
        kfac_fallback=run.fallback_reason,
        log_psi=run.apply,
        walkers=walkers,
        **options,
        **run_record(run.mesh, run.chunk_size),
    )


def load_network_state(ckpt: str | Path, atoms: RealSpaceSystem
                       ) -> tuple[Any, Callable[[Any, jax.Array], Any], MCMCState, dict[str, Any]]:
    """``(params, log_psi, walkers, metadata)`` of the real-space checkpoint ``ckpt`` of a run
    on ``atoms``: the network rebuilt from the options its metadata records, the parameters
    and walkers read from the checkpoint (not the optimizer state). ``metadata["step"]``: the
    steps done. Raises :class:`CheckpointError` for a missing or mismatched file and when
    ``atoms`` is not the run's system."""
    ckpt = Path(ckpt)
    meta = load_checkpoint_metadata(ckpt)
    options = recorded_options(meta)
    net = _recorded_network(options)
    if net is None or any(k not in options for k in ("n_walkers", "n_alpha")):
        raise CheckpointError(f"checkpoint {ckpt} is not of a real-space run")
    mine = _fingerprint(atoms)
    for k in ("symbols", "positions", "n_alpha", "n_beta", "ecp"):
        if options.get(k) != mine.get(k):
            raise CheckpointError(f"checkpoint {ckpt} is of another system: {k} was "
                                  f"{options.get(k)!r}, now {mine[k]!r}")
    dtype = meta.get("dtype", "float64")
    init, apply, _ = make_network(atoms, net,
                                  param_dtype=jnp.float32 if dtype == "float32" else jnp.float64)
    apply = with_dtype(apply, dtype)
    n_el = atoms.n_alpha + atoms.n_beta
    w = int(options["n_walkers"])
    mcmc = MCMCState(jnp.zeros((w, n_el, 3)), jnp.zeros(w), jnp.zeros(()))
    template = {"state": VMCState(init(jax.random.PRNGKey(0)), None, mcmc), "step": 0}
    tree, meta = load_checkpoint_entries(ckpt, template)
    state = tree["state"]
    require_finite(state.params, ckpt, "parameters")
    return state.params, apply, state.mcmc, meta | options | {"step": int(tree["step"])}


def recorded_options(meta: dict[str, Any]) -> dict[str, Any]:
    """The options a real-space checkpoint's metadata records: its ``fingerprint`` (system,
    network, walkers, optimizer), or the metadata itself for a checkpoint written before the
    fingerprint entry (the options sat at its top level)."""
    fingerprint = meta.get("fingerprint")
    return fingerprint if isinstance(fingerprint, dict) else meta


def _recorded_network(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The network options (:func:`network_options`) a checkpoint's metadata records, FermiNet,
    Psiformer or LapNet; None when they are incomplete."""
    keys = (("ansatz", "n_layers", "heads", "width", "layer_norm", "jastrow")
            if meta.get("ansatz") in ATTENTION_ANSATZE else ("layers",))
    keys += ("n_determinants", "envelope", "full_det")
    if any(k not in meta for k in keys):
        return None
    net = {k: meta[k] for k in keys}
    if "layers" in net:
        net["layers"] = tuple(tuple(x) for x in net["layers"])
    return net
