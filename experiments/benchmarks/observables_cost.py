"""The cost of measuring observables against the cost of the energy (issue 15's target).

Workload: the Heisenberg model on the 8x8 periodic square lattice (Marshall sign, S^z = 0
sector), a complex RBM with alpha = 1, 2048 Metropolis samples from 16 chains (exchange moves).
One set of samples is drawn; then, after a warm-up call each (compilation excluded), the median
of ``--repeats`` calls of

* ``energy``: ``state.expect(H)`` (local energies and their statistics);
* ``correlations``: ``state.expect(spin_correlations(lattice))``: all 2016 pairs <S_i . S_j>;
  split into the local values (``values``) and their statistics (``stats``: mean, error bar,
  tau and R-hat of every pair);
* ``structure_factor``: ``state.expect(structure_factors(lattice))``: S(q) on the 64 momenta.

The target: all-pairs correlations at most 2x the cost of the energy.

    python experiments/benchmarks/observables_cost.py [--repeats 5]

Wall and CPU times (this process, all threads) are both recorded: on a shared machine the CPU
time is the steadier figure.

Writes ``experiments/benchmarks/results/observables_cost.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

import nqs  # noqa: F401  (float64)
from hamiltonians.spin import make_spin_model
from hamiltonians.spin_observables import spin_correlations, structure_factors
from nqs.problems import spin_ansatz, spin_sampler
from nqs.state import VariationalState, _bind_cached
from nqs.stats import statistics_columns

HERE = Path(__file__).resolve().parent


CPU_TIMES: dict[str, float] = {}


def _median_time(fn, repeats: int, name: str = "") -> float:
    """Median wall time of ``fn`` after a warm-up call; the median CPU time of this process
    (all threads) goes to ``CPU_TIMES[name]`` (steadier than wall time on a loaded machine)."""
    jax.block_until_ready(fn())  # warm-up: compilation
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU_TIMES[name] = float(np.median(cpu))
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--size", type=int, default=8)
    p.add_argument("--output", type=Path, default=HERE / "results",
                   help="folder of observables_cost.{md,json}")
    args = p.parse_args(argv)
    load_start = os.getloadavg()[0]

    model = make_spin_model("heisenberg", "square", args.size, marshall_sign=True)
    ansatz = spin_ansatz(model, "rbm", 1.0)
    sampler = spin_sampler(model, "mcmc", args.samples, 16)
    params = ansatz.init(jax.random.PRNGKey(0), model.hilbert.random_state(jax.random.PRNGKey(1),
                                                                            1)[0])
    state = VariationalState(ansatz, params, sampler,
                             marshall_sublattice=np.asarray(model.lattice.sublattice))
    samples = state.sample()
    jax.block_until_ready(samples.x)
    lattice = model.lattice
    corr = spin_correlations(lattice)
    sq = structure_factors(lattice)

    times = {"energy": _median_time(lambda: state.expect(model).mean, args.repeats, "energy")}
    times["correlations"] = _median_time(lambda: state.expect(corr).mean, args.repeats,
                                         "correlations")
    # the two parts of the correlations: local values, then their statistics
    bound = _bind_cached(corr, state.hilbert, state.marshall_sublattice)
    from nqs.parallel import chunked_map
    from nqs.state import _default_chunk, make_local_values

    values_fn = jax.jit(chunked_map(make_local_values(bound, ansatz), _default_chunk(bound, None)))
    times["correlations: values"] = _median_time(lambda: values_fn(params, samples.x),
                                                 args.repeats, "correlations: values")
    values = values_fn(params, samples.x)

    def stats():
        return statistics_columns(np.asarray(values), np.asarray(samples.weights),
                                  int(samples.n_chains)).mean

    times["correlations: stats"] = _median_time(stats, args.repeats, "correlations: stats")
    times["structure_factor"] = _median_time(lambda: state.expect(sq).mean, args.repeats,
                                             "structure_factor")
    ratio = times["correlations"] / times["energy"]
    cpu_ratio = CPU_TIMES["correlations"] / CPU_TIMES["energy"]

    out = {"n_sites": model.hilbert.n_sites, "samples": args.samples, "repeats": args.repeats,
           "n_pairs": int(bound.n_components), "times_s": times, "cpu_times_s": CPU_TIMES,
           "correlations_over_energy": ratio, "correlations_over_energy_cpu": cpu_ratio,
           "target": 2.0,
           "load_average_start": load_start, "load_average": os.getloadavg()[0],
           "cpus": os.cpu_count()}
    res = args.output
    res.mkdir(exist_ok=True)
    (res / "observables_cost.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["| measurement | median wall time (s) | median CPU time (s) |", "|---|---|---|"]
    lines += [f"| {k} | {v:.4f} | {CPU_TIMES[k]:.4f} |" for k, v in times.items()]
    lines += ["", f"correlations / energy = {ratio:.2f} in wall time, {cpu_ratio:.2f} in CPU "
              f"time (target <= 2); "
              f"{args.size}x{args.size} Heisenberg, RBM alpha=1, {args.samples} samples, "
              f"load average {load_start:.1f} at the start, {out['load_average']:.1f} at the "
              f"end, on {out['cpus']} CPUs"]
    (res / "observables_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
