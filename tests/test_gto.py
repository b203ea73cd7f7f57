"""Gaussian basis functions and HF orbitals in JAX against PySCF's own evaluation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)


@pytest.mark.parametrize("atom, basis, cart", [
    ("Li 0 0 0; H 0 0 3.015", "ccpvdz", False),  # s, p, d
    ("N 0 0 0; N 0 0 2.07", "ccpvtz", False),  # up to f
    ("Ne 0 0 0", "ccpvqz", True),  # up to g, Cartesian
])
def test_ao_values_equal_pyscf(atom, basis, cart):
    from pyscf import gto

    from nqs.realspace.gto import basis_from_pyscf, make_ao_values

    mol = gto.M(atom=atom, basis=basis, unit="bohr", cart=cart)
    r = np.random.default_rng(0).normal(size=(64, 3)) * 1.5
    r[0] = mol.atom_coord(0)  # at a nucleus (x**0 with x = 0)
    ref = mol.eval_gto("GTOval_cart" if cart else "GTOval_sph", r)
    got = np.asarray(jax.jit(make_ao_values(basis_from_pyscf(mol)))(r))
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13 * np.max(np.abs(ref)))


def test_hf_orbitals_in_jax_equal_pyscf_uhf():
    from hamiltonians.realspace import make_atoms
    from nqs.realspace.pretrain import hf_orbitals_numpy, make_hf_orbitals, run_hartree_fock

    atoms = make_atoms("Li 0 0 0")  # open shell: UHF, 2 alpha + 1 beta
    hf = run_hartree_fock(atoms, "ccpvdz")
    r = np.random.default_rng(1).normal(size=(5, atoms.n_electrons, 3))
    ref_a, ref_b = hf_orbitals_numpy(hf, r)
    got_a, got_b = jax.jit(jax.vmap(make_hf_orbitals(hf)))(r)
    np.testing.assert_allclose(np.asarray(got_a), ref_a, atol=1e-13)
    np.testing.assert_allclose(np.asarray(got_b), ref_b, atol=1e-13)
