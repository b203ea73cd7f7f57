"""Local energies E_loc(x) = sum_x' <x|H|x'> psi(x') / psi(x) of one configuration."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from nqs.ansatz import Ansatz, Params
from nqs.operator import DiscreteOperator, connected_configurations, matches_terms

LocalEnergyFn = Callable[[Params, jax.Array], jax.Array]


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
