"""Autoregressive wavefunctions for molecular occupations, with exact sampling.

References: Wu et al., "NNQS-Transformer" (SC'23); Shang et al., QiankunNet (Nat. Commun. 2025);
Germain, Gregor, Larochelle, "MADE" (ICML 2015).

A configuration ``x`` [2 n_orbitals] (alpha block, then beta block, 0/1) is read as one token per
spatial orbital, ``t_k = x_alpha[k] + 2 x_beta[k]`` in {0: empty, 1: alpha, 2: beta, 3: double},
in the orbital order of the integrals (RHF orbitals: occupied first). The state is

    psi(x) = sqrt(p(x)) exp(i phi(x)),    p(x) = prod_k p(t_k | t_<k),

where each conditional is a softmax over the four tokens from a backbone that sees only the
earlier orbitals (a masked MLP, ``"made"``, or a causal transformer, ``"transformer"``), and the
tokens that would leave too many or too few alpha or beta electrons for the remaining orbitals
are masked out. So ``p`` is normalized over exactly the determinants with ``n_alpha`` and
``n_beta`` electrons (``sum_x p(x) = 1``), and sampling it orbital by orbital never leaves the
sector (:class:`nqs.sampling.autoregressive.AutoregressiveSampler`). The phase ``phi(x)`` is a
separate real MLP of the whole configuration; signs are phases 0 and pi.

Initialisation: the backbone's output layer is zero and its bias favours the Hartree-Fock token
of each orbital by ``hf_logit`` (the state starts near the Hartree-Fock determinant, with every
determinant of the sector at a finite amplitude); the phase network starts small and random (a
real positive state is a stationary point of the energy in the phases, so a phase network
started at exactly zero would never move). :func:`nqs.models.ar_pretrain.fit_singles_doubles`
then fits the state to CISD in the space H connects to Hartree-Fock, which sets the signs of the
single and double excitations.

``log psi`` is returned as a complex scalar (NetKet's convention); the parameters are real.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz
from nqs.errors import InputError
from nqs.hilbert import FermionHilbert
from nqs.models.ci_prior import DeterminantTable, PriorBackbone, PriorPhase

N_TOKENS = 4  # empty, alpha, beta, double
BACKBONES = ("made", "transformer")


def occupations_to_tokens(x: jax.Array, n_orbitals: int) -> jax.Array:
    """``x`` [..., 2 n_orbitals] (0/1) -> tokens [..., n_orbitals] int32 in {0, 1, 2, 3}."""
    a = jnp.round(x[..., :n_orbitals]).astype(jnp.int32)
    b = jnp.round(x[..., n_orbitals:]).astype(jnp.int32)
    return a + 2 * b


def tokens_to_occupations(tokens: jax.Array) -> jax.Array:
    """tokens [..., n_orbitals] -> occupations [..., 2 n_orbitals] (float64 0/1)."""
    a = (tokens & 1).astype(jnp.float64)
    b = ((tokens >> 1) & 1).astype(jnp.float64)
    return jnp.concatenate([a, b], axis=-1)


def sector_mask(tokens: jax.Array, n_alpha: int, n_beta: int) -> jax.Array:
    """Allowed tokens per orbital, bool [n_orbitals, 4].

    Row ``k`` depends on ``tokens[:k]`` only: token ``(a, b)`` is allowed at orbital ``k`` when
    the alpha electrons placed so far plus ``a`` neither exceed ``n_alpha`` nor leave more than
    the ``n_orbitals - k - 1`` later orbitals can hold (the same for beta).
    """
    n = tokens.shape[-1]
    a = tokens & 1
    b = (tokens >> 1) & 1
    a_before = jnp.cumsum(a) - a
    b_before = jnp.cumsum(b) - b
    after = n - 1 - jnp.arange(n)
    tok = jnp.arange(N_TOKENS)
    na = a_before[:, None] + (tok & 1)[None, :]
    nb = b_before[:, None] + ((tok >> 1) & 1)[None, :]
    ok_a = (na <= n_alpha) & (n_alpha - na <= after[:, None])
    ok_b = (nb <= n_beta) & (n_beta - nb <= after[:, None])
    return ok_a & ok_b


def hartree_fock_tokens(n_orbitals: int, n_alpha: int, n_beta: int) -> np.ndarray:
    """The aufbau determinant as tokens [n_orbitals]."""
    k = np.arange(n_orbitals)
    return ((k < n_alpha).astype(np.int32) + 2 * (k < n_beta)).astype(np.int32)


def _hf_bias(n_orbitals: int, n_alpha: int, n_beta: int, hf_logit: float):
    """Output-bias initializer [n_orbitals * 4]: ``hf_logit`` on each orbital's HF token."""
    hf = hartree_fock_tokens(n_orbitals, n_alpha, n_beta)

    def init(key, shape, dtype=jnp.float64):
        del key
        bias = np.zeros((n_orbitals, N_TOKENS))
        bias[np.arange(n_orbitals), hf] = hf_logit
        return jnp.asarray(bias.reshape(shape), dtype)

    return init


