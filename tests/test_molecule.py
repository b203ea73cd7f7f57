"""Molecule specs, validation, MO integrals (full, frozen core, CAS) and integral files."""

import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hamiltonians.chem_reference import fci_from_integrals
from hamiltonians.molecule import (
    PRESETS,
    MolecularIntegrals,
    MoleculeSpec,
    build_mole,
    compute_integrals,
    from_preset,
    load_npz,
    parse_molecule,
    read_fcidump,
    save_npz,
    validate,
    write_fcidump,
)
from nqs.errors import InputError

ROOT = Path(__file__).resolve().parents[1]

# E(HF) of docs/references.md
HF_REFERENCE = {
    "H2": -1.11704163,
    "LiH": -7.86310517,
    "H2O": -74.96254759,
    "NH3": -55.45128413,
    "N2": -107.49119108,
    "C2": -74.42085974,
}


@pytest.fixture(autouse=True)
def _quiet_pyscf():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PySCF suggests basis-set-exchange for unknown bases
        yield


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_hartree_fock(name):
    integrals, mf = compute_integrals(from_preset(name))
    assert mf.converged
    assert mf.e_tot == pytest.approx(HF_REFERENCE[name], abs=1e-7)
    # the aufbau determinant of our MO integrals reproduces the SCF energy
    assert integrals.hf_energy() == pytest.approx(mf.e_tot, abs=1e-9)
    h2 = integrals.h2
    for perm in [(1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)]:
        np.testing.assert_allclose(h2, h2.transpose(perm), atol=1e-12)
    np.testing.assert_allclose(integrals.h1, integrals.h1.T, atol=1e-12)


def test_preset_sizes():
    integrals, _ = compute_integrals(from_preset("N2"))
    assert (integrals.n_orbitals, integrals.n_alpha, integrals.n_beta) == (10, 7, 7)
    assert integrals.n_electrons == 14
    assert from_preset("lih").name == "LiH"
    assert MoleculeSpec.from_preset("C2").atoms == PRESETS["C2"]


