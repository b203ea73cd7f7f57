"""Two or more variants of one `nqs spin` command over several seeds, taken in turn, and a
table of their relative errors with the paired differences (variant minus the first).

    python experiments/spin_defaults/seed_study.py --out runs/moves --seeds 0 1 2 3 4 \
        --variant antiparallel="--moves antiparallel" --variant all="--moves all" \
        -- --model j1j2 --lattice square --size 4 --j2 0.5

Runs go to ``OUT/<variant>_s<seed>`` (skipped when their ``result.json`` exists, so an
interrupted study continues); ``OUT/summary.md`` and ``OUT/summary.json`` hold the table.
``--table-only`` reads the runs that exist. The variants of one seed run one after the other,
so a machine's load falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``name="options"`` -> ``(name, [options])``."""
    name, _, options = text.partition("=")
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise argparse.ArgumentTypeError(f"a variant is name=\"options\", got {text!r}")
    return name, shlex.split(options)


def run_one(out: Path, command: list[str]) -> None:
    """One ``nqs spin`` run into ``out`` (its console in ``out/console.txt``)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "console.txt", "w") as console:
        subprocess.run([sys.executable, "-m", "nqs", "spin", *command, "--out", str(out),
                        "--overwrite"], stdout=console, stderr=subprocess.STDOUT, check=True)


def summarize(out: Path, names: list[str], seeds: list[int]) -> dict:
    """Relative errors, time per step, and paired differences against the first variant."""
    runs: dict[str, dict[int, dict]] = {name: {} for name in names}
    for name in names:
        for seed in seeds:
            path = out / f"{name}_s{seed}" / "result.json"
            if path.is_file():
                r = json.loads(path.read_text())
                runs[name][seed] = {"relative_error": r["relative_error"],
                                    "time_per_step_s": r["time_per_step_s"],
                                    "steps": r["steps"]}
    summary: dict = {"runs": runs, "variants": {}}
    first = names[0]
    for name in names:
        errors = [v["relative_error"] for v in runs[name].values()]
        paired = [runs[name][s]["relative_error"] - runs[first][s]["relative_error"]
                  for s in seeds if s in runs[name] and s in runs[first]]
        summary["variants"][name] = {
            "n": len(errors),
            "mean": statistics.fmean(errors) if errors else None,
            "median": statistics.median(errors) if errors else None,
            "paired_mean": statistics.fmean(paired) if paired else None,
            "paired_stderr": (statistics.stdev(paired) / len(paired) ** 0.5
                              if len(paired) > 1 else None),
            "lower_than_first": sum(d < 0 for d in paired),
            "pairs": len(paired)}
    return summary


def markdown(summary: dict, seeds: list[int], command: str) -> str:
    """The table of :func:`summarize`."""
    names = list(summary["variants"])
    lines = [f"`nqs spin {command}`, seeds {' '.join(map(str, seeds))}: relative error "
             "against the exact energy (time a step in parentheses, s)", "",
             "| seed | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for seed in seeds:
        cells = []
        for name in names:
            r = summary["runs"][name].get(seed)
            cells.append("-" if r is None
                         else f"{r['relative_error']:.3g} ({r['time_per_step_s']:.2f})")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3g}"

    for key in ("mean", "median"):
        lines.append(f"| {key} | " + " | ".join(fmt(summary["variants"][n][key]) for n in names)
                     + " |")
    lines.append("| paired difference to the first (mean +- standard error; lower in) | "
                 + " | ".join(f"{fmt(v['paired_mean'])} +- {fmt(v['paired_stderr'])}; "
                              f"{v['lower_than_first']} of {v['pairs']}"
                              for v in summary["variants"].values()) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run (or read) the study and write its table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--variant", type=parse_variant, action="append", required=True,
                   help='name="options" (two or more; the first is the baseline)')
    p.add_argument("--table-only", action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the common options")
    args = p.parse_args()
    common = [c for c in args.command if c != "--"]
    if len(args.variant) < 2:
        p.error("give two or more --variant")
    names = [name for name, _ in args.variant]
    if not args.table_only:
        for seed in args.seeds:
            for name, options in args.variant:
                out = args.out / f"{name}_s{seed}"
                if not (out / "result.json").is_file():
                    print(f"== {name}, seed {seed}", flush=True)
                    try:
                        run_one(out, [*common, *options, "--seed", str(seed)])
                    except subprocess.CalledProcessError as err:
                        sys.exit(f"seed_study.py: the run {name}, seed {seed} failed (exit "
                                 f"{err.returncode}): see {out / 'console.txt'}")
    summary = summarize(args.out, names, args.seeds)
    summary["command"] = shlex.join(common)
    summary["variant_options"] = {name: shlex.join(o) for name, o in args.variant}
    text = markdown(summary, args.seeds, summary["command"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(text)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(text)


if __name__ == "__main__":
    main()
