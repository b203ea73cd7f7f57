"""Observables of electrons in real space from the walkers: the electron density and the dipole.

    r = sample_positions(key, params, log_psi, mcmc, n_steps=200)   # [T, W, n_el, 3] bohr
    prof = radial_density(r, centre, r_max=6.0, n_bins=40)           # DensityProfile
    mu, mu_err = dipole_moment(r, charges, positions)                # [3] e bohr each

Positions are drawn at fixed parameters from ``|psi|^2`` (``mcmc_steps`` Metropolis moves at
the width of the chains between measurements, no adaptation), ``T`` measurements of ``W``
walkers. Each estimate is a mean over the ``T W`` samples; its error bar is that of
:func:`nqs.stats.statistics` with the walkers as ``W`` Markov chains (corrected for the
autocorrelation along each chain).

* **radial density** about a centre (atoms: the nucleus): the spherically averaged density
  ``rho(r)`` averaged over each shell ``[r_b, r_b+1)``, i.e. (electrons in the shell) / (shell
  volume); ``sum_b rho_b V_b`` is the number of electrons inside ``r_max``.
* **axial density** along a line (molecules): electrons per bohr of the projection ``s = (r -
  origin) . axis``, i.e. the density integrated over the plane perpendicular to the axis,
  averaged over each bin of ``s``.
* **dipole moment** ``mu = sum_A Z_A R_A - sum_i r_i`` in e bohr (1 a.u. = 2.541746 Debye)
  about the origin of the coordinates.

The Hartree-Fock references (:func:`hf_radial_density`, :func:`hf_axial_density`) average the
HF density over the same bins by quadrature, so that they compare with the Monte Carlo
profiles bin by bin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np

from hamiltonians.realspace_forces import check_all_electron, column_statistics, measure_forces
from nqs.errors import InputError
from nqs.sampling.walkers import MCMCState, make_mcmc

#: Names of the real-space observables of ``nqs realspace --observe``.
REALSPACE_OBSERVABLES = ("density", "dipole", "forces")


class DensityProfile(NamedTuple):
    """A density profile: ``edges [B + 1]``, ``centres [B]``, ``mean [B]``, ``error [B]``
    (bohr^-3 for radial, bohr^-1 for axial profiles)."""

    edges: np.ndarray
    centres: np.ndarray
    mean: np.ndarray
    error: np.ndarray


def sample_positions(key: jax.Array, params: Any, log_psi: Callable[[Any, jax.Array], Any],
                     mcmc: MCMCState, n_steps: int = 100, mcmc_steps: int = 10,
                     chunk_size: int | None = None) -> np.ndarray:
    """Positions ``[n_steps, n_walkers, n_el, 3]`` (bohr) drawn at fixed ``params`` from the
    walkers ``mcmc`` (module docstring)."""
    if n_steps < 2:
        raise InputError(f"at least 2 measurements are needed for error bars, got {n_steps}")
    init, step = make_mcmc(log_psi, mcmc_steps, adapt=False, chunk_size=chunk_size)

    @jax.jit
    def run(key: jax.Array, mc: MCMCState) -> jax.Array:
        def body(mc: MCMCState, k: jax.Array):
            mc, _ = step(k, params, mc)
            return mc, mc.r

        return jax.lax.scan(body, mc, jax.random.split(key, n_steps))[1]

    return np.asarray(run(key, init(params, mcmc.r, mcmc.width)))


def _flat(r: np.ndarray) -> tuple[np.ndarray, int]:
    r = np.asarray(r, dtype=np.float64)
    if r.ndim != 4 or r.shape[-1] != 3:
        raise InputError(f"positions must be [steps, walkers, electrons, 3], got {r.shape}")
    return r.reshape(-1, r.shape[2], 3), int(r.shape[1])


def _histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``counts [n_samples, B]``: electrons of each sample (``x [n_samples, n_el]``) per bin."""
    n_bins = len(edges) - 1
    idx = np.searchsorted(edges, x, side="right") - 1  # bin b: edges[b] <= x < edges[b+1]
    inside = (idx >= 0) & (idx < n_bins)
    rows = np.broadcast_to(np.arange(x.shape[0])[:, None], x.shape)
    flat = rows[inside] * n_bins + idx[inside]
    return np.bincount(flat, minlength=x.shape[0] * n_bins).reshape(x.shape[0], n_bins)


