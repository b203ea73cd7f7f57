"""PySCF objects and xyz files in; dipole moments from 1-RDMs against PySCF."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse.linalg as spla
from pyscf import fci, gto, mcscf, scf

import nqs  # noqa: F401  (float64)
from hamiltonians.molecule import (
    PRESETS,
    compute_integrals,
    dipole_from_rdm,
    dipole_moment,
    from_preset,
    from_pyscf,
    parse_molecule,
    read_xyz,
)
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.errors import InputError
from nqs.operator import to_sparse

warnings.filterwarnings("ignore", message=".*")


def lih_mole():
    return gto.M(atom="Li 0 0 0; H 0 0 1.548", basis="sto-3g", verbose=0)


def ground_energy(integrals) -> float:
    """Lowest eigenvalue of nqs's Hamiltonian matrix in the N_alpha, N_beta sector."""
    h = to_sparse(MolecularHamiltonian(integrals))
    if h.shape[0] < 64:
        return float(np.linalg.eigvalsh(h.toarray())[0])
    return float(spla.eigsh(h, k=1, which="SA")[0][0])


def test_from_pyscf_scf_object_fci_energy_equals_pyscf() -> None:
    mf = scf.RHF(lih_mole()).run()
    ints = from_pyscf(mf, frozen=1)
    assert (ints.n_orbitals, ints.n_alpha, ints.n_beta) == (5, 1, 1)
    e_ref = mcscf.CASCI(mf, 5, 2).kernel()[0]
    assert ground_energy(ints) == pytest.approx(e_ref, abs=1e-9)
    full = from_pyscf(mf)
    assert ground_energy(full) == pytest.approx(fci.FCI(mf).kernel()[0], abs=1e-9)


def test_from_pyscf_keeps_the_orbitals_of_the_scf_object() -> None:
    mol = gto.M(atom="H 0 0 0; H 0 0 0.734", basis="6-31g", verbose=0)
    mf = scf.RHF(mol).run()
    rng = np.random.default_rng(0)  # rotate the virtual orbitals among themselves
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    mf.mo_coeff = mf.mo_coeff.copy()
    mf.mo_coeff[:, 1:] = mf.mo_coeff[:, 1:] @ q
    ints = from_pyscf(mf)
    np.testing.assert_allclose(ints.mo_coeff, mf.mo_coeff)
    np.testing.assert_allclose(ints.h1, mf.mo_coeff.T @ mf.get_hcore() @ mf.mo_coeff, atol=1e-12)
    assert ground_energy(ints) == pytest.approx(fci.FCI(mf).kernel()[0], abs=1e-9)


def test_a_mole_and_compute_integrals_of_a_mole() -> None:
    ints_m = from_pyscf(lih_mole(), cas=(2, 3))
    ints_s, _ = compute_integrals(from_preset("LiH"), cas=(2, 3))
    assert ints_m.e_core == pytest.approx(ints_s.e_core, abs=1e-9)
    assert ints_m.hf_energy() == pytest.approx(ints_s.hf_energy(), abs=1e-9)
    ints_c, mf = compute_integrals(lih_mole())
    assert mf.mol.natm == 2 and ints_c.n_orbitals == 6


def test_bad_pyscf_inputs() -> None:
    with pytest.raises(InputError, match="from_pyscf takes"):
        from_pyscf("LiH")
    with pytest.raises(InputError, match="compute_integrals takes"):
        compute_integrals(42)
    with pytest.raises(InputError, match="restricted"):
        from_pyscf(scf.UHF(lih_mole()).run())
    with pytest.raises(InputError, match="not built"):
        from_pyscf(gto.Mole(atom="H 0 0 0; H 0 0 0.7"))
    with pytest.raises(InputError, match="either"):
        from_pyscf(lih_mole(), frozen=1, cas=(2, 3))


