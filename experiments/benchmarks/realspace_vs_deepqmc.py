"""nqs beside DeepQMC on the same machine, in one process: LiH (R = 3.015 bohr), the same FermiNet
size on both sides, the local energy per walker and one optimization step.

DeepQMC is not a project dependency. It installs without changing jax/flax into a separate venv
layered on the project's (the project venv is never modified)::

    python3 -m venv /tmp/dqmc-venv
    SITE=/tmp/dqmc-venv/lib/python3.11/site-packages
    printf "%s\\n" /work/main/.venv/lib/python3.11/site-packages "$PWD" > $SITE/project.pth
    /tmp/dqmc-venv/bin/pip install deepqmc==1.2.0     # adds dm-haiku 0.0.17, hydra-core, ...
    /tmp/dqmc-venv/bin/python experiments/benchmarks/realspace_vs_deepqmc.py          # 4 x (256, 32), 16 dets
    /tmp/dqmc-venv/bin/python experiments/benchmarks/realspace_vs_deepqmc.py --small  # 2 x (32, 8), 4 dets

(the first path of ``project.pth`` is the project venv's site-packages, the second the checkout,
run from its root). Both codes share one interpreter, one jax and one ``jax_enable_x64`` (nqs turns
it on at import; DeepQMC's haiku parameters then come out float64 too: checked and recorded).

The networks: nqs ``make_ferminet(..., full_det=True)`` and DeepQMC's own ``ansatz=ferminet``
config with ``embedding_dim`` / ``two_particle_stream_dim`` / ``n_interactions`` /
``n_determinants`` set to the same size. Both: one- and two-electron streams with (r, |r|)
features, tanh layers, the last layer one-electron only, a linear orbital map, isotropic
exponential envelopes with one exponent per orbital and nucleus, full (n_el x n_el)
determinants summed, no Jastrow factor, no cusp terms. What differs is listed in
``DIFFERENCES`` and printed.

Local energy (``vmap`` over the same number of walkers, interleaved rounds: one call of each
variant per round; wall and process CPU time per walker, medians; the 1-minute load average
beside): nqs folx (nqs's default), DeepQMC's default Laplacian (``deepqmc.physics.laplacian``:
``jax.linearize`` of the gradient and one JVP per coordinate in a ``fori_loop``), DeepQMC with its
``qc_forward_laplacian`` config (folx inside DeepQMC), and nqs's folx local energy applied to
DeepQMC's network (a cross-check: on one network both codes' Hamiltonians must agree).

Optimization step (``--optimizers``): nqs ``make_vmc_method(name)`` (10 all-electron Metropolis
moves, clipped local energies, gradient, update) and DeepQMC's ``fit_wf`` training step with its
``train_ferminet`` task config (DecorrSampler of 10 Metropolis moves, ``median_clip_and_mask``
clipping, its ``kfac`` / ``adamw`` optimizer config), one step of each code per round.
Writes ``results/realspace_vs_deepqmc[_small].{json,md}`` next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from functools import partial
from importlib.metadata import version
from pathlib import Path

import jax
import numpy as np

import nqs  # noqa: F401  (float64 before any array is built)
from hamiltonians.realspace import make_atoms, make_local_energy
from nqs.guard import copy_tree
from nqs.io import write_json_atomic
from nqs.models.ferminet import make_ferminet
from nqs.problems.realspace import make_vmc_method
from nqs.realspace.mcmc import init_walkers

HERE = Path(__file__).resolve().parent
GEOMETRY = "Li 0 0 0; H 0 0 3.015"  # bohr

DIFFERENCES = [
    "residual connections: nqs adds the layer output to its input where the widths agree; "
    "DeepQMC's ferminet config normalises the sum ((x + f(x)) / sqrt 2)",
    "orbital input: nqs's linear orbital map (no bias in either code) reads the symmetrised "
    "features of the last layer (h_i, spin means of h, spin means of h_ij: 3 d1 + 2 d2 numbers "
    "per electron); DeepQMC's reads the last one-electron embedding only (d1 numbers, as in "
    "the FermiNet paper): nqs has more orbital parameters (see the parameter counts)",
    "two-electron stream input: both (r_ij, |r_ij|), 4 features; DeepQMC computes it for the "
    "whole n_el x n_el graph split into same/opposite-spin edges, nqs for all pairs at once",
    "initialisation: each code's own (irrelevant to the time of one evaluation)",
    "MCMC: both move all electrons at once by a Gaussian, 10 moves (network evaluations) per "
    "step; nqs adapts the width between steps towards 0.5 acceptance, DeepQMC's "
    "MetropolisSampler its tau towards 0.525 (inside a DecorrSampler of length 10)",
    "local-energy clipping: nqs clips at 5 mean absolute deviations around the median; "
    "DeepQMC's train_ferminet config at 5 MADs around the mean",
]


def _time_interleaved(fns: dict, rounds: int) -> dict:
    """Median wall and process-CPU seconds of each ``fns[name]()`` (already compiled and warmed
    up), one call of each per round; also the 1-minute load average before and after."""
    wall = {n: [] for n in fns}
    cpu = {n: [] for n in fns}
    load_before = os.getloadavg()[0]
    for _ in range(rounds):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            jax.block_until_ready(fn())
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {"median_wall_s": {n: float(np.median(v)) for n, v in wall.items()},
            "median_cpu_s": {n: float(np.median(v)) for n, v in cpu.items()},
            "wall_s": wall, "cpu_s": cpu,
            "load_average": [load_before, os.getloadavg()[0]]}


def _n_params(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def _dtypes(params) -> list[str]:
    return sorted({str(x.dtype) for x in jax.tree_util.tree_leaves(params)})


def _jax_compat() -> list[str]:
    """Restore the two jax functions DeepQMC 1.2.0's training loop calls and jax 0.10 removed
    (``jax.device_put_replicated``, ``jax.tree_map``), as thin wrappers of their documented
    replacements; returns the names added (recorded in the results). Only DeepQMC's
    ``fit_wf`` path needs them; its local energy runs without."""
    import jax.numpy as jnp

    added = []
    if not hasattr(jax, "device_put_replicated"):
        def device_put_replicated(x, devices):
            # A leading axis of one copy per device: what pmap expects of replicated inputs.
            return jax.tree_util.tree_map(lambda a: jnp.stack([jnp.asarray(a)] * len(devices)),
                                          x)

        jax.device_put_replicated = device_put_replicated
        added.append("jax.device_put_replicated")
    if not hasattr(jax, "tree_map"):
        jax.tree_map = jax.tree_util.tree_map
        added.append("jax.tree_map")
    return added


class DeepQMCSide:
    """DeepQMC's LiH objects at one FermiNet size (haiku ansatz, Hamiltonians with its default
    and its forward Laplacian, task config for training)."""

    def __init__(self, layers: int, d1: int, d2: int, n_det: int, walkers: int) -> None:
        """layers: interactions (layers); d1 / d2: one- / two-electron widths; n_det:
        determinants; walkers: electron batch size."""
        import deepqmc
        import folx
        from deepqmc.app import instantiate_ansatz
        from deepqmc.hamil import MolecularHamiltonian
        from deepqmc.molecule import Molecule
        from hydra import compose, initialize_config_dir
        from hydra.utils import instantiate

        self.mol = Molecule(coords=[[0.0, 0.0, 0.0], [0.0, 0.0, 3.015]], charges=[3, 1],
                            charge=0, spin=0, unit="bohr")
        self.hamil = MolecularHamiltonian(mol=self.mol)  # default: deepqmc.physics.laplacian
        # DeepQMC's conf/hamil/qc_forward_laplacian.yaml
        self.hamil_fwd = MolecularHamiltonian(
            mol=self.mol, laplacian_factory=folx.ForwardLaplacianOperator(sparsity_threshold=0))
        self.overrides = [
            "ansatz=ferminet", "task=train_ferminet",
            f"ansatz.omni_factory.embedding_dim={d1}",
            f"ansatz.omni_factory.gnn_factory.two_particle_stream_dim={d2}",
            f"ansatz.omni_factory.gnn_factory.n_interactions={layers}",
            f"ansatz.n_determinants={n_det}",
            f"task.electron_batch_size={walkers}",
        ]
        conf_dir = os.path.join(os.path.dirname(deepqmc.__file__), "conf")
        with initialize_config_dir(version_base=None, config_dir=conf_dir):
            self.cfg = compose(config_name="config", overrides=self.overrides)
        self.instantiate = instantiate
        self.ansatz = instantiate_ansatz(
            self.hamil, instantiate(self.cfg.ansatz, _recursive_=True, _convert_="all"))
        self.walkers = walkers

    def local_energy_setup(self, seed: int = 0):
        """(params, walkers as a batched PhysicalConfiguration) for timing local energies."""
        rng = jax.random.PRNGKey(seed)
        phys = self.hamil.init_sample(rng, self.mol.coords, self.walkers)
        params = self.ansatz.init(rng, phys[0])
        return params, phys

    def sign_log(self, template):
        """``apply(params, r [n_el, 3]) -> (sign, log|psi|)`` of DeepQMC's ansatz, the nqs
        interface (``template``: one PhysicalConfiguration giving the nuclei)."""
        import jax_dataclasses as jdc

        def apply(params, r):
            psi = self.ansatz.apply(params, jdc.replace(template, r=r))
            return psi.sign, psi.log

        return apply

    def train_steps(self, optimizer: str, seed: int = 0):
        """A generator of DeepQMC training steps (``deepqmc.fit.fit_wf``, no pretraining, no
        equilibration) with the ``train_ferminet`` task's sampler, loss and ``optimizer``
        config (``kfac`` or ``adamw``); yields the step's stats."""
        import deepqmc
        from deepqmc.fit import fit_wf
        from deepqmc.observable import EnergyMonitor
        from deepqmc.parallel import split_on_devices, split_rng_key_to_devices
        from deepqmc.sampling.sampling_utils import initialize_sampler_state
        from deepqmc.types import TrainState
        from deepqmc.wf.base import init_wf_params
        from hydra import compose, initialize_config_dir

        conf_dir = os.path.join(os.path.dirname(deepqmc.__file__), "conf")
        with initialize_config_dir(version_base=None, config_dir=conf_dir):
            cfg = compose(config_name="config",
                          overrides=self.overrides + [f"task/opt={optimizer}"])
        inst = self.instantiate
        rng = jax.random.PRNGKey(seed)
        rng, rng_smpl, rng_init = jax.random.split(rng, 3)
        mols = [self.mol]
        mol_idx_sampler, sampler = inst(cfg.task.sampler_factory, _recursive_=True,
                                        _convert_="all")(rng_smpl, self.hamil, self.ansatz,
                                                         mols, 1, 1)
        params = init_wf_params(rng_init, self.hamil, self.ansatz, 1)
        rng = split_rng_key_to_devices(rng)
        rng, rng_smpl_init = split_on_devices(rng, 2)
        smpl_state = initialize_sampler_state(rng_smpl_init, sampler, params, self.walkers, mols)
        loss_factory = inst(cfg.task.loss_function_factory, _recursive_=True, _convert_="all")
        opt_factory = inst(cfg.task.opt, _recursive_=True, _convert_="all")
        steps = fit_wf(rng, self.hamil, self.ansatz,
                       opt_factory, mol_idx_sampler, sampler, range(10**9),
                       TrainState(smpl_state, params, None), loss_factory,
                       [EnergyMonitor(save_samples=False, period=1)])
        for _, train_state, _, stats, _ in steps:
            # Everything the step computed: JAX dispatches asynchronously, and work of one code
            # still running while the other's step starts would be timed to the wrong code
            # (and two concurrent batched LAPACK LUs hang jaxlib on 2 cores).
            yield jax.block_until_ready((train_state, stats))[1]


