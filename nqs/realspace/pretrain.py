"""Pretraining the FermiNet orbitals to Hartree-Fock orbitals (Pfau et al. 2020, Sec. III).

PySCF solves RHF (closed shell) or UHF (open shell) in a Gaussian basis. Its occupied orbitals,
evaluated at the electron positions (``mol.eval_gto`` times ``mo_coeff``), give per spin channel
the matrix ``Phi^s_ij = phi^s_j(r_i)``. Every determinant k of the network is fitted by least
squares to the same matrices,

    L(theta) = mean over walkers, k, i, j of (phi_k,ij(r; theta) - Phi_ij(r))^2,

on walkers sampled from ``|psi_HF|^(2 f) |psi_net|^(2 (1 - f))`` (``f = scf_fraction``). For a
full-determinant network the target is the block-diagonal matrix ``diag(Phi^alpha, Phi^beta)``.

PySCF solves the SCF on the host, once. The orbitals are then evaluated in JAX inside the jitted
step (:mod:`nqs.realspace.gto`: the contracted Gaussians and PySCF's Cartesian-to-spherical
matrix), on whatever device the walkers live. No gradient flows through them (none is needed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.errors import InputError
from nqs.sampling.walkers import MCMCState, make_mcmc

OrbitalsFn = Callable[[Any, jax.Array], list[jax.Array]]
"""``(params, r [n_el, 3]) -> [alpha [K, n_alpha, n_alpha], beta [K, n_beta, n_beta]]`` or,
for a full-determinant network, ``[[K, n_el, n_el]]``."""


class HartreeFock(NamedTuple):
    """A converged mean-field solution.

    Attributes:
        mol: the ``pyscf.gto.Mole`` (bohr).
        coeff_alpha: ``[n_ao, n_alpha]`` occupied alpha MO coefficients.
        coeff_beta: ``[n_ao, n_beta]`` occupied beta MO coefficients.
        energy: the HF energy in Hartree.
    """

    mol: Any
    coeff_alpha: np.ndarray
    coeff_beta: np.ndarray
    energy: float


def run_hartree_fock(
    atoms: Any, basis: str = "ccpvdz", restricted: bool | None = None
) -> HartreeFock:
    """RHF (``restricted=True``, default for closed shells) or UHF (default for open shells).

    Args:
        atoms: a :class:`hamiltonians.realspace.Atoms`.
        basis: Gaussian basis set name.
        restricted: force RHF/UHF; ``None`` picks by ``atoms.spin``.
    """
    from pyscf import scf  # lazy

    mol = atoms.to_pyscf(basis)
    if restricted is None:
        restricted = atoms.spin == 0
    if restricted and atoms.spin != 0:
        mf = scf.ROHF(mol)
    elif restricted:
        mf = scf.RHF(mol)
    else:
        mf = scf.UHF(mol)
    mf.verbose = 0
    energy = float(mf.kernel())
    coeff = np.asarray(mf.mo_coeff)
    if coeff.ndim == 3:
        ca, cb = coeff[0], coeff[1]
    else:
        ca = cb = coeff
    return HartreeFock(mol, ca[:, : atoms.n_alpha].copy(), cb[:, : atoms.n_beta].copy(), energy)


def hf_orbitals_numpy(hf: HartreeFock, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HF orbital matrices on the host.

    Args:
        hf: the mean-field solution.
        r: ``[..., n_el, 3]`` electron positions in bohr (alpha first).

    Returns:
        ``alpha [..., n_alpha, n_alpha]``, ``beta [..., n_beta, n_beta]`` with
        ``[i, j] = phi_j(r_i)``.
    """
    r = np.asarray(r, dtype=np.float64)
    lead = r.shape[:-2]
    n_el = r.shape[-2]
    na = hf.coeff_alpha.shape[1]
    nb = hf.coeff_beta.shape[1]
    mol = hf.mol
    ao = mol.eval_gto("GTOval_cart" if mol.cart else "GTOval_sph", r.reshape(-1, 3))
    ao = ao.reshape(*lead, n_el, -1)
    alpha = ao[..., :na, :] @ hf.coeff_alpha
    beta = ao[..., na:, :] @ hf.coeff_beta
    assert beta.shape[-2] == nb
    return alpha, beta


