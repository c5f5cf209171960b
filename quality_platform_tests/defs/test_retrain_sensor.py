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
import yaml
from dagster._core.events import DagsterEvent, DagsterEventType

from quality_platform.audit import AuditLog, audit_db_path
from quality_platform.definitions import build_definitions
from quality_platform.defs.ml.jobs import TRAIN_JOB
from quality_platform.defs.ml.sensors import RETRAIN_SENSOR
from quality_platform.defs.monitoring.assets import LABELLED_BY_PARTITION
from quality_platform.defs.monitoring.jobs import MONITOR_JOB
from quality_platform.location import tick
from quality_platform.partitions import key_for
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


def _loop_settings(paths: Paths, **values: int) -> None:
    """Set fields of ``loop`` in the installation's data/ml/monitoring.yaml."""
    f = paths.config_dir / "ml" / "monitoring.yaml"
    cfg = yaml.safe_load(f.read_text())
    cfg["loop"].update(values)
    f.write_text(yaml.safe_dump(cfg))


NO_LABEL_WAIT = {"min_post_shift_labelled_units": 0, "min_post_shift_defects": 0}


@pytest.fixture
def loop(qp_env: Paths) -> Any:
    """The decision rules other than the label wait (retrain at once on a failing record)."""
    _loop_settings(qp_env, **NO_LABEL_WAIT)
    with dg.instance_for_test() as instance:
        yield Loop(qp_env, instance)


@pytest.fixture
def waiting_loop(qp_env: Paths) -> Any:
    """The committed loop settings: >= 300 labelled units and >= 15 defects after the shift, at
    most 7 plant-days (plant_a's labels arrive 2 plant-days after production)."""
    with dg.instance_for_test() as instance:
        yield Loop(qp_env, instance)


def _labels(loop: Loop, plant: str, day: dt.date, labelled: int, defects: int) -> None:
    """A model_performance materialisation of (plant, day), as performance_job reports it."""
    key = key_for(plant, day)
    loop.instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="model_performance",
            partition=key,
            metadata={LABELLED_BY_PARTITION: dg.MetadataValue.json({key: [labelled, defects]})},
        )
    )


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


def test_a_shift_waits_for_labelled_post_shift_units_and_says_so(waiting_loop: Loop) -> None:
    loop = waiting_loop
    loop.tick()
    _labels(loop, "plant_a", D - dt.timedelta(days=2), 1100, 40)  # before the shift: not counted
    loop.instance.report_runless_asset_event(_evaluation("plant_a", D))
    assert loop.tick() == []
    outcome, reason = loop.decisions()[-1]
    assert outcome == "info" and reason.startswith("waiting for labels: plant_a has 0 labelled")
    assert "needs 300 and 15" in reason and "2 plant-day(s) after production" in reason
    # the drift persists: the next day's record joins the wait (audited once, the same shift)
    nxt = _evaluation("plant_a", D + dt.timedelta(days=1))
    nxt.metadata["persisted_plant_days"] = dg.MetadataValue.int(2)
    loop.instance.report_runless_asset_event(nxt)
    # the shift's first day labelled: the latest labelled day is the holdout, nothing trains on it
    _labels(loop, "plant_a", D, 300, 30)
    assert loop.tick() == [] and len(loop.decisions()) == 2
    assert (
        "has 300 labelled unit(s) produced since the shift began on 2026-04-09, 0 of them"
        in (loop.decisions()[-1][1])
    )
    assert loop.tick() == [] and len(loop.decisions()) == 2, "no new record, no new audit"
    # a lost cursor (a new daemon) keeps the wait: it is rebuilt from the audit log
    loop.cursor = None
    assert loop.tick() == [] and len(loop.decisions()) == 2
    _labels(loop, "plant_a", D + dt.timedelta(days=1), 900, 60)
    assert loop.tick() == [], (
        "D trains (262 of its 300 units, fewer than 300), D + 1 is the holdout"
    )
    _labels(loop, "plant_a", D + dt.timedelta(days=2), 1000, 50)
    requests = loop.tick()
    assert len(requests) == 1
    outcome, reason = loop.decisions()[-1]
    assert outcome == "ok" and (
        "2200 labelled unit(s) since the shift began on 2026-04-09, about 1050 (79 defective) in "
        "the train split" in reason
    )
    ok = loop.audit.records(action="retrain")[-1]
    assert ok.refs["waits_ended"] == ["plant_a"]
    assert ok.refs["labels_since_shift"]["since"] == str(D)
    assert ok.refs["labels_since_shift"]["train_days"] == [str(D), str(D + dt.timedelta(days=1))]
    # the retrain names the newest record of the wait (the check it links to)
    assert requests[0].tags["qp/check_record_id"] == str(ok.refs["check_record_id"])
    assert loop.tick() == [] and len(loop.decisions()) == 3


def test_a_wait_ends_after_max_label_wait_plant_days(waiting_loop: Loop) -> None:
    loop = waiting_loop
    loop.tick()
    loop.instance.report_runless_asset_event(_evaluation("plant_a", D))
    assert loop.tick() == []
    # labels of D + 5 are in on D + 7: 7 plant-days after the shift, still no defect
    _labels(loop, "plant_a", D + dt.timedelta(days=4), 1100, 0)
    assert loop.tick() == [], "6 plant-days: still waiting"
    _labels(loop, "plant_a", D + dt.timedelta(days=5), 1100, 0)
    assert len(loop.tick()) == 1
    outcome, reason = loop.decisions()[-1]
    assert outcome == "ok" and "2200 labelled unit(s)" in reason
    assert "about 962 (0 defective) in the train split (label wait expired)" in reason


def test_another_plant_does_not_wait_for_a_waiting_plant(waiting_loop: Loop) -> None:
    loop = waiting_loop
    loop.tick()
    loop.instance.report_runless_asset_event(_evaluation("plant_a", D))
    loop.instance.report_runless_asset_event(_evaluation("plant_c", D))
    _labels(loop, "plant_c", D, 600, 24)
    _labels(loop, "plant_c", D + dt.timedelta(days=1), 500, 20)
    requests = loop.tick()
    assert len(requests) == 1
    ok = [r for r in loop.audit.records(action="retrain") if r.outcome == "ok"]
    assert [r.refs["plants"] for r in ok] == [["plant_c"]]
    waiting = json.loads(loop.cursor or "{}")["waiting"]
    assert sorted(waiting) == ["plant_a"] and waiting["plant_a"]["since"] == str(D)
