"""How site permutations act on the components of a :class:`hamiltonians.pauli.PauliComponents`.

A permutation ``perm`` of the sites carries a Pauli string ``prod_s P_s`` to
``prod_s P_{perm[s]}`` (the operator ``U O U^dagger`` of the permutation ``U``). When every
component ``O_k`` of a stacked operator goes to another component ``O_{k'}`` (all spin
correlations ``S_i . S_j -> S_{perm[i]} . S_{perm[j]}``, also in the Marshall-rotated basis
for a permutation that keeps or swaps the two sublattices), :func:`component_images` returns
the table ``k -> k'`` for every permutation of a group; :mod:`nqs.reduced` uses it to measure
one component per orbit in a symmetric state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_LETTER = {"X": 1, "Y": 2, "Z": 3}
_TOL = 1e-9


def _term_arrays(operators: Sequence[Any], n_sites: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(component [T], sites [T, m] (padding n_sites), letters [T, m] (padding 0),
    coefficient [T])`` of all terms of all components."""
    comp, strings, coeff = [], [], []
    for k, op in enumerate(operators):
        for string, c in op.terms.items():
            comp.append(k)
            strings.append(string)
            coeff.append(c)
    m = max([len(s) for s in strings] + [1])
    sites = np.full((len(strings), m), n_sites, dtype=np.int64)
    letters = np.zeros((len(strings), m), dtype=np.int64)
    for t, string in enumerate(strings):
        for q, (site, letter) in enumerate(string):
            sites[t, q] = site
            letters[t, q] = _LETTER[letter]
    return np.asarray(comp, np.int64), sites, letters, np.asarray(coeff, complex)


def component_images(operators: Sequence[Any], n_sites: int, perms: np.ndarray
                     ) -> np.ndarray | None:
    """``images int [G, K]``: ``U_g O_k U_g^dagger = O_{images[g, k]}`` for the permutations
    ``perms [G, n_sites]`` and the Pauli sums ``operators [K]``, or None when some image is
    not a component (or two components are equal, so that the image is not unique).

    Each sum is summarized by a signature, ``sum_t c_t exp(i sum_s R[s, P_ts])`` with random
    real ``R``, carried through the permutation by relabelling the sites; images are matched
    by signature, then every match of the first permutations (a generating set of the
    translations of a lattice among them) is checked term by term.
    """
    perms = np.asarray(perms, dtype=np.int64)
    k = len(operators)
    comp, sites, letters, coeff = _term_arrays(operators, n_sites)
    rng = np.random.default_rng(12345)
    weights = rng.uniform(-np.pi, np.pi, size=(n_sites + 1, 4))
    weights[n_sites, :] = 0.0
    weights[:, 0] = 0.0

    def signature(perm: np.ndarray) -> np.ndarray:
        ext = np.append(perm, n_sites)
        phase = weights[ext[sites], letters].sum(axis=1)
        return np.bincount(comp, coeff.real * np.cos(phase) - coeff.imag * np.sin(phase), k) \
            + 1j * np.bincount(comp, coeff.real * np.sin(phase) + coeff.imag * np.cos(phase), k)

    base = signature(np.arange(n_sites))
    order = np.argsort(base.real)
    sorted_real = base.real[order]
    if k > 1 and np.any(np.abs(np.diff(sorted_real)) < _TOL):
        close = np.abs(np.diff(sorted_real)) < _TOL
        if np.any(np.abs(base[order][1:][close] - base[order][:-1][close]) < _TOL):
            return None  # two equal components
    images = np.empty((len(perms), k), dtype=np.int64)
    for g, perm in enumerate(perms):
        sig = signature(perm)
        pos = np.clip(np.searchsorted(sorted_real, sig.real - _TOL), 0, k - 1)
        best = np.full(k, -1, dtype=np.int64)
        for shift in (0, 1):  # the nearest candidates from above
            cand = np.clip(pos + shift, 0, k - 1)
            hit = (np.abs(base[order][cand] - sig) < _TOL) & (best < 0)
            best[hit] = order[cand[hit]]
        if np.any(best < 0) or len(np.unique(best)) != k:
            return None
        images[g] = best
    for g in range(min(len(perms), 4)):  # exact check of the matches of a few permutations
        for j in range(k):
            moved = {tuple(sorted((int(perms[g][s]), p) for s, p in string)): c
                     for string, c in operators[j].terms.items()}
            target = operators[int(images[g, j])].terms
            if moved.keys() != target.keys() or any(abs(moved[s] - target[s]) > _TOL
                                                      for s in moved):
                return None
    return images
