"""FermiNet (Pfau, Spencer, Matthews & Foulkes, Phys. Rev. Research 2, 033429, 2020).

A real-space wavefunction of ``n_alpha + n_beta`` electrons around fixed nuclei (atomic units,
lengths in bohr). Input: ONE configuration ``r`` of shape ``[n_el, 3]``, the alpha electrons
first. Output: ``(sign, log|psi|)``.

Network:

* one-electron features ``h_i = (r_i - R_I, |r_i - R_I|)_I``, shape ``[n_el, 4 n_atoms]``;
  two-electron features ``h_ij = (r_i - r_j, |r_i - r_j|)``, shape ``[n_el, n_el, 4]``;
* ``L`` layers; layer ``l`` maps ``f_i = (h_i, <h>_alpha, <h>_beta, <h_ij>_{j in alpha},
  <h_ij>_{j in beta})`` through ``tanh(W f_i + b)`` (one-electron stream, width ``d1``) and
  ``h_ij`` through ``tanh(V h_ij + c)`` (two-electron stream, width ``d2``), with residual
  connections where the widths agree; the last layer updates only the one-electron stream and
  the orbitals read the final ``f_i``;
* orbitals ``phi_k^{s}(r_i) = (w_k . f_i) * env_k(r_i)``, one linear map per spin channel, with
  envelopes ``'isotropic'``: ``sum_I pi_kI exp(-|sigma_kI| |r_i - R_I|)`` or ``'full'``:
  ``sum_I pi_kI exp(-|Sigma_kI (r_i - R_I)|)`` (``Sigma_kI`` a 3x3 matrix);
* ``psi = sum_k det[phi_k^alpha] det[phi_k^beta]`` (block-diagonal, default) or
  ``psi = sum_k det[phi_k]`` with ``[n_el, n_el]`` matrices (``full_det=True``), summed in log
  space from the slogdets (stable).

Exchanging two same-spin electrons swaps two rows of a determinant, so ``psi`` is antisymmetric
within each spin channel by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.errors import InputError

Params = Any
Layers = tuple[tuple[int, int], ...]
DEFAULT_LAYERS: Layers = ((256, 32),) * 4


def _norm(x: jax.Array, keepdims: bool = True) -> jax.Array:
    return jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=keepdims))


class Envelope(nn.Module):
    """Exponentially decaying envelope multiplying the orbitals of one spin channel.

    Attributes:
        n_out: number of orbitals times determinants.
        kind: ``'isotropic'`` or ``'full'`` (anisotropic, a 3x3 matrix per atom and orbital).
    """

    n_out: int
    kind: str = "isotropic"
    param_dtype: Any = jnp.float64

    @nn.compact
    def __call__(self, ae: jax.Array, r_ae: jax.Array) -> jax.Array:
        """ae: ``[n, n_atoms, 3]`` (bohr), r_ae: ``[n, n_atoms, 1]`` -> ``[n, n_out]``."""
        n_atoms = ae.shape[1]
        pi = self.param("pi", nn.initializers.ones, (n_atoms, self.n_out), self.param_dtype)
        if self.kind == "isotropic":
            sigma = self.param(
                "sigma", nn.initializers.ones, (n_atoms, self.n_out), self.param_dtype
            )
            exponent = jnp.abs(r_ae * sigma[None])  # [n, A, K]
        elif self.kind == "full":

            def eye_init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
                del key
                eye = jnp.eye(3, dtype=dtype)[None, :, :, None]
                return jnp.broadcast_to(eye, shape).astype(dtype)

            sigma = self.param("sigma", eye_init, (n_atoms, 3, 3, self.n_out), self.param_dtype)
            r_sigma = jnp.einsum("iad,adbk->iabk", ae, sigma)  # [n, A, 3, K]
            exponent = jnp.sqrt(jnp.sum(r_sigma * r_sigma, axis=2))  # [n, A, K]
        else:
            raise InputError(f"unknown envelope {self.kind!r}: use 'isotropic' or 'full'")
        return jnp.sum(jnp.exp(-exponent) * pi[None], axis=1)


class FermiNet(nn.Module):
    """FermiNet on one configuration ``r [n_el, 3]`` (alpha electrons first).

    Attributes:
        nuclei: nuclear positions in bohr, a tuple of ``n_atoms`` (x, y, z) tuples.
        n_alpha, n_beta: electrons per spin.
        layers: ``((d1, d2), ...)`` widths of the one- and two-electron streams per layer.
        n_determinants: number of determinants K.
        envelope: ``'isotropic'`` or ``'full'``.
        full_det: one ``[n_el, n_el]`` determinant per k instead of the spin blocks.
        param_dtype: dtype of the parameters (float64 default).
    """

    nuclei: tuple[tuple[float, float, float], ...]
    n_alpha: int
    n_beta: int
    layers: Layers = DEFAULT_LAYERS
    n_determinants: int = 16
    envelope: str = "isotropic"
    full_det: bool = False
    param_dtype: Any = jnp.float64

    def _symmetric_features(self, h1: jax.Array, h2: jax.Array) -> jax.Array:
        n = h1.shape[0]
        na = self.n_alpha
        feats = [h1]
        for lo, hi in ((0, na), (na, n)):
            if hi > lo:
                g = jnp.mean(h1[lo:hi], axis=0, keepdims=True)
                feats.append(jnp.broadcast_to(g, (n, g.shape[-1])))
        for lo, hi in ((0, na), (na, n)):
            if hi > lo:
                feats.append(jnp.mean(h2[:, lo:hi], axis=1))
        return jnp.concatenate(feats, axis=-1)

    @nn.compact
    def orbitals(self, r: jax.Array) -> list[jax.Array]:
        """Orbital matrices (envelopes included), rows = electrons, columns = orbitals.

        Args:
            r: ``[n_el, 3]`` electron positions in bohr.

        Returns:
            block-diagonal: ``[alpha [K, n_alpha, n_alpha], beta [K, n_beta, n_beta]]``
            (a channel with no electrons is left out); full_det: ``[[K, n_el, n_el]]``.
        """
        n = self.n_alpha + self.n_beta
        if r.shape != (n, 3):
            raise InputError(f"expected r of shape {(n, 3)}, got {r.shape}")
        nuclei = jnp.asarray(np.asarray(self.nuclei, dtype=np.float64), dtype=r.dtype)
        ae = r[:, None, :] - nuclei[None, :, :]  # [n, A, 3]
        r_ae = _norm(ae)  # [n, A, 1]
        ee = r[:, None, :] - r[None, :, :]  # [n, n, 3]
        eye = jnp.eye(n, dtype=r.dtype)[..., None]
        r_ee = _norm(ee + eye) * (1.0 - eye)  # [n, n, 1], finite derivatives on the diagonal
        h1 = jnp.concatenate([ae, r_ae], axis=-1).reshape(n, -1)  # [n, 4A]
        h2 = jnp.concatenate([ee, r_ee], axis=-1)  # [n, n, 4]

        n_layers = len(self.layers)
        for l, (d1, d2) in enumerate(self.layers):
            f = self._symmetric_features(h1, h2)
            new1 = jnp.tanh(nn.Dense(d1, param_dtype=self.param_dtype, name=f"one_{l}")(f))
            h1 = h1 + new1 if h1.shape == new1.shape else new1
            if l < n_layers - 1:
                new2 = jnp.tanh(nn.Dense(d2, param_dtype=self.param_dtype, name=f"two_{l}")(h2))
                h2 = h2 + new2 if h2.shape == new2.shape else new2
        h = self._symmetric_features(h1, h2)  # [n, D]

        k = self.n_determinants
        mats = []
        for s, (lo, size) in enumerate(((0, self.n_alpha), (self.n_alpha, self.n_beta))):
            if size == 0:
                continue
            n_orb = n if self.full_det else size
            x = h[lo : lo + size]
            orb = nn.Dense(
                k * n_orb, use_bias=False, param_dtype=self.param_dtype, name=f"orbital_{s}"
            )(x)
            env = Envelope(
                k * n_orb, self.envelope, param_dtype=self.param_dtype, name=f"envelope_{s}"
            )(ae[lo : lo + size], r_ae[lo : lo + size])
            orb = (orb * env).reshape(size, k, n_orb)
            mats.append(jnp.transpose(orb, (1, 0, 2)))  # [K, size, n_orb]
        if self.full_det:
            return [jnp.concatenate(mats, axis=1)]  # [K, n, n]
        return mats

    def __call__(self, r: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``r [n_el, 3]`` -> ``(sign, log|psi|)``, two scalars."""
        mats = self.orbitals(r)
        # Determinants in float64 even when the network runs in float32 (--dtype float32):
        # products of n_el orbitals lose precision first.
        sign = jnp.ones((self.n_determinants,), jnp.float64)
        logdet = jnp.zeros((self.n_determinants,), jnp.float64)
        for m in mats:
            s, ld = jnp.linalg.slogdet(m.astype(jnp.float64))
            sign = sign * s
            logdet = logdet + ld
        return log_sum_dets(sign, logdet)


