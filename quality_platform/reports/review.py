"""Operating review (F29): the weekly or monthly report a plant's roles hold, per plant and model.

What it counts, and on which time axis:

* **Production days** (``partition_date``, the plant's local day; the period is ``start..end``
  inclusive): drift alarms and sensor faults (``ml.drift_findings``), data-quality incidents from
  quarantine (``standard.quarantine``), predictions (``ml.predictions``), overrides of the period's
  predicted units (the same attribution as ``ml.ops_metrics``: an override counts for the day of
  its unit), compute time (score/monitor runs whose partition range covers the period's days,
  pro rata), and the unified defect-rate trend (``kpi.kpi_daily``).
* **Event time** (UTC timestamps in ``[start 00:00, end + 1 day 00:00)``): retrains, registrations,
  promotions, rollbacks, approvals and rejections, policy exceptions (audit records with outcome
  ``denied``), freezes (incidents opened with a freeze) and incidents of
  :func:`quality_platform.governance.incident_store.incidents_frame`.

In live operation the two axes coincide (yesterday's data is processed today); in a simulated
installation they do not (simulated March data processed in November), which the report says.

Data-quality incidents and their time to resolution:

* a quarantine rule broken at a plant is an incident from the first day it appears; it counts as
  resolved on the first later production day of the plant without that rule in quarantine;
* a suspected sensor fault (``sensor_fault``/``stuck_sensor`` finding of one feature on the same
  machines) likewise: resolved on the first later production day without that finding; the audit
  log's ``incident`` records of ``system:monitoring`` for it are linked by their ``seq``;
* an incident of the incident workflow is resolved when closed (hours from opening to closing).

An episode still open at the last production day of the plant is reported as unresolved. The
warehouse is read read-only; nothing is written except the caller's audit record.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from quality_platform.audit import AuditLog, AuditRecord, audit_db_path, utc_text
from quality_platform.settings import Paths
from quality_platform.warehouse import connect, table_exists

PERIODS = ("week", "month")
DEFECT_KPI = "defect_rate"
RUN_JOBS = ("score_job", "monitor_job")
LIFECYCLE = ("retrain", "register", "gate", "approve", "reject", "promote", "rollback")
SENSOR_KINDS = ("sensor_fault", "stuck_sensor")


class ReviewError(ValueError):
    """The review cannot be made (no warehouse, no data, bad period); the message says why."""


@dataclass(frozen=True)
class Window:
    """The review period on both time axes."""

    period: str
    start: dt.date
    end: dt.date  # inclusive

    @property
    def events_from(self) -> str:
        return utc_text(self.start)

    @property
    def events_until(self) -> str:
        return utc_text(self.end + dt.timedelta(days=1))

    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def window(period: str, end: dt.date) -> Window:
    """``week``: the 7 days ending at ``end``; ``month``: from the same day of the previous month
    (exclusive) to ``end``."""
    if period not in PERIODS:
        raise ReviewError(f"--period must be one of {list(PERIODS)}, got {period!r}")
    if period == "week":
        start = end - dt.timedelta(days=6)
    else:
        start = (pd.Timestamp(end) - pd.DateOffset(months=1)).date() + dt.timedelta(days=1)
    return Window(period, start, end)


def _day(x: Any) -> dt.date:
    return pd.Timestamp(x).date()


# --------------------------------------------------------------------------- episodes


def episodes(days_with: list[dt.date], plant_days: list[dt.date]) -> list[dict[str, Any]]:
    """Maximal runs of consecutive production days (of ``plant_days``) on which a problem was seen
    (``days_with``), each with the first later production day without it (``resolved``, or None)."""
    seen = set(days_with)
    ordered = sorted(set(plant_days) | seen)
    out: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for d in ordered:
        if d in seen:
            if cur is None:
                cur = {"first_day": d, "last_day": d, "days": 0}
            cur["last_day"], cur["days"] = d, cur["days"] + 1
        elif cur is not None:
            cur["resolved"] = d
            out.append(cur)
            cur = None
    if cur is not None:
        cur["resolved"] = None
        out.append(cur)
    for e in out:
        e["days_to_resolution"] = (e["resolved"] - e["first_day"]).days if e["resolved"] else None
    return out


# --------------------------------------------------------------------------- sources


def _q(con: Any, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def _plant_days(con: Any, plant: str) -> list[dt.date]:
    if not table_exists(con, "kpi", "kpi_daily"):
        return []
    return [
        _day(r[0])
        for r in con.execute(
            "SELECT DISTINCT partition_date FROM kpi.kpi_daily WHERE plant = ? ORDER BY 1", [plant]
        ).fetchall()
    ]


def last_data_day(con: Any, plants: list[str]) -> dt.date | None:
    """The last production day with unified KPIs among ``plants``."""
    if not plants or not table_exists(con, "kpi", "kpi_daily"):
        return None
    row = con.execute(
        f"SELECT max(partition_date) FROM kpi.kpi_daily WHERE plant IN "
        f"({', '.join('?' for _ in plants)})",
        plants,
    ).fetchone()
    return _day(row[0]) if row and row[0] is not None else None


def _quarantine_incidents(
    con: Any, plant: str, w: Window, plant_days: list[dt.date]
) -> list[dict[str, Any]]:
    if not table_exists(con, "standard", "quarantine"):
        return []
    q = _q(
        con,
        "SELECT rule, partition_date, sum(n_items) AS items FROM standard.quarantine WHERE plant = ? "
        "GROUP BY rule, partition_date",
        [plant],
    )
    out = []
    for rule, g in q.groupby("rule"):
        items = dict(zip(g["partition_date"].map(_day), g["items"], strict=True))
        for e in episodes(list(items), plant_days):
            if w.start <= e["first_day"] <= w.end:
                out.append(
                    {
                        "source": "quarantine",
                        "what": str(rule),
                        "machines": "",
                        **e,
                        "items": int(
                            sum(v for d, v in items.items() if e["first_day"] <= d <= e["last_day"])
                        ),
                        "audit_seqs": [],
                    }
                )
    return out


def _sensor_incidents(
    con: Any, plant: str, w: Window, plant_days: list[dt.date], audit_incidents: list[AuditRecord]
) -> list[dict[str, Any]]:
    if not table_exists(con, "ml", "drift_findings"):
        return []
    f = _q(
        con,
        f"SELECT kind, feature, coalesce(machines, '') AS machines, partition_date FROM ml.drift_findings "
        f"WHERE plant = ? AND kind IN ({', '.join(repr(k) for k in SENSOR_KINDS)})",
        [plant],
    )
    out = []
    for (kind, feature, machines), g in f.groupby(["kind", "feature", "machines"]):
        for e in episodes(list(g["partition_date"].map(_day)), plant_days):
            if not (w.start <= e["first_day"] <= w.end):
                continue
            span = {
                str(e["first_day"] + dt.timedelta(days=i))
                for i in range((e["last_day"] - e["first_day"]).days + 1)
            }
            seqs = [
                r.seq
                for r in audit_incidents
                if r.refs.get("kind") == kind and span & set(r.refs.get("days", []))
            ]
            out.append(
                {
                    "source": kind,
                    "what": str(feature),
                    "machines": str(machines),
                    **e,
                    "items": None,
                    "audit_seqs": seqs,
                }
            )
    return out


def _drift(con: Any, plant: str, w: Window) -> pd.DataFrame:
    if not table_exists(con, "ml", "drift_findings"):
        return pd.DataFrame(columns=["model_version", "kind", "findings", "plant_days"])
    return _q(
        con,
        "SELECT model_version, kind, count(*) AS findings, count(DISTINCT partition_date) AS plant_days "
        "FROM ml.drift_findings WHERE plant = ? AND partition_date BETWEEN ? AND ? GROUP BY ALL "
        "ORDER BY ALL",
        [plant, w.start, w.end],
    )


def _predictions(con: Any, plant: str, w: Window) -> pd.DataFrame:
    if not table_exists(con, "ml", "predictions"):
        return pd.DataFrame(columns=["unit_id", "model_version", "partition_date"])
    return _q(
        con,
        "SELECT unit_id, model_version, partition_date FROM ml.predictions WHERE plant = ? AND "
        "partition_date BETWEEN ? AND ?",
        [plant, w.start, w.end],
    )


def _defect_trend(con: Any, plants: list[str], w: Window) -> pd.DataFrame:
    cols = ["plant", "partition_date", "defect_rate", "defective", "inspected", "produced"]
    if not plants or not table_exists(con, "kpi", "kpi_daily"):
        return pd.DataFrame(columns=cols)
    return _q(
        con,
        f"SELECT plant, partition_date, value AS defect_rate, defective, inspected, produced "
        f"FROM kpi.kpi_daily WHERE kpi_id = ? AND line = '*' AND partition_date BETWEEN ? AND ? AND plant "
        f"IN ({', '.join('?' for _ in plants)}) ORDER BY plant, partition_date",
        [DEFECT_KPI, w.start, w.end, *plants],
    )


def _compute_seconds(instance: Any, w: Window) -> dict[str, tuple[float, int]]:
    """Per plant: seconds of finished score/monitor runs attributed to the period (a run over
    ``n`` days of which ``k`` fall into the period counts ``k/n`` of its duration), and how many
    runs contributed. The instance's run records are read once for every plant."""
    import dagster as dg

    from quality_platform.partitions import RANGE_END, RANGE_START, split_key

    out: dict[str, tuple[float, int]] = {}
    if instance is None:
        return out
    for job in RUN_JOBS:
        for rec in instance.get_run_records(
            dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS])
        ):
            tags = rec.dagster_run.tags
            if RANGE_START not in tags or rec.start_time is None or rec.end_time is None:
                continue
            plant, first = split_key(tags[RANGE_START])
            last = split_key(tags.get(RANGE_END, tags[RANGE_START]))[1]
            span = (last - first).days + 1
            inside = (min(last, w.end) - max(first, w.start)).days + 1
            if inside <= 0:
                continue
            total, n = out.get(plant, (0.0, 0))
            out[plant] = (total + (rec.end_time - rec.start_time) * inside / span, n + 1)
    return out