def make_hf_orbitals(hf: HartreeFock) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """``fn(r [..., n_el, 3]) -> (alpha [..., n_alpha, n_alpha], beta [..., n_beta, n_beta])``,
    ``[i, j] = phi_j(r_i)``, in pure JAX (:mod:`nqs.realspace.gto`): jit, vmap and any device,
    no host round trip. :func:`hf_orbitals_numpy` (PySCF's own evaluation) is the reference."""
    from nqs.realspace.gto import basis_from_pyscf, make_ao_values

    ao = make_ao_values(basis_from_pyscf(hf.mol))
    coeff_alpha = jnp.asarray(hf.coeff_alpha)
    coeff_beta = jnp.asarray(hf.coeff_beta)
    na = hf.coeff_alpha.shape[1]

    def fn(r: jax.Array) -> tuple[jax.Array, jax.Array]:
        values = ao(r)  # [..., n_el, n_ao]
        return values[..., :na, :] @ coeff_alpha, values[..., na:, :] @ coeff_beta

    return fn


def make_hf_log_psi(hf: HartreeFock) -> Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]:
    """The Slater determinant of the occupied HF orbitals as a wavefunction:
    ``fn(params, r [n_el, 3]) -> (sign, log|psi|)`` (``params`` unused), in pure JAX, with the
    same call signature as the networks (so :func:`hamiltonians.realspace.make_local_energy`
    and the samplers take it): ``<E_loc>`` over ``|psi|^2`` is the HF energy."""
    hf_fn = make_hf_orbitals(hf)

    def log_psi(params: Any, r: jax.Array) -> tuple[jax.Array, jax.Array]:
        del params
        return _hf_sign_log(hf_fn(r))

    return log_psi