def local_energies(dq: DeepQMCSide, layers, n_det: int, walkers: int, rounds: int) -> dict:
    """Compile and time the local-energy variants; energies cross-checked."""
    atoms = make_atoms(GEOMETRY)
    init, apply = make_ferminet(atoms, atoms.n_alpha, atoms.n_beta, layers=layers,
                                n_determinants=n_det, full_det=True)
    params = init(jax.random.PRNGKey(0))
    r = init_walkers(jax.random.PRNGKey(1), atoms, walkers)
    dq_params, phys = dq.local_energy_setup()
    dq_apply = dq.sign_log(phys[0])
    dq_r = phys.r  # [walkers, n_el, 3]
    variants = {
        "nqs: folx (nqs default)": (
            jax.vmap(make_local_energy(apply, atoms, "folx"), (None, 0)), (params, r)),
        "DeepQMC: default Laplacian (linearize + JVP loop)": (
            jax.vmap(lambda p, x: dq.hamil.local_energy(dq.ansatz.apply)(None, p, x)[0],
                     (None, 0)), (dq_params, phys)),
        "DeepQMC: forward Laplacian (its folx config)": (
            jax.vmap(lambda p, x: dq.hamil_fwd.local_energy(dq.ansatz.apply)(None, p, x)[0],
                     (None, 0)), (dq_params, phys)),
        "nqs folx local energy on DeepQMC's network": (
            jax.vmap(make_local_energy(dq_apply, atoms, "folx"), (None, 0)), (dq_params, dq_r)),
        "nqs: forward pass log|psi| (scale)": (
            jax.vmap(lambda p, x: apply(p, x)[1], (None, 0)), (params, r)),
        "DeepQMC: forward pass log|psi| (scale)": (
            jax.vmap(lambda p, x: dq.ansatz.apply(p, x).log, (None, 0)), (dq_params, phys)),
    }
    compiled, info, fns, energies = {}, {}, {}, {}
    for name, (fn, args) in variants.items():
        t0 = time.perf_counter()
        compiled[name] = jax.jit(fn).lower(*args).compile()
        energies[name] = np.asarray(jax.block_until_ready(compiled[name](*args)))
        info[name] = {"compile_and_first_call_s": time.perf_counter() - t0}
        fns[name] = partial(compiled[name], *args)
        print(f"  compiled {name} ({info[name]['compile_and_first_call_s']:.1f} s)", flush=True)
    times = _time_interleaved(fns, rounds)
    names = list(variants)
    ref = names[0]
    rows = []
    for name in names:
        w, c = times["median_wall_s"][name], times["median_cpu_s"][name]
        rows.append({"what": name, "wall_ms_per_walker": 1e3 * w / walkers,
                     "cpu_ms_per_walker": 1e3 * c / walkers,
                     "cpu_over_nqs_folx": c / times["median_cpu_s"][ref],
                     "wall_over_nqs_folx": w / times["median_wall_s"][ref],
                     **info[name]})
    dq_default = energies[names[1]]
    check = {
        "max_abs_dE_deepqmc_forward_vs_default_Ha": float(
            np.max(np.abs(energies[names[2]] - dq_default))),
        "max_abs_dE_nqs_folx_on_deepqmc_net_vs_deepqmc_default_Ha": float(
            np.max(np.abs(energies[names[3]] - dq_default))),
        "finite_energies": bool(all(np.all(np.isfinite(energies[n])) for n in names[:4])),
    }
    return {"rows": rows, "times": times, "check": check,
            "nqs_parameters": _n_params(params), "deepqmc_parameters": _n_params(dq_params),
            "nqs_param_dtypes": _dtypes(params), "deepqmc_param_dtypes": _dtypes(dq_params)}


