"""Expectation values of observables and a variational state object.

    state = VariationalState(ansatz, params, sampler)
    stats = state.expect(operator)        # Stats(mean, error_of_mean, variance, tau_corr, r_hat)

**Monte Carlo** (Markov chains, autoregressive draws): the local estimator

    O_loc(x) = sum_x' <x|O|x'> psi(x') / psi(x),     <O> = sum_i w_i O_loc(x_i),

with the error bar, variance, integrated autocorrelation time and split R-hat of
:func:`nqs.stats.statistics` (``tau_corr`` and ``r_hat`` only for Markov chains).

**Exact summation** (an :class:`nqs.sampling.ExactSampler`, or ``Samples`` with
``n_chains = 0``): the sums over the whole space, written without dividing by amplitudes,

    (O psi)(x) = sum_x' <x|O|x'> psi(x'),   <O> = sum_x conj(psi(x)) (O psi)(x) / sum_x |psi(x)|^2,

``variance = sum_x |(O psi)(x)|^2 / sum_x |psi(x)|^2 - |<O>|^2`` (``<O^dagger O> - |<O>|^2``
inside the space), ``error_of_mean = tau_corr = 0``, ``r_hat = nan``.

**Operators** are :class:`nqs.operator.DiscreteOperator` s. One with ``n_components = K`` and
``row_components int [max_conn]`` (the component of each row of ``flips``) has ``[K]`` local
values (``O_loc(x)_k`` sums the rows of component ``k``): ``K`` observables from one set of
samples (e.g. all spin correlations); every field of the returned ``Stats`` is then ``[K]``.
A :class:`nqs.operator.CombinedComponents` (``Q`` linear combinations of such an operator's
components, e.g. ``S(q)``) is measured from its base's rows: ``offset + O_loc(x) @ matrix``.
An operator with no space yet (a :class:`hamiltonians.pauli.PauliSum` built without one) is
bound to the state's space with its ``on`` method.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz, Params
from nqs.errors import InputError
from nqs.hilbert import FermionHilbert, Hilbert, SpinHilbert, apply_flips
from nqs.local_energy import make_local_energy
from nqs.operator import (
    CombinedComponents,
    DiscreteOperator,
    connected_configurations,
    matches_terms,
)
from nqs.parallel import chunked_map
from nqs.reduced import base_operator, expand, find_reduction, make_reduced_values
from nqs.sampling.base import UNIQUE_DRAWS, Sampler, Samples
from nqs.stats import Stats, statistics, statistics_columns, unique_statistics


def n_components(operator: DiscreteOperator) -> int | None:
    """``K`` for a multi-component operator (module docstring), None for a scalar one."""
    k = getattr(operator, "n_components", None)
    return None if k is None else int(k)


def make_local_values(operator: DiscreteOperator, ansatz: Ansatz
                      ) -> Callable[[Params, jax.Array], jax.Array]:
    """``local_values(params, x [n_sites]) -> O_loc(x)``: a scalar, or ``[K]`` for an operator
    with components. Scalar operators take :func:`nqs.local_energy.make_local_energy` (its
    fastest path); components use the ansatz's cached ratios when it has them."""
    k = n_components(operator)
    if k is None:
        return make_local_energy(operator, ansatz)
    if isinstance(operator, CombinedComponents):
        return _combined(make_local_values(operator.base, ansatz), operator)
    comps = jnp.asarray(np.asarray(operator.row_components, dtype=np.int32))
    fast = ansatz.local_updates
    flip_terms = getattr(operator, "flip_terms", None)
    if (fast is not None and fast.terms is not None and flip_terms is not None
            and getattr(operator, "term_components", None) is not None):
        return _local_values_terms(operator, ansatz, k)

    def local_values(params: Params, x: jax.Array) -> jax.Array:
        sites, mels = operator.flips(x)
        if fast is not None:
            tables = fast.prepare(params)
            cache = fast.init_cache(tables, x)
            log_r, _ = jax.vmap(lambda s: fast.log_ratio(tables, x, cache, s))(sites)
        else:
            x_conn = jax.vmap(lambda s: apply_flips(x, s, operator.hilbert.flip_constant))(sites)
            log_r = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x_conn) \
                - ansatz.log_psi(params, x)
        terms = jnp.where(mels != 0, mels * jnp.exp(log_r), 0.0)
        return jax.ops.segment_sum(terms, comps, num_segments=k)

    return local_values


