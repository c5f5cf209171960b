"""The closed loop (F20, F21): schedules, the monitoring chain and the retrain sensor.

How the loop decides (also in the README):

1. ``daily_<plant>`` (schedule) lands yesterday's files; ``standardize_on_raw`` standardises them;
   ``monitor_after_standardize`` then scores and monitors those plant-days (predictions,
   drift_metrics, ops_metrics) and computes ``model_performance`` for the days whose labels have
   just arrived (production day + the plant's label latency).
2. ``retrain_on_drift`` watches the latest evaluation of the checks ``drift_metrics:input_drift``
   (process drift, ERROR) and ``model_performance:performance`` (realised performance drop, ERROR),
   keeping each record id as its cursor. A suspected sensor fault is a WARN and never retrains.
3. Debounce: the failing check's ``persisted_plant_days`` must reach ``loop.debounce_plant_days``.
   Cooldown: no second retrain within ``loop.cooldown_hours`` unless the earlier retrain's version
   was rejected or failed the gate. A run already queued or running is never doubled.
4. The retrain is ``train_job`` (snapshot -> challenger -> release gate -> approval policy); the
   challenger then runs in shadow/canary through the daily scoring, and ``canary_evaluation``
   promotes or rolls it back. Every step is in the audit log with the triggering check.
5. Freeze (F24): while an open incident freezes the model, a failing check launches nothing; the
   refusal is audited once per new failing check record (action ``retrain``, outcome ``denied``,
   refs name the incident).
"""

import datetime as dt
import json
from typing import Any

import dagster as dg

from quality_platform.alerts import Alert
from quality_platform.audit import AuditLog
from quality_platform.defs.ml.jobs import TRAIN_JOB
from quality_platform.defs.monitoring.jobs import OPS_JOB
from quality_platform.governance.freeze import FrozenError, assert_not_frozen
from quality_platform.ml.config import load_monitoring_config
from quality_platform.ml.registry import ModelRegistry
from quality_platform.partitions import range_tags
from quality_platform.resources import (
    AlertChannelResource,
    AuditLogResource,
    ModelRegistryResource,
    PlatformResource,
)

WATCHED = (
    dg.AssetCheckKey(dg.AssetKey("drift_metrics"), "input_drift"),
    dg.AssetCheckKey(dg.AssetKey("model_performance"), "performance"),
)
RETRAIN_SENSOR = "retrain_on_drift"
ACTOR = "system:retrain_sensor"


def _meta(ev: Any, key: str, default: Any = None) -> Any:
    v = ev.metadata.get(key)
    return default if v is None else getattr(v, "value", v)


def cooldown_blocker(
    reg: ModelRegistry, audit: AuditLog, hours: float, now: dt.datetime
) -> str | None:
    """Why a retrain must wait (an earlier retrain inside the cooldown whose version was not
    rejected and did not fail the gate), or None."""
    since = now - dt.timedelta(hours=hours)
    versions = {v.tag("retrain_key"): v for v in reg.versions() if v.tag("retrain_key")}
    for r in reversed(audit.records(action="retrain", since=since)):
        if r.outcome != "ok":
            continue
        key = r.refs.get("run_key")
        v = versions.get(key)
        if v is not None and (v.status in ("rejected", "gate_failed") or v.approval == "rejected"):
            continue
        what = (
            f"version {v.version} ({v.status})"
            if v is not None
            else "its run has not registered a version yet"
        )
        return f"cooldown: retrain {key} at {r.ts_utc} ({what}) is within {hours} h"
    return None


