"""Shared, session-scoped simulations (small: a few days each) for the simulator tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from quality_platform.config import PlantConfig, load_plants
from quality_platform.simulation import simulate

SCENARIO_DAYS = 6


@pytest.fixture(scope="session")
def plants() -> dict[str, PlantConfig]:
    """The committed plant configs."""
    return load_plants()


@pytest.fixture(scope="session")
def stable8(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Stable scenario, 8 days from the default start, seed 7."""
    root = tmp_path_factory.mktemp("stable8")
    return root, simulate(root, days=8)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """Cached scenario runs over SCENARIO_DAYS days: ``runs(name) -> (root, truth)``."""
    cache: dict[str, tuple[Path, dict]] = {}

    def get(name: str) -> tuple[Path, dict]:
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            cache[name] = (root, simulate(root, days=SCENARIO_DAYS, scenario=name))
        return cache[name]

    return get