def _combined(base_values: Callable[[Params, jax.Array], jax.Array],
              operator: CombinedComponents) -> Callable[[Params, jax.Array], jax.Array]:
    """``offset + B_loc(x) @ matrix`` from the base's local values ``B_loc [K]``."""
    matrix = jnp.asarray(operator.matrix)
    offset = jnp.asarray(operator.offset)

    def local_values(params: Params, x: jax.Array) -> jax.Array:
        return offset + _times(base_values(params, x), matrix)

    return local_values


def _times(values: jax.Array, matrix: jax.Array) -> jax.Array:
    """``values [..., K] @ matrix [K, Q]``; a complex ``values`` by a real ``matrix`` as two
    real products (half the work of promoting the matrix to complex)."""
    if jnp.iscomplexobj(values) and not jnp.iscomplexobj(matrix):
        return jax.lax.complex(jnp.real(values) @ matrix, jnp.imag(values) @ matrix)
    return values @ matrix


#: The term path evaluates only the patterns a configuration matches (gathered) when the
#: operator bounds their number (``max_matched_terms``) below this fraction of all patterns.
COMPACT_BELOW = 0.75


def _local_values_terms(operator: Any, ansatz: Ansatz, k: int
                        ) -> Callable[[Params, jax.Array], jax.Array]:
    """Components from static flip patterns and per-pattern ratio tables (the spin RBM): as
    :func:`nqs.local_energy.make_local_energy`'s term path, ``diag [K]`` plus the patterns
    summed into their components (``operator.term_values``, ``operator.term_components``).

    When the operator bounds the number of patterns one configuration matches
    (``max_matched_terms``, e.g. ``N^2 / 4`` antiparallel pairs of the ``N (N - 1) / 2`` spin
    correlations) well below their number, only the matched patterns are evaluated: their
    indices (padded to the bound) select rows of the pattern tables (whose leaves have the
    pattern axis first, :class:`nqs.ansatz.TermUpdates`). The same sum, in another order.
    The indices come from :func:`_antiparallel_pairs` when the patterns are the antiparallel
    pairs of all sites (the correlations), else from ``jnp.nonzero`` over all patterns."""
    fast = ansatz.local_updates
    terms = fast.terms
    flip_terms = operator.flip_terms
    n_patterns = int(flip_terms.sites.shape[0])
    term_comps = jnp.asarray(np.asarray(operator.term_components, dtype=np.int32))
    bound = getattr(operator, "max_matched_terms", None)
    compact = bound is not None and 0 < bound < COMPACT_BELOW * n_patterns
    pairs = _antiparallel_pairs(flip_terms, operator.hilbert, bound) if compact else None

    def local_values_terms(params: Params, x: jax.Array) -> jax.Array:
        tables = fast.prepare(params)
        term_tables = terms.prepare(tables, flip_terms.sites, flip_terms.signs)
        diag, mels = operator.term_values(x)
        connected = matches_terms(flip_terms, x) & (mels != 0)
        cache = fast.init_cache(tables, x)
        if compact:
            if pairs is not None:  # the antiparallel pairs, enumerated from the up and down sites
                idx, valid = pairs(x)
                valid = valid & connected[idx]
            else:  # the matched patterns first, then padding (index 0, masked)
                (idx,) = jnp.nonzero(connected, size=bound, fill_value=0)
                valid = jnp.arange(bound) < jnp.sum(connected)
            sub = jax.tree_util.tree_map(lambda leaf: leaf[idx], term_tables)
            log_abs, phase = terms.ratios(sub, x, cache)
            ratios = jnp.exp(jnp.where(valid, log_abs, 0.0)) * phase
            off = jnp.where(valid, mels[idx] * ratios, 0.0)
            return diag + jax.ops.segment_sum(off, term_comps[idx], num_segments=k)
        log_abs, phase = terms.ratios(term_tables, x, cache)
        ratios = jnp.exp(jnp.where(connected, log_abs, 0.0)) * phase
        off = jnp.where(connected, mels * ratios, 0.0)
        return diag + jax.ops.segment_sum(off, term_comps, num_segments=k)

    return local_values_terms


