"""minSR from the RBM's factored log-derivatives equals minSR from the dense Jacobian.

The structured path (:class:`nqs.optim.jacobian.StructuredJacobian`) never forms ``O [n, P]``;
these tests compare its kernel, gradient and SR update with the dense path (the complex
``HolomorphicJacobian`` or the real-view ``J``) on exactly enumerated states with non-uniform
weights, for complex and real RBMs, and on a 4-device mesh (the suite's multi-device
subprocess, tests/helpers/multi_device_check.py, started by tests/conftest.py).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401
from hamiltonians.lattice import chain
from hamiltonians.spin import Heisenberg, TransverseFieldIsing
from nqs.models.rbm import make_rbm
from nqs.optim import sr
from nqs.optim.flat import real_flat
from nqs.optim.jacobian import HolomorphicJacobian, StructuredJacobian, to_real
from nqs.sampling import ExactSampler
from nqs.sampling.base import Samples
from nqs.vmc import make_estimator

MULTI_DEVICE_CHECKS = ("structured",)  # read by tests/conftest.py


def _random_params(ansatz, hilbert, seed=0, scale=0.4):
    params = ansatz.init(jax.random.PRNGKey(seed), jnp.asarray(hilbert.all_states()[0]))
    flat, unflatten = real_flat(params)
    return unflatten(scale * jax.random.normal(jax.random.PRNGKey(seed + 1), flat.shape))


def _estimates(model, ansatz, params):
    """(structured estimate, dense estimate) on the exact |psi|^2-weighted states."""
    samples = ExactSampler(model.hilbert).sample(jax.random.PRNGKey(0), ansatz, params, None)[0]
    dense_ansatz = dataclasses.replace(ansatz, jacobian_structure=None)

    def estimate(a):
        est = make_estimator(a, model, needs_jacobian=True)
        return jax.jit(lambda p, x, w: est(p, Samples(x, w, 1)))(params, samples.x,
                                                                  samples.weights)

    est_s, est_d = estimate(ansatz), estimate(dense_ansatz)
    return est_s, est_d


def _update(est, params, mode, shift=1e-2):
    tx = sr(shift, mode)

    @jax.jit  # one program per mode instead of op-by-op dispatch of the solver
    def update(grad, params, jacobian, residuals):
        upd, _ = tx.update(real_flat(params)[1](grad), tx.init(params), params,
                           jacobian=jacobian, residuals=residuals)
        return real_flat(upd)[0]

    return np.asarray(update(est.grad, params, est.jacobian, est.residuals))


CASES = [
    (TransverseFieldIsing(chain(6), h=0.8), np.complex128, True),
    (Heisenberg(chain(6)), np.complex128, False),  # no visible bias
    (TransverseFieldIsing(chain(6), h=0.8), np.float64, True),  # real RBM
]


@pytest.mark.parametrize("model,dtype,visible", CASES,
                         ids=["tfim-complex", "heis-novis", "tfim-real"])
def test_structured_minsr_equals_dense(model, dtype, visible):
    ansatz = make_rbm(6, alpha=2, param_dtype=dtype, use_visible_bias=visible)
    params = _random_params(ansatz, model.hilbert)
    est_s, est_d = _estimates(model, ansatz, params)
    assert isinstance(est_s.jacobian, StructuredJacobian)
    if dtype == np.complex128:
        assert isinstance(est_d.jacobian, HolomorphicJacobian)
        o = np.asarray(est_d.jacobian.o)
    else:
        o = np.asarray(est_d.jacobian)[:64]  # real view [Re O; Im O = 0]
        np.testing.assert_array_equal(np.asarray(est_d.jacobian)[64:], 0.0)
    # the kernel from the factors is the dense O O^H
    np.testing.assert_allclose(np.asarray(est_s.jacobian.kernel()), o @ o.conj().T, atol=1e-12)
    np.testing.assert_allclose(np.asarray(to_real(est_s.jacobian)),
                               np.asarray(to_real(est_d.jacobian)), atol=1e-13)
    np.testing.assert_allclose(np.asarray(est_s.grad), np.asarray(est_d.grad), atol=1e-12)
    reference = _update(est_d, params, "minsr")
    assert np.linalg.norm(reference) > 1e-2  # a real update, not two zeros
    for mode in ("minsr", "dense", "auto"):
        np.testing.assert_allclose(_update(est_s, params, mode), reference, atol=1e-10)


def test_structured_minsr_on_four_devices(multi_device):
    """Samples split over a 4-device mesh: the same update as the dense path on one device
    (tests/helpers/multi_device_check.py, check ``structured``)."""
    out = multi_device
    assert out["structured_n_devices"] == 4
    assert out["structured_sharded"]  # the features really were split over the devices
    assert out["structured_update_norm"] > 1e-2
    assert out["structured_update_diff"] < 1e-10
    assert out["structured_energy_diff"] < 1e-12
