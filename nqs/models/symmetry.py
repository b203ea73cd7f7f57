"""Symmetry projection of any ansatz: ``psi_P(x) = sum_g chi_g psi(x . g) (+ parity psi(-x . g))``.

``(x . g)[i] = x[perm_g[i]]`` for site permutations ``perm [G, n_sites]`` forming a group. With
characters ``chi`` of a one-dimensional representation (all ones: the trivial irrep, momentum
zero and fully symmetric), ``psi_P(x . h) = psi_P(x) / chi_h``; with a spin-flip parity
``p = +-1``, ``psi_P(-x) = p psi_P(x)``. The projected wavefunction has these quantum numbers
whatever the wrapped ansatz; it costs ``G`` (``2 G`` with the parity) evaluations of it.

Use :func:`make_projected`; :func:`momentum_characters` gives the characters of a momentum on
the translations of a periodic lattice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz, Params
from nqs.errors import InputError
from nqs.models.gcnn import check_permutations, group_tables

PARITIES = {"none": 0, "even": 1, "odd": -1}
"""Spin-flip parities by name."""


def log_sum(weights: jax.Array, logs: jax.Array) -> jax.Array:
    """``log sum_k weights_k exp(logs_k)`` (complex), stable in the real parts of ``logs``."""
    m = jax.lax.stop_gradient(jnp.max(logs.real))
    return m + jnp.log(jnp.sum(weights * jnp.exp(logs - m)))


@dataclass(frozen=True)
class SymmetryProjected:
    """A module-like wrapper (``init`` / ``apply``) projecting ``module`` on an irrep.

    Attributes:
      module: the wrapped flax module (log psi of one configuration).
      symmetries: ``[G][n_sites]`` permutations (a group).
      characters: ``[G]`` complex characters of a one-dimensional irrep (None: all ones).
      parity: spin-flip parity, +1 (even), -1 (odd) or 0 (no spin-flip projection).
    """

    module: Any
    symmetries: tuple[tuple[int, ...], ...]
    characters: tuple[complex, ...] | None = None
    parity: int = 0

    def init(self, key: jax.Array, x: jax.Array) -> Params:
        """The wrapped module's parameters for ``x`` [n_sites]."""
        return self.module.init(key, x)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """``log psi_P(x)`` of one configuration ``x [n_sites]``, complex scalar."""
        perms = np.asarray(self.symmetries, dtype=np.int32)
        n_g = len(perms)
        chars = np.ones(n_g, complex) if self.characters is None else np.asarray(self.characters)
        xs = x[perms]  # [G, n_sites]
        weights = chars
        if self.parity:
            xs = jnp.concatenate([xs, -xs])
            weights = np.concatenate([chars, self.parity * chars])
        logs = jax.vmap(lambda y: self.module.apply(params, y))(xs).astype(jnp.complex128)
        return log_sum(jnp.asarray(weights, jnp.complex128), logs)


def momentum_characters(translations: np.ndarray, extent: tuple[int, ...],
                        momentum: tuple[int, ...]) -> tuple[complex, ...]:
    """Characters ``exp(2 pi i sum_d k_d s_d / L_d)`` of the translations (row-major over shifts
    ``s``, as :meth:`hamiltonians.lattice.Lattice.translations`) for integer momenta ``k``."""
    shifts = np.stack(np.unravel_index(np.arange(len(translations)), extent), axis=1)
    phase = 2 * np.pi * (shifts * np.asarray(momentum) / np.asarray(extent)).sum(axis=1)
    return tuple(complex(c) for c in np.exp(1j * phase))


def make_projected(
    ansatz: Ansatz,
    symmetries: Any,
    *,
    characters: Any = None,
    parity: str | int = "none",
) -> Ansatz:
    """``ansatz`` projected on the irrep with ``characters`` (default trivial) of the group
    ``symmetries`` (int ``[G, n_sites]``) and on a spin-flip ``parity`` (``none`` / ``even`` /
    ``odd`` or 0 / +1 / -1). The result has no fast path (``G`` full evaluations per psi).

    Characters must be those of a one-dimensional representation
    (``chi[product[a, b]] = chi[a] chi[b]``); anything else raises InputError.
    """
    perms = check_permutations(symmetries)
    syms = tuple(tuple(int(v) for v in row) for row in perms)
    product, _ = group_tables(syms)
    if isinstance(parity, str):
        if parity not in PARITIES:
            raise InputError(f"unknown spin-flip parity {parity!r}; choose none, even or odd")
        parity = PARITIES[parity]
    if parity not in (0, 1, -1):
        raise InputError(f"spin-flip parity must be 0, +1 or -1, got {parity}")
    chars = None
    if characters is not None:
        c = np.asarray(characters, dtype=complex)
        if c.shape != (len(perms),) or not np.allclose(c[product], c[:, None] * c[None, :]):
            raise InputError("characters must be those of a one-dimensional irrep of the group")
        chars = tuple(complex(v) for v in c)
    module = SymmetryProjected(ansatz.module, syms, chars, int(parity))
    return Ansatz(module, holomorphic=ansatz.holomorphic, symmetries=syms)
