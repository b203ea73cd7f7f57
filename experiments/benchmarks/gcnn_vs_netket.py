"""The same GCNN VMC step in nqs and in NetKet, side by side on one machine, in one run.

Workload: Heisenberg model (S = sigma/2, Marshall sign, S^z = 0 sector) on the periodic L x L
square lattice; a GCNN over the lattice translations (``--symmetries translations``, default)
or the space group, ``--layers`` layers of ``--features`` channels; exchange moves on the
lattice bonds with the same chains, sweep size (n_sites moves per kept sample), samples and
discarded sweeps; SR with the same learning rate and diagonal shift. nqs: ``make_vmc`` with
``sr_optimizer`` (dense SR when parameters are fewer than samples, else minSR); NetKet:
``VMC_SR`` (its default NTK / SR switch).

Three settings (NetKet's GCNN always in its default ``mode="auto"``):

* ``matched complex``: both networks with complex parameters (NetKet ``param_dtype=complex``);
* ``matched real``: both with real parameters (nqs ``--real``; NetKet's default), a positive
  wavefunction, exact for this model with the Marshall sign up to the network's expressivity;
* ``defaults``: each code's default GCNN for this model (nqs: what ``nqs spin --ansatz gcnn``
  resolves, real parameters since the model is sign-free with the Marshall sign, and on a CPU
  64 samples evaluated at a time, exchanges of antiparallel spins only, the network in
  float32 (sums and SR in float64); NetKet: real
  parameters, no chunking, exchanges on all bonds). The matched settings evaluate all samples
  at once in both codes, both with exchanges on all bonds.

The codes are called in turn (one timed step of each, then the next round), so a change of
machine load affects both alike. Compilation is excluded (one warm-up step each). Reported: the
median wall time of one VMC step (sampling, local energies, Jacobian, SR, update) and the ratio
NetKet / nqs (above 1: nqs faster), with the load average.

    python experiments/benchmarks/gcnn_vs_netket.py                    # 4x4, translations
    python experiments/benchmarks/gcnn_vs_netket.py --symmetries space-group --repeats 3

Writes ``experiments/benchmarks/results/gcnn_vs_netket.{md,json}`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics as pystats
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64)
from hamiltonians.lattice import square
from hamiltonians.spin import Heisenberg
from nqs.ansatz import n_parameters
from nqs.bench.machine import cpu_model
from nqs.models.gcnn import make_gcnn
from nqs.optim import sr_optimizer
from nqs.precision import with_dtype
from nqs.problems import exchange_antiparallel
from nqs.sampling.metropolis import MetropolisSampler
from nqs.sampling.rules import AntiparallelExchangeRule, ExchangeRule
from nqs.vmc import make_vmc


def nqs_step(model: Heisenberg, perms: np.ndarray, complex_params: bool,
             args: argparse.Namespace, chunk_size: int | None = None,
             default_moves: bool = False, dtype: str = "float64"):
    """A jitted nqs VMC step and its state: ``(step_fn() -> energy, n_params)``; ``chunk_size``
    samples evaluated at a time (None: all at once). Exchange moves on all bonds (NetKet's
    rule), or with ``default_moves`` the moves ``nqs spin`` takes for this ansatz
    (:func:`nqs.problems.exchange_antiparallel`: antiparallel bonds only for the GCNN);
    ``dtype``: the network's precision (:func:`nqs.precision.with_dtype`)."""
    n = model.hilbert.n_sites
    ansatz = with_dtype(make_gcnn(perms, args.features, layers=args.layers,
                                  param_dtype=jnp.complex128 if complex_params else jnp.float64),
                        dtype)
    bonds = np.asarray(model.lattice.bonds)
    rule = (AntiparallelExchangeRule(bonds) if default_moves and exchange_antiparallel(ansatz)
            else ExchangeRule(bonds))
    sampler = MetropolisSampler(model.hilbert, rule, n_chains=args.chains,
                                n_samples=args.samples, sweep_size=n,
                                n_discard_sweeps=args.discard)
    init, step = make_vmc(ansatz, model, sampler, sr_optimizer(args.lr, args.diag_shift),
                          chunk_size=chunk_size)
    step = jax.jit(step)
    box = {"state": init(jax.random.PRNGKey(args.seed))}

    def one() -> float:
        box["state"], info = step(box["state"])
        return float(info.energy)

    return one, n_parameters(box["state"].params)


def netket_step(model: Heisenberg, symmetries: str, complex_params: bool,
                args: argparse.Namespace):
    """One NetKet ``VMC_SR`` step with its GCNN: ``(step_fn() -> energy, n_params)``."""
    import netket as nk
    import optax

    n = model.hilbert.n_sites
    op = model.to_netket().to_jax_operator()
    graph = nk.graph.Square(model.lattice.extent[0], pbc=True)
    group = graph.translation_group() if symmetries == "translations" else graph.space_group()
    sampler = nk.sampler.MetropolisExchange(op.hilbert, graph=graph, n_chains=args.chains,
                                            sweep_size=n)
    kwargs: dict[str, Any] = {"param_dtype": complex} if complex_params else {}
    net = nk.models.GCNN(symmetries=group, layers=args.layers,
                         features=(args.features,) * args.layers, **kwargs)
    vs = nk.vqs.MCState(sampler, net, n_samples=args.samples, n_discard_per_chain=args.discard,
                        seed=args.seed, sampler_seed=args.seed + 1)
    driver = nk.driver.VMC_SR(op, optax.sgd(args.lr), diag_shift=args.diag_shift,
                              variational_state=vs)

    def one() -> float:
        driver.reset_step()
        loss, dp = driver.compute_loss_and_update()
        driver.update_parameters(dp)
        driver._step_count += 1
        jax.block_until_ready(driver.state.parameters)
        return float(np.real(loss.mean))

    n_params = sum(2 * x.size if np.iscomplexobj(x) else x.size
                   for x in jax.tree_util.tree_leaves(vs.parameters))
    return one, n_params


