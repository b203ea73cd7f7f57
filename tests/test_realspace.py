"""Electrons in real space: Hamiltonian, FermiNet, Metropolis, pretraining and VMC (fast, CPU)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.realspace import (
    ANGSTROM_TO_BOHR,
    make_atoms,
    make_local_energy,
    potential_energy,
)
from nqs.errors import InputError
from nqs.models.ferminet import make_ferminet, make_ferminet_orbitals
from nqs.problems.realspace import run_realspace
from nqs.realspace.mcmc import electron_assignment, init_walkers
from nqs.realspace.pretrain import pretrain
from nqs.sampling.walkers import burn_in, make_energy_sampler, make_mcmc
from nqs.stats import statistics
from nqs.vmc import clip_local_energy

TINY = ((8, 4), (8, 4))
LIH = "Li 0 0 0; H 0 0 3.015"


def hydrogenic(z: float, centre: np.ndarray):
    """Exact one-electron ground state ``log psi = -Z |r - R|`` (unnormalised)."""
    c = jnp.asarray(centre)

    def log_psi(params, r):
        del params
        return -z * jnp.sqrt(jnp.sum((r[0] - c) ** 2))

    return log_psi


# ---------------------------------------------------------------- systems and inputs


def test_atoms_spec_and_units():
    a = make_atoms(LIH)
    assert (a.n_alpha, a.n_beta, a.n_electrons) == (2, 2, 4)
    np.testing.assert_allclose(a.charges, [3.0, 1.0])
    np.testing.assert_allclose(a.nuclear_repulsion(), 3.0 / 3.015)
    b = make_atoms("li 0 0 0; H 0 0 1.5", unit="angstrom")
    np.testing.assert_allclose(b.positions[1, 2], 1.5 * ANGSTROM_TO_BOHR)
    assert b.symbols == ("Li", "H")
    li = make_atoms("Li 0 0 0")  # spin defaults to the lowest
    assert (li.n_alpha, li.n_beta) == (2, 1)
    trip = make_atoms([("O", (0, 0, 0)), ("O", (0, 0, 2.28))], spin=2)
    assert (trip.n_alpha, trip.n_beta) == (9, 7)
    assert (make_atoms("He 0 0 0", charge=1).n_electrons) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"geometry": "Xx 0 0 0"},  # unknown element
        {"geometry": "H 0 0 0; H 0 0 1.4", "spin": 1},  # parity mismatch
        {"geometry": "H 0 0 0; H 0 0 1.4", "spin": 4},  # |2S| > n_electrons
        {"geometry": "H 0 0 0", "charge": 1},  # no electrons
        {"geometry": ""},  # no atoms
        {"geometry": "H 0 0"},  # malformed entry
        {"geometry": "H 0 0 0; H 0 0 0"},  # coinciding nuclei
        {"geometry": "H 0 0 0", "unit": "furlong"},
    ],
)
def test_bad_inputs_raise(kwargs):
    with pytest.raises(InputError):
        make_atoms(**kwargs)


def test_bad_network_and_laplacian_inputs():
    a = make_atoms(LIH)
    with pytest.raises(InputError):
        make_local_energy(lambda p, r: 0.0, a, laplacian="finite-differences")
    with pytest.raises(InputError):
        make_ferminet(a, 2, 2, envelope="gaussian")
    with pytest.raises(InputError):
        make_ferminet(a, 0, 0)
    with pytest.raises(InputError):
        make_ferminet(a, 2, 2, n_determinants=0)
    with pytest.raises(InputError):
        make_mcmc(lambda p, r: 0.0, n_steps=0)


def test_potential_energy_by_hand():
    a = make_atoms("H 0 0 0; H 0 0 1.4")
    r = jnp.array([[0.0, 0.0, 0.5], [0.0, 1.0, 0.0]])
    d = lambda x, y: float(np.linalg.norm(np.asarray(x) - np.asarray(y)))  # noqa: E731
    expected = (
        1.0 / d(r[0], r[1])
        - sum(1.0 / d(ri, R) for ri in r for R in a.positions)
        + 1.0 / 1.4
    )
    np.testing.assert_allclose(float(potential_energy(r, a)), expected, rtol=1e-12)


# ---------------------------------------------------------------- local energy


@pytest.mark.parametrize("laplacian", ["folx", "hessian"])
@pytest.mark.parametrize(("spec", "charge", "z", "exact"), [("H", 0, 1.0, -0.5), ("He", 1, 2.0, -2.0)])
def test_hydrogenic_local_energy_is_exact(laplacian, spec, charge, z, exact):
    centre = np.array([0.3, -0.2, 0.1])
    a = make_atoms([(spec, centre)], charge=charge)
    assert a.n_electrons == 1
    e_loc = jax.jit(jax.vmap(make_local_energy(hydrogenic(z, centre), a, laplacian), (None, 0)))
    r = jax.random.normal(jax.random.PRNGKey(0), (32, 1, 3)) * 2.0 + centre
    np.testing.assert_allclose(np.asarray(e_loc(None, r)), exact, atol=1e-10)


def test_folx_laplacian_equals_hessian_trace():
    a = make_atoms(LIH)
    init, apply = make_ferminet(
        a, a.n_alpha, a.n_beta, layers=TINY, n_determinants=2, envelope="full"
    )
    params = init(jax.random.PRNGKey(1))
    # Perturb the envelopes so the anisotropic path is not the identity.
    params = jax.jit(
        lambda p: jax.tree_util.tree_map(
            lambda x: x * (1.0 + 0.1 * jnp.sin(jnp.arange(x.size).reshape(x.shape))), p
        )
    )(params)
    r = init_walkers(jax.random.PRNGKey(2), a, 3)
    e_f = jax.vmap(make_local_energy(apply, a, "folx"), (None, 0))
    e_h = jax.vmap(make_local_energy(apply, a, "hessian"), (None, 0))
    ef, eh = jax.jit(e_f)(params, r), jax.jit(e_h)(params, r)
    assert np.all(np.isfinite(np.asarray(ef)))
    np.testing.assert_allclose(np.asarray(ef), np.asarray(eh), rtol=1e-9, atol=1e-9)
    # Both against central differences of log|psi| (no automatic differentiation):
    # tr Hess = sum_k (f(x + h e_k) - 2 f(x) + f(x - h e_k)) / h^2,
    # grad_k = (f(x + h e_k) - f(x - h e_k)) / 2h.
    log_abs = jax.jit(jax.vmap(lambda x: apply(params, x.reshape(-1, 3))[1]))
    h = 1e-3
    for ri, e in zip(np.asarray(r), np.asarray(ef), strict=True):
        x = ri.reshape(-1)
        steps = h * np.eye(x.size)
        f = np.asarray(log_abs(jnp.asarray(np.concatenate([x[None], x + steps, x - steps]))))
        f0, fp, fm = f[0], f[1 : 1 + x.size], f[1 + x.size :]
        kinetic = -0.5 * (np.sum(fp - 2 * f0 + fm) / h**2 + np.sum(((fp - fm) / (2 * h)) ** 2))
        # h = 1e-3 leaves a truncation error of a few 1e-6 Ha.
        np.testing.assert_allclose(e, kinetic + float(potential_energy(ri, a)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- FermiNet symmetry


@pytest.mark.parametrize("full_det", [False, True])
def test_ferminet_antisymmetry(full_det):
    a = make_atoms("Li 0 0 0; H 0 0 3.015; H 0 0 -2.0")  # 5 electrons: 3 alpha, 2 beta
    init, apply = make_ferminet(
        a, a.n_alpha, a.n_beta, layers=TINY, n_determinants=3, full_det=full_det
    )
    params = jax.jit(init)(jax.random.PRNGKey(3))  # one program, not op-by-op dispatch
    r = init_walkers(jax.random.PRNGKey(4), a, 1)[0]
    apply = jax.jit(apply)
    sign, log_abs = apply(params, r)

    def swapped(i, j):
        perm = np.arange(r.shape[0])
        perm[[i, j]] = perm[[j, i]]
        return apply(params, r[perm])

    for i, j in [(0, 2), (1, 2), (3, 4)]:  # alpha-alpha, alpha-alpha, beta-beta
        s2, l2 = swapped(i, j)
        assert float(s2) == -float(sign)
        np.testing.assert_allclose(float(l2), float(log_abs), rtol=1e-12)
    # Swapping an alpha and a beta electron is not a symmetry of the block-diagonal form.
    _, l_ab = swapped(0, 3)
    if not full_det:
        assert abs(float(l_ab) - float(log_abs)) > 1e-6
    orbitals = jax.jit(make_ferminet_orbitals(
        a, a.n_alpha, a.n_beta, layers=TINY, n_determinants=3, full_det=full_det
    ))(params, r)
    shapes = [m.shape for m in orbitals]
    assert shapes == ([(3, 5, 5)] if full_det else [(3, 3, 3), (3, 2, 2)])


# ---------------------------------------------------------------- Metropolis


def test_walker_initialisation_balances_spins():
    a = make_atoms(LIH)
    alpha, beta = electron_assignment(a)
    assert sorted(alpha.tolist() + beta.tolist()) == [0, 0, 0, 1]
    assert len(alpha) == 2 and len(beta) == 2
    w = init_walkers(jax.random.PRNGKey(0), a, 7)
    assert w.shape == (7, 4, 3)
    cation = make_atoms(LIH, charge=1)  # 3 electrons: taken from Li
    al, be = electron_assignment(cation)
    assert len(al) == 2 and len(be) == 1 and sorted(al.tolist() + be.tolist()) == [0, 0, 1]


def _chain_statistics(values: np.ndarray):
    """:func:`nqs.stats.statistics` of ``values [n_steps, n_walkers]`` (one chain per walker)."""
    n_walkers = np.shape(values)[1]
    flat = np.asarray(values, dtype=np.float64).reshape(-1)  # row = step * n_walkers + walker
    return statistics(flat, np.full(flat.size, 1.0 / flat.size), n_walkers)


def test_mcmc_hydrogen_mean_radius_and_evaluate():
    a = make_atoms("H 0 0 0")
    log_psi = hydrogenic(1.0, np.zeros(3))
    mcmc_init, mcmc_step = make_mcmc(log_psi, n_steps=10)
    step = jax.jit(mcmc_step)
    state = mcmc_init(None, init_walkers(jax.random.PRNGKey(0), a, 1000), 0.2)
    state, accs = burn_in(jax.random.PRNGKey(1), step, None, state, 20)
    assert abs(float(accs[-1]) - 0.5) < 0.1  # width adapted towards acceptance 0.5
    radii = []
    for k in jax.random.split(jax.random.PRNGKey(2), 60):
        state, _ = step(k, None, state)
        radii.append(np.asarray(jnp.linalg.norm(state.r[:, 0], axis=-1)))
    st = _chain_statistics(np.stack(radii))  # autocorrelation-corrected, as the final evaluation
    mean, err = float(st.mean), float(st.error_of_mean)
    assert err < 0.02
    assert abs(mean - 1.5) < 4 * err + 1e-3, (mean, err)
    # Fixed-parameter evaluation of an exact eigenstate (the driver's final evaluation):
    # E = -1/2 with zero variance.
    sampler = make_energy_sampler(log_psi, make_local_energy(log_psi, a))
    state, e_loc, accs = sampler(jax.random.PRNGKey(3), None, state, 4)
    assert e_loc.shape == (4, 1000)
    st = _chain_statistics(e_loc)
    assert float(st.mean) == pytest.approx(-0.5, abs=1e-10)
    assert float(st.variance) == pytest.approx(0.0, abs=1e-10)
    assert 0.3 < float(np.mean(accs)) < 0.7


def test_walker_sampler_protocol_samples_hydrogen_exactly():
    """The walkers through the ``Sampler`` protocol (``init(key, ansatz, params)``,
    ``sample(key, ansatz, params, state) -> (Samples, state, info)``) draw the hydrogen ground
    state: <r> = 3/2 and <r^2> = 3 bohr^2 (exact moments of |psi|^2 ~ exp(-2r)); the width is
    adapted between calls; ``sample`` is refresh + ``move`` (the same walk, bit for bit)."""
    from nqs.sampling import WalkerSampler

    a = make_atoms("H 0 0 0")
    log_psi = hydrogenic(1.0, np.zeros(3))
    walkers = WalkerSampler(n_steps=10, start=lambda k: init_walkers(k, a, 1000))
    assert not walkers.is_exact
    state = walkers.init(jax.random.PRNGKey(0), log_psi, None)
    sample = jax.jit(lambda k, mc: walkers.sample(k, log_psi, None, mc))
    for k in jax.random.split(jax.random.PRNGKey(1), 20):
        samples, state, info = sample(k, state)
    assert abs(float(info["acceptance"]) - 0.5) < 0.1
    assert samples.n_chains == 1000 and samples.x.shape == (1000, 1, 3)
    np.testing.assert_allclose(np.asarray(samples.weights), 1e-3)
    moved, _ = jax.jit(lambda k, mc: walkers.move(k, log_psi, None, mc))(jax.random.PRNGKey(5),
                                                                      state)
    again, state2, _ = sample(jax.random.PRNGKey(5), state)
    np.testing.assert_array_equal(np.asarray(again.x), np.asarray(moved.r))
    r1, r2 = [], []
    for k in jax.random.split(jax.random.PRNGKey(2), 60):
        samples, state, _ = sample(k, state)
        r = np.asarray(jnp.linalg.norm(samples.x[:, 0], axis=-1))
        r1.append(r)
        r2.append(r**2)
    for values, exact in ((r1, 1.5), (r2, 3.0)):
        st = _chain_statistics(np.stack(values))
        assert abs(float(st.mean) - exact) < 4 * float(st.error_of_mean) + 1e-3
    with pytest.raises(InputError):
        WalkerSampler().init(jax.random.PRNGKey(0), log_psi, None)  # no start given


def test_clipping():
    e = jnp.concatenate([-1.0 + 0.1 * jnp.sin(jnp.arange(99.0)), jnp.array([100.0])])
    c = clip_local_energy(e, 5.0)
    assert float(c[-1]) < 10.0
    np.testing.assert_array_equal(np.asarray(c[:-1]), np.asarray(e[:-1]))
    assert np.array_equal(np.asarray(clip_local_energy(e, 0.0)), np.asarray(e))


def test_shared_estimator_clipped_gradient_by_hand():
    """The estimator every engine shares, as real space uses it (``real=True``, log|psi| of a
    hydrogenic orbital with a free exponent and centre, clipping on): its gradient equals
    ``2/n sum_w (E_clip,w - mean E_clip) (O_w - mean O)`` from the analytic derivatives, with
    and without the Jacobian; J is ``[n, P]``; the statistics keep the unclipped energies."""
    from nqs.sampling.base import Samples
    from nqs.vmc import make_energy_estimator

    def log_psi(params, r):
        return -params["z"] * jnp.sqrt(jnp.sum((r[0] - params["c"]) ** 2))

    def local_energy(params, r):  # any per-walker function of r; one outlier below
        return -0.5 * params["z"] ** 2 + jnp.sum(r[0] ** 2)

    params = {"z": jnp.asarray(1.3), "c": jnp.asarray([0.1, -0.2, 0.3])}
    r = jax.random.normal(jax.random.PRNGKey(3), (12, 1, 3))
    r = r.at[5].set(jnp.asarray([[40.0, 0.0, 0.0]]))  # E_loc ~ 1600: clipped
    samples = Samples(r, jnp.full(12, 1.0 / 12), 12)
    # by hand: d/dz = -|r - c|, d/dc = z (r - c) / |r - c| (ravel order: c then z)
    d = np.asarray(r[:, 0]) - np.asarray(params["c"])
    dist = np.linalg.norm(d, axis=1)
    o = np.concatenate([1.3 * d / dist[:, None], -dist[:, None]], axis=1)  # [n, 4]
    e = np.asarray(jax.vmap(local_energy, (None, 0))(params, r))
    e_clip = np.asarray(clip_local_energy(jnp.asarray(e), 5.0))
    assert e_clip[5] < e[5] / 2 and np.array_equal(np.delete(e_clip, 5), np.delete(e, 5))
    expected = 2.0 / 12 * (o - o.mean(0)).T @ (e_clip - e_clip.mean())
    for needs_jacobian in (False, True):
        est = make_energy_estimator(log_psi, local_energy, needs_jacobian=needs_jacobian,
                                    real=True, clip_scale=5.0)(params, samples)
        np.testing.assert_allclose(np.asarray(est.grad), expected, rtol=1e-12, atol=1e-14)
        assert float(est.stats.mean) == pytest.approx(e.mean(), rel=1e-14)
    assert est.jacobian.shape == (12, 4) and est.residuals.shape == (12,)
    np.testing.assert_allclose(np.asarray(est.jacobian), (o - o.mean(0)) / np.sqrt(12),
                               rtol=1e-12, atol=1e-14)
    # without clipping the outlier dominates: a different gradient
    plain = make_energy_estimator(log_psi, local_energy, needs_jacobian=False, real=True)
    assert np.max(np.abs(np.asarray(plain(params, samples).grad) - expected)) > 1.0


# ---------------------------------------------------------------- pretraining and VMC


def _tiny_lih(n_walkers: int):
    """LiH with a tiny FermiNet (2 determinants): ``(atoms, apply, orbitals, params, walkers)``."""
    a = make_atoms(LIH)
    kw = dict(layers=TINY, n_determinants=2)
    init, apply = make_ferminet(a, a.n_alpha, a.n_beta, **kw)
    orbitals = make_ferminet_orbitals(a, a.n_alpha, a.n_beta, **kw)
    return (a, apply, orbitals, init(jax.random.PRNGKey(5)),
            init_walkers(jax.random.PRNGKey(6), a, n_walkers))


def test_pretraining_loss_decreases():
    a, apply, orbitals, params, walkers = _tiny_lih(64)
    res = pretrain(
        jax.random.PRNGKey(7),
        params,
        a,
        orbitals,
        apply,
        walkers,
        n_steps=40,
        basis="sto-3g",
        learning_rate=1e-2,
    )
    assert res.losses.shape == (40,)
    assert np.all(np.isfinite(res.losses))
    assert res.losses[-10:].mean() < 0.5 * res.losses[:5].mean()
    # the Hartree-Fock the orbitals are fitted to: PySCF's RHF/STO-3G of the same molecule
    from pyscf import gto, scf

    mol = gto.M(atom=LIH, basis="sto-3g", unit="bohr", verbose=0)
    assert res.hf.energy == pytest.approx(scf.RHF(mol).kernel(), abs=1e-6)
    assert res.hf.energy == pytest.approx(-7.86, abs=0.01)  # RHF/STO-3G at 3.015 bohr


def test_pretraining_in_walker_chunks_is_the_same_fit():
    """``chunk_size`` (the run's, on a CPU chosen by :func:`nqs.walker_driver.walker_chunk_size`)
    changes how the Metropolis moves evaluate the walkers, not the fit: same losses, walkers
    and parameters to rounding."""
    a, apply, orbitals, params, walkers = _tiny_lih(24)
    runs = [pretrain(jax.random.PRNGKey(7), params, a, orbitals, apply, walkers, n_steps=5,
                     basis="sto-3g", learning_rate=1e-2, chunk_size=chunk)
            for chunk in (None, 8)]
    np.testing.assert_allclose(runs[1].losses, runs[0].losses, rtol=1e-10)
    np.testing.assert_allclose(runs[1].walkers, runs[0].walkers, atol=1e-10)
    for x, y in zip(jax.tree_util.tree_leaves(runs[1].params),
                    jax.tree_util.tree_leaves(runs[0].params), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-10)


def test_auto_walker_chunk_on_a_cpu_fits_the_cache_budget():
    """``--chunk-size auto`` on a CPU: blocks of at most ``CPU_CHUNK_BYTES`` of local-energy
    intermediates (a power of two), no chunking when all walkers fit; explicit sizes kept."""
    from nqs.parallel import bytes_per_sample, make_mesh
    from nqs.walker_driver import CPU_CHUNK_BYTES, walker_chunk_size

    assert jax.default_backend() == "cpu"
    mesh = make_mesh(jax.devices()[:1])
    params = {"w": jnp.ones(3)}

    def heavy(p, r):  # ~ 2 MB of intermediates a walker (a sort materializes its input)
        m = jnp.outer(r.ravel(), jnp.arange(40_000.0)) * p["w"][0]
        return jnp.sum(jnp.sort(m, axis=1))

    def light(p, r):
        return jnp.sum(r**2) * p["w"][0]

    walkers = jnp.ones((256, 2, 3))
    per = bytes_per_sample(heavy, params, walkers[0])
    chunk = walker_chunk_size("auto", heavy, params, walkers, mesh)
    assert chunk is not None and chunk & (chunk - 1) == 0
    assert chunk * per <= CPU_CHUNK_BYTES < 2 * chunk * per
    assert walker_chunk_size("auto", light, params, walkers, mesh) is None
    assert walker_chunk_size(None, heavy, params, walkers, mesh) is None
    assert walker_chunk_size(32, heavy, params, walkers, mesh) == 32


@pytest.mark.parametrize("full_det", [False, True])
def test_pretraining_loss_values_and_own_derivatives(full_det):
    """The pretraining loss of orbitals ``c Phi`` (HF's, scaled by ``c``) is ``(c - 1)^2`` times
    the mean of ``Phi^2 + w m_i |grad_i Phi|^2`` over the elements, the derivatives of row ``i``
    taken with respect to electron ``i`` only: checked against PySCF's orbitals and central
    finite differences of them (LiH: two alpha electrons, rows offset in the beta block), with
    no mask (``m = 1``) and with the cusp mask ``m_i = prod_I (1 - exp(-(Z_I r_iI)^2))``."""
    from nqs.realspace.pretrain import (
        hf_orbitals_numpy,
        make_cusp_mask,
        make_hf_orbitals,
        make_orbital_loss,
        run_hartree_fock,
    )

    a = make_atoms(LIH)
    hf = run_hartree_fock(a, "sto-3g")
    hf_fn = make_hf_orbitals(hf)
    n = a.n_electrons

    def scaled(c, r):  # a "network" of two determinants, both c times HF's orbitals
        alpha, beta = hf_fn(r)
        if full_det:
            z = jnp.zeros((alpha.shape[0], beta.shape[1]))
            m = jnp.block([[alpha, z], [z.T, beta]])
            return [jnp.stack([c * m, c * m])]
        return [jnp.stack([c * alpha, c * alpha]), jnp.stack([c * beta, c * beta])]

    r = np.asarray(init_walkers(jax.random.PRNGKey(0), a, 3))
    w, c, h = 0.7, 1.3, 1e-5
    loss = make_orbital_loss(scaled, hf_fn, full_det, w)(c, jnp.asarray(r))
    masked = make_orbital_loss(scaled, hf_fn, full_det, w, make_cusp_mask(a))(c, jnp.asarray(r))
    values = sq_grad = sq_masked = size = 0.0
    for x in r:
        dist = np.linalg.norm(x[:, None] - a.positions[None], axis=-1)
        m_el = np.prod(1 - np.exp(-(dist * a.charges) ** 2), axis=-1)
        mats = hf_orbitals_numpy(hf, x)
        rows = [0, a.n_alpha]
        for b, m in enumerate(mats):
            values += np.sum(m**2)
            size += (n if full_det else m.shape[1]) * m.shape[0]
            for i in range(m.shape[0]):
                for d in range(3):
                    up, down = x.copy(), x.copy()
                    up[rows[b] + i, d] += h
                    down[rows[b] + i, d] -= h
                    fd = (hf_orbitals_numpy(hf, up)[b][i] - hf_orbitals_numpy(hf, down)[b][i])
                    sq_grad += np.sum((fd / (2 * h)) ** 2)
                    sq_masked += m_el[rows[b] + i] * np.sum((fd / (2 * h)) ** 2)
    expected = (c - 1) ** 2 * (values + w * sq_grad) / size  # per determinant: K cancels
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    expected = (c - 1) ** 2 * (values + w * sq_masked) / size
    assert float(masked) == pytest.approx(expected, rel=1e-6)
    assert sq_masked < 0.9 * sq_grad  # the mask matters here


@pytest.mark.slow
def test_helium_adam_below_hartree_fock():
    """Tiny FermiNet + Adam on He (the driver): below the HF limit (-2.8617) within ~150 steps."""
    res = run_realspace(make_atoms("He 0 0 0"), layers=((16, 4), (16, 4)), n_determinants=2,
                        optimizer="adam", learning_rate=0.02, lr_delay=100.0, n_steps=150,
                        n_walkers=128, mcmc_steps=10, eval_steps=2, seed=0, progress=False,
                        echo=lambda _: None)
    energy = np.array([r["energy"] for r in res.history])
    acceptance = np.array([r["acceptance"] for r in res.history])
    assert energy.size == 150 and np.all(np.isfinite(energy))
    last = energy[-50:]
    assert last.mean() < -2.8617, last.mean()  # the Hartree-Fock limit (about -2.886 here)
    assert last.mean() > -2.903724377 - 0.02  # variational (up to noise)
    assert 0.4 < acceptance[-50:].mean() < 0.6


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside kfac-jax
def test_kfac_smoke():
    """KFAC (kfac-jax, through the driver) runs a few steps on He and lowers the energy of a
    fresh network."""
    res = run_realspace(make_atoms("He 0 0 0"), layers=((8, 4),), n_determinants=1,
                        optimizer="kfac", learning_rate=0.1, lr_delay=100.0, n_steps=30,
                        n_walkers=64, mcmc_steps=5, eval_steps=2, seed=0, progress=False,
                        echo=lambda _: None)
    energy = np.array([r["energy"] for r in res.history])
    assert energy.size == 30 and np.all(np.isfinite(energy))
    assert energy[-10:].mean() < energy[:5].mean()

