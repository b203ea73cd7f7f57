"""Effect of screening small two-electron integrals on the energies (docs/molecules.md).

For each molecule and threshold: how many MO integrals (pq|rs) are set to 0, the rigorous bound
2 sum |removed| on the shift of any eigenvalue, and the measured shifts of the HF determinant's
energy and (where it fits) the FCI energy, against the unscreened integrals.

    python experiments/references/screening.py
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np

import nqs  # noqa: F401
from hamiltonians.chem_reference import fci_from_integrals
from hamiltonians.large_reference import n_determinants
from hamiltonians.molecule import compute_integrals, from_preset, screen_integrals, screening_bound

CASES = [("LiH", "6-31g", False), ("H2O", "6-31g", True), ("N2", "cc-pvdz", True)]
THRESHOLDS = (1e-12, 1e-10, 1e-8, 1e-6)


def main() -> None:
    warnings.simplefilter("ignore")
    rows = []
    for name, basis, fc in CASES:
        full, _ = compute_integrals(from_preset(name, basis=basis), frozen_core=fc, eri_threshold=0.0)
        ndet = n_determinants(full)
        e_fci = fci_from_integrals(full)[0] if ndet <= 300_000 else None
        nonzero = int(np.count_nonzero(full.h2))
        for t in THRESHOLDS:
            s = screen_integrals(full, t)
            t0 = time.perf_counter()
            d_fci = None if e_fci is None else fci_from_integrals(s)[0] - e_fci
            row = {"molecule": name, "basis": basis, "frozen_core": fc, "n_orbitals": full.n_orbitals,
                   "determinants": ndet, "threshold": t,
                   "removed": nonzero - int(np.count_nonzero(s.h2)), "nonzero": nonzero,
                   "bound_ha": screening_bound(full, t),
                   "d_hf_ha": s.hf_energy() - full.hf_energy(), "d_fci_ha": d_fci,
                   "fci_s": time.perf_counter() - t0 if d_fci is not None else None}
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
