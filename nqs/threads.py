"""Thread pools of the BLAS libraries numpy and scipy load."""

from __future__ import annotations

from contextlib import AbstractContextManager


def single_blas_thread() -> AbstractContextManager:
    """A context in which numpy's and scipy's BLAS run on one thread.

    For the long chains of small level-1 and level-2 products of an iterative eigensolver
    (ARPACK's Lanczos updates): with other work on the cores, OpenBLAS's threads wait on each
    other at every product; measured on the 2-core machine beside a training run, the
    momentum-sector Lanczos of the 22-site chain took 109 s on two threads and 17 s on one."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