# --------------------------------------------------------------------------- the review


def _rate(num: float, den: float) -> float | None:
    return round(num / den, 6) if den else None


def _rec(r: AuditRecord) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "ts_utc": r.ts_utc,
        "action": r.action,
        "actor": r.actor,
        "subject": r.subject,
        "plant": r.plant,
        "outcome": r.outcome,
        "reason": r.reason,
    }


def build_review(
    paths: Paths,
    period: str = "week",
    end: dt.date | None = None,
    plants: list[str] | None = None,
    *,
    instance: Any = None,
    audit: AuditLog | None = None,
) -> dict[str, Any]:
    """The operating review as a JSON-able dict (see the module docstring for what it counts).

    ``plants``: the plants to review (None = every configured plant); ``end``: the period's last
    production day (default: the last day with unified KPIs); ``instance``: the Dagster instance
    whose runs give the compute time (None = not measured)."""
    from quality_platform.config import load_plants
    from quality_platform.governance.incident_store import incidents_frame
    from quality_platform.ml.config import load_model_config
    from quality_platform.overrides import overrides_frame

    configured = sorted(load_plants(paths))
    plants = sorted(plants) if plants is not None else configured
    unknown = [p for p in plants if p not in configured]
    if unknown:
        raise ReviewError(f"unknown plant(s) {unknown}; configured: {configured}")
    if not paths.warehouse_path.exists():
        raise ReviewError(
            f"no warehouse at {paths.warehouse_path}: run `qp backfill` / `make demo` first"
        )
    audit = audit or AuditLog(audit_db_path(paths))
    model = load_model_config(paths).mlflow.registered_model
    notes: list[str] = []
    with connect(paths.warehouse_path, read_only=True) as con:
        if end is None:
            end = last_data_day(con, plants)
            if end is None:
                raise ReviewError(
                    f"no unified KPIs (kpi.kpi_daily) for {plants}: nothing to review"
                )
        w = window(period, end)
        events = audit.records(since=w.events_from, until=w.events_until)
        sensor_audit = [
            r for r in audit.records(action="incident") if r.actor == "system:monitoring"
        ]
        per_plant: dict[str, Any] = {}
        models: dict[str, dict[str, Any]] = {}
        compute = _compute_seconds(instance, w)

        def mrow(version: str) -> dict[str, Any]:
            return models.setdefault(
                str(version),
                {
                    "model": model,
                    "version": str(version),
                    "predictions": 0,
                    "overrides": 0,
                    "drift_alarms": 0,
                    "sensor_faults": 0,
                    "prediction_drift": 0,
                    "plants": [],
                },
            )

        for plant in plants:
            pdays = _plant_days(con, plant)
            pdays_set = set(pdays)
            preds = _predictions(con, plant, w)
            ov = overrides_frame(paths, plant=plant)
            ov = (
                ov[ov["unit_id"].astype(str).isin(set(preds["unit_id"].astype(str)))]
                if len(preds)
                else ov.iloc[0:0]
            )
            version_of = dict(
                zip(preds["unit_id"].astype(str), preds["model_version"].astype(str), strict=True)
            )
            drift = _drift(con, plant, w)
            dq = _quarantine_incidents(con, plant, w, pdays) + _sensor_incidents(
                con, plant, w, pdays, [r for r in sensor_audit if r.plant == plant]
            )
            resolved = [e["days_to_resolution"] for e in dq if e["days_to_resolution"] is not None]
            seconds, runs = compute.get(plant, (0.0, 0))
            n_pred = len(preds)
            kinds = drift.groupby("kind")["findings"].sum().to_dict() if len(drift) else {}
            alarm_days = (
                drift[drift["kind"] == "process_drift"]["plant_days"].sum() if len(drift) else 0
            )
            per_plant[plant] = {
                "production_days": [str(d) for d in w.days() if d in pdays_set],
                "predictions": n_pred,
                "drift_alarms": int(kinds.get("process_drift", 0)),
                "drift_alarm_plant_days": int(alarm_days),
                "prediction_drift_findings": int(kinds.get("prediction_drift", 0)),
                "sensor_faults": int(sum(kinds.get(k, 0) for k in SENSOR_KINDS)),
                "data_quality_incidents": len(dq),
                "data_quality_resolved": len(resolved),
                "mean_days_to_resolution": round(sum(resolved) / len(resolved), 2)
                if resolved
                else None,
                "max_days_to_resolution": max(resolved) if resolved else None,
                "data_quality_detail": [
                    {
                        **e,
                        **{
                            k: str(e[k]) if e[k] else None
                            for k in ("first_day", "last_day", "resolved")
                        },
                    }
                    for e in dq
                ],
                "overrides": len(ov),
                "override_rate": _rate(len(ov), n_pred),
                "compute_seconds": round(seconds, 3),
                "compute_runs": runs,
                "compute_seconds_per_1000_predictions": round(seconds / n_pred * 1000, 3)
                if n_pred
                else None,
                "retrains": sum(
                    1
                    for r in events
                    if r.action == "retrain"
                    and r.outcome == "ok"
                    and plant in (r.refs.get("plants") or [])
                ),
            }
            for v, n in preds["model_version"].astype(str).value_counts().items():
                m = mrow(v)
                m["predictions"] += int(n)
                m["plants"] = sorted({*m["plants"], plant})
            for u in ov["unit_id"].astype(str):
                mrow(version_of[u])["overrides"] += 1
            for r in drift.itertuples():
                key = (
                    "drift_alarms"
                    if r.kind == "process_drift"
                    else "sensor_faults"
                    if r.kind in SENSOR_KINDS
                    else "prediction_drift"
                    if r.kind == "prediction_drift"
                    else None
                )
                if key:
                    mrow(r.model_version)[key] += int(r.findings)
        trend = _defect_trend(con, plants, w)

    # event-time sections
    prefix = f"model:{model}/"
    from quality_platform.ml.registry import current_store, in_store

    store = current_store(
        paths
    )  # a version is (registry store, number): another store's records are not its
    lifecycle = [
        _rec(r)
        for r in events
        if r.action in LIFECYCLE
        and (r.subject or "").startswith(f"model:{model}")
        and r.outcome != "denied"
        and in_store(r, store)
    ]
    for r in lifecycle:
        subj = r["subject"] or ""
        if subj.startswith(prefix):
            m = mrow(subj.removeprefix(prefix))
            m[r["action"] + "s"] = m.get(r["action"] + "s", 0) + (
                1 if r["outcome"] in ("ok", "failed") else 0
            )
    visible = set(plants)
    denied = [
        _rec(r) for r in events if r.outcome == "denied" and (r.plant is None or r.plant in visible)
    ]
    freezes = [
        {**_rec(r), "incident_id": r.refs.get("incident_id"), "severity": r.refs.get("severity")}
        for r in events
        if r.action == "incident"
        and r.refs.get("frozen")
        and (r.reason or "").startswith("opened")
        and (r.plant is None or r.plant in visible)
    ]
    frame = incidents_frame(paths)
    lo, hi = pd.Timestamp(w.events_from), pd.Timestamp(w.events_until)
    incidents: list[dict[str, Any]] = []
    for r in frame[
        (frame["opened_utc"] >= lo)
        & (frame["opened_utc"] < hi)
        & (frame["plant"].isna() | frame["plant"].isin(visible))
    ].itertuples():
        hours = (
            ((r.closed_utc - r.opened_utc).total_seconds() / 3600)
            if pd.notna(r.closed_utc)
            else None
        )
        incidents.append(
            {
                "id": int(r.id),
                "severity": r.severity,
                "status": r.status,
                "plant": r.plant if isinstance(r.plant, str) else None,
                "model": r.model,
                "summary": r.summary,
                "opened_utc": utc_text(r.opened_utc),
                "closed_utc": utc_text(r.closed_utc) if pd.notna(r.closed_utc) else None,
                "hours_to_resolution": round(hours, 2) if hours is not None else None,
                "frozen_now": bool(r.frozen),
            }
        )
    if not events:
        span = audit.records(limit=1)
        if span:
            notes.append(
                f"no audit events between {w.events_from} and {w.events_until}: event-time sections are "
                f"empty (the newest audit record is from {span[0].ts_utc}; production days and event time "
                "differ in a simulated installation)"
            )
    if instance is None:
        notes.append("compute time not measured (no Dagster instance)")

    daily = [
        {
            "plant": r.plant,
            "date": str(_day(r.partition_date)),
            "defect_rate": None if pd.isna(r.defect_rate) else round(float(r.defect_rate), 6),
            "defective": int(r.defective),
            "inspected": int(r.inspected),
            "produced": int(r.produced),
        }
        for r in trend.itertuples()
    ]
    weekly = []
    if len(trend):
        t = trend.assign(
            week=trend["partition_date"].map(
                lambda d: pd.Timestamp(d).to_period("W-SUN").start_time.date()
            )
        )
        for (plant, week), g in t.groupby(["plant", "week"]):
            weekly.append(
                {
                    "plant": plant,
                    "week_from": str(week),
                    "days": len(g),
                    "defective": int(g["defective"].sum()),
                    "inspected": int(g["inspected"].sum()),
                    "defect_rate": _rate(int(g["defective"].sum()), int(g["inspected"].sum())),
                }
            )
    for m in models.values():
        m["override_rate"] = _rate(m["overrides"], m["predictions"])
    return {
        "period": w.period,
        "start": str(w.start),
        "end": str(w.end),
        "plants": plants,
        "windows": {
            "production_days": [str(w.start), str(w.end)],
            "events_utc": [w.events_from, w.events_until],
        },
        "per_plant": per_plant,
        "per_model": sorted(
            models.values(), key=lambda m: int(m["version"]) if m["version"].isdigit() else 0
        ),
        "lifecycle_events": lifecycle,
        "retrains": sum(1 for r in lifecycle if r["action"] == "retrain" and r["outcome"] == "ok"),
        "promotions": sum(
            1 for r in lifecycle if r["action"] == "promote" and r["outcome"] == "ok"
        ),
        "rollbacks": sum(
            1 for r in lifecycle if r["action"] == "rollback" and r["outcome"] == "ok"
        ),
        "policy_exceptions": {
            "denied": len(denied),
            "denied_by_action": _count(denied, "action"),
            "freezes": len(freezes),
            "denied_records": denied,
            "freeze_records": freezes,
        },
        "incidents": incidents,
        "defect_rate_trend": {"daily": daily, "weekly": weekly},
        "notes": notes,
    }


