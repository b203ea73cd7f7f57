"""The pure VMC step: sample, local energies, statistics, gradient, optimizer update.

    x ~ |psi_theta|^2                      (sampler; exact enumeration gives weights instead)
    E_loc(x) = (H psi)(x) / psi(x)
    g = 2 Re < (O - <O>)^* (E_loc - <E_loc>) >,   O = d log psi / d theta (real parameters)
    theta <- theta + optimizer(g, J, eps)

Everything here is a pure function of a :class:`VMCState`; the driver (``nqs.driver``) is the
impure shell around it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz, JacobianStructure, Params, log_abs
from nqs.local_energy import make_batch_local_energy, make_local_energy
from nqs.operator import DiscreteOperator
from nqs.optim.flat import is_complex_tree, real_flat
from nqs.optim.jacobian import (  # noqa: F401  (centred_jacobian_rows, sr_jacobian: re-exported)
    centred_jacobian_rows,
    holomorphic_jacobian,
    split_jacobian,
    sr_jacobian,
    structured_jacobian,
    transpose_dot,
)
from nqs.optim.optimizer import Optimizer
from nqs.parallel import Mesh, chunked_map, constrain_samples
from nqs.sampling.base import UNIQUE_DRAWS, Sampler, Samples
from nqs.sampling.walkers import MCMCState, WalkerSampler
from nqs.stats import Stats, statistics, unique_statistics


class VMCState(NamedTuple):
    """Everything a run needs to continue exactly: a checkpoint holds one of these."""

    params: Params
    opt_state: Any
    sampler_state: Any
    key: jax.Array
    step: jax.Array


class StepInfo(NamedTuple):
    """Per-step statistics (scalars). ``energy`` is the real part of <E_loc>."""

    energy: jax.Array
    energy_imag: jax.Array
    energy_error: jax.Array
    variance: jax.Array
    tau_corr: jax.Array
    r_hat: jax.Array
    acceptance: jax.Array
    grad_norm: jax.Array
    accepted: jax.Array  # False when the step was rejected as non-finite
    # samplers of distinct configurations (autoregressive): distinct determinants and draws
    n_unique: Any = None
    n_draws: Any = None


class Estimate(NamedTuple):
    """Energy statistics and the gradient ingredients for one set of samples."""

    stats: Any
    grad: jax.Array  # [P] real energy gradient in the real flat view
    jacobian: Any  # [2n, P] scaled, centred; HolomorphicJacobian / StructuredJacobian
    residuals: jax.Array | None


def batched(fn: Callable, chunk_size: int | None, mesh: Mesh | None = None) -> Callable:
    """vmap ``fn(params, x)`` over x [n, ...], in chunks of ``chunk_size`` rows per device to
    bound memory (:func:`nqs.parallel.chunked_map`; ``mesh``: the devices the rows are split
    over)."""
    return chunked_map(fn, chunk_size, mesh)


def per_sample_functions(
    ansatz: Ansatz, operator: DiscreteOperator, needs_jacobian: bool
) -> list[Callable[[Params, jax.Array], Any]]:
    """The per-sample functions a step maps over the samples, ``fn(params, x [n_sites])``:
    the local energy and the log-derivative row (for memory estimates,
    :func:`nqs.parallel.bytes_per_sample`)."""

    def grad_row(params: Params, x: jax.Array) -> jax.Array:
        flat, unflatten = real_flat(params)

        def re_im(u: jax.Array) -> jax.Array:
            lp = ansatz.log_psi(unflatten(u), x)
            return jnp.stack([jnp.real(lp), jnp.imag(lp)])

        return jax.jacrev(re_im)(flat) if needs_jacobian else jax.grad(
            lambda u: jnp.real(ansatz.log_psi(unflatten(u), x)))(flat)

    return [make_local_energy(operator, ansatz), grad_row]


def clip_local_energy(e_loc: jax.Array, clip_scale: float = 5.0) -> jax.Array:
    """Clip ``e_loc [n]`` to ``median +- clip_scale * mean|e_loc - median|`` (FermiNet's
    clipping, unweighted; a complex ``e_loc`` has its real part clipped). ``clip_scale <= 0``
    disables clipping."""
    if clip_scale <= 0:
        return e_loc
    if jnp.iscomplexobj(e_loc):
        return clip_local_energy(e_loc.real, clip_scale) + 1j * e_loc.imag
    median = jnp.median(e_loc)
    mad = jnp.mean(jnp.abs(e_loc - median))
    return jnp.clip(e_loc, median - clip_scale * mad, median + clip_scale * mad)


def make_estimator(
    ansatz: Ansatz,
    operator: DiscreteOperator,
    *,
    needs_jacobian: bool,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> Callable[..., Estimate]:
    """``estimate(params, samples, inverse=None, draw_weights=None, e_loc=None) -> Estimate``
    for the energy <H> of ``operator`` (:func:`make_energy_estimator` with the ansatz's
    log psi, holomorphy and factored Jacobian, and :func:`nqs.local_energy.make_local_energy`).
    """
    return make_energy_estimator(
        ansatz.log_psi, make_local_energy(operator, ansatz), needs_jacobian=needs_jacobian,
        real=ansatz.real_log_psi, holomorphic=ansatz.holomorphic,
        structure=ansatz.jacobian_structure, amplitude_phase=ansatz.amplitude_phase,
        chunk_size=chunk_size, mesh=mesh,
        batch_local_energy=make_batch_local_energy(operator, ansatz, chunk_size, mesh))


def make_energy_estimator(
    log_psi: Callable[[Params, jax.Array], jax.Array],
    local_energy: Callable[[Params, jax.Array], jax.Array],
    *,
    needs_jacobian: bool,
    real: bool = False,
    holomorphic: bool = False,
    structure: JacobianStructure | None = None,
    amplitude_phase: tuple[str, str] | None = None,
    clip_scale: float = 0.0,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    batch_local_energy: Callable[[Params, jax.Array], jax.Array] | None = None,
) -> Callable[..., Estimate]:
    """``estimate(params, samples, inverse=None, draw_weights=None, e_loc=None) -> Estimate``
    for the energy, every engine's estimator (spins, molecules, electrons in real space).

    ``log_psi(params, x)`` and ``local_energy(params, x)`` are per sample. ``real``: log psi
    is real (log|psi| of a real wavefunction, real parameters): the Jacobian then has one row
    per sample, ``[n, P]``, instead of the real view's ``[2n, P]``. ``holomorphic`` /
    ``structure`` / ``amplitude_phase``: see :class:`nqs.ansatz.Ansatz`. ``clip_scale > 0``:
    the gradient (and the SR residuals) use local energies clipped by
    :func:`clip_local_energy`, centred on their own weighted mean; the statistics keep the
    unclipped ones.

    ``e_loc`` [n] (optional): the local energies of ``samples.x``, computed by the caller
    (:func:`nqs.packed_local_energy.make_packed_local_energy` in the host-level molecular
    step); otherwise they are computed here, by ``batch_local_energy(params, xs [n, ...])``
    when given (:func:`nqs.local_energy.make_batch_local_energy`), else per sample.

    With ``inverse`` [n_draws], ``samples`` holds the distinct configurations of a Markov-chain
    draw with weights count/n_draws, and ``inverse`` maps each draw to its distinct
    configuration: local energies and log-derivatives are evaluated once per distinct
    configuration, while the statistics (error bar, autocorrelation, R-hat) see every draw
    (with ``draw_weights`` [n_draws] when the draws carry importance weights; the distinct
    configurations then carry the summed weights of their draws).

    With ``mesh``, the samples (rows) are split over its devices; the sums over samples become
    local sums plus an all-reduce (XLA's SPMD partitioner), so the result is the same as on one
    device up to the order of floating-point additions.
    """
    if batch_local_energy is None:
        batch_local_energy = batched(local_energy, chunk_size, mesh)

    def estimate(params: Params, samples: Samples, inverse: jax.Array | None = None,
                 draw_weights: jax.Array | None = None,
                 e_loc: jax.Array | None = None) -> Estimate:
        samples = samples._replace(
            x=constrain_samples(samples.x, mesh), weights=constrain_samples(samples.weights, mesh)
        )
        if e_loc is None:
            e_loc = batch_local_energy(params, samples.x)
        else:  # computed outside (the packed host-level path); a constant for the gradient
            e_loc = jax.lax.stop_gradient(constrain_samples(e_loc, mesh))
        # float64 accumulation whatever the network's dtype
        e_loc = e_loc.astype(jnp.promote_types(e_loc.dtype, jnp.float64))
        stats = _energy_statistics(e_loc, samples, inverse, draw_weights)
        centred = centred_energies(e_loc, samples.weights, stats.mean, clip_scale)
        grad, jacobian, residuals = _energy_gradient(
            log_psi, params, samples, centred, needs_jacobian=needs_jacobian, real=real,
            holomorphic=holomorphic, structure=structure, chunk_size=chunk_size, mesh=mesh,
            amplitude_phase=amplitude_phase)
        return Estimate(stats, grad, jacobian, residuals)

    return estimate


def _energy_statistics(e_loc: jax.Array, samples: Samples, inverse: jax.Array | None,
                       draw_weights: jax.Array | None) -> Stats:
    """Statistics of the local energies ``e_loc [n]`` of ``samples`` (every draw when the
    samples are distinct configurations with an ``inverse`` map, see
    :func:`make_energy_estimator`)."""
    if samples.n_chains == UNIQUE_DRAWS:  # independent exact draws with counts
        return unique_statistics(e_loc, samples.weights, samples.n_draws)
    if inverse is None:
        return statistics(e_loc, samples.weights, samples.n_chains)
    n_draws = inverse.shape[0]
    if draw_weights is None:
        draw_weights = jnp.full(n_draws, 1.0 / n_draws)
    return statistics(e_loc[inverse], draw_weights, samples.n_chains)


def centred_energies(e_loc: jax.Array, weights: jax.Array, mean: jax.Array,
                      clip_scale: float) -> jax.Array:
    """``E_loc - <E_loc>`` of the gradient (a constant for differentiation); with
    ``clip_scale > 0`` the clipped energies about their own weighted mean."""
    if clip_scale > 0:
        e_clip = clip_local_energy(e_loc, clip_scale)
        return jax.lax.stop_gradient(e_clip - jnp.sum(weights * e_clip))
    return jax.lax.stop_gradient(e_loc - mean)


def energy_surrogate(logs: jax.Array, weights: jax.Array, centred: jax.Array) -> jax.Array:
    """``2 Re sum_i w_i conj(c_i) log psi(x_i)``: its gradient in the parameters (through
    ``logs [n]``; ``centred [n]`` and ``weights [n]`` constant) is the energy gradient."""
    return 2.0 * jnp.sum(weights * jnp.real(jnp.conj(centred) * logs))


def _energy_gradient(log_psi: Callable[[Params, jax.Array], jax.Array], params: Params,
                     samples: Samples, centred: jax.Array, *, needs_jacobian: bool, real: bool,
                     holomorphic: bool, structure: JacobianStructure | None,
                     chunk_size: int | None, mesh: Mesh | None,
                     amplitude_phase: tuple[str, str] | None = None,
                     ) -> tuple[jax.Array, Any, jax.Array | None]:
    """``(grad [P], jacobian, residuals)`` in the real flat view: the gradient from one
    backward pass of :func:`energy_surrogate`, or (``needs_jacobian``) ``J^T eps`` with the
    Jacobian SR needs (factored, complex or dense, see :mod:`nqs.optim.jacobian`)."""
    w = samples.weights
    flat, unflatten = real_flat(params)

    def log_psi_flat(v: jax.Array, x: jax.Array) -> jax.Array:
        out = log_psi(unflatten(v), x)
        return jnp.real(out) if real else out  # a real log psi may come in a complex dtype

    if not needs_jacobian:
        def surrogate(v: jax.Array) -> jax.Array:
            return energy_surrogate(batched(log_psi_flat, chunk_size, mesh)(v, samples.x), w,
                                    centred)

        return jax.grad(surrogate)(flat), None, None

    real_params = not is_complex_tree(params)
    if structure is not None and (holomorphic or real_params):
        # factored O (the RBM): minSR builds its n x n kernel without the dense Jacobian
        jacobian = structured_jacobian(structure, params, samples.x, w, real_params,
                                       chunk_size, mesh)
    elif holomorphic:  # complex O [n, P_c]: half the size of the real view
        jacobian = holomorphic_jacobian(log_psi, params, samples.x, w, chunk_size, mesh)
    elif amplitude_phase is not None and real_params and not real:
        # block-diagonal real view: the amplitude and phase blocks apart
        jacobian = split_jacobian(log_psi, params, amplitude_phase, samples.x, w, chunk_size,
                                  mesh)
    else:
        jacobian = sr_jacobian(log_psi_flat, flat, samples.x, w, chunk_size, mesh, real=real)
    scaled = jnp.sqrt(w) * centred
    # a real log psi has no imaginary rows: the imaginary part of E_loc has nothing to meet
    residuals = 2.0 * (jnp.real(scaled) if real else jnp.concatenate([scaled.real,
                                                                       scaled.imag]))
    return transpose_dot(jacobian, residuals), jacobian, residuals


def make_sampled_estimator(
    ansatz: Ansatz,
    operator: DiscreteOperator,
    sampler: Sampler,
    *,
    needs_jacobian: bool,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> Callable[[Params, Any, jax.Array], tuple[Estimate, Any, jax.Array]]:
    """``estimate(params, sampler_state, key) -> (Estimate, sampler_state, acceptance)``.

    Samples are drawn and local energies evaluated configuration by configuration, split over
    the devices of ``mesh``. (Exact samplers take :func:`_make_exact_step` instead.)
    """
    estimate = make_estimator(
        ansatz, operator, needs_jacobian=needs_jacobian, chunk_size=chunk_size, mesh=mesh
    )

    def estimate_sampled(params: Params, sampler_state: Any, key: jax.Array):
        samples, sampler_state, info = sampler.sample(key, ansatz, params, sampler_state)
        return estimate(params, samples), sampler_state, jnp.asarray(info["acceptance"], float)

    return estimate_sampled


def make_vmc(
    ansatz: Ansatz,
    operator: DiscreteOperator,
    sampler: Sampler,
    optimizer: Optimizer,
    chunk_size: int | None = None,
    dedupe: bool = False,
    mesh: Mesh | None = None,
    packed: bool = True,
    connected_rows: int = 0,
) -> tuple[Callable[[jax.Array], VMCState], Callable[[VMCState], tuple[VMCState, StepInfo]]]:
    """``(init(key) -> VMCState, step(state) -> (state, info))``.

    Without ``dedupe`` the step is pure: jit it. With ``dedupe=True`` (Monte Carlo samplers whose
    draws repeat, e.g. near-Hartree-Fock molecular states) the step is a host function around
    jitted pieces: the draws are reduced to distinct configurations with counts (padded to a
    bucket, :func:`unique_bucket`, so few shapes are compiled) and each is evaluated once.

    A step whose energy or gradient is not finite is rejected: parameters, optimizer state and
    sampler state stay at their last good values and ``info.accepted`` is False.

    ``mesh``: split the samples over these devices (see :func:`make_estimator`); the step is
    the same function for one device and many.

    ``packed`` (with ``dedupe`` on one device only): the local energies of the distinct
    configurations come from :func:`nqs.packed_local_energy.make_packed_local_energy` (only the
    nonzero connections of the whole batch, packed) instead of ``max_conn`` padded rows per
    sample; the same values to rounding. Ignored by the pure steps and on several devices.

    ``connected_rows`` K > 0 (samplers of distinct configurations with SR): the rows of SR are
    the distinct draws plus the K determinants H connects to them of largest first-order
    amplitude (:mod:`nqs.sampling.connected`), all weighted by their exact ``|psi|^2``
    (renormalized over the rows; the state must be normalized, as the autoregressive one
    is); the energy and its error bar stay those of the draws. The step then takes
    ``step(state, shift_scale)``, the factor on SR's diagonal shift
    (:class:`nqs.guard.Guard`'s adaptive shift).
    """
    tx = optimizer.transformation

    def init(key: jax.Array) -> VMCState:
        k_params, k_sampler, k_run = jax.random.split(key, 3)
        x0 = operator.hilbert.random_state(k_params, 1)[0]
        # jitted: one compilation instead of an eager dispatch (and compile) per flax op
        params = jax.jit(ansatz.init)(k_params, x0)
        sampler_state = sampler.init(k_sampler, ansatz, params)
        return VMCState(params, tx.init(params), sampler_state, k_run, jnp.asarray(0))

    finish = partial(_finish_step, optimizer)

    if getattr(sampler, "is_exact", False):
        return init, _make_exact_step(ansatz, operator, optimizer, chunk_size, finish, mesh)
    if getattr(sampler, "is_unique", False):
        return init, _make_unique_step(ansatz, operator, sampler, optimizer, chunk_size, finish,
                                       mesh, packed, connected_rows)
    if dedupe:
        return init, _make_deduplicated_step(
            ansatz, operator, sampler, optimizer, chunk_size, finish, mesh, packed
        )

    estimate = make_sampled_estimator(
        ansatz, operator, sampler, needs_jacobian=optimizer.needs_jacobian, chunk_size=chunk_size,
        mesh=mesh,
    )

    def step(state: VMCState) -> tuple[VMCState, StepInfo]:
        key, k_sample = jax.random.split(state.key)
        est, sampler_state, acceptance = estimate(state.params, state.sampler_state, k_sample)
        return finish(state, key, est, sampler_state, acceptance)

    return init, step


def apply_estimate(optimizer: Optimizer, est: Estimate, opt_state: Any, params: Params,
                   shift_scale: jax.Array | None = None) -> tuple[Params, Any]:
    """``(params, opt_state)`` after the optimizer's update of the estimate's gradient (and,
    when the optimizer needs them, its Jacobian and residuals): the update of every engine.
    ``shift_scale``: multiplies SR's diagonal shift (the guard's adaptive shift,
    :class:`nqs.guard.Guard`); None leaves it."""
    extra = ({"jacobian": est.jacobian, "residuals": est.residuals}
             if optimizer.needs_jacobian else {})
    if shift_scale is not None and optimizer.needs_jacobian:
        extra["shift_scale"] = shift_scale
    return optimizer.apply(real_flat(params)[1](est.grad), opt_state, params, **extra)


def _finish_step(optimizer: Optimizer, state: VMCState, key: jax.Array, est: Estimate,
                 sampler_state: Any, acceptance: jax.Array,
                 shift_scale: jax.Array | None = None) -> tuple[VMCState, StepInfo]:
    """The new state and the step's info: :func:`apply_estimate`, and the old state kept
    (``info.accepted`` False) when the energy, the gradient or the new parameters are not
    finite."""
    params, opt_state = apply_estimate(optimizer, est, state.opt_state, state.params,
                                       shift_scale)
    flat_new, _ = real_flat(params)
    ok = (
        jnp.isfinite(est.stats.mean).all()
        & jnp.all(jnp.isfinite(est.grad))
        & jnp.all(jnp.isfinite(flat_new))
    )

    def keep(new: Any, old: Any) -> Any:
        return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)

    new_state = VMCState(
        keep(params, state.params),
        keep(opt_state, state.opt_state),
        keep(sampler_state, state.sampler_state),
        key,
        state.step + 1,
    )
    mean = est.stats.mean
    step_info = StepInfo(
        energy=jnp.real(mean),
        energy_imag=jnp.imag(mean),
        energy_error=est.stats.error_of_mean,
        variance=est.stats.variance,
        tau_corr=est.stats.tau_corr,
        r_hat=est.stats.r_hat,
        acceptance=acceptance,
        grad_norm=jnp.linalg.norm(est.grad),
        accepted=ok,
    )
    return new_state, step_info


def _make_exact_step(ansatz, operator, optimizer, chunk_size, finish, mesh=None):
    """Host-level step for exact summation over the whole space (sparse H, ``nqs.exact``).

    The space and H are jit arguments rather than closure constants, so compiling does not
    fold tens of thousands of states into the program. With ``mesh`` the states (padded to a
    multiple of the device count with zero-weight copies), their log psi and Jacobian rows and
    the rows of H v are split over the devices (:func:`nqs.exact.exact_data`).
    """
    from nqs.exact import exact_data, exact_estimate_fn, sparse_hamiltonian

    data = exact_data(sparse_hamiltonian(operator), mesh)
    exact = exact_estimate_fn(ansatz, needs_jacobian=optimizer.needs_jacobian,
                              chunk_size=chunk_size, mesh=mesh,
                              metric_states=getattr(optimizer, "metric_states", None))

    @jax.jit
    def jitted(state: VMCState, data) -> tuple[VMCState, StepInfo]:
        key, _ = jax.random.split(state.key)
        est = exact(state.params, data)
        nan = jnp.asarray(jnp.nan)
        stats = Stats(est.energy, jnp.asarray(0.0), est.variance, jnp.asarray(0.0), nan)
        out = Estimate(stats, est.grad, est.jacobian, est.residuals)
        return finish(state, key, out, state.sampler_state, jnp.asarray(1.0))

    def step(state: VMCState) -> tuple[VMCState, StepInfo]:
        return jitted(state, data)

    step.is_host_step = True
    return step


def packed_applies(packed: bool, mesh: Mesh | None) -> bool:
    """Whether a host-level molecular step or evaluation takes the packed local energies.

    Only on one device (hence one process): the packed pass runs its jitted programs on the
    default device over the whole batch, with one row count for all samples, while on a mesh
    the per-sample path splits the rows over the devices (and several processes would each
    need the same count); there the per-sample path is kept.
    """
    from nqs.parallel import n_shards

    return bool(packed) and n_shards(mesh) == 1


def distinct_draws(x: np.ndarray, w_draws: np.ndarray, hilbert: Any,
                   n_dev: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Distinct configurations of a draw: ``(x_unique [bucket, n_sites], w_unique [bucket],
    inverse [n_draws] int32, n_unique)``.

    ``x`` [n_draws, n_sites] and ``w_draws`` [n_draws] are host arrays. ``w_unique`` holds the
    summed weights of each configuration's draws (counts / n_draws for uniform weights);
    ``x_unique[inverse] == x``. The distinct rows are padded (with copies of the first, weight
    0) to :func:`unique_bucket` (16, 24, 32, 48, ..., at most ``n_draws``, a multiple of
    ``n_dev``), so that few shapes are compiled.
    """
    from nqs.exact import configuration_keys

    keys = configuration_keys(x, hilbert)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    n_unique = len(first)
    bucket = unique_bucket(n_unique, len(x), n_dev)
    x_unique = np.repeat(x[first[:1]], bucket, axis=0)
    x_unique[:n_unique] = x[first]
    w_unique = np.zeros(bucket)
    w_unique[:n_unique] = np.bincount(inverse.ravel(), weights=w_draws, minlength=n_unique)
    return x_unique, w_unique, inverse.reshape(-1).astype(np.int32), n_unique


def _make_deduplicated_step(ansatz, operator, sampler, optimizer, chunk_size, finish, mesh,
                            packed=False):
    """Host-level step: jitted sampling, host de-duplication, jitted estimate and update.

    The draws are gathered to the host (every process gets all of them and finds the same
    distinct set); the distinct configurations are padded to a bucket that splits evenly over
    the devices and sharded again for the estimate. With ``packed`` (one device, see
    :func:`packed_applies`) their local energies are computed by the packed batch path
    between the two jitted programs.
    """
    from nqs.parallel import gather, n_shards, put, sample_sharding

    estimate = make_estimator(
        ansatz, operator, needs_jacobian=optimizer.needs_jacobian, chunk_size=chunk_size,
        mesh=mesh,
    )
    n_dev = n_shards(mesh)
    n_chains = int(sampler.n_chains)
    # chunk_size (samples per device) does not apply to the packed pass: it holds chunk_rows
    # connected rows at a time, a bound of its own
    packed_local_energy = _packed_or_none(packed, mesh, operator, ansatz)

    draw = _make_draw(sampler, ansatz)

    @jax.jit
    def estimate_and_finish(state, key, x_unique, w_unique, inverse, w_draws, sampler_state,
                            acceptance, e_unique=None):
        est = estimate(state.params, Samples(x_unique, w_unique, n_chains), inverse, w_draws,
                       e_unique)
        return finish(state, key, est, sampler_state, acceptance)

    def step(state: VMCState) -> tuple[VMCState, StepInfo]:
        key, x, w_draws, _, sampler_state, info = draw(state)
        acceptance = jnp.asarray(info["acceptance"], float)
        x = np.asarray(gather(x))
        w_draws = np.asarray(gather(w_draws), dtype=np.float64)
        x_unique, w_unique, inverse, n_unique = distinct_draws(x, w_draws, operator.hilbert,
                                                               n_dev)
        e_unique = None
        if packed_local_energy is not None:
            # padding rows (weight 0) get no connections and E_loc = 0: they add nothing
            e_unique = packed_local_energy(state.params, x_unique, n_unique)
        if mesh is not None:
            x_unique, w_unique, inverse, w_draws = put((x_unique, w_unique, inverse, w_draws),
                                                       (sample_sharding(mesh),) * 4)
        return estimate_and_finish(state, key, x_unique, w_unique, inverse,
                                   w_draws, sampler_state, acceptance, e_unique)

    step.is_host_step = True
    return step


def _make_draw(sampler: Sampler, ansatz: Ansatz) -> Callable:
    """Jitted ``draw(state) -> (key, x, weights, n_draws, sampler_state, info)`` of the
    host-level steps (the sampler's draw with the state's key, split for the next step)."""

    @jax.jit
    def draw(state: VMCState):
        key, k_sample = jax.random.split(state.key)
        samples, sampler_state, info = sampler.sample(k_sample, ansatz, state.params,
                                                      state.sampler_state)
        return key, samples.x, samples.weights, samples.n_draws, sampler_state, info

    return draw


def unique_bucket(n_unique: int, capacity: int, n_dev: int = 1) -> int:
    """Rows kept of a sampler buffer holding ``n_unique`` distinct configurations first: the
    smallest of 16, 24, 32, 48, ... (powers of two and 1.5 times them) that holds them, at most
    ``capacity``, rounded up to a multiple of ``n_dev`` (few compiled shapes, at most a third
    of the rows padding: SR's kernel costs the square of the rows)."""
    power = 1 << max(n_unique - 1, 0).bit_length()
    bucket = 3 * power // 4 if 3 * power // 4 >= n_unique else power
    bucket = min(max(16, bucket), capacity)
    return -(-bucket // n_dev) * n_dev


def _packed_or_none(packed: bool, mesh: Mesh | None, operator, ansatz):
    """The packed local-energy function when it applies (:func:`packed_applies`), else None."""
    if not packed_applies(packed, mesh):
        return None
    from nqs.packed_local_energy import default_chunk_rows, make_packed_local_energy

    return make_packed_local_energy(operator, ansatz, default_chunk_rows(ansatz))


def _make_unique_step(ansatz, operator, sampler, optimizer, chunk_size, finish, mesh,
                      packed=True, connected_rows=0):
    """Host-level step for samplers that return distinct configurations with counts
    (:class:`nqs.sampling.autoregressive.AutoregressiveSampler`).

    Jitted draw; the host keeps the first ``unique_bucket(n_unique)`` rows (the distinct
    configurations come first); their local energies come from the packed pass (one device) or
    per sample; jitted estimate and update with the sampler's weights (counts / n_draws, or
    importance weights of tempered draws with per-row ``n_draws``, cut like the rows). The distinct
    configurations are the rows of the SR Jacobian; with ``connected_rows`` (see
    :func:`make_vmc`) the determinants H connects to them join them, with exact weights.
    """
    from nqs.parallel import n_shards, put, sample_sharding

    estimate = make_estimator(
        ansatz, operator, needs_jacobian=optimizer.needs_jacobian, chunk_size=chunk_size,
        mesh=mesh,
    )
    n_dev = n_shards(mesh)
    packed_local_energy = _packed_or_none(packed, mesh, operator, ansatz)

    draw = _make_draw(sampler, ansatz)

    @jax.jit
    def estimate_and_finish(state, key, x, w, n_draws, sampler_state, e_unique=None,
                            shift_scale=None):
        samples = Samples(x, w, UNIQUE_DRAWS, n_draws)
        est = estimate(state.params, samples, e_loc=e_unique)
        return finish(state, key, est, sampler_state, jnp.asarray(1.0), shift_scale)

    rows_step = None
    if connected_rows and optimizer.needs_jacobian:
        rows_step = _make_connected_rows_step(ansatz, operator, estimate, finish, connected_rows,
                                              packed_local_energy, n_dev, mesh)

    def step(state: VMCState, shift_scale: float | None = None) -> tuple[VMCState, StepInfo]:
        key, x, w, n_draws, sampler_state, info = draw(state)
        n_unique = int(info["n_unique"])
        bucket = unique_bucket(n_unique, x.shape[0], n_dev)
        x, w, n_draws = x[:bucket], w[:bucket], _rows(n_draws, bucket)
        scale = None if shift_scale is None else jnp.asarray(shift_scale, jnp.float64)
        if rows_step is not None:
            new_state, step_info = rows_step(state, key, x, w, n_draws, n_unique,
                                             sampler_state, scale)
            return new_state, step_info._replace(n_unique=n_unique, n_draws=info["n_draws"])
        e_unique = None
        if packed_local_energy is not None:
            e_unique = packed_local_energy(state.params, x, n_unique)
        if mesh is not None:
            x, w = put((x, w), (sample_sharding(mesh),) * 2)
        new_state, step_info = estimate_and_finish(state, key, x, w, n_draws, sampler_state,
                                                   e_unique, scale)
        return new_state, step_info._replace(n_unique=n_unique, n_draws=info["n_draws"])

    step.is_host_step = True
    # rows beyond |psi|^2's reach (connected rows, tempered draws) need a small diagonal
    # shift, which the guard then adapts (Levenberg-Marquardt)
    step.takes_shift_scale = rows_step is not None or float(getattr(sampler, "power", 1.0)) < 1
    return step


def _rows(n_draws: jax.Array, bucket: int) -> jax.Array:
    """A sampler's ``n_draws`` for the first ``bucket`` rows: a scalar as it is, per-row draws
    (importance-weighted draws) cut like the rows."""
    return n_draws if jnp.ndim(n_draws) == 0 else n_draws[:bucket]


def _pad(n: int) -> int:
    """Rows kept for ``n``: a power of two up to 128, then a multiple of 128 (few compiled
    shapes; SR's kernel grows as the square of the rows, so no power-of-two padding there)."""
    if n <= 128:
        return max(16, 1 << max(n - 1, 0).bit_length())
    return -(-n // 128) * 128


def _make_connected_rows_step(ansatz, operator, estimate, finish, n_connected,
                              packed_local_energy, n_dev, mesh):
    """``rows_step(state, key, x, w, n_draws, n_unique, sampler_state, shift_scale)``: the
    unique step's estimate and update with the draws' connected determinants as extra rows
    of SR (:func:`make_vmc`'s ``connected_rows``)."""
    from nqs.parallel import put, sample_sharding
    from nqs.sampling.connected import make_connected_rows, pad_rows

    connected = make_connected_rows(operator, n_connected)
    log_psi_rows = jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))
    local_energies = jax.jit(batched(make_local_energy(operator, ansatz), None, None))

    @jax.jit
    def draw_statistics(e_loc, w, n_draws):
        return unique_statistics(e_loc.astype(jnp.promote_types(e_loc.dtype, jnp.float64)), w,
                                 n_draws)

    @jax.jit
    def estimate_and_finish(state, key, x, w, e_loc, stats, sampler_state, shift_scale):
        est = estimate(state.params, Samples(x, w, 0), e_loc=e_loc)
        return finish(state, key, est._replace(stats=stats), sampler_state, jnp.asarray(1.0),
                      shift_scale)

    def energies(params, x, n_valid):
        if packed_local_energy is not None:
            return packed_local_energy(params, x, n_valid)
        return local_energies(params, jnp.asarray(x))

    def rows_step(state, key, x, w, n_draws, n_unique, sampler_state, shift_scale):
        # every jitted map sees a bucketed shape (the draws' bucket, _pad sizes): no
        # recompilation as the number of distinct draws changes from step to step
        e_draws = energies(state.params, x, n_unique)
        stats = draw_statistics(e_draws, w, n_draws)
        x_draws = np.asarray(x[:n_unique])
        log_draws = np.asarray(log_psi_rows(state.params, x))[:n_unique]
        y = connected(x_draws, log_draws, float(np.real(stats.mean))).astype(x_draws.dtype)
        n_rows = n_unique + len(y)
        e_rows, log_rows = [np.asarray(e_draws[:n_unique])], [log_draws]
        if len(y):  # the draws' local energies and amplitudes are known: only the new rows'
            y_bucket = jnp.asarray(pad_rows(y, _pad(len(y))))
            e_rows.append(np.asarray(energies(state.params, y_bucket, len(y)))[: len(y)])
            log_rows.append(np.asarray(log_psi_rows(state.params, y_bucket))[: len(y)])
        bucket = -(-_pad(n_rows) // n_dev) * n_dev
        rows = jnp.asarray(pad_rows(np.concatenate([x_draws, y]), bucket))
        e_rows = jnp.asarray(pad_rows(np.concatenate(e_rows), bucket))
        log_p = 2.0 * np.real(np.concatenate(log_rows))
        p = np.exp(log_p - log_p.max())
        w_rows = jnp.asarray(pad_rows(p / p.sum(), bucket) * (np.arange(bucket) < n_rows))
        if mesh is not None:
            rows, w_rows, e_rows = put((rows, w_rows, e_rows), (sample_sharding(mesh),) * 3)
        return estimate_and_finish(state, key, rows, w_rows, e_rows, stats, sampler_state,
                                   shift_scale)

    return rows_step


def make_energy_evaluator(
    ansatz: Ansatz,
    operator: DiscreteOperator,
    sampler: Sampler,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    packed: bool = False,
) -> Callable[[Params, Any, jax.Array], tuple[Any, Any, jax.Array]]:
    """``evaluate(params, sampler_state, key) -> (stats, sampler_state, e_loc [n])``.

    Fixed-parameter energy with fresh samples (the final estimate of a run); for an exact
    sampler, the exact energy (e_loc is then empty).

    ``packed`` (molecules; Monte Carlo samplers on one device, :func:`packed_applies`): a
    host-level evaluator that finds the distinct configurations of the draw and computes their
    local energies once each with :func:`nqs.packed_local_energy.make_packed_local_energy`
    (the same values to rounding; not traceable, so the caller must not jit it:
    ``evaluate.is_host_step``). Otherwise a pure function (jit it).
    """
    if getattr(sampler, "is_exact", False):
        from nqs.exact import exact_data, exact_energy_fn, sparse_hamiltonian

        data = exact_data(sparse_hamiltonian(operator), mesh)  # states split over the mesh
        exact_energy = exact_energy_fn(ansatz, chunk_size, mesh)

        @jax.jit
        def jitted(params: Params, data) -> tuple[Any, jax.Array]:
            e, var = exact_energy(params, data)
            stats = Stats(e, jnp.asarray(0.0), var, jnp.asarray(0.0), jnp.asarray(jnp.nan))
            return stats, jnp.zeros((0,))

        # jitted here with the space as an argument; the caller must not wrap it in jit again
        def evaluate_exact(params: Params, sampler_state: Any, key: jax.Array):
            del key
            stats, e_loc = jitted(params, data)
            return stats, sampler_state, e_loc

        evaluate_exact.is_host_step = True
        return evaluate_exact

    if getattr(sampler, "is_unique", False):
        return _make_unique_evaluator(ansatz, operator, sampler, chunk_size, mesh, packed)
    if packed_applies(packed, mesh):
        return _make_packed_evaluator(ansatz, operator, sampler)

    local_energy = make_batch_local_energy(operator, ansatz, chunk_size, mesh)

    def evaluate(params: Params, sampler_state: Any, key: jax.Array):
        samples, sampler_state, _ = sampler.sample(key, ansatz, params, sampler_state)
        e_loc = local_energy(params, constrain_samples(samples.x, mesh))
        return statistics(e_loc, samples.weights, samples.n_chains), sampler_state, e_loc

    return evaluate


def _make_packed_evaluator(ansatz, operator, sampler):
    """Host-level final evaluation: jitted draw, host de-duplication, packed local energies of
    the distinct configurations, statistics over every draw (one device)."""
    from nqs.packed_local_energy import default_chunk_rows, make_packed_local_energy

    packed_local_energy = make_packed_local_energy(operator, ansatz, default_chunk_rows(ansatz))
    n_chains = int(sampler.n_chains)

    @jax.jit
    def draw(params: Params, sampler_state: Any, key: jax.Array):
        samples, sampler_state, _ = sampler.sample(key, ansatz, params, sampler_state)
        return samples.x, samples.weights, sampler_state

    @jax.jit
    def summarize(e_unique: jax.Array, inverse: jax.Array, weights: jax.Array):
        e_loc = e_unique[inverse]
        return statistics(e_loc, weights, n_chains), e_loc

    def evaluate_packed(params: Params, sampler_state: Any, key: jax.Array):
        x, weights, sampler_state = draw(params, sampler_state, key)
        x_host = np.asarray(x)
        x_unique, _, inverse, n_unique = distinct_draws(
            x_host, np.ones(len(x_host)), operator.hilbert)
        e_unique = packed_local_energy(params, x_unique, n_unique)
        stats, e_loc = summarize(e_unique, inverse, weights)
        return stats, sampler_state, e_loc

    evaluate_packed.is_host_step = True
    return evaluate_packed


def _make_unique_evaluator(ansatz, operator, sampler, chunk_size, mesh, packed):
    """Host-level final evaluation for samplers of distinct configurations with counts: jitted
    draw, local energies of the distinct configurations (packed on one device), statistics of
    independent draws (:func:`nqs.stats.unique_statistics`)."""
    packed_local_energy = _packed_or_none(packed, mesh, operator, ansatz)
    local_energy = jax.jit(batched(make_local_energy(operator, ansatz), chunk_size, mesh))

    @jax.jit
    def draw(params: Params, sampler_state: Any, key: jax.Array):
        samples, sampler_state, info = sampler.sample(key, ansatz, params, sampler_state)
        return samples.x, samples.weights, samples.n_draws, sampler_state, info["n_unique"]

    def evaluate_unique(params: Params, sampler_state: Any, key: jax.Array):
        x, w, n_draws, sampler_state, n_unique = draw(params, sampler_state, key)
        n_unique = int(n_unique)
        bucket = unique_bucket(n_unique, x.shape[0])
        x, w, n_draws = x[:bucket], w[:bucket], _rows(n_draws, bucket)
        if packed_local_energy is not None:
            e_loc = packed_local_energy(params, x, n_unique)
        else:
            e_loc = local_energy(params, x)
        return unique_statistics(e_loc, w, n_draws), sampler_state, e_loc[:n_unique]

    evaluate_unique.is_host_step = True
    return evaluate_unique


# Walkers in continuous space (electrons in real space): the state and step of a
# :class:`nqs.sampling.walkers.WalkerSampler` run, driven by :mod:`nqs.walker_driver`.


class WalkerState(NamedTuple):
    """State of a VMC run of walkers (a checkpoint holds one as ``"state"``).

    Attributes:
        params: network parameters.
        opt_state: optimiser state (optax or kfac-jax).
        mcmc: walkers (:class:`nqs.sampling.walkers.MCMCState`).
    """

    params: Params
    opt_state: Any
    mcmc: MCMCState


class WalkerVMC(NamedTuple):
    """A VMC method of walkers: ``init(key, params, walkers, width=0.2) -> WalkerState`` and
    ``step(key, state) -> (state, stats)`` with ``stats`` a dict of scalars: ``energy``
    (mean unclipped E_loc), ``variance``, ``acceptance``, ``width``. ``donates``: the step
    donates its input state (KFAC), so a state to go back to must be a copy."""

    init: Callable[..., WalkerState]
    step: Callable[[jax.Array, WalkerState], tuple[WalkerState, dict[str, jax.Array]]]
    donates: bool = False


def make_walker_vmc(
    log_abs_psi_fn: Callable[[Params, jax.Array], Any],
    local_energy_fn: Callable[[Params, jax.Array], jax.Array],
    optimizer: Optimizer | Any,
    mcmc_steps: int = 10,
    clip_scale: float = 5.0,
    target_acceptance: float = 0.5,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> WalkerVMC:
    """VMC of walkers with an optimizer of :mod:`nqs.optim` (a bare optax transformation: one
    without the Jacobian), e.g. :func:`nqs.optim.scheduled_optimizer` (Adam, minSR, SPRING);
    ``step`` is jitted. ``log_abs_psi_fn(params, r)``: log|psi| (or ``(sign, log|psi|)``) of
    one configuration; ``local_energy_fn(params, r)``: its local energy.

    Each step: the walkers' :meth:`~nqs.sampling.walkers.WalkerSampler.sample` at the current
    parameters (``mcmc_steps`` moves, width adapted afterwards), then
    :meth:`nqs.optim.Optimizer.apply` of the clipped energy gradient of the shared estimator
    (:func:`make_energy_estimator` with ``real=True``; with ``optimizer.needs_jacobian`` also
    the walkers' Jacobian ``J [W, P]`` and residuals). ``chunk_size``: walkers per device whose
    local energies and log-derivatives are evaluated at a time; ``mesh``: the devices the
    walkers are split over (the sums over walkers are reduced across them by XLA).
    """
    if not isinstance(optimizer, Optimizer):
        optimizer = Optimizer(optimizer)
    estimate = make_energy_estimator(
        lambda p, x: log_abs(log_abs_psi_fn(p, x)), local_energy_fn,
        needs_jacobian=optimizer.needs_jacobian, real=True, clip_scale=clip_scale,
        chunk_size=chunk_size, mesh=mesh)
    sampler = WalkerSampler(mcmc_steps, target_acceptance, chunk_size=chunk_size, mesh=mesh)

    def init(key: jax.Array, params: Params, walkers: jax.Array,
             width: float = 0.2) -> WalkerState:
        del key
        return WalkerState(params, optimizer.transformation.init(params),
                           sampler.init_at(log_abs_psi_fn, params, walkers, width))

    @jax.jit
    def step(key: jax.Array, state: WalkerState) -> tuple[WalkerState, dict[str, jax.Array]]:
        params = state.params
        samples, mc, info = sampler.sample(key, log_abs_psi_fn, params, state.mcmc)
        est = estimate(params, samples)
        params, opt_state = apply_estimate(optimizer, est, state.opt_state, params)
        stats = {"energy": est.stats.mean, "variance": est.stats.variance,
                 "acceptance": info["acceptance"], "width": mc.width}
        return WalkerState(params, opt_state, mc), stats

    return WalkerVMC(init, step)
