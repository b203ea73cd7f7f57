"""Electrons in real space: the Coulomb Hamiltonian of atoms and molecules.

Atomic units throughout: energies in Hartree, lengths in bohr. A configuration is the array of
all electron positions ``r`` with shape ``[n_electrons, 3]``, the ``n_alpha`` spin-up electrons
first, then the ``n_beta`` spin-down ones. Functions here act on ONE configuration; vmap them over
walkers at the edges.

    H = -1/2 sum_i nabla_i^2  +  sum_{i<j} 1/|r_i - r_j|  -  sum_{i,I} Z_I/|r_i - R_I|
        + sum_{I<J} Z_I Z_J/|R_I - R_J|

The local energy of a real wavefunction psi = sign * exp(log|psi|) is

    E_loc(r) = -1/2 (nabla^2 log|psi| + |nabla log|psi||^2) + V(r),

with the Laplacian from a forward Laplacian pass (folx; one pass, the default) or from the trace
of the Hessian, one Hessian-vector product per coordinate (the reference path).

With effective core potentials (``make_atoms(..., ecp="ccecp")``, :mod:`hamiltonians.ecp`) the
nuclei carry ``Z_eff = Z - n_core`` in every Coulomb term, the core electrons are gone from the
configuration, and the ECP's local and nonlocal parts are added to ``E_loc``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64 before any array is built)
from hamiltonians.ecp import AtomECP, load_ecps, make_ecp_energy
from hamiltonians.molecule import ANGSTROM_TO_BOHR, canonical_symbol, element_charge, parse_atoms
from nqs.ansatz import log_abs
from nqs.errors import InputError


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named system: geometry in bohr, its exact non-relativistic energy (Hartree), and the
    ground state's 2S (``spin``; None: the lowest, ``n_electrons % 2``)."""

    geometry: str
    exact_energy: float
    source: str
    spin: int | None = None


# Exact energies from docs/references.md ("Atoms and molecules in real space").
PRESETS: dict[str, Preset] = {
    "H": Preset("H 0 0 0", -0.5, "exact"),
    "He": Preset("He 0 0 0", -2.903724377, "Pekeris-type calculations"),
    "Li": Preset("Li 0 0 0", -7.47806, "Chakravorty et al., PRA 47, 3649 (1993)"),
    "Be": Preset("Be 0 0 0", -14.66736, "Chakravorty et al., PRA 47, 3649 (1993)"),
    "H2": Preset("H 0 0 -0.7; H 0 0 0.7", -1.17448, "Kolos-Wolniewicz type (R = 1.4 bohr)"),
    "LiH": Preset("Li 0 0 0; H 0 0 3.015", -8.070548, "literature exact estimate (R = 3.015 bohr)"),
    "B": Preset("B 0 0 0", -24.65391, "Chakravorty et al., PRA 47, 3649 (1993)", spin=1),
    "C": Preset("C 0 0 0", -37.8450, "Chakravorty et al., PRA 47, 3649 (1993)", spin=2),
    "N": Preset("N 0 0 0", -54.5892, "Chakravorty et al., PRA 47, 3649 (1993)", spin=3),
    "O": Preset("O 0 0 0", -75.0673, "Chakravorty et al., PRA 47, 3649 (1993)", spin=2),
    "F": Preset("F 0 0 0", -99.7339, "Chakravorty et al., PRA 47, 3649 (1993)", spin=1),
    "Ne": Preset("Ne 0 0 0", -128.9376, "Chakravorty et al., PRA 47, 3649 (1993)", spin=0),
}
"""Named real-space systems (``nqs realspace --preset``, ``bench-fci --realspace``) with their
tabulated exact energies."""


