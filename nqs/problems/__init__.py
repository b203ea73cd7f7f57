"""Builders shared by the CLI and experiment scripts: standard ansatz and sampler choices.

These take objects and plain values (never a config dict) and return engine objects. A run of
electrons in real space from its options: :mod:`nqs.problems.realspace` (its device-sized
defaults: :mod:`nqs.problems.realspace_defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nqs.ansatz import Ansatz
from nqs.errors import InputError
from nqs.hilbert import FermionHilbert, SpinHilbert
from nqs.sampling.base import Sampler

if TYPE_CHECKING:
    from nqs.models.ci_prior import DeterminantTable

SPIN_ANSATZE = ("rbm", "rbm-symm", "gcnn", "vit")
"""Ansatz kinds of :func:`spin_ansatz` (``nqs spin --ansatz``)."""

SYMMETRY_GROUPS = ("translations", "space-group")
"""Symmetry groups of the GCNN and of the projection (``--symmetries``)."""


def lattice_symmetries(lattice, group: str) -> np.ndarray:
    """Site permutations ``[G, n_sites]`` of ``lattice``: its translations or its space group
    (translations times point group; the identity alone on an open lattice)."""
    if group == "translations":
        return lattice.translations()
    if group == "space-group":
        return lattice.space_group()
    raise InputError(f"unknown symmetry group {group!r}; choose {' or '.join(SYMMETRY_GROUPS)}")


def spin_ansatz(
    model,
    kind: str,
    alpha: float,
    complex_params: bool = True,
    *,
    features: int = 4,
    layers: int = 2,
    symmetries: str = "translations",
    project: bool = False,
    parity: str = "none",
    momentum: tuple[int, ...] | None = None,
    patch: int = 2,
    embed: int = 8,
    depth: int = 2,
    heads: int = 2,
) -> Ansatz:
    """An ansatz for a spin model.

    ``kind``: ``"rbm"`` (M = alpha N hidden units), ``"rbm-symm"`` (translation-symmetric RBM,
    integer alpha filters) or ``"gcnn"`` (:mod:`nqs.models.gcnn`: ``layers`` layers of
    ``features`` channels over the lattice's ``symmetries``, translations or space group) or
    ``"vit"`` (:mod:`nqs.models.vit`, square lattices: ``patch x patch`` patches embedded in
    ``embed`` dimensions, ``depth`` blocks of factored attention with ``heads`` heads).
    ``project``: wrap the ansatz in the projection on the trivial irrep of ``symmetries``
    (:mod:`nqs.models.symmetry`); ``parity``: also project on a spin-flip parity (``none``,
    ``even``, ``odd``). The GCNN is invariant by construction and is not projected again.
    ``momentum``: project on this momentum instead (integers ``k_d``, units of ``2 pi / L_d``
    per lattice direction; characters ``exp(2 pi i sum_d k_d s_d / L_d)`` of the
    translations): an ``rbm`` or ``vit`` with ``project`` over ``"translations"`` of a
    periodic lattice (rbm-symm and the GCNN are momentum zero by construction).
    """
    import jax.numpy as jnp

    from nqs.models.gcnn import make_gcnn
    from nqs.models.rbm import make_rbm, make_rbm_symm
    from nqs.models.symmetry import PARITIES, make_projected

    if not alpha > 0:
        raise InputError(f"alpha must be positive, got {alpha}")
    if parity not in PARITIES:
        raise InputError(f"unknown spin-flip parity {parity!r}; choose none, even or odd")
    dtype = jnp.complex128 if complex_params else jnp.float64
    n = model.hilbert.n_sites
    group = (lattice_symmetries(model.lattice, symmetries)
             if kind in ("gcnn", "rbm-symm") or project else None)
    if kind == "rbm":
        ansatz = make_rbm(n, alpha, flip_constant=0.0, param_dtype=dtype)
    elif kind == "rbm-symm":
        if float(alpha) != int(alpha):
            raise InputError(f"rbm-symm needs an integer alpha, got {alpha}")
        ansatz = make_rbm_symm(group, int(alpha), flip_constant=0.0, param_dtype=dtype)
    elif kind == "gcnn":
        if features <= 0 or layers <= 0:
            raise InputError(f"GCNN features and layers must be positive, got {features}, {layers}")
        ansatz = make_gcnn(group, int(features), layers=int(layers), param_dtype=dtype)
        project = False
    elif kind == "vit":
        from nqs.models.vit import vit_for_lattice

        ansatz = vit_for_lattice(model.lattice, patch=patch, embed=embed, depth=depth,
                                 heads=heads)
    else:
        raise InputError(f"unknown ansatz {kind!r}; choose {', '.join(SPIN_ANSATZE)}")
    characters = None
    if momentum is not None:
        characters = _momentum_characters(model.lattice, kind, project, symmetries, momentum)
    if project or parity != "none":
        identity = np.arange(n)[None, :]
        ansatz = make_projected(ansatz, group if project else identity, characters=characters,
                                parity=parity)
    return ansatz


def _momentum_characters(lattice, kind: str, project: bool, symmetries: str,
                         momentum: tuple[int, ...]) -> tuple[complex, ...]:
    """The translations' characters of ``momentum``, after refusing (InputError) what cannot
    take one: an invariant ansatz, no projection, another group, an open lattice, or a
    momentum with the wrong number of components."""
    from nqs.models.symmetry import momentum_characters

    if kind in ("rbm-symm", "gcnn"):
        raise InputError(f"{kind} is invariant under translations (momentum zero); project an "
                         "rbm or vit on a momentum (--ansatz rbm --momentum ...)")
    if not project or symmetries != "translations":
        raise InputError("a momentum is an irrep of the translations: it needs --project over "
                         "--symmetries translations")
    if not getattr(lattice, "pbc", False):
        raise InputError("an open lattice has no translations, hence no momentum")
    extent = tuple(int(v) for v in lattice.extent)
    if len(momentum) != len(extent):
        raise InputError(f"--momentum needs {len(extent)} integer(s), one per lattice direction "
                         f"of the {'x'.join(map(str, extent))} cells, got {len(momentum)}")
    return momentum_characters(lattice.translations(), extent,
                               tuple(int(k) % n for k, n in zip(momentum, extent, strict=True)))


def spin_sampler(
    model, kind: str, n_samples: int, n_chains: int, n_discard_sweeps: int = 4,
    ratio_dtype: str = "float64", antiparallel: bool = False,
) -> Sampler:
    """Metropolis (single flips, or bond exchanges in a fixed-S^z sector) or exact enumeration.

    ``ratio_dtype``: precision of the Metropolis acceptance ratios on the per-pattern path
    (:class:`nqs.sampling.metropolis.MetropolisSampler`); ignored by the exact sampler.
    ``antiparallel``: exchange only antiparallel bonds
    (:class:`nqs.sampling.rules.AntiparallelExchangeRule`; see :func:`exchange_antiparallel`).
    """
    from nqs.sampling.exact import ExactSampler
    from nqs.sampling.metropolis import MetropolisSampler
    from nqs.sampling.rules import AntiparallelExchangeRule, ExchangeRule, LocalRule

    hilbert: SpinHilbert = model.hilbert
    if n_samples <= 0 or n_chains <= 0:
        raise InputError("samples and chains must be positive integers")
    if kind == "exact":
        return ExactSampler(hilbert)
    if kind != "mcmc":
        raise InputError(f"unknown sampler {kind!r}; choose mcmc or exact")
    if hilbert.total_sz is None:
        rule = LocalRule()
    else:
        bonds = np.asarray(model.lattice.bonds)
        rule = AntiparallelExchangeRule(bonds) if antiparallel else ExchangeRule(bonds)
    if n_discard_sweeps < 0:
        raise InputError(f"discarded sweeps must be >= 0, got {n_discard_sweeps}")
    return MetropolisSampler(hilbert, rule, n_chains=min(n_chains, n_samples), n_samples=n_samples,
                             n_discard_sweeps=n_discard_sweeps, ratio_dtype=ratio_dtype)


def exchange_antiparallel(ansatz: Any) -> bool:
    """Whether the exchange sampler of ``ansatz`` draws antiparallel bonds only: yes for a
    network that evaluates ``log psi`` for every proposal (GCNN, ViT, projected states), where
    an exchange of parallel spins would cost a whole evaluation for the identity move; no for
    the RBMs, whose per-pattern tables make each exchange cheap only for a fixed list of moves
    (:class:`nqs.ansatz.TermUpdates`)."""
    fast = getattr(ansatz, "local_updates", None)
    return fast is None or fast.terms is None


def fermion_hop_groups(hilbert: FermionHilbert) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Alpha and beta spin-orbital index groups (electron hops stay inside a group)."""
    n = hilbert.n_orbitals
    return tuple(range(n)), tuple(range(n, 2 * n))


EXACT_AUTO_LIMIT = 100_000


MOLECULE_ANSATZE = ("auto", "backflow", "rbm", "autoregressive")
MOLECULE_SAMPLERS = ("auto", "exact", "mcmc", "autoregressive")


def molecule_method(n_determinants: int, ansatz: str = "auto", sampler: str = "auto"
                    ) -> tuple[str, str]:
    """``(ansatz, sampler)`` with ``"auto"`` resolved.

    Both ``"auto"``: the autoregressive ansatz with exact autoregressive sampling and its
    selected-CI start, at every size (at its defaults it reaches chemical accuracy on small
    molecules where backflow with exact summation at its defaults does not: O2 and NO open
    shells, CH4; ``docs/molecules.md``). An explicit choice of one picks the other to match:
    ``exact`` or ``mcmc`` take a backflow state, and ``backflow`` or ``rbm`` sum exactly up to
    ``EXACT_AUTO_LIMIT`` determinants and use Metropolis beyond it.
    """
    if ansatz not in MOLECULE_ANSATZE:
        raise InputError(f"unknown ansatz {ansatz!r}; choose {', '.join(MOLECULE_ANSATZE)}")
    if sampler not in MOLECULE_SAMPLERS:
        raise InputError(f"unknown sampler {sampler!r}; choose {', '.join(MOLECULE_SAMPLERS)}")
    if ansatz == "auto":
        ansatz = "autoregressive" if sampler in ("auto", "autoregressive") else "backflow"
    if sampler == "auto":
        small = n_determinants <= EXACT_AUTO_LIMIT
        sampler = ("autoregressive" if ansatz == "autoregressive"
                   else "exact" if small else "mcmc")
    if sampler == "autoregressive" and ansatz != "autoregressive":
        raise InputError(f"the autoregressive sampler draws from the autoregressive ansatz, "
                         f"not {ansatz}; use --ansatz autoregressive (or auto)")
    return ansatz, sampler


def molecule_ansatz(
    hilbert: FermionHilbert,
    kind: str,
    *,
    alpha: float = 2.0,
    hidden: tuple[int, ...] = (64,),
    n_determinants: int = 1,
    init_scale: float = 0.05,
    backbone: str = "made",
    phase: str = "mlp",
    prior: DeterminantTable | None = None,
) -> Ansatz:
    """Neural backflow determinant(s) (``"backflow"``), complex RBM (``"rbm"``, Choo et al.),
    or an autoregressive state (``"autoregressive"``: ``backbone`` ``"made"`` with ``hidden``
    widths, or ``"transformer"``, and ``phase`` ``"mlp"`` or ``"conditional"``;
    :mod:`nqs.models.autoregressive`).

    ``init_scale``: size of the random perturbation of the Hartree-Fock orbitals at
    initialization. Monte Carlo needs a larger one (e.g. 0.3) than exact summation: a state too
    close to the HF determinant is sampled as HF alone, which gives a zero gradient estimate.
    """
    if kind == "autoregressive":
        from nqs.models.autoregressive import make_autoregressive

        # the phase network as wide as the amplitudes': half the error of a fitted H2O/6-31G
        # start is in its signs
        return make_autoregressive(hilbert, backbone, hidden=hidden, phase_hidden=hidden,
                                   phase=phase, prior=prior)
    if kind == "backflow":
        from nqs.models.backflow import make_backflow

        return make_backflow(hilbert, hidden=hidden, n_determinants=n_determinants,
                             init_scale=init_scale)
    if kind == "rbm":
        from nqs.models.rbm import make_rbm

        if not alpha > 0:
            raise InputError(f"alpha must be positive, got {alpha}")
        return make_rbm(hilbert.n_sites, alpha, flip_constant=1.0)
    raise InputError(f"unknown ansatz {kind!r}; choose backflow, rbm or autoregressive")


MOLECULE_RULES = ("pair-hop", "connected")


def molecule_sampler(
    hilbert: FermionHilbert,
    kind: str,
    n_samples: int,
    n_chains: int = 16,
    *,
    rule: str = "pair-hop",
    power: float = 1.0,
    integrals=None,
    max_unique: int = 1024,
) -> tuple[Sampler, str]:
    """``(sampler, mode)``: exact summation over all determinants or Metropolis electron hops.

    ``kind="auto"`` sums exactly when the space has at most ``EXACT_AUTO_LIMIT`` determinants.
    Metropolis moves (``rule``): ``"pair-hop"``, single hops mixed with simultaneous alpha + beta
    hops (uniform over all orbitals); ``"connected"``, excitations that the integrals connect
    (:class:`nqs.sampling.rules.ConnectedRule`, needs ``integrals`` with ``h1``, ``h2``).
    ``power`` q: the chains sample ``|psi|^(2q)``, reweighted to ``|psi|^2`` (q < 1 flattens a
    distribution peaked on the Hartree-Fock determinant).
    ``kind="autoregressive"``: exact draws from an autoregressive ansatz, ``n_samples`` draws
    at most per step in at most ``max_unique`` distinct determinants
    (:class:`nqs.sampling.autoregressive.AutoregressiveSampler`; ``power`` < 1: its
    conditionals raised to q, reweighted exactly to ``|psi|^2``).
    """
    from nqs.sampling.exact import ExactSampler
    from nqs.sampling.metropolis import MetropolisSampler
    from nqs.sampling.rules import ConnectedRule, PairHopRule

    if kind not in MOLECULE_SAMPLERS:
        raise InputError(f"unknown sampler {kind!r}; choose {', '.join(MOLECULE_SAMPLERS)}")
    if not 0.0 < power <= 1.0:
        raise InputError(f"the sampling power must be in (0, 1], got {power}")
    if kind == "autoregressive":
        from nqs.sampling.autoregressive import AutoregressiveSampler

        if n_samples <= 0 or max_unique <= 0:
            raise InputError("samples and the number of distinct samples must be positive "
                             "integers")
        return (AutoregressiveSampler(hilbert, int(n_samples), int(max_unique), float(power)),
                "autoregressive")
    if rule not in MOLECULE_RULES:
        raise InputError(f"unknown Metropolis rule {rule!r}; choose {' or '.join(MOLECULE_RULES)}")
    if kind == "exact" or (kind == "auto" and hilbert.n_states <= EXACT_AUTO_LIMIT):
        return ExactSampler(hilbert), "exact"
    if n_samples <= 0 or n_chains <= 0:
        raise InputError("samples and chains must be positive integers")
    if rule == "connected":
        if integrals is None:
            raise InputError("the connected rule needs the molecular integrals")
        move = ConnectedRule.from_integrals(integrals.h1, integrals.h2)
    else:
        # single hops mixed with simultaneous alpha + beta hops (reach doubles from near-HF)
        move = PairHopRule(fermion_hop_groups(hilbert), occupied_value=1.0)
    sampler = MetropolisSampler(hilbert, move, n_chains=min(n_chains, n_samples),
                                n_samples=n_samples, power=float(power))
    return sampler, "mcmc"


@dataclass(frozen=True, eq=False)
class SectorHilbert(FermionHilbert):
    """A :class:`FermionHilbert` restricted to a fixed set of determinants (``states``).

    ``all_states()`` returns ``states`` [n, 2 n_orbitals] (so exact summation runs over them
    only); ``random_state`` still draws from the whole space (it only seeds parameter shapes).
    Compared and hashed by identity.
    """

    states: np.ndarray | None = None

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def all_states(self) -> np.ndarray:
        """The sector's configurations, ``[n_states, n_sites]``."""
        return self.states

    @property
    def n_states(self) -> int:
        """Number of configurations in the sector."""
        return len(self.states)


@dataclass(frozen=True, eq=False)
class SectorOperator:
    """``operator`` with its space replaced by a :class:`SectorHilbert` closed under it."""

    operator: object
    hilbert: SectorHilbert

    @property
    def max_conn(self) -> int:
        """Connected configurations per row, as the full operator's."""
        return self.operator.max_conn

    def flips(self, x):
        """The wrapped operator's ``flips`` (connections stay inside the sector)."""
        return self.operator.flips(x)


def hartree_fock_sector(operator) -> SectorOperator:
    """The molecular ``operator`` restricted to the determinants H connects to Hartree-Fock.

    H conserves the symmetries of the molecule (point group, visible in the integrals as exact
    zeros), so its matrix splits into blocks; the ground state of the block that holds the
    Hartree-Fock determinant is found by summing over that block alone (C2 in STO-3G: 22052 of
    44100 determinants). The state ``psi`` restricted to the block is a valid variational state:
    its energy is computed exactly and stays above the block's FCI energy. The block is the
    connected component of the Hartree-Fock determinant in the graph of non-zero elements of
    the sparse H (built once over the whole space).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from nqs.exact import configuration_keys, sparse_hamiltonian

    hilbert: FermionHilbert = operator.hilbert
    full = sparse_hamiltonian(operator)
    n = len(full.states)
    graph = coo_matrix((np.ones(len(full.rows)), (full.rows, full.cols)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    keys = configuration_keys(full.states, hilbert)
    hf_key = configuration_keys(hilbert.hartree_fock_state()[None], hilbert)[0]
    hf = int(np.flatnonzero(keys == hf_key)[0])
    states = np.ascontiguousarray(full.states[labels == labels[hf]])
    states.setflags(write=False)
    sector = SectorHilbert(hilbert.n_orbitals, hilbert.n_alpha, hilbert.n_beta, states)
    return SectorOperator(operator, sector)