def _hf_sign_log(mats: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``(sign, log|det|)`` of the product of the spin blocks' determinants (empty blocks: 1)."""
    sign, total = jnp.ones(()), jnp.zeros(())
    for m in mats:
        if m.shape[-1] > 0:
            s, lg = jnp.linalg.slogdet(m)
            sign, total = sign * s, total + lg
    return sign, total


def _hf_log_abs(mats: tuple[jax.Array, jax.Array]) -> jax.Array:
    return _hf_sign_log(mats)[1]


def _targets(mats_hf: tuple[jax.Array, jax.Array], full: bool) -> list[jax.Array]:
    alpha, beta = mats_hf
    if full:
        na, nb = alpha.shape[-1], beta.shape[-1]
        top = jnp.concatenate([alpha, jnp.zeros((na, nb), alpha.dtype)], axis=-1)
        bottom = jnp.concatenate([jnp.zeros((nb, na), alpha.dtype), beta], axis=-1)
        return [jnp.concatenate([top, bottom], axis=-2)]
    return [m for m in (alpha, beta) if m.shape[-1] > 0]


class PretrainResult(NamedTuple):
    """Result of :func:`pretrain`.

    Attributes:
        params: the pretrained network parameters.
        losses: ``[n_steps]`` loss per step (mean squared orbital error).
        walkers: ``[n_walkers, n_el, 3]`` final walkers (bohr), a good start for VMC.
        hf: the mean-field solution used as the target.
        seconds: wall time.
    """

    params: Any
    losses: np.ndarray
    walkers: jax.Array
    hf: HartreeFock
    seconds: float


def pretrain(
    key: jax.Array,
    params: Any,
    atoms: Any,
    orbitals_fn: OrbitalsFn,
    log_abs_psi_fn: Callable[[Any, jax.Array], Any],
    walkers: jax.Array,
    n_steps: int = 100,
    basis: str = "ccpvdz",
    learning_rate: float = 3e-4,
    mcmc_steps: int = 5,
    scf_fraction: float = 0.5,
    width: float = 0.2,
    hf: HartreeFock | None = None,
) -> PretrainResult:
    """Fit the network orbitals to HF orbitals with Adam.

    Args:
        key: PRNG key.
        params: initial network parameters.
        atoms: the system (:class:`hamiltonians.realspace.Atoms`).
        orbitals_fn: ``(params, r [n_el, 3]) -> list of [K, n, n]`` (see
            :func:`nqs.models.ferminet.make_ferminet_orbitals`).
        log_abs_psi_fn: the network ``(params, r) -> log|psi|`` or ``(sign, log|psi|)``.
        walkers: ``[n_walkers, n_el, 3]`` initial positions in bohr.
        n_steps: optimisation steps (one MCMC call of ``mcmc_steps`` moves each).
        basis: Gaussian basis for HF.
        learning_rate: Adam learning rate.
        mcmc_steps: Metropolis moves per step.
        scf_fraction: ``f`` in the sampled density ``|psi_HF|^(2f) |psi_net|^(2(1-f))``.
        width: initial proposal width (bohr), adapted towards acceptance 0.5.
        hf: a precomputed mean-field solution (skips the SCF).

    Returns:
        :class:`PretrainResult`.
    """
    if n_steps < 1:
        raise InputError(f"n_steps must be >= 1, got {n_steps}")
    if not 0.0 <= scf_fraction <= 1.0:
        raise InputError(f"scf_fraction must be in [0, 1], got {scf_fraction}")
    t0 = time.perf_counter()
    if hf is None:
        hf = run_hartree_fock(atoms, basis)
    hf_fn = make_hf_orbitals(hf)
    full = atoms.n_alpha > 0 and atoms.n_beta > 0
    r_test = jnp.asarray(walkers[0])
    full = full and len(orbitals_fn(params, r_test)) == 1

    def mixture_log_abs(p: Any, r: jax.Array) -> jax.Array:
        out = log_abs_psi_fn(p, r)
        log_net = out[1] if isinstance(out, tuple | list) else out
        log_hf = _hf_log_abs(hf_fn(r)) if scf_fraction > 0 else 0.0
        return scf_fraction * log_hf + (1.0 - scf_fraction) * log_net

    mcmc_init, mcmc_step = make_mcmc(mixture_log_abs, n_steps=mcmc_steps)
    optimizer = optax.adam(learning_rate)

    def loss_fn(p: Any, r: jax.Array) -> jax.Array:
        def one(x: jax.Array) -> tuple[jax.Array, jax.Array]:
            targets = _targets(hf_fn(x), full)
            mats = orbitals_fn(p, x)
            sq = sum(
                jnp.sum((m - jax.lax.stop_gradient(t)[None]) ** 2)
                for m, t in zip(mats, targets, strict=True)
            )
            size = sum(m.size for m in mats)
            return sq, jnp.asarray(size, sq.dtype)

        sq, size = jax.vmap(one)(r)
        return jnp.sum(sq) / jnp.sum(size)

    @jax.jit
    def step(key: jax.Array, p: Any, opt_state: Any, state: MCMCState):
        state = mcmc_init(p, state.r, state.width)  # log-probabilities at the new parameters
        state, acc = mcmc_step(key, p, state)
        loss, grads = jax.value_and_grad(loss_fn)(p, state.r)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, state, loss

    state = mcmc_init(params, jnp.asarray(walkers), width)
    opt_state = optimizer.init(params)
    losses = []
    for k in jax.random.split(key, n_steps):
        params, opt_state, state, loss = step(k, params, opt_state, state)
        losses.append(float(loss))
    return PretrainResult(
        params, np.asarray(losses), state.r, hf, time.perf_counter() - t0
    )
