"""How the time (and memory) of one VMC step grows with the problem and with the sample count.

Series (each runs in its own subprocess, sizes increasing):

* ``spins``: TFIM chain (h = 1, periodic), N = 16 .. 256 spins, complex RBM alpha = 1, Metropolis
  single flips (sweep = N moves, 4 discarded sweeps per step), 256 samples, 64 chains;
* ``hchain``: hydrogen chains H4 .. H16 (R = 1.0 A, STO-3G, RHF orbitals; 8 .. 32 spin orbitals),
  backflow (64,), Metropolis electron hops (PairHopRule), 64 samples, 16 chains, no
  de-duplication (so the cost does not depend on how often configurations repeat);
* ``realspace``: hydrogen chains in real space (R = 1.4 bohr), 2 .. 14 electrons, FermiNet
  2 x (32, 8), 4 determinants, 128 walkers, 10 Metropolis moves per step, folx Laplacian;
* ``samples``: the three families at a fixed size (TFIM N = 32, H4, real-space H2) with the
  number of samples (walkers) multiplied by 4 twice.

Every step is an Adam step (sampling, local energies, gradient, update), so the exponents are
those of the VMC machinery, not of an SR/KFAC linear solve. Time per step: median of the timed
jitted steps (3 to 10; 1 or 2 where a step takes over 10 s) after one step that includes
compilation (``block_until_ready``). Memory: the series process's max RSS after the point
(a high-water mark; sizes increase within a series, so it is the peak of the largest point so
far), also as the increase over a bare process that imported the same modules (``baseline``),
and the device's peak bytes where the backend reports them (GPUs; the CPU reports none).

Exponents: least-squares slope of log(time) against log(size) per series (size = spins,
spin orbitals, electrons, samples).

    python experiments/benchmarks/scaling.py            # all series (~30 min on 2 cores at load 17)
    python experiments/benchmarks/scaling.py --quick    # three small points per series

Writes ``results/scaling.{json,md,png}`` next to this file (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

FULL = {
    "spins": [16, 32, 64, 128, 256],
    "hchain": [4, 8, 12, 16],
    "realspace": [2, 4, 8, 14],
    "samples": {"spins": (32, [128, 512, 2048]),
                "hchain": (4, [32, 128, 512]),
                "realspace": (2, [64, 256, 1024])},
}
QUICK = {
    "spins": [16, 32, 64],
    "hchain": [4, 6, 8],
    "realspace": [2, 4, 6],
    "samples": {"spins": (32, [128, 256, 512]),
                "hchain": (4, [32, 64, 128]),
                "realspace": (2, [64, 128, 256])},
}
DEFAULT_SAMPLES = {"spins": 256, "hchain": 64, "realspace": 128}
SIZE_LABEL = {"spins": "spins N", "hchain": "spin orbitals", "realspace": "electrons"}


# ------------------------------------------------------------------ one point (subprocess)


def _spins_step(size: int, samples: int):
    from hamiltonians.spin import make_spin_model
    from nqs.optim import make_optimizer
    from nqs.problems import spin_ansatz, spin_sampler
    from nqs.vmc import make_vmc

    model = make_spin_model("tfim", "chain", size, h=1.0)
    ansatz = spin_ansatz(model, "rbm", 1.0)
    sampler = spin_sampler(model, "mcmc", samples, min(64, samples), n_discard_sweeps=4)
    init, step = make_vmc(ansatz, model, sampler, make_optimizer("adam", 1e-3))
    import jax

    state = init(jax.random.PRNGKey(0))
    n_par = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
    return jax.jit(step), state, n_par, size


def _hchain_step(n_h: int, samples: int):
    from hamiltonians.molecule import MoleculeSpec, compute_integrals
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.optim import make_optimizer
    from nqs.problems import molecule_ansatz, molecule_sampler
    from nqs.vmc import make_vmc

    atoms = "; ".join(f"H 0 0 {1.0 * i:.3f}" for i in range(n_h))
    integrals, _ = compute_integrals(MoleculeSpec(atoms, basis="sto-3g", name=f"H{n_h}"))
    ham = MolecularHamiltonian(integrals)
    sampler, _ = molecule_sampler(ham.hilbert, "mcmc", samples, min(16, samples))
    ansatz = molecule_ansatz(ham.hilbert, "backflow", hidden=(64,), init_scale=0.3)
    init, step = make_vmc(ansatz, ham, sampler, make_optimizer("adam", 1e-3))
    import jax

    state = init(jax.random.PRNGKey(0))
    n_par = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
    return jax.jit(step), state, n_par, 2 * integrals.n_orbitals


def _realspace_step(n_el: int, walkers: int):
    import jax

    from hamiltonians.realspace import make_atoms, make_local_energy
    from nqs.models.ferminet import make_ferminet
    from nqs.problems.realspace import make_vmc_method
    from nqs.realspace.mcmc import init_walkers

    atoms = make_atoms("; ".join(f"H 0 0 {1.4 * i:.3f}" for i in range(n_el)))
    init, apply = make_ferminet(atoms, atoms.n_alpha, atoms.n_beta, layers=((32, 8),) * 2,
                                n_determinants=4)
    params = init(jax.random.PRNGKey(0))
    vmc = make_vmc_method("adam", apply, make_local_energy(apply, atoms, "folx"), mcmc_steps=10)
    state = vmc.init(jax.random.PRNGKey(1), params,
                     init_walkers(jax.random.PRNGKey(2), atoms, walkers), 0.2)
    keys = iter(jax.random.split(jax.random.PRNGKey(3), 1000))

    def step(s):
        s, stats = vmc.step(next(keys), s)
        return s, stats["energy"]

    n_par = sum(x.size for x in jax.tree_util.tree_leaves(params))
    return step, state, n_par, n_el


def run_point(family: str, size: int, samples: int, steps: int) -> dict:
    """Time ``steps`` VMC steps of one problem after a compiling step; memory at the end."""
    import jax

    import nqs  # noqa: F401  (float64)

    t0 = time.perf_counter()
    builder = {"spins": _spins_step, "hchain": _hchain_step, "realspace": _realspace_step}
    step, state, n_par, x = builder[family](size, samples)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, info = step(state)
    jax.block_until_ready(info)
    first = time.perf_counter() - t0
    # At least one timed step; up to ``steps`` while the point costs under 20 s, and more
    # (up to 10) for cheap steps, whose timings scatter most on a loaded machine.
    times: list[float] = []
    while not times or (len(times) < 10 and sum(times) < 20.0
                        and (len(times) < steps or sum(times) < 2.0)):
        t0 = time.perf_counter()
        state, info = step(state)
        jax.block_until_ready(info)
        times.append(time.perf_counter() - t0)
    times.sort()
    stats = jax.devices()[0].memory_stats() or {}
    return {"family": family, "size": size, "x": x, "samples": samples,
            "n_parameters": int(n_par), "build_s": t_build, "first_step_s": first,
            "step_s": times[len(times) // 2], "step_times_s": times,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "device_peak_mb": stats.get("peak_bytes_in_use", 0) / 2**20 or None}


def baseline_point() -> dict:
    """A process that imported the same modules and ran one tiny jitted program."""
    import jax
    import jax.numpy as jnp

    import hamiltonians.molecule  # noqa: F401
    import hamiltonians.realspace  # noqa: F401
    import nqs.problems.realspace  # noqa: F401
    import nqs.vmc  # noqa: F401

    jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.ones(3)))
    return {"family": "baseline",
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ------------------------------------------------------------------ driver (parent process)


def _spawn(args: list[str], timeout: float) -> tuple[list[dict], str | None]:
    """Run this script with ``args``; ``(JSON records printed so far, error or None)``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        stdout, error = proc.stdout, None
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            error = f"exit {proc.returncode}: {tail}"
    except subprocess.TimeoutExpired as err:
        out = err.stdout or b""
        stdout = out.decode() if isinstance(out, bytes) else out
        error = f"timed out after {timeout:.0f} s"
    records = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]
    return records, error


