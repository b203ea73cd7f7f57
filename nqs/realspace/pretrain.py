"""Pretraining the FermiNet orbitals to Hartree-Fock orbitals (Pfau et al. 2020, Sec. III).

PySCF solves RHF (closed shell) or UHF (open shell) in a Gaussian basis. Its occupied orbitals,
evaluated at the electron positions (``mol.eval_gto`` times ``mo_coeff``), give per spin channel
the matrix ``Phi^s_ij = phi^s_j(r_i)``. Every determinant k of the network is fitted by least
squares to the same matrices,

    L(theta) = mean over walkers, k, i, j of (phi_k,ij(r; theta) - Phi_ij(r))^2,

on walkers sampled from ``|psi_HF|^(2 f) |psi_net|^(2 (1 - f))`` (``f = scf_fraction``). For a
full-determinant network the target is the block-diagonal matrix ``diag(Phi^alpha, Phi^beta)``.

Two additions to FermiNet's loss make the fitted network's energy that of Hartree-Fock:

* the derivatives: ``gradient_weight`` (bohr^2) times the squared error of each orbital's
  gradient with respect to its own electron, ``|grad_i phi_k,ij - grad_i Phi_ij|^2``, except
  within about ``1 / Z`` of an all-electron nucleus (:func:`make_cusp_mask`: Gaussian orbitals
  have no cusp there, the network's envelope and the exact orbitals do). For
  ``psi_net = psi_HF e^u`` and a local Hamiltonian, ``<H>_net = <E_loc^HF>_net +
  1/2 <|grad u|^2>_net``: the energy excess is a gradient error, which a fit of the values alone
  leaves (Be with ccECP: 20 to 30 mHa above ECP-RHF, all of it kinetic);
* the core: each walker also enters with one random electron moved to a point at a uniform
  random radius in ``[0, core_radius]`` around a random nucleus (density ``~ 1 / r^2`` there).
  ``|psi|^2`` puts few electrons within a bohr of a nucleus, where the local energy is most
  sensitive to the orbitals (the exponential envelope's cusp, ECP cores).

PySCF solves the SCF on the host, once. The orbitals are then evaluated in JAX inside the jitted
step (:mod:`nqs.realspace.gto`: the contracted Gaussians and PySCF's Cartesian-to-spherical
matrix), on whatever device the walkers live; their derivatives with respect to the electron
positions are JAX's too. No gradient with respect to the network's parameters flows through them.
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

LR_DELAY = 10000.0
"""The pretraining learning rate falls as ``lr / (1 + t / LR_DELAY)`` with the step ``t``: by a
quarter over 3000 steps. The fit is limited by its steps, not by its noise, over the runs used
(up to a few thousand steps: the loss still falls as a power of the step at every rate tried),
and the energy above Hartree-Fock follows the loss; the former 200 cut the rate 15-fold by step
3000 and left Mg with ccECP 3.5 mHa above ECP-RHF (docs/realspace.md, Pseudopotentials)."""

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


def _near_nuclei(key: jax.Array, r: jax.Array, nuclei: jax.Array, radius: float) -> jax.Array:
    """``r [n_walkers, n_el, 3]`` with, per walker, one random electron moved to a uniformly
    random direction and radius in ``[0, radius]`` (bohr) around a random nucleus."""
    n_w, n_el = r.shape[:2]
    k_el, k_nuc, k_dir, k_rad = jax.random.split(key, 4)
    electron = jax.random.randint(k_el, (n_w,), 0, n_el)
    nucleus = jax.random.randint(k_nuc, (n_w,), 0, nuclei.shape[0])
    direction = jax.random.normal(k_dir, (n_w, 3), r.dtype)
    direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
    rad = radius * jax.random.uniform(k_rad, (n_w, 1), r.dtype)
    return r.at[jnp.arange(n_w), electron].set(nuclei[nucleus] + rad * direction)


def _own_gradients(jac: jax.Array, first: int) -> jax.Array:
    """``[rows, ..., m, 3]`` derivatives of row ``i`` of an orbital matrix with respect to its own
    electron ``first + i``, from ``jac [..., rows, m, n_el, 3]`` (``...``: determinants)."""
    rows = jac.shape[-4]
    idx = jnp.arange(rows)
    return jnp.moveaxis(jac, (-4, -2), (0, 1))[idx, first + idx]


def make_cusp_mask(atoms: Any) -> Callable[[jax.Array], jax.Array]:
    """``mask(r [n_el, 3]) -> [n_el]``: ``prod_I (1 - exp(-(Z_I r_iI)^2))`` over the nuclei
    without an ECP (1 for none). Within about ``1 / Z`` bohr of such a nucleus the exact
    orbitals have Kato's cusp and Gaussian ones do not, so their derivatives are not fitted
    there; ECP nuclei (finite potentials, no cusp) are left out of the product."""
    ecps = tuple(getattr(atoms, "ecp", ()) or ())
    keep = [i for i in range(len(atoms.charges)) if not ecps or ecps[i] is None]
    centres = jnp.asarray(np.asarray(atoms.positions, np.float64)[keep]).reshape(-1, 3)
    charges = jnp.asarray(np.asarray(atoms.charges, np.float64)[keep])

    def mask(r: jax.Array) -> jax.Array:
        d2 = jnp.sum((r[:, None, :] - centres[None]) ** 2, axis=-1)  # [n_el, n_keep]
        return jnp.prod(1.0 - jnp.exp(-d2 * charges**2), axis=-1)

    return mask


def make_orbital_loss(orbitals_fn: OrbitalsFn,
                      hf_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
                      full: bool, gradient_weight: float,
                      mask: Callable[[jax.Array], jax.Array] | None = None,
                      ) -> Callable[[Any, jax.Array], jax.Array]:
    """The pretraining loss ``(params, r [n_walkers, n_el, 3]) -> scalar``: the mean over
    walkers, determinants and orbital-matrix elements of ``(phi - Phi)^2 + gradient_weight *
    |grad_i phi - grad_i Phi|^2`` (module docstring; ``gradient_weight`` in bohr^2, 0: values
    only, FermiNet's loss), the latter times ``mask(r)_i`` (:func:`make_cusp_mask`; None: 1)."""

    def one(p: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        targets = jax.lax.stop_gradient(_targets(hf_fn(x), full))
        mats = orbitals_fn(p, x)
        sq = sum(jnp.sum((m - t[None]) ** 2) for m, t in zip(mats, targets, strict=True))
        size = sum(m.size for m in mats)
        if gradient_weight > 0:
            j_net = jax.jacfwd(lambda y: orbitals_fn(p, y))(x)  # [K, rows, m, n_el, 3] each
            j_hf = jax.lax.stop_gradient(jax.jacfwd(lambda y: _targets(hf_fn(y), full))(x))
            m_el = jnp.ones(x.shape[0], x.dtype) if mask is None else mask(x)
            first = 0
            for jn, jh in zip(j_net, j_hf, strict=True):
                g_net, g_hf = _own_gradients(jn, first), _own_gradients(jh, first)
                err = jnp.sum((g_net - g_hf[:, None]) ** 2, axis=(1, 2, 3))  # per row
                rows = jnp.arange(jn.shape[1]) + first
                sq = sq + gradient_weight * jnp.sum(err * m_el[rows])
                first += jn.shape[1]
        return sq, jnp.asarray(size, sq.dtype)

    def loss(p: Any, r: jax.Array) -> jax.Array:
        sq, size = jax.vmap(lambda x: one(p, x))(r)
        return jnp.sum(sq) / jnp.sum(size)

    return loss


def _targets(mats_hf: tuple[jax.Array, jax.Array], full: bool) -> list[jax.Array]:
    alpha, beta = mats_hf
    if full:
        na, nb = alpha.shape[-1], beta.shape[-1]
        top = jnp.concatenate([alpha, jnp.zeros((na, nb), alpha.dtype)], axis=-1)
        bottom = jnp.concatenate([jnp.zeros((nb, na), alpha.dtype), beta], axis=-1)
        return [jnp.concatenate([top, bottom], axis=-2)]
    return [m for m in (alpha, beta) if m.shape[-1] > 0]


def _check(n_steps: int, scf_fraction: float, gradient_weight: float, core_radius: float
           ) -> None:
    if n_steps < 1:
        raise InputError(f"n_steps must be >= 1, got {n_steps}")
    if not 0.0 <= scf_fraction <= 1.0:
        raise InputError(f"scf_fraction must be in [0, 1], got {scf_fraction}")
    if not (gradient_weight >= 0.0 and core_radius >= 0.0):
        raise InputError(f"gradient_weight and core_radius must be >= 0, got {gradient_weight}, "
                         f"{core_radius}")


def _mixture(log_abs_psi_fn: Callable[[Any, jax.Array], Any],
             hf_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]], scf_fraction: float
             ) -> Callable[[Any, jax.Array], jax.Array]:
    """``log`` of ``|psi_HF|^f |psi_net|^(1 - f)``, the walkers' amplitude."""

    def mixture_log_abs(p: Any, r: jax.Array) -> jax.Array:
        out = log_abs_psi_fn(p, r)
        log_net = out[1] if isinstance(out, tuple | list) else out
        log_hf = _hf_log_abs(hf_fn(r)) if scf_fraction > 0 else 0.0
        return scf_fraction * log_hf + (1.0 - scf_fraction) * log_net

    return mixture_log_abs


