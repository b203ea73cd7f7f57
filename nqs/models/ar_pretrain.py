"""Start an autoregressive molecular state from a selected CI, CISD or the first-order wavefunction.

A state near Hartree-Fock with all signs positive is a stationary point of the energy in the
phases (``dE/dphi(x) ~ sum_y |psi(x) psi(y)| H_xy sin(phi_y - phi_x) = 0``), so Monte Carlo
optimization from there has to discover the sign of every excitation from noise. A wavefunction
in the space S of Hartree-Fock and the determinants H connects to it gives those signs (and
sizes) for the singles and doubles:

* ``"cisd"``: the lowest eigenvector of H restricted to S with the target spin (CISD in the
  RHF orbitals; one ``flips`` per determinant of S and a sparse Lanczos solve for a few roots:
  at a stretched bond the lowest root of S can be a high-spin state);
* ``"selected"`` (what ``bench-fci`` and ``nqs molecule`` use): CISD grown by selection
  rounds (CIPSI / heat-bath style, :func:`selected_target`; rounds after the first while the
  space's own PT2 estimate is large): the triples and quadruples of largest first-order
  amplitude join S with their spin partners (S stays closed under ``S^2``) and H is
  diagonalized there again, its root taken with the target spin. The signs of the
  triples and quadruples then come from H; from CISD alone they come from how the networks
  generalize, and for N2/STO-3G the FCI amplitudes with the signs of a CISD-fitted state are
  19-61 mHa above FCI (2.6 mHa for a state fitted to the selected target);
* ``"first-order"``: Epstein-Nesbet, ``t(HF) = 1``, ``t(x) = -H_{x,HF} / max(H_xx - H_HF,HF,
  floor)`` (one row of H; zero for the singles, by Brillouin's theorem).

The ansatz is fitted to the normalized target by the cross-entropy ``-sum t^2 log p`` over S
(``psi`` is normalized, so this also pushes the weight outside S down) plus a squared error of
the phases (:func:`fit_singles_doubles`). Deterministic up to rounding and cheap (seconds to a
few minutes); a general starting point, not a fit to a reference energy.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nqs.ansatz import Ansatz, Params
from nqs.errors import InputError
from nqs.hilbert import apply_flips
from nqs.precision import with_dtype


def first_order_target(operator: Any, floor: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """``(x [m, n_sites], t [m])``: Hartree-Fock and the determinants H connects to it, with the
    normalized Epstein-Nesbet first-order amplitudes (``floor``, Hartree: smallest energy
    denominator, so near-degenerate excitations do not dominate). Singles have zero amplitude
    with Hartree-Fock orbitals (Brillouin); :func:`singles_doubles_target` gives them theirs.
    Cost: one row of H and the diagonal of its determinants."""
    return _first_order(*_connected_to_hartree_fock(operator), floor)


def _first_order(xs: np.ndarray, h_x0: np.ndarray, diag: np.ndarray, h00: float,
                 floor: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """:func:`first_order_target` from :func:`_connected_to_hartree_fock`'s output."""
    denom = np.maximum(diag[1:] - h00, floor)
    t = np.concatenate([[1.0], -h_x0[1:] / denom])
    return xs, t / np.linalg.norm(t)


