"""Electrons in real space, what is specific to them on the walker driver: walker initialisation,
HF pretraining, GTO evaluation, KFAC's glue. The run from options: :mod:`nqs.problems.realspace`.
"""

from nqs.realspace.mcmc import init_walkers
from nqs.realspace.train import make_energy_loss, make_kfac_vmc

__all__ = ["init_walkers", "make_energy_loss", "make_kfac_vmc"]
