"""Incidents (F24): freeze, safe state, evidence bundle, report, roles -- on the governed installation
(plant_a + plant_c, model v1 approved by carl.control and champion, every plant-day scored)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pytest

from quality_platform.cli import main as qp
from quality_platform.config import load_plants
from quality_platform.definitions import build_definitions
from quality_platform.defs.ml.jobs import SCORE_JOB
from quality_platform.defs.ml.sensors import RETRAIN_SENSOR
from quality_platform.defs.monitoring.jobs import MONITOR_JOB
from quality_platform.governance import freeze as F
from quality_platform.governance import incident_store as S
from quality_platform.governance.policy import PolicyError
from quality_platform.incidents import actions as A
from quality_platform.incidents import report as R
from quality_platform.ml import lifecycle as L
from quality_platform.ml.registry import CHAMPION
from quality_platform.runner import run_range, train
from quality_platform_tests.conftest import GOV_D1, GOV_DAYS, GovEnv

LAST = GOV_D1 + dt.timedelta(days=GOV_DAYS - 1)
WINDOW = ["--from", GOV_D1.isoformat(), "--to", LAST.isoformat()]


def _cli(*argv: str) -> tuple[int, Any]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = qp([*argv, "--json"])
    return rc, json.loads(buf.getvalue())


def _preds(env: GovEnv, where: str = "TRUE") -> pd.DataFrame:
    with duckdb.connect(str(env.paths.warehouse_path), read_only=True) as con:
        return con.sql(
            f"SELECT p.*, f.material_moisture__mean, f.temperature__mean, f.pressure__mean, "
            f"f.vibration__max FROM ml.predictions p JOIN features.unit_features f "
            f"USING (plant, partition_date, unit_id) WHERE {where}"
        ).df()


def _denied(env: GovEnv, action: str, incident_id: int) -> list[Any]:
    return [
        r
        for r in env.audit.records(action=action)
        if r.outcome == "denied" and r.refs.get("incident_id") == incident_id
    ]


def _fail_drift_check(env: GovEnv) -> None:
    """A failing ERROR evaluation of drift_metrics:input_drift, as the monitoring run records it."""
    env.instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("drift_metrics"),
            check_name="input_drift",
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "persisted_plant_days": 9,
                "plants": dg.MetadataValue.json(["plant_a"]),
                "first_day": GOV_D1.isoformat(),
                "last_day": LAST.isoformat(),
            },
        )
    )


def _tick(defs: dg.Definitions, env: GovEnv, cursor: str | None) -> Any:
    """One tick of the retrain sensor as the daemon evaluates it (run requests validated)."""
    from quality_platform.location import tick

    return tick(defs, env.instance, RETRAIN_SENSOR, cursor)


def test_open_freezes_promotion_retrain_and_training_until_closed(gov_env: GovEnv) -> None:
    defs = build_definitions(gov_env.paths)
    reg, audit = gov_env.registry, gov_env.audit
    assert train(defs, gov_env.instance).success  # version 2, gated
    v2 = reg.version("2")
    assert v2.gate in L.PASSING, v2.gate
    if v2.approval != "approved":
        L.approve(reg, audit, "2", "carl.control", "gate read")

    inc = A.open_incident(
        "carl.control",
        "major",
        "defect escapes at plant_a",
        paths=gov_env.paths,
        audit=audit,
        instance=gov_env.instance,
        evidence=False,
    )
    assert (
        inc.is_open and inc.frozen and not inc.safe_state
    )  # `major`: freeze, no safe state by default
    assert F.active_freeze(gov_env.paths).id == inc.id
    frame = S.incidents_frame(gov_env.paths)
    assert list(frame.columns) == list(S.FRAME_COLUMNS) and bool(frame["frozen"].iloc[0])

    # promotion refused, audited, nothing changed
    with pytest.raises((PolicyError, L.LifecycleError), match="frozen"):
        L.promote(reg, audit, "2", "carl.control", "during the freeze")
    assert reg.alias(CHAMPION).version == "1"
    assert _denied(gov_env, "promote", inc.id)

    # the retrain sensor: one audited refusal per failing check record, no run
    _fail_drift_check(gov_env)
    res = _tick(defs, gov_env, None)
    assert not res.run_requests and "frozen" in res.skip_message
    assert len(_denied(gov_env, "retrain", inc.id)) == 1
    res = _tick(defs, gov_env, res.cursor)  # same check record: no second refusal
    assert not res.run_requests and len(_denied(gov_env, "retrain", inc.id)) == 1

    # training launched by hand (UI/CLI) fails with the reason
    o = train(defs, gov_env.instance, tags={"qp/actor": "mia.model"})
    assert not o.success and len(reg.versions()) == 2
    failure = [
        e
        for e in gov_env.instance.all_logs(o.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"
    ]
    assert failure and "frozen by incident" in str(
        failure[0].dagster_event.event_specific_data.error
    )
    denied = _denied(gov_env, "train", inc.id)
    assert denied and denied[0].actor == "mia.model"

    refused = R.incident_report(inc.id, gov_env.paths)["refused_under_freeze"]
    assert {r["action"] for r in refused} == {"promote", "retrain", "train"}

    closed = A.close_incident(
        inc.id,
        "carl.control",
        "root cause found: a mislabelled lot",
        paths=gov_env.paths,
        audit=audit,
    )
    assert closed.status == "closed" and F.active_freeze(gov_env.paths) is None
    assert not S.incidents_frame(gov_env.paths)["frozen"].any()

    # everything works again
    assert L.promote(reg, audit, "2", "carl.control", "after the incident").version == "2"
    _fail_drift_check(gov_env)
    res = _tick(defs, gov_env, res.cursor)
    assert [r.job_name for r in res.run_requests][:1] == ["train_job"]
    assert train(defs, gov_env.instance).success and len(reg.versions()) == 3
    assert audit.verify().ok


def test_safe_state_rule_rows_per_plant_and_without_champion(gov_env: GovEnv) -> None:
    defs = build_definitions(gov_env.paths)
    inc = A.open_incident(
        "quinn.quality",
        "major",
        "wrong flags at plant_a",
        plant="plant_a",
        safe_state=True,
        paths=gov_env.paths,
        audit=gov_env.audit,
        evidence=False,
    )
    assert inc.safe_state and inc.plant == "plant_a"
    # scoring + monitoring of a plant-day in the safe state (drift/ops must tolerate rule rows)
    o = run_range(defs, gov_env.instance, MONITOR_JOB, "plant_a", GOV_D1, GOV_D1)
    assert o.success, o
    assert run_range(defs, gov_env.instance, SCORE_JOB, "plant_c", GOV_D1, GOV_D1).success
    a = _preds(gov_env, f"p.plant = 'plant_a' AND p.partition_date = DATE '{GOV_D1}'")
    c = _preds(gov_env, f"p.plant = 'plant_c' AND p.partition_date = DATE '{GOV_D1}'")
    assert len(a) and len(c)
    # per row: the rules decided, version of the rule set, reasons naming the violated limit
    assert (a["decided_by"] == "rules").all() and (a["model_version"] == "rules:v1").all()
    assert (c["decided_by"] == "champion").all() and (c["model_version"] == "1").all()
    assert a["predicted_defect"].equals(a["risk"] >= a["threshold"]) and set(a["risk"]) <= {
        0.0,
        1.0,
    }
    wet = a["material_moisture__mean"] > 13.0
    hot = (a["temperature__mean"] < 194) | (a["temperature__mean"] > 206)
    assert wet.any() and a.loc[wet, "predicted_defect"].all()
    assert (
        a.loc[wet, [f"reason_{i}" for i in (1, 2, 3)]]
        .apply(
            lambda r: any(
                "material_moisture__mean" in str(x) and "upper limit 13" in str(x) for x in r
            ),
            axis=1,
        )
        .all()
    )
    inside = ~a["predicted_defect"]
    assert not (wet | hot)[inside].any()
    assert a.loc[inside, "reason_1"].str.contains("within all rule-based limits").all()
    # the frozen champion still scores in shadow (evidence), it does not decide
    assert (a["champion_version"] == "1").all() and a["champion_score"].between(0, 1).all()
    # run metadata and audit say so
    mats = [
        e
        for e in gov_env.instance.all_logs(o.run_id)
        if e.dagster_event
        and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
        and e.dagster_event.asset_key == dg.AssetKey("predictions")
    ]
    meta = mats[0].dagster_event.event_specific_data.materialization.metadata
    assert f"incident {inc.id}" in meta["safe_state"].value and meta[
        "decided_by_rules"
    ].value == len(a)
    pr = [r for r in gov_env.audit.records(action="predict") if r.refs.get("safe_state")]
    assert pr and pr[-1].refs["safe_state"] == {"plant_a": f"incident {inc.id}"}
    # an override of a rule-decided unit records what the rules said
    unit = str(a.loc[a["predicted_defect"]].iloc[0]["unit_id"])
    rc, out = _cli(
        "override",
        unit,
        "--plant",
        "plant_a",
        "--decision",
        "ok",
        "--reason",
        "checked by hand",
        "--as",
        "quinn.quality",
    )
    assert rc == 0 and out["model_version"] == "rules:v1" and out["decided_by"] == "rules"

    # no champion at all: the rules decide everywhere instead of the run failing
    A.close_incident(
        inc.id, "carl.control", "false alarm", paths=gov_env.paths, audit=gov_env.audit
    )
    gov_env.registry.delete_alias(CHAMPION)
    o = run_range(defs, gov_env.instance, SCORE_JOB, "plant_c", GOV_D1, GOV_D1)
    assert o.success, o
    c = _preds(gov_env, f"p.plant = 'plant_c' AND p.partition_date = DATE '{GOV_D1}'")
    assert (c["decided_by"] == "rules").all() and (c["model_version"] == "rules:v1").all()
    assert (c["champion_version"] == "rules:v1").all() and c["reason_1"].notna().all()
    meta = gov_env.instance.get_latest_materialization_event(
        dg.AssetKey("predictions")
    ).asset_materialization.metadata
    assert "no approved model" in meta["safe_state"].value


def _raw_operator_ids(env: GovEnv) -> set[str]:
    """The raw operator ids of plant_a's source files (column ``Werker``, its personal_data)."""
    assert load_plants(env.paths)["plant_a"].personal_data == ["Werker"]
    ids: set[str] = set()
    for f in (env.paths.landing_dir / "plant_a").glob("*/auftraege.csv"):
        ids |= set(pd.read_csv(f, dtype=str, on_bad_lines="skip")["Werker"].dropna())
    return ids


