"""GCNN and symmetry projection: invariance, quantum numbers, local energies against dense H,
and short VMC runs against exact diagonalization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hamiltonians.lattice import chain, honeycomb, square, triangular
from hamiltonians.spin import Heisenberg
from hamiltonians.spin_reference import (
    infinite_temperature_energy,
    lanczos_ground_state,
    netket_sparse,
)
from nqs.driver import run_vmc
from nqs.errors import InputError
from nqs.local_energy import make_local_energy
from nqs.models.gcnn import make_gcnn
from nqs.models.rbm import make_rbm
from nqs.models.symmetry import make_projected, momentum_characters
from nqs.optim import sr_optimizer
from nqs.problems import spin_ansatz, spin_sampler
from nqs.stats import v_score


def _configs(n_sites: int, n: int = 6, seed: int = 0) -> jnp.ndarray:
    return jnp.asarray(np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, n_sites)))


def _batched(ansatz):
    """Jitted log psi of a batch; compiled once per ansatz and shape."""
    return jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))


@pytest.mark.parametrize(
    ("lattice", "group", "dtype"),
    [
        (square(4), "space", jnp.complex128),
        (honeycomb(2), "space", jnp.float64),
    ],
    ids=lambda v: v.describe() if hasattr(v, "describe") else str(v),
)
def test_gcnn_is_invariant(lattice, group, dtype) -> None:
    perms = lattice.space_group() if group == "space" else lattice.translations()
    ansatz = make_gcnn(perms, (3, 2, 2), param_dtype=dtype)
    xs = _configs(lattice.n_sites)
    params = ansatz.init(jax.random.PRNGKey(1), xs[0])
    f = _batched(ansatz)
    ref = f(params, xs)
    assert ref.dtype == jnp.complex128
    if dtype == jnp.float64:
        assert np.allclose(ref.imag, 0.0)
    # every group element at once: [G * n] configurations in one call
    moved = np.asarray(xs)[:, perms].transpose(1, 0, 2).reshape(-1, lattice.n_sites)
    f_all = _batched(ansatz)
    out = np.asarray(f_all(params, jnp.asarray(moved))).reshape(len(perms), -1)
    np.testing.assert_allclose(out, np.broadcast_to(ref, out.shape), atol=1e-11)
    # not invariant under a permutation outside the group (a random one)
    other = np.random.default_rng(3).permutation(lattice.n_sites)
    assert np.abs(f(params, xs[:, other]) - ref).max() > 1e-6
    n_g = len(perms)
    expected = lattice.n_sites * 3 + 3 + n_g * 3 * 2 + 2 + n_g * 2 * 2 + 2
    leaves = jax.tree_util.tree_leaves(params)
    assert sum(leaf.size for leaf in leaves) == expected


def test_projection_quantum_numbers() -> None:
    lat = square(4)
    group = lat.space_group()
    rbm = make_rbm(16, 1)
    xs = _configs(16)
    for parity in ("even", "odd"):
        proj = make_projected(rbm, group, parity=parity)
        f = _batched(proj)
        params = proj.init(jax.random.PRNGKey(2), xs[0])
        ref = np.exp(f(params, xs))
        for perm in group[::9]:
            np.testing.assert_allclose(np.exp(f(params, xs[:, perm])), ref, rtol=1e-10)
        sign = 1.0 if parity == "even" else -1.0
        np.testing.assert_allclose(np.exp(f(params, -xs)), sign * ref, rtol=1e-10)
    # momentum k = 2 on a chain of 6: psi(x . T_t) = psi(x) / chi_t
    ring = chain(6)
    trans = ring.translations()
    chars = momentum_characters(trans, ring.extent, (2,))
    proj = make_projected(make_rbm(6, 2), trans, characters=chars)
    xs = _configs(6)
    params = proj.init(jax.random.PRNGKey(3), xs[0])
    f = _batched(proj)
    ref = np.exp(f(params, xs))
    assert np.abs(ref).max() > 1e-3
    for t, perm in enumerate(trans):
        np.testing.assert_allclose(np.exp(f(params, xs[:, perm])), ref / chars[t], atol=1e-12)


def test_bad_symmetry_inputs() -> None:
    lat = square(3)
    with pytest.raises(InputError, match="not a group"):
        make_gcnn(lat.translations()[:4])
    with pytest.raises(InputError, match="not a permutation"):
        make_gcnn([[0, 0, 1]])
    with pytest.raises(InputError, match="positive"):
        make_gcnn(lat.translations(), (4, 0))
    with pytest.raises(InputError, match="one-dimensional irrep"):
        make_projected(make_rbm(9, 1), lat.translations(), characters=np.arange(9.0))
    with pytest.raises(InputError, match="parity"):
        make_projected(make_rbm(9, 1), lat.translations(), parity="up")
    with pytest.raises(InputError, match="unknown ansatz"):
        spin_ansatz(Heisenberg(square(2)), "transformer", 1)


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        (Heisenberg(triangular(3), total_sz=None), "gcnn"),
        (Heisenberg(honeycomb(2)), "rbm-projected"),
    ],
    ids=lambda v: v.describe() if hasattr(v, "describe") else v,
)
def test_local_energy_equals_dense(model, kind) -> None:
    """E_loc(x) = (H psi)(x) / psi(x) with NetKet's dense matrix, over the whole sector."""
    if kind == "gcnn":
        ansatz = spin_ansatz(model, "gcnn", 1, features=2, layers=2, symmetries="translations")
    else:
        ansatz = spin_ansatz(model, "rbm", 1, project=True, parity="even")
    states = jnp.asarray(model.hilbert.all_states())
    params = ansatz.init(jax.random.PRNGKey(4), states[0])
    log_psi = np.asarray(_batched(ansatz)(params, states))
    psi = np.exp(log_psi - log_psi.real.max())
    dense = netket_sparse(model).toarray()
    expected = (dense @ psi) / psi
    eloc = jax.jit(jax.vmap(make_local_energy(model, ansatz), in_axes=(None, 0)))(params, states)
    np.testing.assert_allclose(np.asarray(eloc), expected, rtol=1e-9, atol=1e-9)