def log_sum_dets(sign: jax.Array, logdet: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Stable ``(sign, log|.|)`` of ``sum_k sign_k exp(logdet_k)``; inputs ``[K]``."""
    shift = jax.lax.stop_gradient(jnp.max(logdet))
    total = jnp.sum(sign * jnp.exp(logdet - shift))
    return jnp.sign(total), jnp.log(jnp.abs(total)) + shift


def _nuclei(atoms: Any) -> tuple[tuple[float, float, float], ...]:
    pos = getattr(atoms, "positions", atoms)
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] == 0:
        raise InputError(f"nuclear positions must have shape [n_atoms, 3], got {pos.shape}")
    return tuple(tuple(float(x) for x in p) for p in pos)


def ferminet_module(
    atoms: Any,
    n_alpha: int,
    n_beta: int,
    layers: Sequence[tuple[int, int]] = DEFAULT_LAYERS,
    n_determinants: int = 16,
    envelope: Literal["isotropic", "full"] = "isotropic",
    full_det: bool = False,
    param_dtype: Any = jnp.float64,
) -> FermiNet:
    """Validated :class:`FermiNet` module (see :func:`make_ferminet` for the arguments)."""
    if n_alpha < 0 or n_beta < 0 or n_alpha + n_beta == 0:
        raise InputError(f"need at least one electron, got n_alpha={n_alpha}, n_beta={n_beta}")
    if n_determinants < 1:
        raise InputError(f"n_determinants must be >= 1, got {n_determinants}")
    layers_t = tuple((int(a), int(b)) for a, b in layers)
    if not layers_t or any(a < 1 or b < 1 for a, b in layers_t):
        raise InputError(f"layers need positive widths, got {layers!r}")
    if envelope not in ("isotropic", "full"):
        raise InputError(f"unknown envelope {envelope!r}: use 'isotropic' or 'full'")
    return FermiNet(
        nuclei=_nuclei(atoms),
        n_alpha=int(n_alpha),
        n_beta=int(n_beta),
        layers=layers_t,
        n_determinants=int(n_determinants),
        envelope=envelope,
        full_det=bool(full_det),
        param_dtype=param_dtype,
    )


def make_ferminet(
    atoms: Any,
    n_alpha: int,
    n_beta: int,
    layers: Sequence[tuple[int, int]] = DEFAULT_LAYERS,
    n_determinants: int = 16,
    envelope: Literal["isotropic", "full"] = "isotropic",
    full_det: bool = False,
    param_dtype: Any = jnp.float64,
) -> tuple[Callable[[jax.Array], Params], Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]]:
    """FermiNet as pure functions.

    Args:
        atoms: an :class:`hamiltonians.realspace.Atoms` or nuclear positions ``[n_atoms, 3]``
            in bohr.
        n_alpha, n_beta: electrons per spin (alpha first in ``r``).
        layers: ``((d1, d2), ...)`` widths of the one-/two-electron streams per layer.
        n_determinants: number of determinants.
        envelope: ``'isotropic'`` or ``'full'``.
        full_det: dense ``[n_el, n_el]`` determinants instead of the spin blocks.
        param_dtype: parameter dtype.

    Returns:
        ``init(key) -> params`` and ``apply(params, r [n_el, 3]) -> (sign, log|psi|)``.
    """
    module = ferminet_module(
        atoms, n_alpha, n_beta, layers, n_determinants, envelope, full_det, param_dtype
    )
    return network_functions(module, n_alpha + n_beta)


def network_functions(module: nn.Module, n_electrons: int) -> tuple[
        Callable[[jax.Array], Params], Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]]:
    """``(init(key) -> params, apply(params, r [n_el, 3]) -> (sign, log|psi|))`` of a
    real-space network module (FermiNet, Psiformer)."""

    @jax.jit  # one compilation is much cheaper than running flax init op by op
    def init(key: jax.Array) -> Params:
        r0 = jax.random.normal(jax.random.PRNGKey(0), (n_electrons, 3), dtype=jnp.float64)
        return module.init(key, r0)

    def apply(params: Params, r: jax.Array) -> tuple[jax.Array, jax.Array]:
        return module.apply(params, r)

    return init, apply


def orbital_function(module: nn.Module) -> Callable[[Params, jax.Array], list[jax.Array]]:
    """``orbitals(params, r [n_el, 3]) -> list of [K, n, n]`` of a real-space network module
    with an ``orbitals`` method (used by pretraining)."""

    def orbitals(params: Params, r: jax.Array) -> list[jax.Array]:
        return module.apply(params, r, method=type(module).orbitals)

    return orbitals


def make_ferminet_orbitals(
    atoms: Any,
    n_alpha: int,
    n_beta: int,
    layers: Sequence[tuple[int, int]] = DEFAULT_LAYERS,
    n_determinants: int = 16,
    envelope: Literal["isotropic", "full"] = "isotropic",
    full_det: bool = False,
    param_dtype: Any = jnp.float64,
) -> Callable[[Params, jax.Array], list[jax.Array]]:
    """``orbitals(params, r [n_el, 3]) -> list of [K, n, n]`` for the same network as
    :func:`make_ferminet` with the same arguments (used by pretraining)."""
    return orbital_function(ferminet_module(
        atoms, n_alpha, n_beta, layers, n_determinants, envelope, full_det, param_dtype
    ))
