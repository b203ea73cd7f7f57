"""Re-evaluate the energy of a saved real-space run, independently of the run's own evaluation.

Loads the parameters from ``RUN_DIR/checkpoint.msgpack`` (the network is rebuilt from the
checkpoint's fingerprint), starts fresh walkers around the nuclei with another seed, burns them
in, and measures the energy at fixed parameters with the chosen Laplacian (``hessian``: the
Hessian-trace reference path, sharing no code with folx), with an autocorrelation-corrected
error bar. Used to check the GPU runs on a CPU::

    python experiments/ferminet_2020/reevaluate.py experiments/ferminet_2020/results/gpu/LiH \\
        --laplacian hessian --walkers 512 --eval-steps 40

Prints one line and writes ``RUN_DIR/reevaluation_<laplacian>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

import nqs  # noqa: F401  (float64)
from hamiltonians.realspace import make_atoms, make_local_energy
from nqs.errors import CheckpointError, InputError
from nqs.io import load_checkpoint_metadata, write_json_atomic
from nqs.loop import CHECKPOINT_NAME
from nqs.problems.realspace import load_network_state, recorded_options
from nqs.realspace.mcmc import burn_in, init_walkers, make_mcmc
from nqs.sampling.walkers import make_energy_sampler
from nqs.stats import statistics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--laplacian", choices=("folx", "hessian"), default="hessian")
    p.add_argument("--walkers", type=int, default=512)
    p.add_argument("--eval-steps", type=int, default=40)
    p.add_argument("--burn-in", type=int, default=50, help="Metropolis calls before measuring")
    p.add_argument("--seed", type=int, default=12345)
    args = p.parse_args(argv)

    ckpt = args.run_dir / CHECKPOINT_NAME
    meta = recorded_options(load_checkpoint_metadata(ckpt))
    geometry = "; ".join(f"{s} {x} {y} {z}" for s, (x, y, z) in
                         zip(meta["symbols"], meta["positions"], strict=True))
    spin = meta["n_alpha"] - meta["n_beta"]
    # the fingerprint holds the electron counts, not the charge: the charge is what is missing
    neutral_electrons = make_atoms(geometry, spin=spin % 2, unit="bohr").n_electrons
    charge = neutral_electrons - (meta["n_alpha"] + meta["n_beta"])
    atoms = make_atoms(geometry, charge=charge, spin=spin, unit="bohr")
    params, apply, _, loaded = load_network_state(ckpt, atoms)

    t0 = time.perf_counter()
    k_walk, k_burn, k_eval = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    mcmc_steps = meta["mcmc_steps"]
    mcmc_init, mcmc_step = make_mcmc(apply, mcmc_steps)
    mc, accs = burn_in(k_burn, jax.jit(mcmc_step), params,
                       mcmc_init(params, init_walkers(k_walk, atoms, args.walkers), 0.2),
                       args.burn_in)
    e_loc_fn = make_local_energy(apply, atoms, args.laplacian)
    sampler = make_energy_sampler(apply, e_loc_fn, mcmc_steps)
    _, e_loc, acc = sampler(k_eval, params, mc, args.eval_steps)
    values = np.asarray(e_loc).reshape(-1)
    st = statistics(values, np.full(values.size, 1.0 / values.size), args.walkers)
    seconds = time.perf_counter() - t0
    record = {
        "run_dir": str(args.run_dir),
        "step": int(loaded["step"]),
        "laplacian": args.laplacian,
        "walkers": args.walkers,
        "eval_steps": args.eval_steps,
        "burn_in_calls": args.burn_in,
        "seed": args.seed,
        "energy": float(st.mean),
        "energy_error": float(st.error_of_mean),
        "variance": float(st.variance),
        "tau_corr": float(st.tau_corr),
        "acceptance": float(np.mean(np.asarray(acc))),
        "run_energy": None,
        "seconds": seconds,
        "device": str(jax.devices()[0]),
        "load_average": list(os.getloadavg()),
    }
    result_file = args.run_dir / "result.json"
    if result_file.exists():
        run = json.loads(result_file.read_text())
        record["run_energy"] = run.get("energy")
        record["run_energy_error"] = run.get("energy_error")
        record["reference_energy"] = run.get("reference_energy")
    write_json_atomic(args.run_dir / f"reevaluation_{args.laplacian}.json", record)
    ref = record.get("reference_energy")
    print(f"{args.run_dir.name} (step {record['step']}): E = {st.mean:.6f} +- "
          f"{st.error_of_mean:.1e} Ha with the {args.laplacian} Laplacian"
          + ("" if ref is None else f", E - E_exact = {(st.mean - ref) * 1e3:.2f} mHa")
          + (f"; the run's own evaluation {record['run_energy']:.6f}" if record["run_energy"]
             else "") + f" ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except (CheckpointError, InputError) as err:
        print(f"reevaluate.py: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