@dataclasses.dataclass(frozen=True, eq=False)
class Atoms:
    """Nuclei and electron counts of a real-space system (atomic units).

    Attributes:
        symbols: element symbols, length ``n_atoms``.
        charges: nuclear charges, float array ``[n_atoms]``: Z, or ``Z_eff = Z - n_core`` for a
            nucleus with an ECP.
        positions: nuclear positions in bohr, float array ``[n_atoms, 3]``.
        charge: total molecular charge (sum of ``charges`` minus number of electrons).
        spin: 2S = n_alpha - n_beta.
        n_alpha: number of spin-up electrons (they come first in ``r``).
        n_beta: number of spin-down electrons.
        ecp: per atom its :class:`hamiltonians.ecp.AtomECP` or None; ``()``: all-electron.
    """

    symbols: tuple[str, ...]
    charges: np.ndarray
    positions: np.ndarray
    charge: int
    spin: int
    n_alpha: int
    n_beta: int
    ecp: tuple[AtomECP | None, ...] = ()

    @property
    def has_ecp(self) -> bool:
        """Whether any nucleus carries an ECP."""
        return any(e is not None for e in self.ecp)

    @property
    def ecp_names(self) -> dict[str, str]:
        """``{symbol: ECP name}`` of the elements with an ECP (PySCF's ``mol.ecp``)."""
        return {e.symbol: e.name for e in self.ecp if e is not None}

    @property
    def n_core(self) -> np.ndarray:
        """Core electrons removed per atom, int array ``[n_atoms]`` (zeros all-electron)."""
        return np.array([0 if e is None else e.n_core for e in self.ecp] if self.ecp
                        else [0] * len(self.symbols), dtype=np.int64)

    @property
    def n_atoms(self) -> int:
        """Number of nuclei."""
        return len(self.symbols)

    @property
    def n_electrons(self) -> int:
        """n_alpha + n_beta."""
        return self.n_alpha + self.n_beta

    def nuclear_repulsion(self) -> float:
        """sum_{I<J} Z_I Z_J / |R_I - R_J| in Hartree."""
        return _nuclear_repulsion(self.charges, self.positions)

    def local_energy(
        self, log_abs_psi_fn: LogPsiFn, laplacian: Literal["folx", "hessian"] = "folx",
        sparsity_threshold: int = 0,
    ) -> Callable[[Any, jax.Array], jax.Array]:
        """The local energy of this Hamiltonian for ``log_abs_psi_fn`` (:func:`make_local_energy`;
        ``sparsity_threshold`` for folx): what the engine
        (:class:`nqs.realspace.system.RealSpaceSystem`) asks of a system."""
        return make_local_energy(log_abs_psi_fn, self, laplacian, sparsity_threshold)

    def to_pyscf(self, basis: str = "sto-3g") -> Any:
        """A built ``pyscf.gto.Mole`` for this system (lengths in bohr), with the ECPs (PySCF
        then removes the same core electrons: ``mol.nelectron == self.n_electrons``)."""
        from pyscf import gto  # lazy

        mol = gto.Mole()
        mol.atom = [
            (s, tuple(float(x) for x in p))
            for s, p in zip(self.symbols, self.positions, strict=True)
        ]
        mol.unit = "Bohr"
        mol.basis = basis
        if self.has_ecp:
            mol.ecp = self.ecp_names
        mol.charge = self.charge
        mol.spin = self.spin
        mol.verbose = 0
        mol.build()
        return mol


def _nuclear_repulsion(charges: np.ndarray, positions: np.ndarray) -> float:
    e = 0.0
    n = len(charges)
    for a in range(n):
        for b in range(a + 1, n):
            e += charges[a] * charges[b] / float(np.linalg.norm(positions[a] - positions[b]))
    return float(e)


