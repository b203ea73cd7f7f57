"""Built-in spin observables as Pauli sums (:mod:`hamiltonians.pauli`).

**Convention: S = sigma / 2** (spin-1/2 operators, as the Heisenberg-type models of
``docs/conventions.md``), so ``S^z_i = x_i / 2`` and ``S_i . S_i = 3/4``. Build ``sigma``
operators with :func:`hamiltonians.pauli.sigmax` & co. for Pauli units (the TFIM's).

* magnetization ``M^a = sum_i S^a_i`` (``a`` in ``x, y, z``);
* staggered magnetization ``M_s^a = sum_i eps_i S^a_i``, ``eps_i = (-1)^(sublattice of i)``
  (bipartite lattices), and its squared order parameter
  ``m_s^2 = (1/N^2) sum_ij eps_i eps_j S_i . S_j = |M_s|^2 / N^2``;
* spin correlations ``S_i . S_j``, all pairs at once as a component operator;
* the static structure factor ``S(q) = (1/N) sum_ij e^{i q.(r_i - r_j)} S_i . S_j``
  ``= (1/N) sum_ij cos(q.(r_i - r_j)) S_i . S_j`` on the lattice momenta
  (:func:`lattice_momenta`), ``r_i = lattice.positions[i]``; ``S(q)`` at ``q`` = the
  staggering wave vector is ``N m_s^2``.

Each builder takes a number of spins, a :class:`nqs.hilbert.SpinHilbert` or a
:class:`hamiltonians.lattice.Lattice`; with a Hilbert space the operator is bound to it.
"""

from __future__ import annotations

import numpy as np

from hamiltonians.lattice import Lattice
from hamiltonians.pauli import (
    PauliComponents,
    PauliSum,
    identity,
    pauli_components,
    pauli_sum,
    sigmax,
    sigmay,
    sigmaz,
)
from nqs.errors import InputError
from nqs.hilbert import SpinHilbert
from nqs.operator import CombinedComponents
from nqs.stats import Stats

SpinSpace = int | SpinHilbert | Lattice
_SIGMA = {"x": sigmax, "y": sigmay, "z": sigmaz}


def _n_and_hilbert(space: SpinSpace) -> tuple[int, SpinHilbert | None]:
    if isinstance(space, Lattice):
        return space.n_sites, None
    if isinstance(space, SpinHilbert):
        return space.n_sites, space
    if isinstance(space, int | np.integer) and not isinstance(space, bool) and space > 0:
        return int(space), None
    raise InputError(f"expected a number of spins, a SpinHilbert or a Lattice, got {space!r}")


def _axis(axis: str) -> str:
    a = str(axis).lower()
    if a not in _SIGMA:
        raise InputError(f"unknown spin axis {axis!r}; valid axes: x, y, z")
    return a


def _bound(op: PauliSum, hilbert: SpinHilbert | None) -> PauliSum:
    return op if hilbert is None else op.on(hilbert)


def spin(i: int, axis: str) -> PauliSum:
    """``S^a_i = sigma^a_i / 2``."""
    return 0.5 * _SIGMA[_axis(axis)](i)


def spin_dot(i: int, j: int) -> PauliSum:
    """``S_i . S_j = (sx sx + sy sy + sz sz) / 4``; ``3/4`` (times the identity) for ``i = j``."""
    if i == j:
        return 0.75 * identity()
    return pauli_sum(spin(i, a) * spin(j, a) for a in "xyz")


def magnetization(space: SpinSpace, axis: str = "z") -> PauliSum:
    """``M^a = sum_i S^a_i`` (total, not per site; ``<M^z> = 0`` in an ``S^z = 0`` sector and
    ``<M^x> = 0`` in any fixed-``S^z`` sector, where the operator is projected)."""
    n, hilbert = _n_and_hilbert(space)
    return _bound(pauli_sum(spin(i, axis) for i in range(n)), hilbert)


def _staggering(lattice: Lattice) -> np.ndarray:
    if not isinstance(lattice, Lattice):
        raise InputError("the staggered magnetization needs a Lattice (its sublattices)")
    return 1.0 - 2.0 * lattice.sublattice  # raises InputError if not bipartite


def staggered_magnetization(lattice: Lattice, axis: str = "z",
                            hilbert: SpinHilbert | None = None) -> PauliSum:
    """``M_s^a = sum_i eps_i S^a_i``, ``eps_i = +1`` on sublattice 0, ``-1`` on sublattice 1
    (bipartite lattices only: InputError otherwise)."""
    eps = _staggering(lattice)
    return _bound(pauli_sum(eps[i] * spin(i, axis) for i in range(lattice.n_sites)), hilbert)


def staggered_magnetization_squared(lattice: Lattice, hilbert: SpinHilbert | None = None
                                    ) -> PauliSum:
    """``m_s^2 = (1/N^2) sum_ij eps_i eps_j S_i . S_j`` (all three components; SU(2)
    invariant), ``N`` sites; ``= S(q_AF) / N``."""
    eps = _staggering(lattice)
    n = lattice.n_sites
    op = pauli_sum((eps[i] * eps[j] / n**2) * spin_dot(i, j) for i in range(n) for j in range(n))
    return _bound(op, hilbert)


