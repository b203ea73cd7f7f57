"""NetKet interop: spin-1/2 operators and graphs in, Pauli sums out.

    H = from_netket(nk.operator.Ising(hi, nk.graph.Chain(6), h=1.0))   # a TransverseFieldIsing
    O = from_netket(nk.operator.spin.sigmax(hi, 0) @ nk.operator.spin.sigmaz(hi, 1))  # PauliSum
    lat = from_netket(nk.graph.Chain(6))                               # hamiltonians.lattice
    nk_op = to_netket(sigmax(0) * sigmax(1), n_sites=6)                # nk.operator.LocalOperator

Conventions. NetKet's ``Spin(1/2)`` has local states ``(+1, -1)`` in that order and
``sigma^z (+1) = +1``: the same as nqs (``x_i = +1`` spin up, ``docs/conventions.md``), so site
numbers, configurations and matrices carry over unchanged. NetKet's ``Spin(0.5, N, total_sz=m)``
is the sector ``sum_i x_i = 2 m``, nqs's ``SpinHilbert(N, total_sz=2 m)``.

* ``nk.operator.Ising(h, J)`` is ``H = -h sum_i sigma^x_i + J sum_<ij> sigma^z_i sigma^z_j``;
  nqs's :class:`hamiltonians.spin.TransverseFieldIsing` has ``-J``: the import flips the sign.
* ``nk.operator.Heisenberg(J)`` is ``J sum_<ij> sigma_i . sigma_j`` with **Pauli matrices**
  (``= 4 J sum S_i . S_j``) and, with ``sign_rule``, the Marshall-rotated exchange; it is a
  ``LocalOperator`` and imports as such (a :class:`hamiltonians.pauli.PauliSum` with the same
  matrix: ``J (X X + Y Y + Z Z)`` per bond).
* A ``LocalOperator`` (local matrices ``M`` on sites ``a_1 < ... < a_k``, site ``a_1`` the most
  significant digit) is expanded in Pauli strings, ``c_P = Tr(P M) / 2^k``, plus its constant;
  ``PauliStrings`` (``"XZII"``: character ``k`` acts on site ``k``) map term by term.

Every import has the same matrix as NetKet's ``to_dense()`` (``tests/test_netket_interop.py``).
``netket`` is imported only inside the functions that build NetKet objects.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from hamiltonians.lattice import AnyLattice, EdgeLattice, Lattice, as_lattice
from hamiltonians.pauli import PauliString, PauliSum
from hamiltonians.spin import TransverseFieldIsing
from nqs.errors import InputError
from nqs.hilbert import SpinHilbert

ACCEPTED = ("nk.operator.Ising, nk.operator.Heisenberg, nk.operator.LocalOperator or "
            "PauliStrings on nk.hilbert.Spin(0.5, N), or an nk.graph graph")

_PAULI = {"I": np.eye(2, dtype=complex), "X": np.array([[0, 1], [1, 0]], complex),
          "Y": np.array([[0, -1j], [1j, 0]]), "Z": np.diag([1.0 + 0j, -1.0])}
_TOL = 1e-13


def _is_graph(obj: Any) -> bool:
    return hasattr(obj, "n_nodes") and callable(getattr(obj, "edges", None))


def spin_hilbert_from_netket(hi: Any) -> SpinHilbert:
    """``nk.hilbert.Spin(0.5, N[, total_sz=m])`` as ``SpinHilbert(N[, total_sz=2 m])``.

    Raises InputError for any other space (spin > 1/2, Fock, a constraint other than a sum).
    """
    local = getattr(hi, "local_states", None)
    if local is None or list(np.asarray(local).tolist()) != [1, -1]:
        raise InputError(f"only spin-1/2 spaces (local states +1, -1) import from NetKet, got "
                         f"{type(hi).__name__} with local states {local}")
    constraint = getattr(hi, "constraint", None)
    if constraint is None:
        return SpinHilbert(int(hi.size))
    total = getattr(constraint, "sum_value", None)
    if total is None:
        raise InputError(f"the NetKet space has the constraint {constraint!r}; only a fixed "
                         "total S^z (Spin(..., total_sz=...)) imports")
    return SpinHilbert(int(hi.size), int(round(float(total))))


def pauli_decomposition(matrix: Any, sites: Any) -> dict[PauliString, complex]:
    """``{PauliString: c_P}`` with ``M = sum_P c_P P``, ``c_P = Tr(P M) / 2^k``, for a ``2^k x
    2^k`` matrix on ``sites`` (the first site the most significant digit, ``+1`` first)."""
    m = np.asarray(matrix.todense() if hasattr(matrix, "todense") else matrix, dtype=complex)
    sites = [int(s) for s in np.asarray(sites).reshape(-1)]
    k = len(sites)
    if m.shape != (2**k, 2**k) or len(set(sites)) != k:
        raise InputError(f"a local matrix of shape {m.shape} does not act on the spin-1/2 sites "
                         f"{sites}")
    out: dict[PauliString, complex] = {}
    for labels in itertools.product("IXYZ", repeat=k):
        p = np.ones((1, 1), complex)
        for lab in labels:
            p = np.kron(p, _PAULI[lab])
        c = np.trace(p @ m) / 2**k
        if abs(c) > _TOL:
            key = tuple(sorted((s, lab) for s, lab in zip(sites, labels, strict=True) if lab != "I"))
            out[key] = out.get(key, 0) + c
    return out


def _local_operator_to_pauli(op: Any, hilbert: SpinHilbert) -> PauliSum:
    terms: dict[PauliString, complex] = {}
    constant = complex(np.asarray(getattr(op, "constant", 0.0)))
    if constant != 0:
        terms[()] = constant
    for mat, sites in zip(op.operators, op.acting_on, strict=True):
        for key, c in pauli_decomposition(mat, sites).items():
            terms[key] = terms.get(key, 0) + c
    return PauliSum(terms, hilbert)


def from_netket(obj: Any) -> TransverseFieldIsing | PauliSum | AnyLattice:
    """The nqs counterpart of a NetKet spin-1/2 operator or graph (module docstring).

    * ``nk.operator.Ising`` (full space) -> :class:`hamiltonians.spin.TransverseFieldIsing`
      with ``J_nqs = -J_netket`` on its edges (on a fixed-``S^z`` space: the projected
      :class:`hamiltonians.pauli.PauliSum`);
    * ``LocalOperator`` (also ``Heisenberg``, ``sigmax(hi, i)`` products and sums),
      ``PauliStrings`` -> a :class:`hamiltonians.pauli.PauliSum`
      bound to the matching :class:`nqs.hilbert.SpinHilbert`;
    * an ``nk.graph`` graph -> a :class:`hamiltonians.lattice.Lattice` when it is one of the
      standard lattices (same sites and bonds), else an
      :class:`hamiltonians.lattice.EdgeLattice`.

    Raises InputError (one line naming what is accepted) for anything else.
    """
    if isinstance(obj, Lattice | EdgeLattice) or _is_graph(obj):
        return as_lattice(obj)
    hi = getattr(obj, "hilbert", None)
    if hi is None or not hasattr(obj, "to_dense"):
        raise InputError(f"from_netket accepts {ACCEPTED}; got {type(obj).__name__}")
    hilbert = spin_hilbert_from_netket(hi)
    if all(hasattr(obj, a) for a in ("h", "J", "edges")):  # Ising: -h sum X + J sum Z Z
        edges = np.asarray(obj.edges, dtype=np.int64).reshape(-1, 2)
        h, j = float(np.asarray(obj.h)), float(np.asarray(obj.J))
        if hilbert.total_sz is None:
            lattice = as_lattice(_EdgeGraph(hilbert.n_sites, edges))
            return TransverseFieldIsing(lattice, h=h, J=-j)
        terms: dict[PauliString, complex] = {((i, "X"),): -h for i in range(hilbert.n_sites)}
        for a, b in edges.tolist():  # a sector: the projected sum (the field rows drop out)
            key = ((min(a, b), "Z"), (max(a, b), "Z"))
            terms[key] = terms.get(key, 0) + j
        return PauliSum(terms, hilbert)
    if hasattr(obj, "operators") and hasattr(obj, "acting_on"):
        return _local_operator_to_pauli(obj, hilbert)
    if hasattr(obj, "operators") and hasattr(obj, "weights"):  # PauliStrings: char k = site k
        terms: dict[PauliString, complex] = {}
        for word, w in zip(np.asarray(obj.operators).tolist(), np.asarray(obj.weights).tolist(),
                           strict=True):
            key = tuple((k, ch) for k, ch in enumerate(str(word).upper()) if ch != "I")
            terms[key] = terms.get(key, 0) + complex(w)
        return PauliSum(terms, hilbert)
    to_local = getattr(obj, "to_local_operator", None)
    if callable(to_local):
        return _local_operator_to_pauli(to_local(), hilbert)
    raise InputError(f"from_netket accepts {ACCEPTED}; got {type(obj).__name__}")


class _EdgeGraph:
    """The minimal graph interface :func:`hamiltonians.lattice.as_lattice` reads."""

    def __init__(self, n_nodes: int, edges: np.ndarray) -> None:
        self.n_nodes = n_nodes
        self._edges = edges

    def edges(self) -> np.ndarray:
        return self._edges


def netket_hilbert(hilbert: SpinHilbert) -> Any:
    """``SpinHilbert(N[, total_sz=t])`` as ``nk.hilbert.Spin(0.5, N[, total_sz=t/2])``."""
    import netket as nk

    tsz = hilbert.total_sz
    return nk.hilbert.Spin(0.5, hilbert.n_sites, total_sz=None if tsz is None else tsz / 2)


def to_netket(op: Any, n_sites: int | SpinHilbert | None = None) -> Any:
    """A NetKet operator with the same matrix.

    ``op`` is a :class:`hamiltonians.pauli.PauliSum` (-> ``nk.operator.LocalOperator``, one
    ``2^k x 2^k`` Kronecker product per Pauli string; the space is ``op.hilbert``, else
    ``n_sites`` spins, else ``op.max_site + 1``) or an nqs spin model (its own ``to_netket()``:
    ``Ising`` / ``Heisenberg`` with NetKet's signs and factors, module docstring). A lattice
    becomes ``nk.graph.Graph`` with its edges.
    """
    import netket as nk

    if isinstance(op, Lattice | EdgeLattice):
        return nk.graph.Graph(edges=op.bonds.tolist(), n_nodes=op.n_sites)
    if not isinstance(op, PauliSum):
        if callable(getattr(op, "to_netket", None)):
            return op.to_netket()
        raise InputError(f"to_netket accepts a PauliSum, a spin model or a lattice; got "
                         f"{type(op).__name__}")
    if isinstance(n_sites, SpinHilbert):
        hilbert = n_sites
    elif op.hilbert is not None:
        hilbert = op.hilbert
    else:
        hilbert = SpinHilbert(int(n_sites) if n_sites is not None else max(op.max_site + 1, 1))
    op = op.on(hilbert) if op.hilbert is None else op
    hi = netket_hilbert(hilbert)
    dtype = np.float64 if op.is_hermitian and all(
        sum(1 for _, o in s if o == "Y") % 2 == 0 for s in op.terms) else np.complex128
    constant = op.terms.get((), 0.0)
    out = nk.operator.LocalOperator(hi, constant=constant.real if dtype == np.float64
                                    else constant, dtype=dtype)
    for string, c in op.terms.items():
        if not string:
            continue
        mat = np.ones((1, 1), complex)
        for _, lab in string:
            mat = np.kron(mat, _PAULI[lab])
        mat = c * mat
        if dtype == np.float64:
            mat = mat.real
        out = out + nk.operator.LocalOperator(hi, [mat], [[s for s, _ in string]], dtype=dtype)
    return out

