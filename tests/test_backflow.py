"""Neural-network backflow determinants: finiteness, Hartree-Fock start, determinants, signs."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (enables float64 first)
from nqs.ansatz import Ansatz
from nqs.errors import InputError
from nqs.hilbert import FermionHilbert, SpinHilbert
from nqs.models.backflow import Backflow, make_backflow

HILBERT = FermionHilbert(4, 2, 2)


def _zero_backflow(params, rng: np.random.Generator, n_det: int, hilbert: FermionHilbert):
    """Params with the network output zeroed and random Phi0 [n_det, n_orb, n_a + n_b], random c."""
    inner = dict(params["params"])
    inner["backflow_out"] = jax.tree_util.tree_map(jnp.zeros_like, inner["backflow_out"])
    shape = (n_det, hilbert.n_orbitals, hilbert.n_electrons)
    inner["phi0"] = jnp.asarray(rng.normal(size=shape))
    inner["coefficients"] = jnp.asarray(rng.normal(size=(n_det,)))
    return {"params": inner}


def _numpy_slater(phi: np.ndarray, x: np.ndarray, n_alpha: int) -> float:
    """Determinant of the full spin-orbital matrix, rows in increasing spin-orbital order.

    ``phi`` [n_orb, n_a + n_b] holds alpha columns then beta columns; the spin-orbital matrix is
    block diagonal [2 n_orb, n_e]: alpha orbitals live on alpha rows, beta orbitals on beta rows.
    """
    n_orb, n_e = phi.shape
    full = np.zeros((2 * n_orb, n_e))
    full[:n_orb, :n_alpha] = phi[:, :n_alpha]
    full[n_orb:, n_alpha:] = phi[:, n_alpha:]
    rows = np.flatnonzero(x > 0.5)  # increasing spin-orbital order
    return float(np.linalg.det(full[rows])) if n_e else 1.0


@functools.cache
def _batched(ansatz: Ansatz):
    """Jitted log psi over a batch, compiled once per ansatz configuration (keeps the tests fast)."""
    return jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))


def _all_log_psi(ansatz: Ansatz, params, states) -> np.ndarray:
    return np.asarray(_batched(ansatz)(params, jnp.asarray(states)))


def _standard() -> Ansatz:
    """The configuration shared by several tests (one compilation)."""
    return make_backflow(HILBERT, hidden=(16,), n_determinants=2)


def test_finite_on_every_determinant():
    ansatz = _standard()
    states = HILBERT.all_states()
    # jitted: one compiled init program instead of op-by-op dispatch of the backflow's
    # unrolled LU (~100 small compilations); the same numbers
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), states[0])
    logs = _all_log_psi(ansatz, params, states)
    assert logs.shape == (HILBERT.n_states,)
    assert np.all(np.isfinite(logs.real))
    assert np.iscomplexobj(logs)


@pytest.mark.parametrize("hilbert", [FermionHilbert(3, 1, 0), FermionHilbert(3, 0, 2)])
def test_one_spin_empty(hilbert: FermionHilbert):
    ansatz = make_backflow(hilbert, hidden=(8,))
    states = hilbert.all_states()
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(1), states[0])
    assert np.all(np.isfinite(_all_log_psi(ansatz, params, states).real))


def test_hartree_fock_dominates_at_init():
    ansatz = _standard()  # init_scale = 0.05
    states = HILBERT.all_states()
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(2), states[0])
    log_abs = _all_log_psi(ansatz, params, states).real
    hf = np.flatnonzero(np.all(states == HILBERT.hartree_fock_state(), axis=1))[0]
    others = np.delete(log_abs, hf)
    assert abs(log_abs[hf]) < 0.5  # |psi_HF| ~ 1
    assert log_abs[hf] - others.max() > np.log(5.0)  # clear margin: |psi| ratio > 5


@pytest.mark.parametrize("n_det", [1, 2])
def test_zero_backflow_is_sum_of_slater_determinants(n_det: int):
    ansatz = make_backflow(HILBERT, hidden=(16,), n_determinants=n_det)
    states = HILBERT.all_states()
    params = _zero_backflow(
        jax.jit(ansatz.init)(jax.random.PRNGKey(3), states[0]), np.random.default_rng(n_det), n_det, HILBERT
    )
    phi0 = np.asarray(params["params"]["phi0"])
    c = np.asarray(params["params"]["coefficients"])
    logs = _all_log_psi(ansatz, params, states)
    psi = np.exp(logs)
    expected = np.array(
        [
            sum(c[d] * _numpy_slater(phi0[d], s, HILBERT.n_alpha) for d in range(n_det))
            for s in states
        ]
    )
    np.testing.assert_allclose(psi.real, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(psi.imag, 0.0, atol=1e-10 * np.abs(expected).max())


def test_matches_pyscf_rotated_determinant():
    """Ordering convention: a rotated-orbital determinant equals PySCF's transformed HF vector."""
    from pyscf.fci import addons, cistring

    hilbert = FermionHilbert(5, 3, 2)
    n, na, nb = hilbert.n_orbitals, hilbert.n_alpha, hilbert.n_beta
    rng = np.random.default_rng(7)
    u = rng.normal(size=(n, n))  # any (non-orthogonal) basis change; minors are determinants
    hf = np.zeros((cistring.num_strings(n, na), cistring.num_strings(n, nb)))
    hf[0, 0] = 1.0
    ci = addons.transform_ci(hf, (na, nb), u)  # new orbitals phi_k = sum_p u[k, p] |p>
    ansatz = make_backflow(hilbert, hidden=(4,))
    states = hilbert.all_states()
    params = _zero_backflow(jax.jit(ansatz.init)(jax.random.PRNGKey(4), states[0]), rng, 1, hilbert)
    params["params"]["phi0"] = jnp.asarray(
        np.concatenate([u.T[:, :na], u.T[:, :nb]], axis=1)[None]
    )
    params["params"]["coefficients"] = jnp.ones(1)
    psi = np.exp(_all_log_psi(ansatz, params, states)).real
    for s, amp in zip(states, psi, strict=True):
        sa = int(sum(1 << i for i in range(n) if s[i] > 0.5))
        sb = int(sum(1 << i for i in range(n) if s[n + i] > 0.5))
        ia = cistring.str2addr(n, na, sa)
        ib = cistring.str2addr(n, nb, sb)
        np.testing.assert_allclose(amp, ci[ia, ib], rtol=1e-9, atol=1e-12)


