"""``retrain_on_drift`` decides on every failed check record, in plant time (issue 13).

The check records are real Dagster records in a temporary instance (reported through the
instance's event log, the planned -> evaluated transition through the run's own events), and the
sensor is ticked by Dagster (``evaluate_tick`` in the code location's context, requests validated
against its targets), as the daemon ticks it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType

from quality_platform.audit import AuditLog, audit_db_path
from quality_platform.definitions import build_definitions
from quality_platform.defs.ml.jobs import TRAIN_JOB
from quality_platform.defs.ml.sensors import RETRAIN_SENSOR
from quality_platform.defs.monitoring.jobs import MONITOR_JOB
from quality_platform.location import tick
from quality_platform.settings import Paths

DRIFT = dg.AssetCheckKey(dg.AssetKey("drift_metrics"), "input_drift")
D = dt.date(2026, 4, 9)


def _evaluation(plant: str, day: dt.date, *, passed: bool = False) -> dg.AssetCheckEvaluation:
    meta: dict[str, Any] = {"plants": [] if passed else [plant]}
    if not passed:
        meta |= {
            "persisted_plant_days": 1,
            "first_day": str(day),
            "last_day": str(day),
            "last_day_by_plant": dg.MetadataValue.json({plant: str(day)}),
            "model_versions": [],
        }
    return dg.AssetCheckEvaluation(
        asset_key=DRIFT.asset_key,
        check_name=DRIFT.name,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=meta,
    )


class Loop:
    """The retrain sensor of one installation, ticked with its cursor carried over."""

    def __init__(self, paths: Paths, instance: dg.DagsterInstance) -> None:
        self.defs = build_definitions(paths)
        self.instance = instance
        self.audit = AuditLog(audit_db_path(paths))
        self.cursor: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        res = tick(self.defs, self.instance, RETRAIN_SENSOR, self.cursor)
        self.cursor = res.cursor
        return [r for r in res.run_requests or [] if r.job_name == TRAIN_JOB]

    def decisions(self) -> list[tuple[str, str]]:
        return [(r.outcome, r.reason or "") for r in self.audit.records(action="retrain")]


@pytest.fixture
def loop(qp_env: Paths) -> Any:
    with dg.instance_for_test() as instance:
        yield Loop(qp_env, instance)


def test_a_newer_record_at_another_plant_never_hides_a_failure(loop: Loop) -> None:
    loop.tick()
    loop.instance.report_runless_asset_event(_evaluation("plant_a", D))
    loop.instance.report_runless_asset_event(_evaluation("plant_c", D, passed=True))
    requests = loop.tick()
    assert len(requests) == 1 and requests[0].tags["qp/check"] == DRIFT.to_user_string()
    assert [o for o, _ in loop.decisions()] == ["ok"]
    assert loop.tick() == [] and len(loop.decisions()) == 1, "each record is decided once"


def test_a_record_still_running_is_decided_once_it_completes(loop: Loop) -> None:
    job = loop.defs.resolve_job_def(MONITOR_JOB)
    # creating the run plans its checks (Dagster records them as PLANNED)
    run = loop.instance.create_run_for_job(job_def=job, run_id=str(uuid.uuid4()))
    planned = loop.instance.get_latest_asset_check_evaluation_record(DRIFT)
    assert planned is not None and planned.status.value == "PLANNED"
    assert loop.tick() == [] and loop.decisions() == []  # planned, its run not finished
    loop.instance.report_dagster_event(
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION.value,
            job_name=job.name,
            event_specific_data=_evaluation("plant_a", D),
        ),
        run.run_id,
    )
    assert len(loop.tick()) == 1, "the record the first tick saw planned is not lost"
    state = json.loads(loop.cursor or "{}")[DRIFT.to_user_string()]
    assert state["done"] == [] and state["after"] > 0


def test_cooldown_counts_plant_days_per_plant(loop: Loop) -> None:
    loop.instance.report_runless_asset_event(_evaluation("plant_a", D))
    assert len(loop.tick()) == 1
    # the same plant one plant-day later: held back, whatever the wall clock says
    loop.instance.report_runless_asset_event(_evaluation("plant_a", D + dt.timedelta(days=1)))
    assert loop.tick() == []
    outcome, reason = loop.decisions()[-1]
    assert outcome == "denied" and "1 plant-day(s) later, cooldown 7 plant-days" in reason
    # another plant is never held back by plant_a's retrain
    loop.instance.report_runless_asset_event(_evaluation("plant_b", D + dt.timedelta(days=1)))
    assert len(loop.tick()) == 1
    # plant_a again once the cooldown's plant-days have passed
    loop.instance.report_runless_asset_event(_evaluation("plant_a", D + dt.timedelta(days=7)))
    assert len(loop.tick()) == 1
    assert [o for o, _ in loop.decisions()] == ["ok", "denied", "ok", "ok"]


def test_a_lost_cursor_decides_nothing_twice(loop: Loop) -> None:
    loop.instance.report_runless_asset_event(_evaluation("plant_a", D))
    assert len(loop.tick()) == 1
    loop.cursor = None  # a new daemon after the demo: the sensor starts without a cursor
    assert loop.tick() == [] and len(loop.decisions()) == 1