def test_xyz_file_gives_the_preset_integrals(tmp_path) -> None:
    atoms = [a.split() for a in PRESETS["H2O"].split(";")]
    lines = ["3", "water, the comment line is ignored: 1 2 3"]
    lines += [f"{s}  {float(x):.6f} {float(y):.6f} {float(z):.6f}" for s, x, y, z in atoms]
    path = tmp_path / "water.xyz"
    path.write_text("\n".join(lines) + "\n\n")
    spec = parse_molecule(str(path), unit="bohr")  # an xyz file is in Angstrom regardless
    assert spec.name == "water" and spec.unit == "angstrom"
    mine, _ = compute_integrals(spec)
    ref, _ = compute_integrals(from_preset("H2O"))
    assert mine.e_core == pytest.approx(ref.e_core, abs=1e-10)
    assert mine.hf_energy() == pytest.approx(ref.hf_energy(), abs=1e-10)
    np.testing.assert_allclose(np.abs(mine.h1), np.abs(ref.h1), atol=1e-8)


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("two\n\nH 0 0 0\nH 0 0 1\n", "number of atoms"),
    ("0\n\n", "positive"),
    ("2\ncomment\nH 0 0 0\n", "announces 2 atoms, 1"),
    ("1\ncomment\nH 0 0 0\nH 0 0 1\n", "announces 1 atoms, 2"),
    ("1\ncomment\nH 0 0\n", "Symbol x y z"),
    ("1\ncomment\nH 0 0 zero\n", "not a number"),
])
def test_malformed_xyz(tmp_path, text, message) -> None:
    path = tmp_path / "bad.xyz"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        read_xyz(path)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="cannot read"):
        read_xyz(tmp_path / "missing.xyz")


def test_hf_dipole_equals_pyscf() -> None:
    """The HF determinant's 1-RDM (2 on the occupied orbitals), frozen core included."""
    mol = gto.M(atom=PRESETS["H2O"], basis="sto-3g", verbose=0)
    mf = scf.RHF(mol).run()
    ref = mf.dip_moment(unit="AU", verbose=0)
    assert np.linalg.norm(ref) > 0.5  # water has a dipole: the test can fail
    for frozen in (False, 1):
        ints = from_pyscf(mf, frozen=frozen)
        gamma = np.diag([2.0] * ints.n_alpha + [0.0] * (ints.n_orbitals - ints.n_alpha))
        np.testing.assert_allclose(dipole_from_rdm(mf, ints, gamma), ref, atol=1e-8)


def test_fci_dipole_equals_the_pyscf_fci_density() -> None:
    mol = gto.M(atom=PRESETS["LiH"], basis="sto-3g", verbose=0)
    mf = scf.RHF(mol).run()
    cis = fci.FCI(mf)
    e, ci = cis.kernel()
    dm_mo = cis.make_rdm1(ci, mf.mo_coeff.shape[1], mol.nelectron)
    dm_ao = mf.mo_coeff @ dm_mo @ mf.mo_coeff.T
    ref = scf.hf.dip_moment(mol, dm_ao, unit="AU", verbose=0)
    ints = from_pyscf(mf)
    np.testing.assert_allclose(dipole_from_rdm(mf, ints, dm_mo), ref, atol=1e-8)
    hf = dipole_moment(mol, mf.mo_coeff, np.diag([2.0, 2, 0, 0, 0, 0]))
    assert np.linalg.norm(hf - ref) > 1e-3  # correlation moves the dipole
    # frozen 1s core: the active FCI density plus the core gives the CASCI dipole
    mc = mcscf.CASCI(mf, 5, 2)
    mc.kernel()
    ref_cas = scf.hf.dip_moment(mol, mc.make_rdm1(), unit="AU", verbose=0)
    act = mc.fcisolver.make_rdm1(mc.ci, 5, 2)
    ints_fc = from_pyscf(mf, frozen=1)
    np.testing.assert_allclose(dipole_from_rdm(mf, ints_fc, act), ref_cas, atol=1e-8)


def test_realspace_reads_xyz_in_angstrom(tmp_path) -> None:
    import argparse

    from nqs.commands.realspace import resolve_system

    path = tmp_path / "h2.xyz"
    path.write_text("2\nH2\nH 0 0 0\nH 0 0 0.74\n")
    args = argparse.Namespace(molecule=str(path), preset=None, charge=0, spin=None, unit="bohr")
    name, atoms, reference, _ = resolve_system(args)
    assert name == "h2" and reference is None
    dist = np.linalg.norm(atoms.positions[1] - atoms.positions[0])
    assert dist == pytest.approx(0.74 * 1.8897261246, rel=1e-8)
