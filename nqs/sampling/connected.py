"""The determinants H connects to a set of draws, ranked by their first-order amplitude.

For draws ``x_i`` with amplitudes ``psi(x_i)`` and a determinant ``y`` outside the draws,

    a_y = sum_i <y|H|x_i> psi(x_i) / (E - <y|H|y>)

is y's first-order (perturbative) amplitude. The ``n_rows`` determinants of largest ``|a_y|``
are the extra rows of SR in :func:`nqs.vmc.make_vmc` (``connected_rows``): their
log-derivatives and local energies let the natural gradient raise amplitudes that the draws
never see (an autoregressive state fitted to part of a selected CI space holds near-zero
amplitudes on the rest, and SR on the draws alone keeps them there).

Host code (numpy) around two jitted maps (``flips`` and ``diagonal``); configurations of at
most 63 sites (int64 keys, :func:`nqs.exact.configuration_keys`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nqs.errors import InputError
from nqs.exact import MAX_INT_KEY_SITES, configuration_keys, configurations_from_keys

#: Candidates ranked by ``|sum_i H_yi psi_i|`` whose diagonal is computed, per row kept.
_PRESELECT = 4


def pad_rows(a: np.ndarray, size: int) -> np.ndarray:
    """``a [m, ...]`` with copies of its first row appended up to ``size`` rows (a bucketed
    shape for a jitted map; the copies' results are discarded or given weight 0)."""
    return np.concatenate([a, np.broadcast_to(a[:1], (size - len(a), *a.shape[1:]))])


def make_connected_rows(operator, n_rows: int
                        ) -> Callable[[np.ndarray, np.ndarray, float], np.ndarray]:
    """``connected(x [m, n_sites], log_psi [m], energy) -> y [k, n_sites]``, ``k <= n_rows``.

    ``x``: distinct configurations (the draws); ``log_psi``: their log amplitudes (complex
    or real); ``energy`` (Ha): E of the first-order denominators. ``y``: the determinants
    outside ``x`` connected to it by ``operator``, the ``n_rows`` of largest ``|a_y|``
    (module docstring) among the ``4 n_rows`` of largest numerator (the diagonal ``<y|H|y>``
    is computed for those only), largest first. InputError for ``n_rows < 1`` or more than 63 sites.
    """
    hilbert = operator.hilbert
    n_sites = hilbert.n_sites
    if int(n_rows) < 1:
        raise InputError(f"connected rows must be a positive integer, got {n_rows}")
    if n_sites > MAX_INT_KEY_SITES:
        raise InputError(f"connected rows handle at most {MAX_INT_KEY_SITES} sites, got "
                         f"{n_sites}")
    flips = jax.jit(jax.vmap(operator.flips))
    diagonal = jax.jit(jax.vmap(operator.diagonal))
    pow2 = np.int64(1) << np.arange(n_sites + 1, dtype=np.int64)
    pow2[n_sites] = 0  # padding site: no flip

    def on_bucket(fn: Callable, a: np.ndarray) -> list[np.ndarray]:
        # the jitted maps see power-of-two row counts: no recompilation per size
        size = max(16, 1 << max(len(a) - 1, 0).bit_length())
        out = fn(jnp.asarray(pad_rows(a, size)))
        return [np.asarray(o)[: len(a)] for o in (out if isinstance(out, tuple) else (out,))]

    def connected(x: np.ndarray, log_psi: np.ndarray, energy: float) -> np.ndarray:
        x = np.asarray(x)
        keys = configuration_keys(x, hilbert)
        sites, mels = on_bucket(flips, x)
        delta = np.bitwise_xor.reduce(pow2[sites], axis=-1)  # [m, C]: the flipped sites
        log_psi = np.asarray(log_psi)
        amp = np.exp(log_psi - np.max(np.real(log_psi)))  # largest |psi| 1: no overflow
        keep = (mels != 0) & (delta != 0)
        conn = (keys[:, None] ^ delta)[keep]
        contrib = (mels * amp[:, None])[keep]
        if conn.size == 0:
            return np.zeros((0, n_sites), x.dtype)
        uniq, inverse = np.unique(conn, return_inverse=True)
        a = np.bincount(inverse, weights=contrib.real, minlength=len(uniq)).astype(complex)
        if np.iscomplexobj(contrib):
            a += 1j * np.bincount(inverse, weights=contrib.imag, minlength=len(uniq))
        outside = ~np.isin(uniq, keys)
        uniq, a = uniq[outside], np.abs(a[outside])
        if uniq.size == 0:
            return np.zeros((0, n_sites), x.dtype)
        # the diagonal only for the candidates of largest numerator
        pre = np.argsort(-a, kind="stable")[: _PRESELECT * int(n_rows)]
        y = configurations_from_keys(uniq[pre], hilbert)
        (h_yy,) = on_bucket(diagonal, y)
        score = a[pre] / np.maximum(np.abs(float(energy) - h_yy), 1e-3)
        best = np.argsort(-score, kind="stable")[: int(n_rows)]
        return y[best[score[best] > 0]]

    return connected
