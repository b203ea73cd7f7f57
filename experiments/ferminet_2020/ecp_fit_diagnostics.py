"""Where a network fitted to Hartree-Fock differs from it in energy: a correlated estimate.

    python experiments/ferminet_2020/ecp_fit_diagnostics.py RUN_DIR [--walkers 1024]
        [--measurements 20] [--basis ccecp-ccpvdz]

``RUN_DIR`` is a real-space run (``nqs realspace ... --steps 0 --pretrain-steps N``: the network
fitted to HF and nothing else). Samples of ``|psi_HF|^2`` (the run's HF in ``--basis``) give

    E_net - E_HF = <w E_loc^net>/<w> - <E_loc^HF>,   w = |psi_net / psi_HF|^2,

split into the local-energy difference on the same samples, ``<w (E_loc^net - E_loc^HF)>/<w>``
(kinetic and nonlocal), and the density term ``<w E_loc^HF>/<w> - <E_loc^HF>`` (first order in
``log(psi_net / psi_HF)``), with error bars from 20 blocks; then both by the radius of the
outermost electron. Prints a table and writes ``RUN_DIR/fit_diagnostics.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (float64)
from hamiltonians.realspace import make_local_energy
from nqs.ansatz import sign_and_log
from nqs.commands.load import load_run
from nqs.errors import CheckpointError, InputError
from nqs.realspace.mcmc import init_walkers, make_mcmc
from nqs.realspace.pretrain import make_hf_log_psi, run_hartree_fock

SHELLS = ((0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 8), (8, np.inf))


def sample(run_dir: Path, basis: str, n_walkers: int, n_measure: int, seed: int = 1) -> dict:
    """Per sample of ``|psi_HF|^2``: both local energies, ``log w`` and the outermost radius."""
    run = load_run(run_dir)
    if run.kind != "realspace":
        raise InputError(f"{run_dir} is a {run.kind} run, not a real-space one")
    atoms, params, log_psi = run.operator, run.state.params, run.state.log_psi
    hf = run_hartree_fock(atoms, basis)
    hf_log_psi = make_hf_log_psi(hf)
    e_hf = jax.jit(jax.vmap(make_local_energy(hf_log_psi, atoms, "hessian"), in_axes=(None, 0)))
    e_net = jax.jit(jax.vmap(make_local_energy(log_psi, atoms, "hessian"), in_axes=(None, 0)))
    log_w = jax.jit(jax.vmap(
        lambda r: 2 * (sign_and_log(log_psi(params, r))[1] - hf_log_psi(None, r)[1])))
    centre = jnp.asarray(np.mean(np.asarray(atoms.positions), axis=0))
    init, step = make_mcmc(hf_log_psi, 10)
    step = jax.jit(step)
    key = jax.random.PRNGKey(seed)
    mc = init(None, init_walkers(key, atoms, n_walkers), 0.5)
    for _ in range(20):  # burn-in, adapting the width
        key, k = jax.random.split(key)
        mc, _ = step(k, None, mc)
    out: dict[str, list] = {"e_hf": [], "e_net": [], "log_w": [], "r_max": []}
    for _ in range(n_measure):
        key, k = jax.random.split(key)
        mc, _ = step(k, None, mc)
        out["e_hf"].append(np.asarray(e_hf(None, mc.r)))
        out["e_net"].append(np.asarray(e_net(params, mc.r)))
        out["log_w"].append(np.asarray(log_w(mc.r)))
        out["r_max"].append(np.asarray(jnp.max(jnp.linalg.norm(mc.r - centre, axis=-1), -1)))
    return {k: np.concatenate(v) for k, v in out.items()} | {"e_hf_pyscf": hf.energy}


def analyse(s: dict, n_blocks: int = 20) -> dict:
    """The two terms (mHa) with block error bars, the weights' spread, and per shell."""
    e_hf, e_net = s["e_hf"], s["e_net"]
    w = np.exp(s["log_w"] - s["log_w"].max())
    w = w / w.mean()

    def blocked(f) -> tuple[float, float]:
        parts = [f(i) for i in np.array_split(np.arange(len(w)), n_blocks)]
        return 1e3 * f(np.arange(len(w))), 1e3 * np.std(parts, ddof=1) / np.sqrt(n_blocks)

    local = blocked(lambda i: np.sum(w[i] * (e_net[i] - e_hf[i])) / np.sum(w[i]))
    density = blocked(lambda i: np.sum(w[i] * e_hf[i]) / np.sum(w[i]) - e_hf[i].mean())
    hf_mean = blocked(lambda i: e_hf[i].mean())
    shells = []
    for lo, hi in SHELLS:
        m = (s["r_max"] >= lo) & (s["r_max"] < hi)
        if m.sum() > 10:
            shells.append({"r_min": lo, "r_max": hi, "fraction": float(m.mean()),
                           "mean_w": float(w[m].mean()),
                           "e_loc_hf_minus_e_hf_mha": 1e3 * float(e_hf[m].mean() - s["e_hf_pyscf"]),
                           "e_loc_net_minus_hf_mha": 1e3 * float((e_net[m] - e_hf[m]).mean())})
    return {"samples": len(w), "e_hf_pyscf": s["e_hf_pyscf"],
            "e_loc_hf_mean_mha_from_pyscf": (hf_mean[0] - 1e3 * s["e_hf_pyscf"], hf_mean[1]),
            "local_energy_term_mha": local, "density_term_mha": density,
            "total_mha": (local[0] + density[0], float(np.hypot(local[1], density[1]))),
            "weights_sd": float(w.std()), "shells": shells}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--walkers", type=int, default=1024)
    p.add_argument("--measurements", type=int, default=20)
    p.add_argument("--basis", default="ccecp-ccpvdz", help="the HF the network was fitted to")
    args = p.parse_args(argv)
    if args.walkers < 2 or args.measurements < 1:
        p.error("--walkers must be at least 2 and --measurements at least 1")
    try:
        res = analyse(sample(args.run_dir, args.basis, args.walkers, args.measurements))
    except (InputError, CheckpointError) as err:
        print(f"ecp_fit_diagnostics: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.run_dir}: E_net - E_HF = {res['total_mha'][0]:.2f} +- {res['total_mha'][1]:.2f} "
          f"mHa = local energies {res['local_energy_term_mha'][0]:.2f} +- "
          f"{res['local_energy_term_mha'][1]:.2f} + density {res['density_term_mha'][0]:.2f} +- "
          f"{res['density_term_mha'][1]:.2f}; sd of w {res['weights_sd']:.3f}; "
          f"{res['samples']} samples of |psi_HF|^2")
    print("| outermost electron (bohr) | fraction | <w> | <E_loc^HF> - E_HF (mHa) | "
          "<E_loc^net - E_loc^HF> (mHa) |\n|---|---|---|---|---|")
    for sh in res["shells"]:
        print(f"| {sh['r_min']}-{sh['r_max']} | {sh['fraction']:.3f} | {sh['mean_w']:.3f} | "
              f"{sh['e_loc_hf_minus_e_hf_mha']:.1f} | {sh['e_loc_net_minus_hf_mha']:.1f} |")
    (args.run_dir / "fit_diagnostics.json").write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