def timed_rounds(fns: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    """Warm-up call of each, then ``repeats`` rounds of one timed call of each in turn."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def nqs_defaults(size: int, samples: int) -> tuple[bool, int | None, str]:
    """``(real, chunk_size, dtype)`` that ``nqs spin --model heisenberg --lattice square --ansatz gcnn``
    resolves to (the CLI's own rules, not a copy of them)."""
    from nqs.commands import spin

    parser = argparse.ArgumentParser()
    spin.register(parser.add_subparsers())
    cli = parser.parse_args(["spin", "--model", "heisenberg", "--lattice", "square", "--size",
                             str(size), "--ansatz", "gcnn", "--samples", str(samples)])
    cli = spin.resolve_defaults(cli)
    chunk = spin.resolve_chunk_size(cli)
    return bool(cli.real), (chunk if isinstance(chunk, int) else None), cli.dtype


def settings(size: int, samples: int
             ) -> tuple[tuple[str, bool, bool, int | None, str], ...]:
    """The compared settings: ``(name, nqs complex, NetKet complex, nqs chunk size, nqs
    network dtype)``."""
    default_real, default_chunk, default_dtype = nqs_defaults(size, samples)
    return (("matched complex", True, True, None, "float64"),
            ("matched real", False, False, None, "float64"),
            ("defaults", not default_real, False, default_chunk, default_dtype))


def compare(model: Heisenberg, perms: np.ndarray, symmetries: str, args: argparse.Namespace,
            setting: tuple[str, bool, bool, int | None, str]) -> dict:
    """Both codes' step at one of :func:`settings`, timed in turn: one result row."""
    name, our_complex, nk_complex, chunk, dtype = setting
    ours, ours_p = nqs_step(model, perms, our_complex, args, chunk,
                            default_moves=name == "defaults", dtype=dtype)
    theirs, theirs_p = netket_step(model, symmetries, nk_complex, args)
    times = timed_rounds({"nqs": ours, "netket": theirs}, args.repeats)
    t_ours, t_theirs = pystats.median(times["nqs"]), pystats.median(times["netket"])
    return {"setting": name, "nqs_s": t_ours, "netket_s": t_theirs,
            "ratio": t_theirs / t_ours, "nqs_params": ours_p, "netket_params": theirs_p,
            "netket_param_dtype": "complex128" if nk_complex else "float64",
            "nqs_param_dtype": "complex128" if our_complex else "float64",
            "nqs_chunk_size": chunk, "nqs_network_dtype": dtype, "times": times,
            "load_average": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4)
    p.add_argument("--symmetries", choices=("translations", "space-group"),
                   default="translations")
    p.add_argument("--features", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--chains", type=int, default=32)
    p.add_argument("--discard", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--diag-shift", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)

    import netket as nk

    model = Heisenberg(square(args.size), marshall_sign=True)
    lat = model.lattice
    perms = lat.translations() if args.symmetries == "translations" else lat.space_group()
    load0 = os.getloadavg()[0]
    rows = [compare(model, perms, args.symmetries, args, setting)
            for setting in settings(args.size, args.samples)]
    head = (f"Heisenberg {args.size}x{args.size} (Marshall, S^z=0), GCNN over "
            f"{args.symmetries} ({len(perms)} elements), {args.layers} layers x "
            f"{args.features} features, {args.samples} samples, {args.chains} chains, "
            f"{args.discard} discarded sweeps, SR lr {args.lr} shift {args.diag_shift}; "
            f"{cpu_model()}, {os.cpu_count()} CPUs, load average {load0:.1f} at start; "
            f"jax {jax.__version__}, netket {nk.__version__}; median of {args.repeats} steps")
    lines = [head, "", "| setting | nqs s/step | NetKet s/step | NetKet / nqs | parameters "
             "(real) nqs / NetKet | param dtype nqs / NetKet | load after |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['nqs_s']:.3f} | {r['netket_s']:.3f} | "
                     f"{r['ratio']:.2f} | {r['nqs_params']} / {r['netket_params']} | "
                     f"{r['nqs_param_dtype']}"
                     + (" (network float32)" if r["nqs_network_dtype"] == "float32" else "")
                     + f" / {r['netket_param_dtype']} | "
                     f"{r['load_average']:.1f} |")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "gcnn_vs_netket"
    stem.with_suffix(".md").write_text(text + "\n")
    stem.with_suffix(".json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
         "command": " ".join(sys.argv)}, indent=1))
    print(f"wrote {stem}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
