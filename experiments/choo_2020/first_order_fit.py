"""The first-order fit of a ``--start prior`` state, measured with exact energies.

Loads a run started with ``--start prior`` (its network at zero: ``--prior-fit-steps 0``),
recomputes its selected vector, fits the network to the first-order amplitudes of the ``K``
determinants outside it of largest amplitude (every determinant of the vector in each step)
for ``STEPS`` Adam steps from learning rate ``LR``, and prints the exact energy (PySCF's sigma
vector over every determinant) before and after. Spaces of up to a few 1e6 determinants.

    python experiments/choo_2020/first_order_fit.py RUN [--external K] [--steps N] [--lr LR]

Bad input (no such run, a run without a prior, non-positive numbers) is one line, exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from diagnose import fci_vector
from start_quality import energy, state_vector

import nqs  # noqa: F401  (float64)
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.bench.fci import PRIOR_NAME
from nqs.commands.load import load_run
from nqs.errors import CheckpointError, InputError
from nqs.models.ar_pretrain import first_order_amplitudes, fit_singles_doubles, selected_target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--external", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-2)
    parser.add_argument("--rounds", type=int, default=3, help="the run's --start-rounds")
    args = parser.parse_args()
    try:
        if min(args.external, args.steps, args.rounds) < 1 or not args.lr > 0:
            raise InputError("--external, --steps, --rounds and --lr must be positive")
        if not (Path(args.run) / PRIOR_NAME).is_file():
            raise InputError(f"{args.run} has no {PRIOR_NAME}: not a --start prior run")
        loaded = load_run(args.run)
    except (InputError, CheckpointError) as err:
        print(f"first_order_fit.py: error: {err}", file=sys.stderr)
        return 2
    integrals, ansatz, params = loaded.model, loaded.state.ansatz, loaded.state.params
    hamiltonian = MolecularHamiltonian(integrals)
    e_fci, c_fci, h2_eff = fci_vector(integrals)

    def error_mha(p) -> float:
        return 1e3 * (energy(state_vector(ansatz, p, integrals, c_fci.shape), h2_eff,
                             integrals) - e_fci)

    print(f"the run's state: {error_mha(params):.4f} mHa above FCI", flush=True)
    info: dict = {}
    x, c = selected_target(hamiltonian, rounds=args.rounds, pt2_tolerance=1e-3, info=info)
    x, c = np.asarray(x), np.asarray(c)
    y, a = first_order_amplitudes(hamiltonian, x, c, info["e_var"], args.external)
    xt, tt = np.concatenate([x, y]), np.concatenate([c, a])
    print(f"vector {len(c)} determinants ({1e3 * (info['e_var'] - e_fci):.4f} mHa), "
          f"{len(a)} outside (sum a^2 {np.sum(a**2):.4g})", flush=True)
    t0 = time.perf_counter()
    fitted, fidelity = fit_singles_doubles(
        ansatz, hamiltonian, params, target=(xt, tt / np.linalg.norm(tt)), steps=args.steps,
        learning_rate=args.lr, final_lr_fraction=0.01, target_fidelity=2.0, max_fit=len(tt))
    print(f"fit: {args.steps} steps, {time.perf_counter() - t0:.1f} s, fidelity {fidelity:.6f}")
    print(f"after the fit: {error_mha(fitted):.4f} mHa above FCI")
    return 0


if __name__ == "__main__":
    sys.exit(main())
