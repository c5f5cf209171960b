"""Run the platform's jobs in-process against the Dagster instance (demo, backfills, CLI).

Runs are recorded in the instance ($DAGSTER_HOME), so the UI shows them with their checks and
lineage exactly as if the UI had launched them. A plant's days are one single-run backfill per
layer: landing, then standardisation + KPIs.

Every run records the process executing it; before a run starts, runs whose process died (killed,
crashed) are failed and their pool slots freed, and while a run waits for a slot it says for whom
and obeys SIGTERM (see :mod:`quality_platform.runs`).
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from quality_platform.jobs import STANDARD_JOB, TRAIN_JOB, land_job_name
from quality_platform.sensors import range_tags


@dataclass
class RunOutcome:
    """One finished run."""

    job: str
    plant: str
    first: dt.date
    last: dt.date
    run_id: str
    success: bool
    failed_checks: list[str]
    seconds: float


def _failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    out = []
    for ev in result.get_asset_check_evaluations():
        if not ev.passed:
            out.append(f"{ev.asset_key.to_user_string()}:{ev.check_name} ({ev.severity.value})")
    return out


def _execute(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    tags: Mapping[str, str],
    run_config: Mapping[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Execute ``job`` in this process as one run that names this process as its executor, after
    failing the runs whose process died and freeing their slots (every pool). Raises
    ``SystemExit(143)`` when the run was cancelled by SIGTERM / SIGINT while waiting for a slot."""
    from quality_platform.runs import SlotWatch, executor_tags, reap_dead_runs

    reap_dead_runs(instance)
    run_id = str(uuid.uuid4())
    watch = SlotWatch(instance, run_id)
    try:
        with watch:
            result = job.execute_in_process(
                instance=instance,
                raise_on_error=False,
                run_id=run_id,
                tags={**tags, **executor_tags()},
                run_config=run_config,
            )
    except KeyboardInterrupt:
        if not watch.terminated:
            raise
    if watch.terminated:
        logging.getLogger(__name__).warning(
            "run %s was cancelled while waiting for a pool slot: exiting", run_id
        )
        raise SystemExit(128 + signal.SIGTERM)
    return result


def run_range(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    plant: str,
    first: dt.date,
    last: dt.date,
    tags: dict[str, str] | None = None,
) -> RunOutcome:
    """Execute one job over a plant's days as a single run."""
    import time

    job = defs.resolve_job_def(job_name)
    t0 = time.perf_counter()
    result = _execute(job, instance, {**range_tags(plant, first, last), **(tags or {})})
    return RunOutcome(
        job_name,
        plant,
        first,
        last,
        result.run_id,
        result.success,
        _failed_checks(result),
        time.perf_counter() - t0,
    )


def backfill(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plant: str,
    first: dt.date,
    last: dt.date,
    tags: dict[str, str] | None = None,
) -> list[RunOutcome]:
    """Land, then standardise + compute KPIs, for a plant's days ``first..last``."""
    land = run_range(defs, instance, land_job_name(plant), plant, first, last, tags)
    if not land.success:
        return [land]
    return [land, run_range(defs, instance, STANDARD_JOB, plant, first, last, tags)]


def train(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    tags: dict[str, str] | None = None,
    end_date: str | None = None,
) -> RunOutcome:
    """Snapshot -> train -> gate (train_job) as one run."""
    import time

    job = defs.resolve_job_def(TRAIN_JOB)
    run_config = (
        {"ops": {"training_dataset": {"config": {"end_date": end_date}}}} if end_date else None
    )
    t0 = time.perf_counter()
    result = _execute(job, instance, tags or {}, run_config)
    today = dt.date.today()
    return RunOutcome(
        TRAIN_JOB,
        "*",
        today,
        today,
        result.run_id,
        result.success,
        _failed_checks(result),
        time.perf_counter() - t0,
    )


@dataclass
class DayOutcome:
    """What the loop did for one plant-day (what the daemon does with schedules and sensors)."""

    plant: str
    day: dt.date
    runs: list[RunOutcome]
    retrain: dict[str, object] | None
    sensor_cursor: str | None


def _execute_request(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    req: dg.RunRequest,
    sensor: str | None = None,
) -> RunOutcome:
    import time

    from quality_platform.partitions import split_key
    from quality_platform.sensors import RANGE_END, RANGE_START

    job = defs.resolve_job_def(req.job_name or "")
    t0 = time.perf_counter()
    # what the daemon records on a sensor's run (the UI shows "launched by sensor ...")
    origin = {"dagster/sensor_name": sensor} if sensor else {}
    result = _execute(job, instance, {**req.tags, **origin})
    tags = dict(req.tags)
    plant, first = split_key(tags[RANGE_START]) if RANGE_START in tags else ("*", dt.date.today())
    last = split_key(tags[RANGE_END])[1] if RANGE_END in tags else first
    return RunOutcome(
        req.job_name or "",
        plant,
        first,
        last,
        result.run_id,
        result.success,
        _failed_checks(result),
        time.perf_counter() - t0,
    )


def run_day(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plant: str,
    day: dt.date,
    sensor_cursor: str | None,
    canary: bool = True,
) -> DayOutcome:
    """One plant-day through the closed loop, in-process: land + standardise, then exactly the runs
    the ``monitor_after_standardize`` sensor requests (score + monitor the day; performance of the
    days whose labels arrived), the canary evaluation, and one tick of ``retrain_on_drift`` whose
    request (if any) is executed."""
    from quality_platform.config import load_plants
    from quality_platform.jobs import CANARY_JOB
    from quality_platform.loop import RETRAIN_SENSOR, monitor_requests
    from quality_platform.resources import PlatformResource

    runs = backfill(defs, instance, plant, day, day, tags={"trigger": "daily_loop"})
    std = runs[-1]
    if std.success and std.job == STANDARD_JOB:
        for req in monitor_requests(instance.get_run_by_id(std.run_id), load_plants()):
            runs.append(_execute_request(defs, instance, req, "monitor_after_standardize"))
    if canary:
        runs.append(
            _execute_request(
                defs, instance, dg.RunRequest(job_name=CANARY_JOB, tags={"trigger": "daily_loop"})
            )
        )
    sensor = defs.resolve_sensor_def(RETRAIN_SENSOR)
    ctx = dg.build_sensor_context(
        instance=instance,
        cursor=sensor_cursor,
        definitions=defs,
        resources={"platform": PlatformResource()},
    )
    res = sensor.evaluate_tick(
        ctx
    )  # as the daemon does: requests resolved and validated against targets
    retrain = None
    for req in res.run_requests or []:
        o = _execute_request(defs, instance, req, RETRAIN_SENSOR)
        runs.append(o)
        if req.job_name == TRAIN_JOB:
            retrain = {"run_id": o.run_id, "success": o.success, "tags": dict(req.tags)}
    return DayOutcome(plant, day, runs, retrain, res.cursor)