def test_evidence_bundle_and_report(gov_env: GovEnv) -> None:
    raw_ids = _raw_operator_ids(gov_env)
    assert raw_ids
    rc, _ = _cli(
        "override",
        str(_preds(gov_env, "p.plant = 'plant_a'").iloc[0]["unit_id"]),
        "--plant",
        "plant_a",
        "--decision",
        "defect",
        "--reason",
        "visible crack",
        "--as",
        "quinn.quality",
    )
    assert rc == 0
    t0 = time.perf_counter()
    rc, inc = _cli(
        "incident",
        "open",
        "--severity",
        "serious",
        "--summary",
        "cracked housings passed at plant_a",
        "--plant",
        "plant_a",
        *WINDOW,
        "--as",
        "carl.control",
    )
    open_s = time.perf_counter() - t0
    assert rc == 0, inc
    assert inc["frozen"] and inc["safe_state"]  # `serious`: Art. 73(2), safe state by default
    opened = dt.datetime.fromisoformat(inc["opened_utc"].replace("Z", "+00:00"))
    deadline = dt.datetime.fromisoformat(inc["deadline_utc"].replace("Z", "+00:00"))
    assert deadline - opened == dt.timedelta(days=15)

    root = Path(inc["evidence_dir"])
    manifest = json.loads((root / "manifest.json").read_text())
    assert (
        hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest() == inc["manifest_sha256"]
    )
    for f in manifest["files"]:
        assert hashlib.sha256((root / f["path"]).read_bytes()).hexdigest() == f["sha256"], f["path"]
    paths = {f["path"] for f in manifest["files"]}
    assert {
        "incident.json",
        "audit/audit_records.jsonl",
        "runs/runs.json",
        "model/champion_v1/version.json",
        "model/champion_v1/model/MLmodel",
        "data/ml.predictions.parquet",
        "data/standard.quarantine.parquet",
        "data/kpi.kpi_daily.parquet",
    } <= paths, sorted(paths)[:40]
    assert any(
        "ml.drift_metrics: table does not exist" in n for n in manifest["notes"]
    )  # never monitored here
    assert any(p.startswith("model/champion_v1/run/") for p in paths)
    assert not any(p.startswith("data/raw") for p in paths)
    assert (
        manifest["runs"] > 0
        and sum(p.startswith("runs/") and p.endswith(".jsonl") for p in paths) > 0
    )
    pq = pd.read_parquet(root / "data" / "ml.predictions.parquet")
    assert set(pq["plant"]) == {"plant_a"} and len(pq) > 0
    # no raw operator id anywhere in the bundle (text files byte-wise, Parquet by value)
    for f in manifest["files"]:
        p = root / f["path"]
        if p.suffix == ".parquet":
            text = pd.read_parquet(p).astype(str).to_csv()
        else:
            text = p.read_bytes().decode("utf-8", errors="ignore")
        hits = [r for r in raw_ids if r in text]
        assert not hits, (f["path"], hits[:3])
    # bundle path and manifest hash are in the audit log
    ev = [
        r
        for r in gov_env.audit.records(action="incident", subject=f"incident:{inc['id']}")
        if r.reason == "evidence bundle preserved"
    ]
    assert (
        ev
        and ev[0].refs["manifest_sha256"] == inc["manifest_sha256"]
        and ev[0].refs["bundle"] == str(root)
    )

    t0 = time.perf_counter()
    rc, rep = _cli("incident", "report", str(inc["id"]), "--as", "aud.it")
    report_s = time.perf_counter() - t0
    assert rc == 0, rep
    for section in (
        "incident",
        "deadline",
        "window",
        "model_versions",
        "predictions",
        "drift",
        "performance",
        "data_quality",
        "approvals",
        "overrides",
        "actions",
        "refused_under_freeze",
        "evidence",
    ):
        assert section in rep, section
    assert (
        rep["deadline"]["deadline_utc"] == inc["deadline_utc"]
        and 359 < rep["deadline"]["time_left_hours"] <= 360
    )
    assert rep["deadline"]["basis"] == "EU AI Act Art. 73(2)"
    assert any(
        v["version"] == "1" and v["approved_by"] == "carl.control"
        for v in rep["model_versions"]["registry"]
    )
    assert {p["plant"] for p in rep["predictions"]} == {"plant_a"} and len(
        rep["predictions"]
    ) == GOV_DAYS
    assert any(a["action"] == "approve" and a["actor"] == "carl.control" for a in rep["approvals"])
    assert any(
        o["decision"] == "defect" and o["actor"] == "quinn.quality" for o in rep["overrides"]
    )
    assert rep["evidence"]["ok"], rep["evidence"]
    md = (root / "report.md").read_text()
    for head in (
        "## Deadline",
        "## Model versions involved",
        "## Predictions",
        "## Drift history",
        "## Data-quality history",
        "## Approvals",
        "## Overrides",
        "## Actions (audit log)",
        "## Evidence",
    ):
        assert head in md, head
    assert (
        inc["deadline_utc"] in md
        and json.loads((root / "report.json").read_text())["incident"]["id"] == inc["id"]
    )
    assert report_s < 30, report_s
    print(
        f"\nincident open (with evidence bundle): {open_s:.1f} s; incident report: {report_s:.1f} s"
    )

    rc, lst = _cli("incident", "list", "--as", "aud.it")
    assert rc == 0 and [i["id"] for i in lst] == [inc["id"]] and lst[0]["status"] == "open"
    rc, closed = _cli(
        "incident",
        "close",
        str(inc["id"]),
        "--resolution",
        "lot quarantined",
        "--as",
        "carl.control",
    )
    assert rc == 0 and closed["status"] == "closed"
    rc, again = _cli(
        "incident", "close", str(inc["id"]), "--resolution", "twice", "--as", "carl.control"
    )
    assert rc == 2 and "already closed" in again["error"]


