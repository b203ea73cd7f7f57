"""Metropolis transition rules: propose flipped sites for ONE chain.

    sites = rule.propose(key, x)     # x [n_sites] -> int32 [k], padding index = n_sites

Rules are symmetric (``q(x -> x') = q(x' -> x)``), so the Metropolis acceptance is
``min(1, |psi(x')/psi(x)|^2)``, except those with ``symmetric = False`` (:class:`ConnectedRule`),
which give ``(sites, log q(x' -> x) - log q(x -> x'))`` from ``propose_with_log_ratio`` for the
Metropolis-Hastings acceptance. A proposal made only of padding is the identity move. Rules are
frozen dataclasses holding tuples, hence hashable (samplers are static arguments of ``jit``).

Rules whose random choice does not depend on the state (:class:`LocalRule`,
:class:`ExchangeRule`) also offer the split form

    noise = rule.draw(key, n_steps, n_sites)          # [n_steps, ...], one batched draw
    sites = rule.propose_drawn(noise[s], x)           # deterministic, for step s

which the Metropolis sampler uses to draw the random numbers of a whole sweep at once (a
per-step ``jax.random`` call costs as much as the RBM ratio itself); the asymmetric
:class:`AntiparallelExchangeRule` offers ``propose_drawn_with_log_ratio(noise[s], x)`` likewise.
The moves of the first two are also a static list of spin-flip patterns (:class:`nqs.operator.FlipTerms`):

    terms = rule.flip_terms(n_sites)                  # FlipTerms [T, k]
    t = rule.term_index(noise[s])                     # the pattern step s proposes

so an ansatz with :class:`nqs.ansatz.TermUpdates` can tabulate every move once per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from nqs.errors import InputError
from nqs.hilbert import FermionHilbert, Hilbert, SpinHilbert
from nqs.operator import FlipTerms


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
        """Flipped sites, int32 ``[k]``, from one proposal's pre-drawn ``noise`` (see ``draw``)."""
        del x
        return noise

    def flip_terms(self, n_sites: int) -> FlipTerms:
        """The moves as flip patterns: site ``i`` alone, for every ``x``."""
        return FlipTerms(np.arange(n_sites, dtype=np.int32)[:, None], np.ones((n_sites, 1)))

    def term_index(self, noise: jax.Array) -> jax.Array:
        """The pattern (a site) of one proposal's pre-drawn ``noise [1]``."""
        return noise[0]

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
        """Flipped sites, int32 ``[k]``, from one proposal's pre-drawn ``noise`` (see ``draw``)."""
        n_sites = x.shape[-1]
        pair = jnp.asarray(np.asarray(self.pairs, dtype=np.int32))[noise]
        same = x[pair[0]] == x[pair[1]]
        return jnp.where(same, jnp.full((2,), n_sites, jnp.int32), pair)

    def flip_terms(self, n_sites: int) -> FlipTerms:
        """The moves as flip patterns: pair ``p`` with antiparallel spins (signs ``(1, -1)``);
        on parallel spins the move is the identity."""
        del n_sites
        pairs = np.asarray(self.pairs, dtype=np.int32)
        return FlipTerms(pairs, np.tile([1.0, -1.0], (len(pairs), 1)))

    def term_index(self, noise: jax.Array) -> jax.Array:
        """The pattern (a pair) of one proposal's pre-drawn ``noise`` (a pair index)."""
        return noise

    def check(self, hilbert: Hilbert) -> None:
        """Raise :class:`InputError` if the rule cannot be used on ``hilbert``."""
        if max(max(p) for p in self.pairs) >= hilbert.n_sites:
            raise InputError(f"exchange pair site out of range for {hilbert.n_sites} sites")


