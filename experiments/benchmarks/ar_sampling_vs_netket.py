"""Sampling plus local energies for a molecule past the exact cap: nqs vs NetKet, one run.

    python experiments/benchmarks/ar_sampling_vs_netket.py                 # N2/6-31G, frozen core
    python experiments/benchmarks/ar_sampling_vs_netket.py --samples 4096 --repeats 2

One state for both codes: the autoregressive ansatz that ``bench-fci`` builds for the space
(``nqs.models.autoregressive``, MADE backbone, its width and phase network), fitted to CISD
(``nqs.models.ar_pretrain.fit_singles_doubles``), so the distribution is a realistic one near
Hartree-Fock, not the initial delta.
One step's worth of work, timed (``block_until_ready``, median of ``--repeats`` after a compiling
call):

* **nqs**: ``AutoregressiveSampler`` (exact draws down the autoregressive tree, returned as the
  distinct determinants with their counts), then the packed local energies
  (``nqs.packed_local_energy``: ``log psi`` once per distinct connected determinant) of the
  distinct draws only, padded to the bucket the VMC step uses (``unique_bucket``);
* **NetKet**: ``netket.experimental.operator.from_pyscf_molecule`` with ``MCState`` on
  ``MetropolisFermionHop`` (spin-symmetric hops on the complete graph of orbitals; NetKet has
  no autoregressive model that keeps N_alpha and N_beta), the same model as ``apply_fun``, then
  ``MCState.local_estimators`` (its local-energy kernel on every sample).

Two comparisons, as the project's benchmarks report them:

* **matched**: the same nominal sample count ``--samples`` for both (NetKet ``n_samples``, nqs
  draws), NetKet with ``chunk_size=--netket-chunk`` (its default, no chunking, does not fit the
  memory of ``samples x connections`` configurations here);
* **defaults**: each code as a user runs it: nqs ``bench-fci``'s autoregressive defaults
  (1e5 draws, at most 1024 distinct), NetKet's ``MCState`` defaults (``n_samples=1000``
  rounded to the chains, 16 chains) with the same chunk.

Reported per variant: seconds per call, draws (nominal samples) per second, distinct
configurations per second and local energies evaluated. The mean local energy of both codes is
printed as a consistency check (same state; the estimates differ by their statistical error).
Writes results/ar_sampling_vs_netket.{md,json}.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import nqs  # noqa: E402, F401  (float64)
from hamiltonians.molecule import compute_integrals, from_preset  # noqa: E402
from hamiltonians.second_quantized import MolecularHamiltonian  # noqa: E402
from nqs.bench.fci import AR_SAMPLES, Settings, resolve_settings  # noqa: E402
from nqs.bench.machine import cpu_model  # noqa: E402
from nqs.io import write_json_atomic  # noqa: E402
from nqs.models.ar_pretrain import fit_singles_doubles, selected_target  # noqa: E402
from nqs.models.ci_prior import make_table  # noqa: E402
from nqs.packed_local_energy import make_packed_local_energy  # noqa: E402
from nqs.problems import molecule_ansatz  # noqa: E402
from nqs.sampling.autoregressive import AutoregressiveSampler  # noqa: E402
from nqs.vmc import unique_bucket  # noqa: E402

HERE = Path(__file__).resolve().parent
NETKET_DEFAULT_SAMPLES = 1000  # MCState's default n_samples
NETKET_DEFAULT_CHAINS = 16  # MetropolisSampler's default n_chains on a CPU


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    """``(first call s incl. compilation, timed s, last result)``."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, times, out


def nqs_call(hamiltonian, ansatz, params, n_draws: int, max_unique: int, chunk_rows: int):
    """One call: draw, then the local energies of the distinct draws. Returns a function giving
    ``(n_unique, weighted mean local energy)``."""
    sampler = AutoregressiveSampler(hamiltonian.hilbert, n_samples=n_draws, max_unique=max_unique)
    sample = jax.jit(lambda key: sampler.sample(key, ansatz, params, jnp.asarray(float(n_draws))))
    e_loc = make_packed_local_energy(hamiltonian, ansatz, chunk_rows=chunk_rows)
    key = [jax.random.PRNGKey(1)]

    def call():
        key[0], k = jax.random.split(key[0])
        samples, _, info = sample(k)
        n_unique = int(info["n_unique"])
        # as the VMC step does: the distinct draws padded to its bucket
        bucket = unique_bucket(n_unique, samples.x.shape[0])
        el = e_loc(params, samples.x[:bucket], n_unique)
        w = samples.weights[:bucket]
        return n_unique, float(jnp.real(jnp.sum(w * el))), float(samples.n_draws)

    return call