def test_short_gcnn_run_reaches_exact_energy() -> None:
    """Honeycomb 2x2 (8 spins), Heisenberg with the Marshall sign; translations only, so the
    symmetric sector is not trivially small. Exact summation over the 70 states, 30 SR steps."""
    model = Heisenberg(honeycomb(2), marshall_sign=True)
    exact = lanczos_ground_state(model)
    ansatz = spin_ansatz(model, "gcnn", 1, features=4, layers=2, symmetries="translations")
    sampler = spin_sampler(model, "exact", n_samples=1, n_chains=1)
    result = run_vmc(ansatz, model, sampler, sr_optimizer(0.05, diag_shift=0.01), 30,
                     exact_energy=exact, progress=False, n_eval_batches=1)
    assert result.energy_error == 0.0
    assert exact - 1e-9 <= result.energy < exact + 1e-3 * abs(exact)
    vs = v_score(result.energy, result.variance, model.hilbert.n_sites,
                 infinite_temperature_energy(model))
    assert 0.0 <= vs < 1e-2


def test_v_score_and_energy_zero() -> None:
    model = Heisenberg(square(2), total_sz=None)
    dense = netket_sparse(model).toarray()
    assert infinite_temperature_energy(model) == pytest.approx(np.trace(dense) / len(dense))
    assert v_score(-2.0, 0.5, 4) == pytest.approx(0.5)
    assert v_score(-2.0, 0.5, 4, e_inf=-1.0) == pytest.approx(2.0)
    assert np.isnan(v_score(0.0, 0.1, 4))


def _reference_gcnn(params, x, perms, product):
    """The GCNN written with gathers and plain autodiff (the definition in nqs.models.gcnn)."""
    from nqs.models.gcnn import kernel_from_hat, reim_selu

    p = params["params"]
    h = x[perms].astype(p["embed_kernel"].dtype) @ p["embed_kernel"] + p["embed_bias"]
    layer = 0
    while f"conv{layer}_bias" in p:
        k = p.get(f"conv{layer}_kernel")
        if k is None:  # held in the translations' Fourier basis: plain autodiff through it
            k = kernel_from_hat(p[f"conv{layer}_kernel_hat"],
                                tuple(tuple(int(v) for v in r) for r in perms))
        gathered = reim_selu(h)[product]  # [g, m, c] = sigma(h)[g m, c]
        h = jnp.einsum("gmc,mcf->gf", gathered, k) + p[f"conv{layer}_bias"]
        layer += 1
    out = jnp.sum(h, axis=-1)
    return jax.scipy.special.logsumexp(out.astype(jnp.complex128))


