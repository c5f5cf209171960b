"""A small governed installation shared by the governance tests: plant_a and plant_c simulated for
6 days, standardised, features built, model version 1 trained, gated, approved by the control
owner, promoted, and every plant-day scored (predictions with reasons). Built once per test
session (per xdist worker) and copied for each test.

Note: MLflow stores absolute artifact locations, so the copies read model artifacts from the
base installation; registry state (tags, aliases) lives in the copied SQLite database.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from quality_platform.audit import AuditLog, audit_db_path
from quality_platform.config import load_plants
from quality_platform.definitions import build_definitions
from quality_platform.defs.ml.jobs import SCORE_JOB
from quality_platform.ml.config import load_model_config
from quality_platform.ml.registry import ModelRegistry
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform_tests.conftest import TEST_KEY, make_installation, tune_small_model

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
        return AuditLog(audit_db_path(self.paths.data_dir))

    @property
    def registry(self) -> ModelRegistry:
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
    from quality_platform.ml import lifecycle as L
    from quality_platform.runner import backfill, run_range, train

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
            audit = AuditLog(audit_db_path(paths.data_dir))
            L.approve(reg, audit, "1", "carl.control", "governance test base: gate read")
            L.promote(reg, audit, "1", "carl.control", "governance test base")
            for p in GOV_PLANTS:
                assert run_range(defs, instance, SCORE_JOB, p, GOV_D1, last).success
    return root


@pytest.fixture
def gov_env(gov_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GovEnv]:
    """A private copy of the base installation, wired through the environment, with its own
    Dagster instance (a copy of the base's event log and run storage)."""
    root = tmp_path / "gov"
    shutil.copytree(gov_base, root, symlinks=True)
    paths = Paths(data_dir=root / "data", config_dir=root / "data")
    _env(monkeypatch, root, paths)
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        yield GovEnv(root=root, paths=paths, instance=instance)
