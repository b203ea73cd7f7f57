"""Markdown table of the ``run_checks.sh`` runs: ``python table.py OUTDIR`` (reads each
``OUTDIR/*/result.json``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(path: Path) -> str:
    """One table row of a run directory's ``result.json``."""
    r = json.loads((path / "result.json").read_text())
    rel = r.get("relative_error")
    return (f"| {r['model']} {r['lattice']} {r['size']} ({r['n_sites']} sites) | "
            f"{r['ansatz']} alpha {r['alpha']:g} ({r.get('symmetries') or '-'}) | "
            f"{r['energy']:.5f} +- {r['energy_error']:.1e} | {r['exact_energy']:.5f} | "
            f"{rel:.1e} | {r['v_score']:.1e} | {r['steps']} | {r['wall_time_s']:.0f} |"
            if rel is not None else f"| {path.name} | no exact energy |")


def main() -> None:
    """Print the table."""
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/spin_defaults")
    print("| system | ansatz (default) | E | exact (Lanczos) | rel. error | V-score | steps "
          "| wall (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for d in sorted(p.parent for p in out.glob("*/result.json")):
        print(row(d))


if __name__ == "__main__":
    main()
