"""The selected-CI prior of the autoregressive state (nqs.models.ci_prior, ``--start prior``)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from nqs.errors import InputError
from nqs.exact import configuration_keys
from nqs.hilbert import FermionHilbert
from nqs.models.autoregressive import make_autoregressive
from nqs.models.ci_prior import (
    PRIOR_FLOOR,
    make_table,
    prior_conditionals,
    table_arrays,
    table_from_arrays,
)

HILBERT = FermionHilbert(5, 2, 2)


def _random_vector(hilbert, size, seed=0):
    """A random normalized vector on ``size`` distinct determinants of the sector."""
    rng = np.random.default_rng(seed)
    states = np.asarray(hilbert.all_states())
    rows = rng.choice(len(states), size, replace=False)
    t = rng.normal(size=size)
    return states[rows], t / np.linalg.norm(t)


def _psi(ansatz, params, states):
    log_psi = jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))(params, jnp.asarray(states))
    return np.exp(np.asarray(log_psi))


@pytest.mark.parametrize("backbone,phase", [("made", "mlp"), ("transformer", "conditional")])
def test_prior_state_starts_as_its_vector(backbone, phase):
    """At the start the state is the vector: psi = t on its determinants (up to the floor),
    normalized over the sector, every other determinant at a floor-sized amplitude."""
    x, t = _random_vector(HILBERT, 30)
    table = make_table(x, t, HILBERT.n_orbitals)
    ansatz = make_autoregressive(HILBERT, backbone, hidden=(16,), d_model=8, n_heads=2,
                                 n_layers=1, phase_hidden=(8,), phase=phase, prior=table)
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), jnp.asarray(HILBERT.hartree_fock_state()))
    states = np.asarray(HILBERT.all_states())
    psi = _psi(ansatz, params, states)
    assert abs(np.sum(np.abs(psi) ** 2) - 1.0) < 1e-12
    index = {k: i for i, k in enumerate(configuration_keys(states, HILBERT))}
    rows = np.array([index[k] for k in configuration_keys(x, HILBERT)])
    outside = np.ones(len(states), bool)
    outside[rows] = False
    leak = np.sum(np.abs(psi[outside]) ** 2)
    assert 0 < leak < 20 * HILBERT.n_orbitals * PRIOR_FLOOR
    # inside: the vector's magnitudes and signs (the phase network is not used there), up to
    # the floor's share of each conditional
    assert np.max(np.abs(psi[rows] - t)) < 1e-3
    assert abs(np.vdot(t, psi[rows])) ** 2 > 1 - 1e-4


def test_conditionals_multiply_to_the_squared_vector():
    x, t = _random_vector(HILBERT, 40, seed=1)
    table = make_table(x, t, HILBERT.n_orbitals)
    n = HILBERT.n_orbitals
    tokens = (x[:, :n] + 2 * x[:, n:]).astype(np.int32)
    pi = jax.jit(jax.vmap(lambda tk: prior_conditionals(table, tk)))(jnp.asarray(tokens))
    chosen = np.take_along_axis(np.asarray(pi), tokens[:, :, None], axis=2)[..., 0]
    np.testing.assert_allclose(np.prod(chosen, axis=1), t**2, rtol=1e-12, atol=1e-15)
    # each conditional of a prefix the vector holds sums to one
    np.testing.assert_allclose(np.asarray(pi).sum(axis=-1), 1.0, rtol=1e-12)
    # the table survives its arrays bit for bit (the run's prior.npz)
    again = table_from_arrays(table_arrays(table))
    assert np.array_equal(again.cumulative, table.cumulative)
    assert np.array_equal(again.keys, table.keys)


def test_prior_gradient_matches_finite_differences():
    """d log psi / d theta of a moved prior state against central differences, inside and
    outside the vector."""
    x, t = _random_vector(HILBERT, 20, seed=2)
    ansatz = make_autoregressive(HILBERT, "made", hidden=(8,), phase_hidden=(8,),
                                 prior=make_table(x, t, HILBERT.n_orbitals))
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(1), jnp.asarray(HILBERT.hartree_fock_state()))
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    flat = flat + 0.3 * jax.random.normal(jax.random.PRNGKey(2), flat.shape)
    states = jnp.asarray(np.asarray(HILBERT.all_states())[::7])

    def f(v):
        return jnp.sum(jnp.real(jax.vmap(ansatz.log_psi, in_axes=(None, 0))(unravel(v), states))
                       * jnp.arange(1, len(states) + 1))

    grad = jax.grad(f)(flat)
    rng = np.random.default_rng(3)
    for i in rng.choice(flat.size, 12, replace=False):
        e = jnp.zeros_like(flat).at[i].set(1e-6)
        fd = (f(flat + e) - f(flat - e)) / 2e-6
        assert abs(float(fd) - float(grad[i])) < 1e-5 * max(1.0, abs(float(fd)))


def test_too_many_orbitals_or_repeats_are_one_line_errors():
    big = FermionHilbert(33, 1, 1)
    x = np.asarray(big.hartree_fock_state())[None]
    with pytest.raises(InputError, match="at most 32"):
        make_table(x, np.ones(1), 33)
    x, t = _random_vector(HILBERT, 3)
    with pytest.raises(InputError, match="distinct"):
        make_table(np.concatenate([x, x[:1]]), np.r_[t, 1.0], HILBERT.n_orbitals)


def test_prior_start_end_to_end_and_resume(tmp_path, capsys):
    """``nqs molecule --start prior`` on H2O/STO-3G (sampled): the first step's energy is the
    selected vector's own (its eigenvalue in its space) within 0.1 mHa, the run writes
    ``prior.npz``, a resumed run continues where an uninterrupted one goes, and the run loads
    back."""
    from nqs.cli import main
    from nqs.commands.load import load_run

    common = ["molecule", "--molecule", "H2O", "--sampler", "autoregressive", "--hidden", "16",
              "--start", "prior", "--start-rounds", "1", "--samples", "20000",
              "--prior-fit-steps", "0"]
    straight, first = tmp_path / "straight", tmp_path / "resumed"
    assert main([*common, "--steps", "4", "--out", str(straight)]) == 0
    out = capsys.readouterr().out
    assert "under the network's correction" in out
    result = json.loads((straight / "result.json").read_text())
    e_var = result["start"]["e_var"]
    log = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert abs(log[0]["energy"] - e_var) < 1e-4  # the floor's share and sampling
    assert (straight / "prior.npz").is_file()
    assert main([*common, "--steps", "2", "--out", str(first)]) == 0
    assert main([*common, "--steps", "4", "--out", str(first), "--resume"]) == 0
    resumed = [json.loads(line) for line in (first / "log.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([r["energy"] for r in resumed], [r["energy"] for r in log],
                               rtol=0, atol=1e-10)  # as the other resume tests: to rounding
    loaded = load_run(straight)  # with its prior: the checkpoint's state, not the network's
    hf = jnp.asarray(loaded.operator.hilbert.hartree_fock_state())[None]
    assert loaded.step == 4
    # Hartree-Fock's weight in the vector (~0.97), not the bare network's (~4^-7)
    assert np.abs(_psi(loaded.state.ansatz, loaded.state.params, hf)[0]) ** 2 > 0.9


def test_first_order_fit_lowers_the_energy_below_the_vector():
    """N2 / STO-3G (14400 determinants, exact energies) from a small selected vector (CISD and
    one quarter-sized round, 4.1 mHa above FCI): the prior state is the vector's energy up to
    the floor's share, and the network's fit to the first-order amplitudes outside it takes
    the exact energy below the vector's by more than 2 mHa (1.68 mHa above FCI)."""
    from pyscf.fci import direct_spin1

    from hamiltonians.molecule import compute_integrals, from_preset
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.bench.fci import Settings, _first_order_fit, _prior_start, build_problem
    from nqs.exact import exact_data, exact_energy_fn, sparse_hamiltonian

    integrals, _ = compute_integrals(from_preset("N2", basis="sto-3g"))
    e_fci = direct_spin1.FCI().kernel(integrals.h1, integrals.h2, integrals.n_orbitals,
                                      (integrals.n_alpha, integrals.n_beta),
                                      ecore=integrals.e_core)[0]
    settings = Settings(ansatz="autoregressive", sampler="autoregressive", hidden=(32,),
                        start="prior", start_rounds=1, start_grow=0.25, prior_fit_steps=300,
                        prior_external=2000)
    table, target = _prior_start(MolecularHamiltonian(integrals), settings, lambda _: None)
    hamiltonian, _, ansatz, _, _ = build_problem(integrals, settings, prior=table)
    energy = jax.jit(exact_energy_fn(ansatz))
    data = exact_data(sparse_hamiltonian(hamiltonian))
    x0 = jnp.asarray(hamiltonian.hilbert.hartree_fock_state())
    e_prior = float(np.real(energy(jax.jit(ansatz.init)(jax.random.PRNGKey(0), x0), data)[0]))
    assert 3e-3 < target[2] - e_fci and abs(e_prior - target[2]) < 1e-4
    fitted = _first_order_fit(ansatz, hamiltonian, target, settings, lambda _: None)
    e_fit = float(np.real(energy(fitted, data)[0]))
    assert e_fci < e_fit < e_prior - 2e-3