def optimization_steps(dq: DeepQMCSide, layers, n_det: int, walkers: int, rounds: int,
                       optimizer: str) -> dict:
    """One training step of each code per round (after one compiling step each)."""
    atoms = make_atoms(GEOMETRY)
    init, apply = make_ferminet(atoms, atoms.n_alpha, atoms.n_beta, layers=layers,
                                n_determinants=n_det, full_det=True)
    params = init(jax.random.PRNGKey(0))
    r = init_walkers(jax.random.PRNGKey(1), atoms, walkers)
    vmc = make_vmc_method(optimizer, apply, make_local_energy(apply, atoms, "folx"),
                          mcmc_steps=10)
    box = {"state": vmc.init(jax.random.PRNGKey(2), copy_tree(params), r, 0.2)}
    keys = iter(jax.random.split(jax.random.PRNGKey(3), rounds + 3))

    def nqs_step():
        box["state"], stats = jax.block_until_ready(vmc.step(next(keys), box["state"]))
        return stats["energy"]

    dq_opt = {"kfac": "kfac", "adam": "adamw"}[optimizer]
    gen = dq.train_steps(dq_opt)

    def dq_step():
        return next(gen)["local_energy/mean"]

    first = {}
    # DeepQMC first: an optimizer config it cannot build fails before nqs compiles anything.
    # Two warm-up steps each: DeepQMC's second step compiles again (its optimizer state and
    # running averages change shape after the first).
    for name, fn in (("DeepQMC", dq_step), ("nqs", nqs_step)):
        warm = []
        for _ in range(2):
            t0 = time.perf_counter()
            e = jax.block_until_ready(fn())
            warm.append(time.perf_counter() - t0)
        first[name] = {"compile_and_first_step_s": warm[0], "second_step_s": warm[1],
                       "energy_after_warmup": float(np.asarray(e).reshape(-1)[0])}
        print(f"  {name} {optimizer} step compiled (warm-up steps {warm[0]:.1f} s, "
              f"{warm[1]:.1f} s)", flush=True)
    times = _time_interleaved({"nqs": nqs_step, "DeepQMC": dq_step}, rounds)
    return {"optimizer_nqs": optimizer, "optimizer_deepqmc": dq_opt, "first": first,
            "times": times,
            "deepqmc_over_nqs_wall": times["median_wall_s"]["DeepQMC"]
            / times["median_wall_s"]["nqs"],
            "deepqmc_over_nqs_cpu": times["median_cpu_s"]["DeepQMC"]
            / times["median_cpu_s"]["nqs"]}


