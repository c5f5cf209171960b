"""Shared fixtures: an isolated platform installation per test (config copy, temp warehouse,
temp Dagster instance, a test pseudonymisation key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quality_platform.settings import Paths, copy_installation

TEST_KEY = "test-key-0123456789abcdef-not-a-secret"


def make_installation(root: Path, plants: tuple[str, ...] | None = None) -> Paths:
    """Copy the committed configuration into ``root/data`` (optionally only some plants)."""
    return copy_installation(root, plants)


def tune_small_model(paths: Paths, **gate: object) -> None:
    """Small-data model settings for tests on a few simulated days: 4-day training window, fewer
    trees, smaller minimum samples for the gate and the canary; ``gate`` overrides gate fields."""
    import yaml

    f = paths.config_dir / "ml" / "model.yaml"
    cfg = yaml.safe_load(f.read_text())
    cfg["training"].update(window_days=4)
    cfg["catboost"].update(iterations=120)
    cfg["gate"]["per_plant"].update(min_units=300, min_positives=10, bootstrap_resamples=100)
    cfg["gate"].update(min_roc_auc=0.7, min_pr_auc=0.1, max_ece=0.05)
    cfg["gate"].update(gate)
    cfg["canary"].update(min_labelled_units=300, min_positives=10, share=0.3)
    f.write_text(yaml.safe_dump(cfg))


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
