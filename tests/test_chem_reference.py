"""Reference energies (HF, MP2, CCSD, CCSD(T), FCI): values, spin of the FCI state, disk cache."""

import json
import time
import warnings

import pytest

import hamiltonians.chem_reference as chem
from hamiltonians.chem_reference import cache_key, default_cache_dir, reference_energies
from hamiltonians.molecule import MoleculeSpec, from_preset
from nqs.errors import InputError

# docs/references.md: (E(HF), E(CCSD(T)), E(FCI))
TABLE = {
    "H2": (-1.11704163, -1.13730557, -1.13730541),
    "LiH": (-7.86310517, -7.88276023, -7.88276220),
    "C2": (-74.42085974, -74.68760990, -74.69078192),
}


@pytest.fixture(autouse=True)
def _quiet_pyscf():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("name", ["H2", "LiH"])
def test_small_molecules_match_table(tmp_path, name):
    r = reference_energies(from_preset(name), cache_dir=tmp_path)
    e_hf, e_t, e_fci = TABLE[name]
    assert r["e_hf"] == pytest.approx(e_hf, abs=1e-7)
    assert r["e_ccsd_t"] == pytest.approx(e_t, abs=1e-7)
    assert r["e_fci"] == pytest.approx(e_fci, abs=1e-7)
    assert r["e_fci"] < r["e_mp2"] < r["e_hf"]
    assert r["s2_fci"] == pytest.approx(0.0, abs=1e-6)
    assert r["notes"] == {}


def test_c2_fci_is_the_singlet(tmp_path):
    t0 = time.perf_counter()
    r = reference_energies(from_preset("C2"), methods=("hf", "fci"), cache_dir=tmp_path)
    assert r["e_fci"] == pytest.approx(TABLE["C2"][2], abs=1e-6)  # not the triplet -74.6459
    assert r["s2_fci"] == pytest.approx(0.0, abs=1e-6)
    assert time.perf_counter() - t0 < 120


def test_open_shell_and_active_spaces(tmp_path):
    oh = MoleculeSpec("O 0 0 0; H 0 0 0.97", spin=1)
    r = reference_energies(oh, cache_dir=tmp_path)
    assert r["s2_fci"] == pytest.approx(0.75, abs=1e-6)
    assert r["e_fci"] < r["e_ccsd"] + 1e-5 and r["e_ccsd"] < r["e_hf"]
    # CAS: every method in the same active space; FCI equals CASCI
    from pyscf import mcscf

    from hamiltonians.molecule import compute_integrals

    r_cas = reference_energies(from_preset("N2"), cas=(6, 6), cache_dir=tmp_path)
    _, mf = compute_integrals(from_preset("N2"))
    mc = mcscf.CASCI(mf, 6, 6)
    mc.verbose = 0
    assert r_cas["e_fci"] == pytest.approx(mc.kernel()[0], abs=1e-8)
    assert r_cas["e_hf"] == pytest.approx(-107.49119108, abs=1e-7)
    assert r_cas["e_fci"] < r_cas["e_hf"]
    r_fc = reference_energies(from_preset("H2O"), frozen_core=True, cache_dir=tmp_path)
    assert -75.0233 < r_fc["e_fci"] < -75.0230  # above the all-electron FCI -75.02329150
    assert r_fc["e_ccsd_t"] == pytest.approx(r_fc["e_fci"], abs=2e-4)


def test_cache_roundtrip_and_keys(tmp_path, monkeypatch):
    spec = from_preset("H2")
    r1 = reference_energies(spec, methods=("hf", "fci"), cache_dir=tmp_path)
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and files[0].stem == r1["key"]
    assert json.loads(files[0].read_text())["e_fci"] == r1["e_fci"]

    def boom(*args, **kwargs):
        raise AssertionError("recomputed a cached reference")

    monkeypatch.setattr(chem, "_compute", boom)
    r2 = reference_energies(spec, methods=("hf", "fci"), cache_dir=tmp_path)
    assert r2["e_fci"] == r1["e_fci"]
    # equivalent atom strings share a key; basis / frozen core / CAS / spin do not
    same = MoleculeSpec("h 0.0 0 0;H 0 0 .734")
    assert cache_key(same) == cache_key(spec)
    keys = {
        cache_key(spec),
        cache_key(MoleculeSpec(spec.atoms, basis="6-31g")),
        cache_key(spec, frozen_core=True),
        cache_key(spec, cas=(2, 2)),
        cache_key(MoleculeSpec(spec.atoms, charge=1, spin=1)),
        cache_key(spec, eri_threshold=1e-8),
    }
    assert len(keys) == 6


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NQS_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "references"
    reference_energies(from_preset("H2"), methods=("hf",))
    assert len(list((tmp_path / "c" / "references").glob("*.json"))) == 1


def test_fci_too_large_and_bad_method(tmp_path):
    r = reference_energies(from_preset("LiH"), methods=("fci",), cache_dir=tmp_path, max_fci_determinants=10)
    assert r["e_fci"] is None and "exceed" in r["notes"]["fci"]
    with pytest.raises(InputError, match="unknown reference method"):
        reference_energies(from_preset("H2"), methods=("casscf",), cache_dir=tmp_path)