def test_first_order_amplitudes_from_part_of_the_vector_stay_outside_it(monkeypatch):
    """When a pass over the whole vector is too long, the numerators come from its largest
    determinants; the determinants returned are still outside the whole vector, and the
    largest amplitudes match the full pass's where both see the same sources."""
    import nqs.models.ar_pretrain as ar_pretrain
    from hamiltonians.molecule import compute_integrals, from_preset
    from hamiltonians.second_quantized import MolecularHamiltonian

    integrals, _ = compute_integrals(from_preset("N2", basis="sto-3g"))
    hamiltonian = MolecularHamiltonian(integrals)
    info: dict = {}
    x, c = ar_pretrain.selected_target(hamiltonian, rounds=1, grow=0.25, info=info)
    x, c = np.asarray(x), np.asarray(c)
    full_y, full_a = ar_pretrain.first_order_amplitudes(hamiltonian, x, c, info["e_var"], 500)
    monkeypatch.setattr(ar_pretrain, "MAX_ROUND_ROWS", 20 * int(hamiltonian.max_conn))
    y, a = ar_pretrain.first_order_amplitudes(hamiltonian, x, c, info["e_var"], 500)
    inside = set(configuration_keys(x, hamiltonian.hilbert).tolist())
    assert len(a) > 0 and not inside & set(configuration_keys(y, hamiltonian.hilbert).tolist())
    assert np.sum(a**2) < 2 * np.sum(full_a**2)  # the 20 largest carry most of the numerators


