"""Autoregressive molecular states: normalization, exact sampling of distinct configurations,
the unique-draw estimator against exact summation, gradients against finite differences, and the
automatic choice of method."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from nqs.errors import InputError
from nqs.exact import configuration_keys
from nqs.hilbert import FermionHilbert
from nqs.models.autoregressive import make_autoregressive, sector_mask
from nqs.sampling.autoregressive import AutoregressiveSampler, multinomial_split
from nqs.sampling.base import UNIQUE_DRAWS, Samples

HILBERT = FermionHilbert(5, 2, 3)


def _random_params(ansatz, hilbert, seed=0, scale=0.5):
    """Parameters with every leaf perturbed (the HF-centred init has zero output weights);
    one jitted program, not flax's init op by op."""

    def make(key):
        params = ansatz.init(key, jnp.asarray(hilbert.hartree_fock_state()))
        leaves, tree = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
        return jax.tree_util.tree_unflatten(
            tree, [leaf + scale * jax.random.normal(k, leaf.shape)
                   for leaf, k in zip(leaves, keys, strict=True)])

    return jax.jit(make)(jax.random.PRNGKey(seed))


def _exact_probabilities(ansatz, params, hilbert):
    states = np.asarray(hilbert.all_states())
    log_psi = jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))(params, jnp.asarray(states))
    return states, np.exp(2 * np.real(np.asarray(log_psi)))


@pytest.mark.parametrize("backbone,phase", [("made", "mlp"), ("transformer", "mlp"),
                                            ("made", "conditional")])
def test_normalized_over_the_sector(backbone, phase):
    ansatz = make_autoregressive(HILBERT, backbone, hidden=(16,), d_model=8, n_heads=2,
                                 n_layers=1, phase_hidden=(8,), phase=phase)
    params = _random_params(ansatz, HILBERT)
    _, p = _exact_probabilities(ansatz, params, HILBERT)
    assert abs(p.sum() - 1.0) < 1e-12
    # a determinant outside the sector has probability zero
    outside = jnp.asarray(np.r_[np.ones(5), np.zeros(5)])
    assert np.exp(2 * np.real(jax.jit(ansatz.log_psi)(params, outside))) == 0.0


@pytest.mark.parametrize("backbone", ["made", "transformer"])
def test_conditionals_depend_on_earlier_orbitals_only(backbone):
    ansatz = make_autoregressive(HILBERT, backbone, hidden=(16,), d_model=8, n_heads=2,
                                 n_layers=1, phase_hidden=(8,))
    params = _random_params(ansatz, HILBERT)
    from nqs.models.autoregressive import AutoregressiveState

    def log_probs(tokens):
        return ansatz.module.apply(params, tokens,
                                   method=AutoregressiveState.conditional_log_probs)

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 5), rng.integers(0, 4, 5)
    for k in range(5):
        mixed = np.r_[a[:k], b[k:]]  # same prefix as a, different from orbital k on
        np.testing.assert_allclose(log_probs(jnp.asarray(a))[k], log_probs(jnp.asarray(mixed))[k],
                                   atol=1e-12)
    # the sector mask forbids exactly the tokens that cannot be completed
    mask = np.asarray(sector_mask(jnp.asarray([3, 3, 0, 0, 0]), 2, 3))
    assert mask[2].tolist() == [True, False, True, False]  # alpha full; beta may wait
    assert mask[4].tolist() == [False, False, True, False]  # last orbital: beta must come


def test_multinomial_split_conserves_counts():
    counts = jnp.asarray([0.0, 1.0, 10.0, 1e8])
    probs = jnp.asarray([[0.25] * 4, [0.5, 0.5, 0, 0], [0, 0, 0, 1.0], [0.1, 0.2, 0.3, 0.4]])
    out = np.asarray(multinomial_split(jax.random.PRNGKey(0), counts, probs))
    np.testing.assert_array_equal(out.sum(1), np.asarray(counts))
    assert out[1, 2:].sum() == 0 and out[2, 3] == 10
    np.testing.assert_allclose(out[3] / 1e8, [0.1, 0.2, 0.3, 0.4], atol=2e-4)


def test_sampler_draws_match_born_probabilities():
    """Distinct draws with counts: right sector, counts summing to n_draws, and frequencies
    matching |psi|^2 (chi-square over the whole space)."""
    ansatz = make_autoregressive(HILBERT, "made", hidden=(16,), phase_hidden=(8,), hf_logit=1.0)
    params = _random_params(ansatz, HILBERT, scale=0.3)
    states, p_exact = _exact_probabilities(ansatz, params, HILBERT)
    sampler = AutoregressiveSampler(HILBERT, n_samples=200_000, max_unique=128)
    draw = jax.jit(lambda key, s: sampler.sample(key, ansatz, params, s))
    samples, _, info = draw(jax.random.PRNGKey(1), sampler.init(None, ansatz, params))
    n, n_draws = int(info["n_unique"]), float(info["n_draws"])
    assert samples.n_chains == UNIQUE_DRAWS and n_draws == 200_000
    x = np.asarray(samples.x[:n])
    assert np.all(x[:, :5].sum(1) == 2) and np.all(x[:, 5:].sum(1) == 3)
    counts = np.asarray(samples.weights) * n_draws
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
    assert abs(counts.sum() - n_draws) < 1e-6 and np.all(counts[n:] == 0)
    index = {k: i for i, k in enumerate(configuration_keys(states, HILBERT))}
    observed = np.zeros(len(states))
    for key, c in zip(configuration_keys(x, HILBERT), counts[:n], strict=True):
        observed[index[key]] += c
    expected = p_exact * n_draws
    chi2 = np.sum((observed - expected) ** 2 / expected)
    dof = len(states) - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof), chi2  # ~5 sigma of the chi-square distribution


def test_sampler_halves_the_draws_when_the_buffer_is_full():
    ansatz = make_autoregressive(HILBERT, "made", hidden=(16,), phase_hidden=(8,), hf_logit=0.0)
    params = _random_params(ansatz, HILBERT, scale=0.1)
    sampler = AutoregressiveSampler(HILBERT, n_samples=100_000, max_unique=16)
    samples, state, info = jax.jit(lambda key, s: sampler.sample(key, ansatz, params, s))(
        jax.random.PRNGKey(0), sampler.init(None, ansatz, params))
    assert int(info["n_unique"]) <= 16 and float(info["n_draws"]) < 100_000
    assert abs(float(samples.weights.sum()) - 1.0) < 1e-12
    assert float(state) == float(info["n_draws"])  # buffer more than half full: no growth


def _tempered_log_q(ansatz, params, states, power):
    """log Q(x) of the tempered autoregressive distribution, from the conditionals directly."""
    from nqs.models.autoregressive import AutoregressiveState, occupations_to_tokens

    def one(x):
        tokens = occupations_to_tokens(x, HILBERT.n_orbitals)
        logp = ansatz.module.apply(params, tokens,
                                   method=AutoregressiveState.conditional_log_probs)
        log_q = jax.nn.log_softmax(power * logp, axis=-1)
        return jnp.sum(jnp.take_along_axis(log_q, tokens[:, None], axis=1))

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(states)))


