"""LapNet (Li, Han, Chen et al., "A computational framework for neural network-based variational
Monte Carlo with Forward Laplacian", Nat. Mach. Intell. 6, 209, 2024): a Psiformer whose
attention weights depend on each pair of electrons only, so the forward Laplacian can skip the
zeros of their Jacobians.

Same conventions as :mod:`nqs.models.psiformer`: ONE configuration ``r [n_el, 3]`` (bohr, the
alpha electrons first) in, ``(sign, log|psi|)`` out; ``orbitals(params, r)`` for pretraining;
the same one-electron features, orbitals, envelopes, determinants and cusp Jastrow.

Network: two streams of width ``width`` start from the same embedding of the one-electron
features,

* the *sparse* stream ``s_i``: after each layer but the last two residual ``tanh`` layers
  applied to each electron alone, ``s_i <- s_i + tanh(W s_i + b)``; ``s_i`` is a function of
  ``r_i`` only;
* the *dense* stream ``d_i``: per layer ``f_i = d_i + O sum_j A_ij V d_j`` and
  ``d_i <- f_i + tanh(M f_i + c)`` (LayerNorm before each block with ``layer_norm="pre"``,
  after each residual sum with ``"post"``), with multi-head attention weights
  ``A_ij = softmax_j(q_i . k_j / sqrt(d_head))`` whose queries and keys come from the *sparse*
  stream: ``q_i = Q s_i``, ``k_j = K s_j``.

So the logit of ``(i, j)`` depends on ``r_i`` and ``r_j`` alone (6 coordinates, not ``3 n``) and
a forward Laplacian with sparsity (folx ``sparsity_threshold`` >= 6, :data:`SPARSITY`)
propagates 3 tangents through the sparse stream and the query/key projections and 6 through the
logits instead of ``3 n``; only the value, output and MLP maps of the dense stream (3 of the 7
``width x width`` products per layer) carry the dense ``3 n`` tangents. The Hessian-trace
Laplacian does one dense Hessian-vector product per coordinate through all of them.

Attention is permutation-equivariant and the features carry the spin, so exchanging two
same-spin electrons permutes rows of a determinant and leaves the Jastrow unchanged: ``psi``
changes sign.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.models.psiformer import (
    Psiformer,
    make_psiformer,
    make_psiformer_orbitals,
    psiformer_module,
)

Params = Any
SPARSITY = 6
"""folx ``sparsity_threshold`` for a LapNet: a logit depends on the 6 coordinates of its pair,
every array before the softmax's sum on at most 6; sums over electrons then go dense."""
SPARSE_LAYERS = 2  # per-electron tanh layers of the sparse stream per layer (LapNet's choice)


class CrossAttention(nn.Module):
    """Multi-head attention over electrons with queries and keys from ``s [n, width]`` and values
    from ``d [n, width]``: ``out_i = O sum_j softmax_j(q_i . k_j / sqrt(dh)) v_j``."""

    width: int
    heads: int
    param_dtype: Any = jnp.float64

    @nn.compact
    def __call__(self, s: jax.Array, d: jax.Array) -> jax.Array:
        """``s, d [n, width]`` -> ``[n, width]``."""
        n = s.shape[0]
        dh = self.width // self.heads

        def proj(name: str, x: jax.Array) -> jax.Array:
            y = nn.Dense(self.width, use_bias=False, param_dtype=self.param_dtype, name=name)(x)
            return y.reshape(n, self.heads, dh)

        q, k, v = proj("query", s), proj("key", s), proj("value", d)
        logits = jnp.einsum("ihd,jhd->hij", q, k) / np.sqrt(dh)
        self.sow("intermediates", "logits", logits)  # a no-op unless asked for (tests)
        weights = jax.nn.softmax(logits, axis=-1)  # [heads, n, n]
        out = jnp.einsum("hij,jhd->ihd", weights, v).reshape(n, self.width)
        return nn.Dense(self.width, use_bias=False, param_dtype=self.param_dtype,
                        name="output")(out)


