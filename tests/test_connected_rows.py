"""SR rows from the draws plus the determinants H connects to them, and the adaptive shift."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_autoregressive import _random_params

import nqs  # noqa: F401  (float64)
from nqs.errors import InputError
from nqs.exact import configuration_keys, sparse_hamiltonian
from nqs.guard import MAX_SHIFT_SCALE, Guard
from nqs.models.autoregressive import make_autoregressive
from nqs.optim.optimizer import sr_optimizer
from nqs.optim.sr import sr
from nqs.sampling.autoregressive import AutoregressiveSampler
from nqs.sampling.connected import make_connected_rows
from nqs.sampling.exact import ExactSampler
from nqs.vmc import VMCState, make_vmc


def _molecule(name: str, basis: str):
    from hamiltonians.molecule import compute_integrals, from_preset
    from hamiltonians.second_quantized import MolecularHamiltonian

    return MolecularHamiltonian(compute_integrals(from_preset(name, basis=basis))[0])


def test_connected_rows_are_the_largest_first_order_amplitudes():
    """Against the dense H of LiH/STO-3G: the K determinants outside the draws of largest
    |sum_x H_yx psi_x| / |E - H_yy| among the 4K of largest numerator, in that order."""
    lih = _molecule("LiH", "sto-3g")
    ansatz = make_autoregressive(lih.hilbert, "made", hidden=(16,), phase_hidden=(8,),
                                 hf_logit=2.0)
    params = _random_params(ansatz, lih.hilbert, scale=0.3)
    sh = sparse_hamiltonian(lih)
    n = len(sh.states)
    h = np.zeros((n, n))
    np.add.at(h, (sh.rows, sh.cols), sh.vals)
    log_psi = np.asarray(jax.vmap(ansatz.log_psi, in_axes=(None, 0))(
        params, jnp.asarray(sh.states)))
    psi = np.exp(log_psi)
    drawn = np.argsort(-np.abs(psi))[:12]
    energy = -7.9
    v = np.zeros(n, complex)
    v[drawn] = psi[drawn]
    numerator = np.abs(h @ v)
    numerator[drawn] = 0.0
    numerator[numerator < 1e-14] = 0.0
    pre = np.argsort(-numerator, kind="stable")[:80]
    assert np.count_nonzero(numerator) > 80  # the preselection cuts here
    score = numerator[pre] / np.abs(energy - np.diag(h)[pre])
    expect = pre[np.argsort(-score, kind="stable")[:20]]
    y = make_connected_rows(lih, 20)(sh.states[drawn], log_psi[drawn], energy)
    got = configuration_keys(y, lih.hilbert)
    keys = configuration_keys(sh.states, lih.hilbert)
    np.testing.assert_array_equal(got, keys[expect])
    assert not set(got) & set(keys[drawn])


def test_connected_rows_refuse_bad_sizes():
    with pytest.raises(InputError, match="positive integer"):
        make_connected_rows(_molecule("H2", "sto-3g"), 0)


def test_rows_spanning_the_space_give_the_exact_sr_step():
    """H2/6-31G (16 determinants, all within a double excitation of any other): the draws plus
    their connected determinants are the whole space, with exact weights, so one SR step equals
    the exact-summation step."""
    h2 = _molecule("H2", "6-31g")
    ansatz = make_autoregressive(h2.hilbert, "made", hidden=(16,), phase_hidden=(8,),
                                 hf_logit=2.0)
    params = _random_params(ansatz, h2.hilbert, scale=0.3)
    optimizer = sr_optimizer(0.05, 1e-3, "minsr")

    def one_step(sampler, **kw):
        init, step = make_vmc(ansatz, h2, sampler, optimizer, **kw)
        state = init(jax.random.PRNGKey(0))
        state = VMCState(params, optimizer.transformation.init(params),
                         sampler.init(jax.random.PRNGKey(1), ansatz, params), state.key,
                         state.step)
        new, info = step(state, 1.0) if kw else step(state)
        return new.params, info

    exact, _ = one_step(ExactSampler(h2.hilbert))
    rows, info = one_step(AutoregressiveSampler(h2.hilbert, n_samples=12, max_unique=64),
                          connected_rows=64)
    assert int(info.n_unique) < 16  # the draws alone miss part of the space
    for a, b in zip(jax.tree_util.tree_leaves(exact), jax.tree_util.tree_leaves(rows),
                    strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-7, atol=1e-9)


def test_tempered_draws_give_the_sr_step_with_an_adaptive_shift():
    """Tempered draws (power 0.5) reweighted to |psi|^2 give the exact-summation SR step as
    the draws grow (H2/6-31G: 16 determinants, all drawn), and the step takes the guard's
    shift scale (their rows reach amplitudes |psi|^2 rarely draws, which need a small shift)."""
    h2 = _molecule("H2", "6-31g")
    ansatz = make_autoregressive(h2.hilbert, "made", hidden=(16,), phase_hidden=(8,),
                                 hf_logit=2.0)
    params = _random_params(ansatz, h2.hilbert, scale=0.3)
    optimizer = sr_optimizer(0.05, 1e-3, "minsr")

    def one_step(sampler):
        init, step = make_vmc(ansatz, h2, sampler, optimizer)
        state = init(jax.random.PRNGKey(0))
        state = VMCState(params, optimizer.transformation.init(params),
                         sampler.init(jax.random.PRNGKey(1), ansatz, params), state.key,
                         state.step)
        takes = getattr(step, "takes_shift_scale", False)
        new, info = step(state, 1.0) if takes else step(state)
        return new.params, info, takes

    exact, _, _ = one_step(ExactSampler(h2.hilbert))
    plain = AutoregressiveSampler(h2.hilbert, n_samples=10_000_000, max_unique=64)
    _, _, plain_takes = one_step(plain)
    tempered, info, takes = one_step(AutoregressiveSampler(h2.hilbert, n_samples=10_000_000,
                                                           max_unique=64, power=0.5))
    assert takes and not plain_takes and int(info.n_unique) == 16
    flat = [np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(p)])
            for p in (params, exact, tempered)]
    step_exact, step_tempered = flat[1] - flat[0], flat[2] - flat[0]
    assert np.linalg.norm(step_tempered - step_exact) < 0.05 * np.linalg.norm(step_exact)


def test_shift_scale_multiplies_the_diagonal_shift():
    key = jax.random.PRNGKey(3)
    jac = jax.random.normal(key, (12, 30))
    eps = jax.random.normal(jax.random.fold_in(key, 1), (12,))
    grad = jac.T @ eps
    scaled, _ = sr(1e-3).update(grad, sr(1e-3).init(grad), jacobian=jac, residuals=eps,
                                shift_scale=jnp.asarray(100.0))
    plain, _ = sr(1e-1).update(grad, sr(1e-1).init(grad), jacobian=jac, residuals=eps)
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(plain), rtol=1e-10)
    chained = optax.chain(sr(1e-3), optax.sgd(1.0))  # extra argument reaches sr through chain
    out, _ = chained.update(grad, chained.init(grad), jacobian=jac, residuals=eps,
                            shift_scale=jnp.asarray(100.0))
    np.testing.assert_allclose(np.asarray(out), -np.asarray(plain), rtol=1e-10)


def test_adaptive_guard_rejects_a_rise_and_raises_the_shift():
    guard = Guard(10.0, 0.3, 10, adaptive_shift=True)
    guard.e_ref, guard.err_ref = -1.0, 1e-4
    assert guard.judge(-1.0 + 3.0e-4, 1e-4, True) is not None  # > 2 combined error bars
    assert guard.judge(-1.0 + 2.5e-4, 1e-4, True) is None
    guard.rejected()
    guard.rejected()
    assert guard.shift_scale == 100.0 and guard.lr_scale == 1.0
    saved = {"guard": guard.meta()}
    guard.accepted()
    assert guard.shift_scale == 10.0 and guard.rejections == 0
    fresh = Guard(10.0, 0.3, 10, adaptive_shift=True)
    fresh.restore(saved)
    assert fresh.shift_scale == 100.0 and fresh.rejections == 2
    for _ in range(20):
        fresh.rejected()
    assert fresh.shift_scale == MAX_SHIFT_SCALE
    plain = Guard(10.0, 0.3, 10)  # without it: only jumps past 10 error bars + 1 % |E|
    plain.e_ref, plain.err_ref = -1.0, 1e-4
    assert plain.judge(-1.0 + 3.0e-4, 1e-4, True) is None
    plain.rejected()
    assert plain.lr_scale == pytest.approx(0.3) and plain.shift_scale == 1.0
