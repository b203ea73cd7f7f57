"""Local energies E_loc(x) = sum_x' <x|H|x'> psi(x') / psi(x) of one configuration."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from nqs.ansatz import Ansatz, Params
from nqs.hilbert import apply_flips
from nqs.operator import DiscreteOperator, connected_configurations, matches_terms, split_rows
from nqs.parallel import chunked_map, n_shards

LocalEnergyFn = Callable[[Params, jax.Array], jax.Array]

CPU_PASS_ROWS = 512
"""Rows a pass of :func:`make_batch_local_energy` evaluates on a CPU: the space-group GCNN
(4 x 4 features) on the J1-J2 6x6 lattice takes 0.95 s for 256 configurations at 512, 1.08 s
at 128 and at 2048, 1.7 s at 9280 (64 samples' rows), against 2.2 s for every row of 64
samples at a time (2-core Intel Xeon, 2026-12-06)."""


def make_local_energy(operator: DiscreteOperator, ansatz: Ansatz) -> LocalEnergyFn:
    """``local_energy(params, x [n_sites]) -> complex scalar``.

    Three paths, fastest first:

    * *terms* (the operator lists static flip patterns,
      :class:`nqs.operator.TermOperator`, and the ansatz has :class:`nqs.ansatz.TermUpdates`):
      ``diag(x) + sum_t mels_t psi(x'_t) / psi(x)`` with the ratios of all ``T`` patterns from
      per-pattern tables (the spin RBM: one complex multiply-add per pattern and hidden unit,
      tables read in order). Patterns that do not connect ``x`` (a Heisenberg bond with parallel
      spins) are masked, not skipped: computing them costs less than gathering the others.
    * *cached* (the ansatz has :class:`nqs.ansatz.LocalUpdates`): one ratio per row of
      ``operator.flips(x)``, O(k M) multiply-adds each for the RBM.
    * *generic*: log psi of every connected configuration in one batched call.

    All three give the same value to rounding (``tests/test_spin_packed_local_energy.py``;
    ``ansatz.local_updates._replace(terms=None)`` selects the cached path).
    Under ``jax.vmap`` over ``x`` the parameter-only tables (``prepare``) do not depend on
    ``x``, so they are evaluated once per batch, not once per configuration.
    """
    fast = ansatz.local_updates
    flip_terms = getattr(operator, "flip_terms", None)
    if fast is not None and fast.terms is not None and flip_terms is not None:
        terms = fast.terms

        def local_energy_terms(params: Params, x: jax.Array) -> jax.Array:
            tables = fast.prepare(params)
            term_tables = terms.prepare(tables, flip_terms.sites, flip_terms.signs)
            diag, mels = operator.term_elements(x)
            # the operator's contract is mels = 0 off its patterns; the mask also keeps an
            # overflowing ratio of an unconnected pattern (inf * 0) out of the sum
            connected = matches_terms(flip_terms, x) & (mels != 0)
            log_abs, phase = terms.ratios(term_tables, x, fast.init_cache(tables, x))
            ratios = jnp.exp(jnp.where(connected, log_abs, 0.0)) * phase
            return diag + jnp.sum(jnp.where(connected, mels * ratios, 0.0))

        return local_energy_terms

    if fast is not None:

        def local_energy_fast(params: Params, x: jax.Array) -> jax.Array:
            sites, mels = operator.flips(x)
            tables = fast.prepare(params)
            cache = fast.init_cache(tables, x)
            # the updated caches are unused here, so XLA drops their computation
            log_ratios, _ = jax.vmap(lambda s: fast.log_ratio(tables, x, cache, s))(sites)
            return jnp.sum(mels * jnp.exp(log_ratios))

        return local_energy_fast

    def local_energy_generic(params: Params, x: jax.Array) -> jax.Array:
        x_conn, mels = connected_configurations(operator, x)
        log_psi_conn = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x_conn)
        log_psi_x = ansatz.log_psi(params, x)
        return jnp.sum(mels * jnp.exp(log_psi_conn - log_psi_x))

    return local_energy_generic


def make_batch_local_energy(
    operator: DiscreteOperator,
    ansatz: Ansatz,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    rows_per_pass: int | None = None,
) -> Callable[[Params, jax.Array], jax.Array]:
    """``local_energies(params, xs [B, n_sites]) -> [B]``, traceable (inside a jitted step).

    With the ansatz's cached ratios (the RBM), or samples split over several devices: the
    per-sample :func:`make_local_energy` mapped ``chunk_size`` samples at a time. Otherwise (a
    full evaluation of log psi per connected configuration: GCNN, ViT, projected states) only
    the rows that need it are evaluated: those with a nonzero matrix element and a flipped site
    (a Heisenberg bond with parallel spins, and the diagonal, are not), packed over the whole
    batch and taken ``rows_per_pass`` at a time by a loop whose trip count is their number
    over it. The J1-J2 model on the 6x6 lattice needs about half of its 145 rows a sample, the
    Heisenberg model about three quarters of its ``2 n_sites + 1``. Same value as the
    per-sample path to rounding (``tests/test_batch_local_energy.py``).

    ``rows_per_pass`` (default): :data:`CPU_PASS_ROWS` on a CPU (whose caches favour small
    passes), else the rows of ``chunk_size`` samples (``B / 8`` samples without it), at most
    the rows of ``chunk_size`` samples either way (the memory bound ``chunk_size`` sets).
    """
    if ansatz.local_updates is not None or n_shards(mesh) > 1:
        return chunked_map(make_local_energy(operator, ansatz), chunk_size, mesh)
    n_sites = operator.hilbert.n_sites
    flip_constant = operator.hilbert.flip_constant
    if rows_per_pass is None and jax.default_backend() == "cpu":
        rows_per_pass = CPU_PASS_ROWS
    log_psi_batch = chunked_map(ansatz.log_psi, chunk_size)
    log_psi_rows = jax.vmap(ansatz.log_psi, in_axes=(None, 0))

    def local_energies(params: Params, xs: jax.Array) -> jax.Array:
        xs = jnp.asarray(xs)  # a host array cannot be indexed by the loop's traced rows
        n_batch = xs.shape[0]
        sites, mels = jax.vmap(operator.flips)(xs)  # [B, C, k], [B, C]
        n_conn = mels.shape[1]
        needs, e_diag = split_rows(sites, mels, n_sites)
        needs = needs.reshape(-1)
        total = n_batch * n_conn
        pass_rows = (chunk_size or -(-n_batch // 8)) * n_conn
        if rows_per_pass is not None:
            pass_rows = min(pass_rows, max(1, int(rows_per_pass)))
        pass_rows = min(pass_rows, total)
        n_padded = -(-total // pass_rows) * pass_rows
        order = jnp.nonzero(needs, size=n_padded, fill_value=-1)[0]  # needed rows first
        n_passes = -(-jnp.sum(needs) // pass_rows)
        flat_sites = sites.reshape(total, -1)
        flat_mels = mels.reshape(total)
        log_psi_x = log_psi_batch(params, xs)
        acc = e_diag.astype(jnp.result_type(e_diag.dtype, log_psi_x.dtype))

        def one_pass(i: jax.Array, acc: jax.Array) -> jax.Array:
            rows = jax.lax.dynamic_slice(order, (i * pass_rows,), (pass_rows,))
            valid = rows >= 0
            rows = jnp.where(valid, rows, 0)
            sample = rows // n_conn
            x_conn = jax.vmap(lambda x, s: apply_flips(x, s, flip_constant))(
                xs[sample], flat_sites[rows])
            log_ratio = jnp.where(valid, log_psi_rows(params, x_conn) - log_psi_x[sample], 0)
            # padding rows (row 0, mel 0) add 0 to sample 0
            return acc.at[sample].add(jnp.where(valid, flat_mels[rows], 0) * jnp.exp(log_ratio))

        return jax.lax.fori_loop(0, n_passes, one_pass, acc)

    return local_energies
