"""Molecules in a Gaussian basis: specification, validation and molecular-orbital integrals.

A molecule is a :class:`MoleculeSpec` (atoms as an XYZ-style string, basis, charge, 2S, unit).
:func:`compute_integrals` runs RHF (closed shell) or ROHF (open shell) with PySCF and returns the
integrals of the electronic Hamiltonian in the orthonormal MO basis,

    H = e_core + sum_{pq,s} h1[p,q] a+_{ps} a_{qs}
        + 1/2 sum_{pqrs,s,t} h2[p,q,r,s] a+_{ps} a+_{rt} a_{st} a_{qs},

with ``h2`` in chemists' notation ``(pq|rs)``. With a frozen core or an active space (CAS), ``h1``
is the effective one-body operator of the active orbitals and ``e_core`` includes the energy of
the doubly occupied core.

PySCF is imported lazily inside the functions that need it: :class:`MolecularIntegrals` and the
``.npz`` reader/writer work on a machine without PySCF.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import nqs  # noqa: F401  (float64 in JAX)
from nqs.errors import InputError

ANGSTROM_TO_BOHR = 1.8897261246
"""1 Angstrom in bohr (CODATA 2018), the one conversion of both geometry parsers (PySCF
converts the Angstrom geometries it is given with its own 1 / 0.52917721092)."""
MIN_ATOM_DISTANCE_BOHR = 0.1
#: Two-electron integrals with |(pq|rs)| below this (Hartree) are set to 0 by
#: :func:`compute_integrals` (effect on the energies: docs/molecules.md).
ERI_SCREENING_THRESHOLD = 1e-12

#: Geometries in Angstrom (their reference energies: docs/references.md).
PRESETS: dict[str, str] = {
    "H2": "H 0 0 0; H 0 0 0.734",
    "LiH": "Li 0 0 0; H 0 0 1.548",
    "H2O": "H 0 0.769 -0.546; H 0 -0.769 -0.546; O 0 0 0.137",
    "NH3": "N 0 0 0.149; H 0 0.947 -0.348; H 0.821 -0.474 -0.348; H -0.821 -0.474 -0.348",
    "N2": "N 0 0 0; N 0 0 1.19",
    "C2": "C 0 0 0; C 0 0 1.26",
}

_UNITS = {
    "angstrom": "angstrom",
    "ang": "angstrom",
    "a": "angstrom",
    "bohr": "bohr",
    "au": "bohr",
    "b": "bohr",
}


@dataclass(frozen=True)
class MoleculeSpec:
    """A molecule: ``atoms`` like ``"Li 0 0 0; H 0 0 1.548"`` (``;`` or newline separated).

    ``spin`` is 2S = N_alpha - N_beta, ``charge`` the net charge; ``unit`` is ``"angstrom"``
    (default) or ``"bohr"``.
    """

    atoms: str
    basis: str = "sto-3g"
    charge: int = 0
    spin: int = 0
    unit: str = "angstrom"
    name: str | None = None

    @classmethod
    def from_preset(cls, name: str, basis: str = "sto-3g") -> MoleculeSpec:
        """One of :data:`PRESETS` (case-insensitive name) in ``basis``."""
        return from_preset(name, basis=basis)

    @property
    def n_electrons(self) -> int:
        """Total number of electrons (sum of nuclear charges minus ``charge``)."""
        from pyscf.data import elements

        return sum(elements.charge(s) for s, _ in parse_atoms(self.atoms)) - self.charge

    @property
    def label(self) -> str:
        """The name, or the atoms string when the spec has no name."""
        return self.name or self.atoms


def from_preset(name: str, basis: str = "sto-3g") -> MoleculeSpec:
    """The preset molecule ``name`` (H2, LiH, H2O, NH3, N2, C2; case-insensitive), singlet, neutral."""
    key = _preset_key(name)
    if key is None:
        raise InputError(f"unknown molecule preset {name!r}; known: {', '.join(PRESETS)}")
    return MoleculeSpec(atoms=PRESETS[key], basis=basis, name=key)


def parse_molecule(
    text_or_preset: str,
    basis: str = "sto-3g",
    charge: int = 0,
    spin: int = 0,
    unit: str = "angstrom",
) -> MoleculeSpec:
    """A preset name (``"LiH"``), an atoms string (``"H 0 0 0; H 0 0 0.74"``, in ``unit``) or
    an ``.xyz`` file (:func:`read_xyz`; named by its stem) as a validated spec. Presets and
    ``.xyz`` files are in Angstrom whatever ``unit`` says."""
    key = _preset_key(text_or_preset)
    if is_xyz_path(text_or_preset):
        path = Path(text_or_preset.strip())
        spec = MoleculeSpec(read_xyz(path), basis=basis, charge=charge, spin=spin,
                            unit="angstrom", name=path.stem)
    elif key is not None:
        # the presets are in angstrom whatever ``unit`` says (it is the unit of atoms strings)
        spec = MoleculeSpec(PRESETS[key], basis=basis, charge=charge, spin=spin,
                            unit="angstrom", name=key)
    else:
        spec = MoleculeSpec(text_or_preset, basis=basis, charge=charge, spin=spin, unit=unit)
    validate(spec)
    return spec


def is_xyz_path(text: str) -> bool:
    """True when ``text`` names an ``.xyz`` file (by its suffix, case-insensitive)."""
    return isinstance(text, str) and text.strip().lower().endswith(".xyz")


def read_xyz(path: str | Path) -> str:
    """The atoms of an XYZ file as an atoms string ``"H 0 0 0; H 0 0 0.734"`` (Angstrom).

    Format: line 1 the number of atoms ``N``, line 2 a comment (ignored), then ``N`` lines
    ``Symbol x y z`` in Angstrom; trailing blank lines are allowed. Raises InputError (one line)
    for a missing file, a bad count, too few or too many atom lines (one frame only) or a
    malformed atom line.
    """
    path = Path(str(path).strip())
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the xyz file {str(path)!r}: "
                         f"{getattr(err, 'strerror', None) or type(err).__name__}") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    where = f"malformed xyz file {str(path)!r}"
    if not lines:
        raise InputError(f"{where}: it is empty")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise InputError(f"{where}: line 1 must be the number of atoms, got "
                         f"{lines[0].strip()[:40]!r}") from None
    if count < 1:
        raise InputError(f"{where}: the number of atoms must be positive, got {count}")
    atoms = lines[2:]
    if len(atoms) != count:
        raise InputError(f"{where}: line 1 announces {count} atoms, {len(atoms)} atom lines "
                         "follow the comment line (one frame only)")
    for k, line in enumerate(atoms, start=3):
        tokens = line.split()
        if len(tokens) != 4:
            raise InputError(f"{where}: line {k} {line.strip()[:40]!r} is not 'Symbol x y z'")
        try:
            [float(t) for t in tokens[1:]]
        except ValueError:
            raise InputError(f"{where}: line {k} {line.strip()[:40]!r} has a coordinate that "
                             "is not a number") from None
    return "; ".join(" ".join(line.split()) for line in atoms)


def _preset_key(name: str) -> str | None:
    lower = {k.lower(): k for k in PRESETS}
    return lower.get(name.strip().lower())


def element_charge(symbol: str) -> int:
    """Nuclear charge Z of an element symbol (case-insensitive, e.g. ``"li"`` -> 3).

    Raises:
        InputError: unknown element (ghost atoms and isotopes are not supported).
    """
    from pyscf.data import elements

    lookup = {s.lower(): z for z, s in enumerate(elements.ELEMENTS) if z > 0}
    if symbol.strip().lower() not in lookup:
        raise InputError(f"unknown element {symbol!r}")
    return lookup[symbol.strip().lower()]


def canonical_symbol(symbol: str) -> str:
    """The element's symbol as PySCF spells it (``"li"`` -> ``"Li"``)."""
    from pyscf.data import elements

    return elements.ELEMENTS[element_charge(symbol)]


