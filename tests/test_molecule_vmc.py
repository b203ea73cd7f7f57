"""Molecules end to end: VMC reaches FCI, exact sums equal sample estimates, CLI errors."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import nqs  # noqa: F401
from hamiltonians.chem_reference import fci_from_integrals
from hamiltonians.molecule import compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.cli import main
from nqs.exact import make_exact_estimator, sparse_hamiltonian
from nqs.io import read_jsonl
from nqs.local_energy import make_local_energy
from nqs.models.backflow import make_backflow
from nqs.models.rbm import make_rbm
from nqs.optim.flat import real_flat
from nqs.sampling import HopRule, MetropolisSampler
from nqs.stats import statistics


@pytest.fixture(scope="module")
def lih():
    integrals, _ = compute_integrals(from_preset("LiH"))
    return integrals, MolecularHamiltonian(integrals)


def test_h2_vmc_reaches_fci(tmp_path):
    from nqs.bench.fci import Settings, solve

    integrals, _ = compute_integrals(from_preset("H2"))
    e_fci, _ = fci_from_integrals(integrals)
    result, mode = solve(integrals, Settings(steps=150, sampler="exact"), tmp_path,
                         lambda m: None)
    assert mode == "exact"
    assert result.energy >= e_fci - 1e-9  # variational
    assert (result.energy - e_fci) * 1e3 < 0.1


@pytest.mark.parametrize("kind", ["backflow", "rbm"])
def test_exact_sum_equals_sample_estimate(lih, kind):
    integrals, ham = lih
    hilbert = ham.hilbert
    if kind == "backflow":
        ansatz = make_backflow(hilbert, hidden=(16,), init_scale=0.3)
    else:
        ansatz = make_rbm(hilbert.n_sites, alpha=1, flip_constant=1.0, init_scale=0.3)
    # jitted: one compiled init program instead of op-by-op dispatch of the backflow's
    # unrolled LU (~100 small compilations); the same numbers
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), hilbert.hartree_fock_state())
    exact = make_exact_estimator(ansatz, sparse_hamiltonian(ham), needs_jacobian=False)(params)
    sampler = MetropolisSampler(hilbert, HopRule(((0, 1, 2, 3, 4, 5), (6, 7, 8, 9, 10, 11))),
                                n_chains=64, n_samples=4096, n_discard_sweeps=10)
    # the chains' initial log psi in one compiled program, not op by op
    state = jax.jit(sampler.init, static_argnums=1)(jax.random.PRNGKey(1), ansatz, params)
    samples, _, _ = sampler.sample(jax.random.PRNGKey(2), ansatz, params, state)
    # one compiled program, not op-by-op dispatch of the un-jitted vmap (5x less CPU)
    e_loc = jax.jit(jax.vmap(make_local_energy(ham, ansatz), in_axes=(None, 0)))(params,
                                                                                 samples.x)
    stats = statistics(e_loc, samples.weights, sampler.n_chains)
    diff = abs(float(np.real(stats.mean)) - float(np.real(exact.energy)))
    assert diff < 4 * float(stats.error_of_mean) + 1e-8


def test_exact_energy_of_the_fci_vector_is_fci(lih):
    """The sparse H of the exact-summation path has the FCI ground state energy."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    integrals, ham = lih
    h = sparse_hamiltonian(ham)
    n = len(h.states)
    mat = sp.csr_matrix((h.vals, (h.rows, h.cols)), shape=(n, n))
    e0 = spla.eigsh(mat, k=1, which="SA")[0][0]
    assert abs(e0 - fci_from_integrals(integrals)[0]) < 1e-8


def test_hf_initialised_backflow_starts_near_hf(lih):
    integrals, ham = lih
    ansatz = make_backflow(ham.hilbert)
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), ham.hilbert.hartree_fock_state())
    energy = make_exact_estimator(ansatz, sparse_hamiltonian(ham), needs_jacobian=False)(params)
    e0 = float(np.real(energy.energy))
    # the small random perturbation of the HF orbitals costs a few tens of mHa at most
    assert abs(e0 - integrals.hf_energy()) < 3e-2
    assert e0 > fci_from_integrals(integrals)[0]
    assert np.isfinite(np.asarray(real_flat(params)[0])).all()


BAD = [
    (["--molecule", "Xx 0 0 0"], "element"),
    (["--molecule", "H 0 0 0", "--spin", "0"], "spin"),
    (["--molecule", "H 0 0 0; H 0 0 0"], "atoms"),
    (["--molecule", "H2", "--basis", "no-such-basis"], "basis"),
    (["--molecule", "H2", "--cas", "2", "8"], "cas"),
    (["--fcidump", "/nonexistent/FCIDUMP"], "fcidump"),
    (["--molecule", "H2", "--plateau", "-1e-5"], "plateau"),
]


