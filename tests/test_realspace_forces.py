"""Hellmann-Feynman forces (:mod:`hamiltonians.realspace_forces`): the bare and zero-variance estimators
against Gauss's law for the hydrogen 1s cloud, and against central finite differences of the
energy <psi|H(R)|psi> of a fixed H2 wavefunction (correlated sampling)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.realspace import make_atoms, potential_energy
from hamiltonians.realspace_forces import force_samples, measure_forces, nuclear_forces
from hamiltonians.realspace_observables import sample_positions
from nqs.errors import InputError
from nqs.realspace.mcmc import burn_in, init_walkers, make_mcmc
from nqs.stats import statistics


def _stats(values: np.ndarray, n_chains: int) -> tuple[float, float]:
    v = jnp.asarray(values, jnp.float64)
    st = statistics(v, jnp.full(v.shape[0], 1.0 / v.shape[0]), n_chains, with_r_hat=False)
    return float(st.mean), float(st.error_of_mean)


def test_hydrogen_cloud_pulls_a_displaced_nucleus_as_gauss_law() -> None:
    """Electron in the 1s state about the origin, nucleus (Z = 1) at (0, 0, d): the cloud acts
    as the charge inside radius d, Q(d) = 1 - e^{-2d} (1 + 2d + 2d^2), at the origin, so
    F = -Q(d) / d^2 along z. Independent draws of the 1s density (r ~ Gamma(3, 1/2))."""
    d = 1.0
    rng = np.random.default_rng(0)
    n = 40000
    radius = rng.gamma(3.0, 0.5, n)
    u = rng.normal(size=(n, 3))
    r = (radius[:, None] * u / np.linalg.norm(u, axis=1, keepdims=True))[:, None, :]
    grad = -r / np.linalg.norm(r, axis=-1, keepdims=True)  # grad ln e^{-|r|}
    bare, zv = (np.asarray(a)[:, 0, :] for a in force_samples(
        jnp.asarray(r), jnp.asarray(grad), [1.0], [[0.0, 0.0, d]]))
    exact = -(1.0 - np.exp(-2 * d) * (1 + 2 * d + 2 * d * d)) / d**2
    for values in (zv, bare):
        mean, err = values.mean(axis=0), values.std(axis=0) / np.sqrt(n)
        assert np.all(np.abs(mean - [0.0, 0.0, exact]) < 4 * err), (mean, err, exact)
    assert zv[:, 2].std() < 0.5 * bare[:, 2].std()  # the point of the estimator


def test_nuclear_forces_are_the_repulsion() -> None:
    f = nuclear_forces([1.0, 3.0], [[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    np.testing.assert_allclose(f, [[0, 0, -0.75], [0, 0, 0.75]], atol=1e-15)


ZETA = 1.2  # the orbital exponent of the fixed H2 wavefunction


def _h2():
    """H2 at R = 1.4 bohr and a fixed product of LCAO orbitals phi = e^{-a|r-A|} + e^{-a|r-B|}
    (both electrons), sampled by Metropolis: ``(atoms, log_psi, r [T, W, 2, 3])``."""
    atoms = make_atoms("H 0 0 -0.7; H 0 0 0.7")
    centres = jnp.asarray(atoms.positions)

    def log_psi(params, r):
        del params
        d = jnp.linalg.norm(r[:, None, :] - centres[None], axis=-1)  # [2, 2]
        return jnp.sum(jnp.log(jnp.sum(jnp.exp(-ZETA * d), axis=1)))

    init, step = make_mcmc(log_psi, n_steps=10)
    state = init(None, init_walkers(jax.random.PRNGKey(0), atoms, 256), 0.5)
    state, _ = burn_in(jax.random.PRNGKey(1), jax.jit(step), None, state, 10)
    r = sample_positions(jax.random.PRNGKey(2), None, log_psi, state, n_steps=60, mcmc_steps=5)
    return atoms, log_psi, r


def _inverse_distance(centre: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """``<phi| 1/|r - centre| |phi> / <phi|phi>`` by quadrature in spherical coordinates about
    ``centre`` (on the axis: the integrand ``s phi^2`` is smooth in the distance ``s``;
    composite Gauss-Legendre in ``s`` and ``cos theta``, converged to 1e-9 here)."""
    edges = np.array([0, 0.25, 0.5, 1, 1.4, 2, 3, 5, 8, 13, 20, 40.0])
    t, w = np.polynomial.legendre.leggauss(32)
    segments = list(zip(edges[:-1], edges[1:], strict=True))
    s = np.concatenate([0.5 * (hi - lo) * t + 0.5 * (hi + lo) for lo, hi in segments])
    ws = np.concatenate([0.5 * (hi - lo) * w for lo, hi in segments])
    mu, wm = np.polynomial.legendre.leggauss(150)
    p = centre + s[:, None, None] * np.stack([np.sqrt(1 - mu**2), 0 * mu, mu], -1)[None]
    phi2 = (np.exp(-ZETA * np.linalg.norm(p - a, axis=-1))
            + np.exp(-ZETA * np.linalg.norm(p - b, axis=-1))) ** 2
    return float(np.einsum("i,j,ij->", ws * s, wm, phi2) / np.einsum("i,j,ij->", ws * s * s, wm,
                                                                      phi2))


def test_h2_forces_equal_finite_differences_of_the_energy() -> None:
    """F_B = -dE/dz_B with E(R) = <psi|H(R)|psi> for the fixed psi. Only the attraction of the
    electrons to B and the nuclear repulsion depend on z_B (the kinetic energy, the electron
    repulsion and the attraction to A do not), so

        E(z_B +- h) - E(z_B -+ h) = -2 (<1/|r - B_+|> - <1/|r - B_-|>) + (V_nn(+) - V_nn(-)),

    with <1/|r - B_+-|> by quadrature: central differences with h = 5e-3 bohr (within 2e-5 of
    the limit). The zero-variance estimator is within 4 error bars of it (its error bar about
    20 times smaller than the bare estimator's), and the bare estimator equals minus the
    central difference of the potential energy on the same samples (correlated sampling, h =
    1e-5)."""
    atoms, log_psi, r = _h2()
    t, w = r.shape[:2]
    rec = measure_forces(r, log_psi, None, atoms)
    a, b = np.asarray(atoms.positions)
    h = 5e-3
    energy = [-2.0 * _inverse_distance(b + [0, 0, dz], a, b) + 1.0 / (b[2] + dz - a[2])
              for dz in (h, -h)]
    reference = -(energy[0] - energy[1]) / (2 * h)
    assert reference == pytest.approx(0.0675, abs=2e-4)
    zv, zv_err = rec["mean"][1][2], rec["error"][1][2]
    assert abs(zv - reference) < 4 * zv_err, (zv, zv_err, reference)
    assert zv_err < 0.2 * rec["bare_error"][1][2]
    assert abs(rec["bare_mean"][1][2] - reference) < 4 * rec["bare_error"][1][2]
    # the symmetric molecule: equal and opposite forces along the axis, none across it
    f, e = np.asarray(rec["mean"]), np.asarray(rec["error"])
    assert abs(f[0, 2] + f[1, 2]) < 4 * np.hypot(e[0, 2], e[1, 2])
    assert np.all(np.abs(f[:, :2]) < 4 * e[:, :2])
    # correlated sampling: -(V(r; B + h) - V(r; B - h)) / 2h per sample is the bare estimator
    # (h small: samples near B make the difference of a 1/r^2 term sensitive to h)
    flat = jnp.asarray(r.reshape(t * w, 2, 3))
    potential = []
    h = 1e-5
    for dz in (h, -h):
        moved = make_atoms([("H", tuple(a)), ("H", tuple(b + [0, 0, dz]))])
        potential.append(np.asarray(jax.vmap(lambda x, m=moved: potential_energy(x, m))(flat)))
    fd_mean, _ = _stats(-(potential[0] - potential[1]) / (2 * h), w)
    assert fd_mean == pytest.approx(rec["bare_mean"][1][2], abs=1e-4)


def test_forces_refuse_pseudopotentials() -> None:
    atoms = make_atoms("Be 0 0 0", ecp="ccecp")
    with pytest.raises(InputError, match="all-electron"):
        measure_forces(np.zeros((2, 1, 2, 3)), lambda p, x: 0.0, None, atoms)


def test_observe_forces_with_pseudopotentials_is_one_line_exit_2(tmp_path, capsys) -> None:
    from nqs.cli import main

    out = tmp_path / "x"
    try:
        rc = main(["realspace", "--molecule", "Be 0 0 0", "--ecp", "ccecp", "--observe",
                   "forces", "--out", str(out)])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "all-electron" in err, err
    assert not out.exists()


def test_forces_of_a_network_fitted_to_hartree_fock(hf_fitted_ferminet) -> None:
    """A tiny FermiNet pretrained on H2's HF orbitals (STO-3G, R = 1.4; 60 steps, not
    symmetric between the nuclei): the zero-variance force on each nucleus agrees with the
    central difference of <psi|H(R)|psi> on the same samples (correlated sampling; the
    sample-by-sample difference within 4 error bars of 0), with error bars well below the
    bare ones."""
    atoms, apply, res, r = hf_fitted_ferminet("H 0 0 -0.7; H 0 0 0.7", 128, 60)
    t, w = r.shape[:2]
    rec = measure_forces(r, apply, res.params, atoms)
    flat = jnp.asarray(r.reshape(t * w, 2, 3))
    from hamiltonians.realspace_forces import grad_log_abs

    _, zv = force_samples(flat, grad_log_abs(apply, res.params, flat), atoms.charges,
                          atoms.positions)
    a, b = np.asarray(atoms.positions)
    h = 1e-5
    for nucleus in (0, 1):
        potential = []
        for dz in (h, -h):
            pos = [a.copy(), b.copy()]
            pos[nucleus][2] += dz
            moved = make_atoms([("H", tuple(pos[0])), ("H", tuple(pos[1]))])
            potential.append(np.asarray(jax.vmap(lambda x, m=moved: potential_energy(x, m))(flat)))
        fd = -(potential[0] - potential[1]) / (2 * h)
        diff, diff_err = _stats(np.asarray(zv)[:, nucleus, 2] - fd, w)
        assert abs(diff) < 4 * diff_err, (nucleus, diff, diff_err)
        assert rec["error"][nucleus][2] < 0.3 * rec["bare_error"][nucleus][2]
