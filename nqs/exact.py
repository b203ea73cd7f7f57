"""Exact summation over a whole (small) Hilbert space: energy and gradient without Monte Carlo noise.

With all configurations x_i enumerated and H as a sparse matrix in that basis,

    v_i = psi(x_i) / max|psi|,   Z = sum_i |v_i|^2,   E = sum_i v_i^* (H v)_i / Z,

and every weighted average the VMC estimator needs is written without dividing by v_i, so
configurations with negligible amplitude cause no overflow:

    w_i conj(E_loc,i - E) = (v_i conj((H v)_i) - |v_i|^2 conj(E)) / Z.

The sparse matrix is built once from the operator's own ``flips`` with a vectorized lookup of
connected configurations (bit-packed keys and a binary search), so spaces of ~1e6 determinants
are practical.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz, Params
from nqs.errors import InputError
from nqs.operator import DiscreteOperator
from nqs.optim.flat import real_flat


class SparseHamiltonian(NamedTuple):
    """H in the basis ``states`` as COO arrays (rows, cols, vals); ``nnz`` entries."""

    states: np.ndarray  # [n, n_sites]
    rows: np.ndarray  # [nnz] int32
    cols: np.ndarray  # [nnz] int32
    vals: np.ndarray  # [nnz]


def configuration_keys(x: np.ndarray, hilbert) -> np.ndarray:
    """Bit-packed int64 key of each configuration ``x`` [n, n_sites] (n_sites <= 62)."""
    lo, hi = hilbert.local_values
    bits = (np.asarray(x) > 0.5 * (lo + hi)).astype(np.int64)
    n_sites = bits.shape[1]
    if n_sites > 62:
        raise InputError(f"{n_sites} sites are too many for exact summation")
    return bits @ (np.int64(1) << np.arange(n_sites, dtype=np.int64))


@functools.lru_cache(maxsize=2)
def sparse_hamiltonian(
    operator: DiscreteOperator, batch_size: int = 8192, tol: float = 0.0
) -> SparseHamiltonian:
    """All nonzero <x_i|H|x_j> over ``operator.hilbert.all_states()``.

    Cached (a run builds it for the VMC step and again for the final evaluation).
    """
    hilbert = operator.hilbert
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


def _amplitudes(log_psi: jax.Array, hamiltonian_arrays: tuple) -> tuple:
    """Normalised amplitudes v, H v, |v|^2, Z, energy and variance (all stop-gradient)."""
    rows, cols, vals = hamiltonian_arrays
    v = jax.lax.stop_gradient(jnp.exp(log_psi - jnp.max(jnp.real(log_psi))))
    hv = jax.ops.segment_sum(vals * v[cols], rows, num_segments=v.shape[0])
    abs2 = jnp.abs(v) ** 2
    z = jnp.sum(abs2)
    energy = jnp.sum(jnp.conj(v) * hv) / z
    variance = jnp.maximum(jnp.sum(jnp.abs(hv) ** 2) / z - jnp.abs(energy) ** 2, 0.0)
    return v, hv, abs2, z, energy, variance


class ExactData(NamedTuple):
    """The enumerated space and sparse H as device arrays, passed to jitted functions as
    arguments: closed over, XLA would fold them in as constants and compile for minutes."""

    states: jax.Array  # [n, n_sites]
    rows: jax.Array  # [nnz]
    cols: jax.Array  # [nnz]
    vals: jax.Array  # [nnz]


def exact_data(hamiltonian: SparseHamiltonian) -> ExactData:
    """Device copies of ``hamiltonian``'s arrays."""
    return ExactData(*(jnp.asarray(a) for a in hamiltonian))


def exact_energy_fn(
    ansatz: Ansatz, chunk_size: int | None = None
) -> Callable[[Params, ExactData], tuple[jax.Array, jax.Array]]:
    """Pure ``energy(params, data) -> (<H>, variance of E_loc)`` by exact summation."""
    from nqs.vmc import batched

    log_psi_all = batched(ansatz.log_psi, chunk_size)

    def energy(params: Params, data: ExactData) -> tuple[jax.Array, jax.Array]:
        *_, e, var = _amplitudes(log_psi_all(params, data.states), tuple(data[1:]))
        return e, var

    return energy


