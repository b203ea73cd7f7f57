"""The import-linter contracts of pyproject.toml (checked by ``lint-imports`` in CI) stay in step
with the package: the engine tier of the "tiers" contract lists every module of ``nqs`` outside
the application layer, the same ones the exhaustive "nqs-layers" contract places."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPLICATION = {"__main__", "cli", "commands", "bench", "problems"}


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _names(layer: str) -> set[str]:
    return {n for n in re.split(r"[\s:|]+", layer) if n}


def test_engine_tier_lists_every_engine_module() -> None:
    children = {p.stem if p.is_file() else p.name for p in (ROOT / "nqs").iterdir()
                if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    engine = children - APPLICATION
    tiers = _contracts()["tiers"]["layers"]
    assert _names(tiers[0]) == {f"nqs.{m}" for m in APPLICATION}
    assert _names(tiers[1]) == {"hamiltonians"}
    assert _names(tiers[2]) == {f"nqs.{m}" for m in engine}
    inner = set().union(*(_names(layer) for layer in _contracts()["nqs-layers"]["layers"]))
    assert inner == children
