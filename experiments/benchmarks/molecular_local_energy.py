"""Local energies per second: nqs vs NetKet on the same molecular Hamiltonian, ansatz and samples.

    python experiments/benchmarks/molecular_local_energy.py                # N2/STO-3G, H2O/6-31G
    python experiments/benchmarks/molecular_local_energy.py --samples 256 --repeats 3

For each molecule (RHF orbitals from one PySCF run, shared by both codes):

* nqs: ``MolecularHamiltonian.flips`` + ``nqs.local_energy.make_local_energy`` (the generic path:
  log psi of every connected determinant in one batched call), ``jax.jit(jax.vmap(...))``;
* NetKet: ``netket.experimental.operator.from_pyscf_molecule(mol, mo_coeff)`` and NetKet's own
  local-energy kernel for JAX operators (``op.get_conn_padded(samples)`` and the model on every
  connected configuration, inside one ``jax.jit``), i.e. what ``MCState.local_estimators`` runs;

with the same ansatz (the nqs backflow determinant or RBM, one parameter set, applied as a batched
``apply_fun``) on the same samples (configurations a few random electron hops from Hartree-Fock).
Both are timed after warm-up (compilation) with ``block_until_ready``; the two sets of local
energies are compared (they must agree to rounding). Writes results/molecular_local_energy.{md,json}.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import nqs  # noqa: E402, F401  (float64)
from hamiltonians.molecule import compute_integrals, parse_molecule  # noqa: E402
from hamiltonians.second_quantized import MolecularHamiltonian  # noqa: E402
from nqs.io import write_json_atomic  # noqa: E402
from nqs.local_energy import make_local_energy  # noqa: E402
from nqs.problems import molecule_ansatz  # noqa: E402

HERE = Path(__file__).resolve().parent
CASES: dict[str, tuple[str, str]] = {"N2/STO-3G": ("N2", "sto-3g"), "H2O/6-31G": ("H2O", "6-31g")}


def near_hf_samples(n_orb: int, n_alpha: int, n_beta: int, n: int, max_hops: int,
                    seed: int) -> np.ndarray:
    """``n`` occupation vectors [n, 2 n_orb]: HF plus 0..max_hops random same-spin electron hops."""
    rng = np.random.default_rng(seed)
    hf = np.zeros(2 * n_orb)
    hf[:n_alpha] = 1.0
    hf[n_orb : n_orb + n_beta] = 1.0
    out = np.repeat(hf[None], n, axis=0)
    for k in range(n):
        for _ in range(rng.integers(0, max_hops + 1)):
            s = rng.integers(0, 2) * n_orb
            block = out[k, s : s + n_orb]
            occ, vir = np.flatnonzero(block > 0.5), np.flatnonzero(block < 0.5)
            if len(occ) and len(vir):
                block[rng.choice(occ)], block[rng.choice(vir)] = 0.0, 1.0
    return out


def timed(fn: Callable[[], jax.Array], repeats: int) -> tuple[float, float, jax.Array]:
    """``(first call s incl. compilation, best of repeats s, result)``."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return first, best, out


def netket_local_energy(op, apply_fun: Callable, n_sites: int) -> Callable:
    """NetKet's JAX-operator local-energy kernel: get_conn_padded + log psi of all connections."""

    def e_loc(params, sigma: jax.Array) -> jax.Array:
        xp, mels = op.get_conn_padded(sigma)  # [B, C, N], [B, C]
        logpsi_xp = apply_fun(params, xp.reshape(-1, n_sites)).reshape(mels.shape)
        logpsi_x = apply_fun(params, sigma)
        return jnp.sum(mels * jnp.exp(logpsi_xp - logpsi_x[:, None]), axis=-1)

    return jax.jit(e_loc)


