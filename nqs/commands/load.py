"""The state of a run loaded back from its directory (finished or interrupted).

    from nqs.commands.load import load_run, load_state

    state = load_state("runs/spin")              # nqs.state.VariationalState
    print(state.expect(operator).mean)
    run = load_run("runs/h2")                    # LoadedRun(state, operator, step, metadata)
    print(run.state.expect(run.operator).mean)   # the energy of the checkpointed parameters

A run directory of ``nqs spin``, ``nqs molecule`` (or one molecule's directory of
``nqs bench-fci``) holds ``checkpoint.msgpack``, whose metadata records the options that built
the run (its fingerprint, seed and dtype); a molecule's directory also holds the integrals
(``integrals.npz``). The model, ansatz and sampler are rebuilt from them, the parameters and
Markov chains read from the checkpoint (the last one written: the final state of a finished
run, the last checkpoint of an interrupted one). The integrals are checked against the digest
in the fingerprint.

A run of ``nqs realspace`` loads as a :class:`hamiltonians.realspace_observables.RealSpaceState`
(network, parameters and walkers; ``measure(["density", "dipole"])``, ``energy()``), its
system rebuilt from the nuclei and electron counts in the checkpoint.

Every failure (no checkpoint, a checkpoint of a real-space run or of a run made through the
Python API, missing or changed integrals) is one line: :class:`nqs.errors.CheckpointError`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nqs.errors import CheckpointError
from nqs.loop import CHECKPOINT_NAME


@dataclass
class LoadedRun:
    """A run read back: its state, the operator it minimized, its step and metadata."""

    state: Any  # nqs.state.VariationalState (real space: hamiltonians.realspace_observables.RealSpaceState)
    operator: Any  # the Hamiltonian (a spin model, a MolecularHamiltonian; real space: the atoms)
    kind: str  # "spin", "molecule" or "realspace"
    step: int  # steps done when the checkpoint was written
    metadata: dict[str, Any]
    model: Any = None  # the spin model (lattice), the MolecularIntegrals, or the atoms


def load_state(run_dir: str | Path, seed: int | None = None) -> Any:
    """The :class:`nqs.state.VariationalState` of the run in ``run_dir`` (:func:`load_run`)."""
    return load_run(run_dir, seed).state


def load_run(run_dir: str | Path, seed: int | None = None) -> LoadedRun:
    """Rebuild the run in ``run_dir`` (module docstring). ``seed``: the new state's PRNG
    seed for fresh draws (default: the run's seed); its chains continue from the checkpoint."""
    from nqs.driver import _marshall_sublattice, load_checkpoint_state
    from nqs.io import load_checkpoint_metadata
    from nqs.state import VariationalState

    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT_NAME if run_dir.is_dir() else run_dir
    if not ckpt.is_file():
        raise CheckpointError(f"no checkpoint to load: {ckpt} does not exist")
    meta = load_checkpoint_metadata(ckpt)
    from nqs.problems.realspace import recorded_options

    options = recorded_options(meta)
    if "symbols" in options and ("layers" in options
                                 or options.get("ansatz") in ("psiformer", "lapnet")):
        return _realspace(ckpt, options | {"seed": meta.get("seed", 0)}, seed)
    fp = meta.get("fingerprint")
    if not isinstance(fp, dict):
        raise CheckpointError(f"checkpoint {ckpt} records no options to rebuild its run from "
                              "(written through the Python API or by an older nqs): rebuild "
                              "the ansatz and sampler and read it with "
                              "nqs.driver.load_checkpoint_state")
    if "integrals" in fp:
        kind, model, operator, ansatz, sampler, optimizer = "molecule", *_molecule(ckpt, fp, meta)
    elif "lattice" in fp:
        kind, model, operator, ansatz, sampler, optimizer = "spin", *_spin(fp, meta)
    else:
        raise CheckpointError(f"checkpoint {ckpt} is not of an nqs spin, molecule or "
                              "real-space run")
    vmc_state, _ = load_checkpoint_state(ckpt, ansatz, operator, sampler, optimizer)
    import jax

    state = VariationalState(ansatz, vmc_state.params, sampler, vmc_state.sampler_state,
                             key=jax.random.PRNGKey(int(meta.get("seed", 0) if seed is None
                                                        else seed)),
                             marshall_sublattice=_marshall_sublattice(operator))
    return LoadedRun(state, operator, kind, int(vmc_state.step), meta, model)


def _spin(fp: dict[str, Any], meta: dict[str, Any]) -> tuple:
    from nqs.commands import spin

    parser = argparse.ArgumentParser()
    spin.register(parser.add_subparsers())
    args = parser.parse_args(["spin"])  # the defaults of options a checkpoint may predate
    for key, value in fp.items():
        setattr(args, key, value)
    args.dtype = meta.get("dtype", "float64")
    model, ansatz, sampler = spin.build_problem(args)
    return model, model, ansatz, sampler, spin.spin_optimizer(args)


def _molecule(ckpt: Path, fp: dict[str, Any], meta: dict[str, Any]) -> tuple:
    import dataclasses

    from hamiltonians.molecule import load_npz
    from nqs.bench.fci import (
        INTEGRALS_NAME,
        SAVE_INTEGRALS_MAX_ORBITALS,
        Settings,
        build_problem,
        fingerprint,
        load_prior,
        make_scheduled_optimizer,
    )

    path = ckpt.parent / INTEGRALS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: the molecule's integrals are needed to "
                              "load its state (runs of an older nqs, and active spaces of more "
                              f"than {SAVE_INTEGRALS_MAX_ORBITALS} orbitals, do not write "
                              "them)")
    integrals = load_npz(path)
    fields = {f.name for f in dataclasses.fields(Settings)}
    values = {k: v for k, v in fp.items() if k in fields}
    if values.get("hidden") is not None:
        values["hidden"] = tuple(values["hidden"])
    settings = Settings(**values, seed=int(meta.get("seed", 0)),
                        dtype=meta.get("dtype", "float64"))
    hamiltonian, sampler, ansatz, _, settings = build_problem(integrals, settings,
                                                              prior=load_prior(ckpt.parent))
    if fingerprint(integrals, settings)["integrals"] != fp["integrals"]:
        raise CheckpointError(f"{path} does not hold the integrals of checkpoint {ckpt} "
                              "(their digest differs)")
    return integrals, hamiltonian, ansatz, sampler, make_scheduled_optimizer(settings)


