"""Overrides of predictions by quality engineers: storage, "current" view, append-only, audit."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from quality_platform import overrides as ov
from quality_platform.audit import AuditLog, audit_db_path
from quality_platform.governance.policy import PolicyError
from quality_platform.overrides import (
    override_counts,
    overrides_db_path,
    overrides_frame,
    record_override,
)
from quality_platform.settings import REPO_ROOT, Paths, get_paths


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.delenv("QP_AUDIT_DB", raising=False)
    monkeypatch.delenv("QP_OVERRIDES_DB", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(REPO_ROOT / "data" / "governance", data / "governance")
    return Paths(data_dir=data, config_dir=data)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Control the writer's timestamps: each write pops the next one."""
    times: list[str] = []
    monkeypatch.setattr(ov, "now_text", lambda: times.pop(0))
    yield times


def test_record_and_read_back(paths: Paths) -> None:
    out = record_override(
        "plant_a",
        "U-1",
        "ok",
        "quinn.quality",
        "visual check: no crack",
        model_version="4",
        predicted_defect=1,
        risk=0.83,
        paths=paths,
    )
    assert out["id"] == 1 and out["supersedes"] is None and out["decision"] == "ok"
    assert overrides_db_path(paths) == paths.data_dir / "audit" / "overrides.db"
    assert overrides_db_path(paths).exists()
    df = overrides_frame(paths)
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["plant"], row["unit_id"], row["decision"], row["actor"]) == (
        "plant_a",
        "U-1",
        "ok",
        "quinn.quality",
    )
    assert row["reason"] == "visual check: no crack" and row["model_version"] == "4"
    assert row["predicted_defect"] == 1 and row["risk"] == pytest.approx(0.83)
    assert bool(row["is_current"])
    assert isinstance(row["ts_utc"], pd.Timestamp) and str(row["ts_utc"].tz) == "UTC"
    # without model information
    record_override("plant_b", "U-9", "defect", "rita.quality", "burr found", paths=paths)
    df = overrides_frame(paths, plant="plant_b")
    assert list(df["unit_id"]) == ["U-9"]
    assert pd.isna(df.iloc[0]["predicted_defect"]) and pd.isna(df.iloc[0]["risk"])


def test_empty_without_database(paths: Paths) -> None:
    df = overrides_frame(paths)
    assert df.empty and "is_current" in df.columns and "unit_id" in df.columns
    assert override_counts(paths, "plant_a", "2024-01-01", "2024-01-02") == 0
    assert not overrides_db_path(paths).exists()


def test_current_only_keeps_latest_per_unit(paths: Paths, clock: list[str]) -> None:
    clock += [
        "2024-03-01T08:00:00.000000Z",
        "2024-03-01T09:00:00.000000Z",
        "2024-03-02T10:00:00.000000Z",
        "2024-03-03T11:00:00.000000Z",
    ]
    record_override("plant_a", "U-1", "ok", "quinn.quality", "looked fine", paths=paths)
    record_override("plant_a", "U-2", "defect", "quinn.quality", "crack", paths=paths)
    second = record_override(
        "plant_a", "U-1", "defect", "rita.quality", "crack found on re-check", paths=paths
    )
    record_override("plant_b", "U-1", "ok", "rita.quality", "other plant, same id", paths=paths)
    assert second["supersedes"] == 1

    cur = overrides_frame(paths)
    assert list(zip(cur["plant"], cur["unit_id"], cur["decision"], strict=True)) == [
        ("plant_a", "U-2", "defect"),
        ("plant_a", "U-1", "defect"),
        ("plant_b", "U-1", "ok"),
    ]
    assert cur["is_current"].all()

    everything = overrides_frame(paths, current_only=False)
    assert list(everything["id"]) == [1, 2, 3, 4]
    assert list(everything["is_current"]) == [False, True, True, True]

    # state as of a moment: before the re-check, U-1's first override was current
    asof = overrides_frame(paths, plant="plant_a", until="2024-03-02")
    assert sorted(zip(asof["unit_id"], asof["decision"], strict=True)) == [
        ("U-1", "ok"),
        ("U-2", "defect"),
    ]
    # since: units whose current override was made from then on
    recent = overrides_frame(paths, plant="plant_a", since="2024-03-02")
    assert list(recent["unit_id"]) == ["U-1"]
    window = overrides_frame(
        paths, since="2024-03-01T08:30", until="2024-03-03", current_only=False
    )
    assert list(window["id"]) == [2, 3]

    assert override_counts(paths, "plant_a", "2024-03-01", "2024-03-02") == 2
    assert override_counts(paths, "plant_a", "2024-03-02", "2024-03-03") == 1
    assert override_counts(paths, "plant_b", "2024-03-01", "2024-03-04") == 1
    assert (
        override_counts(
            paths,
            "plant_a",
            pd.Timestamp("2024-03-01", tz="UTC"),
            pd.Timestamp("2024-03-04", tz="UTC"),
        )
        == 2
    )


