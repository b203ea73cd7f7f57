"""Provenance and configuration files: what result.json records, ``--dump-config`` /
``--config`` rerun a run exactly, bad config files are one line and exit 2, one ``--unit``
default (angstrom) on the commands that take a geometry, ``nqs --version`` / ``python -m nqs``,
files readable by the group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from nqs.cli import build_parser, main
from nqs.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
# the settings of tests/test_cli.py's spin runs with fewer steps
SPIN = ["spin", "--model", "ising", "--size", "6", "--steps", "4", "--samples", "32",
        "--chains", "8", "--chunk-size", "none"]
PROVENANCE_KEYS = {"command_line", "nqs_version", "git_commit", "git_dirty", "python",
                   "jax_version", "backend", "device_kind", "n_devices", "n_processes", "dtype"}


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def _modes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}


def test_version_and_python_m():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    for cmd in ([sys.executable, "-m", "nqs", "--version"],
                [sys.executable, "-m", "nqs.cli", "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env,
                             cwd=ROOT).stdout
        assert out.strip() == f"nqs {version}"
    out = subprocess.run([sys.executable, "-m", "nqs", "spin", "--help"], capture_output=True,
                         text=True, check=True, env=env, cwd=ROOT).stdout
    assert "--config" in out and "--dump-config" in out


def test_license_citation_changelog():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    license_id = project["license"]["text"]
    text = (ROOT / "LICENSE").read_text()
    assert license_id == "Apache-2.0" and "Apache License" in text and "Version 2.0" in text
    cff = (ROOT / "CITATION.cff").read_text()
    assert "cff-version:" in cff and f"version: {project['version']}" in cff
    assert f"license: {license_id}" in cff
    assert f"## {project['version']}" in (ROOT / "CHANGELOG.md").read_text()


def test_dump_config_and_rerun_give_the_same_trajectory(tmp_path, capsys):
    old_umask = os.umask(0o022)
    try:
        first, again, seeded = tmp_path / "first", tmp_path / "again", tmp_path / "seeded"
        code, _, err = _run([*SPIN, "--out", str(first)], capsys)
        assert code == 0, err
        config = tmp_path / "spin.json"
        code, out, err = _run([*SPIN, "--out", str(first), "--dump-config", str(config)],
                              capsys)
        assert code == 0 and "--config" in err
        assert not list((first).glob("*.tmp"))  # --dump-config runs nothing
        dumped = json.loads(config.read_text())
        assert dumped["command"] == "spin" and dumped["nqs_config"] == 1
        options = dumped["options"]
        assert options["size"] == 6 and options["steps"] == 4 and options["chunk_size"] is None
        assert options["out"] == str(first) and "resume" not in options
        # every option of the subcommand is in the file
        parser = build_parser()
        args = parser.parse_args(SPIN)
        expected = {k for k in vars(args) if k not in ("command", "handler", "config",
                                                        "dump_config", "resume", "overwrite",
                                                        "resolve_options")}
        assert set(options) == expected

        # the run records the same options (and its provenance)
        result = json.loads((first / "result.json").read_text())
        assert result["config"]["options"] == options
        prov = result["provenance"]
        assert PROVENANCE_KEYS <= set(prov)
        assert prov["command_line"].startswith("nqs spin --model ising --size 6")
        assert prov["dtype"] == "float64" and prov["backend"] == "cpu"
        assert "geometry" not in prov  # a lattice, no geometry
        # files readable by the group (atomic writes go through 0600 temporary files)
        modes = _modes(first)
        assert {"result.json", "checkpoint.msgpack", "log.jsonl"} <= set(modes)
        assert set(modes.values()) == {0o644}, modes

        # --config: the same trajectory, step for step; a flag given overrides the file
        code, _, err = _run(["spin", "--config", str(config), "--out", str(again)], capsys)
        assert code == 0, err
        log1, log2 = read_jsonl(first / "log.jsonl"), read_jsonl(again / "log.jsonl")
        assert [r["energy"] for r in log1] == [r["energy"] for r in log2]
        rerun = json.loads((again / "result.json").read_text())
        assert rerun["energy"] == result["energy"]
        assert rerun["config"]["options"] == options | {"out": str(again)}
        # a result.json is a config too; --seed overrides it
        code, _, err = _run(["spin", "--config", str(first / "result.json"), "--seed", "1",
                             "--out", str(seeded)], capsys)
        assert code == 0, err
        seeded_result = json.loads((seeded / "result.json").read_text())
        assert seeded_result["config"]["options"] == options | {"out": str(seeded), "seed": 1}
        assert [r["energy"] for r in read_jsonl(seeded / "log.jsonl")] != \
            [r["energy"] for r in log1]
    finally:
        os.umask(old_umask)


def _write(path: Path, data) -> str:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


BAD_CONFIGS = [
    ({"command": "spin", "options": {"sise": 6}}, "unknown option 'sise'"),
    ({"command": "spin", "option": {"size": 6}}, "unknown key 'option'"),
    ({"command": "molecule", "options": {}}, "config of nqs molecule"),
    ({"command": "spin", "options": {"size": "six"}}, "'size'"),
    ({"command": "spin", "options": {"lr": -1}}, "'lr'"),
    ({"command": "spin", "options": {"model": "potts"}}, "invalid choice"),
    ({"command": "spin", "options": {"open": "yes"}}, "true or false"),
    ({"command": "spin", "options": {"size": None}}, "null"),
    ({"command": "spin", "options": {"observe": "energy"}}, "list"),
    ({"nqs_config": 7, "command": "spin", "options": {}}, "format"),
    ({"command": "spin", "options": {"config": "x.json"}}, "unknown option"),
    ([1, 2], "json object"),
    ("{not json", "not a json file"),
]


@pytest.mark.parametrize("data,word", BAD_CONFIGS, ids=[w for _, w in BAD_CONFIGS])
def test_bad_config_one_line_exit_2(data, word, tmp_path, capsys):
    path = _write(tmp_path / "c.json", data)
    code, _, err = _run(["spin", "--config", path, "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert word.lower() in err.lower(), err
    assert not (tmp_path / "out").exists()


def test_missing_config_file(tmp_path, capsys):
    code, _, err = _run(["molecule", "--config", str(tmp_path / "none.json")], capsys)
    assert code == 2 and "no such file" in err and len(err.splitlines()) == 1


def test_config_accepts_option_spellings(tmp_path, capsys):
    """Keys as in the result (diag_shift), with dashes, or as the flag; lists for nargs."""
    path = _write(tmp_path / "c.json", {"options": {"diag-shift": 0.02, "--seed": 5,
                                                    "hidden": [8, 4], "cas": [2, 2]}})
    dump = tmp_path / "d.json"
    code, _, err = _run(["molecule", "--molecule", "H2", "--config", path, "--dump-config",
                         str(dump)], capsys)
    assert code == 0, err
    options = json.loads(dump.read_text())["options"]
    assert options["diag_shift"] == 0.02 and options["seed"] == 5
    assert options["hidden"] == [8, 4] and options["cas"] == [2, 2]
    assert options["unit"] == "angstrom" and options["molecule"] == "H2"


def test_one_unit_default_angstrom_on_every_geometry_command():
    parser = build_parser()
    for argv in (["molecule"], ["bench-fci"], ["realspace"]):
        assert parser.parse_args(argv).unit == "angstrom", argv
    assert not hasattr(parser.parse_args(["spin"]), "unit")


def test_realspace_geometry_in_angstrom_by_default(capsys):
    from nqs.commands import realspace as realspace_cmd

    parser = build_parser()
    # H2 at 0.7408481 angstrom = 1.4 bohr: the tabulated geometry and its exact energy
    args = parser.parse_args(["realspace", "--molecule", "H 0 0 0; H 0 0 0.7408481"])
    name, atoms, reference, _ = realspace_cmd.resolve_system(args)
    np.testing.assert_allclose(atoms.positions[1], [0, 0, 1.4], atol=1e-6)
    assert reference == pytest.approx(-1.17448, abs=1e-6)
    line = realspace_cmd.geometry_line(name, atoms, args)
    assert "(bohr) H 0 0 0; H 0 0 1.4 = (angstrom) H 0 0 0; H 0 0 0.740848" in line
    args = parser.parse_args(["realspace", "--molecule", "H 0 0 0; H 0 0 1.4", "--unit", "bohr"])
    assert realspace_cmd.resolve_system(args)[2] == pytest.approx(-1.17448, abs=1e-6)
    assert "angstrom" not in realspace_cmd.geometry_line(name, atoms, args)
    args = parser.parse_args(["realspace", "--preset", "LiH"])  # presets are in bohr
    np.testing.assert_allclose(realspace_cmd.resolve_system(args)[1].positions[1],
                               [0, 0, 3.015])


def test_realspace_dump_config_resolves_device_defaults(tmp_path, capsys):
    dump = tmp_path / "rs.json"
    code, _, err = _run(["realspace", "--preset", "He", "--dump-config", str(dump)], capsys)
    assert code == 0, err
    options = json.loads(dump.read_text())["options"]
    for key in ("layers", "hidden", "determinants", "walkers", "steps", "optimizer", "momentum"):
        assert options[key] is not None, key
    assert options["unit"] == "angstrom"


def test_realspace_config_rerun_gives_the_same_trajectory(tmp_path, capsys):
    """``nqs realspace --dump-config`` then ``--config``: the same trajectory, step for step."""
    tiny = ["realspace", "--preset", "He", "--layers", "1", "--hidden", "8", "4",
            "--determinants", "1", "--walkers", "16", "--mcmc-steps", "2", "--eval-steps", "2",
            "--optimizer", "adam", "--lr", "0.01", "--steps", "3", "--seed", "5"]
    first, again, config = tmp_path / "first", tmp_path / "again", tmp_path / "rs.json"
    code, _, err = _run([*tiny, "--out", str(first)], capsys)
    assert code == 0, err
    code, _, err = _run([*tiny, "--out", str(first), "--dump-config", str(config)], capsys)
    assert code == 0, err
    code, _, err = _run(["realspace", "--config", str(config), "--out", str(again)], capsys)
    assert code == 0, err
    log1, log2 = read_jsonl(first / "log.jsonl"), read_jsonl(again / "log.jsonl")
    assert len(log1) == 3 and [r["energy"] for r in log1] == [r["energy"] for r in log2]
    result = json.loads((first / "result.json").read_text())
    rerun = json.loads((again / "result.json").read_text())
    assert rerun["energy"] == result["energy"]
    assert rerun["config"]["options"] == result["config"]["options"] | {"out": str(again)}


def test_molecule_presets_ignore_unit():
    from hamiltonians.molecule import parse_molecule

    spec = parse_molecule("LiH", unit="bohr")
    assert spec.unit == "angstrom" and "1.548" in spec.atoms
    assert parse_molecule("H 0 0 0; H 0 0 1.4", unit="bohr").unit == "bohr"


def test_git_state_outside_a_checkout(tmp_path, monkeypatch):
    from nqs import provenance

    provenance.git_state.cache_clear()
    try:
        monkeypatch.setattr(provenance, "SOURCE_ROOT", tmp_path)  # no repository there
        assert provenance.git_state() == {"commit": None, "dirty": None}
        provenance.git_state.cache_clear()
        monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
        assert provenance.git_state() == {"commit": None, "dirty": None}
        record = provenance.provenance(["spin"], dtype="float32",
                                       geometry={"atoms": "H 0 0 0", "unit": "bohr"})
        assert record["git_commit"] is None and record["command_line"] == "nqs spin"
        assert record["geometry"]["unit"] == "bohr" and record["dtype"] == "float32"
        json.dumps(record)
    finally:
        provenance.git_state.cache_clear()


def test_below_fci():
    from nqs.bench.fci import below_fci

    # F2 / STO-3G at bench-fci defaults: 5.9e-7 Ha below FCI with an error bar of 1.4e-7
    assert below_fci(-196.04963851, 1.43e-7, -196.04963792, "fci") is True
    assert below_fci(-196.04963800, 1.43e-7, -196.04963792, "fci") is False
    assert below_fci(-1.2, 1e-3, -1.1, "dmrg") is None and below_fci(-1.2, 1e-3, None, "fci") is None
    assert below_fci(-1.1 - 1e-9, 0.0, -1.1, "fci") is False  # rounding of an exact state


def test_above_hartree_fock():
    from nqs.bench.fci import above_hartree_fock

    assert above_hartree_fock(-1.0, -1.1) is True and above_hartree_fock(-1.2, -1.1) is False
    assert above_hartree_fock(-1.0, None) is None and above_hartree_fock(float("nan"), -1.1) is None
    # He / STO-3G (one determinant): E(NQS) = E(HF) up to the last bit is not above it
    assert above_hartree_fock(-2.8077839575399737, -2.807783957539974) is False
    assert above_hartree_fock(-2.8077839, -2.8077840) is True


def test_molecule_run_records_geometry_and_prints_no_none(tmp_path, capsys):
    """A molecule run: the geometry echoed first with its unit, no raw None on the console, the
    geometry and unit in result.json, and (a state far from HF that cannot move: a large
    initial perturbation, a vanishing learning rate) the warning of an energy above HF."""
    out = tmp_path / "h2"
    code, stdout, err = _run(["molecule", "--molecule", "H 0 0 0; H 0 0 0.74", "--steps", "2",
                              "--sampler", "exact", "--init-scale", "2", "--lr", "1e-6",
                              "--out", str(out)], capsys)
    assert code == 0, err
    assert "geometry (angstrom) H 0 0 0; H 0 0 0.74" in stdout.splitlines()[0]
    assert "None" not in stdout
    assert "WARNING: E(NQS) is above E(HF)" in stdout
    result = json.loads((out / "result.json").read_text())
    assert result["above_hf"] is True and result["energy"] > result["e_hf"]
    assert result["provenance"]["geometry"] == {"atoms": "H 0 0 0; H 0 0 0.74",
                                                "unit": "angstrom"}
    assert result["config"]["options"]["steps"] == 2
    assert PROVENANCE_KEYS <= set(result["provenance"])


def test_git_commit_is_read_when_the_run_starts():
    """The commit in a result is the one the run started from: the CLI reads (and caches) it
    before the command runs, not when the result is written, which for a long run can be
    after the checkout moved on."""
    from nqs import cli, provenance

    provenance.git_state.cache_clear()
    assert cli.main(["spin", "--size", "0"]) == 2
    assert provenance.git_state.cache_info().currsize == 1
