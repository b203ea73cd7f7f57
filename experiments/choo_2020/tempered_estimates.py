"""Sampled energies of a trained autoregressive state against its exact energy, per sampling power.

The final energy of a sampled run comes from a few fresh draws; a state fitted to part of a
selected CI space holds a long tail of small amplitudes that plain draws from ``|psi|^2``
rarely reach, while its local energies there are large. Tempered draws (``--sampling-power q``:
the conditionals raised to q, reweighted exactly) reach further. For each q this draws
``--repeats`` independent estimates of the same parameters and compares them with the state's
exact energy (summed over every determinant with PySCF's FCI machinery): the bias, the scatter,
and whether the reported error bar covers the scatter.

    python experiments/choo_2020/tempered_estimates.py RUN [--powers 1 0.7 0.5 0.3] [--repeats 20]

Writes ``results/tempered_estimates_<name>.{md,json}``. Feasible where the state vector fits in
memory (a few million determinants).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from start_quality import energy, fci_vector, state_vector

import nqs  # noqa: F401  (float64)
from nqs.commands.load import load_run
from nqs.errors import CheckpointError, InputError
from nqs.sampling.autoregressive import AutoregressiveSampler
from nqs.vmc import make_energy_evaluator

HERE = Path(__file__).resolve().parent


def _fail(message: str) -> None:
    """Bad input: one line on stderr, exit status 2."""
    print(f"tempered_estimates.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--powers", type=float, nargs="+", default=[1.0, 0.7, 0.5, 0.3])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--max-unique", type=int, default=1024)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    if args.repeats < 2 or args.samples < 1 or args.max_unique < 4:
        _fail("--repeats >= 2, --samples >= 1 and --max-unique >= 4 needed")
    if not all(0.0 < q <= 1.0 for q in args.powers):
        _fail(f"every sampling power must be in (0, 1], got {args.powers}")
    try:
        loaded = load_run(args.run)
    except (CheckpointError, InputError) as err:
        _fail(str(err))
    if loaded.kind != "molecule":
        _fail(f"{args.run} is not a molecule run")
    integrals, operator = loaded.model, loaded.operator
    ansatz, params = loaded.state.ansatz, loaded.state.params
    t0 = time.perf_counter()
    e_fci, c, h2_eff = fci_vector(integrals)
    e_exact = energy(state_vector(ansatz, params, integrals, c.shape), h2_eff, integrals)
    print(f"{args.run}: {c.size} determinants, exact E = {e_exact:.8f} "
          f"({1e3 * (e_exact - e_fci):.3f} mHa above FCI; {time.perf_counter() - t0:.0f} s)",
          flush=True)

    rows = []
    for power in args.powers:
        try:
            sampler = AutoregressiveSampler(operator.hilbert, args.samples, args.max_unique, power)
        except InputError as err:
            _fail(str(err))
        evaluate = make_energy_evaluator(ansatz, operator, sampler, packed=True)
        state = sampler.init(None, ansatz, params)
        for k in range(3):  # the draw count settles to what the buffer holds
            _, state, _ = evaluate(params, state, jax.random.PRNGKey(10_000 + k))
        means, errors, t1 = [], [], time.perf_counter()
        for k in range(args.repeats):
            stats, state, e_loc = evaluate(params, state, jax.random.PRNGKey(k))
            means.append(float(np.real(stats.mean)))
            errors.append(float(stats.error_of_mean))
        seconds = (time.perf_counter() - t1) / args.repeats
        dev = 1e3 * (np.asarray(means) - e_exact)
        row = {"power": power, "bias_mha": float(dev.mean()),
               "bias_error_mha": float(dev.std(ddof=1) / np.sqrt(len(dev))),
               "scatter_mha": float(dev.std(ddof=1)),
               "rms_mha": float(np.sqrt(np.mean(dev**2))),
               "mean_error_bar_mha": 1e3 * float(np.mean(errors)),
               "n_unique": len(e_loc), "draws": float(state), "seconds": seconds}
        rows.append(row)
        print(f"  q = {power}: bias {row['bias_mha']:+.3f} +- {row['bias_error_mha']:.3f} mHa, "
              f"scatter {row['scatter_mha']:.3f}, rms {row['rms_mha']:.3f}, mean error bar "
              f"{row['mean_error_bar_mha']:.3f} mHa, {row['n_unique']} distinct, "
              f"{seconds:.2f} s", flush=True)

    name = args.name or Path(args.run).name
    out = HERE / "results" / f"tempered_estimates_{name}"
    record = {"run": name, "determinants": int(c.size), "e_exact": e_exact, "e_fci": e_fci,
              "samples": args.samples, "max_unique": args.max_unique, "repeats": args.repeats,
              "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    lines = [f"# Sampled energies against the exact energy: {name}", "",
             f"{c.size} determinants; the state's exact energy {e_exact:.8f} Ha, "
             f"{1e3 * (e_exact - e_fci):.3f} mHa above FCI. {args.repeats} independent "
             f"estimates per sampling power q, at most {args.samples} draws in "
             f"{args.max_unique} distinct determinants each.", "",
             "| q | bias (mHa) | scatter (mHa) | rms (mHa) | mean error bar (mHa) "
             "| distinct | s / estimate |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['power']} | {r['bias_mha']:+.3f} +- {r['bias_error_mha']:.3f} "
                     f"| {r['scatter_mha']:.3f} | {r['rms_mha']:.3f} "
                     f"| {r['mean_error_bar_mha']:.3f} | {r['n_unique']} "
                     f"| {r['seconds']:.2f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.md", flush=True)


if __name__ == "__main__":
    main()