def test_only_allowed_roles_open_and_close(gov_env: GovEnv) -> None:
    rc, out = _cli(
        "incident",
        "open",
        "--severity",
        "minor",
        "--summary",
        "x",
        "--plant",
        "plant_a",
        "--as",
        "paul.plant_a",
    )
    assert rc == 2 and "may not open_incident" in out["error"]
    denied = [r for r in gov_env.audit.records(action="open_incident") if r.outcome == "denied"]
    assert denied and denied[-1].actor == "paul.plant_a"
    assert S.list_incidents(gov_env.paths) == []
    # a plant-scoped opener only for their plants; the control owner for all
    with pytest.raises(PolicyError, match="may not open_incident"):
        A.open_incident("mia.model", "minor", "x", paths=gov_env.paths, evidence=False)
    with pytest.raises(S.IncidentError, match="unknown severity"):
        A.open_incident("carl.control", "catastrophic", "x", paths=gov_env.paths, evidence=False)
    with pytest.raises(
        PolicyError, match="only for their plants"
    ):  # dana.data: data owner of named plants
        A.open_incident("dana.data", "minor", "x", paths=gov_env.paths, evidence=False)
    inc = A.open_incident(
        "quinn.quality", "minor", "odd scores", plant="plant_c", paths=gov_env.paths, evidence=False
    )
    for who in ("quinn.quality", "paul.plant_a", "olga.ops"):
        with pytest.raises(PolicyError, match="may not close_incident"):
            A.close_incident(inc.id, who, "done", paths=gov_env.paths)
    assert (
        len([r for r in gov_env.audit.records(action="close_incident") if r.outcome == "denied"])
        == 3
    )
    assert S.get(inc.id, gov_env.paths).is_open
    rc, out = _cli(
        "incident", "close", str(inc.id), "--resolution", "explained", "--as", "carl.control"
    )
    assert rc == 0 and out["closed_by"] == "carl.control"
    # the store refuses edits of a closed incident and deletions
    import sqlite3

    con = sqlite3.connect(S.incidents_db_path(gov_env.paths))
    with pytest.raises(sqlite3.DatabaseError, match="only open -> closed"):
        con.execute("UPDATE incidents SET status = 'open' WHERE id = ?", [inc.id])
    with pytest.raises(sqlite3.DatabaseError, match="never deleted"):
        con.execute("DELETE FROM incidents")
    con.close()
    assert gov_env.audit.verify().ok