def test_tempered_draws_follow_q_and_carry_exact_weights():
    """power q < 1: counts match the tempered distribution Q (chi-square), and each distinct
    determinant's weight is its count times p / Q, normalized (p from log psi, Q from the
    conditionals: independent of the walk's own sums)."""
    ansatz = make_autoregressive(HILBERT, "made", hidden=(16,), phase_hidden=(8,), hf_logit=2.0)
    params = _random_params(ansatz, HILBERT, scale=0.3)
    states, p_exact = _exact_probabilities(ansatz, params, HILBERT)
    q_exact = np.exp(_tempered_log_q(ansatz, params, states, 0.4))
    assert abs(q_exact.sum() - 1.0) < 1e-10
    sampler = AutoregressiveSampler(HILBERT, n_samples=200_000, max_unique=128, power=0.4)
    samples, _, info = jax.jit(lambda key, s: sampler.sample(key, ansatz, params, s))(
        jax.random.PRNGKey(3), sampler.init(None, ansatz, params))
    n, n_draws = int(info["n_unique"]), float(info["n_draws"])
    assert n_draws == 200_000
    index = {k: i for i, k in enumerate(configuration_keys(states, HILBERT))}
    rows = [index[k] for k in configuration_keys(np.asarray(samples.x[:n]), HILBERT)]
    # the counts, recovered from the weights and the exact ratio p / Q
    ratio = p_exact[rows] / q_exact[rows]
    w = np.asarray(samples.weights[:n])
    counts = w / ratio
    counts *= n_draws / counts.sum()
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)  # whole draws: exact ratios
    observed = np.zeros(len(states))
    observed[rows] = np.round(counts)
    expected = q_exact * n_draws
    chi2 = np.sum((observed - expected) ** 2 / expected)
    dof = len(states) - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof), chi2
    # tempering reaches further: more distinct determinants than plain draws of the same count
    def distinct(power):
        few = AutoregressiveSampler(HILBERT, n_samples=300, max_unique=128, power=power)
        _, _, few_info = jax.jit(lambda key, s: few.sample(key, ansatz, params, s))(
            jax.random.PRNGKey(5), few.init(None, ansatz, params))
        return int(few_info["n_unique"])

    assert distinct(0.4) > distinct(1.0)
    # per-row draws: each row's weight stands for sum_y c_y r_y / r_x plain draws
    c = np.round(counts)
    np.testing.assert_allclose(np.asarray(samples.n_draws[:n]), (c @ ratio) / ratio, rtol=1e-8)


def test_tempered_sampler_rejects_a_power_outside_0_1():
    for power in (0.0, 1.5, -1.0):
        with pytest.raises(InputError, match="sampling power"):
            AutoregressiveSampler(HILBERT, power=power)


@pytest.fixture(scope="module")
def lih():
    from hamiltonians.molecule import compute_integrals, from_preset
    from hamiltonians.second_quantized import MolecularHamiltonian

    integrals, _ = compute_integrals(from_preset("LiH", basis="sto-3g"))
    return MolecularHamiltonian(integrals)


def test_unique_estimator_converges_to_exact_energy(lih):
    """E from N exact draws -> exact-summation energy, within the stated error bar, with an
    error bar shrinking like 1/sqrt(N) (LiH has 225 determinants: 256 rows hold them all)."""
    from nqs.exact import exact_data, exact_energy_fn, sparse_hamiltonian
    from nqs.vmc import make_estimator

    ansatz = make_autoregressive(lih.hilbert, "made", hidden=(16,), phase_hidden=(8,),
                                 hf_logit=2.0)
    params = _random_params(ansatz, lih.hilbert, scale=0.05)
    e_exact, _ = jax.jit(exact_energy_fn(ansatz))(params, exact_data(sparse_hamiltonian(lih)))
    estimator = make_estimator(ansatz, lih, needs_jacobian=False)
    estimate = jax.jit(lambda p, x, w, n: estimator(p, Samples(x, w, UNIQUE_DRAWS, n)))
    errors = []
    sampler = AutoregressiveSampler(lih.hilbert, n_samples=100_000, max_unique=256)
    draw = jax.jit(lambda key, state: sampler.sample(key, ansatz, params, state))
    for n_draws in (1_000, 100_000):  # the sampler state is the number of draws of a call
        samples, _, info = draw(jax.random.PRNGKey(n_draws), jnp.asarray(float(n_draws)))
        assert float(info["n_draws"]) == n_draws
        est = estimate(params, samples.x, samples.weights, samples.n_draws)
        err = float(est.stats.error_of_mean)
        assert abs(float(np.real(est.stats.mean)) - float(np.real(e_exact))) < 5 * err
        errors.append(err)
    assert 5 < errors[0] / errors[1] < 20  # sqrt(100) = 10
    # tempered draws (power 0.5), reweighted: the same energy within their (Kish) error bar
    tempered = AutoregressiveSampler(lih.hilbert, n_samples=100_000, max_unique=256, power=0.5)
    samples, _, _ = jax.jit(lambda key, state: tempered.sample(key, ansatz, params, state))(
        jax.random.PRNGKey(7), jnp.asarray(100_000.0))
    est = estimate(params, samples.x, samples.weights, samples.n_draws)
    err = float(est.stats.error_of_mean)
    assert 0 < err < 5 * errors[1]
    assert abs(float(np.real(est.stats.mean)) - float(np.real(e_exact))) < 5 * err


def test_conditional_phase_starts_as_its_mlp():
    """The per-orbital phases start at exactly zero (the phase is the MLP's), and once moved
    they change the phase, not the probabilities."""
    from nqs.models.autoregressive import PhaseMLP

    ansatz = make_autoregressive(HILBERT, "made", hidden=(16,), phase_hidden=(8,),
                                 phase="conditional")
    x = jnp.asarray(HILBERT.hartree_fock_state())
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), x)
    states = jnp.asarray(HILBERT.all_states())
    log_psi = jax.vmap(ansatz.log_psi, in_axes=(None, 0))
    mlp = {"params": params["params"]["phase"]["mlp"]}
    mlp_phase = jax.vmap(lambda s: PhaseMLP((8,)).apply(mlp, s))(states)
    np.testing.assert_allclose(np.imag(log_psi(params, states)), mlp_phase, atol=1e-14)
    moved = _random_params(ansatz, HILBERT)
    moved_phase_only = jax.tree_util.tree_map(lambda a: a, params)
    moved_phase_only["params"]["phase"] = moved["params"]["phase"]
    a, b = log_psi(params, states), log_psi(moved_phase_only, states)
    np.testing.assert_allclose(np.real(a), np.real(b), atol=1e-14)
    assert np.max(np.abs(np.imag(a) - np.imag(b))) > 1e-2
    with pytest.raises(InputError, match="phase"):
        make_autoregressive(HILBERT, "made", phase="signs")


@pytest.mark.parametrize("phase", ["mlp", "conditional"])
def test_gradient_matches_finite_differences(lih, phase):
    """The estimator's gradient with exact Born weights (all determinants, n_chains=0) equals the
    finite-difference derivative of the exactly summed energy of the normalized state."""
    from nqs.exact import exact_data, exact_energy_fn, sparse_hamiltonian
    from nqs.optim.flat import real_flat
    from nqs.sampling.exact import born_weights
    from nqs.vmc import make_estimator

    ansatz = make_autoregressive(lih.hilbert, "made", hidden=(8,), phase_hidden=(8,),
                                 hf_logit=2.0, phase=phase)
    params = _random_params(ansatz, lih.hilbert, scale=0.1)
    states = jnp.asarray(lih.hilbert.all_states())
    weights = born_weights(ansatz, params, states)
    estimator = make_estimator(ansatz, lih, needs_jacobian=False)
    grad = np.asarray(jax.jit(lambda p, w: estimator(p, Samples(states, w, 0)).grad)(
        params, weights))
    flat, unflatten = real_flat(params)
    data = exact_data(sparse_hamiltonian(lih))
    exact_energy = jax.jit(lambda v, d: exact_energy_fn(ansatz)(unflatten(v), d)[0])

    def energy(v):
        return exact_energy(v, data)

    direction = np.random.default_rng(0).normal(size=flat.shape)
    h = 1e-5
    fd = float(np.real(energy(flat + h * direction) - energy(flat - h * direction))) / (2 * h)
    assert abs(fd - grad @ direction) < 1e-6 * max(1.0, abs(fd)), (fd, grad @ direction)