def pair_indices(n_sites: int) -> np.ndarray:
    """The pairs ``i < j`` in the order of :func:`spin_correlations`, int ``[N(N-1)/2, 2]``."""
    i, j = np.triu_indices(n_sites, k=1)
    return np.stack([i, j], axis=1)


def spin_correlations(space: SpinSpace) -> PauliComponents:
    """All ``S_i . S_j``, ``i < j`` (order :func:`pair_indices`), as one operator with
    ``N(N-1)/2`` components: two rows per pair (diagonal and exchange)."""
    n, hilbert = _n_and_hilbert(space)
    if n < 2:
        raise InputError("spin correlations need at least 2 spins")
    ops = [spin_dot(int(i), int(j)) for i, j in pair_indices(n)]
    return pauli_components(ops, hilbert if hilbert is not None else n)


def correlation_matrix(stats: Stats, n_sites: int) -> tuple[np.ndarray, np.ndarray]:
    """``(C [N, N], error [N, N])`` with ``C_ij = <S_i . S_j>`` from the ``Stats`` of
    :func:`spin_correlations` (symmetric; ``C_ii = 3/4`` exactly)."""
    pairs = pair_indices(n_sites)
    mean = np.real(np.asarray(stats.mean))
    err = np.asarray(stats.error_of_mean)
    if mean.shape != (len(pairs),):
        raise InputError(f"expected the statistics of {len(pairs)} pairs, got {mean.shape}")
    c = np.full((n_sites, n_sites), 0.75)
    e = np.zeros((n_sites, n_sites))
    c[pairs[:, 0], pairs[:, 1]] = c[pairs[:, 1], pairs[:, 0]] = mean
    e[pairs[:, 0], pairs[:, 1]] = e[pairs[:, 1], pairs[:, 0]] = err
    return c, e


def lattice_momenta(lattice: Lattice) -> np.ndarray:
    """The momenta of a periodic lattice, ``[n_cells, d]``: ``q = sum_k (m_k / L_k) b_k``,
    ``m_k = 0 .. L_k - 1``, with ``b_k`` the reciprocal vectors (``a_i . b_j = 2 pi delta_ij``),
    row-major over ``(m_1, m_2)``. Open lattices get the same grid (not conserved momenta)."""
    vec = np.asarray(lattice.geometry.vectors, dtype=float)
    recip = 2.0 * np.pi * np.linalg.inv(vec).T  # rows b_k
    grid = np.stack(np.meshgrid(*(np.arange(n) / n for n in lattice.extent), indexing="ij"),
                    axis=-1).reshape(-1, lattice.ndim)
    return grid @ recip


def structure_factor(lattice: Lattice, q: np.ndarray, hilbert: SpinHilbert | None = None
                     ) -> PauliSum:
    """``S(q) = (1/N) sum_ij cos(q . (r_i - r_j)) S_i . S_j`` for one momentum ``q [d]``."""
    q = np.asarray(q, dtype=float).reshape(-1)
    if q.shape != (lattice.ndim,):
        raise InputError(f"a momentum of the {lattice.describe()} has {lattice.ndim} "
                         f"components, got {q.shape[0]}")
    r = lattice.positions
    n = lattice.n_sites
    pairs = ((2.0 * np.cos(q @ (r[i] - r[j])) / n) * spin_dot(i, j)
             for i in range(n) for j in range(i + 1, n))
    return _bound(pauli_sum([0.75 * identity(), *pairs]), hilbert)


def structure_factors(lattice: Lattice, hilbert: SpinHilbert | None = None,
                      momenta: np.ndarray | None = None) -> CombinedComponents:
    """``S(q)`` for every ``q`` of ``momenta [Q, d]`` (default :func:`lattice_momenta`) as one
    operator with ``Q`` components: the Fourier transform of the pair correlations,
    ``S(q) = 3/4 + (2/N) sum_{i<j} cos(q . (r_i - r_j)) S_i . S_j``, measured from the rows of
    :func:`spin_correlations` (a :class:`nqs.operator.CombinedComponents`): every momentum
    costs a matrix-vector product of the pair values, not another pass over the pairs."""
    qs = lattice_momenta(lattice) if momenta is None else np.asarray(momenta, dtype=float)
    if qs.ndim != 2 or qs.shape[1] != lattice.ndim:
        raise InputError(f"momenta of the {lattice.describe()} are [Q, {lattice.ndim}], got "
                         f"{qs.shape}")
    n = lattice.n_sites
    pairs = pair_indices(n)
    r = np.asarray(lattice.positions, dtype=float)
    phase = (r[pairs[:, 0]] - r[pairs[:, 1]]) @ qs.T  # [P, Q]
    pairs_op = spin_correlations(hilbert if hilbert is not None else n)
    return CombinedComponents(pairs_op, 2.0 * np.cos(phase) / n, np.full(len(qs), 0.75))
