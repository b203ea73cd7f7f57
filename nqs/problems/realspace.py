"""A run of electrons in real space from its options, on the walker driver (:mod:`nqs.walker_driver`).

    result = run_realspace(make_atoms("He 0 0 0"), layers=((16, 4),) * 2, n_determinants=2,
                           optimizer="kfac", n_steps=500, n_walkers=256, out_dir="runs/he")

The application's part of real space (the CLI's ``nqs realspace``, ``nqs load``, ``nqs bench-fci
--realspace`` and the experiments call it): the options (:class:`RealSpaceOptions`, their
fingerprint), the network and the local energy of the system, the walkers' initial positions
(:func:`nqs.realspace.mcmc.init_walkers`), the Hartree-Fock pretraining
(:mod:`nqs.realspace.pretrain`) as the run's ``prepare`` hook, the choice of optimizer with its
defaults (:func:`make_vmc_method`, :data:`DEFAULT_LR`) and KFAC's fallback to SPRING
(:func:`make_vmc_with_fallback`; KFAC's glue is :mod:`nqs.realspace.train`), the result's
fields (:class:`RealSpaceResult`) and reading a network back from a checkpoint
(:func:`load_network_state`). The run itself (resume, burn-in, the steps in the shared loop
with their guard, checkpoints, the final evaluation, the result) is the engine's
(:func:`nqs.walker_driver.run_walker_vmc`), which documents the files: ``log.jsonl`` (here also
``{"phase": "pretrain", "pretrain_step", "loss"}`` lines without a ``step``) and
``checkpoint.msgpack`` (here with ``hf_energy`` in its metadata). The key of step ``k`` is
``fold_in(run_key, k)``, so ``resume=True`` continues exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.errors import CheckpointError, InputError
from nqs.guard import check_time_limit
from nqs.io import (
    JsonlLogger,
    load_checkpoint_entries,
    load_checkpoint_metadata,
    require_finite,
)
from nqs.loop import RunEnv
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
    check_divisible,
    without_global_mesh,
)
from nqs.precision import DTYPES
from nqs.problems.realspace_defaults import FALLBACK_MOMENTUM, FALLBACK_OPTIMIZER
from nqs.realspace.mcmc import init_walkers
from nqs.realspace.system import RealSpaceSystem
from nqs.realspace.train import make_kfac_vmc
from nqs.sampling.walkers import MCMCState
from nqs.vmc import WalkerState, WalkerVMC, make_walker_vmc
from nqs.walker_driver import (
    Fallback,
    WalkerProblem,
    WalkerResult,
    WalkerSettings,
    run_walker_vmc,
    walker_chunk_size,
)

OPTIMIZERS = ("kfac", "adam", "sr")
OptimizerName = Literal["kfac", "adam", "sr"]

# Per optimizer: (learning rate, delay of lr / (1 + t / delay)).
DEFAULT_LR: dict[str, tuple[float, float]] = {
    "kfac": (0.05, 10000.0),  # FermiNet (Pfau et al. 2020)
    "adam": (1e-3, 1000.0),
    "sr": (0.05, 1000.0),
}


@dataclass(kw_only=True)
class RealSpaceResult(WalkerResult):
    """Outcome of a real-space run (Hartree): the walker run's, with the pretraining."""

    SUMMARY: ClassVar[tuple[str, ...]] = (
        "energy", "energy_error", "variance", "tau_corr", "acceptance", "reference_energy",
        "reference_source", "error_mha", "hf_energy", "n_parameters", "n_walkers", "steps",
        "steps_planned", "time_limit_s", "stopped_by_time_limit", "eval_steps",
        "pretrain_steps", "wall_time_s", "time_per_step_s", "dtype", "n_devices",
        "n_processes", "chunk_size", "peak_memory_bytes", "peak_memory_source", "optimizer",
        "momentum", "kfac_fallback")
    PLOT_TITLE: ClassVar[str] = "real-space VMC"

    pretrain_steps: int
    hf_energy: float | None = None

    @property
    def error_mha(self) -> float | None:
        """(E - E_reference) in mHa, or None without a reference."""
        if self.reference_energy is None:
            return None
        return (self.energy - self.reference_energy) * 1e3


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
    env = RunEnv.of(o.out_dir, echo, mesh, progress, make_out_dir=False)
    check_divisible(int(o.n_walkers), env.mesh, "the number of walkers")
    t_run = time.perf_counter()
    ckpt = env.checkpoint_path(o.resume)
    problem, chunk_size = _problem(atoms, o, env)
    env.make_out_dir()
    settings = WalkerSettings(int(o.n_steps), int(o.n_walkers), int(o.mcmc_steps),
                              int(o.burn_in_calls), int(o.eval_steps), int(o.checkpoint_every),
                              o.time_limit, chunk_size, bool(o.resume))
    extra = {"pretrain_steps": int(o.pretrain_steps), "reference_energy": o.reference_energy,
             "reference_source": o.reference_source}
    return run_walker_vmc(problem, settings, env, t_run, RealSpaceResult, extra, ckpt, callback)


