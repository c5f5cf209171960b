"""The monitoring domain's sensors: after a standardize run, score and monitor its plant-days (and measure performance for the days whose labels it brought); every failed run is an alert."""

import datetime as dt
from typing import Any

import dagster as dg

from quality_platform.alerts import Alert
from quality_platform.config import PlantConfig
from quality_platform.defs.ingest.jobs import STANDARD_JOB
from quality_platform.defs.monitoring.jobs import MONITOR_JOB, PERFORMANCE_JOB
from quality_platform.partitions import RANGE_END, RANGE_START, range_tags, split_key
from quality_platform.resources import AlertChannelResource, PlatformResource

MONITOR_SENSOR = "monitor_after_standardize"


def monitor_requests(run: Any, plants: dict[str, PlantConfig]) -> list[dg.RunRequest]:
    """After a standardize run over a plant's days: score + monitor them, and evaluate performance
    for the days whose labels those days brought (day - label latency)."""
    start, end = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
    if not start or not end:
        return []
    plant, first = split_key(start)
    _, last = split_key(end)
    lat = dt.timedelta(days=plants[plant].label_latency_days if plant in plants else 0)
    return [
        dg.RunRequest(
            run_key=f"monitor-{run.run_id}",
            job_name=MONITOR_JOB,
            tags={**range_tags(plant, first, last), "trigger": "monitor_after_standardize"},
        ),
        dg.RunRequest(
            run_key=f"performance-{run.run_id}",
            job_name=PERFORMANCE_JOB,
            tags={
                **range_tags(plant, first - lat, last - lat),
                "trigger": "monitor_after_standardize",
            },
        ),
    ]


def build_monitor_sensor(plants: dict[str, PlantConfig], jobs: list[Any]) -> dg.SensorDefinition:
    """``jobs``: the job definitions; the sensor watches standardize_job and requests the monitor and
    performance jobs (targets Dagster validates when it evaluates a tick)."""
    by_name = {j.name: j for j in jobs}

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name=MONITOR_SENSOR,
        monitored_jobs=[by_name[STANDARD_JOB]],
        request_jobs=[by_name[MONITOR_JOB], by_name[PERFORMANCE_JOB]],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="After a standardize run: score and monitor its plant-days; model performance "
        "for the days whose labels it brought.",
    )
    def _sensor(context: dg.RunStatusSensorContext) -> Any:
        return monitor_requests(context.dagster_run, plants)

    return _sensor


def build_run_failure_alert() -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="alert_on_run_failure",
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
