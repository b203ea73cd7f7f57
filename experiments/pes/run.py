"""Dissociation curves in STO-3G (H2, LiH, N2): NQS vs FCI, CCSD(T) and HF along the bond length.

    python experiments/pes/run.py            # H2 and LiH, 9 bond lengths each, full budgets
    python experiments/pes/run.py --quick    # 4 bond lengths, few steps: a smoke test
    python experiments/pes/run.py --molecules N2 --sampler autoregressive   # sampled N2 curve

Each point is a harness job (``nqs.bench.fci.Job`` with a ``MoleculeSpec``) solved by exact
summation over all determinants with a backflow determinant (``--sampler exact``, the default),
or by exact autoregressive sampling of the autoregressive ansatz with SR at the harness's
defaults (``--sampler autoregressive``; ``--lr`` then defaults to the harness's). Writes
results/pes.md (table), results/pes.json and results/pes.png (energies; errors against FCI in
mHa on a log scale).
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hamiltonians.molecule import MoleculeSpec  # noqa: E402
from nqs.bench.fci import CHEMICAL_ACCURACY_MHA, Job, Settings, run_benchmark  # noqa: E402
from nqs.io import write_json_atomic  # noqa: E402

HERE = Path(__file__).resolve().parent

#: bond lengths (Angstrom) and the atoms string of each molecule along its axis
CURVES: dict[str, tuple[str, np.ndarray]] = {
    "H2": ("H 0 0 0; H 0 0 {r}", np.array([0.5, 0.6, 0.734, 0.9, 1.1, 1.4, 1.8, 2.2, 2.6])),
    "LiH": ("Li 0 0 0; H 0 0 {r}", np.array([1.0, 1.3, 1.548, 1.8, 2.1, 2.5, 3.0, 3.5, 4.0])),
    "N2": ("N 0 0 0; N 0 0 {r}", np.array([0.9, 1.1, 1.19, 1.3, 1.5, 1.7, 2.0, 2.5])),
}
STEPS = {"H2": 2000, "LiH": 800, "N2": 600}


def jobs_for(name: str, lengths: np.ndarray, basis: str) -> list[Job]:
    """One harness job per bond length (named ``H2@0.734``)."""
    template = CURVES[name][0]
    return [Job(f"{name}@{r:.3f}", MoleculeSpec(template.format(r=f"{r:.4f}"), basis=basis,
                                                  name=f"{name}@{r:.3f}"))
            for r in lengths]


def _fmt(value: float | None, spec: str) -> str:
    """``value`` formatted, or ``-`` where a reference is missing (CCSD not converged)."""
    return "-" if value is None else format(value, spec)


def _values(rows: list[dict], key: str) -> list[float]:
    return [np.nan if r[key] is None else r[key] for r in rows]


def table(rows: list[dict]) -> str:
    head = ("| molecule | R (A) | E(HF) | E(CCSD(T)) | E(FCI) | E(NQS) | NQS-FCI mHa | "
            "CCSD(T)-FCI mHa | time s |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['molecule']} | {r['bond_length']:.3f} | {_fmt(r['e_hf'], '.8f')} | "
                     f"{_fmt(r['e_ccsd_t'], '.8f')} | {r['e_fci']:.8f} | {r['e_nqs']:.8f} | "
                     f"{r['error_mha']:.4f} | {_fmt(r['ccsd_t_error_mha'], '.4f')} | "
                     f"{r['wall_time_s']:.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["molecule"] for r in rows))
    fig, axes = plt.subplots(2, len(names), figsize=(5.5 * len(names), 7), sharex="col",
                             squeeze=False, gridspec_kw={"height_ratios": [3, 2]})
    for k, name in enumerate(names):
        rs = [r for r in rows if r["molecule"] == name]
        x = [r["bond_length"] for r in rs]
        top, bottom = axes[0, k], axes[1, k]
        top.plot(x, _values(rs, "e_hf"), "s--", color="grey", label="HF")
        top.plot(x, _values(rs, "e_ccsd_t"), "^-", color="C1", label="CCSD(T)")
        top.plot(x, [r["e_fci"] for r in rs], "-", color="k", lw=2, label="FCI")
        top.plot(x, [r["e_nqs"] for r in rs], "o", color="C0", mfc="none", ms=8, label="NQS")
        top.set_title(f"{name} / STO-3G")
        top.set_ylabel("energy (Ha)")
        top.legend()
        floor = 1e-6
        bottom.semilogy(x, [max(abs(r["error_mha"]), floor) for r in rs], "o-", color="C0",
                        label="|NQS - FCI|")
        bottom.semilogy(x, np.maximum(np.abs(_values(rs, "ccsd_t_error_mha")), floor), "^-",
                        color="C1", label="|CCSD(T) - FCI|")
        bottom.axhline(CHEMICAL_ACCURACY_MHA, color="k", ls="--", lw=1, label="1.6 mHa")
        bottom.set_xlabel("bond length (A)")
        bottom.set_ylabel("|E - E(FCI)| (mHa)")
        bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--molecules", nargs="+", default=["H2", "LiH"], choices=list(CURVES))
    p.add_argument("--sampler", choices=("exact", "autoregressive"), default="exact")
    p.add_argument("--quick", action="store_true", help="4 bond lengths and 30 steps each")
    p.add_argument("--steps", type=int, default=None, help="override the per-molecule budgets")
    p.add_argument("--hidden", type=int, nargs="+", default=None,
                   help="network widths (default: the harness's, 64 backflow, 256 autoregressive)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 3e-3 exact with Adam; the harness's default "
                   "with the autoregressive sampler)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for name in args.molecules:
        lengths = CURVES[name][1]
        if args.quick:
            lengths = lengths[:: max(len(lengths) // 4, 1)][:4]
        steps = 30 if args.quick else (args.steps or STEPS[name])
        lr = 3e-3 if args.lr is None and args.sampler == "exact" else args.lr
        settings = Settings(sampler=args.sampler, steps=steps,
                            hidden=tuple(args.hidden) if args.hidden else None,
                            learning_rate=lr, seed=args.seed)
        records = run_benchmark(jobs_for(name, lengths, "sto-3g"), settings, None,
                                lambda m: print(m, flush=True))
        for r, length in zip(records, lengths, strict=True):
            rows.append(r | {"molecule": name, "bond_length": float(length)})
    write_json_atomic(args.out / "pes.json", rows)  # before the table: nothing is lost to it
    text = table(rows)
    method = ("exact summation, backflow, Adam" if args.sampler == "exact"
              else "autoregressive sampling, autoregressive ansatz, SR")
    hidden = tuple(args.hidden) if args.hidden else "default"
    note = (f"\n{method}, hidden {hidden}, lr {args.lr or 'default'}, "
            f"{'quick' if args.quick else 'full'} budgets; total {time.perf_counter() - t0:.0f} s "
            f"on {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end).\n")
    print("\n" + text + note)
    (args.out / "pes.md").write_text(text + "\n" + note)
    plot(rows, args.out / "pes.png")
    print(f"wrote {args.out}/pes.md, pes.json, pes.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
