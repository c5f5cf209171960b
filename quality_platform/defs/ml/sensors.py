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
   already queued or running is never doubled. Label latency: a plant waits until its units
   produced since the shift began are labelled in number (``loop.min_post_shift_labelled_units``,
   ``loop.min_post_shift_defects``, at most ``loop.max_label_wait_plant_days``), so the retrain's
   window holds the new regime (``_wait_for_labels``). Every decision is audited (``retrain``: ``ok``,
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
from quality_platform.config import load_plants
from quality_platform.defs.ml.jobs import CANARY_JOB, TRAIN_JOB
from quality_platform.defs.monitoring.assets import LABELLED_BY_PARTITION
from quality_platform.defs.monitoring.jobs import OPS_JOB, PERFORMANCE_JOB
from quality_platform.governance.freeze import FrozenError, assert_not_frozen
from quality_platform.ml.config import ModelConfig, load_model_config, load_monitoring_config
from quality_platform.ml.dataset import holdout_day, validation_share
from quality_platform.ml.registry import CHALLENGER
from quality_platform.partitions import key_for, range_tags, split_key
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
PERFORMANCE_ASSET = dg.AssetKey("model_performance")
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
    persisted = int(_meta(ev, "persisted_plant_days", 1))
    return {
        "check": rec.key.to_user_string(),
        "check_record_id": rec.id,
        "check_run_id": rec.run_id,
        "plants": plants,
        "persisted_plant_days": persisted,
        "persisted_by_plant": _meta(ev, "persisted_by_plant") or {p: persisted for p in plants},
        "first_day": _meta(ev, "first_day"),
        "last_day": last,
        "last_day_by_plant": _meta(ev, "last_day_by_plant") or {p: last for p in plants},
        "model_versions": [str(v) for v in _meta(ev, "model_versions", [])],
    }


def shift_start(refs: dict[str, Any], plant: str) -> dt.date:
    """The first plant-day of the failing streak at ``plant`` (its last failing day minus the
    days the failure has persisted): the day the new regime began, as far as the check can see."""
    last = dt.date.fromisoformat(str(refs["last_day_by_plant"][plant]))
    n = int((refs.get("persisted_by_plant") or {}).get(plant, refs["persisted_plant_days"]))
    return last - dt.timedelta(days=max(n, 1) - 1)


def labelled_days(
    instance: dg.DagsterInstance, plant: str, first: dt.date, last: dt.date
) -> dict[dt.date, tuple[int, int]]:
    """``plant``'s production days in ``first..last`` whose labels are in -> (labelled units,
    defective units), from the latest ``model_performance`` materialisation of each plant-day (it
    is computed once a day's labels are in, the rule the training window uses too). Read from the
    event log, so the daemon's sensor never opens the warehouse a run may be writing."""
    keys = [key_for(plant, first + dt.timedelta(days=i)) for i in range((last - first).days + 1)]
    seen: dict[str, tuple[int, int]] = {}
    cursor = None
    while True:
        res = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=PERFORMANCE_ASSET, asset_partitions=keys),
            limit=200,
            cursor=cursor,
        )
        for r in res.records:  # newest first: the first one per partition is its latest
            key = r.partition_key
            if key is None or key in seen or r.asset_materialization is None:
                continue
            by_key = _meta(r.asset_materialization, LABELLED_BY_PARTITION) or {}
            if key in by_key:
                seen[key] = (int(by_key[key][0]), int(by_key[key][1]))
        if not res.has_more:
            break
        cursor = res.cursor
    return {split_key(k)[1]: v for k, v in seen.items() if v[0] > 0}


def post_shift_labels(
    days: dict[dt.date, tuple[int, int]], since: dt.date, cfg: ModelConfig
) -> dict[str, Any]:
    """What a retrain now would train on from the shift on: the labelled units (and defective
    ones) produced since ``since``, and about how many of them its train split would hold (the
    window's last ``window_days`` labelled days: the non-holdout days, less the validation share;
    ``ml.dataset``)."""
    last = max(days) if days else None
    window = sorted(
        (d for d in days if last and d > last - dt.timedelta(days=cfg.training.window_days)),
        reverse=True,
    )
    post = [d for d in days if d >= since]
    train = [d for r, d in enumerate(window) if d >= since and not holdout_day(r, cfg)]
    keep = 1 - validation_share(cfg)
    return {
        "labelled_units": sum(days[d][0] for d in post),
        "defects": sum(days[d][1] for d in post),
        "train_units": round(keep * sum(days[d][0] for d in train)),
        "train_defects": round(keep * sum(days[d][1] for d in train)),
        "train_days": sorted(str(d) for d in train),
        "last_labelled_day": str(last) if last else None,
    }


def _restore_waits(history: list[Any]) -> dict[str, dict[str, Any]]:
    """The label waits a lost cursor held, from the audit log: a ``waiting for labels`` record
    opens a plant's wait, a decision naming it in ``waits_ended`` closes it."""
    waits: dict[str, dict[str, Any]] = {}
    for r in history:
        for p in r.refs.get("waits_ended", []):
            waits.pop(p, None)
        lw = r.refs.get("label_wait")
        if r.outcome == "info" and lw and lw.get("state") == "waiting":
            refs = {k: v for k, v in r.refs.items() if k != "label_wait"}
            waits[lw["plant"]] = {"since": lw["since"], "refs": refs, "records": lw["records"]}
    return waits


