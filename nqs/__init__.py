"""nqs: neural-network quantum states by variational Monte Carlo.

Importing nqs enables float64 in JAX: energies, determinants and accumulations need it.
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
