"""``nqs realspace`` and the real-space driver: result files, exact resume, bad inputs (fast).

The subcommand is registered on a parser built here (as ``nqs.cli.build_parser`` does), so these
tests do not depend on ``nqs.cli`` listing it. Compilations are shared between the runs through
the session's persistent compilation cache (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from nqs.cli import EXIT_BAD_INPUT, _Parser
from nqs.commands import realspace as realspace_cmd
from nqs.errors import CheckpointError, InputError
from nqs.io import read_jsonl

TINY = ["--layers", "1", "--hidden", "8", "4", "--determinants", "1", "--walkers", "16",
        "--mcmc-steps", "2", "--eval-steps", "4", "--optimizer", "adam", "--lr", "0.01"]
RESULT_KEYS = {"energy", "energy_error", "variance", "reference_energy", "reference_source",
               "error_mha", "n_parameters", "wall_time_s", "time_per_step_s"}


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nqs")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    realspace_cmd.register(sub)
    return parser


def _main(argv: list[str]) -> int:
    """``nqs.cli.main`` with only the realspace subcommand."""
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (InputError, CheckpointError) as err:
        print(f"nqs {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _params(path) -> list[np.ndarray]:
    from nqs.io import read_checkpoint_state

    state = read_checkpoint_state(path)
    return [np.asarray(state["arrays"][str(i)]) for i in range(len(state["names"]))]


def test_command_writes_results(tmp_path, capsys):
    out = tmp_path / "he"
    rc = _main(["realspace", "--preset", "He", *TINY, "--steps", "4", "--checkpoint-every", "2",
                "--observe", "density", "dipole", "forces", "--pretrain-basis", "sto-3g",
                "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "result.json").read_text())
    assert RESULT_KEYS <= set(result)
    assert result["reference_energy"] == pytest.approx(-2.903724377)
    assert "Pekeris" in result["reference_source"]
    assert np.isfinite(result["energy"]) and result["energy_error"] > 0
    assert result["error_mha"] == pytest.approx((result["energy"] + 2.903724377) * 1e3)
    assert result["n_parameters"] > 0 and result["steps"] == 4
    log = read_jsonl(out / "log.jsonl")
    assert [r["step"] for r in log] == [0, 1, 2, 3]
    for key in ("energy", "energy_error", "variance", "acceptance", "width", "wall_time_s"):
        assert key in log[0]
    assert (out / "checkpoint.msgpack").exists()
    assert (out / "convergence.png").stat().st_size > 0
    stdout = capsys.readouterr().out
    assert "wrote" in stdout and "None" not in stdout
    assert "He: geometry (bohr) He 0 0 0" in stdout  # echoed with its unit at the start
    prov = result["provenance"]
    assert prov["geometry"] == {"symbols": ["He"], "positions": [[0.0, 0.0, 0.0]],
                                "unit": "bohr", "input_unit": "bohr"}
    assert prov["dtype"] == "float64" and prov["backend"] == jax.default_backend()
    assert result["config"]["options"]["walkers"] == 16
    # --observe density dipole (values: tests/test_realspace_observables.py)
    rec = json.loads((out / "observables.json").read_text())
    assert list(rec) == ["density", "dipole", "forces"]
    dens = rec["density"]
    assert dens["kind"] == "radial" and len(dens["mean"]) == len(dens["r"]) == 40
    assert len(dens["hf"]) == 40 and dens["hf_basis"] == "sto-3g"
    assert 0 < dens["electrons_inside"] <= 2.0 + 1e-9
    assert len(rec["dipole"]["mean"]) == 3 and all(e > 0 for e in rec["dipole"]["error"])
    forces = rec["forces"]  # values: tests/test_realspace_forces.py
    assert np.shape(forces["mean"]) == np.shape(forces["bare_error"]) == (1, 3)
    assert np.all(np.asarray(forces["error"]) > 0) and "zero-variance" in forces["estimator"]
    for name in ("density", "dipole", "forces"):
        assert (out / f"observable_{name}.png").stat().st_size > 0
    # the state loaded back from the run directory: its energy with the final evaluation's
    # key and measurements is the run's (the checkpoint holds the walkers it started from)
    from nqs.commands.load import load_run

    run = load_run(out)
    assert run.kind == "realspace" and run.step == 4 and list(run.model.symbols) == ["He"]
    k_eval = jax.random.split(jax.random.PRNGKey(0), 7)[6]
    st = run.state.energy(n_steps=4, key=k_eval)
    assert float(st.mean) == pytest.approx(result["energy"], abs=1e-10)
    assert float(st.error_of_mean) == pytest.approx(result["energy_error"], rel=1e-6)
    assert set(run.state.measure(["dipole"], n_steps=2)) == {"dipole"}


def test_resume_after_interruption_is_exact(tmp_path):
    import os
    import signal

    from hamiltonians.realspace import make_atoms
    from nqs.interrupt import RunInterrupted
    from nqs.problems.realspace import run_realspace

    atoms = make_atoms("He 0 0 0")  # the network and sizes of TINY: compilations are cached
    kw = dict(layers=((8, 4),), n_determinants=1, n_walkers=16, mcmc_steps=2, eval_steps=4,
              optimizer="adam", learning_rate=0.01, n_steps=6, checkpoint_every=2, seed=3,
              echo=lambda m: None)
    full = run_realspace(atoms, out_dir=tmp_path / "full", **kw)

    def interrupt(record):
        if record["step"] == 2:  # SIGTERM (as SLURM sends) during the run: step 3 finishes,
            os.kill(os.getpid(), signal.SIGTERM)  # is checkpointed (4 steps done) and it stops

    with pytest.raises(RunInterrupted) as stop:
        run_realspace(atoms, out_dir=tmp_path / "cut", callback=interrupt, **kw)
    assert stop.value.step == 4 and stop.value.exit_code == 128 + signal.SIGTERM
    assert [r["step"] for r in read_jsonl(tmp_path / "cut" / "log.jsonl")] == [0, 1, 2, 3]
    with pytest.raises(CheckpointError, match="past --steps"):  # 4 steps done, 3 asked
        run_realspace(atoms, out_dir=tmp_path / "cut", resume=True, **(kw | {"n_steps": 3}))
    resumed = run_realspace(atoms, out_dir=tmp_path / "cut", resume=True, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(full.params),
                    jax.tree_util.tree_leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed.energy == full.energy
    log = read_jsonl(tmp_path / "cut" / "log.jsonl")
    assert [r["step"] for r in log] == list(range(6))
    assert [r["energy"] for r in log] == [r["energy"] for r in full.history]
    # The checkpoints of both runs hold the same state.
    for a, b in zip(_params(tmp_path / "full" / "checkpoint.msgpack"),
                    _params(tmp_path / "cut" / "checkpoint.msgpack"), strict=True):
        np.testing.assert_array_equal(a, b)
    # A different run cannot resume from this checkpoint.
    with pytest.raises(CheckpointError):
        run_realspace(atoms, out_dir=tmp_path / "cut", resume=True, **(kw | {"seed": 4}))

    # A run stopped by its time limit ends after the step that passed it (off the checkpoint
    # period), with a checkpoint there and an evaluation; a resume without limit then ends
    # exactly where the uninterrupted run does.
    timed = run_realspace(atoms, out_dir=tmp_path / "timed", time_limit=1e-9, **kw)
    assert timed.steps == 1 and timed.steps_planned == 6 and timed.stopped_by_time_limit
    assert np.isfinite(timed.energy) and timed.summary()["stopped_by_time_limit"]
    assert [r["step"] for r in read_jsonl(tmp_path / "timed" / "log.jsonl")] == [0]
    finished = run_realspace(atoms, out_dir=tmp_path / "timed", resume=True, **kw)
    assert not finished.stopped_by_time_limit and finished.steps == 6
    assert finished.energy == full.energy
    assert [r["energy"] for r in finished.history] == [r["energy"] for r in full.history]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside kfac-jax
@pytest.mark.parametrize("optimizer", ["adam", "kfac"])  # kfac-jax donates its inputs
def test_nonfinite_step_is_rejected(tmp_path, monkeypatch, optimizer):
    from hamiltonians.realspace import make_atoms
    from nqs import walker_driver
    from nqs.problems import realspace as driver

    calls = []
    finite = walker_driver.step_is_finite

    def flaky(energy, params):
        calls.append(energy)
        return finite(energy, params) and len(calls) != 2  # reject the second step

    monkeypatch.setattr(walker_driver, "step_is_finite", flaky)
    messages = []
    res = driver.run_realspace(
        make_atoms("He 0 0 0"), layers=((8, 4),), n_determinants=1, n_walkers=16, mcmc_steps=2,
        eval_steps=4, optimizer=optimizer, learning_rate=0.01, n_steps=3, out_dir=tmp_path,
        echo=messages.append,
    )
    log = read_jsonl(tmp_path / "log.jsonl")
    assert [r.get("rejected", False) for r in log] == [False, True, False]
    assert log[1]["lr_scale"] == pytest.approx(0.3)  # later updates are scaled down
    assert any("rejected" in m for m in messages)
    assert np.isfinite(res.energy)


@pytest.mark.parametrize(
    "argv",
    [
        ["--molecule", "Xx 0 0 0"],  # unknown element
        ["--preset", "H2", "--spin", "1"],  # impossible spin
        ["--preset", "He", "--walkers", "0"],  # zero walkers
        ["--preset", "He", "--steps", "-3"],  # negative steps
        ["--preset", "He", "--molecule", "He 0 0 0"],  # both
        ["--preset", "Xe"],  # unknown preset
        ["--preset", "He", "--resume"],  # nothing to resume
    ],
)
def test_bad_inputs_exit_2_with_one_line(argv, tmp_path, capsys):
    try:
        rc = _main(["realspace", *argv, "--out", str(tmp_path / "x")])
    except SystemExit as e:  # argparse errors
        rc = e.code
    assert rc == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1, err
    assert "error" in err


def test_resume_with_another_learning_rate_exits_2(tmp_path, capsys):
    """``nqs realspace --resume`` with a changed ``--lr`` is refused in one line (exit 2): the
    options are recorded under ``metadata["fingerprint"]``, as the discrete runs record theirs;
    the seed and dtype beside it."""
    from nqs.io import load_checkpoint_metadata

    out = tmp_path / "he"
    argv = ["realspace", "--preset", "He", *TINY, "--steps", "1", "--seed", "3",
            "--out", str(out)]
    assert _main(argv) == 0
    meta = load_checkpoint_metadata(out / "checkpoint.msgpack")
    assert meta["fingerprint"]["learning_rate"] == 0.01 and meta["fingerprint"]["n_walkers"] == 16
    assert meta["seed"] == 3 and meta["dtype"] == "float64" and "learning_rate" not in meta
    capsys.readouterr()
    lr = argv.index("--lr") + 1
    rc = _main([*argv[:lr], "0.02", *argv[lr + 1:], "--resume"])
    err = capsys.readouterr().err.strip()
    assert rc == EXIT_BAD_INPUT
    assert len(err.splitlines()) == 1 and "learning_rate was 0.01, now 0.02" in err, err


def test_presets_and_molecule_names():
    args = _parser().parse_args(["realspace", "--molecule", "lih"])
    name, atoms, ref, _ = realspace_cmd.resolve_system(args)
    assert name == "LiH" and ref == pytest.approx(-8.070548)
    np.testing.assert_allclose(atoms.positions[1], [0, 0, 3.015])
    args = _parser().parse_args(["realspace", "--preset", "Li", "--charge", "1"])
    assert realspace_cmd.resolve_system(args)[2] is None  # Li+ is not tabulated
    args = _parser().parse_args(["realspace", "--molecule", "He 0 0 1"])  # a preset's nuclei
    assert realspace_cmd.resolve_system(args)[2] == pytest.approx(-2.903724377)
    args = _parser().parse_args(["realspace", "--molecule", "H 0 0 0; H 0 0 2"])  # not H2's R
    assert realspace_cmd.resolve_system(args)[2] is None


def test_device_defaults_and_explicit_flags_win():
    """CPU: a small network; GPU: FermiNet's; SPRING on both; an explicit flag is kept."""
    from nqs.problems.realspace_defaults import realspace_defaults

    cpu, gpu = realspace_defaults("cpu"), realspace_defaults("gpu")
    assert (gpu.layers, gpu.hidden, gpu.determinants) == (4, (256, 32), 16)
    assert cpu.hidden[0] * cpu.layers < gpu.hidden[0] * gpu.layers and cpu.walkers <= gpu.walkers
    assert cpu.optimizer == gpu.optimizer == "sr" and cpu.momentum > 0
    # CPU steps grow with the electrons past two (H, He: 400; Li: 1200); GPU steps do not
    assert [realspace_defaults("cpu", n).steps for n in (1, 2, 3, 10)] == [400, 400, 1200, 4000]
    assert realspace_defaults("cpu").steps == 400
    assert realspace_defaults("gpu", 10).steps == gpu.steps
    args = _parser().parse_args(["realspace", "--preset", "He", "--walkers", "64"])
    line = realspace_cmd.apply_device_defaults(args, "cpu")
    assert args.walkers == 64 and args.layers == cpu.layers and args.momentum == cpu.momentum
    assert "cpu" in line and "--walkers" not in line and len(line.splitlines()) == 1
    args = _parser().parse_args(["realspace", "--preset", "He", "--optimizer", "sr"])
    realspace_cmd.apply_device_defaults(args, "gpu")
    assert args.momentum == 0 and args.hidden == [256, 32]  # --optimizer sr alone: minSR