def test_method_follows_the_choices_and_the_size_of_the_space():
    from nqs.problems import EXACT_AUTO_LIMIT, molecule_method

    # auto: the autoregressive ansatz and sampler at every size
    assert molecule_method(441) == ("autoregressive", "autoregressive")
    assert molecule_method(EXACT_AUTO_LIMIT + 1) == ("autoregressive", "autoregressive")
    # an explicit exact or Metropolis sampler takes the backflow; an explicit backflow sums
    # exactly up to the cap and samples by Metropolis beyond it
    assert molecule_method(441, sampler="exact") == ("backflow", "exact")
    assert molecule_method(441, ansatz="backflow") == ("backflow", "exact")
    assert molecule_method(EXACT_AUTO_LIMIT + 1, ansatz="rbm") == ("rbm", "mcmc")
    assert molecule_method(441, ansatz="autoregressive", sampler="exact") == (
        "autoregressive", "exact")
    assert molecule_method(441, sampler="autoregressive") == ("autoregressive", "autoregressive")
    assert molecule_method(10**7, sampler="mcmc") == ("backflow", "mcmc")
    with pytest.raises(InputError, match="autoregressive ansatz"):
        molecule_method(441, ansatz="backflow", sampler="autoregressive")
    with pytest.raises(InputError):
        AutoregressiveSampler(HILBERT, n_samples=0)


@pytest.mark.parametrize("args,word", [
    (["--ansatz", "backflow", "--sampler", "autoregressive"], "autoregressive"),
    (["--ansatz", "rbm", "--sampler", "autoregressive"], "autoregressive"),
    (["--sampler", "autoregressive", "--samples", "1.5"], "samples"),
    (["--sampler", "autoregressive", "--samples", "0"], "samples"),
    (["--sampler", "autoregressive", "--max-unique", "-4"], "max-unique"),
    (["--backbone", "lstm"], "backbone"),
    (["--sampler", "autoregressive", "--max-unique", "2"], "max-unique"),
    (["--sampler", "autoregressive", "--start", "fci"], "start"),
    (["--sampler", "autoregressive", "--start-grow", "-1"], "start-grow"),
    (["--sampler", "autoregressive", "--start-pt2", "-1e-3"], "start-pt2"),
    (["--sampler", "autoregressive", "--start-rounds", "0"], "start-rounds"),
    (["--sampler", "autoregressive", "--start-sci-cutoff", "0"], "start-sci-cutoff"),
    (["--sampler", "autoregressive", "--start-selection", "hci"], "start-selection"),
    (["--sampler", "autoregressive", "--start-final-lr-fraction", "0"], "start-final-lr"),
    (["--sampler", "autoregressive", "--phase", "signs"], "phase"),
    (["--sampler", "autoregressive", "--sampling-power", "1.5"], "sampling power"),
    (["--sampler", "autoregressive", "--sampling-power", "0"], "sampling-power"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_bad_sampling_options_one_line_exit_2(args, word, capsys, tmp_path):
    from nqs.cli import main

    try:
        code = main(["molecule", "--molecule", "H2", *args, "--steps", "1",
                     "--out", str(tmp_path)])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and word in err, err
    assert not any(tmp_path.iterdir())  # nothing written


def test_singles_doubles_target_is_cisd(lih):
    """The start's target is the lowest eigenvector of H over Hartree-Fock and the determinants H
    connects to it: its energy equals PySCF's CISD energy (RHF orbitals, same integrals)."""
    from pyscf import ci, gto, scf

    from nqs.exact import sparse_hamiltonian
    from nqs.models.ar_pretrain import singles_doubles_target

    x, c = singles_doubles_target(lih)
    assert abs(np.linalg.norm(c) - 1) < 1e-12 and c[0] > 0.9
    full = sparse_hamiltonian(lih)
    index = {k: i for i, k in enumerate(configuration_keys(full.states, lih.hilbert))}
    v = np.zeros(len(full.states))
    v[[index[k] for k in configuration_keys(x, lih.hilbert)]] = c
    h_v = np.zeros_like(v)
    np.add.at(h_v, full.rows, np.real(full.vals) * v[full.cols])
    mol = gto.M(atom="Li 0 0 0; H 0 0 1.548", basis="sto-3g", verbose=0)
    e_cisd = ci.CISD(scf.RHF(mol).run()).run().e_tot
    assert abs(v @ h_v - e_cisd) < 1e-8, (v @ h_v, e_cisd)


def _h2o_sto3g_made32():
    """``(H2O/STO-3G Hamiltonian, MADE-32 autoregressive ansatz, its parameters from seed 0)``."""
    from hamiltonians.molecule import compute_integrals, from_preset
    from hamiltonians.second_quantized import MolecularHamiltonian

    h2o = MolecularHamiltonian(compute_integrals(from_preset("H2O", basis="sto-3g"))[0])
    ansatz = make_autoregressive(h2o.hilbert, "made", hidden=(32,), phase_hidden=(32,))
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0),
                                  jnp.asarray(h2o.hilbert.hartree_fock_state()))
    return h2o, ansatz, params


def test_cisd_start_reaches_the_open_shell_doubles():
    """The start fits CISD on H2O/STO-3G to a fidelity of 0.99 in 200 steps (a small network).
    A fidelity loss stalls near 0.97 there: the open-shell doubles (four singly occupied
    orbitals) start at p ~ exp(-4 hf_logit) and get no gradient from it; the cross-entropy's
    gradient does not scale with p. The fidelity is recomputed here from the target."""
    from nqs.models.ar_pretrain import fit_singles_doubles, singles_doubles_target

    h2o, ansatz, params = _h2o_sto3g_made32()
    params, fidelity = fit_singles_doubles(ansatz, h2o, params, steps=200)
    x, t = singles_doubles_target(h2o)
    psi = np.exp(np.asarray(jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))(
        params, jnp.asarray(x))))
    assert abs(abs(np.vdot(t, psi)) ** 2 - fidelity) < 1e-10
    assert fidelity > 0.99, fidelity
    # the open-shell doubles (two singly occupied occupied and two virtual orbitals) are in
    n = h2o.hilbert.n_orbitals
    open_shell = np.sum(np.abs(x[:, :n] - x[:, n:]), axis=1) == 4
    assert np.sum(t[open_shell] ** 2) > 1e-3
    assert np.sum(np.abs(psi[open_shell]) ** 2) > 0.5 * np.sum(t[open_shell] ** 2)


def _energy_in_own_space(operator, x, c):
    """``<c|H|c>`` of a vector ``c`` on the determinants ``x`` (H's ``flips``, no enumeration)."""
    from nqs.hilbert import apply_flips

    hilbert = operator.hilbert
    index = {k: i for i, k in enumerate(configuration_keys(x, hilbert))}

    @jax.jit
    def rows(x):
        sites, mels = jax.vmap(operator.flips)(x)
        apply = jax.vmap(jax.vmap(lambda xi, s: apply_flips(xi, s, 1.0), (None, 0)))
        return apply(x, sites), mels

    x_new, mels = (np.asarray(a) for a in rows(jnp.asarray(x)))
    keys = configuration_keys(x_new.reshape(-1, x.shape[1]), hilbert)
    col = np.array([index.get(k, -1) for k in keys])
    src = np.repeat(np.arange(len(x)), mels.shape[1])
    inside = col >= 0
    return float(np.sum(c[src[inside]] * np.real(mels.reshape(-1))[inside] * c[col[inside]]))


