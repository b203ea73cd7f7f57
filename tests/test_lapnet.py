"""LapNet (Li et al. 2024), the sparse-coupling Psiformer: antisymmetry, the sparsity its forward
Laplacian relies on, folx with sparsity against the Hessian trace, the driver's and command
line's choice of it, bad sizes (fast, CPU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.realspace import make_atoms, make_local_energy
from nqs.errors import InputError
from nqs.models.electrons import folx_sparsity, make_network, network_options
from nqs.models.lapnet import SPARSITY, LapNetStack, make_lapnet, make_lapnet_orbitals
from nqs.realspace import init_walkers

TINY = dict(n_layers=2, heads=2, width=8, n_determinants=2)
LIH = "Li 0 0 0; H 0 0 3.015"


def _perturb(params):
    """Move every parameter off its initial value (LayerNorm scales of 1, biases of 0, Jastrow
    and envelope parameters of 1) so no path is the identity."""
    return jax.jit(lambda p: jax.tree_util.tree_map(
        lambda x: x * (1.0 + 0.1 * jnp.sin(jnp.arange(x.size).reshape(x.shape)))
        + 0.05 * jnp.cos(jnp.arange(x.size).reshape(x.shape)), p))(params)


@pytest.mark.parametrize("full_det", [False, True])
def test_antisymmetry_under_same_spin_exchange(full_det):
    a = make_atoms("Li 0 0 0; H 0 0 3.015; H 0 0 -2.0")  # 5 electrons: 3 alpha, 2 beta
    kw = dict(TINY, full_det=full_det)
    init, apply = make_lapnet(a, a.n_alpha, a.n_beta, **kw)
    params = _perturb(init(jax.random.PRNGKey(3)))
    r = init_walkers(jax.random.PRNGKey(4), a, 1)[0]
    perms = [np.arange(5)]
    for i, j in [(0, 2), (1, 2), (3, 4), (0, 3)]:  # alpha-alpha twice, beta-beta, alpha-beta
        p = np.arange(5)
        p[[i, j]] = p[[j, i]]
        perms.append(p)
    sign, log_abs = jax.jit(jax.vmap(apply, (None, 0)))(params, r[np.stack(perms)])
    sign, log_abs = np.asarray(sign), np.asarray(log_abs)
    assert np.all(np.isfinite(log_abs))
    for s, la in zip(sign[1:4], log_abs[1:4], strict=True):
        assert s == -sign[0]
        np.testing.assert_allclose(la, log_abs[0], rtol=1e-12)
    if not full_det:  # an alpha-beta exchange is no symmetry of the spin blocks
        assert abs(log_abs[4] - log_abs[0]) > 1e-6
    mats = jax.jit(make_lapnet_orbitals(a, a.n_alpha, a.n_beta, **kw))(params, r)
    assert [m.shape for m in mats] == ([(2, 5, 5)] if full_det else [(2, 3, 3), (2, 2, 2)])


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


def test_bad_sizes_raise_input_error():
    a = make_atoms("He 0 0 0")
    with pytest.raises(InputError, match="not divisible"):
        make_lapnet(a, 1, 1, heads=3, width=8)
    with pytest.raises(InputError, match="layers"):
        make_lapnet(a, 1, 1, n_layers=0)
    with pytest.raises(InputError, match="layer norm"):
        make_lapnet(a, 1, 1, layer_norm="middle")


@pytest.mark.slow
def test_short_run_with_pretraining_lowers_the_energy():
    """He, a tiny LapNet through the driver (its folx path with sparsity): HF pretraining and
    40 SPRING steps lower the energy (the Psiformer's test, tests/test_psiformer.py)."""
    from nqs.realspace.driver import run_realspace

    messages = []
    res = run_realspace(
        make_atoms("He 0 0 0"), ansatz="lapnet", psiformer_layers=1, heads=2, width=8,
        n_determinants=1, optimizer="sr", momentum=0.9, learning_rate=0.1, pretrain_steps=10,
        pretrain_basis="sto-3g", n_steps=40, n_walkers=64, mcmc_steps=5, burn_in_calls=5,
        eval_steps=4, seed=1, echo=messages.append, progress=False,
    )
    energies = np.array([h["energy"] for h in res.history])
    assert np.all(np.isfinite(energies)) and energies.size == 40
    assert energies[-10:].mean() < energies[:5].mean() - 0.05, energies
    assert res.hf_energy is not None and any("pretrained 10 steps" in m for m in messages)
