"""Run the platform's jobs in-process against the Dagster instance (demo, backfills, CLI).

Runs are created in the instance ($DAGSTER_HOME) as runs of the code location workspace.yaml
declares (its origin, :mod:`quality_platform.location`) and executed in this process by Dagster's
own run execution (``execute_run``), as ``dagster job execute`` does: the UI lists them under the
location and each job's Runs tab with their checks and lineage, and run-status sensors see them.
Sensors are never called: :func:`run_day` ticks them with ``evaluate_tick`` in the location's
context and executes what they request. A plant's days are one single-run backfill per layer:
landing, then standardisation + KPIs.

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

from quality_platform.defs.ingest.jobs import STANDARD_JOB, land_job_name
from quality_platform.defs.ml.jobs import TRAIN_JOB
from quality_platform.partitions import range_tags


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


def _failed_checks(result: dg.ExecutionResult) -> list[str]:
    out = []
    for ev in result.get_asset_check_evaluations():
        if not ev.passed:
            out.append(f"{ev.asset_key.to_user_string()}:{ev.check_name} ({ev.severity.value})")
    return out


def _outcome(
    job_name: str, plant: str, first: dt.date, last: dt.date, result: dg.ExecutionResult, t0: float
) -> RunOutcome:
    """The outcome of a finished run started at ``perf_counter()`` time ``t0``."""
    import time

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


def _location_job(defs: dg.Definitions, job_name: str) -> Any:
    """``job_name`` of ``defs`` as Dagster's in-memory job that also knows its repository (so an
    asset reads ``context.repository_def``, as in a run the daemon launches from the location)."""
    from dagster._core.definitions.job_base import InMemoryJob

    repository = defs.get_repository_def()

    class LocationJob(InMemoryJob):
        def get_repository_definition(self) -> dg.RepositoryDefinition:
            return repository

        def get_subset(self, **kwargs: Any) -> InMemoryJob:
            return LocationJob(super().get_subset(**kwargs).get_definition())

    return LocationJob(repository.get_job(job_name))


def _execute(
    defs: dg.Definitions,
    job_name: str,
    instance: dg.DagsterInstance,
    tags: Mapping[str, str],
    run_config: Mapping[str, Any] | None = None,
) -> dg.ExecutionResult:
    """Execute the job ``job_name`` of ``defs`` in this process as one run of the code location (the run carries the
    location's origin, so the UI lists it under the location and its job, and run-status sensors
    see it) that names this process as its executor, after failing the runs whose process died
    and freeing their slots (every pool). Raises ``SystemExit(143)`` when the run was cancelled
    by SIGTERM / SIGINT while waiting for a slot."""
    from dagster._core.execution.api import execute_run

    from quality_platform.location import job_origin
    from quality_platform.runs import SlotWatch, executor_tags, reap_dead_runs

    location_job = _location_job(defs, job_name)
    job = location_job.get_definition()
    if job.executor_def.name != dg.in_process_executor.name:
        raise ValueError(
            f"job {job.name} uses the {job.executor_def.name} executor: jobs qp executes run in its "
            "own process (executor_def=dg.in_process_executor)"
        )
    reap_dead_runs(instance)
    run_id = str(uuid.uuid4())
    run = instance.create_run_for_job(
        job_def=job,
        run_id=run_id,
        run_config=run_config,
        tags={**tags, **executor_tags()},
        remote_job_origin=job_origin(job.name),
    )
    watch = SlotWatch(instance, run_id)
    try:
        with watch:
            result = execute_run(location_job, run, instance, raise_on_error=False)
    except KeyboardInterrupt:
        if not watch.terminated:
            raise
    if watch.terminated:
        logging.getLogger(__name__).warning(
            "run %s was cancelled while waiting for a pool slot: exiting", run_id
        )
        raise SystemExit(128 + signal.SIGTERM)
    return result


def run_job(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    tags: dict[str, str] | None = None,
) -> dg.ExecutionResult:
    """Execute one unpartitioned job of the location as one run; Dagster's result (events, metadata)."""
    return _execute(defs, job_name, instance, tags or {})


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

    t0 = time.perf_counter()
    result = _execute(defs, job_name, instance, {**range_tags(plant, first, last), **(tags or {})})
    return _outcome(job_name, plant, first, last, result, t0)


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

    run_config = (
        {"ops": {"training_dataset": {"config": {"end_date": end_date}}}} if end_date else None
    )
    t0 = time.perf_counter()
    result = _execute(defs, TRAIN_JOB, instance, tags or {}, run_config)
    today = dt.date.today()
    return _outcome(TRAIN_JOB, "*", today, today, result, t0)