def fit_exponent(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x (None with fewer than two points)."""
    import numpy as np

    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if x and y and y > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def _series(plan: dict, families: list[str]) -> list[tuple[str, str, list[tuple[int, int]]]]:
    """``(series name, family, [(size, samples), ...])``."""
    out = []
    for fam in ("spins", "hchain", "realspace"):
        if fam in families:
            out.append((f"{fam} (size)", fam, [(s, DEFAULT_SAMPLES[fam]) for s in plan[fam]]))
    if "samples" in families:
        for fam, (size, counts) in plan["samples"].items():
            out.append((f"{fam} (samples)", fam, [(size, n) for n in counts]))
    return out


def _describe(fam: str, size: int) -> str:
    return {"spins": f"TFIM N={size}", "hchain": f"H{size}/STO-3G",
            "realspace": f"H{size} real space"}[fam]


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Scaling of one VMC step (Adam), {m['device']}, {m['cpu_count']} CPUs, jax {m['jax']}; "
        f"load average {m['load_start'][0]:.2f} at start, {m['load_end'][0]:.2f} at end; "
        "median of the timed steps (3 to 10; fewer for steps over 10 s) after compilation; "
        f"baseline process max RSS "
        f"{result['baseline_rss_mb']:.0f} MB.",
        "",
        "| series | exponent (time) | exponent (RSS above baseline) |",
        "|---|---|---|",
    ]
    for s in result["series"]:
        et = "-" if s["time_exponent"] is None else f"{s['time_exponent']:.2f}"
        em = "-" if s["rss_exponent"] is None else f"{s['rss_exponent']:.2f}"
        lines.append(f"| {s['name']}: time ~ {s['x_label']}^p | {et} | {em} |")
    lines += ["", "| series | problem | size | samples | parameters | step (s) | first step incl. "
              "compile (s) | max RSS (MB) | device peak (MB) |", "|" + "---|" * 9]
    for s in result["series"]:
        for p in s["points"]:
            if "error" in p:
                lines.append(f"| {s['name']} | {_describe(s['family'], p['size'])} | - | "
                             f"{p['samples']} | - | {p['error']} | - | - | - |")
                continue
            dev = "-" if p["device_peak_mb"] is None else f"{p['device_peak_mb']:.0f}"
            lines.append(
                f"| {s['name']} | {_describe(s['family'], p['size'])} | {p['x']} | "
                f"{p['samples']} | {p['n_parameters']} | {p['step_s']:.4f} | "
                f"{p['first_step_s']:.1f} | {p['max_rss_mb']:.0f} | {dev} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in result["series"]:
        ok = [p for p in s["points"] if "error" not in p]
        if not ok:
            continue
        ax = axes[1] if s["name"].endswith("(samples)") else axes[0]
        xs = np.array([p["x"] if not s["name"].endswith("(samples)") else p["samples"]
                       for p in ok], dtype=float)
        ys = np.array([p["step_s"] for p in ok])
        e = s["time_exponent"]
        label = f"{s['name']}: p = {e:.2f}" if e is not None else s["name"]
        line, = ax.loglog(xs, ys, "o", label=label)
        if e is not None and len(xs) > 1:
            c = np.exp(np.mean(np.log(ys) - e * np.log(xs)))
            xx = np.geomspace(xs.min(), xs.max(), 20)
            ax.loglog(xx, c * xx**e, "-", color=line.get_color(), lw=1)
    axes[0].set_xlabel("size (spins N / spin orbitals / electrons)")
    axes[1].set_xlabel("samples (walkers)")
    for ax in axes:
        ax.set_ylabel("time per VMC step (s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("growth with the problem size")
    axes[1].set_title("growth with the number of samples")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="three small points per series")
    p.add_argument("--series", nargs="+", default=["spins", "hchain", "realspace", "samples"],
                   choices=["spins", "hchain", "realspace", "samples"])
    p.add_argument("--steps", type=int, default=3, help="timed steps per point (default: 3)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds allowed per series (default: 600)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--points", nargs="+", default=None,
                   help=argparse.SUPPRESS)  # internal: FAMILY SIZE:SAMPLES ..., JSON lines

    p.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")

    if args.baseline:
        print(json.dumps(baseline_point()))
        return 0
    if args.points is not None:
        fam, *pairs = args.points
        for pair in pairs:
            size, samples = (int(v) for v in pair.split(":"))
            print(json.dumps(run_point(fam, size, samples, args.steps)), flush=True)
        return 0

    import jax

    plan = QUICK if args.quick else FULL
    t_start = time.perf_counter()
    load_start = list(os.getloadavg())
    base, err = _spawn(["--baseline"], args.timeout)
    base_rss = base[0]["max_rss_mb"] if base else 0.0
    print(f"baseline process: max RSS {base_rss:.0f} MB; load average {load_start}", flush=True)
    series = []
    for name, fam, points in _series(plan, args.series):
        t0 = time.perf_counter()
        rows, err = _spawn(["--points", fam, *(f"{a}:{b}" for a, b in points),
                            "--steps", str(args.steps)], args.timeout)
        for r in rows:
            print(f"  {name:20s} {_describe(fam, r['size']):18s} samples {r['samples']:5d}: "
                  f"{r['step_s']:.4f} s/step (first {r['first_step_s']:.1f} s), "
                  f"RSS {r['max_rss_mb']:.0f} MB", flush=True)
        for size, samples in points[len(rows):]:  # points the subprocess did not reach
            rows.append({"size": size, "samples": samples, "error": err or "not run"})
            print(f"  {name:20s} {_describe(fam, size):18s} samples {samples:5d}: {err}",
                  flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s for the series)", flush=True)
        ok = [r for r in rows if "error" not in r]
        by_samples = name.endswith("(samples)")
        xs = [r["samples"] if by_samples else r["x"] for r in ok]
        series.append({
            "name": name, "family": fam,
            "x_label": "samples" if by_samples else SIZE_LABEL[fam],
            "points": rows,
            "time_exponent": fit_exponent(xs, [r["step_s"] for r in ok]),
            "rss_exponent": fit_exponent(xs, [r["max_rss_mb"] - base_rss for r in ok]),
        })
        e = series[-1]["time_exponent"]
        print(f"{name}: time ~ {series[-1]['x_label']}^{e:.2f}" if e is not None
              else f"{name}: no fit", flush=True)
    result = {
        "steps": args.steps,
        "quick": args.quick,
        "baseline_rss_mb": base_rss,
        "series": series,
        "wall_time_s": time.perf_counter() - t_start,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "device": str(jax.devices()[0]), "jax": jax.__version__,
                    "load_start": load_start, "load_end": list(os.getloadavg())},
    }
    table = markdown(result)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "scaling_quick" if args.quick else "scaling"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"{stem}.md").write_text(table + "\n")
    plot(result, args.out / f"{stem}.png")
    print(f"wrote {args.out}/{stem}.{{json,md,png}} ({result['wall_time_s']:.0f} s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
