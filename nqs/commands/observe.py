"""``--observe NAME...`` on ``nqs spin``, ``nqs molecule`` and ``nqs realspace``: built-in
observables measured on the final state, ``observables.json`` and one plot per observable in
``--out``.

Spin (``S = sigma/2``, :mod:`hamiltonians.spin_observables`):

* ``magnetization_z``, ``magnetization_x``: ``M^a = sum_i S^a_i`` (total);
* ``staggered_magnetization``: ``m_s^2 = (1/N^2) sum_ij eps_i eps_j S_i . S_j`` (bipartite
  lattices; ``<M_s> = 0`` by symmetry, so the squared order parameter is reported);
* ``correlations``: ``<S_i . S_j>`` for all pairs ``i < j`` (plot: against distance);
* ``structure_factor``: ``S(q)`` on the lattice momenta (plot: a line on a chain, a heatmap in 2D).

Molecule (:mod:`hamiltonians.fermion_operators`; spin-summed 1-RDM ``gamma_pq = sum_s <a+_ps
a_qs>`` in the active orbitals):

* ``s2``, ``n_alpha``, ``n_beta``; ``rdm1`` (``gamma``, row-major); ``natural_occupations``
  (eigenvalues of ``gamma``; no error bar); ``dipole``: ``mu [3]`` in a.u. (e bohr) about the
  origin of the input coordinates, ``mu = sum_A Z_A R_A - 2 sum_core <c|r|c> - sum_pq
  gamma_pq <q|r|p>`` measured as one one-body operator (error bars from the samples; frozen
  core included; needs ``--molecule``, not ``--fcidump``).

Real space (:mod:`hamiltonians.realspace_observables`; positions drawn from the final walkers at the
final parameters, ``--eval-steps`` measurements):

* ``density``: radial (shell averages of rho(r) about the nucleus) for an atom, axial
  (electrons per bohr along the molecular axis) otherwise, beside the Hartree-Fock density in
  ``--pretrain-basis`` over the same bins (plot: 4 pi r^2 rho(r), or the axial profile);
* ``dipole``: ``mu = sum_A Z_A R_A - sum_i r_i`` in e bohr;
* ``forces``: the Hellmann-Feynman force on every nucleus, hartree / bohr, zero-variance
  estimator beside the bare one (:mod:`hamiltonians.realspace_forces`; all-electron systems only).

``observables.json``: ``{name: {"mean", "error", ...}}`` (:func:`nqs.state.stats_record`; lists
for several components, with the ``"estimator"`` used) written atomically after the run; a plot
that fails is a warning.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

SPIN_OBSERVABLES = ("magnetization_z", "magnetization_x", "staggered_magnetization",
                    "correlations", "structure_factor")
MOLECULE_OBSERVABLES = ("s2", "n_alpha", "n_beta", "rdm1", "natural_occupations", "dipole")
OBSERVABLES_NAME = "observables.json"


def add_observe_option(p: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """``--observe NAME...`` (one or more of ``names``)."""
    p.add_argument("--observe", nargs="+", default=[], metavar="NAME",
                   help="measure these observables on the final state and write "
                   f"{OBSERVABLES_NAME} and a plot each: {', '.join(names)}")


def check_names(names: list[str], known: tuple[str, ...], command: str) -> list[str]:
    """``names`` without repeats; InputError (one line) for a name not in ``known``."""
    from nqs.errors import InputError

    for name in names:
        if name not in known:
            raise InputError(f"unknown observable {name!r} for nqs {command}; valid: "
                             f"{', '.join(known)}")
    return list(dict.fromkeys(names))


def spin_operators(names: list[str], model: Any) -> dict[str, Any]:
    """The operators of the spin observables ``names`` on ``model``'s lattice and space
    (InputError now, before any file is written, e.g. m_s^2 on a non-bipartite lattice)."""
    from hamiltonians import spin_observables as so

    names = check_names(names, SPIN_OBSERVABLES, "spin")
    hilbert, lattice = model.hilbert, model.lattice
    build = {
        "magnetization_z": lambda: so.magnetization(hilbert, "z"),
        "magnetization_x": lambda: so.magnetization(hilbert, "x"),
        "staggered_magnetization": lambda: so.staggered_magnetization_squared(lattice, hilbert),
        "correlations": lambda: so.spin_correlations(hilbert),
        "structure_factor": lambda: so.structure_factors(lattice, hilbert),
    }
    return {name: build[name]() for name in names}


def molecule_operators(names: list[str], n_orbitals: int, dipole_matrices: Any = None
                       ) -> dict[str, Any]:
    """The operators of the molecular observables ``names`` (``rdm1`` also serves
    ``natural_occupations``; ``dipole`` needs ``dipole_matrices [3, n, n]``, the electronic
    one-body matrices ``-<p|r|q>`` in the active orbitals)."""
    from hamiltonians import fermion_operators as fo

    names = check_names(names, MOLECULE_OBSERVABLES, "molecule")
    out: dict[str, Any] = {}
    for name in names:
        if name == "s2":
            out[name] = fo.spin_squared(n_orbitals)
        elif name == "n_alpha":
            out[name] = fo.number_alpha(n_orbitals)
        elif name == "n_beta":
            out[name] = fo.number_beta(n_orbitals)
        elif name in ("rdm1", "natural_occupations"):
            out["rdm1"] = fo.one_rdm_operator(n_orbitals)
        elif name == "dipole":
            d = np.asarray(dipole_matrices)
            ops = [fo.fermion_sum(float(d[x, p, q]) * fo.one_rdm_element(p, q, n_orbitals)
                                  for p in range(n_orbitals) for q in range(n_orbitals)
                                  if d[x, p, q] != 0) for x in range(3)]
            out[name] = fo.fermion_components(ops)
    return out


def measure(state: Any, operators: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: stats_record}`` of every operator on ``state`` (one draw shared by all); an
    operator with components also records its ``"estimator"`` (:meth:`nqs.state.VariationalState.estimator`:
    ``exact sum``, ``all components`` or ``symmetry-reduced: G permutations, C orbits``)."""
    from nqs.state import n_components, stats_record

    records = {}
    for name, op in operators.items():
        records[name] = stats_record(state.expect(op))
        if n_components(op) is not None:
            records[name]["estimator"] = state.estimator(op)
    return records


