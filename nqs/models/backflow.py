"""Neural-network backflow Slater determinants.

References: D. Luo and B. K. Clark, PRL 122, 226401 (2019); Liu and Clark (2024).

A feed-forward network maps the occupation vector ``x`` [2 n_orbitals] to configuration-dependent
orbitals. For each determinant ``d`` the spin-block orbital matrices are

    Phi^alpha_d(x) = Phi0^alpha_d + NN^alpha_d(x)      [n_orbitals, n_alpha]
    Phi^beta_d(x)  = Phi0^beta_d  + NN^beta_d(x)       [n_orbitals, n_beta]

and the amplitude is

    psi(x) = sum_d c_d det(Phi^alpha_d(x)[occ_alpha(x)]) det(Phi^beta_d(x)[occ_beta(x)]),

where ``occ_alpha(x)`` (``occ_beta(x)``) are the occupied alpha (beta) orbitals in increasing
order. That is the amplitude of a determinant with creation operators in increasing spin-orbital
index, alpha block before beta block (PySCF's convention, the one the fermionic signs of the
Hamiltonian assume): the full [n_electrons, n_electrons] matrix with rows in increasing
spin-orbital order and columns (alpha orbitals, beta orbitals) is block diagonal, so its determinant
is the product of the two spin blocks.

Internally ``Phi0`` and the network output are stored with the alpha and beta columns side by side,
shape ``[n_determinants, n_orbitals, n_alpha + n_beta]``: columns ``[:n_alpha]`` are the alpha
orbitals, columns ``[n_alpha:]`` the beta orbitals.

Initialisation (integrals in the basis of the RHF molecular orbitals, where the Hartree-Fock
determinant fills the lowest orbitals of each spin):

* ``Phi0_d`` = identity columns (``Phi0^sigma[:, k] = e_k``) plus Gaussian noise of standard
  deviation ``init_scale``. With the identity alone every determinant other than Hartree-Fock would
  have amplitude exactly 0 (``log psi = -inf``), which breaks Metropolis sampling and local
  energies; the noise gives every determinant a finite amplitude of order ``init_scale**k``
  (``k`` = excitation level) while Hartree-Fock, of amplitude ~1, dominates.
* the network's last layer is Gaussian with standard deviation ``init_scale / sqrt(fan_in)``, so
  the backflow correction is of order ``init_scale`` too (not exactly zero, so that the hidden
  layers receive gradients from the first step); the biases are zero.
* ``c_0 = 1`` and ``c_d = init_scale`` for ``d > 0`` (the extra determinants start as small
  corrections).

The network is real (float64, or float32 under :func:`nqs.precision.with_dtype`; the orbital
matrices are cast to float64 before the determinants, so ``slogdet`` and the sum over
determinants are always float64): the sign of psi comes from the determinants and the ``c_d``, and
``log psi = log|psi| + i pi [psi < 0]`` is returned as a complex scalar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz
from nqs.errors import InputError
from nqs.hilbert import FermionHilbert

DEFAULT_HIDDEN: tuple[int, ...] = (64,)


def _phi0_init(
    n_orbitals: int, n_alpha: int, n_beta: int, scale: float
) -> Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]:
    """Initializer for ``Phi0`` [n_det, n_orbitals, n_alpha + n_beta]: identity columns + noise."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float64) -> jax.Array:
        eye_a = jnp.eye(n_orbitals, n_alpha, dtype=dtype)
        eye_b = jnp.eye(n_orbitals, n_beta, dtype=dtype)
        base = jnp.concatenate([eye_a, eye_b], axis=1)
        return base[None] + scale * jax.random.normal(key, shape, dtype)

    return init


