"""float32 networks for the discrete engine: :func:`with_dtype` (``--dtype float32``).

Where the casts are (one place, the ansatz boundary):

* The optimizer keeps a float64 (complex128) *master copy* of the parameters: the state the
  SR / minSR / Adam update acts on and the checkpoint stores.
* On every evaluation the wrapped ansatz rounds the parameters to float32 (complex64), casts the
  configuration to float32 (``+-1`` and ``0/1`` are exact), runs the network in float32 and casts
  its output ``log psi`` up to complex128. The RBM fast paths do the same: their tables
  (``cosh`` / ``sinh`` of the weights, per site and per flip pattern), the cache
  (``tanh theta``) and the factors of the log-derivatives are float32 / complex64, and each
  ratio and factor is cast up to float64 / complex128 on the way out.
* Everything downstream of ``log psi`` is therefore float64: log-psi differences fed to the
  Metropolis acceptance, local energies, statistics, the exact-summation sums, the per-sample
  Jacobian rows (the transpose of the down-cast turns the float32 cotangents into float64 rows
  before any sum over samples), gradients and the SR / minSR solve. Models that need float64
  inside (the backflow determinants) cast up themselves (:mod:`nqs.models.backflow`).

Derivatives of the master parameters are the derivatives of the float32 network, so a float32
run optimizes the same function as a float64 run, evaluated with float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from nqs.ansatz import Ansatz, JacobianStructure, LocalUpdates, Params, TermUpdates
from nqs.errors import InputError

DTYPES = ("float64", "float32")
"""Network precisions of ``--dtype``."""

_DOWN = {jnp.dtype(jnp.float64): jnp.float32, jnp.dtype(jnp.complex128): jnp.complex64}
_UP = {jnp.dtype(jnp.float32): jnp.float64, jnp.dtype(jnp.complex64): jnp.complex128}


def check_dtype(dtype: str) -> str:
    """``dtype`` if it is one of :data:`DTYPES`, else :class:`InputError`."""
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return dtype


def cast_down(tree: Any) -> Any:
    """Every float64 / complex128 leaf of ``tree`` as float32 / complex64 (others unchanged)."""
    return jax.tree_util.tree_map(
        lambda a: a.astype(_DOWN[a.dtype]) if a.dtype in _DOWN else a,
        jax.tree_util.tree_map(jnp.asarray, tree),
    )


def cast_up(tree: Any) -> Any:
    """Every float32 / complex64 leaf of ``tree`` as float64 / complex128 (others unchanged)."""
    return jax.tree_util.tree_map(
        lambda a: a.astype(_UP[a.dtype]) if a.dtype in _UP else a,
        jax.tree_util.tree_map(jnp.asarray, tree),
    )


@dataclass(frozen=True)
class Float32Module:
    """A flax module evaluated in float32 with float64 parameters in and float64 results out.

    ``init`` is the wrapped module's (float64 master parameters); ``apply(params, x, ...)``
    rounds ``params`` and ``x`` to float32 / complex64, applies the module and casts every
    floating-point output leaf up to float64 / complex128.

    Attributes:
      module: the wrapped flax module (built with float64 / complex128 parameters).
    """

    module: Any

    def init(self, key: jax.Array, x: jax.Array, *args: Any, **kwargs: Any) -> Params:
        """The wrapped module's parameters (float64 master copy) for ``x`` [n_sites]."""
        return self.module.init(key, x, *args, **kwargs)

    def apply(self, params: Params, x: jax.Array, *args: Any, **kwargs: Any) -> Any:
        """``module.apply`` in float32: ``params`` and ``x`` [n_sites] cast down, outputs up."""
        return cast_up(self.module.apply(cast_down(params), cast_down(x), *args, **kwargs))


def _ratio_in_float32(ratio_fn: Any) -> Any:
    """``ratio_fn(tables, x, cache, which)`` with ``x`` rounded to float32 and the ratio cast up
    (the tables and the cache are float32 already; the new cache stays float32)."""

    def wrapped(tables: Any, x: jax.Array, cache: Any, which: jax.Array):
        ratio, new_cache = ratio_fn(tables, cast_down(x), cache, which)
        return cast_up(ratio), new_cache

    return wrapped


def _float32_terms(terms: TermUpdates) -> TermUpdates:
    """Per-pattern ratios with float32 / complex64 pattern tables and float64 results."""

    def prepare(tables: Any, sites: Any, signs: Any) -> Any:
        # cast again: float64 numpy signs would otherwise promote the tables back to float64
        return cast_down(terms.prepare(tables, sites, signs))

    def ratios(term_tables: Any, x: jax.Array, cache: Any) -> tuple[jax.Array, jax.Array]:
        return cast_up(terms.ratios(term_tables, cast_down(x), cache))

    return TermUpdates(prepare, ratios, _ratio_in_float32(terms.log_abs_ratio))


def _float32_updates(fast: LocalUpdates) -> LocalUpdates:
    """The cached-ratio functions (and, where present, the real-part ratios and the
    per-pattern tables) with float32 tables and cache and float64 / complex128 ratios."""

    def prepare(params: Params) -> Any:
        return fast.prepare(cast_down(params))

    def init_cache(tables: Any, x: jax.Array) -> Any:
        return fast.init_cache(tables, cast_down(x))

    log_abs_ratio = None if fast.log_abs_ratio is None else _ratio_in_float32(fast.log_abs_ratio)
    terms = None if fast.terms is None else _float32_terms(fast.terms)
    return LocalUpdates(init_cache, _ratio_in_float32(fast.log_ratio), prepare, log_abs_ratio,
                        terms)


def _float32_structure(structure: JacobianStructure) -> JacobianStructure:
    """Factored log-derivatives of the float32 network: the factors are computed in float32
    and cast up, so the kernel, the transpose and the rows are float64 sums of the float32
    network's derivatives (the same numbers the dense path differentiates)."""

    def features(params: Params, x: jax.Array) -> Any:
        return cast_up(structure.features(cast_down(params), cast_down(x)))

    return JacobianStructure(features, structure.gram, structure.transpose, structure.row)


def with_dtype(ansatz: Ansatz, dtype: str) -> Ansatz:
    """``ansatz`` with its network evaluated in ``dtype`` (``"float64"``: unchanged).

    ``"float32"``: see the module docstring (float64 master parameters, float32 network and
    fast-path tables, complex128 ``log psi``). Raises :class:`InputError` for another dtype.
    """
    if check_dtype(dtype) == "float64" or isinstance(ansatz.module, Float32Module):
        return ansatz
    fast = None if ansatz.local_updates is None else _float32_updates(ansatz.local_updates)
    structure = ansatz.jacobian_structure
    return Ansatz(Float32Module(ansatz.module), fast, ansatz.holomorphic,
                  None if structure is None else _float32_structure(structure),
                  ansatz.symmetries, ansatz.real_log_psi, ansatz.amplitude_phase)


def ansatz_dtype(ansatz: Ansatz) -> str:
    """The network precision of ``ansatz``: ``"float32"`` if wrapped by :func:`with_dtype`."""
    return "float32" if isinstance(ansatz.module, Float32Module) else "float64"
