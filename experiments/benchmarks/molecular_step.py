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
configurations) are counted in the means; the table gives medians. Each step's draw is
repeated (same key) to count its distinct configurations and to time the local energies alone
on them, both ways (packed; ``make_local_energy`` vmapped, jitted). Writes
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
from nqs.bench.fci import (  # noqa: E402
    MCMC_SAMPLES,
    Settings,
    make_scheduled_optimizer,
    resolve_settings,
)
from nqs.bench.machine import cpu_model
from nqs.io import write_json_atomic  # noqa: E402
from nqs.local_energy import make_local_energy  # noqa: E402
from nqs.optim.flat import real_flat  # noqa: E402
from nqs.packed_local_energy import default_chunk_rows, make_packed_local_energy  # noqa: E402
from nqs.problems import molecule_ansatz, molecule_sampler  # noqa: E402
from nqs.vmc import batched, distinct_draws, make_vmc  # noqa: E402

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
    settings = resolve_settings(settings, ham.hilbert.n_states)  # backflow, Adam
    sampler, mode = molecule_sampler(ham.hilbert, "mcmc", settings.samples, settings.chains,
                                     rule=settings.rule)
    assert mode == "mcmc"
    ansatz = molecule_ansatz(ham.hilbert, settings.ansatz, hidden=settings.hidden,
                             n_determinants=settings.n_determinants, init_scale=0.3)
    optimizer = make_scheduled_optimizer(settings)
    init, step_packed = make_vmc(ansatz, ham, sampler, optimizer, dedupe=True, packed=True)
    # the step's own draw again (same key), for the distinct count and the local energies alone
    draw = jax.jit(lambda st: sampler.sample(jax.random.split(st.key)[1], ansatz, st.params,
                                             st.sampler_state)[0].x)
    e_packed = make_packed_local_energy(ham, ansatz, default_chunk_rows(ansatz))
    e_plain = jax.jit(batched(make_local_energy(ham, ansatz), None))
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
        x = np.asarray(draw(state))
        x_u, _, _, n_unique = distinct_draws(x, np.ones(len(x)), ham.hilbert)
        row["distinct"], row["bucket"] = n_unique, len(x_u)
        e_fns = {"packed": lambda p, xu, n: e_packed(p, xu, n),
                 "per_sample": lambda p, xu, n: e_plain(p, xu)}
        e_out = {}
        for variant in order:
            e_out[variant], wall, cpu = timed(e_fns[variant], state.params, x_u, n_unique)
            row[f"eloc_{variant}_wall_s"], row[f"eloc_{variant}_cpu_s"] = wall, cpu
        row["eloc_diff"] = float(np.max(np.abs(np.asarray(e_out["packed"])[:n_unique]
                                               - np.asarray(e_out["per_sample"])[:n_unique])))
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
              f"{n_unique} distinct (bucket {len(x_u)}), E_loc alone: packed "
              f"{row['eloc_packed_cpu_s']:.2f} s CPU, per-sample {row['eloc_per_sample_cpu_s']:.2f}, "
              f"load {row['load']:.1f}", flush=True)
        state = a
    timed_rows = [r for r in rows if r["timed"]]
    summary = {}
    for variant in steps:
        for kind in ("wall", "cpu"):
            for part in ("", "eloc_"):
                v = [r[f"{part}{variant}_{kind}_s"] for r in timed_rows]
                summary[f"{part}{variant}_{kind}_median_s"] = float(np.median(v))
                summary[f"{part}{variant}_{kind}_mean_s"] = float(np.mean(v))
    summary["speedup_cpu_median"] = (summary["per_sample_cpu_median_s"]
                                     / summary["packed_cpu_median_s"])
    summary["speedup_wall_median"] = (summary["per_sample_wall_median_s"]
                                      / summary["packed_wall_median_s"])
    summary["eloc_speedup_cpu_median"] = (summary["eloc_per_sample_cpu_median_s"]
                                          / summary["eloc_packed_cpu_median_s"])
    return {"case": label, "n_spin_orbitals": ham.hilbert.n_sites, "max_conn": ham.max_conn,
            "samples": settings.samples, "chains": settings.chains, "rows": rows,
            "load_avg": [r["load"] for r in timed_rows], **summary}


def markdown(records: list[dict], meta: dict) -> str:
    lines = ["| molecule | spin orb. | max_conn | samples | timed steps | per-sample CPU s/step "
             "(median / mean) | packed CPU s/step (median / mean) | speedup (CPU, median) | "
             "per-sample wall s | packed wall s | speedup (wall) | distinct configurations | "
             "E_loc alone, CPU s: per-sample / packed (speedup) | max abs dE | load |",
             "|" + "---|" * 15]
    for r in records:
        n = sum(row["timed"] for row in r["rows"])
        de = max(row["energy_diff"] for row in r["rows"])
        d = [row["distinct"] for row in r["rows"] if row["timed"]]
        lines.append(
            f"| {r['case']} | {r['n_spin_orbitals']} | {r['max_conn']} | {r['samples']} | {n} | "
            f"{r['per_sample_cpu_median_s']:.2f} / {r['per_sample_cpu_mean_s']:.2f} | "
            f"{r['packed_cpu_median_s']:.2f} / {r['packed_cpu_mean_s']:.2f} | "
            f"**{r['speedup_cpu_median']:.1f}x** | {r['per_sample_wall_median_s']:.2f} | "
            f"{r['packed_wall_median_s']:.2f} | {r['speedup_wall_median']:.1f}x | "
            f"{min(d)}-{max(d)} | {r['eloc_per_sample_cpu_median_s']:.2f} / "
            f"{r['eloc_packed_cpu_median_s']:.2f} ({r['eloc_speedup_cpu_median']:.1f}x) | {de:.1e} | "
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
    p.add_argument("--samples", type=int, default=MCMC_SAMPLES)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    meta = {"cpu": cpu_model(), "cores": os.cpu_count(), "jax": jax.__version__,
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


if __name__ == "__main__":
    raise SystemExit(main())
