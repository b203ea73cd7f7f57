"""Real-space timings: one VMC optimization step, and one local energy per walker (folx vs Hessian).

LiH (R = 3.015 bohr) with FermiNet's default network (4 layers of (256, 32), 16 determinants,
isotropic envelopes) unless told otherwise:

* local energy: ``vmap(E_loc)`` over the walkers with the forward Laplacian (folx) and with the
  trace of the full Hessian; time per walker (median of ``--repeats`` calls after compilation)
  and the ratio hessian / folx; the two energies are checked to agree;
* optimization step: one full VMC step (Metropolis moves, local energies, gradient, update) for
  KFAC and Adam, median time after compilation.

    python experiments/benchmarks/realspace_step.py                 # default network
    python experiments/benchmarks/realspace_step.py --small         # 2 x (32, 8), 4 dets (fast)

Writes ``results/realspace_step[_small].{json,md}`` next to this file. ``--deepqmc`` also times
DeepQMC's LiH local energy (its ``ferminet`` ansatz config and its default Laplacian) when the
``deepqmc`` package imports; it is not a project dependency. It installs without changing
jax/flax (deepqmc 1.2.0 adds dm-haiku, hydra-core, ...); to keep the project environment
clean, put it in a separate venv layered on the project's::

    python3 -m venv /tmp/dqmc
    SITE=/tmp/dqmc/lib/python3.11/site-packages
    printf "%s\n" "$PWD/.venv/lib/python3.11/site-packages" "$PWD" > $SITE/project.pth
    /tmp/dqmc/bin/pip install deepqmc==1.2.0
    /tmp/dqmc/bin/python experiments/benchmarks/realspace_step.py --deepqmc
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

import nqs  # noqa: F401  (float64)
from hamiltonians.realspace import make_atoms, make_local_energy
from nqs.io import write_json_atomic
from nqs.models.ferminet import DEFAULT_LAYERS, make_ferminet
from nqs.realspace.driver import copy_tree, make_vmc_method
from nqs.realspace.mcmc import init_walkers

HERE = Path(__file__).resolve().parent


def _median_time(fn, repeats: int) -> tuple[float, float]:
    """(compile + first call seconds, median seconds of ``repeats`` further calls)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, float(np.median(times))


