"""The incident report (F24; ``qp incident report``): the complete event record of an incident.

:func:`incident_report` collects, for the incident's data and event windows, the model versions
and predictions, drift, realised performance and data-quality history, approvals, overrides, every
audited action, the refusals under the freeze and the evidence check, and writes them as
``report.json`` and ``report.md`` (:func:`report_markdown`) next to the evidence bundle.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from quality_platform.audit import AuditLog, AuditRecord, audit_db_path, utc_text
from quality_platform.governance.incident_store import Incident, get, load_incident_config
from quality_platform.incidents.actions import ACTION
from quality_platform.incidents.evidence import bundle_dir, json_default, verify_evidence
from quality_platform.settings import Paths, get_paths


def _records_df(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", date_format="iso")) if len(df) else []


def _warehouse_sections(inc: Incident, paths: Paths) -> dict[str, Any]:
    from quality_platform.warehouse import connect

    out: dict[str, Any] = {
        "predictions": [],
        "model_versions_used": [],
        "drift_findings": [],
        "drift_summary": [],
        "performance": [],
        "quarantine": [],
        "units_in_window": set(),
        "notes": [],
    }
    if not paths.warehouse_path.exists():
        out["notes"].append("no warehouse")
        return out
    d0, d1 = dt.date.fromisoformat(inc.data_from), dt.date.fromisoformat(inc.data_to)
    pf = " AND plant = ?" if inc.plant else ""
    params: list[Any] = [d0, d1] + ([inc.plant] if inc.plant else [])
    win = f"CAST(partition_date AS DATE) BETWEEN ? AND ?{pf}"
    with connect(paths.warehouse_path, read_only=True) as con:
        have = {
            f"{s}.{t}"
            for s, t in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
            ).fetchall()
        }

        def q(sql: str) -> pd.DataFrame:
            return con.execute(sql, params).df()

        if "ml.predictions" in have:
            out["predictions"] = _records_df(
                q(f"""
                SELECT plant, strftime(CAST(partition_date AS DATE), '%Y-%m-%d') AS day, count(*) AS units,
                       sum(predicted_defect::INT) AS flagged, string_agg(DISTINCT decided_by, ',') AS decided_by,
                       string_agg(DISTINCT model_version, ',') AS model_versions, min(scored_at_utc) AS first_scored,
                       max(scored_at_utc) AS last_scored
                FROM ml.predictions WHERE {win} GROUP BY 1, 2 ORDER BY 1, 2""")
            )
            out["model_versions_used"] = _records_df(
                q(f"""
                SELECT decided_by, model_version, champion_version, challenger_version, count(*) AS units,
                       sum(predicted_defect::INT) AS flagged, strftime(min(CAST(partition_date AS DATE)), '%Y-%m-%d') AS first_day,
                       strftime(max(CAST(partition_date AS DATE)), '%Y-%m-%d') AS last_day
                FROM ml.predictions WHERE {win} GROUP BY ALL ORDER BY first_day, model_version""")
            )
            out["units_in_window"] = {
                (r[0], r[1])
                for r in con.execute(
                    f"SELECT plant, unit_id FROM ml.predictions WHERE {win}", params
                ).fetchall()
            }
        if "ml.drift_findings" in have:
            out["drift_findings"] = _records_df(
                q(f"""
                SELECT plant, strftime(CAST(partition_date AS DATE), '%Y-%m-%d') AS day, kind, feature, machines, round(value, 4) AS value,
                       detail, model_version FROM ml.drift_findings WHERE {win} ORDER BY 1, 2, 3, 4""")
            )
        if "ml.drift_metrics" in have:
            out["drift_summary"] = _records_df(
                q(f"""
                SELECT plant, strftime(CAST(partition_date AS DATE), '%Y-%m-%d') AS day, arg_max(feature, wasserstein) AS worst_feature,
                       round(max(wasserstein), 4) AS max_wasserstein, count(*) AS measures
                FROM ml.drift_metrics WHERE {win} AND scope = 'plant' GROUP BY 1, 2 ORDER BY 1, 2""")
            )
        if "ml.model_performance" in have:
            out["performance"] = _records_df(
                q(f"""
                SELECT plant, strftime(CAST(partition_date AS DATE), '%Y-%m-%d') AS day, model_version, units, labelled, positives,
                       round(precision, 4) AS precision, round(recall, 4) AS recall, round(roc_auc, 4) AS roc_auc,
                       degraded FROM ml.model_performance WHERE {win} ORDER BY 1, 2""")
            )
        if "standard.quarantine" in have:
            out["quarantine"] = _records_df(
                q(f"""
                SELECT plant, strftime(CAST(partition_date AS DATE), '%Y-%m-%d') AS day, rule, severity, sum(n_items) AS items,
                       count(*) AS rows FROM standard.quarantine WHERE {win} GROUP BY ALL ORDER BY 1, 2, 3""")
            )
    return out


def _audit_row(r: Any) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "ts_utc": r.ts_utc,
        "action": r.action,
        "actor": r.actor,
        "outcome": r.outcome,
        "subject": r.subject,
        "plant": r.plant,
        "reason": r.reason,
        "refs": r.refs,
    }


def _versions_from_audit(
    lifecycle: list[AuditRecord], model: str, versions: list[str]
) -> list[dict[str, Any]]:
    """Lineage, gate, approval and champion periods of ``versions`` from the model's lifecycle
    records of the audit log (the record of every lifecycle decision; no MLflow round trip, so the
    report stays fast)."""
    by_subject: dict[str | None, list[AuditRecord]] = {}
    for r in lifecycle:
        by_subject.setdefault(r.subject, []).append(r)
    out = []
    for v in versions:
        info: dict[str, Any] = {
            "version": v,
            "gate": None,
            "approval": "pending",
            "approved_by": None,
            "data_hash": None,
            "dagster_run_id": None,
            "trained_plants": [],
            "champion_since": [],
            "rolled_back": [],
        }
        for r in by_subject.get(f"model:{model}/{v}", []):
            if r.outcome not in ("ok", "failed"):
                continue
            if r.action == "register":
                info.update(
                    data_hash=str(r.refs.get("data_hash") or "")[:16],
                    dagster_run_id=r.refs.get("run_id"),
                    trained_plants=sorted(r.refs.get("partitions") or {}),
                )
            elif r.action == "gate":
                info["gate"] = r.refs.get("status")
            elif r.action == "approve" and r.outcome == "ok":
                info.update(approval="approved", approved_by=r.actor)
            elif r.action == "reject" and r.outcome == "ok":
                info.update(approval="rejected", approved_by=None)
            elif r.action == "promote" and r.outcome == "ok":
                info["champion_since"].append(r.ts_utc)
            elif r.action == "rollback" and r.outcome == "ok":
                info["rolled_back"].append(r.ts_utc)
        out.append(info)
    return out


def incident_report(
    incident_id: int | str, paths: Paths | None = None, out_dir: Path | None = None
) -> dict[str, Any]:
    """The complete event record of an incident (JSON-ready dict): the incident and its deadline,
    the model versions and predictions of the data window, drift, performance and data-quality
    history, approvals, overrides, every audited action of the event window, the refusals under the
    freeze, and the evidence check. Written as ``report.json`` and ``report.md`` to ``out_dir``
    (default: the evidence bundle)."""
    from quality_platform.overrides import overrides_frame

    t0 = time.perf_counter()
    paths = paths or get_paths()
    inc = get(incident_id, paths)
    cfg = load_incident_config(paths)
    sev = cfg.severities.get(inc.severity)
    audit = AuditLog(audit_db_path(paths))
    now = dt.datetime.now(dt.UTC)
    until = inc.closed_utc or utc_text(now)
    wh = _warehouse_sections(inc, paths)
    units = wh.pop("units_in_window")
    recs = [
        r
        for r in audit.records(since=inc.events_from)
        if inc.plant is None or r.plant in (None, inc.plant)
    ]
    in_window = [r for r in recs if r.ts_utc <= until]
    versions = sorted(
        {
            str(v)
            for row in wh["model_versions_used"]
            for v in (
                row.get("model_version"),
                row.get("champion_version"),
                row.get("challenger_version"),
            )
            if v and str(v).isdigit()
        },
        key=int,
    )
    subjects = {f"model:{inc.model}/{v}" for v in versions}
    # one read of the model's lifecycle records (also every action _versions_from_audit reads)
    from quality_platform.ml.registry import current_store, in_store

    store = current_store(
        paths
    )  # a version is (registry store, number): another store's records are not its
    lifecycle = [
        r
        for r in audit.records(
            action=["approve", "reject", "promote", "rollback", "gate", "register", "canary"],
            subject_prefix=f"model:{inc.model}",
        )
        if in_store(r, store)
    ]
    approvals = [
        _audit_row(r)
        for r in lifecycle
        if r.action in ("approve", "reject")
        and (r.subject in subjects or r.ts_utc >= inc.events_from)
    ]
    model_events = [
        _audit_row(r)
        for r in lifecycle
        if r.action not in ("approve", "reject")
        and (r.subject in subjects or r.ts_utc >= inc.events_from)
    ]
    ov = overrides_frame(paths, plant=inc.plant, current_only=False)
    if len(ov):
        ov = ov[
            [
                (p, u) in units
                for p, u in zip(ov["plant"].astype(str), ov["unit_id"].astype(str), strict=True)
            ]
        ]
    counts = pd.DataFrame([{"action": r.action, "outcome": r.outcome} for r in in_window])
    action_counts = (
        _records_df(
            counts.value_counts().rename("records").reset_index().sort_values(["action", "outcome"])
        )
        if len(counts)
        else []
    )
    refused = [
        _audit_row(r)
        for r in recs
        if r.outcome == "denied" and r.refs.get("incident_id") == inc.id and r.action != ACTION
    ]
    timeline = [_audit_row(r) for r in audit.records(subject=inc.subject)]
    dq_incidents = [
        _audit_row(r)
        for r in in_window
        if r.action == "incident" and r.subject != inc.subject and r.actor.startswith("system:")
    ]
    reg_info = _versions_from_audit(lifecycle, inc.model, versions)
    rules = sorted(
        {
            str(row["model_version"])
            for row in wh["model_versions_used"]
            if str(row.get("model_version", "")).startswith("rules:")
        }
    )
    left = inc.time_left_hours(now)
    report: dict[str, Any] = {
        "incident": {
            **inc.as_dict(),
            "basis": sev.basis if sev else None,
            "regulatory": sev.regulatory if sev else None,
            "severity_description": sev.description if sev else None,
        },
        "deadline": {
            "deadline_utc": inc.deadline_utc,
            "report_within_hours": sev.report_within_hours if sev else None,
            "basis": sev.basis if sev else None,
            "time_left_hours": left,
            "overdue": left < 0 and inc.is_open,
            "as_of_utc": utc_text(now),
        },
        "window": {
            "data_from": inc.data_from,
            "data_to": inc.data_to,
            "events_from": inc.events_from,
            "events_to": until,
            "plant": inc.plant or "all",
        },
        "model_versions": {
            "used_in_window": wh["model_versions_used"],
            "registry": reg_info,
            "rule_sets": rules,
        },
        "predictions": wh["predictions"],
        "drift": {"findings": wh["drift_findings"], "worst_feature_per_day": wh["drift_summary"]},
        "performance": wh["performance"],
        "data_quality": {"quarantine": wh["quarantine"], "incidents": dq_incidents},
        "approvals": approvals,
        "model_events": model_events,
        "overrides": _records_df(ov.drop(columns=[c for c in ("is_current",) if c in ov.columns]))
        if len(ov)
        else [],
        "actions": {"counts": action_counts, "records": [_audit_row(r) for r in in_window]},
        "refused_under_freeze": refused,
        "incident_timeline": timeline,
        "evidence": {**verify_evidence(inc, paths), "manifest_sha256": inc.manifest_sha256},
        "notes": wh["notes"],
    }
    report["generated_seconds"] = round(time.perf_counter() - t0, 2)
    out = (
        Path(out_dir)
        if out_dir
        else (Path(inc.evidence_dir) if inc.evidence_dir else bundle_dir(paths, inc.id))
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps(report, indent=2, sort_keys=True, default=json_default), encoding="utf-8"
    )
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    report["written"] = {"json": str(out / "report.json"), "markdown": str(out / "report.md")}
    return report


def _md_table(rows: list[dict[str, Any]], cols: list[str] | None = None, limit: int = 200) -> str:
    if not rows:
        return "_(none)_"
    df = pd.DataFrame(rows)
    if cols:
        df = df[[c for c in cols if c in df.columns]]
    more = len(df) - limit
    text = df.head(limit).astype(str).to_markdown(index=False)
    return text + (f"\n\n_... {more} more rows in report.json_" if more > 0 else "")


def report_markdown(r: dict[str, Any]) -> str:
    """The incident report as Markdown (the same content as the JSON, tables truncated)."""
    i, d, w = r["incident"], r["deadline"], r["window"]
    ev = r["evidence"]
    left = d["time_left_hours"]
    clock = (
        (f"{left:.1f} h left" if left >= 0 else f"OVERDUE by {-left:.1f} h")
        if i["status"] == "open"
        else f"closed {i['closed_utc']} ({'after' if i['closed_utc'] > d['deadline_utc'] else 'before'} the deadline)"
    )
    lines = [
        f"# Incident {i['id']}: {i['summary']}",
        "",
        "## Incident",
        "",
        f"- severity: **{i['severity']}** ({i.get('severity_description') or ''}); regulatory: {i.get('regulatory')}",
        f"- status: **{i['status']}**; model `{i['model']}`; plant: {i['plant'] or 'all'}",
        f"- opened {i['opened_utc']} by {i['opened_by']}"
        + (
            f"; closed {i['closed_utc']} by {i['closed_by']}: {i['resolution']}"
            if i["closed_utc"]
            else ""
        ),
        f"- freeze: {'yes' if i['frozen'] else 'no'}; safe state (rule-based limits): {'yes' if i['safe_state'] else 'no'}",
        "",
        "## Deadline",
        "",
        f"- reporting deadline: **{d['deadline_utc']}** ({d['report_within_hours']} h after opening; {d['basis']})",
        f"- {clock} (as of {d['as_of_utc']})",
        "",
        "## Window",
        "",
        f"- production days {w['data_from']} .. {w['data_to']} ({w['plant']}); events {w['events_from']} .. "
        f"{w['events_to']}",
        "",
        "## Model versions involved",
        "",
        _md_table(r["model_versions"]["used_in_window"]),
        "",
        _md_table(r["model_versions"]["registry"]),
        "",
        "## Predictions",
        "",
        _md_table(
            r["predictions"], ["plant", "day", "units", "flagged", "decided_by", "model_versions"]
        ),
        "",
        "## Drift history",
        "",
        _md_table(
            r["drift"]["findings"],
            ["plant", "day", "kind", "feature", "machines", "value", "detail"],
        ),
        "",
        _md_table(r["drift"]["worst_feature_per_day"]),
        "",
        "## Realised performance",
        "",
        _md_table(r["performance"]),
        "",
        "## Data-quality history",
        "",
        _md_table(r["data_quality"]["quarantine"]),
        "",
        _md_table(r["data_quality"]["incidents"], ["seq", "ts_utc", "plant", "reason"]),
        "",
        "## Approvals",
        "",
        _md_table(
            r["approvals"], ["seq", "ts_utc", "action", "actor", "outcome", "subject", "reason"]
        ),
        "",
        "## Model lifecycle events",
        "",
        _md_table(
            r["model_events"], ["seq", "ts_utc", "action", "actor", "outcome", "subject", "reason"]
        ),
        "",
        "## Overrides",
        "",
        _md_table(
            r["overrides"],
            [
                "id",
                "ts_utc",
                "plant",
                "unit_id",
                "decision",
                "actor",
                "model_version",
                "predicted_defect",
                "reason",
            ],
        ),
        "",
        "## Actions (audit log)",
        "",
        _md_table(r["actions"]["counts"]),
        "",
        _md_table(
            [a for a in r["actions"]["records"] if a["action"] not in ("query", "predict")],
            ["seq", "ts_utc", "action", "actor", "outcome", "subject", "reason"],
        ),
        "",
        "## Refused under the freeze",
        "",
        _md_table(
            r["refused_under_freeze"], ["seq", "ts_utc", "action", "actor", "subject", "reason"]
        ),
        "",
        "## Incident timeline",
        "",
        _md_table(r["incident_timeline"], ["seq", "ts_utc", "actor", "outcome", "reason"]),
        "",
        "## Evidence",
        "",
        f"- bundle `{ev['bundle']}`; manifest sha256 `{ev.get('manifest_sha256')}`; "
        f"{'verified' if ev['ok'] else 'PROBLEMS: ' + '; '.join(ev['problems'])}",
    ]
    if r.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"


__all__ = [
    "incident_report",
    "report_markdown",
]