def singles_doubles_target(operator: Any, max_rows: int = 1 << 20, spin: float | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """``(x [m, n_sites], c [m])``: the lowest eigenvector of H in the space of Hartree-Fock
    and every determinant H connects to it (CISD; with the spin partners of its determinants
    for an open-shell Hartree-Fock) that has spin ``spin`` (default ``|N_alpha - N_beta| / 2``)
    (not a high-spin state of a stretched bond: :func:`_target_root`), normalized,
    ``c(HF) > 0``.

    Unlike the first-order amplitudes it gives the singles (driven by the doubles) and the
    relative signs of near-degenerate excitations. Cost: one ``flips`` per determinant of the
    space (about ``max_rows`` connections at a time, which bounds the memory) and a sparse
    Lanczos solve.
    """
    xs, _, _, _ = _connected_to_hartree_fock(operator)
    xs = np.concatenate([xs, _spin_complete(xs, xs, operator.hilbert)[0]])
    c, _, _ = _subspace_ground_state(operator, xs, max_rows, spin=spin)
    return xs, c


#: Rounds after the first only while a pass over the space, ``|S| * max_conn`` connections,
#: stays below this. Cost on the 2-core CPU: 1e7 to 3e7 connections a second, and memory for
#: the distinct external determinants (:data:`MERGE_EVERY`) and the connections inside the
#: space. N2 / cc-pVDZ fc: its third round starts from a pass over 264834 determinants (4.1e9
#: connections); CH4 / 6-31G fc: its two-round space (34970 determinants, 1.8e8) is 2.10 mHa
#: above FCI, the third round's (121289) 0.38 mHa.
MAX_ROUND_ROWS = 5_000_000_000
#: The PT2 estimate sums the external determinants of largest ``|sum_y H_xy c(y)|``, this many
#: at most (a lower bound on ``|E_PT2|``: every term is negative when ``H_xx > E0``).
PT2_TERMS = 200_000
#: Connections the selected start enumerates at most, all passes together (a pass over a
#: space S is ``|S| max_conn`` of them): a phase that would pass it is skipped, CISD for the
#: first-order amplitudes, a round for the space so far. N2 / cc-pVDZ frozen core (CISD 15436
#: determinants, max_conn 15436): CISD and three rounds (614772 determinants, 0.8 mHa below
#: CCSD(T)) enumerate 2.0e10.
START_CONNECTIONS = 20_000_000_000
#: The start fit evaluates the network on every determinant it fits, every Adam step, so its
#: cost is (determinants x orbitals) per step: it fits the target's largest spin families up
#: to this many determinant-orbitals (:func:`truncate_target`). H2O/6-31G (13 orbitals, a
#: 7911-determinant target) is inside it; N2/6-31G frozen core (16 orbitals, three rounds,
#: 38523 determinants) would take about an hour of fit on a 2-core CPU, and fits 8183.
FIT_SITE_BUDGET = 1 << 17
#: With ``fit_growth > 1`` the start's cap doubles (up to that multiple of ``FIT_SITE_BUDGET //
#: n_orbitals``) while H's root in the kept space is more than this (Hartree) above the whole
#: target's. Not the default: NH3/6-31G frozen core grew to 37388 determinants (root 0.22 mHa
#: above the target's instead of 1.80), but 12000 Adam steps of the 256-wide MADE fitted them
#: to fidelity 0.9981 (0.99985 for the 9356 of the first cap), and the start was no better.
FIT_ROOT_TOLERANCE = 5e-4


def truncate_target(x: np.ndarray, t: np.ndarray, hilbert: Any, max_size: int
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """``(x [k, n_sites], t [k], weight)``: the whole spin families (spatial occupations) of
    largest weight ``sum t^2`` whose determinants number ``max_size`` at most, in their order
    in ``x`` (so Hartree-Fock stays row 0), ``t`` renormalized; ``weight``: the ``sum t^2``
    they held (``t`` normalized). Whole families keep the fitted wavefunction an ``S^2``
    eigenstate up to the weight left out. ``len(t) <= max_size``: returned as given, weight 1."""
    x, t = np.asarray(x), np.asarray(t)
    if len(t) <= max_size:
        return x, t, 1.0
    norm2 = float(np.sum(t**2))
    _, family, sizes = np.unique(_spin_families(x, hilbert), return_inverse=True,
                                 return_counts=True)
    family = family.ravel()
    weights = np.bincount(family, weights=t**2)
    order = np.argsort(-weights, kind="stable")
    order = order[np.cumsum(sizes[order]) <= max_size]
    keep = np.isin(family, order)
    keep[0] = True  # Hartree-Fock, the largest family in any target this fits
    kept = float(np.sum(t[keep] ** 2)) / norm2
    return x[keep], t[keep] / np.sqrt(kept * norm2), kept


def _why_no_round(size: int, done: int, rounds: int, mc: int, grow: float, spent: int,
                  budget: float) -> str | None:
    """Why selection round ``done`` (0-based) is not done on a space of ``size`` determinants
    after ``spent`` connections (None: it is done)."""
    if done >= rounds:
        return f"{rounds} round(s) done"
    if done > 0 and size * mc > MAX_ROUND_ROWS:
        return f"a pass over {size} determinants exceeds {MAX_ROUND_ROWS:.2g} connections"
    cost = spent + size * mc + int((1 + grow) * size) * mc
    if cost > budget:
        return f"round {done + 1} would bring the connections to {cost:.2g}, past the budget {budget:.2g}"
    return None


def _round_additions(operator: Any, xs: np.ndarray, e0: float, ext_k: np.ndarray,
                     ext_v: np.ndarray, grow: float, room: int
                     ) -> tuple[np.ndarray, int, str | None]:
    """What one selection round adds to ``xs``: the ``grow * |xs|`` external determinants of
    largest first-order amplitude with their spin partners (whole spatial occupations, at most
    ``room`` determinants), the number of occupations the budget left out, and why nothing is
    added (None when something is)."""
    n_add = min(int(grow * len(xs)), len(ext_k))
    if n_add == 0:
        return xs[:0], 0, "no determinant to add"
    added, n_dropped = _spin_complete(xs, _select(operator, e0, ext_k, ext_v, n_add),
                                      operator.hilbert, room)
    if len(added) == 0:
        return added, n_dropped, "no determinant to add" + (" within the budget" if n_dropped else "")
    return added, n_dropped, None


def _solve_logged(operator: Any, xs: np.ndarray, max_rows: int, spin: float | None,
                  log: _PhaseLog, name: str, stopped: str | None) -> tuple:
    """H's target root on ``xs`` (and the external determinants when a round follows, i.e.
    ``stopped`` is None), logged as phase ``name`` with its connections and ``<S^2>``."""
    c, e0, ext = _subspace_ground_state(operator, xs, max_rows, external=stopped is None,
                                        spin=spin)
    log.add(name, len(xs), (1 + (stopped is None)) * len(xs) * int(operator.max_conn),
            len(ext[0]), _s2_expectations(xs, c, operator.hilbert)[0])
    return c, e0, ext


def selected_target(operator: Any, max_rows: int = 1 << 20, grow: float = 1.0,
                    rounds: int = 1, pt2_tolerance: float | None = None,
                    info: dict | None = None, budget: float = START_CONNECTIONS,
                    spin: float | None = None,
                    on_phase: Callable[[dict], None] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(x [m, n_sites], c [m])``: CISD grown by selection rounds (CIPSI / heat-bath
    style), normalized, ``c(HF) > 0``.

    One round: from the vector ``c`` (energy ``E0``) on the space S, every determinant ``x``
    outside S that H connects to S gets its first-order amplitude
    ``t(x) = sum_{y in S} H_xy c(y) / (E0 - H_xx)``; the ``grow * |S|`` of largest ``|t|``
    (mostly the triples and the disconnected quadruples that carry a multi-reference
    molecule's correlation) join S with their spin partners (every determinant of the same
    doubly and singly occupied orbitals at the sector's ``N_alpha``, ``N_beta``), and H is
    diagonalized again there. The signs of those triples and quadruples then come from H, not
    from how the networks generalize from the doubles.

    Spin: S (CISD too, for an open-shell Hartree-Fock) holds whole spatial occupations, so it
    is closed under ``S^2`` and H's roots there are ``S^2`` eigenstates; the target is the lowest
    root of spin ``spin`` (default ``|N_alpha - N_beta| / 2``), whatever its spatial symmetry
    (:func:`_target_root`). The partners count
    against the budget, not against ``grow``: when they would take a round's space past it,
    the spatial occupations of lowest ``|t|`` are left out whole (``info["dropped"]``), so the
    space stays closed and the budget holds.

    ``rounds`` rounds at most. With ``pt2_tolerance`` (Hartree), the rounds after the first
    are done only while the Epstein-Nesbet estimate ``E_PT2 = sum_x (sum_y H_xy c(y))^2 /
    (E0 - H_xx)`` of what the current space misses (over its :data:`PT2_TERMS` largest
    terms) is below ``-pt2_tolerance``, and while ``|S| max_conn`` stays below
    :data:`MAX_ROUND_ROWS`: a space far from converged grows again, one that is
    close does not; the space itself says, not the molecule's name (C2/STO-3G: CISD -62 mHa,
    one round -9 mHa, two rounds -0.7 mHa; NH3: CISD -2.5, one round -0.1 mHa).

    Cost: a pass over a space S enumerates its ``|S| max_conn`` connections (``max_rows`` at a
    time); CISD takes one (two when a round follows, for the external determinants), a round
    one or two on the grown space. ``budget`` bounds their sum: a round that would pass it
    is not done, and a CISD that would is replaced by the first-order amplitudes
    (:func:`first_order_target`). ``info`` (a dict) receives ``"target"`` (``"selected"`` or
    ``"first-order"``), ``"rounds"``, ``"size"``, ``"e_var"`` (E0 of the final space, Hartree:
    H's own eigenvalue there; None for first order), ``"e_pt2"`` (Hartree, one per space
    estimated), ``"connections"`` (enumerated), ``"stopped"`` (why no further round),
    ``"phases"`` (one dict per phase: name, seconds, size, connections, ``<S^2>`` of its root),
    ``"s2"`` (``<S^2>`` of the target) and ``"dropped"`` (spatial occupations the budget left
    out). ``on_phase`` receives each phase's dict as it ends (a console line: a large space's
    selection runs for many minutes).
    """
    mc = int(operator.max_conn)
    log = _PhaseLog(on_phase)
    space = _connected_to_hartree_fock(operator)
    xs = np.concatenate([space[0], _spin_complete(space[0], space[0], operator.hilbert)[0]])
    log.add("space", len(xs), 0)
    dropped = 0
    e_pt2: list[float] = []
    if len(xs) * mc > budget:
        xs, c = _first_order(*space)
        stopped = f"CISD's {len(xs) * mc:.2g} connections exceed the budget {budget:.2g}"
        log.add("first-order", len(xs), 0)
        return _selected_info(info, log, xs, c, "first-order", 0, None, e_pt2, stopped)
    done = 0
    stopped = _why_no_round(len(xs), done, rounds, mc, grow, log.connections, budget)
    c, e0, (ext_k, ext_v) = _solve_logged(operator, xs, max_rows, spin, log, "cisd", stopped)
    while stopped is None:
        if done > 0 and pt2_tolerance is not None:
            e_pt2.append(_pt2_estimate(operator, e0, ext_k, ext_v))
            if e_pt2[-1] > -pt2_tolerance:
                stopped = f"E_PT2 {1e3 * e_pt2[-1]:.2f} mHa above -{1e3 * pt2_tolerance:g} mHa"
                break
        room = int((budget - log.connections) // mc) - len(xs)
        added, n_dropped, stopped = _round_additions(operator, xs, e0, ext_k, ext_v, grow, room)
        dropped += n_dropped
        if stopped is not None:
            break
        xs = np.concatenate([xs, added])
        done += 1
        stopped = _why_no_round(len(xs), done, rounds, mc, grow, log.connections, budget)
        c, e0, (ext_k, ext_v) = _solve_logged(operator, xs, max_rows, spin, log,
                                              f"round {done}", stopped)
    if info is not None:
        info.update(s2=log.phases[-1]["s2"], dropped=dropped)
    return _selected_info(info, log, xs, c, "selected", done, e0, e_pt2, stopped)


class _PhaseLog:
    """Wall time, size and connections of each phase of the start (:func:`selected_target`)."""

    def __init__(self, on_phase: Callable[[dict], None] | None = None) -> None:
        self.on_phase = on_phase
        self.phases: list[dict] = []
        self.connections = 0
        self._t = time.perf_counter()

    def add(self, name: str, size: int, connections: int, external: int | None = None,
            s2: float | None = None) -> None:
        now = time.perf_counter()
        entry = {"phase": name, "seconds": now - self._t, "size": int(size),
                 "connections": int(connections)}
        if external is not None:
            entry["external"] = int(external)
        if s2 is not None:
            entry["s2"] = float(s2)
        self.phases.append(entry)
        self.connections += int(connections)
        if self.on_phase is not None:
            self.on_phase(entry)
        self._t = time.perf_counter()


def _selected_info(info: dict | None, log: _PhaseLog, xs: np.ndarray, c: np.ndarray,
                   target: str, rounds: int, e0: float | None, e_pt2: list[float],
                   stopped: str) -> tuple[np.ndarray, np.ndarray]:
    """``(xs, c)``, after filling ``info`` (see :func:`selected_target`)."""
    if info is not None:
        info.update(target=target, rounds=rounds, e_var=None if e0 is None else float(e0),
                    e_pt2=e_pt2, size=len(xs), connections=log.connections, stopped=stopped,
                    phases=log.phases)
    return xs, c


def _select(operator: Any, e0: float, ext_k: np.ndarray, ext_v: np.ndarray,
            n_add: int) -> np.ndarray:
    """The ``n_add`` external determinants [n_add, n_sites] (keys ``ext_k``, numerators
    ``ext_v``) of largest first-order amplitude ``|v / (E0 - H_xx)|``."""
    from nqs.exact import configurations_from_keys

    # rank by |numerator| first (cheap), then by |t| among a few times more candidates
    pre = np.argsort(-np.abs(ext_v))[: 4 * n_add]
    x_pre = configurations_from_keys(ext_k[pre], operator.hilbert)
    t = ext_v[pre] / np.minimum(e0 - _diagonal(operator, x_pre), -1e-3)
    return x_pre[np.argsort(-np.abs(t))[:n_add]]


def _pt2_estimate(operator: Any, e0: float, ext_k: np.ndarray, ext_v: np.ndarray) -> float:
    """Epstein-Nesbet ``sum_x v(x)^2 / (E0 - H_xx)`` (Hartree, <= 0 when every ``H_xx > E0``)
    over the :data:`PT2_TERMS` external determinants (keys ``ext_k``) of largest ``|v|``."""
    from nqs.exact import configurations_from_keys

    if len(ext_v) == 0:
        return 0.0
    top = np.argsort(-np.abs(ext_v))[:PT2_TERMS]
    diag = _diagonal(operator, configurations_from_keys(ext_k[top], operator.hilbert))
    return float(np.sum(ext_v[top] ** 2 / np.minimum(e0 - diag, -1e-3)))


def _diagonal(operator: Any, xs: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``H_xx`` [m] of the configurations ``xs`` [m, n_sites] (``operator.diagonal`` where it
    has one, else the diagonal row of its ``flips``)."""
    n_sites = operator.hilbert.n_sites

    @jax.jit
    def diag(x):
        if hasattr(operator, "diagonal"):
            return jax.vmap(operator.diagonal)(x)
        sites, mels = jax.vmap(operator.flips)(x)
        return jnp.sum(jnp.where(jnp.all(sites == n_sites, axis=-1), mels, 0.0), axis=-1)

    out = []
    for i0 in range(0, len(xs), chunk):
        block = xs[i0:i0 + chunk]
        pad = np.repeat(block[:1], chunk - len(block), axis=0)
        out.append(np.real(np.asarray(diag(jnp.asarray(np.concatenate([block, pad])))))
                   [: len(block)])
    return np.concatenate(out) if out else np.zeros(0)


def _connection_keys(operator: Any) -> Any:
    """``f(x [b, n_sites], keys [b]) -> (keys [b, max_conn], mels [b, max_conn])`` (numpy): the
    keys (:func:`nqs.exact.configuration_keys`) of the configurations H connects each row to,
    with the matrix elements. Up to 63 sites on the device, as the source's key XOR the bits
    of the flipped sites (no configuration is built); more sites: the configurations, keyed
    on the host."""
    from nqs.exact import MAX_INT_KEY_SITES, configuration_keys

    hilbert = operator.hilbert
    n_sites = hilbert.n_sites
    if n_sites <= MAX_INT_KEY_SITES:
        pow2 = np.int64(1) << np.arange(n_sites + 1, dtype=np.int64)
        pow2[n_sites] = 0  # padding site: no flip
        pow2 = jnp.asarray(pow2)

        @jax.jit
        def keyed(x, keys):
            sites, mels = jax.vmap(operator.flips)(x)
            delta = functools.reduce(jnp.bitwise_xor, [pow2[sites[..., j]]
                                                        for j in range(sites.shape[-1])])
            return keys[:, None] ^ delta, jnp.real(mels)

        return lambda x, keys: tuple(np.asarray(a) for a in keyed(jnp.asarray(x),
                                                                   jnp.asarray(keys)))

    @jax.jit
    def connections(x):
        sites, mels = jax.vmap(operator.flips)(x)
        x_new = jax.vmap(jax.vmap(lambda xi, s: apply_flips(xi, s, 1.0), (None, 0)))(x, sites)
        return x_new, jnp.real(mels)

    def host_keyed(x, keys):
        x_new, mels = connections(jnp.asarray(x))
        x_new = np.asarray(x_new)
        return (configuration_keys(x_new.reshape(-1, n_sites), hilbert).reshape(x_new.shape[:2]),
                np.asarray(mels))

    return host_keyed


def _connection_blocks(operator: Any, xs: np.ndarray, keys: np.ndarray, max_rows: int):
    """Yields ``(src [r], keys [r], mels [r])``, the flattened nonzero connections of the
    rows ``xs`` [m, n_sites] (keys ``keys`` [m]) of H, about ``max_rows`` connections at a time
    (``src``: the row each connection comes from)."""
    keyed = _connection_keys(operator)
    chunk = int(min(len(xs), max(1, max_rows // max(int(operator.max_conn), 1))))
    for i0 in range(0, len(xs), chunk):
        n = min(chunk, len(xs) - i0)
        pad = np.arange(chunk) % n + i0  # a full block (one compiled shape), padding repeats
        k_new, mels = keyed(xs[pad], keys[pad])
        k_new, mels = k_new[:n].reshape(-1), mels[:n].reshape(-1)
        nonzero = np.abs(mels) > 0
        src = np.repeat(np.arange(i0, i0 + n), operator.max_conn)
        yield src[nonzero], k_new[nonzero], mels[nonzero]


def _subspace_ground_state(operator: Any, xs: np.ndarray, max_rows: int,
                           external: bool = False, screen: float = 1e-7,
                           spin: float | None = None):
    """``(c [m], E0, (keys_ext, v_ext))``: the lowest eigenvector of spin ``spin``
    (:func:`_target_spin`; molecules; else the lowest that holds Hartree-Fock, row 0 of
    ``xs``; ``c[0] > 0``, normalized, :func:`_target_root`) and its
    eigenvalue of H restricted to the distinct configurations ``xs`` [m, n_sites]; with
    ``external``, also the keys (:func:`nqs.exact.configuration_keys`) of the configurations
    outside ``xs`` that H connects to it and ``v(x) = sum_{y in xs} H_xy c(y)`` over the terms
    above ``screen`` (else empty arrays). Cost: one pass over the ``m max_conn`` connections
    (two with ``external``)."""
    import scipy.sparse as sps

    from nqs.exact import configuration_keys

    keys = configuration_keys(xs, operator.hilbert)
    order = np.argsort(keys)
    sorted_keys = keys[order]

    def located(k_new):
        pos = np.clip(np.searchsorted(sorted_keys, k_new), 0, len(sorted_keys) - 1)
        return pos, sorted_keys[pos] == k_new

    # CSR built block by block (the blocks come in row order), int32 columns: N2 / cc-pVDZ fc's
    # third-round space (614772 determinants) holds ~1e8 connections inside it
    m = len(xs)
    rows, cols, vals = [], [], []
    for src, k_new, mel in _connection_blocks(operator, xs, keys, max_rows):
        pos, inside = located(k_new)
        rows.append(src[inside].astype(np.int32))
        cols.append(order[pos[inside]].astype(np.int32))
        vals.append(mel[inside])
    indptr = np.concatenate([[0], np.cumsum(np.bincount(np.concatenate(rows), minlength=m))])
    del rows
    h = sps.csr_matrix((np.concatenate(vals), np.concatenate(cols), indptr), shape=(m, m))
    del cols, vals
    # repeated rows of a determinant are summed; H is symmetric to rounding, and is used as
    # (H + H^T) / 2, exactly symmetric for the Lanczos solver
    h = _symmetric_part(h)
    hilbert = operator.hilbert
    if hasattr(hilbert, "n_alpha"):
        target = _target_spin(hilbert, spin)
        e0, c = _target_root(
            h, m, lambda v: _s2_expectations(xs, v, hilbert), target * (target + 1))
    else:
        e0, c = _target_root(h, m)
    c = c / np.linalg.norm(c)
    if not external:
        return c, e0, (keys[:0], np.zeros(0))
    return c, e0, external_numerators(operator, xs, c, max_rows, screen)


def _symmetric_part(h: Any) -> Any:
    """``(h + h^T) / 2`` of a square CSR ``h``, formed once as CSR: the eigensolver's products
    then cost less than half of ``h @ v + h^T @ v`` (the transposed product scatters). N2 /
    cc-pVDZ fc (2-core AMD EPYC, beside the test suite): the eigensolves of CISD's 15436 and the
    first round's 60235 determinants took 2.1 and 18 s, against 4.6 and 45 s with the products
    of the unformed sum (the same energies to 1e-12). Forming it holds about three copies of
    ``h`` for a moment (8 s for the second round's 263971 determinants)."""
    sym = (h + h.T).tocsr()
    sym.data *= 0.5
    return sym


#: :func:`external_numerators` merges its connections into the distinct determinants every
#: this many (so its memory is the distinct ones plus one buffer, not every connection: a pass
#: over N2 / cc-pVDZ fc's second-round space keeps ~1e9 of them for 3e7 determinants).
MERGE_EVERY = 1 << 26


def _merge_numerators(keys: list, values: list) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``keys`` (concatenated) with their ``values`` summed."""
    distinct, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    return distinct, np.bincount(inverse.ravel(), weights=np.concatenate(values))


def external_numerators(operator: Any, xs: np.ndarray, c: np.ndarray,
                        max_rows: int = 1 << 20, screen: float = 1e-7,
                        space: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(keys [k], v [k])``: the configurations outside ``xs`` [m, n_sites] (and outside
    ``space``, when given: a larger set that holds ``xs``) that H connects to it (keys of
    :func:`nqs.exact.configuration_keys`) and ``v(x) = sum_{y in xs} H_xy c(y)`` over the
    terms above ``screen``. One pass over the ``m max_conn`` connections."""
    from nqs.exact import configuration_keys

    keys = configuration_keys(xs, operator.hilbert)
    sorted_keys = np.sort(keys if space is None else configuration_keys(space, operator.hilbert))
    ext_k, ext_v, buffered = [keys[:0]], [np.zeros(0)], 0
    for src, k_new, mel in _connection_blocks(operator, xs, keys, max_rows):
        contribution = mel * c[src]
        pos = np.clip(np.searchsorted(sorted_keys, k_new), 0, len(sorted_keys) - 1)
        # heat-bath screening: a connection below ``screen`` cannot make a determinant's t
        # matter, and dropping it bounds the memory (a pass over N2/cc-pVDZ CISD has ~1e8)
        out = (np.abs(contribution) > screen) & (sorted_keys[pos] != k_new)
        ext_k.append(k_new[out])
        ext_v.append(contribution[out])
        buffered += int(np.count_nonzero(out))
        if buffered >= MERGE_EVERY:
            merged = _merge_numerators(ext_k, ext_v)
            ext_k, ext_v, buffered = [merged[0]], [merged[1]], 0
    return _merge_numerators(ext_k, ext_v)


def first_order_amplitudes(operator: Any, xs: np.ndarray, c: np.ndarray, e0: float,
                           n_keep: int, max_rows: int = 1 << 20
                           ) -> tuple[np.ndarray, np.ndarray]:
    """``(y [k, n_sites], a [k])``, ``k <= n_keep``: the determinants outside ``xs`` of largest
    Epstein-Nesbet first-order amplitude ``a(y) = v(y) / (E0 - H_yy)`` of the vector ``c`` on
    ``xs`` (energy ``e0``; :func:`external_numerators`), largest first. The numerators come
    from the ``MAX_ROUND_ROWS / max_conn`` determinants of largest ``|c|`` when a pass over
    all of ``xs`` would be longer (CH4 / 6-31G fc's 121289: 6e8 connections)."""
    from nqs.exact import configurations_from_keys

    sources = np.argsort(-np.abs(c), kind="stable")[: max(MAX_ROUND_ROWS
                                                           // max(int(operator.max_conn), 1), 1)]
    ext_k, ext_v = external_numerators(operator, xs[sources], c[sources], max_rows, space=xs)
    if len(ext_k) == 0 or n_keep < 1:
        return xs[:0], np.zeros(0)
    pre = np.argsort(-np.abs(ext_v))[: 4 * n_keep]  # as _select: numerators first, then |a|
    y = configurations_from_keys(ext_k[pre], operator.hilbert)
    a = ext_v[pre] / np.minimum(e0 - _diagonal(operator, y), -1e-3)
    top = np.argsort(-np.abs(a))[:n_keep]
    return y[top], a[top]


#: A root of a truncated space counts as Hartree-Fock's state when ``c(HF)^2`` reaches this.
HF_WEIGHT_MIN = 1e-3
#: Roots computed at a time when looking for it (then 4 times more, once).
N_ROOTS = 8


def _target_root(h: Any, m: int, s2: Any = None, s2_target: float = 0.0
                 ) -> tuple[float, np.ndarray]:
    """``(E, c)``: the start's root of the sparse ``h`` [m, m] (row 0: Hartree-Fock),
    normalized, ``c(HF) > 0`` (the largest component positive when Hartree-Fock has no
    weight). With ``s2`` (``v [m, k] -> <S^2> [k]``): the lowest root with ``|<S^2> -
    s2_target| <= S2_TOLERANCE`` (in a space closed under ``S^2`` every nondegenerate root is an
    ``S^2`` eigenstate), whatever its Hartree-Fock weight. Without: the lowest with ``c(HF)^2
    >= HF_WEIGHT_MIN``.

    Not simply the lowest root: when a bond is stretched the lowest root of a truncated space
    can be a high-spin state. For N2/STO-3G at 2.0 A the lowest CISD root is the quintet
    (``<S^2> = 6``, 19 mHa below the CISD singlet); the selected space grown from it and the
    state fitted to that stay in the quintet, and VMC from there converged 26 mHa above the
    singlet FCI. Not the root that holds Hartree-Fock either: when the ground state has
    another spatial symmetry than the Hartree-Fock determinant, that root is an excited state
    (square H4 / STO-3G at 1.2 A: 149 mHa above FCI; a ring of 8 H at 1.3 A: 87 mHa), and VMC
    from a state of one symmetry stays in it. CISD around Hartree-Fock describes the states of
    Hartree-Fock's symmetry best, so a root of another symmetry that is still the lowest is
    the better start.
    If no root of the ``4 N_ROOTS`` lowest qualifies: the lowest with Hartree-Fock, else the
    one of largest ``c(HF)^2``.
    """
    from scipy.sparse.linalg import eigsh

    def choices(w, v):
        if s2 is not None:
            return np.abs(s2(v) - s2_target) <= S2_TOLERANCE
        return v[0] ** 2 >= HF_WEIGHT_MIN

    if m <= 2 * N_ROOTS:
        w, v = np.linalg.eigh(h.toarray())
    else:
        v0 = np.eye(1, m)[0] + 1e-3
        w, v = eigsh(h, k=N_ROOTS, which="SA", v0=v0)
        if not np.any(choices(w, v)) and m > 8 * N_ROOTS:
            w, v = eigsh(h, k=4 * N_ROOTS, which="SA", v0=v0)
        order = np.argsort(w)
        w, v = w[order], v[:, order]
    ok = choices(w, v)
    if not np.any(ok):
        ok = v[0] ** 2 >= HF_WEIGHT_MIN
    i = int(np.flatnonzero(ok)[0]) if np.any(ok) else int(np.argmax(v[0] ** 2))
    c = v[:, i]
    pivot = 0 if c[0] ** 2 >= HF_WEIGHT_MIN else int(np.argmax(np.abs(c)))
    return float(w[i]), c * (np.sign(c[pivot]) or 1.0)


#: A root counts as having the target spin when its ``<S^2>`` is within this of ``S(S+1)``.
S2_TOLERANCE = 1e-4


def _target_spin(hilbert: Any, spin: float | None) -> float:
    """``S`` of the start's root: ``spin``, or ``|N_alpha - N_beta| / 2`` (the lowest the sector
    holds) when None."""
    lowest = abs(hilbert.n_alpha - hilbert.n_beta) / 2
    if spin is None:
        return lowest
    if spin < lowest or (2 * spin - 2 * lowest) % 2:
        raise InputError(f"spin {spin} is not in the sector N_alpha = {hilbert.n_alpha}, "
                         f"N_beta = {hilbert.n_beta} (S = {lowest:g}, {lowest + 1:g}, ...)")
    return float(spin)


def _spin_families(xs: np.ndarray, hilbert: Any) -> np.ndarray:
    """A key per row of ``xs`` [m, n_sites]: equal for determinants of the same spatial
    occupation (the same doubly and singly occupied orbitals)."""
    from nqs.exact import configuration_keys

    n = hilbert.n_orbitals
    bits = np.asarray(xs) > 0.5
    alpha, beta = bits[:, :n], bits[:, n:]
    return configuration_keys(np.concatenate([alpha & beta, alpha ^ beta], axis=1), hilbert)


def _spin_partners(xs: np.ndarray, hilbert: Any) -> np.ndarray:
    """Every determinant [k, n_sites] of the spatial occupations of the rows of ``xs`` (its
    open shells' alpha/beta arrangement varied at the sector's ``N_alpha``, ``N_beta``),
    distinct, each occupation's in a block, in the order of its first row in ``xs``."""
    from itertools import combinations

    from nqs.exact import configuration_keys

    n = hilbert.n_orbitals
    xs = np.asarray(xs)
    if len(xs) == 0:
        return xs
    _, first = np.unique(_spin_families(xs, hilbert), return_index=True)
    first = np.sort(first)
    bits = xs[first] > 0.5
    alpha, beta = bits[:, :n], bits[:, n:]
    double, open_ = alpha & beta, alpha ^ beta
    n_open = open_.sum(axis=1)
    blocks = np.empty(len(first), dtype=object)
    for k in np.unique(n_open):
        rows = np.flatnonzero(n_open == k)
        up = hilbert.n_alpha - (hilbert.n_electrons - k) // 2  # alpha electrons in open shells
        pattern = np.zeros((math.comb(int(k), int(up)), int(k)), dtype=bool)
        for p, chosen in enumerate(combinations(range(int(k)), int(up))):
            pattern[p, list(chosen)] = True
        sites = np.nonzero(open_[rows])[1].reshape(len(rows), int(k))  # ascending per row
        a = np.repeat(double[rows][:, None, :], len(pattern), axis=1)  # [f, p, n]
        b = a.copy()
        f_idx = np.arange(len(rows))[:, None, None]
        p_idx = np.arange(len(pattern))[None, :, None]
        a[f_idx, p_idx, sites[:, None, :]] = pattern[None]
        b[f_idx, p_idx, sites[:, None, :]] = ~pattern[None]
        block = np.concatenate([a, b], axis=2)
        for i, r in enumerate(rows):
            blocks[r] = block[i]
    out = np.concatenate(list(blocks)).astype(xs.dtype)
    _, keep = np.unique(configuration_keys(out, hilbert), return_index=True)
    return out[np.sort(keep)]


def _spin_complete(xs: np.ndarray, ranked: np.ndarray, hilbert: Any,
                   limit: int | None = None) -> tuple[np.ndarray, int]:
    """``(added [k, n_sites], dropped)``: the determinants of ``ranked`` (best first) not in
    ``xs``, each with its spin partners (:func:`_spin_partners`), whole spatial occupations
    in the order of their best determinant, ``limit`` at most: the occupations that would
    pass it are left out (``dropped``: how many of ``ranked``'s occupations are not whole in
    ``xs`` plus ``added``). ``xs`` plus the result is closed under ``S^2`` when ``xs`` is.
    Memory: the partners of ``len(xs) + limit`` determinants at most are built."""
    from nqs.exact import configuration_keys

    ranked = np.asarray(ranked)
    if len(ranked) == 0:
        return ranked, 0
    _, first = np.unique(_spin_families(ranked, hilbert), return_index=True)
    reps = ranked[np.sort(first)]  # one determinant per occupation, best first
    if limit is not None:  # no more than could fit (partners already in xs do not count)
        n_open = np.sum((reps[:, :hilbert.n_orbitals] > 0.5) ^ (reps[:, hilbert.n_orbitals:] > 0.5),
                        axis=1)
        up = hilbert.n_alpha - (hilbert.n_electrons - n_open) // 2
        sizes = np.array([math.comb(int(k), int(u)) for k, u in zip(n_open, up, strict=True)])
        reps = reps[: int(np.searchsorted(np.cumsum(sizes), len(xs) + max(limit, 0),
                                          side="right"))]
    partners = _spin_partners(reps, hilbert)
    known = configuration_keys(xs, hilbert)
    partners = partners[~np.isin(configuration_keys(partners, hilbert), known)]
    if limit is not None and len(partners) > limit:
        # whole occupations, best first (the partners come in blocks in the order of ``ranked``)
        _, start, counts = np.unique(_spin_families(partners, hilbert), return_index=True,
                                     return_counts=True)
        ends = np.cumsum(counts[np.argsort(start)])
        n_fit = int(np.searchsorted(ends, max(limit, 0), side="right"))
        partners = partners[: int(ends[n_fit - 1]) if n_fit else 0]
    inside = np.isin(configuration_keys(ranked, hilbert),
                     np.concatenate([known, configuration_keys(partners, hilbert)]))
    dropped = len(np.unique(_spin_families(ranked[~inside], hilbert)))
    return partners, dropped


def _s2_expectations(xs: np.ndarray, vs: np.ndarray, hilbert: Any) -> np.ndarray:
    """``<v|S^2|v> / <v|v>`` [k] of the columns of ``vs`` [m, k] on the determinants ``xs``
    [m, n_sites] (alpha block, then beta block): ``S^2 = S_- S_+ + S_z (S_z + 1)``, so
    ``<S^2> = |S_+ v|^2 + S_z (S_z + 1) |v|^2`` with ``S_+ = sum_i a+_{i alpha} a_{i beta}``
    (``(-1)^(occupied spin orbitals between the two)``)."""
    from nqs.exact import configuration_keys

    n = hilbert.n_orbitals
    vs = np.asarray(vs, dtype=float).reshape(len(xs), -1)
    bits = np.asarray(xs) > 0.5
    sz = (hilbert.n_alpha - hilbert.n_beta) / 2
    cum = np.cumsum(bits, axis=1)
    rows, orb = np.nonzero(bits[:, n:] & ~bits[:, :n])  # beta only: S_+ moves it to alpha
    between = cum[rows, n + orb - 1] - cum[rows, orb]
    raised = bits[rows].copy()
    raised[np.arange(len(rows)), n + orb] = False
    raised[np.arange(len(rows)), orb] = True
    norm2 = np.sum(vs**2, axis=0)
    if len(rows):
        _, inverse = np.unique(configuration_keys(raised, hilbert), return_inverse=True)
        inverse = inverse.ravel()
        plus = np.zeros((inverse.max() + 1, vs.shape[1]))
        np.add.at(plus, inverse, np.where(between % 2, -1.0, 1.0)[:, None] * vs[rows])
        raised_norm2 = np.sum(plus**2, axis=0)
    else:
        raised_norm2 = np.zeros(vs.shape[1])
    return (raised_norm2 + sz * (sz + 1) * norm2) / norm2


def _connected_to_hartree_fock(operator: Any):
    """Hartree-Fock (row 0) and the distinct determinants its ``flips`` reach, with
    ``H_{x,HF}`` (summed over repeated connections), the diagonal ``H_xx`` and ``H_HF,HF``."""
    from nqs.exact import configuration_keys

    hilbert = operator.hilbert
    x0 = jnp.asarray(hilbert.hartree_fock_state())
    n_sites = hilbert.n_sites

    def row(x):
        sites, mels = operator.flips(x)
        diagonal = jnp.all(sites == n_sites, axis=-1)
        return sites, mels, jnp.sum(jnp.where(diagonal, mels, 0.0))

    sites, mels, h00 = jax.jit(row)(x0)
    sites, mels = np.asarray(sites), np.asarray(mels)
    keep = ~np.all(sites == n_sites, axis=-1)  # every excitation, zero elements too (singles)
    xs = np.asarray(jax.vmap(lambda s: apply_flips(x0, s, 1.0))(jnp.asarray(sites[keep])))
    keys = configuration_keys(xs, hilbert)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    h_x0 = np.bincount(inverse.ravel(), weights=np.real(mels[keep]))
    xs = xs[first]
    x0_key = configuration_keys(np.asarray(x0)[None], hilbert)[0]
    not_hf = configuration_keys(xs, hilbert) != x0_key
    xs, h_x0 = xs[not_hf], h_x0[not_hf]
    diag = _diagonal(operator, xs)
    h00 = float(np.real(h00))
    x_all = np.concatenate([np.asarray(x0)[None], xs])
    return x_all, np.concatenate([[h00], h_x0]), np.concatenate([[h00], diag]), h00


#: Weight of the start fit's t^2-weighted squared phase error beside its plain mean. The plain
#: mean alone spreads a small phase network over thousands of tiny amplitudes: on H2O/6-31G
#: (5432 determinants, MADE 64, 2500-4000 decaying steps) the fit stalled at fidelity 0.93
#: with its amplitudes alone at 0.999; weight 1 reached 0.989, weight 10 0.994.
PHASE_WEIGHT = 10.0


def _fit_programs(ansatz: Ansatz, tx: Any):
    """``(neg_log_fidelity(p, data), update(p, opt_state, data))``: the compiled programs of
    :func:`fit_singles_doubles` (``data = (x, t, phase_target)``)."""

    def neg_log_fidelity_of(log_psi: jax.Array, t: jax.Array) -> jax.Array:
        return -jnp.log(jnp.abs(jnp.sum(t * jnp.exp(log_psi))) ** 2)

    @jax.jit
    def neg_log_fidelity(p: Params, data) -> jax.Array:
        x, t, _ = data
        return neg_log_fidelity_of(jax.vmap(ansatz.log_psi, in_axes=(None, 0))(p, x), t)

    def loss_fn(p: Params, data) -> tuple[jax.Array, jax.Array]:
        # phases (Im log psi): a squared error moves them directly (the overlap moves a phase
        # only through sin(phi - phi_target), which vanishes at phi = 0 for a target of pi),
        # weighted by t^2 as the fidelity weighs them (PHASE_WEIGHT), plus its plain mean (the
        # sign of every determinant of the target counts a little)
        x, t, phase_target = data
        log_psi = jax.vmap(ansatz.log_psi, in_axes=(None, 0))(p, x)
        cross_entropy = -jnp.sum(t**2 * 2.0 * jnp.real(log_psi))
        phase_sq = (jnp.imag(log_psi) - phase_target) ** 2
        phase_error = (PHASE_WEIGHT * jnp.sum(t**2 * phase_sq) / jnp.sum(t**2)
                       + jnp.mean(phase_sq))
        return cross_entropy + phase_error, neg_log_fidelity_of(log_psi, t)

    @jax.jit
    def update(p, opt_state, data):
        (_, fid_loss), g = jax.value_and_grad(loss_fn, has_aux=True)(p, data)
        u, opt_state = tx.update(g, opt_state, p)
        return optax.apply_updates(p, u), opt_state, fid_loss

    return neg_log_fidelity, update


def fit_singles_doubles(ansatz: Ansatz, operator: Any, params: Params, *, steps: int = 2000,
                    learning_rate: float = 1e-2, target_fidelity: float = 0.9995,
                    target: Any = "cisd", grow: float = 1.0,
                    final_lr_fraction: float = 1.0, rounds: int = 1,
                    pt2_tolerance: float | None = None, refine_steps: int = 0,
                    max_fit: int | None = None, given_is_root: bool = False,
                    single_precision: bool = True, target_energy: float | None = None,
                    fit_growth: int = 1, info: dict | None = None,
                    progress: Callable[[str, int, int, float], None] | None = None,
                    minibatch: tuple[int, int] | None = None,
                    ) -> tuple[Params, float]:
    """``(params, fidelity)``: an autoregressive ``ansatz`` fitted to a wavefunction ``t`` in
    the space S of Hartree-Fock and its singles and doubles by Adam on the cross-entropy
    ``-sum_{x in S} t(x)^2 log p(x)`` (``p = |psi|^2``, normalized over the sector, so the
    optimum is ``p = t^2`` on S and 0 outside, where the fidelity is 1) plus a squared error of
    the phases, stopping early once the fidelity ``|<t|psi>|^2`` reaches ``target_fidelity``;
    the parameters of the best fidelity are returned.

    Why not the fidelity itself: its gradient at a determinant is proportional to the
    amplitude there, and the Hartree-Fock-centred start gives a determinant with k orbitals
    off their Hartree-Fock token ``p ~ exp(-k hf_logit)``; the open-shell doubles (four
    singly occupied orbitals) then never move, and a fidelity fit stalls near 1 - 3e-3 on
    H2O/STO-3G. The cross-entropy's gradient at x is ``t(x)^2`` times that of ``log p(x)``,
    whatever ``p(x)`` is.

    ``target``: ``"cisd"`` (:func:`singles_doubles_target`, the default), ``"selected"``
    (:func:`selected_target`: S grown by the triples and quadruples of largest first-order
    amplitude) or ``"first-order"`` (:func:`first_order_target`). ``grow``: the selected
    target's size as a multiple of the CISD space's (:func:`selected_target`); ``rounds``,
    ``pt2_tolerance``: its selection rounds (:func:`selected_target`). A tuple
    ``(x [m, n_sites], t [m])`` is fitted as given (normalized, row 0 Hartree-Fock).
    ``final_lr_fraction`` < 1: the learning rate decays from ``learning_rate`` to that fraction
    of it over ``steps`` (cosine); 1: constant. ``refine_steps`` > 0: that many Gauss-Newton
    steps follow the Adam fit (:func:`refine_fit`). ``max_fit``: the fit (and the fidelity)
    covers the target's largest spin families up to that many determinants
    (:func:`truncate_target`; default ``FIT_SITE_BUDGET // n_orbitals``), and a selected or
    CISD target (or a given one with ``given_is_root``: H's root in its space, as
    :func:`selected_target` returns) is then H's root in that space again; ``fit_growth`` > 1:
    the cap doubles up to that multiple while the kept root is ``FIT_ROOT_TOLERANCE`` above
    the target's (``target_energy``, or computed; :func:`_fit_space`). ``single_precision``:
    the Adam fit evaluates the network in float32 (:func:`nqs.precision.with_dtype`).
    ``info`` (a dict) receives ``"fit_steps"`` (Adam steps taken), ``"fit_s"`` (wall seconds of
    the fit, compilation included), ``"target_size"``, ``"fit_size"`` and ``"fit_weight"`` (the
    determinants fitted and the target's weight on them), ``"fit_e_var"`` (H's eigenvalue in
    the kept space, Hartree; None when nothing was left out), ``"fit_caps"`` (``(cap, kept,
    root)`` per cap tried), ``"adam_fidelity"`` and what :func:`refine_fit` records.
    ``progress(phase, steps_done, steps, fidelity)`` is called after each Adam step (``phase``
    ``"fit"``, the fidelity of the step's float32 network) and each Gauss-Newton step
    (``"refine"``, the best fidelity so far): the fit of a large target runs for many minutes,
    and a console shows how far it is.

    ``minibatch = (n_fixed, n_drawn)``: each Adam step sees the target's first ``n_fixed`` rows
    and ``n_drawn`` of the others drawn uniformly without replacement, their ``t^2`` scaled by
    (others / ``n_drawn``) (an unbiased cross-entropy); the fidelity reported then is the whole
    target's every 50 steps, and the parameters kept are the last ones unless the start's are
    better."""

    targets = {"cisd": singles_doubles_target,
               "selected": functools.partial(selected_target, grow=grow, rounds=rounds,
                                             pt2_tolerance=pt2_tolerance),
               "first-order": first_order_target}
    if isinstance(target, tuple):
        given = target
        target = "given"
        targets[target] = lambda _: given
    if target not in targets:
        raise InputError(f"unknown start target {target!r}; choose {', '.join(targets)}")
    if not (grow >= 0 and 0 < final_lr_fraction <= 1):
        raise InputError(f"the start fit needs grow >= 0 and 0 < final_lr_fraction <= 1, got "
                         f"{grow} and {final_lr_fraction}")
    x, t = targets[target](operator)
    target_size = len(t)
    if max_fit is not None and max_fit < 1:
        raise InputError(f"the start fit needs at least one determinant, got max_fit {max_fit}")
    x, t, fit_weight, fit_e_var, caps = _fit_space(
        operator, np.asarray(x), np.asarray(t), max_fit,
        target in ("selected", "cisd") or given_is_root, target_energy, fit_growth)
    x, t = jnp.asarray(x), jnp.asarray(t)
    t_fit = time.perf_counter()
    phase_target = jnp.where(t < 0, jnp.pi, 0.0)
    tx = optax.adam(learning_rate if final_lr_fraction == 1 else
                    optax.cosine_decay_schedule(learning_rate, steps, alpha=final_lr_fraction))

    # the target goes in as arguments, not as constants of the compiled programs (XLA would
    # fold the sector masks of every target row at compile time)
    data = (x, t, phase_target)

    # Adam on the network evaluated in float32 (nqs.precision: float64 master parameters), 2x
    # the speed of float64 on a CPU; the parameters kept are chosen by their float64 fidelity
    neg_log_fidelity, update = _fit_programs(ansatz, tx)
    if single_precision:
        update = _fit_programs(with_dtype(ansatz, "float32"), tx)[1]

    opt_state = tx.init(params)
    best, best_loss = params, float(neg_log_fidelity(params, data))
    taken = 0
    drawn = minibatch is not None and minibatch[1] < len(t) - minibatch[0]
    if drawn:
        n_fixed, n_drawn = int(minibatch[0]), int(minibatch[1])
        n_rest = len(t) - n_fixed
        rng = np.random.default_rng(0)
        scale = jnp.asarray(np.r_[np.ones(n_fixed), np.full(n_drawn, np.sqrt(n_rest / n_drawn))])
        loss = best_loss
    for _ in range(steps):
        taken += 1
        if drawn:
            idx = np.r_[np.arange(n_fixed), n_fixed + rng.choice(n_rest, n_drawn, replace=False)]
            new_params, opt_state, _ = update(
                params, opt_state, (x[idx], t[idx] * scale, phase_target[idx]))
            if taken % 50 == 0:
                loss = float(neg_log_fidelity(params, data))
        else:
            new_params, opt_state, loss = update(params, opt_state, data)
            loss = float(loss)  # of ``params``, before this update (float32 network)
            if np.isfinite(loss) and loss < best_loss:
                best, best_loss = params, loss
        step_fidelity = float(np.exp(-loss))
        if progress is not None:
            progress("fit", taken, steps, step_fidelity)
        if step_fidelity >= target_fidelity:
            break
        params = new_params
    final = float(neg_log_fidelity(params, data))
    if best is not params:
        best_loss = float(neg_log_fidelity(best, data))
    if not np.isfinite(final) or final > best_loss + 1e-12:
        params, final = best, best_loss
    fidelity = float(np.exp(-final))
    if info is not None:
        info.update(fit_steps=taken, fit_s=time.perf_counter() - t_fit,
                    target_size=target_size, fit_size=len(t), fit_weight=fit_weight,
                    fit_e_var=fit_e_var, fit_caps=caps, adam_fidelity=fidelity)
    if refine_steps > 0:
        on_step = None
        if progress is not None:
            def on_step(done: int, fid: float) -> None:
                progress("refine", done, refine_steps, fid)
        params, fidelity = refine_fit(ansatz, params, x, t, steps=refine_steps, info=info,
                                      progress=on_step)
    return params, fidelity


def _fit_space(operator: Any, x: np.ndarray, t: np.ndarray, max_fit: int | None,
               is_root: bool, target_energy: float | None, growth: int = 1
               ) -> tuple[np.ndarray, np.ndarray, float, float | None, list]:
    """``(x, t, weight, e_kept, caps)``: the part of the target ``(x [m, n_sites], t [m])`` the
    start fits (:func:`truncate_target`) and, when the target is H's root in its space
    (``is_root``) and a part was left out, H's root in the kept space (``t`` there, ``e_kept``
    its eigenvalue; else None). ``caps``: ``(cap, determinants kept, e_kept)`` per size tried.

    The cap starts at ``max_fit`` (None: ``FIT_SITE_BUDGET // n_orbitals``) and doubles, up to
    ``growth`` times that, while the kept space's root stays more than ``FIT_ROOT_TOLERANCE``
    above the whole target's (``target_energy``, or computed): the truncation then costs at most
    that much of the start's energy unless the cap runs out. ``growth = 1``: one cap.
    """
    base = max_fit if max_fit is not None else max(
        FIT_SITE_BUDGET // operator.hilbert.n_orbitals, 1)
    largest = max(int(growth), 1) * base
    cap, caps = base, []
    while True:
        xk, tk, weight = truncate_target(x, t, operator.hilbert, cap)
        e_kept = None
        if weight < 1 and is_root:
            # the best vector of the kept space: H's root there (whole families: a spin
            # eigenstate)
            tk, e_kept, _ = _subspace_ground_state(operator, xk, 1 << 20)
        caps.append((cap, len(tk), e_kept))
        if e_kept is None or 2 * cap > largest:
            return xk, tk, weight, e_kept, caps
        if target_energy is None:
            target_energy = float(_subspace_ground_state(operator, x, 1 << 20)[1])
        if e_kept - target_energy <= FIT_ROOT_TOLERANCE:
            return xk, tk, weight, e_kept, caps
        cap *= 2


def _fit_residuals(ansatz: Ansatz):
    """``residuals(p, x, t) [2m + 1]``: ``psi(x) - t(x)`` (real and imaginary parts) on the
    target's determinants ``x [m, n_sites]`` (``t [m]`` normalized) and the norm of psi outside
    them, ``sqrt(1 - sum_x |psi(x)|^2)`` (psi is normalized over the sector). Their squared sum
    is ``||psi - t||^2 = 2 - 2 Re<t|psi>``, so the least squares maximize the overlap."""

    def residuals(p: Params, x: jax.Array, t: jax.Array) -> jax.Array:
        psi = jnp.exp(jax.vmap(ansatz.log_psi, in_axes=(None, 0))(p, x))
        outside = jnp.maximum(1.0 - jnp.sum(jnp.abs(psi) ** 2), 1e-16)
        return jnp.concatenate([jnp.real(psi) - t, jnp.imag(psi), jnp.sqrt(outside)[None]])

    return residuals


def refine_fit(ansatz: Ansatz, params: Params, x: Any, t: Any, *, steps: int = 30,
               cg_iterations: int = 100, damping: float = 1e-3,
               info: dict | None = None,
               progress: Callable[[int, float], None] | None = None) -> tuple[Params, float]:
    """``(params, fidelity)``: a fitted start refined by Gauss-Newton (Levenberg-Marquardt)
    steps on the overlap's least squares (:func:`_fit_residuals`) over the target's
    determinants ``x [m, n_sites]`` with amplitudes ``t [m]``.

    Each step solves ``(J^T J + lambda) delta = -J^T r`` by conjugate gradients with
    Jacobian-vector products only (no Jacobian is stored: memory of a few forward passes), and
    is kept when the squared residual falls (``lambda`` then shrinks 3x; else it grows 4x and
    the step is retried). Adam's first-order fit slows to a crawl on the last few 1e-4 of
    infidelity, each of which is worth mHa of energy; the Gauss-Newton steps use the curvature
    there. The parameters of the best fidelity ``|<t|psi>|^2`` are returned. ``info`` receives
    ``"refine_steps"``, ``"refine_s"`` and ``"refine_fidelity"`` (a list, one per kept step).
    ``progress(steps_done, best_fidelity)`` is called after each step (a console's progress
    line)."""
    from jax.flatten_util import ravel_pytree

    t0 = time.perf_counter()
    x, t = jnp.asarray(x), jnp.asarray(t)
    t = t / jnp.sqrt(jnp.sum(t**2))
    theta0, unravel = ravel_pytree(params)
    residuals = _fit_residuals(ansatz)

    # x and t go in as arguments, not as constants of the compiled programs (XLA would fold
    # the sector masks of every target row at compile time)
    @jax.jit
    def evaluate(theta: jax.Array, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(half the squared residual, fidelity |<t|psi>|^2) from one pass over x."""
        r = residuals(unravel(theta), x, t)
        m = t.shape[0]
        overlap = jnp.sum(t * (r[:m] + t)) + 1j * jnp.sum(t * r[m:2 * m])  # psi = r + t
        return 0.5 * jnp.sum(r**2), jnp.abs(overlap) ** 2

    @jax.jit
    def direction(theta: jax.Array, lam: jax.Array, x: jax.Array, t: jax.Array) -> jax.Array:
        r, jvp = jax.linearize(lambda th: residuals(unravel(th), x, t), theta)
        vjp = jax.linear_transpose(jvp, theta)

        def normal(v: jax.Array) -> jax.Array:
            return vjp(jvp(v))[0] + lam * v

        delta, _ = jax.scipy.sparse.linalg.cg(normal, -vjp(r)[0], maxiter=cg_iterations)
        return delta

    theta, lam = theta0, damping
    current, best_fid = (float(v) for v in evaluate(theta, x, t))
    best_theta = theta
    history, taken = [], 0
    for _ in range(steps):
        taken += 1
        trial = theta + direction(theta, jnp.asarray(lam), x, t)
        value, fid = (float(v) for v in evaluate(trial, x, t))
        if np.isfinite(value) and value < current:
            theta, current, lam = trial, value, max(lam / 3.0, 1e-9)
            history.append(fid)
            if fid > best_fid:
                best_theta, best_fid = theta, fid
        else:
            lam *= 4.0
        if progress is not None:
            progress(taken, best_fid)
    if info is not None:
        info.update(refine_steps=taken, refine_s=time.perf_counter() - t0,
                    refine_fidelity=history)
    return unravel(best_theta), best_fid
