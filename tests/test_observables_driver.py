"""run_vmc(observables=...): observables logged during a run; VMCResult.state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nqs  # noqa: F401
from hamiltonians.lattice import chain
from hamiltonians.pauli import pauli_matrix, sigmax
from hamiltonians.spin import TransverseFieldIsing
from hamiltonians.spin_observables import magnetization, spin_correlations
from nqs.driver import run_vmc
from nqs.errors import InputError
from nqs.io import read_jsonl
from nqs.models.rbm import make_rbm
from nqs.optim import sr_optimizer
from nqs.sampling import ExactSampler, LocalRule, MetropolisSampler

N = 6


def test_observables_logged_with_exact_values(tmp_path):
    model = TransverseFieldIsing(chain(N), h=1.0)
    ansatz = make_rbm(N, 1.0)
    mz2 = magnetization(N) * magnetization(N)
    result = run_vmc(ansatz, model, ExactSampler(model.hilbert), sr_optimizer(0.05, 1e-2), 7,
                     out_dir=tmp_path, progress=False, observe_every=3,
                     observables={"mz2": mz2, "corr": spin_correlations(N), "x0": sigmax(0)})
    log = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in log if "observables" in r] == [2, 5, 6]
    last = log[-1]["observables"]
    assert set(last) == {"mz2", "corr", "x0"}
    assert len(last["corr"]["mean"]) == N * (N - 1) // 2
    assert last["x0"]["error"] == 0.0
    # after the last step the state is the result's: compare with <psi|O|psi> densely
    states = model.hilbert.all_states()
    lp = np.asarray(jax.vmap(ansatz.log_psi, (None, 0))(result.params, jnp.asarray(states)))
    psi = np.exp(lp - lp.real.max())
    psi /= np.linalg.norm(psi)
    for name, op in (("mz2", mz2), ("x0", sigmax(0))):
        ref = (psi.conj() @ pauli_matrix(op, N) @ psi).real
        assert last[name]["mean"] == pytest.approx(ref, abs=1e-10)
    # the result carries the state
    assert float(np.real(result.state.expect(sigmax(0)).mean)) == pytest.approx(
        last["x0"]["mean"], abs=1e-12)


def test_observables_do_not_change_the_trajectory(tmp_path):
    model = TransverseFieldIsing(chain(N), h=1.0)
    ansatz = make_rbm(N, 1.0)
    sampler = MetropolisSampler(model.hilbert, LocalRule(), n_chains=8, n_samples=128)
    kw = {"seed": 3, "progress": False, "n_eval_batches": 1}
    plain = run_vmc(ansatz, model, sampler, sr_optimizer(0.05, 1e-2), 4, **kw)
    seen = run_vmc(ansatz, model, sampler, sr_optimizer(0.05, 1e-2), 4, **kw,
                   observables={"x0": sigmax(0)}, observe_every=2)
    assert [r["energy"] for r in plain.history] == [r["energy"] for r in seen.history]
    obs = [r["observables"]["x0"] for r in seen.history if "observables" in r]
    assert len(obs) == 2 and all(o["error"] > 0 and o["tau_corr"] > 0 for o in obs)
    # Monte Carlo estimate from the result's state: within error bars of the exact value
    stats = seen.state.expect(sigmax(0))
    exact = seen.state.__class__(ansatz, seen.params, ExactSampler(model.hilbert)).expect(
        sigmax(0))
    assert abs(complex(stats.mean) - complex(exact.mean)) < 4 * float(stats.error_of_mean)


@pytest.mark.parametrize("observables, every, message", [
    ({"far": sigmax(N)}, 1, f"site {N}"),
    ({"": sigmax(0)}, 1, "non-empty"),
    ({"x": sigmax(0)}, 0, "observe_every"),
    ({"x": "sigmax"}, 1, "DiscreteOperator"),
])
def test_bad_observables_refused_before_the_run(observables, every, message):
    model = TransverseFieldIsing(chain(N), h=1.0)
    with pytest.raises(InputError, match=message):
        run_vmc(make_rbm(N, 1.0), model, ExactSampler(model.hilbert), sr_optimizer(0.05, 1e-2),
                3, progress=False, observables=observables, observe_every=every)


def test_marshall_model_result_state_measures_physical_correlations(tmp_path):
    """A run of the Heisenberg model with the Marshall sign: the logged and the result state's
    bond correlations are the physical ones: sum_<ij> <S_i.S_j> (Pauli sums, rotated into the
    state's basis) is the energy of the model (written in that basis)."""
    from hamiltonians.pauli import pauli_sum
    from hamiltonians.spin import Heisenberg
    from hamiltonians.spin_observables import spin_dot

    model = Heisenberg(chain(N), marshall_sign=True)
    bonds = pauli_sum(spin_dot(int(i), int(j)) for i, j in model.lattice.bonds)
    result = run_vmc(make_rbm(N, 1.0), model, ExactSampler(model.hilbert),
                     sr_optimizer(0.05, 1e-2), 5, progress=False, observe_every=5,
                     observables={"bonds": bonds})
    logged = result.history[-1]["observables"]["bonds"]["mean"]
    direct = float(np.real(result.state.expect(bonds).mean))
    assert direct == pytest.approx(logged, abs=1e-12)
    assert direct == pytest.approx(result.energy, abs=1e-10)
    # measured without the rotation, the exchange terms change sign: another number
    unrotated = result.state
    unrotated.marshall_sublattice = None
    assert abs(float(np.real(unrotated.expect(bonds).mean)) - result.energy) > 1e-3


def test_a_run_stopped_by_its_time_limit_observes_its_last_step():
    model = TransverseFieldIsing(chain(N), h=1.0)
    result = run_vmc(make_rbm(N, 1.0), model, ExactSampler(model.hilbert),
                     sr_optimizer(0.05, 1e-2), 50, progress=False, time_limit=1e-9,
                     observables={"x0": sigmax(0)}, observe_every=20)
    assert result.stopped_by_time_limit and result.steps == 1
    assert "observables" in result.history[-1]