def test_start_target_of_stretched_n2_holds_hartree_fock():
    """At a stretched bond the lowest root of the truncated start spaces is a high-spin state:
    for N2/STO-3G at 2.0 A the CISD space's lowest root is the quintet, 19 mHa below the CISD
    singlet and without Hartree-Fock (``c(HF) = 0``), and a start fitted to it (or to the
    selected space grown from it) has zero overlap with the singlet ground state. The target is
    the lowest singlet root that holds Hartree-Fock: PySCF's (singlet) CISD energy, and a
    selected space grown from it with Hartree-Fock's weight and an energy below CISD, closed
    under ``S^2`` with ``<S^2> = 0`` (1e-8); with the rounds of ``nqs molecule`` it is within
    0.1 mHa of PySCF's FCI."""
    from pyscf import ci, fci, gto, scf

    from hamiltonians.molecule import MoleculeSpec, compute_integrals
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.models.ar_pretrain import selected_target, singles_doubles_target

    atoms = "N 0 0 0; N 0 0 2.0"
    n2 = MolecularHamiltonian(compute_integrals(MoleculeSpec(atoms, basis="sto-3g"))[0])
    e_cisd = ci.CISD(scf.RHF(gto.M(atom=atoms, basis="sto-3g", verbose=0)).run()).run().e_tot
    x, c = singles_doubles_target(n2)
    assert c[0] ** 2 > 0.2, c[0]
    assert abs(_energy_in_own_space(n2, x, c) - e_cisd) < 1e-7
    x, c = selected_target(n2)
    assert c[0] ** 2 > 0.1, c[0]
    assert _energy_in_own_space(n2, x, c) < e_cisd - 0.1  # 147 mHa below CISD, 22 above FCI
    # whole spatial occupations: the space is closed under S^2 and its root a singlet; at the
    # defaults of ``nqs molecule`` (rounds while E_PT2 < -1 mHa) it is FCI's singlet
    closed, s2 = _s2_in_space(x)
    assert closed and abs(c @ s2 @ c) < 1e-8
    info: dict = {}
    x, c = selected_target(n2, rounds=3, pt2_tolerance=1e-3, info=info)
    closed, s2 = _s2_in_space(x)
    assert closed and abs(c @ s2 @ c) < 1e-8 and abs(info["s2"]) < 1e-8
    e_fci = fci.FCI(scf.RHF(gto.M(atom=atoms, basis="sto-3g", verbose=0)).run()).kernel()[0]
    assert e_fci - 1e-9 < info["e_var"] < e_fci + 1e-4, (info["e_var"], e_fci)



def test_start_target_of_square_h4_has_the_ground_state_symmetry():
    """Square H4 / STO-3G at 1.2 A: the singlet ground state has another spatial symmetry than
    the (symmetry-broken) RHF determinant, ``c(HF) = 0``; the lowest singlet that holds
    Hartree-Fock is an excited state 149 mHa above it, and VMC from a start fitted to it stayed
    there. The start's target is the lowest singlet root: PySCF's singlet FCI energy (the
    selected space holds its 20 determinants of weight), with no Hartree-Fock weight (below 1e-6).

    The square's RHF has two solutions of one energy, and which one PySCF converges to depends
    on the threads of its J / K builds (one OpenMP thread: a determinant that holds 46% of the
    ground state): the Hartree-Fock weight of the target is compared with that of PySCF's FCI
    vector in the same orbitals, which holds for either."""
    from pyscf import fci

    from hamiltonians.molecule import MoleculeSpec, compute_integrals
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.models.ar_pretrain import HF_WEIGHT_MIN, selected_target

    atoms = "H 0 0 0; H 1.2 0 0; H 0 1.2 0; H 1.2 1.2 0"
    ints = compute_integrals(MoleculeSpec(atoms, basis="sto-3g"))[0]
    h4 = MolecularHamiltonian(ints)
    solver = fci.addons.fix_spin_(fci.direct_spin1.FCI(), ss=0)
    e_fci, civec = solver.kernel(ints.h1, ints.h2, ints.n_orbitals, (ints.n_alpha, ints.n_beta))
    e_fci += ints.e_core
    info: dict = {}
    x, c = selected_target(h4, rounds=3, pt2_tolerance=1e-3, info=info)
    assert abs(_energy_in_own_space(h4, x, c) - e_fci) < 1e-8
    assert abs(info["e_var"] - e_fci) < 1e-8 and abs(info["s2"]) < 1e-8
    # x[0] is Hartree-Fock; the selected space misses weights ~1e-6 (its energy is FCI's to
    # 1e-8, second order in them), so the coefficients agree to about 1e-5
    assert abs(abs(c[0]) - abs(civec[0, 0])) < 1e-4, (c[0], civec[0, 0])
    # the sign: c(HF) > 0 where Hartree-Fock has weight, else the largest coefficient > 0
    assert c[0] > 0 if c[0] ** 2 >= HF_WEIGHT_MIN else np.max(np.abs(c)) == np.max(c)

def _dense_hamiltonian(operator):
    """``(sparse H, configuration keys, key -> row, dense H, E_FCI)`` of a small molecule."""
    from nqs.exact import sparse_hamiltonian

    full = sparse_hamiltonian(operator)
    keys = configuration_keys(full.states, operator.hilbert)
    index = {k: i for i, k in enumerate(keys)}
    dense = np.zeros((len(keys), len(keys)))
    np.add.at(dense, (full.rows, full.cols), np.real(full.vals))
    return full, keys, index, dense, np.linalg.eigvalsh(dense)[0]


def test_selected_target_is_the_ground_state_of_its_grown_space(lih):
    """The selected start's target: CISD grown by one selection round. On the dense H of LiH it
    is the lowest eigenvector of H restricted to its own determinants (to 1e-10 Ha), its energy
    lies between FCI and CISD, it holds at most twice the CISD space, and the added determinants are the
    ones of largest first-order amplitude among those H connects to CISD (triples and
    quadruples)."""
    from nqs.models.ar_pretrain import selected_target, singles_doubles_target

    full, keys, index, dense, e_fci = _dense_hamiltonian(lih)

    def energy(x, c):
        sel = [index[k] for k in configuration_keys(x, lih.hilbert)]
        sub = dense[np.ix_(sel, sel)]
        return c @ sub @ c, np.linalg.eigvalsh(sub)[0], sel

    x0, c0 = singles_doubles_target(lih)
    e_cisd, _, sel0 = energy(x0, c0)
    x, c = selected_target(lih)
    e_sel, e_sub, sel = energy(x, c)
    assert abs(np.linalg.norm(c) - 1) < 1e-12 and c[0] > 0.9
    assert len(set(sel)) == len(sel) and len(sel0) < len(sel) <= 2 * len(sel0)
    assert set(sel0) <= set(sel)
    assert abs(e_sel - e_sub) < 1e-10
    assert e_fci - 1e-10 < e_sel < e_cisd - 1e-6, (e_fci, e_sel, e_cisd)
    # the added determinants: largest |sum_y H_xy c_y / (E_cisd - H_xx)| outside CISD
    outside = np.setdiff1d(np.arange(len(keys)), sel0)
    v0 = np.zeros(len(keys))
    v0[sel0] = c0
    t = (dense[outside] @ v0) / (e_cisd - np.diag(dense)[outside])
    added = set(sel) - set(sel0)
    t_added = np.abs(t[np.isin(outside, list(added))])
    t_left = np.abs(t[~np.isin(outside, list(added))])
    assert t_added.min() >= t_left.max() - 1e-9
    hf = np.asarray(lih.hilbert.hartree_fock_state())
    rank = np.sum(np.abs(full.states[list(added)] - hf), axis=1) // 2
    assert rank.max() >= 3, rank
    # a larger selection round holds the first; on LiH the first already took every
    # determinant H connects to CISD (it added fewer than |CISD|), so the second adds none
    x3, c3 = selected_target(lih, grow=3.0)
    e3, e3_sub, sel3 = energy(x3, c3)
    assert set(sel) <= set(sel3) and abs(e3 - e3_sub) < 1e-10
    assert len(sel) - len(sel0) < len(sel0) and len(sel3) == len(sel) and abs(e3 - e_sel) < 1e-10


