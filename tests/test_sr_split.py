"""minSR from the split (amplitude, phase) Jacobian equals minSR from the dense real view.

The autoregressive state's ``Re log psi`` depends on its backbone alone and ``Im log psi`` on
its phase network alone (``Ansatz.amplitude_phase``), so the real-view Jacobian is block
diagonal and SR solves the two blocks apart (:class:`nqs.optim.jacobian.SplitJacobian`). These
tests compare the Jacobian, gradient and SR update with the generic dense path on the exactly
enumerated, |psi|^2-weighted determinants of LiH / STO-3G, for both phase networks.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401
from hamiltonians.molecule import compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.models.autoregressive import make_autoregressive
from nqs.optim import sr
from nqs.optim.flat import real_flat
from nqs.optim.jacobian import SplitJacobian, to_real
from nqs.sampling import ExactSampler
from nqs.sampling.base import Samples
from nqs.vmc import make_estimator


@pytest.fixture(scope="module")
def lih():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        integrals, _ = compute_integrals(from_preset("LiH"))
    return MolecularHamiltonian(integrals)


def _update(est, params, mode, shift=1e-2):
    tx = sr(shift, mode)

    @jax.jit
    def update(grad, params, jacobian, residuals):
        upd, _ = tx.update(real_flat(params)[1](grad), tx.init(params), params,
                           jacobian=jacobian, residuals=residuals)
        return real_flat(upd)[0]

    return np.asarray(update(est.grad, params, est.jacobian, est.residuals))


@pytest.mark.parametrize("phase", ["mlp", "conditional"])
def test_split_minsr_equals_dense(lih, phase):
    ansatz = make_autoregressive(lih.hilbert, hidden=(8,), phase_hidden=(6,), phase=phase,
                                 hf_logit=1.0)
    assert ansatz.amplitude_phase == ("backbone", "phase")
    params = ansatz.init(jax.random.PRNGKey(0), jnp.asarray(lih.hilbert.hartree_fock_state()))
    flat, unflatten = real_flat(params)
    params = unflatten(flat + 0.3 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))
    samples = ExactSampler(lih.hilbert).sample(jax.random.PRNGKey(0), ansatz, params, None)[0]

    def estimate(a):
        est = make_estimator(a, lih, needs_jacobian=True)
        return jax.jit(lambda p, x, w: est(p, Samples(x, w, 1)))(params, samples.x,
                                                                  samples.weights)

    split, dense = estimate(ansatz), estimate(ansatz.without_fast_path())
    assert isinstance(split.jacobian, SplitJacobian)
    assert not isinstance(dense.jacobian, SplitJacobian)
    np.testing.assert_allclose(np.asarray(to_real(split.jacobian)),
                               np.asarray(to_real(dense.jacobian)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(split.grad), np.asarray(dense.grad),
                               rtol=1e-10, atol=1e-12)
    for mode in ("minsr", "dense"):
        np.testing.assert_allclose(_update(split, params, mode), _update(dense, params, mode),
                                   rtol=1e-7, atol=1e-9)
