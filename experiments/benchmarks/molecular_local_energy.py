"""Local energies per second: nqs vs NetKet on the same molecular Hamiltonian, ansatz and samples.

    python experiments/benchmarks/molecular_local_energy.py      # N2/STO-3G, H2O/6-31G; backflow, RBM
    python experiments/benchmarks/molecular_local_energy.py --samples 256 --repeats 5

For each molecule (RHF orbitals from one PySCF run, shared by both codes) and ansatz:

* nqs packed (the fast path): ``nqs.packed_local_energy.make_packed_local_energy``: the
  screened ``MolecularHamiltonian.flips`` of every sample, the rows with a nonzero matrix element
  of the whole batch packed together, the ansatz (RBM cached ratios / backflow log psi) evaluated
  on those rows only, in chunks of ``--chunk-rows``;
* nqs per sample: ``nqs.local_energy.make_local_energy`` vmapped over the samples (what the VMC
  step runs today): ``max_conn`` rows per sample (the exact bound of the screened operator);
* NetKet: ``netket.experimental.operator.from_pyscf_molecule(mol, mo_coeff)`` and NetKet's own
  local-energy kernel for JAX operators (``op.get_conn_padded(samples)`` and the model on every
  connected configuration, inside one ``jax.jit``), i.e. what ``MCState.local_estimators`` runs,
  with NetKet's default (no chunking) and, since chunking helps it on the CPU too, in chunks of
  ``--netket-chunk`` samples (``lax.map``, as ``MCState(chunk_size=...)`` does);

with the same ansatz (one parameter set, applied as a batched ``apply_fun``) on the same samples
(configurations a few random electron hops from Hartree-Fock): the same quantity
``E_loc(x) = sum_x' <x|H|x'> psi(x')/psi(x)``; the local energies are compared (they must agree
to rounding). All variants are compiled first, then timed in turn within each repeat
(interleaved, ``block_until_ready``); the table gives medians. ``--profile`` adds the split:
connections alone vs the ansatz on precomputed connections, for both codes.
Writes results/molecular_local_energy.{md,json}.
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
from nqs.bench.machine import cpu_model
from nqs.hilbert import apply_flips  # noqa: E402
from nqs.io import write_json_atomic  # noqa: E402
from nqs.local_energy import make_local_energy  # noqa: E402
from nqs.packed_local_energy import make_packed_local_energy  # noqa: E402
from nqs.problems import molecule_ansatz  # noqa: E402
from nqs.vmc import batched  # noqa: E402

HERE = Path(__file__).resolve().parent
CASES: dict[str, tuple[str, str]] = {"N2/STO-3G": ("N2", "sto-3g"), "H2O/6-31G": ("H2O", "6-31g")}
DEFAULT_CHUNK_ROWS = {"rbm": 64, "backflow": 512}


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


def interleaved(fns: dict[str, Callable[[], jax.Array]], repeats: int) -> tuple[dict, dict, dict]:
    """``(first-call s incl. compilation, list of timed s, result)`` per name, timed in turn."""
    first, out = {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        out[name] = jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    return first, times, out


def netket_local_energy(op, apply_fun: Callable, n_sites: int,
                        chunk: int | None = None) -> Callable:
    """NetKet's JAX-operator local-energy kernel: get_conn_padded + log psi of all connections."""

    def e_loc(params, sigma: jax.Array) -> jax.Array:
        xp, mels = op.get_conn_padded(sigma)  # [B, C, N], [B, C]
        logpsi_xp = apply_fun(params, xp.reshape(-1, n_sites)).reshape(mels.shape)
        logpsi_x = apply_fun(params, sigma)
        return jnp.sum(mels * jnp.exp(logpsi_xp - logpsi_x[:, None]), axis=-1)

    if chunk is None:
        return jax.jit(e_loc)
    return jax.jit(lambda params, sigma: jax.lax.map(
        lambda s: e_loc(params, s[None])[0], sigma, batch_size=chunk))