def make_exact_energy(
    ansatz: Ansatz, hamiltonian: SparseHamiltonian, chunk_size: int | None = None
) -> Callable[[Params], tuple[jax.Array, jax.Array]]:
    """``energy(params) -> (<H>, variance of E_loc)``, jitted with the space as an argument."""
    data = exact_data(hamiltonian)
    energy = jax.jit(exact_energy_fn(ansatz, chunk_size))
    return lambda params: energy(params, data)


def exact_estimate_fn(
    ansatz: Ansatz,
    *,
    needs_jacobian: bool,
    chunk_size: int | None = None,
    metric_states: int | None = None,
) -> Callable[[Params, ExactData], ExactEstimate]:
    """Pure ``estimate(params, data) -> ExactEstimate`` summing over every configuration.

    ``metric_states`` = K (with ``needs_jacobian``): the gradient is still exact, but the
    Jacobian rows (the SR metric) come from only the K configurations of largest |psi|^2,
    weights renormalised over them and centred on their mean; ``residuals`` is then None and
    SR solves ``(J^T J + lambda)^-1 g`` (:func:`nqs.optim.sr.natural_gradient_woodbury`).
    The full Jacobian of a C2/STO-3G space (22052 states x 9265 parameters x 2) would take
    3.3 GB and its kernel 15 GB; the wavefunction's weight is concentrated on few states.
    """
    from nqs.vmc import batched, sr_jacobian

    def estimate(params: Params, data: ExactData) -> ExactEstimate:
        states, arrays = data.states, tuple(data[1:])
        flat, unflatten = real_flat(params)

        def log_psi_flat(u: jax.Array, x: jax.Array) -> jax.Array:
            return ansatz.log_psi(unflatten(u), x)

        log_psi_all = batched(log_psi_flat, chunk_size)

        subset = needs_jacobian and metric_states is not None and metric_states < len(states)
        if not needs_jacobian or subset:

            def surrogate(u: jax.Array):
                logs = log_psi_all(u, states)
                v, hv, abs2, z, energy, variance = _amplitudes(logs, arrays)
                coeff = (v * jnp.conj(hv) - abs2 * jnp.conj(energy)) / z  # w_i conj(e_i)
                loss = 2.0 * jnp.sum(jnp.real(coeff * logs))
                return loss, (energy, variance, abs2 / z)

            grad, (energy, variance, weights) = jax.grad(surrogate, has_aux=True)(flat)
            if not subset:
                return ExactEstimate(energy, variance, weights, grad, None, None)
            top_w, top = jax.lax.top_k(weights, metric_states)
            jacobian = sr_jacobian(log_psi_flat, flat, states[top], top_w / jnp.sum(top_w),
                                   chunk_size)
            return ExactEstimate(energy, variance, weights, grad, jacobian, None)

        v, hv, abs2, z, energy, variance = _amplitudes(log_psi_all(flat, states), arrays)
        weights = abs2 / z

        jacobian = sr_jacobian(log_psi_flat, flat, states, weights, chunk_size)
        # sqrt(w_i) e_i = (conj(v_i)/|v_i|) (H v)_i / sqrt(Z) - |v_i| E / sqrt(Z)
        abs_v = jnp.abs(v)
        phase = jnp.where(abs_v > 0, jnp.conj(v) / jnp.where(abs_v > 0, abs_v, 1.0), 0.0)
        scaled = (phase * hv - abs_v * energy) / jnp.sqrt(z)
        residuals = 2.0 * jnp.concatenate([scaled.real, scaled.imag])
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
) -> Callable[[Params], ExactEstimate]:
    """``estimate(params) -> ExactEstimate``, jitted with the space as an argument."""
    data = exact_data(hamiltonian)
    estimate = jax.jit(
        exact_estimate_fn(ansatz, needs_jacobian=needs_jacobian, chunk_size=chunk_size,
                          metric_states=metric_states)
    )
    return lambda params: estimate(params, data)