def evaluate_retrain(
    context: dg.SensorEvaluationContext,
    platform: PlatformResource,
    model_registry: ModelRegistryResource,
    audit_log: AuditLogResource,
    alerts: AlertChannelResource,
) -> dg.SensorResult:
    """The body of ``retrain_on_drift`` (see the module docstring)."""
    paths = platform.paths()
    loop = load_monitoring_config(paths).loop
    cursor = json.loads(context.cursor) if context.cursor else {}
    new_cursor = dict(cursor)
    audit = audit_log.log()
    triggers = []
    for key in WATCHED:
        name = key.to_user_string()
        rec = context.instance.get_latest_asset_check_evaluation_record(key)
        if rec is None or cursor.get(name) == rec.id:
            continue
        new_cursor[name] = rec.id
        ev = rec.event.asset_check_evaluation if rec.event else None
        if ev is None or ev.passed or ev.severity != dg.AssetCheckSeverity.ERROR:
            continue
        persisted = int(_meta(ev, "persisted_plant_days", 1))
        refs = {
            "check": name,
            "check_record_id": rec.id,
            "check_run_id": rec.run_id,
            "plants": _meta(ev, "plants", []),
            "persisted_plant_days": persisted,
            "first_day": _meta(ev, "first_day"),
            "last_day": _meta(ev, "last_day"),
        }
        if persisted < loop.debounce_plant_days:
            audit.append(
                "retrain",
                ACTOR,
                actor_kind="system",
                outcome="info",
                subject="model:defect_model",
                reason=f"debounce: {name} failed for {persisted} plant-day(s), needs {loop.debounce_plant_days}",
                refs=refs,
            )
            continue
        triggers.append(refs)
    if not triggers:
        return dg.SensorResult(
            cursor=json.dumps(new_cursor),
            skip_reason=dg.SkipReason("no new failing drift/performance check"),
        )
    refs = triggers[0]
    reg = model_registry.registry(paths)
    try:  # an open incident freezes the model: one audited refusal per new failing check record
        assert_not_frozen(
            "retrain",
            ACTOR,
            audit,
            paths,
            subject=f"model:{reg.name}",
            model=reg.name,
            refs={**refs, "also": triggers[1:]},
        )
    except FrozenError as exc:
        return dg.SensorResult(cursor=json.dumps(new_cursor), skip_reason=dg.SkipReason(str(exc)))
    active = context.instance.get_run_records(
        dg.RunsFilter(
            job_name=TRAIN_JOB,
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
                dg.DagsterRunStatus.NOT_STARTED,
            ],
        )
    )
    blocker = (
        f"retrain run {active[0].dagster_run.run_id} is already {active[0].dagster_run.status.value}"
        if active
        else cooldown_blocker(reg, audit, loop.cooldown_hours, dt.datetime.now(dt.UTC))
    )
    if blocker:
        audit.append(
            "retrain",
            ACTOR,
            actor_kind="system",
            outcome="denied",
            subject="model:defect_model",
            reason=blocker,
            refs={**refs, "also": triggers[1:]},
        )
        return dg.SensorResult(cursor=json.dumps(new_cursor), skip_reason=dg.SkipReason(blocker))
    run_key = f"retrain-{refs['check'].replace(':', '-')}-{refs['check_record_id']}"
    audit.append(
        "retrain",
        ACTOR,
        actor_kind="system",
        subject="model:defect_model",
        reason=f"{refs['check']} failed (ERROR) at {refs['plants']} for {refs['persisted_plant_days']} "
        f"plant-day(s)",
        refs={**refs, "run_key": run_key, "also": triggers[1:]},
    )
    alerts.send(
        Alert(
            kind="retrain",
            severity="warning",
            summary=f"retrain started by {refs['check']} at {refs['plants']}",
            details={**refs, "run_key": run_key},
        ),
        paths,
    )
    requests = [
        dg.RunRequest(
            run_key=run_key,
            job_name=TRAIN_JOB,
            tags={
                "trigger": RETRAIN_SENSOR,
                "qp/check": refs["check"],
                "qp/check_record_id": str(refs["check_record_id"]),
                "qp/retrain_key": run_key,
            },
        )
    ]
    if refs.get("last_day"):  # the triggering plant-days' ops_metrics now count this retrain
        day = dt.date.fromisoformat(str(refs["last_day"]))
        requests += [
            dg.RunRequest(
                run_key=f"{run_key}-ops-{p}",
                job_name=OPS_JOB,
                tags={**range_tags(p, day, day), "trigger": RETRAIN_SENSOR},
            )
            for p in refs["plants"]
        ]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(new_cursor))


def current_cursor(instance: dg.DagsterInstance) -> str:
    """The retrain sensor's cursor at the latest evaluations of the watched checks (what a sensor
    that has been running all along would hold)."""
    cur = {}
    for key in WATCHED:
        rec = instance.get_latest_asset_check_evaluation_record(key)
        if rec is not None:
            cur[key.to_user_string()] = rec.id
    return json.dumps(cur)


def build_retrain_sensor(jobs: list[Any]) -> dg.SensorDefinition:
    """``jobs``: the train_job and ops_job definitions the sensor requests."""

    @dg.sensor(
        name=RETRAIN_SENSOR,
        jobs=[j for j in jobs if j.name in (TRAIN_JOB, OPS_JOB)],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches train_job when drift_metrics:input_drift or model_performance:performance fails "
        "with ERROR (debounce and cooldown from data/ml/monitoring.yaml).",
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        platform: PlatformResource,
        model_registry: ModelRegistryResource,
        audit_log: AuditLogResource,
        alerts: AlertChannelResource,
    ) -> dg.SensorResult:
        return evaluate_retrain(context, platform, model_registry, audit_log, alerts)

    return _sensor
