"""Real-space timings: the local energy per walker (forward Laplacian vs Hessian trace) and one
VMC optimization step.

LiH (R = 3.015 bohr) with FermiNet's default network (4 layers of (256, 32), 16 determinants,
isotropic envelopes) unless told otherwise:

* local energy: ``vmap(E_loc)`` over the same walkers and parameters for every variant, timed in
  interleaved rounds (one call of each variant per round, so load changes hit all alike), process
  CPU time and wall time per walker (medians), the 1-minute load average before and after, and
  XLA's operation count of each compiled program (independent of the load). Variants: folx
  dense (the default path), folx with ``sparsity_threshold=6`` (folx's advice for FermiNet),
  the Hessian trace as nqs computes it (one Hessian-vector product per coordinate in a loop,
  FermiNet's own Laplacian), the Hessian trace by ``jax.hessian`` (nqs's reference until
  2026-11-26), and with ``--float32`` both main paths with the network in float32 (the same
  parameters cast; determinants and energies float64). All energies are checked to agree;
* optimization step: one full VMC step (Metropolis moves, local energies, gradient, update),
  median time after compilation, for each of ``--optimizers``.

    python experiments/benchmarks/realspace_step.py --optimizers adam --float32   # the documented run
    python experiments/benchmarks/realspace_step.py --small                       # 2 x (32, 8), 4 dets
    python experiments/benchmarks/realspace_step.py --systems "He 0 0 0" "N 0 0 0; N 0 0 2.074"

``--systems`` only compares folx with the Hessian-trace loop for the given systems (operation
counts, and CPU time at ``--walkers``) and writes ``results/realspace_step_systems.{json,md}``;
with ``--ansatz lapnet`` it does so for a LapNet (``--layers``, ``--width``, ``--heads``; folx
with the driver's sparsity threshold for it, and folx dense as a third row) and writes
``results/realspace_step_systems_lapnet.{json,md}``::

    python experiments/benchmarks/realspace_step.py --ansatz lapnet --walkers 16 --repeats 3 \
        --chunks 1 16 --systems "N 0 0 0; N 0 0 2.074"

(``--chunks``: every path at each of these walker chunk sizes, best against best.)


otherwise the script writes ``results/realspace_step[_small].{json,md}`` next to this file.
``--flops-only`` prints operation counts only. ``--deepqmc`` also times DeepQMC's LiH local
energy (its ``ferminet`` ansatz config at the same size, its default Laplacian) when the
``deepqmc`` package imports; it is not a project dependency. deepqmc 1.2.0 (the last release for
Python 3.11) installs without changing jax/flax (it adds dm-haiku 0.0.17, hydra-core, ...); to
keep the project environment clean, put it in a separate venv layered on the project's (run
from the checkout's root; ``$VENV`` is the project's venv, e.g. ``.venv``)::

    python3 -m venv /tmp/dqmc-venv
    SITE=/tmp/dqmc-venv/lib/python3.11/site-packages
    printf "%s\n" "$VENV/lib/python3.11/site-packages" "$PWD" > $SITE/project.pth
    /tmp/dqmc-venv/bin/pip install deepqmc==1.2.0
    /tmp/dqmc-venv/bin/python experiments/benchmarks/realspace_step.py --deepqmc

``realspace_vs_deepqmc.py`` is the side-by-side comparison (equal networks, interleaved rounds,
an optimization step as well) and lists what differs between the two networks.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (float64)
from hamiltonians.realspace import make_atoms, make_local_energy, potential_energy
from nqs.guard import copy_tree
from nqs.io import write_json_atomic
from nqs.models.electrons import folx_sparsity, make_network, network_options, with_dtype
from nqs.models.ferminet import DEFAULT_LAYERS, make_ferminet
from nqs.problems.realspace import make_vmc_method
from nqs.realspace.mcmc import init_walkers

HERE = Path(__file__).resolve().parent
SPARSITY = 6  # folx's README: "For electronic wave function like FermiNet or PsiFormer, 6"


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
    """Floating-point operations per walker of a compiled program (XLA's cost analysis; a loop
    body counts once, so it is no total for the Hessian-vector-product loop)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan"))) / walkers


