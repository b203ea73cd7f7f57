"""Integrals for the GPU script (``experiments/gpu/run_all.sh``), written on a machine with PySCF.

The lent GPU machine has no PySCF solvers: its molecular runs read FCIDUMP files made here, in
``.gpu_inputs/`` (git-ignored; ``run``'s ``carry`` names it):

* ``n2_ccpvdz_fc.fcidump``: N2 / cc-pVDZ, frozen 1s cores (52 spin orbitals, 4.3e9
  determinants), issue 13's run past FCI;
* ``n2_631g_fc.fcidump``: N2 / 6-31G, frozen cores (32 spin orbitals, 1.9e7 determinants),
  issue 13's sampling speed (unique samples per second with local energies).

Both at the project's N2 preset (N-N 1.19 Angstrom, as ``nqs molecule --molecule N2`` and its
CPU references) unless ``--bond`` says otherwise; the Hartree-Fock energies and sizes are in
``.gpu_inputs/inputs.json``. Run from the repository root::

    python experiments/gpu/prepare.py            # about a minute on a 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nqs  # noqa: F401  (float64)
from hamiltonians.large_reference import n_determinants
from hamiltonians.molecule import MoleculeSpec, compute_integrals, write_fcidump

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    """Write the FCIDUMP files and ``inputs.json``; print their sizes."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bond", type=float, default=1.19, help="N-N distance, Angstrom (default 1.19)")
    p.add_argument("--out", type=Path, default=ROOT / ".gpu_inputs")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    info = {}
    for name, basis in (("n2_ccpvdz_fc", "cc-pvdz"), ("n2_631g_fc", "6-31g")):
        spec = MoleculeSpec(atoms=f"N 0 0 0; N 0 0 {args.bond}", basis=basis)
        integrals, _ = compute_integrals(spec, frozen_core=True)
        path = args.out / f"{name}.fcidump"
        write_fcidump(path, integrals)
        info[name] = {"atoms": spec.atoms, "basis": basis, "frozen_core": True,
                      "n_spin_orbitals": 2 * integrals.n_orbitals,
                      "n_determinants": n_determinants(integrals),
                      "e_hf": integrals.hf_energy(), "bytes": path.stat().st_size}
        print(f"{path}: {info[name]['n_spin_orbitals']} spin orbitals, "
              f"{info[name]['n_determinants']:.3g} determinants, E(HF) = "
              f"{info[name]['e_hf']:.8f}, {info[name]['bytes'] / 1e6:.1f} MB", flush=True)
    (args.out / "inputs.json").write_text(json.dumps(info, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
