"""The DMRG reference of N2 / cc-pVDZ frozen core at R = 2.068 bohr, with HF, MP2, CCSD and
CCSD(T), through the reference cache that ``nqs molecule --reference dmrg`` reads.

    OMP_NUM_THREADS=1 python experiments/choo_2020/results/n2_ccpvdz_fc/dmrg_reference.py 100 200 400
"""

from __future__ import annotations

import json
import sys
import time

import nqs  # noqa: F401  (float64)
from hamiltonians.chem_reference import ReferenceOptions, reference_energies
from hamiltonians.large_reference import check_bond_dims
from hamiltonians.molecule import parse_molecule
from nqs.errors import InputError

try:
    dims = check_bond_dims(sys.argv[1:] or (100, 200, 400))
except InputError as err:
    print(f"dmrg_reference: error: {err}", file=sys.stderr)
    sys.exit(2)
spec = parse_molecule("N 0 0 0; N 0 0 2.068", basis="cc-pvdz", unit="bohr")
t0 = time.time()
refs = reference_energies(spec, frozen_core=True,
                          methods=("hf", "mp2", "ccsd", "ccsd_t", "dmrg"),
                          options=ReferenceOptions(method="dmrg", bond_dims=dims,
                                                   sweeps_per_dim=4),
                          echo=lambda s: print(time.strftime("%H:%M:%S"), s, flush=True))
print(json.dumps(refs, indent=1, default=str), flush=True)
print("wall", time.time() - t0)
