"""Psiformer (von Glehn, Spencer & Pfau, "A Self-Attention Ansatz for Ab-initio Quantum
Chemistry", ICLR 2023).

Same conventions as :mod:`nqs.models.ferminet`: ONE configuration ``r [n_el, 3]`` (bohr, the
alpha electrons first) in, ``(sign, log|psi|)`` out; ``orbitals(params, r)`` gives the orbital
matrices that Hartree-Fock pretraining fits.

Network:

* one-electron features only (no two-electron stream): per atom the electron-nucleus vector and
  distance rescaled as in the paper, ``(r_iI log(1 + |r_iI|) / |r_iI|, log(1 + |r_iI|))``, and
  the spin ``+1`` (alpha) or ``-1`` (beta): ``[n_el, 4 n_atoms + 1]``;
* a linear embedding to ``width``; ``L`` layers of multi-head self-attention over the electrons
  (``heads`` heads of ``width / heads``, softmax of scaled dot products, an output projection)
  and a one-layer ``tanh`` MLP, each with a residual connection, and LayerNorm before each block
  (``layer_norm="pre"``), after each residual sum (``"post"``) or none (``"none"``);
* orbitals ``phi_k^s(r_i) = (w_k . h_i) * env_k(r_i)``, a linear map per spin channel times the
  exponential envelopes of FermiNet (:class:`nqs.models.ferminet.Envelope`);
* ``sum_k det[phi_k^alpha] det[phi_k^beta]`` (block-diagonal, the codebase default) or full
  ``[n_el, n_el]`` determinants (``full_det=True``, the paper's choice), summed in log space;
* times the Jastrow factor ``exp(J)`` of the paper,

      J = sum_{i<j, same spin} -1/4 a_par^2 / (a_par + r_ij)
        + sum_{i<j, opposite spin} -1/2 a_anti^2 / (a_anti + r_ij),

  whose slope ``dJ/dr_ij = 1/4`` (parallel) or ``1/2`` (antiparallel) at ``r_ij = 0`` is Kato's
  electron-electron cusp; ``a_par``, ``a_anti`` are parameters (initially 1).

Self-attention is permutation-equivariant and the features carry the spin, so exchanging two
same-spin electrons permutes rows of a determinant and leaves ``J`` unchanged: ``psi`` changes
sign. The attention couples every electron to every other one (dense, like FermiNet's means),
so the forward Laplacian has no sparsity to exploit here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.errors import InputError
from nqs.models.ferminet import (
    Envelope,
    _nuclei,
    log_sum_dets,
    network_functions,
    orbital_function,
)

Params = Any
LAYER_NORMS = ("pre", "post", "none")
# The paper's network: 4 layers, 4 heads of 64 (width 256), 16 determinants.
PAPER_LAYERS, PAPER_HEADS, PAPER_WIDTH = 4, 4, 256


def _norm(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))


def jastrow_value(r: jax.Array, n_alpha: int, alpha_par: jax.Array,
                  alpha_anti: jax.Array) -> jax.Array:
    """The Psiformer's electron-electron Jastrow ``J`` (log of the factor) of ``r [n_el, 3]``.

    Only the pairs ``i < j`` enter (static indices), so no zero distance appears in the
    derivatives.
    """
    n = r.shape[0]
    if n < 2:
        return jnp.zeros((), r.dtype)
    i, j = np.triu_indices(n, k=1)
    r_ij = _norm(r[i] - r[j])[:, 0]  # [n (n - 1) / 2]
    same = (i < n_alpha) == (j < n_alpha)
    par = -0.25 * alpha_par**2 / (alpha_par + r_ij)
    anti = -0.5 * alpha_anti**2 / (alpha_anti + r_ij)
    return jnp.sum(jnp.where(jnp.asarray(same), par, anti))


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over the rows of ``h [n, width]``."""

    width: int
    heads: int
    param_dtype: Any = jnp.float64

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        n = h.shape[0]
        dh = self.width // self.heads

        def proj(name: str) -> jax.Array:
            x = nn.Dense(self.width, use_bias=False, param_dtype=self.param_dtype, name=name)(h)
            return x.reshape(n, self.heads, dh)

        q, k, v = proj("query"), proj("key"), proj("value")
        logits = jnp.einsum("ihd,jhd->hij", q, k) / np.sqrt(dh)
        weights = jax.nn.softmax(logits, axis=-1)  # [heads, n, n]
        out = jnp.einsum("hij,jhd->ihd", weights, v).reshape(n, self.width)
        return nn.Dense(self.width, use_bias=False, param_dtype=self.param_dtype,
                        name="output")(out)