def _count(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[str(r[key])] = out.get(str(r[key]), 0) + 1
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- Markdown


def md_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A Markdown table of ``rows`` (``columns``: default every key in first-seen order); floats to
    4 significant digits, lists and dicts as sorted JSON, ``|`` escaped; ``_(none)_`` when empty."""
    if not rows:
        return "_(none)_"
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, dict | list):
            v = json.dumps(v, sort_keys=True)
        return str("" if v is None else v).replace("|", "\\|").replace("\n", " ")

    return "\n".join(
        [
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
            *("| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows),
        ]
    )


def review_markdown(rv: dict[str, Any]) -> str:
    """The review as Markdown (the same numbers as the JSON)."""
    summary = [
        {"plant": p, **{k: v for k, v in d.items() if not isinstance(v, list | dict)}}
        for p, d in rv["per_plant"].items()
    ]
    dq = [{"plant": p, **e} for p, d in rv["per_plant"].items() for e in d["data_quality_detail"]]
    pe = rv["policy_exceptions"]
    lines = [
        f"# Operating review: {rv['period']} {rv['start']} .. {rv['end']}",
        "",
        f"Plants: {', '.join(rv['plants'])}. Production days {rv['windows']['production_days'][0]} .. "
        f"{rv['windows']['production_days'][1]}; events (UTC) {rv['windows']['events_utc'][0]} .. "
        f"{rv['windows']['events_utc'][1]} (end exclusive).",
        "",
        "## Per plant",
        "",
        md_table(
            summary,
            [
                "plant",
                "predictions",
                "drift_alarms",
                "drift_alarm_plant_days",
                "sensor_faults",
                "data_quality_incidents",
                "data_quality_resolved",
                "mean_days_to_resolution",
                "overrides",
                "override_rate",
                "retrains",
                "compute_seconds",
                "compute_seconds_per_1000_predictions",
            ],
        ),
        "",
        "## Per model version",
        "",
        md_table(
            rv["per_model"],
            [
                "model",
                "version",
                "plants",
                "predictions",
                "overrides",
                "override_rate",
                "drift_alarms",
                "sensor_faults",
                "prediction_drift",
                "registers",
                "gates",
                "approves",
                "rejects",
                "promotes",
                "rollbacks",
            ],
        ),
        "",
        "## Data-quality incidents and time to resolution",
        "",
        "A quarantine rule or sensor fault is resolved on the first later production day without it.",
        "",
        md_table(
            dq,
            [
                "plant",
                "source",
                "what",
                "machines",
                "first_day",
                "last_day",
                "days",
                "resolved",
                "days_to_resolution",
                "items",
                "audit_seqs",
            ],
        ),
        "",
        "## Incidents (incident workflow)",
        "",
        md_table(
            rv["incidents"],
            [
                "id",
                "severity",
                "status",
                "plant",
                "model",
                "opened_utc",
                "closed_utc",
                "hours_to_resolution",
                "summary",
            ],
        ),
        "",
        f"## Retrains and promotions: {rv['retrains']} retrain(s), {rv['promotions']} promotion(s), "
        f"{rv['rollbacks']} rollback(s)",
        "",
        md_table(
            rv["lifecycle_events"],
            ["seq", "ts_utc", "action", "actor", "subject", "outcome", "reason"],
        ),
        "",
        f"## Policy exceptions: {pe['denied']} denied action(s), {pe['freezes']} freeze(s)",
        "",
        md_table(
            [{"action": k, "denied": v} for k, v in pe["denied_by_action"].items()],
            ["action", "denied"],
        ),
        "",
        md_table(
            pe["denied_records"], ["seq", "ts_utc", "action", "actor", "subject", "plant", "reason"]
        ),
        "",
        md_table(
            pe["freeze_records"],
            ["seq", "ts_utc", "incident_id", "severity", "actor", "plant", "reason"],
        ),
        "",
        "## Unified defect-rate trend (kpi.kpi_daily, defect_rate, whole plant)",
        "",
        md_table(
            rv["defect_rate_trend"]["daily"],
            ["plant", "date", "defect_rate", "defective", "inspected"],
        ),
        "",
        "Per week (Monday start):",
        "",
        md_table(
            rv["defect_rate_trend"]["weekly"],
            ["plant", "week_from", "days", "defect_rate", "defective", "inspected"],
        ),
    ]
    if rv["notes"]:
        lines += ["", "## Notes", "", *(f"- {n}" for n in rv["notes"])]
    return "\n".join(lines) + "\n"
