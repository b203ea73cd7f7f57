"""Exact diagonalisation in lattice-momentum sectors of the spin models of :mod:`hamiltonians.spin`.

On a periodic lattice with ``T`` translations the S^z sector (or the full space) splits into
``T`` momentum sectors of about ``1 / T`` of its size each. A sector's basis holds one momentum
state per translation orbit,

    |r, K> = sum_t chi_t^* T_t |r>,   chi_t = exp(2 pi i sum_d m_d s_d / L_d)

(``r`` the orbit's smallest bit code, ``s`` the shift of translation ``t``); orbits whose
stabilizer has a character != 1 have no state at that momentum. The orbits are found once per
lattice and sector (:func:`translation_orbits`) and serve every momentum; since the
Hamiltonians here are real in the S^z basis, ``K`` and ``-K`` hold the same spectrum and
:func:`ground_state_momentum` diagonalises one of each pair.

A model with no positive off-diagonal element in the S^z basis (stoquastic: the
transverse-field Ising model, the Heisenberg and XXZ models of a bipartite lattice in the
Marshall basis) has a ground state at zero momentum: by Perron-Frobenius it has a ground state
``v >= 0``, and ``sum_t T_t v`` is nonzero, nonnegative, translation invariant and still a ground
state. :func:`stoquastic_form` finds such a form of a model (same spectrum), and
:func:`ground_energy` then diagonalises one sector instead of all.

Codes: site 0 is the most significant bit, a set bit is a down spin.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from hamiltonians.spin import SpinModel, TransverseFieldIsing
from nqs.errors import InputError
from nqs.threads import single_blas_thread

MAX_MOMENTUM_SITES = 26
"""Momentum sectors are built for at most this many spins (codes of the S^z sector in int64)."""

DENSE_MAX_REPS = 64
"""Below this sector dimension a dense ``eigvalsh`` replaces Lanczos."""


def _popcount(c: np.ndarray) -> np.ndarray:
    """Set bits of each int64 code."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(c).astype(np.int64)
    pop = np.zeros(len(c), dtype=np.int64)
    v = c.copy()
    while np.any(v):
        pop += v & 1
        v >>= 1
    return pop


def sector_codes(n: int, total_sz: int | None) -> np.ndarray:
    """Bit codes of the ``n``-spin configurations with ``total_sz`` (None: all), ascending, int64."""
    out = []
    chunk = 1 << 22
    n_down = None if total_sz is None else (n - total_sz) // 2
    for start in range(0, 1 << n, chunk):
        c = np.arange(start, min(start + chunk, 1 << n), dtype=np.int64)
        out.append(c if n_down is None else c[_popcount(c) == n_down])
    return np.concatenate(out)


def permute_codes(codes: np.ndarray, perm: np.ndarray, n: int) -> np.ndarray:
    """Codes of the configurations whose site ``perm[i]`` holds the spin of site ``i``.

    Sites are grouped by the distance their bit travels, so a translation costs a few masked
    shifts of the whole array (two on a chain, at most four on the 2D lattices) instead of one
    per site."""
    bit = n - 1 - np.arange(n)
    shift = bit[np.asarray(perm)] - bit
    out = np.zeros_like(codes)
    for d in np.unique(shift):
        mask = np.int64(sum(1 << int(b) for b in bit[shift == d]))
        part = codes & mask
        out |= part << int(d) if d >= 0 else part >> int(-d)
    return out


@dataclass(frozen=True)
class TranslationOrbits:
    """The translation orbits of a sector's codes (:func:`translation_orbits`).

    Attributes:
      codes: ``[n_codes]`` int64, ascending: the sector.
      rep_pos: ``[n_codes]`` index into ``codes`` of each code's representative (its orbit's
        smallest code).
      t_star: ``[n_codes]`` a translation taking each code to its representative.
      reps: ``[n_orbits]`` indices into ``codes`` of the representatives.
      stabilizer: ``[n_orbits]`` int64 bit masks, bit ``t`` set when translation ``t`` fixes
        the representative.
      shifts: ``[T, ndim]`` the shift of each translation in cells.
      extent: cells per lattice direction.
    """

    codes: np.ndarray
    rep_pos: np.ndarray
    t_star: np.ndarray
    reps: np.ndarray
    stabilizer: np.ndarray
    shifts: np.ndarray
    extent: tuple[int, ...]