def _plot_values(path: Path, labels: list[str], values: Any, errors: Any, title: str,
                 ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nqs.io import save_figure_atomic

    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(labels) + 2), 3.5))
    err = None if errors is None else np.nan_to_num(np.asarray(errors, float))
    ax.bar(range(len(labels)), np.asarray(values, float), yerr=err, capsize=3)
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 12 else 0)
    ax.set_ylabel(ylabel)
    _title(ax, title)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def _plot_xy(path: Path, x: Any, y: Any, yerr: Any, xlabel: str, ylabel: str, title: str,
             line: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nqs.io import save_figure_atomic

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(np.asarray(x, float), np.asarray(y, float),
                yerr=np.nan_to_num(np.asarray(yerr, float)), fmt="o-" if line else "o", ms=3,
                capsize=2)
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _title(ax, title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def _plot_heatmap(path: Path, grid: Any, title: str, xlabel: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nqs.io import save_figure_atomic

    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(np.asarray(grid, float), origin="lower", cmap="viridis")
    fig.colorbar(im, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _title(ax, title)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def pair_distances(lattice: Any, pairs: np.ndarray) -> np.ndarray:
    """``|r_j - r_i|`` of every pair ``[P, 2]``; on a periodic lattice the nearest image
    (displacements shifted by ``n_k L_k a_k``, ``n_k`` in -1, 0, 1)."""
    import itertools

    r = np.asarray(lattice.positions, float)
    d = r[pairs[:, 1]] - r[pairs[:, 0]]
    if not getattr(lattice, "pbc", False):
        return np.linalg.norm(d, axis=1)
    periods = np.asarray(lattice.extent)[:, None] * np.asarray(lattice.geometry.vectors, float)
    best = np.full(len(d), np.inf)
    for n in itertools.product((-1, 0, 1), repeat=len(periods)):
        best = np.minimum(best, np.linalg.norm(d + np.asarray(n, float) @ periods, axis=1))
    return best


def _title(ax: Any, text: str) -> None:
    import textwrap

    ax.set_title("\n".join(textwrap.wrap(text, 60)), fontsize=9)


def spin_plots(out: Path, records: dict[str, dict], model: Any) -> None:
    """One ``observable_<name>.png`` per spin observable (failures are warnings)."""
    from hamiltonians.spin_observables import lattice_momenta, pair_indices
    from nqs.plotting import write_plot

    lattice = model.lattice
    title = model.describe()
    for name, rec in records.items():
        path = out / f"observable_{name}.png"
        mean, err = np.asarray(rec["mean"], float), rec["error"]
        if name == "correlations":
            pairs = pair_indices(lattice.n_sites)
            try:
                dist = pair_distances(lattice, pairs)
                xlabel = "distance |r_i - r_j| (lattice spacings; periodic: nearest image)"
            except Exception:  # noqa: BLE001 - an edge list without positions: pair index
                dist, xlabel = np.arange(len(pairs)), "pair (i < j)"

            def plot(path=path, dist=dist, mean=mean, err=err, xlabel=xlabel) -> None:
                _plot_xy(path, dist, mean, err, xlabel, "<S_i . S_j>", title)
        elif name == "structure_factor":
            ext = lattice.extent

            def plot(path=path, mean=mean, err=err, ext=ext) -> None:
                if len(ext) == 1:
                    q = lattice_momenta(lattice)[:, 0]
                    _plot_xy(path, q, mean, err, "q", "S(q)", title, line=True)
                else:
                    _plot_heatmap(path, mean.reshape(ext), f"S(q): {title}", "m_2", "m_1")
        else:
            def plot(path=path, mean=mean, err=err, name=name) -> None:
                _plot_values(path, [name], np.atleast_1d(mean), np.atleast_1d(err), title,
                             "expectation value (S = sigma/2)")
        write_plot(plot, path)


def molecule_records(records: dict[str, dict], names: list[str], n_orbitals: int,
                     dipole_constant: Any = None) -> dict[str, dict]:
    """The records of ``names`` from the measured ones: ``natural_occupations`` from ``rdm1``
    (no error bar), the constant (nuclear + core) part added to ``dipole``; ``rdm1`` kept
    only when asked for."""
    from hamiltonians.fermion_operators import natural_occupations

    out: dict[str, dict] = {}
    for name in names:
        if name == "natural_occupations":
            gamma = np.asarray(records["rdm1"]["mean"], float).reshape(n_orbitals, n_orbitals)
            out[name] = {"mean": natural_occupations(gamma).tolist(), "error": None}
        elif name == "dipole":
            rec = dict(records["dipole"])
            rec["mean"] = (np.asarray(rec["mean"], float)
                           + np.asarray(dipole_constant, float)).tolist()
            rec["unit"] = "e bohr (atomic units)"
            out[name] = rec
        else:
            out[name] = records[name]
    return out


def molecule_plots(out: Path, records: dict[str, dict], n_orbitals: int, title: str) -> None:
    """One ``observable_<name>.png`` per molecular observable (failures are warnings)."""
    from nqs.plotting import write_plot

    for name, rec in records.items():
        path = out / f"observable_{name}.png"
        mean = np.asarray(rec["mean"], float)
        err = rec.get("error")
        if name == "rdm1":
            def plot(path=path, mean=mean) -> None:
                _plot_heatmap(path, mean.reshape(n_orbitals, n_orbitals),
                              f"1-RDM gamma_pq: {title}", "q", "p")
        elif name == "natural_occupations":
            def plot(path=path, mean=mean) -> None:
                _plot_values(path, [str(k) for k in range(len(mean))], mean, None,
                             f"natural occupations: {title}", "occupation")
        elif name == "dipole":
            def plot(path=path, mean=mean, err=err) -> None:
                _plot_values(path, ["x", "y", "z"], mean, err, f"dipole: {title}",
                             "mu (e bohr)")
        else:
            def plot(path=path, mean=mean, err=err, name=name) -> None:
                _plot_values(path, [name], np.atleast_1d(mean), np.atleast_1d(err), title,
                             "expectation value")
        write_plot(plot, path)


def realspace_plots(out: Path, records: dict[str, dict], title: str) -> None:
    """``observable_density.png`` (radial: 4 pi r^2 rho(r), axial: electrons per bohr, beside
    Hartree-Fock's), ``observable_dipole.png`` and ``observable_forces.png`` (every nucleus's
    x, y, z; failures are warnings)."""
    from nqs.plotting import write_plot

    for name, rec in records.items():
        path = out / f"observable_{name}.png"
        if name == "density":
            def plot(path=path, rec=rec) -> None:
                _plot_density(path, rec, title)
        elif name == "forces":
            def plot(path=path, rec=rec) -> None:
                n_atoms = len(rec["mean"])
                labels = [f"{i}{a}" for i in range(n_atoms) for a in "xyz"]
                _plot_values(path, labels, np.ravel(rec["mean"]), np.ravel(rec["error"]),
                             f"forces (zero-variance): {title}", "F (hartree / bohr)")
        else:
            def plot(path=path, rec=rec) -> None:
                _plot_values(path, ["x", "y", "z"], rec["mean"], rec["error"],
                             f"dipole: {title}", "mu (e bohr)")
        write_plot(plot, path)


def _plot_density(path: Path, rec: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nqs.io import save_figure_atomic

    mean, err = np.asarray(rec["mean"], float), np.asarray(rec["error"], float)
    hf = None if rec.get("hf") is None else np.asarray(rec["hf"], float)
    if rec["kind"] == "radial":
        x = np.asarray(rec["r"], float)
        w = 4.0 * np.pi * x ** 2  # the radial distribution: electrons per bohr of radius
        xlabel, ylabel = "r (bohr)", "4 pi r^2 rho(r) (electrons / bohr)"
    else:
        x = np.asarray(rec["s"], float)
        w = np.ones_like(x)
        xlabel, ylabel = "position along the molecular axis (bohr)", "electrons / bohr"
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(x, w * mean, yerr=w * err, fmt="o", ms=3, capsize=2, label="FermiNet (VMC)")
    if hf is not None:
        ax.plot(x, w * hf, "-", color="C1", label="Hartree-Fock")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _title(ax, f"electron density: {title}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def write_observables(out: Path, records: dict[str, dict]) -> Path:
    """``out/observables.json`` written atomically."""
    from nqs.io import write_json_atomic

    path = Path(out) / OBSERVABLES_NAME
    write_json_atomic(path, records)
    return path
