"""The physics: lattices, spin models, molecules and their exact references."""

import nqs  # noqa: F401  (enables float64 before any array is built)
