"""Vision transformer: patch-translation invariance, local energies against a dense H, a short
run against exact diagonalization, bad sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hamiltonians.lattice import square, triangular
from hamiltonians.spin import Heisenberg
from hamiltonians.spin_reference import lanczos_ground_state, model_sparse
from nqs.driver import run_vmc
from nqs.errors import InputError
from nqs.local_energy import make_local_energy
from nqs.models.vit import make_vit, patch_displacements, vit_for_lattice
from nqs.optim import sr_optimizer
from nqs.problems import spin_ansatz, spin_sampler


def test_vit_invariant_under_patch_translations() -> None:
    lat = square(4)
    ansatz = make_vit(4, patch=2, embed=4, depth=1, heads=2)
    xs = jnp.asarray(np.random.default_rng(0).choice([-1.0, 1.0], size=(5, 16)))
    params = ansatz.init(jax.random.PRNGKey(0), xs[0])
    f = jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))
    ref = f(params, xs)
    assert ref.dtype == jnp.complex128
    trans = lat.translations()  # row t = shift (t // 4, t % 4)
    moved = [t for t in range(16) if (t // 4) % 2 == 0 and (t % 4) % 2 == 0]
    for t in moved:
        np.testing.assert_allclose(f(params, xs[:, trans[t]]), ref, atol=1e-11)
    assert np.abs(f(params, xs[:, trans[1]]) - ref).max() > 1e-6  # a one-site shift is not
    assert patch_displacements(2).tolist() == [[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1],
                                               [3, 2, 1, 0]]


def test_vit_local_energy_equals_dense() -> None:
    model = Heisenberg(square(2), total_sz=None)
    ansatz = make_vit(2, patch=1, embed=4, depth=1, heads=2)
    states = jnp.asarray(model.hilbert.all_states())
    params = ansatz.init(jax.random.PRNGKey(1), states[0])
    log_psi = np.asarray(jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))(params, states))
    psi = np.exp(log_psi - log_psi.real.max())
    # the numpy matrix (equal to NetKet's: tests/test_spin_hamiltonians.py)
    expected = (model_sparse(model).toarray() @ psi) / psi
    eloc = jax.jit(jax.vmap(make_local_energy(model, ansatz), in_axes=(None, 0)))(params, states)
    np.testing.assert_allclose(np.asarray(eloc), expected, rtol=1e-9, atol=1e-9)


def test_vit_short_run_reaches_exact_energy() -> None:
    """Heisenberg 2x2 with the Marshall sign (4 spins, 6 states), exact summation, 60 steps."""
    model = Heisenberg(square(2), marshall_sign=True)
    exact = lanczos_ground_state(model)
    ansatz = spin_ansatz(model, "vit", 1, patch=1, embed=4, depth=1, heads=1)
    result = run_vmc(ansatz, model, spin_sampler(model, "exact", 1, 1),
                     sr_optimizer(0.05, diag_shift=0.01), 60, exact_energy=exact,
                     progress=False)
    assert exact - 1e-9 <= result.energy < exact + 1e-3 * abs(exact)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"length": 4, "patch": 3}, "does not divide"), ({"length": 4, "embed": 6, "heads": 4},
                                                      "multiple"),
     ({"length": 4, "depth": 0}, "positive")],
)
def test_vit_bad_sizes(kwargs, word) -> None:
    with pytest.raises(InputError, match=word):
        make_vit(**kwargs)


def test_vit_needs_a_square_lattice() -> None:
    with pytest.raises(InputError, match="square lattice"):
        vit_for_lattice(triangular(4))