@pytest.mark.parametrize("args,word", BAD, ids=[b[1] for b in BAD])
def test_bad_molecule_input_one_line_exit_2(args, word, capsys, tmp_path):
    try:
        code = main(["bench-fci", *args, "--steps", "1", "--out", str(tmp_path)])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert word in err.lower(), err


def test_molecule_stops_on_its_plateau(tmp_path, capsys):
    """H2's fitted start is exact: the energy is flat from the first step, and the run ends
    after 25 + 150 steps instead of 400, checkpointed, with the record saying why."""
    code = main(["molecule", "--molecule", "H2", "--steps", "400", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "on a plateau" in out and "after step 175 of 400" in out
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["steps"] == 175 and res["stopped_on_plateau"] and not res["stopped_by_time_limit"]
    assert abs(res["error_mha"]) < 0.1


def test_bench_fci_writes_results(tmp_path, capsys):
    code = main(["bench-fci", "--molecule", 'H2="H 0 0 0; H 0 0 0.734"', "--steps", "60",
                 "--out", str(tmp_path)])
    assert code == 0
    records = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in records] == ["H2"]
    for key in ("name", "basis", "n_spin_orbitals", "n_electrons", "n_determinants", "e_hf",
                "e_ccsd_t", "e_fci", "e_ref", "e_ref_error", "reference", "ref_wall_time_s",
                "e_nqs", "e_nqs_error", "error_mha", "chemical_accuracy", "sampler",
                "nqs_wall_time_s", "wall_time_s"):
        assert key in records[0]
    assert records[0]["sampler"] == "autoregressive"  # the default at every size
    assert records[0]["reference"] == "fci" and records[0]["e_ref"] == records[0]["e_fci"]
    assert records[0]["nqs_wall_time_s"] < records[0]["wall_time_s"]
    for name in ("results.md", "errors.png", "times.png"):
        assert (tmp_path / name).exists()
    stdout = capsys.readouterr().out
    assert "E(NQS)-E(ref)" in stdout
    assert "H2: geometry (angstrom) H 0 0 0; H 0 0 0.734" in stdout
    assert records[0]["provenance"]["geometry"] == {"atoms": "H 0 0 0; H 0 0 0.734",
                                                    "unit": "angstrom"}
    assert records[0]["config"]["options"]["steps"] == 60
    assert records[0]["provenance"]["command_line"].startswith("nqs bench-fci --molecule")


@pytest.mark.parametrize("optimizer", ["adam", "sr"])
def test_deduplicated_step_equals_plain_step(lih, optimizer):
    """Evaluating each distinct configuration once changes nothing but the cost."""
    from nqs.optim import make_optimizer
    from nqs.vmc import make_vmc

    _, ham = lih
    hilbert = ham.hilbert
    # init_scale 0.3: far from Hartree-Fock, many distinct draws; the same ansatz, sampler and
    # (adam) step as tests/test_dtype.py's LiH float64 run (one compilation for both)
    ansatz = make_backflow(hilbert, hidden=(8,), init_scale=0.3)
    sampler = MetropolisSampler(hilbert, HopRule(((0, 1, 2, 3, 4, 5), (6, 7, 8, 9, 10, 11))),
                                n_chains=16, n_samples=256)
    opt = make_optimizer(optimizer, 1e-2)
    init, plain = make_vmc(ansatz, ham, sampler, opt)
    _, dedup = make_vmc(ansatz, ham, sampler, opt, dedupe=True)
    state = init(jax.random.PRNGKey(0))
    a, info_a = jax.jit(plain)(state)
    b, info_b = dedup(state)
    np.testing.assert_allclose(float(info_a.energy), float(info_b.energy), rtol=1e-12)
    np.testing.assert_allclose(float(info_a.energy_error), float(info_b.energy_error), rtol=1e-8)
    np.testing.assert_allclose(np.asarray(real_flat(a.params)[0]),
                               np.asarray(real_flat(b.params)[0]), rtol=1e-8, atol=1e-12)


def test_h2_monte_carlo_reaches_chemical_accuracy(tmp_path):
    """Metropolis (pair hops, de-duplicated samples) rather than exact summation."""
    from nqs.bench.fci import Settings, solve

    integrals, _ = compute_integrals(from_preset("H2"))
    e_fci, _ = fci_from_integrals(integrals)
    # the step energies stay within chemical accuracy from step 44 (this seed, 0) or 88 (seed 3)
    # on; 120-step runs ended 0.003 +- 0.012 and 0.12 +- 0.06 mHa above FCI (seeds 0, 3), so
    # 150 steps (300 before) leave a wide margin to the 1.6 mHa bound
    settings = Settings(sampler="mcmc", samples=1024, steps=150)
    result, mode = solve(integrals, settings, tmp_path, lambda m: None)
    assert mode == "mcmc"
    assert abs(result.energy - e_fci) * 1e3 < 1.6
    assert result.energy > e_fci - 4 * result.energy_error - 1e-6


def test_hartree_fock_sector_is_a_block_of_h():
    """The HF symmetry block (parity integrals: a Z2 "point group") is closed under H and
    smaller than the whole space, and exact summation over it gives the energy of psi
    restricted to the block."""
    import scipy.sparse as sp
    from test_connected_rule import parity_integrals

    from hamiltonians.molecule import MolecularIntegrals
    from nqs.exact import make_exact_energy
    from nqs.problems import hartree_fock_sector

    h1, h2 = parity_integrals(4, seed=1)
    ints = MolecularIntegrals(h1, 0.1 * h2, 0.0, 4, 2, 2)
    ham = MolecularHamiltonian(ints)
    sector = hartree_fock_sector(ham)
    full = sparse_hamiltonian(ham)
    block = sparse_hamiltonian(sector)
    n_full, n_block = len(full.states), len(block.states)
    assert 1 < n_block < n_full
    dense_full = sp.coo_matrix((full.vals, (full.rows, full.cols)), (n_full, n_full)).toarray()
    dense_block = sp.coo_matrix((block.vals, (block.rows, block.cols)),
                                (n_block, n_block)).toarray()
    eig_full = np.linalg.eigvalsh(dense_full)
    eig_block = np.linalg.eigvalsh(dense_block)
    # block eigenvalues are eigenvalues of H (no element leaves the block)
    assert all(np.min(np.abs(eig_full - e)) < 1e-9 for e in eig_block)
    # exact energy over the block = <psi P H P psi> / <psi P psi>, computed densely
    ansatz = make_backflow(ham.hilbert, hidden=(8,), init_scale=0.3)
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), ham.hilbert.hartree_fock_state())
    log_psi = jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))  # one program, not op by op
    psi = np.exp(np.asarray(log_psi(params, block.states)))
    expected = np.real(np.conj(psi) @ dense_block @ psi / np.vdot(psi, psi))
    energy, _ = make_exact_energy(ansatz, block)(params)
    np.testing.assert_allclose(float(np.real(energy)), expected, rtol=1e-10)


