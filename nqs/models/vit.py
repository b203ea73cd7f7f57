"""Vision transformer for spins on a square lattice (Viteritti, Rende, Becca 2023-2024).

One configuration ``x [L*L]`` (row-major, site ``i = x * L + y``) is cut into ``(L/b)^2``
patches of ``b x b`` spins; each patch is embedded linearly in ``d`` dimensions; ``depth``
encoder blocks follow, each ``z <- z + A(LN(z))`` then ``z <- z + MLP(LN(z))`` with *factored
attention*: ``A(z)_i = sum_j alpha_h(r_i - r_j) V_h z_j`` per head ``h``, whose weights depend
only on the (periodic) displacement between patches, not on the spins; the output sums the
patches, ``y = sum_i z_i``, and maps it to a complex ``log psi = sum_k log cosh(y W + c)_k``
(complex ``W [d, d]``, ``c [d]``). Attention weights that depend on displacements only make
``log psi`` invariant under translations by whole patches (multiples of ``b`` sites); the
projection wrapper (:mod:`nqs.models.symmetry`) restores the rest of the group.

Use :func:`make_vit`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz
from nqs.errors import InputError
from nqs.models.rbm import log_cosh


def patch_displacements(n_side: int) -> np.ndarray:
    """``index[i, j]`` of the periodic displacement ``r_i - r_j`` between patches ``i, j`` of an
    ``n_side x n_side`` grid (row-major), in ``[0, n_side^2)``: int32 ``[n_p, n_p]``."""
    r = np.stack(np.unravel_index(np.arange(n_side * n_side), (n_side, n_side)), axis=1)
    d = (r[:, None, :] - r[None, :, :]) % n_side
    return (d[..., 0] * n_side + d[..., 1]).astype(np.int32)


class ViT(nn.Module):
    """Vision transformer with factored attention; ``log psi`` of one configuration.

    Attributes:
      length: linear size L of the square lattice (``L * L`` sites).
      patch: patch side b (divides L).
      embed: embedding dimension d (a multiple of ``heads``).
      depth: number of encoder blocks.
      heads: attention heads.

    Parameters: real embedding, attention (``alpha [heads, n_p]``, values ``[d, d]``), MLP
    (``d -> 2 d -> d``) and layer norms; complex output ``W [d, d]``, ``c [d]``.
    """

    length: int
    patch: int = 2
    embed: int = 8
    depth: int = 2
    heads: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Complex ``log psi`` of one configuration ``x [L*L]`` (a scalar)."""
        L, b, d = self.length, self.patch, self.embed
        n_side = L // b
        n_p = n_side * n_side
        patches = x.reshape(n_side, b, n_side, b).transpose(0, 2, 1, 3).reshape(n_p, b * b)
        z = nn.Dense(d, name="embed", param_dtype=jnp.float64)(patches.astype(jnp.float64))
        disp = patch_displacements(n_side)
        head_dim = d // self.heads
        for layer in range(self.depth):
            y = nn.LayerNorm(name=f"norm_attn{layer}", param_dtype=jnp.float64)(z)
            alpha = self.param(f"alpha{layer}", nn.initializers.normal(1.0 / n_p),
                               (self.heads, n_p), jnp.float64)
            weights = alpha[:, disp]  # [heads, n_p, n_p], spin-independent
            v = nn.Dense(d, use_bias=False, name=f"value{layer}",
                         param_dtype=jnp.float64)(y).reshape(n_p, self.heads, head_dim)
            att = jnp.einsum("hij,jhc->ihc", weights, v).reshape(n_p, d)
            z = z + nn.Dense(d, name=f"attn_out{layer}", param_dtype=jnp.float64)(att)
            y = nn.LayerNorm(name=f"norm_mlp{layer}", param_dtype=jnp.float64)(z)
            y = nn.Dense(2 * d, name=f"mlp_in{layer}", param_dtype=jnp.float64)(y)
            y = nn.Dense(d, name=f"mlp_out{layer}", param_dtype=jnp.float64)(nn.gelu(y))
            z = z + y
        pooled = jnp.sum(z, axis=0)  # [d]
        out = nn.Dense(d, name="output", param_dtype=jnp.complex128,
                       kernel_init=nn.initializers.normal(0.1 / np.sqrt(d)))(
            pooled.astype(jnp.complex128))
        return jnp.sum(log_cosh(out))


def make_vit(length: int, patch: int = 2, embed: int = 8, depth: int = 2,
             heads: int = 2) -> Ansatz:
    """A :class:`ViT` ansatz for the ``length x length`` square lattice (generic path).

    Raises InputError when ``patch`` does not divide ``length`` or ``heads`` does not divide
    ``embed``, or a size is not positive.
    """
    for name, v in (("length", length), ("patch", patch), ("embed", embed), ("depth", depth),
                    ("heads", heads)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0:
            raise InputError(f"ViT {name} must be a positive integer, got {v!r}")
    if length % patch:
        raise InputError(f"the ViT patch size {patch} does not divide the lattice size {length}")
    if embed % heads:
        raise InputError(f"the ViT embedding {embed} is not a multiple of the {heads} heads")
    return Ansatz(ViT(int(length), int(patch), int(embed), int(depth), int(heads)))


def vit_for_lattice(lattice: Any, **kwargs: Any) -> Ansatz:
    """:func:`make_vit` for a square ``lattice`` (InputError for other kinds)."""
    if lattice.kind != "square":
        raise InputError(f"the ViT needs a square lattice, got a {lattice.kind} lattice")
    return make_vit(lattice.extent[0], **kwargs)
