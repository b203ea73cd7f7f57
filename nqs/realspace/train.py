"""Pure VMC steps for electrons in real space (FermiNet style).

The energy gradient is

    dE/dtheta = 2 mean_w[(E_clip(r_w) - mean E_clip) d log|psi(r_w)|/dtheta],

with local energies clipped to ``median +- clip_scale * mean|E_loc - median|`` (``clip_scale=5``,
as FermiNet) so rare spikes near nodes and coalescence points do not dominate. The loss is a
``jax.custom_jvp`` whose value is the unclipped mean energy and whose derivative is the formula
above; inside it ``log|psi|`` is registered with
``kfac_jax.register_normal_predictive_distribution`` so KFAC sees the Fisher of ``|psi|^2``.

Two kinds of step: :func:`make_optax_vmc` with an optimizer of :mod:`nqs.optim` (the object
the discrete engine applies: Adam, or minSR / SPRING from the walkers' Jacobian, all with
``lr / (1 + t / delay)``, :func:`nqs.optim.scheduled_optimizer`) and :func:`make_kfac_vmc`
(kfac-jax). The walkers are a :class:`nqs.sampling.walkers.WalkerSampler`. Shapes: walkers
``r [n_walkers, n_el, 3]`` in bohr; energies in Hartree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.ansatz import log_abs
from nqs.errors import InputError
from nqs.optim.optimizer import Optimizer
from nqs.optim.spring import lr_schedule
from nqs.parallel import Mesh, chunked_map, constrain_samples
from nqs.sampling.walkers import MCMCState, WalkerSampler

Params = Any
LogPsiFn = Callable[[Params, jax.Array], Any]
LocalEnergyFn = Callable[[Params, jax.Array], jax.Array]



def clip_local_energy(e_loc: jax.Array, clip_scale: float = 5.0) -> jax.Array:
    """Clip ``e_loc [n_walkers]`` to ``median +- clip_scale * mean|e_loc - median|``.

    ``clip_scale <= 0`` disables clipping.
    """
    if clip_scale <= 0:
        return e_loc
    median = jnp.median(e_loc)
    mad = jnp.mean(jnp.abs(e_loc - median))
    return jnp.clip(e_loc, median - clip_scale * mad, median + clip_scale * mad)


class EnergyAux(NamedTuple):
    """Auxiliary output of the energy loss.

    Attributes:
        local_energy: ``[n_walkers]`` unclipped local energies (Hartree).
        variance: scalar variance of the local energies (Hartree^2).
    """

    local_energy: jax.Array
    variance: jax.Array


def make_energy_loss(
    log_abs_psi_fn: LogPsiFn,
    local_energy_fn: LocalEnergyFn,
    clip_scale: float = 5.0,
    register_kfac: bool = False,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> Callable[[Params, jax.Array], tuple[jax.Array, EnergyAux]]:
    """Energy loss with the clipped VMC gradient.

    Args:
        log_abs_psi_fn: ``(params, r [n_el, 3]) -> log|psi|`` or ``(sign, log|psi|)``.
        local_energy_fn: ``(params, r [n_el, 3]) -> E_loc`` (Hartree).
        clip_scale: clipping width in mean absolute deviations (0 disables).
        register_kfac: register ``log|psi|`` as a normal predictive distribution for kfac-jax.
        chunk_size: evaluate local energies and per-walker log-derivatives this many walkers
            per device at a time (bounds memory; None: all at once). With KFAC only the local
            energies are chunked: kfac-jax finds its layers by tracing ``log|psi|`` and does not
            look inside the loop of a chunked map.
        mesh: devices the walkers are split over (None: no constraint).

    Returns:
        ``loss(params, r [n_walkers, n_el, 3]) -> (mean E_loc, EnergyAux)``; use it with
        ``jax.value_and_grad(loss, has_aux=True)``.
    """

    batch_log_abs = chunked_map(
        lambda p, x: log_abs(log_abs_psi_fn(p, x)), None if register_kfac else chunk_size, mesh
    )
    batch_e_loc = chunked_map(local_energy_fn, chunk_size, mesh)

    @jax.custom_jvp
    def loss(params: Params, r: jax.Array) -> tuple[jax.Array, EnergyAux]:
        r = constrain_samples(r, mesh)
        # float64 accumulation whatever the network's dtype
        e_loc = batch_e_loc(params, r).astype(jnp.float64)
        energy = jnp.mean(e_loc)
        return energy, EnergyAux(e_loc, jnp.mean((e_loc - energy) ** 2))

    @loss.defjvp
    def loss_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]):
        params, r = primals
        energy, aux = loss(params, r)
        e_clip = clip_local_energy(aux.local_energy, clip_scale)
        diff = e_clip - jnp.mean(e_clip)
        log_psi, log_psi_tangent = jax.jvp(
            lambda p: batch_log_abs(p, constrain_samples(r, mesh)), (params,), (tangents[0],)
        )
        if register_kfac:
            import kfac_jax  # lazy

            kfac_jax.register_normal_predictive_distribution(log_psi[:, None])
        n = diff.shape[0]
        tangent_energy = 2.0 * jnp.dot(log_psi_tangent.astype(diff.dtype), diff) / n
        aux_tangent = jax.tree_util.tree_map(jnp.zeros_like, aux)
        return (energy, aux), (tangent_energy, aux_tangent)

    return loss


class VMCState(NamedTuple):
    """State of a real-space VMC run.

    Attributes:
        params: network parameters.
        opt_state: optimiser state (optax or kfac-jax).
        mcmc: walkers (:class:`nqs.sampling.walkers.MCMCState`).
    """

    params: Params
    opt_state: Any
    mcmc: MCMCState


class VMC(NamedTuple):
    """A VMC method: ``init(key, params, walkers, width=0.2) -> VMCState`` and
    ``step(key, state) -> (state, stats)`` with ``stats`` a dict of scalars: ``energy``
    (mean unclipped E_loc, Hartree), ``variance``, ``acceptance``, ``width``."""

    init: Callable[..., VMCState]
    step: Callable[[jax.Array, VMCState], tuple[VMCState, dict[str, jax.Array]]]


def make_optax_vmc(
    log_abs_psi_fn: LogPsiFn,
    local_energy_fn: LocalEnergyFn,
    optimizer: Optimizer | optax.GradientTransformation,
    mcmc_steps: int = 10,
    clip_scale: float = 5.0,
    target_acceptance: float = 0.5,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> VMC:
    """VMC with an optimizer of :mod:`nqs.optim` (a bare optax transformation: one without the
    Jacobian), e.g. :func:`nqs.optim.scheduled_optimizer` (Adam, minSR, SPRING); ``step`` is
    jitted.

    Each step: the walkers' :meth:`~nqs.sampling.walkers.WalkerSampler.sample` at the current
    parameters (``mcmc_steps`` moves, width adapted afterwards), then
    :meth:`nqs.optim.Optimizer.apply` of the clipped energy gradient at the new walkers; with
    ``optimizer.needs_jacobian`` also the walkers' dense Jacobian ``J [W, P]`` and residuals
    (:func:`walker_jacobian`). ``chunk_size`` / ``mesh``: as :func:`make_energy_loss` (the
    walkers are split over the devices of ``mesh``; the sums over walkers are reduced across
    them by XLA).
    """
    if not isinstance(optimizer, Optimizer):
        optimizer = Optimizer(optimizer)
    loss = make_energy_loss(log_abs_psi_fn, local_energy_fn, clip_scale, chunk_size=chunk_size,
                            mesh=mesh)
    batch_e_loc = chunked_map(local_energy_fn, chunk_size, mesh)
    sampler = WalkerSampler(mcmc_steps, target_acceptance, chunk_size=chunk_size, mesh=mesh)

    def init(key: jax.Array, params: Params, walkers: jax.Array, width: float = 0.2) -> VMCState:
        del key
        return VMCState(params, optimizer.transformation.init(params),
                        sampler.init_at(log_abs_psi_fn, params, walkers, width))

    @jax.jit
    def step(key: jax.Array, state: VMCState) -> tuple[VMCState, dict[str, jax.Array]]:
        params = state.params
        samples, mc, info = sampler.sample(key, log_abs_psi_fn, params, state.mcmc)
        if optimizer.needs_jacobian:
            e_loc = batch_e_loc(params, samples.x).astype(jnp.float64)
            energy = jnp.mean(e_loc)
            variance = jnp.mean((e_loc - energy) ** 2)
            grads, jac, eps = walker_jacobian(log_abs_psi_fn, params, samples.x, e_loc,
                                              clip_scale, chunk_size, mesh)
            extra = {"jacobian": jac, "residuals": eps}
        else:
            (energy, aux), grads = jax.value_and_grad(loss, has_aux=True)(params, samples.x)
            variance, extra = aux.variance, {}
        params, opt_state = optimizer.apply(grads, state.opt_state, params, **extra)
        stats = {"energy": energy, "variance": variance, "acceptance": info["acceptance"],
                 "width": mc.width}
        return VMCState(params, opt_state, mc), stats

    return VMC(init, step)


def walker_jacobian(log_abs_psi_fn: LogPsiFn, params: Params, r: jax.Array, e_loc: jax.Array,
                    clip_scale: float = 5.0, chunk_size: int | None = None,
                    mesh: Mesh | None = None) -> tuple[Params, jax.Array, jax.Array]:
    """``(grad, J, eps)`` of walkers ``r [W, n_el, 3]`` with local energies ``e_loc [W]``:

        J   [W, P] = (d log|psi(r_w)|/d theta - mean_w) / sqrt(W)       (float64, flat)
        eps [W]    = 2 (E_clip(r_w) - mean E_clip) / sqrt(W)

    and the clipped energy gradient ``J^T eps`` shaped like ``params``: what SR, minSR and
    SPRING need (:class:`nqs.optim.Optimizer` with ``needs_jacobian``). Dense: for networks
    of up to a few ten thousand parameters. ``chunk_size``: Jacobian rows per device at a time.
    """
    e_clip = clip_local_energy(e_loc, clip_scale)
    n = e_loc.shape[0]
    flat, unravel = ravel_pytree(params)

    def log_abs_flat(p_flat: jax.Array, x: jax.Array) -> jax.Array:
        return log_abs(log_abs_psi_fn(unravel(p_flat), x))

    jac = chunked_map(jax.grad(log_abs_flat), chunk_size, mesh)(flat, r)  # [W, P]
    # float64 reductions (J J^T, J^T eps) whatever the network's dtype
    jac = jac.astype(jnp.float64)
    jac = (jac - jnp.mean(jac, axis=0)) / jnp.sqrt(n)
    eps = 2.0 * (e_clip - jnp.mean(e_clip)) / jnp.sqrt(n)
    return unravel(jac.T @ eps), jac, eps


def _import_kfac() -> Any:
    """Import kfac_jax, patching one jax>=0.7 incompatibility of kfac-jax 0.0.8 at runtime.

    kfac-jax 0.0.8 unpacks ``primitive.get_bind_params(params)`` as ``(subfuns, params)``; newer
    jax returns only the params (with any ``subfuns`` inside them). The patch accepts both.
    """
    major, minor = (int(x) for x in jax.__version__.split(".")[:2])
    if (major, minor) >= (0, 11):
        # jax 0.11 removed jax.core names and merged ClosedJaxpr into Jaxpr; kfac-jax 0.0.8 (the
        # newest release) uses both
        raise InputError(f"KFAC needs jax < 0.11 (kfac-jax 0.0.8); this is jax {jax.__version__}: "
                         "use --optimizer sr (with --momentum 0.9: SPRING) or adam")
    import kfac_jax
    from kfac_jax._src import tag_graph_matcher as tgm

    if getattr(tgm.eval_jaxpr_eqn, "_nqs_compat", False):
        return kfac_jax

    def eval_jaxpr_eqn(eqn: Any, in_values: list[Any]) -> list[Any]:
        bind = eqn.primitive.get_bind_params(eqn.params)
        if isinstance(bind, tuple):
            subfuns, bind = bind
        else:
            subfuns = ()
        with jax.extend.source_info_util.user_context(eqn.source_info.traceback):
            output = eqn.primitive.bind(*subfuns, *in_values, **bind)
        return output if isinstance(output, list) else [output]

    eval_jaxpr_eqn._nqs_compat = True  # type: ignore[attr-defined]
    tgm.eval_jaxpr_eqn = eval_jaxpr_eqn
    return kfac_jax


def make_kfac_vmc(
    log_abs_psi_fn: LogPsiFn,
    local_energy_fn: LocalEnergyFn,
    learning_rate: float = 0.05,
    delay: float = 10000.0,
    damping: float = 1e-3,
    norm_constraint: float = 1e-3,
    curvature_ema: float = 0.95,
    mcmc_steps: int = 10,
    clip_scale: float = 5.0,
    target_acceptance: float = 0.5,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> VMC:
    """VMC with KFAC (kfac-jax), FermiNet's defaults: ``lr / (1 + t / delay)``, constant damping,
    no momentum, norm constraint, Fisher from ``register_normal_predictive_distribution`` on
    ``log|psi|`` (layers registered automatically by kfac-jax's graph matcher).

    Several devices: kfac-jax's own multi-device mode (``multi_device=True``) is built on
    ``pmap`` with a named axis; here it stays off (``multi_device=False``) and the walkers are
    instead a sharded array in kfac-jax's jitted step, so the curvature blocks, like the
    gradient, are sums over the global batch that XLA reduces across devices. ``chunk_size``
    chunks the local energies only (see :func:`make_energy_loss`).
    """
    kfac_jax = _import_kfac()  # lazy

    # No sharding constraints inside the loss: kfac-jax's graph matcher traces it to find the
    # layers and does not expect them; the walkers arrive sharded and XLA propagates that.
    loss = make_energy_loss(log_abs_psi_fn, local_energy_fn, clip_scale, register_kfac=True,
                            chunk_size=chunk_size, mesh=None)
    sampler = WalkerSampler(mcmc_steps, target_acceptance, chunk_size=chunk_size, mesh=mesh)
    optimizer = kfac_jax.Optimizer(
        value_and_grad_func=jax.value_and_grad(loss, has_aux=True),
        l2_reg=0.0,
        norm_constraint=norm_constraint,
        value_func_has_aux=True,
        value_func_has_rng=False,
        learning_rate_schedule=lr_schedule(learning_rate, delay),
        curvature_ema=curvature_ema,
        inverse_update_period=1,
        min_damping=1e-4,
        num_burnin_steps=0,
        register_only_generic=False,
        estimation_mode="fisher_exact",
        multi_device=False,
        include_norms_in_stats=True,
    )
    mom = jnp.asarray(0.0)
    damp = jnp.asarray(damping)

    @jax.jit
    def sample(key: jax.Array, params: Params, mc: MCMCState) -> tuple[MCMCState, jax.Array]:
        _, mc, info = sampler.sample(key, log_abs_psi_fn, params, mc)
        return mc, info["acceptance"]

    def init(key: jax.Array, params: Params, walkers: jax.Array, width: float = 0.2) -> VMCState:
        mc = sampler.init_at(log_abs_psi_fn, params, walkers, width)
        return VMCState(params, optimizer.init(params, key, mc.r), mc)

    def step(key: jax.Array, state: VMCState) -> tuple[VMCState, dict[str, jax.Array]]:
        k1, k2 = jax.random.split(key)
        mc, acc = sample(k1, state.params, state.mcmc)
        params, opt_state, kstats = optimizer.step(
            state.params, state.opt_state, k2, batch=mc.r, momentum=mom, damping=damp
        )
        aux = kstats["aux"]
        stats = {
            "energy": kstats["loss"],
            "variance": aux.variance,
            "acceptance": acc,
            "width": mc.width,
        }
        return VMCState(params, opt_state, mc), stats

    return VMC(init, step)