def translation_orbits(model: SpinModel) -> TranslationOrbits:
    """The translation orbits of ``model``'s S^z sector (the full space without one) on its
    periodic lattice: one pass of masked shifts per translation over the sector's codes."""
    lat = model.lattice
    if not getattr(lat, "pbc", False):
        raise InputError("momentum sectors need a periodic lattice")
    n = lat.n_sites
    if n > MAX_MOMENTUM_SITES:
        raise InputError(
            f"momentum sectors are limited to {MAX_MOMENTUM_SITES} spins, the model has {n}"
        )
    trans = lat.translations()
    if len(trans) > 62:
        raise InputError(f"{len(trans)} translations: at most 62 fit the stabilizer masks")
    codes = sector_codes(n, model.hilbert.total_sz)
    rep = codes.copy()
    t_star = np.zeros(len(codes), dtype=np.int16)
    stabilizer = np.zeros(len(codes), dtype=np.int64)
    for t, perm in enumerate(trans):
        moved = permute_codes(codes, perm, n)
        better = moved < rep
        rep[better] = moved[better]
        t_star[better] = t
        stabilizer[moved == codes] |= np.int64(1) << t
    reps = np.flatnonzero(rep == codes)
    rep_pos = np.searchsorted(codes, rep)
    shifts = np.stack(np.unravel_index(np.arange(len(trans)), lat.extent), axis=1)
    return TranslationOrbits(codes, rep_pos, t_star, reps, stabilizer[reps], shifts,
                             tuple(int(e) for e in lat.extent))


def _sector_matrix(model: SpinModel, orbits: TranslationOrbits, momentum: tuple[int, ...]
                   ) -> sp.csr_matrix | None:
    """``H`` in the basis of the momentum states of ``momentum`` (None: the sector is empty)."""
    chars = np.exp(2j * np.pi * (orbits.shifts * np.asarray(momentum)
                                 / np.asarray(orbits.extent)).sum(1))
    if np.all(np.abs(chars.imag) < 1e-12):  # momenta 0 and pi: a real matrix, half the work
        chars = np.real(chars).round()
    dtype = chars.dtype
    bits = (orbits.stabilizer[:, None] >> np.arange(len(chars))) & 1  # [n_orbits, T]
    char_sum = bits @ chars
    alive = np.abs(char_sum) > 1e-8
    reps = orbits.codes[orbits.reps[alive]]
    n_reps = len(reps)
    if n_reps == 0:
        return None
    r_stab = bits[alive].sum(1)
    index_of_code = np.full(len(orbits.codes), -1, dtype=np.int64)
    index_of_code[orbits.reps[alive]] = np.arange(n_reps)
    n = model.lattice.n_sites
    bit = n - 1 - np.arange(n)
    x = 1 - 2 * ((reps[:, None] >> bit[None, :]) & 1)  # [n_reps, n] spins +-1
    rows, cols, vals = [np.arange(n_reps)], [np.arange(n_reps)], []
    if isinstance(model, TransverseFieldIsing):
        b = model.lattice.bonds
        vals.append(-model.J * np.sum(x[:, b[:, 0]] * x[:, b[:, 1]], axis=1).astype(dtype))
        flips = [((1 << int(bit[i])), np.arange(n_reps), -model.h) for i in range(n)]
    else:
        b, jz, jxy = model._bonds, model._jz, model._jxy
        vals.append((0.25 * (x[:, b[:, 0]] * x[:, b[:, 1]]) @ jz).astype(dtype))
        flips = [((1 << int(bit[i])) | (1 << int(bit[j])), np.nonzero(x[:, i] != x[:, j])[0],
                  0.5 * coupling)
                 for (i, j), coupling in zip(b.tolist(), jxy, strict=True)]
    for mask, src, mel in flips:
        pos = np.searchsorted(orbits.codes, reps[src] ^ mask)
        dst = index_of_code[orbits.rep_pos[pos]]
        ok = dst >= 0
        src, pos, dst = src[ok], pos[ok], dst[ok]
        rows.append(dst)
        cols.append(src)
        vals.append(mel * np.conj(chars[orbits.t_star[pos]]) * np.sqrt(r_stab[dst] / r_stab[src]))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n_reps, n_reps))


