"""The lattice-dependent defaults of ``nqs spin`` (``resolve_defaults``) and a short run of
the default ansatz of a 2D lattice against the exact energy."""

import argparse
import json

import numpy as np
import pytest

from nqs.cli import main
from nqs.commands import spin


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    spin.register(parser.add_subparsers())
    return spin.resolve_defaults(parser.parse_args(["spin", *argv]))


def test_defaults_follow_the_lattice():
    chain = _args("--model", "ising")
    assert (chain.ansatz, chain.alpha, chain.lr_schedule, chain.eval_batches) == \
        ("rbm", 1.0, "constant", 4)  # the Carleo-Troyer TFIM chain settings stay
    for model in ("heisenberg", "xxz", "j1j2"):  # exchange chains: the symmetric RBM
        a = _args("--model", model, "--size", "16")
        assert (a.ansatz, a.symmetries, a.lr_schedule) == ("rbm-symm", "space-group", "cosine")
        opened = _args("--model", model, "--size", "16", "--open")
        # the open chain's point group is its reflection: 32 filters for 4 hidden units a site
        assert (opened.ansatz, opened.symmetries, opened.alpha) == ("rbm-symm", "space-group",
                                                                    32.0)
    for lattice in ("square", "honeycomb"):
        a = _args("--model", "heisenberg", "--lattice", lattice, "--size", "4")
        assert (a.ansatz, a.symmetries, a.alpha, a.lr_schedule, a.eval_batches) == \
            ("rbm-symm", "space-group", float(spin.AUTO_SYMM_ALPHA), "cosine",
             spin.AUTO_EVAL_BATCHES)
    # frustrated or not bipartite: the plain RBM; the rule agrees with the lattices' own
    from hamiltonians.lattice import make_lattice

    for lattice in ("square", "triangular", "honeycomb"):
        for size in range(2, 7):
            a = _args("--model", "heisenberg", "--lattice", lattice, "--size", str(size))
            bipartite = make_lattice(lattice, size, pbc=True).is_bipartite
            # not bipartite: the GCNN learns the sign structure (complex), over the space
            # group where its step is affordable on this CPU (100 steps), else the translations
            assert a.ansatz == ("rbm-symm" if bipartite else "gcnn"), (lattice, size)
            if not bipartite:
                small = make_lattice(lattice, size, pbc=True).n_sites <= \
                    spin.SPACE_GROUP_CPU_SITES
                assert (a.symmetries, a.steps, a.real, a.lr_schedule) == \
                    (("space-group", spin.SPACE_GROUP_CPU_STEPS) if small
                     else ("translations", spin.AUTO_STEPS)) + (False, "cosine"), (lattice, size)
            else:
                assert a.steps == spin.AUTO_STEPS
            ising = _args("--lattice", lattice, "--size", str(size))
            assert ising.ansatz == ("rbm-symm" if bipartite else "rbm"), (lattice, size)
    # J1-J2 from J2 = 0.5 on (the frustrated point and the stripe phase, where the Marshall
    # sign is far from the ground state's): the GCNN, over the space group where affordable;
    # below 0.5 the symmetric RBM
    for size, j2, expected in ((4, "0.45", ("rbm-symm", "space-group", spin.AUTO_STEPS)),
                               (4, "0.5", ("gcnn", "space-group", spin.SPACE_GROUP_CPU_STEPS)),
                               (6, "0.5", ("gcnn", "space-group", spin.SPACE_GROUP_CPU_STEPS)),
                               (4, "0.8", ("gcnn", "space-group", spin.SPACE_GROUP_CPU_STEPS)),
                               (6, "1.0", ("gcnn", "space-group", spin.SPACE_GROUP_CPU_STEPS)),
                               (8, "1.0", ("gcnn", "translations", spin.AUTO_STEPS))):
        a = _args("--model", "j1j2", "--lattice", "square", "--size", str(size), "--j2", j2)
        assert (a.ansatz, a.symmetries, a.steps) == expected, (size, j2)
        assert a.real is False
    # open lattices: the patch's point group for the exchange models where bipartite, with at
    # least 4 hidden units a site; the open Ising model and the open triangular lattice: RBM
    for lattice, size, alpha in (("square", 3, 8.0), ("square", 4, 8.0), ("square", 6, 18.0),
                                 ("honeycomb", 3, 18.0), ("chain", 15, 30.0)):
        a = _args("--model", "heisenberg", "--lattice", lattice, "--size", str(size), "--open")
        assert (a.ansatz, a.alpha, a.lr_schedule) == ("rbm-symm", alpha, "cosine"), lattice
        n_sites = make_lattice(lattice, size, pbc=False).n_sites
        n_group = len(make_lattice(lattice, size, pbc=False).point_group())
        assert a.alpha * n_group >= spin.OPEN_HIDDEN_PER_SITE * n_sites
        assert _args("--lattice", lattice, "--size", str(size), "--open").ansatz == "rbm"
    assert _args("--model", "xxz", "--lattice", "triangular", "--size", "4",
                 "--open").ansatz == "rbm"
    given = _args("--lattice", "square", "--ansatz", "gcnn", "--alpha", "2",
                  "--lr-schedule", "constant")
    assert (given.ansatz, given.symmetries, given.alpha, given.lr_schedule, given.steps) == \
        ("gcnn", "translations", 2.0, "constant", spin.AUTO_STEPS)
    chosen = _args("--model", "heisenberg", "--lattice", "triangular", "--size", "4",
                   "--symmetries", "translations", "--steps", "50")
    assert (chosen.ansatz, chosen.symmetries, chosen.steps) == ("gcnn", "translations", 50)
    assert _args("--lattice", "square", "--ansatz", "gcnn", "--symmetries",
                 "space-group").steps == spin.SPACE_GROUP_CPU_STEPS
    # constant-rate fingerprints keep their old keys; a schedule adds its own
    assert "lr_schedule" not in spin.fingerprint(chain)  # (the Ising chain's constant rate)
    assert spin.fingerprint(_args("--lattice", "square"))["lr_schedule"] == "cosine"


