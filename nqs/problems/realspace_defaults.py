"""Run sizes of ``nqs realspace`` when the user sets none: chosen by the device, in one place.

    d = realspace_defaults(jax.default_backend())
    print(d.describe())

On a CPU the paper's network (4 layers of (256, 32), 16 determinants, about 0.7 M parameters)
costs seconds per step: a small one (2 layers of (32, 8), 4 determinants, 256 walkers) reaches He
within 2 mHa and H within 0.1 mHa in minutes (docs/realspace.md, "Defaults and timings"). On a GPU
or TPU the paper's network is kept. Explicit flags always win over these values.

The optimizer default everywhere is SPRING (``"sr"`` with momentum 0.9, Goldshlager et al. 2024):
it runs on every jax; KFAC (kfac-jax 0.0.8) does not on jax >= 0.11 (:data:`KFAC_BLOCKER`).
"""

from __future__ import annotations

from dataclasses import dataclass

# What stops KFAC upstream (repeated in docs/realspace.md).
KFAC_BLOCKER = ("kfac-jax 0.0.8, its newest release, imports jax.core names that jax 0.11 removed "
                "and expects ClosedJaxpr, which jax 0.11 merged into Jaxpr")

# The optimizer a failed KFAC falls back to, and the default everywhere.
FALLBACK_OPTIMIZER = "sr"
FALLBACK_MOMENTUM = 0.9


@dataclass(frozen=True)
class RealSpaceDefaults:
    """Sizes of a real-space run chosen for a device.

    Attributes:
        platform: the jax platform they were chosen for (``"cpu"``, ``"gpu"``, ...).
        layers: FermiNet (or Psiformer) layers. hidden: FermiNet widths (one-electron,
            two-electron stream). heads, width: the Psiformer's attention heads and width.
        determinants: determinants. walkers: Markov chains. steps: optimization steps.
        optimizer: ``"sr"``, ``"kfac"`` or ``"adam"``. momentum: SPRING's mu (``"sr"`` only).
        learning_rate: lr of ``lr / (1 + t / delay)`` with this optimizer (None: the
            optimizer's own default, ``nqs.problems.realspace.DEFAULT_LR``).
        reason: why these sizes (one phrase, printed).
    """

    platform: str
    layers: int
    hidden: tuple[int, int]
    determinants: int
    walkers: int
    steps: int
    optimizer: str
    momentum: float
    learning_rate: float | None
    reason: str
    heads: int = 2
    width: int = 32

    def describe(self, fields: tuple[str, ...] | None = None) -> str:
        """One line naming the chosen values (``fields``: those to name; None: all)."""
        parts = {
            "layers": f"{self.layers} layers",
            "hidden": f"hidden ({self.hidden[0]}, {self.hidden[1]})",
            "heads": f"{self.heads} heads",
            "width": f"width {self.width}",
            "determinants": f"{self.determinants} determinants",
            "walkers": f"{self.walkers} walkers",
            "steps": f"{self.steps} steps",
            "optimizer": (f"SPRING (--optimizer sr --momentum {self.momentum:g}"
                          if self.optimizer == "sr" and self.momentum > 0 else
                          f"--optimizer {self.optimizer}")
            + ("" if self.learning_rate is None else f" --lr {self.learning_rate:g}")
            + (")" if self.optimizer == "sr" and self.momentum > 0 else ""),
        }
        names = tuple(parts) if fields is None else fields
        return ", ".join(parts[n] for n in names if n in parts)


#: CPU optimization steps per electron past two electrons (:func:`realspace_defaults`).
CPU_STEPS_PER_ELECTRON = 400


def realspace_defaults(platform: str, n_electrons: int | None = None) -> RealSpaceDefaults:
    """The default run sizes for a jax ``platform`` (``jax.default_backend()``) and a system of
    ``n_electrons`` (None: sized as for two).

    ``"cpu"``: a small FermiNet (2 x (32, 8), 4 determinants), 256 walkers, SPRING at lr 0.2
    for 400 steps with one or two electrons (H and He converge within 0.1 mHa) and
    :data:`CPU_STEPS_PER_ELECTRON` per electron past that (the Li atom was 8.6 mHa above exact
    after 400 steps, 0.3 mHa after 1200-1600); anything else (``"gpu"``, ``"cuda"``,
    ``"rocm"``, ``"tpu"``): FermiNet's network (4 x (256, 32), 16 determinants), 1024
    walkers, 1000 steps of SPRING at its default lr.
    A Psiformer (``--ansatz psiformer``) takes the same layers, determinants, walkers, steps and
    optimizer, with 2 heads of width 32 on a CPU and the paper's 4 heads of width 256 elsewhere.
    """
    if platform.lower() == "cpu":
        n = 2 if n_electrons is None else int(n_electrons)
        return RealSpaceDefaults(
            platform="cpu", layers=2, hidden=(32, 8), determinants=4, walkers=256,
            steps=400 if n <= 2 else CPU_STEPS_PER_ELECTRON * n,
            optimizer=FALLBACK_OPTIMIZER, momentum=FALLBACK_MOMENTUM, learning_rate=0.2,
            reason="a CPU: a small network (the paper's takes seconds per step here)",
            heads=2, width=32,
        )
    return RealSpaceDefaults(
        platform=platform.lower(), layers=4, hidden=(256, 32), determinants=16, walkers=1024,
        steps=1000, optimizer=FALLBACK_OPTIMIZER, momentum=FALLBACK_MOMENTUM, learning_rate=None,
        reason=f"an accelerator ({platform}): FermiNet's network (Pfau et al. 2020)",
        heads=4, width=256,  # the Psiformer's (von Glehn et al. 2023)
    )
