"""SR with the exact gradient and a metric from the largest-weight configurations (exact summation)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401
from hamiltonians.chem_reference import fci_from_integrals
from hamiltonians.molecule import compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.exact import make_exact_estimator, sparse_hamiltonian
from nqs.models.backflow import make_backflow
from nqs.optim.sr import natural_gradient_minsr, natural_gradient_woodbury


@pytest.fixture(scope="module")
def lih():
    integrals, _ = compute_integrals(from_preset("LiH"))
    ham = MolecularHamiltonian(integrals)
    ansatz = make_backflow(ham.hilbert, hidden=(8,), init_scale=0.3)
    # jitted: one compiled init program instead of op-by-op dispatch of the backflow's
    # unrolled LU (~100 small compilations); the same numbers
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), ham.hilbert.hartree_fock_state())
    return integrals, ham, ansatz, params


def test_woodbury_equals_minsr_when_gradient_is_j_eps():
    rng = np.random.default_rng(0)
    jac = rng.normal(size=(12, 40))
    eps = rng.normal(size=12)
    np.testing.assert_allclose(natural_gradient_woodbury(jac, jac.T @ eps, 0.1),
                               natural_gradient_minsr(jac, eps, 0.1), rtol=1e-10, atol=1e-12)


def test_subset_metric_keeps_the_exact_gradient(lih):
    _, ham, ansatz, params = lih
    h = sparse_hamiltonian(ham)
    full = make_exact_estimator(ansatz, h, needs_jacobian=True)(params)
    k = 40
    sub = make_exact_estimator(ansatz, h, needs_jacobian=True, metric_states=k)(params)
    np.testing.assert_allclose(sub.grad, full.grad, rtol=1e-9, atol=1e-12)
    assert sub.residuals is None and sub.jacobian.shape == (2 * k, full.jacobian.shape[1])
    # the metric rows: the k largest weights, renormalised and centred on their own mean
    w = np.asarray(full.weights)
    top = np.argsort(-w)[:k]
    wk = w[top] / w[top].sum()
    jac_full = np.asarray(full.jacobian)  # rows sqrt(w_i) (O_i - <O>), real then imaginary
    n = len(w)
    o_re = jac_full[:n] / np.sqrt(np.where(w > 0, w, 1))[:, None]
    o_im = jac_full[n:] / np.sqrt(np.where(w > 0, w, 1))[:, None]
    metric = np.zeros((jac_full.shape[1],) * 2)
    for part in (o_re[top], o_im[top]):
        centred = part - wk @ part
        metric += centred.T @ (wk[:, None] * centred)
    np.testing.assert_allclose(np.asarray(sub.jacobian).T @ np.asarray(sub.jacobian), metric,
                               atol=1e-10)


def test_sr_with_subset_metric_reaches_fci(tmp_path):
    from nqs.bench.fci import Settings, solve

    integrals, _ = compute_integrals(from_preset("H2"))
    e_fci, _ = fci_from_integrals(integrals)
    settings = Settings(steps=60, sampler="exact", optimizer="sr", learning_rate=0.1, diag_shift=0.1,
                        metric_states=2, hidden=(8,))  # 2 of the 4 determinants
    result, mode = solve(integrals, settings, tmp_path, lambda m: None)
    assert mode == "exact"
    assert result.energy >= e_fci - 1e-9
    assert (result.energy - e_fci) * 1e3 < 0.1


def test_subset_metric_needs_a_shift():
    from nqs.errors import InputError
    from nqs.optim.optimizer import sr_optimizer

    with pytest.raises(InputError):
        sr_optimizer(0.1, 0.0, metric_states=10)
    with pytest.raises(InputError):
        sr_optimizer(0.1, 0.1, metric_states=0)
    assert jnp.isfinite(natural_gradient_woodbury(jnp.ones((2, 3)), jnp.ones(3), 0.5)).all()
