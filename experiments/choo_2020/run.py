"""Choo et al. 2020 molecules (H2, LiH, H2O, NH3, N2, C2 in STO-3G) against FCI and CCSD(T).

    python experiments/choo_2020/run.py                 # full budgets (long on a laptop CPU)
    python experiments/choo_2020/run.py --quick         # a few steps each: a smoke test
    python experiments/choo_2020/run.py --molecules N2 C2 --out experiments/choo_2020/results

Exact summation over all determinants (4 .. 44100 of them), a neural backflow determinant,
Adam with a cosine-decayed learning rate (``Settings.lr_schedule``). Writes results.md,
results.json and errors.png in --out.

XLA's CPU runtime deadlocked on machines with few cores when two batched LAPACK LU
decompositions (the alpha and beta determinants) ran concurrently; the backflow model no longer
calls LAPACK for them. The flag below (the earlier workaround, which did not always help) is kept
so that the recorded runs can be reproduced as they were made (an XLA_FLAGS already set wins).
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, replace  # noqa: E402
from pathlib import Path  # noqa: E402

from nqs.bench.fci import (  # noqa: E402
    SUITES,
    Settings,
    markdown_table,
    plot_errors,
    run_benchmark,
    suite_jobs,
)
from nqs.io import write_json_atomic  # noqa: E402

HERE = Path(__file__).resolve().parent

#: Optimization steps per molecule (full budgets); larger spaces get more.
STEPS: dict[str, int] = {"H2": 300, "LiH": 800, "H2O": 1500, "NH3": 1500, "N2": 2500, "C2": 2500}
QUICK_STEPS = 20


def machine() -> dict:
    """CPU model, core count and load average (figures depend on them)."""
    from nqs.bench.machine import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg": list(os.getloadavg()),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--molecules", nargs="+", default=list(SUITES["choo2020"]),
                   choices=list(SUITES["choo2020"]), help="subset of the suite (default: all)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps per molecule")
    p.add_argument("--steps", type=int, default=None, help="override the per-molecule budgets")
    p.add_argument("--ansatz", choices=("backflow", "rbm"), default="backflow")
    p.add_argument("--hidden", type=int, nargs="+", default=None)
    p.add_argument("--determinants", type=int, default=1)
    p.add_argument("--optimizer", choices=("adam", "sr", "minsr"), default="adam")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--diag-shift", type=float, default=1e-3, help="SR diagonal shift")
    p.add_argument("--metric-states", type=int, default=None,
                   help="SR: metric from the K largest-weight determinants (default: all)")
    p.add_argument("--final-lr-fraction", type=float, default=0.1,
                   help="cosine decay of the Adam learning rate to this fraction (1: constant)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sector", choices=("full", "hf"), default="full",
                   help="sum over all determinants, or over the symmetry block of Hartree-Fock")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--resume", action="store_true",
                   help="continue each molecule from its checkpoint in OUT/runs/<name> "
                   "(a longer --steps changes a cosine schedule from there on)")
    args = p.parse_args(argv)

    base = Settings(ansatz=args.ansatz, sampler="exact", optimizer=args.optimizer,
                    learning_rate=args.lr, hidden=None if args.hidden is None else tuple(args.hidden),
                    n_determinants=args.determinants, seed=args.seed, sector=args.sector,
                    diag_shift=args.diag_shift, metric_states=args.metric_states,
                    lr_schedule="constant" if args.final_lr_fraction == 1.0 else "cosine",
                    final_lr_fraction=args.final_lr_fraction)
    jobs = {j.name: j for j in suite_jobs("choo2020", "sto-3g", False, None)}
    args.out.mkdir(parents=True, exist_ok=True)
    info = {"machine_start": machine(), "settings": asdict(base),
            "final_lr_fraction": args.final_lr_fraction, "steps": {}}
    records: list[dict] = _previous(args.out / "results.json", args.molecules)
    t0 = time.perf_counter()
    for name in args.molecules:
        steps = QUICK_STEPS if args.quick else (args.steps or STEPS[name])
        info["steps"][name] = steps
        settings = replace(base, steps=steps)
        records += run_benchmark([jobs[name]], settings, args.out / "runs",
                                 lambda m: print(m, flush=True), resume=args.resume)
        # tables after every molecule, so a long run leaves usable partial results
        _write(records, info | {"machine_end": machine(),
                                "total_wall_s": time.perf_counter() - t0}, args.out)
    print("\n" + (args.out / "results.md").read_text())
    print(f"wrote {args.out}/results.md, results.json, errors.png")
    return 0


def _previous(path: Path, redo: list[str]) -> list[dict]:
    """Records of an earlier run in ``path`` for molecules not being redone (kept in the table)."""
    if not path.exists():
        return []
    return [r for r in json.loads(path.read_text())["records"] if r["name"] not in redo]


def _write(records: list[dict], info: dict, out: Path) -> None:
    order = list(SUITES["choo2020"])
    records = sorted(records, key=lambda r: order.index(r["name"]))
    table = markdown_table(records)
    ccsd = "\n".join(f"- {r['name']}: E(NQS)-E(FCI) = {r['error_mha']:.4f} mHa, "
                     f"E(CCSD(T))-E(FCI) = {r['ccsd_t_error_mha']:.4f} mHa, "
                     f"{r['time_per_step_s']:.3f} s/step, {r['steps']} steps"
                     for r in records)
    m = info["machine_end"]
    text = (f"{table}\n\n{ccsd}\n\nMachine: {m['cpu']}, {m['cores']} cores, load average "
            f"{', '.join(f'{x:.1f}' for x in m['load_avg'])} at the end; settings: "
            f"{json.dumps(info['settings'])}, cosine decay to {info['final_lr_fraction']} x lr.\n")
    (out / "results.md").write_text(text)
    write_json_atomic(out / "results.json", {"records": records, "info": info})
    plot_errors(records, out / "errors.png")


if __name__ == "__main__":
    raise SystemExit(main())