class AttentionStack(nn.Module):
    """Embedding and ``n_layers`` attention + MLP blocks: ``features [n, F] -> h [n, width]``
    (permutation-equivariant in the rows)."""

    n_layers: int
    heads: int
    width: int
    layer_norm: str = "pre"
    param_dtype: Any = jnp.float64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Dense(self.width, use_bias=False, param_dtype=self.param_dtype, name="embed")(x)

        def ln(name: str) -> nn.Module:
            return nn.LayerNorm(param_dtype=self.param_dtype, name=name)

        for l in range(self.n_layers):
            attn = SelfAttention(self.width, self.heads, self.param_dtype, name=f"attention_{l}")
            mlp = nn.Dense(self.width, param_dtype=self.param_dtype, name=f"mlp_{l}")
            if self.layer_norm == "pre":
                h = h + attn(ln(f"ln_attention_{l}")(h))
                h = h + jnp.tanh(mlp(ln(f"ln_mlp_{l}")(h)))
            elif self.layer_norm == "post":
                h = ln(f"ln_attention_{l}")(h + attn(h))
                h = ln(f"ln_mlp_{l}")(h + jnp.tanh(mlp(h)))
            else:
                h = h + attn(h)
                h = h + jnp.tanh(mlp(h))
        return h


class Psiformer(nn.Module):
    """Psiformer on one configuration ``r [n_el, 3]`` (alpha electrons first).

    Attributes:
        nuclei: nuclear positions in bohr, a tuple of ``n_atoms`` (x, y, z) tuples.
        n_alpha, n_beta: electrons per spin.
        n_layers, heads, width: attention layers, heads per layer, model width
            (``width % heads == 0``).
        n_determinants: number of determinants K.
        envelope: ``'isotropic'`` or ``'full'``.
        full_det: one ``[n_el, n_el]`` determinant per k instead of the spin blocks.
        layer_norm: ``'pre'``, ``'post'`` or ``'none'``.
        jastrow: multiply by the electron-electron cusp Jastrow factor.
        param_dtype: dtype of the parameters (float64 default).
    """

    nuclei: tuple[tuple[float, float, float], ...]
    n_alpha: int
    n_beta: int
    n_layers: int = 2
    heads: int = 2
    width: int = 32
    n_determinants: int = 4
    envelope: str = "isotropic"
    full_det: bool = False
    layer_norm: str = "pre"
    jastrow: bool = True
    param_dtype: Any = jnp.float64

    def setup(self) -> None:
        """The submodules (attention stack, orbitals, envelopes, Jastrow), shared by
        ``__call__`` and ``orbitals``."""
        self.stack = self.make_stack()
        n = self.n_alpha + self.n_beta
        maps, envs = [], []
        for s, size in enumerate((self.n_alpha, self.n_beta)):
            n_orb = self.n_determinants * (n if self.full_det else size)
            maps.append(nn.Dense(n_orb, use_bias=False, param_dtype=self.param_dtype,
                                 name=f"orbital_{s}"))
            envs.append(Envelope(n_orb, self.envelope, param_dtype=self.param_dtype,
                                 name=f"envelope_{s}"))
        self.orbital_maps, self.envelopes = maps, envs
        if self.jastrow:
            self.alpha_par = self.param("jastrow_par", nn.initializers.ones, (), self.param_dtype)
            self.alpha_anti = self.param("jastrow_anti", nn.initializers.ones, (),
                                         self.param_dtype)

    def make_stack(self) -> nn.Module:
        """The network between the features and the orbitals (:class:`AttentionStack`;
        :class:`nqs.models.lapnet.LapNet` puts its own here)."""
        return AttentionStack(self.n_layers, self.heads, self.width, self.layer_norm,
                              self.param_dtype)

    def features(self, r: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(x [n, 4 A + 1], ae [n, A, 3], r_ae [n, A, 1])``: rescaled electron-nucleus
        vectors and distances and the spin, and the raw vectors and distances (envelopes)."""
        n = self.n_alpha + self.n_beta
        if r.shape != (n, 3):
            raise InputError(f"expected r of shape {(n, 3)}, got {r.shape}")
        nuclei = jnp.asarray(np.asarray(self.nuclei, dtype=np.float64), dtype=r.dtype)
        ae = r[:, None, :] - nuclei[None, :, :]  # [n, A, 3]
        r_ae = _norm(ae)  # [n, A, 1]
        scale = jnp.log1p(r_ae)
        spin = jnp.asarray([1.0] * self.n_alpha + [-1.0] * self.n_beta, r.dtype)[:, None]
        x = jnp.concatenate([(ae * (scale / r_ae)).reshape(n, -1), scale.reshape(n, -1), spin],
                            axis=-1)
        return x, ae, r_ae

    def orbitals(self, r: jax.Array) -> list[jax.Array]:
        """Orbital matrices (envelopes included, no Jastrow), rows = electrons: block-diagonal
        ``[alpha [K, n_alpha, n_alpha], beta [K, n_beta, n_beta]]`` (an empty channel left out)
        or, with ``full_det``, ``[[K, n_el, n_el]]``."""
        x, ae, r_ae = self.features(r)
        h = self.stack(x)
        n = self.n_alpha + self.n_beta
        k = self.n_determinants
        mats = []
        for s, (lo, size) in enumerate(((0, self.n_alpha), (self.n_alpha, self.n_beta))):
            if size == 0:
                continue
            n_orb = n if self.full_det else size
            orb = self.orbital_maps[s](h[lo : lo + size])
            env = self.envelopes[s](ae[lo : lo + size], r_ae[lo : lo + size])
            orb = (orb * env).reshape(size, k, n_orb)
            mats.append(jnp.transpose(orb, (1, 0, 2)))  # [K, size, n_orb]
        if self.full_det:
            return [jnp.concatenate(mats, axis=1)]
        return mats

    def jastrow_factor(self, r: jax.Array) -> jax.Array:
        """``J`` (the log of the Jastrow factor); 0 without one."""
        if not self.jastrow:
            return jnp.zeros((), jnp.float64)
        return jastrow_value(r, self.n_alpha, self.alpha_par, self.alpha_anti)

    def __call__(self, r: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``r [n_el, 3]`` -> ``(sign, log|psi|)``, two scalars."""
        mats = self.orbitals(r)
        sign = jnp.ones((self.n_determinants,), jnp.float64)
        logdet = jnp.zeros((self.n_determinants,), jnp.float64)
        for m in mats:  # determinants in float64 whatever the network's dtype
            s, ld = jnp.linalg.slogdet(m.astype(jnp.float64))
            sign = sign * s
            logdet = logdet + ld
        sign, log_abs = log_sum_dets(sign, logdet)
        return sign, log_abs + self.jastrow_factor(r).astype(jnp.float64)


def psiformer_module(
    atoms: Any,
    n_alpha: int,
    n_beta: int,
    n_layers: int = 2,
    heads: int = 2,
    width: int = 32,
    n_determinants: int = 4,
    envelope: Literal["isotropic", "full"] = "isotropic",
    full_det: bool = False,
    layer_norm: Literal["pre", "post", "none"] = "pre",
    jastrow: bool = True,
    param_dtype: Any = jnp.float64,
    module_class: type[Psiformer] | None = None,
) -> Psiformer:
    """Validated :class:`Psiformer` module (InputError on bad sizes); ``module_class``: a
    subclass with the same fields to build instead (the LapNet)."""
    if n_alpha < 0 or n_beta < 0 or n_alpha + n_beta == 0:
        raise InputError(f"need at least one electron, got n_alpha={n_alpha}, n_beta={n_beta}")
    check_psiformer_sizes(n_layers, heads, width)
    if n_determinants < 1:
        raise InputError(f"n_determinants must be >= 1, got {n_determinants}")
    if envelope not in ("isotropic", "full"):
        raise InputError(f"unknown envelope {envelope!r}: use 'isotropic' or 'full'")
    if layer_norm not in LAYER_NORMS:
        raise InputError(f"unknown layer norm {layer_norm!r}: use {', '.join(LAYER_NORMS)}")
    return (module_class or Psiformer)(
        nuclei=_nuclei(atoms), n_alpha=int(n_alpha), n_beta=int(n_beta), n_layers=int(n_layers),
        heads=int(heads), width=int(width), n_determinants=int(n_determinants),
        envelope=envelope, full_det=bool(full_det), layer_norm=layer_norm, jastrow=bool(jastrow),
        param_dtype=param_dtype,
    )


def check_psiformer_sizes(n_layers: int, heads: int, width: int) -> None:
    """InputError (one line) unless ``n_layers >= 1``, ``heads >= 1``, ``width >= 1`` and
    ``heads`` divides ``width``."""
    for name, value in (("layers", n_layers), ("heads", heads), ("width", width)):
        if int(value) != value or value < 1:
            raise InputError(f"Psiformer {name} must be a positive integer, got {value!r}")
    if width % heads:
        raise InputError(f"Psiformer width {width} is not divisible by {heads} heads: choose a "
                         "width that is a multiple of the number of heads")


def make_psiformer(
    atoms: Any, n_alpha: int, n_beta: int, **kwargs: Any
) -> tuple[Callable[[jax.Array], Params], Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]]:
    """Psiformer as pure functions, as :func:`nqs.models.ferminet.make_ferminet`.

    Args:
        atoms: an :class:`hamiltonians.realspace.Atoms` or nuclear positions ``[n_atoms, 3]``
            in bohr.
        n_alpha, n_beta: electrons per spin (alpha first in ``r``).
        **kwargs: ``n_layers``, ``heads``, ``width``, ``n_determinants``, ``envelope``,
            ``full_det``, ``layer_norm``, ``jastrow``, ``param_dtype`` (see :class:`Psiformer`).

    Returns:
        ``init(key) -> params`` and ``apply(params, r [n_el, 3]) -> (sign, log|psi|)``.
    """
    return network_functions(psiformer_module(atoms, n_alpha, n_beta, **kwargs), n_alpha + n_beta)