def test_parse_molecule_and_units():
    assert parse_molecule("h2").atoms == PRESETS["H2"]
    spec = parse_molecule("H 0 0 0\nH 0 0 0.734")
    ang, _ = compute_integrals(spec)
    bohr = 0.734 / 0.52917721092
    spec_bohr = parse_molecule(f"H 0 0 0; H 0 0 {bohr}", unit="Bohr")
    b, _ = compute_integrals(spec_bohr)
    assert b.e_core == pytest.approx(ang.e_core, abs=1e-10)
    assert b.hf_energy() == pytest.approx(ang.hf_energy(), abs=1e-9)
    assert build_mole(spec).nelectron == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(atoms="Xx 0 0 0"), "unknown element 'Xx'"),
        (dict(atoms="H 0 0 0"), "same parity"),
        (dict(atoms="H 0 0 0; H 0 0 0.734", spin=3), "impossible"),
        (dict(atoms="H 0 0 0; H 0 0 0.734", charge=3), "negative number of electrons"),
        (dict(atoms="H 0 0 0; H 0 0 0.01"), "apart"),
        (dict(atoms="H 0 0 0; H 0 0 0.734", basis="no-such-basis"), "unknown to PySCF"),
        (dict(atoms="H 0 0; H 0 0 0.734"), "malformed atom line"),
        (dict(atoms="H 0 0 zero"), "coordinates must be numbers"),
        (dict(atoms="H 0 0 0; H 0 0 0.734", unit="furlong"), "unknown unit"),
        (dict(atoms=" ; "), "no atoms"),
    ],
)
def test_bad_specs(kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        validate(MoleculeSpec(**kwargs))
    assert "\n" not in str(info.value)


def test_unknown_preset():
    with pytest.raises(InputError, match="unknown molecule preset"):
        from_preset("Unobtainium")


@pytest.mark.parametrize(
    ("cas", "match"),
    [
        ((2, 3), "more orbitals than the basis"),
        ((1, 2), "odd number of core electrons"),
        ((4, 2), "more electrons than the molecule"),
    ],
)
def test_bad_cas_h2(cas, match):
    with pytest.raises(InputError, match=match):
        compute_integrals(from_preset("H2"), cas=cas)


def test_bad_cas_lih():
    with pytest.raises(InputError, match="basis has 6"):
        compute_integrals(from_preset("LiH"), cas=(2, 6))  # 1 core + 6 active > 6
    with pytest.raises(InputError, match="either frozen_core or cas"):
        compute_integrals(from_preset("LiH"), frozen_core=True, cas=(2, 2))


def test_frozen_core_and_cas_shapes():
    fc, _ = compute_integrals(from_preset("H2O"), frozen_core=True)
    assert (fc.n_orbitals, fc.n_alpha, fc.n_beta) == (6, 4, 4)  # O 1s frozen
    cas, mf = compute_integrals(from_preset("N2"), cas=(6, 6))
    assert (cas.n_orbitals, cas.n_alpha, cas.n_beta) == (6, 3, 3)
    # canonical RHF orbitals: the CAS aufbau determinant is still the HF determinant
    assert cas.hf_energy() == pytest.approx(mf.e_tot, abs=1e-9)
    assert fc.hf_energy() == pytest.approx(HF_REFERENCE["H2O"], abs=1e-7)


def test_open_shell_uses_rohf():
    integrals, mf = compute_integrals(MoleculeSpec("O 0 0 0; H 0 0 0.97", spin=1))
    assert type(mf).__name__.startswith("ROHF")
    assert (integrals.n_alpha, integrals.n_beta) == (5, 4)
    assert integrals.hf_energy() == pytest.approx(mf.e_tot, abs=1e-9)


def _assert_same(a: MolecularIntegrals, b: MolecularIntegrals, atol: float) -> None:
    assert (a.n_orbitals, a.n_alpha, a.n_beta) == (b.n_orbitals, b.n_alpha, b.n_beta)
    np.testing.assert_allclose(a.h1, b.h1, atol=atol, rtol=0)
    np.testing.assert_allclose(a.h2, b.h2, atol=atol, rtol=0)
    assert a.e_core == pytest.approx(b.e_core, abs=atol)


@pytest.mark.parametrize("spin", [0, 1])
def test_fcidump_and_npz_round_trip(tmp_path, spin):
    spec = from_preset("LiH") if spin == 0 else MoleculeSpec("Li 0 0 0", spin=1)
    integrals, _ = compute_integrals(spec)
    write_fcidump(tmp_path / "FCIDUMP", integrals)
    from_dump = read_fcidump(tmp_path / "FCIDUMP")
    _assert_same(integrals, from_dump, atol=1e-15)
    save_npz(tmp_path / "ints.npz", integrals)
    from_npz = load_npz(tmp_path / "ints.npz")
    _assert_same(integrals, from_npz, atol=0)
    np.testing.assert_array_equal(from_npz.mo_coeff, integrals.mo_coeff)
    e0, _ = fci_from_integrals(integrals)
    assert fci_from_integrals(from_dump)[0] == pytest.approx(e0, abs=1e-12)
    assert fci_from_integrals(from_npz)[0] == pytest.approx(e0, abs=1e-12)
    if spin == 0:
        assert e0 == pytest.approx(-7.88276220, abs=1e-6)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_fcidump(tmp_path / "nope")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read integrals"):
        load_npz(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="do not match"):
        MolecularIntegrals(np.zeros((2, 2)), np.zeros((3, 3, 3, 3)), 0.0, 2, 1, 1)


def test_modules_import_without_pyscf():
    code = (
        "import sys, hamiltonians.molecule, hamiltonians.second_quantized, "
        "hamiltonians.chem_reference; assert 'pyscf' not in sys.modules, 'pyscf imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_fcidump_parser_matches_pyscf(tmp_path):
    """The numpy FCIDUMP reader gives PySCF's integrals (8-fold symmetry restored, ECORE)."""
    from pyscf import ao2mo
    from pyscf.tools import fcidump

    from hamiltonians.fcidump import parse_fcidump

    integrals, _ = compute_integrals(MoleculeSpec("H 0 0 0; F 0 0 0.92", basis="6-31g"))
    path = tmp_path / "FCIDUMP"
    write_fcidump(path, integrals)
    ours = parse_fcidump(path.read_text())
    ref = fcidump.read(str(path), verbose=False)
    n = ref["NORB"]
    assert (ours["NORB"], ours["NELEC"], ours["MS2"]) == (n, ref["NELEC"], ref["MS2"])
    np.testing.assert_array_equal(ours["H1"], ref["H1"])
    np.testing.assert_array_equal(ours["H2"], ao2mo.restore(1, ref["H2"], n))
    assert ours["ECORE"] == ref["ECORE"]
    # Fortran exponents and a "/" terminator read the same
    text = path.read_text().replace("&END", "/").replace("e-", "D-")
    np.testing.assert_array_equal(parse_fcidump(text)["H2"], ours["H2"])


@pytest.mark.parametrize("frozen_core", [False, True])
def test_orbital_signs_are_fixed(frozen_core):
    """The orbitals of a molecule's own SCF are in the fixed gauge (another process's SCF may
    return other signs), with and without a frozen core; ``fix_orbital_signs`` maps orbitals
    with flipped signs to the same matrix. ``same_hamiltonian`` accepts a rotation of the
    orbitals and refuses another geometry."""
    from hamiltonians.molecule import compute_integrals, fix_orbital_signs, same_hamiltonian

    a, mf = compute_integrals(from_preset("LiH"), frozen_core=frozen_core)
    np.testing.assert_array_equal(fix_orbital_signs(a.mo_coeff), a.mo_coeff)
    assert not np.array_equal(np.abs(a.mo_coeff), a.mo_coeff)  # not all positive
    flipped = mf.mo_coeff * np.where(np.arange(mf.mo_coeff.shape[1]) % 2 == 1, -1.0, 1.0)
    np.testing.assert_array_equal(fix_orbital_signs(flipped), fix_orbital_signs(mf.mo_coeff))
    # a random rotation of the orbitals is the same Hamiltonian; a stretched bond is not
    n = a.n_orbitals
    u, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(n, n)))
    rotated = replace(a, h1=u.T @ a.h1 @ u,
                      h2=np.einsum("pqrs,pi,qj,rk,sl->ijkl", a.h2, u, u, u, u))
    assert same_hamiltonian(a, rotated)
    other, _ = compute_integrals(parse_molecule("Li 0 0 0; H 0 0 1.7"), frozen_core=frozen_core)
    assert not same_hamiltonian(a, other)


