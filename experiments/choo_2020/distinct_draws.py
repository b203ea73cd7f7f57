"""How many distinct determinants does one autoregressive VMC step see?

For the final state of an ``nqs molecule`` run with the autoregressive sampler (its checkpoint),
draws ``N`` configurations as a step does, for several ``N``, with a buffer large enough that
none is dropped, and prints per ``N``: the distinct determinants (the rows of the step's local
energies and of its SR Jacobian, so what a step costs and what it learns from), the share of
the state's probability they hold (``sum p(x)`` over them), and the sampler's CPU seconds per
call (the walk alone; local energies and SR come on top, roughly in proportion to the distinct
determinants).

    python experiments/choo_2020/distinct_draws.py runs/h2o-631g --draws 1e5 4e5 1e6 1e7

Prints one line per ``N`` and writes nothing. ``--max-unique`` of a run only bounds the distinct
determinants; the draws (``--samples``, 1e5 by default) set how many there are.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (float64)
from nqs.sampling.autoregressive import AutoregressiveSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="directory of an autoregressive nqs molecule run")
    parser.add_argument("--draws", type=float, nargs="+", default=[1e5, 4e5, 1e6, 1e7])
    parser.add_argument("--buffer", type=int, default=16384,
                        help="prefix buffer rows (larger than any distinct count expected)")
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()

    from nqs.commands.load import load_run

    loaded = load_run(args.run)
    ansatz, params = loaded.state.ansatz, loaded.state.params
    hilbert = loaded.operator.hilbert
    log_psi = jax.jit(jax.vmap(ansatz.log_psi, in_axes=(None, 0)))
    print(f"{args.run} (step {loaded.step}): {hilbert.n_states} determinants", flush=True)
    for n in args.draws:
        sampler = AutoregressiveSampler(hilbert, int(n), args.buffer)
        draw = jax.jit(lambda key, s, sampler=sampler: sampler.sample(key, ansatz, params, s))
        state = jnp.asarray(float(int(n)))
        jax.block_until_ready(draw(jax.random.PRNGKey(0), state))  # compile
        distinct, mass, kept, cpu = [], [], [], 0.0
        for i in range(args.calls):
            c0 = time.process_time()
            samples, _, info = jax.block_until_ready(draw(jax.random.PRNGKey(i + 1), state))
            cpu += time.process_time() - c0
            u = int(info["n_unique"])
            distinct.append(u)
            kept.append(float(info["n_draws"]))
            x = samples.x[:u]
            mass.append(float(jnp.sum(jnp.exp(2.0 * jnp.real(log_psi(params, x))))))
        print(f"  {int(n):.0e} draws: {np.mean(distinct):.0f} distinct determinants "
              f"(min {min(distinct)}, max {max(distinct)}), holding {np.mean(mass):.6f} of "
              f"the probability; draws kept {np.mean(kept):.0e}; sampler "
              f"{cpu / args.calls:.2f} CPU s per call", flush=True)


if __name__ == "__main__":
    main()
