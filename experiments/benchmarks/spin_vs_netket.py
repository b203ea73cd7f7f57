"""Speed and accuracy of nqs against NetKet on the same spin workloads, same machine, one run.

Workloads (both codes, float64 / complex128, complex RBM parameters, minSR / NTK form of SR):

* ``tfim64``: transverse-field Ising chain, L=64, h=1, periodic; RBM alpha=2; single-spin-flip
  Metropolis; exact energy from free fermions.
* ``heis8x8``: Heisenberg model on the 8x8 periodic square lattice (S = sigma/2, Marshall sign
  by default as NetKet's ``Heisenberg`` does on bipartite graphs), S^z=0 sector; RBM alpha=2;
  exchange moves on the lattice bonds. No exact energy is tabulated: the reference is the best
  (lowest) final energy found by either code.

Both samplers use the same number of chains, sweep size (n_sites Metropolis steps per kept
sample) and discarded sweeps per step; both drivers the same learning rate and diagonal shift.
NetKet runs ``VMC_SR`` with the dense Jacobian (``on_the_fly=False``, the same linear algebra
as nqs's minSR) and, with ``--codes ... netket-otf``, also with its default on-the-fly NTK.
The codes are called in turn (one timed call of each, then the next round), so a change of
machine load affects all of them alike.

Measured for each code, after warm-up (compilation excluded), median of ``--repeats`` calls,
each ended by ``jax.block_until_ready``:

(a) sampling + local energies of ``--samples`` configurations (wall time and the process's CPU
    time; the 1-minute load average after every call is kept in the JSON);
(b) one full VMC step (sampling, local energies, Jacobian, SR solve, parameter update);
(c) energies after ``--steps`` optimisation steps from the same initial scale, and the wall time
    until the per-step energy estimate first comes within ``--tol`` (relative) of the reference.

    python experiments/benchmarks/spin_vs_netket.py              # full
    python experiments/benchmarks/spin_vs_netket.py --quick      # fewer repeats and steps
    python experiments/benchmarks/spin_vs_netket.py --codes nqs netket netket-otf
    python experiments/benchmarks/spin_vs_netket.py --profile    # where nqs's step time goes

Writes ``experiments/benchmarks/results/spin_vs_netket.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics as pystats
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64)
from hamiltonians.lattice import chain, square
from hamiltonians.spin import Heisenberg, TransverseFieldIsing
from hamiltonians.spin_reference import tfim_chain_energy
from nqs.local_energy import make_local_energy
from nqs.models.rbm import make_rbm
from nqs.optim import sr, sr_optimizer
from nqs.optim.flat import real_flat
from nqs.optim.jacobian import HolomorphicJacobian, StructuredJacobian
from nqs.sampling.base import Samples
from nqs.sampling.metropolis import MetropolisSampler
from nqs.sampling.rules import ExchangeRule, LocalRule
from nqs.vmc import batched, make_energy_evaluator, make_estimator, make_vmc

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Workload:
    name: str
    description: str
    model: Any
    exact: float | None
    exchange: bool


@dataclass
class CodeResult:
    """Figures of one code on one workload."""

    code: str
    sample_eloc_s: float
    step_s: float
    sample_eloc_all_s: list[float]
    step_all_s: list[float]
    final_energy: float
    final_energy_error: float
    steps: int
    energies: list[float] = field(repr=False)
    wall_times: list[float] = field(repr=False)
    compile_s: float = 0.0
    notes: str = ""
    sample_eloc_cpu_s: float = float("nan")  # median process CPU time of (a), all threads
    sample_eloc_cpu_all_s: list[float] = field(default_factory=list)
    sample_eloc_loads: list[float] = field(default_factory=list)  # 1-minute load after each


def build_workloads(names: list[str], marshall: bool) -> list[Workload]:
    out = []
    for name in names:
        if name == "tfim64":
            model = TransverseFieldIsing(chain(64), h=1.0)
            out.append(Workload(name, "TFIM chain L=64, h=1", model, tfim_chain_energy(64, 1.0),
                                False))
        elif name == "heis8x8":
            model = Heisenberg(square(8), marshall_sign=marshall)
            desc = "Heisenberg 8x8 periodic, S^z=0" + (", Marshall sign" if marshall else "")
            out.append(Workload(name, desc, model, None, True))
        else:
            raise SystemExit(f"unknown workload {name!r}")
    return out


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` (which must block until its results are ready)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return pystats.median(times), times


def steps_to_tolerance(energies: list[float], times: list[float], ref: float, tol: float
                       ) -> tuple[int | None, float | None]:
    """First step (and cumulative wall time) with |E_step - ref| / |ref| < tol."""
    for k, e in enumerate(energies):
        if abs(e - ref) / abs(ref) < tol:
            return k, times[k]
    return None, None


# ---------------------------------------------------------------------------------- runners


@dataclass
class Runner:
    """One code set up on one workload (compiled): the three things the benchmark times.

    sample_eloc(): sample ``--samples`` configurations and all their local energies (blocks);
    step() -> energy of the step (one full VMC step, blocks); final() -> (mean, error) from
    fresh samples. ``first_step_compiles``: the first step() includes compilation.
    """

    code: str
    sample_eloc: Callable[[], None]
    step: Callable[[], float]
    final: Callable[[], tuple[float, float]]
    compile_s: float
    notes: str
    first_step_compiles: bool = False


def nqs_runner(w: Workload, args: argparse.Namespace) -> Runner:
    model = w.model
    n = model.hilbert.n_sites
    rule = ExchangeRule(np.asarray(model.lattice.bonds)) if w.exchange else LocalRule()
    sampler = MetropolisSampler(model.hilbert, rule, n_chains=args.chains, n_samples=args.samples,
                                sweep_size=n, n_discard_sweeps=args.discard,
                                ratio_dtype=args.ratio_dtype)
    ansatz = make_rbm(n, args.alpha, init_scale=0.01)
    optimizer = sr_optimizer(args.lr, args.diag_shift, mode=args.sr_mode)
    init, step = make_vmc(ansatz, model, sampler, optimizer)
    step = jax.jit(step)
    evaluate = jax.jit(make_energy_evaluator(ansatz, model, sampler))

    box = {"state": init(jax.random.PRNGKey(args.seed)), "k": 0}
    t0 = time.perf_counter()
    state0 = box["state"]
    jax.block_until_ready(evaluate(state0.params, state0.sampler_state, state0.key))
    jax.block_until_ready(step(state0))  # compiles; the result is discarded (pure step)
    compile_s = time.perf_counter() - t0
    box["ss"] = state0.sampler_state

    def sample_eloc() -> None:
        # the sampler state is carried, as in a run; parameters stay at the initial ones
        _, ss, e_loc = evaluate(state0.params, box["ss"], jax.random.PRNGKey(box["k"]))
        jax.block_until_ready(e_loc)
        box["ss"] = ss
        box["k"] += 1

    def one_step() -> float:
        box["state"], info = step(box["state"])
        return float(info.energy)  # device_get blocks

    def final() -> tuple[float, float]:
        return final_energy_nqs(evaluate, box["state"], args.eval_batches)

    return Runner("nqs", sample_eloc, one_step, final, compile_s,
                  f"SR mode {args.sr_mode}, holomorphic={ansatz.holomorphic}, "
                  f"Metropolis ratios in {args.ratio_dtype}")


def final_energy_nqs(evaluate: Callable, state: Any, n_batches: int) -> tuple[float, float]:
    ss = state.sampler_state
    es = []
    for b in range(n_batches):
        stats, ss, e_loc = evaluate(state.params, ss, jax.random.fold_in(state.key, 1000 + b))
        es.append(np.asarray(e_loc).real)
    e = np.concatenate(es)
    return float(e.mean()), float(e.std() / np.sqrt(len(e)))


def profile_nqs(w: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """Median times (s) of the parts of one nqs step: sampling, E_loc, Jacobian, kernel, solve."""
    model = w.model
    n = model.hilbert.n_sites
    rule = ExchangeRule(np.asarray(model.lattice.bonds)) if w.exchange else LocalRule()
    sampler = MetropolisSampler(model.hilbert, rule, n_chains=args.chains, n_samples=args.samples,
                                sweep_size=n, n_discard_sweeps=args.discard)
    ansatz = make_rbm(n, args.alpha)
    params = ansatz.init(jax.random.PRNGKey(0), np.ones(n))
    sstate = sampler.init(jax.random.PRNGKey(1), ansatz, params)
    sample = jax.jit(lambda p, st, k: sampler.sample(k, ansatz, p, st)[0].x)
    e_loc = jax.jit(batched(make_local_energy(model, ansatz), None))
    est = make_estimator(ansatz, model, needs_jacobian=True)
    estimate = jax.jit(lambda p, x, wts: est(p, Samples(x, wts, args.chains)))
    tx = sr(args.diag_shift, "minsr")
    _, unflatten = real_flat(params)
    kernel = jax.jit(lambda o: o @ o.conj().T)
    solve = jax.jit(lambda g, j, r: tx.update(unflatten(g), tx.init(params), params,
                                              jacobian=j, residuals=r)[0])

    def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
        out = jax.block_until_ready(fn())
        t, _ = median_time(lambda: jax.block_until_ready(fn()), args.repeats)
        return t, out

    out: dict[str, Any] = {}
    out["sampling"], x = timed(lambda: sample(params, sstate, jax.random.PRNGKey(2)))
    weights = jnp.full((x.shape[0],), 1.0 / x.shape[0])
    out["local energies"], _ = timed(lambda: e_loc(params, x))
    out["local energies + Jacobian"], e = timed(lambda: estimate(params, x, weights))
    if isinstance(e.jacobian, StructuredJacobian):  # the RBM's factored Jacobian
        structured_kernel = jax.jit(lambda j: j.kernel())
        out["kernel (O O^H from the factors)"], _ = timed(lambda: structured_kernel(e.jacobian))
        shape = [e.jacobian.n_rows, int(real_flat(params)[0].shape[0] // 2)]
    else:
        o = e.jacobian.o if isinstance(e.jacobian, HolomorphicJacobian) else e.jacobian
        out["kernel (O O^H, or J J^T)"], _ = timed(lambda: kernel(o))
        shape = list(o.shape)
    out["minSR solve (kernel, Cholesky, O^H v)"], _ = timed(
        lambda: solve(e.grad, e.jacobian, e.residuals))
    out["jacobian shape"] = shape
    return out


def netket_runner(w: Workload, args: argparse.Namespace, on_the_fly: bool | None) -> Runner:
    import netket as nk
    import optax

    model = w.model
    n = model.hilbert.n_sites
    op = model.to_netket()
    if args.netket_operator == "jax":
        op = op.to_jax_operator()
    hi = op.hilbert
    if w.exchange:
        graph = nk.graph.Graph(edges=model.lattice.bonds.tolist(), n_nodes=n)
        sampler = nk.sampler.MetropolisExchange(hi, graph=graph, n_chains=args.chains,
                                                sweep_size=n)
    else:
        sampler = nk.sampler.MetropolisLocal(hi, n_chains=args.chains, sweep_size=n)
    rbm = nk.models.RBM(alpha=args.alpha, param_dtype=complex)
    vs = nk.vqs.MCState(sampler, rbm, n_samples=args.samples, n_discard_per_chain=args.discard,
                        seed=args.seed, sampler_seed=args.seed + 1)
    use_ntk = {"minsr": True, "dense": False, "auto": None}[args.sr_mode]
    driver = nk.driver.VMC_SR(op, optax.sgd(args.lr), diag_shift=args.diag_shift,
                              variational_state=vs, use_ntk=use_ntk, on_the_fly=on_the_fly)

    def one_step() -> float:
        driver.reset_step()
        loss, dp = driver.compute_loss_and_update()
        driver.update_parameters(dp)
        driver._step_count += 1
        jax.block_until_ready(driver.state.parameters)
        return float(np.real(loss.mean))

    def sample_eloc() -> None:
        vs.reset()
        jax.block_until_ready(_estimator_data(vs.local_estimators(op)))

    t0 = time.perf_counter()
    sample_eloc()
    compile_s = time.perf_counter() - t0

    def final() -> tuple[float, float]:
        es = []
        for _ in range(args.eval_batches):
            vs.reset()
            es.append(np.asarray(_estimator_data(vs.local_estimators(op))).real.ravel())
        e = np.concatenate(es)
        return float(e.mean()), float(e.std() / np.sqrt(len(e)))

    notes = (f"VMC_SR use_ntk={driver.use_ntk} on_the_fly={driver.on_the_fly}, "
             f"{type(op).__name__}")
    name = "NetKet" if not on_the_fly else "NetKet (on the fly)"
    return Runner(name, sample_eloc, one_step, final, compile_s, notes, first_step_compiles=True)


def run_interleaved(runners: list[Runner], args: argparse.Namespace,
                    loads: list[float], exact: float | None) -> list[CodeResult]:
    """Time all codes call by call in turn, so that load changes hit every code alike.

    (a) ``--repeats`` calls of sampling + local energies; (b) ``--steps`` steps; then, with
    ``--budget`` seconds, more steps (in turn) until each code's per-step energy is within
    ``--tol`` of ``exact`` or its own accumulated step time exceeds the budget.
    """
    for r in runners:
        r.sample_eloc()  # warm-up
    times_a: dict[str, list[float]] = {r.code: [] for r in runners}
    cpu_a: dict[str, list[float]] = {r.code: [] for r in runners}
    loads_a: dict[str, list[float]] = {r.code: [] for r in runners}
    for _ in range(args.repeats):
        for r in runners:
            t0, c0 = time.perf_counter(), time.process_time()
            r.sample_eloc()
            times_a[r.code].append(time.perf_counter() - t0)
            cpu_a[r.code].append(time.process_time() - c0)  # the process's CPU time: both codes
            loads.append(os.getloadavg()[0])  # run in this one process, one at a time
            loads_a[r.code].append(loads[-1])
    energies: dict[str, list[float]] = {r.code: [] for r in runners}
    step_times: dict[str, list[float]] = {r.code: [] for r in runners}
    own: dict[str, float] = {r.code: 0.0 for r in runners}  # each code's own step time
    done: dict[str, bool] = {r.code: False for r in runners}
    k = 0
    # at least --steps steps each (the step timing); with --budget, go on (codes in turn) until
    # a code's per-step energy is within --tol of an exact reference or its own time is spent
    while True:
        active = [r for r in runners if k < args.steps or (
            not done[r.code] and own[r.code] < args.budget)]
        if not active:
            break
        for r in active:
            t0 = time.perf_counter()
            energies[r.code].append(r.step())
            dt = time.perf_counter() - t0
            step_times[r.code].append(dt)
            own[r.code] += dt
            loads.append(os.getloadavg()[0])
            if exact is not None and abs(energies[r.code][-1] - exact) / abs(exact) < args.tol:
                done[r.code] = True
        if k < args.steps or k % 10 == 0:
            print(f"  step {k}: " + ", ".join(
                f"{r.code} E={energies[r.code][-1]:.5f} ({step_times[r.code][-1]:.2f} s, "
                f"total {own[r.code]:.0f} s)" for r in active)
                + f" (load {os.getloadavg()[0]:.1f})", flush=True)
        k += 1
    out = []
    for r in runners:
        st = step_times[r.code]
        # the step time (b): the first --steps steps, which every code runs in turn
        timed = st[1:args.steps] if r.first_step_compiles else st[:args.steps]
        t_b = pystats.median(timed) if timed else float("nan")
        if r.first_step_compiles and st:
            r.compile_s += st[0] - t_b
            st = [t_b] + st[1:]  # the compiling first step counted at the median step time
        walls = list(np.cumsum(st))  # the code's own time: the other codes' steps excluded
        mean, err = r.final()
        out.append(CodeResult(r.code, pystats.median(times_a[r.code]), t_b, times_a[r.code],
                              step_times[r.code], mean, err, len(st), energies[r.code],
                              [float(v) for v in walls], r.compile_s, r.notes,
                              pystats.median(cpu_a[r.code]), cpu_a[r.code], loads_a[r.code]))
    return out


def _estimator_data(le: Any) -> jax.Array:
    """The array of local values (NetKet >= 3.22 wraps it in a ``LocalEstimators``)."""
    return getattr(le, "data", le)


# -------------------------------------------------------------------------------- reporting


def machine_info() -> dict[str, Any]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                    if ln.startswith("Model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    import netket as nk

    return {
        "cpu": cpu,
        "n_cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "netket": nk.__version__,
        "devices": [str(d) for d in jax.devices()],
    }


def report(rows: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['n_cpus']} CPUs ({', '.join(info['devices'])}); "
        f"load average at start {fmt_load(info['load_average_start'])}, "
        f"at end {fmt_load(info['load_average_end'])}; 1-minute load during the timings "
        + ", ".join(f"{k} {v['min']:.1f} to {v['max']:.1f} (median {v['median']:.1f})"
                    for k, v in info.get("load_average_1min_during", {}).items()) + "; "
        f"jax {info['jax']}, netket {info['netket']}.",
        f"Settings: {args.samples} samples, {args.chains} chains, sweep = n_sites steps, "
        f"{args.discard} discarded sweeps per step, RBM alpha={args.alpha} complex, SR "
        f"{args.sr_mode} diag_shift={args.diag_shift}, lr={args.lr}; "
        f"times are medians of {args.repeats} calls (a) / of the first {args.steps} "
        "optimisation steps (b), compilation excluded; the codes are called in turn "
        "(interleaved); 'steps' includes the time-to-tol run (own step time budget "
        f"{args.budget:g} s per code), and 'time to tol' counts each code's own step times.",
        "",
        "| workload | code | sampling+E_loc (s) | sampling+E_loc CPU (s) | full step (s) | "
        "NetKet/nqs (sampling+E_loc) | NetKet/nqs (sampling+E_loc CPU) | NetKet/nqs (step) | "
        f"steps | final energy | reference | rel. error | time to {args.tol:g} (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rel = "" if r["relative_error"] is None else f"{r['relative_error']:.2e}"
        ttt = (f"not reached in {r.get('own_time_s', 0):.0f}" if r["time_to_tol_s"] is None
               else f"{r['time_to_tol_s']:.1f} ({r['steps_to_tol'] + 1} steps)")
        lines.append(
            f"| {r['workload']} | {r['code']} | {r['sample_eloc_s']:.4f} | "
            f"{r.get('sample_eloc_cpu_s', float('nan')):.4f} | {r['step_s']:.3f} | "
            f"{r['ratio_sample_eloc']} | {r.get('ratio_sample_eloc_cpu', '')} | "
            f"{r['ratio_step']} | {r['steps']} | "
            f"{r['final_energy']:.5f} +- {r['final_energy_error']:.5f} | {r['reference']} | "
            f"{rel} | {ttt} |"
        )
    return "\n".join(lines)


def fmt_load(load: Any) -> str:
    return "/".join(f"{v:.2f}" for v in load)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workloads", nargs="+", default=["tfim64", "heis8x8"],
                   choices=["tfim64", "heis8x8"])
    p.add_argument("--codes", nargs="+", default=["nqs", "netket"],
                   choices=["nqs", "netket", "netket-otf"],
                   help="netket: VMC_SR with the dense Jacobian (on_the_fly=False, as nqs); "
                   "netket-otf: on_the_fly=True")
    p.add_argument("--quick", action="store_true", help="3 repeats, 10 steps")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default 100)")
    p.add_argument("--repeats", type=int, default=None, help="timing repeats (default 7)")
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--chains", type=int, default=128)
    p.add_argument("--discard", type=int, default=4, help="discarded sweeps per step")
    p.add_argument("--alpha", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--diag-shift", type=float, default=1e-2)
    p.add_argument("--sr-mode", choices=["minsr", "dense", "auto"], default="minsr")
    p.add_argument("--no-marshall", action="store_true", help="Heisenberg without sign rule")
    p.add_argument("--netket-operator", choices=["jax", "numba"], default="jax",
                   help="NetKet operator implementation (default: jax)")
    p.add_argument("--ratio-dtype", choices=["float64", "float32"], default="float64",
                   help="nqs Metropolis acceptance ratios (MetropolisSampler.ratio_dtype); "
                   "NetKet always samples in float64")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--budget", type=float, default=0.0,
                   help="seconds of each code's own step time for the time-to-tol run "
                   "(0: only --steps steps)")
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--profile", action="store_true",
                   help="only print the breakdown of one nqs step per workload")
    args = p.parse_args(argv)
    args.steps = args.steps or (10 if args.quick else 100)
    args.repeats = args.repeats or (3 if args.quick else 7)

    if args.profile:
        for w in build_workloads(args.workloads, not args.no_marshall):
            for part, t in profile_nqs(w, args).items():
                value = t if isinstance(t, list) else f"{t:.3f} s"
                print(f"[{w.name}] {part:40s} {value}  (load {os.getloadavg()[0]:.1f})",
                      flush=True)
        return 0

    info = machine_info()
    rows: list[dict[str, Any]] = []
    raw: dict[str, Any] = {}
    for w in build_workloads(args.workloads, not args.no_marshall):
        runners = []
        for code in args.codes:
            print(f"[{w.name}] compiling {code} ...", flush=True)
            if code == "nqs":
                runners.append(nqs_runner(w, args))
            else:
                runners.append(netket_runner(w, args, on_the_fly=code == "netket-otf"))
        loads: list[float] = []
        results = {r.code: r for r in run_interleaved(runners, args, loads, w.exact)}
        info.setdefault("load_average_1min_during", {})[w.name] = {
            "min": min(loads), "max": max(loads), "median": pystats.median(loads)}
        for res in results.values():
            print(f"[{w.name}] {res.code}: sampling+E_loc {res.sample_eloc_s:.4f} s (CPU "
                  f"{res.sample_eloc_cpu_s:.4f} s), step "
                  f"{res.step_s:.3f} s, E = {res.final_energy:.5f} (load "
                  f"{fmt_load(os.getloadavg())})", flush=True)
        ref = w.exact
        ref_label = "exact" if ref is not None else "best found"
        if ref is None:
            ref = min(r.final_energy for r in results.values())
        for r in results.values():
            k, t = steps_to_tolerance(r.energies, r.wall_times, ref, args.tol)
            other = results.get("nqs")
            ratio_a = ratio_b = ratio_c = ""
            if r.code != "nqs" and other is not None:
                ratio_a = f"{r.sample_eloc_s / other.sample_eloc_s:.1f}"
                ratio_c = f"{r.sample_eloc_cpu_s / other.sample_eloc_cpu_s:.1f}"
                ratio_b = f"{r.step_s / other.step_s:.1f}"
            rows.append({
                "workload": w.description, "code": r.code,
                "sample_eloc_s": r.sample_eloc_s, "step_s": r.step_s,
                "sample_eloc_cpu_s": r.sample_eloc_cpu_s, "ratio_sample_eloc_cpu": ratio_c,
                "ratio_sample_eloc": ratio_a, "ratio_step": ratio_b, "steps": r.steps,
                "final_energy": r.final_energy, "final_energy_error": r.final_energy_error,
                "reference": f"{ref:.5f} ({ref_label})",
                "relative_error": abs(r.final_energy - ref) / abs(ref),
                "steps_to_tol": k, "time_to_tol_s": t,
                "own_time_s": r.wall_times[-1] if r.wall_times else 0.0,
            })
            raw[f"{w.name}/{r.code}"] = asdict(r)
        write_results(rows, raw, info, args)  # after every workload: long runs keep partial results
    print(report(rows, info, args))
    print(f"wrote {args.out}/spin_vs_netket.md and .json")
    return 0


def write_results(rows: list[dict[str, Any]], raw: dict[str, Any], info: dict[str, Any],
                  args: argparse.Namespace) -> None:
    info["load_average_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "spin_vs_netket.md").write_text(report(rows, info, args) + "\n")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "spin_vs_netket.json").write_text(json.dumps(
        {"machine": info, "settings": settings, "rows": rows, "runs": raw}, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
