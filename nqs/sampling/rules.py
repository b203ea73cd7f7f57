"""Metropolis transition rules: propose flipped sites for ONE chain.

    sites = rule.propose(key, x)     # x [n_sites] -> int32 [k], padding index = n_sites

Every rule is symmetric (``q(x -> x') = q(x' -> x)``), so the Metropolis acceptance is
``min(1, |psi(x')/psi(x)|^2)``. A proposal made only of padding is the identity move. Rules are
frozen dataclasses holding tuples, hence hashable (samplers are static arguments of ``jit``).

Rules whose random choice does not depend on the state (:class:`LocalRule`,
:class:`ExchangeRule`) also offer the split form

    noise = rule.draw(key, n_steps, n_sites)          # [n_steps, ...], one batched draw
    sites = rule.propose_drawn(noise[s], x)           # deterministic, for step s

which the Metropolis sampler uses to draw the random numbers of a whole sweep at once (a
per-step ``jax.random`` call costs as much as the RBM ratio itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from nqs.errors import InputError
from nqs.hilbert import FermionHilbert, Hilbert, SpinHilbert


class Rule(Protocol):
    """A symmetric proposal of flipped sites."""

    def propose(self, key: jax.Array, x: jax.Array) -> jax.Array:
        """Flipped sites, int32 ``[k]`` (``n_sites`` = padding), for one ``x [n_sites]``."""
        ...

    def check(self, hilbert: Hilbert) -> None:
        """Raise :class:`InputError` if the rule cannot be used on ``hilbert``."""
        ...


@dataclass(frozen=True)
class LocalRule:
    """Flip one uniformly random site (``k = 1``). Does not conserve S^z or particle numbers."""

    def propose(self, key: jax.Array, x: jax.Array) -> jax.Array:
        """Flipped sites, int32 ``[k]`` (``n_sites`` = padding), for one ``x [n_sites]``."""
        return self.propose_drawn(self.draw(key, 1, x.shape[-1])[0], x)

    def draw(self, key: jax.Array, n_steps: int, n_sites: int) -> jax.Array:
        """Sites of ``n_steps`` proposals, int32 ``[n_steps, 1]``."""
        return jax.random.randint(key, (n_steps, 1), 0, n_sites, dtype=jnp.int32)

    def propose_drawn(self, noise: jax.Array, x: jax.Array) -> jax.Array:
        del x
        return noise

    def check(self, hilbert: Hilbert) -> None:
        """Raise :class:`InputError` if the rule cannot be used on ``hilbert``."""
        constrained = isinstance(hilbert, FermionHilbert) or (
            isinstance(hilbert, SpinHilbert) and hilbert.total_sz is not None
        )
        if constrained:
            raise InputError(
                "LocalRule changes S^z / particle numbers; use ExchangeRule or HopRule "
                "on a Hilbert space with a fixed sector"
            )


@dataclass(frozen=True)
class ExchangeRule:
    """Exchange the values on a uniformly random pair of sites (``k = 2``).

    ``pairs`` is an ``int [n_pairs, 2]`` array or sequence (e.g. the lattice bonds), stored as a
    tuple of tuples. If the two values are equal the move is the identity (padding).
    """

    pairs: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        arr = np.asarray(self.pairs, dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
            raise InputError(f"exchange pairs must have shape [n_pairs, 2], got {arr.shape}")
        if np.any(arr[:, 0] == arr[:, 1]) or np.any(arr < 0):
            raise InputError("exchange pairs must join two distinct non-negative sites")
        object.__setattr__(self, "pairs", tuple((int(i), int(j)) for i, j in arr))

    def propose(self, key: jax.Array, x: jax.Array) -> jax.Array:
        """Flipped sites, int32 ``[k]`` (``n_sites`` = padding), for one ``x [n_sites]``."""
        return self.propose_drawn(self.draw(key, 1, x.shape[-1])[0], x)

    def draw(self, key: jax.Array, n_steps: int, n_sites: int) -> jax.Array:
        """Pair indices of ``n_steps`` proposals, int32 ``[n_steps]``."""
        del n_sites
        return jax.random.randint(key, (n_steps,), 0, len(self.pairs), dtype=jnp.int32)

    def propose_drawn(self, noise: jax.Array, x: jax.Array) -> jax.Array:
        n_sites = x.shape[-1]
        pair = jnp.asarray(np.asarray(self.pairs, dtype=np.int32))[noise]
        same = x[pair[0]] == x[pair[1]]
        return jnp.where(same, jnp.full((2,), n_sites, jnp.int32), pair)

    def check(self, hilbert: Hilbert) -> None:
        """Raise :class:`InputError` if the rule cannot be used on ``hilbert``."""
        if max(max(p) for p in self.pairs) >= hilbert.n_sites:
            raise InputError(f"exchange pair site out of range for {hilbert.n_sites} sites")


@dataclass(frozen=True)
class HopRule:
    """Move one "particle" inside a uniformly random group of sites (``k = 2``).

    Picks a group uniformly, then a uniformly random site with ``x == occupied_value`` and a
    uniformly random site with ``x != occupied_value`` in that group, and flips both, so the
    number of occupied sites of every group is conserved. A full or empty group gives the
    identity. The proposal probability ``1 / (n_groups n_occ n_empty)`` is the same both ways.

    Groups must be disjoint. Spins with fixed S^z: ``HopRule(((0, ..., n-1),), 1.0)``;
    molecules: ``HopRule((alpha orbitals, beta orbitals), 1.0)`` (see :func:`default_rule`).
    """

    groups: tuple[tuple[int, ...], ...]
    occupied_value: float = 1.0

    def __post_init__(self) -> None:
        groups = tuple(tuple(int(i) for i in np.asarray(g).ravel()) for g in self.groups)
        if not groups or any(len(g) == 0 for g in groups):
            raise InputError("HopRule needs at least one non-empty group of sites")
        flat = [i for g in groups for i in g]
        if len(set(flat)) != len(flat) or min(flat) < 0:
            raise InputError("HopRule groups must be disjoint sets of non-negative sites")
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "occupied_value", float(self.occupied_value))

    def _table(self, n_sites: int) -> np.ndarray:
        """``int32 [n_groups, max_len]`` group members padded with ``n_sites``."""
        width = max(len(g) for g in self.groups)
        table = np.full((len(self.groups), width), n_sites, dtype=np.int32)
        for r, g in enumerate(self.groups):
            table[r, : len(g)] = g
        return table

    def propose(self, key: jax.Array, x: jax.Array) -> jax.Array:
        """Flipped sites, int32 ``[k]`` (``n_sites`` = padding), for one ``x [n_sites]``."""
        n_sites = x.shape[-1]
        table = jnp.asarray(self._table(n_sites))
        k_group, k_hop = jax.random.split(key)
        g = jax.random.randint(k_group, (), 0, table.shape[0])
        return _hop(k_hop, x, table[g], self.occupied_value)

    def check(self, hilbert: Hilbert) -> None:
        """Raise :class:`InputError` if the rule cannot be used on ``hilbert``."""
        if max(max(g) for g in self.groups) >= hilbert.n_sites:
            raise InputError(f"HopRule site out of range for {hilbert.n_sites} sites")
        if self.occupied_value not in hilbert.local_values:
            raise InputError(
                f"occupied_value {self.occupied_value} is not a local value {hilbert.local_values}"
            )


def _hop(key: jax.Array, x: jax.Array, members: jax.Array, occupied_value: float) -> jax.Array:
    """One particle hop inside ``members`` (padded with n_sites): sites int32 [2] or padding."""
    n_sites = x.shape[-1]
    k_occ, k_emp = jax.random.split(key)
    valid = members < n_sites
    values = x[jnp.minimum(members, n_sites - 1)]
    occupied = valid & (values == occupied_value)
    empty = valid & (values != occupied_value)
    i = _random_true(k_occ, occupied)
    j = _random_true(k_emp, empty)
    possible = jnp.any(occupied) & jnp.any(empty)
    sites = jnp.stack([members[i], members[j]]).astype(jnp.int32)
    return jnp.where(possible, sites, jnp.full((2,), n_sites, jnp.int32))


@dataclass(frozen=True)
class PairHopRule(HopRule):
    """:class:`HopRule` moves mixed with simultaneous hops in two groups (``k = 4``).

    With probability ``pair_probability`` one particle hops in each of two distinct random
    groups at once (for molecules: an alpha and a beta electron, the move that reaches the
    doubly excited determinants near Hartree-Fock, whose single excitations can have vanishing
    amplitude); otherwise one particle hops in one random group. The choice does not depend on
    the state, and each hop's probability ``1 / (n_occ n_empty)`` is the same both ways, so the
    proposal is symmetric. Needs at least two groups.
    """

    pair_probability: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.groups) < 2:
            raise InputError("PairHopRule needs at least two groups")
        if not 0.0 <= self.pair_probability <= 1.0:
            raise InputError(f"pair_probability must be in [0, 1], got {self.pair_probability}")

    def propose(self, key: jax.Array, x: jax.Array) -> jax.Array:
        """Flipped sites, int32 ``[k]`` (``n_sites`` = padding), for one ``x [n_sites]``."""
        n_sites = x.shape[-1]
        table = jnp.asarray(self._table(n_sites))
        k_kind, k_groups, k_first, k_second = jax.random.split(key, 4)
        g1, g2 = jax.random.choice(k_groups, table.shape[0], (2,), replace=False)
        first = _hop(k_first, x, table[g1], self.occupied_value)
        second = _hop(k_second, x, table[g2], self.occupied_value)
        pair = jax.random.uniform(k_kind) < self.pair_probability
        second = jnp.where(pair, second, jnp.full((2,), n_sites, jnp.int32))
        return jnp.concatenate([first, second])


def _random_true(key: jax.Array, mask: jax.Array) -> jax.Array:
    """Index of a uniformly random ``True`` entry of ``mask`` (arbitrary if none), O(n)."""
    u = jax.random.uniform(key, mask.shape)
    return jnp.argmax(jnp.where(mask, u, -1.0))


def default_rule(hilbert: Hilbert) -> LocalRule | HopRule:
    """The natural sector-preserving rule.

    * :class:`SpinHilbert` without constraint: :class:`LocalRule`;
    * fixed S^z: :class:`HopRule` over all sites (exchange of an up and a down spin anywhere);
    * :class:`FermionHilbert`: :class:`HopRule` with the alpha and the beta orbitals as groups.
    """
    if isinstance(hilbert, FermionHilbert):
        n = hilbert.n_orbitals
        return HopRule((tuple(range(n)), tuple(range(n, 2 * n))), 1.0)
    if hilbert.total_sz is None:
        return LocalRule()
    return HopRule((tuple(range(hilbert.n_sites)),), 1.0)
