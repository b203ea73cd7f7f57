"""The cost of measuring observables against the cost of the energy (issue 15's target).

Workload: the Heisenberg model on the 8x8 periodic square lattice (Marshall sign, S^z = 0
sector), the translation-symmetric RBM (``rbm-symm``, the default spin ansatz, alpha = 1: 64
hidden units), 2048 Metropolis samples from 16 chains (exchange moves). One set of samples is
drawn; then, after a warm-up call each (compilation excluded), the median of ``--repeats``
calls of

* ``energy``: ``state.expect(H)`` (local energies and their statistics);
* ``correlations``: ``state.expect(spin_correlations(lattice))``: all 2016 pairs <S_i . S_j>,
  with the estimator the state picks (the ansatz declares its 64 translations: symmetry-reduced,
  :mod:`nqs.reduced`), split into the local values (``values``) and their statistics
  (``stats``: mean, error bar, tau and R-hat of every column);
* ``correlations, all pairs``: the same state without the declaration (every pair's own local
  value: the estimator of any state), split the same way;
* ``structure_factor`` (reduced and all pairs): ``state.expect(structure_factors(lattice))``,
  S(q) on the 64 momenta.

The target: all-pairs correlations at most 2x the cost of the energy.

    python experiments/benchmarks/observables_cost.py [--repeats 5]

Wall and CPU times (this process, all threads) are both recorded: on a shared machine the CPU
time is the steadier figure.

Writes ``experiments/benchmarks/results/observables_cost.{md,json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (float64)
from hamiltonians.spin import make_spin_model
from hamiltonians.spin_observables import spin_correlations, structure_factors
from nqs.parallel import chunked_map
from nqs.problems import spin_ansatz, spin_sampler
from nqs.reduced import find_reduction, make_reduced_values
from nqs.state import (
    ROWS_PER_CHUNK,
    VariationalState,
    _bind_cached,
    _default_chunk,
    make_local_values,
)
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
    ansatz = spin_ansatz(model, "rbm-symm", 1.0)
    plain = dataclasses.replace(ansatz, symmetries=None)  # the same psi, no declared symmetry
    sampler = spin_sampler(model, "mcmc", args.samples, 16)
    params = ansatz.init(jax.random.PRNGKey(0), model.hilbert.random_state(jax.random.PRNGKey(1),
                                                                            1)[0])
    sub = np.asarray(model.lattice.sublattice)
    state = VariationalState(ansatz, params, sampler, marshall_sublattice=sub)
    samples = state.sample()
    jax.block_until_ready(samples.x)
    state_all = VariationalState(plain, params, sampler, marshall_sublattice=sub)
    state_all._samples = samples  # the same draw
    lattice = model.lattice
    corr = spin_correlations(lattice)
    sq = structure_factors(lattice)
    bound = _bind_cached(corr, state.hilbert, state.marshall_sublattice)
    estimators = {"reduced": state.estimator(corr), "all pairs": state_all.estimator(corr)}

    times = {"energy": _median_time(lambda: state.expect(model).mean, args.repeats, "energy")}
    for label, st in (("correlations", state), ("correlations, all pairs", state_all)):
        times[label] = _median_time(lambda st=st: st.expect(corr).mean, args.repeats, label)
    # the two parts of the correlations: local values, then their statistics
    g = jnp.arange(samples.x.shape[0], dtype=jnp.int32)
    reduction = find_reduction(bound, ansatz)
    reduced = make_reduced_values(bound, ansatz, reduction)
    parts = {
        "correlations": jax.jit(chunked_map(lambda p, xg: reduced(p, xg[0], xg[1]),
                                            ROWS_PER_CHUNK // int(bound.n_components))),
        "correlations, all pairs": jax.jit(chunked_map(make_local_values(bound, plain),
                                                       _default_chunk(bound, None))),
    }
    for label, fn in parts.items():
        args_fn = ((lambda fn=fn: fn(params, (samples.x, g % reduction.group_size)))
                   if label == "correlations" else (lambda fn=fn: fn(params, samples.x)))
        times[f"{label}: values"] = _median_time(args_fn, args.repeats, f"{label}: values")
        values = np.asarray(args_fn())

        def stats(values=values):
            return statistics_columns(values, np.asarray(samples.weights),
                                      int(samples.n_chains)).mean

        times[f"{label}: stats"] = _median_time(stats, args.repeats, f"{label}: stats")
    for label, st in (("structure_factor", state), ("structure_factor, all pairs", state_all)):
        times[label] = _median_time(lambda st=st: st.expect(sq).mean, args.repeats, label)
    ratio = times["correlations"] / times["energy"]
    cpu_ratio = CPU_TIMES["correlations"] / CPU_TIMES["energy"]
    ratio_all = times["correlations, all pairs"] / times["energy"]
    cpu_ratio_all = CPU_TIMES["correlations, all pairs"] / CPU_TIMES["energy"]

    out = {"n_sites": model.hilbert.n_sites, "samples": args.samples, "repeats": args.repeats,
           "n_pairs": int(bound.n_components), "estimators": estimators,
           "times_s": times, "cpu_times_s": CPU_TIMES,
           "correlations_over_energy": ratio, "correlations_over_energy_cpu": cpu_ratio,
           "all_pairs_over_energy": ratio_all, "all_pairs_over_energy_cpu": cpu_ratio_all,
           "target": 2.0,
           "load_average_start": load_start, "load_average": os.getloadavg()[0],
           "cpus": os.cpu_count()}
    res = args.output
    res.mkdir(exist_ok=True)
    (res / "observables_cost.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["| measurement | median wall time (s) | median CPU time (s) |", "|---|---|---|"]
    lines += [f"| {k} | {v:.4f} | {CPU_TIMES[k]:.4f} |" for k, v in times.items()]
    lines += ["", f"correlations / energy = {ratio:.2f} in wall time, {cpu_ratio:.2f} in CPU "
              f"time (target <= 2; estimator: {estimators['reduced']}); all pairs / energy = "
              f"{ratio_all:.2f} in wall time, {cpu_ratio_all:.2f} in CPU time; "
              f"{args.size}x{args.size} Heisenberg, rbm-symm alpha=1, {args.samples} samples, "
              f"load average {load_start:.1f} at the start, {out['load_average']:.1f} at the "
              f"end, on {out['cpus']} CPUs"]
    command = "python experiments/benchmarks/observables_cost.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    out["command"] = command.strip()
    (res / "observables_cost.json").write_text(json.dumps(out, indent=2) + "\n")
    lines += ["", f"`{out['command']}`"]
    (res / "observables_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