def parse_atoms(atoms: str) -> list[tuple[str, tuple[float, float, float]]]:
    """``[(symbol, (x, y, z)), ...]`` from an XYZ-style string; symbols are normalized ("li" -> "Li").

    Raises InputError on malformed lines or unknown elements.
    """
    from pyscf.data import elements

    known = {e.lower(): e for e in elements.ELEMENTS[1:]}
    lines = [ln.strip() for ln in re.split(r"[;\n]", atoms) if ln.strip()]
    if not lines:
        raise InputError("the molecule has no atoms")
    out = []
    for ln in lines:
        tokens = ln.replace(",", " ").split()
        if len(tokens) != 4:
            raise InputError(f"malformed atom line {ln!r}: expected 'Symbol x y z'")
        m = re.fullmatch(r"([A-Za-z]{1,3})\d*", tokens[0])
        if m is None or m.group(1).lower() not in known:
            raise InputError(f"unknown element {tokens[0]!r} in atom line {ln!r}")
        try:
            xyz = tuple(float(t) for t in tokens[1:])
        except ValueError:
            raise InputError(f"malformed atom line {ln!r}: coordinates must be numbers") from None
        if not all(math.isfinite(c) for c in xyz):
            raise InputError(f"malformed atom line {ln!r}: coordinates must be finite")
        out.append((known[m.group(1).lower()], xyz))
    return out


def normalized_unit(unit: str) -> str:
    """``"angstrom"`` or ``"bohr"``; InputError for anything else."""
    u = _UNITS.get(str(unit).strip().lower())
    if u is None:
        raise InputError(f"unknown unit {unit!r}: use 'angstrom' or 'bohr'")
    return u