def test_jit_and_vmap_agree_with_single_calls():
    ansatz = make_backflow(HILBERT, hidden=(16, 8), n_determinants=3)
    states = HILBERT.all_states()
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(5), states[0])
    batched = _all_log_psi(ansatz, params, states)
    one = jax.jit(ansatz.log_psi)
    single = np.array([complex(one(params, jnp.asarray(s))) for s in states])
    assert complex(ansatz.log_psi(params, jnp.asarray(states[3]))) == pytest.approx(single[3])
    np.testing.assert_allclose(batched, single, rtol=1e-12, atol=1e-12)


def test_backflow_makes_orbitals_configuration_dependent():
    ansatz = make_backflow(HILBERT, hidden=(16,), init_scale=0.3)
    states = HILBERT.all_states()
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(6), states[0])
    orb = [
        np.asarray(ansatz.module.apply(params, jnp.asarray(s), method=Backflow.orbitals))
        for s in states[:2]
    ]
    assert orb[0].shape == (1, HILBERT.n_orbitals, HILBERT.n_electrons)
    assert np.abs(orb[0] - orb[1]).max() > 1e-4


def test_sign_is_real_and_both_signs_occur():
    ansatz = _standard()
    states = HILBERT.all_states()
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(7), states[0])
    params = jax.tree_util.tree_map(
        lambda a: a + jax.random.normal(jax.random.PRNGKey(8), a.shape, a.dtype), params
    )
    logs = _all_log_psi(ansatz, params, states)
    phase = np.mod(logs.imag, 2 * np.pi)
    assert np.all(np.isclose(phase, 0.0) | np.isclose(phase, np.pi))
    psi = np.exp(logs)
    np.testing.assert_allclose(psi.imag, 0.0, atol=1e-12 * np.abs(psi).max())
    assert np.any(psi.real > 0) and np.any(psi.real < 0)