def _markdown(res: dict) -> list[str]:
    le = res["local_energy"]
    if le is None:
        return ["Local energy: not run (--parts)", ""] + _steps_markdown(res)
    lines = [
        f"LiH R=3.015 bohr; FermiNet {res['layers']} x ({res['d1']}, {res['d2']}), "
        f"{res['determinants']} full determinants; {res['walkers']} walkers; "
        f"{res['machine']['cpu_count']} CPU cores shared ({res['machine']['platform']}); "
        f"jax {res['versions']['jax']}, deepqmc {res['versions']['deepqmc']}, dm-haiku "
        f"{res['versions']['dm-haiku']}, folx {res['versions']['folx']}; parameters: nqs "
        f"{le['nqs_parameters']} ({', '.join(le['nqs_param_dtypes'])}), DeepQMC "
        f"{le['deepqmc_parameters']} ({', '.join(le['deepqmc_param_dtypes'])})", "",
        f"Local energy: medians of {res['rounds']} interleaved rounds; 1-minute load average "
        f"{le['times']['load_average'][0]:.1f} before, {le['times']['load_average'][1]:.1f} after",
        "",
        "| local energy | CPU ms / walker | wall ms / walker | CPU / nqs folx | wall / nqs folx "
        "| compile + first call (s) |", "|---|---|---|---|---|---|"]
    for row in le["rows"]:
        what = row["what"].replace("|", "\\|")
        lines.append(f"| {what} | {row['cpu_ms_per_walker']:.3f} | "
                     f"{row['wall_ms_per_walker']:.3f} | {row['cpu_over_nqs_folx']:.2f} | "
                     f"{row['wall_over_nqs_folx']:.2f} | "
                     f"{row['compile_and_first_call_s']:.1f} |")
    c = le["check"]
    lines += ["", "Cross-check on DeepQMC's network: |E(DeepQMC forward Laplacian) - E(DeepQMC "
              f"default)| <= {c['max_abs_dE_deepqmc_forward_vs_default_Ha']:.1e} Ha; |E(nqs folx "
              f"local energy) - E(DeepQMC default)| <= "
              f"{c['max_abs_dE_nqs_folx_on_deepqmc_net_vs_deepqmc_default_Ha']:.1e} Ha", ""]
    return lines + _steps_markdown(res)


