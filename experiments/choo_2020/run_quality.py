"""Exact energies of trained molecule runs: where the error of a state sits (amplitudes or signs).

Each run (a directory of ``nqs molecule``) is loaded in its own orbitals (its ``integrals.npz``)
and evaluated on every determinant: E - E(FCI), the same with the FCI signs put on its
amplitudes (what is left is the amplitude error; the rest is the sign error), the fidelity with
FCI and the weight of the determinants whose sign differs from FCI's. No sampling error.

    python experiments/choo_2020/run_quality.py RUN [RUN ...]

Feasible while the FCI vector fits in memory (H2O/6-31G: 1.7e6 determinants, about a minute).
"""

from __future__ import annotations

import argparse

import numpy as np
from diagnose import fci_vector
from refine_start import describe
from start_quality import state_vector

import nqs  # noqa: F401  (float64)
from nqs.commands.load import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    cache: dict = {}
    print("| run | step | E - E(FCI) mHa | with FCI signs | fidelity | wrong-sign weight |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        loaded = load_run(run)
        integrals = loaded.model
        key = (integrals.h1.tobytes(), integrals.h2.tobytes())
        if key not in cache:
            cache = {key: fci_vector(integrals)}
        e_fci, c, h2_eff = cache[key]
        v = state_vector(loaded.state.ansatz, loaded.state.params, integrals, c.shape)
        e, e_signs, fid = describe(v, c, e_fci, h2_eff, integrals)  # mHa, mHa, fidelity
        p = np.abs(v) ** 2 / np.sum(np.abs(v) ** 2)
        overlap = np.vdot(c.ravel(), v.ravel())
        # the global phase of v aligned to FCI's before the signs are compared
        aligned = (v * np.conj(overlap) / abs(overlap)).real
        wrong = float(np.sum(p[np.sign(aligned) != np.sign(c)]))
        print(f"| {run} | {loaded.step} | {e:.3f} | {e_signs:.3f} "
              f"| {fid:.6f} | {wrong:.2e} |", flush=True)


if __name__ == "__main__":
    main()
