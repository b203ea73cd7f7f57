"""Symmetry-reduced local values of operators with components (spin correlations, ``S(q)``).

In a state invariant up to a phase under a group ``G`` of site permutations
(``psi(x . g) = chi_g psi(x)``, ``|chi_g| = 1``: :attr:`nqs.ansatz.Ansatz.symmetries`), an
operator whose ``K`` components the group permutes (``U_g O_k U_g^dagger = O_{g.k}``, e.g.
``S_i . S_j -> S_{g(i)} . S_{g(j)}``) has equal expectation values on every orbit ``c`` of
components: ``<O_k> = C_c`` for ``k`` in ``c``. Each orbit is then estimated by

    O_loc(x; g)_c = (1/|c|) sum_{k in c} D_k(x) + sum_t mel_t(x) psi(x'_t) / psi(x),  t: patterns of g.k_c,

the diagonal ``D_k`` averaged over the whole orbit (cheap: no amplitude ratio) plus the
off-diagonal rows of ONE component, the image ``g . k_c`` of the orbit's representative
``k_c`` under the group element ``g`` given to the sample. For every fixed ``g`` the mean of
``O_loc(x; g)_c`` over ``|psi(x)|^2`` is ``C_c`` exactly (the tests check it by exact summation);
a Monte Carlo estimate gives sample ``s`` the element ``g = s mod G``, so that every component
of the orbit is visited across the samples. The off-diagonal work per sample drops from all
``K`` components to one per orbit: for the ``N (N - 1) / 2`` spin pairs of an ``N``-site
lattice under its ``N`` translations, about ``N / 2`` orbits (one per displacement ``+-d``).

Only an exact statement for a state with the symmetry: :func:`find_reduction` returns None
(the estimator of every component is kept) unless the ansatz declares a group and the
operator's ``component_images`` shows that the group permutes its components.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz, Params
from nqs.hilbert import apply_flips
from nqs.operator import CombinedComponents


@dataclass(frozen=True, eq=False)
class Reduction:
    """The orbits of an operator's components under an ansatz's symmetry group.

    Attributes:
      classes: int ``[K]``, the orbit of every component.
      images: int ``[G, C]``, the component ``g . k_c`` for every group element and orbit.
      sizes: float ``[C]``, components per orbit.
    """

    classes: np.ndarray
    images: np.ndarray
    sizes: np.ndarray

    @property
    def n_classes(self) -> int:
        """Number of orbits ``C``."""
        return int(self.images.shape[1])

    @property
    def group_size(self) -> int:
        """Number of group elements ``G``."""
        return int(self.images.shape[0])

    def describe(self) -> str:
        """One line naming the estimator, e.g. ``symmetry-reduced: 64 permutations, 33 orbits``."""
        return f"symmetry-reduced: {self.group_size} permutations, {self.n_classes} orbits"


def base_operator(operator: Any) -> Any:
    """The operator whose components are evaluated (the base of a combination)."""
    return operator.base if isinstance(operator, CombinedComponents) else operator


_CACHE: dict[tuple, tuple[Any, Reduction | None]] = {}


def find_reduction(operator: Any, ansatz: Ansatz) -> Reduction | None:
    """:func:`orbits_of`, memoized on the operator object and the ansatz."""
    base = base_operator(operator)
    key = (id(base), ansatz)
    hit = _CACHE.get(key)
    if hit is None or hit[0] is not base:
        if len(_CACHE) > 64:
            _CACHE.clear()
        hit = (base, orbits_of(base, ansatz))
        _CACHE[key] = hit
    return hit[1]


def orbits_of(operator: Any, ansatz: Ansatz) -> Reduction | None:
    """The orbits of ``operator``'s components (or its base's) under ``ansatz.symmetries``, or
    None: no declared group, a group of one element, an operator without static flip
    patterns (``flip_terms``, ``term_values``, ``term_components``) or ``component_images``,
    components the group does not permute, or no two components in one orbit."""
    base = base_operator(operator)
    return reduction_for(base, ansatz.symmetries)


def reduction_for(base: Any, perms: Any) -> Reduction | None:
    """The orbits of ``base``'s components under the permutations ``perms [G, n_sites]`` (a
    group; no check that a state has this symmetry: :func:`orbits_of` takes the ansatz's
    declaration), or None as :func:`orbits_of`."""
    if perms is None or len(perms) < 2 or getattr(base, "n_components", None) is None:
        return None
    if getattr(base, "flip_terms", None) is None or getattr(base, "term_components", None) \
            is None or not callable(getattr(base, "component_images", None)):
        return None
    images = base.component_images(np.asarray(perms, dtype=np.int64))
    if images is None:
        return None
    labels = images.min(axis=0)  # the orbit of k is images[:, k] (a group): its least member
    reps, classes = np.unique(labels, return_inverse=True)
    if len(reps) == images.shape[1]:
        return None
    sizes = np.bincount(classes).astype(np.float64)
    return Reduction(classes.astype(np.int32), images[:, reps].astype(np.int32), sizes)


def _patterns_of(term_components: np.ndarray, k: int) -> np.ndarray:
    """int ``[K, p]``: the flip patterns of every component, padded with ``P``."""
    counts = np.bincount(term_components, minlength=k)
    width = max(1, int(counts.max(initial=0)))
    table = np.full((k, width), len(term_components), dtype=np.int32)
    fill = np.zeros(k, dtype=np.int64)
    for t, c in enumerate(term_components):
        table[c, fill[c]] = t
        fill[c] += 1
    return table


def make_reduced_values(operator: Any, ansatz: Ansatz, reduction: Reduction
                        ) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    """``values(params, x [n_sites], g int) -> [C]``: the orbit estimates of the module
    docstring for group element ``g`` (``[Q]`` combinations ``offset + values @ matrix_c``
    for a :class:`nqs.operator.CombinedComponents`, ``matrix_c`` its rows summed per orbit).
    Amplitude ratios from the ansatz's cached pattern ratios when it has them, else from
    ``log psi`` of each connected configuration."""
    base = base_operator(operator)
    k = int(base.n_components)
    n_c = reduction.n_classes
    flip_terms = base.flip_terms
    term_comps = np.asarray(base.term_components, dtype=np.int64)
    n_patterns = len(term_comps)
    patterns = _patterns_of(term_comps, k)
    width = patterns.shape[1]
    images = jnp.asarray(reduction.images)
    classes = jnp.asarray(reduction.classes)
    inv_sizes = jnp.asarray(1.0 / reduction.sizes)
    slot_class = jnp.asarray(np.repeat(np.arange(n_c, dtype=np.int32), width))
    pattern_table = jnp.asarray(patterns)
    pat_sites = np.asarray(flip_terms.sites)
    pat_signs = np.asarray(flip_terms.signs)
    sites_j, signs_j = jnp.asarray(pat_sites), jnp.asarray(pat_signs)
    fast = ansatz.local_updates
    terms = None if fast is None else fast.terms
    flip_constant = base.hilbert.flip_constant

    def ratios(params: Params, x: jax.Array, idx: jax.Array, ok: jax.Array) -> jax.Array:
        if terms is not None:
            tables = fast.prepare(params)
            term_tables = terms.prepare(tables, pat_sites, pat_signs)
            sub = jax.tree_util.tree_map(lambda leaf: leaf[idx], term_tables)
            log_abs, phase = terms.ratios(sub, x, fast.init_cache(tables, x))
            return jnp.exp(jnp.where(ok, log_abs, 0.0)) * phase
        x_conn = jax.vmap(lambda s: apply_flips(x, s, flip_constant))(sites_j[idx])
        log_r = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(params, x_conn) \
            - ansatz.log_psi(params, x)
        return jnp.exp(jnp.where(ok, log_r, 0.0))

    def values(params: Params, x: jax.Array, g: jax.Array) -> jax.Array:
        diag, mels = base.term_values(x)  # [K], [P]
        diag_c = jax.ops.segment_sum(diag, classes, num_segments=n_c) * inv_sizes
        slots = pattern_table[images[g]].reshape(-1)  # [C * p]
        present = slots < n_patterns
        idx = jnp.where(present, slots, 0)
        xs = x[sites_j[idx]]
        matched = jnp.all(xs == signs_j[idx] * xs[:, :1], axis=-1)
        mel = jnp.where(present & matched, mels[idx], 0.0)
        ok = mel != 0
        off = jnp.where(ok, mel * ratios(params, x, idx, ok), 0.0)
        return diag_c + jax.ops.segment_sum(off, slot_class, num_segments=n_c)

    if not isinstance(operator, CombinedComponents):
        return values
    matrix_c = jax.ops.segment_sum(jnp.asarray(operator.matrix), classes, num_segments=n_c)
    offset = jnp.asarray(operator.offset)

    def combined(params: Params, x: jax.Array, g: jax.Array) -> jax.Array:
        v = values(params, x, g)
        if jnp.iscomplexobj(v) and not jnp.iscomplexobj(matrix_c):
            return offset + jax.lax.complex(jnp.real(v) @ matrix_c, jnp.imag(v) @ matrix_c)
        return offset + v @ matrix_c

    return combined


def expand(field: Any, reduction: Reduction, operator: Any) -> Any:
    """A statistic of the orbits ``[C]`` (host array) as one of every component ``[K]`` (a
    combination's ``[Q]`` statistics unchanged), as a JAX array."""
    if isinstance(operator, CombinedComponents):
        return jnp.asarray(field)
    return jnp.asarray(np.asarray(field)[reduction.classes])  # on the host: one transfer