def make_psiformer_orbitals(
    atoms: Any, n_alpha: int, n_beta: int, **kwargs: Any
) -> Callable[[Params, jax.Array], list[jax.Array]]:
    """``orbitals(params, r [n_el, 3]) -> list of [K, n, n]`` of the network of
    :func:`make_psiformer` with the same arguments (pretraining)."""
    return orbital_function(psiformer_module(atoms, n_alpha, n_beta, **kwargs))


def make_attention_stack(
    n_layers: int, heads: int, width: int, layer_norm: str = "pre"
) -> AttentionStack:
    """The attention stack alone (checks of its permutation equivariance)."""
    check_psiformer_sizes(n_layers, heads, width)
    if layer_norm not in LAYER_NORMS:
        raise InputError(f"unknown layer norm {layer_norm!r}: use {', '.join(LAYER_NORMS)}")
    return AttentionStack(int(n_layers), int(heads), int(width), layer_norm)


def psiformer_parameter_count(n_atoms: int, n_el: int, n_layers: int, width: int,
                              n_determinants: int, full_det: bool = False) -> int:
    """Parameters of a Psiformer (isotropic envelopes, block-diagonal unless ``full_det``;
    the spin split taken as the worst case, for size checks)."""
    embed = (4 * n_atoms + 1) * width
    per_layer = 4 * width * width + width * width + width + 4 * width  # qkvo, mlp, 2 LayerNorms
    orbitals = width * n_el * n_determinants * (2 if full_det else 1)
    envelopes = 2 * n_atoms * n_el * n_determinants * (2 if full_det else 1)
    return embed + n_layers * per_layer + orbitals + envelopes + 2
