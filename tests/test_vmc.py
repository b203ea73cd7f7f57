"""The VMC engine against exact references: local energies, gradients, SR, convergence, resume."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401
from hamiltonians.lattice import chain, square
from hamiltonians.spin import J1J2, XXZ, Heisenberg, TransverseFieldIsing
from hamiltonians.spin_reference import model_sparse
from nqs.exact import configuration_keys, make_exact_estimator, sparse_hamiltonian
from nqs.local_energy import make_local_energy
from nqs.models.rbm import make_rbm, make_rbm_symm
from nqs.operator import to_sparse
from nqs.optim import natural_gradient_dense, natural_gradient_minsr, sr
from nqs.optim.flat import real_flat
from nqs.optim.jacobian import HolomorphicJacobian, to_real
from nqs.sampling import ExactSampler
from nqs.sampling.base import Samples
from nqs.vmc import make_estimator


def _random_params(ansatz, hilbert, seed=0, scale=0.3):
    params = ansatz.init(jax.random.PRNGKey(seed), jnp.asarray(hilbert.all_states()[0]))
    flat, unflatten = real_flat(params)
    noise = scale * jax.random.normal(jax.random.PRNGKey(seed + 1), flat.shape)
    return unflatten(noise)


def _estimate(ansatz, model, params, samples, needs_jacobian=True):
    """``make_estimator`` jitted as one program (op-by-op dispatch costs several times more)."""
    est = make_estimator(ansatz, model, needs_jacobian=needs_jacobian)
    n_chains = samples.n_chains  # static: the estimator branches on it
    return jax.jit(lambda p, x, w: est(p, Samples(x, w, n_chains)))(params, samples.x,
                                                                    samples.weights)


def _dense_psi(ansatz, params, states):
    logs = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, jnp.asarray(states))
    return np.exp(np.asarray(logs))


def _netket_dense_in_our_basis(model):
    """NetKet's dense matrix of the model, rows/columns permuted to ``hilbert.all_states()``."""
    nk_op = model.to_netket()
    nk_keys = configuration_keys(np.asarray(nk_op.hilbert.all_states()), model.hilbert)
    our_keys = configuration_keys(model.hilbert.all_states(), model.hilbert)
    perm = np.argsort(nk_keys)[np.searchsorted(np.sort(nk_keys), our_keys)]
    np.testing.assert_array_equal(nk_keys[perm], our_keys)
    # NetKet's to_dense() from its connected elements of every state, in one jitted program
    # (its own to_dense assembles a sparse matrix op by op: hundreds of small compilations)
    states = np.asarray(nk_op.hilbert.all_states())

    @jax.jit
    def connections(op, x):
        xp, mels = op.get_conn_padded(x)
        return op.hilbert.states_to_numbers(xp), mels

    cols, mels = (np.asarray(a) for a in connections(nk_op, states))
    dense = np.zeros((len(states),) * 2, dtype=np.result_type(mels.dtype, np.float64))
    np.add.at(dense, (np.arange(len(states))[:, None], cols), mels)  # duplicates summed
    return dense[np.ix_(perm, perm)]


MODELS = [
    TransverseFieldIsing(chain(6), h=0.7),
    TransverseFieldIsing(square(2, pbc=False), h=1.3, J=0.5),
    Heisenberg(chain(6)),
    Heisenberg(chain(6), marshall_sign=True),
    XXZ(chain(6), delta=0.4),
    J1J2(chain(6), j2=0.3),
    Heisenberg(chain(5, pbc=False), total_sz=None),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.describe())
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
def test_local_energy_equals_dense_h_psi_over_psi(model, fast):
    n = model.hilbert.n_sites
    ansatz = make_rbm(n, alpha=1.5)
    if not fast:
        ansatz = ansatz.without_fast_path()
    params = _random_params(ansatz, model.hilbert)
    states = model.hilbert.all_states()
    psi = _dense_psi(ansatz, params, states)
    # model_sparse is built independently of flips and checked against NetKet in
    # test_spin_hamiltonians; NetKet itself is used below once (its operators compile slowly)
    h = model_sparse(model).toarray()
    expected = (h @ psi) / psi
    e_loc = jax.jit(jax.vmap(make_local_energy(model, ansatz), in_axes=(None, 0)))(params, states)
    np.testing.assert_allclose(np.asarray(e_loc), expected, rtol=1e-9, atol=1e-9)


