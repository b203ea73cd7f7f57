"""Quantum-chemistry reference energies (HF, MP2, CCSD, CCSD(T), FCI, DMRG, selected CI) with an
on-disk cache.

All energies are total energies in Hartree (``e_core`` included) computed in the same orbital
space as :func:`hamiltonians.molecule.compute_integrals` (full, frozen core, or CAS), so they are
directly comparable with a variational energy of
:class:`hamiltonians.second_quantized.MolecularHamiltonian` built from those integrals.

FCI returns the lowest state with the requested total spin: Davidson with several roots, keeping
the lowest root with ``<S^2> = S (S + 1)``, ``S = (N_alpha - N_beta) / 2`` (a single root can
land on a state of another spin, e.g. the triplet of C2/STO-3G near -74.6459 instead of the
singlet -74.69078192).

Past FCI (:mod:`hamiltonians.large_reference`): ``"dmrg"`` (block2, bond-dimension
extrapolation, with an uncertainty) and ``"sci"`` (PySCF selected CI). :func:`reference_energy`
computes the one reference a benchmark compares with (``auto``: FCI up to
``MAX_FCI_DETERMINANTS`` determinants, else DMRG).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hamiltonians.large_reference import (  # noqa: F401  (MAX_FCI_DETERMINANTS re-exported)
    DEFAULT_BOND_DIMS,
    DEFAULT_SCI_CUTOFFS,
    MAX_FCI_DETERMINANTS,
    check_bond_dims,
    check_sci_cutoffs,
    dmrg_from_integrals,
    n_determinants,
    sci_from_integrals,
)
from hamiltonians.molecule import (
    ERI_SCREENING_THRESHOLD,
    MolecularIntegrals,
    MoleculeSpec,
    check_eri_threshold,
    compute_integrals,
    normalized_unit,
    parse_atoms,
)
from nqs.errors import InputError

#: Methods computed by default.
METHODS = ("hf", "mp2", "ccsd", "ccsd_t", "fci")
#: Every method :func:`reference_energies` knows (dmrg and sci only on request).
ALL_METHODS = METHODS + ("dmrg", "sci")
_CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$NQS_CACHE_DIR/references`` if set, else ``~/.cache/nqs/references``."""
    env = os.environ.get("NQS_CACHE_DIR")
    base = Path(env) if env else Path.home() / ".cache" / "nqs"
    return base / "references"


@dataclass(frozen=True)
class ReferenceOptions:
    """How the reference past HF is computed (``bench-fci --reference`` and its options).

    ``method``: auto, fci, dmrg or sci (see :func:`hamiltonians.large_reference.choose_reference`);
    ``bond_dims``: DMRG bond dimensions of the extrapolation; ``sweeps_per_dim``: sweeps at each;
    ``sci_cutoffs``: selected-CI selection cutoffs; ``max_fci_determinants``: the FCI limit;
    ``dmrg_threads``: block2's threads (not part of the cache key: the result does not depend
    on it beyond rounding).
    """

    method: str = "auto"
    bond_dims: tuple[int, ...] = DEFAULT_BOND_DIMS
    sweeps_per_dim: int = 4
    sci_cutoffs: tuple[float, ...] = DEFAULT_SCI_CUTOFFS
    max_fci_determinants: int = MAX_FCI_DETERMINANTS
    dmrg_threads: int = 1

    def validated(self) -> ReferenceOptions:
        """A copy with checked, normalized fields (InputError on bad values)."""
        from hamiltonians.large_reference import check_reference

        check_reference(self.method)
        if int(self.sweeps_per_dim) < 1:
            raise InputError(f"DMRG sweeps per bond dimension must be positive, got {self.sweeps_per_dim}")
        if int(self.max_fci_determinants) < 1:
            raise InputError(f"the FCI limit must be positive, got {self.max_fci_determinants}")
        if int(self.dmrg_threads) < 1:
            raise InputError(f"DMRG threads must be positive, got {self.dmrg_threads}")
        return replace(self, bond_dims=check_bond_dims(self.bond_dims),
                       sci_cutoffs=check_sci_cutoffs(self.sci_cutoffs),
                       sweeps_per_dim=int(self.sweeps_per_dim),
                       max_fci_determinants=int(self.max_fci_determinants))

    def settings_of(self, method: str) -> dict[str, Any] | None:
        """The options that change a ``method``'s result (stored beside it in the cache)."""
        if method == "dmrg":
            return {"bond_dims": list(self.bond_dims), "sweeps_per_dim": self.sweeps_per_dim}
        if method == "sci":
            return {"cutoffs": list(self.sci_cutoffs)}
        return None


