"""Single-precision acceptance ratios of the per-pattern Metropolis path (``ratio_dtype``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.lattice import square
from hamiltonians.spin import Heisenberg
from nqs.errors import InputError
from nqs.models.rbm import make_rbm
from nqs.operator import matches_terms
from nqs.optim.flat import real_flat
from nqs.sampling.metropolis import MetropolisSampler, _single
from nqs.sampling.rules import ExchangeRule


def _setup(scale: float):
    model = Heisenberg(square(4), marshall_sign=True)
    ansatz = make_rbm(16, 2.0)
    params = ansatz.init(jax.random.PRNGKey(0), jnp.ones(16))
    flat, unflatten = real_flat(params)
    params = unflatten(scale * jax.random.normal(jax.random.PRNGKey(1), flat.shape))
    return model, ansatz, params


@pytest.mark.parametrize("scale", [0.01, 0.1])
def test_single_precision_ratio_error(scale):
    """The float32 acceptance exponent and cache against float64, every bond of random x.

    Weights of standard deviation 0.01 (NetKet's initial scale) and 0.1 give log ratios up to
    0.08 and 3.5 with errors below 1e-6; with 0.3 (theta near the poles of the complex tanh)
    the error reaches 1.6e-5 in the exponent and 2e-3 in the cache, hence opt-in.
    """
    model, ansatz, params = _setup(scale)
    fast, terms = ansatz.local_updates, ansatz.local_updates.terms
    ft = model.flip_terms

    @jax.jit
    def both(x):
        tables = fast.prepare(params)
        tt = terms.prepare(tables, ft.sites, ft.signs)
        t = fast.init_cache(tables, x)
        idx = jnp.arange(len(ft.sites))
        f64 = jax.vmap(lambda k: terms.log_abs_ratio(tt, x, t, k))(idx)
        f32 = jax.vmap(lambda k: terms.log_abs_ratio(_single(tt), x.astype(jnp.float32),
                                                    _single(t), k))(idx)
        return f64, f32, matches_terms(ft, x)

    xs = model.hilbert.random_state(jax.random.PRNGKey(2), 16).astype(jnp.float64)
    err_log, err_t = 0.0, 0.0
    for x in xs:
        (l64, t64), (l32, t32), ok = both(x)
        assert l32.dtype == jnp.float32 and t32.dtype == jnp.complex64
        ok = np.asarray(ok)
        err_log = max(err_log, float(np.max(np.abs(np.asarray(l32, np.float64) - l64)[ok])))
        err_t = max(err_t, float(np.max(np.abs(np.asarray(t32) - t64)[ok])))
    assert err_log < 2e-6
    assert err_t < 2e-6


def test_single_precision_sampler_runs_the_same_chain_almost_everywhere():
    model, ansatz, params = _setup(0.1)
    rule = ExchangeRule(np.asarray(model.lattice.bonds))
    kw = dict(n_chains=8, n_samples=128, n_discard_sweeps=2)
    s64 = MetropolisSampler(model.hilbert, rule, **kw)
    s32 = MetropolisSampler(model.hilbert, rule, ratio_dtype="float32", **kw)
    state = s64.init(jax.random.PRNGKey(3), ansatz, params)
    key = jax.random.PRNGKey(4)
    x64, st64, info64 = s64.sample(key, ansatz, params, state)
    x32, st32, info32 = s32.sample(key, ansatz, params, state)
    assert np.all(np.sum(np.asarray(x32.x), axis=1) == 0)  # still in the S^z = 0 sector
    # an acceptance decision differs only where log u lies within ~1e-6 of the exponent: with
    # ~5000 decisions here the chains agree (a difference would make one chain diverge)
    same = np.mean(np.all(np.asarray(x32.x) == np.asarray(x64.x), axis=1))
    assert same >= 0.85
    assert abs(float(info32["acceptance"]) - float(info64["acceptance"])) < 0.02
    assert st32.log_psi.dtype == st64.log_psi.dtype == jnp.complex128


def test_ratio_dtype_is_checked():
    model, _, _ = _setup(0.1)
    with pytest.raises(InputError, match="ratio_dtype"):
        MetropolisSampler(model.hilbert, ExchangeRule(((0, 1),)), ratio_dtype="float16")