def test_degenerate_orbitals_do_not_depend_on_the_scf():
    """N2's pi pairs are degenerate, and an SCF may return any rotation of each pair: the
    integrals of the molecule's own SCF are the same for every such rotation (1e-10), the pi
    orbitals come out symmetry adapted (one on the p_x AOs, one on the p_y AOs), the orbital
    energies and the Hartree-Fock energy are unchanged, and a non-degenerate set is left
    alone."""
    from hamiltonians.molecule import _integrals_from_scf, align_degenerate_orbitals

    a, mf = compute_integrals(from_preset("N2"))
    energy = mf.mo_energy
    pairs = np.flatnonzero(np.abs(np.diff(energy)) < 1e-5)
    assert len(pairs) == 2  # occupied and virtual pi
    rng = np.random.default_rng(3)
    turned = mf.mo_coeff.copy()
    for i in pairs:
        th = rng.uniform(0, 2 * np.pi)
        turned[:, i : i + 2] = turned[:, i : i + 2] @ np.array([[np.cos(th), -np.sin(th)],
                                                              [np.sin(th), np.cos(th)]])
    mf.mo_coeff = turned
    b = _integrals_from_scf(mf, False, None, 1e-12, "N2", fix_signs=True)
    np.testing.assert_allclose(b.h1, a.h1, atol=1e-10)
    np.testing.assert_allclose(b.h2, a.h2, atol=1e-10)
    assert abs(b.hf_energy() - mf.e_tot) < 1e-9
    labels = mf.mol.ao_labels()
    px = np.array(["px" in s for s in labels])
    py = np.array(["py" in s for s in labels])
    for i in pairs:
        pi = a.mo_coeff[:, i : i + 2]
        assert np.abs(pi[~px, 0]).max() < 1e-8 and np.abs(pi[~py, 1]).max() < 1e-8
    fock = a.mo_coeff.T @ mf.get_fock() @ a.mo_coeff
    np.testing.assert_allclose(fock, np.diag(energy), atol=1e-8)
    lone = mf.mo_coeff[:, :3]
    np.testing.assert_array_equal(align_degenerate_orbitals(lone, energy[:3], mf.mo_occ[:3]), lone)