def radial_density(r: np.ndarray, centre: Any = (0.0, 0.0, 0.0), r_max: float | None = None,
                   n_bins: int = 40) -> DensityProfile:
    """The spherically averaged density about ``centre`` in ``n_bins`` shells up to ``r_max``
    (default: the 99.5th percentile of the electron distances) from positions
    ``r [T, W, n_el, 3]``."""
    flat, n_walkers = _flat(r)
    d = np.linalg.norm(flat - np.asarray(centre, dtype=np.float64), axis=-1)  # [n, n_el]
    if r_max is None:
        r_max = float(np.quantile(d, 0.995))
    if not (r_max > 0 and n_bins >= 1):
        raise InputError(f"the radial grid needs r_max > 0 and n_bins >= 1, got {r_max}, "
                         f"{n_bins}")
    edges = np.linspace(0.0, float(r_max), int(n_bins) + 1)
    volumes = 4.0 / 3.0 * np.pi * np.diff(edges ** 3)
    mean, err = column_statistics(_histogram(d, edges) / volumes, n_walkers)
    return DensityProfile(edges, 0.5 * (edges[1:] + edges[:-1]), mean, err)


def axial_density(r: np.ndarray, origin: Any, axis: Any, s_min: float, s_max: float,
                  n_bins: int = 40) -> DensityProfile:
    """Electrons per bohr along ``axis`` (a direction, normalized here) through ``origin``:
    the density integrated over the perpendicular plane, in ``n_bins`` bins of
    ``s in [s_min, s_max)``, from positions ``r [T, W, n_el, 3]``."""
    flat, n_walkers = _flat(r)
    u = np.asarray(axis, dtype=np.float64)
    u = u / np.linalg.norm(u)
    s = (flat - np.asarray(origin, dtype=np.float64)) @ u  # [n, n_el]
    edges = np.linspace(float(s_min), float(s_max), int(n_bins) + 1)
    mean, err = column_statistics(_histogram(s, edges) / np.diff(edges), n_walkers)
    return DensityProfile(edges, 0.5 * (edges[1:] + edges[:-1]), mean, err)


