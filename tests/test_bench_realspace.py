"""``nqs bench-fci --realspace``: table, references and bad inputs (fast, tiny network)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.realspace import make_atoms
from nqs.bench.realspace import TABLE_COLUMNS, exact_reference, job_from_text
from nqs.cli import EXIT_BAD_INPUT, main

TINY = ["--walkers", "16", "--rs-layers", "1", "--rs-hidden", "8", "4", "--rs-determinants", "1",
        "--rs-optimizer", "adam", "--rs-lr", "0.01", "--mcmc-steps", "2", "--eval-steps", "4",
        "--pretrain-steps", "0"]
H2_EXACT = -1.17448
HE_EXACT = -2.903724377  # Pekeris


def test_cli_table_and_energies(tmp_path, capsys):
    out = tmp_path / "bench"
    # He in 6-31G: two basis functions, so HF lies above FCI; the network (TINY) and the atom
    # are those of tests/test_realspace_cli.py, whose compiled programs the session's
    # compilation cache then shares with this run
    rc = main(["bench-fci", "--realspace", "--molecule", "He", "--basis", "6-31g",
               "--rs-steps", "3", *TINY, "--out", str(out)])
    assert rc == 0
    stdout = capsys.readouterr().out
    header = "| " + " | ".join(TABLE_COLUMNS) + " |"
    assert header in stdout and "NOT a lower bound" in stdout
    assert header in (out / "results.md").read_text()
    (rec,) = json.loads((out / "results.json").read_text())
    assert rec["name"] == "He" and rec["n_electrons"] == 2 and rec["basis"] == "6-31g"
    assert rec["e_exact"] == pytest.approx(HE_EXACT)
    # 6-31G: HF (-2.8552) above FCI (-2.8702), and FCI tens of mHa above the exact energy.
    assert rec["e_hf"] > rec["e_fci"] > HE_EXACT + 0.02
    assert rec["e_fci"] == pytest.approx(-2.8701621, abs=1e-5)
    e, err = rec["e_realspace"], rec["e_realspace_error"]
    assert np.isfinite(e) and np.isfinite(err) and err > 0
    # Variational in real space: above the exact energy (a loose margin for 64 samples).
    assert e > HE_EXACT - 5 * err - 0.05
    assert rec["realspace_minus_exact_mha"] == pytest.approx((e - HE_EXACT) * 1e3)
    assert rec["realspace_minus_fci_mha"] == pytest.approx((e - rec["e_fci"]) * 1e3)
    assert (out / "He" / "log.jsonl").exists()
    assert rec["provenance"]["geometry"] == {"atoms": "He 0 0 0", "unit": "bohr"}
    assert rec["config"]["options"]["realspace"] is True
    assert "He: geometry (bohr) He 0 0 0" in stdout


def test_exact_reference_matches_geometry_only():
    # H2 at R = 1.4 bohr in any orientation has the tabulated energy; R = 1.387 bohr has none.
    d = 1.4 / np.sqrt(3)
    rotated = make_atoms(f"H 1 1 1; H {1 + d} {1 + d} {1 + d}")
    assert exact_reference(rotated)[0] == pytest.approx(H2_EXACT)
    assert exact_reference(make_atoms("H 0 0 0; H 0 0 1.387"))[0] is None
    assert exact_reference(make_atoms("He 0 0 0", charge=1))[0] is None
    lih = job_from_text("lih")
    assert exact_reference(make_atoms(lih.geometry))[0] == pytest.approx(-8.070548)
    # A basis-set preset is converted from Angstrom to bohr.
    h2o = make_atoms(job_from_text("H2O").geometry)
    assert h2o.n_electrons == 10 and exact_reference(h2o) == (None, None)


@pytest.mark.parametrize("extra", [["--fcidump", "x.fcidump"], ["--cas", "2", "2"],
                                   ["--frozen-core"], ["--molecule", "Xx 0 0 0"],
                                   ["--eval-steps", "1"]])
def test_bad_input_is_one_line_exit_2(extra, tmp_path, capsys):
    rc = main(["bench-fci", "--realspace", *extra, "--out", str(tmp_path)])
    assert rc == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("nqs bench-fci: error:") and "\n" not in err, err


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_open_shell_presets_carry_their_ground_state_spin():
    # The tabulated first-row energies are those of the Hund's-rule ground states (C: triplet);
    # a singlet C has no tabulated energy, and --preset C builds the triplet.
    import argparse

    from nqs.commands.realspace import resolve_system

    assert exact_reference(make_atoms("C 0 0 0", spin=2))[0] == pytest.approx(-37.8450)
    assert exact_reference(make_atoms("C 0 0 0", spin=0)) == (None, None)
    assert exact_reference(make_atoms("N 0 0 0", spin=3))[0] == pytest.approx(-54.5892)
    args = argparse.Namespace(molecule=None, preset="C", charge=0, spin=None, unit="bohr", ecp=None)
    name, atoms, energy, _ = resolve_system(args)
    assert (name, atoms.spin, energy) == ("C", 2, pytest.approx(-37.8450))
    args.spin = 0
    assert resolve_system(args)[2] is None
    args.preset, args.molecule, args.spin = None, "O 0 0 0", 2
    assert resolve_system(args)[2] == pytest.approx(-75.0673)