def _steps_markdown(res: dict) -> list[str]:
    lines = []
    for st in res["steps"]:
        if "error" in st:
            lines += [f"Optimization step ({st['optimizer_nqs']}): not timed: {st['error']}", ""]
            continue
        t = st["times"]
        lines += [
            f"Optimization step, nqs {st['optimizer_nqs']} vs DeepQMC {st['optimizer_deepqmc']}: "
            f"medians of {res['rounds']} interleaved steps; 1-minute load average "
            f"{t['load_average'][0]:.1f} before, {t['load_average'][1]:.1f} after", "",
            "| code | CPU s / step | wall s / step | CPU ms / walker | wall ms / walker | "
            "warm-up steps (s) |", "|---|---|---|---|---|---|"]
        for code in ("nqs", "DeepQMC"):
            w, cp = t["median_wall_s"][code], t["median_cpu_s"][code]
            lines.append(f"| {code} | {cp:.3f} | {w:.3f} | {1e3 * cp / res['walkers']:.3f} | "
                         f"{1e3 * w / res['walkers']:.3f} | "
                         f"{st['first'][code]['compile_and_first_step_s']:.1f}, "
                         f"{st['first'][code]['second_step_s']:.1f} |")
        lines += ["", f"DeepQMC / nqs: CPU {st['deepqmc_over_nqs_cpu']:.2f}, wall "
                  f"{st['deepqmc_over_nqs_wall']:.2f}", ""]
    if res["jax_compat_shims"]:
        lines += [f"jax functions removed in jax 0.10 and restored for DeepQMC's training loop "
                  f"(thin wrappers, see _jax_compat): {', '.join(res['jax_compat_shims'])}", ""]
    lines += ["What differs between the two networks and steps:", ""]
    lines += [f"* {d}" for d in DIFFERENCES]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns the exit code."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="2 x (32, 8), 4 determinants")
    p.add_argument("--walkers", type=int, default=256, help="walkers (default: 256)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    p.add_argument("--optimizers", nargs="*", default=["adam"], choices=["adam", "kfac"],
                   help="optimization steps to time (nqs adam vs DeepQMC adamw, kfac vs kfac)")
    p.add_argument("--parts", nargs="+", default=["local", "step"], choices=["local", "step"],
                   help="what to time (default: both). Results are written after each part; "
                   "one part alone keeps the other part's results from an earlier run of the "
                   "same size")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        import deepqmc  # noqa: F401
    except ImportError as err:
        print(f"deepqmc not importable ({err}); see this script's docstring for the venv",
              file=sys.stderr)
        return 2
    compat = _jax_compat()
    # DeepQMC's training step dispatches several programs (sampling, optimizer step, sampler
    # update) asynchronously; on 2 cores two of them running batched LAPACK LUs at once hung
    # jaxlib (jax::ParallelBatchMap, the hang docs/architecture.md describes) in the timed
    # rounds. Synchronous dispatch runs one program at a time, for both codes alike.
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    if compat:
        print(f"  jax compatibility shims for DeepQMC's training loop: {', '.join(compat)}",
              flush=True)
    n_layers, d1, d2, n_det = (2, 32, 8, 4) if args.small else (4, 256, 32, 16)
    layers = ((d1, d2),) * n_layers
    w = args.walkers
    print(f"LiH, FermiNet {n_layers} x ({d1}, {d2}), {n_det} full determinants, {w} walkers, "
          f"{jax.devices()[0].platform} ({os.cpu_count()} cores)", flush=True)
    dq = DeepQMCSide(n_layers, d1, d2, n_det, w)
    out = args.out or HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = "realspace_vs_deepqmc_small" if args.small else "realspace_vs_deepqmc"
    res = {
        "system": "LiH R=3.015 bohr", "layers": n_layers, "d1": d1, "d2": d2,
        "determinants": n_det, "full_determinants": True, "walkers": w, "rounds": args.rounds,
        "deepqmc_overrides": dq.overrides, "local_energy": None, "steps": [],
        "differences": DIFFERENCES, "jax_compat_shims": compat,
        "jax_cpu_enable_async_dispatch": False,
        "versions": {k: version(k) for k in
                     ("jax", "jaxlib", "deepqmc", "dm-haiku", "folx", "kfac-jax", "flax",
                      "optax", "hydra-core")},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version()},
    }
    old = out / f"{stem}.json"
    if set(args.parts) != {"local", "step"} and old.exists():
        # Keep the part not run now from an earlier run of the same size (the two parts can be
        # run in separate processes).
        prev = json.loads(old.read_text())
        if (prev.get("walkers"), prev.get("layers"), prev.get("d1")) == (w, n_layers, d1):
            if "local" not in args.parts:
                res["local_energy"] = prev.get("local_energy")
            if "step" not in args.parts:
                res["steps"] = prev.get("steps", [])

    def save() -> None:
        write_json_atomic(out / f"{stem}.json", res)
        (out / f"{stem}.md").write_text("\n".join(_markdown(res)) + "\n")
        print(f"wrote {out}/{stem}.json and .md", file=sys.stderr)

    if "local" in args.parts:
        le = local_energies(dq, layers, n_det, w, args.rounds)
        res["local_energy"] = le
        print(f"  parameters: nqs {le['nqs_parameters']} {le['nqs_param_dtypes']}, DeepQMC "
              f"{le['deepqmc_parameters']} {le['deepqmc_param_dtypes']}; load "
              f"{le['times']['load_average']}", flush=True)
        for row in le["rows"]:
            print(f"  {row['what']:52s} cpu {row['cpu_ms_per_walker']:8.3f} ms/walker (wall "
                  f"{row['wall_ms_per_walker']:8.3f}); / nqs folx: cpu "
                  f"{row['cpu_over_nqs_folx']:.2f}, wall {row['wall_over_nqs_folx']:.2f}",
                  flush=True)
        print(f"  check: {le['check']}", flush=True)
        save()
    for opt in args.optimizers if "step" in args.parts else []:
        try:
            st = optimization_steps(dq, layers, n_det, w, args.rounds, opt)
        except Exception as err:  # noqa: BLE001  (an optimizer that fails is recorded, not fatal)
            msg = str(err).splitlines()[0] if str(err) else ""
            st = {"optimizer_nqs": opt, "error": f"{type(err).__name__}: {msg}"}
            print(f"  {opt} step failed: {st['error']}", flush=True)
        else:
            t = st["times"]
            print(f"  {opt} step: nqs cpu {t['median_cpu_s']['nqs']:.3f} s (wall "
                  f"{t['median_wall_s']['nqs']:.3f}), DeepQMC cpu {t['median_cpu_s']['DeepQMC']:.3f}"
                  f" s (wall {t['median_wall_s']['DeepQMC']:.3f}); DeepQMC / nqs cpu "
                  f"{st['deepqmc_over_nqs_cpu']:.2f}, wall {st['deepqmc_over_nqs_wall']:.2f}; load "
                  f"{t['load_average']}", flush=True)
        res["steps"].append(st)
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
