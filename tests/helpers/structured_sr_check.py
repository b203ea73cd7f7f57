"""Run by tests/test_sr_structured.py with XLA_FLAGS=--xla_force_host_platform_device_count=4.

Metropolis samples of a complex RBM on a TFIM chain, sharded over a 4-device mesh: the minSR
update from the factored Jacobian (jitted, mesh) against the dense-Jacobian update (one device).
Prints one JSON line ``RESULT {...}``.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np

import nqs  # noqa: F401
from hamiltonians.lattice import chain
from hamiltonians.spin import TransverseFieldIsing
from nqs.models.rbm import make_rbm
from nqs.optim import sr
from nqs.optim.flat import real_flat
from nqs.parallel import make_mesh, put, sample_sharding
from nqs.sampling import MetropolisSampler
from nqs.sampling.base import Samples
from nqs.sampling.rules import LocalRule
from nqs.vmc import make_estimator


def main() -> None:
    model = TransverseFieldIsing(chain(8), h=1.0)
    ansatz = make_rbm(8, alpha=2)
    dense_ansatz = dataclasses.replace(ansatz, jacobian_structure=None)
    params = ansatz.init(jax.random.PRNGKey(0), np.ones(8))
    flat, unflatten = real_flat(params)
    params = unflatten(0.3 * jax.random.normal(jax.random.PRNGKey(1), flat.shape))
    sampler = MetropolisSampler(model.hilbert, LocalRule(), n_chains=16, n_samples=128,
                                n_discard_sweeps=4)
    state = sampler.init(jax.random.PRNGKey(2), ansatz, params)
    samples = sampler.sample(jax.random.PRNGKey(3), ansatz, params, state)[0]
    tx = sr(1e-2, "minsr")
    mesh = make_mesh()

    def update(a, mesh_):
        est_fn = make_estimator(a, model, needs_jacobian=True, mesh=mesh_)

        @jax.jit
        def run(p, x, w):
            est = est_fn(p, Samples(x, w, sampler.n_chains))
            upd, _ = tx.update(unflatten(est.grad), tx.init(p), p, jacobian=est.jacobian,
                               residuals=est.residuals)
            feats = getattr(est.jacobian, "features", None)
            return real_flat(upd)[0], est.stats.mean, feats
        return run

    x, w = samples.x, samples.weights
    xs, ws = put((x, w), (sample_sharding(mesh),) * 2)
    u4, e4, feats = update(ansatz, mesh)(params, xs, ws)
    u1, e1, _ = update(dense_ansatz, None)(params, x, w)
    out = {
        "n_devices": len(mesh.devices.ravel()),
        "sharded": len(feats.g.sharding.device_set) == 4,
        "update_norm": float(np.linalg.norm(np.asarray(u1))),
        "update_diff": float(np.max(np.abs(np.asarray(u4) - np.asarray(u1)))),
        "energy_diff": float(abs(complex(e4) - complex(e1))),
    }
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
