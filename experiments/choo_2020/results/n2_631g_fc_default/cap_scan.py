"""H's root in the start target of N2/6-31G (frozen core) truncated at 1x, 2x, 4x the first fit cap."""
import time

import nqs  # noqa: F401  (float64)
from hamiltonians.molecule import compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.models.ar_pretrain import _subspace_ground_state, selected_target, truncate_target

fci = -109.10033227
spec = from_preset("N2", basis="6-31g")
ints, mf = compute_integrals(spec, frozen_core=True)
H = MolecularHamiltonian(ints)
t0 = time.time()
x, c = selected_target(H, rounds=3, pt2_tolerance=1e-3)
print("target", len(c), f"{time.time()-t0:.0f} s", flush=True)
for cap in (8192, 16384, 32768):
    xs, ts, w = truncate_target(x, c, H.hilbert, cap)
    t1 = time.time()
    _, e0, _ = _subspace_ground_state(H, xs, 1 << 20)
    print(f"cap {cap}: kept {len(ts)} weight {w:.6f} root {1e3 * (e0 - fci):.3f} mHa above FCI "
          f"({time.time() - t1:.0f} s)", flush=True)
_, e0, _ = _subspace_ground_state(H, x, 1 << 20)
print(f"whole target {len(c)}: {1e3*(e0-fci):.3f} mHa", flush=True)
