"""Pauli strings against Kronecker products of 2x2 Pauli matrices, and their algebra."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.lattice import chain
from hamiltonians.pauli import (
    PauliSum,
    identity,
    pauli_components,
    pauli_matrix,
    sigmax,
    sigmay,
    sigmaz,
)
from hamiltonians.spin import Heisenberg, TransverseFieldIsing
from nqs.errors import InputError
from nqs.hilbert import SpinHilbert
from nqs.operator import DiscreteOperator, to_sparse

PAULI = {"X": np.array([[0, 1], [1, 0]], complex), "Y": np.array([[0, -1j], [1j, 0]]),
         "Z": np.diag([1.0 + 0j, -1.0])}
MAKE = {"X": sigmax, "Y": sigmay, "Z": sigmaz}


def kron_op(n: int, ops: dict[int, str]) -> np.ndarray:
    """Kronecker product on n sites, site 0 most significant (SpinHilbert's order)."""
    m = np.ones((1, 1), complex)
    for site in range(n):
        m = np.kron(m, PAULI[ops[site]] if site in ops else np.eye(2))
    return m


def random_sum(rng: np.random.Generator, n: int, n_terms: int) -> tuple[PauliSum, np.ndarray]:
    """A random sum of products of 1-3 Paulis (sites may repeat) and its dense matrix."""
    op, dense = 0.0 * identity(), np.zeros((2**n, 2**n), complex)
    for _ in range(n_terms):
        c = complex(rng.normal(), rng.normal()) if rng.random() < 0.5 else rng.normal()
        term, mat = c * identity(), c * np.eye(2**n)
        for _ in range(rng.integers(1, 4)):
            site, name = int(rng.integers(n)), "XYZ"[rng.integers(3)]
            term = term * MAKE[name](site)
            mat = mat @ kron_op(n, {site: name})
        op, dense = op + term, dense + mat
    return op, dense


@pytest.mark.parametrize("n", [3, 4])
def test_random_sums_and_products_equal_kronecker(n):
    rng = np.random.default_rng(n)
    a, da = random_sum(rng, n, 6)
    b, db = random_sum(rng, n, 5)
    cases = {"a": (a, da), "a+b": (a + b, da + db), "a*b": (a * b, da @ db),
             "2a-b/3": (2 * a - b / 3, 2 * da - db / 3), "1-a": (1 - a, np.eye(2**n) - da),
             "a^dag": (a.adjoint(), da.conj().T)}
    for name, (op, dense) in cases.items():
        bound = op.on(n)
        assert isinstance(bound, DiscreteOperator)
        np.testing.assert_allclose(to_sparse(bound).toarray(), dense, atol=1e-12, err_msg=name)
        # the independent Kronecker construction of the module agrees as well
        np.testing.assert_allclose(pauli_matrix(op, n), dense, atol=1e-12, err_msg=name)


def test_same_site_products_obey_the_sigma_algebra():
    x, y, z = sigmax(1), sigmay(1), sigmaz(1)
    one = identity()
    for s in (x, y, z):
        assert (s * s - one).terms == {}
    assert (x * y - 1j * z).terms == {}
    assert (y * z - 1j * x).terms == {}
    assert (z * x - 1j * y).terms == {}
    assert (x * y + y * x).terms == {}  # anticommute
    # different sites commute
    assert (sigmax(0) * sigmay(1) - sigmay(1) * sigmax(0)).terms == {}
    # dense check of the same identities on two sites
    np.testing.assert_allclose(to_sparse((x * y).on(2)).toarray(), 1j * kron_op(2, {1: "Z"}))


def test_tfim_and_heisenberg_rebuilt_from_paulis():
    lat = chain(5)
    h, j = 0.7, 1.3
    tfim = sum((-j * sigmaz(i) * sigmaz(k) for i, k in lat.bonds), 0.0 * identity()) \
        + sum(-h * sigmax(i) for i in range(5))
    ref = to_sparse(TransverseFieldIsing(lat, h=h, J=j)).toarray()
    np.testing.assert_allclose(to_sparse(tfim.on(5)).toarray(), ref, atol=1e-12)
    # Heisenberg (S = sigma/2) in the S^z = 0 sector: the sector-projected Pauli sum
    heis = sum(0.25 * (sigmax(i) * sigmax(k) + sigmay(i) * sigmay(k) + sigmaz(i) * sigmaz(k))
               for i, k in chain(6).bonds)
    model = Heisenberg(chain(6))
    np.testing.assert_allclose(to_sparse(heis.on(model.hilbert)).toarray(),
                               to_sparse(model).toarray(), atol=1e-12)


def test_sector_projection():
    """In S^z = 0, rows leaving the sector are dropped: P O P."""
    n = 4
    hi = SpinHilbert(n, 0)
    op = sigmax(0) * sigmax(2) + 0.5 * sigmay(1) * sigmax(3) + sigmaz(1) + sigmax(0)
    full = pauli_matrix(op, n)
    states = SpinHilbert(n).all_states()
    keep = np.flatnonzero(states.sum(axis=1) == 0)
    np.testing.assert_allclose(to_sparse(op.on(hi)).toarray(), full[np.ix_(keep, keep)],
                               atol=1e-12)


def test_components_stack_rows():
    ops = [sigmaz(0) * sigmaz(1), sigmax(0) * sigmax(2) + sigmay(0) * sigmay(2), sigmax(1)]
    stacked = pauli_components(ops, 3)
    assert stacked.n_components == 3
    x = np.array([1.0, -1.0, -1.0])
    sites, mels = (np.asarray(a) for a in stacked.flips(x))
    for k, op in enumerate(ops):
        s_k, m_k = (np.asarray(a) for a in op.on(3).flips(x))
        rows = stacked.row_components == k
        got = {tuple(sorted(set(r) - {3})): m
               for r, m in zip(sites[rows], mels[rows], strict=True) if m != 0}
        want = {tuple(sorted(set(r) - {3})): m for r, m in zip(s_k, m_k, strict=True) if m != 0}
        assert got.keys() == want.keys()
        for key in got:
            assert got[key] == pytest.approx(want[key])


@pytest.mark.parametrize("bad, message", [
    (lambda: sigmax(4).on(4), "site 4"),
    (lambda: sigmaz(-1), "non-negative"),
    (lambda: sigmaz(1.5), "non-negative"),
    (lambda: sigmax(0, 3) + sigmax(0, 4), "different spaces"),
    (lambda: sigmax(0).flips(np.ones(2)), "no Hilbert space"),
    (lambda: sigmax(0).on("four"), "SpinHilbert"),
])
def test_bad_input_is_one_line_input_error(bad, message):
    with pytest.raises(InputError, match=message) as err:
        bad()
    assert "\n" not in str(err.value)


def test_all_single_site_matrices():
    for n, site, name in itertools.product([2, 3], [0, 1], "XYZ"):
        op = MAKE[name](site, n)
        np.testing.assert_allclose(to_sparse(op).toarray(), kron_op(n, {site: name}), atol=0)
