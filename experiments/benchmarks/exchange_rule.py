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

With ``--sweeps T`` the same trained state is measured on long chains instead: per rule,
``--repeats`` draws of 64 chains x T consecutive sweeps (after ``--burn`` thermalizing sweeps;
the rules' draws taken in turn),
and the integrated autocorrelation time (Sokal, in sweeps; :func:`nqs.stats.integrated_time`)
of the local energy and of ``zz`` per draw. The cost of an independent sample is
``2 tau x seconds per sweep``; reported relative to the rule over all bonds, with the spread
of ``tau`` over the draws. This separates the mixing from the spread of a few hundred call
means, which the heavy tails of the local energy make noisy.

    python experiments/benchmarks/exchange_rule.py                       # triangular 4x4
    python experiments/benchmarks/exchange_rule.py --lattice square --size 6 --model j1j2
    python experiments/benchmarks/exchange_rule.py --sweeps 400 --run runs/tri --out \
        experiments/benchmarks/results/exchange_rule_tau

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


def _trained_state(args: argparse.Namespace) -> tuple:
    """:func:`_trained` in ``--run``, else in a temporary directory (the state stays loaded)."""
    if args.run:
        return _trained(args, args.run)
    with tempfile.TemporaryDirectory() as tmp:
        return _trained(args, str(Path(tmp) / "run"))


def _zz(x: np.ndarray, bonds: np.ndarray) -> float:
    """Mean nearest-neighbour correlation ``s_i s_j`` over the bonds and samples: bounded, so
    the spread of its call means measures the chains' mixing without the local energy's tails."""
    return float(np.mean(x[:, bonds[:, 0]] * x[:, bonds[:, 1]]))


def measure(args: argparse.Namespace) -> dict:
    run, train_s = _trained_state(args)
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


TAU_CHAINS = 64


def autocorrelation(args: argparse.Namespace) -> dict:
    """Integrated autocorrelation times of ``E_loc`` and ``zz`` on long chains (``--sweeps``)."""
    from nqs.stats import integrated_time

    run, train_s = _trained_state(args)
    state, model = run.state, run.model
    bonds = np.asarray(model.lattice.bonds)
    out = {"model": args.model, "lattice": args.lattice, "size": args.size,
           "ansatz": type(state.ansatz.module).__name__, "train_steps": args.train_steps,
           "train_s": train_s, "chains": TAU_CHAINS, "sweeps": args.sweeps,
           "repeats": args.repeats, "burn": args.burn, "cpu": cpu_model(),
           "jax": jax.__version__, "devices": str(jax.devices()[0]), "rules": {}}
    states, rows = {}, {}
    for i, (name, rule) in enumerate(RULES.items()):
        burn = MetropolisSampler(state.hilbert, rule(bonds), n_chains=TAU_CHAINS,
                                 n_samples=TAU_CHAINS, n_discard_sweeps=args.burn)
        vs = VariationalState(state.ansatz, state.params, burn, key=jax.random.PRNGKey(10 + i),
                              marshall_sublattice=state.marshall_sublattice)
        jax.block_until_ready(vs.sample().x)  # thermalize (and compile the short sampler)
        vs.sampler = MetropolisSampler(state.hilbert, rule(bonds), n_chains=TAU_CHAINS,
                                       n_samples=TAU_CHAINS * args.sweeps, n_discard_sweeps=0)
        jax.block_until_ready(vs.sample().x)  # compile the long one (its draw discarded)
        states[name] = vs
        rows[name] = {"tau_e": [], "tau_zz": [], "energy": [], "error": [], "sweep_s": [],
                      "zz": []}
    for _ in range(args.repeats):
        for name, vs in states.items():  # in turn: load changes affect both alike
            r = rows[name]
            t = time.perf_counter()
            samples = vs.sample()
            jax.block_until_ready(samples.x)
            r["sweep_s"].append((time.perf_counter() - t) / args.sweeps)
            stats = vs.expect(run.operator)
            x = np.asarray(samples.x)
            zz = np.mean(x[:, bonds[:, 0]] * x[:, bonds[:, 1]], axis=1)  # rows: sweep * chains
            r["tau_e"].append(float(stats.tau_corr))
            r["tau_zz"].append(float(integrated_time(
                jnp.asarray(zz.reshape(args.sweeps, TAU_CHAINS)))))
            r["energy"].append(float(jnp.real(stats.mean)))
            r["error"].append(float(stats.error_of_mean))
            r["zz"].append(float(np.mean(zz)))
    for name, r in rows.items():
        out["rules"][name] = {
            "tau_e": float(np.mean(r["tau_e"])), "tau_e_spread": float(np.std(r["tau_e"])),
            "tau_zz": float(np.mean(r["tau_zz"])), "tau_zz_spread": float(np.std(r["tau_zz"])),
            "energy": float(np.mean(r["energy"])),
            "error": float(np.sqrt(np.mean(np.square(r["error"])) / args.repeats)),
            "zz": float(np.mean(r["zz"])), "sweep_s": pystats.median(r["sweep_s"]),
            "per_repeat": r}
    base = out["rules"]["all bonds"]
    for r in out["rules"].values():
        for key in ("tau_e", "tau_zz"):
            r[key.replace("tau", "cost")] = (r[key] * r["sweep_s"]
                                            / (base[key] * base["sweep_s"]))
    out["load_average"] = os.getloadavg()[0]
    return out


def _where(out: dict) -> str:
    return (f"the {out['size']}-site chain" if out["lattice"] == "chain"
            else f"the periodic {out['size']}x{out['size']} {out['lattice']} lattice")


def tau_table(out: dict) -> str:
    lines = [f"{out['model']} on {_where(out)}, ansatz {out['ansatz']} after {out['train_steps']} "
             f"steps; {out['repeats']} draws of {out['chains']} chains x {out['sweeps']} sweeps "
             f"(after {out['burn']} thermalizing sweeps); {out['cpu']}, load "
             f"{out['load_average']:.2f}", "",
             "| rule | ms / sweep (64 chains) | tau zz (sweeps) | relative cost (zz) "
             "| tau E (sweeps) | relative cost (E) | E |",
             "|---|---|---|---|---|---|---|"]
    for name, r in out["rules"].items():
        lines.append(f"| {name} | {1e3 * r['sweep_s']:.2f} | {r['tau_zz']:.2f} +- "
                     f"{r['tau_zz_spread']:.2f} | {r['cost_zz']:.2f} | {r['tau_e']:.2f} +- "
                     f"{r['tau_e_spread']:.2f} | {r['cost_e']:.2f} | {r['energy']:.5f} +- "
                     f"{r['error']:.5f} |")
    return "\n".join(lines) + "\n"


def table(out: dict) -> str:
    lines = [f"{out['model']} on {_where(out)}, "
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
    p.add_argument("--sweeps", type=int, default=0,
                   help="measure autocorrelation times on chains of this many sweeps instead "
                   "of the spread of call means (default: 0, the call means)")
    p.add_argument("--repeats", type=int, default=4, help="draws per rule with --sweeps")
    p.add_argument("--burn", type=int, default=200, help="thermalizing sweeps with --sweeps")
    p.add_argument("--out", default="experiments/benchmarks/results/exchange_rule")
    args = p.parse_args(argv)
    if args.calls < 2 or args.train_steps < 1 or args.size < 1:
        p.error("--calls must be >= 2 (a spread needs two calls), --train-steps and --size >= 1")
    if args.sweeps and (args.sweeps < 20 or args.repeats < 1 or args.burn < 0):
        p.error("--sweeps must be >= 20, --repeats >= 1 and --burn >= 0")
    out = autocorrelation(args) if args.sweeps else measure(args)
    text = tau_table(out) if args.sweeps else table(out)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
