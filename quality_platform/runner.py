"""Run the platform's jobs in-process against the Dagster instance (demo, backfills, CLI).

Runs are recorded in the instance ($DAGSTER_HOME), so the UI shows them with their checks and
lineage exactly as if the UI had launched them. A plant's days are one single-run backfill per
layer: landing, then standardisation + KPIs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

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


def run_range(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str, plant: str,
              first: dt.date, last: dt.date, tags: dict[str, str] | None = None) -> RunOutcome:
    """Execute one job over a plant's days as a single run."""
    import time

    job = defs.resolve_job_def(job_name)
    t0 = time.perf_counter()
    result = job.execute_in_process(instance=instance, raise_on_error=False,
                                    tags={**range_tags(plant, first, last), **(tags or {})})
    return RunOutcome(job_name, plant, first, last, result.run_id, result.success,
                      _failed_checks(result), time.perf_counter() - t0)


def backfill(defs: dg.Definitions, instance: dg.DagsterInstance, plant: str, first: dt.date,
             last: dt.date, tags: dict[str, str] | None = None) -> list[RunOutcome]:
    """Land, then standardise + compute KPIs, for a plant's days ``first..last``."""
    land = run_range(defs, instance, land_job_name(plant), plant, first, last, tags)
    if not land.success:
        return [land]
    return [land, run_range(defs, instance, STANDARD_JOB, plant, first, last, tags)]


def train(defs: dg.Definitions, instance: dg.DagsterInstance, tags: dict[str, str] | None = None,
          end_date: str | None = None) -> RunOutcome:
    """Snapshot -> train -> gate (train_job) as one run."""
    import time

    job = defs.resolve_job_def(TRAIN_JOB)
    run_config = {"ops": {"training_dataset": {"config": {"end_date": end_date}}}} if end_date else None
    t0 = time.perf_counter()
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags=tags or {}, run_config=run_config)
    today = dt.date.today()
    return RunOutcome(TRAIN_JOB, "*", today, today, result.run_id, result.success, _failed_checks(result),
                      time.perf_counter() - t0)
