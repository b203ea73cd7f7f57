"""Optimizers: SR / minSR as optax transformations, and plain optax optimizers."""

from nqs.optim.optimizer import (
    OPTIMIZERS,
    Optimizer,
    make_optimizer,
    scheduled_optimizer,
    sr_optimizer,
)
from nqs.optim.sr import natural_gradient_dense, natural_gradient_minsr, sr

__all__ = [
    "OPTIMIZERS",
    "Optimizer",
    "make_optimizer",
    "natural_gradient_dense",
    "natural_gradient_minsr",
    "scheduled_optimizer",
    "sr",
    "sr_optimizer",
]