class PretrainResult(NamedTuple):
    """Result of :func:`pretrain`.

    Attributes:
        params: the pretrained network parameters.
        losses: ``[n_steps]`` loss per step (:func:`make_orbital_loss`).
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
    gradient_weight: float = 1.0,
    core_radius: float = 1.0,
    lr_delay: float = LR_DELAY,
    chunk_size: int | None = None,
) -> PretrainResult:
    """Fit the network orbitals (values and derivatives) to HF orbitals with Adam.

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
        learning_rate: Adam's initial learning rate, falling as ``1 / (1 + t / lr_delay)``
            with the step ``t`` (:data:`LR_DELAY`).
        mcmc_steps: Metropolis moves per step.
        scf_fraction: ``f`` in the sampled density ``|psi_HF|^(2f) |psi_net|^(2(1-f))``.
        width: initial proposal width (bohr), adapted towards acceptance 0.5.
        hf: a precomputed mean-field solution (skips the SCF).
        gradient_weight: weight (bohr^2) of the orbitals' gradient errors in the loss
            (:func:`make_orbital_loss`); 0: values only.
        core_radius: each step also fits every walker with one electron moved within this
            radius (bohr) of a nucleus (module docstring); 0: the walkers only.
        lr_delay: steps over which the learning rate halves (:data:`LR_DELAY`; > 0).
        chunk_size: walkers whose ``log|psi|`` the Metropolis moves evaluate at a time
            (None: all; the run's ``--chunk-size``).

    Returns:
        :class:`PretrainResult`.
    """
    _check(n_steps, scf_fraction, gradient_weight, core_radius)
    if not lr_delay > 0:
        raise InputError(f"lr_delay must be > 0, got {lr_delay}")
    t0 = time.perf_counter()
    if hf is None:
        hf = run_hartree_fock(atoms, basis)
    hf_fn = make_hf_orbitals(hf)
    full = atoms.n_alpha > 0 and atoms.n_beta > 0
    r_test = jnp.asarray(walkers[0])
    full = full and len(orbitals_fn(params, r_test)) == 1
    mcmc_init, mcmc_step = make_mcmc(_mixture(log_abs_psi_fn, hf_fn, scf_fraction),
                                     n_steps=mcmc_steps, chunk_size=chunk_size)
    # decaying slowly: over long runs the loss's noise (fresh walkers each step) sets its floor
    optimizer = optax.adam(lambda t: learning_rate / (1.0 + t / lr_delay))

    loss_fn = make_orbital_loss(orbitals_fn, hf_fn, full, gradient_weight, make_cusp_mask(atoms))
    nuclei = jnp.asarray(np.asarray(atoms.positions, np.float64))

    @jax.jit
    def step(key: jax.Array, p: Any, opt_state: Any, state: MCMCState):
        state = mcmc_init(p, state.r, state.width)  # log-probabilities at the new parameters
        state, acc = mcmc_step(key, p, state)
        r = state.r
        if core_radius > 0:
            r = jnp.concatenate([r, _near_nuclei(jax.random.fold_in(key, 1), r, nuclei,
                                                 core_radius)])
        loss, grads = jax.value_and_grad(loss_fn)(p, r)
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
