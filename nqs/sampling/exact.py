"""Exact enumeration: every configuration of the sector with weight ``|psi(x)|^2 / Z``.

No Monte Carlo noise: estimators become exact expectation values (small systems, tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz, Params
from nqs.hilbert import Hilbert
from nqs.sampling.base import Samples


@lru_cache(maxsize=8)
def _all_states(hilbert: Hilbert) -> np.ndarray:
    states = np.asarray(hilbert.all_states(), dtype=np.float64)
    states.setflags(write=False)
    return states


@dataclass(frozen=True)
class ExactSampler:
    """All states of ``hilbert`` with exact Born weights.

    Attributes:
      hilbert: the Hilbert space (must be enumerable, see ``hilbert.all_states``).
      chunk_size: configurations per batched ``log psi`` evaluation (bounds memory).
    """

    hilbert: Hilbert
    chunk_size: int = 16384

    is_exact: ClassVar[bool] = True

    def init(self, key: jax.Array, ansatz: Ansatz, params: Params) -> None:
        """No state."""
        return None

    def sample(
        self, key: jax.Array, ansatz: Ansatz, params: Params, state: None = None
    ) -> tuple[Samples, None, dict[str, jax.Array]]:
        """``Samples(all_states [n_states, n_sites], weights [n_states], n_chains=0)``."""
        states = jnp.asarray(_all_states(self.hilbert))
        weights = born_weights(ansatz, params, states, self.chunk_size)
        return Samples(states, weights, 0), None, {"acceptance": jnp.asarray(1.0)}


def batched_log_psi(
    ansatz: Ansatz, params: Params, x: jax.Array, chunk_size: int = 16384
) -> jax.Array:
    """``log psi`` of ``x [n, n_sites]`` -> ``[n]``, evaluated ``chunk_size`` rows at a time."""
    n = x.shape[0]
    fn = jax.vmap(ansatz.log_psi, in_axes=(None, 0))
    if n <= chunk_size:
        return fn(params, x)
    n_chunks = -(-n // chunk_size)
    pad = n_chunks * chunk_size - n
    xp = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad, x.shape[1]))], axis=0)
    out = jax.lax.map(lambda xc: fn(params, xc), xp.reshape(n_chunks, chunk_size, -1))
    return out.reshape(-1)[:n]


@partial(jax.jit, static_argnums=(0, 3))
def born_weights(
    ansatz: Ansatz, params: Params, x: jax.Array, chunk_size: int = 16384
) -> jax.Array:
    """``|psi(x)|^2 / sum |psi|^2`` over the rows of ``x`` (float64, max-subtracted)."""
    log_w = 2.0 * jnp.real(batched_log_psi(ansatz, params, x, chunk_size)).astype(jnp.float64)
    log_w = log_w - jnp.max(log_w)
    w = jnp.exp(log_w)
    return w / jnp.sum(w)
