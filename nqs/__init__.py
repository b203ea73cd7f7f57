"""nqs: neural-network quantum states by variational Monte Carlo.

Importing nqs enables float64 in JAX: energies, determinants and accumulations need it.

It also turns off XLA's multi-threaded Eigen pool on the CPU unless XLA_FLAGS already says
otherwise: batched determinants (LAPACK LU run in parallel over the batch from inside that
pool) can deadlock the pool on machines with few cores. Set
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=true`` before importing nqs to keep the pool.
The flag must be in place before JAX starts its CPU backend, i.e. before the first computation.
"""

import os

_xla_flags = os.environ.get("XLA_FLAGS", "")
if "xla_cpu_multi_thread_eigen" not in _xla_flags:
    os.environ["XLA_FLAGS"] = (_xla_flags + " --xla_cpu_multi_thread_eigen=false").strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
