"""KFAC (kfac-jax) with FermiNet's settings, as the engine's optimizers see it: an object with
``init(params, key, batch)`` and ``step(params, opt_state, key, batch) -> (params, opt_state,
stats)`` around the loss ``loss(params, batch) -> (value, aux)`` whose gradient is the energy
gradient and in which ``log|psi|`` is registered (:func:`register_log_psi`). kfac-jax is
imported lazily (:func:`import_kfac`), with a runtime patch for jax >= 0.7.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from nqs.errors import InputError
from nqs.optim.spring import lr_schedule


def import_kfac() -> Any:
    """Import kfac_jax, patching one jax>=0.7 incompatibility of kfac-jax 0.0.8 at runtime.

    kfac-jax 0.0.8 unpacks ``primitive.get_bind_params(params)`` as ``(subfuns, params)``; newer
    jax returns only the params (with any ``subfuns`` inside them). The patch accepts both.
    InputError on jax >= 0.11, which kfac-jax 0.0.8 does not support.
    """
    major, minor = (int(x) for x in jax.__version__.split(".")[:2])
    if (major, minor) >= (0, 11):
        # jax 0.11 removed jax.core names and merged ClosedJaxpr into Jaxpr; kfac-jax 0.0.8 (the
        # newest release) uses both
        raise InputError(f"KFAC needs jax < 0.11 (kfac-jax 0.0.8); this is jax {jax.__version__}: "
                         "use --optimizer sr (with --momentum 0.9: SPRING) or adam")
    import kfac_jax
    from kfac_jax._src import tag_graph_matcher as tgm

    if getattr(tgm.eval_jaxpr_eqn, "_nqs_compat", False):
        return kfac_jax

    def eval_jaxpr_eqn(eqn: Any, in_values: list[Any]) -> list[Any]:
        bind = eqn.primitive.get_bind_params(eqn.params)
        if isinstance(bind, tuple):
            subfuns, bind = bind
        else:
            subfuns = ()
        with jax.extend.source_info_util.user_context(eqn.source_info.traceback):
            output = eqn.primitive.bind(*subfuns, *in_values, **bind)
        return output if isinstance(output, list) else [output]

    eval_jaxpr_eqn._nqs_compat = True  # type: ignore[attr-defined]
    tgm.eval_jaxpr_eqn = eval_jaxpr_eqn
    return kfac_jax


def register_log_psi(logs: jax.Array) -> None:
    """Register ``logs [n]`` (log|psi| of the batch) as a normal predictive distribution, so
    KFAC's curvature is the Fisher of ``|psi|^2``; call it inside the loss."""
    import_kfac().register_normal_predictive_distribution(logs[:, None])


@dataclass(frozen=True)
class KFAC:
    """kfac-jax's optimizer with constant damping and no momentum (FermiNet's defaults).

    Several devices: kfac-jax's own multi-device mode (``pmap`` with a named axis) stays off;
    the batch is a sharded array in kfac-jax's jitted step, so the curvature blocks, like the
    gradient, are sums over the global batch that XLA reduces across devices.
    """

    optimizer: Any
    damping: float

    def init(self, params: Any, key: jax.Array, batch: Any) -> Any:
        """kfac-jax's optimizer state (it traces the loss on ``batch`` to find the layers)."""
        return self.optimizer.init(params, key, batch)

    def step(self, params: Any, opt_state: Any, key: jax.Array, batch: Any
             ) -> tuple[Any, Any, dict[str, Any]]:
        """``(params, opt_state, stats)``; ``stats["aux"]`` is the loss's aux. Donates its
        inputs (copy what must survive a rejected step)."""
        return self.optimizer.step(params, opt_state, key, batch=batch,
                                   momentum=jnp.asarray(0.0), damping=jnp.asarray(self.damping))


def kfac_optimizer(loss: Callable[[Any, Any], tuple[jax.Array, Any]], learning_rate: float,
                   delay: float, damping: float = 1e-3, norm_constraint: float = 1e-3,
                   curvature_ema: float = 0.95) -> KFAC:
    """KFAC on ``loss(params, batch) -> (value, aux)`` with ``lr / (1 + t / delay)``,
    ``damping``, the norm constraint and exact-Fisher curvature of the registered ``log|psi|``
    (layers found by kfac-jax's graph matcher)."""
    kfac_jax = import_kfac()
    return KFAC(kfac_jax.Optimizer(
        value_and_grad_func=jax.value_and_grad(loss, has_aux=True),
        l2_reg=0.0,
        norm_constraint=norm_constraint,
        value_func_has_aux=True,
        value_func_has_rng=False,
        learning_rate_schedule=lr_schedule(learning_rate, delay),
        curvature_ema=curvature_ema,
        inverse_update_period=1,
        min_damping=1e-4,
        num_burnin_steps=0,
        register_only_generic=False,
        estimation_mode="fisher_exact",
        multi_device=False,
        include_norms_in_stats=True,
    ), float(damping))
