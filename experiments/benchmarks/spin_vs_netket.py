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

Measured for each code, after warm-up (compilation excluded), median of ``--repeats`` calls,
each ended by ``jax.block_until_ready``:

(a) sampling + local energies of ``--samples`` configurations;
(b) one full VMC step (sampling, local energies, Jacobian, SR solve, parameter update);
(c) energies after ``--steps`` optimisation steps from the same initial scale, and the wall time
    until the per-step energy estimate first comes within ``--tol`` (relative) of the reference.

    python experiments/benchmarks/spin_vs_netket.py              # full
    python experiments/benchmarks/spin_vs_netket.py --quick      # fewer repeats and steps

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
from nqs.optim import sr_optimizer
from nqs.optim.sr import natural_gradient_minsr
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


# --------------------------------------------------------------------------------------- nqs


def run_nqs(w: Workload, args: argparse.Namespace) -> CodeResult:
    model = w.model
    n = model.hilbert.n_sites
    rule = ExchangeRule(np.asarray(model.lattice.bonds)) if w.exchange else LocalRule()
    sampler = MetropolisSampler(model.hilbert, rule, n_chains=args.chains, n_samples=args.samples,
                                sweep_size=n, n_discard_sweeps=args.discard)
    ansatz = make_rbm(n, args.alpha, init_scale=0.01)
    optimizer = sr_optimizer(args.lr, args.diag_shift, mode=args.sr_mode)
    init, step = make_vmc(ansatz, model, sampler, optimizer)
    step = jax.jit(step)
    evaluate = jax.jit(make_energy_evaluator(ansatz, model, sampler))

    state = init(jax.random.PRNGKey(args.seed))
    t0 = time.perf_counter()
    jax.block_until_ready(evaluate(state.params, state.sampler_state, state.key))
    s1, _ = step(state)
    jax.block_until_ready(s1)
    compile_s = time.perf_counter() - t0

    # (a) sampling + local energies (the sampler state is carried, as in a run)
    carry = {"ss": state.sampler_state, "k": 0}

    def sample_eloc() -> None:
        stats, ss, e_loc = evaluate(state.params, carry["ss"], jax.random.PRNGKey(carry["k"]))
        jax.block_until_ready(e_loc)
        carry["ss"] = ss
        carry["k"] += 1

    sample_eloc()
    t_a, all_a = median_time(sample_eloc, args.repeats)

    # (c) optimisation, timing every step; (b) = median of the step times after warm-up
    energies, walls, step_times = [], [], []
    t_run = time.perf_counter()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        state, info = step(state)
        e = float(info.energy)  # device_get blocks
        step_times.append(time.perf_counter() - t0)
        energies.append(e)
        walls.append(time.perf_counter() - t_run)
    t_b = pystats.median(step_times)
    mean, err = final_energy_nqs(evaluate, state, args.eval_batches)
    return CodeResult("nqs", t_a, t_b, all_a, step_times, mean, err, args.steps, energies, walls,
                      compile_s, f"SR mode {args.sr_mode}")


def final_energy_nqs(evaluate: Callable, state: Any, n_batches: int) -> tuple[float, float]:
    ss = state.sampler_state
    es = []
    for b in range(n_batches):
        stats, ss, e_loc = evaluate(state.params, ss, jax.random.fold_in(state.key, 1000 + b))
        es.append(np.asarray(e_loc).real)
    e = np.concatenate(es)
    return float(e.mean()), float(e.std() / np.sqrt(len(e)))


def profile_nqs(w: Workload, args: argparse.Namespace) -> dict[str, float]:
    """Median times (s) of the parts of one nqs step: sampling, E_loc, Jacobian, J J^T, solve."""
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
    kernel = jax.jit(lambda j: j @ j.T)
    solve = jax.jit(lambda j, r: natural_gradient_minsr(j, r, args.diag_shift))

    def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
        out = jax.block_until_ready(fn())
        t, _ = median_time(lambda: jax.block_until_ready(fn()), args.repeats)
        return t, out

    out: dict[str, float] = {}
    out["sampling"], x = timed(lambda: sample(params, sstate, jax.random.PRNGKey(2)))
    weights = jnp.full((x.shape[0],), 1.0 / x.shape[0])
    out["local energies"], _ = timed(lambda: e_loc(params, x))
    out["local energies + Jacobian"], e = timed(lambda: estimate(params, x, weights))
    out["J J^T"], _ = timed(lambda: kernel(e.jacobian))
    out["minSR solve (J J^T, Cholesky, J^T v)"], _ = timed(lambda: solve(e.jacobian, e.residuals))
    out["jacobian shape"] = list(e.jacobian.shape)
    return out


# ------------------------------------------------------------------------------------ NetKet


