"""Forces on the nuclei: the Hellmann-Feynman force and its zero-variance estimator.

For a wavefunction ``psi`` that does not change with the nuclear positions, the force on
nucleus ``I`` is ``F_I = -dE/dR_I = -<dV/dR_I>`` (Hellmann-Feynman; the Pulay term of a
wavefunction that follows the nuclei is not included), atomic units (hartree / bohr):

    bare:  F_I(r) = Z_I sum_i (r_i - R_I) / |r_i - R_I|^3 + sum_{J != I} Z_I Z_J (R_I - R_J) / |R_I - R_J|^3

Its electronic term goes as ``1 / |r_i - R_I|^2`` near the nucleus, so its variance is
infinite (``int r^2 dr / r^4``) and the error bar of a mean is not reliable.

**Zero-variance estimator** (Assaraf & Caffarel, J. Chem. Phys. 113, 4028 (2000) and 119,
10536 (2003)): for any ``psi`` and any ``Q``, ``<(H - E_L) (Q psi) / psi> = 0`` (``H``
Hermitian), and ``(H Q psi)/psi - E_L Q = -1/2 sum_i lap_i Q - sum_i grad_i Q . grad_i ln|psi|``.
With ``Q_Ia = Z_I sum_i (r_ia - R_Ia) / |r_i - R_I|``, ``lap (x / r) = -2 x / r^3`` cancels the
bare electronic term, leaving

    zero-variance:  F_Ia(r) = Z_I sum_i grad_i(d_ia / |d_i|) . grad_i ln|psi|  + (the nuclear term),
                    grad_i(d_ia / |d_i|) = e_a / |d_i| - d_ia d_i / |d_i|^3,   d_i = r_i - R_I

with the same mean and a singularity of only ``1 / |r_i - R_I|`` (finite variance). It needs
``grad ln|psi|`` at the samples (one gradient of the network each). Pseudopotentials add terms
of their own: systems with an ECP are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import log_abs
from nqs.errors import InputError
from nqs.parallel import chunked_map


def nuclear_forces(charges: Any, positions: Any) -> np.ndarray:
    """``[A, 3]``: ``sum_{J != I} Z_I Z_J (R_I - R_J) / |R_I - R_J|^3`` (the repulsion)."""
    z = np.asarray(charges, np.float64)
    pos = np.asarray(positions, np.float64).reshape(-1, 3)
    d = pos[:, None, :] - pos[None, :, :]  # [A, A, 3]
    dist = np.linalg.norm(d, axis=-1)
    np.fill_diagonal(dist, np.inf)
    return np.einsum("ij,ijk->ik", z[:, None] * z[None, :] / dist ** 3, d)


def force_samples(r: jax.Array, grad_log: jax.Array, charges: Any, positions: Any
                  ) -> tuple[jax.Array, jax.Array]:
    """``(bare, zero_variance)``, each ``[n, A, 3]``: the two estimators (module docstring) of
    every sample ``r [n, n_el, 3]`` with ``grad_log = grad_r ln|psi| [n, n_el, 3]``."""
    z = jnp.asarray(charges, jnp.float64)
    pos = jnp.asarray(positions, jnp.float64).reshape(-1, 3)
    d = r[:, :, None, :] - pos[None, None, :, :]  # [n, n_el, A, 3]
    dist = jnp.linalg.norm(d, axis=-1)  # [n, n_el, A]
    nuclear = jnp.asarray(nuclear_forces(charges, positions))
    bare = z[:, None] * jnp.sum(d / dist[..., None] ** 3, axis=1) + nuclear
    g = grad_log[:, :, None, :]  # [n, n_el, 1, 3]
    # [e_a / d - d_a (d . g) / d^3] summed over electrons
    dg = jnp.sum(d * g, axis=-1)  # [n, n_el, A]
    zv = g / dist[..., None] - d * (dg / dist ** 3)[..., None]
    return bare, z[:, None] * jnp.sum(zv, axis=1) + nuclear


def grad_log_abs(log_psi: Callable[[Any, jax.Array], Any], params: Any, r: jax.Array,
                 chunk_size: int | None = None) -> jax.Array:
    """``grad_r ln|psi(r)| [n, n_el, 3]`` of the samples ``r [n, n_el, 3]``."""
    one = jax.grad(lambda p, x: log_abs(log_psi(p, x)), argnums=1)
    return jax.jit(chunked_map(one, chunk_size))(params, r)


def check_all_electron(atoms: Any) -> None:
    """InputError for a system with pseudopotentials (the forces here omit their terms)."""
    if bool(getattr(atoms, "has_ecp", False)):
        raise InputError("forces are implemented for all-electron systems only; this one has "
                         "pseudopotentials")


def column_statistics(values: np.ndarray, n_chains: int) -> tuple[np.ndarray, np.ndarray]:
    """Means and error bars of every column of ``values [T W, K]`` (rows: step * W + walker)."""
    from nqs.stats import statistics

    values = jnp.asarray(values, dtype=jnp.float64)
    n = values.shape[0]
    weights = jnp.full(n, 1.0 / n)
    fn = jax.jit(jax.vmap(lambda v: statistics(v, weights, n_chains, with_r_hat=False)))
    st = fn(values.T)
    return np.asarray(st.mean), np.asarray(st.error_of_mean)


def measure_forces(r: np.ndarray, log_psi: Callable[[Any, jax.Array], Any], params: Any,
                   atoms: Any, chunk_size: int | None = None) -> dict[str, Any]:
    """JSON-able record of the forces from positions ``r [T, W, n_el, 3]`` (``T``
    measurements of ``W`` walkers, taken as ``W`` Markov chains): ``mean`` and ``error``
    ``[A][3]`` of the zero-variance estimator, ``bare_mean``, ``bare_error`` of the bare one."""
    check_all_electron(atoms)
    t, w = r.shape[:2]
    flat = jnp.asarray(r, jnp.float64).reshape(t * w, *r.shape[2:])
    grad = grad_log_abs(log_psi, params, flat, chunk_size)
    bare, zv = force_samples(flat, grad, atoms.charges, atoms.positions)
    n_atoms = bare.shape[1]
    out: dict[str, Any] = {}
    for label, values in (("", zv), ("bare_", bare)):
        mean, err = column_statistics(np.asarray(values).reshape(t * w, -1), w)
        out[f"{label}mean"] = mean.reshape(n_atoms, 3).tolist()
        out[f"{label}error"] = err.reshape(n_atoms, 3).tolist()
    out.update({"estimator": "zero-variance (Assaraf-Caffarel); bare Hellmann-Feynman beside it",
                "unit": "hartree / bohr (atomic units), force on each nucleus",
                "n_samples": int(t * w)})
    return out
