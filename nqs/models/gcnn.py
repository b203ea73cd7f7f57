"""Group-convolutional neural network (GCNN, Roth & MacDonald 2021) over a lattice's symmetries.

The network acts on one configuration ``x [n_sites]`` and a symmetry group given as site
permutations ``perm [G, n_sites]`` (translations, or the space group: translations times point
group, see :meth:`hamiltonians.lattice.Lattice.space_group`). With ``(x . g)[i] = x[perm_g[i]]``
and ``g h`` the element with ``perm_{gh} = perm_g[perm_h]``:

* embedding: ``h1[g, f] = b_f + sum_i W[i, f] x[perm_g[i]]`` (``[G, F_1]``);
* group convolutions: ``h_{l+1}[g, f] = b_f + sum_{m, c} K_l[m, c, f] sigma(h_l)[g m, c]``;
* output: ``log psi(x) = log sum_g exp(sum_f h_L[g, f])``.

Every layer is equivariant, ``h(x . k)[g] = h(x)[k g]``, so the sum over ``g`` makes ``log psi``
invariant under the whole group (the trivial irrep; other irreps and spin-flip parity by the
projection wrapper :mod:`nqs.models.symmetry`). ``sigma`` is the SELU applied to the real and
imaginary parts separately (complex parameters, NetKet's choice), or the SELU (real parameters:
a positive wavefunction, for sign-free problems such as the Heisenberg model with the Marshall
sign). Each layer is one dense product with a parameter-only expansion of its kernel
(``[n_sites, G F]`` for the embedding, ``[G C, G F]`` for a convolution), built once per batch:
``G^2 C F`` multiply-adds per configuration and per layer, no per-configuration gathers (slow
on CPUs). A complex convolution over a space group (``g = t p``: translations times point
group) goes through the translations' characters instead (:func:`fourier_tables`): every
``[T, T]`` block of the expanded kernel is a convolution over the abelian ``T``, so ``h`` is
transformed to ``T``'s Fourier space, multiplied by one ``[n_p C, n_p F]`` matrix per
character and transformed back, ``2 T^2 n_p (C + F) + T n_p^2 C F`` multiply-adds. A real
convolution over a space group does the same in real arithmetic (:func:`real_fourier_tables`):
the Fourier coefficients of a real ``h`` at conjugate characters are conjugate, so one real
``[T, T]`` transform holds them all, a real ``[n_p C, n_p F]`` block multiplies each real
character's and a ``[2 n_p C, 2 n_p F]`` block (a complex product in real arithmetic) each
conjugate pair's: about ``2 T^2 n_p (C + F) + 2 T n_p^2 C F`` real multiply-adds against the
dense ``T^2 n_p^2 C F``.

Use :func:`make_gcnn`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nqs.ansatz import Ansatz
from nqs.errors import InputError
from nqs.parallel import chunked_map

Symmetries = tuple[tuple[int, ...], ...]


def check_permutations(perms: Any) -> np.ndarray:
    """``perms`` as int64 ``[G, n_sites]``; InputError unless every row permutes the sites."""
    arr = np.asarray(perms, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InputError(f"symmetries must be a 2-d array [n_g, n_sites], got shape {arr.shape}")
    ref = np.arange(arr.shape[1])
    for row in arr:
        if not np.array_equal(np.sort(row), ref):
            raise InputError(f"symmetry {row.tolist()} is not a permutation of the sites")
    return arr


@functools.lru_cache(maxsize=32)
def group_tables(symmetries: Symmetries) -> tuple[np.ndarray, np.ndarray]:
    """``(product [G, G], inverse [G])`` of a permutation group (int32).

    ``perm[product[a, b]] = perm[a][perm[b]]`` and ``perm[inverse[a]] = argsort(perm[a])``.
    Raises InputError when the permutations are not closed under composition and inverse.
    """
    perms = np.asarray(symmetries, dtype=np.int64)
    index = {row.tobytes(): g for g, row in enumerate(perms)}
    if len(index) != len(perms):
        raise InputError("the symmetries contain the same permutation twice")
    n_g = len(perms)
    composed = perms[:, perms]  # [a, b, i] = perm_a[perm_b[i]]
    product = np.empty((n_g, n_g), dtype=np.int32)
    inverse = np.empty(n_g, dtype=np.int32)
    try:
        for a in range(n_g):
            for b in range(n_g):
                product[a, b] = index[composed[a, b].tobytes()]
            inverse[a] = index[np.argsort(perms[a]).astype(np.int64).tobytes()]
    except KeyError:
        raise InputError("the symmetries are not a group (not closed under composition)") from None
    return product, inverse


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(z: jax.Array) -> jax.Array:
    """``jax.nn.selu`` with ``exp(z) - 1`` on the negative side instead of ``expm1``: XLA's CPU
    ``expm1`` is not vectorized, and the activation took 40% of the 4x4 space-group GCNN's
    forward pass (512 configurations: 3.2 ms -> 2.5 ms). Same values to 5e-16 absolute (the
    relative accuracy of ``expm1`` near 0 does not matter beside the layer's O(1) terms), same
    derivative (``1`` for ``z > 0``, ``alpha exp(z)`` at and below 0)."""
    negative = jnp.where(z > 0, jnp.zeros_like(z), z)  # exp never sees the positive side
    return _SELU_SCALE * jnp.where(z > 0, z, _SELU_ALPHA * (jnp.exp(negative) - 1))


def reim_selu(z: jax.Array) -> jax.Array:
    """SELU of the real and imaginary parts separately (plain SELU for real ``z``)."""
    if jnp.iscomplexobj(z):
        return selu(z.real) + 1j * selu(z.imag)
    return selu(z)


class GCNN(nn.Module):
    """Group-convolutional network; ``log psi`` of one configuration ``x [n_sites]``.

    Attributes:
      symmetries: ``[G][n_sites]`` permutations forming a group, identity included
        (``tuple(map(tuple, array))``).
      features: channels per layer, ``(F_1, ..., F_L)``: one embedding and ``L - 1`` group
        convolutions.
      param_dtype: ``jnp.complex128`` (default) or ``jnp.float64`` (real, positive psi).
      fourier_kernels: hold the kernels in the translations' Fourier basis where
        :func:`kernel_basis` allows (False: always in the group basis).

    Parameters: ``embed_kernel [n_sites, F_1]``, ``embed_bias [F_1]``, and per convolution
    ``conv{l}_kernel [G, F_l, F_{l+1}]``, ``conv{l}_bias [F_{l+1}]`` (LeCun-normal kernels,
    zero biases). Over a space group (:func:`kernel_basis`) the kernel is held in the
    translations' Fourier basis instead, ``conv{l}_kernel_hat`` (same shape; the kernel is
    :func:`kernel_from_hat` of it): the same functions and, the basis being orthonormal, the
    same SR updates, with per-sample kernel gradients at a fraction of the cost.
    """

    symmetries: Symmetries
    features: tuple[int, ...] = (4, 4)
    param_dtype: Any = jnp.complex128
    fourier_kernels: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Complex ``log psi`` of one configuration ``x [n_sites]`` (a scalar)."""
        perms = np.asarray(self.symmetries, dtype=np.int32)
        n_g, n_sites = perms.shape
        if x.shape != (n_sites,):
            raise InputError(f"GCNN takes one configuration [{n_sites}], got shape {x.shape}")
        init = nn.initializers.lecun_normal(dtype=self.param_dtype)
        zeros = nn.initializers.zeros_init()
        f0 = self.features[0]
        w0 = self.param("embed_kernel", init, (n_sites, f0), self.param_dtype)
        b0 = self.param("embed_bias", zeros, (f0,), self.param_dtype)
        h = _embed(x.astype(w0.dtype), w0, self.symmetries) + b0  # [G, F_1]
        complex_params = bool(jnp.issubdtype(self.param_dtype, jnp.complexfloating))
        hat = kernel_basis(self.symmetries, complex_params) if self.fourier_kernels else None
        for layer, f in enumerate(self.features[1:]):
            c = h.shape[-1]
            # the same LeCun-normal law in either basis (the Fourier basis is orthonormal)
            name = f"conv{layer}_kernel" + ("_hat" if hat is not None else "")
            kernel = self.param(name, init, (n_g, c, f), self.param_dtype)
            bias = self.param(f"conv{layer}_bias", zeros, (f,), self.param_dtype)
            convolve = _convolve_hat if hat is not None else _convolve
            h = convolve(reim_selu(h), kernel, self.symmetries) + bias
        out = jnp.sum(h, axis=-1)  # [G]
        if jnp.iscomplexobj(out):
            return _complex_logsumexp(out)
        out = jax.nn.logsumexp(out)
        return out.astype(jnp.complex128 if out.dtype == jnp.float64 else jnp.complex64)


