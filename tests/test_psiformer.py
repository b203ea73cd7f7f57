"""Psiformer (von Glehn et al. 2023) beside FermiNet: antisymmetry, Jastrow, equivariance of the
attention stack, forward Laplacian against the Hessian trace, a short run, bad sizes (fast, CPU).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401  (float64)
from hamiltonians.realspace import make_atoms, make_local_energy
from nqs.errors import InputError
from nqs.models.lapnet import make_lapnet, make_lapnet_orbitals
from nqs.models.psiformer import (
    jastrow_value,
    make_attention_stack,
    make_psiformer,
    make_psiformer_orbitals,
)
from nqs.realspace import init_walkers

TINY = dict(n_layers=2, heads=2, width=8, n_determinants=2)
LIH = "Li 0 0 0; H 0 0 3.015"


def _perturb(params):
    """Move every parameter off its initial value (LayerNorm scales of 1, biases of 0, Jastrow
    and envelope parameters of 1) so no path is the identity."""
    return jax.jit(lambda p: jax.tree_util.tree_map(
        lambda x: x * (1.0 + 0.1 * jnp.sin(jnp.arange(x.size).reshape(x.shape)))
        + 0.05 * jnp.cos(jnp.arange(x.size).reshape(x.shape)), p))(params)


NETWORKS = {"psiformer": (make_psiformer, make_psiformer_orbitals),
            "lapnet": (make_lapnet, make_lapnet_orbitals)}


@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize("full_det", [False, True])
def test_antisymmetry_under_same_spin_exchange(full_det, network):
    make, make_orbitals = NETWORKS[network]
    a = make_atoms("Li 0 0 0; H 0 0 3.015; H 0 0 -2.0")  # 5 electrons: 3 alpha, 2 beta
    kw = dict(TINY, full_det=full_det)
    init, apply = make(a, a.n_alpha, a.n_beta, **kw)
    params = _perturb(init(jax.random.PRNGKey(3)))
    r = init_walkers(jax.random.PRNGKey(4), a, 1)[0]
    perms = [np.arange(5)]
    for i, j in [(0, 2), (1, 2), (3, 4), (0, 3)]:  # alpha-alpha twice, beta-beta, alpha-beta
        p = np.arange(5)
        p[[i, j]] = p[[j, i]]
        perms.append(p)
    sign, log_abs = jax.jit(jax.vmap(apply, (None, 0)))(params, r[np.stack(perms)])
    sign, log_abs = np.asarray(sign), np.asarray(log_abs)
    assert np.all(np.isfinite(log_abs))
    for s, la in zip(sign[1:4], log_abs[1:4], strict=True):
        assert s == -sign[0]
        np.testing.assert_allclose(la, log_abs[0], rtol=1e-12)
    if not full_det:  # an alpha-beta exchange is no symmetry of the spin blocks
        assert abs(log_abs[4] - log_abs[0]) > 1e-6
    mats = jax.jit(make_orbitals(a, a.n_alpha, a.n_beta, **kw))(params, r)
    assert [m.shape for m in mats] == ([(2, 5, 5)] if full_det else [(2, 3, 3), (2, 2, 2)])


@pytest.mark.parametrize("layer_norm", ["pre", "post", "none"])
def test_attention_stack_is_permutation_equivariant(layer_norm):
    stack = make_attention_stack(2, 2, 8, layer_norm)
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 5))
    params = _perturb(stack.init(jax.random.PRNGKey(1), x))
    perm = np.array([3, 0, 5, 1, 4, 2])
    f = jax.jit(jax.vmap(stack.apply, (None, 0)))
    h, h_perm = f(params, jnp.stack([x, x[perm]]))
    np.testing.assert_allclose(np.asarray(h_perm), np.asarray(h)[perm], rtol=1e-12, atol=1e-12)
    assert h.shape == (6, 8) and float(jnp.std(h)) > 1e-3


def test_jastrow_by_hand_and_cusp():
    # 3 electrons: 0, 1 alpha and 2 beta; pairs (0,1) parallel, (0,2), (1,2) antiparallel
    r = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.5], [2.0, 0.0, 0.0]])
    a_par, a_anti = 0.7, 1.3
    d01, d02, d12 = 1.5, 2.0, np.hypot(2.0, 1.5)
    by_hand = (-0.25 * a_par**2 / (a_par + d01) - 0.5 * a_anti**2 / (a_anti + d02)
               - 0.5 * a_anti**2 / (a_anti + d12))
    j = jastrow_value(jnp.asarray(r), 2, jnp.asarray(a_par), jnp.asarray(a_anti))
    assert float(j) == pytest.approx(by_hand, rel=1e-14)

    # Kato's cusp: dJ/dr_ij -> 1/4 (parallel), 1/2 (antiparallel) as r_ij -> 0
    def along(t, n_alpha):
        x = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).at[1, 2].set(t)
        return jastrow_value(x, n_alpha, jnp.asarray(a_par), jnp.asarray(a_anti))

    assert float(jax.grad(along)(1e-9, 2)) == pytest.approx(0.25, rel=1e-6)
    assert float(jax.grad(along)(1e-9, 1)) == pytest.approx(0.5, rel=1e-6)

    # In the network: log|psi| with the Jastrow minus without it is J at its parameters
    a = make_atoms(LIH)
    init, apply = make_psiformer(a, 2, 2, **TINY)
    _, apply_bare = make_psiformer(a, 2, 2, **TINY, jastrow=False)
    params = _perturb(init(jax.random.PRNGKey(0)))
    x = init_walkers(jax.random.PRNGKey(1), a, 1)[0]
    p = params["params"]
    bare = {"params": {k: v for k, v in p.items() if not k.startswith("jastrow")}}
    s1, l1 = apply(params, x)
    s0, l0 = apply_bare(bare, x)
    assert float(s1) == float(s0)
    expected = jastrow_value(x, 2, p["jastrow_par"], p["jastrow_anti"])
    assert float(l1 - l0) == pytest.approx(float(expected), rel=1e-10, abs=1e-12)


def test_folx_local_energy_equals_hessian_trace():
    a = make_atoms(LIH)
    init, apply = make_psiformer(a, a.n_alpha, a.n_beta, **TINY, envelope="full")
    params = _perturb(init(jax.random.PRNGKey(1)))
    r = init_walkers(jax.random.PRNGKey(2), a, 3)
    e_f = jax.jit(jax.vmap(make_local_energy(apply, a, "folx"), (None, 0)))(params, r)
    e_h = jax.jit(jax.vmap(make_local_energy(apply, a, "hessian"), (None, 0)))(params, r)
    assert np.all(np.isfinite(np.asarray(e_f)))
    np.testing.assert_allclose(np.asarray(e_f), np.asarray(e_h), rtol=1e-9, atol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_short_run_with_pretraining_lowers_the_energy(network):
    """He, a tiny Psiformer or LapNet (its folx path with sparsity): HF pretraining, 40 SPRING
    steps through the driver."""
    from nqs.problems.realspace import run_realspace

    messages = []
    res = run_realspace(
        make_atoms("He 0 0 0"), ansatz=network, psiformer_layers=1, heads=2, width=8,
        n_determinants=1, optimizer="sr", momentum=0.9, learning_rate=0.1, pretrain_steps=10,
        pretrain_basis="sto-3g", n_steps=40, n_walkers=64, mcmc_steps=5, burn_in_calls=5,
        eval_steps=4, seed=1, echo=messages.append, progress=False,
    )
    energies = np.array([h["energy"] for h in res.history])
    assert np.all(np.isfinite(energies)) and energies.size == 40
    assert energies[-10:].mean() < energies[:5].mean() - 0.05, energies
    assert res.hf_energy is not None and any("pretrained 10 steps" in m for m in messages)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside kfac-jax
def test_kfac_smoke():
    """KFAC (kfac-jax's graph matcher on the attention layers, through the driver) lowers the
    energy of He."""
    from nqs.problems.realspace import run_realspace

    try:
        res = run_realspace(make_atoms("He 0 0 0"), ansatz="psiformer", psiformer_layers=1,
                            heads=2, width=8, n_determinants=1, optimizer="kfac",
                            learning_rate=0.1, lr_delay=100.0, n_steps=20, n_walkers=64,
                            mcmc_steps=5, eval_steps=2, seed=0, progress=False,
                            echo=lambda _: None)
    except InputError as err:  # jax >= 0.11: kfac-jax 0.0.8 does not run
        pytest.skip(str(err))
    energy = np.array([r["energy"] for r in res.history])
    assert energy.size == 20 and np.all(np.isfinite(energy))
    assert energy[-5:].mean() < energy[:5].mean() - 0.1


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_bad_sizes_raise_input_error(network):
    make = NETWORKS[network][0]
    a = make_atoms("He 0 0 0")
    with pytest.raises(InputError, match="not divisible"):
        make(a, 1, 1, heads=3, width=8)
    with pytest.raises(InputError, match="layers"):
        make(a, 1, 1, n_layers=0)
    with pytest.raises(InputError, match="layer norm"):
        make(a, 1, 1, layer_norm="middle")
    from nqs.problems.realspace import run_realspace

    with pytest.raises(InputError, match="unknown ansatz"):
        run_realspace(a, ansatz="paulinet", n_steps=0, eval_steps=2)


# ---------------------------------------------------------------- the command line


def _parser():
    """The ``nqs`` parser with only the realspace subcommand (as tests/test_realspace_cli.py)."""
    from nqs.cli import _Parser
    from nqs.commands import realspace as realspace_cmd

    parser = _Parser(prog="nqs")
    realspace_cmd.register(parser.add_subparsers(dest="command", parser_class=_Parser))
    return parser


def _main(argv: list[str]) -> int:
    """``nqs.cli.main`` with only the realspace subcommand."""
    import sys

    from nqs.cli import EXIT_BAD_INPUT
    from nqs.errors import CheckpointError

    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (InputError, CheckpointError) as err:
        print(f"nqs {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


@pytest.mark.parametrize(
    "argv",
    [
        ["--ansatz", "psiformer", "--heads", "3", "--width", "32"],  # heads do not divide
        ["--ansatz", "psiformer", "--heads", "3"],  # nor the default width 32
        ["--ansatz", "psiformer", "--layers", "0"],  # zero layers
        ["--heads", "2"],  # a Psiformer option without --ansatz psiformer
        ["--ansatz", "psiformer", "--hidden", "32", "8"],  # a FermiNet option
        ["--ansatz", "paulinet"],  # no such network
        ["--ansatz", "lapnet", "--heads", "3"],  # a LapNet is sized as a Psiformer
        ["--ansatz", "lapnet", "--hidden", "32", "8"],
        ["--ansatz", "lapnet", "--layer-norm", "middle"],
    ],
)
def test_cli_bad_sizes_exit_2_with_one_line(argv, tmp_path, capsys):
    try:
        rc = _main(["realspace", "--preset", "He", *argv, "--out", str(tmp_path / "x")])
    except SystemExit as e:  # argparse errors
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1 and "error" in err, err
    assert not (tmp_path / "x").exists()


def test_cli_device_defaults_for_psiformer():
    from nqs.commands import realspace as realspace_cmd

    args = _parser().parse_args(["realspace", "--preset", "He", "--ansatz", "psiformer",
                                 "--width", "16"])
    line = realspace_cmd.apply_device_defaults(args, "cpu")
    assert (args.layers, args.heads, args.width, args.layer_norm) == (2, 2, 16, "pre")
    assert args.hidden is None and "2 heads" in line and "--width" not in line
    args = _parser().parse_args(["realspace", "--preset", "He", "--ansatz", "psiformer"])
    line = realspace_cmd.apply_device_defaults(args, "gpu")
    assert (args.layers, args.heads, args.width, args.determinants) == (4, 4, 256, 16)
    assert "Psiformer" in line
    args = _parser().parse_args(["realspace", "--preset", "He", "--ansatz", "lapnet"])
    line = realspace_cmd.apply_device_defaults(args, "gpu")
    assert (args.layers, args.heads, args.width, args.layer_norm) == (4, 4, 256, "pre")
    assert "as a LapNet" in line and args.hidden is None


@pytest.mark.slow
def test_cli_psiformer_run_writes_results(tmp_path, capsys):
    out = tmp_path / "he"
    rc = _main(["realspace", "--preset", "He", "--ansatz", "psiformer", "--layers", "1",
                "--heads", "2", "--width", "8", "--determinants", "1", "--walkers", "16",
                "--mcmc-steps", "2", "--eval-steps", "4", "--optimizer", "adam", "--lr", "0.01",
                "--steps", "3", "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "result.json").read_text())
    assert result["ansatz"] == "psiformer" and result["hidden"] is None
    assert (result["heads"], result["width"], result["jastrow"]) == (2, 8, True)
    assert np.isfinite(result["energy"]) and result["steps"] == 3
    # loaded back from the run directory (the Psiformer rebuilt from the checkpoint's options):
    # the final evaluation's key and measurements give the run's energy
    from nqs.commands.load import load_run

    run = load_run(out)
    assert run.kind == "realspace" and run.step == 3
    k_eval = jax.random.split(jax.random.PRNGKey(0), 7)[6]
    st = run.state.energy(n_steps=4, key=k_eval)
    assert float(st.mean) == pytest.approx(result["energy"], abs=1e-10)