def cache_key(spec: MoleculeSpec, frozen_core: bool | int = False, cas: tuple[int, int] | None = None,
              eri_threshold: float = ERI_SCREENING_THRESHOLD) -> str:
    """sha256 of (normalized atoms, basis, charge, spin, unit, frozen_core, cas, integral screening
    threshold, PySCF version)."""
    import pyscf

    atoms = [[s, [f"{c:.10f}" for c in xyz]] for s, xyz in parse_atoms(spec.atoms)]
    payload = {
        "atoms": atoms,
        "basis": spec.basis.strip().lower(),
        "charge": int(spec.charge),
        "spin": int(spec.spin),
        "unit": normalized_unit(spec.unit),
        "frozen_core": frozen_core if isinstance(frozen_core, bool) else int(frozen_core),
        "cas": list(cas) if cas is not None else None,
        "eri_threshold": float(eri_threshold),
        "pyscf": pyscf.__version__,
        "format": _CACHE_FORMAT,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def reference_energies(
    spec: MoleculeSpec,
    frozen_core: bool | int = False,
    cas: tuple[int, int] | None = None,
    methods: tuple[str, ...] = METHODS,
    cache_dir: str | Path | None = None,
    max_fci_determinants: int = MAX_FCI_DETERMINANTS,
    eri_threshold: float = ERI_SCREENING_THRESHOLD,
    options: ReferenceOptions | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Reference energies of ``spec`` in the orbital space of ``compute_integrals(spec, ...)``.

    Returns ``{"e_hf", "e_mp2", "e_ccsd", "e_ccsd_t", "e_fci": float | None, "s2_fci": float | None,
    "notes": {method: why it is None}, "key": cache key}`` for the default ``methods``; with
    ``"dmrg"`` / ``"sci"`` in ``methods`` also ``e_dmrg``, ``e_dmrg_error``, ``dmrg_details``
    (and the same for sci). ``time_<m>_s`` (fci, dmrg, sci) is the wall time of the run that
    computed the value (possibly an earlier one, read from the cache), ``cached`` the methods
    read from the cache. A requested method that fails (or an FCI space above the FCI limit)
    gives None and a note. Results are cached as JSON in ``cache_dir`` (default
    :func:`default_cache_dir`); only missing methods are computed, and DMRG / selected CI again
    when their options (``options.bond_dims``, ...) differ from the cached ones.
    ``options`` (default: ``ReferenceOptions(max_fci_determinants=max_fci_determinants)``) sets
    the FCI limit and the DMRG / selected-CI parameters; ``echo`` gets DMRG's progress lines.
    """
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise InputError(f"unknown reference method(s) {unknown}; choose from {list(ALL_METHODS)}")
    opts = (options or ReferenceOptions(max_fci_determinants=max_fci_determinants)).validated()
    eri_threshold = check_eri_threshold(eri_threshold)
    key = cache_key(spec, frozen_core, cas, eri_threshold)
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cdir / f"{key}.json"
    cached: dict[str, Any] = {}
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            cached = {}
    notes: dict[str, str] = dict(cached.get("notes", {}))

    def is_missing(m: str) -> bool:
        if f"e_{m}" not in cached:
            return True
        if m in ("dmrg", "sci") and cached.get(f"{m}_settings") != opts.settings_of(m):
            return True  # other bond dimensions / cutoffs
        # an FCI skipped for its size is retried under another limit
        return (m == "fci" and cached["e_fci"] is None
                and cached.get("fci_limit") not in (None, opts.max_fci_determinants))

    missing = [m for m in methods if is_missing(m)]
    if missing:
        cached.update(_compute(spec, frozen_core, cas, tuple(missing), opts, eri_threshold, notes,
                               echo))
        cached["notes"] = notes
        cached["key"] = key
        cached["molecule"] = {
            "name": spec.name,
            "atoms": spec.atoms,
            "basis": spec.basis,
            "charge": spec.charge,
            "spin": spec.spin,
            "unit": spec.unit,
            "frozen_core": frozen_core,
            "cas": list(cas) if cas is not None else None,
            "eri_threshold": eri_threshold,
        }
        try:
            cdir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(cached, indent=1, sort_keys=True))
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache only costs recomputation
    out: dict[str, Any] = {f"e_{m}": cached.get(f"e_{m}") for m in methods}
    out["s2_fci"] = cached.get("s2_fci")
    for m in ("fci", "dmrg", "sci"):
        if m in methods:
            out[f"time_{m}_s"] = cached.get(f"time_{m}_s")
        if m in methods and m != "fci":
            out[f"e_{m}_error"] = cached.get(f"e_{m}_error")
            out[f"{m}_details"] = cached.get(f"{m}_details")
    out["notes"] = {m: notes[m] for m in methods if m in notes}
    out["cached"] = [m for m in methods if m not in missing]
    out["key"] = key
    return out


def _compute(
    spec: MoleculeSpec,
    frozen_core: bool | int,
    cas: tuple[int, int] | None,
    methods: tuple[str, ...],
    options: ReferenceOptions,
    eri_threshold: float,
    notes: dict[str, str],
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    integrals, mf = compute_integrals(spec, frozen_core=frozen_core, cas=cas,
                                      eri_threshold=eri_threshold)
    res: dict[str, Any] = {}
    if "hf" in methods:
        res["e_hf"] = float(mf.e_tot)
    post = [m for m in methods if m in ("mp2", "ccsd", "ccsd_t")]
    if post:
        res.update(_correlated(integrals, mf, frozen_core, cas, post, notes))
    for m in ("fci", "dmrg", "sci"):
        if m in methods:
            res.update(compute_reference(integrals, m, options, notes, echo))
    return res


def compute_reference(integrals: MolecularIntegrals, method: str, options: ReferenceOptions,
                      notes: dict[str, str] | None = None,
                      echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One reference (``method``: fci, dmrg or sci) of ``integrals``, uncached.

    Returns ``{"e_<m>": E | None, "time_<m>_s": wall seconds}`` plus, for fci, ``s2_fci`` and
    ``fci_limit``; for dmrg and sci, ``e_<m>_error``, ``<m>_details`` (the points behind the
    value) and ``<m>_settings``. A failure (or an FCI space above ``options.max_fci_determinants``)
    gives None and a line in ``notes``. ``echo`` gets DMRG's progress lines.
    """
    if method not in ("fci", "dmrg", "sci"):
        raise InputError(f"unknown reference method {method!r}; choose fci, dmrg or sci")
    notes = {} if notes is None else notes
    res: dict[str, Any] = {f"e_{method}": None, f"time_{method}_s": None}
    t0 = time.perf_counter()
    if method == "fci":
        ndet = n_determinants(integrals)
        res["s2_fci"] = None
        res["fci_limit"] = options.max_fci_determinants
        if ndet > options.max_fci_determinants:
            notes["fci"] = f"{ndet} determinants exceed the FCI limit {options.max_fci_determinants}"
            return res
        try:
            res["e_fci"], res["s2_fci"] = fci_from_integrals(integrals)
            notes.pop("fci", None)
        except Exception as exc:  # noqa: BLE001 - a reference may fail, the run goes on
            notes["fci"] = f"FCI failed: {exc}"
        res["time_fci_s"] = time.perf_counter() - t0
        return res
    res[f"e_{method}_error"] = None
    res[f"{method}_settings"] = options.settings_of(method)
    try:
        if method == "dmrg":
            r = dmrg_from_integrals(integrals, options.bond_dims, options.sweeps_per_dim,
                                    n_threads=options.dmrg_threads, echo=echo)
            details = {"bond_dims": list(r.bond_dims), "energies": list(r.energies),
                       "discarded_weights": list(r.discarded_weights), "e_best": r.e_best}
        else:
            r = sci_from_integrals(integrals, options.sci_cutoffs)
            details = {"cutoffs": list(r.cutoffs), "energies": list(r.energies),
                       "n_strings": [list(x) for x in r.n_strings], "s2": r.s2}
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        notes[method] = f"{method.upper()} failed: {exc}"
        return res
    notes.pop(method, None)
    res[f"e_{method}"] = r.energy
    res[f"e_{method}_error"] = r.error if math.isfinite(r.error) else None  # one M / cutoff
    res[f"{method}_details"] = details
    res[f"time_{method}_s"] = time.perf_counter() - t0
    return res


def reference_energy(refs: dict[str, Any], method: str) -> dict[str, Any]:
    """The reference a benchmark compares with, from a :func:`reference_energies` dict.

    Returns ``{"e_ref", "e_ref_error" (0 for FCI), "reference" (the method), "ref_wall_time_s",
    "ref_cached" (read from the cache)}``.
    """
    e = refs.get(f"e_{method}")
    err = 0.0 if method == "fci" and e is not None else refs.get(f"e_{method}_error")
    return {"e_ref": e, "e_ref_error": err, "reference": method,
            "ref_wall_time_s": refs.get(f"time_{method}_s"),
            "ref_cached": method in refs.get("cached", [])}


def _correlated(
    integrals: MolecularIntegrals,
    mf: Any,
    frozen_core: bool | int,
    cas: tuple[int, int] | None,
    methods: list[str],
    notes: dict[str, str],
) -> dict[str, Any]:
    """MP2 / CCSD / CCSD(T) on the SCF of the full molecule (with ``frozen``), or for a CAS on a
    model SCF built from the active-space integrals."""
    from pyscf import cc, mp

    n_core = 0
    if cas is not None:
        mf_used = model_scf(integrals)
    else:
        mf_used = mf
        n_mo = mf.mo_coeff.shape[1]
        n_core = n_mo - integrals.n_orbitals
    open_shell = integrals.n_alpha != integrals.n_beta
    if open_shell:
        mf_used = mf_used.to_uhf()
    frozen = n_core if n_core > 0 else None
    res: dict[str, Any] = {}
    if "mp2" in methods:
        try:
            pt = (mp.UMP2 if open_shell else mp.RMP2)(mf_used, frozen=frozen)
            pt.verbose = 0
            pt.kernel()
            res["e_mp2"] = float(pt.e_tot)
            notes.pop("mp2", None)
        except Exception as exc:  # noqa: BLE001
            res["e_mp2"] = None
            notes["mp2"] = f"MP2 failed: {exc}"
    if "ccsd" in methods or "ccsd_t" in methods:
        try:
            mycc = (cc.UCCSD if open_shell else cc.RCCSD)(mf_used, frozen=frozen)
            mycc.verbose = 0
            mycc.kernel()
            if not mycc.converged:
                raise RuntimeError("CCSD did not converge")
            if "ccsd" in methods:
                res["e_ccsd"] = float(mycc.e_tot)
                notes.pop("ccsd", None)
            if "ccsd_t" in methods:
                res["e_ccsd_t"] = float(mycc.e_tot + mycc.ccsd_t())
                notes.pop("ccsd_t", None)
        except Exception as exc:  # noqa: BLE001
            for m in ("ccsd", "ccsd_t"):
                if m in methods:
                    res[f"e_{m}"] = None
                    notes[m] = f"CCSD failed: {exc}"
    return res


def model_scf(integrals: MolecularIntegrals) -> Any:
    """A converged PySCF RHF/ROHF on the model Hamiltonian ``integrals`` (orthonormal basis).

    Starts from the aufbau determinant of the given orbitals, so canonical HF orbitals (as in a
    CAS of RHF orbitals) are reproduced.
    """
    from pyscf import ao2mo, gto, scf

    n = integrals.n_orbitals
    mol = gto.M(verbose=0)
    mol.nelectron = integrals.n_electrons
    mol.spin = integrals.spin
    mol.incore_anyway = True
    mol.nao_nr = lambda *a, **k: n  # type: ignore[method-assign]
    mf = scf.RHF(mol) if integrals.spin == 0 else scf.ROHF(mol)
    mf.get_hcore = lambda *a: integrals.h1
    mf.get_ovlp = lambda *a: np.eye(n)
    mf.energy_nuc = lambda *a: integrals.e_core
    mf._eri = ao2mo.restore(8, integrals.h2, n)
    dm_a = np.diag((np.arange(n) < integrals.n_alpha).astype(float))
    dm_b = np.diag((np.arange(n) < integrals.n_beta).astype(float))
    dm0 = dm_a + dm_b if integrals.spin == 0 else np.array([dm_a, dm_b])
    mf.kernel(dm0=dm0)
    return mf


def fci_from_integrals(
    integrals: MolecularIntegrals,
    nroots: int = 4,
    tol: float = 1e-10,
) -> tuple[float, float]:
    """``(E, <S^2>)`` of the lowest FCI state with ``S = |N_alpha - N_beta| / 2`` (incl. ``e_core``).

    ``N_alpha = N_beta``: ``direct_spin0`` (CI vectors symmetric under alpha <-> beta, which
    excludes S = 1, 3, ...), one root. Otherwise, or if that root has the wrong ``<S^2>``:
    ``direct_spin1`` with ``nroots`` roots, lowest root with ``|<S^2> - S(S+1)| < 1e-3``; failing
    that, ``fix_spin_`` (energy penalty on other spins).
    """
    from pyscf import fci
    from pyscf.fci import direct_spin0, direct_spin1, spin_op

    n, nelec = integrals.n_orbitals, (integrals.n_alpha, integrals.n_beta)
    s = abs(integrals.spin) / 2
    target = s * (s + 1)
    ndet = n_determinants(integrals)
    args = (integrals.h1, integrals.h2, n, nelec)

    def run(solver: Any, roots: int) -> list[tuple[float, float]]:
        solver.verbose = 0
        solver.conv_tol = tol
        solver.max_cycle = 300
        e, c = solver.kernel(*args, ecore=integrals.e_core, nroots=roots)
        es, cs = (np.atleast_1d(e), [c]) if roots == 1 else (np.asarray(e), list(c))
        return [
            (float(ei), float(spin_op.spin_square(ci, n, nelec)[0])) for ei, ci in zip(es, cs, strict=True)
        ]

    def lowest_with_spin(states: list[tuple[float, float]]) -> tuple[float, float] | None:
        ok = [st for st in states if abs(st[1] - target) < 1e-3]
        return min(ok) if ok else None

    if nelec[0] == nelec[1]:
        best = lowest_with_spin(run(direct_spin0.FCI(), 1))
        if best is not None:
            return best
    best = lowest_with_spin(run(direct_spin1.FCI(), max(1, min(nroots, ndet))))
    if best is not None:
        return best
    states = run(fci.addons.fix_spin_(direct_spin1.FCI(), shift=0.5, ss=target), 1)
    best = lowest_with_spin(states)
    if best is None:
        raise RuntimeError(f"FCI found no state with S^2 = {target} (got {states[0][1]:.4f})")
    return best