class MADE(nn.Module):
    """Masked autoregressive MLP: tokens [n] -> logits [n, 4], row k from tokens[:k] only.

    Input unit (orbital j, token) has degree j + 1, hidden units degrees in 1..n-1 (cyclic),
    output row k degree k + 1; a weight connects degree d_in to d_out when d_out >= d_in
    (hidden) or d_out > d_in (output), so output k sees orbitals j < k only. A direct masked
    input -> output connection is added.
    """

    n_orbitals: int
    n_alpha: int
    n_beta: int
    hidden: Sequence[int] = (64,)
    hf_logit: float = 8.0

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        n = self.n_orbitals
        x = jax.nn.one_hot(tokens, N_TOKENS, dtype=jnp.float64).reshape(-1)  # [4n]
        deg_in = np.repeat(np.arange(1, n + 1), N_TOKENS)
        deg_out = deg_in
        h, deg = x, deg_in
        for i, width in enumerate(self.hidden):
            deg_h = np.arange(width) % max(n - 1, 1) + 1
            mask = deg_h[None, :] >= deg[:, None]
            w = self.param(f"w{i}", nn.initializers.lecun_normal(), (h.shape[0], width))
            b = self.param(f"b{i}", nn.initializers.zeros, (width,))
            # the arithmetic in the parameters' precision (float32 under nqs.precision)
            h = jnp.tanh(h.astype(w.dtype) @ jnp.where(mask, w, 0) + b)
            deg = deg_h
        mask_out = deg_out[None, :] > deg[:, None]
        mask_dir = deg_out[None, :] > deg_in[:, None]
        w_out = self.param("w_out", nn.initializers.zeros, (h.shape[0], n * N_TOKENS))
        w_dir = self.param("w_direct", nn.initializers.zeros, (n * N_TOKENS, n * N_TOKENS))
        b_out = self.param("b_out", _hf_bias(n, self.n_alpha, self.n_beta, self.hf_logit),
                           (n * N_TOKENS,))
        logits = (h.astype(w_out.dtype) @ jnp.where(mask_out, w_out, 0)
                  + x.astype(w_dir.dtype) @ jnp.where(mask_dir, w_dir, 0) + b_out)
        return logits.reshape(n, N_TOKENS)


class CausalTransformer(nn.Module):
    """Decoder-only transformer: tokens [n] -> logits [n, 4], row k from tokens[:k] only.

    The input sequence is a start token followed by ``tokens[:-1]``, with learned position
    embeddings, pre-norm blocks of causal multi-head attention and an MLP.
    """

    n_orbitals: int
    n_alpha: int
    n_beta: int
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    hf_logit: float = 8.0

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        n = self.n_orbitals
        seq = jnp.concatenate([jnp.array([N_TOKENS], jnp.int32), tokens[:-1]])
        h = nn.Embed(N_TOKENS + 1, self.d_model, param_dtype=jnp.float64)(seq)
        pos = self.param("pos", nn.initializers.normal(0.02), (n, self.d_model))
        h = h + pos
        causal = nn.make_causal_mask(jnp.ones((n,)), dtype=jnp.bool_)[0]  # [n, n] as [1, n, n]
        for _ in range(self.n_layers):
            y = nn.LayerNorm(param_dtype=jnp.float64)(h)
            y = nn.MultiHeadDotProductAttention(
                num_heads=self.n_heads, qkv_features=self.d_model, param_dtype=jnp.float64,
            )(y, y, mask=causal)
            h = h + y
            y = nn.LayerNorm(param_dtype=jnp.float64)(h)
            y = nn.Dense(2 * self.d_model, param_dtype=jnp.float64)(y)
            y = nn.Dense(self.d_model, param_dtype=jnp.float64)(nn.gelu(y))
            h = h + y
        h = nn.LayerNorm(param_dtype=jnp.float64)(h)
        out = nn.Dense(N_TOKENS, kernel_init=nn.initializers.zeros, param_dtype=jnp.float64,
                       bias_init=nn.initializers.zeros)(h)
        bias = self.param("b_hf", _hf_bias(n, self.n_alpha, self.n_beta, self.hf_logit),
                          (n, N_TOKENS))
        return out + bias