def run_netket(w: Workload, args: argparse.Namespace) -> CodeResult:
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
                              variational_state=vs, use_ntk=use_ntk,
                              on_the_fly=args.netket_on_the_fly)

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
    sample_eloc()
    t_a, all_a = median_time(sample_eloc, args.repeats)

    # the first step compiles; it is timed separately and not counted in (b)
    t0 = time.perf_counter()
    energies, walls, step_times = [one_step()], [], []
    compile_s += time.perf_counter() - t0
    walls.append(0.0)
    t_run = time.perf_counter()
    for _ in range(args.steps - 1):
        t0 = time.perf_counter()
        energies.append(one_step())
        step_times.append(time.perf_counter() - t0)
        walls.append(time.perf_counter() - t_run)
    t_b = pystats.median(step_times) if step_times else float("nan")
    # the compiled first step counted with the median step time in the wall-time axis
    walls = [t + (t_b if k else 0.0) for k, t in enumerate(walls)]
    es = []
    for _ in range(args.eval_batches):
        vs.reset()
        es.append(np.asarray(_estimator_data(vs.local_estimators(op))).real.ravel())
    e = np.concatenate(es)
    notes = (f"VMC_SR use_ntk={driver.use_ntk} on_the_fly={driver.on_the_fly}, "
             f"{type(op).__name__}")
    return CodeResult("NetKet", t_a, t_b, all_a, step_times, float(e.mean()),
                      float(e.std() / np.sqrt(len(e))), args.steps, energies, walls, compile_s,
                      notes)


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
        f"at end {fmt_load(info['load_average_end'])}; "
        f"jax {info['jax']}, netket {info['netket']}.",
        f"Settings: {args.samples} samples, {args.chains} chains, sweep = n_sites steps, "
        f"{args.discard} discarded sweeps per step, RBM alpha={args.alpha} complex, SR "
        f"{args.sr_mode} diag_shift={args.diag_shift}, lr={args.lr}; "
        f"times are medians of {args.repeats} calls (a) / of the optimisation steps (b), "
        "compilation excluded.",
        "",
        "| workload | code | sampling+E_loc (s) | full step (s) | NetKet/nqs (sampling+E_loc) "
        "| NetKet/nqs (step) | steps | final energy | reference | rel. error | "
        f"time to {args.tol:g} (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rel = "" if r["relative_error"] is None else f"{r['relative_error']:.2e}"
        ttt = "not reached" if r["time_to_tol_s"] is None else f"{r['time_to_tol_s']:.1f}"
        lines.append(
            f"| {r['workload']} | {r['code']} | {r['sample_eloc_s']:.4f} | {r['step_s']:.3f} | "
            f"{r['ratio_sample_eloc']} | {r['ratio_step']} | {r['steps']} | "
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
    p.add_argument("--codes", nargs="+", default=["nqs", "netket"], choices=["nqs", "netket"])
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
    p.add_argument("--netket-on-the-fly", choices=["true", "false", "auto"], default="false",
                   help="NetKet VMC_SR on_the_fly NTK (default false: dense Jacobian as nqs)")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--profile", action="store_true",
                   help="only print the breakdown of one nqs step per workload")
    args = p.parse_args(argv)
    args.steps = args.steps or (10 if args.quick else 100)
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.netket_on_the_fly = {"true": True, "false": False, "auto": None}[args.netket_on_the_fly]

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
        results: dict[str, CodeResult] = {}
        for code in args.codes:
            print(f"[{w.name}] {code} ...", flush=True)
            res = run_nqs(w, args) if code == "nqs" else run_netket(w, args)
            results[res.code] = res
            print(f"[{w.name}] {code}: sampling+E_loc {res.sample_eloc_s:.4f} s, step "
                  f"{res.step_s:.3f} s, E = {res.final_energy:.5f} (load "
                  f"{fmt_load(os.getloadavg())})", flush=True)
        ref = w.exact
        ref_label = "exact" if ref is not None else "best found"
        if ref is None:
            ref = min(r.final_energy for r in results.values())
        for r in results.values():
            k, t = steps_to_tolerance(r.energies, r.wall_times, ref, args.tol)
            other = results.get("nqs")
            ratio_a = ratio_b = ""
            if r.code == "NetKet" and other is not None:
                ratio_a = f"{r.sample_eloc_s / other.sample_eloc_s:.1f}"
                ratio_b = f"{r.step_s / other.step_s:.1f}"
            rows.append({
                "workload": w.description, "code": r.code,
                "sample_eloc_s": r.sample_eloc_s, "step_s": r.step_s,
                "ratio_sample_eloc": ratio_a, "ratio_step": ratio_b, "steps": r.steps,
                "final_energy": r.final_energy, "final_energy_error": r.final_energy_error,
                "reference": f"{ref:.5f} ({ref_label})",
                "relative_error": abs(r.final_energy - ref) / abs(ref),
                "steps_to_tol": k, "time_to_tol_s": t,
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
