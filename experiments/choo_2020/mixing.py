"""Which Metropolis moves mix better for a molecule? Pair hops vs Hamiltonian-connected moves,
sampling |psi|^2 or |psi|^(2q) with importance weights, at one fixed (trained) backflow state.

    python experiments/choo_2020/mixing.py --molecule LiH --train-steps 300

The state is first trained by exact summation (so it is peaked on Hartree-Fock like a converged
state); then each sampler draws ``--batches`` batches of ``--samples`` samples from chains
started at random determinants (the first batch is discarded). Reported per sampler: acceptance,
integrated autocorrelation time of E_loc, error bar of the energy from one batch, the deviation
of the batch energies from the exact energy of the same state in units of their error bar, and
the distinct determinants per batch. Writes ``results/mixing_<molecule>.{md,json}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nqs.bench.fci import Settings, load_job, suite_jobs
from nqs.io import write_json_atomic

HERE = Path(__file__).resolve().parent
SAMPLERS = [("pair-hop", 1.0), ("connected", 1.0), ("pair-hop", 0.5), ("connected", 0.5)]


def main(argv: list[str] | None = None) -> int:
    from hamiltonians.second_quantized import MolecularHamiltonian
    from nqs.bench.fci import solve
    from nqs.exact import make_exact_energy, sparse_hamiltonian
    from nqs.local_energy import make_local_energy
    from nqs.problems import molecule_ansatz, molecule_sampler
    from nqs.stats import statistics

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--molecule", default="LiH", choices=("H2", "LiH", "H2O", "NH3"))
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    job = {j.name: j for j in suite_jobs("choo2020", "sto-3g", False, None)}[args.molecule]
    integrals, refs, _ = load_job(job)
    settings = Settings(sampler="exact", steps=args.train_steps, lr_schedule="cosine")
    result, _ = solve(integrals, settings, None, lambda m: None)
    params = result.params
    ham = MolecularHamiltonian(integrals)
    ansatz = molecule_ansatz(ham.hilbert, "backflow", init_scale=0.05)
    e_exact = float(jnp.real(make_exact_energy(ansatz, sparse_hamiltonian(ham))(params)[0]))
    print(f"{args.molecule}: trained {args.train_steps} steps, E = {e_exact:.8f} "
          f"(FCI {refs['e_fci']:.8f})", flush=True)
    e_loc_fn = jax.jit(jax.vmap(make_local_energy(ham, ansatz), in_axes=(None, 0)))
    rows = []
    for rule, power in SAMPLERS:
        sampler, _ = molecule_sampler(ham.hilbert, "mcmc", args.samples, 16, rule=rule,
                                      power=power, integrals=integrals)
        state = sampler.init(jax.random.PRNGKey(1), ansatz, params)
        t0 = time.perf_counter()
        batches = []
        for b in range(args.batches + 1):
            samples, state, info = sampler.sample(jax.random.PRNGKey(10 + b), ansatz, params,
                                                  state)
            if b == 0:
                continue  # burn-in from random determinants
            x = np.asarray(samples.x)
            uniq, inverse = np.unique(x, axis=0, return_inverse=True)
            e_loc = np.asarray(e_loc_fn(params, jnp.asarray(uniq)))[inverse.ravel()]
            stats = statistics(jnp.asarray(e_loc), samples.weights, samples.n_chains)
            batches.append({"energy": float(np.real(stats.mean)),
                            "error": float(stats.error_of_mean),
                            "tau": float(stats.tau_corr),
                            "acceptance": float(info["acceptance"]),
                            "distinct": len(uniq)})
        z = [(b["energy"] - e_exact) / b["error"] for b in batches]
        row = {"rule": rule, "power": power,
               "acceptance": float(np.mean([b["acceptance"] for b in batches])),
               "tau": float(np.mean([b["tau"] for b in batches])),
               "error_mha": 1e3 * float(np.mean([b["error"] for b in batches])),
               "rms_deviation_mha": 1e3 * float(np.sqrt(np.mean(
                   [(b["energy"] - e_exact) ** 2 for b in batches]))),
               "z_scores": z, "distinct": float(np.mean([b["distinct"] for b in batches])),
               "seconds": time.perf_counter() - t0, "batches": batches}
        rows.append(row)
        print(f"  {rule:9s} q={power}: acceptance {row['acceptance']:.3f}, tau {row['tau']:.2f}, "
              f"error {row['error_mha']:.3f} mHa, rms deviation {row['rms_deviation_mha']:.3f} "
              f"mHa, distinct {row['distinct']:.0f}", flush=True)
    head = ("| rule | q | acceptance | tau (samples/chain) | error bar mHa | rms deviation mHa | "
            "distinct determinants |\n|---|---|---|---|---|---|---|")
    lines = [head] + [
        f"| {r['rule']} | {r['power']} | {r['acceptance']:.3f} | {r['tau']:.2f} | "
        f"{r['error_mha']:.3f} | {r['rms_deviation_mha']:.3f} | {r['distinct']:.0f} |"
        for r in rows]
    text = (f"{args.molecule}/STO-3G, backflow trained {args.train_steps} exact steps "
            f"(E - E(FCI) = {1e3 * (e_exact - refs['e_fci']):.3f} mHa); {args.samples} samples "
            f"per batch, 16 chains, {args.batches} batches after one burn-in batch; rms "
            f"deviation = of the batch energies from the exact energy of the same state.\n\n"
            + "\n".join(lines) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"mixing_{args.molecule}.md").write_text(text)
    write_json_atomic(args.out / f"mixing_{args.molecule}.json",
                      {"molecule": args.molecule, "e_exact": e_exact, "e_fci": refs["e_fci"],
                       "train_steps": args.train_steps, "rows": rows})
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
