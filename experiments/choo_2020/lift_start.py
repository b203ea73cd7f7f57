"""Can a natural-gradient step lift a truncated fitted start? Rows and shifts, exactly judged.

The autoregressive state is fitted (as ``nqs molecule`` does) to the ``--fit-max``
determinants of largest weight of the selected CI target, so the determinants left out hold
near-zero amplitudes. Then ``--steps`` minSR steps, with the rows of the least squares chosen by
``--rows``:

- ``all``: every determinant, exact weights ``p = |psi|^2`` (the ideal; enumerable spaces only);
- ``draws``: the distinct determinants of ``--draws`` exact autoregressive draws, weights
  ``p`` on them (renormalized);
- ``connected``: those plus the ``--connected`` determinants outside the draws of largest
  first-order amplitude ``|sum_{x in draws} H_yx psi_x| / |H_yy - E|``, weights ``p`` on all.

Local energies at the rows are exact (``(H psi)_y / psi_y``; the autoregressive state is
normalized, so this is what the engine computes at any row). The step is judged by the exact
energy after it (Levenberg-Marquardt): a rise rejects the step and multiplies the shift by 10,
an accepted step divides it by 10 down to ``--shift``.

    python experiments/choo_2020/lift_start.py --molecule H2O --fit-max 20 --rows all
    python experiments/choo_2020/lift_start.py --molecule NH3 --fit-max 59 --rows connected
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import nqs  # noqa: F401  (float64)
from hamiltonians.molecule import compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.errors import InputError
from nqs.exact import configuration_keys, sparse_hamiltonian
from nqs.models.ar_pretrain import fit_singles_doubles, selected_target
from nqs.models.autoregressive import make_autoregressive
from nqs.optim.flat import real_flat
from nqs.optim.jacobian import centred_jacobian_rows
from nqs.optim.sr import natural_gradient_minsr
from nqs.sampling.autoregressive import AutoregressiveSampler
from nqs.sampling.exact import batched_log_psi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--molecule", default="H2O")
    ap.add_argument("--basis", default="sto-3g")
    ap.add_argument("--fit-max", type=int, default=20)
    ap.add_argument("--rows", choices=("all", "draws", "connected"), default="connected")
    ap.add_argument("--connected", type=int, default=1024)
    ap.add_argument("--draws", type=int, default=100_000)
    ap.add_argument("--max-unique", type=int, default=1024)
    ap.add_argument("--shift", type=float, default=1e-6, help="smallest diagonal shift")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--fit-steps", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judge", choices=("exact", "sampled"), default="exact",
                    help="accept a step by the exact energy after it, or by the sampled one "
                         "(its draws' estimate, within two error bars of the last accepted)")
    args = ap.parse_args()
    if min(args.fit_max, args.connected, args.draws, args.steps, args.hidden) < 1:
        ap.exit(2, "lift_start.py: sizes and counts must be positive integers\n")
    try:
        integrals, _ = compute_integrals(from_preset(args.molecule, args.basis))
    except (InputError, KeyError, ValueError, RuntimeError) as err:
        ap.exit(2, f"lift_start.py: {err}\n")
    ham = MolecularHamiltonian(integrals)
    hilbert = ham.hilbert
    sh = sparse_hamiltonian(ham)
    n = len(sh.states)
    hmat = sp.csr_matrix((sh.vals, (sh.rows, sh.cols)), shape=(n, n))
    e_fci = float(spla.eigsh(hmat, k=1, which="SA")[0][0])
    diag = hmat.diagonal()
    keys = configuration_keys(sh.states, hilbert)
    order = np.argsort(keys)
    print(f"{args.molecule}/{args.basis}: {n} determinants, E(FCI) {e_fci:.8f}", flush=True)

    ansatz = make_autoregressive(hilbert, "made", hidden=(args.hidden,),
                                 phase_hidden=(args.hidden,))
    x0 = jnp.asarray(hilbert.hartree_fock_state())
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(args.seed), x0)
    info: dict = {}
    target = selected_target(ham, rounds=3, pt2_tolerance=1e-3, info=info)
    t0 = time.perf_counter()
    params, fid = fit_singles_doubles(
        ansatz, ham, params, target=target, steps=args.fit_steps, final_lr_fraction=0.01,
        target_fidelity=0.99995, refine_steps=20, max_fit=args.fit_max, given_is_root=True,
        target_energy=info.get("e_var"), info=info)
    print(f"fit: {info['fit_size']} of {info['target_size']} determinants, fidelity {fid:.5f}, "
          f"root there {1e3 * (info['fit_e_var'] - e_fci):.2f} mHa above FCI "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    flat, unflatten = real_flat(params)
    print(f"parameters: {flat.size}", flush=True)
    log_psi_all = jax.jit(lambda v: batched_log_psi(ansatz, unflatten(v), jnp.asarray(sh.states)))

    def log_psi_flat(v: jax.Array, x: jax.Array) -> jax.Array:
        return ansatz.log_psi(unflatten(v), x)

    def state(v: jax.Array) -> tuple[np.ndarray, np.ndarray, float]:
        psi = np.exp(np.asarray(log_psi_all(v)))
        hpsi = hmat @ psi
        return psi, hpsi, float(np.real(np.vdot(psi, hpsi)) / np.vdot(psi, psi).real)

    sampler = AutoregressiveSampler(hilbert, n_samples=args.draws, max_unique=args.max_unique)
    sample = jax.jit(lambda key, p, s: sampler.sample(key, ansatz, p, s))
    s_state = sampler.init(jax.random.PRNGKey(1), ansatz, params)
    key = jax.random.PRNGKey(args.seed + 7)

    def sampled_energy(v: jax.Array, hpsi_v: np.ndarray, psi_v: np.ndarray, k: jax.Array):
        nonlocal s_state
        samples, s_state, sinfo = sample(k, unflatten(v), s_state)
        m = int(sinfo["n_unique"])
        idx = order[np.searchsorted(keys[order], configuration_keys(
            np.asarray(samples.x[:m]), hilbert))]
        wd = np.asarray(samples.weights[:m])
        el = np.real(hpsi_v[idx] / psi_v[idx])
        mean = float(np.sum(wd * el))
        err = float(np.sqrt(np.sum(wd * (el - mean) ** 2) / float(samples.n_draws)))
        return mean, err

    psi, hpsi, e = state(flat)
    key, sub = jax.random.split(key)
    e_judge, err_judge = sampled_energy(flat, hpsi, psi, sub)
    print(f"step 0: E - E(FCI) = {1e3 * (e - e_fci):.3f} mHa", flush=True)
    shift = args.shift
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        if args.rows == "all":
            rows = np.arange(n)
        else:
            key, sub = jax.random.split(key)
            samples, s_state, sinfo = sample(sub, unflatten(flat), s_state)
            m = int(sinfo["n_unique"])
            drawn = order[np.searchsorted(keys[order], configuration_keys(
                np.asarray(samples.x[:m]), hilbert))]
            rows = drawn
            if args.rows == "connected":
                v = np.zeros_like(psi)
                v[drawn] = psi[drawn]
                score = np.abs(hmat @ v) / np.maximum(np.abs(diag - e), 1e-3)
                score[drawn] = 0.0
                extra = np.argsort(-score)[: args.connected]
                rows = np.concatenate([drawn, extra[score[extra] > 0]])
        p = np.abs(psi[rows]) ** 2
        w = p / p.sum()
        e_loc = hpsi[rows] / psi[rows]
        e_rows = float(np.real(np.sum(w * e_loc)))
        jac = centred_jacobian_rows(log_psi_flat, flat, jnp.asarray(sh.states[rows]),
                                    jnp.asarray(w))
        jac = jnp.concatenate([jac[:, 0], jac[:, 1]], axis=0)
        c = np.sqrt(w) * (e_loc - e_rows)
        eps = 2.0 * jnp.asarray(np.concatenate([c.real, c.imag]))
        while True:
            delta = natural_gradient_minsr(jac, eps, shift)
            new = flat - args.lr * delta
            psi_n, hpsi_n, e_n = state(new)
            if args.judge == "exact":
                ok = e_n <= e + 1e-9
            else:
                key, sub = jax.random.split(key)
                ej_n, errj_n = sampled_energy(new, hpsi_n, psi_n, sub)
                ok = ej_n <= e_judge + 2.0 * np.hypot(err_judge, errj_n) + 1e-9
            if ok or shift >= 1.0:
                break
            shift *= 10.0
        accepted = ok
        if accepted:
            flat, psi, hpsi, e = new, psi_n, hpsi_n, e_n
            if args.judge == "sampled":
                e_judge, err_judge = ej_n, errj_n
            shift = max(shift / 10.0, args.shift)
        print(f"step {step}: rows {len(rows)}, E(rows) - E(FCI) {1e3 * (e_rows - e_fci):.3f}, "
              f"E - E(FCI) = {1e3 * (e - e_fci):.3f} mHa, shift {shift:.0e}"
              f"{'' if accepted else ' (rejected)'}  {time.perf_counter() - t0:.0f} s",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