def validate(spec: MoleculeSpec) -> None:
    """Raise InputError (one line) if ``spec`` cannot describe a molecule PySCF can treat."""
    from pyscf.data import elements

    unit = normalized_unit(spec.unit)
    atoms = parse_atoms(spec.atoms)
    if not isinstance(spec.charge, int | np.integer) or not isinstance(spec.spin, int | np.integer):
        raise InputError(f"charge and spin must be integers, got {spec.charge!r}, {spec.spin!r}")
    n_elec = sum(elements.charge(s) for s, _ in atoms) - spec.charge
    if n_elec < 0:
        raise InputError(f"charge {spec.charge} leaves a negative number of electrons ({n_elec})")
    if n_elec == 0:
        raise InputError(f"charge {spec.charge} leaves no electrons")
    if abs(spec.spin) > n_elec:
        raise InputError(f"spin 2S = {spec.spin} is impossible with {n_elec} electrons")
    if (n_elec - spec.spin) % 2 != 0:
        raise InputError(
            f"{n_elec} electrons cannot have spin 2S = {spec.spin}: N and 2S must have the "
            f"same parity (e.g. spin={abs(spec.spin) - 1 if spec.spin else 1})"
        )
    scale = ANGSTROM_TO_BOHR if unit == "angstrom" else 1.0
    xyz = np.array([c for _, c in atoms]) * scale
    for i in range(len(atoms)):
        for j in range(i):
            d = float(np.linalg.norm(xyz[i] - xyz[j]))
            if d < MIN_ATOM_DISTANCE_BOHR:
                raise InputError(
                    f"atoms {j} ({atoms[j][0]}) and {i} ({atoms[i][0]}) are {d:.3g} bohr apart "
                    f"(minimum {MIN_ATOM_DISTANCE_BOHR} bohr)"
                )
    _check_basis(spec.basis, sorted({s for s, _ in atoms}))


def _check_basis(basis: str, symbols: list[str]) -> None:
    from pyscf.gto import basis as pyscf_basis

    if not isinstance(basis, str) or not basis.strip():
        raise InputError(f"basis must be a non-empty name, got {basis!r}")
    for s in symbols:
        try:
            shells = pyscf_basis.load(basis, s)
        except Exception:  # PySCF raises KeyError, RuntimeError, BasisNotFoundError, ...
            raise InputError(f"basis {basis!r} is unknown to PySCF or has no {s}") from None
        if not shells:
            raise InputError(f"basis {basis!r} has no functions for element {s}")


def build_mole(spec: MoleculeSpec) -> Any:
    """A built ``pyscf.gto.Mole`` (validated first, ``verbose=0``)."""
    from pyscf import gto

    validate(spec)
    atoms = parse_atoms(spec.atoms)
    return gto.M(
        atom=[(s, c) for s, c in atoms],
        basis=spec.basis,
        charge=int(spec.charge),
        spin=int(spec.spin),
        unit="Angstrom" if normalized_unit(spec.unit) == "angstrom" else "Bohr",
        verbose=0,
    )


@dataclass(frozen=True, eq=False)
class MolecularIntegrals:
    """MO integrals of ``H`` (module docstring): ``h1 [n, n]``, ``h2 [n, n, n, n]`` = (pq|rs).

    ``h2`` has the full 8-fold symmetry (pq|rs) = (qp|rs) = (rs|pq) = ...; ``e_core`` is the
    nuclear repulsion plus the frozen-core energy; ``n_alpha``/``n_beta`` count active electrons.
    """

    h1: np.ndarray
    h2: np.ndarray
    e_core: float
    n_orbitals: int
    n_alpha: int
    n_beta: int
    mo_coeff: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        n = self.n_orbitals
        if np.shape(self.h1) != (n, n) or np.shape(self.h2) != (n, n, n, n):
            raise InputError(
                f"integral shapes {np.shape(self.h1)}, {np.shape(self.h2)} do not match {n} orbitals"
            )
        if not (0 <= self.n_alpha <= n and 0 <= self.n_beta <= n):
            raise InputError(
                f"{self.n_alpha} alpha / {self.n_beta} beta electrons do not fit in {n} orbitals"
            )

    @property
    def n_electrons(self) -> int:
        """N_alpha + N_beta: electrons in the orbital space of the integrals."""
        return self.n_alpha + self.n_beta

    @property
    def spin(self) -> int:
        """2S = N_alpha - N_beta."""
        return self.n_alpha - self.n_beta

    def hf_energy(self) -> float:
        """Energy of the aufbau determinant (lowest orbitals filled) with these integrals."""
        h1, h2 = self.h1, self.h2
        occ_a, occ_b = np.arange(self.n_alpha), np.arange(self.n_beta)
        jj = np.einsum("iijj->ij", h2)
        kk = np.einsum("ijji->ij", h2)
        e = self.e_core + np.trace(h1[np.ix_(occ_a, occ_a)]) + np.trace(h1[np.ix_(occ_b, occ_b)])
        for oa, ob in ((occ_a, occ_a), (occ_b, occ_b)):
            e += 0.5 * (jj[np.ix_(oa, ob)].sum() - kk[np.ix_(oa, ob)].sum())
        e += jj[np.ix_(occ_a, occ_b)].sum()
        return float(e)


