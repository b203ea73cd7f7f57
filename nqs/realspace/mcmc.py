"""Where the walkers start: each electron at an atom (spins balanced), plus Gaussian noise.

The Metropolis walk itself is the sampler :mod:`nqs.sampling.walkers` (``MCMCState``,
``make_mcmc``, ``adapt_width``, ``burn_in`` are re-exported here, their old home).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64 before any array is built)
from nqs.errors import InputError
from nqs.sampling.walkers import (  # noqa: F401  (re-exported: their old home)
    LogPsiFn,
    MCMCState,
    adapt_width,
    burn_in,
    make_mcmc,
)


def electron_assignment(atoms: Any) -> tuple[np.ndarray, np.ndarray]:
    """Which atom each electron starts at: electrons spread over atoms by charge, spins balanced.

    Each atom gets ``Z_I`` electrons, minus/plus the total charge taken from/given to the atoms
    with the most/fewest electrons relative to Z. At every atom the electrons pair up (one alpha,
    one beta); unpaired ones go to alpha until ``n_alpha`` is reached, the rest to beta. Spin
    excess beyond that is made by flipping electrons of the atoms with the most electrons.

    Returns:
        ``(alpha_atoms [n_alpha], beta_atoms [n_beta])``: atom index of each electron.
    """
    z = np.rint(np.asarray(atoms.charges)).astype(int)
    counts = z.copy()
    n_el = atoms.n_alpha + atoms.n_beta
    while counts.sum() > n_el:  # cation: remove from the atom with the most electrons
        counts[int(np.argmax(counts))] -= 1
    while counts.sum() < n_el:  # anion: add to the atom with the smallest count/Z
        counts[int(np.argmin(counts / np.maximum(z, 1)))] += 1
    n_a = counts // 2
    n_b = counts // 2
    for i in range(len(counts)):  # unpaired electrons: alpha first
        if counts[i] % 2:
            if n_a.sum() < atoms.n_alpha:
                n_a[i] += 1
            else:
                n_b[i] += 1
    while n_a.sum() < atoms.n_alpha:  # high spin: flip beta -> alpha where beta is most
        i = int(np.argmax(n_b))
        n_b[i] -= 1
        n_a[i] += 1
    while n_b.sum() < atoms.n_beta:
        i = int(np.argmax(n_a))
        n_a[i] -= 1
        n_b[i] += 1
    alpha = np.repeat(np.arange(len(counts)), n_a)
    beta = np.repeat(np.arange(len(counts)), n_b)
    return alpha, beta


def init_walkers(key: jax.Array, atoms: Any, n_walkers: int, scale: float = 1.0) -> jax.Array:
    """Initial walkers: each electron at its atom (see :func:`electron_assignment`) plus
    Gaussian noise of standard deviation ``scale`` bohr.

    Returns:
        ``r [n_walkers, n_el, 3]`` in bohr, alpha electrons first.
    """
    if n_walkers < 1:
        raise InputError(f"n_walkers must be >= 1, got {n_walkers}")
    alpha, beta = electron_assignment(atoms)
    idx = np.concatenate([alpha, beta])
    centres = jnp.asarray(np.asarray(atoms.positions, dtype=np.float64)[idx])  # [n_el, 3]
    noise = jax.random.normal(key, (n_walkers, len(idx), 3), dtype=jnp.float64)
    return centres[None] + scale * noise