def netket_call(op, ansatz, params, n_samples: int, n_chains: int, chunk: int | None):
    """One call: ``MCState.sample()`` (a fresh set, as every VMC step draws) and its local
    energies. Returns a function giving ``(n distinct samples, mean local energy)``."""
    import netket as nk

    hilbert = op.hilbert
    n_orb = hilbert.n_orbitals
    graph = nk.graph.Graph(edges=[(i, j) for i in range(n_orb) for j in range(i + 1, n_orb)])
    sampler = nk.sampler.MetropolisFermionHop(hilbert, graph=graph, n_chains=n_chains,
                                              spin_symmetric=True, dtype=jnp.int8)
    apply_fun = jax.vmap(lambda p, x: ansatz.log_psi(p, x.astype(jnp.float64)), in_axes=(None, 0))

    def apply(variables, x):
        return apply_fun(variables, x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1])

    vs = nk.vqs.MCState(sampler, apply_fun=apply, variables=params, n_samples=n_samples,
                        chunk_size=chunk, seed=0, sampler_seed=1)

    def call():
        samples = vs.sample()
        el = vs.local_estimators(op)
        x = np.asarray(samples).reshape(-1, samples.shape[-1])
        return len(np.unique(x, axis=0)), float(jnp.real(jnp.mean(el))), int(x.shape[0])

    return call, vs


