"""Where a spin VMC step's time goes, with the network in float64 and in float32 (``--dtype``).

The model, ansatz, sampler and optimizer are what ``nqs spin`` builds from the same options
(``nqs.commands.spin.build_problem`` and ``spin_optimizer``, the CPU's sample chunk included),
once per network precision. One step is timed in its four parts, each compiled on its own:

* ``sampling``: one call of the Metropolis sampler (discarded sweeps and kept samples);
* ``local energies``: ``E_loc`` of those samples (``make_batch_local_energy``);
* ``jacobian``: the estimate given the local energies (per-sample log-derivatives, statistics);
* ``sr``: the optimizer's update from that estimate (minSR or dense SR solve).

The precisions alternate round by round (``--rounds``), so a change of machine load hits both
alike; reported: the median wall time of each part, their sum, and the ratio float64 / float32.

    python experiments/benchmarks/spin_step_precision.py -- --model j1j2 --lattice square \\
        --size 6 --j2 0.5 --features 4 --layers 3

(the options after ``--`` are ``nqs spin``'s). Writes
``experiments/benchmarks/results/spin_step_precision_<tag>.{md,json}`` (``--tag``, default from
the options).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax

import nqs  # noqa: F401  (float64)
from nqs.commands.common import positive_int
from nqs.errors import InputError
from nqs.io import write_json_atomic

HERE = Path(__file__).resolve().parent
PARTS = ("sampling", "local energies", "jacobian", "sr")
DTYPES = ("float64", "float32")


def step_parts(spin_argv: list[str], dtype: str):
    """``{part: callable}`` (each runs its part once, blocking) and the number of parameters
    for ``nqs spin`` options ``spin_argv`` with the network in ``dtype``."""
    from nqs.ansatz import n_parameters
    from nqs.cli import build_parser
    from nqs.commands.spin import build_problem, resolve_chunk_size, spin_optimizer
    from nqs.local_energy import make_batch_local_energy
    from nqs.vmc import apply_estimate, make_estimator

    args = build_parser().parse_args(["spin", *spin_argv, "--dtype", dtype])
    model, ansatz, sampler = build_problem(args)
    chunk = resolve_chunk_size(args)
    # off the CPU the driver sizes "auto" to the device's memory; here all samples at once
    chunk = None if chunk == "auto" else chunk
    optimizer = spin_optimizer(args)
    x0 = model.hilbert.random_state(jax.random.PRNGKey(0), 1)[0]
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(1), x0)
    state = sampler.init(jax.random.PRNGKey(2), ansatz, params)
    # parameters are arguments everywhere, as in the driver's step (constants could be folded)
    sample = jax.jit(lambda p, key, s: sampler.sample(key, ansatz, p, s)[0])
    samples = sample(params, jax.random.PRNGKey(3), state)
    samples = samples._replace(n_chains=int(samples.n_chains))  # static again (a jit output)
    local_energies = jax.jit(make_batch_local_energy(model, ansatz, chunk))
    e_loc = local_energies(params, samples.x)
    estimator = make_estimator(ansatz, model, needs_jacobian=optimizer.needs_jacobian,
                               chunk_size=chunk)
    # n_chains is static (the samples' layout): only the arrays are arguments
    estimate = jax.jit(lambda p, x, w, e: estimator(p, samples._replace(x=x, weights=w), e_loc=e))
    est = estimate(params, samples.x, samples.weights, e_loc)
    opt_state = optimizer.transformation.init(params)
    update = jax.jit(lambda e, o, p: apply_estimate(optimizer, e, o, p))
    parts = {
        "sampling": lambda: jax.block_until_ready(
            sample(params, jax.random.PRNGKey(4), state).x),
        "local energies": lambda: jax.block_until_ready(local_energies(params, samples.x)),
        "jacobian": lambda: jax.block_until_ready(
            estimate(params, samples.x, samples.weights, e_loc).grad),
        "sr": lambda: jax.block_until_ready(update(est, opt_state, params)),
    }
    for run in parts.values():  # compile
        run()
    return parts, n_parameters(params)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=positive_int, default=3)
    ap.add_argument("--tag", default=None)
    ap.add_argument("spin", nargs=argparse.REMAINDER, help="nqs spin options, after --")
    args = ap.parse_args(argv)
    spin_argv = [a for a in args.spin if a != "--"]
    tag = args.tag or "_".join(a.lstrip("-") for a in spin_argv).replace(".", "p") or "defaults"
    try:
        built = {d: step_parts(spin_argv, d) for d in DTYPES}
    except InputError as err:  # nonsense options: one line, as nqs spin gives it
        print(f"spin_step_precision.py: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    times: dict[str, dict[str, list[float]]] = {d: {p: [] for p in PARTS} for d in DTYPES}
    for _ in range(args.rounds):
        for d in DTYPES:
            for part, run in built[d][0].items():
                t0 = time.perf_counter()
                run()
                times[d][part].append(time.perf_counter() - t0)
    median = {d: {p: statistics.median(v) for p, v in times[d].items()} for d in DTYPES}
    total = {d: sum(median[d].values()) for d in DTYPES}
    load = os.getloadavg()[0]
    lines = [f"`nqs spin {' '.join(spin_argv)}` ({built['float64'][1]} real parameters), one VMC "
             f"step in parts, median of {args.rounds} rounds (s); {platform.processor() or 'CPU'}"
             f", {os.cpu_count()} cores, load average {load:.1f}", "",
             "| part | float64 | float32 | float64 / float32 |", "|---|---|---|---|"]
    for p in PARTS:
        lines.append(f"| {p} | {median['float64'][p]:.3f} | {median['float32'][p]:.3f} | "
                     f"{median['float64'][p] / median['float32'][p]:.2f} |")
    lines.append(f"| **step** | **{total['float64']:.2f}** | **{total['float32']:.2f}** | "
                 f"**{total['float64'] / total['float32']:.2f}** |")
    table = "\n".join(lines) + "\n"
    print(table)
    out = HERE / "results" / f"spin_step_precision_{tag}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table)
    write_json_atomic(out.with_suffix(".json"), {
        "spin_options": spin_argv, "n_parameters": built["float64"][1], "rounds": args.rounds,
        "seconds": times, "median_s": median, "step_s": total, "load_average": load,
        "cpu_count": os.cpu_count(), "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
