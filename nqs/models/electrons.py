"""The real-space networks by name: FermiNet (:mod:`nqs.models.ferminet`), a Psiformer
(:mod:`nqs.models.psiformer`) or a LapNet (:mod:`nqs.models.lapnet`), their options as
checkpoints record them, the folx sparsity each one wants, and a network evaluated in float32
with float64 outputs.

All take one configuration ``r [n_el, 3]`` (bohr) and return ``(sign, log|psi|)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nqs.errors import InputError
from nqs.models.ferminet import make_ferminet, make_ferminet_orbitals
from nqs.models.lapnet import SPARSITY, make_lapnet, make_lapnet_orbitals
from nqs.models.psiformer import make_psiformer, make_psiformer_orbitals
from nqs.precision import DTYPES

ANSATZE = ("ferminet", "psiformer", "lapnet")
ATTENTION_ANSATZE = ("psiformer", "lapnet")
"""The networks sized by layers, heads and width (the Psiformer's options)."""


def with_dtype(
    apply: Callable[[Any, jax.Array], Any], dtype: str
) -> Callable[[Any, jax.Array], Any]:
    """The network evaluated in ``dtype``: walkers are cast on the way in, so the activations
    follow the parameters' dtype; the determinants (the model's slogdet) and everything
    downstream (local energies, their accumulation, the reductions over walkers) stay float64.
    """
    if dtype == "float64":
        return apply
    if dtype != "float32":
        raise InputError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")

    def apply32(params: Any, r: jax.Array) -> Any:
        out = apply(params, r.astype(jnp.float32))
        if isinstance(out, tuple | list):
            return tuple(o.astype(jnp.float64) for o in out)
        return out.astype(jnp.float64)

    return apply32


def network_options(ansatz: str, layers: Sequence[tuple[int, int]], n_determinants: int,
                    envelope: str, full_det: bool, psiformer_layers: int = 2, heads: int = 2,
                    width: int = 32, layer_norm: str = "pre", jastrow: bool = True
                    ) -> dict[str, Any]:
    """The network's options as recorded in checkpoints: FermiNet's as before (``layers``,
    ``n_determinants``, ``envelope``, ``full_det``); a Psiformer's or LapNet's with ``ansatz``,
    ``n_layers``, ``heads``, ``width``, ``layer_norm`` and ``jastrow`` instead of ``layers``."""
    if ansatz == "ferminet":
        return dict(layers=tuple(tuple(x) for x in layers), n_determinants=n_determinants,
                    envelope=envelope, full_det=full_det)
    if ansatz in ATTENTION_ANSATZE:
        return dict(ansatz=ansatz, n_layers=int(psiformer_layers), heads=int(heads),
                    width=int(width), n_determinants=n_determinants, envelope=envelope,
                    full_det=full_det, layer_norm=layer_norm, jastrow=bool(jastrow))
    raise InputError(f"unknown ansatz {ansatz!r}; choose one of {', '.join(ANSATZE)}")


def make_network(atoms: Any, net: dict[str, Any], param_dtype: Any = jnp.float64
                 ) -> tuple[Callable[[jax.Array], Any], Callable[[Any, jax.Array], Any],
                            Callable[[Any, jax.Array], list[jax.Array]]]:
    """``(init, apply, orbitals)`` of the network of :func:`network_options` (FermiNet,
    Psiformer or LapNet; same call signatures and ``(sign, log|psi|)`` convention)."""
    kw = {k: v for k, v in net.items() if k != "ansatz"}
    ansatz = net.get("ansatz", "ferminet")
    if ansatz in ATTENTION_ANSATZE:
        make, make_orbitals = ((make_lapnet, make_lapnet_orbitals) if ansatz == "lapnet"
                               else (make_psiformer, make_psiformer_orbitals))
        init, apply = make(atoms, atoms.n_alpha, atoms.n_beta, param_dtype=param_dtype, **kw)
        orbitals = make_orbitals(atoms, atoms.n_alpha, atoms.n_beta, param_dtype=param_dtype,
                                 **kw)
        return init, apply, orbitals
    init, apply = make_ferminet(atoms, atoms.n_alpha, atoms.n_beta, param_dtype=param_dtype, **kw)
    orbitals = make_ferminet_orbitals(atoms, atoms.n_alpha, atoms.n_beta,
                                      param_dtype=param_dtype, **kw)
    return init, apply, orbitals


def folx_sparsity(net: dict[str, Any]) -> int:
    """folx ``sparsity_threshold`` for the network of :func:`network_options`: a LapNet's
    :data:`nqs.models.lapnet.SPARSITY` (its pair logits depend on 6 coordinates); 0 (dense)
    for FermiNet and the Psiformer, whose Jacobians are dense after one layer and for which
    sparsity only adds bookkeeping (experiments/benchmarks/README.md, "Sparsity")."""
    return SPARSITY if net.get("ansatz") == "lapnet" else 0