def test_symmetric_rbm_local_energy_both_paths():
    model = Heisenberg(chain(6))
    ansatz = make_rbm_symm(model.lattice.translations(), alpha=2, flip_constant=0.0)
    params = _random_params(ansatz, model.hilbert)
    states = model.hilbert.all_states()
    fast = jax.jit(jax.vmap(make_local_energy(model, ansatz), in_axes=(None, 0)))(params, states)
    slow = jax.jit(jax.vmap(make_local_energy(model, ansatz.without_fast_path()),
                            in_axes=(None, 0)))(params, states)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(slow), rtol=1e-10, atol=1e-10)


def test_sparse_hamiltonian_matches_netket():
    model = J1J2(chain(8), j2=0.4)
    sp = sparse_hamiltonian(model)
    n = len(sp.states)
    dense = np.zeros((n, n))
    np.add.at(dense, (sp.rows, sp.cols), sp.vals)
    np.testing.assert_allclose(dense, _netket_dense_in_our_basis(model), atol=1e-12)
    np.testing.assert_allclose(dense, to_sparse(model).toarray(), atol=1e-12)


def _exact_energy_fn(ansatz, model, unflatten):
    """<psi|H|psi> / <psi|psi> of the flat real parameter vector [P] (dense H, all states)."""
    states = jnp.asarray(model.hilbert.all_states())
    h = jnp.asarray(model_sparse(model).toarray())

    def energy(flat):
        psi = jnp.exp(jax.vmap(ansatz.log_psi, in_axes=(None, 0))(unflatten(flat), states))
        return jnp.real(jnp.vdot(psi, h @ psi) / jnp.vdot(psi, psi))

    return energy


@pytest.mark.parametrize("complex_params", [True, False])
def test_gradients_match_finite_differences(complex_params):
    model = TransverseFieldIsing(chain(5), h=0.9)
    dtype = jnp.complex128 if complex_params else jnp.float64
    ansatz = make_rbm(5, alpha=1, param_dtype=dtype)
    params = _random_params(ansatz, model.hilbert, scale=0.4)
    flat, unflatten = real_flat(params)
    energy = _exact_energy_fn(ansatz, model, unflatten)
    eps = 1e-5
    # central differences along every coordinate k: all 2P energies in one compiled call
    steps = eps * jnp.eye(flat.shape[0])
    energies = jax.jit(jax.vmap(energy))
    fd = np.asarray(energies(flat + steps) - energies(flat - steps)) / (2 * eps)
    samples = ExactSampler(model.hilbert).sample(jax.random.PRNGKey(0), ansatz, params, None)[0]
    for needs_jacobian in (True, False):
        est = _estimate(ansatz, model, params, samples, needs_jacobian)
        np.testing.assert_allclose(np.asarray(est.grad), fd, rtol=1e-5, atol=1e-7)
        exact = make_exact_estimator(
            ansatz, sparse_hamiltonian(model), needs_jacobian=needs_jacobian
        )(params)
        np.testing.assert_allclose(np.asarray(exact.grad), fd, rtol=1e-5, atol=1e-7)
        assert abs(float(np.real(exact.energy)) - float(energy(flat))) < 1e-12