def _jax_hessian_local_energy(apply, atoms):
    """The former reference: ``grad`` plus ``trace(jax.hessian)`` (a vmap of the Hessian-vector
    products over all 3n unit vectors, and a second backward pass for the gradient)."""

    def e_loc(params, r):
        x = r.reshape(-1)

        def f(xf):
            return apply(params, xf.reshape(r.shape))[1]

        g = jax.grad(f)(x)
        return -0.5 * (jnp.trace(jax.hessian(f)(x)) + jnp.sum(g * g)) + potential_energy(r, atoms)

    return e_loc


VARIANT_KEYS = {  # --variants name -> row name
    "folx-sparse": f"folx, sparsity_threshold={SPARSITY}",
    "hvp": "Hessian trace, HVP loop (nqs 'hessian')",
    "jax-hessian": "Hessian trace, jax.hessian (old reference)",
}


def local_energy_variants(atoms, apply, apply32, float32: bool,
                          only: list[str] | None = None) -> dict:
    """name -> (local energy of one walker ``(params, r [n, 3]) -> scalar``, dtype of its
    parameters); the first entry is the folx default the others are compared with. ``only``:
    keys of :data:`VARIANT_KEYS` to keep besides folx (None: all)."""
    out = {
        "folx": (make_local_energy(apply, atoms, "folx"), "float64"),
        f"folx, sparsity_threshold={SPARSITY}": (
            make_local_energy(apply, atoms, "folx", SPARSITY), "float64"),
        "Hessian trace, HVP loop (nqs 'hessian')": (
            make_local_energy(apply, atoms, "hessian"), "float64"),
        "Hessian trace, jax.hessian (old reference)": (
            _jax_hessian_local_energy(apply, atoms), "float64"),
    }
    if only is not None:
        keep = {"folx"} | {VARIANT_KEYS[k] for k in only}
        out = {k: v for k, v in out.items() if k in keep}
    if float32:
        a32 = with_dtype(apply32, "float32")
        out["folx, float32 network"] = (make_local_energy(a32, atoms, "folx"), "float32")
        out["Hessian trace, HVP loop, float32 network"] = (
            make_local_energy(a32, atoms, "hessian"), "float32")
    return out


def time_interleaved(fns: dict, args_of: dict, rounds: int) -> dict:
    """Median wall and process-CPU seconds of each compiled ``fns[name](*args_of[name])``, one call
    of each per round (after one warm-up call each)."""
    for name, fn in fns.items():
        jax.block_until_ready(fn(*args_of[name]))
    wall = {n: [] for n in fns}
    cpu = {n: [] for n in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            jax.block_until_ready(fn(*args_of[name]))
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {n: (float(np.median(wall[n])), float(np.median(cpu[n]))) for n in fns}


def compare_local_energies(atoms, layers, n_det: int, walkers: int, rounds: int,
                           float32: bool, seed: int = 0, only: list[str] | None = None) -> dict:
    """Compile and time every local-energy variant for one system; returns the rows, the
    forward-pass cost and the largest energy difference from the folx default."""
    init, apply = make_ferminet(atoms, atoms.n_alpha, atoms.n_beta, layers=layers,
                                n_determinants=n_det)
    _, apply32 = make_ferminet(atoms, atoms.n_alpha, atoms.n_beta, layers=layers,
                               n_determinants=n_det, param_dtype=jnp.float32)
    params = init(jax.random.PRNGKey(seed))
    params32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), params)
    r = init_walkers(jax.random.PRNGKey(seed + 1), atoms, walkers)
    log_abs = jax.vmap(lambda p, x: apply(p, x)[1], (None, 0))
    fwd = jax.jit(log_abs).lower(params, r).compile()
    compiled, args_of, info = {}, {}, {}
    variants = local_energy_variants(atoms, apply, apply32, float32, only)
    variants["forward pass, log abs psi (scale)"] = (lambda p, x: apply(p, x)[1], "float64")
    for name, (fn, dtype) in variants.items():
        p = params32 if dtype == "float32" else params
        t0 = time.perf_counter()
        compiled[name] = jax.jit(jax.vmap(fn, (None, 0))).lower(p, r).compile()
        info[name] = {"compile_s": time.perf_counter() - t0,
                      "mflop_per_walker": _flops(compiled[name], walkers) / 1e6}
        args_of[name] = (p, r)
        print(f"  compiled {name} ({info[name]['compile_s']:.1f} s)", flush=True)
    load_before = list(os.getloadavg())
    times = time_interleaved(compiled, args_of, rounds)
    load_after = list(os.getloadavg())
    energies = {n: np.asarray(compiled[n](*args_of[n])) for n in compiled}
    names = list(compiled)
    ref = names[0]
    rows = []
    for name in names:
        wall, cpu = times[name]
        is_energy = not name.startswith("forward")
        rows.append({
            "what": name,
            "wall_ms_per_walker": 1e3 * wall / walkers,
            "cpu_ms_per_walker": 1e3 * cpu / walkers,
            "cpu_over_folx": cpu / times[ref][1],
            "wall_over_folx": wall / times[ref][0],
            "cpu_over_forward": cpu / times[names[-1]][1],
            "mflop_per_walker": info[name]["mflop_per_walker"],
            "compile_s": info[name]["compile_s"],
            "max_abs_energy_difference_from_folx": (
                float(np.max(np.abs(energies[name] - energies[ref]))) if is_energy else None),
        })
    return {"rows": rows, "load_average_before": load_before, "load_average_after": load_after,
            "n_parameters": int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
            "forward_mflop_per_walker": _flops(fwd, walkers) / 1e6}


