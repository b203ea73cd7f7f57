"""How good is the autoregressive start, before any VMC step? Exact energies of fitted starts.

For each start configuration (phase network, MADE width, selection size, fit length) the
autoregressive state is fitted to the selected CI target (``nqs.models.ar_pretrain``) exactly as
``nqs molecule`` does, and then evaluated on every determinant of the space: its energy comes
from PySCF's FCI sigma vector (``direct_spin1.contract_2e``), so it has no sampling error. Also
printed: the fidelity with the FCI vector, and the energy of the state with the FCI signs put on
its amplitudes (what the amplitudes alone are worth), which splits the error into amplitudes and
signs.

    python experiments/choo_2020/start_quality.py --molecule H2O --basis 6-31g
    python experiments/choo_2020/start_quality.py --molecule H2O --basis 6-31g --phase conditional

The first fits a fixed list of configurations (one selection round, the fit lengths of their
time); with ``--phase`` (and ``--hidden``, ``--start-steps``) it fits one start with the
current defaults of ``nqs molecule`` (selection rounds by PT2, 12000-step decaying fit) and that
phase network, so that a start can be judged exactly before any VMC run.

Writes ``experiments/choo_2020/results/start_quality_<molecule>_<basis>.{md,json}`` (with
``--phase``: ``..._<phase>_<hidden>_<steps>.{md,json}``). Feasible while the FCI vector fits
in memory (H2O/6-31G: 1.7e6 determinants, about 3 minutes of FCI).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (float64)
from hamiltonians.molecule import compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.bench.fci import START_TARGET_FIDELITY
from nqs.models.ar_pretrain import fit_singles_doubles
from nqs.models.autoregressive import make_autoregressive

HERE = Path(__file__).resolve().parent

#: (label, phase, MADE widths, selection size, fit steps, final learning-rate fraction)
CONFIGS = [
    ("defaults", "mlp", (64,), 1.0, 2000, 1.0),
    ("conditional phase", "conditional", (64,), 1.0, 2000, 1.0),
    ("conditional, MADE 128, grow 3, 5000 steps cosine", "conditional", (128,), 3.0, 5000, 0.01),
]


def fci_vector(integrals):
    """``(E_FCI, c [n_alpha_strings, n_beta_strings], h2_eff)`` from PySCF."""
    from pyscf.fci import direct_spin1

    n, nelec = integrals.n_orbitals, (integrals.n_alpha, integrals.n_beta)
    solver = direct_spin1.FCI()
    solver.conv_tol = 1e-10
    solver.verbose = 0
    e, c = solver.kernel(integrals.h1, integrals.h2, n, nelec, ecore=integrals.e_core)
    return float(e), c, direct_spin1.absorb_h1e(integrals.h1, integrals.h2, n, nelec, 0.5)


def state_vector(ansatz, params, integrals, shape, chunk: int = 1 << 16) -> np.ndarray:
    """psi on every determinant, in PySCF's (alpha string, beta string) order [shape]."""
    from pyscf.fci import cistring

    n = integrals.n_orbitals
    strings = [cistring.gen_strings4orblist(range(n), k)
               for k in (integrals.n_alpha, integrals.n_beta)]
    occ_a, occ_b = (((np.asarray(s)[:, None] >> np.arange(n)) & 1).astype(np.float64)
                    for s in strings)
    log_psi = jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))
    total = shape[0] * shape[1]
    out = np.empty(total, complex)
    for i0 in range(0, total, chunk):
        idx = np.arange(i0, min(i0 + chunk, total))
        ia, ib = np.divmod(idx, shape[1])
        x = np.concatenate([occ_a[ia], occ_b[ib]], axis=1)
        x = np.concatenate([x, np.repeat(x[:1], chunk - len(idx), axis=0)])
        out[idx] = np.asarray(log_psi(params, jnp.asarray(x)))[: len(idx)]
    return np.exp(out).reshape(shape)


