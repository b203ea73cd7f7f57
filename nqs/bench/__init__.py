"""Benchmarks of the solver against exact references (:mod:`nqs.bench.fci`: PySCF FCI)."""