def test_gradient_is_finite():
    ansatz = _standard()
    states = HILBERT.all_states()
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(9), states[0])
    # jitted: one program for both states instead of op-by-op dispatch
    grad_fn = jax.jit(jax.grad(lambda p, x: ansatz.log_psi(p, x).real))
    for s in (HILBERT.hartree_fock_state(), states[-1]):
        grad = grad_fn(params, jnp.asarray(s))
        leaves = jax.tree_util.tree_leaves(grad)
        assert all(np.all(np.isfinite(g)) for g in leaves)
        # every layer, the hidden one included, receives a gradient at init
        assert np.abs(np.asarray(grad["params"]["hidden_0"]["kernel"])).max() > 0


def test_invalid_arguments():
    with pytest.raises(InputError):
        make_backflow(SpinHilbert(4))  # type: ignore[arg-type]
    with pytest.raises(InputError):
        make_backflow(HILBERT, n_determinants=0)
    with pytest.raises(InputError):
        make_backflow(HILBERT, hidden=(0,))
    with pytest.raises(InputError):
        make_backflow(HILBERT, init_scale=0.0)


def test_enough_determinants_represent_any_state():
    """Exactness: one determinant per configuration (Phi0 = its occupied unit vectors) + zero
    backflow gives psi(x) = c_{d(x)}, i.e. an arbitrary state of the space."""
    hilbert = FermionHilbert(3, 2, 1)
    states = hilbert.all_states()
    n = hilbert.n_orbitals
    ansatz = make_backflow(hilbert, hidden=(4,), n_determinants=len(states))
    rng = np.random.default_rng(11)
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(10), states[0])
    params = _zero_backflow(params, rng, len(states), hilbert)
    eye = np.eye(n)
    phi0 = np.stack(
        [
            np.concatenate([eye[:, s[:n] > 0.5], eye[:, s[n:] > 0.5]], axis=1)
            for s in states
        ]
    )
    target = rng.normal(size=len(states))
    params["params"]["phi0"] = jnp.asarray(phi0)
    params["params"]["coefficients"] = jnp.asarray(target)
    psi = np.exp(_all_log_psi(ansatz, params, states)).real
    np.testing.assert_allclose(psi, target, rtol=1e-12)


@pytest.mark.parametrize("n", [1, 3, 7, 12])
def test_unrolled_lu_equals_lapack_slogdet_and_finite_differences(n):
    """The small-matrix LU (:func:`nqs.models.backflow._lu_slogdet`) gives LAPACK's sign and
    log|det| (pivoting exercised by a matrix with a zero leading entry), the same gradient as
    ``jnp.linalg.slogdet``, and that gradient matches central finite differences; a singular
    matrix gives -inf."""
    from nqs.models.backflow import _lu_slogdet

    rng = np.random.default_rng(n)
    m = rng.normal(size=(n, n))
    if n > 1:
        m[0, 0] = 0.0  # the first pivot must come from another row
    sign, logabs = _lu_slogdet(jnp.asarray(m))
    ref_sign, ref_logabs = jnp.linalg.slogdet(jnp.asarray(m))
    assert float(sign) == float(ref_sign)
    assert abs(float(logabs) - float(ref_logabs)) < 1e-12
    grad = np.asarray(jax.grad(lambda a: _lu_slogdet(a)[1])(jnp.asarray(m)))
    ref_grad = np.asarray(jax.grad(lambda a: jnp.linalg.slogdet(a)[1])(jnp.asarray(m)))
    np.testing.assert_allclose(grad, ref_grad, atol=1e-10)
    direction = rng.normal(size=(n, n))
    h = 1e-6
    fd = (float(_lu_slogdet(jnp.asarray(m + h * direction))[1])
          - float(_lu_slogdet(jnp.asarray(m - h * direction))[1])) / (2 * h)
    assert abs(fd - np.sum(grad * direction)) < 1e-6 * max(1.0, abs(fd))
    if n > 1:
        singular = m.copy()
        singular[:, -1] = 0.0
        assert float(_lu_slogdet(jnp.asarray(singular))[1]) == -np.inf
