"""minSR with the kernel T = O O^H and O^H y built from blocks of parameter columns equals the
one-product form, for real and complex Jacobians and through the SR transformation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from nqs.optim.jacobian import HolomorphicJacobian
from nqs.optim.sr import (
    conj_transpose_dot,
    minsr_kernel,
    natural_gradient_minsr,
    natural_gradient_minsr_holomorphic,
    sr,
)


def _jac(complex_: bool, rows: int = 12, cols: int = 53) -> jax.Array:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(rows, cols))
    if complex_:
        a = a + 1j * rng.normal(size=(rows, cols))
    return jnp.asarray(a)


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 16, 53, 100])
def test_kernel_and_transpose_dot_chunked_equal(complex_, chunk):
    o = _jac(complex_)
    y = jnp.asarray(np.random.default_rng(4).normal(size=o.shape[0])).astype(o.dtype)
    np.testing.assert_allclose(minsr_kernel(o, chunk), o @ o.conj().T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(conj_transpose_dot(o, y, chunk), o.conj().T @ y, rtol=0,
                               atol=1e-10)


def test_minsr_chunked_equal_real_and_holomorphic():
    j = _jac(False, 24, 97)
    eps = jnp.asarray(np.random.default_rng(5).normal(size=24))
    np.testing.assert_allclose(natural_gradient_minsr(j, eps, 1e-3, 10),
                               natural_gradient_minsr(j, eps, 1e-3), rtol=0, atol=1e-10)
    o = _jac(True, 12, 97)
    np.testing.assert_allclose(natural_gradient_minsr_holomorphic(o, eps, 1e-3, 8),
                               natural_gradient_minsr_holomorphic(o, eps, 1e-3), rtol=0,
                               atol=1e-10)
    # and the chunked kernel really is used: a wrong block sum would differ
    assert not np.allclose(minsr_kernel(o, 8), o[:, :8] @ o[:, :8].conj().T)


def test_sr_transformation_param_chunk():
    o = _jac(True, 12, 40)
    eps = jnp.asarray(np.random.default_rng(6).normal(size=24))
    grad = {"w": jnp.zeros(40, dtype=jnp.complex128)}
    outs = []
    for chunk in (None, 9):
        t = sr(1e-2, "minsr", param_chunk=chunk)
        upd, _ = t.update(grad, t.init(grad), jacobian=HolomorphicJacobian(o), residuals=eps)
        outs.append(np.asarray(upd["w"]))
    np.testing.assert_allclose(outs[1], outs[0], rtol=0, atol=1e-10)
    with pytest.raises(ValueError):
        sr(1e-2, param_chunk=0)
