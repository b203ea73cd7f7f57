"""H's root in a molecule's start target truncated at several fit caps (no network).

The selected start target of ``bench-fci`` (three CIPSI rounds, PT2 tolerance 1e-3), its
truncation to the spin families of largest weight at each cap
(:func:`nqs.models.ar_pretrain.truncate_target`), and H's lowest root in each kept space and in
the whole target, in mHa above the given FCI energy: what the start fit could at best reach.

    python experiments/choo_2020/cap_scan.py NH3 --fci -56.28354244 --caps 9362 18724 37449
    python experiments/choo_2020/cap_scan.py N2 --fci -109.10033227 --caps 8192 16384 32768
    python experiments/choo_2020/cap_scan.py "N 0 0 0; N 0 0 2.068" --unit bohr --basis cc-pvdz \
        --fci E_DMRG --caps 5040 10080 20160      # past FCI: --fci takes the DMRG energy

(The selection rounds stop where a pass over the space would pass the start's connection
budget, as in ``bench-fci``: N2 / cc-pVDZ gets one.)
"""

from __future__ import annotations

import argparse
import time

import nqs  # noqa: F401  (float64)
from hamiltonians.molecule import compute_integrals, parse_molecule
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.errors import InputError
from nqs.models.ar_pretrain import _subspace_ground_state, selected_target, truncate_target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("molecule", help="a preset name (NH3, N2, ...) or an atoms string")
    ap.add_argument("--unit", choices=("angstrom", "bohr"), default="angstrom",
                    help="unit of an atoms string")
    ap.add_argument("--basis", default="6-31g")
    ap.add_argument("--all-electron", action="store_true", help="do not freeze the core")
    ap.add_argument("--fci", type=float, required=True,
                    help="the FCI energy (Hartree), or the best reference past FCI")
    ap.add_argument("--caps", type=int, nargs="+", required=True)
    args = ap.parse_args()
    if min(args.caps) < 1:
        ap.exit(2, f"cap_scan: error: caps must be positive, got {min(args.caps)}\n")
    try:
        ints, _ = compute_integrals(parse_molecule(args.molecule, basis=args.basis,
                                                   unit=args.unit),
                                    frozen_core=not args.all_electron)
    except InputError as err:
        ap.exit(2, f"cap_scan: error: {err}\n")
    hamiltonian = MolecularHamiltonian(ints)
    t0 = time.time()
    x, c = selected_target(hamiltonian, rounds=3, pt2_tolerance=1e-3)
    print("target", len(c), f"{time.time() - t0:.0f} s", flush=True)
    for cap in args.caps:
        xs, ts, w = truncate_target(x, c, hamiltonian.hilbert, cap)
        t1 = time.time()
        _, e0, _ = _subspace_ground_state(hamiltonian, xs, 1 << 20)
        print(f"cap {cap}: kept {len(ts)} weight {w:.6f} root {1e3 * (e0 - args.fci):.3f} mHa "
              f"above FCI ({time.time() - t1:.0f} s)", flush=True)
    _, e0, _ = _subspace_ground_state(hamiltonian, x, 1 << 20)
    print(f"whole target {len(c)}: {1e3 * (e0 - args.fci):.3f} mHa", flush=True)


if __name__ == "__main__":
    main()