@pytest.mark.parametrize("failure", ["import", "first step"])
def test_kfac_failure_falls_back_with_one_warning(tmp_path, capsys, monkeypatch, failure):
    """KFAC failing (as kfac-jax 0.0.8 on jax 0.11) gives one warning line and a finished run
    with SPRING whose energy respects the variational bound of He."""
    from nqs.optim import scheduled_optimizer
    from nqs.problems import realspace as driver
    from nqs.vmc import WalkerVMC, make_walker_vmc

    def broken_kfac(apply, e_loc, **kw):
        if failure == "import":
            raise InputError("KFAC needs jax < 0.11 (kfac-jax 0.0.8); this is jax 0.11.0")
        vmc = make_walker_vmc(apply, e_loc, scheduled_optimizer("adam", 1e-3, 1000.0),
                              mcmc_steps=2)

        def step(key, state):
            raise TypeError("cannot unpack non-iterable ClosedJaxpr object\nmore detail")

        return WalkerVMC(vmc.init, step)

    monkeypatch.setattr(driver, "make_kfac_vmc", broken_kfac)
    argv = [a for a in TINY if a not in ("adam", "--optimizer", "--lr", "0.01")]
    rc = _main(["realspace", "--preset", "He", *argv, "--optimizer", "kfac", "--steps", "4",
                "--out", str(tmp_path / "fb")])
    out = capsys.readouterr()
    assert rc == 0
    warnings = [x for x in (out.out + out.err).splitlines() if "KFAC failed" in x]
    assert len(warnings) == 1 and "Traceback" not in out.err, out
    assert ("jax 0.11" if failure == "import" else "ClosedJaxpr") in warnings[0]
    result = json.loads((tmp_path / "fb" / "result.json").read_text())
    assert result["optimizer"] == "sr" and result["kfac_fallback"] and result["steps"] == 4
    # variational: not below the exact energy (beyond the error bar), and bound
    assert -2.903724377 - 5 * result["energy_error"] - 1e-3 < result["energy"] < 0
    if failure == "first step":  # the same command resumes with SPRING, one warning again
        rc = _main(["realspace", "--preset", "He", *argv, "--optimizer", "kfac", "--steps", "6",
                    "--out", str(tmp_path / "fb"), "--resume"])
        out = capsys.readouterr()
        assert rc == 0 and (out.out + out.err).count("KFAC failed") == 1, out
        result = json.loads((tmp_path / "fb" / "result.json").read_text())
        assert result["optimizer"] == "sr" and result["steps"] == 6


def test_options_object_and_overrides():
    """``run_realspace(atoms, RealSpaceOptions(...), **overrides)``: bad options are refused
    before anything is built; an unknown name is a TypeError, as for any keyword call."""
    from hamiltonians.realspace import make_atoms
    from nqs.problems.realspace import RealSpaceOptions, run_realspace

    atoms = make_atoms("He 0 0 0")
    base = RealSpaceOptions(n_walkers=16, n_steps=2)
    for bad in ({"n_walkers": 0}, {"eval_steps": 1}, {"chunk_size": "big"},
                {"optimizer": "adam", "momentum": 0.9}, {"dtype": "float32"}):  # kfac: float64
        with pytest.raises(InputError):
            run_realspace(atoms, base, **bad)
    with pytest.raises(TypeError):
        run_realspace(atoms, base, n_walker=16)
    fp = RealSpaceOptions(optimizer="sr", momentum=0.9, learning_rate=0.2).fingerprint(atoms)
    assert (fp["optimizer"], fp["momentum"], fp["learning_rate"]) == ("sr", 0.9, 0.2)
    assert fp["symbols"] == ["He"] and "seed" not in fp and "dtype" not in fp