def test_append_only(paths: Paths) -> None:
    record_override("plant_a", "U-1", "ok", "quinn.quality", "fine", paths=paths)
    con = sqlite3.connect(overrides_db_path(paths))
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("UPDATE overrides SET decision = 'defect'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("DELETE FROM overrides")
        with pytest.raises(sqlite3.IntegrityError):
            con.execute(
                "INSERT INTO overrides (ts_utc, plant, unit_id, decision, actor, reason) "
                "VALUES ('x', 'plant_a', 'U-2', 'maybe', 'a', 'r')"
            )
    finally:
        con.close()
    assert len(overrides_frame(paths, current_only=False)) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"decision": "scrap"}, "decision"),
        ({"decision": None}, "decision"),
        ({"actor": "  "}, "actor"),
        ({"reason": ""}, "reason"),
        ({"unit_id": ""}, "unit_id"),
        ({"plant": "Plant A"}, "plant"),
        ({"predicted_defect": 2}, "predicted_defect"),
        ({"predicted_defect": 0.5}, "predicted_defect"),
        ({"risk": 1.5}, "risk"),
        ({"risk": float("nan")}, "risk"),
    ],
)
def test_validation_errors(paths: Paths, kwargs: dict, match: str) -> None:
    args = {
        "plant": "plant_a",
        "unit_id": "U-1",
        "decision": "ok",
        "actor": "quinn.quality",
        "reason": "fine",
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        record_override(**args, paths=paths)
    assert overrides_frame(paths).empty
    assert not audit_db_path(paths).exists()


def test_decision_is_normalised(paths: Paths) -> None:
    out = record_override("plant_a", "U-1", " Defect ", "quinn.quality", "crack", paths=paths)
    assert out["decision"] == "defect"


def test_audit_record_written(paths: Paths) -> None:
    record_override(
        "plant_a",
        "U-7",
        "ok",
        "quinn.quality",
        "first look",
        model_version="3",
        predicted_defect=1,
        risk=0.7,
        paths=paths,
    )
    out = record_override("plant_a", "U-7", "defect", "rita.quality", "second look", paths=paths)
    log = AuditLog(audit_db_path(paths))
    recs = log.records(action="override")
    assert len(recs) == 2 and recs[1].seq == out["audit_seq"]
    first, second = recs
    assert first.actor == "quinn.quality" and first.actor_kind == "user"
    assert first.subject == "unit:plant_a/U-7" and first.plant == "plant_a"
    assert first.reason == "first look" and first.outcome == "ok"
    assert first.refs == {
        "override_id": 1,
        "unit_id": "U-7",
        "decision": "ok",
        "model_version": "3",
        "predicted_defect": 1,
        "risk": 0.7,
    }
    assert second.refs["supersedes"] == 1 and second.refs["previous_decision"] == "ok"
    assert log.verify().ok


def test_no_override_without_audit_record(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(AuditLog, "append", broken)
    with pytest.raises(RuntimeError, match="audit log unavailable"):
        record_override("plant_a", "U-1", "ok", "quinn.quality", "fine", paths=paths)
    assert overrides_frame(paths, current_only=False).empty


def test_env_overrides_location(
    tmp_path: Path, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QP_OVERRIDES_DB moves the store: the deployment the environment describes carries it."""
    db = tmp_path / "elsewhere" / "ov.db"
    monkeypatch.setenv("QP_DATA_DIR", str(paths.data_dir))
    monkeypatch.setenv("QP_OVERRIDES_DB", str(db))
    paths = get_paths()
    record_override("plant_a", "U-1", "ok", "quinn.quality", "fine", paths=paths)
    assert db.exists() and len(overrides_frame(paths)) == 1


@pytest.mark.parametrize(
    ("actor", "plant", "why"),
    [
        ("paul.plant_a", "plant_a", "may not override"),  # plant manager: not their duty
        ("mia.model", "plant_a", "may not override"),  # model owner
        (
            "rita.quality",
            "plant_c",
            "may not override at plant_c",
        ),  # quality engineer, not her plant
        ("mallory", "plant_a", "unknown user"),  # not in the policy
    ],
)
def test_policy_refuses_and_audits(paths: Paths, actor: str, plant: str, why: str) -> None:
    with pytest.raises(PolicyError, match=why):
        record_override(plant, "U-1", "ok", actor, "looks fine to me", paths=paths)
    assert overrides_frame(paths, current_only=False).empty
    (rec,) = AuditLog(audit_db_path(paths)).records(action="override")
    assert rec.outcome == "denied" and rec.actor == actor and why in rec.refs["denied_because"]