def test_default_2d_ansatz_reaches_exact_energy(tmp_path, capsys):
    # honeycomb 2x2 cells (8 spins, 70 states at S^z = 0) by exact summation: the default
    # ansatz (space-group RBM, alpha 8) and schedule, with fewer steps
    out = tmp_path / "hc"
    code = main(["spin", "--model", "heisenberg", "--lattice", "honeycomb", "--size", "2",
                 "--sampler", "exact", "--steps", "60", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    res = json.loads((out / "result.json").read_text())
    assert res["ansatz"] == "rbm-symm" and res["symmetries"] == "space-group"
    assert res["lr_schedule"] == "cosine"
    assert res["energy"] >= res["exact_energy"] - 1e-9  # variational
    assert res["relative_error"] < 2e-3, res["relative_error"]


def test_open_chain_default_reaches_exact_energy(tmp_path, capsys):
    # the open Heisenberg chain of 8 by exact summation: the default symmetric RBM over its
    # reflection (16 filters); 60 steps reach 7.8e-5 (tolerance 1e-3)
    out = tmp_path / "open"
    code = main(["spin", "--model", "heisenberg", "--size", "8", "--open", "--sampler", "exact",
                 "--steps", "60", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "point group" in capsys.readouterr().out
    res = json.loads((out / "result.json").read_text())
    assert (res["ansatz"], res["alpha"]) == ("rbm-symm", 16)
    assert res["energy"] >= res["exact_energy"] - 1e-9  # variational
    assert res["relative_error"] < 1e-3, res["relative_error"]


@pytest.mark.parametrize("bad", ["1.5", "2"])
def test_final_lr_fraction_checked(bad, tmp_path, capsys):
    code = main(["spin", "--lattice", "square", "--size", "2", "--model", "heisenberg",
                 "--final-lr-fraction", bad, "--steps", "1", "--out", str(tmp_path / "x")])
    assert code != 0


def test_6x6_reference_is_the_tabulated_one():
    from hamiltonians.lattice import square
    from hamiltonians.spin import J1J2, Heisenberg
    from hamiltonians.spin_reference import exact_energy

    e, source = exact_energy(Heisenberg(square(6), marshall_sign=True))
    assert abs(e / 36 - (-0.678872)) < 1e-12 and "tabulated" in source
    # J1-J2 at J2 / J1 = 0.5 (either Marshall sign, any J1 > 0); no other ratio is tabulated,
    # and 36 spins are beyond Lanczos here
    for marshall in (False, True):
        e, source = exact_energy(J1J2(square(6), j2=0.5, marshall_sign=marshall))
        assert abs(e / 36 - (-0.503810)) < 1e-12 and "tabulated" in source
    e, _ = exact_energy(J1J2(square(6), j1=2.0, j2=1.0))
    assert abs(e / 36 - 2 * (-0.503810)) < 1e-12
    assert exact_energy(J1J2(square(6), j2=0.4))[0] is None
    assert exact_energy(J1J2(square(6, pbc=False), j2=0.5))[0] is None


@pytest.mark.parametrize("argv", [
    ("--model", "ising", "--size", "8"),
    ("--model", "ising", "--size", "8", "--h", "-0.5"),
    ("--model", "heisenberg", "--size", "8"),
    ("--model", "heisenberg", "--size", "8", "--no-marshall"),
    ("--model", "xxz", "--size", "8", "--delta", "2.0"),
    ("--model", "heisenberg", "--lattice", "square", "--size", "4"),
    ("--model", "j1j2", "--lattice", "square", "--size", "4", "--j2", "0.0"),
    ("--model", "j1j2", "--lattice", "square", "--size", "4", "--j2", "0.5"),
    ("--model", "heisenberg", "--lattice", "triangular", "--size", "4"),
    ("--model", "heisenberg", "--lattice", "honeycomb", "--size", "2"),
])
def test_gcnn_real_exactly_where_the_hamiltonian_is_sign_free(argv):
    # the GCNN's default parameters are real exactly where every off-diagonal element of the
    # Hamiltonian the run builds is <= 0 (a positive ground state), checked on its matrix
    from nqs.operator import to_sparse

    a = _args(*argv, "--ansatz", "gcnn")
    model = spin.build_problem(a)[0]
    h = to_sparse(model).tocoo()
    off = h.row != h.col
    sign_free = bool(np.all(h.data[off] <= 1e-12))
    assert a.real == sign_free, (argv, a.real)
    # explicit choices win; the RBMs keep complex parameters
    assert _args(*argv, "--ansatz", "gcnn", "--no-real").real is False
    assert _args(*argv, "--ansatz", "rbm").real is False


def test_exchange_moves_follow_the_ansatz():
    # networks that evaluate log psi for each proposal exchange antiparallel spins only; the
    # RBMs keep every bond (their per-pattern tables); single flips without a fixed S^z
    from nqs.sampling.rules import AntiparallelExchangeRule, ExchangeRule, LocalRule

    base = ("--model", "heisenberg", "--lattice", "square", "--size", "4")
    for ansatz, rule in (("gcnn", AntiparallelExchangeRule), ("vit", AntiparallelExchangeRule),
                         ("rbm", ExchangeRule), ("rbm-symm", ExchangeRule)):
        sampler = spin.build_problem(_args(*base, "--ansatz", ansatz))[2]
        assert type(sampler.rule) is rule, ansatz
    projected = spin.build_problem(_args(*base, "--ansatz", "rbm", "--project"))[2]
    assert type(projected.rule) is AntiparallelExchangeRule
    ising = spin.build_problem(_args("--model", "ising", "--ansatz", "gcnn", "--size", "8"))[2]
    assert type(ising.rule) is LocalRule
    # --moves overrides the choice either way; only an explicit choice enters the fingerprint
    for ansatz, moves, rule in (("gcnn", "all", ExchangeRule),
                                ("rbm", "antiparallel", AntiparallelExchangeRule)):
        args = _args(*base, "--ansatz", ansatz, "--moves", moves)
        assert type(spin.build_problem(args)[2].rule) is rule, (ansatz, moves)
        assert spin.fingerprint(args)["moves"] == moves
    assert "moves" not in spin.fingerprint(_args(*base, "--ansatz", "gcnn"))


def test_rbm_with_antiparallel_moves_matches_exact_energy(tmp_path, capsys):
    # an RBM sampled by antiparallel exchanges takes the generic single-update path (its
    # per-pattern tables serve a fixed list of moves): short run on the chain of 8, then the
    # run loads back with the same moves from its checkpoint
    from nqs.commands.load import load_run
    from nqs.sampling.rules import AntiparallelExchangeRule

    out = tmp_path / "r"
    code = main(["spin", "--model", "heisenberg", "--lattice", "chain", "--size", "8",
                 "--ansatz", "rbm", "--moves", "antiparallel", "--samples", "512",
                 "--chains", "32", "--steps", "150", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    res = json.loads((out / "result.json").read_text())
    assert res["moves"] == "exchanges of antiparallel spins"
    assert res["relative_error"] < 1e-3, res["relative_error"]  # 8.5e-5 (seed 0)
    assert type(load_run(out).state.sampler.rule) is AntiparallelExchangeRule


def test_gcnn_with_antiparallel_exchanges_reaches_exact_energy(tmp_path, capsys):
    # the Metropolis path end to end: the GCNN sampled by exchanges of antiparallel spins
    # (Metropolis-Hastings corrected) on the 4x4 lattice; 60 steps reach 2.2e-3 to 3.1e-3
    # (seeds 0-2), the final energy summed exactly
    out = tmp_path / "g"
    code = main(["spin", "--model", "heisenberg", "--lattice", "square", "--size", "4",
                 "--ansatz", "gcnn", "--samples", "512", "--chains", "32", "--steps", "60",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    res = json.loads((out / "result.json").read_text())
    assert res["moves"] == "exchanges of antiparallel spins"
    assert res["relative_error"] < 5e-3, res["relative_error"]


def test_real_gcnn_reaches_exact_energy_where_sign_free(tmp_path, capsys):
    # honeycomb 2x2 cells with the Marshall sign (sign-free): the default GCNN is real and
    # reaches the ground state by exact summation
    out = tmp_path / "g"
    code = main(["spin", "--model", "heisenberg", "--lattice", "honeycomb", "--size", "2",
                 "--ansatz", "gcnn", "--sampler", "exact", "--steps", "80", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    res = json.loads((out / "result.json").read_text())
    assert res["real"] is True
    assert res["energy"] >= res["exact_energy"] - 1e-9
    assert res["relative_error"] < 2e-3, res["relative_error"]


def test_symmetric_ground_energy_is_the_lowest_invariant_state(tmp_path, capsys):
    # the lowest energy over the states a symmetric ansatz spans (its group's trivial irrep):
    # over the translations it equals the momentum-zero sector's Lanczos (separate code), over
    # the space group it lies at or above; where the ground state is invariant it equals E0
    from hamiltonians.lattice import chain, square
    from hamiltonians.momentum_sectors import momentum_sector_energies
    from hamiltonians.spin import J1J2, Heisenberg
    from hamiltonians.spin_reference import lanczos_ground_state, symmetric_ground_energy

    model = J1J2(chain(12), j2=1.0, marshall_sign=True)
    e0 = lanczos_ground_state(model)
    e_t = symmetric_ground_energy(model, model.lattice.translations())
    e_sg = symmetric_ground_energy(model, model.lattice.space_group())
    assert abs(e_t - momentum_sector_energies(model)[0]) < 1e-9
    assert e0 < e_t - 0.1 and e_sg >= e_t - 1e-9  # (E0 -5.896, invariant -5.725)
    heisenberg = Heisenberg(square(4), marshall_sign=True)
    assert abs(symmetric_ground_energy(heisenberg, heisenberg.lattice.space_group())
               - lanczos_ground_state(heisenberg)) < 1e-9
    # a run with the symmetric ansatz asked for says so and records it
    out = tmp_path / "c"
    code = main(["spin", "--model", "j1j2", "--lattice", "chain", "--size", "12", "--j2", "1.0",
                 "--ansatz", "rbm-symm", "--steps", "2", "--eval-batches", "1", "--out", str(out)])
    assert code == 0
    assert "not in the ansatz's symmetry sector" in capsys.readouterr().out
    res = json.loads((out / "result.json").read_text())
    assert abs(res["exact_energy_symmetric"] - e_sg) < 1e-9


def test_ground_state_momentum_and_a_run_projected_on_it(tmp_path, capsys):
    """The Heisenberg chain of 6 (no Marshall sign) has its ground state at momentum pi (k = 3),
    of 8 at zero; the projection's sector (symmetric_ground_energy with the momentum's
    characters) equals the momentum-state Lanczos (separate code) at every k. An invariant
    ansatz's run names the momentum; a run with it passes the lowest invariant state."""
    from hamiltonians.lattice import chain
    from hamiltonians.momentum_sectors import ground_state_momentum, momentum_sector_energies
    from hamiltonians.spin import Heisenberg
    from hamiltonians.spin_reference import lanczos_ground_state, symmetric_ground_energy
    from nqs.models.symmetry import momentum_characters

    model = Heisenberg(chain(6))
    e0 = lanczos_ground_state(model)
    k, e_k = ground_state_momentum(model)
    assert k == (3,) and abs(e_k - e0) < 1e-9
    assert ground_state_momentum(Heisenberg(chain(8)))[0] == (0,)
    translations = model.lattice.translations()
    for m in range(6):
        chars = momentum_characters(translations, (6,), (m,))
        assert abs(symmetric_ground_energy(model, translations, chars)
                   - momentum_sector_energies(model, (m,))[0]) < 1e-9
    e_invariant = symmetric_ground_energy(model, translations)  # -2.118, E0 -2.803
    base = ["spin", "--model", "heisenberg", "--size", "6", "--no-marshall", "--samples", "256",
            "--eval-batches", "1"]
    assert main([*base, "--ansatz", "rbm-symm", "--steps", "2", "--out", str(tmp_path / "a")]) == 0
    assert "the ground state has momentum 3 (2 pi / L): --momentum 3" in capsys.readouterr().out
    assert main([*base, "--steps", "40", "--momentum", "3", "--out", str(tmp_path / "b")]) == 0
    res = json.loads((tmp_path / "b" / "result.json").read_text())
    assert res["momentum"] == [3] and res["ansatz"] == "rbm" and res["project"]
    assert res["energy"] < e_invariant - 0.3, res["energy"]  # measured -2.675
    # the checkpoint records the momentum: loaded, the state is projected on it again
    from nqs.commands.load import load_state

    loaded = load_state(tmp_path / "b")
    np.testing.assert_allclose(loaded.ansatz.module.characters,
                               momentum_characters(translations, (6,), (3,)), atol=1e-12)
    # at defaults (no --ansatz, --symmetries, --momentum) the run takes that momentum itself
    assert main([*base, "--steps", "2", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "instead of the default rbm-symm over the space group: a plain RBM projected on the " \
           "ground state's momentum 3 (--momentum 3)" in out
    res = json.loads((tmp_path / "d" / "result.json").read_text())
    assert res["momentum"] == [3] and res["ansatz"] == "rbm" and res["project"]
    assert abs(res["exact_energy_symmetric"] - e0) < 1e-9  # the sector holds the ground state


def test_default_symmetries_that_miss_the_ground_state_fall_back(tmp_path, capsys):
    """The periodic 2x2 triangular Heisenberg model (a tetrahedron: its singlet ground states
    are not invariant under the point group): the default GCNN goes over the translations
    alone, whose sector holds the ground state; asked for explicitly, the space group stays
    (with the note). A loaded run rebuilds the chosen ansatz."""
    from nqs.commands.load import load_run

    base = ["spin", "--model", "heisenberg", "--lattice", "triangular", "--size", "2",
            "--samples", "64", "--eval-batches", "1", "--steps", "1"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "no state invariant under the space group reaches the ground state" in out
    assert "the gcnn goes over the translations alone" in out
    res = json.loads((tmp_path / "a" / "result.json").read_text())
    assert res["symmetries"] == "translations" and res["ansatz"] == "gcnn"
    assert abs(res["exact_energy_symmetric"] - res["exact_energy"]) < 1e-9
    assert len(load_run(tmp_path / "a").state.ansatz.symmetries) == 4  # translations
    assert main([*base, "--symmetries", "space-group", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "not in the ansatz's symmetry sector" in out and "instead of the default" not in out
    assert json.loads((tmp_path / "b" / "result.json").read_text())["symmetries"] == "space-group"


def test_dtype_default_is_float32_for_the_gcnn_only(tmp_path, capsys):
    """``--dtype auto``: float32 for the GCNN, float64 for the others; an explicit choice
    stays; a resumed run keeps its checkpoint's dtype (runs from before the auto default)."""
    assert _args("--model", "heisenberg", "--lattice", "triangular", "--size", "4").dtype == \
        spin.GCNN_DTYPE == "float32"
    assert _args("--model", "heisenberg", "--lattice", "square", "--size", "4").dtype == \
        "float64"  # rbm-symm
    assert _args("--model", "heisenberg", "--lattice", "triangular", "--size", "4",
                 "--dtype", "float64").dtype == "float64"
    base = ["spin", "--model", "heisenberg", "--lattice", "triangular", "--size", "2",
            "--symmetries", "translations", "--samples", "64", "--eval-batches", "1"]
    out = tmp_path / "a"
    assert main([*base, "--dtype", "float64", "--steps", "1", "--out", str(out)]) == 0
    assert main([*base, "--steps", "2", "--out", str(out), "--resume"]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["dtype"] == "float64" and res["steps"] == 2
    assert main([*base, "--steps", "1", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "result.json").read_text())["dtype"] == "float32"