class LapNetStack(nn.Module):
    """Embedding and ``n_layers`` LapNet blocks: ``features [n, F] -> d [n, width]``
    (permutation-equivariant in the rows; the sparse stream is internal)."""

    n_layers: int
    heads: int
    width: int
    layer_norm: str = "pre"
    param_dtype: Any = jnp.float64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = nn.Dense(self.width, param_dtype=self.param_dtype, name="embed")(x)
        d = s
        pre, post = self.layer_norm == "pre", self.layer_norm == "post"

        def ln(name: str, h: jax.Array, on: bool) -> jax.Array:
            return nn.LayerNorm(param_dtype=self.param_dtype, name=name)(h) if on else h

        for l in range(self.n_layers):
            attn = CrossAttention(self.width, self.heads, self.param_dtype,
                                  name=f"attention_{l}")
            f = d + attn(ln(f"ln_sparse_{l}", s, pre), ln(f"ln_attention_{l}", d, pre))
            f = ln(f"ln_attention_{l}", f, post)
            mlp = nn.Dense(self.width, param_dtype=self.param_dtype, name=f"mlp_{l}")
            d = ln(f"ln_mlp_{l}", f + jnp.tanh(mlp(ln(f"ln_mlp_{l}", f, pre))), post)
            for m in range(SPARSE_LAYERS if l < self.n_layers - 1 else 0):  # the last: unused
                sparse = nn.Dense(self.width, param_dtype=self.param_dtype,
                                  name=f"sparse_{l}_{m}")
                s = s + jnp.tanh(sparse(s))
        return d


class LapNet(Psiformer):
    """LapNet on one configuration ``r [n_el, 3]`` (alpha electrons first): the
    :class:`nqs.models.psiformer.Psiformer` (same attributes, orbitals, envelopes, determinants,
    Jastrow) with the sparse-coupling :class:`LapNetStack` in place of its attention stack."""

    def make_stack(self) -> nn.Module:
        """The :class:`LapNetStack` of this network's sizes."""
        return LapNetStack(self.n_layers, self.heads, self.width, self.layer_norm,
                           self.param_dtype)


def lapnet_module(atoms: Any, n_alpha: int, n_beta: int, **kwargs: Any) -> LapNet:
    """Validated :class:`LapNet` module (InputError on bad sizes); the keyword arguments of
    :func:`nqs.models.psiformer.psiformer_module`."""
    return psiformer_module(atoms, n_alpha, n_beta, module_class=LapNet, **kwargs)


def make_lapnet(atoms: Any, n_alpha: int, n_beta: int, **kwargs: Any) -> Any:
    """LapNet as pure functions, as :func:`nqs.models.psiformer.make_psiformer` (the same
    keyword arguments): ``init(key) -> params``, ``apply(params, r [n_el, 3]) -> (sign,
    log|psi|)``."""
    return make_psiformer(atoms, n_alpha, n_beta, module_class=LapNet, **kwargs)


def make_lapnet_orbitals(atoms: Any, n_alpha: int, n_beta: int, **kwargs: Any) -> Any:
    """``orbitals(params, r [n_el, 3]) -> list of [K, n, n]`` of the network of
    :func:`make_lapnet` with the same arguments (pretraining)."""
    return make_psiformer_orbitals(atoms, n_alpha, n_beta, module_class=LapNet, **kwargs)


def lapnet_parameter_count(n_atoms: int, n_el: int, n_layers: int, width: int,
                           n_determinants: int, full_det: bool = False) -> int:
    """Parameters of a LapNet (isotropic envelopes; the Psiformer's count plus the embedding's
    bias, the sparse stream's LayerNorm per layer and its ``2 (width^2 + width)`` per layer but
    the last; for size checks)."""
    from nqs.models.psiformer import psiformer_parameter_count

    base = psiformer_parameter_count(n_atoms, n_el, n_layers, width, n_determinants, full_det)
    sparse = (n_layers - 1) * SPARSE_LAYERS * (width * width + width)
    return base + width + n_layers * 2 * width + sparse
