"""Real flat views of parameter pytrees.

Complex parameters are treated as pairs of real parameters: a pytree whose leaves are complex is
flattened to ``concat(Re theta, Im theta)``. Every optimizer of the engine works in this real view,
so real and complex ansatze share one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any


def is_complex_tree(tree: PyTree) -> bool:
    """True if any leaf is complex."""
    return any(jnp.iscomplexobj(x) for x in jax.tree_util.tree_leaves(tree))


def real_flat(tree: PyTree) -> tuple[jax.Array, Callable[[jax.Array], PyTree]]:
    """``(v [n_real], unflatten)``: the real view of ``tree`` and its inverse.

    For a complex tree ``v = concat(Re(ravel(tree)), Im(ravel(tree)))``.
    """
    flat, unravel = ravel_pytree(tree)
    if not jnp.iscomplexobj(flat):
        return flat, unravel
    p = flat.shape[0]

    def unflatten(v: jax.Array) -> PyTree:
        return unravel(v[:p] + 1j * v[p:])

    return jnp.concatenate([flat.real, flat.imag]), unflatten