def _coeff_init(scale: float) -> Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]:
    """Initializer for the determinant coefficients ``c`` [n_det]: ``c_0 = 1``, others ``scale``."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float64) -> jax.Array:
        del key
        return jnp.full(shape, scale, dtype).at[0].set(1.0)

    return init


#: Largest matrix order for which the determinants are computed by :func:`_lu_slogdet` (an
#: unrolled jnp LU) instead of LAPACK. Batched LAPACK LU custom calls running concurrently (alpha
#: and beta blocks) deadlocked XLA's CPU thread pool on 2-core machines; for the small spin blocks
#: of molecules in a minimal basis (n <= 7 here) plain fused jnp arithmetic is as fast anyway.
SMALL_DET_MAX = 12


def _lu_slogdet(m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sign, log|det|)`` of ONE small ``[n, n]`` matrix by LU with partial pivoting in jnp.

    Unrolled over the static order ``n`` (no LAPACK call, no while loop); the row choice is
    piecewise constant, so reverse-mode derivatives flow through the arithmetic only (the same
    derivative as ``jnp.linalg.slogdet`` wherever the determinant is non-zero). A singular matrix
    gives ``log|det| = -inf``.
    """
    n = m.shape[-1]
    rows = jnp.arange(n)
    sign = jnp.ones((), m.dtype)
    logabs = jnp.zeros((), m.dtype)
    a = m
    for k in range(n):
        # partial pivoting: the largest |entry| of column k among rows k..n-1
        col = jnp.where(rows >= k, jnp.abs(a[:, k]), -1.0)
        p = jnp.argmax(col)
        swap = p != k
        row_k, row_p = a[k], a[p]
        a = a.at[k].set(row_p).at[p].set(jnp.where(swap, row_k, row_p))
        sign = jnp.where(swap, -sign, sign)
        pivot = a[k, k]
        sign = sign * jnp.sign(pivot)
        logabs = logabs + jnp.log(jnp.abs(pivot))
        if k + 1 < n:
            # eliminate below the pivot; a zero pivot (singular) leaves the rest unused (-inf)
            safe = jnp.where(pivot == 0, 1.0, pivot)
            factors = a[k + 1 :, k] / safe
            a = a.at[k + 1 :, k:].add(-factors[:, None] * a[k, k:][None, :])
    return sign, logabs