def run(args: argparse.Namespace) -> dict:
    spec = from_preset(args.molecule, basis=args.basis)
    integrals, mf = compute_integrals(spec, frozen_core=args.frozen_core)
    hamiltonian = MolecularHamiltonian(integrals)
    hilbert = hamiltonian.hilbert
    # the state bench-fci builds for this space (width, phase network), unless --hidden is given
    settings = resolve_settings(Settings(ansatz="autoregressive", sampler="autoregressive",
                                         hidden=tuple(args.hidden) if args.hidden else None),
                                hilbert.n_states)
    t0 = time.perf_counter()
    prior = None
    if args.prior:  # bench-fci's default start: the selected vector under the network
        x, c = selected_target(hamiltonian, rounds=3, pt2_tolerance=1e-3)
        prior = make_table(np.asarray(x), np.asarray(c), hilbert.n_orbitals)
    ansatz = molecule_ansatz(hilbert, "autoregressive", hidden=settings.hidden,
                             phase=settings.phase, prior=prior)
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0),
                                  jnp.asarray(hilbert.hartree_fock_state()))
    if prior is None:
        params, fidelity = fit_singles_doubles(ansatz, hamiltonian, params)
        what = f"state fitted to CISD (fidelity {fidelity:.4f}"
    else:
        fidelity = 1.0
        what = f"the state is the selected vector of {len(c)} determinants (prior"
    t_fit = time.perf_counter() - t0
    print(f"{args.molecule}/{args.basis}{' (frozen core)' if args.frozen_core else ''}: "
          f"{hilbert.n_sites} spin orbitals, {hilbert.n_states:.3g} determinants; {what}, "
          f"{t_fit:.0f} s)", flush=True)

    op = netket_operator(integrals)
    variants = {
        "matched": dict(nqs=(args.samples, args.max_unique),
                        netket=(args.samples, NETKET_DEFAULT_CHAINS)),
        "defaults": dict(nqs=(AR_SAMPLES, Settings().max_unique),
                         netket=(NETKET_DEFAULT_SAMPLES, NETKET_DEFAULT_CHAINS)),
    }
    check = local_energy_check(hamiltonian, op, ansatz, params, args.max_unique, args.chunk_rows)
    print(f"same local energies on {check['n']} distinct nqs draws: max |nqs - NetKet| = "
          f"{check['max_abs_diff']:.1e} Ha", flush=True)
    records = []
    for name, v in variants.items():
        fn_nqs = nqs_call(hamiltonian, ansatz, params, *v["nqs"], args.chunk_rows)
        fn_nk, _ = netket_call(op, ansatz, params, *v["netket"], args.netket_chunk)
        first_nqs, t_nqs, (u_nqs, e_nqs, draws_nqs) = timed(fn_nqs, args.repeats)
        first_nk, t_nk, (u_nk, e_nk, n_nk) = timed(fn_nk, args.repeats)
        s_nqs, s_nk = float(np.median(t_nqs)), float(np.median(t_nk))
        rec = {
            "variant": name, "nqs_draws": draws_nqs, "nqs_unique": u_nqs,
            "nqs_s": s_nqs, "nqs_first_s": first_nqs, "nqs_times_s": t_nqs,
            "nqs_mean_e_loc": e_nqs,
            "netket_samples": n_nk, "netket_unique": u_nk, "netket_local_energies": n_nk,
            "netket_s": s_nk, "netket_first_s": first_nk, "netket_times_s": t_nk,
            "netket_mean_e_loc": e_nk,
            "speedup_per_call": s_nk / s_nqs,
            "nqs_draws_per_s": draws_nqs / s_nqs, "netket_samples_per_s": n_nk / s_nk,
            "nqs_unique_per_s": u_nqs / s_nqs, "netket_unique_per_s": u_nk / s_nk,
            "load_avg": list(os.getloadavg()),
        }
        rec["speedup_per_sample"] = rec["nqs_draws_per_s"] / rec["netket_samples_per_s"]
        rec["speedup_unique_per_s"] = rec["nqs_unique_per_s"] / rec["netket_unique_per_s"]
        records.append(rec)
        print(f"{name}: nqs {s_nqs:.3f} s for {draws_nqs:.0f} draws ({u_nqs} distinct, "
              f"<E_loc> {rec['nqs_mean_e_loc']:.5f}); NetKet {s_nk:.3f} s for {n_nk} samples "
              f"({u_nk} distinct, <E_loc> {rec['netket_mean_e_loc']:.5f}); per call "
              f"{rec['speedup_per_call']:.1f}x, per sample {rec['speedup_per_sample']:.1f}x, "
              f"distinct/s {rec['speedup_unique_per_s']:.1f}x; load {rec['load_avg'][0]:.1f}",
              flush=True)
    return {"molecule": args.molecule, "basis": args.basis, "frozen_core": args.frozen_core,
            "hidden": list(settings.hidden), "phase": settings.phase,
            "n_spin_orbitals": hilbert.n_sites, "n_determinants": hilbert.n_states,
            "prior": bool(args.prior), "cisd_fidelity": fidelity, "e_hf": float(mf.e_tot), "records": records,
            "local_energy_check": check}


def local_energy_check(hamiltonian, op, ansatz, params, max_unique: int, chunk_rows: int) -> dict:
    """Both codes' local energies on the same configurations (nqs's distinct draws): the
    operators and the model are the same, so they agree to rounding."""
    sampler = AutoregressiveSampler(hamiltonian.hilbert, n_samples=AR_SAMPLES,
                                    max_unique=max_unique)
    samples, _, info = jax.jit(lambda k: sampler.sample(
        k, ansatz, params, jnp.asarray(float(AR_SAMPLES))))(jax.random.PRNGKey(7))
    n = int(info["n_unique"])
    x = samples.x[:n]
    ours = make_packed_local_energy(hamiltonian, ansatz, chunk_rows=chunk_rows)(params, x)
    apply = jax.vmap(ansatz.log_psi, in_axes=(None, 0))

    @jax.jit
    def theirs(x):
        xp, mels = op.get_conn_padded(x.astype(jnp.int8))
        log_xp = jax.lax.map(lambda r: apply(params, r.astype(jnp.float64)), xp)
        return jnp.sum(mels * jnp.exp(log_xp - apply(params, x)[:, None]), axis=-1)

    diff = float(jnp.max(jnp.abs(ours - theirs(x))))
    return {"n": n, "max_abs_diff": diff}


