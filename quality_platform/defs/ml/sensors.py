"""The closed loop (F20, F21): schedules, the monitoring chain and the retrain sensor.

How the loop decides (also in the README):

1. ``daily_<plant>`` (schedule) lands yesterday's files; ``standardize_on_raw`` standardises them;
   ``monitor_after_standardize`` then scores and monitors those plant-days (predictions,
   drift_metrics, ops_metrics) and computes ``model_performance`` for the days whose labels have
   just arrived (production day + the plant's label latency).
2. ``retrain_on_drift`` reads every evaluation record of the checks ``drift_metrics:input_drift``
   (process drift, ERROR) and ``model_performance:performance`` (realised performance drop, ERROR)
   after its cursor, at all plants, and decides on each once it is complete (a record whose run is
   still queued or running is looked at again on the next tick; the cursor never moves past it).
   A suspected sensor fault is a WARN and never retrains. Records the audit log already names are
   never decided again, so a sensor whose cursor is lost (a new daemon after the demo) is safe.
3. Stale: a record measured against another version than the current champion is never acted on.
   Debounce: the failing check's ``persisted_plant_days`` must reach ``loop.debounce_plant_days``.
   Cooldown, in plant time and per plant: after a retrain triggered by a plant's days up to D, the
   same plant's next trigger needs a day >= D + ``loop.cooldown_plant_days`` (another plant is not
   held back), unless that retrain's version was rejected or failed the gate. A retrain run
   already queued or running is never doubled. Every decision is audited (``retrain``: ``ok``,
   ``denied`` or ``info`` with the reason and the check record).
4. The retrain is ``train_job`` (snapshot -> challenger -> release gate -> approval policy); the
   challenger then runs in shadow/canary through the daily scoring, and ``canary_evaluation``
   promotes or rolls it back. Every step is in the audit log with the triggering check.
5. Freeze (F24): while an open incident freezes the model, a failing check launches nothing; the
   refusal is audited once per new failing check record (action ``retrain``, outcome ``denied``,
   refs name the incident).
"""

import datetime as dt
import functools
import json
from typing import Any

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from quality_platform.alerts import Alert
from quality_platform.defs.ml.jobs import CANARY_JOB, TRAIN_JOB
from quality_platform.defs.monitoring.jobs import OPS_JOB, PERFORMANCE_JOB
from quality_platform.governance.freeze import FrozenError, assert_not_frozen
from quality_platform.ml.config import load_monitoring_config
from quality_platform.ml.registry import CHALLENGER
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
CANARY_SENSOR = "canary_after_performance"
ACTOR = "system:retrain_sensor"


def _meta(ev: Any, key: str, default: Any = None) -> Any:
    v = ev.metadata.get(key)
    return default if v is None else getattr(v, "value", v)


Status = AssetCheckExecutionRecordStatus
_RUN_ACTIVE = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.NOT_STARTED,
)


def _records_after(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, after: int, page: int = 200
) -> list[AssetCheckExecutionRecord]:
    """Every evaluation record of ``key`` with an id above ``after``, oldest first (all plants:
    a newer evaluation at one plant never hides an older one at another)."""
    out: list[AssetCheckExecutionRecord] = []
    before: int | None = None
    while True:
        rows = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=page, cursor=before
        )
        newer = [r for r in rows if r.id > after]
        out += newer
        if len(rows) < page or len(newer) < len(rows):
            return sorted(out, key=lambda r: r.id)
        before = rows[-1].id


def _resolved(instance: dg.DagsterInstance, rec: AssetCheckExecutionRecord) -> bool:
    """Whether ``rec`` is final: evaluated, or planned by a run that ended without evaluating it.
    A record whose run is still queued or running is looked at again on a later tick."""
    if rec.status != Status.PLANNED:
        return True
    run = instance.get_run_by_id(rec.run_id)
    return run is None or run.is_finished


def _parse_cursor(raw: str | None) -> dict[str, dict[str, Any]]:
    """Per watched check: ``after`` (every record up to this id is decided) and ``done`` (decided
    records above it). Reads the earlier cursor format (check name -> latest record id) too."""
    state = json.loads(raw) if raw else {}
    out = {}
    for key in WATCHED:
        name = key.to_user_string()
        v = state.get(name)
        if isinstance(v, int):
            out[name] = {"after": v, "done": []}
        elif isinstance(v, dict):
            out[name] = {
                "after": int(v.get("after", 0)),
                "done": [int(i) for i in v.get("done", [])],
            }
        else:
            out[name] = {"after": 0, "done": []}
    return out


def _advance(state: dict[str, Any], decided: list[int], pending: list[int]) -> dict[str, Any]:
    """The check's cursor after a tick: ``after`` moves up to (not past) the oldest pending record."""
    done = sorted(set(state["done"]) | set(decided))
    after = state["after"]
    floor = min(pending) if pending else None
    for i in done:
        if floor is not None and i > floor:
            break
        after = max(after, i)
    return {"after": after, "done": [i for i in done if i > after]}