@dataclass
class DayOutcome:
    """What the loop did for one plant-day (what the daemon does with schedules and sensors)."""

    plant: str
    day: dt.date
    runs: list[RunOutcome]
    retrain: dict[str, object] | None
    #: the sensors' cursors after the day (pass them to the next day)
    cursors: dict[str, str | None]


def _execute_request(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    req: dg.RunRequest,
    sensor: str | None = None,
) -> RunOutcome:
    import time

    from quality_platform.partitions import RANGE_END, RANGE_START, split_key

    t0 = time.perf_counter()
    # what the daemon records on a sensor's run (the UI shows "launched by sensor ...")
    origin = {"dagster/sensor_name": sensor} if sensor else {}
    if sensor and req.run_key:
        origin["dagster/run_key"] = req.run_key
    result = _execute(defs, req.job_name or "", instance, {**req.tags, **origin})
    tags = req.tags
    plant, first = split_key(tags[RANGE_START]) if RANGE_START in tags else ("*", dt.date.today())
    last = split_key(tags[RANGE_END])[1] if RANGE_END in tags else first
    return _outcome(req.job_name or "", plant, first, last, result, t0)


def _requested(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    sensor: str,
    cursors: dict[str, str | None],
) -> list[tuple[dg.RunRequest, RunOutcome]]:
    """One tick of ``sensor`` evaluated by Dagster (``evaluate_tick``, in the code location's
    context), then every run it requested, executed; ``cursors[sensor]`` moves on."""
    from quality_platform.location import tick

    res = tick(defs, instance, sensor, cursors.get(sensor))
    cursors[sensor] = res.cursor
    targets = [t.job_name for t in defs.resolve_sensor_def(sensor).targets]
    requests = [  # a sensor with one target may leave the job out of its requests
        r if r.job_name or len(targets) != 1 else r.with_replaced_attrs(job_name=targets[0])
        for r in res.run_requests or []
    ]
    return [(req, _execute_request(defs, instance, req, sensor)) for req in requests]


def run_day(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plant: str,
    day: dt.date,
    cursors: dict[str, str | None] | None = None,
    canary: bool = True,
) -> DayOutcome:
    """One plant-day through the closed loop, in-process: land + standardise; then one tick of
    ``monitor_after_standardize`` (it sees the standardize run's success: score + monitor the
    day, performance of the days whose labels arrived), one of ``canary_after_performance`` (it
    sees the performance run: canary evaluation while a challenger is in canary) and one of
    ``retrain_on_drift``; the runs the ticks request are executed. The sensors are evaluated by
    Dagster (``evaluate_tick``); ``cursors`` carries their cursors from day to day (a run-status
    sensor's first tick starts at "now", so a sensor without a cursor is ticked once before the
    day's runs). ``canary=False`` leaves the canary sensor out."""
    from quality_platform.defs.ml.sensors import CANARY_SENSOR, RETRAIN_SENSOR
    from quality_platform.defs.monitoring.sensors import MONITOR_SENSOR

    cursors = dict(cursors or {})
    followers = [MONITOR_SENSOR, *([CANARY_SENSOR] if canary else [])]
    for name in followers:
        if cursors.get(name) is None:
            _requested(defs, instance, name, cursors)  # starts at "now": requests nothing
    runs = backfill(defs, instance, plant, day, day, tags={"trigger": "daily_loop"})
    for name in followers:
        runs += [o for _, o in _requested(defs, instance, name, cursors)]
    retrain = None
    for req, o in _requested(defs, instance, RETRAIN_SENSOR, cursors):
        runs.append(o)
        if req.job_name == TRAIN_JOB:
            retrain = {"run_id": o.run_id, "success": o.success, "tags": dict(req.tags)}
    return DayOutcome(plant, day, runs, retrain, cursors)
