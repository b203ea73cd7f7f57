"""Builders shared by the CLI and experiment scripts: standard ansatz and sampler choices.

These take objects and plain values (never a config dict) and return engine objects.
"""

from __future__ import annotations

import numpy as np

from nqs.ansatz import Ansatz
from nqs.errors import InputError
from nqs.hilbert import FermionHilbert, SpinHilbert
from nqs.sampling.base import Sampler


def spin_ansatz(model, kind: str, alpha: float, complex_params: bool = True) -> Ansatz:
    """RBM (``kind="rbm"``) or translation-symmetric RBM (``"rbm-symm"``) for a spin model."""
    import jax.numpy as jnp

    from nqs.models.rbm import make_rbm, make_rbm_symm

    if not alpha > 0:
        raise InputError(f"alpha must be positive, got {alpha}")
    dtype = jnp.complex128 if complex_params else jnp.float64
    n = model.hilbert.n_sites
    if kind == "rbm":
        return make_rbm(n, alpha, flip_constant=0.0, param_dtype=dtype)
    if kind == "rbm-symm":
        if float(alpha) != int(alpha):
            raise InputError(f"rbm-symm needs an integer alpha, got {alpha}")
        return make_rbm_symm(model.lattice.translations(), int(alpha), flip_constant=0.0,
                             param_dtype=dtype)
    raise InputError(f"unknown ansatz {kind!r}; choose rbm or rbm-symm")


def spin_sampler(
    model, kind: str, n_samples: int, n_chains: int, n_discard_sweeps: int = 4
) -> Sampler:
    """Metropolis (single flips, or bond exchanges in a fixed-S^z sector) or exact enumeration."""
    from nqs.sampling.exact import ExactSampler
    from nqs.sampling.metropolis import MetropolisSampler
    from nqs.sampling.rules import ExchangeRule, LocalRule

    hilbert: SpinHilbert = model.hilbert
    if n_samples <= 0 or n_chains <= 0:
        raise InputError("samples and chains must be positive integers")
    if kind == "exact":
        return ExactSampler(hilbert)
    if kind != "mcmc":
        raise InputError(f"unknown sampler {kind!r}; choose mcmc or exact")
    if hilbert.total_sz is None:
        rule = LocalRule()
    else:
        bonds = np.asarray(model.lattice.bonds)
        rule = ExchangeRule(bonds)
    if n_discard_sweeps < 0:
        raise InputError(f"discarded sweeps must be >= 0, got {n_discard_sweeps}")
    return MetropolisSampler(hilbert, rule, n_chains=min(n_chains, n_samples), n_samples=n_samples,
                             n_discard_sweeps=n_discard_sweeps)


def fermion_hop_groups(hilbert: FermionHilbert) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Alpha and beta spin-orbital index groups (electron hops stay inside a group)."""
    n = hilbert.n_orbitals
    return tuple(range(n)), tuple(range(n, 2 * n))


EXACT_AUTO_LIMIT = 100_000


def molecule_ansatz(
    hilbert: FermionHilbert,
    kind: str,
    *,
    alpha: float = 2.0,
    hidden: tuple[int, ...] = (64,),
    n_determinants: int = 1,
    init_scale: float = 0.05,
) -> Ansatz:
    """Neural backflow determinant(s) (``"backflow"``) or complex RBM (``"rbm"``, Choo et al.).

    ``init_scale``: size of the random perturbation of the Hartree-Fock orbitals at
    initialization. Monte Carlo needs a larger one (e.g. 0.3) than exact summation: a state too
    close to the HF determinant is sampled as HF alone, which gives a zero gradient estimate.
    """
    if kind == "backflow":
        from nqs.models.backflow import make_backflow

        return make_backflow(hilbert, hidden=hidden, n_determinants=n_determinants,
                             init_scale=init_scale)
    if kind == "rbm":
        from nqs.models.rbm import make_rbm

        if not alpha > 0:
            raise InputError(f"alpha must be positive, got {alpha}")
        return make_rbm(hilbert.n_sites, alpha, flip_constant=1.0)
    raise InputError(f"unknown ansatz {kind!r}; choose backflow or rbm")


def molecule_sampler(
    hilbert: FermionHilbert, kind: str, n_samples: int, n_chains: int = 16
) -> tuple[Sampler, str]:
    """``(sampler, mode)``: exact summation over all determinants or Metropolis electron hops.

    ``kind="auto"`` sums exactly when the space has at most ``EXACT_AUTO_LIMIT`` determinants.
    """
    from nqs.sampling.exact import ExactSampler
    from nqs.sampling.metropolis import MetropolisSampler
    from nqs.sampling.rules import PairHopRule

    if kind not in ("auto", "exact", "mcmc"):
        raise InputError(f"unknown sampler {kind!r}; choose auto, exact or mcmc")
    if kind == "exact" or (kind == "auto" and hilbert.n_states <= EXACT_AUTO_LIMIT):
        return ExactSampler(hilbert), "exact"
    if n_samples <= 0 or n_chains <= 0:
        raise InputError("samples and chains must be positive integers")
    # single hops mixed with simultaneous alpha + beta hops (reach doubles from near-HF states)
    rule = PairHopRule(fermion_hop_groups(hilbert), occupied_value=1.0)
    sampler = MetropolisSampler(hilbert, rule, n_chains=min(n_chains, n_samples),
                                n_samples=n_samples)
    return sampler, "mcmc"
