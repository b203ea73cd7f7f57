"""A selected-CI vector as the prior of an autoregressive state (the ``"prior"`` start).

Any normalized vector ``t`` on a set of determinants is autoregressive: with tokens ``t_k`` per
spatial orbital (:mod:`nqs.models.autoregressive`),

    pi(t_k = a | t_<k) = W(t_<k, a) / W(t_<k),     W(prefix) = sum of t(x)^2 over the x in the
                                                    set that begin with ``prefix``,

and ``prod_k pi = t(x)^2`` on the set. Sorting the set by its tokens read as a base-4 number
puts every prefix's determinants in one contiguous range, so ``W`` is a difference of two
cumulative sums at two binary searches. The state is then

    p(t_k = a | t_<k) proportional to  pi(a | t_<k) + floor exp(f_k(a | t_<k))

with ``f`` the network's logits (its output layer starts at zero): a mixture of the vector's
conditionals and the network's. At the start ``p = t^2`` up to the ``floor`` that every other
determinant of the sector gets. The network decides where the vector has no weight (a token
that leaves the set; every token after it, where ``pi = 0``: ``p = softmax(f)``), and leaves
the vector's own conditionals as they are while ``floor exp(f)`` is small beside them. The
phase is the vector's sign on the set (fixed) and the phase network's elsewhere.

Like PauliNet's CI expansion under its neural Jastrow and backflow, the network starts from
the selected-CI state exactly instead of from a fit to it, and VMC optimizes its correction.
The table is a constant of the module, not a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs.errors import InputError

N_TOKENS = 4
#: Base-4 keys of the orbital tokens fit one unsigned 64-bit integer up to 32 orbitals.
MAX_PRIOR_ORBITALS = 32
#: Each conditional's floor: the determinants outside the vector start with
#: ``p(x) ~ floor^k`` (k tokens off the vector's prefixes), a share of the norm of order
#: ``2 n_orbitals floor`` (H2O / 6-31G fc, 5802 determinants: 0.0003 mHa of energy), about the
#: first-order weight outside a selected vector (1e-4), so that a fit of the network to it
#: starts near it (1e-8: the fit's logits have ~5 units further to go).
PRIOR_FLOOR = 1e-6


@dataclass(frozen=True, eq=False)  # hashed by identity: a constant of the compiled programs
class DeterminantTable:
    """A normalized vector on a set of determinants, sorted by token key.

    Attributes:
      n_orbitals: spatial orbitals (tokens per determinant).
      keys: ``[m]`` uint64, ``sum_k t_k 4^(n-1-k)``, increasing.
      cumulative: ``[m + 1]`` float64, ``cumulative[i] = sum_{j<i} t_j^2`` (``[-1] = 1``).
      negative: ``[m]`` bool, where the vector is negative.
    """

    n_orbitals: int
    keys: np.ndarray
    cumulative: np.ndarray
    negative: np.ndarray

    @property
    def size(self) -> int:
        """Determinants in the vector."""
        return int(self.keys.shape[0])


def _place_values(n_orbitals: int) -> np.ndarray:
    return (np.uint64(4) ** np.arange(n_orbitals - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)


def make_table(x: np.ndarray, t: np.ndarray, n_orbitals: int) -> DeterminantTable:
    """The table of ``t [m]`` on occupations ``x [m, 2 n_orbitals]`` (normalized here).

    Raises InputError past :data:`MAX_PRIOR_ORBITALS` orbitals, for repeated determinants or a
    zero vector."""
    if n_orbitals > MAX_PRIOR_ORBITALS:
        raise InputError(f"the selected-CI prior supports at most {MAX_PRIOR_ORBITALS} spatial "
                         f"orbitals, got {n_orbitals}; use --start selected")
    x = np.rint(np.asarray(x)).astype(np.int64)
    t = np.asarray(t, dtype=np.float64)
    tokens = (x[:, :n_orbitals] + 2 * x[:, n_orbitals:]).astype(np.uint64)
    keys = (tokens * _place_values(n_orbitals)[None, :]).sum(axis=1, dtype=np.uint64)
    order = np.argsort(keys, kind="stable")
    keys, t = keys[order], t[order]
    if np.any(keys[1:] == keys[:-1]):
        raise InputError("the prior's determinants must be distinct")
    norm = float(np.sum(t**2))
    if not norm > 0:
        raise InputError("the prior's vector is zero")
    cumulative = np.concatenate([[0.0], np.cumsum(t**2 / norm)])
    return DeterminantTable(n_orbitals, keys, cumulative, t < 0)


def table_arrays(table: DeterminantTable) -> dict[str, np.ndarray]:
    """The arrays that :func:`table_from_arrays` rebuilds ``table`` from, bit for bit."""
    return {"n_orbitals": np.asarray(table.n_orbitals), "keys": table.keys,
            "cumulative": table.cumulative, "negative": table.negative}


def table_from_arrays(arrays: dict[str, np.ndarray]) -> DeterminantTable:
    """Inverse of :func:`table_arrays`."""
    return DeterminantTable(int(arrays["n_orbitals"]), np.asarray(arrays["keys"], np.uint64),
                            np.asarray(arrays["cumulative"], np.float64),
                            np.asarray(arrays["negative"], bool))


def token_key(tokens: jax.Array) -> jax.Array:
    """tokens ``[n]`` int -> the uint64 base-4 key."""
    place = jnp.asarray(_place_values(tokens.shape[-1]))
    return jnp.sum(tokens.astype(jnp.uint64) * place, dtype=jnp.uint64)


def prior_conditionals(table: DeterminantTable, tokens: jax.Array) -> jax.Array:
    """``pi(t_k = a | t_<k)`` ``[n, 4]`` (row k from ``tokens[:k]``; zero where the table holds
    no determinant with that prefix)."""
    n = table.n_orbitals
    place = jnp.asarray(_place_values(n))
    keys = jnp.asarray(table.keys)
    cumulative = jnp.asarray(table.cumulative)
    digits = tokens.astype(jnp.uint64) * place
    prefix = jnp.cumsum(digits, dtype=jnp.uint64) - digits  # key of tokens[:k], zeros after
    low = prefix[:, None] + jnp.arange(N_TOKENS, dtype=jnp.uint64)[None, :] * place[:, None]
    high = low + (place[:, None] - jnp.uint64(1))
    lo = jnp.searchsorted(keys, low.reshape(-1), side="left").reshape(n, N_TOKENS)
    hi = jnp.searchsorted(keys, high.reshape(-1), side="right").reshape(n, N_TOKENS)
    mass = cumulative[hi] - cumulative[lo]
    parent = jnp.sum(mass, axis=-1, keepdims=True)
    return jnp.where(parent > 0, mass / jnp.where(parent > 0, parent, 1.0), 0.0)


def prior_sign(table: DeterminantTable, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(in_table, negative)`` bools of one determinant's tokens ``[n]``."""
    keys = jnp.asarray(table.keys)
    key = token_key(tokens)
    i = jnp.minimum(jnp.searchsorted(keys, key, side="left"), table.size - 1)
    found = keys[i] == key
    return found, found & jnp.asarray(table.negative)[i]


class PriorBackbone(nn.Module):
    """Logits ``log(pi + floor exp(f))``: the table's conditionals mixed with a backbone's
    logits ``f`` (tokens [n] -> [n, 4])."""

    net: nn.Module
    table: DeterminantTable
    floor: float = PRIOR_FLOOR

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        logits = self.net(tokens)
        prior = jnp.log(prior_conditionals(self.table, tokens)).astype(logits.dtype)
        return jnp.logaddexp(prior, logits + np.log(self.floor))


class PriorPhase(nn.Module):
    """phi(x): pi where the table's vector is negative, 0 where positive, and the phase
    network's ``phase(x)`` on determinants outside the table."""

    net: nn.Module
    table: DeterminantTable

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n = self.table.n_orbitals
        tokens = (jnp.round(x[:n]).astype(jnp.int32) + 2 * jnp.round(x[n:]).astype(jnp.int32))
        found, negative = prior_sign(self.table, tokens)
        outside = self.net(x)
        return jnp.where(found, jnp.where(negative, jnp.pi, 0.0).astype(outside.dtype), outside)
