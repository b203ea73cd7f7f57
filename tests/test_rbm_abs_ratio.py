"""The RBM's sampling ratio (``log_abs_ratio``) against the full ratio and brute force."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401
from nqs.hilbert import apply_flips
from nqs.models.rbm import make_rbm
from nqs.optim.flat import real_flat


@pytest.mark.parametrize("dtype,c", [(jnp.complex128, 0.0), (jnp.float64, 1.0),
                                     (jnp.complex128, 1.0)],
                         ids=["complex-spins", "real-occupations", "complex-occupations"])
def test_log_abs_ratio_is_real_part_of_log_ratio(dtype, c):
    n = 7
    ansatz = make_rbm(n, 1.5, param_dtype=dtype, flip_constant=c)
    params = ansatz.init(jax.random.PRNGKey(0), jnp.ones(n))
    flat, unflatten = real_flat(params)
    params = unflatten(0.5 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))
    fast = ansatz.local_updates
    assert fast.log_abs_ratio is not None

    @jax.jit
    def both(x, s):
        tables = fast.prepare(params)
        t = fast.init_cache(tables, x)
        lr, t_full = fast.log_ratio(tables, x, t, s)
        la, t_abs = fast.log_abs_ratio(tables, x, t, s)
        x_new = apply_flips(x, s, c)
        brute = ansatz.log_psi(params, x_new) - ansatz.log_psi(params, x)
        return lr, la, t_full, t_abs, brute, fast.init_cache(tables, x_new)

    rng = np.random.default_rng(2)
    # one, two and three flipped sites, padded with the index n (no flip)
    sites = jnp.asarray([[3, n, n], [0, 5, n], [1, 2, 6], [n, n, n]], dtype=jnp.int32)
    for _ in range(3):
        x = jnp.asarray(rng.choice([-1.0, 1.0], n) if c == 0.0 else rng.choice([0.0, 1.0], n))
        for s in sites:
            lr, la, t_full, t_abs, brute, t_ref = (np.asarray(v) for v in both(x, s))
            np.testing.assert_allclose(la, brute.real, atol=1e-12)
            # the phase of a log is defined modulo 2 pi
            np.testing.assert_allclose(np.exp(lr - brute), 1.0, atol=1e-12)
            np.testing.assert_allclose(t_abs, t_full, atol=1e-13)
            np.testing.assert_allclose(t_abs, t_ref, atol=1e-12)  # tanh(theta) of x'
