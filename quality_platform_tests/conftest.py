"""Shared fixtures: an isolated platform installation per test (config copy, temp warehouse,
temp Dagster instance, a test pseudonymisation key)."""

from __future__ import annotations

import datetime as dt
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


def relax_completeness(paths: Paths) -> None:
    """Completeness gates off (WARN and ERROR at 0 %), for tests that deliver a reading or two a day."""
    cfg = paths.platform_file
    cfg.write_text(
        cfg.read_text()
        .replace("completeness_warn_below: 0.95", "completeness_warn_below: 0")
        .replace("completeness_error_below: 0.50", "completeness_error_below: 0")
    )


def tiny_plant_a_day(paths: Paths, day: dt.date) -> None:
    """One order and one reading of plant_a on ``day`` (completeness relaxed): a land + standardise
    backfill in seconds."""
    relax_completeness(paths)
    folder = paths.landing_dir / "plant_a" / day.isoformat()
    folder.mkdir(parents=True)
    (folder / "sensoren.csv").write_text(
        "Zeitstempel,Maschine,Temperatur [°C],Druck [bar],Materialfeuchte [%],Vibration [mm/s]\n"
        f"{day} 10:00:00,A-M01,200,2.5,12,3\n",
        encoding="utf-8",
    )
    (folder / "auftraege.csv").write_text(
        "Auftrag,Linie,Maschine,Start,Ende,Produkt,Charge,Lieferant,Werker\n"
        f"A-1,L1,A-M01,{day} 10:00:00,{day} 10:15:00,P1,LOT1,S1,W-1\n",
        encoding="utf-8",
    )


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