def test_selection_rounds_follow_their_pt2_estimate():
    """Selection rounds past the first (``rounds``, ``pt2_tolerance``) on the dense H of
    NH3/STO-3G (3136 determinants; on H2O one round already leaves E_PT2 = -2e-7 Ha): each
    space's target is the lowest eigenvector of H restricted to it (1e-10 Ha) and each space
    holds the one before; the Epstein-Nesbet PT2 estimate the rounds are decided on equals
    ``sum_{x outside S} (H c)_x^2 / (E0 - H_xx)`` from the dense H (1e-8 Ha; connections below
    1e-7 Ha are screened); a tolerance above ``|E_PT2|`` of the first space stops after one
    round (the one-round target itself), one below it grows the space again, closer to FCI."""
    from hamiltonians.molecule import compute_integrals, from_preset
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.models.ar_pretrain import selected_target

    nh3 = MolecularHamiltonian(compute_integrals(from_preset("NH3"))[0])
    full, keys, index, dense, e_fci = _dense_hamiltonian(nh3)

    def check(x, c):
        sel = [index[k] for k in configuration_keys(x, nh3.hilbert)]
        sub = dense[np.ix_(sel, sel)]
        e = c @ sub @ c
        assert len(set(sel)) == len(sel) and abs(np.linalg.norm(c) - 1) < 1e-12
        assert abs(e - np.linalg.eigvalsh(sub)[0]) < 1e-10
        v = np.zeros(len(keys))
        v[sel] = c
        outside = np.setdiff1d(np.arange(len(keys)), sel)
        pt2 = np.sum((dense[outside] @ v) ** 2 / np.minimum(e - np.diag(dense)[outside], -1e-3))
        return e, pt2, set(sel)

    one: dict = {}
    x1, c1 = selected_target(nh3, rounds=1, info=one)
    e1, pt2_1, s1 = check(x1, c1)
    assert one["rounds"] == 1 and pt2_1 < -1e-5  # something is left for a second round
    info: dict = {}
    x2, c2 = selected_target(nh3, rounds=2, pt2_tolerance=0.0, info=info)
    e2, pt2_2, s2 = check(x2, c2)
    assert info["rounds"] == 2 and s1 < s2
    # a round picks |S| determinants and adds their spatial occupations (with spin partners)
    added = _occupations(full.states[list(s2)]) - _occupations(full.states[list(s1)])
    assert 0 < len(added) <= len(s1)
    assert abs(info["e_pt2"][0] - pt2_1) < 1e-8, (info["e_pt2"], pt2_1)
    assert abs(info["e_var"] - e2) < 1e-10 and e_fci - 1e-10 < e2 < e1 - 1e-7
    stop: dict = {}
    x, c = selected_target(nh3, rounds=3, pt2_tolerance=-pt2_1 * 1.01, info=stop)
    assert stop["rounds"] == 1 and len(stop["e_pt2"]) == 1
    assert np.array_equal(x, x1) and np.allclose(c, c1, atol=1e-10)
    x, c = selected_target(nh3, rounds=2, pt2_tolerance=-pt2_1 * 0.99)
    assert np.array_equal(x, x2) and np.allclose(c, c2, atol=1e-10)
    assert pt2_2 > pt2_1


def _occupations(states) -> set:
    """The distinct spatial occupations (doubly and singly occupied orbitals) of ``states``."""
    bits = np.asarray(states) > 0.5
    n = bits.shape[1] // 2
    return {(a & b).tobytes() + (a ^ b).tobytes() for a, b in zip(bits[:, :n], bits[:, n:],
                                                                    strict=True)}


def _s2_row(x) -> dict:
    """``S^2 |x>`` of the determinant ``x`` [2n] (alpha block, then beta block) as
    ``{occupied sites: coefficient}``, from ``S^2 = S_- S_+ + S_z^2 + S_z`` with
    ``S_+ = sum_i a+_{i alpha} a_{i beta}`` applied one operator at a time (written
    independently of :func:`nqs.models.ar_pretrain._s2_expectations`)."""
    occ = tuple(int(i) for i in np.flatnonzero(np.asarray(x) > 0.5))
    n = len(x) // 2

    def hop(occ, p, q):  # a+_p a_q |occ>: (sign, occ') or None
        if q not in occ or (p in occ and p != q):
            return None
        sign = (-1) ** sum(1 for o in occ if o < q)
        rest = tuple(o for o in occ if o != q)
        sign *= (-1) ** sum(1 for o in rest if o < p)
        return sign, tuple(sorted(rest + (p,)))

    sz = (sum(1 for o in occ if o < n) - sum(1 for o in occ if o >= n)) / 2
    out = {occ: sz * sz + sz}
    for i in range(n):
        up = hop(occ, i, n + i)
        for j in range(n):
            down = up and hop(up[1], n + j, j)
            if down:
                out[down[1]] = out.get(down[1], 0.0) + up[0] * down[0]
    return out


def _s2_in_space(xs):
    """``(closed, S^2 [m, m])``: whether ``S^2`` maps the span of the determinants ``xs`` into
    itself, and its matrix there (:func:`_s2_row`)."""
    index = {tuple(int(i) for i in np.flatnonzero(x > 0.5)): k for k, x in enumerate(xs)}
    s2 = np.zeros((len(xs), len(xs)))
    closed = True
    for k, x in enumerate(xs):
        for occ, value in _s2_row(x).items():
            if occ in index:
                s2[index[occ], k] += value
            elif abs(value) > 1e-12:
                closed = False
    return closed, s2


