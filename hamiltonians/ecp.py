"""Effective core potentials (pseudopotentials) for electrons in real space.

An ECP replaces the ``n_core`` core electrons of an atom: the nucleus keeps the effective charge
``Z_eff = Z - n_core`` in the Coulomb terms, and each valence electron at distance ``r`` from it
feels, in Hartree with ``r`` in bohr,

    V_ECP = V_loc(r) + sum_l V_l(r) sum_m |l m><l m|,
    V(r)  = sum_k c_k r^(n_k - 2) exp(-a_k r^2)          (each of V_loc and the V_l),

PySCF's convention (the NWChem format it reads: a line ``n a c`` is ``c r^(n-2) exp(-a r^2)``,
stored in ``mol._ecp[symbol][1][i][1][n]``; checked against ``mol.intor("ECPscalar")`` in
``tests/test_ecp.py``). ``V_loc`` excludes the Coulomb ``-Z_eff/r``, which stays in
:func:`hamiltonians.realspace.potential_energy`.

The local energy of the nonlocal part for a many-electron ``psi`` is, per electron ``i`` and ECP
nucleus ``I`` with ``r_i - R_I = r u``,

    sum_l V_l(r) (2l + 1)/(4 pi) int dOmega' P_l(u . u') psi(.., R_I + r u', ..)/psi(.., r_i, ..),

here by a quadrature on the sphere: the 12 vertices of an icosahedron, equal weights, exact for
spherical harmonics of degree up to 5 (:data:`ICOSAHEDRON`), so exact for ``P_l psi`` whenever
the angular content of ``psi`` around ``R_I`` plus ``l`` is at most 5. The quadrature is rotated
per configuration by a rotation drawn from a key hashed from the configuration's bits (the
local-energy interface carries no key; the rotation changes from one sample to the next, as the
random rotation of QMC codes), or kept fixed (``random_rotation=False``). The ratios
``psi(r')/psi(r) = sign' sign exp(log|psi'| - log|psi|)`` take the network's ``(sign, log|psi|)``.

Units: Hartree, bohr. Functions act on ONE configuration ``r [n_el, 3]``; vmap them.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import nqs  # noqa: F401  (enables float64 before any array is built)
from hamiltonians.molecule import canonical_symbol
from nqs.ansatz import sign_and_log
from nqs.errors import InputError


@dataclasses.dataclass(frozen=True)
class RadialTerms:
    """``V(r) = sum_k coefficients[k] r^(powers[k] - 2) exp(-exponents[k] r^2)`` (Hartree, bohr).

    Attributes:
        powers: int array ``[n_terms]``, the NWChem ``n`` (the power of r is ``n - 2``).
        exponents: ``[n_terms]`` in bohr^-2.
        coefficients: ``[n_terms]``.
    """

    powers: np.ndarray
    exponents: np.ndarray
    coefficients: np.ndarray

    def __call__(self, r: jax.Array) -> jax.Array:
        """``V(r)`` for distances ``r [...]`` in bohr (r > 0)."""
        return radial_value(self, r)


@dataclasses.dataclass(frozen=True)
class AtomECP:
    """The ECP of one element.

    Attributes:
        symbol: element symbol.
        name: the ECP library name (PySCF's, e.g. ``"ccecp"``).
        n_core: core electrons removed.
        local: ``V_loc`` (without ``-Z_eff/r``).
        nonlocal_channels: ``((l, V_l), ...)``, ``l`` ascending.
    """

    symbol: str
    name: str
    n_core: int
    local: RadialTerms
    nonlocal_channels: tuple[tuple[int, RadialTerms], ...]

    @property
    def max_l(self) -> int:
        """The largest projected angular momentum (-1 without nonlocal channels)."""
        return max((l for l, _ in self.nonlocal_channels), default=-1)


def radial_value(terms: RadialTerms, r: jax.Array) -> jax.Array:
    """``sum_k c_k r^(n_k - 2) exp(-a_k r^2)`` at ``r [...]`` (bohr) -> ``[...]`` (Hartree)."""
    if len(terms.powers) == 0:
        return jnp.zeros_like(r)
    r = r[..., None]
    powers = jnp.asarray(terms.powers - 2, dtype=jnp.int32)
    value = jnp.asarray(terms.coefficients) * r ** powers * jnp.exp(-jnp.asarray(terms.exponents) * r * r)
    return jnp.sum(value, axis=-1)


def _terms(by_power: Sequence[Sequence[Sequence[float]]]) -> RadialTerms:
    powers, exponents, coefficients = [], [], []
    for n, entries in enumerate(by_power):
        for entry in entries:
            powers.append(n)
            exponents.append(float(entry[0]))
            coefficients.append(float(entry[1]))  # entry[2:]: spin-orbit parts, not used
    return RadialTerms(np.asarray(powers, np.int64), np.asarray(exponents, np.float64),
                       np.asarray(coefficients, np.float64))


def atom_ecp_from_pyscf(symbol: str, name: str, data: Sequence[Any]) -> AtomECP:
    """An :class:`AtomECP` from PySCF's ECP data ``[n_core, [[l, [terms by n]], ...]]`` (the
    format of ``mol._ecp[symbol]`` and ``pyscf.gto.basis.load_ecp``; ``l = -1`` is local)."""
    n_core, channels = int(data[0]), data[1]
    local = RadialTerms(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    nonlocal_channels = []
    for l, by_power in sorted(channels, key=lambda c: c[0]):
        if int(l) < 0:
            local = _terms(by_power)
        else:
            terms = _terms(by_power)
            if len(terms.powers):
                nonlocal_channels.append((int(l), terms))
    return AtomECP(symbol, name, n_core, local, tuple(nonlocal_channels))


def _pyscf_ecp_name(name: str) -> str:
    """The PySCF library file behind ECP ``name``; InputError when PySCF has none."""
    from pyscf.gto import basis  # lazy: pyscf is not needed by the solver core

    key = basis._format_basis_name(name)
    if not name.strip() or key not in basis.ALIAS:
        raise InputError(f"unknown ECP {name!r}: use a name PySCF ships, e.g. ccecp, bfd, "
                         "lanl2dz, crenbl, sbkjc, stuttgart")
    return key


def load_atom_ecp(name: str, symbol: str) -> AtomECP | None:
    """The ECP ``name`` of element ``symbol`` from PySCF's library (None: it has none for it).

    Raises:
        InputError: ``name`` is not an ECP library PySCF ships.
    """
    from pyscf.gto import basis  # lazy

    key = _pyscf_ecp_name(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = basis.load_ecp(key, symbol)
        except Exception:  # noqa: BLE001 - PySCF raises several kinds for "no data"
            return None
    if not data:
        return None
    return atom_ecp_from_pyscf(symbol, name.strip().lower(), data)


def parse_ecp_spec(spec: str | dict[str, str] | None, symbols: Sequence[str]) -> dict[str, str]:
    """Which element gets which ECP: ``{symbol: name}``.

    ``spec``: ``None`` or ``""`` (all-electron), a name (``"ccecp"``: every element of
    ``symbols``), ``"Na:ccecp, Cl:ccecp"`` (those elements; the others all-electron) or a dict.

    Raises:
        InputError: a malformed spec, an element not in the system, an unknown ECP name.
    """

    if spec is None:
        return {}
    present = {canonical_symbol(s) for s in symbols}
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        text = str(spec).strip()
        if not text or text.lower() == "none":
            return {}
        if ":" not in text:
            _pyscf_ecp_name(text)
            return {s: text.lower() for s in sorted(present)}
        items = []
        for part in re.split(r"[,;\s]+", text):
            if not part:
                continue
            if part.count(":") != 1:
                raise InputError(f"bad ECP entry {part!r}: expected 'Element:name' or one name")
            sym, name = part.split(":")
            items.append((sym, name))
    out: dict[str, str] = {}
    for sym, name in items:
        canon = canonical_symbol(str(sym))
        if canon not in present:
            raise InputError(f"ECP given for {canon}, which is not in the system")
        _pyscf_ecp_name(str(name))
        out[canon] = str(name).strip().lower()
    return out


def load_ecps(spec: str | dict[str, str] | None, symbols: Sequence[str]
              ) -> tuple[AtomECP | None, ...]:
    """Per atom (in the order of ``symbols``) its ECP or None, from :func:`parse_ecp_spec`.

    Raises:
        InputError: as :func:`parse_ecp_spec`, or an element asked for that has no ECP in the
            named library.
    """

    wanted = parse_ecp_spec(spec, symbols)
    cache: dict[str, AtomECP] = {}
    for sym, name in wanted.items():
        ecp = load_atom_ecp(name, sym)
        if ecp is None:
            raise InputError(f"{sym} has no ECP in {name!r}; give the ECP per element, e.g. "
                             f"--ecp 'X:{name}' for the elements that have one")
        cache[sym] = ecp
    return tuple(cache.get(canonical_symbol(s)) for s in symbols)


# ---- quadrature on the sphere


def _icosahedron() -> np.ndarray:
    g = (1.0 + math.sqrt(5.0)) / 2.0
    pts = []
    for a in (-1.0, 1.0):
        for b in (-g, g):
            pts += [(0.0, a, b), (a, b, 0.0), (b, 0.0, a)]
    pts = np.asarray(pts)
    return pts / np.linalg.norm(pts, axis=1, keepdims=True)


ICOSAHEDRON = _icosahedron()
"""``[12, 3]`` unit vectors, the vertices of an icosahedron: with equal weights 1/12 the mean
over them is exact for the sphere average of polynomials of degree up to 5."""


def legendre(l: int, x: jax.Array) -> jax.Array:
    """Legendre polynomial ``P_l(x)`` by the three-term recurrence."""
    p0, p1 = jnp.ones_like(x), x
    if l == 0:
        return p0
    for k in range(1, l):
        p0, p1 = p1, ((2 * k + 1) * x * p1 - k * p0) / (k + 1)
    return p1


def random_rotation(key: jax.Array) -> jax.Array:
    """A rotation ``[3, 3]`` drawn uniformly (Haar) from SO(3): a normalized Gaussian quaternion."""
    q = jax.random.normal(key, (4,), dtype=jnp.float64)
    w, x, y, z = q / jnp.linalg.norm(q)
    return jnp.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def configuration_key(r: jax.Array, seed: int = 0) -> jax.Array:
    """A PRNG key hashed from the bits of ``r`` (float64): a different key for every sample."""
    words = jax.lax.bitcast_convert_type(jnp.asarray(r, jnp.float64).reshape(-1),
                                         jnp.uint32).reshape(-1)
    # the words holding the last mantissa bits change from sample to sample: an xor and a
    # position-weighted sum of all words, mixed by fold_in
    mixed = jax.lax.reduce(words, np.uint32(0), jax.lax.bitwise_xor, (0,))
    total = jnp.sum(words * (jnp.arange(words.shape[0], dtype=jnp.uint32) * np.uint32(2654435761)
                             + np.uint32(1)))
    key = jax.random.fold_in(jax.random.PRNGKey(seed), mixed)
    return jax.random.fold_in(key, total)


def make_ecp_energy(
    log_psi_fn: Callable[[Any, jax.Array], Any],
    ecps: Sequence[AtomECP | None],
    positions: np.ndarray,
    quadrature: np.ndarray = ICOSAHEDRON,
    rotate: bool = True,
) -> Callable[[Any, jax.Array], jax.Array]:
    """The ECP part of the local energy of one configuration.

    Args:
        log_psi_fn: ``(params, r [n_el, 3]) -> (sign, log|psi|)`` (or ``log|psi|`` of a positive
            wavefunction).
        ecps: per nucleus its :class:`AtomECP` or None (all-electron).
        positions: nuclei in bohr ``[n_atoms, 3]``.
        quadrature: ``[n_q, 3]`` unit vectors with equal weights.
        rotate: rotate the quadrature per configuration (:func:`configuration_key`);
            False: fixed.

    Returns:
        ``fn(params, r [n_el, 3]) -> scalar`` in Hartree: ``sum_{i,I} V_loc,I(r_iI)`` plus the
        nonlocal part by quadrature (see the module docstring).
    """
    idx = [i for i, e in enumerate(ecps) if e is not None]
    centres = jnp.asarray(np.asarray(positions, np.float64)[idx]).reshape(-1, 3)
    atom_ecps = [ecps[i] for i in idx]
    nl_atoms = [k for k, e in enumerate(atom_ecps) if e.nonlocal_channels]
    quad = jnp.asarray(quadrature, jnp.float64)

    def local_part(d: jax.Array) -> jax.Array:  # d [n_el, n_ecp_atoms]
        return sum(jnp.sum(e.local(d[:, k])) for k, e in enumerate(atom_ecps))

    def energy(params: Any, r: jax.Array) -> jax.Array:
        if not atom_ecps:
            return jnp.zeros((), r.dtype)
        n_el = r.shape[0]
        diff = r[:, None, :] - centres[None]  # [n_el, n_atoms_ecp, 3]
        d = jnp.sqrt(jnp.sum(diff * diff, axis=-1))
        total = local_part(d)
        if not nl_atoms:
            return total
        q = quad
        if rotate:
            q = quad @ random_rotation(configuration_key(jax.lax.stop_gradient(r))).T
        sign0, log0 = sign_and_log(log_psi_fn(params, r))
        for k in nl_atoms:
            e = atom_ecps[k]
            dk = d[:, k]  # [n_el]
            u = diff[:, k] / dk[:, None]  # [n_el, 3]
            moved = centres[k] + dk[:, None, None] * q[None]  # [n_el, n_q, 3]

            def ratio(i: jax.Array, x: jax.Array) -> jax.Array:
                s, lg = sign_and_log(log_psi_fn(params, r.at[i].set(x)))
                return s * sign0 * jnp.exp(lg - log0)

            # a loop over electrons, the quadrature points batched: the network's batched
            # slogdet of all n_el x n_q configurations at once hung in XLA's CPU runtime
            # (NaCl, 8 electrons, the second call), as the vmapped Hessian did for N2
            ratios = jax.lax.map(lambda a: jax.vmap(lambda x: ratio(a[0], x))(a[1]),
                                 (jnp.arange(n_el), moved))  # [n_el, n_q]
            cos = jnp.einsum("ia,qa->iq", u, q)
            for l, terms in e.nonlocal_channels:
                weight = (2 * l + 1) * jnp.mean(legendre(l, cos) * ratios, axis=-1)
                total = total + jnp.sum(terms(dk) * weight)
        return total

    return energy


def apply_ecp_to_function(
    f: Callable[[jax.Array], jax.Array], ecp: AtomECP, centre: np.ndarray, r: jax.Array,
    quadrature: np.ndarray = ICOSAHEDRON,
) -> jax.Array:
    """``(V_ECP f)(r)`` for one-electron functions ``f(x [3]) -> [...]`` (any trailing shape,
    e.g. all basis functions) at a point ``r [3]`` (bohr): ``V_loc f`` plus the nonlocal
    projectors by the fixed quadrature. Returns ``[...]`` in Hartree times the unit of ``f``."""
    centre = jnp.asarray(centre, jnp.float64)
    dvec = r - centre
    dist = jnp.sqrt(jnp.sum(dvec * dvec))
    u = dvec / dist
    q = jnp.asarray(quadrature)
    values = jax.vmap(f)(centre + dist * q)  # [n_q, ...]
    out = ecp.local(dist) * f(r)
    for l, terms in ecp.nonlocal_channels:
        weights = legendre(l, q @ u) / q.shape[0]
        out = out + terms(dist) * (2 * l + 1) * jnp.tensordot(weights, values, axes=1)
    return out
