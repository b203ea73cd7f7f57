"""A checkpoint holding a NaN is refused on resume with one line, not resumed into NaN steps.

Before this check a NaN parameter in a checkpoint made every resumed step non-finite: each was
rejected and reverted, and the run ended with ``E = nan`` and exit code 0.
"""

from __future__ import annotations

import numpy as np
import pytest

import nqs  # noqa: F401
from nqs.errors import CheckpointError
from nqs.io import (
    load_checkpoint,
    read_checkpoint_state,
    require_finite,
    save_checkpoint,
    write_checkpoint_state,
)


def _poison(path, contains: str) -> str:
    """Write a NaN into the first array of the checkpoint whose name contains ``contains``."""
    state = read_checkpoint_state(path)
    index = next(i for i, name in enumerate(state["names"]) if contains in name)
    value = np.array(state["arrays"][str(index)])
    value.flat[0] = np.nan
    state["arrays"][str(index)] = value
    write_checkpoint_state(path, state)  # re-signed: only the NaN is wrong
    return state["names"][index]


def test_require_finite_names_the_leaf(tmp_path):
    tree = {"params": {"w": np.ones((2, 2)), "b": np.zeros(3, np.complex128)}, "step": 4}
    path = tmp_path / "c.msgpack"
    save_checkpoint(path, tree)
    require_finite(load_checkpoint(path, tree)[0], path, "parameters")  # finite: passes
    tree["params"]["b"][1] = complex(0.0, np.inf)
    with pytest.raises(CheckpointError, match=r"non-finite parameters .*\['b'\]"):
        require_finite(tree, path, "parameters")


def test_realspace_resume_refuses_nan_parameters(tmp_path, monkeypatch):
    """The step-0 checkpoint of a tiny He run (the run is stopped right after writing it, so
    nothing but the network's forward pass is compiled), poisoned, then resumed."""
    from hamiltonians.realspace import make_atoms
    from nqs import walker_driver
    from nqs.loop import CHECKPOINT_NAME
    from nqs.problems import realspace as driver

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    kw = dict(layers=((8, 4),), n_determinants=1, optimizer="adam", n_walkers=16,
              burn_in_calls=0, n_steps=2, out_dir=tmp_path)
    atoms = make_atoms("He 0 0 0")
    with monkeypatch.context() as m:
        m.setattr(walker_driver, "_optimize", stop)
        with pytest.raises(Stop):
            driver.run_realspace(atoms, **kw)
    leaf = _poison(tmp_path / CHECKPOINT_NAME, ".params['params']")
    with pytest.raises(CheckpointError, match="non-finite parameters") as err:
        driver.run_realspace(atoms, resume=True, **kw)
    assert leaf.split(".params", 1)[1] in str(err.value)


def test_discrete_resume_refuses_nan_parameters(tmp_path):
    """``run_vmc(resume=True)`` on a checkpoint whose RBM kernel holds a NaN (the checkpoint is
    the initial state, written directly: no step is compiled)."""
    import jax

    from hamiltonians.spin import make_spin_model
    from nqs.driver import CHECKPOINT_NAME, run_vmc
    from nqs.optim import make_optimizer
    from nqs.problems import spin_ansatz, spin_sampler
    from nqs.vmc import make_vmc

    model = make_spin_model(model="ising", lattice="chain", size=6, pbc=True, h=1.0, j2=0.5,
                            delta=1.0, marshall_sign=False)
    ansatz = spin_ansatz(model, "rbm", 1.0)
    sampler = spin_sampler(model, "mcmc", 64, 8)
    optimizer = make_optimizer("sr", 0.05, 1e-2)
    state = make_vmc(ansatz, model, sampler, optimizer)[0](jax.random.PRNGKey(0))
    save_checkpoint(tmp_path / CHECKPOINT_NAME, state,
                    {"seed": 0, "n_steps_planned": 2, "dtype": "float64"})
    run_vmc(ansatz, model, sampler, optimizer, 0, out_dir=tmp_path, resume=True,
            n_eval_batches=0)  # the finite checkpoint resumes
    _poison(tmp_path / CHECKPOINT_NAME, "['kernel']")
    with pytest.raises(CheckpointError, match=r"non-finite parameters .*\['kernel'\]"):
        run_vmc(ansatz, model, sampler, optimizer, 2, out_dir=tmp_path, resume=True)
