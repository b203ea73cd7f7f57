"""One Adam step of the autoregressive start fit, float64 against float32 networks.

The fit (:func:`nqs.models.ar_pretrain.fit_singles_doubles`) evaluates the MADE state on every
determinant it fits, every step; with ``single_precision`` (the default) the network runs in
float32 (:func:`nqs.precision.with_dtype`, float64 master parameters). This times one compiled
step (loss, gradient, Adam update) of each on random determinants of the sector, the two
alternating for ``--rounds`` rounds of ``--calls`` calls, and reports the median wall time per
step of each and their ratio.

    python experiments/benchmarks/start_fit_precision.py
    python experiments/benchmarks/start_fit_precision.py --cases 16:5:8192 14:4:9356

A case ``n_orbitals:n_electrons_per_spin:determinants``; defaults: N2/6-31G frozen core (16
orbitals, 5+5, the 8192 determinants of its fit cap) and NH3/6-31G frozen core (14, 4+4, 9356).
Writes ``results/start_fit_precision.{json,md}`` next to this file.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nqs  # noqa: F401  (float64)
from nqs.hilbert import FermionHilbert
from nqs.io import write_json_atomic
from nqs.models.ar_pretrain import _fit_programs
from nqs.models.autoregressive import make_autoregressive
from nqs.precision import with_dtype

HERE = Path(__file__).resolve().parent


def _case(text: str) -> tuple[int, int, int]:
    n, ne, m = (int(v) for v in text.split(":"))
    if not (0 < ne <= n and m > 0):
        raise argparse.ArgumentTypeError(f"bad case {text!r}: n_orbitals:n_per_spin:determinants")
    return n, ne, m


def _data(n: int, ne: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.zeros((m, 2 * n))
    for i in range(m):
        x[i, rng.choice(n, ne, replace=False)] = 1
        x[i, n + rng.choice(n, ne, replace=False)] = 1
    t = rng.normal(size=m)
    t /= np.linalg.norm(t)
    return jnp.asarray(x), jnp.asarray(t), jnp.where(jnp.asarray(t) < 0, jnp.pi, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", type=_case, default=[(16, 5, 8192), (14, 4, 9356)])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for n, ne, m in args.cases:
        hilbert = FermionHilbert(n, ne, ne)
        ansatz = make_autoregressive(hilbert, hidden=(args.hidden,), phase_hidden=(args.hidden,),
                                     phase="conditional")
        data = _data(n, ne, m)
        params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), data[0][0])
        tx = optax.adam(1e-2)
        updates = {"float64": _fit_programs(ansatz, tx)[1],
                   "float32": _fit_programs(with_dtype(ansatz, "float32"), tx)[1]}
        states = {k: tx.init(params) for k in updates}
        for k, up in updates.items():  # compile
            jax.block_until_ready(up(params, states[k], data))
        times: dict[str, list[float]] = {k: [] for k in updates}
        for _ in range(args.rounds):
            for k, up in updates.items():
                p, s = params, states[k]
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    p, s, loss = up(p, s, data)
                    jax.block_until_ready(loss)
                    times[k].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items()}
        rows.append({"n_orbitals": n, "n_per_spin": ne, "determinants": m,
                     "float64_ms": 1e3 * med["float64"], "float32_ms": 1e3 * med["float32"],
                     "ratio": med["float64"] / med["float32"]})
        print(f"{n} orbitals, {ne}+{ne} electrons, {m} determinants: float64 "
              f"{rows[-1]['float64_ms']:.1f} ms, float32 {rows[-1]['float32_ms']:.1f} ms a step "
              f"({rows[-1]['ratio']:.2f}x)", flush=True)
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "cpus": os.cpu_count(), "load": os.getloadavg(), "jax": jax.__version__,
               "device": str(jax.devices()[0])}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    write_json_atomic(out / "start_fit_precision.json",
                      {"hidden": args.hidden, "rows": rows, "machine": machine})
    lines = [f"# Start fit: one Adam step, MADE {args.hidden} with conditional phase", "",
             f"{machine['device']}, {machine['cpus']} CPUs, load {machine['load'][0]:.2f}, "
             f"jax {machine['jax']}", "",
             "| orbitals | electrons | determinants | float64 ms | float32 ms | ratio |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['n_orbitals']} | {r['n_per_spin']}+{r['n_per_spin']} | {r['determinants']} "
              f"| {r['float64_ms']:.1f} | {r['float32_ms']:.1f} | {r['ratio']:.2f}x |" for r in rows]
    (out / "start_fit_precision.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'start_fit_precision.md'}")


if __name__ == "__main__":
    main()