def screen_integrals(integrals: MolecularIntegrals, threshold: float) -> MolecularIntegrals:
    """``integrals`` with every two-electron integral ``|(pq|rs)| < threshold`` set to 0.

    The 8-fold symmetry is kept (symmetric copies are equal, so all are removed together).
    ``threshold = 0`` returns ``integrals`` unchanged. The shift of every eigenvalue (and of
    the energy of any fixed state) is at most :func:`screening_bound`.
    """
    threshold = check_eri_threshold(threshold)
    if threshold == 0.0:
        return integrals
    h2 = np.where(np.abs(integrals.h2) < threshold, 0.0, integrals.h2)
    return MolecularIntegrals(h1=integrals.h1, h2=np.ascontiguousarray(h2),
                              e_core=integrals.e_core, n_orbitals=integrals.n_orbitals,
                              n_alpha=integrals.n_alpha, n_beta=integrals.n_beta,
                              mo_coeff=integrals.mo_coeff)


def screening_bound(integrals: MolecularIntegrals, threshold: float) -> float:
    """Upper bound (Hartree) on the energy change of :func:`screen_integrals` at ``threshold``.

    ``Delta H = 1/2 sum_{pqrs} d_pqrs sum_{sigma,tau} a+_{p sigma} a+_{r tau} a_{s tau} a_{q sigma}``
    with ``|d| < threshold`` the removed integrals; each operator product has norm <= 1, so
    ``||Delta H|| <= 2 sum |d|``
    and (Weyl) every eigenvalue moves by at most that much.
    """
    threshold = check_eri_threshold(threshold)
    small = np.abs(integrals.h2) < threshold
    return float(2.0 * np.abs(integrals.h2[small]).sum())


