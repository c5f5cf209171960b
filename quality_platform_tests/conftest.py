"""Shared fixtures: an isolated platform installation per test (config copy, temp warehouse,
temp Dagster instance, a test pseudonymisation key)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from quality_platform.settings import ENVIRONMENT, Paths, copy_installation, get_paths

if TYPE_CHECKING:
    import dagster as dg
    import pandas as pd

    from quality_platform.audit import AuditLog
    from quality_platform.config import PlantConfig
    from quality_platform.ingest.pipeline import StandardResult
    from quality_platform.ml.registry import ModelRegistry

TEST_KEY = "test-key-0123456789abcdef-not-a-secret"

# The suite runs on installations of its own: nothing the shell or the Makefile exports
# (QP_DATA_DIR=data/state, DAGSTER_HOME, a webhook URL, ...) reaches a test; fixtures set what
# a test's deployment needs.
for _var in ENVIRONMENT:
    os.environ.pop(_var, None)


def land_and_standardize(
    paths: Paths,
    plant: PlantConfig,
    days: list[dt.date],
    now: pd.Timestamp | None = None,
    **options: Any,
) -> StandardResult:
    """Land ``plant``'s ``days`` and standardise them as the standard asset does: the quantities
    in force (shared and plant-local), the platform's quality settings, the test key; ``now`` is
    the clock of the future-time rule, ``options`` go to ``standardize`` (``collect``...)."""
    from quality_platform.config import load_platform, load_registry
    from quality_platform.ingest.pipeline import land, standardize

    land(plant, days, paths, paths.warehouse_path)
    return standardize(
        plant,
        days,
        paths.warehouse_path,
        load_registry(paths),
        load_platform(paths).quality,
        TEST_KEY.encode(),
        now_utc=now,
        **options,
    )


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


def loop_installation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plants: tuple[str, ...]
) -> Paths:
    """An installation of ``plants`` for closed-loop tests, wired through the environment: a
    model small enough to train on a week (150 trees), the release gate's absolute floors off and
    the one behaviour case a week cannot teach dropped (the comparison with the champion,
    calibration and the other cases still apply); canary at 20 % share, 400 labelled units."""
    import yaml

    paths = make_installation(tmp_path, plants=plants)
    for k, v in {
        "QP_DATA_DIR": paths.data_dir,
        "QP_CONFIG_DIR": paths.config_dir,
        "QP_PSEUDONYM_KEY": TEST_KEY,
        "DAGSTER_HOME": tmp_path / "dagster_home",
    }.items():
        monkeypatch.setenv(k, str(v))
    for k in (
        "QP_LANDING_DIR",
        "QP_WAREHOUSE",
        "QP_AUDIT_DB",
        "QP_MLFLOW_TRACKING_URI",
        "QP_MLFLOW_ARTIFACT_ROOT",
    ):
        monkeypatch.delenv(k, raising=False)
    (tmp_path / "dagster_home").mkdir()
    f = paths.config_dir / "ml" / "model.yaml"
    cfg = yaml.safe_load(f.read_text())
    cfg["catboost"].update(iterations=150)
    cfg["canary"].update(min_labelled_units=400, share=0.2)
    cfg["gate"].update(min_roc_auc=0.0, min_pr_auc=0.0, per_plant_min_metric=0.0)
    f.write_text(yaml.safe_dump(cfg))
    cases = paths.config_dir / "ml" / "behaviour_cases.yaml"
    doc = yaml.safe_load(cases.read_text())
    doc["cases"] = [
        c for c in doc["cases"] if c["name"] != "hot_process_raises_risk"
    ]  # needs more than a week
    cases.write_text(yaml.safe_dump(doc))
    return paths


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
    return get_paths()  # the deployment the environment describes (Dagster home included)


# --------------------------------------------------------------------------- the governed installation
# A small governed installation shared by the governance, incidents and reports tests (gov_env):
# plant_a and plant_c simulated for 6 days, standardised, features built, model version 1 trained,
# gated, approved by the control owner, promoted, and every plant-day scored (predictions with
# reasons). Built once per test session (per xdist worker) and copied for each test.
#
# Note: MLflow stores absolute artifact locations, so the copies read model artifacts from the
# base installation; registry state (tags, aliases) lives in the copied SQLite database.


GOV_D1 = dt.date(2026, 3, 16)
GOV_DAYS = 6
GOV_PLANTS = ("plant_a", "plant_c")


@dataclass
class GovEnv:
    """One test's copy of the governed installation."""

    root: Path
    paths: Paths
    instance: dg.DagsterInstance

    @property
    def audit(self) -> AuditLog:
        from quality_platform.audit import AuditLog, audit_db_path

        return AuditLog(audit_db_path(self.paths))

    @property
    def registry(self) -> ModelRegistry:
        from quality_platform.ml.config import load_model_config
        from quality_platform.ml.registry import ModelRegistry

        return ModelRegistry(load_model_config(self.paths), self.paths)


