"""Local energies of a batch with the nonzero connections of all samples packed together.

``operator.flips(x)`` pads every configuration to ``max_conn`` rows, a bound over the whole space.
For molecules the typical configuration keeps far fewer nonzero rows than that bound (H2O/6-31G:
~670 of at most 1105; N2/STO-3G: ~130 of at most ~190), and the ansatz part of the local energy
(a log-psi ratio or a full evaluation per row) costs far more than the rows themselves. So the
local energies of a batch are computed in two passes:

1. (jitted) ``flips`` of every sample, and the number of rows that need the ansatz: nonzero
   matrix element and at least one flipped site (diagonal rows have ratio 1 exactly);
2. (host) a row capacity: that number rounded up to a few sizes (so repeated calls reuse a few
   compiled programs);
3. (jitted, one program per capacity) those rows packed into ``[capacity]``, the ratios
   ``psi(x')/psi(x)`` evaluated on them only (in chunks of ``chunk_rows``), and summed back per
   sample with ``segment_sum``.

The count is exact and checked, so nothing is dropped: the result equals
:func:`nqs.local_energy.make_local_energy` vmapped over the batch. The host step makes this a
driver-level function (not traceable under an outer ``jit``); the de-duplicated molecular VMC
step and the molecular final evaluation (``nqs.vmc``, ``packed=True``), both host-level
already, call it on the distinct configurations of a draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz, Params
from nqs.hilbert import apply_flips
from nqs.operator import DiscreteOperator

BatchLocalEnergyFn = Callable[[Params, jax.Array], jax.Array]


def row_capacity(n_rows: int, granularity: float = 1.25, minimum: int = 256) -> int:
    """Smallest ``minimum * granularity**k`` (rounded up to a multiple of 64) ``>= n_rows``.

    Few distinct capacities, hence few compilations, at most ``granularity - 1`` padding waste.
    """
    if n_rows <= minimum:
        return minimum
    k = math.ceil(math.log(n_rows / minimum) / math.log(granularity) - 1e-12)
    cap = minimum * granularity**k
    cap = 64 * math.ceil(cap / 64)
    while cap < n_rows:  # guard against rounding in the logarithms
        cap += 64
    return int(cap)


def default_chunk_rows(ansatz: Ansatz) -> int:
    """Packed rows per ``lax.map`` step for ``ansatz``: 64 with cached local updates (the RBM:
    its per-row intermediates then stay in cache), else 512 (backflow: a full evaluation per
    row, whose batched determinants have a per-call overhead). Tuned on 2 CPU cores by
    ``experiments/benchmarks/molecular_local_energy.py``."""
    return 64 if ansatz.local_updates is not None else 512


def make_packed_local_energy(
    operator: DiscreteOperator, ansatz: Ansatz, chunk_rows: int | None = 4096
) -> BatchLocalEnergyFn:
    """``local_energies(params, xs [B, n_sites], n_valid=None) -> complex [B]`` with packed
    connections.

    ``n_valid`` (int): only the first ``n_valid`` samples are evaluated, the rest (padding that
    keeps ``B`` to a few bucket sizes) get no connected rows and the value 0.

    Args:
      operator: any discrete operator (rows with mel 0 are skipped, all-padding rows are the
        diagonal).
      ansatz: uses its cached local updates when present (``init_cache`` once per sample,
        ``log_ratio`` per packed row), else ``log_psi`` on every packed connected configuration.
      chunk_rows: rows evaluated per ``lax.map`` step (bounds memory and keeps the per-row
        intermediates in cache); ``None`` evaluates all rows in one ``vmap``.

    Returns:
      A host-level function (it reads the row count back from the device once per call).
    """
    n_sites = operator.hilbert.n_sites
    c = operator.hilbert.flip_constant
    fast = ansatz.local_updates

    @jax.jit
    def first_pass(
        xs: jax.Array, n_valid: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        sites, mels = jax.vmap(operator.flips)(xs)  # [B, C, k], [B, C]
        diagonal = jnp.all(sites >= n_sites, axis=-1)
        real_sample = (jnp.arange(xs.shape[0]) < n_valid)[:, None]  # padding samples: no rows
        needs_ansatz = (mels != 0) & ~diagonal & real_sample
        e_diag = jnp.sum(jnp.where(diagonal & real_sample, mels, 0), axis=-1)
        return sites, mels, needs_ansatz, e_diag

    def second_pass(
        params: Params,
        xs: jax.Array,
        sites: jax.Array,
        mels: jax.Array,
        needs_ansatz: jax.Array,
        e_diag: jax.Array,
        capacity: int,
    ) -> jax.Array:
        n_batch, n_conn = mels.shape
        flat = jnp.nonzero(needs_ansatz.reshape(-1), size=capacity, fill_value=0)[0]
        valid = jnp.arange(capacity) < jnp.sum(needs_ansatz)
        sample = flat // n_conn  # [capacity]
        row_sites = sites.reshape(-1, sites.shape[-1])[flat]  # [capacity, k]
        row_mels = jnp.where(valid, mels.reshape(-1)[flat], 0)
        if fast is not None:
            tables = fast.prepare(params)  # parameter-only tables, once per batch
            cache = jax.vmap(fast.init_cache, in_axes=(None, 0))(tables, xs)

            def ratio(row: tuple[jax.Array, jax.Array]) -> jax.Array:
                b, s = row
                cache_b = jax.tree_util.tree_map(lambda leaf: leaf[b], cache)
                return fast.log_ratio(tables, xs[b], cache_b, s)[0]

        else:
            log_psi_x = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, xs)

            def ratio(row: tuple[jax.Array, jax.Array]) -> jax.Array:
                b, s = row
                return ansatz.log_psi(params, apply_flips(xs[b], s, c)) - log_psi_x[b]

        rows = (sample, row_sites)
        if chunk_rows is None or chunk_rows >= capacity:
            log_ratios = jax.vmap(ratio)(rows)
        else:
            log_ratios = jax.lax.map(ratio, rows, batch_size=chunk_rows)
        # padding rows point at sample 0 with mel 0: exp of their (finite) ratio is multiplied by 0
        terms = row_mels * jnp.exp(jnp.where(valid, log_ratios, 0))
        return e_diag + jax.ops.segment_sum(terms, sample, num_segments=n_batch)

    second_jit = jax.jit(second_pass, static_argnames="capacity")

    def local_energies(params: Params, xs: jax.Array, n_valid: int | None = None) -> jax.Array:
        n = xs.shape[0] if n_valid is None else n_valid
        # n_valid is a traced argument: one program per batch shape, not per count
        sites, mels, needs_ansatz, e_diag = first_pass(xs, jnp.asarray(n, jnp.int32))
        n_rows = int(np.asarray(jnp.sum(needs_ansatz)))
        capacity = row_capacity(n_rows)
        return second_jit(params, xs, sites, mels, needs_ansatz, e_diag, capacity=capacity)

    return local_energies
