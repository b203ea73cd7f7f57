"""Exchange moves on all bonds against exchanges of antiparallel spins only, at fixed parameters.

A spin-conserving Metropolis chain proposes the exchange of the two spins of a bond. With
:class:`nqs.sampling.rules.ExchangeRule` any bond is drawn, and a bond of parallel spins gives
the identity move, which still costs an evaluation of ``log psi`` for a network without
per-pattern tables (GCNN, ViT). :class:`nqs.sampling.rules.AntiparallelExchangeRule` draws
among the antiparallel bonds only, with the Metropolis-Hastings ratio ``n(x) / n(x')``.

Workload: a state trained for ``--train-steps`` steps by ``nqs spin`` at its defaults for the
model (``--model``, ``--lattice``, ``--size``; the default ansatz there), then at those fixed
parameters ``--calls`` sampler calls of each rule with the command line's sampling settings
(1024 samples, 128 chains, 4 discarded sweeps of n_sites moves per call), taken in turn.
Reported per rule: the share of proposals that move (the antiparallel bonds of the sampled
configurations for the rule over all bonds), the accepted moves per proposal (identity moves
not counted), the spread (standard deviation) of the per-call energy means, which is the noise
a VMC step sees, the median wall time of a call, and the cost of a given precision,
``spread^2 x seconds per call``, relative to the rule over all bonds (below 1: cheaper). The
same for the nearest-neighbour correlation ``zz`` (mean ``s_i s_j`` over the bonds): it is
bounded, so its spread measures the mixing of the chains; the GCNN's local energies are
heavy-tailed, and the spread of their call means over 100 calls is itself uncertain by tens of
percent.

    python experiments/benchmarks/exchange_rule.py                       # triangular 4x4
    python experiments/benchmarks/exchange_rule.py --lattice square --size 6 --model j1j2

Writes ``experiments/benchmarks/results/exchange_rule.{md,json}`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics as pystats
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64)
from nqs.bench.machine import cpu_model
from nqs.cli import main as nqs_main
from nqs.commands.load import load_run
from nqs.sampling.metropolis import MetropolisSampler
from nqs.sampling.rules import AntiparallelExchangeRule, ExchangeRule
from nqs.state import VariationalState

RULES = {"all bonds": ExchangeRule, "antiparallel only": AntiparallelExchangeRule}


def _moving_share(x: np.ndarray, bonds: np.ndarray) -> float:
    """Share of the bonds of the sampled configurations whose spins differ."""
    return float(np.mean(x[:, bonds[:, 0]] != x[:, bonds[:, 1]]))


def _trained(args: argparse.Namespace, run_dir: str) -> tuple:
    """``(load_run of the trained state, training seconds)``; an existing ``run_dir`` with a
    finished run is reused (``--run``)."""
    t0 = time.perf_counter()
    if not (Path(run_dir) / "result.json").exists():
        cmd = ["spin", "--model", args.model, "--lattice", args.lattice, "--size",
               str(args.size), "--steps", str(args.train_steps), "--seed", "0",
               "--out", run_dir]
        if nqs_main(cmd) not in (0, None):
            raise SystemExit("the training run failed")
    return load_run(run_dir), time.perf_counter() - t0


def _zz(x: np.ndarray, bonds: np.ndarray) -> float:
    """Mean nearest-neighbour correlation ``s_i s_j`` over the bonds and samples: bounded, so
    the spread of its call means measures the chains' mixing without the local energy's tails."""
    return float(np.mean(x[:, bonds[:, 0]] * x[:, bonds[:, 1]]))


def measure(args: argparse.Namespace) -> dict:
    if args.run:
        run, train_s = _trained(args, args.run)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run, train_s = _trained(args, str(Path(tmp) / "run"))
    state, model = run.state, run.model
    bonds = np.asarray(model.lattice.bonds)
    samplers = {name: MetropolisSampler(state.hilbert, rule(bonds), n_chains=128,
                                        n_samples=1024, n_discard_sweeps=4)
                for name, rule in RULES.items()}
    states = {name: VariationalState(state.ansatz, state.params, s, key=jax.random.PRNGKey(i),
                                     marshall_sublattice=state.marshall_sublattice)
              for i, (name, s) in enumerate(samplers.items())}
    rows = {name: {"means": [], "variances": [], "seconds": [], "acceptance": [], "moving": [],
                   "zz": []} for name in RULES}
    for vs in states.values():  # compile and thermalize
        for _ in range(3):
            vs.sample()
        jax.block_until_ready(vs.expect(run.operator).mean)
    for _ in range(args.calls):
        for name, vs in states.items():  # in turn: load changes affect both alike
            before = np.asarray(vs.sampler_state.n_accepted).sum()
            t = time.perf_counter()
            samples = vs.sample()
            jax.block_until_ready(samples.x)
            rows[name]["seconds"].append(time.perf_counter() - t)
            accepted = np.asarray(vs.sampler_state.n_accepted).sum() - before
            proposed = 128 * (4 + 1024 // 128) * state.hilbert.n_sites
            rows[name]["acceptance"].append(accepted / proposed)
            rows[name]["moving"].append(_moving_share(np.asarray(samples.x), bonds))
            rows[name]["zz"].append(_zz(np.asarray(samples.x), bonds))
            stats = vs.expect(run.operator)
            rows[name]["means"].append(float(jnp.real(stats.mean)))
            rows[name]["variances"].append(float(stats.variance))
    out = {"model": args.model, "lattice": args.lattice, "size": args.size,
           "ansatz": type(state.ansatz.module).__name__,
           "train_steps": args.train_steps, "train_s": train_s, "calls": args.calls,
           "cpu": cpu_model(), "jax": jax.__version__, "devices": str(jax.devices()[0]),
           "load_average": os.getloadavg()[0], "rules": {}}
    for name, r in rows.items():
        moving = float(np.mean(r["moving"])) if name == "all bonds" else 1.0
        out["rules"][name] = {
            "moving_share": moving,
            "accepted_moves": float(np.mean(r["acceptance"])) - (1.0 - moving),
            "energy": float(np.mean(r["means"])),
            "call_spread": float(np.std(r["means"], ddof=1)),
            "zz": float(np.mean(r["zz"])), "zz_spread": float(np.std(r["zz"], ddof=1)),
            "local_variance": float(np.mean(r["variances"])),
            "call_s": pystats.median(r["seconds"])}
    base = out["rules"]["all bonds"]
    for r in out["rules"].values():
        for key in ("call_spread", "zz_spread"):
            r[key.replace("spread", "cost")] = (r[key] ** 2 * r["call_s"]
                                                / (base[key] ** 2 * base["call_s"]))
    return out


def table(out: dict) -> str:
    where = (f"the {out['size']}-site chain" if out["lattice"] == "chain"
             else f"the periodic {out['size']}x{out['size']} {out['lattice']} lattice")
    lines = [f"{out['model']} on {where}, "
             f"ansatz {out['ansatz']} after {out['train_steps']} steps; {out['calls']} calls of "
             f"1024 samples (128 chains, 4 discarded sweeps); {out['cpu']}, load "
             f"{out['load_average']:.2f}", "",
             "| rule | proposals that move | accepted moves / proposal | s / call "
             "| zz: mean, spread of call means | relative cost (zz) "
             "| E: mean, spread of call means | relative cost (E) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in out["rules"].items():
        lines.append(f"| {name} | {r['moving_share']:.3f} | {r['accepted_moves']:.3f} | "
                     f"{r['call_s']:.3f} | {r['zz']:.5f}, {r['zz_spread']:.2e} | "
                     f"{r['zz_cost']:.2f} | {r['energy']:.5f}, {r['call_spread']:.2e} | "
                     f"{r['call_cost']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="xxz", choices=("heisenberg", "xxz", "j1j2"))
    p.add_argument("--lattice", default="triangular", choices=("chain", "square", "triangular",
                                                             "honeycomb"))
    p.add_argument("--size", type=int, default=4)
    p.add_argument("--train-steps", type=int, default=100)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--run", default=None,
                   help="directory of the trained run: reused when it holds a finished run, "
                   "else trained there (default: a temporary directory)")
    p.add_argument("--out", default="experiments/benchmarks/results/exchange_rule")
    args = p.parse_args(argv)
    if args.calls < 2 or args.train_steps < 1 or args.size < 1:
        p.error("--calls must be >= 2 (a spread needs two calls), --train-steps and --size >= 1")
    out = measure(args)
    text = table(out)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