def energy(v: np.ndarray, h2_eff, integrals) -> float:
    """<v|H|v> / <v|v> for a complex v (H real symmetric: the real and imaginary parts add)."""
    from pyscf.fci import direct_spin1

    n, nelec = integrals.n_orbitals, (integrals.n_alpha, integrals.n_beta)
    num = den = 0.0
    for part in (v.real, v.imag):
        if np.any(part):
            num += float(np.vdot(part, direct_spin1.contract_2e(h2_eff, part, n, nelec)))
            den += float(np.vdot(part, part))
    return num / den + integrals.e_core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default="H2O")
    parser.add_argument("--basis", default="6-31g")
    parser.add_argument("--phase", choices=("mlp", "conditional"), default=None,
                        help="fit one start at the current defaults of nqs molecule (selection "
                        "rounds by PT2, decaying fit, Settings' start_steps) with this phase "
                        "network, instead of the fixed list of configurations")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64])
    parser.add_argument("--phase-hidden", type=int, nargs="+", default=[64],
                        help="hidden widths of the phase MLP (and of the conditional phase's)")
    parser.add_argument("--start-steps", type=int, default=None)
    args = parser.parse_args()
    configs = CONFIGS
    if args.phase is not None:
        from nqs.bench.fci import Settings

        d = Settings()
        steps = args.start_steps or d.start_steps
        configs = [(f"{args.phase} phase {'x'.join(map(str, args.phase_hidden))}, MADE "
                    f"{'x'.join(map(str, args.hidden))}, {steps} steps, defaults",
                    args.phase, tuple(args.hidden), d.start_grow, steps,
                    d.start_final_lr_fraction, d.start_rounds, d.start_pt2,
                    START_TARGET_FIDELITY)]

    integrals, _ = compute_integrals(from_preset(args.molecule, args.basis))
    hamiltonian = MolecularHamiltonian(integrals)
    t0 = time.perf_counter()
    e_fci, c, h2_eff = fci_vector(integrals)
    t_fci = time.perf_counter() - t0
    print(f"{args.molecule}/{args.basis}: {c.size} determinants, E(FCI) = {e_fci:.8f} "
          f"({t_fci:.0f} s)", flush=True)
    rows = []
    for label, phase, hidden, grow, steps, final_lr, *selection in configs:
        # the fixed list: one round, the fit's own target fidelity (as when it was measured)
        rounds, pt2, target_fidelity = selection or (1, None, 0.9995)
        ansatz = make_autoregressive(hamiltonian.hilbert, "made", hidden=hidden, phase=phase,
                                     phase_hidden=tuple(args.phase_hidden))
        x0 = jnp.asarray(hamiltonian.hilbert.hartree_fock_state())
        params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), x0)
        t0 = time.perf_counter()
        params, fidelity = fit_singles_doubles(ansatz, hamiltonian, params, target="selected",
                                               grow=grow, steps=steps, rounds=rounds,
                                               pt2_tolerance=pt2,
                                               target_fidelity=target_fidelity,
                                               final_lr_fraction=final_lr)
        t_fit = time.perf_counter() - t0
        psi = state_vector(ansatz, params, integrals, c.shape)
        e_start = energy(psi, h2_eff, integrals)
        e_fci_signs = energy(np.abs(psi) * np.sign(c), h2_eff, integrals)
        overlap = abs(np.vdot(c.ravel(), psi.ravel())) ** 2 / np.vdot(psi, psi).real
        row = {"start": label, "phase": phase, "hidden": list(hidden), "grow": grow,
               "steps": steps, "final_lr_fraction": final_lr, "fit_fidelity": fidelity,
               "fit_s": t_fit, "error_mha": 1e3 * (e_start - e_fci),
               "error_fci_signs_mha": 1e3 * (e_fci_signs - e_fci), "fci_fidelity": overlap}
        rows.append(row)
        print(f"  {label}: E - E(FCI) = {row['error_mha']:.2f} mHa (FCI signs "
              f"{row['error_fci_signs_mha']:.2f}), FCI fidelity {overlap:.5f}, fit {t_fit:.0f} s",
              flush=True)

    load = os.getloadavg()[0]
    lines = [f"Autoregressive starts on {args.molecule}/{args.basis} ({c.size} determinants, "
             f"E(FCI) = {e_fci:.8f}), exact energies from PySCF sigma vectors; "
             f"load average {load:.1f} on {os.cpu_count()} CPUs", "",
             "| start | E - E(FCI) (mHa) | with FCI signs (mHa) | fidelity with FCI | fit (s) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['start']} | {r['error_mha']:.2f} | {r['error_fci_signs_mha']:.2f} | "
              f"{r['fci_fidelity']:.5f} | {r['fit_s']:.0f} |" for r in rows]
    name = f"start_quality_{args.molecule}_{args.basis}"
    if args.phase is not None:
        name += (f"_{args.phase}{'x'.join(map(str, args.phase_hidden))}"
                 f"_{'x'.join(map(str, args.hidden))}_{configs[0][4]}")
    stem = HERE / "results" / name.replace("*", "s")
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps(
        {"molecule": args.molecule, "basis": args.basis, "e_fci": e_fci, "fci_s": t_fci,
         "n_determinants": int(c.size), "load_average": load, "rows": rows}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