def dipole_moment(r: np.ndarray, charges: Any, positions: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(mu [3], error [3])`` in e bohr: ``sum_A Z_A R_A - sum_i r_i`` (module docstring)."""
    flat, n_walkers = _flat(r)
    nuclear = np.asarray(charges, np.float64) @ np.asarray(positions, np.float64).reshape(-1, 3)
    mean, err = column_statistics(-flat.sum(axis=1), n_walkers)
    return nuclear + mean, err


def molecular_axis(charges: Any, positions: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(origin, axis)``: the charge-weighted centre of the nuclei and the direction along
    which they spread most (the bond of a diatomic; z when they do not spread)."""
    z = np.asarray(charges, np.float64)
    x = np.asarray(positions, np.float64).reshape(-1, 3)
    origin = z @ x / z.sum()
    d = x - origin
    w, v = np.linalg.eigh((z[:, None] * d).T @ d)
    if w[-1] < 1e-12:
        return origin, np.array([0.0, 0.0, 1.0])
    axis = v[:, -1]
    k = int(np.argmax(np.abs(axis)))
    return origin, axis * np.sign(axis[k])  # a deterministic orientation


# ---------------------------------------------------------------- Hartree-Fock references


def hf_density(hf: Any, points: np.ndarray) -> np.ndarray:
    """The Hartree-Fock density ``sum_j |phi^alpha_j|^2 + sum_j |phi^beta_j|^2`` at
    ``points [..., 3]`` (``hf``: :class:`nqs.realspace.pretrain.HartreeFock`)."""
    mol = hf.mol
    pts = np.asarray(points, np.float64)
    ao = mol.eval_gto("GTOval_cart" if mol.cart else "GTOval_sph", pts.reshape(-1, 3))
    rho = np.sum((ao @ hf.coeff_alpha) ** 2, axis=-1) + np.sum((ao @ hf.coeff_beta) ** 2,
                                                               axis=-1)
    return rho.reshape(pts.shape[:-1])


def _sphere_directions(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors (a Fibonacci lattice)."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (1.0 + 5 ** 0.5) * k
    rho = np.sqrt(1.0 - z * z)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=-1)


def hf_radial_density(hf: Any, centre: Any, edges: np.ndarray, n_radial: int = 12,
                      n_directions: int = 194) -> np.ndarray:
    """The HF density averaged over each shell of ``edges`` (the quantity
    :func:`radial_density` estimates): Gauss-Legendre in ``r`` (weight ``r^2``) times a
    spherical average over ``n_directions``."""
    t, w = np.polynomial.legendre.leggauss(n_radial)
    dirs = _sphere_directions(n_directions)
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        rr = 0.5 * (b - a) * t + 0.5 * (b + a)
        pts = np.asarray(centre, np.float64) + rr[:, None, None] * dirs[None]
        shell = hf_density(hf, pts).mean(axis=1)  # spherical average at each radius
        ww = 0.5 * (b - a) * w * rr ** 2
        out.append(np.sum(ww * shell) / ((b ** 3 - a ** 3) / 3.0))
    return np.asarray(out)


def hf_axial_density(hf: Any, origin: Any, axis: Any, edges: np.ndarray, n_axial: int = 6,
                     n_radial: int = 40, n_angles: int = 12, scale: float = 1.5) -> np.ndarray:
    """The HF density integrated over the plane perpendicular to ``axis`` and averaged over
    each bin of ``edges`` (what :func:`axial_density` estimates): Gauss-Legendre along the
    axis, and in the plane a polar grid with ``rho = scale t / (1 - t)``."""
    u = np.asarray(axis, np.float64)
    u = u / np.linalg.norm(u)
    e1 = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    ts, ws = np.polynomial.legendre.leggauss(n_axial)
    tr, wr = np.polynomial.legendre.leggauss(n_radial)
    tr, wr = 0.5 * (tr + 1.0), 0.5 * wr
    rho = scale * tr / (1.0 - tr)
    w_rho = wr * scale / (1.0 - tr) ** 2 * rho * (2.0 * np.pi / n_angles)  # rho drho dphi
    phi = 2.0 * np.pi * (np.arange(n_angles) + 0.5) / n_angles
    plane = (rho[:, None, None] * (np.cos(phi)[None, :, None] * e1
                                   + np.sin(phi)[None, :, None] * e2))  # [R, A, 3]
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        s = 0.5 * (b - a) * ts + 0.5 * (b + a)
        pts = np.asarray(origin, np.float64) + s[:, None, None, None] * u + plane[None]
        dens = hf_density(hf, pts).sum(axis=2)  # [S, R]
        out.append(np.sum(0.5 * ws[:, None] * dens * w_rho[None, :]))
    return np.asarray(out)


# ---------------------------------------------------------------- measured together


def measure(names: list[str], key: jax.Array, params: Any, log_psi: Callable[[Any, jax.Array], Any],
            mcmc: MCMCState, atoms: Any, n_steps: int = 100, mcmc_steps: int = 10,
            n_bins: int = 40, hf: Any = None, chunk_size: int | None = None
            ) -> dict[str, dict[str, Any]]:
    """``{name: record}`` of the observables ``names`` (:data:`REALSPACE_OBSERVABLES`) from one
    draw of positions (:func:`sample_positions`). ``density``: radial about the nucleus for one
    atom, axial along :func:`molecular_axis` otherwise, with the HF profile of ``hf`` (a
    :class:`nqs.realspace.pretrain.HartreeFock`) over the same bins when given; ``forces``:
    :func:`hamiltonians.realspace_forces.measure_forces` (all-electron systems only). Records are
    JSON-able: ``mean`` and ``error`` lists, the grid, the unit."""
    for name in names:
        if name not in REALSPACE_OBSERVABLES:
            raise InputError(f"unknown observable {name!r} for nqs realspace; valid: "
                             f"{', '.join(REALSPACE_OBSERVABLES)}")
    if "forces" in names:
        check_all_electron(atoms)
    r = sample_positions(key, params, log_psi, mcmc, n_steps, mcmc_steps, chunk_size)
    charges = np.asarray(atoms.charges, np.float64)
    positions = np.asarray(atoms.positions, np.float64).reshape(-1, 3)
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(names):
        if name == "forces":
            out[name] = measure_forces(r, log_psi, params, atoms, chunk_size)
        elif name == "dipole":
            mu, err = dipole_moment(r, charges, positions)
            out[name] = {"mean": mu.tolist(), "error": err.tolist(),
                         "unit": "e bohr (atomic units)", "n_samples": int(r.shape[0] * r.shape[1])}
        elif len(charges) == 1:
            centre = positions[0]
            d = np.linalg.norm(r - centre, axis=-1)
            prof = radial_density(r, centre, r_max=_nice_max(np.quantile(d, 0.995)),
                                  n_bins=n_bins)
            ref = None if hf is None else hf_radial_density(hf, centre, prof.edges)
            volumes = 4.0 / 3.0 * np.pi * np.diff(prof.edges ** 3)
            out[name] = {"kind": "radial", "centre": centre.tolist(), "r": prof.centres.tolist(),
                         "edges": prof.edges.tolist(), "mean": prof.mean.tolist(),
                         "error": prof.error.tolist(),
                         "hf": None if ref is None else ref.tolist(),
                         "electrons_inside": float(np.sum(prof.mean * volumes)),
                         "unit": "bohr^-3 (shell averages of rho(r))"}
        else:
            origin, axis = molecular_axis(charges, positions)
            s = (r - origin) @ axis
            lo, hi = np.quantile(s, [0.0025, 0.9975])
            prof = axial_density(r, origin, axis, -_nice_max(-lo), _nice_max(hi), n_bins)
            ref = None if hf is None else hf_axial_density(hf, origin, axis, prof.edges)
            out[name] = {"kind": "axial", "origin": origin.tolist(), "axis": axis.tolist(),
                         "s": prof.centres.tolist(), "edges": prof.edges.tolist(),
                         "mean": prof.mean.tolist(), "error": prof.error.tolist(),
                         "hf": None if ref is None else ref.tolist(),
                         "electrons_inside": float(np.sum(prof.mean * np.diff(prof.edges))),
                         "unit": "bohr^-1 (density integrated over the plane normal to the "
                                 "axis, bin averages)"}
    return out


def _nice_max(x: float) -> float:
    """``x`` rounded up to a multiple of 0.5 bohr (at least 0.5)."""
    return max(0.5, float(np.ceil(float(x) * 2.0) / 2.0))


@dataclass
class RealSpaceState:
    """A real-space wavefunction with its walkers: ``measure`` observables, ``energy``.

    Attributes:
      atoms: the system (nuclei, electrons, ``local_energy``).
      params, log_psi: the network ``log_psi(params, r [n_el, 3])``.
      walkers: :class:`nqs.sampling.walkers.MCMCState` (carried over between calls).
      mcmc_steps: Metropolis moves between measurements.
      seed: PRNG seed of the draws (split at every call).
    """

    atoms: Any
    params: Any
    log_psi: Callable[[Any, jax.Array], Any]
    walkers: MCMCState
    mcmc_steps: int = 10
    seed: int = 0
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        self.key = jax.random.PRNGKey(self.seed)

    def _next_key(self) -> jax.Array:
        self.key, k = jax.random.split(self.key)
        return k

    def measure(self, names: list[str], n_steps: int = 100, n_bins: int = 40,
                hf: Any = None) -> dict[str, dict[str, Any]]:
        """:func:`measure` of ``names`` (``density``, ``dipole``, ``forces``) from fresh draws."""
        return measure(names, self._next_key(), self.params, self.log_psi, self.walkers,
                       self.atoms, n_steps, self.mcmc_steps, n_bins, hf, self.chunk_size)

    def energy(self, n_steps: int = 100, laplacian: str = "folx",
               key: jax.Array | None = None) -> Any:
        """:class:`nqs.stats.Stats` of the local energy over ``n_steps`` measurements of all
        walkers at fixed parameters (the run's final evaluation, with its key: the same
        numbers); the walkers move on."""
        from nqs.sampling.walkers import evaluate_energy

        key = self._next_key() if key is None else key
        stats, _, self.walkers = evaluate_energy(
            key, self.log_psi, self.atoms.local_energy(self.log_psi, laplacian), self.params,
            self.walkers, n_steps, self.mcmc_steps, self.chunk_size)
        return stats
