"""Real-space observables (:mod:`hamiltonians.realspace_observables`): the hydrogen-atom density against
the analytic 1s density, the dipole of an atom off the origin, the Hartree-Fock density of
helium for a network fitted to HF (within error bars), the HF quadratures, and a bad
``--observe`` name (``nqs realspace --observe density dipole`` itself runs in
tests/test_realspace_cli.py::test_command_writes_results)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.realspace import make_atoms
from hamiltonians.realspace_observables import (
    axial_density,
    dipole_moment,
    hf_axial_density,
    hf_radial_density,
    radial_density,
    sample_positions,
)
from nqs.realspace.mcmc import burn_in, init_walkers, make_mcmc

CENTRE = np.array([0.0, 0.0, 0.5])


def _main(argv: list[str]) -> int:
    """``nqs.cli.main`` with the errors it turns into exit 2 (one line)."""
    from nqs.cli import main

    return main(argv)


def _hydrogen_positions(n_walkers=256, n_steps=40):
    """Positions drawn from the exact 1s state ``psi = exp(-|r - R|)`` with R = (0, 0, 0.5)."""
    atoms = make_atoms("H 0 0 0.5")
    c = jnp.asarray(CENTRE)

    def log_psi(params, r):
        del params
        return -jnp.sqrt(jnp.sum((r[0] - c) ** 2))

    init, step = make_mcmc(log_psi, n_steps=10)
    state = init(None, init_walkers(jax.random.PRNGKey(0), atoms, n_walkers), 0.5)
    state, _ = burn_in(jax.random.PRNGKey(1), jax.jit(step), None, state, 8)
    r = sample_positions(jax.random.PRNGKey(2), None, log_psi, state, n_steps=n_steps,
                         mcmc_steps=5)
    return atoms, r


def _shell_average(f_r2, edges):
    """Shell averages ``int 4 pi r^2 rho / V`` by Gauss-Legendre (``f_r2(r) = 4 pi r^2 rho``)."""
    t, w = np.polynomial.legendre.leggauss(20)
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        r = 0.5 * (b - a) * t + 0.5 * (a + b)
        out.append(0.5 * (b - a) * np.sum(w * f_r2(r)) / (4.0 / 3.0 * np.pi * (b**3 - a**3)))
    return np.asarray(out)


def test_hydrogen_density_and_dipole_against_the_1s_state() -> None:
    atoms, r = _hydrogen_positions()
    assert r.shape == (40, 256, 1, 3)
    prof = radial_density(r, CENTRE, r_max=4.0, n_bins=12)
    exact = _shell_average(lambda x: 4.0 * x * x * np.exp(-2.0 * x), prof.edges)  # rho = e^-2r / pi
    z = (prof.mean - exact) / prof.error
    assert np.all(prof.error > 0)
    assert np.all(np.abs(z) < 4), z
    assert np.mean(z**2) < 3, z  # chi^2 per bin: the error bars are not too small
    assert np.all(prof.error < 0.1 * exact + 2e-4)  # and not uselessly large
    # 1s: the electron is centred on the nucleus, so mu = R - <r> = 0 (also off the origin)
    mu, err = dipole_moment(r, atoms.charges, atoms.positions)
    assert np.all(err > 0) and np.all(err < 0.05)
    assert np.all(np.abs(mu) < 4 * err), (mu, err)
    # the axial profile integrates the density over planes: n(z) = (1 + 2|z|) e^{-2|z|} / 2
    ax = axial_density(r, CENTRE, [0, 0, 1], -3.0, 3.0, n_bins=12)
    t, w = np.polynomial.legendre.leggauss(20)
    exact_ax = np.array([0.5 * np.sum(w * 0.5 * (1 + 2 * abs(s)) * np.exp(-2 * abs(s)))
                         for s in [0.5 * (b - a) * t + 0.5 * (a + b)
                                   for a, b in zip(ax.edges[:-1], ax.edges[1:], strict=True)]])
    assert np.all(np.abs(ax.mean - exact_ax) < 4 * ax.error), (ax.mean, exact_ax, ax.error)


def test_hartree_fock_quadratures_hold_the_electrons() -> None:
    """The HF shell averages of He integrate to 2 electrons; the axial profile of H2 to 2."""
    from nqs.realspace.pretrain import run_hartree_fock

    he = run_hartree_fock(make_atoms("He 0 0 0"), "sto-3g")
    edges = np.linspace(0.0, 8.0, 33)
    rho = hf_radial_density(he, np.zeros(3), edges)
    assert np.sum(rho * 4.0 / 3.0 * np.pi * np.diff(edges**3)) == pytest.approx(2.0, abs=1e-4)
    h2 = run_hartree_fock(make_atoms("H 0 0 -0.7; H 0 0 0.7"), "sto-3g")
    edges = np.linspace(-6.0, 6.0, 25)
    n = hf_axial_density(h2, np.zeros(3), [0, 0, 1], edges)
    assert np.sum(n * np.diff(edges)) == pytest.approx(2.0, abs=1e-3)
    np.testing.assert_allclose(n, n[::-1], rtol=1e-8)  # symmetric about the bond centre


@pytest.mark.slow
def test_helium_density_of_a_network_fitted_to_hartree_fock(hf_fitted_ferminet) -> None:
    """A tiny FermiNet pretrained on He's HF orbitals (STO-3G) has HF's radial density within
    the error bars of its walkers."""
    _, _, res, r = hf_fitted_ferminet("He 0 0 0", 64, 40)
    prof = radial_density(r, np.zeros(3), r_max=3.0, n_bins=10)
    hf = hf_radial_density(res.hf, np.zeros(3), prof.edges)
    z = (prof.mean - hf) / prof.error
    assert np.all(np.abs(z) < 4), z
    assert np.mean(z**2) < 3, z


def test_realspace_unknown_observable_is_one_line_exit_2(tmp_path, capsys) -> None:
    out = tmp_path / "x"
    try:
        rc = _main(["realspace", "--preset", "He", "--observe", "denisty", "--out", str(out)])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown observable 'denisty'" in err, err
    assert not out.exists()
