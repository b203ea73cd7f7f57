"""Batch local energies with only the needed rows evaluated (:func:`make_batch_local_energy`).

Against the per-sample generic path, which evaluates log psi on every row of ``flips`` (zero
matrix elements and the diagonal included): the same values for GCNNs on frustrated and
unfrustrated models, with several passes and a padded last pass, a batch where no row needs
the network (the loop runs zero times), and inside a jitted function.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.lattice import chain, square, triangular
from hamiltonians.spin import J1J2, Heisenberg, TransverseFieldIsing
from nqs.local_energy import make_batch_local_energy, make_local_energy
from nqs.models.gcnn import make_gcnn
from nqs.optim.flat import real_flat

MODELS = {
    "j1j2-square": lambda: J1J2(square(4), j2=0.5, marshall_sign=True),
    "heisenberg-triangular": lambda: Heisenberg(triangular(3)),
    "tfim-chain": lambda: TransverseFieldIsing(chain(8), h=0.7),
}


def _configurations(model, n: int, seed: int) -> jax.Array:
    """``n`` random configurations of the model's sector (``+-1``)."""
    rng = np.random.default_rng(seed)
    n_sites = model.hilbert.n_sites
    xs = []
    for _ in range(n):
        if getattr(model.hilbert, "total_sz", None) is None:
            xs.append(rng.choice([-1.0, 1.0], size=n_sites))
        else:
            n_up = (n_sites + model.hilbert.total_sz) // 2  # total_sz = sum_i x_i
            x = -np.ones(n_sites)
            x[rng.permutation(n_sites)[:n_up]] = 1.0
            xs.append(x)
    return jnp.asarray(np.array(xs))


def _gcnn(model, dtype):
    lattice = model.lattice
    ansatz = make_gcnn(lattice.translations(), (3, 2), param_dtype=dtype)
    n = lattice.n_sites
    params = ansatz.init(jax.random.PRNGKey(0), jnp.ones(n))
    flat, unflatten = real_flat(params)
    return ansatz, unflatten(0.3 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("chunk_size,rows_per_pass", [(None, None), (3, None), (64, 7)])
def test_packed_rows_equal_every_row(name, chunk_size, rows_per_pass):
    model = MODELS[name]()
    dtype = jnp.float64 if name == "j1j2-square" else jnp.complex128
    ansatz, params = _gcnn(model, dtype)
    xs = _configurations(model, 13, seed=2)
    expected = jax.vmap(make_local_energy(model, ansatz), (None, 0))(params, xs)
    got = jax.jit(make_batch_local_energy(model, ansatz, chunk_size,
                                          rows_per_pass=rows_per_pass))(params, xs)
    assert got.shape == (13,)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-10, atol=1e-10)


def test_no_row_needs_the_network():
    """All spins up: no Heisenberg bond connects, the local energy is the diagonal alone."""
    model = Heisenberg(chain(6), total_sz=None)
    ansatz, params = _gcnn(model, jnp.complex128)
    xs = jnp.ones((4, 6))
    got = jax.jit(make_batch_local_energy(model, ansatz, 2, rows_per_pass=5))(params, xs)
    expected = jax.vmap(make_local_energy(model, ansatz), (None, 0))(params, xs)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-12)
    assert np.allclose(np.asarray(got).real, 6 * 0.25)  # six parallel bonds, S = sigma / 2