class PhaseMLP(nn.Module):
    """phi(x): an MLP of the occupations (as +-1) to one real number (radians)."""

    hidden: Sequence[int] = (64,)
    init_scale: float = 0.1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # a floating x keeps its precision (float32 under nqs.precision), as do the Dense layers
        h = 2.0 * (x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float64)) - 1.0
        for width in self.hidden:
            h = jnp.tanh(nn.Dense(width, param_dtype=jnp.float64)(h))
        out = nn.Dense(1, param_dtype=jnp.float64,
                       kernel_init=nn.initializers.normal(self.init_scale / np.sqrt(h.shape[0])))(h)
        return out[0]


class ConditionalPhase(nn.Module):
    """phi(x) = sum_k theta_k(t_k | t_<k) + phi_MLP(x): a phase per orbital and token from a
    masked MLP of the earlier orbitals (same degrees as :class:`MADE`, its own parameters),
    plus the :class:`PhaseMLP` of the whole configuration.

    The signs of the triples and quadruples are products of the signs of their parts; a sum of
    conditional per-orbital phases carries that structure, where one MLP of all occupations
    has to learn it. The per-orbital part starts at exactly zero, so the phase starts as the
    MLP's.
    """

    n_orbitals: int
    n_alpha: int
    n_beta: int
    hidden: Sequence[int] = (64,)
    mlp: nn.Module | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        tokens = occupations_to_tokens(x, self.n_orbitals)
        per_token = MADE(self.n_orbitals, self.n_alpha, self.n_beta, tuple(self.hidden),
                         hf_logit=0.0, name="conditional")(tokens)  # [n, 4], zero at start
        phase = jnp.sum(jnp.take_along_axis(per_token, tokens[:, None], axis=1))
        mlp = self.mlp if self.mlp is not None else PhaseMLP(tuple(self.hidden))
        return phase + mlp(x)


PHASES = ("mlp", "conditional")


class AutoregressiveState(nn.Module):
    """``log psi(x) = 1/2 log p(x) + i phi(x)`` for one configuration ``x`` [2 n_orbitals].

    ``conditional_log_probs(tokens)`` gives the masked ``log p(t_k = . | t_<k)`` [n, 4] that
    the sampler walks down; ``log_psi`` calls the backbone once for all orbitals.
    """

    n_orbitals: int
    n_alpha: int
    n_beta: int
    backbone: nn.Module
    phase: nn.Module

    def conditional_log_probs(self, tokens: jax.Array) -> jax.Array:
        """Masked log-probabilities [n_orbitals, 4] (row k uses tokens[:k]; -inf if masked).

        A row whose prefix already left the sector (possible only for configurations outside
        it) allows every token, so that it stays finite; :meth:`__call__` gives such
        configurations ``log psi = -inf``."""
        logits = self.backbone(tokens)
        mask = sector_mask(tokens, self.n_alpha, self.n_beta)
        mask = mask | ~jnp.any(mask, axis=-1, keepdims=True)
        return jax.nn.log_softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)

    def phase_of(self, x: jax.Array) -> jax.Array:
        """phi(x) in radians (real scalar)."""
        return self.phase(x)

    def __call__(self, x: jax.Array) -> jax.Array:
        tokens = occupations_to_tokens(x, self.n_orbitals)
        logp = self.conditional_log_probs(tokens)
        allowed = jnp.take_along_axis(sector_mask(tokens, self.n_alpha, self.n_beta),
                                      tokens[:, None], axis=1)
        chosen = jnp.where(allowed, jnp.take_along_axis(logp, tokens[:, None], axis=1), 0.0)
        log_p = jnp.where(jnp.all(allowed), jnp.sum(chosen), -jnp.inf)
        return (0.5 * log_p + 1j * self.phase(x)).astype(jnp.complex128)


