"""The closed loop on simulated scenarios, with the real sensors against a real temporary Dagster
instance. A champion is trained on the first week, then day by day exactly what the daemon does
(land, standardise, the runs ``monitor_after_standardize`` requests, canary evaluation, one tick of
``retrain_on_drift`` whose request is executed).

Seven days of one plant are too little for a good model (plant_b: ~8 defective units in the
holdout), so the tests switch the release gate's absolute floors off and drop the one behaviour
case a week cannot teach; the comparison with the champion, calibration and the other behaviour
cases still apply to every retrain. The model's quality is not what is tested here; the gate is
tested in defs/test_ml_lifecycle.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pytest

from quality_platform.alerts import read_alerts
from quality_platform.audit import AuditLog, audit_db_path
from quality_platform.config import load_plants
from quality_platform.definitions import build_definitions
from quality_platform.defs.ml.sensors import RETRAIN_SENSOR, current_cursor
from quality_platform.defs.monitoring.jobs import MONITOR_JOB
from quality_platform.ml import lifecycle as L
from quality_platform.ml.config import load_model_config
from quality_platform.ml.registry import CHALLENGER, CHAMPION, ModelRegistry
from quality_platform.runner import DayOutcome, backfill, run_day, run_range, train
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform_tests.conftest import loop_installation

D0 = dt.date(2026, 3, 16)
TRAIN_DAYS = 7
ALARMS = ("process_drift", "sensor_fault", "stuck_sensor")


def _run(
    paths: Paths,
    instance: dg.DagsterInstance,
    plants: tuple[str, ...],
    scenario: str,
    days: int,
    onset: int,
) -> tuple[list[DayOutcome], dict]:
    truth = simulate(
        paths.landing_dir,
        days=days,
        start=D0,
        scenario=scenario,
        onset_day=onset,
        plants=load_plants(paths),
    )
    defs = build_definitions(paths)
    last_train = D0 + dt.timedelta(days=TRAIN_DAYS - 1)
    for p in plants:
        assert all(o.success for o in backfill(defs, instance, p, D0, last_train))
    t = train(defs, instance)
    assert t.success, t.failed_checks
    reg, audit = (
        ModelRegistry(load_model_config(paths), paths),
        AuditLog(audit_db_path(paths)),
    )
    L.approve(reg, audit, "1", "carl.control", "initial release")
    L.promote(reg, audit, "1", "carl.control", "initial release")
    for p in plants:
        assert run_range(defs, instance, MONITOR_JOB, p, D0, last_train).success
    # the loop starts after the first release, as in the demo: the retrain sensor's cursor at the
    # latest check records (the week's own monitoring above is not news to it)
    days_out, cursors = [], {RETRAIN_SENSOR: current_cursor(instance)}
    for i in range(TRAIN_DAYS, days):
        for p in plants:
            o = run_day(defs, instance, p, D0 + dt.timedelta(days=i), cursors)
            cursors = o.cursors
            assert all(r.success for r in o.runs if r.job != "train_job"), [
                (r.job, r.failed_checks) for r in o.runs
            ]
            days_out.append(o)
    return days_out, truth


def _df(paths: Paths, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        df = con.sql(sql).df()
    finally:
        con.close()
    if "partition_date" in df.columns:
        df["partition_date"] = pd.to_datetime(df["partition_date"]).dt.date
    return df


def _findings(paths: Paths, after: dt.date) -> pd.DataFrame:
    f = _df(
        paths,
        "SELECT plant, partition_date, kind, feature, machines, detail FROM ml.drift_findings ORDER BY 1, 2",
    )
    print(f.to_string())
    return f[f["partition_date"] >= after]


def test_moisture_drift_retrains_once_and_the_challenger_takes_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = loop_installation(tmp_path, monkeypatch, ("plant_a",))
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        days, truth = _run(paths, instance, ("plant_a",), "moisture_drift", days=19, onset=9)
        instance_runs = {r.run_id: r for r in instance.get_runs()}
        figures = {a: _numeric_by_day(instance, a) for a in PLOTTED}
    onset = dt.date.fromisoformat(truth["onset_date"])
    found = _findings(paths, D0 + dt.timedelta(days=TRAIN_DAYS))
    alarms = found[found["kind"].isin(ALARMS)]
    assert not (alarms["partition_date"] < onset).any(), "false alarm before the onset"
    first = alarms.loc[alarms["kind"] == "process_drift", "partition_date"].min()
    # the drift is a ramp (+0.25 %/day from 0 at the onset): on the onset day it averages +0.125 %,
    # a fifth of the lot-to-lot sd, so the first day it can be seen is the day after
    assert onset <= first <= onset + dt.timedelta(days=2), first
    retrains = [d for d in days if d.retrain]
    assert len(retrains) == 1, [(d.day, d.retrain) for d in retrains]
    # label latency: the shift's first day trains a model once the day after it is labelled, on
    # first + 1 + plant_a's 2 plant-days of label latency; until then the plant waits, audited
    assert retrains[0].day == first + dt.timedelta(days=3) and retrains[0].retrain["success"]
    audit = AuditLog(audit_db_path(paths))
    waits = [r for r in audit.records(action="retrain") if "label_wait" in r.refs]
    assert waits and {r.refs["label_wait"]["since"] for r in waits} == {str(first)}
    assert all(r.outcome == "info" for r in waits)
    run = instance_runs[retrains[0].retrain["run_id"]]
    assert (
        run.tags["dagster/sensor_name"] == "retrain_on_drift"
        and run.tags["qp/check"] == "drift_metrics:input_drift"
    )
    reg = ModelRegistry(load_model_config(paths), paths)
    v2 = reg.version("2")
    assert (
        v2.tag("trigger") == "retrain_on_drift"
        and v2.tag("trigger_check") == "drift_metrics:input_drift"
    )
    assert v2.gate in L.PASSING and v2.approval == "approved"
    # lineage names the days the rows come from, not the 28-day window reaching back before D0
    assert v2.partitions["plant_a"][0] == str(D0), v2.partitions
    assert reg.alias(CHAMPION).version == "2" and reg.alias(CHALLENGER) is None
    last = days[-1].day
    pred = _df(
        paths,
        f"SELECT DISTINCT model_version FROM ml.predictions WHERE partition_date = DATE '{last}' "
        "AND decided_by = 'champion'",
    )
    assert set(pred["model_version"]) == {"2"}
    started = [r for r in audit.records(action="retrain") if r.outcome == "ok"]
    assert [r.refs["check"] for r in started] == ["drift_metrics:input_drift"]
    assert started[0].refs["labels_since_shift"]["train_days"][0] == str(first)
    trigger_day = dt.date.fromisoformat(started[0].refs["last_day_by_plant"]["plant_a"])
    assert any(
        r.outcome == "denied" and "cooldown" in (r.reason or "")
        for r in audit.records(action="retrain")
    ), "the drift persisted after the retrain: the cooldown must have held further retrains back"
    assert any(r.action == "promote" and r.actor == "system:canary" for r in audit.records())
    kinds = {a["kind"] for a in read_alerts(paths=paths)}
    assert {"drift_alarm", "retrain", "promotion"} <= kinds
    ops = _df(
        paths,
        "SELECT partition_date, drift_alarms, retrains, predictions, cycle_time_hours FROM ml.ops_metrics",
    )
    assert ops.loc[ops["partition_date"] == first, "drift_alarms"].iloc[0] > 0
    assert ops.loc[ops["partition_date"] == trigger_day, "retrains"].iloc[0] == 1
    assert (
        ops.loc[ops["partition_date"] >= D0 + dt.timedelta(days=TRAIN_DAYS), "predictions"] > 0
    ).all()
    # the figures the UI plots per plant-day (numeric materialisation metadata)
    loop_days = [d.day for d in days]
    kpi = figures["kpi_daily"]
    # a rate needs inspected units: plant_a's last 2 days (label latency) carry coverage only
    labelled, unlabelled = loop_days[:-2], loop_days[-2:]
    assert all(isinstance(kpi[d]["defect_rate"], float) for d in labelled)
    assert all(
        "defect_rate" not in kpi[d] and kpi[d]["inspection_coverage"] == 0 for d in unlabelled
    )
    drift = figures["drift_metrics"]
    assert drift[first]["process_drift_findings"] >= 1
    before = [drift[d]["max_wasserstein"] for d in loop_days if d < onset]
    assert before and drift[first]["max_wasserstein"] > max(before), (before, drift[first])
    perf = figures["model_performance"]
    assert any(0.5 < f.get("realised_roc_auc", 0) <= 1 for f in perf.values()), perf
    ops = figures["ops_metrics"]
    assert ops[first]["drift_alarms"] >= 1 and ops[trigger_day]["retrains"] == 1
    assert audit.verify().ok


#: assets whose materialisations carry numbers the UI plots over plant-days (issue 13, item 7)
PLOTTED = ("kpi_daily", "drift_metrics", "model_performance", "ops_metrics")


def _numeric_by_day(instance: dg.DagsterInstance, asset: str) -> dict[dt.date, dict[str, float]]:
    """{plant-day: numeric metadata of its latest materialisation} (plant_a partitions)."""
    out: dict[dt.date, dict[str, float]] = {}
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=10_000, ascending=True)
    for r in records.records:
        if r.partition_key:
            day = dt.date.fromisoformat(r.partition_key.split("|")[0])
            meta = r.asset_materialization.metadata
            out[day] = {k: v.value for k, v in meta.items() if isinstance(v, dg.FloatMetadataValue)}
    return out


def _no_retrain(days: list[DayOutcome], paths: Paths) -> None:
    assert not [d for d in days if d.retrain]
    reg = ModelRegistry(load_model_config(paths), paths)
    assert [v.version for v in reg.versions()] == ["1"]


@pytest.mark.parametrize(
    "scenario,plant,kind",
    [("sensor_offset", "plant_b", "sensor_fault"), ("stuck_sensor", "plant_c", "stuck_sensor")],
)
def test_sensor_fault_is_an_incident_not_a_retrain(
    scenario: str, plant: str, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = loop_installation(tmp_path, monkeypatch, (plant,))
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        days, truth = _run(paths, instance, (plant,), scenario, days=10, onset=8)
    onset = dt.date.fromisoformat(truth["onset_date"])
    machine = truth["affected"]["machine"]
    found = _findings(paths, D0 + dt.timedelta(days=TRAIN_DAYS))
    assert found[found["kind"].isin(ALARMS) & (found["partition_date"] < onset)].empty, (
        "false alarm before the onset"
    )
    on = found[(found["partition_date"] == onset) & (found["kind"] == kind)]
    assert len(on) and all(m == machine for m in ",".join(on["machines"]).split(",")), on
    assert found[found["kind"] == "process_drift"].empty
    _no_retrain(days, paths)
    audit = AuditLog(audit_db_path(paths))
    inc = [r for r in audit.records(action="incident") if r.plant == plant]
    assert inc and inc[0].refs["kind"] == kind and inc[0].refs["retrain"] is False
    assert machine in inc[0].refs["machines"]
    assert "sensor_fault" in {a["kind"] for a in read_alerts(paths=paths)}
    ops = _df(
        paths,
        f"SELECT sensor_faults, quality_incidents FROM ml.ops_metrics WHERE partition_date = DATE '{onset}'",
    )
    assert ops["sensor_faults"].iloc[0] >= 1 and ops["quality_incidents"].iloc[0] >= 1


def test_stable_raises_no_alarm_and_no_retrain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = loop_installation(tmp_path, monkeypatch, ("plant_a",))
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        days, _ = _run(paths, instance, ("plant_a",), "stable", days=11, onset=8)
        rec = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey("drift_metrics"), "input_drift")
        )
        assert rec is not None and rec.event.asset_check_evaluation.passed
    found = _findings(paths, D0 + dt.timedelta(days=TRAIN_DAYS))
    assert found[found["kind"].isin(ALARMS)].empty
    _no_retrain(days, paths)


def test_concept_drift_fails_performance_once_labels_arrive_and_retrains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = loop_installation(tmp_path, monkeypatch, ("plant_c",))
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        days, truth = _run(paths, instance, ("plant_c",), "concept_drift", days=13, onset=8)
    onset = dt.date.fromisoformat(truth["onset_date"])
    found = _findings(paths, D0 + dt.timedelta(days=TRAIN_DAYS))
    assert found[found["kind"] == "process_drift"].empty, "the inputs did not change"
    perf = _df(
        paths,
        "SELECT partition_date, labelled, positives, roc_auc, expected_roc_auc, auc_z, pooled_auc_z, "
        "loss_z, pooled_loss_z, degraded FROM ml.model_performance ORDER BY 1",
    )
    print(perf.to_string())
    assert not perf.loc[perf["partition_date"] < onset, "degraded"].any()
    first = perf.loc[perf["degraded"].astype(bool), "partition_date"].min()
    assert onset <= first, perf
    retrains = [d for d in days if d.retrain]
    # labels arrive label_latency_days after production: the performance of a day is known that
    # much later, and the first degraded day trains a model once the day after it is labelled
    assert retrains and retrains[0].day == first + dt.timedelta(
        days=truth["label_latency_days"]["plant_c"] + 1
    )
    reg = ModelRegistry(load_model_config(paths), paths)
    versions = [v for v in reg.versions() if v.version != "1"]
    assert len(versions) == len(retrains)
    assert all(v.tag("trigger_check") == "model_performance:performance" for v in versions)
    # the cooldown lets a further retrain through only when the previous one's version failed the gate
    assert all(v.gate == "failed" for v in versions[:-1]), [(v.version, v.gate) for v in versions]


def test_a_failed_run_reaches_the_alert_channel(qp_env: Paths) -> None:
    from quality_platform.location import tick as location_tick

    defs = build_definitions(qp_env)
    sensor = defs.resolve_sensor_def("alert_on_run_failure")

    def tick(
        cursor: str | None,
    ) -> Any:  # as the daemon evaluates it: from the instance's event log
        return location_tick(defs, instance, sensor.name, cursor)

    with dg.instance_for_test() as instance:
        base = tick(None)  # the first tick only sets the cursor
        # no champion yet: scoring + drift of a plant-day fails
        res = run_range(
            defs, instance, MONITOR_JOB, "plant_a", D0, D0
        )  # a run of the code location
        assert not res.success
        after = tick(base.cursor)
        tick(after.cursor)  # the same failure is not sent twice
    alerts = [a for a in read_alerts(paths=qp_env) if a["kind"] == "run_failure"]
    assert (
        len(alerts) == 1
        and alerts[0]["details"]["run_id"] == res.run_id
        and "monitor_job" in alerts[0]["summary"]
    )
