"""How well does the start fit carry the target's signs? Fidelity with and without the phases.

Fits the autoregressive state to the selected start target (``nqs.models.ar_pretrain``, as
``nqs molecule`` does: rounds by PT2, decaying learning rate) with the t^2-weighted phase
error at the given weights (``PHASE_WEIGHT``; 0: the plain mean alone) and prints, for each, the
fidelity with the target ``|<t|psi>|^2`` and the same with the phases dropped
``(sum |t| |psi|)^2``: the gap between the two is what the phases lose.

    python experiments/choo_2020/phase_fit.py --molecule H2O --basis 6-31g --weights 0 1 10 --steps 2500

Prints one line per weight and writes nothing.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (float64)
from hamiltonians.molecule import compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.models import ar_pretrain
from nqs.models.autoregressive import make_autoregressive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default="H2O")
    parser.add_argument("--basis", default="6-31g")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 10.0])
    parser.add_argument("--phase", default="mlp", choices=("mlp", "conditional"))
    parser.add_argument("--steps", type=int, default=2500)
    args = parser.parse_args()

    integrals, _ = compute_integrals(from_preset(args.molecule, args.basis))
    hamiltonian = MolecularHamiltonian(integrals)
    info: dict = {}
    x, t = ar_pretrain.selected_target(hamiltonian, rounds=3, pt2_tolerance=1e-3, info=info)
    print(f"{args.molecule}/{args.basis}: target {len(t)} determinants, {info['rounds']} rounds, "
          f"E_var {info['e_var']:.8f}", flush=True)
    ansatz = make_autoregressive(hamiltonian.hilbert, "made", phase=args.phase)
    x0 = jnp.asarray(hamiltonian.hilbert.hartree_fock_state())
    log_psi = jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))
    for weight in args.weights:
        ar_pretrain.PHASE_WEIGHT = weight
        params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), x0)
        t0 = time.perf_counter()
        params, fidelity = ar_pretrain.fit_singles_doubles(
            ansatz, hamiltonian, params, target=(x, t), steps=args.steps,
            final_lr_fraction=0.01, target_fidelity=0.99995)
        amplitudes = np.exp(np.real(np.asarray(log_psi(params, jnp.asarray(x)))))
        print(f"  phase weight {weight:g} ({args.phase}): fidelity {fidelity:.5f}, amplitudes "
              f"alone {np.sum(np.abs(t) * amplitudes) ** 2:.5f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
