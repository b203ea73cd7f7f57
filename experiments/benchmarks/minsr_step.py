"""Time and peak memory of one minSR solve, ``O^H (O O^H + lambda)^-1 e``, at 1e5 to 1e6
parameters, with the kernel built in one product or from blocks of parameter columns.

Each configuration runs in its own subprocess (peak resident memory from ``getrusage``), on a
random complex ``O [n_samples, n_params]`` held as one array (the Jacobian the engine builds
sample-chunk by sample-chunk). Prints a table and writes ``results/minsr_step.md``.

    python experiments/benchmarks/minsr_step.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [  # (n_samples, n_params complex, param_chunk)
    (1024, 100_000, None),
    (1024, 100_000, 8192),
    (128, 1_000_000, None),
    (128, 1_000_000, 65536),
]


def one(n: int, p: int, chunk: int | None) -> dict:
    """One configuration in this process: compile, then time 3 solves."""
    import resource

    import jax
    import jax.numpy as jnp

    import nqs  # noqa: F401
    from nqs.optim.sr import natural_gradient_minsr_holomorphic

    key = jax.random.PRNGKey(0)
    k1, k2, k3 = jax.random.split(key, 3)
    o = (jax.random.normal(k1, (n, p)) + 1j * jax.random.normal(k2, (n, p))) / jnp.sqrt(n)
    eps = jax.random.normal(k3, (2 * n,))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    solve = jax.jit(lambda o, e: natural_gradient_minsr_holomorphic(o, e, 1e-3, chunk))
    t0 = time.perf_counter()
    solve(o, eps).block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        solve(o, eps).block_until_ready()
        times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n_samples": n, "n_params": p, "param_chunk": chunk, "o_gb": n * p * 16 / 1e9,
            "step_s": min(times), "first_call_s": compile_s,
            "peak_rss_gb": rss * 1024 / 1e9, "rss_before_solve_gb": rss0 * 1024 / 1e9}


def main() -> None:
    """Run every configuration in a subprocess, print and write the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the 1e5-parameter rows")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        n, p, c = json.loads(args.one)
        print(json.dumps(one(n, p, c)))
        return
    rows = []
    for n, p, c in CONFIGS:
        if args.quick and p > 100_000:
            continue
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps([n, p, c])],
                              capture_output=True, text=True, env=os.environ | {
                                  "JAX_PLATFORMS": "cpu"})
        if proc.returncode != 0:
            print(f"n={n} P={p} chunk={c}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    load = os.getloadavg()
    lines = ["| samples | complex parameters | param_chunk | O (GB) | minSR solve (s) | "
             "first call (s) | peak RSS (GB) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n_samples']} | {r['n_params']:.0e} | {r['param_chunk'] or 'none'} | "
                     f"{r['o_gb']:.2f} | {r['step_s']:.2f} | {r['first_call_s']:.2f} | "
                     f"{r['peak_rss_gb']:.2f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(__file__).parent / "results" / "minsr_step.md"
    out.write_text(
        "# One minSR solve at 1e5-1e6 parameters (CPU)\n\n"
        f"`python experiments/benchmarks/minsr_step.py`; load average after the runs "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on the 2-core development machine "
        "(shared). The solve is `O^H (O O^H + lambda)^-1 e` of "
        "`nqs.optim.sr.natural_gradient_minsr_holomorphic` on a random complex O held as "
        "one array; the Jacobian's own computation (model-dependent) is not included. "
        "Peak RSS includes O itself.\n\n" + table + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
