"""Ansatz: a flax module giving log psi of ONE configuration, plus optional fast local updates.

Discrete ansatze return a complex ``log psi(x)`` (NetKet's convention), so ``psi(x) =
exp(log_psi(x))``. An ansatz whose log-psi ratios for a few flipped sites are cheap (the RBM:
``O(M)`` from the cached ``theta = b + W x``) also provides :class:`LocalUpdates`; the sampler and
the local energy use it when present and fall back to full evaluations otherwise.

A *holomorphic* ansatz (complex parameters, ``log psi`` analytic in them, e.g. the complex RBM)
lets the SR solver work with the complex Jacobian ``d log psi / d theta`` instead of the real
view of twice the size (see :mod:`nqs.optim.jacobian`). An ansatz whose log-derivatives factor
(the RBM: ``O(x) = (x, g, x g^T)`` with ``g = tanh(theta(x))``) may also provide a
:class:`JacobianStructure`, which lets minSR build its ``n x n`` kernel from the factors instead
of the dense ``[n, P]`` Jacobian.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = Any
Cache = Any


def _no_preparation(params: Params) -> Params:
    return params


class LocalUpdates(NamedTuple):
    """Pure functions for cached log-psi ratios of one configuration.

    prepare(params) -> tables
        everything that depends on the parameters only (e.g. the RBM's ``cosh`` / ``sinh``
        tables), computed ONCE per sampler call or local-energy batch and passed to the two
        functions below in place of the parameters. Default: the parameters themselves.
    init_cache(tables, x [n_sites]) -> cache
    log_ratio(tables, x [n_sites], cache, sites int32 [k]) -> (log psi(x') - log psi(x), cache(x'))
        where x' is x with ``sites`` flipped (index n_sites = padding, no flip).
    log_abs_ratio(tables, x, cache, sites) -> (log |psi(x') / psi(x)| (real), cache(x'))
        optional: the real part only, which is all a Metropolis acceptance needs (cheaper for
        the RBM: no complex logarithm). Default None: the sampler takes ``Re log_ratio``.

    terms
        optional :class:`TermUpdates`: ratios for a fixed list of spin-flip patterns (the
        off-diagonal terms of a spin Hamiltonian, the moves of a Metropolis rule) from
        per-pattern tables. Default None.

    Callers: ``tables = fast.prepare(params)`` outside any vmap over configurations, then
    ``fast.log_ratio(tables, x, fast.init_cache(tables, x), sites)``.
    """

    init_cache: Callable[[Any, jax.Array], Cache]
    log_ratio: Callable[[Any, jax.Array, Cache, jax.Array], tuple[jax.Array, Cache]]
    prepare: Callable[[Params], Any] = _no_preparation
    log_abs_ratio: Callable[[Any, jax.Array, Cache, jax.Array], tuple[jax.Array, Cache]] | None = (
        None
    )
    terms: TermUpdates | None = None


class TermUpdates(NamedTuple):
    """Cached log-psi ratios for a static list of spin-flip patterns (spins ``x_i = +-1`` only).

    A pattern ``t`` flips the sites ``sites[t] [k]`` of configurations whose spins there are
    ``x[sites[t, q]] = signs[t, q] * x[sites[t, 0]]`` (see :class:`nqs.operator.FlipTerms`).
    With the orientation fixed up to one overall sign, the change of the configuration is
    ``-2 x[sites[t, 0]] * signs[t]`` on those sites, so whatever depends on it linearly (the
    RBM's ``theta``) can be tabulated per pattern once per batch.

    prepare(tables, sites int [T, k], signs [T, k]) -> term_tables
        parameter-only tables of the patterns (``sites``, ``signs``: static numpy arrays);
        ``tables`` from :attr:`LocalUpdates.prepare`. A pytree whose leaves all have the
        pattern axis first: indexing every leaf with ``idx [T']`` gives the tables of those
        patterns (callers evaluate only the patterns a configuration matches).
    ratios(term_tables, x [n_sites], cache) -> (log_abs real [T], phase complex [T])
        ``psi(x'_t) / psi(x) = exp(log_abs) * phase`` (``|phase| = 1``) for every pattern, in
        this polar form so that neither a complex log nor a complex exp is needed; meaningful
        only where ``x`` matches pattern ``t``'s signs (callers mask the others).
    log_abs_ratio(term_tables, x, cache, t int scalar) -> (real, cache(x'_t))
        ``log |psi(x'_t) / psi(x)|`` of one pattern (Metropolis) and the updated cache, for
        an ``x`` that matches pattern ``t``.
    """

    prepare: Callable[[Any, Any, Any], Any]
    ratios: Callable[[Any, jax.Array, Cache], tuple[jax.Array, jax.Array]]
    log_abs_ratio: Callable[[Any, jax.Array, Cache, jax.Array], tuple[jax.Array, Cache]]


class JacobianStructure(NamedTuple):
    """Log-derivatives ``O(x) = d log psi(x) / d theta`` in factored form (optional hook).

    Only for ansatze whose real-view Jacobian is determined by the complex ``O`` alone: a
    holomorphic ansatz (complex parameters), or real parameters with a real ``log psi``. Sums
    run over the ``P_c`` (complex) parameters; ``conj`` is the complex conjugate.

    features(params, x [n_sites]) -> F
        per-sample factors of ``O(x)`` (a pytree of arrays; vmapped over samples by callers).
    gram(F_a, F_b) -> K0 [n_a, n_b]
        batched, uncentred kernel ``K0_ab = sum_k O_k(x_a) conj(O_k(x_b))`` from the factors of
        two batches (leading axes ``n_a``, ``n_b``).
    transpose(F, y [n]) -> params-shaped pytree
        ``sum_a y_a conj(O(x_a))`` for complex ``y`` (batched over the leading axis of ``F``);
        for real parameters its real part.
    row(F) -> params-shaped pytree
        the dense ``O(x)`` of one sample (checks, and the dense SR mode).
    """

    features: Callable[[Params, jax.Array], Any]
    gram: Callable[[Any, Any], jax.Array]
    transpose: Callable[[Any, jax.Array], Params]
    row: Callable[[Any], Params]


@dataclass(frozen=True)
class Ansatz:
    """A variational wavefunction on a discrete Hilbert space.

    Attributes:
      module: flax module; ``module.apply(params, x)`` is log psi of one configuration ``x``.
      local_updates: optional fast path (see :class:`LocalUpdates`).
      holomorphic: ``log psi`` is a holomorphic function of complex parameters, so
        ``d log psi / d Im theta = i d log psi / d Re theta`` and SR may use the complex
        Jacobian (half the size of the real view). False is always safe.
      jacobian_structure: optional factored log-derivatives (see :class:`JacobianStructure`);
        the VMC estimator hands them to SR when the ansatz is holomorphic or has real
        parameters, and the dense Jacobian otherwise.
      symmetries: optional declaration: site permutations ``perm [G][n_sites]`` forming a group
        under which every state of the ansatz is invariant up to a phase,
        ``psi(x . g) = chi_g psi(x)`` with ``|chi_g| = 1`` and ``(x . g)[i] = x[perm_g[i]]``
        (the translations of ``rbm-symm``, the group of a GCNN or of a projection). Observables
        whose components the group permutes (the spin correlations) are then measured from
        one representative per orbit (:mod:`nqs.reduced`). None (the default): no symmetry is
        assumed.
      real_log_psi: ``log psi`` is real for every configuration and parameter (a positive
        wavefunction of real parameters, e.g. the real GCNN): SR's Jacobian then has one row
        per sample instead of its real and imaginary parts (a quarter of minSR's kernel).
        False is always safe.
      amplitude_phase: optional ``(amplitude, phase)``, the names of the two submodules that
        hold every parameter (real ones) when ``Re log psi`` depends on the first alone and
        ``Im log psi`` on the second alone (the autoregressive state: ``("backbone",
        "phase")``). SR's real-view Jacobian is then block diagonal and is kept as its two
        blocks (:class:`nqs.optim.jacobian.SplitJacobian`: a quarter of minSR's kernel).
        None is always safe.
    """

    module: nn.Module
    local_updates: LocalUpdates | None = None
    holomorphic: bool = False
    jacobian_structure: JacobianStructure | None = None
    symmetries: tuple[tuple[int, ...], ...] | None = None
    real_log_psi: bool = False
    amplitude_phase: tuple[str, str] | None = None

    def init(self, key: jax.Array, x: jax.Array) -> Params:
        """Parameters for configurations shaped like ``x`` [n_sites]."""
        return self.module.init(key, jnp.asarray(x))

    def log_psi(self, params: Params, x: jax.Array) -> jax.Array:
        """log psi(x) for one configuration ``x`` [n_sites] (complex scalar)."""
        return self.module.apply(params, x)

    def without_fast_path(self) -> Ansatz:
        """The same wavefunction evaluated by the generic path (tests compare both): no cached
        ratios and no factored or split Jacobian."""
        return Ansatz(self.module, None, self.holomorphic, symmetries=self.symmetries,
                      real_log_psi=self.real_log_psi)


def n_parameters(params: Params) -> int:
    """Number of real parameters (a complex parameter counts twice)."""
    leaves = jax.tree_util.tree_leaves(params)
    return int(sum(x.size * (2 if jnp.iscomplexobj(x) else 1) for x in leaves))


def sign_and_log(out: Any) -> tuple[jax.Array, jax.Array]:
    """``(sign, log|psi|)`` of a wavefunction's output: FermiNet's ``(sign, log|psi|)``, or a
    scalar ``log|psi|`` of a positive wavefunction (sign 1)."""
    if isinstance(out, tuple | list):
        return out[0], out[1]
    return jnp.ones_like(out), out


def log_abs(out: Any) -> jax.Array:
    """``log|psi|`` of a wavefunction's output: a scalar ``log|psi|`` or FermiNet's
    ``(sign, log|psi|)``."""
    return sign_and_log(out)[1]
