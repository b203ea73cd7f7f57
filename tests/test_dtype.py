"""``--dtype float32`` in the discrete engine: float32 network, float64 everything downstream.

* the same (float32-rounded) parameters give the same exact-summation energy in float32 and
  float64 to ~1e-6 relative (TFIM chain with an RBM, fast path and generic path; LiH with
  backflow);
* float32 and float64 VMC runs with the same seed and steps end at energies that agree within
  their combined statistical error (TFIM with Metropolis; LiH backflow with Metropolis);
* the casts sit where the docs say: complex64 RBM tables, complex128 log psi and ratios,
  float64 Jacobian rows;
* a bad dtype is one line and exit code 2; a checkpoint resumed with another dtype too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hamiltonians.spin import make_spin_model
from nqs.cli import main
from nqs.driver import run_vmc
from nqs.errors import InputError
from nqs.exact import make_exact_energy, sparse_hamiltonian
from nqs.local_energy import make_local_energy
from nqs.optim import make_optimizer
from nqs.optim.flat import real_flat
from nqs.precision import ansatz_dtype, with_dtype
from nqs.problems import molecule_ansatz, spin_ansatz, spin_sampler
from nqs.vmc import sr_jacobian


def _rounded(params):
    """The values a float32 network sees, as float64 / complex128 parameters."""
    return jax.tree_util.tree_map(
        lambda a: a.astype(jnp.complex64 if jnp.iscomplexobj(a) else jnp.float32).astype(a.dtype),
        params,
    )


@pytest.fixture(scope="module")
def tfim():
    return make_spin_model(model="ising", lattice="chain", size=8, pbc=True, h=1.0, j2=0.5,
                           delta=1.0, marshall_sign=False)


@pytest.fixture(scope="module")
def lih():
    from hamiltonians.molecule import compute_integrals, parse_molecule
    from hamiltonians.second_quantized import MolecularHamiltonian

    integrals, _ = compute_integrals(parse_molecule("LiH"))
    return MolecularHamiltonian(integrals)


def _combined_check(r32, r64) -> None:
    """Last-step energies within 3 combined standard errors plus a margin of 1e-4 |E|."""
    sigma = np.hypot(r32.energy_error, r64.energy_error)
    assert sigma > 0
    assert abs(r32.energy - r64.energy) < 3 * sigma + 1e-4 * abs(r64.energy), (
        r32.energy, r64.energy, sigma)


def test_exact_energy_same_parameters_tfim(tfim):
    a64 = spin_ansatz(tfim, "rbm", 1.0, complex_params=True)
    a32 = with_dtype(a64, "float32")
    assert ansatz_dtype(a32) == "float32" and ansatz_dtype(a64) == "float64"
    x0 = tfim.hilbert.all_states()[:1]
    params = a64.module.init(jax.random.PRNGKey(0), jnp.asarray(x0[0]))
    # larger weights than the 0.01 initialisation, so the state is far from uniform
    params = jax.tree_util.tree_map(lambda a: 30.0 * a, params)
    p = _rounded(params)
    ham = sparse_hamiltonian(tfim)
    e64, v64 = make_exact_energy(a64, ham)(p)
    e32, v32 = make_exact_energy(a32, ham)(p)
    assert e32.dtype == jnp.complex128 and v32.dtype == jnp.float64
    assert abs(complex(e32) - complex(e64)) < 1e-6 * abs(complex(e64))
    assert abs(float(v32) - float(v64)) < 1e-5 * float(v64) + 1e-8

    # cached RBM ratios in complex64 tables against the float64 generic path
    xs = jnp.asarray(tfim.hilbert.all_states()[::17])
    tables = a32.local_updates.prepare(p)
    assert all(t.dtype == jnp.complex64 for t in tables)
    assert a32.local_updates.init_cache(tables, xs[0]).dtype == jnp.complex64
    fast = jax.jit(jax.vmap(make_local_energy(tfim, a32), in_axes=(None, 0)))(p, xs)
    ref = jax.jit(jax.vmap(make_local_energy(tfim, a64.without_fast_path()),
                           in_axes=(None, 0)))(p, xs)
    assert fast.dtype == jnp.complex128
    np.testing.assert_allclose(np.asarray(fast), np.asarray(ref), rtol=2e-5, atol=2e-5)
    assert float(np.max(np.abs(np.asarray(fast - ref)))) > 0  # it did run in float32


def test_exact_energy_same_parameters_backflow(lih):
    a64 = molecule_ansatz(lih.hilbert, "backflow", hidden=(4,), init_scale=0.3)
    a32 = with_dtype(a64, "float32")
    x = jnp.asarray(lih.hilbert.hartree_fock_state())
    # jitted: one compiled init program instead of op-by-op dispatch of the backflow's
    # unrolled LU (~100 small compilations); the same numbers
    p = _rounded(jax.jit(a64.init)(jax.random.PRNGKey(1), x))
    ham = sparse_hamiltonian(lih)
    e64, _ = make_exact_energy(a64, ham)(p)
    e32, _ = make_exact_energy(a32, ham)(p)
    assert abs(complex(e32) - complex(e64)) < 1e-6 * abs(complex(e64))
    # Jacobian rows (what SR accumulates) are float64 although the network is float32
    flat, unflatten = real_flat(p)
    xs = jnp.asarray(ham.states[:4])
    # jitted: one program each instead of op-by-op dispatch
    j32 = jax.jit(lambda u, s, w: sr_jacobian(lambda v, x: a32.log_psi(unflatten(v), x), u, s,
                                              w))(flat, xs, jnp.full(4, 0.25))
    j64 = jax.jit(lambda u, s, w: sr_jacobian(lambda v, x: a64.log_psi(unflatten(v), x), u, s,
                                              w))(flat, xs, jnp.full(4, 0.25))
    assert j32.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(j32), np.asarray(j64), atol=1e-4 * float(
        np.max(np.abs(np.asarray(j64)))))


def test_tfim_metropolis_float32_matches_float64(tfim):
    sampler = spin_sampler(tfim, "mcmc", 256, 16, 2)
    results = {}
    for dtype in ("float32", "float64"):
        ansatz = with_dtype(spin_ansatz(tfim, "rbm", 1.0, complex_params=True), dtype)
        # n_eval_batches=0: the last step's estimate and error bar (one compiled program)
        results[dtype] = run_vmc(ansatz, tfim, sampler, make_optimizer("sr", 0.05, 0.01), 12,
                                 seed=4, n_eval_batches=0)
    r32, r64 = results["float32"], results["float64"]
    assert r32.dtype == "float32" and r64.dtype == "float64"
    assert r32.summary()["dtype"] == "float32"
    # the runs optimized: well below the initial (near-uniform) state's energy, -8
    assert r64.energy < -9.5 and r32.energy < -9.5
    _combined_check(r32, r64)


def test_lih_backflow_metropolis_float32_matches_float64(lih):
    from nqs.models.backflow import make_backflow
    from nqs.sampling import HopRule, MetropolisSampler
    from nqs.vmc import make_vmc

    # the ansatz, sampler and optimizer of test_molecule_vmc's de-duplication test (adam): its
    # jitted float64 step is the same program, compiled once for both (compilation cache);
    # run_vmc with a float32 network is covered by the TFIM test above
    sampler = MetropolisSampler(lih.hilbert, HopRule(((0, 1, 2, 3, 4, 5), (6, 7, 8, 9, 10, 11))),
                                n_chains=16, n_samples=256)
    last = {}
    for dtype in ("float32", "float64"):
        ansatz = with_dtype(make_backflow(lih.hilbert, hidden=(8,), init_scale=0.3), dtype)
        init, step = make_vmc(ansatz, lih, sampler, make_optimizer("adam", 1e-2))
        state = init(jax.random.PRNGKey(0))
        step = jax.jit(step)
        for _ in range(4):
            state, info = step(state)
            assert bool(info.accepted)
        last[dtype] = info
    e32, e64 = (float(last[d].energy) for d in ("float32", "float64"))
    sigma = np.hypot(float(last["float32"].energy_error), float(last["float64"].energy_error))
    assert sigma > 0 and e32 != e64  # the float32 network did run
    # last-step energies within 3 combined standard errors plus 1e-4 |E| (as _combined_check)
    assert abs(e32 - e64) < 3 * sigma + 1e-4 * abs(e64), (e32, e64, sigma)


def test_bad_dtype_exit_2(capsys, tmp_path):
    for argv in (["spin", "--dtype", "float16"], ["molecule", "--molecule", "H2",
                                                  "--dtype", "bfloat16"],
                 ["bench-fci", "--dtype", "half"]):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--out", str(tmp_path)])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--dtype" in err
    with pytest.raises(InputError, match="unknown dtype"):
        with_dtype(spin_ansatz(make_spin_model(model="ising", lattice="chain", size=4, pbc=True,
                                               h=1.0, j2=0.5, delta=1.0, marshall_sign=False),
                               "rbm", 1.0), "float16")
    from nqs.bench.fci import Settings, solve

    with pytest.raises(InputError, match="unknown dtype"):
        solve(None, Settings(dtype="float16"), None, print)


def test_resume_with_other_dtype_is_an_error(tmp_path, capsys):
    import json

    from nqs.io import load_checkpoint_metadata

    out = tmp_path / "run"
    # the model, network, sampler and optimizer of test_tfim_metropolis_float32_matches_float64:
    # the float32 step compiled there is reused here (the session's compilation cache)
    common = ["spin", "--size", "8", "--samples", "256", "--chains", "16", "--discard-sweeps",
              "2", "--chunk-size", "none", "--out", str(out)]
    assert main([*common, "--steps", "1", "--dtype", "float32"]) == 0
    assert json.loads((out / "result.json").read_text())["dtype"] == "float32"
    assert load_checkpoint_metadata(out / "checkpoint.msgpack")["dtype"] == "float32"
    capsys.readouterr()
    code = main([*common, "--steps", "2", "--resume", "--dtype", "float64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "float32" in err[0] and "float64" in err[0]
    # without --dtype (auto) the resumed run keeps the checkpoint's
    assert main([*common, "--steps", "2", "--resume"]) == 0
    assert json.loads((out / "result.json").read_text())["dtype"] == "float32"