def _problem(atoms: RealSpaceSystem, o: RealSpaceOptions, env: RunEnv
             ) -> tuple[WalkerProblem, int | None]:
    """The pure pieces of a run, all from the seed: the network and local energy of
    ``atoms``, the initial parameters and walkers, the keys, the VMC method (KFAC falling back
    to SPRING when asked), the pretraining hook and the checkpoints' metadata; and the chunk
    size."""
    init, apply, orbitals = make_network(
        atoms, o.network(), jnp.float32 if o.dtype == "float32" else jnp.float64)
    apply = with_dtype(apply, o.dtype)
    e_loc_fn = atoms.local_energy(apply, o.laplacian, folx_sparsity(o.network()))
    k_init, k_walk, k_pre, k_opt, k_burn, k_run, k_eval = jax.random.split(
        jax.random.PRNGKey(o.seed), 7
    )
    params = init(k_init)
    walkers = init_walkers(k_walk, atoms, o.n_walkers)
    chunk_size = walker_chunk_size(o.chunk_size, e_loc_fn, params, walkers, env.mesh)

    def build(name: OptimizerName, mu: float) -> WalkerVMC:
        return make_vmc_method(name, apply, e_loc_fn, o.learning_rate, o.lr_delay, o.mcmc_steps,
                               o.clip_scale, o.damping, o.norm_constraint, chunk_size, env.mesh,
                               mu)

    vmc, fallback, kfac_error = make_vmc_with_fallback(build, o.optimizer, o.momentum,
                                                      o.kfac_fallback)
    meta = {"seed": int(o.seed), "dtype": o.dtype, "n_steps_planned": int(o.n_steps),
            "fingerprint": o.fingerprint(atoms)}
    prepare = (_pretraining(atoms, o, k_pre, apply, orbitals, env.echo, chunk_size)
               if o.pretrain_steps > 0 else None)
    return WalkerProblem(apply, e_loc_fn, vmc, params, walkers, (k_pre, k_opt, k_burn, k_run,
                                                                 k_eval), meta, o.optimizer,
                         float(o.momentum), prepare, ("hf_energy",), fallback,
                         kfac_error), chunk_size


def _pretraining(atoms: RealSpaceSystem, o: RealSpaceOptions, k_pre: jax.Array,
                 apply: Callable[[Any, jax.Array], Any],
                 orbitals: Callable[[Any, jax.Array], list[jax.Array]] | None,
                 echo: Callable[[str], None], chunk_size: int | None = None
                 ) -> Callable[..., tuple[Any, jax.Array, dict]]:
    """The run's ``prepare`` hook: Hartree-Fock pretraining of the network's ``orbitals``
    (:func:`nqs.realspace.pretrain.pretrain`), its losses logged, ``hf_energy`` recorded."""

    def prepare(params: Any, walkers: jax.Array, logger: JsonlLogger | None
                ) -> tuple[Any, jax.Array, dict[str, Any]]:
        from nqs.realspace.pretrain import pretrain

        pre = pretrain(k_pre, params, atoms, orbitals, apply, walkers,
                       n_steps=o.pretrain_steps, basis=o.pretrain_basis,
                       learning_rate=o.pretrain_lr, mcmc_steps=o.mcmc_steps,
                       chunk_size=chunk_size)
        hf_energy = pre.hf.energy
        echo(f"pretrained {o.pretrain_steps} steps on HF/{o.pretrain_basis} (E_HF = "
             f"{hf_energy:.6f}): loss {pre.losses[0]:.3e} -> {pre.losses[-1]:.3e} "
             f"({pre.seconds:.1f} s)")
        if logger is not None:
            for i, loss in enumerate(pre.losses):
                logger.append({"phase": "pretrain", "pretrain_step": i, "loss": float(loss)})
        return pre.params, pre.walkers, {"hf_energy": hf_energy}

    return prepare


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
    template = {"state": WalkerState(init(jax.random.PRNGKey(0)), None, mcmc), "step": 0}
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
) -> WalkerVMC:
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
    return make_walker_vmc(
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


def make_vmc_with_fallback(build: Callable[[OptimizerName, float], WalkerVMC],
                           optimizer: OptimizerName, momentum: float, kfac_fallback: bool
                           ) -> tuple[WalkerVMC | None, Fallback | None, BaseException | None]:
    """``(vmc, fallback, error)``: the VMC method of ``optimizer`` built by ``build``; with
    ``kfac_fallback`` (KFAC only) SPRING to fall back to, and KFAC's error when it failed to
    build (then ``vmc`` is None)."""
    fallback = None
    if optimizer == "kfac" and kfac_fallback:
        fallback = Fallback(
            lambda: build(FALLBACK_OPTIMIZER, FALLBACK_MOMENTUM), FALLBACK_OPTIMIZER,
            FALLBACK_MOMENTUM,
            lambda reason: f"warning: KFAC failed ({reason}); continuing with SPRING "
            f"(--optimizer {FALLBACK_OPTIMIZER} --momentum {FALLBACK_MOMENTUM:g})")
    try:
        return build(optimizer, momentum), fallback, None
    except Exception as err:  # kfac-jax's import (or a jax it does not support)
        if fallback is None:
            raise
        return None, fallback, err
