"""A checkpoint holding a NaN is refused on resume with one line, not resumed into NaN steps.

Before this check a NaN parameter in a checkpoint made every resumed step non-finite: each was
rejected and reverted, and the run ended with ``E = nan`` and exit code 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from flax import serialization

import nqs  # noqa: F401
from nqs.cli import main
from nqs.errors import CheckpointError
from nqs.io import load_checkpoint, require_finite, save_checkpoint


def _poison(path, contains: str) -> str:
    """Write a NaN into the first array of the checkpoint whose name contains ``contains``."""
    state = serialization.msgpack_restore(path.read_bytes())
    index = next(i for i, name in enumerate(state["names"]) if contains in name)
    value = np.array(state["arrays"][str(index)])
    value.flat[0] = np.nan
    state["arrays"][str(index)] = value
    path.write_bytes(serialization.msgpack_serialize(state))
    return state["names"][index]


def test_require_finite_names_the_leaf(tmp_path):
    tree = {"params": {"w": np.ones((2, 2)), "b": np.zeros(3, np.complex128)}, "step": 4}
    path = tmp_path / "c.msgpack"
    save_checkpoint(path, tree)
    require_finite(load_checkpoint(path, tree)[0], path, "parameters")  # finite: passes
    tree["params"]["b"][1] = complex(0.0, np.inf)
    with pytest.raises(CheckpointError, match=r"non-finite parameters .*\['b'\]"):
        require_finite(tree, path, "parameters")


def test_realspace_resume_refuses_nan_parameters(tmp_path, capsys):
    out = tmp_path / "he"
    args = ["realspace", "--preset", "He", "--layers", "1", "--hidden", "8", "4",
            "--determinants", "1", "--optimizer", "adam", "--pretrain-steps", "0",
            "--walkers", "16", "--eval-steps", "2", "--out", str(out)]
    assert main(args + ["--steps", "0"]) == 0  # writes the step-0 checkpoint, no step compiled
    leaf = _poison(out / "checkpoint.msgpack", ".params['params']")
    capsys.readouterr()
    assert main(args + ["--steps", "4", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite parameters" in err[0], err
    assert leaf.split("['params']", 1)[1].split("]")[0] in err[0]
