"""Local energies E_loc(x) = sum_x' <x|H|x'> psi(x') / psi(x) of one configuration."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from nqs.ansatz import Ansatz, Params
from nqs.operator import DiscreteOperator, connected_configurations

LocalEnergyFn = Callable[[Params, jax.Array], jax.Array]


def make_local_energy(operator: DiscreteOperator, ansatz: Ansatz) -> LocalEnergyFn:
    """``local_energy(params, x [n_sites]) -> complex scalar``.

    Uses the ansatz's cached local updates when it has them (O(M) multiply-adds per connected
    configuration for the RBM), else evaluates log psi on every connected configuration in one
    batched call. Under ``jax.vmap`` over ``x`` the fast path's ``prepare(params)`` does not
    depend on ``x``, so it is evaluated once per batch, not once per configuration.
    """
    fast = ansatz.local_updates
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
