"""Ansatze: RBMs and backflow determinants (discrete, complex ``log psi``), FermiNet (real space)."""