def _slogdet(m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sign, log|det|)`` of a batch ``[..., n, n]``; a 0x0 matrix has determinant 1.

    Orders up to :data:`SMALL_DET_MAX` use the unrolled jnp LU (see there why), larger ones
    ``jnp.linalg.slogdet``.
    """
    n = m.shape[-1]
    batch = m.shape[:-2]
    if n == 0:
        return jnp.ones(batch, m.dtype), jnp.zeros(batch, m.dtype)
    if n <= SMALL_DET_MAX:
        flat = m.reshape((-1, n, n))
        sign, logabs = jax.vmap(_lu_slogdet)(flat)
        return sign.reshape(batch), logabs.reshape(batch)
    sign, logabs = jnp.linalg.slogdet(m)
    return sign, logabs


class Backflow(nn.Module):
    """Neural-network backflow multi-determinant wavefunction; ``apply(params, x)`` is log psi(x).

    Attributes:
      n_orbitals: number of spatial orbitals (``x`` has ``2 n_orbitals`` entries).
      n_alpha, n_beta: electrons of each spin.
      hidden: widths of the hidden layers of the backflow network (may be empty: then the
        correction is a configuration-independent constant, i.e. a plain multi-determinant).
      n_determinants: number of backflow determinants summed.
      init_scale: size of the initial perturbation of the Hartree-Fock orbitals, of the backflow
        correction and of the coefficients ``c_{d>0}`` (see the module docstring).
      activation: hidden-layer nonlinearity.
      param_dtype: dtype of all parameters (real).
    """

    n_orbitals: int
    n_alpha: int
    n_beta: int
    hidden: Sequence[int] = DEFAULT_HIDDEN
    n_determinants: int = 1
    init_scale: float = 0.05
    activation: Callable[[jax.Array], jax.Array] = jnp.tanh
    param_dtype: jnp.dtype = jnp.float64

    def setup(self) -> None:
        """Flax setup: the hidden layers of the backflow network and the orbital parameters."""
        n_cols = self.n_alpha + self.n_beta
        self.layers = [
            nn.Dense(w, param_dtype=self.param_dtype, name=f"hidden_{i}")
            for i, w in enumerate(self.hidden)
        ]
        fan_in = self.hidden[-1] if len(self.hidden) else 2 * self.n_orbitals
        self.out = nn.Dense(
            self.n_determinants * self.n_orbitals * n_cols,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.normal(self.init_scale / np.sqrt(max(fan_in, 1))),
            bias_init=nn.initializers.zeros,
            name="backflow_out",
        )
        self.phi0 = self.param(
            "phi0",
            _phi0_init(self.n_orbitals, self.n_alpha, self.n_beta, self.init_scale),
            (self.n_determinants, self.n_orbitals, n_cols),
            self.param_dtype,
        )
        self.coefficients = self.param(
            "coefficients", _coeff_init(self.init_scale), (self.n_determinants,), self.param_dtype
        )

    def orbitals(self, x: jax.Array) -> jax.Array:
        """Configuration-dependent orbitals ``Phi0 + NN(x)``, [n_det, n_orbitals, n_alpha + n_beta].

        Args:
          x: ``[2 n_orbitals]`` occupations (0/1), alpha block then beta block.
        """
        # centred input +-1, in the dtype of the parameters passed (float32 under
        # nqs.precision.with_dtype, whatever param_dtype the module was built with)
        h = 2.0 * jnp.asarray(x, self.phi0.dtype) - 1.0
        for layer in self.layers:
            h = self.activation(layer(h))
        correction = self.out(h).reshape(self.phi0.shape)
        return self.phi0 + correction

    def log_determinants(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(sign_d, log|psi_d(x)|)`` of each backflow determinant, both shape [n_det].

        Args:
          x: ``[2 n_orbitals]`` occupations (0/1), alpha block then beta block.
        """
        x = jnp.asarray(x)
        n = self.n_orbitals
        # the network may run in float32 (nqs.precision); the determinants and their
        # log-sum are always float64
        phi = self.orbitals(x).astype(jnp.float64)
        # occupied rows in increasing orbital order (static shapes for jit)
        occ_a = jnp.nonzero(x[:n] > 0.5, size=self.n_alpha, fill_value=0)[0]
        occ_b = jnp.nonzero(x[n:] > 0.5, size=self.n_beta, fill_value=0)[0]
        mat_a = phi[:, occ_a, : self.n_alpha]  # [n_det, n_alpha, n_alpha]
        mat_b = phi[:, occ_b, self.n_alpha :]  # [n_det, n_beta, n_beta]
        sign_a, log_a = _slogdet(mat_a)
        sign_b, log_b = _slogdet(mat_b)
        return sign_a * sign_b, log_a + log_b

    def __call__(self, x: jax.Array) -> jax.Array:
        """Complex log psi(x) of one configuration ``x`` [2 n_orbitals] (a scalar).

        ``log psi = log|psi| + i pi [psi < 0]``, with ``psi = sum_d c_d psi_d`` summed stably from
        the log-determinants; a configuration where psi vanishes exactly gives ``-inf``.
        """
        sign, logabs = self.log_determinants(x)
        shift = jax.lax.stop_gradient(jnp.max(logabs))
        shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
        coefficients = self.coefficients.astype(jnp.float64)
        total = jnp.sum(coefficients * sign * jnp.exp(logabs - shift))
        log_abs = jnp.log(jnp.abs(total)) + shift
        phase = jnp.where(total < 0, jnp.pi, 0.0)
        return jax.lax.complex(log_abs, phase)


def make_backflow(
    hilbert: FermionHilbert,
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    n_determinants: int = 1,
    init_scale: float = 0.05,
) -> Ansatz:
    """Backflow ansatz for ``hilbert`` (no fast local updates: each amplitude is a full evaluation).

    Args:
      hilbert: the spin-orbital space (``n_orbitals``, ``n_alpha``, ``n_beta``).
      hidden: hidden-layer widths of the backflow network.
      n_determinants: number of determinants summed.
      init_scale: initial perturbation size around the Hartree-Fock determinant (> 0).
    """
    if not isinstance(hilbert, FermionHilbert):
        raise InputError(
            "the backflow ansatz needs a fermionic (spin-orbital) space, "
            f"got {type(hilbert).__name__}"
        )
    hidden = tuple(int(w) for w in hidden)
    if any(w <= 0 for w in hidden):
        raise InputError(f"hidden-layer widths must be positive, got {hidden}")
    if n_determinants < 1:
        raise InputError(f"the number of determinants must be at least 1, got {n_determinants}")
    if not init_scale > 0:
        raise InputError(f"the initial perturbation scale must be positive, got {init_scale}")
    module = Backflow(
        n_orbitals=hilbert.n_orbitals,
        n_alpha=hilbert.n_alpha,
        n_beta=hilbert.n_beta,
        hidden=hidden,
        n_determinants=int(n_determinants),
        init_scale=float(init_scale),
    )
    return Ansatz(module)