def run_case(label: str, name: str, basis: str, args: argparse.Namespace) -> dict:
    import netket.experimental as nkx

    spec = parse_molecule(name, basis=basis)
    integrals, mf = compute_integrals(spec)
    ham = MolecularHamiltonian(integrals)
    hilbert = ham.hilbert
    ansatz = molecule_ansatz(hilbert, args.ansatz, hidden=tuple(args.hidden), alpha=args.alpha)
    if args.ansatz == "rbm" and args.generic:
        ansatz = ansatz.without_fast_path()
    samples = near_hf_samples(hilbert.n_orbitals, hilbert.n_alpha, hilbert.n_beta,
                              args.samples, args.max_hops, args.seed)
    x = jnp.asarray(samples)
    params = ansatz.init(jax.random.PRNGKey(args.seed), x[0])

    # nqs
    e_nqs_fn = jax.jit(jax.vmap(make_local_energy(ham, ansatz), in_axes=(None, 0)))
    first_nqs, t_nqs, e_nqs = timed(lambda: e_nqs_fn(params, x), args.repeats)

    # NetKet: same orbitals, same ansatz function and parameters, same samples
    t0 = time.perf_counter()
    op = nkx.operator.from_pyscf_molecule(mf.mol, mo_coeff=integrals.mo_coeff)
    t_build = time.perf_counter() - t0
    apply_fun = jax.vmap(ansatz.log_psi, in_axes=(None, 0))
    e_nk_fn = netket_local_energy(op, apply_fun, hilbert.n_sites)
    x_nk = x.astype(jnp.int8)  # NetKet's fermion kernels need integer occupations
    first_nk, t_nk, e_nk = timed(lambda: e_nk_fn(params, x_nk), args.repeats)

    # where the time goes: connected configurations alone (no model evaluation)
    flips_nqs = jax.jit(jax.vmap(ham.flips))
    _, t_conn_nqs, _ = timed(lambda: flips_nqs(x), args.repeats)
    conn_nk = jax.jit(op.get_conn_padded)
    _, t_conn_nk, _ = timed(lambda: conn_nk(x_nk), args.repeats)
    diff = float(jnp.max(jnp.abs(e_nqs - e_nk)))
    n = len(samples)
    rec = {
        "case": label, "ansatz": args.ansatz + (" (generic)" if args.generic else ""),
        "n_spin_orbitals": hilbert.n_sites, "n_electrons": hilbert.n_alpha + hilbert.n_beta,
        "max_conn_nqs": ham.max_conn, "max_conn_netket": int(op.max_conn_size),
        "samples": n, "n_parameters": int(sum(p.size for p in jax.tree_util.tree_leaves(params))),
        "nqs_s": t_nqs, "netket_s": t_nk, "nqs_per_s": n / t_nqs, "netket_per_s": n / t_nk,
        "speedup": t_nk / t_nqs, "nqs_first_call_s": first_nqs, "netket_first_call_s": first_nk,
        "netket_operator_build_s": t_build,
        "nqs_connections_s": t_conn_nqs, "netket_connections_s": t_conn_nk, "max_abs_diff": diff,
        "mean_e_loc": float(jnp.mean(jnp.real(e_nqs))), "e_hf": float(mf.e_tot),
    }
    print(f"{label}: nqs {rec['nqs_per_s']:.0f}/s, NetKet {rec['netket_per_s']:.0f}/s, "
          f"ratio {rec['speedup']:.2f}x, max |dE_loc| = {diff:.1e}", flush=True)
    return rec


def markdown(records: list[dict], meta: dict) -> str:
    lines = ["| case | ansatz | spin orb. | conn. nqs / NetKet | samples | nqs E_loc/s | "
             "NetKet E_loc/s | nqs speed-up | connections only nqs / NetKet ms | max abs diff |",
             "|" + "---|" * 10]
    for r in records:
        lines.append(f"| {r['case']} | {r['ansatz']} | {r['n_spin_orbitals']} | "
                     f"{r['max_conn_nqs']} / {r['max_conn_netket']} | {r['samples']} | "
                     f"{r['nqs_per_s']:.0f} | {r['netket_per_s']:.0f} | {r['speedup']:.2f}x | "
                     f"{1e3 * r['nqs_connections_s']:.1f} / {1e3 * r['netket_connections_s']:.1f} | "
                     f"{r['max_abs_diff']:.1e} |")
    lines.append("")
    lines.append(f"Machine: {meta['cpu']}, {meta['cores']} cores, load average "
                 f"{meta['load_avg'][0]:.1f} (start) / {meta['load_avg_end'][0]:.1f} (end); "
                 f"jax {meta['jax']}, netket {meta['netket']}; best of {meta['repeats']} timed "
                 "calls after a warm-up call; XLA_FLAGS=" + meta["xla_flags"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--ansatz", choices=("backflow", "rbm"), default="backflow")
    p.add_argument("--generic", action="store_true",
                   help="RBM without its fast local updates (the generic path in nqs)")
    p.add_argument("--hidden", type=int, nargs="+", default=[64])
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--max-hops", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    import netket

    meta = {"cpu": _cpu(), "cores": os.cpu_count(), "load_avg": list(os.getloadavg()),
            "jax": jax.__version__, "netket": netket.__version__, "repeats": args.repeats,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}
    records = [run_case(c, *CASES[c], args) for c in args.cases]
    meta["load_avg_end"] = list(os.getloadavg())
    table = markdown(records, meta)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.ansatz == "backflow" else "_" + args.ansatz + ("_generic" if args.generic else "")
    (args.out / f"molecular_local_energy{suffix}.md").write_text(table)
    write_json_atomic(args.out / f"molecular_local_energy{suffix}.json",
                      {"records": records, "meta": meta, "args": vars(args) | {"out": str(args.out)}})
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
