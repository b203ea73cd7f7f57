"""Discrete Hilbert spaces: spins and spin orbitals.

A configuration is a float array ``x`` of shape ``[n_sites]``:

* spins: ``x_i in {-1, +1}`` (+1 is spin up, the eigenvalue of sigma^z);
* spin orbitals: ``x_i in {0, 1}`` (occupation numbers), alpha orbitals first
  (sites ``0 .. n_orbitals-1``), then beta orbitals (``n_orbitals .. 2 n_orbitals-1``).

Every move of the engine (a Metropolis proposal, a connected configuration of a Hamiltonian)
is a set of *flipped sites*: site ``i`` goes to ``flip_constant - x_i``, i.e. ``-x_i`` for spins
and ``1 - x_i`` for occupations. Site index ``n_sites`` means "no flip" (padding).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from nqs.errors import InputError

MAX_ENUMERATED_STATES = 2_000_000

#: Most sites an int64 configuration key holds (bit i = site i; bit 63 would be the sign).
MAX_INT_KEY_SITES = 63


@dataclass(frozen=True)
class SpinHilbert:
    """``n_sites`` spins 1/2 with values ``+-1``; optionally fixed total ``S^z`` (in units of 1/2).

    ``total_sz`` is ``sum_i x_i`` (twice the physical S^z), e.g. 0 for the singlet sector.
    """

    n_sites: int
    total_sz: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.n_sites, int | np.integer) or self.n_sites <= 0:
            raise InputError(f"number of spins must be a positive integer, got {self.n_sites}")
        if self.total_sz is not None:
            if (self.n_sites - self.total_sz) % 2 != 0 or abs(self.total_sz) > self.n_sites:
                raise InputError(
                    f"total S^z = {self.total_sz}/2 is impossible for {self.n_sites} spins"
                    + (" (an odd number of spins cannot have S^z = 0)" if self.total_sz == 0 else "")
                )

    flip_constant: ClassVar[float] = 0.0
    local_values: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    @property
    def n_up(self) -> int | None:
        """Number of up spins when ``total_sz`` is fixed."""
        if self.total_sz is None:
            return None
        return (self.n_sites + self.total_sz) // 2

    @property
    def n_states(self) -> int:
        """Number of configurations: 2^n_sites, or C(n_sites, n_up) in a fixed-S^z sector."""
        if self.total_sz is None:
            return 2**self.n_sites
        return math.comb(self.n_sites, self.n_up)

    def random_state(self, key: jax.Array, n: int) -> jax.Array:
        """``n`` uniformly random configurations in the sector, shape ``[n, n_sites]``."""
        if self.total_sz is None:
            bits = jax.random.bernoulli(key, 0.5, (n, self.n_sites))
            return jnp.where(bits, 1.0, -1.0)
        base = jnp.where(jnp.arange(self.n_sites) < self.n_up, 1.0, -1.0)
        keys = jax.random.split(key, n)
        return jax.vmap(lambda k: jax.random.permutation(k, base))(keys)

    def all_states(self) -> np.ndarray:
        """Every configuration of the sector, shape ``[n_states, n_sites]`` (float64)."""
        _check_enumerable(self.n_states)
        if self.total_sz is None:
            idx = np.arange(2**self.n_sites)
            bits = (idx[:, None] >> np.arange(self.n_sites - 1, -1, -1)[None, :]) & 1
            # site 0 is the most significant bit; bit 1 means spin down (NetKet's ordering)
            return np.where(bits == 1, -1.0, 1.0)
        return _combinations(self.n_sites, self.n_up, up=1.0, down=-1.0)


@dataclass(frozen=True)
class FermionHilbert:
    """``2 n_orbitals`` spin orbitals (alpha block, then beta block) with fixed ``n_alpha``, ``n_beta``."""

    n_orbitals: int
    n_alpha: int
    n_beta: int

    flip_constant: ClassVar[float] = 1.0
    local_values: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.n_orbitals <= 0:
            raise InputError(f"number of orbitals must be positive, got {self.n_orbitals}")
        for name, n in (("alpha", self.n_alpha), ("beta", self.n_beta)):
            if n < 0 or n > self.n_orbitals:
                raise InputError(
                    f"{n} {name} electrons do not fit in {self.n_orbitals} spatial orbitals"
                )

    @property
    def n_sites(self) -> int:
        """Number of spin orbitals, 2 n_orbitals (alpha block, then beta block)."""
        return 2 * self.n_orbitals

    @property
    def n_electrons(self) -> int:
        """N_alpha + N_beta."""
        return self.n_alpha + self.n_beta

    @property
    def n_states(self) -> int:
        """Number of determinants, C(n_orbitals, N_alpha) C(n_orbitals, N_beta)."""
        return math.comb(self.n_orbitals, self.n_alpha) * math.comb(self.n_orbitals, self.n_beta)

    def hartree_fock_state(self) -> np.ndarray:
        """The aufbau determinant: lowest ``n_alpha`` alpha and ``n_beta`` beta orbitals filled."""
        x = np.zeros(self.n_sites)
        x[: self.n_alpha] = 1.0
        x[self.n_orbitals : self.n_orbitals + self.n_beta] = 1.0
        return x

    def random_state(self, key: jax.Array, n: int) -> jax.Array:
        """``n`` uniformly random determinants, shape ``[n, 2 n_orbitals]``."""
        ka, kb = jax.random.split(key)
        base_a = (jnp.arange(self.n_orbitals) < self.n_alpha).astype(float)
        base_b = (jnp.arange(self.n_orbitals) < self.n_beta).astype(float)
        xa = jax.vmap(lambda k: jax.random.permutation(k, base_a))(jax.random.split(ka, n))
        xb = jax.vmap(lambda k: jax.random.permutation(k, base_b))(jax.random.split(kb, n))
        return jnp.concatenate([xa, xb], axis=1)

    def all_states(self) -> np.ndarray:
        """Every determinant, shape ``[n_states, 2 n_orbitals]``; alpha string varies slowest."""
        _check_enumerable(self.n_states)
        a = _combinations(self.n_orbitals, self.n_alpha, up=1.0, down=0.0)
        b = _combinations(self.n_orbitals, self.n_beta, up=1.0, down=0.0)
        return np.concatenate(
            [np.repeat(a, len(b), axis=0), np.tile(b, (len(a), 1))], axis=1
        )


Hilbert = SpinHilbert | FermionHilbert


def _combinations(n: int, k: int, up: float, down: float) -> np.ndarray:
    out = np.full((math.comb(n, k), n), down)
    for row, occ in enumerate(itertools.combinations(range(n), k)):
        out[row, list(occ)] = up
    return out


def _check_enumerable(n_states: int) -> None:
    if n_states > MAX_ENUMERATED_STATES:
        raise InputError(
            f"the space has {n_states} states, too many to enumerate "
            f"(limit {MAX_ENUMERATED_STATES}); use Monte Carlo sampling"
        )


def apply_flips(x: jax.Array, sites: jax.Array, flip_constant: float) -> jax.Array:
    """Configuration ``x`` with ``sites`` flipped (``x_i -> c - x_i``); index ``n_sites`` is padding.

    Args:
      x: ``[n_sites]`` one configuration.
      sites: ``[k]`` int32 site indices; entries equal to ``n_sites`` are ignored.
    """
    return x.at[sites].set(flip_constant - x[sites], mode="drop")


def state_index(hilbert: Hilbert, states: np.ndarray) -> dict[bytes, int]:
    """Map from a configuration's bytes to its row in ``hilbert.all_states()`` (tests, dense matrices)."""
    return {np.asarray(s, dtype=np.int8).tobytes(): i for i, s in enumerate(states)}