def make_autoregressive(
    hilbert: FermionHilbert,
    backbone: str = "made",
    *,
    hidden: Sequence[int] = (64,),
    d_model: int = 32,
    n_heads: int = 4,
    n_layers: int = 2,
    phase_hidden: Sequence[int] = (64,),
    hf_logit: float = 8.0,
    phase: str = "mlp",
    prior: DeterminantTable | None = None,
) -> Ansatz:
    """Autoregressive state on ``hilbert`` (see the module docstring).

    Args:
      backbone: ``"made"`` (masked MLP with ``hidden`` widths; cheap, the CPU default) or
        ``"transformer"`` (``n_layers`` blocks of width ``d_model`` with ``n_heads`` heads).
      phase_hidden: hidden widths of the phase MLP.
      hf_logit: initial preference of each orbital for its Hartree-Fock token (logit units).
      phase: ``"mlp"`` (:class:`PhaseMLP` of the occupations) or ``"conditional"``
        (:class:`ConditionalPhase`: per-orbital phases from a masked MLP plus that MLP).
      prior: a selected-CI vector the state starts from exactly (:mod:`nqs.models.ci_prior`):
        the backbone's logits (no Hartree-Fock bias then) correct the vector's conditionals,
        and the phase network gives the phases outside it.
    """
    if not isinstance(hilbert, FermionHilbert):
        raise InputError("the autoregressive ansatz is for molecular (fermion) Hilbert spaces")
    n, na, nb = hilbert.n_orbitals, hilbert.n_alpha, hilbert.n_beta
    if any(int(h) <= 0 for h in hidden) or any(int(h) <= 0 for h in phase_hidden):
        raise InputError("hidden-layer widths must be positive integers")
    if prior is not None:
        if prior.n_orbitals != n:
            raise InputError(f"the prior has {prior.n_orbitals} orbitals, the space {n}")
        hf_logit = 0.0  # the prior starts the state at its vector, not at Hartree-Fock
    if backbone == "made":
        net = MADE(n, na, nb, tuple(int(h) for h in hidden), hf_logit)
    elif backbone == "transformer":
        if d_model <= 0 or n_heads <= 0 or n_layers <= 0 or d_model % n_heads:
            raise InputError(f"transformer needs positive sizes with d_model divisible by "
                             f"n_heads, got d_model={d_model}, n_heads={n_heads}")
        net = CausalTransformer(n, na, nb, d_model, n_heads, n_layers, hf_logit)
    else:
        raise InputError(f"unknown autoregressive backbone {backbone!r}; "
                         f"choose {' or '.join(BACKBONES)}")
    widths = tuple(int(h) for h in phase_hidden)
    if phase == "mlp":
        phase_net = PhaseMLP(widths)
    elif phase == "conditional":
        phase_net = ConditionalPhase(n, na, nb, widths, PhaseMLP(widths))
    else:
        raise InputError(f"unknown autoregressive phase {phase!r}; choose {' or '.join(PHASES)}")
    if prior is not None:
        net, phase_net = PriorBackbone(net, prior), PriorPhase(phase_net, prior)
    module = AutoregressiveState(n, na, nb, net, phase_net)
    # log|psi| = log p / 2 from the backbone alone, the phase from the phase network alone
    return Ansatz(module, amplitude_phase=("backbone", "phase"))


def is_autoregressive(ansatz: Ansatz) -> bool:
    """Whether ``ansatz`` is normalized and samples exactly (:class:`AutoregressiveState`, also
    evaluated in float32 by :func:`nqs.precision.with_dtype`)."""
    from nqs.precision import Float32Module

    module = ansatz.module
    if isinstance(module, Float32Module):
        module = module.module
    return isinstance(module, AutoregressiveState)