def make_atoms(
    geometry: str | Sequence[tuple[str, Sequence[float]]],
    charge: int = 0,
    spin: int | None = None,
    unit: Literal["bohr", "angstrom"] = "bohr",
    ecp: str | dict[str, str] | None = None,
) -> Atoms:
    """Build and validate a real-space system.

    Args:
        geometry: ``"Li 0 0 0; H 0 0 3.015"`` (parsed by
            :func:`hamiltonians.molecule.parse_atoms`, as ``nqs molecule``) or a list of
            ``(symbol, (x, y, z))``.
        charge: total charge; the number of electrons is ``sum(Z - n_core) - charge``.
        spin: 2S = n_alpha - n_beta; ``None`` picks the lowest (0 or 1 by parity).
        unit: unit of the coordinates, ``"bohr"`` (default) or ``"angstrom"``
            (converted with 1 A = 1.8897261246 bohr).
        ecp: effective core potentials from PySCF's library (:func:`hamiltonians.ecp.load_ecps`):
            ``None`` all-electron; ``"ccecp"`` on every atom; ``"Na:ccecp, Cl:ccecp"`` on those
            elements. The core electrons leave, the nuclei keep ``Z_eff = Z - n_core``.

    Raises:
        InputError: no atoms, unknown element, non-finite or coinciding nuclei, no electrons,
            an unknown ECP name or an element without an ECP in the named library,
            more electrons removed than present, or an impossible spin (parity mismatch or
            ``|2S| > n_electrons``).
    """
    entries = parse_atoms(geometry) if isinstance(geometry, str) else list(geometry)
    if not entries:
        raise InputError("no atoms given")
    unit_l = str(unit).lower()
    if unit_l in ("bohr", "au", "b"):
        scale = 1.0
    elif unit_l in ("angstrom", "a", "ang"):
        scale = ANGSTROM_TO_BOHR
    else:
        raise InputError(f"unknown unit {unit!r}: use 'bohr' or 'angstrom'")
    symbols = tuple(canonical_symbol(str(s)) for s, _ in entries)
    try:
        positions = np.array([[float(x) for x in p] for _, p in entries], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"bad coordinates: {err}") from err
    if positions.shape != (len(entries), 3):
        raise InputError("each atom needs three coordinates")
    if not np.all(np.isfinite(positions)):
        raise InputError("atom coordinates must be finite")
    positions = positions * scale
    for a in range(len(symbols)):
        for b in range(a + 1, len(symbols)):
            if np.linalg.norm(positions[a] - positions[b]) < 1e-6:
                raise InputError(f"atoms {a} and {b} coincide")
    ecps = load_ecps(ecp, symbols) if ecp else ()
    if not any(e is not None for e in ecps):
        ecps = ()
    charges = np.array([element_charge(s) for s in symbols], dtype=np.float64)
    if ecps:
        charges = charges - np.array([0 if e is None else e.n_core for e in ecps], np.float64)
    if int(charge) != charge:
        raise InputError(f"charge must be an integer, got {charge!r}")
    n_el = int(round(charges.sum())) - int(charge)
    if n_el <= 0:
        raise InputError(f"no electrons: total nuclear charge {int(charges.sum())}, charge {charge}")
    if spin is None:
        spin = n_el % 2
    if int(spin) != spin:
        raise InputError(f"spin (2S) must be an integer, got {spin!r}")
    spin = int(spin)
    if abs(spin) > n_el:
        raise InputError(f"impossible spin 2S={spin} for {n_el} electrons")
    if (n_el - spin) % 2 != 0:
        raise InputError(f"impossible spin 2S={spin}: parity differs from {n_el} electrons")
    n_alpha = (n_el + spin) // 2
    n_beta = (n_el - spin) // 2
    return Atoms(
        symbols=symbols,
        charges=charges,
        positions=positions,
        charge=int(charge),
        spin=spin,
        n_alpha=n_alpha,
        n_beta=n_beta,
        ecp=ecps,
    )


def _safe_pair_distances(x: jax.Array, y: jax.Array) -> jax.Array:
    d = x[:, None, :] - y[None, :, :]
    return jnp.sqrt(jnp.sum(d * d, axis=-1))


def potential_energy(r: jax.Array, atoms: Atoms) -> jax.Array:
    """Coulomb potential energy of one configuration in Hartree.

    Args:
        r: electron positions in bohr, ``[n_electrons, 3]``.
        atoms: the nuclei.

    Returns:
        scalar: e-e repulsion + e-n attraction + n-n repulsion.
    """
    r = jnp.asarray(r)
    n = r.shape[0]
    big_r = jnp.asarray(atoms.positions, dtype=r.dtype)
    z = jnp.asarray(atoms.charges, dtype=r.dtype)
    r_en = _safe_pair_distances(r, big_r)  # [n_el, n_atoms]
    v_en = -jnp.sum(z[None, :] / r_en)
    if n > 1:
        # Add the identity before the norm so the diagonal is 1, not 0 (finite derivatives).
        eye = jnp.eye(n, dtype=r.dtype)
        d = r[:, None, :] - r[None, :, :] + eye[..., None]
        r_ee = jnp.sqrt(jnp.sum(d * d, axis=-1))
        iu = np.triu_indices(n, k=1)
        v_ee = jnp.sum(1.0 / r_ee[iu])
    else:
        v_ee = jnp.zeros((), r.dtype)
    return v_ee + v_en + atoms.nuclear_repulsion()


LogPsiFn = Callable[[Any, jax.Array], Any]
"""``(params, r [n_el, 3]) -> log|psi|`` scalar, or ``(sign, log|psi|)``."""



