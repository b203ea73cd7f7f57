"""DMRG (block2) and selected CI against FCI, with their wall times (docs/bench-fci.md).

    python experiments/references/dmrg_vs_fci.py H2O 6-31g all 100 200 400 --sci
    python experiments/references/dmrg_vs_fci.py N2 6-31g fc 100 200 400   # no FCI (1.9e7 dets)

Arguments: molecule preset, basis, ``fc`` (frozen core) or ``all``, DMRG bond dimensions, and
``--sci`` to run the selected CI too. Prints one JSON line per method (energy, uncertainty, wall
time, details) and DMRG's progress; FCI only where the space is within MAX_FCI_DETERMINANTS.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import nqs  # noqa: F401
from hamiltonians.chem_reference import fci_from_integrals
from hamiltonians.large_reference import (
    MAX_FCI_DETERMINANTS,
    dmrg_from_integrals,
    n_determinants,
    sci_from_integrals,
)
from hamiltonians.molecule import compute_integrals, from_preset
from nqs.bench.machine import cpu_model


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    with_sci = "--sci" in argv
    argv = [a for a in argv if a != "--sci"]
    name, basis, core = argv[0], argv[1], argv[2]
    dims = tuple(int(m) for m in argv[3:]) or (100, 200)
    integrals, _ = compute_integrals(from_preset(name, basis=basis), frozen_core=core == "fc")
    ndet = n_determinants(integrals)
    head = {"molecule": name, "basis": basis, "frozen_core": core == "fc",
            "n_orbitals": integrals.n_orbitals, "electrons": integrals.n_electrons,
            "determinants": ndet, "cpu": cpu_model()}
    print(json.dumps(head), flush=True)
    if ndet <= MAX_FCI_DETERMINANTS:
        t0 = time.perf_counter()
        e = fci_from_integrals(integrals)[0]
        print(json.dumps({"method": "fci", "energy": e, "wall_s": time.perf_counter() - t0}),
              flush=True)
    r = dmrg_from_integrals(integrals, dims, sweeps_per_dim=2,
                            echo=lambda line: print(json.dumps({"progress": line.strip()}), flush=True))
    print(json.dumps({"method": "dmrg", "energy": r.energy, "error": r.error, "e_best": r.e_best,
                      "bond_dims": r.bond_dims, "energies": r.energies,
                      "discarded_weights": r.discarded_weights, "wall_s": r.wall_time_s}),
          flush=True)
    if with_sci:
        s = sci_from_integrals(integrals)
        print(json.dumps({"method": "sci", "energy": s.energy, "error": s.error,
                          "energies": s.energies, "n_strings": s.n_strings,
                          "wall_s": s.wall_time_s}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
