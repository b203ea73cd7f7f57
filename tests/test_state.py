"""expect / VariationalState against <psi|O|psi> / <psi|psi> computed densely.

The state is an RBM with random (not small) complex parameters: its amplitudes over the whole
space give the dense reference with the same parameters. Exact summation must agree to 1e-10,
Metropolis estimates within 4 error bars (fixed seeds).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.lattice import chain
from hamiltonians.pauli import pauli_components, pauli_matrix, sigmax, sigmay, sigmaz
from hamiltonians.spin import Heisenberg, TransverseFieldIsing
from nqs.errors import InputError
from nqs.hilbert import SpinHilbert
from nqs.models.rbm import make_rbm
from nqs.operator import to_sparse
from nqs.optim.flat import real_flat
from nqs.sampling import ExactSampler, ExchangeRule, LocalRule, MetropolisSampler
from nqs.state import VariationalState, expect

N = 6


def random_params(ansatz, n, scale=0.3, seed=0):
    params = ansatz.init(jax.random.PRNGKey(seed), jnp.ones(n))
    flat, unflatten = real_flat(params)
    return unflatten(scale * jax.random.normal(jax.random.PRNGKey(seed + 1), flat.shape))


def dense_psi(ansatz, params, hilbert):
    states = hilbert.all_states()
    lp = np.asarray(jax.vmap(ansatz.log_psi, (None, 0))(params, jnp.asarray(states)))
    psi = np.exp(lp - lp.real.max())
    return psi / np.linalg.norm(psi)


def dense_expect(psi, mat):
    return psi.conj() @ mat @ psi


OPERATORS = {
    "zz": sigmaz(0) * sigmaz(3),
    "x": sigmax(2),
    "mixed": 0.3 * sigmax(0) * sigmay(1) + sigmaz(4) - 0.7 * sigmay(5) * sigmay(2),
    "non-hermitian": sigmax(1) + 0.5j * sigmaz(2) * sigmax(3),
}


@pytest.fixture(scope="module")
def rbm_state():
    ansatz = make_rbm(N, 1.0)
    return ansatz, random_params(ansatz, N)


def test_exact_summation_equals_dense(rbm_state):
    ansatz, params = rbm_state
    hilbert = SpinHilbert(N)
    psi = dense_psi(ansatz, params, hilbert)
    state = VariationalState(ansatz, params, ExactSampler(hilbert))
    generic = VariationalState(ansatz.without_fast_path(), params, ExactSampler(hilbert))
    for name, op in OPERATORS.items():
        mat = pauli_matrix(op, N)
        ref = dense_expect(psi, mat)
        for s in (state, generic):
            stats = s.expect(op)
            assert complex(stats.mean) == pytest.approx(ref, abs=1e-10), name
            assert float(stats.error_of_mean) == 0.0
        # variance = <O^dag O> - |<O>|^2
        var = dense_expect(psi, mat.conj().T @ mat).real - abs(ref) ** 2
        assert float(stats.variance) == pytest.approx(var, abs=1e-10), name
    # the TFIM Hamiltonian itself, and the functional form
    tfim = TransverseFieldIsing(chain(N), h=0.8)
    e = expect(ansatz, params, ExactSampler(hilbert), tfim)
    ref = dense_expect(psi, to_sparse(tfim).toarray()).real
    assert float(np.real(e.mean)) == pytest.approx(ref, abs=1e-10)


def test_components_equal_separate_operators(rbm_state):
    ansatz, params = rbm_state
    hilbert = SpinHilbert(N)
    psi = dense_psi(ansatz, params, hilbert)
    ops = list(OPERATORS.values())
    stacked = pauli_components(ops, hilbert)
    for a in (ansatz, ansatz.without_fast_path()):
        stats = VariationalState(a, params, ExactSampler(hilbert)).expect(stacked)
        assert stats.mean.shape == (len(ops),)
        ref = [dense_expect(psi, pauli_matrix(op, N)) for op in ops]
        np.testing.assert_allclose(np.asarray(stats.mean), ref, atol=1e-10)
    # evaluated 5 states at a time (padded last chunk): the same numbers
    chunked = VariationalState(ansatz, params, ExactSampler(hilbert), chunk_size=5)
    np.testing.assert_allclose(np.asarray(chunked.expect(stacked).mean), ref, atol=1e-10)


def test_metropolis_within_error_bars(rbm_state):
    ansatz, params = rbm_state
    hilbert = SpinHilbert(N)
    psi = dense_psi(ansatz, params, hilbert)
    sampler = MetropolisSampler(hilbert, LocalRule(), n_chains=16, n_samples=4096)
    state = VariationalState(ansatz, params, sampler, seed=3)
    ops = list(OPERATORS.values())
    stacked = pauli_components(ops, hilbert)
    vec = state.expect(stacked)
    for k, (name, op) in enumerate(OPERATORS.items()):
        ref = dense_expect(psi, pauli_matrix(op, N))
        err = float(vec.error_of_mean[k])
        assert 0 < err < 0.15, name
        assert abs(complex(vec.mean[k]) - ref) < 4 * err, name
        # Markov-chain diagnostics are reported (chains of 256 samples: tau of a few sweeps)
        assert 0.4 < float(vec.tau_corr[k]) < 20.0 and 1.0 <= float(vec.r_hat[k]) < 1.2, name
    stats = state.expect(ops[2])  # one operator alone: the same samples as the stacked estimate
    assert complex(stats.mean) == pytest.approx(complex(vec.mean[2]), abs=1e-10)
    assert float(stats.error_of_mean) == pytest.approx(float(vec.error_of_mean[2]), rel=1e-10)
    assert float(stats.r_hat) == pytest.approx(float(vec.r_hat[2]), rel=1e-10)
    assert float(stats.tau_corr) == pytest.approx(float(vec.tau_corr[2]), rel=1e-10)
    # new draw: a different estimate of the same value
    first = complex(state.expect(ops[0]).mean)
    state.sample()
    assert complex(state.expect(ops[0]).mean) != first


def test_sector_state_heisenberg_correlations():
    """In the S^z = 0 sector: S_0.S_2 and sigma^x (projected: 0) against the dense sector."""
    model = Heisenberg(chain(N))
    hilbert = model.hilbert
    ansatz = make_rbm(N, 1.0)
    params = random_params(ansatz, N, seed=5)
    psi = dense_psi(ansatz, params, hilbert)
    keep = np.flatnonzero(SpinHilbert(N).all_states().sum(axis=1) == 0)
    ss = 0.25 * (sigmax(0) * sigmax(2) + sigmay(0) * sigmay(2) + sigmaz(0) * sigmaz(2))
    exact = VariationalState(ansatz, params, ExactSampler(hilbert))
    mc = VariationalState(ansatz, params,
                          MetropolisSampler(hilbert, ExchangeRule(chain(N).bonds), n_chains=16,
                                            n_samples=4096), seed=1)
    ref_h = dense_expect(psi, to_sparse(model).toarray())
    assert complex(exact.expect(model).mean) == pytest.approx(ref_h, abs=1e-10)
    refs = [dense_expect(psi, pauli_matrix(op, N)[np.ix_(keep, keep)]) for op in (ss, sigmax(1))]
    assert refs[1] == 0 and abs(refs[0]) > 1e-3
    stacked = pauli_components([ss, sigmax(1)], hilbert)
    np.testing.assert_allclose(np.asarray(exact.expect(stacked).mean), refs, atol=1e-10)
    s = mc.expect(stacked)
    assert np.all(np.abs(np.asarray(s.mean) - refs) <= 4 * np.asarray(s.error_of_mean) + 1e-12)


def test_log_value_and_samples(rbm_state):
    ansatz, params = rbm_state
    hilbert = SpinHilbert(N)
    state = VariationalState(ansatz, params, ExactSampler(hilbert))
    x = hilbert.all_states()[:5]
    lp = np.asarray(state.log_value(x))
    np.testing.assert_allclose(lp, [complex(ansatz.log_psi(params, jnp.asarray(r))) for r in x])
    s = state.samples
    assert s.x.shape == (2**N, N) and state.samples is s  # cached until sample() or new params
    state.params = params
    assert state.samples is not s


def test_wrong_space_is_input_error(rbm_state):
    ansatz, params = rbm_state
    state = VariationalState(ansatz, params, ExactSampler(SpinHilbert(N)))
    with pytest.raises(InputError, match="site 7"):
        state.expect(sigmax(7))
    with pytest.raises(InputError, match="8 spins"):
        state.expect(TransverseFieldIsing(chain(8), h=1.0))
    with pytest.raises(InputError, match="DiscreteOperator"):
        state.expect("sigmax")


def test_split_rhat_columns_equals_split_rhat():
    """The host R-hat of many observables (average ranks by scipy) is nqs.stats.split_rhat."""
    from nqs.stats import split_rhat, split_rhat_columns

    rng = np.random.default_rng(0)
    n_per, n_chains = 40, 8
    values = rng.normal(size=(n_per * n_chains, 5))
    values[:, 1] = np.round(values[:, 1])  # many ties
    values[:, 2] += np.repeat(np.arange(n_chains)[None, :], n_per, 0).reshape(-1) * 0.3  # bad
    values[:, 3] = 1.0  # constant
    got = split_rhat_columns(values, n_chains)
    want = [float(split_rhat(jnp.asarray(values[:, k]).reshape(n_per, n_chains)))
            for k in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert got[2] > 1.1 and got[3] == 1.0
    assert np.all(np.isnan(split_rhat_columns(values[:24], 8)))  # 3 samples per chain


@pytest.mark.parametrize("sector", [None, 0], ids=["full", "sz0"])
def test_term_path_equals_row_and_generic_paths(rbm_state, sector):
    """Pauli sums whose rows all flip two sites offer static patterns (the RBM's per-pattern
    ratio tables): their local values equal the per-row cached and the generic paths."""
    from nqs.ansatz import Ansatz
    from nqs.state import make_local_values

    ansatz, params = rbm_state
    hilbert = SpinHilbert(N, sector)
    ops = [sigmax(0) * sigmay(2) + 0.5 * sigmaz(1) * sigmay(0) * sigmax(4) + sigmaz(5),
           sigmay(1) * sigmay(3) + sigmax(1) * sigmax(3) + 0.3 * sigmaz(2) * sigmaz(4),
           sigmax(5) * sigmax(2) - 1j * sigmaz(3)]
    stacked = pauli_components(ops, hilbert)
    assert stacked.flip_terms is not None
    rows = Ansatz(ansatz.module, ansatz.local_updates._replace(terms=None), ansatz.holomorphic)
    xs = jnp.asarray(hilbert.random_state(jax.random.PRNGKey(2), 12))
    for op in (stacked, ops[0].on(hilbert), ops[1].on(hilbert)):
        # jitted: one compiled program per path instead of op-by-op dispatch of the vmap
        values = [np.asarray(jax.jit(jax.vmap(make_local_values(op, a), (None, 0)))(params, xs))
                  for a in (ansatz, rows, ansatz.without_fast_path())]
        np.testing.assert_allclose(values[0], values[2], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(values[1], values[2], rtol=1e-10, atol=1e-12)