def test_pyscf_start_is_its_vector_in_the_project_conventions(tmp_path, capsys):
    """``--start-selection pyscf`` on H2O / STO-3G (sampled) at a cutoff that leaves most of
    the space out: the vector, written in the project's determinant order and signs, has
    PySCF's energy under the project's own Hamiltonian (so no determinant's sign is lost), and
    the run's first energy is that vector's."""
    import scipy.sparse as sparse

    from hamiltonians.large_reference import sci_vector
    from hamiltonians.molecule import compute_integrals, from_preset
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.cli import main
    from nqs.exact import sparse_hamiltonian

    integrals, _ = compute_integrals(from_preset("H2O"))
    v = sci_vector(integrals, 2e-2)
    op = MolecularHamiltonian(integrals)
    h = sparse_hamiltonian(op)
    states = np.asarray(h.states)
    assert 10 < len(v.c) < len(states) // 4
    full = np.zeros(len(states))
    where = {k: i for i, k in enumerate(configuration_keys(states, op.hilbert))}
    full[[where[k] for k in configuration_keys(v.x, op.hilbert)]] = v.c
    matrix = sparse.csr_matrix((h.vals, (h.rows, h.cols)), shape=(len(states),) * 2)
    assert float(full @ (matrix @ full)) == pytest.approx(v.energy, abs=1e-10)
    assert np.linalg.norm(v.c) == pytest.approx(1.0, abs=1e-12)
    hf = np.asarray(op.hilbert.hartree_fock_state())
    assert v.c[np.all(v.x == hf, axis=1)][0] > 0

    out = tmp_path / "run"
    assert main(["molecule", "--molecule", "H2O", "--sampler", "autoregressive",
                 "--hidden", "16", "--start", "prior", "--start-selection", "pyscf",
                 "--start-sci-cutoff", "2e-2", "--samples", "20000", "--prior-fit-steps", "0",
                 "--steps", "1", "--out", str(out)]) == 0
    assert "pyscf selected CI" in capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert result["start"]["selection"] == "pyscf"
    assert result["start"]["e_var"] == pytest.approx(v.energy, abs=1e-9)
    first = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert abs(first["energy"] - v.energy) < 1e-4  # the floor's share and sampling