@pytest.mark.parametrize("dtype", [jnp.complex128, jnp.float64])
@pytest.mark.parametrize("case", ["honeycomb-point", "square-space", "triangular-space",
                                  "honeycomb-space"])
def test_gcnn_gradients_equal_plain_autodiff(case: str, dtype) -> None:
    """The custom VJPs of the dense layers, and the space groups' layers through the
    translations' characters (complex parameters; real ones in real arithmetic), against
    autodiff of the gather form."""
    from nqs.models.gcnn import fourier_tables, group_tables, kernel_basis, real_fourier_tables

    lat = {"honeycomb-point": honeycomb(2), "square-space": square(4),
           "triangular-space": triangular(3), "honeycomb-space": honeycomb(2)}[case]
    # C6v about a hexagon centre (12 elements, both sublattices), or the whole space group
    perms = lat.point_group() if case.endswith("point") else lat.space_group()
    syms = tuple(tuple(int(v) for v in r) for r in perms)
    product, _ = group_tables(syms)
    tables = fourier_tables(syms)
    assert (tables is not None and tables[0] > 1) == case.endswith("space")
    assert (real_fourier_tables(syms) is not None) == case.endswith("space")
    # space groups: the kernels in the translations' Fourier basis, their custom VJP tested
    assert (kernel_basis(syms, dtype == jnp.complex128) is not None) == case.endswith("space")
    ansatz = make_gcnn(perms, (3, 2, 2), param_dtype=dtype)
    xs = _configs(lat.n_sites, n=3)
    params = ansatz.init(jax.random.PRNGKey(5), xs[0])

    def jacobians(p, x):
        def pair(fn):
            return jax.jacrev(lambda q: jnp.stack([fn(q, x).real, fn(q, x).imag]))(p)

        ref = pair(lambda q, y: _reference_gcnn(q, y, perms, product))
        return pair(ansatz.log_psi), ref, ansatz.log_psi(p, x), _reference_gcnn(p, x, perms,
                                                                                product)

    ours, ref, v_ours, v_ref = jax.jit(jax.vmap(jacobians, (None, 0)))(params, xs)
    np.testing.assert_allclose(v_ours, v_ref, atol=1e-10)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_real_log_psi_sr_update_equals_the_real_view() -> None:
    """A real GCNN declares a real log psi: SR with one Jacobian row per sample gives the same
    gradient and update as the real view's [Re; Im] rows (whose imaginary rows are 0)."""
    import dataclasses

    from nqs.sampling.base import Samples
    from nqs.vmc import apply_estimate, make_estimator

    model = Heisenberg(square(2, pbc=False), marshall_sign=True)
    lat = model.lattice
    ansatz = make_gcnn(lat.point_group(), (3, 2), param_dtype=jnp.float64)
    assert ansatz.real_log_psi
    complex_view = dataclasses.replace(ansatz, real_log_psi=False)
    xs = model.hilbert.all_states().astype(jnp.float64)
    samples = Samples(xs, jnp.full((len(xs),), 1.0 / len(xs)), 0)
    params = ansatz.init(jax.random.PRNGKey(3), xs[0])
    optimizer = sr_optimizer(0.05, 0.01)
    updates = []
    for a in (ansatz, complex_view):
        est = make_estimator(a, model, needs_jacobian=True)(params, samples)
        assert est.jacobian.shape[0] == (len(xs) if a.real_log_psi else 2 * len(xs))
        new, _ = apply_estimate(optimizer, est, optimizer.transformation.init(params), params)
        updates.append((est.grad, new))
    np.testing.assert_allclose(updates[0][0], updates[1][0], atol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(updates[0][1]),
                    jax.tree_util.tree_leaves(updates[1][1]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_selu_equals_jax_selu() -> None:
    """The GCNN's SELU (exp(z) - 1 instead of expm1) has jax.nn.selu's values and derivative,
    at 0 and deep in the negative side too."""
    from nqs.models.gcnn import selu

    z = jnp.asarray([-800.0, -30.0, -1.0, -1e-9, 0.0, 1e-9, 0.5, 40.0])
    np.testing.assert_allclose(selu(z), jax.nn.selu(z), rtol=0, atol=1e-15)
    grad = jax.vmap(jax.grad(selu))(z)
    # absolute: jax's expm1 derivative is expm1(z) + 1, rounded near 1 (1e-16 absolute)
    np.testing.assert_allclose(grad, jax.vmap(jax.grad(jax.nn.selu))(z), rtol=1e-12, atol=1e-15)


def _dot_dtypes(jaxpr) -> set:
    """The operand dtypes of every dot_general in a jaxpr and its sub-jaxprs."""
    found = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.update(str(v.aval.dtype) for v in eqn.invars)
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found |= _dot_dtypes(inner)
    return found


@pytest.mark.parametrize("dtype", [jnp.complex128, jnp.float64])
def test_float32_space_group_gcnn_stays_float32(dtype) -> None:
    """``--dtype float32`` on a space-group GCNN (the layers through the translations'
    characters): every product of log psi and of its per-sample gradient runs in single
    precision (a float64 table would promote it), the values within float32 rounding."""
    from nqs.precision import with_dtype

    lat = square(4)
    ansatz = make_gcnn(lat.space_group(), (4, 4), param_dtype=dtype)
    single = with_dtype(ansatz, "float32")
    xs = _configs(lat.n_sites, n=4)
    params = ansatz.init(jax.random.PRNGKey(2), xs[0])

    def grad_row(p, x):
        return jax.grad(lambda q: jnp.real(single.log_psi(q, x)))(p)

    for fn in (single.log_psi, grad_row):
        dtypes = _dot_dtypes(jax.make_jaxpr(fn)(params, xs[0]).jaxpr)
        assert dtypes and dtypes <= {"float32", "complex64"}, dtypes
    np.testing.assert_allclose(_batched(single)(params, xs), _batched(ansatz)(params, xs),
                               atol=1e-4)
    g32 = jax.vmap(grad_row, (None, 0))(params, xs)
    g64 = jax.vmap(jax.grad(lambda q, x: jnp.real(ansatz.log_psi(q, x))), (None, 0))(params, xs)
    for a, b in zip(jax.tree_util.tree_leaves(g32), jax.tree_util.tree_leaves(g64), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4 * float(jnp.max(jnp.abs(b))) + 1e-6)


@pytest.mark.parametrize("dtype", [jnp.complex128, jnp.float64])
def test_fourier_basis_kernels_give_the_same_state_and_sr_update(dtype) -> None:
    """The kernels in the translations' Fourier basis (an orthonormal change of parameters):
    the same log psi as the group-basis kernel ``kernel_from_hat(kernel_hat)``, and the same
    minSR step once mapped back (SR is invariant under orthonormal reparametrization)."""
    from nqs.models.gcnn import kernel_from_hat
    from nqs.sampling.base import Samples
    from nqs.vmc import apply_estimate, make_estimator

    model = Heisenberg(triangular(3))
    syms = tuple(tuple(int(v) for v in r) for r in model.lattice.space_group())
    fourier = make_gcnn(syms, (3, 2), param_dtype=dtype)
    plain = make_gcnn(syms, (3, 2), param_dtype=dtype, fourier_kernels=False)
    xs = _configs(model.lattice.n_sites, n=24, seed=4)
    p_hat = fourier.init(jax.random.PRNGKey(7), xs[0])
    assert "conv0_kernel_hat" in p_hat["params"]

    def to_plain(p):
        inner = dict(p["params"])
        inner["conv0_kernel"] = kernel_from_hat(inner.pop("conv0_kernel_hat"), syms)
        return {"params": inner}

    p_plain = to_plain(p_hat)
    np.testing.assert_allclose(_batched(fourier)(p_hat, xs), _batched(plain)(p_plain, xs),
                               atol=1e-12)
    samples = Samples(xs, jnp.full((len(xs),), 1.0 / len(xs)), 4)
    optimizer = sr_optimizer(0.05, 1e-3)
    new = []
    for ansatz, params in ((fourier, p_hat), (plain, p_plain)):
        est = make_estimator(ansatz, model, needs_jacobian=True)(params, samples)
        new.append(apply_estimate(optimizer, est, optimizer.transformation.init(params),
                                  params)[0])
    mapped = to_plain(new[0])
    for a, b in zip(jax.tree_util.tree_leaves(mapped), jax.tree_util.tree_leaves(new[1]),
                    strict=True):
        np.testing.assert_allclose(a, b, atol=1e-9)