def _flops(compiled, walkers: int) -> float:
    """Floating-point operations per walker of a compiled program (XLA's cost analysis)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan"))) / walkers


def flops_only(geometry: str, layers, n_det: int, walkers: int) -> dict:
    """XLA operation counts per walker of log|psi| and of both local energies for one system."""
    atoms = make_atoms(geometry)
    init, apply = make_ferminet(atoms, atoms.n_alpha, atoms.n_beta, layers=layers,
                                n_determinants=n_det)
    params = init(jax.random.PRNGKey(0))
    r = init_walkers(jax.random.PRNGKey(1), atoms, walkers)
    log_abs = jax.vmap(lambda p, x: apply(p, x)[1], (None, 0))
    out = {"forward": _flops(jax.jit(log_abs).lower(params, r).compile(), walkers)}
    for lap in ("folx", "hessian"):
        fn = jax.jit(jax.vmap(make_local_energy(apply, atoms, lap), (None, 0)))
        out[lap] = _flops(fn.lower(params, r).compile(), walkers)
    print(f"{geometry}: {atoms.n_electrons} electrons; MFLOP per walker: forward "
          f"{out['forward'] / 1e6:.2f}, folx {out['folx'] / 1e6:.1f} "
          f"({out['folx'] / out['forward']:.1f} x), Hessian {out['hessian'] / 1e6:.1f} "
          f"({out['hessian'] / out['forward']:.1f} x); Hessian / folx "
          f"{out['hessian'] / out['folx']:.2f}", flush=True)
    return out


def _deepqmc_timing(walkers: int, repeats: int) -> dict:
    """DeepQMC's own LiH local energy (its ``ferminet`` ansatz config, its Laplacian: a
    ``jax.linearize`` of the gradient and one JVP per coordinate); per-walker time.

    Needs ``deepqmc`` importable (not a project dependency: run this script with an interpreter
    that has it, e.g. a separate venv layered on the project's). Returns ``{"status": ...}``
    and, when it ran, the timings.
    """
    try:
        import deepqmc
        from deepqmc.app import instantiate_ansatz
        from deepqmc.hamil import MolecularHamiltonian
        from deepqmc.molecule import Molecule
        from hydra import compose, initialize_config_dir
        from hydra.utils import instantiate
    except Exception as err:  # noqa: BLE001  (any import failure is a status)
        msg = str(err).splitlines()[0] if str(err) else ""
        return {"status": f"deepqmc not importable ({type(err).__name__}: {msg})"}
    from importlib.metadata import version

    mol = Molecule.from_name("LiH")
    hamil = MolecularHamiltonian(mol=mol)
    conf_dir = os.path.join(os.path.dirname(deepqmc.__file__), "conf", "ansatz")
    with initialize_config_dir(version_base=None, config_dir=conf_dir):
        cfg = compose(config_name="ferminet")
    ansatz = instantiate_ansatz(hamil, instantiate(cfg, _recursive_=True, _convert_="all"))
    rng = jax.random.PRNGKey(0)
    phys = hamil.init_sample(rng, mol.coords, walkers)
    params = ansatz.init(rng, phys[0])
    e_loc = jax.jit(jax.vmap(hamil.local_energy(ansatz.apply), (None, None, 0)))
    first, med = _median_time(lambda: e_loc(None, params, phys)[0], repeats)
    return {
        "status": f"deepqmc {version('deepqmc')} (ansatz config 'ferminet', its default Laplacian)",
        "n_parameters": int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
        "compile_s": first,
        "total_s": med,
        "per_walker_ms": 1e3 * med / walkers,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="2 x (32, 8) layers, 4 determinants")
    p.add_argument("--walkers", type=int, default=32, help="walkers (default: 32)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls (default: 5)")
    p.add_argument("--mcmc-steps", type=int, default=10, help="Metropolis moves per step")
    p.add_argument("--optimizers", nargs="*", default=["kfac", "adam"],
                   choices=["kfac", "adam", "sr"])
    p.add_argument("--deepqmc", action="store_true",
                   help="also time DeepQMC's LiH local energy (needs the deepqmc package)")
    p.add_argument("--flops-only", nargs="+", metavar="ATOMS", default=None,
                   help='only XLA operation counts (forward, folx, Hessian) for these systems, '
                   'e.g. "He 0 0 0" "Li 0 0 0; H 0 0 3.015" (bohr); nothing is timed or written')
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    layers = ((32, 8),) * 2 if args.small else DEFAULT_LAYERS
    n_det = 4 if args.small else 16
    if args.flops_only:
        for geometry in args.flops_only:
            flops_only(geometry, layers, n_det, args.walkers)
        return 0
    atoms = make_atoms("Li 0 0 0; H 0 0 3.015")
    init, apply = make_ferminet(atoms, atoms.n_alpha, atoms.n_beta, layers=layers,
                                n_determinants=n_det)
    params = init(jax.random.PRNGKey(0))
    n_params = int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
    walkers = init_walkers(jax.random.PRNGKey(1), atoms, args.walkers)
    w = args.walkers
    print(f"LiH, FermiNet layers={list(layers)}, {n_det} determinants, {n_params} parameters, "
          f"{w} walkers, {jax.devices()[0].platform} ({os.cpu_count()} cores)", flush=True)

    rows: list[dict] = []
    energies = {}
    # XLA's own operation count of each compiled program: independent of the machine's load,
    # so the folx / Hessian comparison can be checked where timings scatter.
    log_abs = jax.vmap(lambda p, r: apply(p, r)[1], (None, 0))
    flops = {"forward": _flops(jax.jit(log_abs).lower(params, walkers).compile(), w)}
    for lap in ("folx", "hessian"):
        t0 = time.perf_counter()
        e_loc = jax.jit(jax.vmap(make_local_energy(apply, atoms, lap), (None, 0)))
        e_loc = e_loc.lower(params, walkers).compile()
        t_compile = time.perf_counter() - t0
        flops[lap] = _flops(e_loc, w)
        first, med = _median_time(lambda e_loc=e_loc: e_loc(params, walkers), args.repeats)
        energies[lap] = np.asarray(e_loc(params, walkers))
        rows.append({"what": f"local energy ({lap})", "compile_s": t_compile + first,
                     "total_s": med, "per_walker_ms": 1e3 * med / w,
                     "mflop_per_walker": flops[lap] / 1e6})
        print(f"  local energy {lap:8s}: {1e3 * med / w:8.3f} ms/walker "
              f"(compile + first call {t_compile + first:.1f} s; {flops[lap] / 1e6:.1f} MFLOP/walker)",
              flush=True)
    agree = float(np.max(np.abs(energies["folx"] - energies["hessian"])))
    ratio = rows[1]["total_s"] / rows[0]["total_s"]
    flop_ratio = flops["hessian"] / flops["folx"]
    print(f"  hessian / folx time ratio: {ratio:.2f}  (max |E_folx - E_hess| = {agree:.1e} Ha)")
    print(f"  XLA FLOPs per walker: forward {flops['forward'] / 1e6:.2f} M, folx "
          f"{flops['folx'] / flops['forward']:.1f} x forward, Hessian "
          f"{flops['hessian'] / flops['forward']:.1f} x forward; Hessian / folx {flop_ratio:.2f}")

    e_loc_fn = make_local_energy(apply, atoms, "folx")
    for opt in args.optimizers:
        vmc = make_vmc_method(opt, apply, e_loc_fn, mcmc_steps=args.mcmc_steps)
        # kfac-jax donates the parameters it steps: give every optimizer its own copy.
        state = vmc.init(jax.random.PRNGKey(2), copy_tree(params), walkers, 0.2)
        keys = iter(jax.random.split(jax.random.PRNGKey(3), args.repeats + 1))
        box = {"state": state}

        def one(vmc=vmc, box=box, keys=keys):
            box["state"], stats = vmc.step(next(keys), box["state"])
            return stats["energy"]

        first, med = _median_time(one, args.repeats)
        rows.append({"what": f"VMC step ({opt}, {args.mcmc_steps} MCMC moves)", "compile_s": first,
                     "total_s": med, "per_walker_ms": 1e3 * med / w})
        print(f"  VMC step {opt:5s}: {med:.3f} s/step ({1e3 * med / w:.2f} ms/walker; "
              f"compile + first step {first:.1f} s)", flush=True)

    deepqmc = _deepqmc_timing(w, args.repeats) if args.deepqmc else {"status": "not run (--deepqmc)"}
    print(f"  DeepQMC: {deepqmc['status']}")
    if "per_walker_ms" in deepqmc:
        print(f"  DeepQMC local energy: {deepqmc['per_walker_ms']:.3f} ms/walker "
              f"({deepqmc['n_parameters']} parameters; compile + first call "
              f"{deepqmc['compile_s']:.1f} s); DeepQMC / nqs folx: "
              f"{deepqmc['total_s'] / rows[0]['total_s']:.2f}", flush=True)
    result = {
        "system": "LiH R=3.015 bohr",
        "layers": [list(x) for x in layers],
        "determinants": n_det,
        "n_parameters": n_params,
        "walkers": w,
        "rows": rows,
        "hessian_over_folx": ratio,
        "mflop_per_walker": {k: v / 1e6 for k, v in flops.items()},
        "hessian_over_folx_flops": flop_ratio,
        "max_abs_energy_difference": agree,
        "deepqmc": deepqmc,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "device": str(jax.devices()[0]), "jax": jax.__version__,
                    "load_average": list(os.getloadavg())},
    }
    out = args.out or HERE / "results"
    stem = "realspace_step_small" if args.small else "realspace_step"
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{stem}.json", result)
    lines = [f"LiH, layers {list(layers)}, {n_det} dets, {n_params} parameters, {w} walkers, "
             f"{result['machine']['device']}, load average {result['machine']['load_average']}",
             "", "| what | median time (s) | per walker (ms) | compile + first call (s) |",
             "|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['total_s']:.4f} | {r['per_walker_ms']:.3f} | "
              f"{r['compile_s']:.1f} |" for r in rows]
    lines += ["", f"Hessian / folx local-energy time: {ratio:.2f}",
              f"XLA FLOPs per walker: forward {flops['forward'] / 1e6:.2f} M, folx "
              f"{flops['folx'] / 1e6:.1f} M ({flops['folx'] / flops['forward']:.1f} x forward), "
              f"Hessian {flops['hessian'] / 1e6:.1f} M ({flops['hessian'] / flops['forward']:.1f} x "
              f"forward); Hessian / folx {flop_ratio:.2f}",
              f"DeepQMC: {deepqmc['status']}"]
    if "per_walker_ms" in deepqmc:
        lines += [f"DeepQMC local energy: {deepqmc['per_walker_ms']:.3f} ms/walker, "
                  f"{deepqmc['n_parameters']} parameters (median {deepqmc['total_s']:.4f} s for "
                  f"{w} walkers; compile {deepqmc['compile_s']:.1f} s)"]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}/{stem}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