def profile(ham: MolecularHamiltonian, ansatz, op, apply_fun: Callable, params, x: jax.Array,
            x_nk: jax.Array, repeats: int, chunk_rows: int, netket_chunk: int) -> dict:
    """Connections alone vs the ansatz on precomputed connections, both codes (median s).

    The ansatz parts are evaluated as in the timed variants: nqs on the nonzero off-diagonal rows
    in ``lax.map`` chunks of ``chunk_rows``, NetKet on all padded rows at once and in chunks of
    ``netket_chunk`` samples.
    """
    n_sites = ham.hilbert.n_sites
    flips = jax.jit(jax.vmap(ham.flips))
    sites, mels = flips(x)
    # the rows the packed path evaluates: nonzero mel, at least one flip (not the diagonal)
    keep = (np.asarray(mels) != 0) & np.any(np.asarray(sites) < n_sites, axis=-1)
    b_idx, c_idx = np.nonzero(keep)
    fast = ansatz.local_updates
    if fast is not None:
        def model_rows(params, xs, b, s):
            tables = fast.prepare(params)
            cache = jax.vmap(fast.init_cache, in_axes=(None, 0))(tables, xs)
            return jax.lax.map(lambda r: fast.log_ratio(
                tables, xs[r[0]], jax.tree_util.tree_map(lambda c: c[r[0]], cache), r[1])[0],
                (b, s), batch_size=chunk_rows)
    else:
        def model_rows(params, xs, b, s):
            log_psi_x = apply_fun(params, xs)
            return jax.lax.map(lambda r: ansatz.log_psi(
                params, apply_flips(xs[r[0]], r[1], 1.0)) - log_psi_x[r[0]], (b, s),
                batch_size=chunk_rows)

    model_nqs = jax.jit(model_rows)
    rows_b = jnp.asarray(b_idx, dtype=jnp.int32)
    rows_s = sites[b_idx, c_idx]
    conn_nk = jax.jit(op.get_conn_padded)
    xp, _ = conn_nk(x_nk)
    model_nk = jax.jit(lambda p, xp: apply_fun(p, xp.reshape(-1, n_sites)))
    model_nk_chunked = jax.jit(lambda p, xp: jax.lax.map(
        lambda r: apply_fun(p, r), xp, batch_size=netket_chunk))
    _, times, _ = interleaved({
        "nqs_connections": lambda: flips(x),
        "nqs_ansatz_on_nonzero_rows": lambda: model_nqs(params, x, rows_b, rows_s),
        "netket_connections": lambda: conn_nk(x_nk),
        "netket_ansatz_on_padded_rows": lambda: model_nk(params, xp),
        "netket_ansatz_on_padded_rows_chunked": lambda: model_nk_chunked(params, xp),
    }, repeats)
    return {k: float(np.median(v)) for k, v in times.items()}


def run_case(label: str, name: str, basis: str, kind: str, args: argparse.Namespace) -> dict:
    import netket.experimental as nkx

    spec = parse_molecule(name, basis=basis)
    integrals, mf = compute_integrals(spec)
    t0 = time.perf_counter()
    ham = MolecularHamiltonian(integrals)
    t_ham = time.perf_counter() - t0
    hilbert = ham.hilbert
    ansatz = molecule_ansatz(hilbert, kind, hidden=tuple(args.hidden), alpha=args.alpha)
    samples = near_hf_samples(hilbert.n_orbitals, hilbert.n_alpha, hilbert.n_beta,
                              args.samples, args.max_hops, args.seed)
    x = jnp.asarray(samples)
    params = ansatz.init(jax.random.PRNGKey(args.seed), x[0])

    t0 = time.perf_counter()
    op = nkx.operator.from_pyscf_molecule(mf.mol, mo_coeff=integrals.mo_coeff)
    t_build = time.perf_counter() - t0
    apply_fun = jax.vmap(ansatz.log_psi, in_axes=(None, 0))
    x_nk = x.astype(jnp.int8)  # NetKet's fermion kernels need integer occupations

    chunk_rows = args.chunk_rows or DEFAULT_CHUNK_ROWS[kind]
    packed = make_packed_local_energy(ham, ansatz, chunk_rows=chunk_rows)
    per_sample = jax.jit(batched(make_local_energy(ham, ansatz), None))
    nk = netket_local_energy(op, apply_fun, hilbert.n_sites)
    nk_chunked = netket_local_energy(op, apply_fun, hilbert.n_sites, args.netket_chunk)
    fns = {"nqs": lambda: packed(params, x), "nqs_per_sample": lambda: per_sample(params, x),
           "netket": lambda: nk(params, x_nk), "netket_chunked": lambda: nk_chunked(params, x_nk)}
    first, times, out = interleaved(fns, args.repeats)
    med = {k: float(np.median(v)) for k, v in times.items()}
    diff = max(float(jnp.max(jnp.abs(out[k] - out["netket"]))) for k in out)

    _, mels = jax.jit(jax.vmap(ham.flips))(x)
    nonzero = np.count_nonzero(np.asarray(mels), axis=1)
    n = len(samples)
    rec = {
        "case": label, "ansatz": kind,
        "n_spin_orbitals": hilbert.n_sites, "n_electrons": hilbert.n_alpha + hilbert.n_beta,
        "n_candidates_nqs": ham.n_candidates, "max_conn_nqs": ham.max_conn,
        "max_conn_netket": int(op.max_conn_size),
        "connections_per_sample_mean": float(nonzero.mean()),
        "connections_per_sample_max": int(nonzero.max()),
        "samples": n, "n_parameters": int(sum(p.size for p in jax.tree_util.tree_leaves(params))),
        "times_s": times, "median_s": med, "first_call_s": first,
        "nqs_s": med["nqs"], "netket_s": med["netket"],
        "speedup": med["netket"] / med["nqs"],
        "speedup_vs_netket_chunked": med["netket_chunked"] / med["nqs"],
        "speedup_per_sample_path": med["netket"] / med["nqs_per_sample"],
        "chunk_rows": chunk_rows, "netket_chunk": args.netket_chunk,
        "nqs_operator_build_s": t_ham, "netket_operator_build_s": t_build,
        "max_abs_diff": diff, "mean_e_loc": float(jnp.mean(jnp.real(out["nqs"]))),
        "e_hf": float(mf.e_tot), "load_avg": list(os.getloadavg()),
    }
    if args.profile:
        rec["profile_s"] = profile(ham, ansatz, op, apply_fun, params, x, x_nk, args.repeats,
                                   chunk_rows, args.netket_chunk)
    print(f"{label} {kind}: nqs {med['nqs']:.3f} s, per-sample path {med['nqs_per_sample']:.3f} s, "
          f"NetKet {med['netket']:.3f} s (chunked {med['netket_chunked']:.3f} s): "
          f"{rec['speedup']:.1f}x ({rec['speedup_vs_netket_chunked']:.1f}x vs chunked), "
          f"max |dE_loc| = {diff:.1e}, load {rec['load_avg'][0]:.1f}", flush=True)
    if args.profile:
        print("  profile (median s): " + ", ".join(f"{k} {v:.3f}" for k, v in rec["profile_s"].items()),
              flush=True)
    return rec


