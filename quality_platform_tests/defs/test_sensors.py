"""Late files are picked up: the landing sensor re-lands exactly the changed days, and the
standardisation sensor follows new raw partitions."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import dagster as dg

from quality_platform.definitions import build_definitions
from quality_platform.location import tick
from quality_platform.partitions import RANGE_END, RANGE_START, contiguous_ranges
from quality_platform.runner import run_range
from quality_platform.settings import Paths
from quality_platform_tests.conftest import relax_completeness

HEADER = "Zeitstempel,Maschine,Temperatur [°C],Druck [bar],Materialfeuchte [%],Vibration [mm/s]\n"


def _file(paths: Paths, day: str, name: str = "sensoren.csv", body: str = "") -> Path:
    d = paths.data_dir / "landing" / "plant_a" / day
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(HEADER + body, encoding="utf-8")
    return p


def _tick(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    cursor: str | None,
):
    """One tick the way the daemon evaluates it: ``evaluate_tick`` in the code location's context
    (run requests resolved and validated against the sensor's targets; run-status sensors see the
    runs of their own code location only)."""
    return tick(defs, instance, sensor.name, cursor)


def test_contiguous_ranges() -> None:
    d = dt.date(2026, 3, 1)
    days = [d, d + dt.timedelta(1), d + dt.timedelta(2), d + dt.timedelta(5)]
    assert contiguous_ranges(days) == [(days[0], days[2]), (days[3], days[3])]


def test_landing_sensor_picks_up_late_files(qp_env: Paths) -> None:
    defs = build_definitions(qp_env)
    sensor = defs.resolve_sensor_def("landing_plant_a")
    _file(qp_env, "2026-03-26")
    with dg.instance_for_test() as instance:
        first = _tick(sensor, instance, defs, None)
        assert not first.run_requests  # baseline
        again = _tick(sensor, instance, defs, first.cursor)
        assert not again.run_requests
        late = _file(qp_env, "2026-03-20", "pruefung_2026-03-30.csv")
        _file(qp_env, "2026-03-21")
        changed = _file(qp_env, "2026-03-26")
        os.utime(changed, ns=(1, 1))
        # a day before the first partition day (data/platform.yaml) is not landed
        _file(qp_env, "2026-03-15")
        res = _tick(sensor, instance, defs, again.cursor)
        tags = sorted((r.tags[RANGE_START], r.tags[RANGE_END]) for r in res.run_requests)
        assert tags == [
            ("2026-03-20|plant_a", "2026-03-21|plant_a"),
            ("2026-03-26|plant_a", "2026-03-26|plant_a"),
        ]
        assert late.name in json.loads(res.cursor).__str__()
        assert not _tick(sensor, instance, defs, res.cursor).run_requests


def test_standardize_sensor_follows_raw(qp_env: Paths) -> None:
    defs = build_definitions(qp_env)
    sensor = defs.resolve_sensor_def("standardize_on_raw")
    with dg.instance_for_test() as instance:
        base = _tick(sensor, instance, defs, None)
        assert not base.run_requests
        _file(qp_env, "2026-03-16", body="2026-03-16 10:00:00,A-M01,200,2.5,12,3\n")
        assert run_range(
            defs, instance, "land_plant_a", "plant_a", dt.date(2026, 3, 16), dt.date(2026, 3, 16)
        ).success
        res = _tick(sensor, instance, defs, base.cursor)
        (req,) = res.run_requests
        assert req.tags[RANGE_START] == req.tags[RANGE_END] == "2026-03-16|plant_a"
        assert not _tick(sensor, instance, defs, res.cursor).run_requests


def test_monitor_sensor_requests_monitoring_of_a_standardised_day(qp_env: Paths) -> None:
    """A successful standardize run leads to a monitor run of its days and a performance run of the
    days whose labels they brought; the requests must name targets the sensor declares, or the
    daemon refuses the tick ("RunRequest for a sensor lacking a specified target")."""
    relax_completeness(qp_env)
    defs = build_definitions(qp_env)
    sensor = defs.resolve_sensor_def("monitor_after_standardize")
    day = dt.date(2026, 3, 20)
    with dg.instance_for_test() as instance:
        base = _tick(sensor, instance, defs, None)  # the first tick only sets the cursor
        assert not base.run_requests
        _file(qp_env, day.isoformat(), body="2026-03-20 10:00:00,A-M01,200,2.5,12,3\n")
        assert run_range(defs, instance, "land_plant_a", "plant_a", day, day).success
        std = run_range(defs, instance, "standardize_job", "plant_a", day, day)
        assert std.success
        res = _tick(sensor, instance, defs, base.cursor)
        by_job = {r.job_name: r for r in res.run_requests}
        assert set(by_job) == {"monitor_job", "performance_job"}
        assert by_job["monitor_job"].tags[RANGE_START] == "2026-03-20|plant_a"
        assert (
            by_job["performance_job"].tags[RANGE_END] == "2026-03-18|plant_a"
        )  # label latency 2 days
        assert by_job["monitor_job"].tags["dagster/sensor_name"] == "monitor_after_standardize"
        assert not _tick(sensor, instance, defs, res.cursor).run_requests
        # the first partition day brings no labels of an earlier day: no performance run before
        # the partitions start (Dagster would refuse the request)
        first = dt.date(2026, 3, 16)
        _file(qp_env, first.isoformat(), body="2026-03-16 10:00:00,A-M01,200,2.5,12,3\n")
        assert run_range(defs, instance, "land_plant_a", "plant_a", first, first).success
        assert run_range(defs, instance, "standardize_job", "plant_a", first, first).success
        res2 = _tick(sensor, instance, defs, res.cursor)
        assert [r.job_name for r in res2.run_requests] == ["monitor_job"]


def test_every_schedule_and_sensor_ticks_through_dagster(qp_env: Paths) -> None:
    """Each schedule and sensor of the definitions, evaluated once by Dagster (``evaluate_tick``)
    on an installation with nothing landed yet: no evaluation error, and every run request names
    a job of the location whose partition range (if any) exists. Each schedule requests its run
    here; the sensors, with nothing to react to yet, request nothing - their requests are ticked
    and validated in their own tests (landing, standardisation, monitoring above, the retrain
    sensor in test_retrain_sensor.py, the run-failure alert in test_loop.py)."""
    defs = build_definitions(qp_env)
    repo = defs.get_repository_def()
    when = dt.datetime(2026, 4, 10, 5, 30, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        requested: dict[str, list[dg.RunRequest]] = {}
        for schedule in repo.schedule_defs:
            with dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=when,
                resources=defs.resources,
                repository_def=repo,
            ) as ctx:  # released on exit: no resource outlives the test's instance
                data = schedule.evaluate_tick(ctx)
            assert data.run_requests, f"{schedule.name} requested nothing at {when}"
            requested[schedule.name] = [
                r.with_replaced_attrs(job_name=r.job_name or schedule.job_name)
                for r in data.run_requests
            ]
        for sensor in repo.sensor_defs:
            res = tick(defs, instance, sensor.name, None)  # raises on an invalid request
            requested[sensor.name] = list(res.run_requests or [])
        assert set(requested) == {s.name for s in repo.schedule_defs} | {
            s.name for s in repo.sensor_defs
        }
        for name, requests in requested.items():
            for r in requests:
                job = repo.get_job(r.job_name)  # raises for a job the location does not have
                for tag in (RANGE_START, RANGE_END):
                    if tag in r.tags:
                        assert (
                            job.partitions_def is not None
                            and job.partitions_def.has_partition_key(r.tags[tag])
                        ), f"{name}: {r.tags[tag]} is not a partition of {job.name}"


def test_a_failing_sensor_is_one_alert_per_outage_and_its_recovery_another(qp_env: Paths) -> None:
    """The ticks are the instance's own tick records (what the daemon writes when a sensor's
    evaluation raises); ``alert_on_sensor_error`` is ticked by Dagster (``evaluate_tick``)."""
    from dagster._core.scheduler.instigation import InstigatorType, TickData, TickStatus
    from dagster._utils.error import SerializableErrorInfo

    from quality_platform.alerts import read_alerts
    from quality_platform.daemon import sensor_state
    from quality_platform.defs.monitoring.sensors import SENSOR_ERROR_ALERT
    from quality_platform.location import set_sensor_cursors

    defs = build_definitions(qp_env)
    with dg.instance_for_test() as instance:
        set_sensor_cursors(defs, instance, {"landing_plant_a": None})
        state = sensor_state(instance, "landing_plant_a")
        t0 = dt.datetime.now(dt.UTC).timestamp() - 100

        def record(status: TickStatus, at: float) -> None:
            error = SerializableErrorInfo(
                "ValueError: landing folder unreadable\n", [], "ValueError"
            )
            instance.create_tick(
                TickData(
                    instigator_origin_id=state.instigator_origin_id,
                    instigator_name=state.name,
                    instigator_type=InstigatorType.SENSOR,
                    status=status,
                    timestamp=at,
                    selector_id=state.selector_id,
                    error=error if status == TickStatus.FAILURE else None,
                )
            )

        def alerts() -> list[dict]:
            return [a for a in read_alerts(paths=qp_env) if a["kind"] == "sensor_error"]

        record(TickStatus.SKIPPED, t0)
        res = tick(defs, instance, SENSOR_ERROR_ALERT, None)
        assert alerts() == []
        for i in range(3):  # three failed ticks in a row: one alert
            record(TickStatus.FAILURE, t0 + 10 + i)
        res = tick(defs, instance, SENSOR_ERROR_ALERT, res.cursor)
        res = tick(defs, instance, SENSOR_ERROR_ALERT, res.cursor)
        sent = alerts()
        assert [(a["severity"], a["summary"]) for a in sent] == [
            ("error", "sensor landing_plant_a failed: ValueError: landing folder unreadable")
        ]
        record(TickStatus.SKIPPED, t0 + 20)  # the next good tick: recovered
        tick(defs, instance, SENSOR_ERROR_ALERT, res.cursor)
        assert [(a["severity"], a["summary"]) for a in alerts()[1:]] == [
            ("info", "sensor landing_plant_a recovered after 3 failed tick(s)")
        ]