def _ratio(x: float | None) -> str:
    return "not timed" if x is None else f"{x:.2f}"


def _print_rows(rows: list[dict]) -> None:
    for row in rows:
        d = row["max_abs_energy_difference_from_folx"]
        print(f"  {row['what']:44s} cpu {row['cpu_ms_per_walker']:8.3f} ms/walker "
              f"(wall {row['wall_ms_per_walker']:8.3f}), cpu / folx {row['cpu_over_folx']:5.2f} "
              f"(wall / folx {row['wall_over_folx']:5.2f}), "
              f"{row['mflop_per_walker']:8.1f} MFLOP/walker"
              + (f", max |dE| {d:.1e} Ha" if d is not None else ""), flush=True)


def _table(rows: list[dict]) -> list[str]:
    lines = ["| local energy | CPU ms / walker | wall ms / walker | CPU / folx | wall / folx "
             "| CPU / forward | XLA MFLOP / walker | max \\|E - E_folx\\| (Ha) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        d = row["max_abs_energy_difference_from_folx"]
        lines.append(f"| {row['what']} | {row['cpu_ms_per_walker']:.3f} | "
                     f"{row['wall_ms_per_walker']:.3f} | {row['cpu_over_folx']:.2f} | "
                     f"{row['wall_over_folx']:.2f} | {row['cpu_over_forward']:.1f} | "
                     f"{row['mflop_per_walker']:.1f} | "
                     + ("-" if d is None else f"{d:.1e}") + " |")
    return lines


def _network(atoms, net: dict | None, layers, n_det: int):
    """``(init, apply, folx sparsity threshold)``: FermiNet of ``layers`` and ``n_det``
    determinants when ``net`` is None, else the network of ``net``
    (:func:`nqs.models.electrons.network_options`) with the threshold the driver gives it."""
    if net is None:
        init, apply = make_ferminet(atoms, atoms.n_alpha, atoms.n_beta, layers=layers,
                                    n_determinants=n_det)
        return init, apply, 0
    init, apply, _ = make_network(atoms, net)
    return init, apply, folx_sparsity(net)


def flops_only(geometry: str, layers, n_det: int, walkers: int, net: dict | None = None) -> dict:
    """XLA operation counts per walker of log|psi| and of the folx and ``jax.hessian`` local
    energies for one system (the loop's count would be one iteration only); ``net``: another
    network than FermiNet (:func:`_network`), folx with its sparsity."""
    atoms = make_atoms(geometry)
    init, apply, sparsity = _network(atoms, net, layers, n_det)
    params = init(jax.random.PRNGKey(0))
    r = init_walkers(jax.random.PRNGKey(1), atoms, walkers)
    log_abs = jax.vmap(lambda p, x: apply(p, x)[1], (None, 0))
    out = {"forward": _flops(jax.jit(log_abs).lower(params, r).compile(), walkers)}
    for lap, fn in (("folx", make_local_energy(apply, atoms, "folx", sparsity)),
                    ("hessian", _jax_hessian_local_energy(apply, atoms))):
        out[lap] = _flops(jax.jit(jax.vmap(fn, (None, 0))).lower(params, r).compile(), walkers)
    print(f"{geometry}: {atoms.n_electrons} electrons; MFLOP per walker: forward "
          f"{out['forward'] / 1e6:.2f}, folx {out['folx'] / 1e6:.1f} "
          f"({out['folx'] / out['forward']:.1f} x), jax.hessian {out['hessian'] / 1e6:.1f} "
          f"({out['hessian'] / out['forward']:.1f} x); jax.hessian / folx "
          f"{out['hessian'] / out['folx']:.2f}", flush=True)
    return out


def _chunked(e_loc, chunk: int):
    """``(params, r [W, n, 3]) -> [W]``: ``vmap(e_loc)`` over chunks of ``chunk`` walkers, the
    chunks one after the other (``lax.map``, as the driver's ``chunk_size``)."""

    def f(params, r):
        rc = r.reshape(-1, chunk, *r.shape[1:])
        return jax.lax.map(lambda x: jax.vmap(e_loc, (None, 0))(params, x), rc).reshape(-1)

    return f


def _time_system(geometry: str, layers, n_det: int, walkers: int, rounds: int,
                 net: dict | None, chunks: list[int] | None = None) -> dict:
    """One row of :func:`compare_systems`: operation counts and the interleaved CPU times of
    folx (with the network's sparsity), the HVP loop and, for a sparse network, dense folx,
    each at every chunk size of ``chunks`` (walkers per ``vmap``; None: all); the ratio is
    best against best."""
    atoms = make_atoms(geometry)
    flops = flops_only(geometry, layers, n_det, walkers, net)
    init, apply, sparsity = _network(atoms, net, layers, n_det)
    params = init(jax.random.PRNGKey(0))
    r = init_walkers(jax.random.PRNGKey(1), atoms, walkers)
    paths = {"folx": ("folx", sparsity), "hessian": ("hessian", 0)}
    if sparsity:
        paths["folx dense"] = ("folx", 0)
    fns = {}
    for c in chunks or [walkers]:
        if walkers % c:
            raise SystemExit(f"--chunks: {c} does not divide --walkers {walkers}")
        for k, (lap, sp) in paths.items():
            e_loc = make_local_energy(apply, atoms, lap, sp)
            fns[(k, c)] = jax.jit(_chunked(e_loc, c)).lower(params, r).compile()
    load = os.getloadavg()[0]
    times = time_interleaved(fns, {k: (params, r) for k in fns}, rounds)
    energies = {k: np.asarray(f(params, r)) for k, f in fns.items()}
    cpu = {k: 1e3 * t[1] / walkers for k, t in times.items()}  # ms per walker
    best = {p: min((cpu[(q, c)], c) for (q, c) in cpu if q == p) for p in paths}
    ref = energies[("hessian", (chunks or [walkers])[0])]
    row = {"system": geometry, "electrons": atoms.n_electrons, "walkers": walkers,
           "folx_sparsity_threshold": sparsity,
           "cpu_ms_per_walker": {f"{p}, chunk {c}": v for (p, c), v in cpu.items()},
           "best_chunk": {p: b[1] for p, b in best.items()},
           "folx_cpu_ms_per_walker": best["folx"][0],
           "hvp_loop_cpu_ms_per_walker": best["hessian"][0],
           "hvp_loop_over_folx_cpu": best["hessian"][0] / best["folx"][0],
           "max_abs_energy_difference_from_hvp": float(max(
               np.max(np.abs(e - ref)) for e in energies.values())),
           "mflop_per_walker": {k: v / 1e6 for k, v in flops.items()},
           "jax_hessian_over_folx_flops": flops["hessian"] / flops["folx"],
           "n_parameters": int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
           "load_average": [load, os.getloadavg()[0]]}
    if sparsity:
        row["folx_dense_cpu_ms_per_walker"] = best["folx dense"][0]
    for (p, c), v in cpu.items():
        print(f"  {p:10s} chunk {c:4d}: {v:8.2f} CPU ms/walker", flush=True)
    print(f"  best: folx {row['folx_cpu_ms_per_walker']:.2f}, HVP loop "
          f"{row['hvp_loop_cpu_ms_per_walker']:.2f} (x {row['hvp_loop_over_folx_cpu']:.2f})"
          + (f", folx dense {row['folx_dense_cpu_ms_per_walker']:.2f}" if sparsity else "")
          + f"; max |dE| {row['max_abs_energy_difference_from_hvp']:.1e} Ha; load {load:.1f} "
          f"-> {row['load_average'][1]:.1f}", flush=True)
    return row


def compare_systems(geometries: list[str], layers, n_det: int, walkers: int, rounds: int,
                    out: Path, net: dict | None = None, chunks: list[int] | None = None) -> None:
    """folx against the Hessian-trace loop (CPU time) and ``jax.hessian`` (operation count only:
    its vmapped LAPACK solves deadlocked on 2 cores for N2) for several systems; FermiNet of
    ``layers`` or the network of ``net`` (a LapNet: folx with sparsity, and dense); each path
    at every chunk size of ``chunks``, best against best."""
    results = [_time_system(g, layers, n_det, walkers, rounds, net, chunks) for g in geometries]
    stem = "realspace_step_systems" + ("" if net is None else f"_{net['ansatz']}")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{stem}.json",
                      {"layers": [list(x) for x in layers], "determinants": n_det,
                       "network": net, "rounds": rounds, "systems": results,
                       "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                   "jax": jax.__version__}})
    what = (f"FermiNet layers {list(layers)}" if net is None else
            f"{net['ansatz']} {net['n_layers']} layers, width {net['width']}, {net['heads']} "
            f"heads, layer norm {net['layer_norm']}; folx with sparsity_threshold="
            f"{folx_sparsity(net)}")
    lines = [f"{what}, {n_det} dets; CPU time per walker, median of "
             f"{rounds} interleaved rounds"
             + ("" if not chunks else f", each path at its best of the chunk sizes {chunks} "
                "(walkers per vmap)"), "",
             "| system | electrons | walkers | folx CPU ms | HVP loop CPU ms | loop / folx | "
             "forward MFLOP | folx / forward (MFLOP) | jax.hessian / forward (MFLOP) | "
             "jax.hessian / folx (MFLOP) | load |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in results:
        f = row["mflop_per_walker"]
        lines.append(f"| {row['system']} | {row['electrons']} | {row['walkers']} | "
                     f"{row['folx_cpu_ms_per_walker']:.2f} | {row['hvp_loop_cpu_ms_per_walker']:.2f} | "
                     f"{row['hvp_loop_over_folx_cpu']:.2f} | {f['forward']:.2f} | "
                     f"{f['folx'] / f['forward']:.1f} | {f['hessian'] / f['forward']:.1f} | "
                     f"{row['jax_hessian_over_folx_flops']:.2f} | "
                     f"{row['load_average'][0]:.1f} -> {row['load_average'][1]:.1f} |")
    lines += ["", "CPU ms / walker by path and chunk size: " + "; ".join(
        f"{r['system']}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_ms_per_walker"].items())
        for r in results)]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}/{stem}.json and .md", file=sys.stderr)


