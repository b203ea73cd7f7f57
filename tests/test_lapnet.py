"""LapNet (Li et al. 2024), the sparse-coupling Psiformer (its antisymmetry and a short run are
checked with the Psiformer's in test_psiformer.py): the sparsity its forward
Laplacian relies on, folx with sparsity against the Hessian trace, the driver's and command
line's choice of it, bad sizes (fast, CPU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# the Psiformer's tiny sizes and parameter perturbation (pytest puts tests/ on the path)
from test_psiformer import LIH, TINY, _perturb  # noqa: E402

import nqs  # noqa: F401  (float64)
from hamiltonians.realspace import make_atoms, make_local_energy
from nqs.models.electrons import folx_sparsity, make_network, network_options
from nqs.models.lapnet import SPARSITY, LapNetStack, make_lapnet
from nqs.realspace import init_walkers


@pytest.mark.parametrize("layer_norm", ["pre", "post", "none"])
def test_stack_is_equivariant_and_its_logits_couple_pairs_only(layer_norm):
    """Permuting the electrons permutes the output rows; the attention logits of pair (i, j)
    change with the features of i and j only (what lets folx keep them sparse), while the
    output of every electron changes with every electron's features."""
    stack = LapNetStack(2, 2, 8, layer_norm)
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 5))
    params = _perturb(stack.init(jax.random.PRNGKey(1), x))
    perm = np.array([3, 0, 5, 1, 4, 2])
    f = jax.jit(jax.vmap(stack.apply, (None, 0)))
    h, h_perm = f(params, jnp.stack([x, x[perm]]))
    np.testing.assert_allclose(np.asarray(h_perm), np.asarray(h)[perm], rtol=1e-12, atol=1e-12)

    def logits(y: jax.Array) -> jax.Array:  # every layer's attention logits [L, H, n, n]
        _, state = stack.apply(params, y, mutable=["intermediates"])
        inter = state["intermediates"]
        return jnp.stack([inter[f"attention_{l}"]["logits"][0] for l in range(2)])

    # d logit_ij / d x_m vanishes unless m is i or j; d out_i / d x_m is nonzero for every m
    jac_logits = jax.jit(jax.jacfwd(logits))(x)  # [L, H, n, n, n, F]
    dep = np.asarray(jnp.max(jnp.abs(jac_logits), axis=(0, 1, 5))) > 0  # [n, n, n]: (i, j, m)
    n = x.shape[0]
    expected = np.zeros((n, n, n), bool)
    for i in range(n):
        for j in range(n):
            expected[i, j, [i, j]] = True
    assert np.array_equal(dep, expected)
    jac_out = jax.jit(jax.jacfwd(lambda y: stack.apply(params, y)))(x)  # [n, width, n, F]
    assert np.all(np.asarray(jnp.max(jnp.abs(jac_out), axis=(1, 3))) > 0)


def test_sparse_folx_local_energy_equals_hessian_trace():
    """The driver's path for a LapNet (folx, sparsity_threshold 6) against the Hessian trace on
    random walkers and perturbed parameters, two layers (dense values in the second)."""
    a = make_atoms(LIH)
    init, apply = make_lapnet(a, a.n_alpha, a.n_beta, **TINY, envelope="full")
    params = _perturb(init(jax.random.PRNGKey(1)))
    r = init_walkers(jax.random.PRNGKey(2), a, 3)
    e_f = jax.jit(jax.vmap(make_local_energy(apply, a, "folx", SPARSITY), (None, 0)))(params, r)
    e_h = jax.jit(jax.vmap(make_local_energy(apply, a, "hessian"), (None, 0)))(params, r)
    assert np.all(np.isfinite(np.asarray(e_f)))
    np.testing.assert_allclose(np.asarray(e_f), np.asarray(e_h), rtol=1e-9, atol=1e-8)


def test_network_options_and_sparsity_choice():
    net = network_options("lapnet", (), 2, "isotropic", False, 1, 2, 8, "none", True)
    assert net["ansatz"] == "lapnet" and folx_sparsity(net) == SPARSITY == 6
    assert folx_sparsity(network_options("psiformer", (), 2, "isotropic", False)) == 0
    assert folx_sparsity(network_options("ferminet", ((8, 4),), 2, "isotropic", False)) == 0
    a = make_atoms("He 0 0 0")
    init, apply, _ = make_network(a, net)
    params = init(jax.random.PRNGKey(0))
    assert "attention_0" in params["params"]["stack"]
    assert not any(k.startswith("sparse_") for k in params["params"]["stack"])  # last: unused
    r = init_walkers(jax.random.PRNGKey(1), a, 1)[0]
    _, ref_apply = make_lapnet(a, 1, 1, n_layers=1, heads=2, width=8, n_determinants=2,
                               layer_norm="none")
    assert float(apply(params, r)[1]) == float(ref_apply(params, r)[1])
