"""Test-session setup.

The suite is dominated by XLA compilation of many small programs, not by running them: cheaper
backend optimization roughly halves its time. Set before JAX is imported; an XLA_FLAGS already
in the environment wins.
"""

import os

os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_multi_thread_eigen=false",
)
os.environ.setdefault("MPLBACKEND", "Agg")