def netket_operator(integrals):
    """NetKet's Hamiltonian (``ParticleNumberAndSpinConservingFermioperator2nd``, what
    ``from_pyscf_molecule`` builds) from nqs's active-space integrals, so that a frozen core is
    the same in both codes: ``from_pyscf_molecule`` has no frozen core, so its last step is
    taken with the active ``h1``, ``(pq|rs)`` and core energy (NetKet's V_ijkl is (il|jk))."""
    import netket as nk
    import sparse
    from netket.experimental.operator import ParticleNumberAndSpinConservingFermioperator2nd

    cutoff = 1e-11
    t = jnp.asarray(integrals.h1)
    v = jnp.asarray(np.ascontiguousarray(np.asarray(integrals.h2).transpose(0, 2, 3, 1)))
    hilbert = nk.hilbert.SpinOrbitalFermions(integrals.n_orbitals, s=1 / 2, n_fermions_per_spin=(
        integrals.n_alpha, integrals.n_beta))
    return ParticleNumberAndSpinConservingFermioperator2nd._from_sparse_arrays_normal_order_all_sectors(
        hilbert, [jnp.asarray(float(integrals.e_core)),
                  sparse.COO.from_numpy(t * (jnp.abs(t) > cutoff)),
                  0.5 * sparse.COO.from_numpy(v * (jnp.abs(v) > cutoff))], cutoff=cutoff)


def markdown(result: dict, meta: dict) -> str:
    lines = [f"{result['molecule']}/{result['basis']}"
             f"{' with frozen core' if result['frozen_core'] else ''}: "
             f"{result['n_spin_orbitals']} spin orbitals, {result['n_determinants']:.3g} "
             f"determinants; MADE state (width {result['hidden']}, phase {result['phase']}) "
             + ("on the selected-CI vector (bench-fci's start, `--prior`); " if result.get("prior")
                else f"fitted to CISD (fidelity {result['cisd_fidelity']:.4f}); ")
             + f"both codes' local energies on {result['local_energy_check']['n']} distinct "
             f"configurations differ by at most "
             f"{result['local_energy_check']['max_abs_diff']:.1e} Ha.",
             "",
             "| variant | nqs draws | nqs distinct | nqs s | NetKet samples | NetKet distinct | "
             "NetKet s | per call | per sample | distinct per s | <E_loc> nqs / NetKet (Ha) |",
             "|" + "---|" * 11]
    for r in result["records"]:
        lines.append(
            f"| {r['variant']} | {r['nqs_draws']:.0f} | {r['nqs_unique']} | {r['nqs_s']:.3f} | "
            f"{r['netket_samples']} | {r['netket_unique']} | {r['netket_s']:.3f} | "
            f"**{r['speedup_per_call']:.1f}x** | {r['speedup_per_sample']:.0f}x | "
            f"{r['speedup_unique_per_s']:.1f}x | {r['nqs_mean_e_loc']:.4f} / "
            f"{r['netket_mean_e_loc']:.4f} |")
    lines += ["", f"Machine: {meta['cpu']}, {meta['cores']} cores, load average "
              f"{meta['load_avg'][0]:.1f} (start) / {meta['load_avg_end'][0]:.1f} (end); jax "
              f"{meta['jax']}, netket {meta['netket']}; median of {meta['repeats']} timed calls "
              f"after a compiling call; NetKet chunk {meta['netket_chunk']} samples."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--molecule", default="N2")
    p.add_argument("--basis", default="6-31g")
    p.add_argument("--no-frozen-core", dest="frozen_core", action="store_false")
    p.add_argument("--hidden", type=int, nargs="+", default=None,
                   help="MADE and phase widths (default: bench-fci's)")
    p.add_argument("--samples", type=int, default=4096,
                   help="matched variant: nominal samples of both codes")
    p.add_argument("--max-unique", type=int, default=4096)
    p.add_argument("--chunk-rows", type=int, default=512)
    p.add_argument("--netket-chunk", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--prior", action="store_true",
                   help="the state bench-fci starts from (the selected-CI vector under the "
                   "network, --start prior) instead of a network fitted to CISD")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    import netket

    meta = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg": list(os.getloadavg()),
            "jax": jax.__version__, "netket": netket.__version__, "repeats": args.repeats,
            "netket_chunk": args.netket_chunk}
    result = run(args)
    meta["load_avg_end"] = list(os.getloadavg())
    table = markdown(result, meta)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ar_sampling_vs_netket.md").write_text(table)
    write_json_atomic(args.out / "ar_sampling_vs_netket.json",
                      {"result": result, "meta": meta, "args": vars(args) | {"out": str(args.out)}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
