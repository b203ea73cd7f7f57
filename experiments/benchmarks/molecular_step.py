"""Time per de-duplicated molecular VMC step: packed local energies vs the per-sample path.

    python experiments/benchmarks/molecular_step.py                    # N2/STO-3G, H2O/6-31G
    python experiments/benchmarks/molecular_step.py --cases N2/STO-3G --steps 6

The settings are those of ``nqs molecule --sampler mcmc`` (``nqs.bench.fci.Settings()``:
backflow (64,), 2048 samples in 16 chains, pair hops, Adam 3e-3, init 0.3 from HF). Both steps
(``nqs.vmc.make_vmc(..., dedupe=True, packed=True/False)``) are built from the same problem and
called in turn from the same state (interleaved, the order alternating each step); the run
continues from the packed step's state, and the two results are compared (energy, parameters).
Each step's process CPU time and wall time are recorded with the load average; the first
``--warmup`` steps (compilation) are not timed, later recompilations (a new bucket of distinct
configurations or packed row capacity) are counted in but the table also gives medians. Writes
results/molecular_step.{md,json}.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

import nqs  # noqa: E402, F401  (float64)
from hamiltonians.molecule import compute_integrals, parse_molecule  # noqa: E402
from hamiltonians.second_quantized import MolecularHamiltonian  # noqa: E402
from nqs.bench.fci import Settings, make_scheduled_optimizer  # noqa: E402
from nqs.io import write_json_atomic  # noqa: E402
from nqs.optim.flat import real_flat  # noqa: E402
from nqs.problems import molecule_ansatz, molecule_sampler  # noqa: E402
from nqs.vmc import make_vmc  # noqa: E402

HERE = Path(__file__).resolve().parent
CASES: dict[str, tuple[str, str]] = {"N2/STO-3G": ("N2", "sto-3g"), "H2O/6-31G": ("H2O", "6-31g")}


def timed(fn, *args):
    """``(result, wall s, process CPU s)`` of ``fn(*args)``, results ready."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - w0, time.process_time() - c0


def run_case(label: str, name: str, basis: str, args: argparse.Namespace) -> dict:
    settings = Settings(sampler="mcmc", samples=args.samples, steps=args.warmup + args.steps)
    integrals, _ = compute_integrals(parse_molecule(name, basis=basis))
    ham = MolecularHamiltonian(integrals)
    sampler, mode = molecule_sampler(ham.hilbert, "mcmc", settings.samples, settings.chains,
                                     rule=settings.rule)
    assert mode == "mcmc"
    ansatz = molecule_ansatz(ham.hilbert, settings.ansatz, hidden=settings.hidden,
                             n_determinants=settings.n_determinants, init_scale=0.3)
    optimizer = make_scheduled_optimizer(settings)
    init, step_packed = make_vmc(ansatz, ham, sampler, optimizer, dedupe=True, packed=True)
    _, step_plain = make_vmc(ansatz, ham, sampler, optimizer, dedupe=True, packed=False)
    steps = {"packed": step_packed, "per_sample": step_plain}
    state = init(jax.random.PRNGKey(args.seed))
    rows = []
    for k in range(args.warmup + args.steps):
        order = list(steps) if k % 2 == 0 else list(steps)[::-1]
        row = {"step": k, "timed": k >= args.warmup, "load": os.getloadavg()[0]}
        out = {}
        for variant in order:
            (new, info), wall, cpu = timed(steps[variant], state)
            out[variant] = (new, info)
            row[f"{variant}_wall_s"], row[f"{variant}_cpu_s"] = wall, cpu
        (a, ia), (b, ib) = out["packed"], out["per_sample"]
        row["energy"] = float(ia.energy)
        row["energy_diff"] = abs(float(ia.energy) - float(ib.energy))
        row["param_update_diff"] = float(np.max(np.abs(
            np.asarray(real_flat(a.params)[0]) - np.asarray(real_flat(b.params)[0]))))
        rows.append(row)
        print(f"{label} step {k}: packed {row['packed_wall_s']:.2f} s wall / "
              f"{row['packed_cpu_s']:.2f} s CPU, per-sample {row['per_sample_wall_s']:.2f} / "
              f"{row['per_sample_cpu_s']:.2f}, E = {row['energy']:.6f}, "
              f"|dE| = {row['energy_diff']:.1e}, |d params| = {row['param_update_diff']:.1e}, "
              f"load {row['load']:.1f}", flush=True)
        state = a
    timed_rows = [r for r in rows if r["timed"]]
    summary = {}
    for variant in steps:
        for kind in ("wall", "cpu"):
            v = [r[f"{variant}_{kind}_s"] for r in timed_rows]
            summary[f"{variant}_{kind}_median_s"] = float(np.median(v))
            summary[f"{variant}_{kind}_mean_s"] = float(np.mean(v))
    summary["speedup_cpu_median"] = (summary["per_sample_cpu_median_s"]
                                     / summary["packed_cpu_median_s"])
    summary["speedup_wall_median"] = (summary["per_sample_wall_median_s"]
                                      / summary["packed_wall_median_s"])
    return {"case": label, "n_spin_orbitals": ham.hilbert.n_sites, "max_conn": ham.max_conn,
            "samples": settings.samples, "chains": settings.chains, "rows": rows,
            "load_avg": [r["load"] for r in timed_rows], **summary}


def markdown(records: list[dict], meta: dict) -> str:
    lines = ["| molecule | spin orb. | max_conn | samples | timed steps | per-sample CPU s/step "
             "(median / mean) | packed CPU s/step (median / mean) | speedup (CPU, median) | "
             "per-sample wall s | packed wall s | speedup (wall) | max abs dE | load |",
             "|" + "---|" * 13]
    for r in records:
        n = sum(row["timed"] for row in r["rows"])
        de = max(row["energy_diff"] for row in r["rows"])
        lines.append(
            f"| {r['case']} | {r['n_spin_orbitals']} | {r['max_conn']} | {r['samples']} | {n} | "
            f"{r['per_sample_cpu_median_s']:.2f} / {r['per_sample_cpu_mean_s']:.2f} | "
            f"{r['packed_cpu_median_s']:.2f} / {r['packed_cpu_mean_s']:.2f} | "
            f"**{r['speedup_cpu_median']:.1f}x** | {r['per_sample_wall_median_s']:.2f} | "
            f"{r['packed_wall_median_s']:.2f} | {r['speedup_wall_median']:.1f}x | {de:.1e} | "
            f"{min(r['load_avg']):.1f}-{max(r['load_avg']):.1f} |")
    lines.append("")
    lines.append(f"Machine: {meta['cpu']}, {meta['cores']} cores; jax {meta['jax']}; "
                 f"{meta['warmup']} untimed steps (compilation) then {meta['steps']} timed, "
                 "the two variants called in turn from the same state; XLA_FLAGS="
                 + meta["xla_flags"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--samples", type=int, default=Settings().samples)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    meta = {"cpu": _cpu(), "cores": os.cpu_count(), "jax": jax.__version__,
            "warmup": args.warmup, "steps": args.steps,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}
    records = [run_case(c, *CASES[c], args) for c in args.cases]
    table = markdown(records, meta)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "molecular_step.md").write_text(table)
    write_json_atomic(args.out / "molecular_step.json",
                      {"records": records, "meta": meta, "args": vars(args) | {"out": str(args.out)}})
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