def test_auto_selection_takes_pyscf_only_past_cipsi_rounds():
    """``auto``: CIPSI for H2O / 6-31G and N2 / cc-pVDZ frozen core (26 orbitals, CISD 15436
    determinants, max_conn 15436: a pass over its first round is 4.8e8 connections), PySCF's
    selected CI where that pass is past MAX_ROUND_ROWS (40 orbitals, 7 + 7 electrons: CISD
    76000, 1.2e10); a wrong name is one line."""
    from types import SimpleNamespace

    from nqs.bench.fci import _cisd_size, choose_selection

    n2_dz = SimpleNamespace(hilbert=FermionHilbert(26, 5, 5), max_conn=15436)
    big = SimpleNamespace(hilbert=FermionHilbert(40, 7, 7), max_conn=76000)
    h2o = SimpleNamespace(hilbert=FermionHilbert(13, 5, 5), max_conn=2000)
    assert _cisd_size(n2_dz.hilbert) == 15436 and _cisd_size(big.hilbert) == 76000
    assert choose_selection(n2_dz, "auto", 1.0) == "cipsi"
    assert choose_selection(big, "auto", 1.0) == "pyscf"
    assert choose_selection(h2o, "auto", 1.0) == "cipsi"
    assert choose_selection(h2o, "pyscf", 1.0) == "pyscf"
    with pytest.raises(InputError, match="unknown selection"):
        choose_selection(h2o, "heat-bath", 1.0)


def test_selected_vector_is_h_root_in_its_space_and_merging_changes_nothing(monkeypatch):
    """N2 / STO-3G, CISD and one round: the vector's Rayleigh quotient under the whole sparse
    Hamiltonian is the selection's E0, and H c has no component inside the space beyond E0 c
    (the block-built CSR and its symmetric part are H's block); the external numerators are
    the same when their connections are merged every few entries."""
    import scipy.sparse as sparse

    import nqs.models.ar_pretrain as ar_pretrain
    from hamiltonians.molecule import compute_integrals, from_preset
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.exact import sparse_hamiltonian

    integrals, _ = compute_integrals(from_preset("N2", basis="sto-3g"))
    op = MolecularHamiltonian(integrals)
    info: dict = {}
    x, c = ar_pretrain.selected_target(op, rounds=1, grow=0.25, info=info)
    x, c = np.asarray(x), np.asarray(c)
    h = sparse_hamiltonian(op)
    states = np.asarray(h.states)
    where = {k: i for i, k in enumerate(configuration_keys(states, op.hilbert))}
    index = np.array([where[k] for k in configuration_keys(x, op.hilbert)])
    full = np.zeros(len(states))
    full[index] = c
    matrix = sparse.csr_matrix((h.vals, (h.rows, h.cols)), shape=(len(states),) * 2)
    h_c = matrix @ full
    assert 100 < len(c) < len(states) // 10
    assert float(full @ h_c) == pytest.approx(info["e_var"], abs=1e-10)
    np.testing.assert_allclose(h_c[index], info["e_var"] * c, atol=1e-8)

    keys, values = ar_pretrain.external_numerators(op, x, c)
    monkeypatch.setattr(ar_pretrain, "MERGE_EVERY", 97)
    merged_keys, merged_values = ar_pretrain.external_numerators(op, x, c, max_rows=4096)
    np.testing.assert_array_equal(merged_keys, keys)
    np.testing.assert_allclose(merged_values, values, rtol=0, atol=1e-13)
    outside = np.setdiff1d(np.arange(len(states)), index)
    # the numerators are H c outside the space (above the screen)
    expected = h_c[outside][np.abs(h_c[outside]) > 1e-6]
    got = values[np.abs(values) > 1e-6]
    np.testing.assert_allclose(np.sort(got), np.sort(expected), atol=1e-9)
