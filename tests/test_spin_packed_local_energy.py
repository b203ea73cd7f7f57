"""Spin local energies and Metropolis moves from per-pattern tables (``FlipTerms``).

The term path (:class:`nqs.ansatz.TermUpdates`) against the per-row cached path, the generic
path, and local energies ``(H psi)(x) / psi(x)`` from a dense Hamiltonian built independently
from Pauli matrices (Kronecker products, Marshall sign as a diagonal unitary).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.lattice import chain, square
from hamiltonians.spin import J1J2, Heisenberg, TransverseFieldIsing
from nqs.ansatz import Ansatz
from nqs.local_energy import make_local_energy
from nqs.models.rbm import make_rbm, make_rbm_symm, translation_group
from nqs.optim.flat import real_flat
from nqs.sampling.metropolis import MetropolisSampler
from nqs.sampling.rules import ExchangeRule, LocalRule


def _without_terms(ansatz: Ansatz) -> Ansatz:
    """The same ansatz on the per-row / per-site cached path."""
    fast = ansatz.local_updates._replace(terms=None)
    return Ansatz(ansatz.module, fast, ansatz.holomorphic, ansatz.jacobian_structure)


def _random_params(ansatz: Ansatz, n: int, scale: float, seed: int = 0):
    params = ansatz.init(jax.random.PRNGKey(seed), jnp.ones(n))
    flat, unflatten = real_flat(params)
    return unflatten(scale * jax.random.normal(jax.random.PRNGKey(seed + 1), flat.shape))


def _energies(operator, ansatz, params, xs):
    return np.asarray(jax.jit(jax.vmap(make_local_energy(operator, ansatz), (None, 0)))(params, xs))


MODELS = {
    "heisenberg-square-marshall": lambda: Heisenberg(square(4), marshall_sign=True),
    # J2 bonds join one sublattice; S^z = 1 sector
    "j1j2-chain-sz1": lambda: J1J2(chain(10), j2=0.4, total_sz=2),
    "tfim-chain": lambda: TransverseFieldIsing(chain(9), h=0.8),
}


@pytest.mark.parametrize("name,dtype", [(name, jnp.complex128) for name in MODELS]
                         + [("heisenberg-square-marshall", jnp.float64)],
                         ids=[*MODELS, "real-heisenberg"])
def test_term_path_equals_cached_path(name, dtype):
    model = MODELS[name]()
    n = model.hilbert.n_sites
    ansatz = make_rbm(n, 1.5, param_dtype=dtype)
    assert ansatz.local_updates.terms is not None and model.flip_terms is not None
    params = _random_params(ansatz, n, 0.4)
    xs = model.hilbert.random_state(jax.random.PRNGKey(3), 48).astype(jnp.float64)
    e_terms = _energies(model, ansatz, params, xs)
    e_rows = _energies(model, _without_terms(ansatz), params, xs)
    scale = np.max(np.abs(e_rows))
    np.testing.assert_allclose(e_terms, e_rows, rtol=1e-12, atol=1e-12 * scale)


def test_term_path_of_symmetric_rbm():
    model = Heisenberg(chain(10), marshall_sign=True)
    ansatz = make_rbm_symm(translation_group((10,)), alpha=2)
    params = _random_params(ansatz, 10, 0.3)
    xs = model.hilbert.random_state(jax.random.PRNGKey(4), 32).astype(jnp.float64)
    np.testing.assert_allclose(_energies(model, ansatz, params, xs),
                               _energies(model, ansatz.without_fast_path(), params, xs),
                               rtol=1e-11)


_PAULI = {"x": np.array([[0.0, 1.0], [1.0, 0.0]]), "y": np.array([[0.0, -1j], [1j, 0.0]]),
          "z": np.diag([1.0, -1.0])}  # basis (+1, -1): index 0 = spin up


def _op(n: int, factors: dict[int, str]) -> np.ndarray:
    return functools.reduce(np.kron, [_PAULI[factors[i]] if i in factors else np.eye(2)
                                      for i in range(n)])


def _dense_hamiltonian(name: str, n: int, bonds: np.ndarray, sublattice: np.ndarray
                       ) -> np.ndarray:
    """Independent dense H on the full space of ``n`` spins (site 0 most significant)."""
    h = np.zeros((2**n, 2**n), complex)
    if name == "tfim":  # -sum zz - 0.8 sum x, Pauli matrices
        for i, j in bonds:
            h -= _op(n, {i: "z", j: "z"})
        for i in range(n):
            h -= 0.8 * _op(n, {i: "x"})
        return h
    # Heisenberg with S = sigma / 2, then the Marshall rotation U = (-1)^(ups on sublattice 1)
    for i, j in bonds:
        h += 0.25 * sum(_op(n, {i: a, j: a}) for a in "xyz")
    bits = (np.arange(2**n)[:, None] >> (n - 1 - np.arange(n))[None, :]) & 1  # 0 = up
    ups_b = np.sum((bits == 0) & (sublattice[None, :] == 1), axis=1)
    u = np.diag((-1.0) ** ups_b)
    return u @ h @ u


@pytest.mark.parametrize("name", ["heisenberg", "tfim"])
def test_term_path_against_dense_hamiltonian(name):
    n = 8
    lat = chain(n)
    model = (Heisenberg(lat, marshall_sign=True) if name == "heisenberg"
             else TransverseFieldIsing(lat, h=0.8))
    h = _dense_hamiltonian(name, n, np.asarray(lat.bonds), np.asarray(lat.sublattice))
    ansatz = make_rbm(n, 2.0)
    params = _random_params(ansatz, n, 0.3)
    full = np.asarray(_all_spin_states(n))
    psi = np.exp(np.asarray(jax.vmap(ansatz.log_psi, (None, 0))(params, jnp.asarray(full))))
    e_exact = (h @ psi) / psi  # [2^n]
    xs = model.hilbert.all_states()
    index = ((1 - xs) / 2).astype(int) @ (1 << (n - 1 - np.arange(n)))
    e_terms = _energies(model, ansatz, params, jnp.asarray(xs))
    np.testing.assert_allclose(e_terms, e_exact[index], rtol=1e-12, atol=1e-12)


def _all_spin_states(n: int) -> np.ndarray:
    """All ``2^n`` configurations, site 0 most significant, +1 (up) first."""
    bits = (np.arange(2**n)[:, None] >> (n - 1 - np.arange(n))[None, :]) & 1
    return 1.0 - 2.0 * bits


@pytest.mark.parametrize("rule_name", ["exchange", "local"])
def test_sampler_term_path_gives_the_same_chain(rule_name):
    if rule_name == "exchange":
        model = Heisenberg(square(4), marshall_sign=True)
        rule = ExchangeRule(np.asarray(model.lattice.bonds))
    else:
        model = TransverseFieldIsing(chain(12), h=1.0)
        rule = LocalRule()
    n = model.hilbert.n_sites
    sampler = MetropolisSampler(model.hilbert, rule, n_chains=8, n_samples=64,
                                n_discard_sweeps=2)
    ansatz = make_rbm(n, 1.0)
    params = _random_params(ansatz, n, 0.3)
    state = sampler.init(jax.random.PRNGKey(5), ansatz, params)
    key = jax.random.PRNGKey(6)
    s_terms, st_terms, info_terms = sampler.sample(key, ansatz, params, state)
    s_rows, st_rows, info_rows = sampler.sample(key, _without_terms(ansatz), params, state)
    np.testing.assert_array_equal(np.asarray(s_terms.x), np.asarray(s_rows.x))
    assert 0.05 < float(info_terms["acceptance"]) == float(info_rows["acceptance"])
    np.testing.assert_allclose(np.asarray(st_terms.log_psi), np.asarray(st_rows.log_psi),
                               atol=1e-12)
