"""``--observe`` on ``nqs spin`` and ``nqs molecule``: observables.json and the plots, with values
against exact diagonalization / FCI (exact summation, so the error bars are 0)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.lattice import chain
from hamiltonians.pauli import pauli_matrix
from hamiltonians.spin import Heisenberg
from hamiltonians.spin_observables import (
    magnetization,
    pair_indices,
    spin_dot,
    staggered_magnetization_squared,
    structure_factor,
)
from nqs.cli import main
from nqs.operator import to_sparse


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip()


def test_spin_observe_writes_values_of_the_ground_state(tmp_path, capsys) -> None:
    out = tmp_path / "spin"
    names = ["magnetization_z", "magnetization_x", "staggered_magnetization", "correlations",
             "structure_factor"]
    code, err = _run(["spin", "--model", "heisenberg", "--size", "4", "--steps", "100",
                      "--sampler", "exact", "--observe", *names, "--out", str(out)], capsys)
    assert code == 0, err
    rec = json.loads((out / "observables.json").read_text())
    assert list(rec) == names
    for name in names:
        assert (out / f"observable_{name}.png").stat().st_size > 0
        assert np.all(np.asarray(rec[name]["error"]) == 0)  # exact summation
    assert rec["correlations"]["estimator"] == rec["structure_factor"]["estimator"] == "exact sum"
    assert "estimator" not in rec["magnetization_z"]
    # the exact ground state of the periodic 4-site chain (unrotated basis; the run used the
    # Marshall sign, which the state undoes for Pauli sums)
    model = Heisenberg(chain(4), total_sz=None)
    h = to_sparse(model).toarray()
    w, v = np.linalg.eigh(h)
    gs = v[:, 0]

    def exact(op) -> float:
        return float(np.real(gs.conj() @ pauli_matrix(op, 4) @ gs))

    tol = 1e-3  # the run's energy is within 1e-6 of exact; correlations within ~2e-4
    assert rec["magnetization_z"]["mean"] == pytest.approx(exact(magnetization(4, "z")), abs=1e-12)
    assert rec["magnetization_x"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert rec["staggered_magnetization"]["mean"] == pytest.approx(
        exact(staggered_magnetization_squared(chain(4))), abs=tol)
    corr = [exact(spin_dot(int(i), int(j))) for i, j in pair_indices(4)]
    np.testing.assert_allclose(rec["correlations"]["mean"], corr, atol=tol)
    assert corr[0] == pytest.approx(-0.5) and corr[1] == pytest.approx(0.25)
    sq = [exact(structure_factor(chain(4), np.array([2 * np.pi * m / 4]))) for m in range(4)]
    np.testing.assert_allclose(rec["structure_factor"]["mean"], sq, atol=tol)


def test_spin_observe_names_the_symmetry_reduced_estimator(tmp_path, capsys) -> None:
    """Sampled correlations of the symmetric RBM (the 12 translations and reflections): one orbit per
    distance of the periodic 6-site chain, the pairs of an orbit equal."""
    out = tmp_path / "spin"
    code, err = _run(["spin", "--model", "heisenberg", "--size", "6", "--steps", "5",
                      "--ansatz", "rbm-symm", "--sampler", "mcmc", "--samples", "256",
                      "--observe", "correlations", "--out", str(out)], capsys)
    assert code == 0, err
    rec = json.loads((out / "observables.json").read_text())["correlations"]
    assert rec["estimator"] == "symmetry-reduced: 12 permutations, 3 orbits"  # space group
    mean = np.asarray(rec["mean"])
    d = np.abs(pair_indices(6)[:, 1] - pair_indices(6)[:, 0])
    for dist in (1, 2, 3):
        same = mean[np.minimum(d, 6 - d) == dist]
        assert np.ptp(same) == 0 and len(same) == (3 if dist == 3 else 6)


def test_molecule_observe_h2_against_fci(tmp_path, capsys) -> None:
    from pyscf import fci, gto, scf

    from hamiltonians.molecule import PRESETS, compute_integrals, dipole_moment, from_preset

    out = tmp_path / "h2"
    names = ["s2", "n_alpha", "n_beta", "rdm1", "natural_occupations", "dipole"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, err = _run(["molecule", "--molecule", "H2", "--steps", "100", "--sampler",
                          "exact", "--observe", *names, "--out", str(out)], capsys)
    assert code == 0, err
    rec = json.loads((out / "observables.json").read_text())
    assert list(rec) == names
    for name in names:
        assert (out / f"observable_{name}.png").stat().st_size > 0
    # exact summation: N_alpha, N_beta exact; S^2 of the trained state (a singlet up to the
    # optimization's triplet admixture, ~2e-8 after 100 steps)
    assert rec["n_alpha"]["mean"] == pytest.approx(1.0, abs=1e-12)
    assert rec["n_beta"]["mean"] == pytest.approx(1.0, abs=1e-12)
    assert abs(rec["s2"]["mean"]) < 1e-6
    mol = gto.M(atom=PRESETS["H2"], basis="sto-3g", verbose=0)
    mf = scf.RHF(mol).run()
    cis = fci.FCI(mf)
    _, ci = cis.kernel()
    rdm_fci = cis.make_rdm1(ci, 2, 2)
    gamma = np.asarray(rec["rdm1"]["mean"]).reshape(2, 2)
    np.testing.assert_allclose(np.abs(gamma), np.abs(rdm_fci), atol=2e-3)
    np.testing.assert_allclose(rec["natural_occupations"]["mean"],
                               np.linalg.eigvalsh(gamma)[::-1], atol=1e-12)
    assert sum(rec["natural_occupations"]["mean"]) == pytest.approx(2.0, abs=1e-10)
    # the dipole operator measured on the samples equals the dipole of the measured 1-RDM in
    # the run's orbitals (nuclear part 1.39 a.u. along z, cancelled by the electrons), and the
    # FCI dipole (0 by symmetry)
    ints, _ = compute_integrals(from_preset("H2"))
    mine = dipole_moment(mol, ints.mo_coeff, gamma)
    np.testing.assert_allclose(rec["dipole"]["mean"], mine, atol=1e-10)
    np.testing.assert_allclose(rec["dipole"]["mean"], dipole_moment(mol, mf.mo_coeff, rdm_fci),
                               atol=1e-3)
    assert rec["dipole"]["unit"].startswith("e bohr")


@pytest.mark.parametrize("argv, message", [
    (["spin", "--size", "4", "--observe", "nonsense"], "unknown observable 'nonsense'"),
    (["molecule", "--molecule", "H2", "--observe", "magnetization_z"],
     "unknown observable 'magnetization_z' for nqs molecule"),
])
def test_unknown_observable_one_line_exit_2_before_out(tmp_path, capsys, argv, message) -> None:
    out = tmp_path / "never"
    code, err = _run([*argv, "--steps", "1", "--out", str(out)], capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_pair_distances_use_the_nearest_image() -> None:
    from hamiltonians.lattice import square
    from nqs.commands.observe import pair_distances

    pairs = pair_indices(4)
    np.testing.assert_allclose(pair_distances(chain(4), pairs), [1, 2, 1, 1, 2, 1])
    np.testing.assert_allclose(pair_distances(chain(4, pbc=False), pairs), [1, 2, 3, 1, 2, 1])
    d = pair_distances(square(4), np.array([[0, 3], [0, 15], [0, 10]]))
    np.testing.assert_allclose(d, [1, np.sqrt(2), np.sqrt(8)])