def markdown(records: list[dict], meta: dict) -> str:
    lines = ["| molecule | ansatz | spin orb. | electrons | samples | connections per sample "
             "(mean / nqs bound / all singles+doubles / NetKet padded) | nqs s | NetKet s | ratio | "
             "NetKet chunked s | ratio vs chunked | nqs per-sample path s | max abs diff | load |",
             "|" + "---|" * 14]
    for r in records:
        m = r["median_s"]
        lines.append(
            f"| {r['case']} | {r['ansatz']} | {r['n_spin_orbitals']} | {r['n_electrons']} | "
            f"{r['samples']} | {r['connections_per_sample_mean']:.0f} / {r['max_conn_nqs']} / "
            f"{r['n_candidates_nqs']} / {r['max_conn_netket']} | {m['nqs']:.3f} | "
            f"{m['netket']:.3f} | **{r['speedup']:.1f}x** | {m['netket_chunked']:.3f} | "
            f"{r['speedup_vs_netket_chunked']:.1f}x | {m['nqs_per_sample']:.3f} | "
            f"{r['max_abs_diff']:.1e} | {r['load_avg'][0]:.1f} |")
    if any("profile_s" in r for r in records):
        lines += ["", "Split (median s): connections alone vs the ansatz alone on precomputed "
                  "connections (nqs: the nonzero rows only; NetKet: all padded rows).", "",
                  "| molecule | ansatz | nqs connections | nqs ansatz | NetKet connections | "
                  "NetKet ansatz | NetKet ansatz (chunked) |", "|" + "---|" * 7]
        for r in records:
            p = r.get("profile_s")
            if p:
                lines.append(
                    f"| {r['case']} | {r['ansatz']} | {p['nqs_connections']:.3f} | "
                    f"{p['nqs_ansatz_on_nonzero_rows']:.3f} | {p['netket_connections']:.3f} | "
                    f"{p['netket_ansatz_on_padded_rows']:.3f} | "
                    f"{p['netket_ansatz_on_padded_rows_chunked']:.3f} |")
    lines.append("")
    lines.append(f"Machine: {meta['cpu']}, {meta['cores']} cores, load average "
                 f"{meta['load_avg'][0]:.1f} (start) / {meta['load_avg_end'][0]:.1f} (end); "
                 f"jax {meta['jax']}, netket {meta['netket']}; median of {meta['repeats']} "
                 "interleaved timed calls after a compiling call; nqs rows in chunks of "
                 f"{meta['chunk_rows'] or DEFAULT_CHUNK_ROWS} (rows per lax.map step), NetKet "
                 f"chunked = {meta['netket_chunk']} samples per chunk; "
                 "XLA_FLAGS=" + meta["xla_flags"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--ansatz", nargs="+", choices=("backflow", "rbm"), default=["backflow", "rbm"])
    p.add_argument("--hidden", type=int, nargs="+", default=[64])
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--max-hops", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk-rows", type=int, default=None,
                   help="nqs: packed rows per lax.map step (default: 64 for the RBM, whose "
                        "per-row intermediates then stay in cache, 512 for backflow, whose "
                        "batched determinants have a per-call overhead)")
    p.add_argument("--netket-chunk", type=int, default=8,
                   help="NetKet chunked variant: samples per lax.map step")
    p.add_argument("--profile", action="store_true",
                   help="also time connections and the ansatz separately")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    import netket

    meta = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg": list(os.getloadavg()),
            "jax": jax.__version__, "netket": netket.__version__, "repeats": args.repeats,
            "chunk_rows": args.chunk_rows, "netket_chunk": args.netket_chunk,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}
    records = [run_case(c, *CASES[c], kind, args) for c in args.cases for kind in args.ansatz]
    meta["load_avg_end"] = list(os.getloadavg())
    table = markdown(records, meta)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "molecular_local_energy.md").write_text(table)
    write_json_atomic(args.out / "molecular_local_energy.json",
                      {"records": records, "meta": meta, "args": vars(args) | {"out": str(args.out)}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
