"""The state of a run loaded back from its directory (:mod:`nqs.commands.load`): after a short
exact-summation run, ``expect(H)`` of the loaded state equals the run's final evaluation; an
interrupted run (its last checkpoint) loads too; what cannot be loaded is one line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from nqs.cli import main
from nqs.commands.load import load_run, load_state
from nqs.errors import CheckpointError


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip()


def test_spin_run_loads_with_its_final_energy(tmp_path, capsys) -> None:
    out = tmp_path / "spin"
    code, err = _run(["spin", "--model", "heisenberg", "--size", "4", "--steps", "20",
                      "--sampler", "exact", "--out", str(out)], capsys)
    assert code == 0, err
    energy = json.loads((out / "result.json").read_text())["energy"]
    run = load_run(out)
    assert run.kind == "spin" and run.step == 20 and run.state.is_exact
    stats = run.state.expect(run.operator)
    assert float(np.real(stats.mean)) == pytest.approx(energy, abs=1e-10)
    # the Marshall-rotated basis is known to the loaded state: M^z = 0 in the S^z = 0 sector,
    # and the sum of S_i . S_j over the bonds is the energy (J = 1, S = sigma/2)
    from hamiltonians.spin_observables import spin_dot

    bonds = sum((spin_dot(int(i), int(j)) for i, j in run.model.lattice.bonds),
                start=0 * spin_dot(0, 1))
    assert float(np.real(run.state.expect(bonds).mean)) == pytest.approx(energy, abs=1e-10)


def test_interrupted_spin_run_loads_its_last_checkpoint(tmp_path, capsys) -> None:
    out = tmp_path / "spin-mc"
    code, err = _run(["spin", "--model", "ising", "--size", "6", "--steps", "3",
                      "--samples", "256", "--chains", "16", "--out", str(out)], capsys)
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    (out / "result.json").unlink()  # as a killed run leaves it: a log and a checkpoint
    run = load_run(out)
    assert run.step == 3 and not run.state.is_exact
    stats = run.state.expect(run.operator)  # fresh draws from the checkpointed chains
    assert stats.error_of_mean > 0
    sigma = float(np.hypot(stats.error_of_mean, result["energy_error"]))
    assert abs(float(np.real(stats.mean)) - result["energy"]) < 4 * sigma


def test_molecule_run_loads_with_its_final_energy(tmp_path, capsys) -> None:
    out = tmp_path / "h2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, err = _run(["molecule", "--molecule", "H2", "--steps", "10", "--sampler",
                          "exact", "--out", str(out)], capsys)
    assert code == 0, err
    assert (out / "integrals.npz").is_file()
    energy = json.loads((out / "result.json").read_text())["energy"]
    run = load_run(out)
    assert run.kind == "molecule" and run.step == 10
    assert float(np.real(run.state.expect(run.operator).mean)) == pytest.approx(energy,
                                                                               abs=1e-10)
    from hamiltonians.fermion_operators import number_alpha

    assert float(np.real(run.state.expect(number_alpha(2)).mean)) == pytest.approx(1.0,
                                                                                  abs=1e-12)


def test_what_cannot_be_loaded_is_one_line(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint to load"):
        load_state(tmp_path)
    from nqs.io import save_checkpoint

    save_checkpoint(tmp_path / "checkpoint.msgpack", {"a": np.zeros(2)}, {"seed": 0})
    with pytest.raises(CheckpointError, match="records no options"):
        load_state(tmp_path)
