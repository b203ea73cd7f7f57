"""The float32 RBM keeps its fast hooks (``with_dtype(..., "float32")``).

The wrapper used to keep only the cached ``log_ratio``; it now also keeps the real-part ratios
(Metropolis), the per-pattern tables (local energies and moves of spin Hamiltonians) and the
factored log-derivatives (minSR). Each hook of the float32 ansatz is checked against the
float32 network evaluated by the generic path (``without_fast_path``: full evaluations, dense
Jacobian), on every state of a small sector, to float32 rounding; and its outputs are float64.
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
from nqs.cli import build_parser
from nqs.local_energy import make_local_energy
from nqs.models.rbm import make_rbm
from nqs.optim.flat import real_flat
from nqs.optim.jacobian import HolomorphicJacobian, StructuredJacobian
from nqs.precision import with_dtype
from nqs.problems import spin_sampler
from nqs.sampling import ExactSampler
from nqs.sampling.base import Samples
from nqs.vmc import make_estimator

N = 8
CASES = [
    (TransverseFieldIsing(chain(N), h=0.8), np.complex128),
    (Heisenberg(chain(N)), np.complex128),
    (TransverseFieldIsing(chain(N), h=0.8), np.float64),
]
IDS = ["tfim-complex", "heis-complex", "tfim-real"]


def _ansatz_and_params(dtype):
    a64 = make_rbm(N, alpha=2, param_dtype=dtype)
    params = a64.init(jax.random.PRNGKey(0), jnp.ones((N,)))
    flat, unflatten = real_flat(params)
    params = unflatten(0.3 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))
    return with_dtype(a64, "float32"), params


@pytest.mark.parametrize("model,dtype", CASES, ids=IDS)
def test_float32_hooks_equal_float32_generic_path(model, dtype):
    a32, params = _ansatz_and_params(dtype)
    fast = a32.local_updates
    assert fast.log_abs_ratio is not None and fast.terms is not None
    assert a32.jacobian_structure is not None
    states = jnp.asarray(model.hilbert.all_states(), jnp.float64)
    generic = a32.without_fast_path()

    # local energies: per-pattern tables (float32) against full float32 evaluations
    e_terms = jax.jit(jax.vmap(make_local_energy(model, a32), in_axes=(None, 0)))(params, states)
    e_generic = jax.jit(jax.vmap(make_local_energy(model, generic), in_axes=(None, 0)))(
        params, states)
    assert e_terms.dtype in (jnp.float64, jnp.complex128)
    scale = float(jnp.max(jnp.abs(e_generic)))
    np.testing.assert_allclose(np.asarray(e_terms), np.asarray(e_generic), atol=2e-5 * scale)
    assert float(jnp.max(jnp.abs(e_terms - e_generic))) > 0  # really two float32 computations

    # Metropolis ratios of every pattern: real part against log psi differences
    flip_terms = model.flip_terms
    tables = fast.prepare(params)
    term_tables = fast.terms.prepare(tables, flip_terms.sites, flip_terms.signs)
    assert all(leaf.dtype in (jnp.float32, jnp.complex64, jnp.int32)
               for leaf in jax.tree_util.tree_leaves(term_tables))
    log_psi = jax.vmap(generic.log_psi, in_axes=(None, 0))

    @jax.jit
    def abs_ratios(x):
        cache = fast.init_cache(tables, x)

        def one(t):
            return fast.terms.log_abs_ratio(term_tables, x, cache, t)[0]

        return jax.vmap(one)(jnp.arange(flip_terms.sites.shape[0]))

    x = states[3]
    ratios = abs_ratios(x)
    assert ratios.dtype == jnp.float64
    flipped = jnp.tile(x, (flip_terms.sites.shape[0], 1))
    rows = np.arange(flip_terms.sites.shape[0])[:, None]
    flipped = flipped.at[rows, flip_terms.sites].multiply(-1.0)
    matches = np.asarray(jnp.all(x[flip_terms.sites] * flip_terms.signs
                                 == x[flip_terms.sites[:, :1]], axis=1))
    assert matches.any()
    expected = jnp.real(log_psi(params, flipped) - generic.log_psi(params, x))
    np.testing.assert_allclose(np.asarray(ratios)[matches], np.asarray(expected)[matches],
                               atol=2e-5)

    # per-site real-part ratios (single flips)
    cache = fast.init_cache(tables, x)
    r_abs = jax.jit(fast.log_abs_ratio)(tables, x, cache, jnp.asarray([2], jnp.int32))[0]
    one_flip = x.at[2].multiply(-1.0)
    np.testing.assert_allclose(
        float(r_abs), float(jnp.real(generic.log_psi(params, one_flip)
                                     - generic.log_psi(params, x))), atol=2e-5)


@pytest.mark.parametrize("model,dtype", CASES[::2], ids=IDS[::2])
def test_float32_structured_jacobian_equals_dense(model, dtype):
    """minSR's kernel and gradient from the float32 factors equal the dense float32 Jacobian's."""
    a32, params = _ansatz_and_params(dtype)
    samples = ExactSampler(model.hilbert).sample(jax.random.PRNGKey(0), a32, params, None)[0]

    def estimate(a):
        est = make_estimator(a, model, needs_jacobian=True)
        return jax.jit(lambda p, x, w: est(p, Samples(x, w, 1)))(params, samples.x,
                                                                  samples.weights)

    est_s = estimate(a32)
    est_d = estimate(dataclasses.replace(a32, jacobian_structure=None))
    assert isinstance(est_s.jacobian, StructuredJacobian)
    g_s, g_d = real_flat(est_s.grad)[0], real_flat(est_d.grad)[0]
    assert g_s.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(g_s), np.asarray(g_d),
                               atol=1e-5 * float(jnp.max(jnp.abs(g_d))))
    if isinstance(est_d.jacobian, HolomorphicJacobian):
        o = np.asarray(est_d.jacobian.o)
        kernel_dense = o @ o.conj().T
        kernel_s = np.asarray(est_s.jacobian.kernel())
        np.testing.assert_allclose(kernel_s, kernel_dense,
                                   atol=1e-5 * np.max(np.abs(kernel_dense)))


def test_ratio_dtype_option_reaches_the_sampler():
    """``nqs spin --ratio-dtype float32`` builds the single-precision-acceptance sampler."""
    model = Heisenberg(chain(N))
    for flag in ("float32", "float64"):
        args = build_parser().parse_args(["spin", "--ratio-dtype", flag])
        sampler = spin_sampler(model, "mcmc", 64, 8, 4, args.ratio_dtype)
        assert sampler.ratio_dtype == flag
    assert build_parser().parse_args(["spin"]).ratio_dtype == "float64"