def test_cosine_schedule_decays_the_step():
    """Adam's first step is lr per coordinate; with the cosine schedule the step at the end of
    the run is final_lr_fraction * lr."""
    import jax.numpy as jnp

    from nqs.bench.fci import Settings, make_scheduled_optimizer

    settings = Settings(optimizer="adam", learning_rate=1e-2, steps=10, lr_schedule="cosine",
                        final_lr_fraction=0.2)
    tx = make_scheduled_optimizer(settings).transformation
    params = jnp.zeros(3)
    state = tx.init(params)
    steps = []
    for _ in range(11):
        update, state = tx.update(jnp.ones(3), state, params)
        steps.append(float(jnp.abs(update[0])))
    np.testing.assert_allclose(steps[0], 1e-2, rtol=1e-6)
    np.testing.assert_allclose(steps[10], 2e-3, rtol=1e-6)
    assert all(a >= b for a, b in zip(steps, steps[1:], strict=False))


def test_weighted_deduplicated_step_equals_plain_step(lih):
    """With |psi|^(2q) sampling the de-duplicated step still equals the plain weighted step."""
    from nqs.optim import make_optimizer
    from nqs.sampling import ConnectedRule
    from nqs.vmc import make_vmc

    integrals, ham = lih
    ansatz = make_backflow(ham.hilbert, hidden=(8,), init_scale=0.3)
    rule = ConnectedRule.from_integrals(integrals.h1, integrals.h2)
    sampler = MetropolisSampler(ham.hilbert, rule, n_chains=16, n_samples=256, power=0.5)
    opt = make_optimizer("adam", 1e-2)
    init, plain = make_vmc(ansatz, ham, sampler, opt)
    _, dedup = make_vmc(ansatz, ham, sampler, opt, dedupe=True)
    state = init(jax.random.PRNGKey(0))
    a, info_a = jax.jit(plain)(state)
    b, info_b = dedup(state)
    np.testing.assert_allclose(float(info_a.energy), float(info_b.energy), rtol=1e-12)
    np.testing.assert_allclose(float(info_a.energy_error), float(info_b.energy_error), rtol=1e-8)
    np.testing.assert_allclose(np.asarray(real_flat(a.params)[0]),
                               np.asarray(real_flat(b.params)[0]), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("args,word", [
    (["--sampling-power", "1.5"], "power"),
    (["--lr-schedule", "cosine", "--final-lr-fraction", "2"], "fraction"),
])
def test_bad_monte_carlo_options_exit_2(args, word, capsys, tmp_path):
    try:
        code = main(["bench-fci", "--molecule", "H2", *args, "--steps", "1", "--out",
                     str(tmp_path)])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert word in err.lower(), err


def test_init_from_continues_from_another_runs_parameters(tmp_path, capsys):
    """``nqs molecule --init-from RUN``: a new run (here with another learning rate) starts at
    the parameters of RUN's checkpoint, so its first energy is RUN's final one (to 1e-9: the
    final one is summed over all 4 determinants, the step's over the 2 that 1e5 draws find, the
    others weighing about 1e-10); a checkpoint of another ansatz size is refused in one line
    with exit 2."""
    first, second = tmp_path / "a", tmp_path / "b"
    # the fitted start: the selected vector's prior would give the two other determinants a
    # floor-sized weight (1e-6), which the step's 1e5 draws do not see
    base = ["molecule", "--molecule", "H2", "--steps", "3", "--hidden", "8", "--start",
            "selected"]
    assert main([*base, "--out", str(first)]) == 0
    assert main([*base, "--lr", "1e-3", "--init-from", str(first), "--out", str(second)]) == 0
    capsys.readouterr()
    final = json.loads((first / "result.json").read_text())["energy"]
    log = [json.loads(line) for line in (second / "log.jsonl").read_text().splitlines()]
    assert abs(log[0]["energy"] - final) < 1e-9

    code = main(["molecule", "--molecule", "H2", "--steps", "1", "--hidden", "16",
                 "--init-from", str(first), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "checkpoint" in err[0], err
    assert not list((tmp_path / "c").glob("*"))  # refused before anything was written


def _flip_orbital(integrals, k: int):
    """The same integrals with orbital ``k``'s sign flipped (what another SCF run may give)."""
    from dataclasses import replace

    s = np.ones(integrals.n_orbitals)
    s[k] = -1.0
    h1 = integrals.h1 * s[:, None] * s[None, :]
    h2 = integrals.h2 * np.einsum("p,q,r,s->pqrs", s, s, s, s)
    return replace(integrals, h1=h1, h2=h2)


def test_resume_and_init_from_read_the_runs_own_orbitals(tmp_path, capsys, monkeypatch):
    """PySCF may return the orbitals with other signs in another process, which changes the
    signs of the determinants the network learned. A resumed run and ``--init-from`` read the
    run's own ``integrals.npz`` back when it is the same Hamiltonian in other orbitals: the
    resumed run continues exactly (the energies of an uninterrupted run), the continued one
    starts at the final energy; a run of another geometry is refused in one line, exit 2."""
    import hamiltonians.molecule as molecule
    from hamiltonians.molecule import orbital_invariants, same_hamiltonian

    base = ["molecule", "--molecule", "H2", "--hidden", "8", "--start", "selected"]  # see above
    straight, first, second = tmp_path / "s", tmp_path / "a", tmp_path / "b"
    assert main([*base, "--steps", "5", "--out", str(straight)]) == 0
    assert main([*base, "--steps", "3", "--out", str(first)]) == 0
    compute = molecule.compute_integrals

    def flipped(*args, **kwargs):
        integrals, mf = compute(*args, **kwargs)
        return _flip_orbital(integrals, 1), mf

    monkeypatch.setattr(molecule, "compute_integrals", flipped)
    saved = molecule.load_npz(first / "integrals.npz")
    assert same_hamiltonian(saved, _flip_orbital(saved, 1))
    assert np.allclose(orbital_invariants(saved), orbital_invariants(_flip_orbital(saved, 1)))
    assert main([*base, "--steps", "5", "--resume", "--out", str(first)]) == 0
    assert main([*base, "--steps", "2", "--init-from", str(first), "--out", str(second)]) == 0
    capsys.readouterr()
    e_straight = [r["energy"] for r in read_jsonl(straight / "log.jsonl")]
    e_resumed = [r["energy"] for r in read_jsonl(first / "log.jsonl")]
    np.testing.assert_allclose(e_resumed, e_straight, rtol=0, atol=1e-10)
    final = json.loads((first / "result.json").read_text())["energy"]
    # the final energy is summed over all 4 determinants, the step's over those drawn
    assert abs(read_jsonl(second / "log.jsonl")[0]["energy"] - final) < 1e-9

    code = main(["molecule", "--molecule", "H 0 0 0; H 0 0 0.9", "--hidden", "8", "--steps", "1",
                 "--init-from", str(first), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "another Hamiltonian" in err[0], err