def _env(mp: pytest.MonkeyPatch, root: Path, paths: Paths) -> None:
    mp.setenv("QP_DATA_DIR", str(paths.data_dir))
    mp.setenv("QP_CONFIG_DIR", str(paths.config_dir))
    mp.setenv("QP_PSEUDONYM_KEY", TEST_KEY)
    mp.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    for var in (
        "QP_LANDING_DIR",
        "QP_WAREHOUSE",
        "QP_AUDIT_DB",
        "QP_MLFLOW_TRACKING_URI",
        "QP_MLFLOW_ARTIFACT_ROOT",
        "QP_USER",
    ):
        mp.delenv(var, raising=False)


@pytest.fixture(scope="session")
def gov_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the base installation once: data, model v1 approved + champion, predictions."""
    import dagster as dg

    from quality_platform.audit import AuditLog, audit_db_path
    from quality_platform.config import load_plants
    from quality_platform.definitions import build_definitions
    from quality_platform.defs.ml.jobs import SCORE_JOB
    from quality_platform.ml import lifecycle as L
    from quality_platform.ml.config import load_model_config
    from quality_platform.ml.registry import ModelRegistry
    from quality_platform.runner import backfill, run_range, train
    from quality_platform.simulation import simulate

    root = tmp_path_factory.mktemp("gov_base")
    paths = make_installation(root, plants=GOV_PLANTS)
    tune_small_model(paths)
    (root / "dagster_home").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, root, paths)
        simulate(paths.landing_dir, days=GOV_DAYS, start=GOV_D1, plants=load_plants(paths))
        defs = build_definitions(paths)
        last = GOV_D1 + dt.timedelta(days=GOV_DAYS - 1)
        with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
            for p in GOV_PLANTS:
                outs = backfill(defs, instance, p, GOV_D1, last)
                assert all(o.success for o in outs), outs
            assert train(defs, instance).success
            reg = ModelRegistry(load_model_config(paths), paths)
            audit = AuditLog(audit_db_path(paths))
            L.approve(reg, audit, "1", "carl.control", "governance test base: gate read")
            L.promote(reg, audit, "1", "carl.control", "governance test base")
            for p in GOV_PLANTS:
                assert run_range(defs, instance, SCORE_JOB, p, GOV_D1, last).success
    return root


@pytest.fixture
def gov_env(gov_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GovEnv]:
    """A private copy of the base installation, wired through the environment, with its own
    Dagster instance (a copy of the base's event log and run storage)."""
    import dagster as dg

    root = tmp_path / "gov"
    shutil.copytree(gov_base, root, symlinks=True)
    _env(monkeypatch, root, Paths(data_dir=root / "data", config_dir=root / "data"))
    paths = get_paths()  # the deployment the environment describes (Dagster home included)
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        yield GovEnv(root=root, paths=paths, instance=instance)
