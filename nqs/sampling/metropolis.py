"""Metropolis-Hastings sampling of ``|psi(x)|^2`` with many parallel chains.

One *sweep* is ``sweep_size`` Metropolis steps (default ``n_sites``); one sample per chain is
kept after every sweep. Every call of :meth:`MetropolisSampler.sample` first runs
``n_discard_sweeps`` sweeps (thermalisation after the parameter update: the chains are carried
over between calls, so a few sweeps are enough once the optimisation runs; the very first call
starts from uniformly random configurations).

With an ansatz that has :class:`nqs.ansatz.LocalUpdates` each step costs ``O(k M)`` (the
parameter tables are prepared once per call and the cache is rebuilt at the start of every
sweep, so rounding cannot accumulate); otherwise each step evaluates ``log psi`` of the
proposal. When the rule's moves are a static list of spin-flip patterns (local and exchange
moves) and the ansatz has :class:`nqs.ansatz.TermUpdates`, each step reads its move's row of
per-pattern tables instead (the same chain, fewer operations). Chains are vmapped and steps
run in ``lax.scan``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from nqs.ansatz import Ansatz, Params
from nqs.errors import InputError
from nqs.hilbert import Hilbert, apply_flips
from nqs.sampling.base import Samples
from nqs.sampling.rules import Rule


class MetropolisState(NamedTuple):
    """Markov-chain state.

    x: [n_chains, n_sites] current configurations.
    log_psi: [n_chains] complex log psi(x) under the parameters of the last call.
    n_accepted: [n_chains] int64 accepted moves, cumulative over calls.
    n_proposed: [n_chains] int64 proposed moves, cumulative over calls.
    """

    x: jax.Array
    log_psi: jax.Array
    n_accepted: jax.Array
    n_proposed: jax.Array


@dataclass(frozen=True)
class MetropolisSampler:
    """Metropolis sampler (see module docstring).

    Attributes:
      hilbert: the Hilbert space (initial states, flip constant).
      rule: proposal (:mod:`nqs.sampling.rules`; asymmetric rules add their
        Metropolis-Hastings correction).
      n_chains: number of parallel chains.
      n_samples: samples per call, rounded up to a multiple of ``n_chains``.
      sweep_size: Metropolis steps between kept samples (default ``n_sites``).
      n_discard_sweeps: sweeps discarded at the start of every call (default 10).
      power: the chains sample ``|psi|^(2 power)`` (``0 < power <= 1``). Below 1 the
        distribution is flatter (a state peaked on one determinant still visits the others) and
        the samples carry importance weights ``w ~ |psi|^(2 (1 - power))`` normalised to 1, so
        weighted averages are still expectation values in ``|psi|^2``.
      unroll: Metropolis steps per iteration of the compiled loop (``lax.scan(unroll=...)``);
        the same chain, fewer loop iterations (each costs a fixed overhead on the CPU).
      ratio_dtype: ``"float64"`` (default) or ``"float32"``: precision of the acceptance
        ratios on the per-pattern path (:class:`nqs.ansatz.TermUpdates`; local and exchange
        moves of spins), whose tables and cache are then cast to single precision (the cache
        is recomputed in float64 and cast at the start of every sweep): sampling 1.4-1.6x faster;
        the acceptance exponent ``log |psi'/psi|^2`` then carries an absolute error of about
        ``1e-6`` (``tests/test_spin_packed_sampler.py``), i.e. the chain samples ``|psi|^2``
        up to a relative distortion of that order. Samples, ``log psi`` and everything
        downstream stay in float64. Other paths ignore it.
    """

    hilbert: Hilbert
    rule: Rule
    n_chains: int = 16
    n_samples: int = 1024
    sweep_size: int | None = None
    n_discard_sweeps: int = 10
    power: float = 1.0
    unroll: int = 1
    ratio_dtype: str = "float64"

    is_exact: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.n_chains <= 0:
            raise InputError(f"number of chains must be positive, got {self.n_chains}")
        if self.n_samples <= 0:
            raise InputError(f"number of samples must be positive, got {self.n_samples}")
        if self.sweep_size is not None and self.sweep_size <= 0:
            raise InputError(f"sweep size must be positive, got {self.sweep_size}")
        if self.n_discard_sweeps < 0:
            raise InputError(f"discarded sweeps must be >= 0, got {self.n_discard_sweeps}")
        if not 0.0 < self.power <= 1.0:
            raise InputError(f"sampling power must be in (0, 1], got {self.power}")
        if int(self.unroll) != self.unroll or self.unroll < 1:
            raise InputError(f"unroll must be a positive integer, got {self.unroll}")
        if self.ratio_dtype not in ("float64", "float32"):
            raise InputError(f"ratio_dtype must be 'float64' or 'float32', got {self.ratio_dtype!r}")
        check = getattr(self.rule, "check", None)
        if check is not None:
            check(self.hilbert)

    @property
    def n_samples_per_chain(self) -> int:
        """Samples kept per chain and call, ceil(n_samples / n_chains)."""
        return math.ceil(self.n_samples / self.n_chains)

    @property
    def n_samples_total(self) -> int:
        """Rows of :attr:`Samples.x` returned by each call."""
        return self.n_samples_per_chain * self.n_chains

    @property
    def steps_per_sweep(self) -> int:
        """Metropolis moves per sweep: ``sweep_size``, or the number of sites by default."""
        return self.sweep_size if self.sweep_size is not None else self.hilbert.n_sites

    def init(self, key: jax.Array, ansatz: Ansatz, params: Params) -> MetropolisState:
        """Chains at uniformly random configurations of the sector."""
        x = self.hilbert.random_state(key, self.n_chains).astype(jnp.float64)
        log_psi = _batch_log_psi(ansatz, params, x)
        zeros = jnp.zeros((self.n_chains,), jnp.int64)
        return MetropolisState(x, log_psi, zeros, zeros)

    def sample(
        self, key: jax.Array, ansatz: Ansatz, params: Params, state: MetropolisState
    ) -> tuple[Samples, MetropolisState, dict[str, jax.Array]]:
        """``n_samples_total`` samples (row = sample_index * n_chains + chain), weights ``1/n``
        (importance weights with ``power < 1``).

        Jit-compiled internally with the sampler and the ansatz static; also usable inside an
        outer ``jit``.
        """
        x, weights, new_state, info = _sample(self, key, ansatz, params, state)
        return Samples(x, weights, self.n_chains), new_state, info


@partial(jax.jit, static_argnums=(0,))
def _batch_log_psi(ansatz: Ansatz, params: Params, x: jax.Array) -> jax.Array:
    """log psi of a batch, jitted: one compilation rather than an eager op at a time."""
    return jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x)


@partial(jax.jit, static_argnums=(0, 2))
def _sample(
    sampler: MetropolisSampler,
    key: jax.Array,
    ansatz: Ansatz,
    params: Params,
    state: MetropolisState,
) -> tuple[jax.Array, jax.Array, MetropolisState, dict[str, jax.Array]]:
    """Jitted body of :meth:`MetropolisSampler.sample`: ``(x, weights, new state, info)``."""
    c = sampler.hilbert.flip_constant
    rule = sampler.rule
    fast = ansatz.local_updates
    n_steps = sampler.steps_per_sweep
    n_keep = sampler.n_samples_per_chain
    n_discard = sampler.n_discard_sweeps
    n_sites = sampler.hilbert.n_sites
    # rules with state-independent randomness draw a whole sweep's proposals at once
    symmetric = getattr(rule, "symmetric", True)
    predrawn = hasattr(rule, "draw") and hasattr(
        rule, "propose_drawn" if symmetric else "propose_drawn_with_log_ratio")
    power = float(sampler.power)

    # parameter-only tables (e.g. the RBM's cosh / sinh of the weights): once per call
    tables = fast.prepare(params) if fast is not None else None
    # moves that are a static list of flip patterns: one table row per move, once per call
    use_terms = (predrawn and fast is not None and fast.terms is not None
                 and hasattr(rule, "flip_terms") and c == 0.0)
    # single-precision acceptance ratios (opt-in): tables and the cache of the term path only
    single = use_terms and sampler.ratio_dtype == "float32"
    if use_terms:
        flip_terms = rule.flip_terms(n_sites)
        term_tables = fast.terms.prepare(tables, flip_terms.sites, flip_terms.signs)
        if single:
            term_tables = _single(term_tables)

    def fresh_cache(x: jax.Array) -> Any:
        cache = fast.init_cache(tables, x)  # float64, then cast: no error carried over sweeps
        return _single(cache) if single else cache

    def metropolis_step(
        carry: tuple[Any, ...], inputs: tuple[Any, jax.Array]
    ) -> tuple[tuple[Any, ...], None]:
        """One proposal; ``inputs = (pre-drawn noise or a key, log of a uniform number)``."""
        x, log_psi, aux, n_acc = carry
        noise, log_u = inputs
        if not symmetric:  # Metropolis-Hastings: log q(x' -> x) - log q(x -> x')
            sites, log_q = (rule.propose_drawn_with_log_ratio(noise, x) if predrawn
                            else rule.propose_with_log_ratio(noise, x))
        elif predrawn:
            sites, log_q = rule.propose_drawn(noise, x), 0.0
        else:
            sites, log_q = rule.propose(noise, x), 0.0
        x_new = apply_flips(x, sites, c)
        if use_terms:
            log_ratio, aux_new = fast.terms.log_abs_ratio(
                term_tables, x.astype(jnp.float32) if single else x, aux, rule.term_index(noise))
            log_ratio = log_ratio.astype(jnp.float64)
            # a proposal that does not match its pattern (an exchange of parallel spins) is
            # all padding, the identity move: ratio 1, cache unchanged
            moved = sites[0] < n_sites
            log_ratio = jnp.where(moved, log_ratio, 0.0)
            aux_new = jnp.where(moved, aux_new, aux)
        elif fast is not None and fast.log_abs_ratio is not None:
            # the acceptance needs |psi'/psi| only; log_psi then carries the exact real part
            # (all that is read back: log_abs, importance weights) and a stale phase
            log_ratio, aux_new = fast.log_abs_ratio(tables, x, aux, sites)
        elif fast is not None:
            log_ratio, aux_new = fast.log_ratio(tables, x, aux, sites)
        else:
            aux_new = aux
            log_ratio = ansatz.log_psi(params, x_new) - log_psi
        accept = log_u < 2.0 * power * jnp.real(log_ratio) + log_q
        x = jnp.where(accept, x_new, x)
        log_psi = jnp.where(accept, log_psi + log_ratio, log_psi)
        aux = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), aux_new, aux)
        return (x, log_psi, aux, n_acc + accept.astype(jnp.int64)), None

    def sweep(carry: tuple[Any, ...], key: jax.Array) -> tuple[tuple[Any, ...], jax.Array]:
        # the random numbers of a whole sweep in two batched draws, not 3 small ones per step
        k_prop, k_acc = jax.random.split(key)
        log_u = jnp.log(jax.random.uniform(k_acc, (n_steps,), dtype=jnp.float64))
        if fast is not None:
            # fresh cache once per sweep (one [n_sites] x [n_sites, M] product): rounding of the
            # incremental updates cannot build up over more than one sweep
            x, log_psi, _, n_acc = carry
            carry = (x, log_psi, fresh_cache(x), n_acc)
        if predrawn:
            noise = rule.draw(k_prop, n_steps, n_sites)
        else:
            noise = jax.random.split(k_prop, n_steps)
        carry, _ = jax.lax.scan(metropolis_step, carry, (noise, log_u),
                                unroll=int(sampler.unroll))
        return carry, (carry[0], jnp.real(carry[1]))

    def run_chain(key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        log_psi = ansatz.log_psi(params, x)
        aux = fresh_cache(x) if fast is not None else jnp.zeros(())
        carry = (x, log_psi, aux, jnp.zeros((), jnp.int64))
        k_discard, k_keep = jax.random.split(key)
        if n_discard > 0:
            carry, _ = jax.lax.scan(
                lambda cr, k: (sweep(cr, k)[0], None), carry, jax.random.split(k_discard, n_discard)
            )
        carry, (xs, log_abs) = jax.lax.scan(sweep, carry, jax.random.split(k_keep, n_keep))
        x, _, _, n_acc = carry
        return xs, log_abs, x, n_acc

    chain_keys = jax.random.split(key, sampler.n_chains)
    xs, log_abs, x_final, n_acc = jax.vmap(run_chain)(chain_keys, state.x)
    # xs: [n_chains, n_keep, n_sites] -> rows sample_index * n_chains + chain
    x_out = jnp.swapaxes(xs, 0, 1).reshape(n_keep * sampler.n_chains, -1)
    n_prop = (n_discard + n_keep) * n_steps
    # log psi of the final state recomputed exactly (no drift from the accumulated ratios)
    log_psi_final = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x_final)
    new_state = MetropolisState(
        x_final,
        log_psi_final,
        state.n_accepted + n_acc,
        state.n_proposed + n_prop,
    )
    n_total = x_out.shape[0]
    info = {"acceptance": jnp.mean(n_acc) / n_prop}
    if power == 1.0:
        weights = jnp.full((n_total,), 1.0 / n_total)
    else:  # importance weights |psi|^2 / |psi|^(2 power), max-subtracted, normalised
        log_w = 2.0 * (1.0 - power) * jnp.swapaxes(log_abs, 0, 1).reshape(-1)
        w = jnp.exp(log_w - jnp.max(log_w))
        weights = w / jnp.sum(w)
    return x_out, weights, new_state, info


def _single(tree: Any) -> Any:
    """Floating and complex leaves of ``tree`` cast to float32 / complex64 (others kept)."""

    def cast(a: jax.Array) -> jax.Array:
        if jnp.iscomplexobj(a):
            return a.astype(jnp.complex64)
        return a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return jax.tree_util.tree_map(cast, tree)
