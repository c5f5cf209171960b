"""Shared fixtures: an isolated platform installation per test (config copy, temp warehouse,
temp Dagster instance, a test pseudonymisation key)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from quality_platform.settings import REPO_ROOT, Paths

TEST_KEY = "test-key-0123456789abcdef-not-a-secret"


def make_installation(root: Path, plants: tuple[str, ...] | None = None) -> Paths:
    """Copy the committed configuration into ``root/data`` (optionally only some plants)."""
    data = root / "data"
    (data / "plants").mkdir(parents=True)
    src = REPO_ROOT / "data"
    for f in sorted((src / "plants").glob("*.yaml")):
        if plants is None or f.stem in plants:
            shutil.copy(f, data / "plants" / f.name)
    shutil.copytree(src / "standard", data / "standard")
    shutil.copy(src / "kpis.yaml", data / "kpis.yaml")
    shutil.copy(src / "platform.yaml", data / "platform.yaml")
    shutil.copy(src / "features.yaml", data / "features.yaml")
    shutil.copytree(src / "ml", data / "ml")
    (data / "datasets").mkdir()
    (data / "datasets" / "ai4i2020").symlink_to(src / "datasets" / "ai4i2020")
    return Paths(data_dir=data, config_dir=data)


@pytest.fixture
def qp_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """An isolated installation with all committed plants, wired through the environment."""
    paths = make_installation(tmp_path)
    monkeypatch.setenv("QP_DATA_DIR", str(paths.data_dir))
    monkeypatch.setenv("QP_CONFIG_DIR", str(paths.config_dir))
    monkeypatch.setenv("QP_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("QP_LANDING_DIR", raising=False)
    monkeypatch.delenv("QP_WAREHOUSE", raising=False)
    monkeypatch.delenv("QP_AUDIT_DB", raising=False)
    monkeypatch.delenv("QP_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("QP_MLFLOW_ARTIFACT_ROOT", raising=False)
    (tmp_path / "dagster_home").mkdir()
    return paths