@functools.lru_cache(maxsize=32)
def _layer_tables(symmetries: Symmetries) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(perms [G, N], site_index [N, G], product [G, G], kernel_index [G, G])`` (int32):
    ``site_index[j, g] = perm_g^-1(j)``, ``kernel_index[g, k]`` = index of ``g^-1 k``."""
    perms = np.asarray(symmetries, dtype=np.int32)
    product, inverse = group_tables(symmetries)
    site_index = np.argsort(perms, axis=1).T.astype(np.int32)
    return perms, site_index, product, product[inverse].astype(np.int32)


# Each layer is a dense product with a parameter-only expansion of its kernel, built once per
# batch under vmap; the custom VJPs give the per-configuration parameter gradients from a
# gather of the layer's (small) input instead of the scatter-add that autodiff would run on
# the expanded kernel's cotangent ([G C, G F] per configuration: 10x slower Jacobians).


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _embed(x: jax.Array, w0: jax.Array, symmetries: Symmetries) -> jax.Array:
    """``h[g, f] = sum_i x[perm_g[i]] w0[i, f]`` for one ``x [N]``: ``[G, F]``."""
    _, site_index, _, _ = _layer_tables(symmetries)
    n_sites, n_g = site_index.shape
    return (x @ w0[site_index].reshape(n_sites, -1)).reshape(n_g, -1)


def _embed_fwd(x, w0, symmetries):
    return _embed(x, w0, symmetries), (x, w0)


def _embed_bwd(symmetries, res, g):
    x, w0 = res
    perms, site_index, _, _ = _layer_tables(symmetries)
    n_sites, n_g = site_index.shape
    dx = w0[site_index].reshape(n_sites, -1) @ g.reshape(-1)
    dw0 = x[perms].T @ g  # [N, F]
    return (dx.real if not jnp.iscomplexobj(x) else dx).astype(x.dtype), dw0


_embed.defvjp(_embed_fwd, _embed_bwd)


def _expanded_kernel(kernel: jax.Array, kernel_index: np.ndarray) -> jax.Array:
    """``full[(k, c), (g, f)] = kernel[g^-1 k, c, f]``, ``[G C, G F]``."""
    n_g, c, f = kernel.shape
    full = kernel[kernel_index]  # [g, k, c, f]
    return jnp.transpose(full, (1, 2, 0, 3)).reshape(n_g * c, n_g * f)


@functools.lru_cache(maxsize=32)
def fourier_tables(symmetries: Symmetries) -> tuple[int, np.ndarray, np.ndarray] | None:
    """``(n_p, chars [T, T], kernel_at [n_p, T, n_p])`` when the group factors as ``g = t p``
    with ``g = t n_p + p``, ``t`` in an abelian normal subgroup ``T`` (the translations) and
    ``p`` in ``n_p`` coset representatives (the point group): the order of
    :meth:`hamiltonians.lattice.Lattice.space_group` and ``translations``. Else (and for a
    trivial ``T``) None.

    Then every ``[T, T]`` block ``(p, p')`` of a group convolution is a convolution over ``T``,
    ``kernel_index[t p, t' p'] = kernel_at[p, t^-1 t', p']``, diagonal in ``T``'s characters
    ``chars[j, t] = chi_j(t)`` (from the regular representation; tested multiplicative)."""
    product, inverse = group_tables(symmetries)
    kernel_index = product[inverse]
    n_g = len(product)
    for n_p in range(1, n_g + 1):
        if n_g % n_p:
            continue
        n_t = n_g // n_p
        t_index = np.arange(n_t) * n_p
        t_product = product[np.ix_(t_index, t_index)]
        if np.any(t_product % n_p) or not np.array_equal(t_product, t_product.T):
            continue  # not an abelian subgroup in this order
        t_product = t_product // n_p
        if not np.array_equal(product[np.ix_(t_index, np.arange(n_p))],
                              t_index[:, None] + np.arange(n_p)[None, :]):
            continue  # g is not t p in the order t n_p + p
        t_inverse = np.argmax(t_product == 0, axis=1)
        kernel_at = kernel_index[:n_p].reshape(n_p, n_t, n_p)  # [p, s, p'] = index of p^-1 s p'
        relative = t_product[t_inverse[:, None], np.arange(n_t)[None, :]]  # [t, t'] = t^-1 t'
        if not np.array_equal(kernel_index.reshape(n_t, n_p, n_t, n_p),
                              _blocks(kernel_at, relative)):
            continue
        chars = _characters(t_product)
        if chars is None or n_t == 1:
            return None
        return n_p, chars, kernel_at.astype(np.int32)
    return None


def _blocks(kernel_at: np.ndarray, relative: np.ndarray) -> np.ndarray:
    """``[t, p, t', p'] = kernel_at[p, relative[t, t'], p']``."""
    return np.transpose(kernel_at[:, relative, :], (1, 0, 2, 3))


def _characters(t_product: np.ndarray) -> np.ndarray | None:
    """The characters ``chi_j(t)`` ``[T, T]`` of the abelian group with product table
    ``t_product`` (identity 0): eigenvectors of a random combination of its regular
    representation, whose eigenvectors are the conjugate characters. None when they do not
    come out multiplicative (degenerate eigenvalues)."""
    n_t = len(t_product)
    coeff = np.random.default_rng(0).normal(size=n_t) + 1j * np.random.default_rng(1).normal(
        size=n_t)
    mat = np.zeros((n_t, n_t), dtype=np.complex128)
    for a in range(n_t):
        mat[t_product[a], np.arange(n_t)] += coeff[a]  # (R_a x)(a b) = x(b)
    _, vecs = np.linalg.eig(mat)
    chars = np.conj(vecs / vecs[0:1, :]).T  # [j, t]
    ok = np.allclose(chars[:, t_product], chars[:, :, None] * chars[:, None, :], atol=1e-8)
    if not ok or not np.allclose(chars @ chars.conj().T, n_t * np.eye(n_t), atol=1e-8):
        return None
    return chars


def _as(table: np.ndarray, like: jax.Array) -> jax.Array:
    """A constant table (characters, transforms) in the precision of the operand ``like``: a
    float64 table would promote a float32 network's layer (``--dtype float32``) to float64."""
    real = jnp.finfo(like.dtype).dtype  # float32 or float64, for real and complex operands
    return jnp.asarray(table, jnp.result_type(real, jnp.complex64)
                       if jnp.iscomplexobj(table) else real)


def _kernel_hat(kernel: jax.Array, tables: tuple[int, np.ndarray, np.ndarray]) -> jax.Array:
    """``w_hat[j, (p', c), (p, f)] = sum_s chi_j(s) kernel[p^-1 s p', c, f]``."""
    n_p, chars, kernel_at = tables
    c, f = kernel.shape[1], kernel.shape[2]
    w = kernel[kernel_at]  # [p, s, p', c, f]
    return jnp.einsum("js,psqcf->jqcpf", _as(chars, w), w).reshape(len(chars), n_p * c,
                                                                  n_p * f)


def _fourier_convolve(h: jax.Array, kernel: jax.Array,
                      tables: tuple[int, np.ndarray, np.ndarray]) -> jax.Array:
    """The group convolution of one ``h [G, C]`` through ``T``'s characters: ``h`` to
    ``T``-Fourier space (``[T, n_p C]``), one ``[n_p C, n_p F]`` product per character, back:
    ``2 T^2 n_p (C + F) + T n_p^2 C F`` multiply-adds instead of ``G^2 C F``."""
    n_p, chars, _ = tables
    n_t = chars.shape[0]
    f = kernel.shape[2]
    w_hat = _kernel_hat(kernel, tables)
    h_hat = _as(np.conj(chars), h) @ h.reshape(n_t, -1)  # [j, (p', c)]
    out_hat = jnp.einsum("jq,jqr->jr", h_hat, w_hat)
    out = (_as(chars.T / n_t, out_hat) @ out_hat)  # [t, (p, f)]; complex layers only
    return out.reshape(n_t * n_p, f)


def _fourier_path(symmetries: Symmetries, kernel: jax.Array
                  ) -> tuple[int, np.ndarray, np.ndarray] | None:
    """:func:`fourier_tables` where they pay: complex layers over a space group. Over the
    translations alone the dense product is as fast (complex, 4x4: 0.9-1.0x); over space
    groups it is not (complex: 2.1x faster on the square 4x4, 2.9x on the triangular)."""
    tables = fourier_tables(symmetries) if jnp.iscomplexobj(kernel) else None
    return tables if tables is not None and tables[0] > 1 else None


class RealFourier(NamedTuple):
    """Tables of a real group convolution through the translations' characters.

    With ``T`` translations, ``n_real`` real characters (``chi = chi*``) and ``n_pair`` pairs of
    conjugate ones (``n_real + 2 n_pair = T``), each pair represented by one of its characters:

    * ``forward [T, T]``: rows ``chi_j`` (real ``j``), ``Re chi_j`` and ``-Im chi_j`` (pairs), so
      that ``forward @ h`` holds the real and imaginary parts of ``sum_t chi_j(t)* h[t]``;
    * ``inverse [T, T]``: its inverse, ``h[t] = sum_j chi_j(t) h_hat[j] / T`` written with one
      character of each pair (weight 2, real part);
    * ``chars_re [n_real + n_pair, T]``, ``chars_im [n_pair, T]``: the characters the kernel's
      blocks are built from (real ones first);
    * ``n_p``, ``kernel_at`` as in :func:`fourier_tables`;
    * ``rows [n_real + n_pair]``: the row of :func:`fourier_tables`' ``chars`` of each real
      character and each pair's representative.
    """

    n_p: int
    forward: np.ndarray
    inverse: np.ndarray
    chars_re: np.ndarray
    chars_im: np.ndarray
    kernel_at: np.ndarray
    n_real: int
    rows: np.ndarray


@functools.lru_cache(maxsize=32)
def real_fourier_tables(symmetries: Symmetries) -> RealFourier | None:
    """:class:`RealFourier` of a space group (``n_p > 1``, as :func:`fourier_tables`), else
    None."""
    tables = fourier_tables(symmetries)
    if tables is None or tables[0] == 1:
        return None
    n_p, chars, kernel_at = tables
    n_t = len(chars)
    # the conjugate of a character is another character (rows are distinct): find its row
    distance = np.abs(chars[:, None, :] - np.conj(chars)[None, :, :]).sum(-1)  # [j, k]
    conjugate = np.argmin(distance, axis=0)  # conjugate[k]: row of chi_k*
    if not np.allclose(chars[conjugate], np.conj(chars), atol=1e-8):
        return None
    real = np.flatnonzero(conjugate == np.arange(n_t))
    pairs = np.flatnonzero(conjugate > np.arange(n_t))
    forward = np.concatenate([chars[real].real, chars[pairs].real, -chars[pairs].imag])
    inverse = np.concatenate([chars[real].real, 2 * chars[pairs].real,
                              -2 * chars[pairs].imag]).T / n_t
    if not np.allclose(inverse @ forward, np.eye(n_t), atol=1e-10):
        return None
    rows = np.concatenate([real, pairs])
    return RealFourier(n_p, forward, inverse, chars[rows].real, chars[pairs].imag, kernel_at,
                       len(real), rows)


def _real_kernel_blocks(kernel: jax.Array, tables: RealFourier) -> tuple[jax.Array, jax.Array]:
    """``(w_real [n_real, n_p C, n_p F], w_pair [n_pair, 2 n_p C, 2 n_p F])``: the kernel's
    Fourier blocks ``w_hat[j] = sum_s chi_j(s) kernel[p^-1 s p']`` of the real characters, and
    of each pair's character as the real matrix ``[[Re, Im], [-Im, Re]]`` (row vector
    ``[a, b]`` times it is ``(a + ib) w_hat`` as ``[Re, Im]``)."""
    n_p, c, f = tables.n_p, kernel.shape[1], kernel.shape[2]
    w = kernel[tables.kernel_at]  # [p, s, p', c, f]

    def hat(chars: np.ndarray) -> jax.Array:
        return jnp.einsum("js,psqcf->jqcpf", _as(chars, w), w).reshape(
            len(chars), n_p * c, n_p * f)

    w_re, w_im = hat(tables.chars_re), hat(tables.chars_im)
    a = w_re[tables.n_real:]
    w_pair = jnp.concatenate([jnp.concatenate([a, w_im], 2),
                              jnp.concatenate([-w_im, a], 2)], 1)
    return w_re[:tables.n_real], w_pair


def _real_blocks_apply(v: jax.Array, w_real: jax.Array, w_pair: jax.Array, n_real: int,
                       transpose: bool) -> jax.Array:
    """The block-diagonal product of ``v [T, k]`` in :class:`RealFourier`'s row order (real
    characters, then the pairs' real parts, then their imaginary parts); ``transpose``: with
    the transposed blocks (the backward pass)."""
    spec = "jr,jqr->jq" if transpose else "jq,jqr->jr"
    n_pair = w_pair.shape[0]
    out_real = jnp.einsum(spec, v[:n_real], w_real)
    pair_in = jnp.concatenate([v[n_real:n_real + n_pair], v[n_real + n_pair:]], axis=1)
    out_pair = jnp.einsum(spec, pair_in, w_pair)  # [n_pair, 2 k']
    half = out_pair.shape[1] // 2
    return jnp.concatenate([out_real, out_pair[:, :half], out_pair[:, half:]], axis=0)


def _real_fourier_convolve(h: jax.Array, kernel: jax.Array, tables: RealFourier) -> jax.Array:
    """The real group convolution of one ``h [G, C]`` through :class:`RealFourier`."""
    n_t = tables.forward.shape[0]
    h_hat = _as(tables.forward, h) @ h.reshape(n_t, -1)  # [T, n_p C]
    out_hat = _real_blocks_apply(h_hat, *_real_kernel_blocks(kernel, tables), tables.n_real,
                                 transpose=False)
    return (_as(tables.inverse, out_hat) @ out_hat).reshape(h.shape[0], kernel.shape[2])


def _real_fourier_path(symmetries: Symmetries, kernel: jax.Array) -> RealFourier | None:
    """:func:`real_fourier_tables` for real layers: over the 4x4 square space group 2.6-4.4x
    the dense speed at 32 configurations (the sampler's batch), as fast at 8704 (local
    energies); larger groups gain more (the dense product grows as ``G^2``)."""
    return None if jnp.iscomplexobj(kernel) else real_fourier_tables(symmetries)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _convolve(h: jax.Array, kernel: jax.Array, symmetries: Symmetries) -> jax.Array:
    """``out[g, f] = sum_{m, c} kernel[m, c, f] h[g m, c]`` for one ``h [G, C]``: ``[G, F]``
    (through the translations' characters when the group factors, :func:`fourier_tables`,
    :func:`real_fourier_tables`)."""
    return _convolve_primal(h, kernel, symmetries)


def _convolve_primal(h: jax.Array, kernel: jax.Array, symmetries: Symmetries) -> jax.Array:
    """The body of :func:`_convolve` (and of :func:`_convolve_hat`)."""
    tables = _fourier_path(symmetries, kernel)
    if tables is not None:
        return _fourier_convolve(h, kernel, tables)
    real_tables = _real_fourier_path(symmetries, kernel)
    if real_tables is not None:
        return _real_fourier_convolve(h, kernel, real_tables)
    _, _, _, kernel_index = _layer_tables(symmetries)
    n_g = h.shape[0]
    return (h.reshape(-1) @ _expanded_kernel(kernel, kernel_index)).reshape(n_g, -1)


def _convolve_fwd(h, kernel, symmetries):
    return _convolve(h, kernel, symmetries), (h, kernel)


def _convolve_bwd(symmetries, res, g):
    h, kernel = res
    product = _layer_tables(symmetries)[2]
    return _input_gradient(h, kernel, g, symmetries), _kernel_gradient(h, g, product)


def _input_gradient(h: jax.Array, kernel: jax.Array, g: jax.Array,
                    symmetries: Symmetries) -> jax.Array:
    """The cotangent of a convolution's input ``h [G, C]`` from that of its output
    ``g [G, F]`` (the transpose of :func:`_convolve_primal` in ``h``)."""
    kernel_index = _layer_tables(symmetries)[3]
    tables = _fourier_path(symmetries, kernel)
    if tables is not None:  # the transpose of the forward's three linear maps
        chars = tables[1]
        g_hat = _as(chars / len(chars), g) @ g.reshape(len(chars), -1)  # [j, (p, f)]
        dh_hat = jnp.einsum("jqr,jr->jq", _kernel_hat(kernel, tables), g_hat)
        dh = (_as(np.conj(chars).T, dh_hat) @ dh_hat).reshape(h.shape)
    elif (real_tables := _real_fourier_path(symmetries, kernel)) is not None:
        g_hat = _as(real_tables.inverse.T, g) @ g.reshape(real_tables.forward.shape[0], -1)
        dh_hat = _real_blocks_apply(g_hat, *_real_kernel_blocks(kernel, real_tables),
                                    real_tables.n_real, transpose=True)
        dh = (_as(real_tables.forward.T, dh_hat) @ dh_hat).reshape(h.shape)
    else:
        dh = (_expanded_kernel(kernel, kernel_index) @ g.reshape(-1)).reshape(h.shape)
    return dh


_convolve.defvjp(_convolve_fwd, _convolve_bwd)


class KernelBasis(NamedTuple):
    """The translations' Fourier basis of a space group's convolution kernels.

    With ``g = t p`` (:func:`fourier_tables`) and the point group ``P`` a subgroup, a kernel
    ``K[(s, q), c, f]`` (``s`` a translation, ``q`` a point-group element) is held as
    ``K_hat[(j, q), c, f]``, ``K = B K_hat`` along ``s``, ``B [T, T]`` orthonormal:
    ``chi_j(s)* / sqrt(T)`` for complex kernels; for real ones the rows of
    :class:`RealFourier`'s ``forward`` scaled to unit norm (``B`` is their transpose). Then the
    gradient of one configuration in ``K_hat`` is ``B^T dK`` with

        (B^T dK)[j, q] ~ D_q[j] = sum_p A_{p q}[sigma_p(j)] B_p[sigma_p(j)],

    ``A`` the character transform of the layer's input (``sum_t chi_k(t)* h[(t, r)]``), ``B``
    that of the output's cotangent (``sum_t chi_k(t) g[(t, p)]``) and ``sigma_p`` the
    permutation of the characters by the point group, ``chi_{sigma_p(j)}(u) =
    chi_j(p^-1 u p)``: ``T n_p^2 C F`` products instead of the ``G^2 C F`` of the gathered
    dense gradient, and no ``[G, G, C]`` gather per configuration.

    Fields: ``chars [T, T]``, ``sigma [n_p, T]``, ``point_product [n_p, n_p]`` (index of ``p
    q``), ``to_kernel [T, T]`` (``B``, complex for complex kernels), ``rows [R]`` (the
    characters whose ``D`` the kernel needs: all, or for a real kernel the real ones and one
    of each conjugate pair) and ``n_real``.
    """

    chars: np.ndarray
    sigma: np.ndarray
    point_product: np.ndarray
    to_kernel: np.ndarray
    rows: np.ndarray
    n_real: int


@functools.lru_cache(maxsize=64)
def kernel_basis(symmetries: Symmetries, complex_kernel: bool) -> KernelBasis | None:
    """:class:`KernelBasis` of a space group whose layers go through the translations'
    characters (:func:`fourier_tables` with ``n_p > 1``; for real kernels also
    :func:`real_fourier_tables`) and whose point group is a subgroup; else None (the kernel
    stays in the group basis)."""
    tables = fourier_tables(symmetries)
    if tables is None or tables[0] == 1:
        return None
    n_p, chars, _ = tables
    product, inverse = group_tables(symmetries)
    n_t = len(chars)
    point_product = product[:n_p, :n_p]
    if np.any(point_product >= n_p):
        return None  # the coset representatives are not a group
    # p^-1 u p for every point p and translation u (T is normal: again a translation)
    left = product[inverse[:n_p]][:, np.arange(n_t) * n_p]  # [p, u]: index of p^-1 u
    conjugated = product[left, np.arange(n_p)[:, None]]
    if np.any(conjugated % n_p):
        return None
    conjugated //= n_p
    sigma = np.empty((n_p, n_t), dtype=np.int32)
    for p in range(n_p):
        moved = chars[:, conjugated[p]]  # [j, u] = chi_j(p^-1 u p)
        match = np.abs(moved[:, None, :] - chars[None, :, :]).max(-1) < 1e-8  # [j, k]
        if not np.all(match.sum(1) == 1):
            return None
        sigma[p] = np.argmax(match, axis=1)
    if complex_kernel:
        return KernelBasis(chars, sigma, point_product.astype(np.int32),
                           np.conj(chars).T / np.sqrt(n_t), np.arange(n_t), n_t)
    real = real_fourier_tables(symmetries)
    if real is None:
        return None
    norms = np.sqrt(np.sum(real.forward**2, axis=1, keepdims=True))
    return KernelBasis(chars, sigma, point_product.astype(np.int32), (real.forward / norms).T,
                       real.rows, real.n_real)


def kernel_from_hat(kernel_hat: jax.Array, symmetries: Symmetries) -> jax.Array:
    """The group-basis kernel ``[G, C, F]`` of a Fourier-basis ``kernel_hat [G, C, F]``
    (:class:`KernelBasis`)."""
    basis = kernel_basis(symmetries, bool(jnp.iscomplexobj(kernel_hat)))
    n_t = basis.chars.shape[0]
    return (_as(basis.to_kernel, kernel_hat) @ kernel_hat.reshape(n_t, -1)).reshape(
        kernel_hat.shape)


def _kernel_hat_gradient(h: jax.Array, g: jax.Array, basis: KernelBasis, real: bool
                         ) -> jax.Array:
    """The cotangent of ``kernel_hat`` ``[G, C, F]`` of one configuration (:class:`KernelBasis`):
    layer input ``h [G, C]``, output cotangent ``g [G, F]``."""
    n_t = basis.chars.shape[0]
    n_p = basis.point_product.shape[0]
    chars = _as(basis.chars, h)
    a = (jnp.conj(chars) @ h.reshape(n_t, -1)).reshape(n_t, n_p, -1)  # [k, r, c]
    b = (chars @ g.reshape(n_t, -1)).reshape(n_t, n_p, -1)  # [k, p, f]
    sigma = basis.sigma[:, basis.rows]  # [p, j]
    a_moved = a[sigma[:, :, None], basis.point_product[:, None, :]]  # [p, j, q, c]
    b_moved = b[sigma, np.arange(n_p)[:, None]]  # [p, j, f]
    d = jnp.sum(a_moved[..., None] * b_moved[:, :, None, None, :], axis=0) / np.sqrt(n_t)
    if real:  # the unit rows of RealFourier's forward: chi_j, sqrt(2) Re chi_j, -sqrt(2) Im chi_j
        pair = np.sqrt(2.0) * d[basis.n_real:]
        d = jnp.concatenate([d[:basis.n_real].real, pair.real, pair.imag])
    return d.reshape(h.shape[0], h.shape[1], g.shape[1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _convolve_hat(h: jax.Array, kernel_hat: jax.Array, symmetries: Symmetries) -> jax.Array:
    """:func:`_convolve` with the kernel in the Fourier basis (:class:`KernelBasis`)."""
    return _convolve_primal(h, kernel_from_hat(kernel_hat, symmetries), symmetries)


def _convolve_hat_fwd(h, kernel_hat, symmetries):
    kernel = kernel_from_hat(kernel_hat, symmetries)
    return _convolve_primal(h, kernel, symmetries), (h, kernel)


def _convolve_hat_bwd(symmetries, res, g):
    h, kernel = res
    real = not jnp.iscomplexobj(kernel)
    basis = kernel_basis(symmetries, not real)
    return (_input_gradient(h, kernel, g, symmetries),
            _kernel_hat_gradient(h, g, basis, real).astype(kernel.dtype))


_convolve_hat.defvjp(_convolve_hat_fwd, _convolve_hat_bwd)

# Per-configuration kernel gradients are taken a few configurations at a time: vmapped over a
# whole batch, XLA's CPU backend runs the [G, G C] x [G, F] contraction as a batched product
# of tiny matrices, 2-3x slower (4x4 space group, 512 configurations: 118 ms against 40 ms).
_KERNEL_GRADIENT_BLOCK = 16


def _kernel_gradient_one(h: jax.Array, g: jax.Array, product: np.ndarray) -> jax.Array:
    """``dkernel[m, c, f] = sum_g h[g m, c] g[g, f]`` of one configuration: ``[G, C, F]``."""
    return jnp.einsum("gmc,gf->mcf", h[product], g)


def _kernel_gradient(h: jax.Array, g: jax.Array, product: np.ndarray) -> jax.Array:
    """:func:`_kernel_gradient_one`, batched (under vmap) in blocks of
    ``_KERNEL_GRADIENT_BLOCK`` configurations."""

    @jax.custom_batching.custom_vmap
    def gradient(h: jax.Array, g: jax.Array) -> jax.Array:
        return _kernel_gradient_one(h, g, product)

    @gradient.def_vmap
    def gradient_batched(axis_size: int, in_batched: list[bool], h: jax.Array, g: jax.Array):
        h, g = (x if batched else jnp.broadcast_to(x, (axis_size,) + x.shape)
                for x, batched in zip((h, g), in_batched, strict=True))
        one = chunked_map(lambda _, hg: _kernel_gradient_one(*hg, product),
                          _KERNEL_GRADIENT_BLOCK)
        return one(None, (h, g)), True

    return gradient(h, g)


def _complex_logsumexp(z: jax.Array) -> jax.Array:
    """``log sum exp(z)`` of complex ``z [G]``, stable in the real part."""
    m = jax.lax.stop_gradient(jnp.max(z.real))
    return m + jnp.log(jnp.sum(jnp.exp(z - m)))


def make_gcnn(
    symmetries: Any,
    features: tuple[int, ...] | int = (4, 4),
    *,
    layers: int | None = None,
    param_dtype: Any = jnp.complex128,
    fourier_kernels: bool = True,
) -> Ansatz:
    """A :class:`GCNN` ansatz (generic path: no cached ratios).

    Args:
      symmetries: int ``[G, n_sites]`` permutations forming a group (e.g.
        ``lattice.space_group()``).
      features: channels per layer; an int with ``layers`` means ``(features,) * layers``.
      layers: number of layers when ``features`` is an int.
      param_dtype: complex128 (any sign structure) or float64 (positive psi).
      fourier_kernels: the kernels of a space group in the translations' Fourier basis
        (:class:`KernelBasis`; the same functions and SR updates, cheaper per-sample
        gradients); False keeps the group basis.
    """
    perms = check_permutations(symmetries)
    if isinstance(features, int | np.integer):
        features = (int(features),) * (1 if layers is None else int(layers))
    features = tuple(int(f) for f in features)
    if not features or min(features) <= 0:
        raise InputError(f"GCNN features must be positive integers, got {features}")
    syms = tuple(tuple(int(v) for v in row) for row in perms)
    group_tables(syms)  # validates the group now, not at the first trace
    return Ansatz(GCNN(syms, features, param_dtype, fourier_kernels), holomorphic=False,
                  symmetries=syms,
                  real_log_psi=not jnp.issubdtype(param_dtype, jnp.complexfloating))
