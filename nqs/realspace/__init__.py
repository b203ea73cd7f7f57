"""Electrons in real space, a plug-in of the walker driver (:mod:`nqs.walker_driver`): walker
initialisation, HF pretraining, the optimizer choice and KFAC's glue, the run's options.

The Hamiltonian lives in :mod:`hamiltonians.realspace` (seen here only through the protocol
:class:`nqs.realspace.system.RealSpaceSystem`), the ansatz in :mod:`nqs.models.ferminet`.
"""

from nqs.realspace.mcmc import init_walkers
from nqs.realspace.train import (
    VMC,
    VMCState,
    make_energy_loss,
    make_kfac_vmc,
    make_optax_vmc,
)
from nqs.sampling.walkers import MCMCState, adapt_width, burn_in, make_mcmc

__all__ = [
    "MCMCState",
    "VMC",
    "VMCState",
    "adapt_width",
    "burn_in",
    "init_walkers",
    "make_energy_loss",
    "make_kfac_vmc",
    "make_mcmc",
    "make_optax_vmc",
]
