"""References past FCI: DMRG (block2) and selected CI equal FCI where FCI fits; the bond-dimension
extrapolation; the choice of reference; its cache; bad input on the command line."""

import json
import sys
import warnings

import numpy as np
import pytest

import hamiltonians.chem_reference as chem
import hamiltonians.large_reference as large
from hamiltonians.chem_reference import ReferenceOptions, fci_from_integrals, reference_energies
from hamiltonians.large_reference import (
    choose_reference,
    dmrg_from_integrals,
    extrapolate_discarded_weight,
    sci_from_integrals,
)
from hamiltonians.molecule import MoleculeSpec, compute_integrals, from_preset
from nqs.cli import main
from nqs.errors import InputError


@pytest.fixture(autouse=True)
def _quiet_pyscf():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module", params=["LiH", "H2O", "OH"])
def molecule(request):
    """LiH and H2O / STO-3G, and the OH radical (doublet: the lowest state with S = 1/2)."""
    spec = MoleculeSpec("O 0 0 0; H 0 0 0.97", spin=1) if request.param == "OH" \
        else from_preset(request.param)
    integrals, _ = compute_integrals(spec)
    return request.param, integrals, fci_from_integrals(integrals)[0]


def test_dmrg_equals_fci(molecule):
    """At most 7 orbitals: bond dimensions 40 and 80 reach the FCI energy."""
    _, integrals, e_fci = molecule
    r = dmrg_from_integrals(integrals, bond_dims=(40, 80), sweeps_per_dim=2)
    assert r.energy == pytest.approx(e_fci, abs=1e-6)
    assert r.e_best == pytest.approx(e_fci, abs=1e-6)
    assert r.bond_dims == (80, 40) and len(r.energies) == 2
    assert r.error < 1e-6 and r.wall_time_s > 0


def test_selected_ci_equals_fci(molecule):
    _, integrals, e_fci = molecule
    r = sci_from_integrals(integrals, cutoffs=(1e-3, 1e-4))
    assert r.energy == pytest.approx(e_fci, abs=1e-6)
    assert r.energy >= e_fci - 1e-9  # variational
    s = abs(integrals.spin) / 2
    assert r.s2 == pytest.approx(s * (s + 1), abs=1e-6)
    assert r.cutoffs == (1e-3, 1e-4) and len(r.energies) == 2


def test_extrapolation_recovers_a_linear_law_and_states_its_error():
    dw = np.array([1e-6, 4e-6, 1e-5])
    e = -100.0 + 3.0 * dw  # E(dw) linear: the intercept is exact
    e_x, err = extrapolate_discarded_weight(e, dw)
    assert e_x == pytest.approx(-100.0, abs=1e-12)
    assert err == pytest.approx(3.0 * 1e-6 / large.DMRG_ERROR_FACTOR, rel=1e-6)
    assert np.isnan(extrapolate_discarded_weight(np.array([-1.0]), np.array([1e-6]))[1])
    # no truncation: the energy at the largest M, error = spread of the points
    assert extrapolate_discarded_weight(np.array([-1.0, -1.0 + 1e-12]), np.array([0.0, 1e-20])) \
        == pytest.approx((-1.0, 1e-12))
    # a fit that lands above the best energy (E falling with dw: unconverged points) is not used
    e_x, err = extrapolate_discarded_weight(np.array([-1.0, -1.0005]), np.array([1e-6, 1e-5]))
    assert e_x == -1.0 and err == pytest.approx(0.0005 / 9, rel=1e-6)


def test_choice_of_reference(monkeypatch):
    assert choose_reference("auto", 1000) == "fci"
    assert choose_reference("auto", large.MAX_FCI_DETERMINANTS + 1) == "dmrg"
    assert choose_reference("sci", 10) == "sci"
    with pytest.raises(InputError, match="exceed the FCI limit"):
        choose_reference("fci", 100, max_fci_determinants=10)
    with pytest.raises(InputError, match="unknown reference method"):
        choose_reference("ccsd", 10)
    # memory counts too: a machine of 1 GB takes no 5e6-determinant FCI (about 1.2 GB)
    monkeypatch.setattr(large, "physical_memory_bytes", lambda: 1 << 30)
    assert not large.fci_fits(large.MAX_FCI_DETERMINANTS) and large.fci_fits(10**6)
    assert choose_reference("auto", large.MAX_FCI_DETERMINANTS) == "dmrg"
    monkeypatch.setitem(sys.modules, "pyblock2", None)  # import pyblock2 -> ImportError
    monkeypatch.setitem(sys.modules, "pyblock2.driver", None)
    monkeypatch.setitem(sys.modules, "pyblock2.driver.core", None)
    assert not large.block2_available()
    assert choose_reference("auto", large.MAX_FCI_DETERMINANTS + 1) == "sci"
    with pytest.raises(InputError, match="block2"):
        choose_reference("dmrg", 10)


