"""Run by tests/conftest.py (fixture ``multi_device``) with 4 simulated CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=4): ``python multi_device_check.py CHECK ...``.

Every check runs the same computation on a mesh of 1 device and of 4 devices (and chunked or
not) and prints one JSON object of differences and flags; tests/test_parallel.py,
tests/test_exact_parallel.py and tests/test_sr_structured.py assert on them. One process for all
checks keeps the suite fast (the device count is fixed when JAX starts; the interpreter, JAX and
PySCF start once).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401
from nqs.parallel import (
    auto_chunk_size,
    bytes_per_sample,
    gather,
    make_mesh,
    put,
    replicated,
    sample_sharding,
    tree_shardings,
)


def maxdiff(a, b) -> float:
    la, lb = jax.tree_util.tree_leaves(gather(a)), jax.tree_util.tree_leaves(gather(b))
    assert len(la) == len(lb)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) if np.size(x) else 0.0
               for x, y in zip(la, lb, strict=True))


def history_diff(r1, r2, keys=("energy", "variance", "energy_error", "grad_norm")) -> float:
    return max(abs(h1[k] - h2[k]) for h1, h2 in zip(r1.history, r2.history, strict=False)
               for k in keys if k in h1)


def spin_checks(out: dict, mesh1, mesh4) -> None:
    from hamiltonians.spin import make_spin_model
    from nqs.driver import run_vmc
    from nqs.optim import make_optimizer
    from nqs.problems import spin_ansatz, spin_sampler

    model = make_spin_model(model="ising", lattice="chain", size=8, pbc=True, h=1.0, j2=0.5,
                            delta=1.0, marshall_sign=False)
    ansatz = spin_ansatz(model, "rbm", 1.0, complex_params=True)
    sampler = spin_sampler(model, "mcmc", 64, 8, 2)

    def run(mesh, chunk=None, **kw):
        return run_vmc(ansatz, model, sampler, make_optimizer("sr", 0.05, 0.01), kw.pop("n", 2),
                       seed=3, n_eval_batches=kw.pop("n_eval", 0), chunk_size=chunk, mesh=mesh,
                       **kw)

    r1 = run(mesh1, n=3)  # uninterrupted, one device
    with tempfile.TemporaryDirectory() as d:
        r4 = run(mesh4, n=2, out_dir=d)  # four devices, checkpoint at step 2
        resumed = run(mesh1, n=3, out_dir=d, resume=True)  # ... resumed on one device
    r4c = run(mesh4, 3, n=2)
    out["spin_energy"] = r1.history[-1]["energy"]
    out["spin_hist_1v4"] = history_diff(r1, r4)  # the first two steps
    out["spin_hist_chunk"] = history_diff(r4, r4c)
    out["spin_params_chunk"] = maxdiff(r4.params, r4c.params)
    out["spin_n_devices"] = [r1.n_devices, r4.n_devices]
    out["spin_summary_keys"] = sorted(r4.summary())
    # the resumed run equals the uninterrupted one: parameters after 3 steps and the history
    out["spin_params_1v4"] = maxdiff(resumed.params, r1.params)
    out["spin_resume_4to1"] = maxdiff(resumed.params, r1.params)
    out["spin_resume_hist"] = history_diff(resumed, r1, ("energy",))
    # the number of chains must split over the devices
    try:
        run_vmc(ansatz, model, spin_sampler(model, "mcmc", 60, 6, 2),
                make_optimizer("sr", 0.05, 0.01), 1, mesh=mesh4)
        out["spin_indivisible_error"] = None
    except Exception as e:  # noqa: BLE001
        out["spin_indivisible_error"] = f"{type(e).__name__}: {e}"


def molecule_checks(out: dict, mesh1, mesh4) -> None:
    from hamiltonians.molecule import compute_integrals, parse_molecule
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.driver import run_vmc
    from nqs.optim import make_optimizer
    from nqs.problems import molecule_ansatz, molecule_sampler

    integrals, _ = compute_integrals(parse_molecule("LiH"))
    ham = MolecularHamiltonian(integrals)
    sampler, _ = molecule_sampler(ham.hilbert, "mcmc", 32, 8)
    ansatz = molecule_ansatz(ham.hilbert, "backflow", alpha=2.0, hidden=(8,), n_determinants=1,
                             init_scale=0.3)

    def run(mesh, chunk=None, dedupe=True):
        return run_vmc(ansatz, ham, sampler, make_optimizer("minsr", 0.02, 1e-3), 2, seed=1,
                       n_eval_batches=0, chunk_size=chunk, mesh=mesh, dedupe=dedupe)

    r1, r4, r4c = run(mesh1), run(mesh4), run(mesh4, 5)
    out["mol_energy"] = r1.history[-1]["energy"]
    out["mol_hist_1v4"] = history_diff(r1, r4)
    out["mol_params_1v4"] = maxdiff(r1.params, r4.params)
    out["mol_hist_chunk"] = history_diff(r4, r4c)
    out["mol_params_chunk"] = maxdiff(r4.params, r4c.params)


def realspace_checks(out: dict, mesh1, mesh4) -> None:
    from hamiltonians.realspace import make_atoms, make_local_energy
    from nqs.models.electrons import with_dtype
    from nqs.models.ferminet import make_ferminet
    from nqs.optim import scheduled_optimizer
    from nqs.realspace.mcmc import MCMCState, init_walkers
    from nqs.realspace.train import make_kfac_vmc
    from nqs.vmc import WalkerState, make_walker_vmc

    atoms = make_atoms("He 0 0 0", unit="bohr")
    init, apply = make_ferminet(atoms, 1, 1, layers=((4, 2),), n_determinants=1)
    e_loc_fn = make_local_energy(apply, atoms, "folx")
    key = jax.random.PRNGKey(0)
    params = init(key)
    walkers = init_walkers(key, atoms, 16)

    def run(factory, mesh, chunk=None):
        vmc = factory(apply, e_loc_fn, mcmc_steps=2, chunk_size=chunk, mesh=mesh)
        fresh = jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), params)  # KFAC donates
        state = vmc.init(key, fresh, walkers, 0.2)
        shard = WalkerState(tree_shardings(state.params, mesh, None),
                         tree_shardings(state.opt_state, mesh, None),
                         MCMCState(sample_sharding(mesh), sample_sharding(mesh), replicated(mesh)))
        state = put(state, shard)
        energies = []
        for k in range(2):
            state, stats = vmc.step(jax.random.PRNGKey(10 + k), state)
            energies.append([float(stats["energy"]), float(stats["variance"])])
        return np.asarray(energies), gather(state.params), gather(state.mcmc.r)

    def make_sr_vmc(*args, **kw):  # minSR as the driver builds it
        return make_walker_vmc(*args, scheduled_optimizer("sr", 0.05, 1000.0), **kw)

    # minSR: one device unchunked vs four devices chunked (3 walkers per device at a time)
    s1, s4c = run(make_sr_vmc, mesh1), run(make_sr_vmc, mesh4, 3)
    out["rs_energy"] = float(s1[0][-1, 0])
    out["rs_sr_1v4"] = max(float(np.max(np.abs(s1[0] - s4c[0]))), maxdiff(s1[1], s4c[1]),
                           maxdiff(s1[2], s4c[2]))
    k1, k4 = run(make_kfac_vmc, mesh1), run(make_kfac_vmc, mesh4, 5)
    out["rs_kfac_1v4"] = max(float(np.max(np.abs(k1[0] - k4[0]))), maxdiff(k1[1], k4[1]))

    # float32 network, float64 determinants and energies: same parameters, same walkers
    apply32 = with_dtype(apply, "float32")
    e32_fn = make_local_energy(apply32, atoms, "folx")
    r = put(init_walkers(jax.random.PRNGKey(5), atoms, 256), sample_sharding(mesh4))
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    e64 = np.asarray(jax.jit(jax.vmap(e_loc_fn, in_axes=(None, 0)))(params, r))
    e32 = np.asarray(jax.jit(jax.vmap(e32_fn, in_axes=(None, 0)))(p32, r))
    out["f32_dtype"] = str(e32.dtype)
    out["f32_mean_diff"] = float(abs(e32.mean() - e64.mean()))
    out["f32_error_of_mean"] = float(e64.std() / np.sqrt(e64.size))


def memory_checks(out: dict, mesh4) -> None:
    """4096 LiH walkers through the local energy and the per-walker gradient with a memory
    budget that the unchunked batch exceeds: the chunk picked for the budget fits it."""
    from hamiltonians.realspace import make_atoms, make_local_energy
    from nqs.models.ferminet import make_ferminet
    from nqs.parallel import chunked_map
    from nqs.realspace.mcmc import init_walkers

    atoms = make_atoms("Li 0 0 0; H 0 0 3.015", unit="bohr")
    init, apply = make_ferminet(atoms, 2, 2, layers=((8, 4),), n_determinants=1)
    e_loc_fn = make_local_energy(apply, atoms, "folx")
    params = init(jax.random.PRNGKey(1))
    walkers = put(init_walkers(jax.random.PRNGKey(2), atoms, 4096), sample_sharding(mesh4))
    per_walker = bytes_per_sample(e_loc_fn, params, walkers[0])
    budget = per_walker * 4096 // 4 // 8  # an eighth of what one device's 1024 walkers need
    chunk = auto_chunk_size(per_walker, 4096, mesh4, budget_bytes=budget, fraction=1.0)

    def energy_and_grad(p, r):
        e = chunked_map(e_loc_fn, chunk, mesh4)(p, r)
        g = chunked_map(jax.grad(lambda q, x: apply(q, x)[1]), chunk, mesh4)(p, r)
        return jnp.mean(e), jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), g)

    compiled = jax.jit(energy_and_grad).lower(params, walkers).compile()
    mem = compiled.memory_analysis()
    energy, grad = compiled(params, walkers)
    out["mem_chunk"] = chunk
    out["mem_budget_per_device"] = budget
    out["mem_unchunked_estimate_per_device"] = per_walker * 4096 // 4
    # the whole 4-device program's temporaries, divided over the devices
    out["mem_chunked_temp_per_device"] = int(mem.temp_size_in_bytes) // 4
    out["mem_finite"] = bool(np.isfinite(float(energy))) and all(
        bool(np.all(np.isfinite(np.asarray(g)))) for g in jax.tree_util.tree_leaves(grad))


def exact_checks(out: dict, mesh1, mesh4) -> None:
    """Exact summation split over 4 devices (states padded 225 -> 228 for LiH) against one
    device: energies, variances, gradients, the SR matrix, whole runs (molecules with SR, spins
    with minSR)."""
    from hamiltonians.molecule import compute_integrals, parse_molecule
    from hamiltonians.second_quantized import MolecularHamiltonian
    from hamiltonians.spin import make_spin_model
    from nqs.driver import run_vmc
    from nqs.exact import exact_data, exact_energy_fn, exact_estimate_fn, sparse_hamiltonian
    from nqs.optim import make_optimizer
    from nqs.problems import molecule_ansatz, molecule_sampler, spin_ansatz, spin_sampler

    integrals, _ = compute_integrals(parse_molecule("LiH"))
    ham = MolecularHamiltonian(integrals)
    ansatz = molecule_ansatz(ham.hilbert, "backflow", hidden=(4,), init_scale=0.3)
    params = ansatz.init(jax.random.PRNGKey(0), jnp.asarray(ham.hilbert.hartree_fock_state()))
    sparse = sparse_hamiltonian(ham)
    data1, data4 = exact_data(sparse), exact_data(sparse, mesh4)
    out["exact_n_states"] = [int(data1.states.shape[0]), int(data4.states.shape[0])]
    out["exact_states_sharded"] = len(data4.states.sharding.device_set)
    diffs = {}
    for needs_jacobian in (False, True):
        one = jax.jit(exact_estimate_fn(ansatz, needs_jacobian=needs_jacobian))(params, data1)
        for chunk in (None, 16):
            fn = exact_estimate_fn(ansatz, needs_jacobian=needs_jacobian, chunk_size=chunk,
                                   mesh=mesh4)
            four = jax.jit(fn)(params, data4)
            d = max(abs(complex(one.energy) - complex(four.energy)),
                    abs(float(one.variance) - float(four.variance)), maxdiff(one.grad, four.grad))
            if needs_jacobian:  # S = J^T J, whatever the (padded) number of rows
                s1 = np.asarray(one.jacobian.T @ one.jacobian)
                s4 = np.asarray(four.jacobian.T @ four.jacobian)
                d = max(d, float(np.max(np.abs(s1 - s4))))
            diffs[f"jac={needs_jacobian},chunk={chunk}"] = d
    out["exact_estimate_1v4"] = diffs
    out["exact_grad_norm"] = float(np.linalg.norm(np.asarray(one.grad)))
    e1 = jax.jit(exact_energy_fn(ansatz))(params, data1)
    e4 = jax.jit(exact_energy_fn(ansatz, 8, mesh4))(params, data4)
    out["exact_energy"] = float(np.real(e1[0]))
    out["exact_energy_1v4"] = max(abs(complex(e1[0]) - complex(e4[0])), abs(float(e1[1] - e4[1])))

    # whole runs through the driver: the exact step and the final evaluation
    sampler, _ = molecule_sampler(ham.hilbert, "exact", 1)

    def run_mol(mesh):
        return run_vmc(ansatz, ham, sampler, make_optimizer("sr", 0.05, 1e-3), 2, seed=1,
                       n_eval_batches=1, chunk_size=None, mesh=mesh)

    r1, r4 = run_mol(mesh1), run_mol(mesh4)
    out["exact_mol_run_1v4"] = max(history_diff(r1, r4), maxdiff(r1.params, r4.params),
                                   abs(r1.energy - r4.energy))
    model = make_spin_model(model="ising", lattice="chain", size=6, pbc=True, h=1.0, j2=0.5,
                            delta=1.0, marshall_sign=False)
    spin = spin_ansatz(model, "rbm", 1.0, complex_params=True)

    def run_spin(mesh):
        return run_vmc(spin, model, spin_sampler(model, "exact", 1, 1),
                       make_optimizer("minsr", 0.05, 1e-3), 2, seed=2, n_eval_batches=1,
                       chunk_size=None, mesh=mesh)

    s1, s4 = run_spin(mesh1), run_spin(mesh4)
    out["exact_spin_run_1v4"] = max(history_diff(s1, s4), maxdiff(s1.params, s4.params),
                                    abs(s1.energy - s4.energy))
    out["exact_run_n_devices"] = [r1.n_devices, r4.n_devices]


def structured_checks(out: dict, mesh4) -> None:
    """Metropolis samples of a complex RBM on a TFIM chain, sharded over the 4-device mesh: the
    minSR update from the factored Jacobian (jitted, mesh) against the dense-Jacobian update on
    one device (tests/test_sr_structured.py)."""
    import dataclasses

    from hamiltonians.lattice import chain
    from hamiltonians.spin import TransverseFieldIsing
    from nqs.models.rbm import make_rbm
    from nqs.optim import sr
    from nqs.optim.flat import real_flat
    from nqs.sampling import MetropolisSampler
    from nqs.sampling.base import Samples
    from nqs.sampling.rules import LocalRule
    from nqs.vmc import make_estimator

    model = TransverseFieldIsing(chain(8), h=1.0)
    ansatz = make_rbm(8, alpha=2)
    dense_ansatz = dataclasses.replace(ansatz, jacobian_structure=None)
    params = ansatz.init(jax.random.PRNGKey(0), np.ones(8))
    flat, unflatten = real_flat(params)
    params = unflatten(0.3 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))
    sampler = MetropolisSampler(model.hilbert, LocalRule(), n_chains=16, n_samples=128,
                                n_discard_sweeps=4)
    state = sampler.init(jax.random.PRNGKey(2), ansatz, params)
    samples = sampler.sample(jax.random.PRNGKey(3), ansatz, params, state)[0]
    tx = sr(1e-2, "minsr")

    def update(a, mesh_):
        est_fn = make_estimator(a, model, needs_jacobian=True, mesh=mesh_)

        @jax.jit
        def run(p, x, w):
            est = est_fn(p, Samples(x, w, sampler.n_chains))
            upd, _ = tx.update(unflatten(est.grad), tx.init(p), p, jacobian=est.jacobian,
                               residuals=est.residuals)
            feats = getattr(est.jacobian, "features", None)
            return real_flat(upd)[0], est.stats.mean, feats
        return run

    x, w = samples.x, samples.weights
    xs, ws = put((x, w), (sample_sharding(mesh4),) * 2)
    u4, e4, feats = update(ansatz, mesh4)(params, xs, ws)
    u1, e1, _ = update(dense_ansatz, None)(params, x, w)
    out["structured_n_devices"] = len(mesh4.devices.ravel())
    out["structured_sharded"] = len(feats.g.sharding.device_set) == 4
    out["structured_update_norm"] = float(np.linalg.norm(np.asarray(u1)))
    out["structured_update_diff"] = float(np.max(np.abs(np.asarray(u4) - np.asarray(u1))))
    out["structured_energy_diff"] = float(abs(complex(e4) - complex(e1)))


CHECKS = ("spin", "molecule", "realspace", "memory", "exact", "structured")


def main() -> None:
    assert jax.device_count() == 4, jax.devices()
    mesh1, mesh4 = make_mesh(jax.devices()[:1]), make_mesh()
    out: dict = {}
    for name in sys.argv[1:] or CHECKS:
        t0 = time.perf_counter()
        if name == "spin":
            spin_checks(out, mesh1, mesh4)
        elif name == "molecule":
            molecule_checks(out, mesh1, mesh4)
        elif name == "realspace":
            realspace_checks(out, mesh1, mesh4)
        elif name == "memory":
            memory_checks(out, mesh4)
        elif name == "exact":
            exact_checks(out, mesh1, mesh4)
        elif name == "structured":
            structured_checks(out, mesh4)
        else:
            raise SystemExit(f"unknown check {name!r}; the checks are {', '.join(CHECKS)}")
        out[f"seconds_{name}"] = time.perf_counter() - t0
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
