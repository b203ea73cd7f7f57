"""Where does a sampled molecule's error sit? Exact diagnosis on an enumerable space.

For one molecule (FCI vector in memory, so up to about 1e6 determinants):

* ``--targets``: the selected start target (``nqs.models.ar_pretrain.selected_target``) at the
  given settings: its size, variational energy, Epstein-Nesbet PT2 estimate of what it misses
  and fidelity with FCI;
* ``--fit``: the autoregressive start fitted to it as ``nqs molecule`` does, evaluated on every
  determinant (energy from PySCF sigma vectors, so no sampling error), and the same amplitudes
  with the FCI signs (amplitude error) -- the rest is the sign error;
* ``--run DIR``: the same exact evaluation of the final state of a finished ``nqs molecule``
  run (its checkpoint). Each line gives the state's ``<S^2>`` too.

    python experiments/choo_2020/diagnose.py --molecule C2 --targets --fit
    python experiments/choo_2020/diagnose.py --molecule C2 --run runs/c2

Prints one line per item and writes nothing.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from start_quality import energy, state_vector

import nqs  # noqa: F401  (float64)
from hamiltonians.molecule import compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian


def fci_vector(integrals):
    """``(E_FCI, c [n_alpha_strings, n_beta_strings], h2_eff)``: the lowest singlet (PySCF
    ``direct_spin0``; checked against :func:`hamiltonians.chem_reference.fci_from_integrals`,
    since a Davidson run from the diagonal guess can land on another symmetry's root)."""
    from pyscf.fci import direct_spin0, direct_spin1

    from hamiltonians.chem_reference import fci_from_integrals

    n, nelec = integrals.n_orbitals, (integrals.n_alpha, integrals.n_beta)
    solver = direct_spin0.FCI()
    solver.conv_tol, solver.verbose, solver.max_cycle = 1e-10, 0, 300
    e, c = solver.kernel(integrals.h1, integrals.h2, n, nelec, ecore=integrals.e_core)
    e_ref, _ = fci_from_integrals(integrals)
    if abs(e - e_ref) > 1e-7:
        raise SystemExit(f"FCI vector at {e}, reference {e_ref}")
    return float(e), c, direct_spin1.absorb_h1e(integrals.h1, integrals.h2, n, nelec, 0.5)


def target_on_fci_grid(x: np.ndarray, t: np.ndarray, integrals) -> np.ndarray:
    """The target ``t`` [m] on configurations ``x`` [m, 2n] as a PySCF CI array."""
    from pyscf.fci import cistring

    n = integrals.n_orbitals
    bits = 1 << np.arange(n)
    a = (x[:, :n].astype(np.int64) * bits).sum(1)
    b = (x[:, n:].astype(np.int64) * bits).sum(1)
    ia = cistring.strs2addr(n, integrals.n_alpha, a)
    ib = cistring.strs2addr(n, integrals.n_beta, b)
    out = np.zeros((cistring.num_strings(n, integrals.n_alpha),
                    cistring.num_strings(n, integrals.n_beta)))
    # PySCF's determinant sign convention (alpha string then beta string, orbitals ascending)
    # is the one of hamiltonians.second_quantized (alpha spin orbitals first): the same vector
    out[ia, ib] = t
    return out


def describe(label: str, v: np.ndarray, c: np.ndarray, e_fci: float, h2_eff, integrals) -> None:
    e = energy(v, h2_eff, integrals)
    e_signs = energy(np.abs(v) * np.sign(c), h2_eff, integrals)
    fid = abs(np.vdot(c.ravel(), v.ravel())) ** 2 / np.vdot(v, v).real
    print(f"  {label}: E - E(FCI) = {1e3 * (e - e_fci):.3f} mHa, with FCI signs "
          f"{1e3 * (e_signs - e_fci):.3f} mHa, fidelity with FCI {fid:.6f}, "
          f"<S^2> {spin_square(v, integrals):.5f}", flush=True)


def spin_square(v: np.ndarray, integrals) -> float:
    """<v|S^2|v> / <v|v> of a complex v [alpha strings, beta strings] (PySCF's spin_square0 of
    the real and imaginary parts, S^2 being real)."""
    from pyscf.fci.spin_op import spin_square0

    nelec = (integrals.n_alpha, integrals.n_beta)
    num = 0.0
    for part in (v.real, v.imag):
        norm2 = float(np.vdot(part, part))
        if norm2 > 0:
            num += norm2 * spin_square0(part / np.sqrt(norm2), integrals.n_orbitals, nelec)[0]
    return num / float(np.vdot(v, v).real)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default="C2")
    parser.add_argument("--basis", default="sto-3g")
    parser.add_argument("--targets", action="store_true")
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--grow", type=float, nargs="+", default=[1.0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pt2-tolerance", type=float, default=None)
    parser.add_argument("--start-steps", type=int, default=2000)
    parser.add_argument("--final-lr-fraction", type=float, default=1.0)
    parser.add_argument("--target-fidelity", type=float, default=0.9995)
    parser.add_argument("--run", nargs="*", default=[])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from nqs.models import ar_pretrain

    integrals, _ = compute_integrals(from_preset(args.molecule, args.basis))
    hamiltonian = MolecularHamiltonian(integrals)
    e_fci, c, h2_eff = fci_vector(integrals)
    print(f"{args.molecule}/{args.basis}: {c.size} determinants, E(FCI) = {e_fci:.8f}",
          flush=True)
    if args.targets or args.fit:
        for grow in args.grow:
            t0 = time.perf_counter()
            info: dict = {}
            x, t = ar_pretrain.selected_target(hamiltonian, grow=grow, rounds=args.rounds,
                                               pt2_tolerance=args.pt2_tolerance, info=info)
            dt = time.perf_counter() - t0
            v = target_on_fci_grid(np.asarray(x), np.asarray(t), integrals)
            pt2 = ", ".join(f"{1e3 * e:.2f}" for e in info["e_pt2"])
            print(f"target grow {grow}: {len(t)} determinants, {info['rounds']} rounds, "
                  f"E_PT2 per space [{pt2}] mHa ({dt:.0f} s)", flush=True)
            describe("target", v, c, e_fci, h2_eff, integrals)
            if args.fit:
                from nqs.models.autoregressive import make_autoregressive

                ansatz = make_autoregressive(hamiltonian.hilbert, "made")
                x0 = jnp.asarray(hamiltonian.hilbert.hartree_fock_state())
                params = jax.jit(ansatz.init)(jax.random.PRNGKey(args.seed), x0)
                t0 = time.perf_counter()
                params, fidelity = ar_pretrain.fit_singles_doubles(
                    ansatz, hamiltonian, params, target=(x, t), steps=args.start_steps,
                    final_lr_fraction=args.final_lr_fraction,
                    target_fidelity=args.target_fidelity)
                print(f"  fit: fidelity with target {fidelity:.5f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
                psi = state_vector(ansatz, params, integrals, c.shape)
                describe("fitted start", psi, c, e_fci, h2_eff, integrals)
    for run in args.run:
        from nqs.commands.load import load_run

        # the run's own integrals: the SCF of a molecule with degenerate orbitals (C2's pi
        # pairs) may rotate them differently from one run to the next
        loaded = load_run(run)
        run_integrals = loaded.model
        e_run, c_run, h2_run = fci_vector(run_integrals)
        psi = state_vector(loaded.state.ansatz, loaded.state.params, run_integrals, c_run.shape)
        describe(f"run {run} (step {loaded.step})", psi, c_run, e_run, h2_run, run_integrals)


if __name__ == "__main__":
    main()