def _decided_records(history: list[Any]) -> set[int]:
    """Check records the loop has already decided on (the ``retrain`` audit records ``history``
    name them), so a sensor whose cursor was lost or never set (a new daemon after the demo)
    decides nothing twice."""
    out = set()
    for r in history:
        ids = [r.refs.get("check_record_id")] + [
            a.get("check_record_id") for a in r.refs.get("also", [])
        ]
        out |= {int(i) for i in ids if i is not None}
    return out


def cooldown_blocker(
    versions: dict[str, Any], history: list[Any], plant: str, day: dt.date, plant_days: int
) -> str | None:
    """Why a retrain triggered by ``plant``'s day ``day`` must wait: an earlier retrain (in
    ``history``, the ``retrain`` audit records) triggered by the same plant's days up to D with
    ``day`` < D + ``plant_days`` (plant time, per plant), whose version (``versions``: by retrain
    key) was not rejected and did not fail the gate. None when nothing holds it back."""
    for r in reversed(history):
        last = (r.refs.get("last_day_by_plant") or {}).get(plant) if r.outcome == "ok" else None
        if last is None:
            continue
        key = r.refs.get("run_key")
        v = versions.get(key)
        if v is not None and (v.status in ("rejected", "gate_failed") or v.approval == "rejected"):
            continue
        gap = (day - dt.date.fromisoformat(str(last))).days
        if gap >= plant_days:
            return None
        what = (
            f"version {v.version} ({v.status})"
            if v is not None
            else "its run has not registered a version yet"
        )
        return (
            f"cooldown: {plant}'s retrain {key} covered its days up to {last} ({what}); {day} is "
            f"{gap} plant-day(s) later, cooldown {plant_days} plant-days"
        )
    return None


def _refs(rec: AssetCheckExecutionRecord, ev: Any) -> dict[str, Any]:
    plants = [str(p) for p in _meta(ev, "plants", [])]
    last = _meta(ev, "last_day")
    return {
        "check": rec.key.to_user_string(),
        "check_record_id": rec.id,
        "check_run_id": rec.run_id,
        "plants": plants,
        "persisted_plant_days": int(_meta(ev, "persisted_plant_days", 1)),
        "first_day": _meta(ev, "first_day"),
        "last_day": last,
        "last_day_by_plant": _meta(ev, "last_day_by_plant") or {p: last for p in plants},
        "model_versions": [str(v) for v in _meta(ev, "model_versions", [])],
    }


