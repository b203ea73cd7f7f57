"""The nqs side of the speed figures the open issues ask of a lent GPU, in one process.

* ``ar`` (issue 13): draws of the autoregressive sampler plus the local energies of the distinct
  draws on N2 / 6-31G with frozen cores (``.gpu_inputs/n2_631g_fc.fcidump``, made by
  ``prepare.py``), MADE (64), state fitted to CISD first, as ``ar_sampling_vs_netket.py`` on the
  CPU: distinct (unique) samples per second and draws per second, median of ``--repeats`` calls
  after a compiling call, at ``--samples`` draws and ``--max-unique`` distinct at most, and at the
  CLI's defaults (1e5 draws, 1024 distinct).
* ``gcnn`` (issue 16): one VMC step (Metropolis exchange, local energies, SR, update) of the GCNN
  of ``gcnn_vs_netket.py`` (Heisenberg, Marshall sign, translations, ``--features`` channels,
  ``--layers`` layers, 512 samples on 32 chains) on the L x L lattices of ``--sizes``, in nqs
  and in NetKet side by side (``gcnn_vs_netket.compare``: matched complex, matched real, and
  each code's defaults; median of ``--repeats`` steps of each in turn after two warm-up steps).
  NetKet travels as wheels (``experiments/ferminet_2020/make_wheels.sh``); where it does not
  import, nqs alone is timed.

Writes ``OUT/bench.json`` (after each figure) and ``OUT/bench.md``; each part stops at
``--time-limit`` seconds (counted from the start), keeping what it has measured. Default part:
``gcnn`` (issue 13, whose figure ``ar`` is, is resolved; ``--parts ar gcnn`` runs both).

    python experiments/gpu/bench.py --out /tmp/gpu/bench --parts ar gcnn
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (float64)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments" / "benchmarks"))

from ar_sampling_vs_netket import nqs_call  # noqa: E402
from gcnn_vs_netket import compare, nqs_step, settings, timed_rounds  # noqa: E402

T0 = time.perf_counter()


def left(args: argparse.Namespace) -> float:
    """Seconds left of ``--time-limit``."""
    return args.time_limit - (time.perf_counter() - T0)


def bench_ar(args: argparse.Namespace, rows: list[dict], save) -> None:
    """Unique samples per second of sampling + local energies on N2 / 6-31G (frozen cores)."""
    from hamiltonians.molecule import read_fcidump, screen_integrals
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.models.ar_pretrain import fit_singles_doubles
    from nqs.models.autoregressive import make_autoregressive

    integrals = screen_integrals(read_fcidump(args.fcidump), 1e-12)
    hamiltonian = MolecularHamiltonian(integrals)
    hilbert = hamiltonian.hilbert
    ansatz = make_autoregressive(hilbert, "made", hidden=tuple(args.hidden))
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), jnp.asarray(hilbert.hartree_fock_state()))
    t0 = time.perf_counter()
    params, fidelity = fit_singles_doubles(ansatz, hamiltonian, params, steps=args.fit_steps)
    t_fit = time.perf_counter() - t0
    print(f"ar: {hilbert.n_sites} spin orbitals; fitted to CISD (fidelity {fidelity:.4f}, "
          f"{t_fit:.1f} s)", flush=True)
    for name, draws, unique in (("matched", args.samples, args.max_unique),
                                ("defaults", 100_000, 1024)):
        if left(args) < 10:
            break
        call = nqs_call(hamiltonian, ansatz, params, draws, unique, args.chunk_rows)
        t = time.perf_counter()
        n_unique, e_mean, n_draws = call()
        first = time.perf_counter() - t
        times, uniques = [], []
        for _ in range(args.repeats):
            if times and left(args) < 2 * times[-1]:
                break
            t = time.perf_counter()
            n_unique, e_mean, n_draws = call()
            times.append(time.perf_counter() - t)
            uniques.append(n_unique)
        if not times:
            break
        s = statistics.median(times)
        u = statistics.median(uniques)
        rows.append({"part": "ar", "setting": name, "draws": n_draws, "unique": u,
                     "max_unique": unique, "s_per_call": s, "first_call_s": first,
                     "unique_per_s": u / s, "draws_per_s": n_draws / s, "mean_e_loc": e_mean,
                     "repeats": len(times), "fit_s": t_fit, "fidelity": fidelity})
        save()
        print(f"ar {name}: {u:.0f} unique of {n_draws:.3g} draws in {s:.4f} s: "
              f"{u / s:.4g} unique/s (first call {first:.1f} s)", flush=True)


def bench_gcnn(args: argparse.Namespace, rows: list[dict], save) -> None:
    """One GCNN VMC step on L x L Heisenberg lattices: nqs and NetKet side by side when NetKet
    imports (carried as wheels), each setting of ``gcnn_vs_netket.settings``; else nqs alone."""
    from hamiltonians.lattice import square
    from hamiltonians.spin import Heisenberg

    try:
        import netket  # noqa: F401
        have_netket = True
    except Exception as exc:  # noqa: BLE001 - any import failure: time nqs alone
        print(f"gcnn: NetKet does not import ({type(exc).__name__}: {exc}); nqs alone",
              flush=True)
        have_netket = False
    opts = argparse.Namespace(chains=32, samples=512, discard=4, features=args.features,
                              layers=args.layers, lr=0.02, diag_shift=0.01, seed=0,
                              repeats=args.repeats)
    for size in args.sizes:
        model = Heisenberg(square(size), marshall_sign=True)
        perms = model.lattice.translations()
        for setting in (settings(size, opts.samples) if have_netket else
                        (("matched complex", True, True, None),)):
            if left(args) < 20:
                return
            t = time.perf_counter()
            if have_netket:
                row = compare(model, perms, "translations", opts, setting)
            else:
                step, n_params = nqs_step(model, perms, True, opts)
                times = timed_rounds({"nqs": step}, args.repeats)
                row = {"setting": setting[0], "nqs_s": statistics.median(times["nqs"]),
                       "nqs_params": n_params, "times": times}
            row.update(part="gcnn", size=size, samples=opts.samples,
                       s_per_step=row["nqs_s"], wall_s=time.perf_counter() - t,
                       setting=f"{size}x{size} translations, {setting[0]}")
            rows.append(row)
            save()
            print(f"gcnn {row['setting']}: nqs {row['nqs_s']:.4f} s/step"
                  + (f", NetKet {row['netket_s']:.4f} s/step, NetKet / nqs {row['ratio']:.2f}"
                     if "ratio" in row else "")
                  + f" ({row['nqs_params']} parameters; {row['wall_s']:.0f} s with compiling)",
                  flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the parts, write ``bench.json`` / ``bench.md`` under ``--out``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", choices=("ar", "gcnn"), default=["gcnn"])
    p.add_argument("--fcidump", type=Path, default=ROOT / ".gpu_inputs" / "n2_631g_fc.fcidump")
    p.add_argument("--hidden", type=int, nargs="+", default=[64])
    p.add_argument("--fit-steps", type=int, default=2000)
    p.add_argument("--samples", type=int, default=4096)
    p.add_argument("--max-unique", type=int, default=4096)
    p.add_argument("--chunk-rows", type=int, default=512)
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 10])
    p.add_argument("--features", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--time-limit", type=float, default=120.0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"device": str(jax.devices()[0]), "jax": jax.__version__,
            "numpy": np.__version__, "time_limit_s": args.time_limit}
    rows: list[dict] = []

    def save() -> None:  # after each figure: a run stopped by timeout keeps what it measured
        (args.out / "bench.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))

    for part in args.parts:
        try:
            {"ar": bench_ar, "gcnn": bench_gcnn}[part](args, rows, save)
        except Exception as exc:  # noqa: BLE001 - keep the other part's figures
            print(f"{part}: failed: {type(exc).__name__}: {exc}", flush=True)
            rows.append({"part": part, "error": f"{type(exc).__name__}: {exc}"})
        save()
    lines = [f"nqs on {meta['device']}, jax {meta['jax']}", "",
             "| part | setting | figure |", "|---|---|---|"]
    for r in rows:
        if "error" in r:
            fig = r["error"]
        elif r["part"] == "ar":
            fig = (f"{r['unique_per_s']:.4g} unique/s ({r['unique']:.0f} unique of "
                   f"{r['draws']:.3g} draws, {r['s_per_call']:.4f} s per call)")
        elif "ratio" in r:
            fig = (f"nqs {r['nqs_s']:.4f} s/step, NetKet {r['netket_s']:.4f} s/step: "
                   f"NetKet / nqs **{r['ratio']:.2f}x** ({r['nqs_params']} parameters)")
        else:
            fig = f"nqs {r['s_per_step']:.4f} s/step ({r['nqs_params']} parameters)"
        lines.append(f"| {r['part']} | {r.get('setting', '')} | {fig} |")
    (args.out / "bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