@dataclass(frozen=True)
class AntiparallelExchangeRule:
    """Exchange the values on a uniformly random pair of *unequal* sites (asymmetric, ``k = 2``).

    :class:`ExchangeRule` picks any pair, and on equal values (parallel spins: about 28% of the
    nearest-neighbour bonds of the square-lattice antiferromagnet, 38% on the triangular one)
    its move is the identity, which costs an evaluation of ``log psi`` all the same for an
    ansatz without per-pattern tables. This rule draws among the ``n(x)`` pairs of ``x`` whose
    values differ, so every proposal moves: ``q(x -> x') = 1 / n(x)``, and the
    Metropolis-Hastings correction is ``log q(x' -> x) - log q(x -> x') = log n(x) - log n(x')``
    (the exchanged pair differs in ``x'`` too). ``pairs`` as :class:`ExchangeRule`; a
    configuration with all pairs equal stays.
    """

    pairs: tuple[tuple[int, int], ...]

    symmetric: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "pairs", ExchangeRule(self.pairs).pairs)  # same validation

    def _unequal(self, x: jax.Array, pairs: jax.Array) -> jax.Array:
        """bool ``[n_pairs]``: the pairs (int32 ``[n_pairs, 2]``) whose two values differ."""
        return x[pairs[:, 0]] != x[pairs[:, 1]]

    def draw(self, key: jax.Array, n_steps: int, n_sites: int) -> jax.Array:
        """Uniform numbers in ``[0, 1)`` of ``n_steps`` proposals, float64 ``[n_steps]``."""
        del n_sites
        return jax.random.uniform(key, (n_steps,), dtype=jnp.float64)

    def propose_drawn_with_log_ratio(self, noise: jax.Array, x: jax.Array
                                     ) -> tuple[jax.Array, jax.Array]:
        """``(sites int32 [2], log q(x'->x) - log q(x->x'))`` for one ``x [n_sites]`` from one
        proposal's pre-drawn uniform ``noise`` (see ``draw``): the ``floor(noise n(x))``-th
        unequal pair."""
        n_sites = x.shape[-1]
        pairs = jnp.asarray(np.asarray(self.pairs, dtype=np.int32))
        unequal = self._unequal(x, pairs)
        n_x = jnp.sum(unequal)
        k = jnp.minimum(jnp.floor(noise * n_x).astype(jnp.int32), n_x - 1)
        chosen = jnp.argmax(jnp.cumsum(unequal) > k)
        sites = jnp.where(n_x > 0, pairs[chosen], jnp.full((2,), n_sites, jnp.int32))
        x_new = x.at[sites].set(x[sites[::-1]], mode="drop")
        n_new = jnp.sum(self._unequal(x_new, pairs))
        log_ratio = jnp.where(
            n_x > 0, jnp.log(jnp.maximum(n_x, 1)) - jnp.log(jnp.maximum(n_new, 1)), 0.0)
        return sites, log_ratio

    def propose_with_log_ratio(self, key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(sites int32 [2], log q(x'->x) - log q(x->x'))`` for one ``x [n_sites]``."""
        return self.propose_drawn_with_log_ratio(self.draw(key, 1, x.shape[-1])[0], x)

    def propose(self, key: jax.Array, x: jax.Array) -> jax.Array:
        """Flipped sites, int32 ``[k]`` (``n_sites`` = padding), for one ``x [n_sites]``."""
        return self.propose_with_log_ratio(key, x)[0]

    def check(self, hilbert: Hilbert) -> None:
        """Raise :class:`InputError` if the rule cannot be used on ``hilbert``."""
        ExchangeRule(self.pairs).check(hilbert)


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


def connected_excitations(
    h1: np.ndarray, h2: np.ndarray, tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Spin-conserving single and double excitations that the integrals can connect.

    Spin-orbital sites as in :class:`FermionHilbert` (alpha ``p``, beta ``n + p``). Returns

    * ``singles`` int32 [n_s, 2]: site pairs ``(i, a)`` of the same spin, both orders, such that
      ``|h1[i, a]|``, some ``|(ia|kk)|`` or some ``|(ik|ka)|`` exceeds ``tol`` (a superset of the
      pairs whose Slater-Condon element can be non-zero for some determinant);
    * ``doubles`` int32 [n_d, 4]: ``(i, j, a, b)`` with ``i < j``, ``a < b``, ``{i, j}`` and
      ``{a, b}`` disjoint, the same number of alpha sites in both pairs, and an exchange or
      direct integral ``(ai|bj)``, ``(aj|bi)`` of matching spins above ``tol``; both directions.

    The criteria are symmetric in the two directions (real orbitals: (pq|rs) = (qp|rs) = ...),
    so a determinant can propose ``x'`` exactly when ``x'`` can propose ``x``.

    Args:
      h1: ``[n, n]`` one-electron integrals (Hartree).
      h2: ``[n, n, n, n]`` two-electron integrals ``(pq|rs)``, chemists' notation (Hartree).
      tol: screening threshold (Hartree).
    """
    h1 = np.asarray(h1, dtype=np.float64)
    h2 = np.asarray(h2, dtype=np.float64)
    n = h1.shape[0]
    coulomb = np.einsum("iakk->iak", h2)  # (ia|kk)
    exchange = np.einsum("ikka->iak", h2)  # (ik|ka)
    coupled = (
        (np.abs(h1) > tol)
        | np.any(np.abs(coulomb) > tol, axis=2)
        | np.any(np.abs(exchange) > tol, axis=2)
    )
    np.fill_diagonal(coupled, False)
    singles = [
        (s * n + i, s * n + a)
        for s in (0, 1)
        for i in range(n)
        for a in range(n)
        if coupled[i, a]
    ]
    big = np.abs(h2) > tol  # big[a, i, b, j]: (ai|bj)
    doubles = []
    n_sites = 2 * n
    for i in range(n_sites):
        for j in range(i + 1, n_sites):
            for a in range(n_sites):
                for b in range(a + 1, n_sites):
                    if len({i, j, a, b}) < 4:
                        continue
                    si, sj, sa, sb = (k // n for k in (i, j, a, b))
                    if si + sj != sa + sb:
                        continue
                    pi, pj, pa, pb = (k % n for k in (i, j, a, b))
                    # a <- i with b <- j (direct) needs matching spins, likewise the exchange
                    ok = (sa == si and sb == sj and big[pa, pi, pb, pj]) or (
                        sa == sj and sb == si and big[pa, pj, pb, pi]
                    )
                    if ok:
                        doubles.append((i, j, a, b))
    return (
        np.asarray(singles, dtype=np.int32).reshape(-1, 2),
        np.asarray(doubles, dtype=np.int32).reshape(-1, 4),
    )



@dataclass(frozen=True, eq=False)
class ConnectedRule:
    """Electron moves guided by the Hamiltonian's connectivity (asymmetric, ``k = 4``).

    With probability ``1 - hop_probability`` the proposal is uniform among the excitations of
    ``x`` (rows of ``singles`` / ``doubles`` from :func:`connected_excitations`) that are
    possible from ``x`` (sources occupied, targets empty): ``q(x -> x') = 1 / n(x)``. The number
    of possible excitations differs between ``x`` and ``x'``, so the rule returns the
    Metropolis-Hastings correction ``log q(x' -> x) - log q(x -> x') = log n(x) - log n(x')``.
    Otherwise (probability ``hop_probability``, independent of ``x``) it makes a symmetric
    :class:`PairHopRule` move over all orbitals, which keeps the chain ergodic outside the
    determinants the integrals connect (e.g. other point-group symmetries). Each of the two
    kernels satisfies detailed balance, hence so does the mixture.

    Attributes:
      singles: int32 ``[n_s, 2]`` site pairs ``(i, a)`` (electron ``i -> a``).
      doubles: int32 ``[n_d, 4]`` ``(i, j, a, b)``: electrons ``i, j -> a, b``.
      n_orbitals: spatial orbitals (sites ``0..n-1`` alpha, ``n..2n-1`` beta).
      hop_probability: share of uniform pair-hop moves, in ``[0, 1)``.
    """

    singles: np.ndarray
    doubles: np.ndarray
    n_orbitals: int
    hop_probability: float = 0.1

    symmetric: ClassVar[bool] = False

    def __post_init__(self) -> None:
        singles = np.asarray(self.singles, dtype=np.int32).reshape(-1, 2)
        doubles = np.asarray(self.doubles, dtype=np.int32).reshape(-1, 4)
        n_sites = 2 * int(self.n_orbitals)
        for table in (singles, doubles):
            if table.size and (table.min() < 0 or table.max() >= n_sites):
                raise InputError(f"ConnectedRule site out of range for {n_sites} sites")
        if not 0.0 <= self.hop_probability < 1.0:
            raise InputError(f"hop_probability must be in [0, 1), got {self.hop_probability}")
        singles.setflags(write=False)
        doubles.setflags(write=False)
        object.__setattr__(self, "singles", singles)
        object.__setattr__(self, "doubles", doubles)
        object.__setattr__(self, "n_orbitals", int(self.n_orbitals))
        object.__setattr__(self, "hop_probability", float(self.hop_probability))

    @classmethod
    def from_integrals(
        cls, h1: np.ndarray, h2: np.ndarray, tol: float = 1e-8, hop_probability: float = 0.1
    ) -> ConnectedRule:
        """The rule for the Hamiltonian with integrals ``h1`` [n, n], ``h2`` [n, n, n, n] (Ha)."""
        singles, doubles = connected_excitations(h1, h2, tol)
        return cls(singles, doubles, np.shape(h1)[0], hop_probability)

    def _identity(self) -> tuple:
        return (self.singles.tobytes(), self.doubles.tobytes(), self.n_orbitals,
                self.hop_probability)

    def __hash__(self) -> int:  # static argument of jit: hash by content
        return hash(self._identity())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConnectedRule) and self._identity() == other._identity()

    def _moves(self, n_sites: int) -> np.ndarray:
        """int32 ``[n_s + n_d, 4]``: the flipped sites of every excitation (padded)."""
        pad = np.full((len(self.singles), 2), n_sites, dtype=np.int32)
        return np.concatenate([np.concatenate([self.singles, pad], axis=1), self.doubles])

    def _possible(self, x: jax.Array) -> jax.Array:
        """bool ``[n_s + n_d]``: excitations whose sources are occupied and targets empty."""
        occ = x > 0.5
        s = jnp.asarray(self.singles)
        d = jnp.asarray(self.doubles)
        single_ok = occ[s[:, 0]] & ~occ[s[:, 1]]
        double_ok = occ[d[:, 0]] & occ[d[:, 1]] & ~occ[d[:, 2]] & ~occ[d[:, 3]]
        return jnp.concatenate([single_ok, double_ok])

    def propose_with_log_ratio(self, key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(sites int32 [4], log q(x'->x) - log q(x->x'))`` for one ``x [2 n_orbitals]``."""
        n_sites = x.shape[-1]
        k_kind, k_move, k_hop = jax.random.split(key, 3)
        possible = self._possible(x)
        n_x = jnp.sum(possible)
        sites = jnp.asarray(self._moves(n_sites))[_random_true(k_move, possible)]
        # no possible excitation: stay (then no x' can propose x either)
        sites = jnp.where(n_x > 0, sites, jnp.full((4,), n_sites, jnp.int32))
        x_new = x.at[sites].set(1.0 - x[sites], mode="drop")
        n_new = jnp.sum(self._possible(x_new))
        log_ratio = jnp.where(
            n_x > 0, jnp.log(jnp.maximum(n_x, 1)) - jnp.log(jnp.maximum(n_new, 1)), 0.0
        )
        n = self.n_orbitals
        hop = PairHopRule((tuple(range(n)), tuple(range(n, 2 * n))), 1.0).propose(k_hop, x)
        use_hop = jax.random.uniform(k_kind) < self.hop_probability
        return (
            jnp.where(use_hop, hop, sites).astype(jnp.int32),
            jnp.where(use_hop, 0.0, log_ratio).astype(jnp.float64),
        )

    def propose(self, key: jax.Array, x: jax.Array) -> jax.Array:
        """The sites of :meth:`propose_with_log_ratio` (the move alone is not symmetric)."""
        return self.propose_with_log_ratio(key, x)[0]

    def check(self, hilbert: Hilbert) -> None:
        """Raise :class:`InputError` if the rule cannot be used on ``hilbert``."""
        if not isinstance(hilbert, FermionHilbert) or hilbert.n_orbitals != self.n_orbitals:
            raise InputError(
                f"ConnectedRule for {self.n_orbitals} orbitals needs a FermionHilbert with as many"
            )