def momentum_sector_energies(model: SpinModel, momentum: tuple[int, ...] | None = None,
                             k: int = 1, orbits: TranslationOrbits | None = None) -> np.ndarray:
    """Lowest ``k`` energies in the sector of lattice momentum ``momentum`` (integers ``m_d``:
    ``K_d = 2 pi m_d / L_d``; default zero) and the model's S^z sector, by Lanczos on the
    basis of momentum states (module docstring). ``orbits``: :func:`translation_orbits` of the
    model, when already found. Needs a periodic lattice and at most :data:`MAX_MOMENTUM_SITES`
    spins. Returns an ascending array ``[k]`` (fewer when the sector is smaller)."""
    lat = model.lattice
    if not getattr(lat, "pbc", False):
        raise InputError("momentum sectors need a periodic lattice")
    momentum = (0,) * lat.ndim if momentum is None else tuple(int(m) for m in momentum)
    if len(momentum) != lat.ndim:
        raise InputError(f"a momentum needs {lat.ndim} integers, got {momentum}")
    mat = _sector_matrix(model, translation_orbits(model) if orbits is None else orbits,
                         momentum)
    if mat is None:
        return np.zeros(0)
    n_reps = mat.shape[0]
    if n_reps <= DENSE_MAX_REPS or k >= n_reps - 1:
        return np.sort(np.linalg.eigvalsh(mat.toarray())[:k])
    v0 = np.random.default_rng(0).standard_normal(n_reps).astype(mat.dtype)
    with single_blas_thread():
        evals = spla.eigsh(mat, k=k, which="SA", v0=v0, return_eigenvectors=False)
    return np.sort(np.real(evals))


def stoquastic_form(model: SpinModel) -> SpinModel | None:
    """``model``, or a model of the same spectrum, whose off-diagonal elements in the S^z basis
    are all <= 0 (module docstring); None when neither is. The transverse-field Ising model with
    ``h < 0`` becomes ``h > 0`` (the rotation by ``prod_i sigma^z_i``); an S.S model without the
    Marshall sign gets it when that makes every exchange ``Jxy <= 0`` (a bipartite lattice whose
    bonds all join the two sublattices, or same-sublattice bonds with ``Jxy <= 0``)."""
    if isinstance(model, TransverseFieldIsing):
        return model if model.h >= 0 else dataclasses.replace(model, h=-model.h)
    if np.all(model._jxy <= 0):
        return model
    if not model.marshall_sign and model.lattice.is_bipartite:
        rotated = dataclasses.replace(model, marshall_sign=True)
        if np.all(rotated._jxy <= 0):
            return rotated
    return None


def ground_energy(model: SpinModel) -> float | None:
    """The ground-state energy of ``model`` on a periodic lattice of at most
    :data:`MAX_MOMENTUM_SITES` spins: Lanczos in the zero-momentum sector of its
    :func:`stoquastic_form` when it has one, else the lowest over the momenta
    (:func:`ground_state_momentum`). None on an open lattice or past the site limit."""
    lattice = model.lattice
    if not getattr(lattice, "pbc", False) or lattice.n_sites > MAX_MOMENTUM_SITES:
        return None
    stoquastic = stoquastic_form(model)
    if stoquastic is not None:
        return float(momentum_sector_energies(stoquastic)[0])
    found = ground_state_momentum(model)
    return None if found is None else found[1]


def ground_state_momentum(model: SpinModel) -> tuple[tuple[int, ...], float] | None:
    """``(k, E_k)``: the momentum (integers, units of ``2 pi / L`` per lattice direction, as
    ``nqs spin --momentum`` takes them) whose sector holds the lowest energy of ``model`` on
    a periodic lattice, and that energy (:func:`momentum_sector_energies` over the momenta,
    ``-k`` skipped where ``k`` was done: a real Hamiltonian gives them one spectrum; the first
    of equal ones in the order of ``itertools.product``; zero momentum alone for a stoquastic
    model). None on an open lattice or past :data:`MAX_MOMENTUM_SITES`."""
    lattice = model.lattice
    if not getattr(lattice, "pbc", False) or lattice.n_sites > MAX_MOMENTUM_SITES:
        return None
    if stoquastic_form(model) is model:  # a ground state at zero momentum, the first momentum
        return (0,) * lattice.ndim, float(momentum_sector_energies(model)[0])
    orbits = translation_orbits(model)
    best: tuple[tuple[int, ...], float] | None = None
    done: set[tuple[int, ...]] = set()
    for k in itertools.product(*(range(n) for n in lattice.extent)):
        if tuple((-m) % n for m, n in zip(k, lattice.extent, strict=True)) in done:
            continue
        done.add(k)
        energies = momentum_sector_energies(model, k, orbits=orbits)
        if len(energies) and (best is None
                              or energies[0] < best[1] - 1e-9 * max(1.0, abs(best[1]))):
            best = (tuple(int(v) for v in k), float(energies[0]))
    return best
