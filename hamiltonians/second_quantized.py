"""The molecular Hamiltonian in second quantization as a :class:`nqs.operator.DiscreteOperator`.

    H = e_core + sum_{pq,s} h1[p,q] a+_{ps} a_{qs}
        + 1/2 sum_{pqrs,s,t} (pq|rs) a+_{ps} a+_{rt} a_{st} a_{qs}

Spin orbitals: index ``p`` in ``[0, n)`` is alpha orbital ``p``, ``n + p`` is beta orbital ``p``
(``n`` = number of spatial orbitals), as in :class:`nqs.hilbert.FermionHilbert`.

Sign convention (Jordan-Wigner order = spin-orbital index order, alpha block first): a
configuration ``x`` is the determinant

    |x> = (a+_{p_1} a+_{p_2} ... a+_{p_N}) |0>,   p_1 < p_2 < ... < p_N the occupied spin orbitals,

so ``a+_a a_i |x> = (-1)^{n(i, a)} |x_i^a>`` with ``n(i, a)`` the number of occupied spin orbitals
strictly between ``i`` and ``a``. This is PySCF's FCI convention ``|alpha string>|beta string>``
(all alpha creators before all beta creators) and NetKet's; because H conserves N_alpha and
N_beta, the matrix does not depend on the relative order of the two blocks.

Matrix elements (Slater-Condon, spin orbitals; ``[pq|rs] = (pq|rs)`` if the spins match pairwise):

* diagonal: ``e_core + sum_i h1_ii + 1/2 sum_{ij} ([ii|jj] - [ij|ji])``, i, j occupied;
* single ``i -> a`` (same spin): ``sign * (h1_ai + sum_k [ai|kk] - sum_k [ak|ki])``,
  k occupied in ``x`` (i included: its terms cancel);
* double ``i -> a, j -> b``: ``sign * ((ai|bj) - (aj|bi))`` same spin, ``sign * (ai|bj)`` opposite
  spin, with ``sign`` that of ``(a+_a a_i)(a+_b a_j)|x>``: apply ``a+_b a_j`` to ``x`` then
  ``a+_a a_i`` to the result.

Excitations are enumerated relative to the occupied / virtual lists of ``x``, whose lengths are
fixed by ``(n, n_alpha, n_beta)``, so every candidate row is a valid connected determinant:

    n_candidates = 1 + sum_s o_s v_s + sum_s C(o_s, 2) C(v_s, 2) + o_a v_a o_b v_b.

**Screened rows.** Most candidates have a zero matrix element (point-group symmetry zeroes most
(ai|bj) in symmetry-adapted orbitals: ~80% for N2/STO-3G, ~70% for H2O/6-31G), and an ansatz
evaluated on a connected determinant costs far more than its matrix element. So ``flips`` keeps
only the rows with ``|mel| >= screening`` (the diagonal always), in their candidate order, packed
into ``max_conn`` rows; the remaining rows are padding (no flips, mel 0). ``max_conn`` is an exact
upper bound on the number of such rows over the *whole* space, computed once from the integrals by
enumerating the alpha and beta strings (see :func:`screened_row_bound`), so no nonzero element is
ever dropped: the matrix is the same as without packing. Spaces too large for that enumeration
keep all candidates (``max_conn = n_candidates``).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from hamiltonians.molecule import MolecularIntegrals
from nqs.errors import InputError
from nqs.hilbert import FermionHilbert


class MolecularHamiltonian:
    """Electronic Hamiltonian of ``integrals`` on ``FermionHilbert(n, n_alpha, n_beta)``.

    ``flips(x)`` returns ``sites`` int32 ``[max_conn, 4]`` and ``mels`` ``[max_conn]``: row 0 is
    the diagonal, then singles (alpha, beta), then same-spin doubles (alpha, beta), then
    opposite-spin doubles. Single rows flip ``(i, a)``, double rows ``(i, a, j, b)``; unused
    entries are ``n_sites``. Matrix elements with ``|mel| < screening`` are set to 0.

    With ``compact=True`` (default) rows with ``|mel| < screening`` are dropped and the kept rows
    packed into ``max_conn <= n_candidates`` rows (see the module docstring); the order of the
    kept rows is the candidate order above, and the padding rows at the end have no flips and
    mel 0. ``max_string_pairs`` bounds the one-off enumeration that proves ``max_conn``:
    ``C(n, n_alpha) * C(n, n_beta)`` string pairs (larger spaces are not packed).
    """

    max_flips: int = 4

    def __init__(
        self,
        integrals: MolecularIntegrals,
        screening: float = 1e-12,
        *,
        compact: bool = True,
        max_string_pairs: int = 20_000_000,
    ) -> None:
        h1 = np.asarray(integrals.h1, dtype=np.float64)
        h2 = np.asarray(integrals.h2, dtype=np.float64)
        n = int(integrals.n_orbitals)
        if not np.allclose(h1, h1.T, atol=1e-10):
            raise InputError("the one-electron integrals h1 are not symmetric")
        if not (
            np.allclose(h2, h2.transpose(1, 0, 2, 3), atol=1e-10)
            and np.allclose(h2, h2.transpose(2, 3, 0, 1), atol=1e-10)
        ):
            raise InputError("the two-electron integrals lack the 8-fold symmetry of real orbitals")
        self.integrals = integrals
        self.hilbert = FermionHilbert(n, int(integrals.n_alpha), int(integrals.n_beta))
        self.screening = float(screening)
        self.n_orbitals = n
        self.e_core = float(integrals.e_core)
        na, nb = self.hilbert.n_alpha, self.hilbert.n_beta
        self._n_occ = (na, nb)
        self._n_vir = (n - na, n - nb)

        # static excitation tables: positions in the occupied / virtual lists of x
        self._singles = [_grid(self._n_occ[s], self._n_vir[s]) for s in (0, 1)]  # [k, 2] (i, a)
        self._same = [_pair_doubles(self._n_occ[s], self._n_vir[s]) for s in (0, 1)]  # [k, 4]
        self._opp = _opposite_doubles(na, n - na, nb, n - nb)  # [k, 4] (i_a, a_a, j_b, b_b)
        self.n_singles = sum(len(t) for t in self._singles)
        self.n_doubles = sum(len(t) for t in self._same) + len(self._opp)
        self.n_candidates = 1 + self.n_singles + self.n_doubles
        self.max_conn = self.n_candidates
        if compact and self.screening > 0:
            bound = screened_row_bound(h1, h2, na, nb, self.screening, max_string_pairs)
            if bound is not None:
                self.max_conn = min(bound, self.n_candidates)

        self._h1 = jnp.asarray(h1)
        # flattened (ai|bj) and antisymmetrized (ai|bj) - (aj|bi), indexed by ((a n + i) n + b) n + j
        self._h2_flat = jnp.asarray(h2.reshape(-1))
        self._h2_anti_flat = jnp.asarray((h2 - h2.transpose(0, 3, 2, 1)).reshape(-1))
        self._J = jnp.asarray(np.einsum("pqkk->pqk", h2))  # (pq|kk)
        self._K = jnp.asarray(np.einsum("pkkq->pqk", h2))  # (pk|kq)
        self._Jd = jnp.asarray(np.einsum("ppkk->pk", h2))
        self._Kd = jnp.asarray(np.einsum("pkkp->pk", h2))

    def __repr__(self) -> str:
        h = self.hilbert
        return (
            f"MolecularHamiltonian(n_orbitals={h.n_orbitals}, n_alpha={h.n_alpha}, "
            f"n_beta={h.n_beta}, max_conn={self.max_conn}, n_candidates={self.n_candidates})"
        )

    # ------------------------------------------------------------------ one configuration

    def diagonal(self, x: jax.Array) -> jax.Array:
        """``<x|H|x>`` (Slater-Condon, including ``e_core``) for one ``x [2n]``."""
        n = self.n_orbitals
        xa, xb = x[:n], x[n:]
        nt = xa + xb
        e1 = jnp.dot(jnp.diagonal(self._h1), nt)
        e2 = nt @ self._Jd @ nt - xa @ self._Kd @ xa - xb @ self._Kd @ xb
        return self.e_core + e1 + 0.5 * e2

    def flips(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Connected determinants of one ``x [2n]`` (0/1 floats): ``(sites [max_conn, 4], mels)``."""
        sites, mels = self.candidate_flips(x)
        if self.max_conn == self.n_candidates:
            return sites, mels
        # pack the kept rows (candidate order) into max_conn rows; index n_candidates is a
        # padding row. max_conn bounds the kept rows of every x, so nothing is cut off.
        keep = (jnp.abs(mels) >= self.screening).at[0].set(True)
        rows = jnp.nonzero(keep, size=self.max_conn, fill_value=self.n_candidates)[0]
        pad_row = jnp.full((1, 4), 2 * self.n_orbitals, dtype=sites.dtype)
        sites = jnp.concatenate([sites, pad_row], axis=0)[rows]
        mels = jnp.concatenate([mels, jnp.zeros((1,), mels.dtype)])[rows]
        return sites, mels

    def candidate_flips(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """All ``n_candidates`` excitation rows of one ``x [2n]``, screened mels set to 0."""
        n = self.n_orbitals
        pad = 2 * n
        x = jnp.asarray(x)
        occ_bits = (x > 0.5).astype(jnp.int32)
        xf = occ_bits.astype(self._h1.dtype)
        xa, xb = xf[:n], xf[n:]
        # cum[p] = number of occupied spin orbitals q < p (within the whole register)
        cum = jnp.cumsum(occ_bits) - occ_bits
        occ, vir = [], []
        for s, bits in enumerate((occ_bits[:n], occ_bits[n:])):
            o = jnp.nonzero(bits == 1, size=self._n_occ[s], fill_value=0)[0].astype(jnp.int32)
            v = jnp.nonzero(bits == 0, size=self._n_vir[s], fill_value=0)[0].astype(jnp.int32)
            occ.append(o)
            vir.append(v)

        def parity(k: jax.Array) -> jax.Array:
            return (1 - 2 * (k % 2)).astype(self._h1.dtype)

        # per spin, on the (occupied position, virtual position) grid [o_s, v_s]:
        # global indices, and the sign of a+_a a_i |x> = (-1)^(occupied strictly between)
        og, vg, sgn = [], [], []
        for s in (0, 1):
            o_g, v_g = occ[s] + s * n, vir[s] + s * n
            co, cv = cum[o_g][:, None], cum[v_g][None, :]
            below = o_g[:, None] < v_g[None, :]
            sgn.append(parity(jnp.where(below, cv - co - 1, co - cv)))
            og.append(o_g)
            vg.append(v_g)

        sites_parts = [jnp.full((1, 4), pad, dtype=jnp.int32)]
        mel_parts = [self.diagonal(xf)[None]]

        # singles: F^s_ai = h1_ai + sum_k (ai|kk) n_k - sum_k (ak|ki) n^s_k
        jn = self._J @ (xa + xb)
        for s, xs in enumerate((xa, xb)):
            no, nv = self._n_occ[s], self._n_vir[s]
            if no == 0 or nv == 0:
                continue
            fock = (self._h1 + jn - self._K @ xs).reshape(-1)
            f_ia = jnp.take(fock, vir[s][None, :] * n + occ[s][:, None])  # F[a, i], [o, v]
            mel_parts.append((sgn[s] * f_ia).reshape(-1))
            shape = (no, nv)
            cols = [
                jnp.broadcast_to(og[s][:, None], shape),
                jnp.broadcast_to(vg[s][None, :], shape),
                jnp.full(shape, pad, dtype=jnp.int32),
                jnp.full(shape, pad, dtype=jnp.int32),
            ]
            sites_parts.append(jnp.stack(cols, axis=-1).reshape(-1, 4))

        # same-spin doubles i<j -> a<b (static position tables)
        for s in (0, 1):
            tab = self._same[s]
            if len(tab) == 0:
                continue
            nv = self._n_vir[s]
            ip, jp, ap, bp = tab[:, 0], tab[:, 1], tab[:, 2], tab[:, 3]
            i, j, a, b = occ[s][ip], occ[s][jp], vir[s][ap], vir[s][bp]
            sg = sgn[s].reshape(-1)
            lo, hi = jnp.minimum(i, a), jnp.maximum(i, a)
            inside = ((j > lo) & (j < hi)).astype(jnp.int32) + ((b > lo) & (b < hi))
            v = jnp.take(self._h2_anti_flat, ((a * n + i) * n + b) * n + j)
            v = v * jnp.take(sg, ip * nv + ap) * jnp.take(sg, jp * nv + bp) * parity(inside)
            mel_parts.append(v)
            off = s * n
            sites_parts.append(jnp.stack([i + off, a + off, j + off, b + off], axis=1))

        # opposite-spin doubles: alpha i -> a, beta j -> b, grid [o_a, v_a, o_b, v_b]
        if len(self._opp):
            i = occ[0][:, None, None, None]
            a = vir[0][None, :, None, None]
            j = occ[1][None, None, :, None]
            b = vir[1][None, None, None, :]
            v = jnp.take(self._h2_flat, ((a * n + i) * n + b) * n + j)
            v = v * sgn[0][:, :, None, None] * sgn[1][None, None, :, :]
            mel_parts.append(v.reshape(-1))
            shape = v.shape
            cols = [jnp.broadcast_to(c, shape) for c in (i, a, j + n, b + n)]
            sites_parts.append(jnp.stack(cols, axis=-1).reshape(-1, 4))

        sites = jnp.concatenate(sites_parts, axis=0)
        mels = jnp.concatenate(mel_parts, axis=0)
        if self.screening > 0:
            keep = jnp.abs(mels) >= self.screening
            keep = keep.at[0].set(True)
            mels = jnp.where(keep, mels, 0.0)
        return sites, mels

    def flips_batch(self, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``flips`` over a batch ``xs [B, 2n]``: ``(sites [B, max_conn, 4], mels [B, max_conn])``."""
        return jax.vmap(self.flips)(xs)


def screened_row_bound(
    h1: np.ndarray,
    h2: np.ndarray,
    n_alpha: int,
    n_beta: int,
    screening: float,
    max_string_pairs: int = 20_000_000,
) -> int | None:
    """Largest number of rows with ``|mel| >= screening`` (diagonal included) over all determinants.

    A row is counted when its matrix element *can* reach ``screening``: a double ``i -> a, j -> b``
    when ``|(ai|bj) - (aj|bi)| >= screening`` (same spin) or ``|(ai|bj)| >= screening`` (opposite
    spin), exactly the values ``flips`` screens; a single ``i -> a`` when
    ``|h1_ai| + sum_k |(ai|kk)| + sum_k |(ak|ki)| >= screening / 2``, an upper bound of its
    ``|mel|`` for any occupation (the 1/2 absorbs rounding). Per alpha string ``A`` and beta string
    ``B`` with excitation indicators ``e_A, e_B [n*n]`` (``e[a*n+i] = 1`` for ``i`` occupied, ``a``
    empty) the count is ``1 + s(A) + s(B) + d(A) + d(B) + e_A^T O e_B``, ``O`` the 0/1 matrix of
    opposite-spin doubles; its maximum over all ``C(n, n_alpha) C(n, n_beta)`` string pairs is
    taken exactly.

    Args:
      h1: ``[n, n]``; h2: ``[n, n, n, n]`` chemists' notation (Hartree).
      n_alpha, n_beta: electrons per spin.
      screening: threshold of ``flips`` (> 0).
      max_string_pairs: enumeration limit; returns ``None`` (no bound) above it.

    Returns:
      The bound, or ``None`` when the space is too large to enumerate.
    """
    n = h1.shape[0]
    n_a, n_b = math.comb(n, n_alpha), math.comb(n, n_beta)
    # the work is ~ n_a n_b n^2 (pairs) and n_s n^4 (same-spin counts); memory n_s n^2 floats
    if n_a * n_b > max_string_pairs or max(n_a, n_b) * n**4 > 50 * max_string_pairs:
        return None
    if max(n_a, n_b) * n * n > max_string_pairs:
        return None
    ah2 = np.abs(h2)
    single = (np.abs(h1) + np.einsum("aikk->ai", ah2) + np.einsum("akki->ai", ah2)) >= screening / 2
    opposite = (ah2 >= screening).reshape(n * n, n * n).astype(np.float64)  # [(a,i), (b,j)]
    same = (np.abs(h2 - h2.transpose(0, 3, 2, 1)) >= screening).reshape(n * n, n * n)

    def per_spin(n_el: int) -> tuple[np.ndarray, np.ndarray]:
        """``(e [S, n*n], s + d [S])`` for the S strings of ``n_el`` electrons."""
        occ = np.zeros((math.comb(n, n_el), n), dtype=bool)
        for k, c in enumerate(itertools.combinations(range(n), n_el)):
            occ[k, list(c)] = True
        e = (~occ[:, :, None] & occ[:, None, :]).reshape(len(occ), n * n).astype(np.float64)
        n_single = e @ single.reshape(-1).astype(np.float64)
        # each unordered same-spin double {(a,i),(b,j)} appears 4 times in e^T same e:
        # as (ai,bj), (bj,ai) and, with the opposite sign of the element, (aj,bi), (bi,aj)
        n_same = np.sum((e @ same.astype(np.float64)) * e, axis=1) / 4
        return e, n_single + n_same

    e_a, c_a = per_spin(n_alpha)
    e_b, c_b = per_spin(n_beta) if n_beta != n_alpha else (e_a, c_a)
    best = 0.0
    step = max(1, max_string_pairs // max(n_b, 1) // 8)
    right = opposite @ e_b.T  # [n*n, S_b]
    for start in range(0, n_a, step):
        counts = e_a[start : start + step] @ right + c_a[start : start + step, None] + c_b[None, :]
        best = max(best, float(counts.max()))
    return 1 + int(round(best))


def _grid(n_occ: int, n_vir: int) -> np.ndarray:
    if n_occ == 0 or n_vir == 0:
        return np.zeros((0, 2), dtype=np.int32)
    i, a = np.meshgrid(np.arange(n_occ), np.arange(n_vir), indexing="ij")
    return np.stack([i.ravel(), a.ravel()], axis=1).astype(np.int32)


def _pair_doubles(n_occ: int, n_vir: int) -> np.ndarray:
    occ_pairs = list(itertools.combinations(range(n_occ), 2))
    vir_pairs = list(itertools.combinations(range(n_vir), 2))
    rows = [(i, j, a, b) for (i, j) in occ_pairs for (a, b) in vir_pairs]
    assert len(rows) == math.comb(n_occ, 2) * math.comb(n_vir, 2)
    return np.asarray(rows, dtype=np.int32).reshape(-1, 4)


def _opposite_doubles(no_a: int, nv_a: int, no_b: int, nv_b: int) -> np.ndarray:
    sa = _grid(no_a, nv_a)
    sb = _grid(no_b, nv_b)
    if len(sa) == 0 or len(sb) == 0:
        return np.zeros((0, 4), dtype=np.int32)
    ia = np.repeat(sa, len(sb), axis=0)
    ib = np.tile(sb, (len(sa), 1))
    return np.concatenate([ia, ib], axis=1).astype(np.int32)