def _antiparallel_pairs(terms: Any, hilbert: Hilbert, bound: int
                        ) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]] | None:
    """``pairs(x [n_sites]) -> (idx int [bound], valid bool [bound])``: the patterns on the
    antiparallel site pairs of ``x`` (spins +-1), padded, when ``terms`` flip two sites with
    opposite spins, at most one pattern per site pair, on every pair (``N (N - 1) / 2``
    patterns, the spin correlations); None otherwise.

    A configuration with ``u`` up spins has ``u (N - u)`` antiparallel pairs: slot ``s`` is the
    pair of the ``s // (N - u)``-th up site and the ``s % (N - u)``-th down site, its pattern
    read from a static ``[N, N]`` table. Cheaper than ``jnp.nonzero`` over all ``N (N - 1) / 2``
    patterns (a cumulative sum and a scatter per configuration); the same set of patterns.
    """
    sites = np.asarray(terms.sites)
    n = hilbert.n_sites
    if sites.ndim != 2 or sites.shape[1] != 2 or not isinstance(hilbert, SpinHilbert) \
            or not np.all(np.asarray(terms.signs)[:, 1] < 0):
        return None
    table = np.full((n, n), -1, dtype=np.int32)
    table[sites[:, 0], sites[:, 1]] = np.arange(len(sites), dtype=np.int32)
    table[sites[:, 1], sites[:, 0]] = np.arange(len(sites), dtype=np.int32)
    if len(sites) != n * (n - 1) // 2 or np.any(table[~np.eye(n, dtype=bool)] < 0):
        return None  # a repeated pair, or a pair without a pattern
    ups = [(n + int(hilbert.total_sz)) // 2] if hilbert.total_sz is not None else range(n + 1)
    n_slots = max(u * (n - u) for u in ups)
    if n_slots > bound:
        return None
    table_j = jnp.asarray(table)
    slot = jnp.arange(n_slots, dtype=jnp.int32)

    def pairs(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        up = x > 0
        (up_sites,) = jnp.nonzero(up, size=n, fill_value=0)
        (down_sites,) = jnp.nonzero(~up, size=n, fill_value=0)
        n_up = jnp.sum(up, dtype=jnp.int32)
        n_down = jnp.maximum(n - n_up, 1)
        a = slot // n_down
        valid = a < jnp.where(n_up < n, n_up, 0)
        i = up_sites[jnp.minimum(a, n - 1)]
        j = down_sites[slot - a * n_down]
        return jnp.maximum(table_j[i, j], 0), valid

    return pairs


def _o_psi(operator: DiscreteOperator, ansatz: Ansatz, k: int | None
           ) -> Callable[[Params, jax.Array, jax.Array, jax.Array], jax.Array]:
    """``o_psi(params, x, shift, sorted_keys) = (O psi)(x) e^{-shift}`` (scalar or ``[K]``),
    from log psi of every connected configuration (no ratio: exact summation). Connected
    configurations whose key is not in ``sorted_keys`` (the enumerated states) count as
    ``psi = 0``: the state is the ansatz restricted to the enumerated set (e.g. a symmetry
    block, :func:`nqs.problems.hartree_fock_sector`)."""
    hilbert = operator.hilbert
    lo, hi = hilbert.local_values
    n_sites = hilbert.n_sites

    def o_psi(params: Params, x: jax.Array, shift: jax.Array, sorted_keys: jax.Array
              ) -> jax.Array:
        x_conn, mels = connected_configurations(operator, x)
        log_psi = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x_conn)
        keep = mels != 0
        if n_sites <= 63:
            bits = (x_conn > 0.5 * (lo + hi)).astype(jnp.int64)
            keys = bits @ (jnp.int64(1) << jnp.arange(n_sites, dtype=jnp.int64))
            pos = jnp.clip(jnp.searchsorted(sorted_keys, keys), 0, sorted_keys.shape[0] - 1)
            keep = keep & (sorted_keys[pos] == keys)
        terms = jnp.where(keep, mels * jnp.exp(log_psi - shift), 0.0)
        if k is None:
            return jnp.sum(terms)
        comps = jnp.asarray(np.asarray(operator.row_components, dtype=np.int32))
        return jax.ops.segment_sum(terms, comps, num_segments=k)

    return o_psi


#: Connected rows evaluated at once when no chunk size is given (bounds the memory of
#: operators with many rows, e.g. all spin correlations of a large lattice).
ROWS_PER_CHUNK = 1 << 18


def _default_chunk(operator: DiscreteOperator, chunk_size: int | None) -> int | None:
    """``chunk_size``, or samples per chunk holding about :data:`ROWS_PER_CHUNK` rows."""
    if chunk_size is not None:
        return chunk_size
    return max(1, ROWS_PER_CHUNK // max(1, int(operator.max_conn)))


def _exact_stats_fn(operator: DiscreteOperator, ansatz: Ansatz, chunk_size: int | None):
    k = n_components(operator)
    chunk_size = _default_chunk(operator, chunk_size)
    combined = operator if isinstance(operator, CombinedComponents) else None
    if combined is not None:  # (O_q psi)(x) = sum_k matrix[k, q] (B_k psi)(x) + offset_q psi(x)
        one = _o_psi(combined.base, ansatz, n_components(combined.base))
    else:
        one = _o_psi(operator, ansatz, k)
    o_psi = chunked_map(lambda p, xs: one(p[0], xs, p[1], p[2]), chunk_size)
    log_psi = chunked_map(ansatz.log_psi, chunk_size)

    @jax.jit
    def exact(params: Params, states: jax.Array, sorted_keys: jax.Array) -> Stats:
        lp = log_psi(params, states)  # [N]
        shift = jnp.max(jnp.real(lp))
        psi = jnp.exp(lp - shift)
        norm = jnp.sum(jnp.abs(psi) ** 2)
        ops = o_psi((params, shift, sorted_keys), states)  # [N] or [N, K]
        if combined is not None:
            ops = _times(ops, jnp.asarray(combined.matrix)) \
                + psi[:, None] * jnp.asarray(combined.offset)
        conj = jnp.conj(psi) if k is None else jnp.conj(psi)[:, None]
        mean = jnp.sum(conj * ops, axis=0) / norm
        second = jnp.sum(jnp.abs(ops) ** 2, axis=0) / norm
        variance = jnp.maximum(second - jnp.abs(mean) ** 2, 0.0)
        zero = jnp.zeros_like(variance)
        return Stats(mean, zero, variance, zero, jnp.full_like(variance, jnp.nan))

    def run(params: Params, states: np.ndarray) -> Stats:
        states = np.asarray(states, dtype=np.float64)
        hilbert = operator.hilbert
        if hilbert.n_sites <= 63:
            from nqs.exact import configuration_keys

            keys = np.sort(configuration_keys(states, hilbert))
        else:
            keys = np.zeros(1, np.int64)
        return exact(params, jnp.asarray(states), jnp.asarray(keys))

    return run


def _sampled_stats_fn(operator: DiscreteOperator, ansatz: Ansatz, chunk_size: int | None):
    # only the local values are compiled per operator; a scalar's statistics (FFT
    # autocorrelation, rank-normalized R-hat: costly to compile) once per sample shape, shared
    # by all operators; many columns' on the host (nqs.stats.statistics_columns, numba loops)
    values_fn = jax.jit(chunked_map(make_local_values(operator, ansatz),
                                    _default_chunk(operator, chunk_size)))
    vector = n_components(operator) is not None
    reduction = find_reduction(operator, ansatz) if vector else None
    if reduction is not None:
        reduced = make_reduced_values(operator, ansatz, reduction)
        rows = max(int(base_operator(operator).n_components), reduction.n_classes)
        reduced_fn = jax.jit(chunked_map(lambda p, xg: reduced(p, xg[0], xg[1]),
                                         chunk_size or max(1, ROWS_PER_CHUNK // rows)))

    def sampled(params: Params, x: jax.Array, weights: jax.Array, n_chains: int,
                n_draws: jax.Array | None = None) -> Stats:
        if reduction is not None and n_chains >= 1:  # sample s takes group element s mod G
            g = jnp.arange(x.shape[0], dtype=jnp.int32) % reduction.group_size
            stats = statistics_columns(np.asarray(reduced_fn(params, (x, g))),
                                       np.asarray(weights), n_chains)
            return Stats(*(expand(field, reduction, operator) for field in stats))
        values = values_fn(params, x)  # [n] or [n, K]
        if n_chains == UNIQUE_DRAWS:
            if vector:
                return _vector_unique_statistics(values, weights, n_draws)
            return unique_statistics(values, weights, n_draws)
        if vector:  # on the host: sorts (R-hat) and short loops (tau) over many columns
            stats = statistics_columns(np.asarray(values), np.asarray(weights), n_chains)
            return Stats(*(jnp.asarray(field) for field in stats))
        return statistics(values, weights, n_chains=n_chains)

    return sampled


@jax.jit
def _vector_unique_statistics(values: jax.Array, weights: jax.Array, n_draws: jax.Array
                              ) -> Stats:
    """:func:`nqs.stats.unique_statistics` of every column of ``values [n, K]``."""
    return jax.vmap(lambda v: unique_statistics(v, weights, n_draws))(values.T)


def _same_space(a: Hilbert, b: Hilbert) -> bool:
    if isinstance(a, SpinHilbert) and isinstance(b, SpinHilbert):
        return a.n_sites == b.n_sites
    if isinstance(a, FermionHilbert) and isinstance(b, FermionHilbert):
        return (a.n_orbitals, a.n_alpha, a.n_beta) == (b.n_orbitals, b.n_alpha, b.n_beta)
    return False


def bind_operator(operator: Any, hilbert: Hilbert, marshall_sublattice: Any = None
                  ) -> DiscreteOperator:
    """``operator`` acting on ``hilbert``: an operator with an ``on`` method (Pauli sums,
    fermion operators) is bound to it; any other must already act on the same space.

    ``marshall_sublattice [n_sites]`` (0/1): the state lives in the Marshall-rotated basis (a
    model built with ``marshall_sign=True``); operators with a ``marshall_rotated`` method
    (Pauli sums: physical operators) are rotated into it, ``U O U^dagger``; any other operator
    (the model itself) is taken to be written in the state's basis already.

    Raises InputError (one line) for an operator on another space or something that is not an
    operator.
    """
    if marshall_sublattice is not None and hasattr(operator, "marshall_rotated"):
        operator = operator.marshall_rotated(marshall_sublattice)
    on = getattr(operator, "on", None)
    if on is not None:
        current = getattr(operator, "hilbert", None)
        if current is not None and not _same_space(current, hilbert):
            raise InputError(f"the operator acts on {_describe(current)}, the state on "
                             f"{_describe(hilbert)}")
        return operator if current == hilbert else _rebind(operator, hilbert)
    if not callable(getattr(operator, "flips", None)) or not hasattr(operator, "hilbert"):
        raise InputError(f"expect takes a DiscreteOperator (flips, hilbert), got "
                         f"{type(operator).__name__}")
    if not _same_space(operator.hilbert, hilbert):
        raise InputError(f"the operator acts on {_describe(operator.hilbert)}, the state on "
                         f"{_describe(hilbert)}")
    if isinstance(hilbert, SpinHilbert) and hilbert.total_sz is not None \
            and operator.hilbert.total_sz != hilbert.total_sz:
        # its rows may leave the state's sector, where psi is not the state's amplitude
        raise InputError(f"the operator acts on {_describe(operator.hilbert)}, the state on "
                         f"{_describe(hilbert)}; build the operator on the state's space")
    return operator


def _rebind(operator: Any, hilbert: Hilbert) -> Any:
    rebind = getattr(operator, "rebind", None)
    return rebind(hilbert) if rebind is not None else operator.on(hilbert)


def _describe(h: Hilbert) -> str:
    if isinstance(h, FermionHilbert):
        return f"{h.n_orbitals} orbitals with ({h.n_alpha}, {h.n_beta}) electrons"
    sector = "" if h.total_sz is None else f" (sum of x_i = {h.total_sz})"
    return f"{h.n_sites} spins{sector}"


_FN_CACHE: dict[tuple, Callable] = {}
_BIND_CACHE: dict[tuple, tuple[Any, Any]] = {}


def _bind_cached(operator: Any, hilbert: Hilbert, marshall_sublattice: Any) -> Any:
    """:func:`bind_operator`, memoized on the operator object, so that measuring the same
    unbound operator again reuses its compiled estimator."""
    sub = None if marshall_sublattice is None else np.asarray(marshall_sublattice).tobytes()
    key = (id(operator), hilbert, sub)
    hit = _BIND_CACHE.get(key)
    if hit is None or hit[0] is not operator:
        if len(_BIND_CACHE) > 64:
            _BIND_CACHE.clear()
        hit = (operator, bind_operator(operator, hilbert, marshall_sublattice))
        _BIND_CACHE[key] = hit
    return hit[1]


def _cached(kind: str, operator: Any, ansatz: Ansatz, chunk_size: int | None) -> Callable:
    key = (kind, id(operator), ansatz, chunk_size)
    hit = _FN_CACHE.get(key)
    if hit is None or hit[0] is not operator:
        build = _exact_stats_fn if kind == "exact" else _sampled_stats_fn
        if len(_FN_CACHE) > 64:
            _FN_CACHE.clear()
        hit = (operator, build(operator, ansatz, chunk_size))
        _FN_CACHE[key] = hit
    return hit[1]


def expect_samples(ansatz: Ansatz, params: Params, samples: Samples, operator: DiscreteOperator,
                   chunk_size: int | None = None) -> Stats:
    """``<O>`` from ``samples`` (module docstring): Monte Carlo statistics for chains and
    distinct draws, the exact sums over ``samples.x`` for ``n_chains = 0``."""
    if samples.n_chains == 0:
        return _cached("exact", operator, ansatz, chunk_size)(params, jnp.asarray(samples.x))
    fn = _cached("sampled", operator, ansatz, chunk_size)
    return fn(params, samples.x, samples.weights, n_chains=int(samples.n_chains),
              n_draws=samples.n_draws)


def estimator_name(ansatz: Ansatz, operator: DiscreteOperator, exact: bool = False) -> str:
    """Which estimator :func:`expect` uses for a bound ``operator`` in ``ansatz``'s states:
    ``"exact sum"``, ``"all components"`` (every component's own local value; also scalars),
    or ``"symmetry-reduced: G permutations, C orbits"`` (:mod:`nqs.reduced`: Monte Carlo
    samples of a state whose declared symmetry group permutes the components)."""
    if exact:
        return "exact sum"
    reduction = find_reduction(operator, ansatz) if n_components(operator) is not None else None
    return "all components" if reduction is None else reduction.describe()


def expect(ansatz: Ansatz, params: Params, sampler_or_samples: Sampler | Samples,
           operator: Any, *, sampler_state: Any = None, key: jax.Array | None = None,
           chunk_size: int | None = None) -> Stats:
    """Expectation value of ``operator`` in the state ``(ansatz, params)``.

    Args:
      sampler_or_samples: :class:`nqs.sampling.base.Samples` already drawn from this state, or
        a sampler: an exact one sums over its space, a Monte Carlo one draws with
        ``sampler_state`` (``sampler.init`` when None) and ``key`` (PRNGKey(0) when None).
      operator: a :class:`nqs.operator.DiscreteOperator` (scalar or with components), or an
        unbound Pauli sum (bound to the sampler's space).

    Returns :class:`nqs.stats.Stats` (fields ``[K]`` for ``K`` components).
    For repeated measurements with chains carried over, use :class:`VariationalState`.
    """
    if isinstance(sampler_or_samples, Samples):
        samples = sampler_or_samples
        n_sites = samples.x.shape[-1]
        hilbert = getattr(operator, "hilbert", None)
        if hilbert is not None and hilbert.n_sites != n_sites:
            raise InputError(f"the operator acts on {hilbert.n_sites} sites, the samples have "
                             f"{n_sites}")
        if hilbert is None:
            if not hasattr(operator, "marshall_rotated"):  # only spins need no more than a size
                raise InputError("bind the operator to the state's space first: "
                                 "op.on(hilbert)")
            operator = bind_operator(operator, SpinHilbert(n_sites))
        return expect_samples(ansatz, params, samples, operator, chunk_size)
    state = VariationalState(ansatz, params, sampler_or_samples, sampler_state,
                             key=key, chunk_size=chunk_size)
    return state.expect(operator)


class VariationalState:
    """A variational wavefunction with its sampler: ``expect``, ``sample``, ``log_value``.

    Attributes:
      ansatz, params: the wavefunction ``psi(x) = exp(ansatz.log_psi(params, x))``.
      sampler: draws configurations (or enumerates them: exact sums).
      sampler_state: the chains (carried over between calls; ``sampler.init`` when None).
      key: PRNG key, split at every draw.
      chunk_size: evaluate samples this many at a time (memory); default: as many as hold
        about :data:`ROWS_PER_CHUNK` connected rows of the operator measured.
      marshall_sublattice: ``[n_sites]`` 0/1 labels when the state is written in the
        Marshall-rotated basis (a model with ``marshall_sign=True``): Pauli sums are then
        rotated into it (:func:`bind_operator`). :attr:`nqs.driver.VMCResult.state` sets it.

    ``samples`` holds the last draw and is reused by every ``expect`` until ``sample()`` draws
    again or ``params`` is assigned (then the next ``expect`` draws fresh samples), so several
    observables measured in a row see the same samples.
    """

    def __init__(self, ansatz: Ansatz, params: Params, sampler: Sampler,
                 sampler_state: Any = None, *, key: jax.Array | None = None, seed: int = 0,
                 chunk_size: int | None = None, marshall_sublattice: Any = None) -> None:
        self.ansatz = ansatz
        self.marshall_sublattice = marshall_sublattice
        self.sampler = sampler
        self.key = jax.random.PRNGKey(seed) if key is None else key
        self.chunk_size = chunk_size
        self._params = params
        self.sampler_state = sampler_state
        self._samples: Samples | None = None

    @property
    def hilbert(self) -> Hilbert:
        """The sampler's Hilbert space."""
        return self.sampler.hilbert

    @property
    def params(self) -> Params:
        """The parameters; assigning new ones drops the cached samples."""
        return self._params

    @params.setter
    def params(self, value: Params) -> None:
        self._params = value
        self._samples = None

    @property
    def is_exact(self) -> bool:
        """The sampler enumerates the space (exact sums, no Monte Carlo error)."""
        return bool(getattr(self.sampler, "is_exact", False))

    def sample(self) -> Samples:
        """Draw fresh samples (``Samples(x [n, n_sites], weights [n], n_chains)``), carrying
        the chains over; an exact sampler returns the whole space with Born weights."""
        if self.sampler_state is None and not self.is_exact:
            self.key, k_init = jax.random.split(self.key)
            self.sampler_state = self.sampler.init(k_init, self.ansatz, self._params)
        self.key, k = jax.random.split(self.key)
        samples, self.sampler_state, info = self.sampler.sample(k, self.ansatz, self._params,
                                                                self.sampler_state)
        if getattr(self.sampler, "is_unique", False):  # distinct draws first, padded rows after
            samples = _trim_unique(samples, int(info["n_unique"]))
        self._samples = samples
        return samples

    @property
    def samples(self) -> Samples:
        """The last draw (drawn now when there is none)."""
        return self._samples if self._samples is not None else self.sample()

    def log_value(self, x: jax.Array) -> jax.Array:
        """``log psi(x)`` of configurations ``x [n, n_sites]`` (or one ``[n_sites]``), complex."""
        x = jnp.asarray(x, dtype=jnp.float64)
        if x.ndim == 1:
            return self.ansatz.log_psi(self._params, x)
        return _log_values(self.ansatz, self._params, x)

    def estimator(self, operator: Any) -> str:
        """The estimator :meth:`expect` uses for ``operator`` (:func:`estimator_name`)."""
        operator = _bind_cached(operator, self.hilbert, self.marshall_sublattice)
        return estimator_name(self.ansatz, operator, self.is_exact)

    def expect(self, operator: Any) -> Stats:
        """``Stats(mean, error_of_mean, variance, tau_corr, r_hat)`` of ``operator`` (module
        docstring): exact sums for an exact sampler, else statistics over :attr:`samples`."""
        operator = _bind_cached(operator, self.hilbert, self.marshall_sublattice)
        if self.is_exact:
            states = jnp.asarray(np.asarray(self.hilbert.all_states(), dtype=np.float64))
            return _cached("exact", operator, self.ansatz, self.chunk_size)(self._params, states)
        return expect_samples(self.ansatz, self._params, self.samples, operator,
                              self.chunk_size)


@partial(jax.jit, static_argnums=0)
def _log_values(ansatz: Ansatz, params: Params, x: jax.Array) -> jax.Array:
    return jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x)


def _trim_unique(samples: Samples, n_unique: int) -> Samples:
    """The first rows of a buffer of distinct draws, up to the bucket holding the
    ``n_unique`` distinct ones (the rest has weight 0; few compiled shapes, as in the VMC
    step: :func:`nqs.vmc.unique_bucket`)."""
    from nqs.vmc import unique_bucket

    bucket = unique_bucket(n_unique, samples.x.shape[0])
    return samples._replace(x=samples.x[:bucket], weights=samples.weights[:bucket])


def stats_record(stats: Stats) -> dict[str, Any]:
    """JSON-able ``{"mean", "error", "variance", "tau_corr", "r_hat"}`` of an observable
    (lists for ``K`` components; ``"mean_imag"`` only when some imaginary part is nonzero;
    NaN becomes null)."""
    from nqs.io import to_jsonable

    mean = np.asarray(stats.mean)
    record = {"mean": to_jsonable(np.real(mean))}
    if np.iscomplexobj(mean) and np.any(np.imag(mean) != 0):
        record["mean_imag"] = to_jsonable(np.imag(mean))
    for key, value in (("error", stats.error_of_mean), ("variance", stats.variance),
                       ("tau_corr", stats.tau_corr), ("r_hat", stats.r_hat)):
        record[key] = to_jsonable(np.asarray(value))
    return record


def make_observer(ansatz: Ansatz, sampler: Sampler, observables: dict[str, Any],
                  hilbert: Hilbert, chunk_size: int | None = None,
                  marshall_sublattice: Any = None
                  ) -> Callable[[Params, Any, jax.Array], dict[str, dict[str, Any]]]:
    """``observe(params, sampler_state, key) -> {name: stats_record}`` for the driver.

    Every observable is bound to ``hilbert`` now (InputError for a bad name or operator); each
    call draws ONE fresh set of samples from a copy of the chains (the run's own sampler
    state and key are untouched, so logging observables does not change the trajectory) and
    measures every observable on it (exact sums for an exact sampler); the record of an
    operator with components names its ``"estimator"`` (:func:`estimator_name`).
    ``marshall_sublattice``: see :func:`bind_operator`.
    """
    bound = {}
    for name, op in observables.items():
        if not isinstance(name, str) or not name or any(c in name for c in "\n\r"):
            raise InputError(f"observable names must be non-empty one-line strings, got "
                             f"{name!r}")
        bound[name] = bind_operator(op, hilbert, marshall_sublattice)

    def observe(params: Params, sampler_state: Any, key: jax.Array) -> dict[str, dict]:
        state = VariationalState(ansatz, params, sampler, sampler_state, key=key,
                                 chunk_size=chunk_size)
        records = {}
        for name, op in bound.items():
            records[name] = stats_record(state.expect(op))
            if n_components(op) is not None:  # which estimator: all pairs or one per orbit
                records[name]["estimator"] = estimator_name(ansatz, op, state.is_exact)
        return records

    return observe