def _deepqmc_timing(layers, n_det: int, walkers: int, repeats: int) -> dict:
    """DeepQMC's own LiH local energy (R = 3.015 bohr, its ``ferminet`` ansatz config at the
    same layers / widths / determinant count, its default Laplacian: a ``jax.linearize`` of the
    gradient and one JVP per coordinate); CPU and wall time per walker, medians of ``repeats``
    calls (not interleaved with the nqs rows: ``realspace_vs_deepqmc.py`` is the side-by-side
    comparison, with the differences between the two networks).

    Needs ``deepqmc`` importable (not a project dependency: run this script with an interpreter
    that has it, see the module docstring). Returns ``{"status": ...}`` and, when it ran, the
    timings.
    """
    try:
        sys.path.insert(0, str(HERE))
        from realspace_vs_deepqmc import DeepQMCSide
        dq = DeepQMCSide(len(layers), layers[0][0], layers[0][1], n_det, walkers)
    except Exception as err:  # noqa: BLE001  (any import failure is a status)
        msg = str(err).splitlines()[0] if str(err) else ""
        return {"status": f"deepqmc not importable ({type(err).__name__}: {msg})"}
    from importlib.metadata import version

    params, phys = dq.local_energy_setup()
    e_loc = jax.jit(jax.vmap(lambda p, x: dq.hamil.local_energy(dq.ansatz.apply)(None, p, x)[0],
                             (None, 0)))
    t0 = time.perf_counter()
    jax.block_until_ready(e_loc(params, phys))
    first = time.perf_counter() - t0
    times = time_interleaved({"deepqmc": e_loc}, {"deepqmc": (params, phys)}, repeats)
    wall, cpu = times["deepqmc"]
    return {
        "status": f"deepqmc {version('deepqmc')} (ansatz config 'ferminet' at this size, full "
                  "determinants; its default Laplacian)",
        "n_parameters": int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
        "compile_s": first,
        "total_s": wall,
        "per_walker_ms": 1e3 * wall / walkers,
        "cpu_per_walker_ms": 1e3 * cpu / walkers,
        "load_average": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="2 x (32, 8) layers, 4 determinants")
    p.add_argument("--walkers", type=int, default=256, help="walkers (default: 256)")
    p.add_argument("--repeats", type=int, default=5,
                   help="interleaved timing rounds / timed VMC steps (default: 5)")
    p.add_argument("--mcmc-steps", type=int, default=10, help="Metropolis moves per step")
    p.add_argument("--optimizers", nargs="*", default=["kfac", "adam"],
                   choices=["kfac", "adam", "sr"])
    p.add_argument("--float32", action="store_true",
                   help="also time folx and the Hessian loop with the network in float32")
    p.add_argument("--deepqmc", action="store_true",
                   help="also time DeepQMC's LiH local energy (needs the deepqmc package)")
    p.add_argument("--flops-only", nargs="+", metavar="ATOMS", default=None,
                   help='only XLA operation counts (forward, folx, jax.hessian) for these systems, '
                   'e.g. "He 0 0 0" "Li 0 0 0; H 0 0 3.015" (bohr); nothing is timed or written')
    p.add_argument("--systems", nargs="+", metavar="ATOMS", default=None,
                   help="only folx vs the Hessian loop for these systems (operation counts and "
                   "CPU time at --walkers); writes results/realspace_step_systems.{json,md}")
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANT_KEYS), default=None,
                   help="local-energy variants to time besides folx (default: all)")
    p.add_argument("--ansatz", choices=("ferminet", "lapnet"), default="ferminet",
                   help="with --systems or --flops-only: the network (lapnet: folx with the "
                   "driver's sparsity threshold; default: ferminet)")
    p.add_argument("--chunks", type=int, nargs="+", default=None,
                   help="with --systems: time every path with the walkers in chunks of each of "
                   "these sizes (lax.map of vmaps, as the driver's --chunk-size) and compare "
                   "best against best (default: all walkers in one vmap)")
    p.add_argument("--layers", type=int, default=2, help="LapNet layers (default: 2)")
    p.add_argument("--width", type=int, default=256, help="LapNet width (default: 256)")
    p.add_argument("--heads", type=int, default=4, help="LapNet heads (default: 4)")
    p.add_argument("--layer-norm", choices=("pre", "post", "none"), default="pre",
                   help="LapNet layer norm (default: pre)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.ansatz != "ferminet" and not (args.systems or args.flops_only):
        p.error("--ansatz lapnet works with --systems or --flops-only")

    layers = ((32, 8),) * 2 if args.small else DEFAULT_LAYERS
    n_det = 4 if args.small else 16
    out = args.out or HERE / "results"
    net = (None if args.ansatz == "ferminet" else
           network_options(args.ansatz, (), n_det, "isotropic", False, args.layers, args.heads,
                           args.width, args.layer_norm, True))
    if args.flops_only:
        for geometry in args.flops_only:
            flops_only(geometry, layers, n_det, args.walkers, net)
        return 0
    if args.systems:
        compare_systems(args.systems, layers, n_det, args.walkers, args.repeats, out, net,
                        args.chunks)
        return 0
    atoms = make_atoms("Li 0 0 0; H 0 0 3.015")
    w = args.walkers
    print(f"LiH, FermiNet layers={list(layers)}, {n_det} determinants, {w} walkers, "
          f"{jax.devices()[0].platform} ({os.cpu_count()} cores)", flush=True)
    comp = compare_local_energies(atoms, layers, n_det, w, args.repeats, args.float32,
                                  only=args.variants)
    rows = comp["rows"]
    n_params = comp["n_parameters"]
    print(f"  {n_params} parameters; 1-minute load average {comp['load_average_before'][0]:.1f} "
          f"before, {comp['load_average_after'][0]:.1f} after the interleaved rounds", flush=True)
    _print_rows(rows)
    by_name = {r["what"]: r for r in rows}
    ratio_loop = by_name.get("Hessian trace, HVP loop (nqs 'hessian')", {}).get("cpu_over_folx")
    ratio_jaxh = by_name.get("Hessian trace, jax.hessian (old reference)", {}).get("cpu_over_folx")

    init, apply = make_ferminet(atoms, atoms.n_alpha, atoms.n_beta, layers=layers,
                                n_determinants=n_det)
    params = init(jax.random.PRNGKey(0))
    walkers = init_walkers(jax.random.PRNGKey(1), atoms, w)
    e_loc_fn = make_local_energy(apply, atoms, "folx")
    steps = []
    for opt in args.optimizers:
        vmc = make_vmc_method(opt, apply, e_loc_fn, mcmc_steps=args.mcmc_steps)
        # kfac-jax donates the parameters it steps: give every optimizer its own copy.
        state = vmc.init(jax.random.PRNGKey(2), copy_tree(params), walkers, 0.2)
        keys = iter(jax.random.split(jax.random.PRNGKey(3), args.repeats + 1))
        box = {"state": state}

        def one(vmc=vmc, box=box, keys=keys):
            box["state"], stats = vmc.step(next(keys), box["state"])
            return stats["energy"]

        load = os.getloadavg()[0]
        first, med = _median_time(one, args.repeats)
        steps.append({"what": f"VMC step ({opt}, {args.mcmc_steps} MCMC moves)",
                      "compile_s": first, "total_s": med, "per_walker_ms": 1e3 * med / w,
                      "load_average": [load, os.getloadavg()[0]]})
        print(f"  VMC step {opt:5s}: {med:.3f} s/step ({1e3 * med / w:.2f} ms/walker; "
              f"compile + first step {first:.1f} s; load {load:.1f})", flush=True)

    deepqmc = (_deepqmc_timing(layers, n_det, w, args.repeats) if args.deepqmc
               else {"status": "not run (--deepqmc)"})
    print(f"  DeepQMC: {deepqmc['status']}")
    folx_cpu = rows[0]["cpu_ms_per_walker"]
    if "per_walker_ms" in deepqmc:
        print(f"  DeepQMC local energy: {deepqmc['cpu_per_walker_ms']:.3f} ms/walker CPU, "
              f"{deepqmc['per_walker_ms']:.3f} wall ({deepqmc['n_parameters']} parameters; "
              f"compile + first call "
              f"{deepqmc['compile_s']:.1f} s)", flush=True)
    result = {
        "system": "LiH R=3.015 bohr",
        "layers": [list(x) for x in layers],
        "determinants": n_det,
        "n_parameters": n_params,
        "walkers": w,
        "rounds": args.repeats,
        "local_energy": rows,
        "hvp_loop_over_folx_cpu": ratio_loop,
        "jax_hessian_over_folx_cpu": ratio_jaxh,
        "forward_mflop_per_walker": comp["forward_mflop_per_walker"],
        "load_average_local_energy": [comp["load_average_before"], comp["load_average_after"]],
        "vmc_steps": steps,
        "deepqmc": deepqmc,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "device": str(jax.devices()[0]), "jax": jax.__version__},
    }
    stem = "realspace_step_small" if args.small else "realspace_step"
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{stem}.json", result)
    lines = [f"LiH, layers {list(layers)}, {n_det} dets, {n_params} parameters, {w} walkers, "
             f"{result['machine']['device']} ({os.cpu_count()} cores); medians of {args.repeats} "
             f"interleaved rounds; 1-minute load average {comp['load_average_before'][0]:.1f} "
             f"before, {comp['load_average_after'][0]:.1f} after", ""]
    lines += _table(rows)
    lines += ["", f"Hessian trace (HVP loop) / folx, CPU time: {_ratio(ratio_loop)}; "
              f"jax.hessian / folx: {_ratio(ratio_jaxh)}", ""]
    if steps:
        lines += ["| VMC step | median time (s) | per walker (ms) | compile + first step (s) | load |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['what']} | {r['total_s']:.3f} | {r['per_walker_ms']:.3f} | "
                  f"{r['compile_s']:.1f} | {r['load_average'][0]:.1f} |" for r in steps]
        lines.append("")
    lines.append(f"DeepQMC: {deepqmc['status']}")
    if "per_walker_ms" in deepqmc:
        lines += [f"DeepQMC local energy: {deepqmc['cpu_per_walker_ms']:.3f} ms/walker CPU, "
                  f"{deepqmc['per_walker_ms']:.3f} wall (nqs folx: {folx_cpu:.3f} ms CPU, "
                  f"{rows[0]['wall_ms_per_walker']:.3f} wall), {deepqmc['n_parameters']} "
                  f"parameters, load {deepqmc['load_average']:.1f}; DeepQMC's network has full "
                  "determinants, nqs's here block-diagonal ones: realspace_vs_deepqmc.py compares "
                  "equal networks side by side"]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}/{stem}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