def _hessian_trace(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(grad f(x) [d], tr Hess f(x))``: one Hessian-vector product (forward over reverse) per
    coordinate, accumulated in a loop (FermiNet's own Laplacian).

    The gradient is the primal output of the linearization, so the backward pass runs once. A
    loop rather than a vmap of the same products over all ``d`` unit vectors (``jax.hessian``):
    for LiH with the default network at 256 walkers on a 2-core CPU the loop took 1.3 to 1.5x
    less CPU time and holds one tangent at a time instead of ``d``; the vmapped form also
    deadlocked there for N2 (14 electrons: batched LAPACK triangular solves of the slogdet
    derivative inside ``jax::ParallelBatchMap``), the loop did not.
    """
    grad, hvp = jax.linearize(jax.grad(f), x)
    eye = jnp.eye(x.shape[0], dtype=x.dtype)

    def add_diagonal(i: jax.Array, acc: jax.Array) -> jax.Array:
        return acc + hvp(eye[i])[i]

    lap = jax.lax.fori_loop(0, x.shape[0], add_diagonal, jnp.zeros((), grad.dtype))
    return grad, lap


def make_kinetic_energy(
    log_abs_psi_fn: LogPsiFn,
    laplacian: Literal["folx", "hessian"] = "folx",
    sparsity_threshold: int | float = 0,
) -> Callable[[Any, jax.Array], jax.Array]:
    """Local kinetic energy ``-1/2 (nabla^2 log|psi| + |nabla log|psi||^2)`` of one configuration.

    Args:
        log_abs_psi_fn: ``(params, r [n_el, 3]) -> log|psi|`` (or ``-> (sign, log|psi|)``).
        laplacian: ``"folx"`` (forward Laplacian, one pass) or ``"hessian"`` (trace of the
            ``[3 n_el, 3 n_el]`` Hessian, one Hessian-vector product per coordinate; the
            reference path).
        sparsity_threshold: passed to ``folx.forward_laplacian`` (0 disables sparsity).

    Returns:
        ``fn(params, r [n_el, 3]) -> scalar`` in Hartree.
    """
    if laplacian not in ("folx", "hessian"):
        raise InputError(f"unknown laplacian {laplacian!r}: use 'folx' or 'hessian'")

    def kinetic(params: Any, r: jax.Array) -> jax.Array:
        shape = r.shape
        x = jnp.reshape(r, (-1,))

        def f(xf: jax.Array) -> jax.Array:
            return log_abs(log_abs_psi_fn(params, jnp.reshape(xf, shape)))

        if laplacian == "folx":
            import folx  # lazy: only this path needs it

            out = folx.forward_laplacian(f, sparsity_threshold=sparsity_threshold)(x)
            lap = out.laplacian
            grad = out.jacobian.dense_array
        else:
            grad, lap = _hessian_trace(f, x)
        return -0.5 * (lap + jnp.sum(grad * grad))

    return kinetic


def make_local_energy(
    log_abs_psi_fn: LogPsiFn,
    atoms: Atoms,
    laplacian: Literal["folx", "hessian"] = "folx",
    sparsity_threshold: int | float = 0,
) -> Callable[[Any, jax.Array], jax.Array]:
    """Local energy ``E_loc = (H psi)(r) / psi(r)`` of one configuration.

    Args:
        log_abs_psi_fn: ``(params, r [n_el, 3]) -> log|psi|`` (or ``-> (sign, log|psi|)``); the
            wavefunction must be real so the sign drops out of the local energy.
        atoms: the nuclei (potential energy; with ECPs their local and nonlocal parts, the
            latter by quadrature with ``psi``'s sign, :func:`hamiltonians.ecp.make_ecp_energy`).
        laplacian: ``"folx"`` (default) or ``"hessian"``.
        sparsity_threshold: passed to folx.

    Returns:
        ``fn(params, r [n_el, 3]) -> scalar`` in Hartree; vmap it over walkers.
    """
    kinetic = make_kinetic_energy(log_abs_psi_fn, laplacian, sparsity_threshold)
    ecp_energy = (make_ecp_energy(log_abs_psi_fn, atoms.ecp, atoms.positions)
                  if getattr(atoms, "has_ecp", False) else None)

    def local_energy(params: Any, r: jax.Array) -> jax.Array:
        e = kinetic(params, r) + potential_energy(r, atoms)
        if ecp_energy is not None:
            e = e + ecp_energy(params, r)
        return e

    return local_energy
