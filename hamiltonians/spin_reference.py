"""Exact ground-state energies of the spin models of :mod:`hamiltonians.spin`.

Three sources, best first:

* free fermions for the transverse-field Ising chain (closed formula when periodic, the
  singular values of an N x N matrix when open);
* tabulated Bethe-ansatz / exact-diagonalisation values for the periodic Heisenberg chain
  (from ``references.md``);
* exact diagonalisation (Lanczos, ``scipy.sparse.linalg.eigsh``) of the model's sparse matrix
  for small systems (at most :data:`MAX_LANCZOS_SPINS` spins and
  :data:`MAX_AUTO_LANCZOS_STATES` states), and past that on periodic lattices in each lattice
  momentum sector (:mod:`hamiltonians.momentum_sectors`; :func:`momentum_sectors_fit`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from hamiltonians.momentum_sectors import MAX_MOMENTUM_SITES, ground_energy, stoquastic_form
from hamiltonians.spin import J1J2, XXZ, Heisenberg, SpinModel, TransverseFieldIsing
from nqs.errors import InputError
from nqs.hilbert import MAX_ENUMERATED_STATES
from nqs.threads import single_blas_thread

MAX_LANCZOS_SPINS = 26
"""``lanczos_ground_state`` refuses larger systems."""

MAX_AUTO_LANCZOS_STATES = MAX_ENUMERATED_STATES
"""``exact_energy`` only diagonalises spaces up to this dimension (seconds to a minute)."""

DENSE_MAX_STATES = 64
"""Below this dimension a dense ``eigvalsh`` replaces Lanczos (which needs ``k < n_states``)."""

# Periodic Heisenberg chain, H = J sum S_i.S_j with S = sigma/2, J = 1 (references.md).
# L=20: exact diagonalisation, agrees with the Bethe ansatz; L=80: Bethe ansatz.
_HEISENBERG_CHAIN_TABLE: dict[int, float] = {20: -8.904386529876, 80: -35.4620761497}
# Periodic L x L square-lattice Heisenberg (J2 = 0) and J1-J2 models beyond Lanczos here,
# energy per site in units of J1 > 0, keyed by (L, J2 / J1) (docs/references.md: exact
# diagonalization, Schulz, Ziman & Poilblanc 1996).
_SQUARE_PER_SITE: dict[tuple[int, float], float] = {(6, 0.0): -0.678872, (6, 0.5): -0.503810}


def tfim_chain_energy(length: int, h: float, J: float = 1.0) -> float:
    """Ground-state energy of the periodic TFIM chain ``H = -J sum sz_i sz_{i+1} - h sum sx_i``.

    Free fermions (even-parity sector, antiperiodic fermion momenta):

        E = -sum_k sqrt(J^2 + h^2 - 2 |J h| cos k),   k = pi (2n + 1) / L,  n = 0 .. L-1.

    For ``h != 0`` the ground state is unique and in the even sector (the Hamiltonian is
    stoquastic in the sigma^z basis), and the formula was checked against exact diagonalisation
    for all signs of h, L = 3..12. It is invalid for ``L < 3`` (a periodic chain of 2 sites has
    a single bond here) and for an odd ring with antiferromagnetic ``J < 0`` (frustrated); both
    raise InputError.
    """
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 3:
        raise InputError(
            f"the free-fermion TFIM formula needs a periodic chain of >= 3 sites, got {length}"
        )
    if J < 0 and length % 2 == 1:
        raise InputError("the free-fermion TFIM formula does not hold for an odd ring with J < 0")
    k = np.pi * (2 * np.arange(length) + 1) / length
    return float(-np.sum(np.sqrt(J**2 + h**2 - 2 * abs(J * h) * np.cos(k))))


def tfim_open_chain_energy(length: int, h: float, J: float = 1.0) -> float:
    """Ground-state energy of the open TFIM chain ``H = -J sum_{i<N} sz_i sz_{i+1} - h sum sx_i``.

    Free fermions (Jordan-Wigner; Lieb, Schultz & Mattis 1961): the single-particle energies
    are twice the singular values ``s_k`` of the bidiagonal ``[N, N]`` matrix with ``h`` on
    the diagonal and ``J`` above it, and ``E = -sum_k s_k`` (any signs of h and J: the open
    chain is bipartite). Checked against exact diagonalisation (``tests``).
    """
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise InputError(f"the open TFIM chain needs at least 1 site, got {length}")
    matrix = np.diag(np.full(length, float(h))) + np.diag(np.full(length - 1, float(J)), 1)
    return float(-np.sum(np.linalg.svd(matrix, compute_uv=False)))


def heisenberg_chain_energy(length: int, J: float = 1.0) -> float | None:
    """Tabulated ground-state energy of the periodic Heisenberg chain ``J sum S_i.S_j``, J > 0.

    Known lengths: 20 (exact diagonalisation, -8.904386529876) and 80 (Bethe ansatz,
    -35.4620761497), both from ``references.md``. Returns None for any other length or J <= 0.
    """
    value = _HEISENBERG_CHAIN_TABLE.get(int(length))
    if value is None or J <= 0:
        return None
    return J * value


def netket_sparse(model: SpinModel) -> sp.csr_matrix:
    """NetKet's matrix of ``model.to_netket()`` in the basis ``model.hilbert.all_states()``.

    NetKet orders the full space like we do but a fixed-S^z sector differently, hence the
    permutation ``states_to_numbers``. Uses NetKet's numba ``LocalOperator`` (its JAX operators
    take seconds to compile per shape). For tests and cross-checks of small systems.
    """
    op = model.to_netket()
    if hasattr(op, "to_local_operator"):  # Ising: share the LocalOperator numba kernels
        op = op.to_local_operator()
    op = op.to_numba_operator()
    mat = op.to_sparse().tocsr()
    idx = np.asarray(op.hilbert.states_to_numbers(model.hilbert.all_states()))
    return mat[idx][:, idx].tocsr()


def model_sparse(model: SpinModel) -> sp.csr_matrix:
    """The model's matrix in the basis ``model.hilbert.all_states()``, built with numpy.

    Vectorised over configurations (unlike ``nqs.operator.to_sparse``), so it handles millions of
    states: a configuration's code is its bit string (site 0 most significant, bit 1 = down);
    flipping sites XORs the code; codes are located in the basis by ``searchsorted``.
    """
    states = model.hilbert.all_states()
    n_states, n = states.shape
    weights, codes, index = _code_index(states)
    rows = [np.arange(n_states)]
    x = states
    if isinstance(model, TransverseFieldIsing):
        b = model.lattice.bonds
        vals = [-model.J * np.sum(x[:, b[:, 0]] * x[:, b[:, 1]], axis=1)]
        cols = [np.arange(n_states)]
        for i in range(n):
            rows.append(np.arange(n_states))
            cols.append(index(codes ^ weights[i]))
            vals.append(np.full(n_states, -model.h))
    else:
        b, jz, jxy = model._bonds, model._jz, model._jxy
        vals = [0.25 * (x[:, b[:, 0]] * x[:, b[:, 1]]) @ jz]
        cols = [np.arange(n_states)]
        for (i, j), coupling in zip(b.tolist(), jxy, strict=True):
            anti = np.nonzero(x[:, i] != x[:, j])[0]
            rows.append(anti)
            cols.append(index(codes[anti] ^ (weights[i] | weights[j])))
            vals.append(np.full(len(anti), 0.5 * coupling))
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_states, n_states),
    )


def _code_index(states: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
    """``(weights [n], codes [n_states], index)`` of a basis ``states [n_states, n]``: a
    configuration's code is its bit string (site 0 most significant, bit 1 = down), ``index``
    maps codes of basis states to their rows (``searchsorted``)."""
    n = states.shape[1]
    weights = np.left_shift(np.int64(1), np.arange(n - 1, -1, -1, dtype=np.int64))
    codes = (states < 0).astype(np.int64) @ weights
    order = np.argsort(codes)
    sorted_codes = codes[order]

    def index(c: np.ndarray) -> np.ndarray:
        return order[np.searchsorted(sorted_codes, c)]

    return weights, codes, index


def lanczos_ground_state(model: SpinModel, k: int = 1, return_vector: bool = False) -> Any:
    """Lowest ``k`` eigenvalues of ``model`` by Lanczos (``scipy.sparse.linalg.eigsh``).

    The matrix is :func:`model_sparse` (checked against NetKet's in the tests). Returns the
    ground-state energy as a float when ``k == 1``, else an ascending array [k]; with
    ``return_vector=True`` a tuple ``(energies, vectors)`` whose vectors ``[n_states, k]`` (or
    ``[n_states]`` for ``k == 1``) are in the basis ``model.hilbert.all_states()``. Small spaces
    use a dense ``eigh``. Refuses (InputError) more than 26 spins or too many states to enumerate.
    """
    n = model.hilbert.n_sites
    if n > MAX_LANCZOS_SPINS:
        raise InputError(
            f"exact diagonalisation is limited to {MAX_LANCZOS_SPINS} spins, the model has {n}"
        )
    n_states = model.hilbert.n_states
    if k < 1 or k > n_states:
        raise InputError(f"k must be between 1 and {n_states}, got {k}")
    mat = model_sparse(model)
    if n_states <= DENSE_MAX_STATES or k >= n_states - 1:
        evals, evecs = np.linalg.eigh(mat.toarray())
        evals, evecs = evals[:k], evecs[:, :k]
    else:
        v0 = np.random.default_rng(0).standard_normal(n_states)
        with single_blas_thread():
            evals, evecs = spla.eigsh(mat, k=k, which="SA", v0=v0, return_eigenvectors=True)
    order = np.argsort(evals)
    evals = np.asarray(evals, dtype=np.float64)[order]
    energies: Any = float(evals[0]) if k == 1 else evals
    if not return_vector:
        return energies
    vecs = np.asarray(evecs)[:, order]
    return energies, (vecs[:, 0] if k == 1 else vecs)


def exact_energy(model: SpinModel) -> tuple[float | None, str]:
    """Best available exact ground-state energy of ``model`` and its source.

    Sources: ``"free fermions"`` (TFIM chain, periodic or open), ``"Bethe ansatz (tabulated)"``
    (periodic Heisenberg chain of a tabulated length, S^z = 0 sector or full space, either
    Marshall sign; XXZ with delta = 1 and J1J2 with j2 = 0 included),
    ``"exact diagonalization (tabulated, 6 digits)"`` (periodic 6x6 square lattice, J > 0:
    Heisenberg -0.678872 J per site, J1-J2 at J2 / J1 = 0.5 -0.503810 J1 per site;
    docs/references.md), ``"exact diagonalization (Lanczos)"``
    (up to :data:`MAX_AUTO_LANCZOS_STATES` states), ``"exact diagonalization (Lanczos, momentum
    sectors)"`` (periodic lattices up to :data:`MAX_MOMENTUM_STATES` states, the lowest over
    the momenta, or up to :data:`MAX_STOQUASTIC_MOMENTUM_STATES` at zero momentum for a model
    with a stoquastic form: :func:`momentum_sectors_fit`), else ``(None, "none")``.
    """
    lat = model.lattice
    if isinstance(model, TransverseFieldIsing):
        if lat.kind == "chain" and lat.pbc and lat.n_sites >= 3 and (
            model.J >= 0 or lat.n_sites % 2 == 0
        ):
            return tfim_chain_energy(lat.n_sites, model.h, model.J), "free fermions"
        if lat.kind == "chain" and not lat.pbc:
            return tfim_open_chain_energy(lat.n_sites, model.h, model.J), "free fermions"
    elif (
        isinstance(model, Heisenberg | XXZ | J1J2)
        and _is_plain_heisenberg(model)
        and lat.kind == "chain"
        and lat.pbc
        and model.hilbert.total_sz in (0, None)
    ):
        J = model.j1 if isinstance(model, J1J2) else model.J
        value = heisenberg_chain_energy(lat.n_sites, J)
        if value is not None:
            return value, "Bethe ansatz (tabulated)"
    elif (
        isinstance(model, Heisenberg | XXZ | J1J2)
        and not (isinstance(model, XXZ) and model.delta != 1.0)
        and lat.kind == "square"
        and lat.pbc
        and len(set(lat.extent)) == 1
        and model.hilbert.total_sz in (0, None)
    ):
        J = model.j1 if isinstance(model, J1J2) else model.J
        if J > 0:
            ratio = model.j2 / model.j1 if isinstance(model, J1J2) else 0.0
            per_site = _SQUARE_PER_SITE.get((int(lat.extent[0]), ratio))
            if per_site is not None:
                return per_site * J * lat.n_sites, "exact diagonalization (tabulated, 6 digits)"
    hi = model.hilbert
    if hi.n_sites <= MAX_LANCZOS_SPINS and hi.n_states <= MAX_AUTO_LANCZOS_STATES:
        return lanczos_ground_state(model), "exact diagonalization (Lanczos)"
    if momentum_sectors_fit(model):
        return ground_energy(model), "exact diagonalization (Lanczos, momentum sectors)"
    return None, "none"


MAX_MOMENTUM_STATES = 4_000_000
""":func:`exact_energy` goes through momentum sectors for S^z sectors (or full spaces) up to
this many states: the chains of 24 spins in S^z = 0 (2.7e6 states; 1 to 2.5 minutes on the
2-core machine, the 13 momenta of one sign)."""

MAX_STOQUASTIC_MOMENTUM_STATES = 1 << 25
""":func:`exact_energy`'s limit for models with a stoquastic form
(:func:`hamiltonians.momentum_sectors.stoquastic_form`), whose ground state is found in the one
zero-momentum sector: the 5x5 transverse-field Ising model (3.4e7 states, 1.3e6 at zero
momentum; 84 s and 4.2 GB on the 2-core machine), the Heisenberg chain of 26 in S^z = 0 (13 s)."""


def momentum_sectors_fit(model: SpinModel) -> bool:
    """Whether :func:`exact_energy` finds the ground state of ``model`` in its momentum
    sectors (:mod:`hamiltonians.momentum_sectors`): a periodic lattice of at most
    :data:`MAX_MOMENTUM_SITES` spins, at most :data:`MAX_MOMENTUM_STATES` states
    (:data:`MAX_STOQUASTIC_MOMENTUM_STATES` for a model with a stoquastic form), and sectors of
    at most about :data:`MAX_AUTO_LANCZOS_STATES` each."""
    lat, hi = model.lattice, model.hilbert
    if not getattr(lat, "pbc", False) or hi.n_sites > MAX_MOMENTUM_SITES:
        return False
    n_translations = int(np.prod(lat.extent))
    limit = (MAX_STOQUASTIC_MOMENTUM_STATES if stoquastic_form(model) is not None
             else MAX_MOMENTUM_STATES)
    return hi.n_states <= limit and hi.n_states <= MAX_AUTO_LANCZOS_STATES * n_translations


#: :func:`symmetric_ground_energy` works on ``[G, n_states]`` index tables up to this size.
MAX_SYMMETRIC_WORK = 20_000_000


def symmetric_ground_energy(model: SpinModel, perms: Any, characters: Any = None
                            ) -> float | None:
    """Lowest energy of ``model`` among the states of the one-dimensional irrep with
    ``characters`` ``[G]`` (None: all ones, the states invariant) of the site permutations
    ``perms`` ``[G, n_sites]`` (a group, identity included): the states a projection on that
    irrep spans (``rbm-symm``, the GCNN and ``--project`` the trivial one, ``--momentum`` a
    momentum), in the basis the model is written in (the Marshall sign included). Lanczos on
    ``A = P H P + c (1 - P)``, ``(P v)(x) = (1 / G) sum_g chi_g v(x . g)`` (the map of
    :class:`nqs.models.symmetry.SymmetryProjected`, a Hermitian projector) and ``c`` above
    ``||H||``, so the lowest eigenvalue of ``A`` is the lowest of ``H`` in the irrep. None when
    ``G * n_states`` passes :data:`MAX_SYMMETRIC_WORK` (memory of the index tables)."""
    perms = np.asarray(perms, dtype=np.int64)
    if len(perms) * model.hilbert.n_states > MAX_SYMMETRIC_WORK:
        return None
    states = model.hilbert.all_states()
    n_states, n = states.shape
    weights, _, index = _code_index(states)
    images = np.stack([index((states[:, g] < 0).astype(np.int64) @ weights)
                       for g in perms])  # [G, n_states]
    mat = model_sparse(model)
    shift = float(np.max(np.abs(mat).sum(axis=1))) + 1.0
    chars = None if characters is None else np.asarray(characters, dtype=complex)[:, None]
    dtype = np.float64 if chars is None else np.complex128

    def project(v: np.ndarray) -> np.ndarray:
        return np.mean(v[images] if chars is None else chars * v[images], axis=0)

    def apply(v: np.ndarray) -> np.ndarray:
        v = np.ravel(v)
        pv = project(v)
        return project(mat @ pv) + shift * (v - pv)

    if n_states <= DENSE_MAX_STATES:
        dense = np.stack([apply(e.astype(dtype)) for e in np.eye(n_states)], axis=1)
        return float(np.linalg.eigvalsh(0.5 * (dense + dense.conj().T))[0])
    op = spla.LinearOperator((n_states, n_states), matvec=apply, dtype=dtype)
    v0 = project(np.random.default_rng(0).standard_normal(n_states).astype(dtype)) + 1e-3
    with single_blas_thread():
        return float(np.real(spla.eigsh(op, k=1, which="SA", v0=v0,
                                        return_eigenvectors=False)[0]))


def _is_plain_heisenberg(model: Heisenberg | XXZ | J1J2) -> bool:
    if isinstance(model, XXZ):
        return model.delta == 1.0
    if isinstance(model, J1J2):
        return model.j2 == 0.0
    return True


def infinite_temperature_energy(model: SpinModel) -> float:
    """``E_inf = Tr H / 2^N`` over the full space, the energy zero of varbench's V-score.

    Only diagonal terms survive the trace: ``x_i x_j`` averages to ``delta_ij`` over all
    configurations and no bond joins a site to itself, so this is 0 for every model here; it is
    computed from the bonds anyway (a self-bond would contribute its coupling).
    """
    if isinstance(model, TransverseFieldIsing):
        b = model.lattice.bonds
        return float(-model.J * np.count_nonzero(b[:, 0] == b[:, 1]))
    b = model._bonds
    return float(0.25 * np.sum(model._jz[b[:, 0] == b[:, 1]]))