def test_selected_space_is_closed_under_s2_and_its_root_a_singlet():
    """The selected start's space takes whole spatial occupations, so ``S^2`` maps it into
    itself and its root is an ``S^2`` eigenstate of the sector's spin. H2O/STO-3G with both
    bonds stretched to 1.8 A (441 determinants, dense H): the ``S^2`` of the test (built one
    operator at a time) commutes with H; the determinants a round ranks first are not closed
    under it, the selected space is, for every round and when the connection budget drops
    occupations; the target is H's lowest singlet in its space with ``<S^2> = 0`` (1e-8), as
    ``_s2_expectations`` says too."""
    from hamiltonians.molecule import MoleculeSpec, compute_integrals
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.models import ar_pretrain

    atoms = "O 0 0 0; H 1.8 0 0; H -0.45 1.74 0"
    h2o = MolecularHamiltonian(compute_integrals(MoleculeSpec(atoms, basis="sto-3g"))[0])
    full, keys, index, dense, _ = _dense_hamiltonian(h2o)
    closed, s2_full = _s2_in_space(full.states)
    assert closed and np.abs(dense @ s2_full - s2_full @ dense).max() < 1e-10
    s2_values = np.linalg.eigvalsh(s2_full)  # S = 0, 1, 2 (4 open shells at most)
    assert np.abs(s2_values[:, None] - np.array([0.0, 2.0, 6.0])).min(axis=1).max() < 1e-8
    rng = np.random.default_rng(0)
    v = rng.normal(size=(len(keys), 3))
    assert np.allclose(ar_pretrain._s2_expectations(full.states, v, h2o.hilbert),
                       np.einsum("ik,ij,jk->k", v, s2_full, v) / np.sum(v**2, axis=0), atol=1e-10)

    # the determinants of largest first-order amplitude alone: not closed
    x0, c0 = ar_pretrain.singles_doubles_target(h2o)
    assert _s2_in_space(x0)[0]  # CISD of closed-shell RHF is
    sel0 = [index[k] for k in configuration_keys(x0, h2o.hilbert)]
    outside = np.setdiff1d(np.arange(len(keys)), sel0)
    v0 = np.zeros(len(keys))
    v0[sel0] = c0
    e_cisd = c0 @ dense[np.ix_(sel0, sel0)] @ c0
    t = (dense[outside] @ v0) / (e_cisd - np.diag(dense)[outside])
    picks = outside[np.argsort(-np.abs(t))[: len(sel0) // 4]]
    assert not _s2_in_space(np.concatenate([x0, full.states[picks]]))[0]

    for budget in (ar_pretrain.START_CONNECTIONS, 3.1 * len(x0) * h2o.max_conn):
        info: dict = {}
        x, c = ar_pretrain.selected_target(h2o, grow=0.25, rounds=2, pt2_tolerance=0.0,
                                           info=info, budget=budget)
        closed, s2 = _s2_in_space(x)
        sel = [index[k] for k in configuration_keys(x, h2o.hilbert)]
        sub = dense[np.ix_(sel, sel)]
        w, vecs = np.linalg.eigh(sub)
        singlets = np.flatnonzero(np.abs(np.einsum("ik,ij,jk->k", vecs, s2, vecs)) < 1e-6)
        assert closed and info["connections"] <= budget and len(x) < len(keys)
        assert abs(c @ s2 @ c) < 1e-8 and abs(info["s2"]) < 1e-8
        assert abs(c @ sub @ c - w[singlets[0]]) < 1e-10 and abs(c @ sub @ c - info["e_var"]) < 1e-10
    assert info["dropped"] > 0 and info["rounds"] >= 1  # the budget left occupations out


def test_sampled_h2_starts_at_fci(tmp_path, capsys):
    """``nqs molecule --sampler autoregressive`` end to end on H2: for two electrons CISD is FCI,
    so the selected start alone is chemically accurate before any VMC step (the fit stops at
    fidelity 0.9995: an energy error of at most 5e-4 times the spectral width), and three
    sampled SR steps keep it so."""
    import json
    import re

    from nqs.cli import main

    code = main(["molecule", "--molecule", "H2", "--sampler", "autoregressive", "--steps", "3",
                 "--hidden", "16", "--start", "selected", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    fidelity = float(re.search(r"start: fitted to CISD grown by [0-9]+ CIPSI selection "
                               r"round\(s\) \(.*\) \(fidelity ([0-9.]+)", out).group(1))
    assert fidelity >= 0.9995
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["config"]["options"]["start"] == "selected"
    # each phase of the start: in the console and in result.json, with its size and time
    start = result["start"]
    assert [p["phase"] for p in start["phases"]][:2] == ["space", "cisd"]
    assert start["phases"][1]["size"] >= 2 and start["target_size"] == start["size"]
    assert 0 < start["fit_steps"] <= 12000 and start["fidelity"] == pytest.approx(fidelity, abs=1e-4)
    assert re.search(r"start: cisd: [0-9]+ determinants, [0-9.e+]+ connections", out)
    assert re.search(r"start: fit: [0-9]+ Adam steps over [0-9]+ determinants", out)
    # the fit's progress lines (first and last step at least), with its fidelity and ETA
    fit_lines = re.findall(r"start: fit step ([0-9]+)/12000 \([0-9]+%\)  fidelity ([0-9.]+)  "
                           r"elapsed [0-9:]+  ETA", out)
    assert fit_lines and int(fit_lines[0][0]) == 1
    assert int(fit_lines[-1][0]) == start["fit_steps"]
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert abs(log[0]["energy"] - result["e_fci"]) < 1.6e-3 < result["e_hf"] - result["e_fci"]
    assert abs(result["error_mha"]) < 1.6
    # each step logs its distinct determinants (at most the 4 of H2/STO-3G's sector) and draws
    assert all(1 <= r["n_unique"] <= 4 and 1 <= r["n_draws"] <= 100_000 for r in log)


def test_selected_start_stays_within_its_connection_budget(lih, monkeypatch):
    """The selected start's cost bound (``budget``: connections enumerated, ``|S| max_conn`` a
    pass over a space S). A budget below CISD's one pass gives the first-order amplitudes
    (:func:`first_order_target`, exactly); one that holds CISD but not a round gives CISD
    (:func:`singles_doubles_target`, 1e-12); the default grows LiH by one round. Every phase is
    logged with its size and connections, whose sum never passes the budget. The keys of more
    than 63 sites (bytes, built on the host) select the same target as the int64 keys XORed on
    the device."""
    import nqs.exact
    from nqs.models.ar_pretrain import first_order_target, selected_target, singles_doubles_target

    x_sd, c_sd = singles_doubles_target(lih)
    one_pass = len(x_sd) * int(lih.max_conn)
    info: dict = {}
    x, c = selected_target(lih, rounds=3, budget=one_pass - 1, info=info)
    x_fo, t_fo = first_order_target(lih)
    assert info["target"] == "first-order" and "budget" in info["stopped"]
    assert np.array_equal(x, x_fo) and np.array_equal(c, t_fo) and info["connections"] == 0
    info = {}
    x, c = selected_target(lih, rounds=3, budget=one_pass, info=info)
    assert info["target"] == "selected" and info["rounds"] == 0 and "budget" in info["stopped"]
    assert np.array_equal(x, x_sd) and np.allclose(c, c_sd, atol=1e-12)
    assert [p["phase"] for p in info["phases"]] == ["space", "cisd"]
    assert info["connections"] == one_pass == info["phases"][1]["connections"]
    info = {}
    x1, c1 = selected_target(lih, info=info)
    assert info["rounds"] == 1 and len(x1) > len(x_sd) and info["stopped"] == "1 round(s) done"
    assert info["connections"] == 2 * one_pass + len(x1) * lih.max_conn
    assert all(p["seconds"] >= 0 for p in info["phases"])
    monkeypatch.setattr(nqs.exact, "MAX_INT_KEY_SITES", 8)  # byte keys for LiH's 12 sites
    x_b, c_b = selected_target(lih)
    # byte keys sort otherwise: the same determinants with the same amplitudes, in another order
    order, order_b = (np.lexsort(np.asarray(a).T) for a in (x1, x_b))
    assert np.array_equal(x_b[order_b], x1[order]) and np.allclose(c_b[order_b], c1[order],
                                                                    atol=1e-12)


def test_phase_network_follows_the_size_of_the_space():
    from nqs.bench.fci import Settings, resolve_settings
    from nqs.problems import EXACT_AUTO_LIMIT

    # auto: the conditional phase beyond the exact cap (the autoregressive default there), the
    # MLP up to it, also when the autoregressive sampler is asked for on a small space
    assert Settings().phase == "auto"
    assert resolve_settings(Settings(), EXACT_AUTO_LIMIT + 1).phase == "conditional"
    assert resolve_settings(Settings(), EXACT_AUTO_LIMIT).phase == "mlp"
    assert resolve_settings(Settings(), 44100).phase == "mlp"
    # an explicit choice is kept at any size
    assert resolve_settings(Settings(phase="mlp"), 10**7).phase == "mlp"
    assert resolve_settings(Settings(phase="conditional"), 441).phase == "conditional"
    # and SR's learning rate: 0.05 up to the cap, 0.01 beyond; an explicit one is kept
    assert resolve_settings(Settings(), 44100).learning_rate == 0.05
    assert resolve_settings(Settings(), EXACT_AUTO_LIMIT + 1).learning_rate == 0.01
    assert resolve_settings(Settings(learning_rate=0.2), 10**7).learning_rate == 0.2
    assert resolve_settings(Settings(sampler="exact"), 441).learning_rate == 3e-3  # backflow
    # and the width: 256 for the autoregressive ansatz, 64 for the backflow; an explicit one
    # is kept, and the phase network is as wide as the amplitudes'
    assert resolve_settings(Settings(), EXACT_AUTO_LIMIT + 1).hidden == (256,)
    assert resolve_settings(Settings(ansatz="backflow"), EXACT_AUTO_LIMIT).hidden == (64,)
    assert resolve_settings(Settings(), 44100).hidden == (256,)
    assert resolve_settings(Settings(hidden=(32, 16)), 10**7).hidden == (32, 16)
    from nqs.hilbert import FermionHilbert
    from nqs.problems import molecule_ansatz

    hilbert = FermionHilbert(4, 2, 2)
    for phase in ("mlp", "conditional"):
        ansatz = molecule_ansatz(hilbert, "autoregressive", hidden=(16,), phase=phase)
        params = ansatz.init(jax.random.PRNGKey(0), jnp.asarray(hilbert.hartree_fock_state()))
        widths = {leaf.shape[-1] for path, leaf in
                  jax.tree_util.tree_flatten_with_path(params["params"]["phase"])[0]
                  if "kernel" in jax.tree_util.keystr(path) or "w0" in jax.tree_util.keystr(path)}
        assert 16 in widths and 64 not in widths, widths


def test_gauss_newton_refinement_raises_the_start_fidelity():
    """The Gauss-Newton refinement of a short Adam fit (H2O/STO-3G, CISD target): its
    residuals' squared sum is ``||psi - t||^2 = 2 - 2 Re<t|psi>`` over the whole sector
    (checked by enumeration), and a few steps cut the infidelity at least in half, and the exact
    energy of the refined state is closer to FCI than the Adam fit's."""
    from nqs.models.ar_pretrain import (
        _fit_residuals,
        fit_singles_doubles,
        refine_fit,
        singles_doubles_target,
    )

    h2o, ansatz, params = _h2o_sto3g_made32()
    params, adam_fidelity = fit_singles_doubles(ansatz, h2o, params, steps=300)
    x, t = singles_doubles_target(h2o)
    full, _, index, dense, e_fci = _dense_hamiltonian(h2o)
    batch = jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))

    def vector(p):
        return np.exp(np.asarray(batch(p, jnp.asarray(full.states))))

    def energy(p):
        v = vector(p)
        return float(np.real(np.vdot(v, dense @ v)) / np.vdot(v, v).real)

    t_all = np.zeros(len(full.states))
    t_all[[index[k] for k in configuration_keys(np.asarray(x), h2o.hilbert)]] = t
    psi_all = vector(params)
    r = np.asarray(_fit_residuals(ansatz)(params, jnp.asarray(x), jnp.asarray(t)))
    assert abs(np.sum(r**2) - np.sum(np.abs(psi_all - t_all) ** 2)) < 1e-10
    assert abs(np.sum(r**2) - (2 - 2 * np.real(np.vdot(t_all, psi_all)))) < 1e-10

    refined, fidelity = refine_fit(ansatz, params, x, t, steps=8)
    assert abs(abs(np.vdot(t_all, vector(refined))) ** 2 - fidelity) < 1e-10
    assert 1 - fidelity < 0.5 * (1 - adam_fidelity), (adam_fidelity, fidelity)
    assert energy(refined) - e_fci < energy(params) - e_fci


def test_fit_reports_each_step_of_both_phases():
    """``progress`` sees every Adam step (1, 2, ... with the planned count and a fidelity in
    (0, 1]) and then every Gauss-Newton step with the best fidelity so far, which never falls
    and ends at the fidelity returned."""
    from nqs.models.ar_pretrain import fit_singles_doubles

    h2o, ansatz, params = _h2o_sto3g_made32()
    calls = []
    _, fidelity = fit_singles_doubles(ansatz, h2o, params, steps=6, refine_steps=3,
                                      progress=lambda *a: calls.append(a))
    fit = [c for c in calls if c[0] == "fit"]
    refine = [c for c in calls if c[0] == "refine"]
    assert [c[1] for c in fit] == list(range(1, 7)) and {c[2] for c in fit} == {6}
    assert all(0 < c[3] <= 1 for c in fit)
    assert [c[1] for c in refine] == [1, 2, 3] and {c[2] for c in refine} == {3}
    best = [c[3] for c in refine]
    assert best == sorted(best) and best[-1] == pytest.approx(fidelity, abs=1e-12)
    assert calls == fit + refine


def test_start_fits_the_largest_spin_families_of_a_large_target():
    """A target larger than ``max_fit`` is fitted on its spin families of largest weight:
    whole families (so the fitted part stays closed under ``S^2``), a prefix of them by weight,
    Hartree-Fock first, at most ``max_fit`` determinants, renormalized, with the weight they
    held recorded. H2O/STO-3G with stretched bonds, two selection rounds."""
    from hamiltonians.molecule import MoleculeSpec, compute_integrals
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.models import ar_pretrain

    atoms = "O 0 0 0; H 1.8 0 0; H -0.45 1.74 0"
    h2o = MolecularHamiltonian(compute_integrals(MoleculeSpec(atoms, basis="sto-3g"))[0])
    x, c = ar_pretrain.selected_target(h2o, rounds=2, pt2_tolerance=0.0)
    max_fit = len(x) // 3
    xk, ck, weight = ar_pretrain.truncate_target(x, c, h2o.hilbert, max_fit)
    assert 0 < len(xk) <= max_fit < len(x)
    assert np.array_equal(xk[0], x[0]) and np.array_equal(xk[0], h2o.hilbert.hartree_fock_state())
    assert abs(np.sum(ck**2) - 1) < 1e-12
    keys, kept_keys = (configuration_keys(a, h2o.hilbert) for a in (x, xk))
    kept = np.isin(keys, kept_keys)
    assert abs(weight - np.sum(c[kept] ** 2)) < 1e-12 and 0.99 < weight < 1
    assert np.allclose(ck, c[kept] / np.sqrt(weight), atol=1e-14)  # order kept too
    fam = ar_pretrain._spin_families(x, h2o.hilbert)
    fam_in = set(fam[kept].tolist())
    assert all(kept[i] for i in range(len(x)) if fam[i] in fam_in)  # whole families
    w = {f: np.sum(c[fam == f] ** 2) for f in set(fam.tolist())}
    assert min(w[f] for f in fam_in) >= max(w[f] for f in w if f not in fam_in)
    assert _s2_in_space(xk)[0]

    same = ar_pretrain.truncate_target(x, c, h2o.hilbert, len(x))
    assert same[2] == 1.0 and np.array_equal(same[0], x)

    ansatz = make_autoregressive(h2o.hilbert, hidden=(16,), phase_hidden=(8,))
    params = ansatz.init(jax.random.PRNGKey(0), jnp.asarray(x[0]))
    info: dict = {}
    _, fidelity = ar_pretrain.fit_singles_doubles(ansatz, h2o, params, steps=3, target=(x, c),
                                                  max_fit=max_fit, info=info)
    assert (info["target_size"], info["fit_size"]) == (len(x), len(xk))
    assert abs(info["fit_weight"] - weight) < 1e-12 and 0 < fidelity <= 1
    assert info["fit_e_var"] is None  # a given target is fitted as given

    # a selected target is H's root again in the kept space: the best vector there
    info = {}
    ar_pretrain.fit_singles_doubles(ansatz, h2o, params, steps=2, target="selected",
                                    rounds=2, pt2_tolerance=0.0, max_fit=max_fit, info=info)
    kept_x, kept_c = ar_pretrain.truncate_target(x, c, h2o.hilbert, max_fit)[:2]
    full, _, index, dense, _ = _dense_hamiltonian(h2o)
    sel = [index[k] for k in configuration_keys(kept_x, h2o.hilbert)]
    sub = dense[np.ix_(sel, sel)]
    assert abs(info["fit_e_var"] - np.linalg.eigvalsh(sub)[0]) < 1e-9
    assert info["fit_e_var"] < kept_c @ sub @ kept_c - 1e-9  # below the truncated vector
    info2: dict = {}  # the same for a selected target given as arrays (as the CLI does)
    ar_pretrain.fit_singles_doubles(ansatz, h2o, params, steps=2, target=(x, c),
                                    given_is_root=True, max_fit=max_fit, info=info2)
    assert abs(info2["fit_e_var"] - info["fit_e_var"]) < 1e-9
    with pytest.raises(InputError):
        ar_pretrain.fit_singles_doubles(ansatz, h2o, params, steps=1, target=(x, c), max_fit=0)


@pytest.mark.parametrize("phase", ["mlp", "conditional"])
def test_float32_network_computes_the_same_state(phase):
    """A MADE state under ``nqs.precision.with_dtype(.., "float32")`` (the start fit's Adam, and
    ``--dtype float32``): the same log psi as float64 to float32's resolution on every
    determinant of a sector, with every matrix product in float32."""
    from nqs.precision import with_dtype

    ansatz = make_autoregressive(HILBERT, "made", hidden=(16,), phase_hidden=(8,), phase=phase)
    params = _random_params(ansatz, HILBERT)
    states = jnp.asarray(HILBERT.all_states())
    single = jax.vmap(with_dtype(ansatz, "float32").log_psi, in_axes=(None, 0))
    exact = np.asarray(jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, states))
    diff = np.max(np.abs(np.asarray(single(params, states)) - exact))
    assert 0 < diff < 1e-4, diff
    dots = [e for e in jax.make_jaxpr(single)(params, states).jaxpr.eqns
            if e.primitive.name == "dot_general"]
    assert dots and all(e.outvars[0].aval.dtype == jnp.float32 for e in dots)
    # the sampler takes the float32 state: distinct draws in the sector, with their counts
    sampler = AutoregressiveSampler(HILBERT, n_samples=10_000, max_unique=128)
    wrapped = with_dtype(ansatz, "float32")
    samples, _, info = sampler.sample(jax.random.PRNGKey(1), wrapped, params,
                                      sampler.init(None, wrapped, params))
    x = np.asarray(samples.x[: int(info["n_unique"])])
    assert np.all(x[:, :5].sum(1) == 2) and np.all(x[:, 5:].sum(1) == 3)
    assert abs(float(np.sum(samples.weights)) - 1) < 1e-12


def test_single_precision_fit_matches_the_double_precision_fit():
    """The Adam fit in float32 reaches the fidelity of the float64 fit (H2O/STO-3G CISD, 150
    steps) to within a few 1e-4, and the fidelity it reports is the float64 one of the returned
    parameters."""
    from nqs.models.ar_pretrain import _fit_programs, fit_singles_doubles, singles_doubles_target

    h2o, ansatz, params = _h2o_sto3g_made32()
    fid = {}
    for single in (True, False):
        fitted, fid[single] = fit_singles_doubles(ansatz, h2o, params, steps=150,
                                                  single_precision=single)
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree_util.tree_leaves(fitted))
        x, t = singles_doubles_target(h2o)
        data = (jnp.asarray(x), jnp.asarray(t), jnp.where(jnp.asarray(t) < 0, jnp.pi, 0.0))
        value = float(_fit_programs(ansatz, None)[0](fitted, data))
        assert abs(np.exp(-value) - fid[single]) < 1e-12
    assert 0.9 < fid[True] and abs(fid[True] - fid[False]) < 5e-4, fid