def _realspace(ckpt: Path, meta: dict[str, Any], seed: int | None) -> LoadedRun:
    from hamiltonians.ecp import load_ecps
    from hamiltonians.molecule import element_charge
    from hamiltonians.realspace import make_atoms
    from hamiltonians.realspace_observables import RealSpaceState
    from nqs.problems.realspace import load_network_state

    symbols, positions = meta["symbols"], meta["positions"]
    n_el = int(meta["n_alpha"]) + int(meta["n_beta"])
    ecp = meta.get("ecp")  # {symbol: name} of a run with ECPs
    geometry = list(zip(symbols, [tuple(p) for p in positions], strict=True))
    n_core = sum(e.n_core for e in load_ecps(ecp, symbols) if e is not None) if ecp else 0
    charge = sum(element_charge(s) for s in symbols) - n_core - n_el
    atoms = make_atoms(geometry, charge=charge, spin=int(meta["n_alpha"]) - int(meta["n_beta"]),
                       unit="bohr", ecp=ecp)
    params, log_psi, walkers, meta = load_network_state(ckpt, atoms)
    state = RealSpaceState(atoms, params, log_psi, walkers, int(meta.get("mcmc_steps", 10)),
                           int(meta.get("seed", 0) if seed is None else seed))
    return LoadedRun(state, atoms, "realspace", int(meta["step"]), meta, atoms)
