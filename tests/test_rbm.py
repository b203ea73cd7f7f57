"""RBM and symmetric RBM: values, cached local updates, symmetry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from nqs.ansatz import Ansatz, n_parameters
from nqs.hilbert import FermionHilbert, SpinHilbert, apply_flips
from nqs.models.rbm import RBM, log_cosh, make_rbm, make_rbm_symm, translation_group


def randomize(params, key, scale=0.3):
    """Every leaf ``scale * (N(0,1) + i N(0,1))`` (real part for real leaves), numpy RNG."""
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))

    def draw(leaf):
        v = scale * (rng.normal(size=leaf.shape) + 1j * rng.normal(size=leaf.shape))
        return jnp.asarray(v if jnp.iscomplexobj(leaf) else v.real, dtype=leaf.dtype)

    return jax.tree_util.tree_map(draw, params)


def assert_log_close(a, b, atol=1e-10):
    """Equal real parts and imaginary parts modulo 2 pi."""
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a.real, b.real, atol=atol)
    dphase = np.angle(np.exp(1j * (a.imag - b.imag)))
    np.testing.assert_allclose(dphase, 0.0, atol=atol)


def fermion_translations(n_orb: int) -> np.ndarray:
    """Cyclic shifts of the orbitals applied to the alpha and beta blocks together."""
    base = np.arange(n_orb)
    return np.array(
        [np.concatenate([(base + g) % n_orb, n_orb + (base + g) % n_orb]) for g in range(n_orb)]
    )


HILBERTS = {
    "spin": SpinHilbert(6),
    "fermion": FermionHilbert(4, 2, 1),
}


def build(kind: str, hilbert):
    c = hilbert.flip_constant
    n = hilbert.n_sites
    if kind == "rbm":
        return make_rbm(n, 1.5, flip_constant=c)
    if kind == "rbm_real":
        return make_rbm(n, 1.0, param_dtype=jnp.float64, flip_constant=c)
    if kind == "rbm_novb":
        return make_rbm(n, 1.0, use_visible_bias=False, flip_constant=c)
    if isinstance(hilbert, SpinHilbert):
        perms = np.array(translation_group((n,)))
    else:
        perms = fermion_translations(hilbert.n_orbitals)
    return make_rbm_symm(perms, 2, flip_constant=c)


def test_log_cosh_stable():
    z = np.array([0.3 + 0.2j, -1.7 + 2.0j, 5.0 - 1.0j, -0.01j, 2.0 + 0.0j])
    np.testing.assert_allclose(np.asarray(log_cosh(jnp.asarray(z))), np.log(np.cosh(z)), atol=1e-12)
    big = jnp.asarray([800.0 + 1.0j, -900.0 + 0.5j])
    out = np.asarray(log_cosh(big))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.real, np.abs(big.real) - np.log(2.0))
    np.testing.assert_allclose(np.asarray(log_cosh(jnp.asarray([-3.0, 4.0]))),
                               np.log(np.cosh([-3.0, 4.0])))


def test_rbm_matches_numpy_formula():
    n = 7
    ansatz = make_rbm(n, 2.0)
    x = SpinHilbert(n).random_state(jax.random.PRNGKey(0), 5)
    params = randomize(ansatz.init(jax.random.PRNGKey(1), x[0]), jax.random.PRNGKey(2))
    p = jax.tree_util.tree_map(np.asarray, params["params"])
    assert p["kernel"].shape == (n, 14)
    xs = np.asarray(x)
    expected = xs @ p["visible_bias"] + np.sum(
        np.log(np.cosh(xs @ p["kernel"] + p["hidden_bias"])), axis=1
    )
    got = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x)
    assert got.dtype == jnp.complex128
    assert_log_close(got, expected)
    # batched call of the module gives the same
    assert_log_close(ansatz.module.apply(params, x), expected)


def test_default_init_scale_and_dtype():
    ansatz = make_rbm(10, 1.0)
    params = ansatz.init(jax.random.PRNGKey(0), jnp.ones(10))
    k = params["params"]["kernel"]
    assert k.dtype == jnp.complex128
    assert 0.001 < float(jnp.std(k)) < 0.05
    real = make_rbm(10, 1.0, param_dtype=jnp.float64)
    pr = real.init(jax.random.PRNGKey(0), jnp.ones(10))
    assert pr["params"]["kernel"].dtype == jnp.float64
    assert real.log_psi(pr, jnp.ones(10)).dtype == jnp.complex128
    assert n_parameters(pr) == 10 + 10 + 100


def test_rbm_symm_parameter_count_and_invariance():
    n, alpha = 8, 3
    perms = translation_group((n,))
    ansatz = make_rbm_symm(perms, alpha)
    x = SpinHilbert(n).random_state(jax.random.PRNGKey(3), 4)
    params = randomize(ansatz.init(jax.random.PRNGKey(4), x[0]), jax.random.PRNGKey(5))
    assert n_parameters(params) == 2 * (alpha * (n + 1) + 1)
    base = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x)
    for perm in perms:
        moved = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x[:, np.asarray(perm)])
        assert_log_close(moved, base)
    # not invariant under a non-translation permutation (generic parameters)
    swap = np.arange(n)
    swap[[0, 2]] = swap[[2, 0]]
    other = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x[:, swap])
    assert not np.allclose(np.asarray(other), np.asarray(base))


def test_rbm_symm_matches_numpy_formula():
    perms = np.array(translation_group((2, 3)))
    assert perms.shape == (6, 6)
    ansatz = make_rbm_symm(perms, 2)
    x = SpinHilbert(6).random_state(jax.random.PRNGKey(0), 3)
    params = randomize(ansatz.init(jax.random.PRNGKey(1), x[0]), jax.random.PRNGKey(2))
    p = jax.tree_util.tree_map(np.asarray, params["params"])
    xs = np.asarray(x)
    expected = []
    for row in xs:
        theta = row[perms] @ p["kernel"].T + p["hidden_bias"]
        expected.append(p["visible_bias"] * row.sum() + np.sum(np.log(np.cosh(theta))))
    got = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x)
    assert_log_close(got, np.array(expected))


FLIPS = [
    [0],
    [3],
    [1, 4],
    [5, 0],
    [2, "pad"],
    ["pad", "pad"],
    ["pad"],
    [0, 2, "pad", 5],
]


def padded_flips(n: int) -> jnp.ndarray:
    """FLIPS as int32 [n_flips, 4] (padding index n), one shape for a single compilation."""
    rows = [[n if s == "pad" else s for s in f] + [n] * (4 - len(f)) for f in FLIPS]
    return jnp.asarray(rows, jnp.int32)


@pytest.mark.parametrize(
    "space,kind",
    [("spin", "rbm"), ("spin", "rbm_real"), ("spin", "rbm_novb"), ("spin", "symm"),
     ("fermion", "rbm"), ("fermion", "symm")],
)
def test_fast_log_ratio_matches_generic(kind, space):
    hilbert = HILBERTS[space]
    n = hilbert.n_sites
    c = hilbert.flip_constant
    ansatz: Ansatz = build(kind, hilbert)
    fast = ansatz.local_updates
    assert fast is not None
    xs = hilbert.random_state(jax.random.PRNGKey(7), 4)
    params = randomize(ansatz.init(jax.random.PRNGKey(8), xs[0]), jax.random.PRNGKey(9))

    @jax.jit
    def check(params, x, sites):
        tables = fast.prepare(params)
        cache = fast.init_cache(tables, x)
        lp = ansatz.log_psi(params, x)

        def one(s):
            x_new = apply_flips(x, s, c)
            lr, cache_new = fast.log_ratio(tables, x, cache, s)
            return lr, ansatz.log_psi(params, x_new) - lp, cache_new, fast.init_cache(tables, x_new)

        return jax.vmap(one)(sites)

    flips = padded_flips(n)
    lr, direct, cache_new, cache_direct = jax.vmap(check, in_axes=(None, 0, None))(
        params, xs, flips
    )
    assert lr.dtype == jnp.complex128
    assert_log_close(lr, direct)
    assert_trees_close(cache_new, cache_direct, atol=1e-10)
    # a single flip with k = 1 (another shape)
    sites = jnp.asarray([2], jnp.int32)
    tables = fast.prepare(params)
    cache = fast.init_cache(tables, xs[0])
    lr1, _ = fast.log_ratio(tables, xs[0], cache, sites)
    x_new = apply_flips(xs[0], sites, c)
    assert_log_close(lr1, ansatz.log_psi(params, x_new) - ansatz.log_psi(params, xs[0]))


def assert_trees_close(a, b, atol):
    """Caches are pytrees (for the RBM: tanh theta): compare leaf by leaf."""
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=atol)


def test_chained_updates_track_the_cache():
    """Many successive cached updates stay equal to a fresh evaluation."""
    hilbert = SpinHilbert(10)
    ansatz = make_rbm(10, 2.0)
    fast = ansatz.local_updates
    x0 = hilbert.random_state(jax.random.PRNGKey(0), 1)[0]
    params = randomize(ansatz.init(jax.random.PRNGKey(1), x0), jax.random.PRNGKey(2))
    # distinct pairs of sites, or a single site padded
    first = jax.random.randint(jax.random.PRNGKey(3), (500,), 0, 10)
    shift = jax.random.randint(jax.random.PRNGKey(4), (500,), 1, 11)
    second = jnp.where(shift == 10, 10, (first + shift) % 10)
    sites_all = jnp.stack([first, second], axis=1).astype(jnp.int32)

    @jax.jit
    def run(params, x):
        tables = fast.prepare(params)

        def step(carry, sites):
            x, cache, total = carry
            lr, cache = fast.log_ratio(tables, x, cache, sites)
            return (apply_flips(x, sites, 0.0), cache, total + lr), None

        carry = (x, fast.init_cache(tables, x), jnp.zeros((), jnp.complex128))
        (x, cache, total), _ = jax.lax.scan(step, carry, sites_all)
        return ansatz.log_psi(params, x0) + total, ansatz.log_psi(params, x), cache, x

    tracked, direct, cache, x = run(params, x0)
    assert_log_close(tracked, direct, atol=1e-9)
    assert_trees_close(cache, fast.init_cache(fast.prepare(params), x), atol=1e-9)


def test_modules_are_hashable():
    a = make_rbm_symm(translation_group((4,)), 1)
    b = make_rbm_symm(np.array(translation_group((4,))), 1)
    assert hash(a.module) == hash(b.module)
    assert a.module == b.module
    assert hash(RBM(alpha=2.0)) == hash(RBM(alpha=2.0))
