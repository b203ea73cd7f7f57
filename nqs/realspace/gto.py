"""Contracted Gaussian basis functions evaluated in JAX (for Hartree-Fock pretraining).

A shell of angular momentum ``l`` centred at ``A`` with primitive exponents ``a_p`` and
contraction coefficients ``c_pk`` gives, for each contraction ``k`` and Cartesian exponents
``lx + ly + lz = l`` (PySCF's order: ``lx`` from ``l`` down, then ``ly`` down),

    g(r) = f_l x^lx y^ly z^lz sum_p c_pk exp(-a_p |r - A|^2),    (x, y, z) = r - A,

with libcint's common factor ``f_0 = 1 / sqrt(4 pi)``, ``f_1 = sqrt(3 / (4 pi))``, ``f_l = 1``
otherwise; spherical functions are ``g_cart @ C`` with PySCF's Cartesian-to-spherical matrix.
The arrays come from a PySCF ``Mole`` once, on the host; the evaluation is pure JAX (jit,
vmap, any device), so pretraining needs no host callback. Units: bohr.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64 before any array is built)

_COMMON_FACTOR = {0: 1.0 / math.sqrt(4.0 * math.pi), 1: math.sqrt(3.0 / (4.0 * math.pi))}


class Shell(NamedTuple):
    """One shell: ``l``, ``center [3]`` (bohr), ``exponents [n_prim]``, ``coefficients
    [n_prim, n_ctr]`` (contraction coefficients times the primitive norms)."""

    l: int
    center: np.ndarray
    exponents: np.ndarray
    coefficients: np.ndarray


class GaussianBasis(NamedTuple):
    """A molecule's basis: its shells in PySCF's AO order and ``cart_to_ao [n_cart, n_ao]``
    (identity for a Cartesian basis)."""

    shells: tuple[Shell, ...]
    cart_to_ao: np.ndarray


def basis_from_pyscf(mol: Any) -> GaussianBasis:
    """The shells of a ``pyscf.gto.Mole`` (coordinates in bohr) as plain arrays."""
    from pyscf.gto import gto_norm  # lazy: pyscf is not needed by the solver core

    shells = []
    for ib in range(mol.nbas):
        l = int(mol.bas_angular(ib))
        exponents = np.asarray(mol.bas_exp(ib), np.float64)
        # bas_ctr_coeff normalizes the contraction; each primitive r^l exp(-a r^2) carries
        # its own norm on top (libcint's convention)
        norms = np.array([gto_norm(l, a) for a in exponents])
        coefficients = np.asarray(mol.bas_ctr_coeff(ib), np.float64) * norms[:, None]
        shells.append(Shell(l, np.asarray(mol.bas_coord(ib), np.float64), exponents,
                            coefficients))
    shells = tuple(shells)
    n_cart = sum((s.l + 1) * (s.l + 2) // 2 * s.coefficients.shape[1] for s in shells)
    cart_to_ao = np.eye(n_cart) if mol.cart else np.asarray(mol.cart2sph_coeff(), np.float64)
    return GaussianBasis(shells, cart_to_ao)


def _cartesian_powers(l: int) -> np.ndarray:
    """``[n_cart, 3]`` exponents (lx, ly, lz) in PySCF's order."""
    return np.array([(lx, ly, l - lx - ly) for lx in range(l, -1, -1)
                     for ly in range(l - lx, -1, -1)], dtype=np.int32)


def make_ao_values(basis: GaussianBasis) -> Callable[[jax.Array], jax.Array]:
    """``ao(r [..., 3]) -> [..., n_ao]``: every basis function at every point (bohr)."""
    shells = basis.shells
    cart_to_ao = jnp.asarray(basis.cart_to_ao)

    def ao(r: jax.Array) -> jax.Array:
        blocks = []
        for shell in shells:
            d = r - jnp.asarray(shell.center)
            r2 = jnp.sum(d * d, axis=-1, keepdims=True)
            radial = jnp.exp(-r2 * jnp.asarray(shell.exponents)) @ jnp.asarray(shell.coefficients)
            if shell.l == 0:  # no power of zero (XLA would constant-fold its product)
                angular = jnp.ones((*d.shape[:-1], 1), d.dtype)
            else:
                powers = _cartesian_powers(shell.l)
                # d**0 = 1 also at the centre
                angular = jnp.prod(d[..., None, :] ** jnp.asarray(powers), axis=-1)
            angular = angular * _COMMON_FACTOR.get(shell.l, 1.0)
            # contraction-major: all Cartesian components of contraction 0, then 1, ...
            block = radial[..., :, None] * angular[..., None, :]
            blocks.append(block.reshape(*r.shape[:-1], -1))
        return jnp.concatenate(blocks, axis=-1) @ cart_to_ao

    return ao