def test_dmrg_reference_is_cached_with_its_settings(tmp_path, monkeypatch):
    spec = from_preset("LiH")
    opts = ReferenceOptions(method="dmrg", bond_dims=(20, 40), sweeps_per_dim=2)
    r1 = reference_energies(spec, methods=("hf", "dmrg"), cache_dir=tmp_path, options=opts)
    assert r1["e_dmrg"] == pytest.approx(-7.88276220, abs=1e-6)  # docs/references.md
    assert r1["time_dmrg_s"] > 0 and r1["cached"] == []
    assert r1["dmrg_details"]["bond_dims"] == [40, 20]
    stored = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert stored["dmrg_settings"] == {"bond_dims": [20, 40], "sweeps_per_dim": 2}
    calls = []
    real = chem._compute
    monkeypatch.setattr(chem, "_compute", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    r2 = reference_energies(spec, methods=("hf", "dmrg"), cache_dir=tmp_path, options=opts)
    assert calls == [] and r2["e_dmrg"] == r1["e_dmrg"] and r2["cached"] == ["hf", "dmrg"]
    assert chem.reference_energy(r2, "dmrg")["ref_cached"] is True
    # other bond dimensions: DMRG again, HF from the cache
    opts2 = ReferenceOptions(method="dmrg", bond_dims=(30,), sweeps_per_dim=2)
    reference_energies(spec, methods=("hf", "dmrg"), cache_dir=tmp_path, options=opts2)
    assert calls == [("dmrg",)]


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip()


BAD = [
    (["--bond-dims", "100", "0"], "positive"),
    (["--bond-dims", "-5"], "positive"),
    (["--reference", "ccsd"], "invalid choice"),
    (["--dmrg-sweeps", "0"], "positive"),
    (["--sci-cutoffs", "0"], "positive"),
    (["--sci-cutoffs", "2"], "cutoffs must be in (0, 1)"),
    (["--eri-threshold", "-1"], ">= 0"),
    (["--max-fci-determinants", "0"], "positive"),
    (["--reference", "fci", "--max-fci-determinants", "3"], "exceed the fci limit"),
]


@pytest.mark.parametrize("args,words", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_reference_options_one_line_exit_2(args, words, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NQS_CACHE_DIR", str(tmp_path))
    code, err = _run(["bench-fci", "--molecule", "H2", *args, "--steps", "1", "--out",
                      str(tmp_path)], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert words in err.lower(), err


@pytest.mark.parametrize("command", ["bench-fci", "molecule"])
def test_dmrg_without_block2_one_line_exit_2(command, capsys, tmp_path, monkeypatch):
    for name in ("pyblock2", "pyblock2.driver", "pyblock2.driver.core"):
        monkeypatch.setitem(sys.modules, name, None)
    code, err = _run([command, "--molecule", "H2", "--reference", "dmrg", "--steps", "1",
                      "--out", str(tmp_path)], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "block2" in err and err.startswith(f"nqs {command}: error:"), err


def test_table_names_the_reference_and_plots_wall_times(tmp_path):
    from nqs.bench.fci import markdown_table, plot_errors, plot_wall_times

    base = {"basis": "sto-3g", "n_spin_orbitals": 14, "n_electrons": 10, "e_hf": -74.9,
            "e_ccsd_t": -75.0232, "e_nqs": -75.0222, "e_nqs_error": 1e-4, "sampler": "mcmc",
            "chemical_accuracy": True, "wall_time_s": 50.0, "nqs_wall_time_s": 40.0}
    records = [
        base | {"name": "A", "n_determinants": 441, "e_ref": -75.0233, "e_ref_error": 2e-5,
                "reference": "dmrg", "ref_wall_time_s": 3.0, "error_mha": 1.1,
                "ccsd_t_error_mha": 0.1},
        base | {"name": "B", "n_determinants": 225, "e_ref": -75.0233, "e_ref_error": 0.0,
                "reference": "fci", "ref_wall_time_s": 0.5, "error_mha": 1.1,
                "ccsd_t_error_mha": 0.1},
    ]
    rows = markdown_table(records).splitlines()
    assert "| reference |" in rows[0] and "| ref s | NQS s |" in rows[0]
    assert "| DMRG +- 2.0e-05 |" in rows[2] and "| FCI |" in rows[3]
    assert "| 3.0 | 40 | 50 |" in rows[2]
    plot_wall_times(records, tmp_path / "times.png")
    plot_errors(records, tmp_path / "errors.png")
    assert (tmp_path / "times.png").stat().st_size > 0 and (tmp_path / "errors.png").stat().st_size > 0


def test_reference_none_computes_no_reference(capsys, tmp_path, monkeypatch):
    """``--reference none`` (a GPU machine without the solvers): no FCI, DMRG or selected CI is
    run, the result says so, and the run compares with Hartree-Fock alone."""
    from hamiltonians.molecule import write_fcidump

    assert choose_reference("none", 10**12) == "none"

    def refuse(*args, **kwargs):  # noqa: ARG001
        raise AssertionError("a reference was computed")

    monkeypatch.setattr(chem, "compute_reference", refuse)
    monkeypatch.setattr(chem, "fci_from_integrals", refuse)
    monkeypatch.setenv("NQS_CACHE_DIR", str(tmp_path / "cache"))
    integrals, _ = compute_integrals(from_preset("H2"))
    write_fcidump(tmp_path / "H2.FCIDUMP", integrals)
    out = tmp_path / "run"
    code, err = _run(["molecule", "--fcidump", str(tmp_path / "H2.FCIDUMP"), "--reference",
                      "none", "--steps", "2", "--out", str(out)], capsys)
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert result["reference"] == "none" and result["e_ref"] is None
    assert result["error_mha"] is None
