"""The monitoring domain's sensors: after a standardize run, score and monitor its plant-days (and
measure performance for the days whose labels it brought); every failed run is an alert, and so is
a sensor or schedule whose evaluation fails (and its recovery)."""

import datetime as dt
import json
from typing import Any

import dagster as dg

from quality_platform.alerts import Alert
from quality_platform.config import PlantConfig
from quality_platform.defs.ingest.jobs import STANDARD_JOB
from quality_platform.defs.monitoring.jobs import MONITOR_JOB, PERFORMANCE_JOB
from quality_platform.partitions import RANGE_END, RANGE_START, range_tags, split_key
from quality_platform.resources import AlertChannelResource, PlatformResource

MONITOR_SENSOR = "monitor_after_standardize"


def monitor_requests(
    run: Any, plants: dict[str, PlantConfig], start: dt.date | None = None
) -> list[dg.RunRequest]:
    """After a standardize run over a plant's days: score + monitor them, and evaluate performance
    for the days whose labels those days brought (day - label latency), as far as those days are
    partitions (on or after ``start``, the first partition day)."""
    first_s, last_s = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
    if not first_s or not last_s:
        return []
    plant, first = split_key(first_s)
    _, last = split_key(last_s)
    lat = dt.timedelta(days=plants[plant].label_latency_days if plant in plants else 0)
    requests = [
        dg.RunRequest(
            run_key=f"monitor-{run.run_id}",
            job_name=MONITOR_JOB,
            tags={**range_tags(plant, first, last), "trigger": "monitor_after_standardize"},
        )
    ]
    labelled_from, labelled_to = first - lat, last - lat
    if start is not None:
        labelled_from = max(labelled_from, start)
    if labelled_from <= labelled_to:
        requests.append(
            dg.RunRequest(
                run_key=f"performance-{run.run_id}",
                job_name=PERFORMANCE_JOB,
                tags={
                    **range_tags(plant, labelled_from, labelled_to),
                    "trigger": "monitor_after_standardize",
                },
            )
        )
    return requests


def build_monitor_sensor(
    plants: dict[str, PlantConfig],
    jobs: list[Any],
    interval_seconds: int = 30,
    start: dt.date | None = None,
) -> dg.SensorDefinition:
    """``jobs``: the job definitions; the sensor watches standardize_job and requests the monitor and
    performance jobs (targets Dagster validates when it evaluates a tick). ``start``: the first
    partition day (no performance run for labels of days before it)."""
    by_name = {j.name: j for j in jobs}

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name=MONITOR_SENSOR,
        monitored_jobs=[by_name[STANDARD_JOB]],
        request_jobs=[by_name[MONITOR_JOB], by_name[PERFORMANCE_JOB]],
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="After a standardize run: score and monitor its plant-days; model performance "
        "for the days whose labels it brought.",
    )
    def _sensor(context: dg.RunStatusSensorContext) -> Any:
        return monitor_requests(context.dagster_run, plants, start)

    return _sensor


def build_run_failure_alert(interval_seconds: int = 30) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="alert_on_run_failure",
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends every failed run (job, run id, error) to the alert channel.",
    )
    def _sensor(
        context: dg.RunFailureSensorContext,
        platform: PlatformResource,
        alerts: AlertChannelResource,
    ) -> None:
        run = context.dagster_run
        message = context.failure_event.message or "run failed"
        alerts.send(
            Alert(
                kind="run_failure",
                severity="error",
                summary=f"run of {run.job_name} failed: {message}"[:500],
                details={"run_id": run.run_id, "job": run.job_name, "tags": dict(run.tags)},
            ),
            platform.paths(),
        )

    return _sensor


SENSOR_ERROR_ALERT = "alert_on_sensor_error"


def build_sensor_error_alert(interval_seconds: int = 30) -> dg.SensorDefinition:
    """``alert_on_sensor_error``: a sensor or schedule of this code location whose tick fails (an
    exception in its evaluation, a run request Dagster refuses) is an error alert, like a failed
    run; its first good tick afterwards is an info alert saying how many ticks failed. One alert
    per outage, not one per failed tick (a sensor failing every 30 s would otherwise flood the
    channel). The cursor holds, per instigator, the last tick looked at and whether it is failing."""
    from dagster._core.scheduler.instigation import TickStatus

    from quality_platform.location import workspace_entry

    @dg.sensor(
        name=SENSOR_ERROR_ALERT,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends a sensor or schedule whose tick fails (and its recovery) to the alert "
        "channel, once per outage.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        platform: PlatformResource,
        alerts: AlertChannelResource,
    ) -> dg.SensorResult:
        location = workspace_entry()["location_name"]
        state = json.loads(context.cursor) if context.cursor else {}
        sent = 0
        for inst in context.instance.all_instigator_state():
            origin = inst.origin.repository_origin.code_location_origin
            if inst.name == SENSOR_ERROR_ALERT or origin.location_name != location:
                continue
            seen = state.get(inst.selector_id, {"after": 0.0, "failing": 0, "name": inst.name})
            ticks = context.instance.get_ticks(
                inst.instigator_origin_id, inst.selector_id, after=seen["after"], limit=200
            )
            what = f"{inst.instigator_type.value.lower()} {inst.name}"
            for t in sorted(ticks, key=lambda t: t.timestamp):
                if t.status == TickStatus.STARTED:
                    break  # still running: looked at again next time
                seen["after"] = t.timestamp
                if t.status == TickStatus.FAILURE:
                    seen["failing"] += 1
                    if seen["failing"] > 1:
                        continue  # the same outage
                    error = (t.error.message if t.error else "tick failed").strip()
                    severity, summary = "error", f"{what} failed: {error}"
                elif seen["failing"]:
                    severity = "info"
                    summary = f"{what} recovered after {seen['failing']} failed tick(s)"
                    seen["failing"] = 0
                else:
                    continue
                alerts.send(
                    Alert(
                        kind="sensor_error",
                        severity=severity,
                        summary=summary[:500],
                        details={"instigator": inst.name, "tick_at": t.timestamp},
                    ),
                    platform.paths(),
                )
                sent += 1
            state[inst.selector_id] = seen
        return dg.SensorResult(
            cursor=json.dumps(state, sort_keys=True),
            skip_reason=None
            if sent
            else dg.SkipReason("no sensor or schedule failed or recovered"),
        )

    return _sensor
