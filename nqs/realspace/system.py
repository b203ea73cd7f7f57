"""What the real-space engine needs of a system: nuclei, electron counts and a local energy.

The Coulomb Hamiltonian itself is physics (:class:`hamiltonians.realspace.Atoms` implements this
protocol); the engine (:mod:`nqs.problems.realspace`, the walkers, the FermiNet) only sees the
protocol, so the core never imports :mod:`hamiltonians`, as the discrete driver only sees a
:class:`nqs.operator.DiscreteOperator`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

import jax
import numpy as np

LocalEnergy = Callable[[Any, jax.Array], jax.Array]
"""``fn(params, r [n_el, 3]) -> E_loc`` in Hartree for one configuration."""


@runtime_checkable
class RealSpaceSystem(Protocol):
    """Nuclei and electrons in real space (atomic units), with their local energy.

    Attributes:
        symbols: element symbols, length ``n_atoms``.
        charges: nuclear charges ``[n_atoms]``.
        positions: nuclear positions in bohr ``[n_atoms, 3]``.
        charge, spin: net charge and 2S = n_alpha - n_beta.
        n_alpha, n_beta: electrons of each spin (alpha first in a configuration).
    """

    symbols: tuple[str, ...]
    charges: np.ndarray
    positions: np.ndarray
    charge: int
    spin: int
    n_alpha: int
    n_beta: int

    @property
    def n_electrons(self) -> int:
        """n_alpha + n_beta."""
        ...

    def local_energy(
        self, log_abs_psi_fn: Callable[..., Any], laplacian: Literal["folx", "hessian"] = "folx",
        sparsity_threshold: int = 0,
    ) -> LocalEnergy:
        """``E_loc = (H psi)(r) / psi(r)`` of one configuration for the wavefunction
        ``log_abs_psi_fn(params, r) -> log|psi|`` (or ``(sign, log|psi|)``); folx keeps
        Jacobians that depend on at most ``sparsity_threshold`` coordinates sparse (0: dense)."""
        ...