def evaluate_retrain(
    context: dg.SensorEvaluationContext,
    platform: PlatformResource,
    model_registry: ModelRegistryResource,
    audit_log: AuditLogResource,
    alerts: AlertChannelResource,
) -> dg.SensorResult:
    """``retrain_on_drift`` (see the module docstring); Dagster passes the resources by name."""
    paths = platform.paths()
    loop = load_monitoring_config(paths).loop
    instance = context.instance
    state = _parse_cursor(context.cursor)
    audit = audit_log.log()
    # read once per tick, and only when a failed record needs them (most ticks find none)
    history = functools.cache(lambda: audit.records(action="retrain"))
    already = functools.cache(lambda: _decided_records(history()))
    reg = functools.cache(lambda: model_registry.registry(paths))
    champion = functools.cache(lambda: reg().alias("champion"))

    def note(outcome: str, reason: str, refs: dict[str, Any]) -> None:
        audit.append(
            "retrain",
            ACTOR,
            actor_kind="system",
            outcome=outcome,
            subject=f"model:{reg().name}",
            reason=reason,
            refs=refs,
        )

    candidates: list[dict[str, Any]] = []
    new_state = {}
    for key in WATCHED:
        name = key.to_user_string()
        decided, pending = [], []
        for rec in _records_after(instance, key, state[name]["after"]):
            if rec.id in state[name]["done"]:
                continue
            if not _resolved(instance, rec):
                pending.append(rec.id)
                continue
            decided.append(rec.id)
            ev = rec.event.asset_check_evaluation if rec.event else None
            if ev is None or ev.passed or ev.severity != dg.AssetCheckSeverity.ERROR:
                continue
            if rec.id in already():
                continue
            refs = _refs(rec, ev)
            champ = champion()
            if (
                champ is not None
                and refs["model_versions"]
                and champ.version not in refs["model_versions"]
            ):
                note(
                    "info",
                    f"stale: {name} was measured against version(s) {refs['model_versions']}; "
                    f"version {champ.version} is the champion now",
                    refs,
                )
            elif refs["persisted_plant_days"] < loop.debounce_plant_days:
                note(
                    "info",
                    f"debounce: {name} failed for {refs['persisted_plant_days']} plant-day(s), "
                    f"needs {loop.debounce_plant_days}",
                    refs,
                )
            else:
                candidates.append(refs)
        new_state[name] = _advance(state[name], decided, pending)
    cursor = json.dumps(new_state, sort_keys=True)
    if not candidates:
        return dg.SensorResult(
            cursor=cursor, skip_reason=dg.SkipReason("no new failing drift/performance check")
        )
    refs = {**candidates[0], "also": candidates[1:]}
    try:  # an open incident freezes the model: one audited refusal per new failing check record
        assert_not_frozen(
            "retrain",
            ACTOR,
            audit,
            paths,
            subject=f"model:{reg().name}",
            model=reg().name,
            refs=refs,
        )
    except FrozenError as exc:
        return dg.SensorResult(cursor=cursor, skip_reason=dg.SkipReason(str(exc)))
    active = instance.get_run_records(dg.RunsFilter(job_name=TRAIN_JOB, statuses=list(_RUN_ACTIVE)))
    if active:
        run = active[0].dagster_run
        blocker = f"retrain run {run.run_id} is already {run.status.value}"
        note("denied", blocker, refs)
        return dg.SensorResult(cursor=cursor, skip_reason=dg.SkipReason(blocker))
    # plant time, per plant: each plant's last failing day against its own last retrain
    last_by_plant: dict[str, str] = {}
    for c in candidates:
        for p, d in c["last_day_by_plant"].items():
            last_by_plant[p] = max(str(d), last_by_plant.get(p, ""))
    versions = {v.tag("retrain_key"): v for v in reg().versions() if v.tag("retrain_key")}
    blocked = {
        p: b
        for p, d in last_by_plant.items()
        if (
            b := cooldown_blocker(
                versions, history(), p, dt.date.fromisoformat(d), loop.cooldown_plant_days
            )
        )
    }
    if len(blocked) == len(last_by_plant):
        reason = "; ".join(blocked.values())
        note("denied", reason, refs)
        return dg.SensorResult(cursor=cursor, skip_reason=dg.SkipReason(reason))
    plants = sorted(set(last_by_plant) - set(blocked))
    refs = {
        **refs,
        "plants": plants,
        "last_day_by_plant": {p: last_by_plant[p] for p in plants},
        "held_back": blocked,
    }
    run_key = f"retrain-{refs['check'].replace(':', '-')}-{refs['check_record_id']}"
    note(
        "ok",
        f"{refs['check']} failed (ERROR) at {plants} for {refs['persisted_plant_days']} plant-day(s)",
        {**refs, "run_key": run_key},
    )
    alerts.send(
        Alert(
            kind="retrain",
            severity="warning",
            summary=f"retrain started by {refs['check']} at {plants}",
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
    # the triggering plant-days' ops_metrics now count this retrain
    requests += [
        dg.RunRequest(
            run_key=f"{run_key}-ops-{p}",
            job_name=OPS_JOB,
            tags={
                **range_tags(p, dt.date.fromisoformat(d), dt.date.fromisoformat(d)),
                "trigger": RETRAIN_SENSOR,
            },
        )
        for p, d in refs["last_day_by_plant"].items()
    ]
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def current_cursor(instance: dg.DagsterInstance) -> str:
    """The retrain sensor's cursor at the latest evaluations of the watched checks (what a sensor
    that has been running all along would hold)."""
    cur = {}
    for key in WATCHED:
        rec = instance.get_latest_asset_check_evaluation_record(key)
        cur[key.to_user_string()] = {"after": rec.id if rec is not None else 0, "done": []}
    return json.dumps(cur, sort_keys=True)


def build_retrain_sensor(jobs: list[Any], interval_seconds: int = 30) -> dg.SensorDefinition:
    """``jobs``: the train_job and ops_job definitions the sensor requests; the daemon evaluates it
    every ``interval_seconds``."""

    return dg.sensor(
        name=RETRAIN_SENSOR,
        jobs=[j for j in jobs if j.name in (TRAIN_JOB, OPS_JOB)],
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches train_job when drift_metrics:input_drift or model_performance:performance fails "
        "with ERROR at a plant (every record decided once; debounce and per-plant cooldown in "
        "plant-days from data/ml/monitoring.yaml).",
    )(evaluate_retrain)


def build_canary_sensor(jobs: list[Any], interval_seconds: int = 30) -> dg.SensorDefinition:
    """``canary_after_performance``: the canary is evaluated when labels arrive, in plant time (a
    successful ``performance_job`` run: the labels of its plant-days are in), not at a wall-clock
    hour, so a replay, a backfill and live operation promote or roll back alike. Nothing is
    launched while no challenger is in canary/shadow. ``jobs``: the performance_job and canary_job
    definitions."""
    by_name = {j.name: j for j in jobs}

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name=CANARY_SENSOR,
        monitored_jobs=[by_name[PERFORMANCE_JOB]],
        request_job=by_name[CANARY_JOB],
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="After labels arrived (a performance_job run): evaluate the canary (promote, roll "
        "back or wait) while a challenger is in canary/shadow.",
    )
    def _sensor(
        context: dg.RunStatusSensorContext,
        platform: PlatformResource,
        model_registry: ModelRegistryResource,
    ) -> dg.RunRequest | dg.SkipReason:
        chall = model_registry.registry(platform.paths()).alias(CHALLENGER)
        if chall is None:
            return dg.SkipReason("no challenger in canary")
        run = context.dagster_run
        return dg.RunRequest(
            run_key=f"canary-{run.run_id}",
            job_name=CANARY_JOB,
            tags={
                "trigger": CANARY_SENSOR,
                "qp/labels_run_id": run.run_id,
                "qp/challenger": chall.version,
            },
        )

    return _sensor
