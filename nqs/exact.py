"""Exact summation over a whole (small) Hilbert space: energy and gradient without Monte Carlo noise.

With all configurations x_i enumerated and H as a sparse matrix in that basis,

    v_i = psi(x_i) / max|psi|,   Z = sum_i |v_i|^2,   E = sum_i v_i^* (H v)_i / Z,

and every weighted average the VMC estimator needs is written without dividing by v_i, so
configurations with negligible amplitude cause no overflow:

    w_i conj(E_loc,i - E) = (v_i conj((H v)_i) - |v_i|^2 conj(E)) / Z.

The sparse matrix is built once from the operator's own ``flips`` with a vectorized lookup of
connected configurations (bit-packed keys and a binary search), so spaces of ~1e6 determinants
are practical.

Several devices: :func:`exact_data` pads the states to a multiple of the device count (padding
rows have zero amplitude) and splits them over the mesh's sample axis, with the entries of H
grouped by the device that owns their row; each device evaluates log psi and the Jacobian rows
of its own states and its rows of ``H v`` from the all-gathered ``v`` (``shard_map``), and XLA
all-reduces the sums over states.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from nqs.ansatz import Ansatz, Params
from nqs.errors import InputError
from nqs.hilbert import MAX_INT_KEY_SITES
from nqs.operator import DiscreteOperator
from nqs.optim.flat import real_flat
from nqs.optim.jacobian import centred_jacobian_rows, sr_jacobian
from nqs.parallel import (
    SAMPLE_AXIS,
    Mesh,
    chunked_map,
    constrain_samples,
    n_shards,
    put,
    sample_sharding,
)


class SparseHamiltonian(NamedTuple):
    """H in the basis ``states`` as COO arrays (rows, cols, vals); ``nnz`` entries."""

    states: np.ndarray  # [n, n_sites]
    rows: np.ndarray  # [nnz] int32
    cols: np.ndarray  # [nnz] int32
    vals: np.ndarray  # [nnz]




def configuration_keys(x: np.ndarray, hilbert) -> np.ndarray:
    """A key per configuration ``x`` [n, n_sites]: equal keys if and only if equal rows.

    Up to :data:`MAX_INT_KEY_SITES` (63) sites: int64 [n], bit ``i`` set when site ``i`` holds
    the upper local value, so the XOR of two keys is the set of flipped sites (used by
    :func:`sparse_hamiltonian`). More sites (N2/cc-pVTZ with a frozen core has 116 spin
    orbitals): the bits packed into ``ceil(n_sites / 8)`` bytes, one numpy void scalar per row
    ([n], dtype ``V<bytes>``), which compares, sorts and ``np.unique``s like an integer key
    (no XOR).
    """
    lo, hi = hilbert.local_values
    bits = np.asarray(x) > 0.5 * (lo + hi)
    n_sites = bits.shape[1]
    if n_sites <= MAX_INT_KEY_SITES:
        return bits.astype(np.int64) @ (np.int64(1) << np.arange(n_sites, dtype=np.int64))
    packed = np.ascontiguousarray(np.packbits(bits, axis=1))
    return packed.view(f"V{packed.shape[1]}").reshape(len(packed))


def configurations_from_keys(keys: np.ndarray, hilbert) -> np.ndarray:
    """The configurations ``x`` [n, n_sites] (the hilbert's local values) of the keys
    [n] made by :func:`configuration_keys` (its inverse)."""
    lo, hi = hilbert.local_values
    n_sites = hilbert.n_sites
    keys = np.asarray(keys)
    if n_sites <= MAX_INT_KEY_SITES:
        bits = (keys.astype(np.int64)[:, None] >> np.arange(n_sites, dtype=np.int64)) & 1
    else:
        raw = np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), -1)
        bits = np.unpackbits(raw, axis=1, count=n_sites)
    return np.where(bits.astype(bool), hi, lo).astype(np.float64)


@functools.lru_cache(maxsize=2)
def sparse_hamiltonian(
    operator: DiscreteOperator, batch_size: int = 8192, tol: float = 0.0
) -> SparseHamiltonian:
    """All nonzero <x_i|H|x_j> over ``operator.hilbert.all_states()``.

    Cached (a run builds it for the VMC step and again for the final evaluation).
    """
    hilbert = operator.hilbert
    if hilbert.n_sites > MAX_INT_KEY_SITES:
        raise InputError(f"exact summation handles at most {MAX_INT_KEY_SITES} sites, got "
                         f"{hilbert.n_sites}; use Monte Carlo sampling")
    states = hilbert.all_states()
    n_sites = states.shape[1]
    keys = configuration_keys(states, hilbert)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    flips = jax.jit(jax.vmap(operator.flips))
    pow2 = np.int64(1) << np.arange(n_sites + 1, dtype=np.int64)
    pow2[n_sites] = 0  # padding site: no flip
    rows, cols, vals = [], [], []
    for start in range(0, len(states), batch_size):
        sites, mels = (np.asarray(a) for a in flips(states[start : start + batch_size]))
        # key of x' = key of x XOR the bits of its flipped sites
        delta = np.bitwise_xor.reduce(pow2[sites], axis=-1)
        conn = keys[start : start + len(sites), None] ^ delta
        mask = np.abs(mels) > tol
        pos = np.searchsorted(sorted_keys, conn[mask])
        if np.any(pos >= len(keys)) or np.any(sorted_keys[np.minimum(pos, len(keys) - 1)] != conn[mask]):
            raise ValueError("operator connects configurations outside the Hilbert-space sector")
        r = np.broadcast_to(np.arange(start, start + len(sites))[:, None], mels.shape)[mask]
        rows.append(r.astype(np.int32))
        cols.append(order[pos].astype(np.int32))
        vals.append(mels[mask])
    return SparseHamiltonian(
        states, np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    )


class ExactEstimate(NamedTuple):
    """Energy statistics and gradient ingredients from exact summation (see module docstring)."""

    energy: jax.Array
    variance: jax.Array
    weights: jax.Array  # [n] |psi|^2 / Z
    grad: jax.Array  # [P]
    jacobian: jax.Array | None
    residuals: jax.Array | None


class ExactData(NamedTuple):
    """The enumerated space and sparse H as device arrays, split over the devices of a mesh.

    Passed to jitted functions as arguments: closed over, XLA would fold them in as constants
    and compile for minutes. Built by :func:`exact_data`; with ``D`` devices:

    * ``states`` [n_pad, n_sites] and ``valid`` [n_pad] are split along their rows over the
      mesh's sample axis; ``n_pad`` is ``n`` rounded up to a multiple of ``D``, the padding
      rows repeat the first state and have ``valid = False`` (zero amplitude, zero weight);
    * the entries of H are grouped by the device that owns their row (rows ``k m .. (k+1) m - 1``
      on device ``k``, ``m = n_pad / D``) and padded to the same count ``nnz_max`` per device
      with zeros: ``rows`` [D nnz_max] holds the row index *within the device's block*,
      ``cols`` the global column index, ``vals`` the matrix element. With one device this is
      the plain COO layout.
    """

    states: jax.Array  # [n_pad, n_sites]
    valid: jax.Array  # [n_pad] bool
    rows: jax.Array  # [D * nnz_max] int32, local row index
    cols: jax.Array  # [D * nnz_max] int32, global column index
    vals: jax.Array  # [D * nnz_max]


def exact_data(hamiltonian: SparseHamiltonian, mesh: Mesh | None = None) -> ExactData:
    """Device copies of ``hamiltonian``'s arrays, split over ``mesh`` (see :class:`ExactData`).

    Without a mesh (or with one device) every array is whole and unpadded.
    """
    d = n_shards(mesh)
    states = np.asarray(hamiltonian.states)
    n = len(states)
    m = -(-n // d)  # rows per device
    pad = m * d - n
    states = np.concatenate([states, np.repeat(states[:1], pad, axis=0)]) if pad else states
    valid = np.arange(m * d) < n
    rows, cols, vals = (np.asarray(a) for a in hamiltonian[1:])
    owner = rows // m
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=d)
    nnz_max = max(int(counts.max()), 1)
    # padding entries: row 0 of the block, column 0, value 0 (they add 0 * v_0)
    r_loc = np.zeros((d, nnz_max), np.int32)
    c_glob = np.zeros((d, nnz_max), np.int32)
    v_blk = np.zeros((d, nnz_max), vals.dtype)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for k in range(d):
        sel = order[offsets[k] : offsets[k] + counts[k]]
        r_loc[k, : counts[k]] = rows[sel] - k * m
        c_glob[k, : counts[k]] = cols[sel]
        v_blk[k, : counts[k]] = vals[sel]
    data = ExactData(states, valid, r_loc.reshape(-1), c_glob.reshape(-1), v_blk.reshape(-1))
    if mesh is None:
        return ExactData(*(jnp.asarray(a) for a in data))
    return put(data, ExactData(*(sample_sharding(mesh),) * len(data)))


def _h_times(v: jax.Array, data: ExactData, mesh: Mesh | None) -> jax.Array:
    """``(H v)`` [n_pad] for ``v`` [n_pad] split like ``data.states``.

    Each device computes the rows it owns from its own entries of H and the whole ``v``
    (all-gathered: a column index may point at any device's block).
    """
    d = n_shards(mesh)

    def local(v_all: jax.Array, rows: jax.Array, cols: jax.Array, vals: jax.Array) -> jax.Array:
        return jax.ops.segment_sum(vals * v_all[cols], rows,
                                   num_segments=v_all.shape[0] // d)

    if d == 1:
        return local(v, data.rows, data.cols, data.vals)
    spec = P(SAMPLE_AXIS)
    return jax.shard_map(local, mesh=mesh, in_specs=(P(), spec, spec, spec),
                         out_specs=spec)(v, data.rows, data.cols, data.vals)


def _amplitudes(log_psi: jax.Array, data: ExactData, mesh: Mesh | None) -> tuple:
    """Normalised amplitudes v, H v, |v|^2, Z, energy and variance (all stop-gradient);
    padding rows have ``v = 0``."""
    valid = data.valid
    shift = jnp.max(jnp.where(valid, jnp.real(log_psi), -jnp.inf))
    # v stays split like the states (XLA would otherwise gather log psi to build v whole on
    # every device); only H v below all-gathers it
    v = constrain_samples(jnp.where(valid, jnp.exp(log_psi - shift), 0.0), mesh)
    v = jax.lax.stop_gradient(v)
    hv = _h_times(v, data, mesh)
    abs2 = jnp.abs(v) ** 2
    z = jnp.sum(abs2)
    energy = jnp.sum(jnp.conj(v) * hv) / z
    variance = jnp.maximum(jnp.sum(jnp.abs(hv) ** 2) / z - jnp.abs(energy) ** 2, 0.0)
    return v, hv, abs2, z, energy, variance


def exact_energy_fn(
    ansatz: Ansatz, chunk_size: int | None = None, mesh: Mesh | None = None
) -> Callable[[Params, ExactData], tuple[jax.Array, jax.Array]]:
    """Pure ``energy(params, data) -> (<H>, variance of E_loc)`` by exact summation.

    ``data`` from :func:`exact_data` with the same ``mesh`` (the states are split over it).
    """
    log_psi_all = chunked_map(ansatz.log_psi, chunk_size, mesh)

    def energy(params: Params, data: ExactData) -> tuple[jax.Array, jax.Array]:
        *_, e, var = _amplitudes(log_psi_all(params, data.states), data, mesh)
        return e, var

    return energy


def make_exact_energy(
    ansatz: Ansatz,
    hamiltonian: SparseHamiltonian,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> Callable[[Params], tuple[jax.Array, jax.Array]]:
    """``energy(params) -> (<H>, variance of E_loc)``, jitted with the space as an argument."""
    data = exact_data(hamiltonian, mesh)
    energy = jax.jit(exact_energy_fn(ansatz, chunk_size, mesh))
    return lambda params: energy(params, data)


def _device_major(a: jax.Array, mesh: Mesh | None) -> jax.Array:
    """``a`` [n, 2, ...] (real and imaginary parts of per-state rows, split over the devices)
    as [2n, ...] with each device's rows together: ``[Re block_0; Im block_0; Re block_1; ...]``.

    With one device this is ``[Re; Im]``, the layout of :func:`nqs.optim.jacobian.sr_jacobian`. Keeping a
    device's rows on the device avoids the all-gather that concatenating the split ``Re`` and
    ``Im`` halves costs; the SR solvers only need ``J^T J``, ``J J^T`` and ``J^T eps``, which do
    not depend on the order of the rows as long as ``eps`` has the same order.
    """
    d = n_shards(mesh)
    n = a.shape[0]
    a = jnp.swapaxes(a.reshape((d, n // d) + a.shape[1:]), 1, 2)  # [d, 2, n/d, ...]
    return constrain_samples(a.reshape((2 * n,) + a.shape[3:]), mesh)


def _split_jacobian(
    log_psi_flat: Callable[[jax.Array, jax.Array], jax.Array],
    flat: jax.Array,
    states: jax.Array,
    weights: jax.Array,
    chunk_size: int | None,
    mesh: Mesh | None,
) -> jax.Array:
    """``J [2n, P] = sqrt(w_i) [Re; Im] (O_i - <O>)`` (real flat parameters ``flat`` [P]) with
    the rows of each device's states kept on it (:func:`_device_major`)."""
    rows = centred_jacobian_rows(log_psi_flat, flat, states, weights, chunk_size, mesh)
    return _device_major(rows, mesh)


def exact_estimate_fn(
    ansatz: Ansatz,
    *,
    needs_jacobian: bool,
    chunk_size: int | None = None,
    metric_states: int | None = None,
    mesh: Mesh | None = None,
) -> Callable[[Params, ExactData], ExactEstimate]:
    """Pure ``estimate(params, data) -> ExactEstimate`` summing over every configuration.

    ``data`` from :func:`exact_data` with the same ``mesh``: log psi, the Jacobian rows and
    H v are evaluated on each device for its own block of states; the sums over states are
    all-reduced by XLA. ``ExactEstimate.weights`` has the padded length (0 on padding rows).

    ``metric_states`` = K (with ``needs_jacobian``): the gradient is still exact, but the
    Jacobian rows (the SR metric) come from only the K configurations of largest |psi|^2,
    weights renormalised over them and centred on their mean; ``residuals`` is then None and
    SR solves ``(J^T J + lambda)^-1 g`` (:func:`nqs.optim.sr.natural_gradient_woodbury`).
    The full Jacobian of a C2/STO-3G space (22052 states x 9265 parameters x 2) would take
    3.3 GB and its kernel 15 GB; the wavefunction's weight is concentrated on few states.
    """
    def estimate(params: Params, data: ExactData) -> ExactEstimate:
        states = data.states
        flat, unflatten = real_flat(params)

        def log_psi_flat(u: jax.Array, x: jax.Array) -> jax.Array:
            return ansatz.log_psi(unflatten(u), x)

        log_psi_all = chunked_map(log_psi_flat, chunk_size, mesh)

        subset = needs_jacobian and metric_states is not None and metric_states < len(states)
        if not needs_jacobian or subset:

            def surrogate(u: jax.Array):
                logs = log_psi_all(u, states)
                v, hv, abs2, z, energy, variance = _amplitudes(logs, data, mesh)
                coeff = (v * jnp.conj(hv) - abs2 * jnp.conj(energy)) / z  # w_i conj(e_i)
                coeff = constrain_samples(coeff, mesh)  # the backward pass stays split too
                loss = 2.0 * jnp.sum(jnp.real(coeff * logs))
                return loss, (energy, variance, abs2 / z)

            grad, (energy, variance, weights) = jax.grad(surrogate, has_aux=True)(flat)
            if not subset:
                return ExactEstimate(energy, variance, weights, grad, None, None)
            top_w, top = jax.lax.top_k(weights, metric_states)
            jacobian = sr_jacobian(log_psi_flat, flat, states[top], top_w / jnp.sum(top_w),
                                   chunk_size)
            return ExactEstimate(energy, variance, weights, grad, jacobian, None)

        v, hv, abs2, z, energy, variance = _amplitudes(log_psi_all(flat, states), data, mesh)
        weights = abs2 / z

        jacobian = _split_jacobian(log_psi_flat, flat, states, weights, chunk_size, mesh)
        # sqrt(w_i) e_i = (conj(v_i)/|v_i|) (H v)_i / sqrt(Z) - |v_i| E / sqrt(Z)
        abs_v = jnp.abs(v)
        phase = jnp.where(abs_v > 0, jnp.conj(v) / jnp.where(abs_v > 0, abs_v, 1.0), 0.0)
        scaled = (phase * hv - abs_v * energy) / jnp.sqrt(z)
        residuals = 2.0 * _device_major(jnp.stack([scaled.real, scaled.imag], axis=1), mesh)
        grad = jacobian.T @ residuals
        return ExactEstimate(energy, variance, weights, grad, jacobian, residuals)

    return estimate


def make_exact_estimator(
    ansatz: Ansatz,
    hamiltonian: SparseHamiltonian,
    *,
    needs_jacobian: bool,
    chunk_size: int | None = None,
    metric_states: int | None = None,
    mesh: Mesh | None = None,
) -> Callable[[Params], ExactEstimate]:
    """``estimate(params) -> ExactEstimate``, jitted with the space as an argument."""
    data = exact_data(hamiltonian, mesh)
    estimate = jax.jit(
        exact_estimate_fn(ansatz, needs_jacobian=needs_jacobian, chunk_size=chunk_size,
                          metric_states=metric_states, mesh=mesh)
    )
    return lambda params: estimate(params, data)
