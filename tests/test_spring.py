"""SPRING (minSR with momentum) for real-space VMC: the direction solves its least-squares
problem, reduces to minSR without momentum, and a run with momentum resumes exactly."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from nqs.errors import InputError
from nqs.optim.sr import natural_gradient_minsr, natural_gradient_spring


def test_spring_direction_minimizes_its_objective():
    rng = np.random.default_rng(0)
    n, p, lam, mu = 12, 40, 1e-2, 0.9
    jac = rng.normal(size=(n, p))
    jac -= jac.mean(axis=0)
    eps = rng.normal(size=n)
    eps -= eps.mean()
    prev = rng.normal(size=p)
    phi = np.asarray(natural_gradient_spring(jac, eps, prev, lam, mu))
    # stationary point of |J phi - eps|^2 + lam |phi - mu prev|^2
    residual = jac.T @ (jac @ phi - eps) + lam * (phi - mu * prev)
    assert np.max(np.abs(residual)) < 1e-10 * max(1.0, np.max(np.abs(jac.T @ eps)))
    # mu = 0 is minSR, and the dense normal equations give the same direction
    phi0 = np.asarray(natural_gradient_spring(jac, eps, prev, lam, 0.0))
    np.testing.assert_allclose(phi0, np.asarray(natural_gradient_minsr(jac, eps, lam)), atol=1e-12)
    dense = np.linalg.solve(jac.T @ jac + lam * np.eye(p), jac.T @ eps + lam * mu * prev)
    np.testing.assert_allclose(phi, dense, rtol=1e-8, atol=1e-10)


def test_spring_run_resumes_exactly_and_rejects_bad_momentum(tmp_path):
    from hamiltonians.realspace import make_atoms
    from nqs.problems.realspace import run_realspace

    atoms = make_atoms("He 0 0 0")
    kw = dict(layers=((8, 4),), n_determinants=1, n_walkers=16, mcmc_steps=2, eval_steps=4,
              optimizer="sr", momentum=0.9, n_steps=4, checkpoint_every=2, seed=5,
              echo=lambda m: None)
    full = run_realspace(atoms, out_dir=tmp_path / "full", **kw)

    def interrupt(record):
        if record["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_realspace(atoms, out_dir=tmp_path / "cut", callback=interrupt, **kw)
    resumed = run_realspace(atoms, out_dir=tmp_path / "cut", resume=True, **kw)
    # the momentum term is part of the checkpoint: the resumed steps are the same steps
    assert [r["energy"] for r in resumed.history] == [r["energy"] for r in full.history]
    for a, b in zip(jax.tree_util.tree_leaves(full.params),
                    jax.tree_util.tree_leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the stored direction is SPRING's, not zeros: momentum is not silently ignored
    from nqs.io import read_checkpoint_state

    saved = read_checkpoint_state(tmp_path / "cut" / "checkpoint.msgpack")
    names = saved["names"]
    previous = [np.asarray(saved["arrays"][str(i)]) for i, name in enumerate(names)
                if "previous" in name and name.startswith("['state']")]  # not the anchor's
    assert len(previous) == 1 and np.any(previous[0] != 0)
    with pytest.raises(InputError, match="momentum"):
        run_realspace(atoms, **(kw | {"momentum": 1.0}))
    with pytest.raises(InputError, match="momentum"):
        run_realspace(atoms, **(kw | {"optimizer": "adam"}))


def test_spring_transformation_steps_with_schedule_momentum_and_norm_constraint():
    """nqs.optim.spring.spring: -eta delta with eta = lr / (1 + t / delay), delta_prev kept as
    the state, and eta shrunk to eta^2 |delta . g| <= norm_constraint."""
    from nqs.optim.spring import spring

    rng = np.random.default_rng(1)
    n, p, lam, mu, lr, delay = 10, 30, 1e-2, 0.9, 0.1, 2.0
    jac = rng.normal(size=(n, p))
    jac -= jac.mean(axis=0)
    eps = rng.normal(size=n)
    eps -= eps.mean()
    grad = jac.T @ eps
    tx = spring(lr, delay, lam, norm_constraint=0.0, momentum=mu)
    state = tx.init(np.zeros(p))
    u1, state = tx.update(grad, state, jacobian=jac, residuals=eps)
    d1 = np.asarray(natural_gradient_spring(jac, eps, np.zeros(p), lam, mu))
    np.testing.assert_allclose(np.asarray(u1), -lr * d1, rtol=1e-12)
    u2, state = tx.update(grad, state, jacobian=jac, residuals=eps)
    d2 = np.asarray(natural_gradient_spring(jac, eps, d1, lam, mu))
    np.testing.assert_allclose(np.asarray(u2), -lr / (1 + 1 / delay) * d2, rtol=1e-12)
    assert int(state.count) == 2
    np.testing.assert_allclose(np.asarray(state.previous), d2, rtol=1e-12)
    # the norm constraint caps eta^2 |delta . g|
    c = 1e-6
    tx = spring(lr, delay, lam, norm_constraint=c, momentum=0.0)
    u, _ = tx.update(grad, tx.init(np.zeros(p)), jacobian=jac, residuals=eps)
    d = np.asarray(natural_gradient_minsr(jac, eps, lam))
    eta = float(np.linalg.norm(u) / np.linalg.norm(d))
    assert eta < lr and eta**2 * abs(d @ grad) == pytest.approx(c, rel=1e-10)
    # on parameters as a pytree (the real-space networks), applied by nqs.optim.Optimizer as
    # every engine applies its optimizer: the update is the flat one, shaped like the gradient
    from jax.flatten_util import ravel_pytree

    from nqs.optim import scheduled_optimizer

    params = {"a": np.ones((4, 5)), "b": {"c": np.zeros(10)}}
    flat, unravel = ravel_pytree(params)
    opt = scheduled_optimizer("sr", lr, delay, lam, c, momentum=mu)
    assert opt.needs_jacobian
    flat_tx = spring(lr, delay, lam, norm_constraint=c, momentum=mu)
    flat_state = flat_tx.init(flat)
    state = opt.transformation.init(params)
    for _ in range(2):
        new, state = opt.apply(unravel(grad), state, params, jacobian=jac, residuals=eps)
        u, flat_state = flat_tx.update(grad, flat_state, jacobian=jac, residuals=eps)
        np.testing.assert_array_equal(np.asarray(ravel_pytree(new)[0]), np.asarray(flat + u))
    np.testing.assert_array_equal(np.asarray(state.previous), np.asarray(flat_state.previous))
    with pytest.raises(InputError):
        scheduled_optimizer("kfac", lr, delay)
    for bad in (dict(learning_rate=0.0), dict(momentum=1.0), dict(momentum=0.5, diag_shift=0.0),
                dict(norm_constraint=-1.0)):
        with pytest.raises(InputError):
            spring(**bad)
