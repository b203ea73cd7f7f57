"""The summary table of ``experiments/gpu/run_all.sh``: one row per run and per benchmark.

    python experiments/gpu/summary.py WORK_DIR     # WORK_DIR/runs/<job>/result.json, bench/

Prints system, energy +- error, the reference and the error against it (mHa; for the spin run
E/N and the relative error against the QMC value), V-score where applicable, steps, seconds per
step and whether the time limit stopped it; then the benchmark figures. Writes
``WORK_DIR/summary.json``. A run without ``result.json`` (stopped before its final evaluation)
is reported from its ``log.jsonl``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# docs/references.md: exact non-relativistic energies (Chakravorty et al. 1993; N2 at R = 2.068
# bohr, estimate) and the QMC energy per site of the 10x10 Heisenberg model (Sandvik 1997).
REFERENCES = {
    "B": (-24.65391, "exact (Chakravorty 1993)"),
    "C": (-37.8450, "exact (Chakravorty 1993)"),
    "N": (-54.5892, "exact (Chakravorty 1993)"),
    "O": (-75.0673, "exact (Chakravorty 1993)"),
    "N2": (-109.542, "exact estimate; FermiNet -109.5388"),
}
HEISENBERG_10X10_PER_SITE = -0.671549
TARGETS = {"B": "2 mHa", "C": "2 mHa", "N": "2 mHa", "O": "2 mHa",
           "N2": "5 mHa of FermiNet", "heis10": "E/N <= -0.6710",
           "n2dz": "below CCSD(T), 2 mHa of DMRG (CPU, afterwards)"}


def _last_log(path: Path) -> dict:
    """The last optimization record of ``log.jsonl`` (``{}`` if none)."""
    last: dict = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "step" in rec:
                last = rec
    return last


def run_row(job: str, run: Path) -> dict:
    """One run's figures."""
    row: dict = {"system": job}
    res_path = run / "result.json"
    if res_path.exists():
        res = json.loads(res_path.read_text())
        row.update(energy=res.get("energy"), error=res.get("energy_error"),
                   steps=res.get("steps"), s_per_step=res.get("time_per_step_s"),
                   wall_s=res.get("wall_time_s"), stopped=res.get("stopped_by_time_limit"),
                   v_score=res.get("v_score"), status="done")
        if job == "heis10":
            n = res.get("n_sites") or 100
            row["energy_per_site"] = res["energy"] / n
            row["reference"] = f"E/N {HEISENBERG_10X10_PER_SITE} (QMC)"
            row["rel_error"] = res["energy"] / n / HEISENBERG_10X10_PER_SITE - 1.0
            row["size"] = res.get("size")
            if row["size"] != 10:  # a dry run's small lattice: the 10x10 value is no reference
                row["system"] = f"heis10 ({row['size']}x{row['size']}, dry)"
        elif job == "n2dz":
            row["e_hf"] = res.get("e_hf")
            row["reference"] = "DMRG / CCSD(T) on the CPU"
        elif job in REFERENCES:
            e, src = REFERENCES[job]
            row["reference"] = f"{e} ({src})"
            row["error_mha"] = (res["energy"] - e) * 1e3
    else:
        last = _last_log(run / "log.jsonl")
        row.update(status="no result.json" + (f", last step {last.get('step')}" if last else
                                              ", no log"),
                   energy=last.get("energy"), steps=last.get("step"))
    row["checkpoint"] = (run / "checkpoint.msgpack").exists()
    if row["status"] != "done":
        row["status"] += ", checkpoint" if row["checkpoint"] else ", no checkpoint"
    row["target"] = TARGETS.get(job)
    return row


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    """Print the table of ``WORK_DIR`` and write its ``summary.json``."""
    argv = sys.argv[1:] if argv is None else argv
    work = Path(argv[0] if argv else "/tmp/gpu")
    rows = [run_row(d.name, d) for d in sorted((work / "runs").glob("*")) if d.is_dir()]
    lines = ["| system | energy | +- | reference | error | V-score | steps | s/step | "
             "time-limited | status | target |", "|" + "---|" * 11]
    for r in rows:
        if "rel_error" in r:
            err = f"E/N {r['energy_per_site']:.6f}, rel {r['rel_error']:.2e}"
        elif "error_mha" in r:
            err = f"{r['error_mha']:.2f} mHa"
        elif r.get("e_hf") is not None and r.get("energy") is not None:
            err = f"{(r['energy'] - r['e_hf']) * 1e3:.1f} mHa vs HF"
        else:
            err = "-"
        lines.append(f"| {r['system']} | {_fmt(r.get('energy'), '.6f')} | "
                     f"{_fmt(r.get('error'), '.1e')} | {r.get('reference', '-')} | {err} | "
                     f"{_fmt(r.get('v_score'), '.3g')} | {_fmt(r.get('steps'), 'd')} | "
                     f"{_fmt(r.get('s_per_step'), '.3f')} | {r.get('stopped', '-')} | "
                     f"{r['status']} | {r.get('target') or '-'} |")
    bench = []
    bpath = work / "bench" / "bench.json"
    if bpath.exists():
        bench = json.loads(bpath.read_text())["rows"]
    for b in bench:
        if "error" in b:
            lines.append(f"bench {b['part']}: {b['error']}")
        elif b["part"] == "ar":
            lines.append(f"bench ar {b['setting']} (N2/6-31G fc): {b['unique_per_s']:.4g} unique/s "
                         f"({b['unique']:.0f} unique of {b['draws']:.3g} draws, "
                         f"{b['s_per_call']:.4f} s per call)")
        else:
            vs = (f", NetKet {b['netket_s']:.4f} s/step, NetKet / nqs {b['ratio']:.2f}x"
                  if "ratio" in b else "")
            lines.append(f"bench gcnn {b['setting']}: nqs {b['s_per_step']:.4f} s/step{vs} "
                         f"({b['nqs_params']} parameters)")
    rs = sorted((work / "bench" / "realspace_step").glob("*.md"))
    for md in rs:
        lines.append(f"bench realspace_step ({md.name}):")
        lines += ["  " + x for x in md.read_text().splitlines() if x.startswith("|")]
    if not rs and (work / "bench").exists():
        lines.append("bench realspace_step: no table (see logs/realspace_step.stdout)")
    (work / "summary.json").write_text(json.dumps({"runs": rows, "bench": bench}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
