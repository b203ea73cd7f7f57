"""float32 against float64 networks in the discrete engine (``--dtype``, ``nqs.precision``).

Each case is optimized twice with the same seed and steps, once per network precision, the two
runs interleaved (float64, float32, float64, float32 for ``--repeats 2``) so that a changing
machine load hits both alike:

* ``tfim16``: transverse-field Ising chain, 16 sites, h = 1, complex RBM (alpha 1), Metropolis,
  SR; exact energy from free fermions;
* ``lih_exact``: LiH / STO-3G, backflow (64 hidden units), exact summation over the 225
  determinants, Adam; FCI from PySCF;
* ``lih_mcmc``: the same with Metropolis sampling (pair hops, de-duplicated), Adam.

Reported per run: the final energy and its error bar (fresh samples, or exact), the distance to
the exact energy, the process CPU time and the wall time per step after compilation, and the
load average (the machine may be shared: CPU times are the steadier number).

``--micro``: instead of runs, the cost of one sampled estimate (``nqs.vmc.make_estimator``:
local energies, per-sample gradients or Jacobian rows, statistics) on a fixed batch of 1024
random configurations, compiled once per dtype and called ``--calls`` times per round, the dtypes
alternating for ``--rounds`` rounds; the median process CPU time per call of each dtype is
reported. (``lih_exact`` and ``lih_mcmc`` then time the same computation: only their initial
perturbation differs.)

    python experiments/benchmarks/precision.py                  # all cases
    python experiments/benchmarks/precision.py --cases tfim16 --steps 100
    python experiments/benchmarks/precision.py --micro

Writes ``results/precision.{json,md}`` next to this file.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time
from pathlib import Path

import jax

import nqs  # noqa: F401  (float64)
from nqs.driver import run_vmc
from nqs.io import write_json_atomic
from nqs.optim import make_optimizer
from nqs.precision import with_dtype

HERE = Path(__file__).resolve().parent
CASES = ("tfim16", "lih_exact", "lih_mcmc")


def _problem(case: str):
    """``(build_ansatz, operator, sampler, optimizer, dedupe, exact energy)`` of a case."""
    if case == "tfim16":
        from hamiltonians.spin import make_spin_model
        from hamiltonians.spin_reference import exact_energy
        from nqs.problems import spin_ansatz, spin_sampler

        model = make_spin_model(model="ising", lattice="chain", size=16, pbc=True, h=1.0,
                                j2=0.5, delta=1.0, marshall_sign=False)
        return (lambda: spin_ansatz(model, "rbm", 1.0), model,
                spin_sampler(model, "mcmc", 1024, 128, 4), make_optimizer("sr", 0.05, 0.01),
                False, exact_energy(model)[0])
    from hamiltonians.chem_reference import fci_from_integrals
    from hamiltonians.molecule import compute_integrals, parse_molecule
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.problems import molecule_ansatz, molecule_sampler

    integrals, _ = compute_integrals(parse_molecule("LiH"))
    ham = MolecularHamiltonian(integrals)
    kind = "exact" if case == "lih_exact" else "mcmc"
    sampler, _ = molecule_sampler(ham.hilbert, kind, 1024, 16)
    scale = 0.05 if kind == "exact" else 0.3
    return (lambda: molecule_ansatz(ham.hilbert, "backflow", init_scale=scale), ham, sampler,
            make_optimizer("adam", 3e-3, 0.0), kind == "mcmc", fci_from_integrals(integrals)[0])


def run_case(case: str, steps: int, repeats: int, seed: int) -> list[dict]:
    """Interleaved float64 / float32 runs of one case; one record per run."""
    build, operator, sampler, optimizer, dedupe, exact = _problem(case)
    records = []
    for rep in range(repeats):
        for dtype in ("float64", "float32"):
            load0 = os.getloadavg()[0]
            cpu0, wall0 = time.process_time(), time.perf_counter()
            result = run_vmc(with_dtype(build(), dtype), operator, sampler, optimizer, steps,
                             seed=seed, dedupe=dedupe, n_eval_batches=4)
            cpu = time.process_time() - cpu0
            records.append({
                "case": case, "dtype": dtype, "repeat": rep, "steps": steps,
                "energy": result.energy, "energy_error": result.energy_error,
                "exact_energy": exact, "error": result.energy - exact,
                "cpu_s_total": cpu, "wall_s_total": time.perf_counter() - wall0,
                "wall_s_per_step": result.time_per_step_s,
                "load_before": load0, "load_after": os.getloadavg()[0],
            })
            r = records[-1]
            print(f"{case} {dtype} rep {rep}: E = {r['energy']:.8f} +- {r['energy_error']:.1e} "
                  f"(E - exact = {r['error']:.2e}); {r['cpu_s_total']:.1f} s CPU, "
                  f"{r['wall_s_per_step'] * 1e3:.1f} ms/step wall; load {load0:.1f}",
                  flush=True)
    return records


def micro_case(case: str, rounds: int, calls: int) -> list[dict]:
    """Median process CPU seconds per estimate call, float64 and float32 alternating."""
    import numpy as np

    from nqs.local_energy import make_local_energy
    from nqs.sampling.base import Samples
    from nqs.vmc import make_estimator

    build, operator, _, optimizer, _, _ = _problem(case)
    hilbert = operator.hilbert
    xs = hilbert.random_state(jax.random.PRNGKey(1), 1024).astype(np.float64)
    weights = np.full(len(xs), 1.0 / len(xs))
    fns, params = {}, None
    for dtype in ("float64", "float32"):
        ansatz = with_dtype(build(), dtype)
        params = ansatz.init(jax.random.PRNGKey(0), xs[0]) if params is None else params
        est = make_estimator(ansatz, operator, needs_jacobian=optimizer.needs_jacobian)
        # the number of chains is static (a Python int inside Samples)
        fn = jax.jit(lambda p, x, w, est=est: est(p, Samples(x, w, 16)))
        fns[(dtype, "estimate")] = functools.partial(fn, x=xs, w=weights)
        # the local energies alone (the rest of the estimate is the gradient / Jacobian rows)
        e_loc = jax.vmap(make_local_energy(operator, ansatz), in_axes=(None, 0))
        fns[(dtype, "local energies")] = jax.jit(lambda p, e_loc=e_loc: e_loc(p, xs))
    for fn in fns.values():
        jax.block_until_ready(fn(params))  # compile
    times: dict[tuple, list[float]] = {key: [] for key in fns}
    loads = [os.getloadavg()[0]]
    for _ in range(rounds):
        for key, fn in fns.items():
            for _ in range(calls):
                t0 = time.process_time()
                jax.block_until_ready(fn(params))
                times[key].append(time.process_time() - t0)
        loads.append(os.getloadavg()[0])
    out = []
    for (dtype, what), ts in times.items():
        out.append({"case": case, "dtype": dtype, "what": what, "calls": len(ts),
                    "cpu_ms_median": 1e3 * float(np.median(ts)),
                    "cpu_ms_p25": 1e3 * float(np.percentile(ts, 25)),
                    "cpu_ms_p75": 1e3 * float(np.percentile(ts, 75)),
                    "load_min": min(loads), "load_max": max(loads)})
        print(f"{case} {dtype} {what}: {out[-1]['cpu_ms_median']:.2f} ms CPU "
              f"(median of {len(ts)}; load {min(loads):.1f}-{max(loads):.1f})", flush=True)
    return out


def markdown_micro(records: list[dict]) -> str:
    """The micro-benchmark records as a markdown table."""
    lines = ["| case | dtype | what | CPU ms per call (median) | p25-p75 | calls | load |",
             "|" + "---|" * 7]
    for r in records:
        lines.append(f"| {r['case']} | {r['dtype']} | {r['what']} | {r['cpu_ms_median']:.2f} | "
                     f"{r['cpu_ms_p25']:.2f}-{r['cpu_ms_p75']:.2f} | {r['calls']} | "
                     f"{r['load_min']:.1f}-{r['load_max']:.1f} |")
    return "\n".join(lines)


def markdown(records: list[dict]) -> str:
    """The records as a markdown table."""
    lines = ["| case | dtype | rep | E | error bar | E - exact | CPU s (total, incl. compile) | "
             "wall ms/step | load |", "|" + "---|" * 9]
    for r in records:
        lines.append(
            f"| {r['case']} | {r['dtype']} | {r['repeat']} | {r['energy']:.8f} | "
            f"{r['energy_error']:.1e} | {r['error']:.2e} | {r['cpu_s_total']:.1f} | "
            f"{r['wall_s_per_step'] * 1e3:.1f} | {r['load_before']:.1f}-{r['load_after']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the cases and write the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--micro", action="store_true", help="time one estimate, not whole runs")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=5)
    args = ap.parse_args()
    meta = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
            "devices": [str(d) for d in jax.devices()]}
    if args.micro:
        out = args.out or HERE / "results" / "precision_micro"
        records = []
        for case in args.cases:
            records += micro_case(case, args.rounds, args.calls)
        write_json_atomic(out.with_suffix(".json"), {"meta": meta, "records": records})
        out.with_suffix(".md").write_text(markdown_micro(records) + "\n")
        print(markdown_micro(records))
        return
    args.out = args.out or HERE / "results" / "precision"
    records = []
    for case in args.cases:
        records += run_case(case, args.steps, args.repeats, args.seed)
    meta["steps"] = args.steps
    write_json_atomic(args.out.with_suffix(".json"), {"meta": meta, "records": records})
    args.out.with_suffix(".md").write_text(markdown(records) + "\n")
    print(markdown(records))


if __name__ == "__main__":
    main()
