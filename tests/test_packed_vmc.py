"""The molecular VMC step and final evaluation with packed local energies (``packed=True``)
equal the per-sample path: energies, gradients, parameter updates, resumed runs."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
import nqs.packed_local_energy as packed_module
from hamiltonians.molecule import compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.io import read_jsonl
from nqs.models.rbm import make_rbm
from nqs.optim import make_optimizer
from nqs.optim.flat import real_flat
from nqs.sampling import HopRule, MetropolisSampler
from nqs.sampling.base import Samples
from nqs.vmc import distinct_draws, make_energy_evaluator, make_estimator, make_vmc

TIGHT = dict(rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def lih():
    integrals, _ = compute_integrals(from_preset("LiH"))
    return MolecularHamiltonian(integrals)


def _rbm(ham):
    """Complex RBM, 0.3 from zero: the chains visit many determinants (about 40 distinct of 64
    draws). The RBM compiles in a fraction of the backflow network's time; its cached ratios
    and (``without_fast_path``) the full evaluation per row, backflow's branch, are the two
    branches of the packed pass."""
    return make_rbm(ham.hilbert.n_sites, alpha=1, flip_constant=1.0, init_scale=0.3)


def _sampler(ham, n_samples=64):
    n = ham.hilbert.n_orbitals
    return MetropolisSampler(ham.hilbert, HopRule((tuple(range(n)), tuple(range(n, 2 * n)))),
                             n_chains=16, n_samples=n_samples)


@pytest.fixture
def count_packed(monkeypatch):
    """Counts the packed local-energy functions built, so a test knows the path ran."""
    built = []
    original = packed_module.make_packed_local_energy

    def spy(*args, **kwargs):
        built.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(packed_module, "make_packed_local_energy", spy)
    return built


@pytest.mark.parametrize("optimizer", ["adam", "sr"])
def test_packed_step_equals_per_sample_step(lih, optimizer, count_packed):
    """One de-duplicated step both ways from the same state: the same statistics, optimizer
    state (Adam's moments hold the gradient) and parameter update."""
    ansatz, sampler = _rbm(lih), _sampler(lih)
    opt = make_optimizer(optimizer, 1e-2)
    init, per_sample = make_vmc(ansatz, lih, sampler, opt, dedupe=True, packed=False)
    assert not count_packed
    _, packed = make_vmc(ansatz, lih, sampler, opt, dedupe=True, packed=True)
    assert len(count_packed) == 1
    state = init(jax.random.PRNGKey(0))
    a, info_a = per_sample(state)
    b, info_b = packed(state)
    for field in ("energy", "energy_imag", "energy_error", "variance", "grad_norm"):
        np.testing.assert_allclose(float(getattr(info_b, field)),
                                   float(getattr(info_a, field)), rtol=1e-12, atol=1e-13)
    assert bool(info_a.accepted) and bool(info_b.accepted)
    assert float(info_a.grad_norm) > 1e-3
    p0, pa, pb = (np.asarray(real_flat(s.params)[0]) for s in (state, a, b))
    assert np.max(np.abs(pa - p0)) > 1e-4  # the step moved the parameters
    for la, lb in zip(jax.tree_util.tree_leaves(a.opt_state),
                      jax.tree_util.tree_leaves(b.opt_state), strict=True):
        np.testing.assert_allclose(np.asarray(lb), np.asarray(la), **TIGHT)
    # Adam's update lr g / (|g| + eps) turns a rounding difference dg of a gradient entry
    # near 0 into lr dg / eps = 1e6 dg (eps = 1e-8): up to ~1e-9 for dg ~ 1e-15
    atol = 1e-12 if optimizer == "sr" else 1e-8
    np.testing.assert_allclose(pb - p0, pa - p0, rtol=1e-12, atol=atol)  # the same update
    np.testing.assert_array_equal(np.asarray(b.sampler_state.x), np.asarray(a.sampler_state.x))


def test_packed_local_energies_give_the_same_gradient(lih):
    """The estimator fed packed local energies of the distinct draws: the same gradient and
    SR residuals as computing them per sample (padding rows, weight 0, included)."""
    # the generic packed branch (log psi of each connected configuration, as for backflow),
    # with the RBM's cheap compile
    ansatz = _rbm(lih).without_fast_path()
    assert ansatz.local_updates is None
    params = ansatz.init(jax.random.PRNGKey(1), lih.hilbert.hartree_fock_state())
    # 100 "draws" of 37 distinct determinants (not a bucket size: the bucket has padding)
    states = np.unique(np.asarray(lih.hilbert.random_state(jax.random.PRNGKey(2), 200)),
                       axis=0)[:37]
    x = np.concatenate([states, states[np.random.default_rng(0).integers(0, 37, 63)]])
    x_u, w_u, inverse, n_unique = distinct_draws(x, np.full(len(x), 1.0 / len(x)), lih.hilbert)
    assert n_unique == 37 and len(x_u) == 48
    np.testing.assert_array_equal(x_u[inverse], x)
    # chunks of 64 rows: several lax.map steps and a partial one
    e_u = packed_module.make_packed_local_energy(lih, ansatz, 64)(params, x_u, n_unique)
    np.testing.assert_array_equal(np.asarray(e_u)[n_unique:], 0.0)
    estimator = make_estimator(ansatz, lih, needs_jacobian=True)
    estimate = jax.jit(lambda p, e: estimator(p, Samples(x_u, w_u, 4), inverse, None, e))
    ref = estimate(params, None)
    got = estimate(params, e_u)
    np.testing.assert_allclose(float(got.stats.mean.real), float(ref.stats.mean.real), rtol=1e-12)
    assert np.max(np.abs(np.asarray(ref.grad))) > 1e-3
    np.testing.assert_allclose(np.asarray(got.grad), np.asarray(ref.grad), **TIGHT)
    np.testing.assert_allclose(np.asarray(got.residuals), np.asarray(ref.residuals), **TIGHT)


def test_packed_final_evaluation_equals_per_sample(lih, count_packed):
    ansatz, sampler = _rbm(lih), _sampler(lih)
    params = ansatz.init(jax.random.PRNGKey(1), lih.hilbert.hartree_fock_state())
    s_state = sampler.init(jax.random.PRNGKey(2), ansatz, params)
    plain = jax.jit(make_energy_evaluator(ansatz, lih, sampler))
    packed = make_energy_evaluator(ansatz, lih, sampler, packed=True)
    assert packed.is_host_step and len(count_packed) == 1
    key = jax.random.PRNGKey(4)
    stats_a, state_a, e_a = plain(params, s_state, key)
    stats_b, state_b, e_b = packed(params, s_state, key)
    np.testing.assert_allclose(np.asarray(e_b), np.asarray(e_a), **TIGHT)
    np.testing.assert_allclose(complex(stats_b.mean), complex(stats_a.mean), rtol=1e-12)
    np.testing.assert_allclose(float(stats_b.error_of_mean), float(stats_a.error_of_mean),
                               rtol=1e-10)
    np.testing.assert_array_equal(np.asarray(state_b.x), np.asarray(state_a.x))


def test_packed_run_resumes_exactly(lih, tmp_path, count_packed):
    """Checkpoint and resume of a de-duplicated run with packed local energies (the driver's
    default): the same parameters, step log and final energy as the uninterrupted run."""
    from nqs.driver import run_vmc

    ansatz, sampler = _rbm(lih), _sampler(lih)
    opt = make_optimizer("adam", 1e-2)
    kw = {"seed": 2, "checkpoint_every": 2, "progress": False, "n_eval_batches": 1,
          "dedupe": True}
    straight = run_vmc(ansatz, lih, sampler, opt, 3, out_dir=tmp_path / "a", **kw)
    assert count_packed  # the default takes the packed path
    run_vmc(ansatz, lih, sampler, opt, 2, out_dir=tmp_path / "b", **kw)
    resumed = run_vmc(ansatz, lih, sampler, opt, 3, out_dir=tmp_path / "b", resume=True, **kw)
    np.testing.assert_array_equal(np.asarray(real_flat(resumed.params)[0]),
                                  np.asarray(real_flat(straight.params)[0]))
    log_a = read_jsonl(tmp_path / "a" / "log.jsonl")
    log_b = read_jsonl(tmp_path / "b" / "log.jsonl")
    assert [r["step"] for r in log_b] == [0, 1, 2]
    assert [r["energy"] for r in log_a] == [r["energy"] for r in log_b]
    assert np.isfinite(straight.energy) and resumed.energy == straight.energy


def test_packed_only_on_one_device():
    """A mesh of several devices keeps the per-sample path (its rows are split over them)."""
    from types import SimpleNamespace

    from nqs.vmc import packed_applies

    assert packed_applies(True, None)
    assert packed_applies(True, SimpleNamespace(devices=np.empty(1)))
    assert not packed_applies(True, SimpleNamespace(devices=np.empty((4,))))
    assert not packed_applies(False, None)
