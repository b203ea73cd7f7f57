"""What the Gauss-Newton refinement adds to the autoregressive start: exact energies before/after.

The selected-CI target of ``nqs molecule`` (its defaults: three rounds at most, PT2 1e-3) is
fitted by Adam (``--adam`` steps, learning rate decaying 1e-2 -> 1e-4) and then refined by
``--rounds`` rounds of ``--refine`` Gauss-Newton steps (``nqs.models.ar_pretrain.refine_fit``);
after each stage the state is evaluated on every determinant (energy from PySCF sigma vectors,
so no sampling error), with the FCI signs put on its amplitudes beside it (the amplitude error;
the rest is the sign error).

    python experiments/choo_2020/refine_start.py --molecule C2 --adam 12000 --rounds 2
    python experiments/choo_2020/refine_start.py --molecule H2O --basis 6-31g \
        --adam 2000 --refine 40

Writes ``experiments/choo_2020/results/refine_start_<molecule>_<basis>_<adam>.md``. Feasible
while the FCI vector fits in memory (H2O/6-31G: 1.7e6 determinants, about a minute of FCI).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from diagnose import fci_vector, target_on_fci_grid
from start_quality import energy, state_vector

import nqs  # noqa: F401  (float64)
from hamiltonians.molecule import compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.models import ar_pretrain
from nqs.models.autoregressive import make_autoregressive

HERE = Path(__file__).resolve().parent


def describe(v: np.ndarray, c: np.ndarray, e_fci: float, h2_eff, integrals) -> tuple:
    """``(E - E_FCI, the same with the FCI signs, fidelity with FCI)``, energies in mHa."""
    e = energy(v, h2_eff, integrals)
    e_signs = energy(np.abs(v) * np.sign(c), h2_eff, integrals)
    fid = abs(np.vdot(c.ravel(), v.ravel())) ** 2 / np.vdot(v, v).real
    return 1e3 * (e - e_fci), 1e3 * (e_signs - e_fci), float(fid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default="C2")
    parser.add_argument("--basis", default="sto-3g")
    parser.add_argument("--adam", type=int, default=12000, help="Adam steps of the fit")
    parser.add_argument("--refine", type=int, default=20, help="Gauss-Newton steps a round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of refinement")
    parser.add_argument("--phase", choices=("mlp", "conditional"), default=None,
                        help="phase network (default: that of nqs molecule's --phase auto)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    integrals, _ = compute_integrals(from_preset(args.molecule, args.basis))
    hamiltonian = MolecularHamiltonian(integrals)
    e_fci, c, h2_eff = fci_vector(integrals)
    phase = args.phase or ("conditional" if c.size > 100_000 else "mlp")
    t0 = time.perf_counter()
    x, t = ar_pretrain.selected_target(hamiltonian, rounds=3, pt2_tolerance=1e-3)
    x, t = np.asarray(x), np.asarray(t)
    rows = [("target", len(t), f"{time.perf_counter() - t0:.0f}",
             describe(target_on_fci_grid(x, t, integrals), c, e_fci, h2_eff, integrals), None)]
    print(f"{args.molecule}/{args.basis}: {c.size} determinants, target {len(t)}, "
          f"phase {phase}", flush=True)

    ansatz = make_autoregressive(hamiltonian.hilbert, "made", phase=phase)
    x0 = jnp.asarray(hamiltonian.hilbert.hartree_fock_state())
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(args.seed), x0)
    t0 = time.perf_counter()
    params, fidelity = ar_pretrain.fit_singles_doubles(
        ansatz, hamiltonian, params, target=(x, t), steps=args.adam, final_lr_fraction=0.01,
        target_fidelity=0.99995)
    v = state_vector(ansatz, params, integrals, c.shape)
    rows.append((f"Adam {args.adam}", len(t), f"{time.perf_counter() - t0:.0f}",
                 describe(v, c, e_fci, h2_eff, integrals), fidelity))
    print(rows[-1], flush=True)
    for k in range(args.rounds):
        info: dict = {}
        params, fidelity = ar_pretrain.refine_fit(ansatz, params, x, t, steps=args.refine,
                                                  info=info)
        v = state_vector(ansatz, params, integrals, c.shape)
        rows.append((f"+ {(k + 1) * args.refine} Gauss-Newton", len(t), f"{info['refine_s']:.0f}",
                     describe(v, c, e_fci, h2_eff, integrals), fidelity))
        print(rows[-1], flush=True)

    lines = [f"{args.molecule} / {args.basis} ({c.size} determinants), phase {phase}, MADE 64, "
             f"seed {args.seed}:", "",
             "| stage | target det. | s | E - E(FCI) mHa | with FCI signs | fidelity with FCI "
             "| fidelity with target |", "|---|---|---|---|---|---|---|"]
    for name, m, secs, (e, e_s, fid), fid_t in rows:
        ft = "1" if fid_t is None else f"{fid_t:.6f}"
        lines.append(f"| {name} | {m} | {secs} | {e:.3f} | {e_s:.3f} | {fid:.6f} | {ft} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = HERE / "results" / f"refine_start_{args.molecule}_{args.basis}_{args.adam}.md"
    out.write_text(text)


if __name__ == "__main__":
    main()