def check_eri_threshold(threshold: float) -> float:
    """``threshold`` as a float if finite and >= 0, else InputError."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise InputError(f"integral screening threshold must be a number, got {threshold!r}") from None
    if not (math.isfinite(value) and value >= 0.0):
        raise InputError(f"integral screening threshold must be finite and >= 0, got {threshold}")
    return value


def compute_integrals(
    spec: MoleculeSpec | Any,
    frozen_core: bool | int = False,
    cas: tuple[int, int] | None = None,
    eri_threshold: float = ERI_SCREENING_THRESHOLD,
) -> tuple[MolecularIntegrals, Any]:
    """MO integrals of ``spec`` and the converged PySCF SCF object (RHF, or ROHF if ``spin != 0``).

    ``spec`` may also be a ``pyscf.gto.Mole`` or an SCF object (:func:`from_pyscf`).

    ``frozen_core``: ``True`` freezes PySCF's chemical core (``pyscf.data.elements.chemcore``:
    1s for B-Ne, none for H-Be), an int freezes that many lowest orbitals.
    ``cas = (n_electrons, n_orbitals)``: active space of the lowest virtual-most orbitals above a
    doubly occupied core, as in ``pyscf.mcscf.CASCI(mf, n_orbitals, n_electrons)``.
    ``eri_threshold``: MO two-electron integrals below it in magnitude are set to 0
    (:func:`screen_integrals`; 0 keeps them all). The SCF itself is not screened.
    """
    from pyscf import scf

    if not isinstance(spec, MoleculeSpec):
        if _is_pyscf_mole(spec) or _is_pyscf_scf(spec):
            return from_pyscf(spec, frozen=frozen_core, cas=cas, eri_threshold=eri_threshold,
                              with_scf=True)
        raise InputError(f"compute_integrals takes a MoleculeSpec, a pyscf.gto.Mole or a PySCF "
                         f"SCF object, got {type(spec).__name__}")
    eri_threshold = check_eri_threshold(eri_threshold)
    _check_frozen_or_cas(frozen_core, cas)
    mol = build_mole(spec)
    mf = scf.RHF(mol) if mol.spin == 0 else scf.ROHF(mol)
    mf.kernel()
    if not mf.converged:
        mf = mf.newton()
        mf.kernel()
        if not mf.converged:
            raise InputError(f"the SCF of {spec.label} in {spec.basis} did not converge")
    return _integrals_from_scf(mf, frozen_core, cas, eri_threshold, spec.label,
                               fix_signs=True), mf


def _check_frozen_or_cas(frozen_core: bool | int, cas: tuple[int, int] | None) -> None:
    if frozen_core is not False and frozen_core != 0 and cas is not None:
        raise InputError("give either frozen_core or cas, not both (a CAS already freezes its core)")


def _is_pyscf_mole(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyscf") and hasattr(obj, "atom_coords") \
        and hasattr(obj, "nelectron") and not hasattr(obj, "mo_coeff")


def _is_pyscf_scf(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyscf") and hasattr(obj, "mo_coeff") \
        and hasattr(obj, "mol") and hasattr(obj, "get_hcore")


def from_pyscf(
    mol_or_mf: Any,
    frozen: bool | int = False,
    cas: tuple[int, int] | None = None,
    eri_threshold: float = ERI_SCREENING_THRESHOLD,
    with_scf: bool = False,
) -> MolecularIntegrals | tuple[MolecularIntegrals, Any]:
    """MO integrals (module docstring) of a ``pyscf.gto.Mole`` or a PySCF SCF object.

    A ``Mole`` (built, e.g. ``gto.M(atom=..., basis=...)``) gets an RHF (closed shell) or ROHF
    (``mol.spin != 0``) like :func:`compute_integrals`; an SCF object (``scf.RHF(mol)``,
    ``ROHF``; run or not) keeps its own ``mo_coeff`` (its kernel runs first when it has none).
    ``frozen``: True (PySCF's chemical core) or a number of lowest orbitals;
    ``cas = (n_electrons, n_orbitals)`` as in ``mcscf.CASCI``. Energies in Hartree.

    Returns the :class:`MolecularIntegrals` (with ``with_scf``: also the SCF object). Raises
    InputError for anything else (one line naming what is accepted), for unrestricted
    orbitals (UHF/UKS: two sets of orbitals) and for an unbuilt ``Mole``.
    """
    from pyscf import scf

    eri_threshold = check_eri_threshold(eri_threshold)
    _check_frozen_or_cas(frozen, cas)
    if _is_pyscf_scf(mol_or_mf):
        mf = mol_or_mf
        if mf.mo_coeff is None:
            mf.kernel()
    elif _is_pyscf_mole(mol_or_mf):
        mol = mol_or_mf
        if getattr(mol, "_atm", None) is None or len(mol._atm) == 0:
            raise InputError("the pyscf.gto.Mole is not built: call mol.build() (or use gto.M)")
        mf = scf.RHF(mol) if mol.spin == 0 else scf.ROHF(mol)
        mf.verbose = 0
        mf.kernel()
    else:
        raise InputError("from_pyscf takes a pyscf.gto.Mole or a restricted PySCF SCF object "
                         f"(scf.RHF / ROHF), got {type(mol_or_mf).__name__}")
    if np.ndim(mf.mo_coeff) != 2:
        raise InputError(f"from_pyscf needs restricted orbitals (RHF / ROHF), got "
                         f"{type(mf).__name__} with {np.ndim(mf.mo_coeff)}-d mo_coeff")
    label = "".join(mf.mol.atom_symbol(i) for i in range(mf.mol.natm))
    integrals = _integrals_from_scf(mf, frozen, cas, eri_threshold, label)
    return (integrals, mf) if with_scf else integrals


def _integrals_from_scf(mf: Any, frozen_core: bool | int, cas: tuple[int, int] | None,
                        eri_threshold: float, label: str,
                        fix_signs: bool = False) -> MolecularIntegrals:
    """The integrals of :func:`compute_integrals` in the orbitals ``mf.mo_coeff`` (with
    :func:`fix_orbital_signs` when ``fix_signs``: the SCF is ours, not the caller's)."""
    from pyscf import ao2mo
    from pyscf.data import elements

    mol = mf.mol
    n_mo = mf.mo_coeff.shape[1]
    n_elec = mol.nelectron
    if cas is not None:
        n_el_act, n_orb_act = _check_cas(cas, n_elec, mol.spin, n_mo)
        n_core = (n_elec - n_el_act) // 2
    elif frozen_core is not False and frozen_core != 0:
        n_core = int(elements.chemcore(mol)) if frozen_core is True else int(frozen_core)
        if n_core < 0 or 2 * n_core > n_elec - abs(mol.spin) or n_core >= n_mo:
            raise InputError(f"cannot freeze {n_core} core orbitals of {label}")
        n_orb_act, n_el_act = n_mo - n_core, n_elec - 2 * n_core
    else:
        n_core, n_orb_act, n_el_act = 0, n_mo, n_elec
    n_alpha = (n_el_act + mol.spin) // 2
    n_beta = n_el_act - n_alpha

    mo_all = np.asarray(mf.mo_coeff)
    if fix_signs:
        mo_all = fix_orbital_signs(align_degenerate_orbitals(mo_all, mf.mo_energy, mf.mo_occ))
    if n_core == 0 and n_orb_act == n_mo:
        c = mo_all
        h1 = c.T @ mf.get_hcore() @ c
        h2 = ao2mo.restore(1, ao2mo.kernel(mol, c), n_mo)
        e_core = float(mol.energy_nuc())
        mo = c
    else:
        from pyscf import mcscf

        mc = mcscf.CASCI(mf, n_orb_act, (n_alpha, n_beta))
        mc.mo_coeff = mo_all  # the fixed signs, without changing the SCF object
        h1, e_core = mc.get_h1eff()
        h2 = ao2mo.restore(1, mc.get_h2eff(), n_orb_act)
        mo = mo_all[:, n_core : n_core + n_orb_act]
    integrals = MolecularIntegrals(
        h1=np.ascontiguousarray(h1, dtype=np.float64),
        h2=np.ascontiguousarray(h2, dtype=np.float64),
        e_core=float(e_core),
        n_orbitals=int(n_orb_act),
        n_alpha=int(n_alpha),
        n_beta=int(n_beta),
        mo_coeff=np.asarray(mo),
    )
    return screen_integrals(integrals, eri_threshold)


def align_degenerate_orbitals(mo_coeff: np.ndarray, mo_energy: np.ndarray,
                              mo_occ: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    """``mo_coeff [n_ao, n_mo]`` with each set of degenerate orbitals (orbital energies within
    ``tol`` Hartree of their neighbour, the same occupation) rotated among themselves to one
    basis that does not depend on how the SCF returned them.

    A degenerate set (the pi pair of N2 or C2) is defined only up to a rotation, and the SCF
    returns a different one from one process to the next; the integrals, the selected start
    and what a network learns then change with it. Within a set of ``d`` orbitals ``C`` [n_ao,
    d], the AO of largest coefficient norm (the lowest index among those within 1e-6 of the
    largest: symmetric AOs tie) fixes the first orbital, the combination with the largest
    coefficient on that AO; the next AO, from what is left orthogonal to it, the second; and
    so on. For a molecule along a coordinate axis this gives the symmetry-adapted pi_x and
    pi_y. Orbital energies and the Hartree-Fock determinant are unchanged (rotations among
    orbitals of equal energy and occupation).
    """
    c = np.array(mo_coeff, dtype=np.float64, copy=True)
    energy, occ = np.asarray(mo_energy, dtype=float), np.asarray(mo_occ, dtype=float)
    start = 0
    for k in range(1, len(energy) + 1):
        if k < len(energy) and abs(energy[k] - energy[k - 1]) < tol and occ[k] == occ[k - 1]:
            continue
        if k - start > 1:
            block = c[:, start:k]
            rest = np.eye(k - start)
            basis = []
            for _ in range(k - start):
                rows = block @ rest  # coefficients of the part not yet fixed
                norms = np.linalg.norm(rows, axis=1)
                ao = int(np.argmax(norms >= norms.max() * (1 - 1e-6)))
                u = rest @ rest.T @ block[ao]
                u /= np.linalg.norm(u)
                basis.append(u)
                # what is left: any orthonormal basis of the complement of u (only its span
                # enters the next choice)
                rest = np.linalg.svd(rest - np.outer(u, u @ rest))[0][:, : k - start - len(basis)]
            c[:, start:k] = block @ np.stack(basis, axis=1)
        start = k
    return c


def fix_orbital_signs(mo_coeff: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """``mo_coeff [n_ao, n_mo]`` with the sign of each orbital (column) fixed: its first AO
    coefficient within ``tol`` of the column's largest magnitude is made positive.

    An SCF solver returns each orbital up to a sign, and which sign can change from one process
    to the next (threaded linear algebra), changing the signs of the determinants and so the
    wavefunction a network has learned. Degenerate orbitals (the pi pair of N2) are defined
    only up to a rotation among themselves: :func:`align_degenerate_orbitals` fixes that.
    """
    c = np.array(mo_coeff, dtype=np.float64, copy=True)
    mag = np.abs(c)
    first = np.argmax(mag >= mag.max(axis=0, keepdims=True) - tol, axis=0)
    signs = np.sign(c[first, np.arange(c.shape[1])])
    return c * np.where(signs == 0, 1.0, signs)


def orbital_invariants(integrals: MolecularIntegrals) -> np.ndarray:
    """What a rotation of the orbitals (sign changes included) leaves unchanged: ``e_core``,
    the sorted eigenvalues of ``h1`` and of ``h2`` as the symmetric ``[n^2, n^2]`` matrix
    ``(pq|rs)``, in Hartree (one vector)."""
    n = integrals.n_orbitals
    h1 = np.asarray(integrals.h1, dtype=np.float64)
    h2 = np.asarray(integrals.h2, dtype=np.float64).reshape(n * n, n * n)
    return np.concatenate([[integrals.e_core], np.linalg.eigvalsh(0.5 * (h1 + h1.T)),
                           np.linalg.eigvalsh(0.5 * (h2 + h2.T))])


def same_hamiltonian(a: MolecularIntegrals, b: MolecularIntegrals, atol: float = 1e-6) -> bool:
    """Whether ``a`` and ``b`` are one Hamiltonian in two choices of orbitals (signs or
    rotations): the same sizes and :func:`orbital_invariants` within ``atol`` Hartree."""
    if (a.n_orbitals, a.n_alpha, a.n_beta) != (b.n_orbitals, b.n_alpha, b.n_beta):
        return False
    return bool(np.allclose(orbital_invariants(a), orbital_invariants(b), rtol=0.0, atol=atol))


def dipole_one_body(mol: Any, mo_coeff: np.ndarray, core_coeff: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The dipole operator in the orbitals ``mo_coeff [n_ao, n]``, atomic units (e bohr):
    ``mu = constant + sum_pq d[:, p, q] E_pq`` with ``E_pq = sum_s a+_ps a_qs``,

        constant = sum_A Z_A R_A - 2 sum_{c in core} <c| r |c>,    d[:, p, q] = -<p| r |q>,

    ``core_coeff [n_ao, n_core]`` the doubly occupied frozen orbitals; PySCF's ``int1e_r``
    about the origin of ``mol``'s coordinates. Returns ``(constant [3], d [3, n, n])``.
    """
    c = np.asarray(mo_coeff)
    with mol.with_common_orig((0.0, 0.0, 0.0)):
        r_ao = np.asarray(mol.intor_symmetric("int1e_r", comp=3))
    constant = np.einsum("a,ax->x", mol.atom_charges(), mol.atom_coords())
    if core_coeff is not None and np.size(core_coeff):
        core = np.asarray(core_coeff)
        constant = constant - 2.0 * np.einsum("xij,ic,jc->x", r_ao, core, core)
    d = -np.einsum("ip,xij,jq->xpq", c, r_ao, c)
    return constant, d


def dipole_moment(mol: Any, mo_coeff: np.ndarray, gamma: np.ndarray,
                  core_coeff: np.ndarray | None = None) -> np.ndarray:
    """Dipole moment ``mu [3]`` in atomic units (e bohr; 1 a.u. = 2.541746 Debye) about the
    origin of ``mol``'s coordinates:

        mu = sum_A Z_A R_A - sum_pq gamma_pq <p| r |q> - 2 sum_{c in core} <c| r |c>,

    with ``gamma [n, n]`` the spin-summed 1-RDM ``gamma_pq = <E_pq>`` in the orbitals
    ``mo_coeff [n_ao, n]`` and ``core_coeff`` the frozen doubly occupied orbitals
    (:func:`dipole_one_body`).
    """
    gamma = np.asarray(gamma)
    n = np.shape(mo_coeff)[1]
    if gamma.shape != (n, n):
        raise InputError(f"the 1-RDM has shape {gamma.shape}, the orbitals are {n}")
    constant, d = dipole_one_body(mol, mo_coeff, core_coeff)
    return constant + np.einsum("xpq,pq->x", d, np.real(gamma))


def core_orbitals(mf: Any, integrals: MolecularIntegrals) -> np.ndarray:
    """The frozen core of ``integrals`` made by :func:`compute_integrals` / :func:`from_pyscf`
    from ``mf``: its ``(N - N_active) / 2`` lowest orbitals, ``[n_ao, n_core]``."""
    n_core = (mf.mol.nelectron - integrals.n_electrons) // 2
    return mf.mo_coeff[:, :n_core]


def dipole_from_rdm(mf: Any, integrals: MolecularIntegrals, gamma: np.ndarray) -> np.ndarray:
    """:func:`dipole_moment` for the integrals of :func:`compute_integrals` / :func:`from_pyscf`
    (their active orbitals; the frozen core is the ``(N - N_active) / 2`` lowest of ``mf``)."""
    if integrals.mo_coeff is None:
        raise InputError("the integrals carry no orbitals (read from a file): no dipole moment")
    return dipole_moment(mf.mol, integrals.mo_coeff, gamma, core_orbitals(mf, integrals))


def _check_cas(cas: tuple[int, int], n_elec: int, spin: int, n_mo: int) -> tuple[int, int]:
    try:
        n_el, n_orb = (int(v) for v in cas)
    except (TypeError, ValueError):
        raise InputError(f"cas must be (n_electrons, n_orbitals), got {cas!r}") from None
    if n_orb <= 0 or n_el <= 0:
        raise InputError(f"CAS({n_el}, {n_orb}) needs positive electron and orbital counts")
    if n_orb > n_mo:
        raise InputError(f"CAS({n_el}, {n_orb}) has more orbitals than the basis ({n_mo})")
    if n_el > n_elec:
        raise InputError(f"CAS({n_el}, {n_orb}) has more electrons than the molecule ({n_elec})")
    if (n_elec - n_el) % 2 != 0:
        raise InputError(
            f"CAS({n_el}, {n_orb}) leaves an odd number of core electrons ({n_elec - n_el}); "
            "the core must be doubly occupied"
        )
    if (n_el - spin) % 2 != 0 or abs(spin) > n_el:
        raise InputError(f"CAS({n_el}, {n_orb}) cannot hold spin 2S = {spin}")
    n_core = (n_elec - n_el) // 2
    if n_core + n_orb > n_mo:
        raise InputError(
            f"CAS({n_el}, {n_orb}) with {n_core} core orbitals needs {n_core + n_orb} orbitals, "
            f"the basis has {n_mo}"
        )
    if (n_el + abs(spin)) // 2 > n_orb:
        raise InputError(f"{n_el} electrons with 2S = {spin} do not fit in {n_orb} orbitals")
    return n_el, n_orb


# ----------------------------------------------------------------------------- files


def write_fcidump(path: str | Path, integrals: MolecularIntegrals) -> None:
    """Write ``integrals`` as a Molpro FCIDUMP file (17 significant digits, no symmetry)."""
    from pyscf.tools import fcidump

    fcidump.from_integrals(
        str(path),
        integrals.h1,
        integrals.h2,
        integrals.n_orbitals,
        (integrals.n_alpha, integrals.n_beta),
        nuc=integrals.e_core,
        ms=integrals.spin,
        tol=0.0,
        float_format=" %.17g",
    )


def read_fcidump(path: str | Path) -> MolecularIntegrals:
    """Integrals from an FCIDUMP file (``MS2`` gives 2S; 8-fold ``h2`` restored to 4 indices)."""
    from hamiltonians.fcidump import parse_fcidump

    if not Path(path).is_file():
        raise InputError(f"FCIDUMP file {str(path)!r} does not exist")
    try:
        d = parse_fcidump(Path(path).read_text())
    except KeyError as e:
        raise InputError(f"FCIDUMP {str(path)!r}: missing or malformed header ({e})") from None
    except Exception as e:  # noqa: BLE001 - any parse failure is one line
        raise InputError(f"cannot read FCIDUMP file {str(path)!r}: {e}") from None
    n, n_elec, ms2 = d["NORB"], d["NELEC"], d["MS2"]
    if n < 1 or n_elec < 1:
        raise InputError(f"FCIDUMP {str(path)!r}: NORB={n} and NELEC={n_elec} must be >= 1")
    if (n_elec - ms2) % 2 != 0 or abs(ms2) > n_elec:
        raise InputError(f"FCIDUMP {str(path)!r}: NELEC={n_elec} and MS2={ms2} are inconsistent")
    if (n_elec + ms2) // 2 > n or (n_elec - ms2) // 2 > n:
        raise InputError(f"FCIDUMP {str(path)!r}: NELEC={n_elec} electrons do not fit in "
                         f"NORB={n} orbitals")
    h2 = d["H2"]
    for name, value in (("one-electron", d["H1"]), ("two-electron", h2),
                        ("core energy", d.get("ECORE", 0.0))):
        if not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
            raise InputError(f"FCIDUMP {str(path)!r}: the {name} integrals hold NaN or inf")
    return MolecularIntegrals(
        h1=np.asarray(d["H1"], dtype=np.float64),
        h2=np.ascontiguousarray(h2, dtype=np.float64),
        e_core=float(d.get("ECORE", 0.0)),
        n_orbitals=n,
        n_alpha=(n_elec + ms2) // 2,
        n_beta=(n_elec - ms2) // 2,
    )


def save_npz(path: str | Path, integrals: MolecularIntegrals) -> None:
    """Save ``integrals`` to a compressed ``.npz`` (readable without PySCF)."""
    arrays: dict[str, np.ndarray] = {
        "h1": integrals.h1,
        "h2": integrals.h2,
        "e_core": np.float64(integrals.e_core),
        "n_orbitals": np.int64(integrals.n_orbitals),
        "n_alpha": np.int64(integrals.n_alpha),
        "n_beta": np.int64(integrals.n_beta),
    }
    if integrals.mo_coeff is not None:
        arrays["mo_coeff"] = integrals.mo_coeff
    np.savez_compressed(path, **arrays)


def load_npz(path: str | Path) -> MolecularIntegrals:
    """Integrals saved by :func:`save_npz`."""
    try:
        with np.load(path) as d:
            return MolecularIntegrals(
                h1=np.array(d["h1"]),
                h2=np.array(d["h2"]),
                e_core=float(d["e_core"]),
                n_orbitals=int(d["n_orbitals"]),
                n_alpha=int(d["n_alpha"]),
                n_beta=int(d["n_beta"]),
                mo_coeff=np.array(d["mo_coeff"]) if "mo_coeff" in d else None,
            )
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"cannot read integrals from {str(path)!r}: {e}") from None
