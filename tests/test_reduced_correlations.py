"""Symmetry-reduced spin correlations and S(q) (nqs.reduced) against exact all-pairs sums."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.pauli import pauli_components
from hamiltonians.spin import make_spin_model
from hamiltonians.spin_observables import pair_indices, spin_correlations, spin_dot, structure_factors
from nqs.models.rbm import make_rbm
from nqs.optim.flat import real_flat
from nqs.problems import spin_ansatz, spin_sampler
from nqs.reduced import find_reduction, make_reduced_values, reduction_for
from nqs.state import VariationalState, bind_operator, estimator_name


def random_state(model, ansatz, seed=0, scale=0.3):
    """Parameters far from the (nearly uniform) initial ones, so that the correlations vary."""
    params = ansatz.init(jax.random.PRNGKey(seed), jnp.ones(model.hilbert.n_sites))
    flat, unflatten = real_flat(params)
    return unflatten(scale * jax.random.normal(jax.random.PRNGKey(seed + 1), flat.shape))


def exact_reduced(operator, ansatz, params, reduction, g):
    """``sum_x |psi(x)|^2 O_loc(x; g) / sum_x |psi(x)|^2`` of the reduced local values."""
    states = jnp.asarray(operator.hilbert.all_states(), dtype=jnp.float64)
    lp = jax.vmap(ansatz.log_psi, (None, 0))(params, states)
    p = np.exp(2 * (np.real(lp) - np.real(lp).max()))
    fn = make_reduced_values(operator, ansatz, reduction)
    values = np.asarray(jax.jit(jax.vmap(fn, (None, 0, None)))(params, states, g))
    return (p / p.sum()) @ values


SQUARE = make_spin_model("heisenberg", "square", 4, marshall_sign=True)  # S^z = 0 sector
SUB = np.asarray(SQUARE.lattice.sublattice)


@pytest.fixture(scope="module", params=["rbm-symm", "gcnn"])
def symmetric(request):
    """A translation-symmetric ansatz on the 4x4 torus at random parameters, with the exact
    all-pairs correlations and S(q) (exact summation over the sector)."""
    ansatz = spin_ansatz(SQUARE, request.param, 1.0, features=2, layers=1)
    params = random_state(SQUARE, ansatz, scale=0.15)  # varied correlations, chains that mix
    state = VariationalState(ansatz, params, spin_sampler(SQUARE, "exact", 1, 1),
                             marshall_sublattice=SUB)
    corr = spin_correlations(SQUARE.lattice)
    exact = np.asarray(state.expect(corr).mean)
    sq = bind_operator(structure_factors(SQUARE.lattice), SQUARE.hilbert, SUB)
    exact_sq = sq.offset + exact @ sq.matrix  # S(q) by its definition from the pairs
    return ansatz, params, {"pairs": (corr, exact), "S(q)": (structure_factors(SQUARE.lattice),
                                                            exact_sq)}


def test_reduced_equals_all_pairs_by_exact_summation(symmetric):
    ansatz, params, cases = symmetric
    for name, (op, exact) in cases.items():
        assert np.ptp(np.real(exact)) > 0.05  # the components differ: not a trivial check
        bound = bind_operator(op, SQUARE.hilbert, SUB)
        reduction = find_reduction(bound, ansatz)
        assert reduction is not None and reduction.group_size == 16
        assert reduction.n_classes == 9  # displacements +-d of the 4x4 torus
        for g in (0, 5, 11):
            red = exact_reduced(bound, ansatz, params, reduction, g)
            if name == "pairs":  # orbits -> pairs (S(q) is per momentum already)
                red = red[reduction.classes]
            np.testing.assert_allclose(red, exact, atol=1e-10, rtol=0)


def test_reduced_sampled_within_error_bars(symmetric):
    ansatz, params, cases = symmetric
    state = VariationalState(ansatz, params, spin_sampler(SQUARE, "mcmc", 4096, 16),
                             marshall_sublattice=SUB, seed=3)
    for op, exact in cases.values():
        assert state.estimator(op) == "symmetry-reduced: 16 permutations, 9 orbits"
        stats = state.expect(op)
        assert np.nanmax(np.asarray(stats.r_hat)) < 1.1  # converged chains: a meaningful check
        err = np.asarray(stats.error_of_mean)
        z = np.abs(np.real(np.asarray(stats.mean)) - np.real(exact))
        fine = err > 0  # S(q = 0) is exactly 0 in the S^z = 0 sector: no error bar
        assert np.all(z[fine] < 3 * err[fine]), np.max(z[fine] / err[fine])
        assert np.all(z[~fine] < 1e-10)


def test_reduction_is_wrong_for_a_state_without_the_symmetry():
    """The same reduction forced on a plain RBM (not translation invariant) misses the exact
    correlations: the equality above is a property of the symmetric state."""
    model = make_spin_model("heisenberg", "chain", 10, marshall_sign=True)
    ansatz = make_rbm(10, 1.0)
    params = random_state(model, ansatz)
    sub = np.asarray(model.lattice.sublattice)
    op = spin_correlations(model.lattice)
    bound = bind_operator(op, model.hilbert, sub)
    reduction = reduction_for(bound, model.lattice.translations())
    exact = np.asarray(VariationalState(ansatz, params, spin_sampler(model, "exact", 1, 1),
                                        marshall_sublattice=sub).expect(op).mean)
    red = exact_reduced(bound, ansatz, params, reduction, 3)[reduction.classes]
    assert np.max(np.abs(red - exact)) > 1e-2


def test_all_pairs_estimator_without_declared_symmetry():
    model = SQUARE
    sub = SUB
    op = bind_operator(spin_correlations(model.lattice), model.hilbert, sub)
    plain = make_rbm(16, 1.0)
    assert plain.symmetries is None
    assert find_reduction(op, plain) is None
    assert estimator_name(plain, op) == "all components"
    symm = spin_ansatz(model, "rbm-symm", 1.0)
    assert estimator_name(symm, op) == "symmetry-reduced: 16 permutations, 9 orbits"
    assert estimator_name(symm, op, exact=True) == "exact sum"
    # sampled: the plain RBM's estimate is the all-pairs one, pair by pair
    params = random_state(model, plain)
    sampler = spin_sampler(model, "mcmc", 256, 8)
    state = VariationalState(plain, params, sampler, marshall_sublattice=sub)
    stats = state.expect(op)
    assert len(np.unique(np.round(np.asarray(stats.mean.real), 12))) > 9  # not orbit averages
    assert state.estimator(op) == "all components"


@pytest.mark.parametrize("kind", ["rbm-symm", "gcnn", "projected"])
def test_declared_symmetries_hold(kind):
    """|psi(x . g)| = |psi(x)| for every declared permutation (x . g = x[perm_g])."""
    model = make_spin_model("heisenberg", "chain", 6)
    if kind == "projected":
        ansatz = spin_ansatz(model, "rbm", 1.0, project=True)
    else:
        ansatz = spin_ansatz(model, kind, 1.0, features=2, layers=1)
    perms = np.asarray(ansatz.symmetries)
    assert len(perms) == 6
    params = random_state(model, ansatz)
    x = jnp.asarray(model.hilbert.all_states(), dtype=jnp.float64)[::7]
    lp = jax.vmap(ansatz.log_psi, (None, 0))
    base = np.real(np.asarray(lp(params, x)))
    for perm in perms:
        np.testing.assert_allclose(np.real(np.asarray(lp(params, x[:, perm]))), base,
                                   atol=1e-10)
    assert make_rbm(6, 1.0).symmetries is None and ansatz.without_fast_path().symmetries is not None


def test_component_images():
    model = make_spin_model("heisenberg", "chain", 6, marshall_sign=True)
    corr = spin_correlations(model.hilbert)
    shift = model.lattice.translations()[1]
    images = corr.component_images(np.stack([np.arange(6), shift]))
    np.testing.assert_array_equal(images[0], np.arange(15))
    pairs = {tuple(sorted(p)): k for k, p in enumerate(pair_indices(6))}
    for k, (i, j) in enumerate(pair_indices(6)):  # S_i.S_j -> S_shift(i).S_shift(j)
        assert images[1, k] == pairs[tuple(sorted((shift[i], shift[j])))]
    rotated = corr.marshall_rotated(model.lattice.sublattice)
    assert rotated.component_images(shift[None]) is not None  # the shift swaps sublattices
    swap = np.array([1, 0, 2, 3, 4, 5])  # mixes the sublattices: rotated pairs change form
    assert corr.component_images(swap[None]) is not None
    assert rotated.component_images(swap[None]) is None
    nearest = pauli_components([spin_dot(i, (i + 1) % 6) for i in range(6)], 6)
    assert nearest.component_images(shift[None]) is not None
    assert nearest.component_images(np.array([[0, 2, 1, 3, 4, 5]])) is None  # not closed


def test_run_vmc_logs_the_estimator():
    from nqs.driver import run_vmc
    from nqs.optim import sr_optimizer

    model = make_spin_model("heisenberg", "chain", 6, marshall_sign=True)
    result = run_vmc(spin_ansatz(model, "rbm-symm", 1.0), model,
                     spin_sampler(model, "mcmc", 128, 8), sr_optimizer(0.05, 1e-2), 2,
                     progress=False, observe_every=1,
                     observables={"corr": spin_correlations(model.lattice)})
    rec = next(r["observables"]["corr"] for r in result.history if "observables" in r)
    assert rec["estimator"] == "symmetry-reduced: 6 permutations, 3 orbits"


@pytest.mark.parametrize("lattice,group", [("honeycomb", "translations"),
                                           ("chain", "space-group")])
def test_reduced_exact_on_a_lattice_with_a_basis_and_the_space_group(lattice, group):
    """Two sublattices per cell (honeycomb 2x2, 4 translations: the orbits of pairs are not
    labelled by one displacement) and translations with reflections (10-site chain, 20
    permutations): still the exact all-pairs correlations for every group element."""
    model = make_spin_model("heisenberg", lattice, 2 if lattice == "honeycomb" else 10,
                            marshall_sign=True)
    ansatz = spin_ansatz(model, "rbm-symm", 1.0, symmetries=group)
    params = random_state(model, ansatz)
    sub = np.asarray(model.lattice.sublattice)
    op = spin_correlations(model.lattice)
    exact = np.asarray(VariationalState(ansatz, params, spin_sampler(model, "exact", 1, 1),
                                        marshall_sublattice=sub).expect(op).mean)
    bound = bind_operator(op, model.hilbert, sub)
    reduction = find_reduction(bound, ansatz)
    assert reduction.group_size == (4 if lattice == "honeycomb" else 20)
    assert np.ptp(np.real(exact)) > 0.05
    for g in range(reduction.group_size):
        red = exact_reduced(bound, ansatz, params, reduction, g)[reduction.classes]
        np.testing.assert_allclose(red, exact, atol=1e-10, rtol=0)
