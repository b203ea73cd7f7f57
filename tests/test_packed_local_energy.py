"""Packed local energies (nonzero connections of a batch evaluated together) vs the per-sample path."""

import warnings

import jax
import numpy as np
import pytest

from hamiltonians.molecule import compute_integrals, from_preset
from hamiltonians.second_quantized import MolecularHamiltonian
from nqs.local_energy import make_local_energy
from nqs.packed_local_energy import make_packed_local_energy
from nqs.problems import molecule_ansatz


@pytest.fixture(scope="module")
def h2o():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        integrals, _ = compute_integrals(from_preset("H2O"))
    return MolecularHamiltonian(integrals)


@pytest.mark.parametrize(("kind", "chunk_rows"), [("rbm", 64), ("backflow", None)])
def test_packed_equals_per_sample_local_energy(h2o, kind, chunk_rows):
    ansatz = molecule_ansatz(h2o.hilbert, kind, hidden=(8,), init_scale=0.3)
    xs = h2o.hilbert.random_state(jax.random.PRNGKey(2), 24)
    # jitted: one compiled init program instead of op-by-op dispatch of the backflow's
    # unrolled LU (~100 small compilations); the same numbers
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0), xs[0])
    if kind == "rbm":  # larger weights than the default init, so the ratios are far from 1
        params = jax.tree_util.tree_map(lambda p: 30 * p, params)
    reference = jax.jit(jax.vmap(make_local_energy(h2o, ansatz), in_axes=(None, 0)))(params, xs)
    packed = make_packed_local_energy(h2o, ansatz, chunk_rows=chunk_rows)(params, xs)
    np.testing.assert_allclose(np.asarray(packed), np.asarray(reference), rtol=1e-11, atol=1e-9)
    if kind == "rbm":  # the fast path and the generic path agree through the packed rows too
        generic = make_packed_local_energy(h2o, ansatz.without_fast_path(), chunk_rows)(params, xs)
        np.testing.assert_allclose(np.asarray(generic), np.asarray(reference), rtol=1e-10, atol=1e-9)



@pytest.mark.parametrize("kind", ["autoregressive", "backflow"])
def test_distinct_connected_rows_equal_every_row(h2o, kind):
    """log psi once per distinct connected configuration (the default for full-evaluation
    ansatze) gives the local energies of the path that evaluates every row, and of the
    per-sample path; padding samples stay 0."""
    ansatz = molecule_ansatz(h2o.hilbert, kind, hidden=(8,), init_scale=0.3)
    xs = h2o.hilbert.random_state(jax.random.PRNGKey(3), 16)
    xs = xs.at[1].set(xs[0])  # a repeated sample shares every connection
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(1), xs[0])
    params = jax.tree_util.tree_map(lambda p: 3 * p, params)  # ratios far from 1
    reference = jax.jit(jax.vmap(make_local_energy(h2o, ansatz), in_axes=(None, 0)))(params, xs)
    every_row = make_packed_local_energy(h2o, ansatz, chunk_rows=32, distinct_rows=False)
    distinct = make_packed_local_energy(h2o, ansatz, chunk_rows=32, block_rows=64)
    np.testing.assert_allclose(np.asarray(distinct(params, xs)), np.asarray(reference),
                               rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(np.asarray(distinct(params, xs, 11)),
                               np.asarray(every_row(params, xs, 11)), rtol=1e-12, atol=1e-10)
    assert np.all(np.asarray(distinct(params, xs, 11))[11:] == 0)


def test_distinct_rows_refused_with_cached_updates(h2o):
    from nqs.errors import InputError

    ansatz = molecule_ansatz(h2o.hilbert, "rbm", hidden=(8,))
    with pytest.raises(InputError, match="distinct connected rows"):
        make_packed_local_energy(h2o, ansatz, distinct_rows=True)