def _for_plant(refs: dict[str, Any], plant: str) -> dict[str, Any]:
    """``refs`` of a failing check record restricted to one of its plants."""
    return {
        **refs,
        "plants": [plant],
        "last_day_by_plant": {plant: refs["last_day_by_plant"][plant]},
        "persisted_by_plant": {
            plant: (refs.get("persisted_by_plant") or {}).get(plant, refs["persisted_plant_days"])
        },
    }


def _wait_for_labels(
    instance: dg.DagsterInstance,
    paths: Any,
    loop: Any,
    plants: dict[str, Any],
    candidates: list[dict[str, Any]],
    waits: dict[str, dict[str, Any]],
    champion: Any,
    note: Any,
) -> list[dict[str, Any]]:
    """Label latency (issue 13, item 5): the failing records of this tick join their plant's wait
    (``waits``, updated in place: plant -> the shift's first day, the newest record's refs and the
    records it holds); returns the refs of the plants whose wait is over: a retrain's train split
    would hold enough labelled units and defects produced since the shift's first day
    (``loop.min_post_shift_*``), or ``loop.max_label_wait_plant_days`` passed. A plant that keeps waiting is audited once per new
    record (``info``, "waiting for labels"); a wait the champion has changed under is stale."""
    fresh: set[str] = set()
    for c in candidates:
        for p in c["last_day_by_plant"]:
            refs, since = _for_plant(c, p), shift_start(c, p)
            w = waits.get(p)
            if w is None:
                waits[p] = {"since": str(since), "refs": refs, "records": [c["check_record_id"]]}
            else:
                w["since"] = min(w["since"], str(since))
                last = max(
                    str(w["refs"]["last_day_by_plant"][p]), str(refs["last_day_by_plant"][p])
                )
                w["refs"] = {**refs, "last_day_by_plant": {p: last}}
                w["records"] = sorted({*w.get("records", []), c["check_record_id"]})
            fresh.add(p)
    need_units, need_defects = loop.min_post_shift_labelled_units, loop.min_post_shift_defects
    cfg = load_model_config(paths)
    ready = []
    for p in sorted(waits):
        w = waits[p]
        since = dt.date.fromisoformat(w["since"])
        versions = w["refs"].get("model_versions") or []
        champ = champion()
        if champ is not None and versions and champ.version not in versions:
            note(
                "info",
                f"stale: {p}'s wait for labels since {since} began under version(s) {versions}; "
                f"version {champ.version} is the champion now",
                {**w["refs"], "waits_ended": [p]},
            )
            del waits[p]
            continue
        latency = plants[p].label_latency_days if p in plants else 0
        days = (
            labelled_days(
                instance,
                p,
                since - dt.timedelta(days=cfg.training.window_days),
                since + dt.timedelta(days=loop.max_label_wait_plant_days + latency + 1),
            )
            if need_units or need_defects
            else {}
        )
        got = post_shift_labels(days, since, cfg)
        last_day = dt.date.fromisoformat(str(w["refs"]["last_day_by_plant"][p]))
        last_labelled = max(days) if days else None
        now = (
            max(last_day, last_labelled + dt.timedelta(days=latency)) if last_labelled else last_day
        )
        labels = {
            "plant": p,
            "since": str(since),
            **got,
            "needs": [need_units, need_defects],
            "label_latency_days": latency,
            "records": w.get("records", []),
        }
        enough = got["train_units"] >= need_units and got["train_defects"] >= need_defects
        expired = (now - since).days >= loop.max_label_wait_plant_days
        if enough or expired:
            labels["state"] = "enough" if enough else "expired"
            ready.append({**w["refs"], "labels_since_shift": labels, "waits_ended": [p]})
            del waits[p]
        elif p in fresh:
            note(
                "info",
                f"waiting for labels: {p} has {got['labelled_units']} labelled unit(s) produced "
                f"since the shift began on {since}, {got['train_units']} of them "
                f"({got['train_defects']} defective) in a retrain's train split (about); it needs "
                f"{need_units} and {need_defects} (labels arrive {latency} plant-day(s) after "
                f"production; at most {loop.max_label_wait_plant_days} plant-days after {since})",
                {**w["refs"], "label_wait": {**labels, "state": "waiting"}},
            )
    return ready


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
    raw = json.loads(context.cursor) if context.cursor else {}
    waits = raw["waiting"] if "waiting" in raw else _restore_waits(history())
    if candidates or waits:
        candidates = _wait_for_labels(
            instance, paths, loop, load_plants(paths), candidates, waits, champion, note
        )
    cursor = json.dumps({**new_state, "waiting": waits}, sort_keys=True)
    if not candidates:
        reason = (
            f"waiting for labels after the shift at {sorted(waits)}"
            if waits
            else "no new failing drift/performance check"
        )
        return dg.SensorResult(cursor=cursor, skip_reason=dg.SkipReason(reason))
    ended = sorted({p for c in candidates for p in c.pop("waits_ended", [])})
    refs = {**candidates[0], "also": candidates[1:], "waits_ended": ended}
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
    waited = "".join(
        f"; {lb['plant']}: {lb['labelled_units']} labelled unit(s) since the shift began on "
        f"{lb['since']}, about {lb['train_units']} ({lb['train_defects']} defective) in the "
        "train split" + (" (enough)" if lb["state"] == "enough" else " (label wait expired)")
        for c in candidates
        if (lb := c.get("labels_since_shift")) and lb["plant"] in plants
    )
    note(
        "ok",
        f"{refs['check']} failed (ERROR) at {plants} for {refs['persisted_plant_days']} "
        f"plant-day(s){waited}",
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
                "qp/check_run_id": str(refs["check_run_id"]),
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
