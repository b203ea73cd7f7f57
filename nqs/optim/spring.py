"""minSR / SPRING steps with a decaying learning rate and a norm constraint, as an optax
transformation (:func:`nqs.optim.optimizer.scheduled_optimizer` makes it an
:class:`nqs.optim.Optimizer`, applied like SR; :mod:`nqs.optim.sr` holds the solvers).

On the flat real Jacobian ``J [R, P]`` of ``log|psi|`` (centred, divided by ``sqrt(R)``) and the
residuals ``eps [R]`` (centred clipped local energies, times ``2 / sqrt(R)``), so that the
energy gradient is ``g = J^T eps``:

    delta = J^T (J J^T + lambda I)^-1 eps                                    (minSR, mu = 0)
    delta = mu delta_prev + J^T (J J^T + lambda I)^-1 (eps - mu J delta_prev)  (SPRING)

and the update is ``-eta delta`` with ``eta = lr / (1 + t / delay)`` shrunk so that
``eta^2 |delta . g| <= norm_constraint`` (KFAC's norm constraint; 0 disables it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from nqs.errors import InputError
from nqs.optim.jacobian import SplitJacobian
from nqs.optim.sr import natural_gradient_minsr, natural_gradient_spring


def lr_schedule(learning_rate: float, delay: float) -> Callable[[jax.Array], jax.Array]:
    """FermiNet's schedule ``t -> learning_rate / (1 + t / delay)`` (real-space Adam, KFAC and
    :func:`spring`)."""

    def schedule(t: jax.Array) -> jax.Array:
        return learning_rate / (1.0 + t / delay)

    return schedule


class SpringState(NamedTuple):
    """State of :func:`spring`.

    Attributes:
        count: the number of updates done (int scalar).
        previous: ``[P]`` the last direction ``delta`` (float64; SPRING's momentum term, zeros
            for plain minSR).
    """

    count: jax.Array
    previous: jax.Array


def spring(
    learning_rate: float = 0.05,
    delay: float = 1000.0,
    diag_shift: float = 1e-3,
    norm_constraint: float = 1e-3,
    momentum: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
    """minSR (``momentum = 0``) or SPRING (Goldshlager et al. 2024) on real parameters.

    ``update(grad, state, params=None, *, jacobian [R, P], residuals [R])`` returns the update
    ``-eta delta`` shaped like ``grad`` (a pytree of real leaves, or the flat ``[P]`` vector;
    flattened in ``ravel_pytree`` order, the columns of ``jacobian``), in the dtype of
    ``delta`` (float64 for a float64 Jacobian): ``optax.apply_updates`` adds it and casts to
    the parameters' dtype. ``init(params)`` (a pytree or the flat vector).

    Args:
        learning_rate, delay: ``eta = learning_rate / (1 + t / delay)``.
        diag_shift: lambda added to the diagonal of ``J J^T``.
        norm_constraint: bound on ``eta^2 |delta . g|`` (0 disables).
        momentum: SPRING's mu in [0, 1) (0: minSR).

    Raises:
        InputError: a non-positive learning rate or delay, a negative shift or constraint, a
            momentum outside [0, 1) or momentum without a positive shift.
    """
    if learning_rate <= 0 or delay <= 0:
        raise InputError(f"learning rate and delay must be positive, got {learning_rate}, {delay}")
    if diag_shift < 0 or norm_constraint < 0:
        raise InputError("diag_shift and norm_constraint must be >= 0")
    if not 0.0 <= momentum < 1.0:
        raise InputError(f"the SPRING momentum must be in [0, 1), got {momentum}")
    if momentum > 0 and diag_shift <= 0:
        raise InputError("SPRING momentum needs a positive diagonal shift")

    schedule = lr_schedule(learning_rate, delay)

    def init_fn(params: optax.Params) -> SpringState:
        size = ravel_pytree(params)[0].size
        return SpringState(jnp.zeros((), jnp.int32), jnp.zeros((size,), jnp.float64))

    def update_fn(updates: optax.Updates, state: SpringState, params: optax.Params | None = None,
                  *, jacobian: jax.Array, residuals: jax.Array, **extra):
        del params, extra
        grad, unravel = ravel_pytree(updates)
        if isinstance(jacobian, SplitJacobian):  # SPRING's momentum couples the two blocks
            jacobian = jacobian.dense()
        previous = state.previous
        if momentum > 0:
            delta = natural_gradient_spring(jacobian, residuals, previous, diag_shift, momentum)
        else:  # plain minSR: no J phi_prev product with a zero phi_prev
            delta = natural_gradient_minsr(jacobian, residuals, diag_shift)
        eta = schedule(state.count)
        if norm_constraint > 0:
            sq = eta**2 * jnp.abs(jnp.dot(delta, grad))
            eta = eta * jnp.minimum(1.0, jnp.sqrt(norm_constraint / jnp.maximum(sq, 1e-300)))
        new_previous = delta if momentum > 0 else previous
        return unravel(-(eta * delta)), SpringState(state.count + 1, new_previous)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
