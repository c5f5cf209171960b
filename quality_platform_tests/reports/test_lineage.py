"""Lineage both ways (quality_platform.reports.lineage) over a registry of two versions and the
audit log's prediction batches; an unknown version is a LineageError, which ``qp lineage``
reports as a user error (exit 2). The lineage of versions trained for real is tested end to end
in defs/test_ml_lifecycle.py."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from quality_platform.audit import AuditLog, audit_db_path
from quality_platform.cli import main
from quality_platform.ml.registry import VersionInfo
from quality_platform.reports import lineage
from quality_platform.reports.lineage import LineageError, lineage_of_data, lineage_of_model
from quality_platform.settings import Paths


class _Registry:
    """The part of ModelRegistry lineage reads: name, versions, version."""

    name = "defect_model"

    def __init__(self, versions: list[VersionInfo]) -> None:
        self._versions = {v.version: v for v in versions}

    def versions(self) -> list[VersionInfo]:
        return list(self._versions.values())

    def version(self, version: str) -> VersionInfo:
        from quality_platform.ml.registry import RegistryError

        if version not in self._versions:
            raise RegistryError(f"{self.name} has no version {version!r}")
        return self._versions[version]


def _version(n: str, partitions: dict[str, list[str]], **tags: str) -> VersionInfo:
    return VersionInfo(
        n,
        f"run-{n}",
        0,
        {"qp.partitions": json.dumps(partitions), **{f"qp.{k}": v for k, v in tags.items()}},
        (),
    )


@pytest.fixture
def stores(qp_env: Paths, monkeypatch: pytest.MonkeyPatch) -> tuple[_Registry, AuditLog]:
    reg = _Registry(
        [
            _version("1", {"plant_a": ["2026-03-16", "2026-03-19"]}, data_hash="h1", gate="passed"),
            _version(
                "2",
                {"plant_a": ["2026-03-18", "2026-03-21"], "plant_b": ["2026-03-18", "2026-03-21"]},
            ),
        ]
    )
    audit = AuditLog(audit_db_path(qp_env))
    for run, champion, challenger in (("r1", "1", None), ("r2", "1", "2")):
        audit.append(
            action="predict",
            actor="system:test",
            actor_kind="system",
            subject="ml.predictions",
            refs={
                "run_id": run,
                "champion_version": champion,
                "challenger_version": challenger,
                "partitions": {"plant_a": ["2026-03-22", "2026-03-22"]},
                "rows": 10,
            },
        )
    monkeypatch.setattr(lineage, "open_stores", lambda paths: (reg, audit))
    return reg, audit


def test_lineage_of_model(qp_env: Paths, stores: Any) -> None:
    out = lineage_of_model("1", qp_env)
    assert out["model"] == "defect_model" and out["version"] == "1"
    assert out["plants"] == ["plant_a"] and out["data_hash"] == "h1" and out["gate"] == "passed"
    assert out["mlflow_run_id"] == "run-1"
    assert [(b["run_id"], b["role"]) for b in out["prediction_batches"]] == [
        ("r1", "champion"),
        ("r2", "champion"),
    ]
    two = lineage_of_model("2", qp_env)
    assert two["plants"] == ["plant_a", "plant_b"]
    assert [(b["run_id"], b["role"]) for b in two["prediction_batches"]] == [("r2", "challenger")]


def test_lineage_of_data(qp_env: Paths, stores: Any) -> None:
    out = lineage_of_data("plant_a", dt.date(2026, 3, 18), qp_env)
    assert out["plant"] == "plant_a" and out["date"] == "2026-03-18"
    assert out["model_versions"] == ["1", "2"]
    assert [b["run_id"] for b in out["prediction_batches"]] == ["r1", "r2"]
    only_two = lineage_of_data("plant_a", dt.date(2026, 3, 21), qp_env)
    assert only_two["model_versions"] == ["2"]
    assert [b["run_id"] for b in only_two["prediction_batches"]] == ["r2"]
    none = lineage_of_data("plant_c", dt.date(2026, 3, 18), qp_env)
    assert none["model_versions"] == [] and none["prediction_batches"] == []


def test_unknown_version_is_a_lineage_error(qp_env: Paths, capsys) -> None:
    with pytest.raises(LineageError, match="has no version '7'"):
        lineage_of_model("7", qp_env)
    assert main(["lineage", "model", "7", "--json"]) == 2
    assert "has no version '7'" in json.loads(capsys.readouterr().out)["error"]
    assert main(["lineage", "model", "--json"]) == 2  # the CLI's own usage error
    assert json.loads(capsys.readouterr().out) == {"error": "qp lineage model VERSION"}