def test_sr_update_matches_dense_reference():
    model = Heisenberg(chain(6))
    ansatz = make_rbm(6, alpha=2)
    params = _random_params(ansatz, model.hilbert)
    est = make_exact_estimator(ansatz, sparse_hamiltonian(model), needs_jacobian=True)(params)
    # reference S and g from the exact normalized wavefunction, written out explicitly
    states = jnp.asarray(model.hilbert.all_states())
    flat, unflatten = real_flat(params)

    def log_psi(v, x):
        return ansatz.log_psi(unflatten(v), x)

    o = np.asarray(
        jax.jit(jax.vmap(jax.jacfwd(log_psi), in_axes=(None, 0)))(flat, states)
    )
    psi = _dense_psi(ansatz, params, states)
    w = np.abs(psi) ** 2 / np.sum(np.abs(psi) ** 2)
    h = model_sparse(model).toarray()
    e_loc = (h @ psi) / psi
    e = np.sum(w * e_loc)
    d_o = o - w @ o
    s_ref = np.real(np.einsum("i,ik,il->kl", w, d_o.conj(), d_o))
    g_ref = 2 * np.real(np.einsum("i,ik,i->k", w, d_o.conj(), e_loc - e))
    np.testing.assert_allclose(np.asarray(est.grad), g_ref, rtol=1e-8, atol=1e-10)
    shift = 1e-2
    delta_ref = np.linalg.solve(s_ref + shift * np.eye(len(s_ref)), g_ref)
    dense = natural_gradient_dense(est.jacobian, est.grad, shift)
    minsr = natural_gradient_minsr(est.jacobian, est.residuals, shift)
    np.testing.assert_allclose(np.asarray(dense), delta_ref, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(minsr), delta_ref, rtol=1e-6, atol=1e-8)
    # and through the optax transformation, both modes
    for mode in ("dense", "minsr"):
        tx = sr(shift, mode)
        upd, _ = tx.update(unflatten(est.grad), tx.init(params), params,
                           jacobian=est.jacobian, residuals=est.residuals)
        np.testing.assert_allclose(np.asarray(real_flat(upd)[0]), delta_ref, rtol=1e-6,
                                   atol=1e-8)


@pytest.mark.parametrize("mode", ["minsr", "dense"])
def test_holomorphic_sr_equals_real_view(mode):
    """The complex-Jacobian SR path gives the real-view Jacobian, gradient and update."""
    model = Heisenberg(chain(6))
    # the complex-Jacobian path itself (the RBM's factored one: tests/test_sr_structured.py)
    ansatz = dataclasses.replace(make_rbm(6, alpha=2), jacobian_structure=None)
    assert ansatz.holomorphic
    real_view = dataclasses.replace(ansatz, holomorphic=False)
    params = _random_params(ansatz, model.hilbert, scale=0.5)
    samples = ExactSampler(model.hilbert).sample(jax.random.PRNGKey(0), ansatz, params, None)[0]
    est_h = _estimate(ansatz, model, params, samples)
    est_r = _estimate(real_view, model, params, samples)
    assert isinstance(est_h.jacobian, HolomorphicJacobian)
    np.testing.assert_allclose(np.asarray(to_real(est_h.jacobian)), np.asarray(est_r.jacobian),
                               atol=1e-12)
    np.testing.assert_allclose(np.asarray(est_h.grad), np.asarray(est_r.grad), atol=1e-12)
    tx = sr(1e-2, mode)
    updates = []
    for est in (est_h, est_r):
        upd, _ = tx.update(real_flat(params)[1](est.grad), tx.init(params), params,
                           jacobian=est.jacobian, residuals=est.residuals)
        updates.append(np.asarray(real_flat(upd)[0]))
    assert np.linalg.norm(updates[1]) > 1e-3  # a real update, not two zeros
    np.testing.assert_allclose(updates[0], updates[1], atol=1e-10)


def test_mc_estimate_agrees_with_exact_sum():
    from nqs.sampling import MetropolisSampler
    from nqs.sampling.rules import LocalRule
    from nqs.stats import statistics

    model = TransverseFieldIsing(chain(8), h=1.0)
    ansatz = make_rbm(8, alpha=1)
    params = _random_params(ansatz, model.hilbert, scale=0.2)
    exact = make_exact_estimator(ansatz, sparse_hamiltonian(model), needs_jacobian=False)(params)
    sampler = MetropolisSampler(model.hilbert, LocalRule(), n_chains=32, n_samples=8192)
    state = sampler.init(jax.random.PRNGKey(3), ansatz, params)
    samples, _, _ = sampler.sample(jax.random.PRNGKey(4), ansatz, params, state)
    e_loc = jax.jit(jax.vmap(make_local_energy(model, ansatz), in_axes=(None, 0)))(params,
                                                                                   samples.x)
    stats = statistics(e_loc, samples.weights, sampler.n_chains)
    diff = abs(float(np.real(stats.mean)) - float(np.real(exact.energy)))
    assert diff < 4 * float(stats.error_of_mean) + 1e-9
