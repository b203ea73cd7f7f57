"""Optimizers: SR / minSR as optax transformations, and plain optax optimizers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optax

from nqs.errors import InputError
from nqs.optim.spring import lr_schedule, spring
from nqs.optim.sr import SRMode, sr


@dataclass(frozen=True)
class Optimizer:
    """An optax transformation, and whether it needs the per-sample Jacobian (SR, minSR).

    ``metric_states``: with exact summation, build the SR metric from only the K
    configurations of largest |psi|^2 (weights renormalised over them) and precondition the
    exact gradient with it; None: every configuration (the exact metric). Ignored by samplers.
    """

    transformation: optax.GradientTransformation
    needs_jacobian: bool = False
    metric_states: int | None = None

    def apply(self, grads: optax.Updates, opt_state: optax.OptState, params: optax.Params,
              **extra: Any) -> tuple[optax.Params, optax.OptState]:
        """One step of every engine (spins, molecules, real space): the transformation's
        update of the gradient ``grads`` (shaped like ``params``; ``extra``: ``jacobian`` and
        ``residuals`` when :attr:`needs_jacobian`), added by ``optax.apply_updates`` (cast
        to the parameters' dtype). Returns ``(new params, new optimizer state)``."""
        updates, opt_state = self.transformation.update(grads, opt_state, params, **extra)
        return optax.apply_updates(params, updates), opt_state


OPTIMIZERS = ("sr", "minsr", "adam", "sgd")


def sr_optimizer(
    learning_rate: float | optax.Schedule,
    diag_shift: float = 1e-2,
    mode: SRMode = "auto",
    metric_states: int | None = None,
    param_chunk: int | None = None,
) -> Optimizer:
    """SR natural gradient followed by a plain step of size ``learning_rate``.

    ``metric_states``: see :class:`Optimizer` (exact summation only); ``param_chunk``: minSR
    kernel from blocks of this many parameters (:func:`nqs.optim.sr.sr`).
    """
    if metric_states is not None and metric_states < 1:
        raise InputError(f"metric states must be a positive integer, got {metric_states}")
    if metric_states is not None and diag_shift <= 0:
        raise InputError("a metric from a subset of the configurations needs a positive "
                         "diagonal shift")
    return Optimizer(optax.chain(sr(diag_shift, mode, param_chunk), optax.sgd(learning_rate)), True,
                     metric_states)


def make_optimizer(
    name: str, learning_rate: float, diag_shift: float = 1e-2
) -> Optimizer:
    """Build an optimizer by name: "sr" (dense or minSR picked by size), "minsr", "adam", "sgd"."""
    if learning_rate <= 0:
        raise InputError(f"learning rate must be positive, got {learning_rate}")
    if name == "sr":
        return sr_optimizer(learning_rate, diag_shift, "auto")
    if name == "minsr":
        return sr_optimizer(learning_rate, diag_shift, "minsr")
    if name == "adam":
        return Optimizer(optax.adam(learning_rate), False)
    if name == "sgd":
        return Optimizer(optax.sgd(learning_rate), False)
    raise InputError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


SCHEDULED = ("adam", "sr")


def scheduled_optimizer(name: str, learning_rate: float, delay: float, diag_shift: float = 1e-3,
                        norm_constraint: float = 1e-3, momentum: float = 0.0) -> Optimizer:
    """An optimizer with FermiNet's schedule ``learning_rate / (1 + t / delay)`` (real space):
    ``"adam"``, or ``"sr"``: minSR (``momentum`` 0) or SPRING (``momentum`` in (0, 1)) with
    the diagonal shift and norm constraint of :func:`nqs.optim.spring.spring` (needs the
    Jacobian). InputError for another name or bad values."""
    if name == "adam":
        return Optimizer(optax.adam(lr_schedule(learning_rate, delay)))
    if name == "sr":
        return Optimizer(spring(learning_rate, delay, diag_shift, norm_constraint, momentum),
                         needs_jacobian=True)
    raise InputError(f"unknown optimizer {name!r}; choose one of {', '.join(SCHEDULED)}")
