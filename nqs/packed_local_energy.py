"""Local energies of a batch with the nonzero connections of all samples packed together.

``operator.flips(x)`` pads every configuration to ``max_conn`` rows, a bound over the whole space.
For molecules the typical configuration keeps far fewer nonzero rows than that bound (H2O/6-31G:
~670 of at most 1105; N2/STO-3G: ~130 of at most ~190), and the ansatz part of the local energy
(a log-psi ratio or a full evaluation per row) costs far more than the rows themselves. So the
local energies of a batch are computed in passes:

1. (jitted, one program per batch shape) ``flips`` of every sample, the rows that need the
   ansatz (nonzero matrix element and at least one flipped site: diagonal rows have ratio 1
   exactly), the diagonal part, and the per-sample ansatz data (``log psi(x)``, or the
   parameter tables and the per-sample cache of cached local updates);
2. (host) the flat indices of the rows that need the ansatz, in blocks of ``block_rows``
   (the last one padded with -1);
3. (jitted, one program per batch shape, called once per block) the ratios
   ``psi(x')/psi(x)`` of a block's rows (in ``lax.map`` chunks of ``chunk_rows``), multiplied by
   their matrix elements and added to their samples' sums (a scatter-add).

Every shape in the compiled programs is fixed by the batch size and the block size, never by
the number of nonzero rows, which changes from batch to batch: a VMC run compiles as few
programs as the per-sample path (an earlier version packed the rows into a capacity rounded up
from their count, one program per capacity, and recompiled every few steps of a run).

Distinct connected configurations (full-evaluation ansatze, at most 63 sites): the samples of a
molecular batch lie near Hartree-Fock and share most of their connections (N2 / 6-31G with a
frozen core, 502 distinct draws: 304250 rows that need the ansatz, 78433 distinct
configurations among them). Each row's configuration gets an int64 key (the sample's key XOR
the row's flipped sites, :func:`nqs.exact.configuration_keys`); ``log psi`` is evaluated once
per distinct key in step 3, and the ratios ``psi(x')/psi(x)`` of every row are then formed on
the host from those values. Ansatze with cached local updates (the RBM: a ratio per row costs
less than the bookkeeping) keep the per-row path.

Nothing is dropped: the result equals :func:`nqs.local_energy.make_local_energy` vmapped over
the batch, to rounding. The host step makes this a driver-level function (not traceable under
an outer ``jit``); the de-duplicated molecular VMC step and the molecular final evaluation
(``nqs.vmc``, ``packed=True``), both host-level already, call it on the distinct
configurations of a draw.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz, Params
from nqs.errors import InputError
from nqs.hilbert import MAX_INT_KEY_SITES, apply_flips
from nqs.operator import DiscreteOperator, split_rows

BatchLocalEnergyFn = Callable[[Params, jax.Array], jax.Array]


def default_chunk_rows(ansatz: Ansatz) -> int:
    """Packed rows per ``lax.map`` step for ``ansatz``: 64 with cached local updates (the RBM:
    its per-row intermediates then stay in cache), else 512 (backflow: a full evaluation per
    row, whose batched determinants have a per-call overhead). Tuned on 2 CPU cores by
    ``experiments/benchmarks/molecular_local_energy.py``."""
    return 64 if ansatz.local_updates is not None else 512


def make_packed_local_energy(
    operator: DiscreteOperator,
    ansatz: Ansatz,
    chunk_rows: int | None = 4096,
    block_rows: int | None = None,
    distinct_rows: bool | None = None,
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
        intermediates in cache); ``None`` evaluates a whole block in one ``vmap``.
      block_rows: rows per call of the compiled block program (default: 4096, or a multiple
        of ``chunk_rows`` at least as large); at most one block of padding per batch.
      distinct_rows: evaluate ``log psi`` once per distinct connected configuration (module
        docstring). Default (``None``): on for ansatze without cached local updates on at
        most 63 sites; ``True`` where that does not hold is an error.

    Returns:
      A host-level function (it reads the rows that need the ansatz back from the device once
      per call and loops over their blocks).
    """
    n_sites = operator.hilbert.n_sites
    c = operator.hilbert.flip_constant
    fast = ansatz.local_updates
    distinct_possible = fast is None and n_sites <= MAX_INT_KEY_SITES
    if distinct_rows is None:
        distinct_rows = distinct_possible
    elif distinct_rows and not distinct_possible:
        raise InputError("distinct connected rows need an ansatz without cached local updates "
                         f"on at most {MAX_INT_KEY_SITES} sites")
    lo, hi = operator.hilbert.local_values
    # bit of each site for the keys, and 0 for the padding index n_sites (used if distinct_rows)
    site_bits = np.append(np.int64(1) << np.arange(min(n_sites, MAX_INT_KEY_SITES),
                                                   dtype=np.int64), np.int64(0))
    block = 4096 if block_rows is None else int(block_rows)
    if chunk_rows is not None:  # whole lax.map chunks per block
        block = chunk_rows * -(-block // chunk_rows)

    @jax.jit
    def first_pass(params: Params, xs: jax.Array, n_valid: jax.Array):
        sites, mels = jax.vmap(operator.flips)(xs)  # [B, C, k], [B, C]
        real_sample = jnp.arange(xs.shape[0]) < n_valid  # padding samples: no rows, value 0
        needs_ansatz, e_diag = split_rows(sites, mels, n_sites)
        needs_ansatz = needs_ansatz & real_sample[:, None]
        e_diag = jnp.where(real_sample, e_diag, 0)
        if fast is not None:
            tables = fast.prepare(params)  # parameter-only tables, once per batch
            per_sample = (tables, jax.vmap(fast.init_cache, in_axes=(None, 0))(tables, xs))
        else:
            per_sample = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, xs)
        if not distinct_rows:
            return sites, mels, needs_ansatz, e_diag, per_sample, None
        # key of x' = key of x XOR the row's flipped sites (a site listed twice flips once, as
        # in apply_flips; the padding index n_sites has no bit)
        bits = jnp.asarray(site_bits)
        sample_keys = (xs > 0.5 * (lo + hi)).astype(jnp.int64) @ bits[:n_sites]
        flipped = jax.lax.reduce(bits[sites], np.int64(0), jax.lax.bitwise_or, (2,))
        return sites, mels, needs_ansatz, e_diag, per_sample, sample_keys[:, None] ^ flipped

    @jax.jit
    def block_pass(params: Params, xs: jax.Array, sites: jax.Array, mels: jax.Array,
                   per_sample, rows: jax.Array, acc: jax.Array) -> jax.Array:
        n_conn = mels.shape[1]
        valid = rows >= 0  # -1: padding of the last block
        flat = jnp.where(valid, rows, 0)
        sample = flat // n_conn  # [block]
        row_sites = sites.reshape(-1, sites.shape[-1])[flat]  # [block, k]
        row_mels = jnp.where(valid, mels.reshape(-1)[flat], 0)
        if fast is not None:
            tables, cache = per_sample

            def ratio(row: tuple[jax.Array, jax.Array]) -> jax.Array:
                b, s = row
                cache_b = jax.tree_util.tree_map(lambda leaf: leaf[b], cache)
                return fast.log_ratio(tables, xs[b], cache_b, s)[0]

        else:
            log_psi_x = per_sample

            def ratio(row: tuple[jax.Array, jax.Array]) -> jax.Array:
                b, s = row
                return ansatz.log_psi(params, apply_flips(xs[b], s, c)) - log_psi_x[b]

        if chunk_rows is None or chunk_rows >= block:
            log_ratios = jax.vmap(ratio)((sample, row_sites))
        else:
            log_ratios = jax.lax.map(ratio, (sample, row_sites), batch_size=chunk_rows)
        # padding rows point at row 0 with mel 0: their (finite) ratio is multiplied by 0
        terms = row_mels * jnp.exp(jnp.where(valid, log_ratios, 0))
        return acc.at[sample].add(terms)

    @jax.jit
    def log_psi_pass(params: Params, xs: jax.Array, sites: jax.Array,
                     rows: jax.Array) -> jax.Array:
        """``log psi`` of the connected configurations of a block of flat rows (-1: padding,
        evaluated on row 0 and discarded)."""
        flat = jnp.maximum(rows, 0)
        sample = flat // sites.shape[1]
        row_sites = sites.reshape(-1, sites.shape[-1])[flat]

        def log_psi(row: tuple[jax.Array, jax.Array]) -> jax.Array:
            b, s = row
            return ansatz.log_psi(params, apply_flips(xs[b], s, c))

        if chunk_rows is None or chunk_rows >= block:
            return jax.vmap(log_psi)((sample, row_sites))
        return jax.lax.map(log_psi, (sample, row_sites), batch_size=chunk_rows)

    def padded_blocks(rows: np.ndarray) -> list[np.ndarray]:
        n_blocks = -(-len(rows) // block)
        padded = np.full(n_blocks * block, -1, dtype=rows.dtype)
        padded[: len(rows)] = rows
        return [padded[i * block : (i + 1) * block] for i in range(n_blocks)]

    def distinct_local_energies(params, xs, sites, mels, rows, e_diag, log_psi_x, row_keys):
        """Sum over rows of ``mel psi(x')/psi(x)`` with ``log psi(x')`` once per distinct x'."""
        _, first, inverse = np.unique(np.asarray(row_keys).reshape(-1)[rows],
                                      return_index=True, return_inverse=True)
        values = [log_psi_pass(params, xs, sites, b) for b in padded_blocks(rows[first])]
        log_psi_y = np.concatenate([np.asarray(v) for v in values])[: len(first)]
        sample = rows // mels.shape[1]
        log_ratio = log_psi_y[inverse.reshape(-1)] - np.asarray(log_psi_x)[sample]
        terms = np.asarray(mels).reshape(-1)[rows] * np.exp(log_ratio)
        acc = np.asarray(e_diag).astype(np.result_type(terms.dtype, np.complex64))
        n = len(acc)
        acc += np.bincount(sample, weights=terms.real, minlength=n)
        acc += 1j * np.bincount(sample, weights=terms.imag, minlength=n)
        return jnp.asarray(acc)

    def local_energies(params: Params, xs: jax.Array, n_valid: int | None = None) -> jax.Array:
        n = xs.shape[0] if n_valid is None else n_valid
        # n_valid is a traced argument: one program per batch shape, not per count
        sites, mels, needs_ansatz, e_diag, per_sample, row_keys = first_pass(
            params, xs, jnp.asarray(n, jnp.int32))
        needs = np.asarray(needs_ansatz)
        # flat row indices: int32 unless B * max_conn overflows it (N2/cc-pVDZ frozen core,
        # max_conn 15436: from 139k samples a batch)
        index_dtype = np.int32 if needs.size < 2**31 else np.int64
        rows = np.flatnonzero(needs).astype(index_dtype)
        if row_keys is not None:
            return distinct_local_energies(params, xs, sites, mels, rows, e_diag, per_sample,
                                           row_keys)
        n_blocks = -(-len(rows) // block)
        padded = np.full(n_blocks * block, -1, dtype=index_dtype)
        padded[: len(rows)] = rows
        # accumulate in the dtype of the ratios (complex log psi), float64 downstream
        acc = e_diag.astype(jnp.result_type(e_diag.dtype, jnp.complex64))
        for i in range(n_blocks):
            acc = block_pass(params, xs, sites, mels, per_sample,
                             padded[i * block : (i + 1) * block], acc)
        return acc

    return local_energies