def test_fit_cap_grows_until_the_kept_root_nears_the_target_root(monkeypatch):
    """With ``growth`` 4 the start's cap doubles from ``FIT_SITE_BUDGET // n_orbitals`` while
    H's root in the kept determinants is more than ``FIT_ROOT_TOLERANCE`` above the whole
    target's, up to 4 times (stretched H2O/STO-3G, two selection rounds, the
    budget set to a tenth of the target): each kept root is H's lowest eigenvalue in its
    space (dense), every cap but the last misses the tolerance, the last meets it or is the
    largest; with ``growth`` 1 (the default) one cap is tried."""
    from hamiltonians.molecule import MoleculeSpec, compute_integrals
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.models import ar_pretrain

    atoms = "O 0 0 0; H 1.8 0 0; H -0.45 1.74 0"
    h2o = MolecularHamiltonian(compute_integrals(MoleculeSpec(atoms, basis="sto-3g"))[0])
    x, c = ar_pretrain.selected_target(h2o, rounds=2, pt2_tolerance=0.0)
    full, _, index, dense, _ = _dense_hamiltonian(h2o)

    def root(xs):
        sel = [index[k] for k in configuration_keys(xs, h2o.hilbert)]
        return np.linalg.eigvalsh(dense[np.ix_(sel, sel)])[0]

    e_whole = root(x)
    base = len(x) // 10
    monkeypatch.setattr(ar_pretrain, "FIT_SITE_BUDGET", base * h2o.hilbert.n_orbitals)
    grown = {}
    for tolerance in (1e-4, 1e-2):
        monkeypatch.setattr(ar_pretrain, "FIT_ROOT_TOLERANCE", tolerance)
        xk, tk, weight, e_kept, caps = ar_pretrain._fit_space(h2o, x, c, None, True, None, 4)
        assert [cap for cap, _, _ in caps] == [base * 2**i for i in range(len(caps))]
        for cap, kept, e in caps:
            xs = ar_pretrain.truncate_target(x, c, h2o.hilbert, cap)[0]
            assert len(xs) == kept and abs(e - root(xs)) < 1e-9
        assert all(e - e_whole > tolerance for _, _, e in caps[:-1])
        assert (caps[-1][2] - e_whole <= tolerance
                or caps[-1][0] == 4 * base)
        assert e_kept == caps[-1][2] and len(xk) == caps[-1][1] == len(tk) and weight < 1
        assert abs(root(xk) - e_kept) < 1e-9
        grown[tolerance] = len(caps)
    assert grown[1e-4] > grown[1e-2] >= 1, grown  # the tighter tolerance grew the cap further
    monkeypatch.setattr(ar_pretrain, "FIT_ROOT_TOLERANCE", 1e-4)
    assert [cap for cap, _, _ in ar_pretrain._fit_space(h2o, x, c, None, True, None)[4]] == [base]
    fixed = ar_pretrain._fit_space(h2o, x, c, base // 2, True, None, 2)[4]
    assert [cap for cap, _, _ in fixed] == [base // 2, base]


def test_sampled_final_energy_uses_tempered_draws(lih):
    """A run's sampled final energy (past the exact cap) draws an autoregressive state with
    tempered conditionals, reweighted: the exact energy within its error bar; other samplers
    are left as they are."""
    from nqs.driver import FINAL_SAMPLING_POWER, final_sampler
    from nqs.exact import exact_data, exact_energy_fn, sparse_hamiltonian
    from nqs.vmc import make_energy_evaluator

    plain = AutoregressiveSampler(lih.hilbert, n_samples=100_000, max_unique=256)
    tempered = final_sampler(plain)
    assert tempered.power == FINAL_SAMPLING_POWER < 1 and tempered.max_unique == 256
    chosen = AutoregressiveSampler(lih.hilbert, power=0.7)
    assert final_sampler(chosen) is chosen
    from nqs.problems import molecule_sampler

    metropolis, _ = molecule_sampler(lih.hilbert, "mcmc", 8, 2)
    assert final_sampler(metropolis) is metropolis

    ansatz = make_autoregressive(lih.hilbert, "made", hidden=(16,), phase_hidden=(8,),
                                 hf_logit=2.0)
    params = _random_params(ansatz, lih.hilbert, scale=0.05)
    e_exact, _ = jax.jit(exact_energy_fn(ansatz))(params, exact_data(sparse_hamiltonian(lih)))
    evaluate = make_energy_evaluator(ansatz, lih, tempered, packed=True)
    stats, _, _ = evaluate(params, tempered.init(None, ansatz, params), jax.random.PRNGKey(2))
    err = float(stats.error_of_mean)
    assert 0 < err and abs(float(np.real(stats.mean)) - float(np.real(e_exact))) < 5 * err
