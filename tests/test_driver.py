"""The driver: convergence to exact energies, logs, checkpoints, exact resume, NaN guard."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401
from hamiltonians.lattice import chain
from hamiltonians.spin import TransverseFieldIsing
from hamiltonians.spin_reference import lanczos_ground_state
from nqs.driver import run_vmc
from nqs.io import read_jsonl
from nqs.models.rbm import make_rbm
from nqs.optim import make_optimizer, sr_optimizer
from nqs.optim.flat import real_flat
from nqs.sampling import LocalRule, MetropolisSampler


def _problem(n=6, samples=512):
    model = TransverseFieldIsing(chain(n), h=1.0)
    sampler = MetropolisSampler(model.hilbert, LocalRule(), n_chains=16, n_samples=samples)
    return model, make_rbm(n, alpha=1), sampler


def test_vmc_converges_to_exact_tfim_energy(tmp_path):
    model, ansatz, sampler = _problem(6, 1024)
    exact = float(lanczos_ground_state(model))
    result = run_vmc(ansatz, model, sampler, sr_optimizer(0.05, 1e-2), 150, seed=1,
                     out_dir=tmp_path, exact_energy=exact, progress=False)
    assert abs(result.energy - exact) < 3 * result.energy_error + 2e-3 * abs(exact)
    assert result.energy > exact - 4 * result.energy_error  # variational, within noise
    log = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in log] == list(range(150))
    assert {"energy", "energy_error", "variance", "acceptance", "r_hat", "wall_time_s"} <= set(log[0])


def test_exact_sampler_run_reaches_ground_state():
    from nqs.sampling import ExactSampler

    model, ansatz, _ = _problem(6)
    exact = float(lanczos_ground_state(model))
    result = run_vmc(ansatz, model, ExactSampler(model.hilbert), sr_optimizer(0.05, 1e-2), 200,
                     exact_energy=exact, progress=False)
    assert result.energy_error == 0.0
    assert result.energy >= exact - 1e-9
    assert result.relative_error < 1e-4


@pytest.mark.parametrize("optimizer", ["sr", "adam"])
def test_resume_gives_the_same_parameters(tmp_path, optimizer):
    model, ansatz, sampler = _problem(6, 128)
    opt = make_optimizer(optimizer, 0.02)
    kw = {"seed": 5, "checkpoint_every": 4, "progress": False, "n_eval_batches": 0}
    straight = run_vmc(ansatz, model, sampler, opt, 12, out_dir=tmp_path / "a", **kw)
    # an "interrupted" run: stops after 8 steps (checkpoint at 8), then resumes to 12
    run_vmc(ansatz, model, sampler, opt, 8, out_dir=tmp_path / "b", **kw)
    resumed = run_vmc(ansatz, model, sampler, opt, 12, out_dir=tmp_path / "b", resume=True, **kw)
    a, _ = real_flat(straight.params)
    b, _ = real_flat(resumed.params)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    log = read_jsonl(tmp_path / "b" / "log.jsonl")
    assert [r["step"] for r in log] == list(range(12))
    e_a = [r["energy"] for r in read_jsonl(tmp_path / "a" / "log.jsonl")]
    assert e_a == [r["energy"] for r in log]


def test_non_finite_step_is_rejected_and_reverted(tmp_path):
    from nqs.vmc import make_vmc

    model, ansatz, sampler = _problem(6, 256)
    init, step = make_vmc(ansatz, model, sampler, sr_optimizer(0.05))
    state = init(jax.random.PRNGKey(0))
    flat, unflatten = real_flat(state.params)
    bad = state._replace(params=unflatten(flat.at[0].set(jnp.nan)))
    new, info = jax.jit(step)(bad)
    assert not bool(info.accepted)
    good, info_good = jax.jit(step)(state)
    assert bool(info_good.accepted)
    np.testing.assert_array_equal(
        np.asarray(real_flat(new.params)[0]), np.asarray(real_flat(bad.params)[0])
    )


def test_result_history_and_plot(tmp_path):
    # 64 samples and no final evaluation (n_eval_batches=0, the last step's estimate): the
    # sampler programs are those of the other 4-site runs below (compilation cache), and the
    # final evaluation is exercised by test_vmc_converges_to_exact_tfim_energy
    model, ansatz, sampler = _problem(4, 64)
    result = run_vmc(ansatz, model, sampler, sr_optimizer(0.05), 5, progress=False,
                     exact_energy=-5.0, n_eval_batches=0)
    df = result.to_pandas()
    assert list(df["step"]) == list(range(5))
    result.plot(tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
    json.dumps(result.summary())


def test_runs_beside_netkets_global_mesh():
    """``import netket`` sets a global mesh ("S"); the driver must not mix it with its own."""
    import netket  # noqa: F401

    assert jax.sharding.get_abstract_mesh().axis_names == ("S",)
    model, ansatz, sampler = _problem(4, 64)
    result = run_vmc(ansatz, model, sampler, make_optimizer("adam", 0.01), 2, progress=False,
                     n_eval_batches=1)
    assert np.isfinite(result.energy)
    assert jax.sharding.get_abstract_mesh().axis_names == ("S",)  # restored afterwards


def test_resume_with_a_longer_run_says_the_schedule_changes(tmp_path):
    model, ansatz, sampler = _problem(4, 64)
    kw = {"seed": 2, "checkpoint_every": 2, "progress": False, "n_eval_batches": 0,
          "out_dir": tmp_path}
    run_vmc(ansatz, model, sampler, make_optimizer("adam", 0.01), 2, **kw)
    messages: list[str] = []
    run_vmc(ansatz, model, sampler, make_optimizer("adam", 0.01), 4, resume=True,
            echo=messages.append, **kw)
    assert any("planned for 2 steps" in m for m in messages)
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl")] == [0, 1, 2, 3]


@pytest.mark.parametrize("limit", [0.0, -1.0, float("nan"), float("inf")])
def test_time_limit_must_be_positive_and_finite(limit):
    from nqs.errors import InputError

    model, ansatz, sampler = _problem(4, 64)
    with pytest.raises(InputError, match="time limit"):
        run_vmc(ansatz, model, sampler, make_optimizer("adam", 0.01), 2, time_limit=limit)


def test_sampled_run_on_a_small_space_ends_with_the_exact_energy_of_its_parameters():
    """A Metropolis run on 64 configurations: its final energy is <H> of the final parameters
    summed over the space (no error bar); with ``exact_final_max=0`` it is drawn instead."""
    from nqs.exact import make_exact_energy, sparse_hamiltonian

    model, ansatz, sampler = _problem(6, 256)
    opt = sr_optimizer(0.05, 1e-2)
    result = run_vmc(ansatz, model, sampler, opt, 10, seed=3, progress=False)
    exact_of_params, _ = make_exact_energy(ansatz, sparse_hamiltonian(model))(result.params)
    assert result.final_exact_sum and result.energy_error == 0.0
    assert result.energy == pytest.approx(float(np.real(exact_of_params)), abs=1e-10)
    assert result.summary()["final_exact_sum"] is True
    sampled = run_vmc(ansatz, model, sampler, opt, 10, seed=3, progress=False,
                      exact_final_max=0)
    assert not sampled.final_exact_sum and sampled.energy_error > 0
    assert abs(sampled.energy - result.energy) < 5 * sampled.energy_error


def test_exact_final_needs_the_samplers_own_small_space():
    """Not when the space passes the cap, nor when the sampler draws from another space than
    the operator's (amplitudes outside the sampled sector were never trained)."""
    from hamiltonians.spin import Heisenberg
    from nqs.driver import exact_final_applies
    from nqs.hilbert import SpinHilbert
    from nqs.sampling import ExactSampler

    model, _, sampler = _problem(6)
    assert exact_final_applies(model, sampler, 64)
    assert not exact_final_applies(model, sampler, 63)  # 2^6 configurations
    assert not exact_final_applies(model, ExactSampler(model.hilbert), 64)  # exact already
    heisenberg = Heisenberg(chain(6))
    other = MetropolisSampler(SpinHilbert(6), LocalRule(), n_chains=16, n_samples=64)
    assert heisenberg.hilbert != other.hilbert
    assert not exact_final_applies(heisenberg, other, 10**6)
