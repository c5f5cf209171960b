"""`qp report review` (F29): the numbers of a week's operating review match direct counts on the data;
plant managers see their own plants only; refusals are audited."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest

from quality_platform.cli import main
from quality_platform.defs.monitoring.assets import FINDING_COLS
from quality_platform.overrides import record_override
from quality_platform.partitions import RANGE_START, split_key
from quality_platform.reports.review import episodes
from quality_platform.standard.schemas import columns_ddl
from quality_platform.warehouse import connect
from quality_platform_tests.conftest import GovEnv

D = dt.date.fromisoformat


def qp(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main([*argv, "--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out) if out.strip() else {}


def test_episodes_resolve_on_the_first_later_day_without_the_problem() -> None:
    days = [D("2026-03-16") + dt.timedelta(days=i) for i in range(6)]
    eps = episodes([days[1], days[2], days[5]], days)
    assert [
        (e["first_day"], e["last_day"], e["resolved"], e["days_to_resolution"]) for e in eps
    ] == [(days[1], days[2], days[3], 2), (days[5], days[5], None, None)]


def _seed(env: GovEnv) -> dict:
    """Drift findings, a sensor fault, quarantine entries, overrides and an audited sensor-fault incident."""
    finding = (
        "INSERT INTO ml.drift_findings (plant, partition_date, kind, feature, machines, value, detail, "
        "model_version) VALUES (?, ?, ?, ?, ?, 0.9, 'test finding', '1')"
    )
    with connect(env.paths.warehouse_path) as con:
        con.execute(columns_ddl(FINDING_COLS, "ml", "drift_findings"))
        for row in (
            ("plant_a", "2026-03-18", "process_drift", "pressure__mean", None),
            ("plant_a", "2026-03-19", "process_drift", "pressure__mean", None),
            ("plant_a", "2026-03-19", "process_drift", "temperature__mean", None),
            ("plant_a", "2026-03-20", "prediction_drift", "risk", None),
            ("plant_c", "2026-03-17", "sensor_fault", "temperature__mean", "C-M01"),
            ("plant_c", "2026-03-18", "sensor_fault", "temperature__mean", "C-M01"),
        ):
            con.execute(finding, list(row))
        for day, n in (("2026-03-16", 5), ("2026-03-17", 7)):
            con.execute(
                "INSERT INTO standard.quarantine (plant, partition_date, stream, stage, source_file, "
                "source_row, source_column, scope, rule, severity, message, value, n_items) VALUES "
                "('plant_a', ?, 'readings', 'standardize', 'f.csv', 1, 'temp', 'value', 'out_of_range', "
                "'reject', 'test', '999', ?)",
                [day, n],
            )
        units = {
            p: [
                r[0]
                for r in con.execute(
                    "SELECT unit_id FROM ml.predictions WHERE plant = ? AND partition_date = '2026-03-17' ORDER BY unit_id "
                    "LIMIT 3",
                    [p],
                ).fetchall()
            ]
            for p in ("plant_a", "plant_c")
        }
    for u in units["plant_a"]:
        record_override("plant_a", u, "defect", "quinn.quality", "visible crack", paths=env.paths)
    record_override(
        "plant_a", units["plant_a"][0], "ok", "quinn.quality", "second look: fine", paths=env.paths
    )
    record_override(
        "plant_c", units["plant_c"][0], "defect", "quinn.quality", "noise", paths=env.paths
    )
    rec = env.audit.append(
        "incident",
        "system:monitoring",
        actor_kind="system",
        plant="plant_c",
        outcome="info",
        subject="plant:plant_c",
        reason="data-quality incident (suspected sensor fault)",
        refs={"kind": "sensor_fault", "days": ["2026-03-17", "2026-03-18"], "retrain": False},
    )
    return {"sensor_seq": rec.seq}


def test_week_review_matches_direct_counts(
    gov_env: GovEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded = _seed(gov_env)
    rc, rv = qp(
        capsys,
        "report",
        "review",
        "--period",
        "week",
        "--end",
        "2026-03-21",
        "--as",
        "carl.control",
    )
    assert rc == 0, rv
    assert (rv["start"], rv["end"], rv["plants"]) == (
        "2026-03-15",
        "2026-03-21",
        ["plant_a", "plant_c"],
    )
    with connect(gov_env.paths.warehouse_path, read_only=True) as con:
        preds = dict(
            con.execute(
                "SELECT plant, count(*) FROM ml.predictions WHERE partition_date BETWEEN "
                "'2026-03-15' AND '2026-03-21' GROUP BY plant"
            ).fetchall()
        )
        trend = con.execute(
            "SELECT plant, strftime(partition_date, '%Y-%m-%d'), value FROM kpi.kpi_daily WHERE "
            "kpi_id = 'defect_rate' AND line = '*' ORDER BY 1, 2"
        ).fetchall()
    a, c = rv["per_plant"]["plant_a"], rv["per_plant"]["plant_c"]
    assert (a["predictions"], c["predictions"]) == (preds["plant_a"], preds["plant_c"]) and preds[
        "plant_a"
    ] > 1000
    assert (a["drift_alarms"], a["drift_alarm_plant_days"], a["prediction_drift_findings"]) == (
        3,
        2,
        1,
    )
    assert (c["drift_alarms"], c["sensor_faults"]) == (0, 2)
    # overrides of the period's units: a unit overridden twice counts once (its current decision)
    assert (a["overrides"], c["overrides"]) == (3, 1)
    assert a["override_rate"] == pytest.approx(3 / preds["plant_a"], abs=1e-6)
    # data-quality incidents and time to resolution
    (qa,) = a["data_quality_detail"]
    assert (
        qa["source"],
        qa["what"],
        qa["first_day"],
        qa["resolved"],
        qa["days_to_resolution"],
        qa["items"],
    ) == ("quarantine", "out_of_range", "2026-03-16", "2026-03-18", 2, 12)
    (sc,) = c["data_quality_detail"]
    assert (
        sc["source"],
        sc["machines"],
        sc["first_day"],
        sc["last_day"],
        sc["resolved"],
        sc["days_to_resolution"],
    ) == ("sensor_fault", "C-M01", "2026-03-17", "2026-03-18", "2026-03-19", 2)
    assert sc["audit_seqs"] == [seeded["sensor_seq"]]
    assert (a["data_quality_incidents"], a["mean_days_to_resolution"]) == (1, 2)
    # per model version
    (m,) = rv["per_model"]
    assert (
        m["version"],
        m["predictions"],
        m["overrides"],
        m["drift_alarms"],
        m["sensor_faults"],
        m["prediction_drift"],
    ) == ("1", sum(preds.values()), 4, 3, 2, 1)
    # compute time: the score runs' durations from the Dagster instance
    for plant, d in rv["per_plant"].items():
        runs = [
            r
            for r in gov_env.instance.get_run_records(dg.RunsFilter(job_name="score_job"))
            if split_key(r.dagster_run.tags[RANGE_START])[0] == plant
        ]
        assert d["compute_runs"] == len(runs) == 1
        assert d["compute_seconds"] == pytest.approx(
            sum(r.end_time - r.start_time for r in runs), abs=2e-3
        )
        assert d["compute_seconds_per_1000_predictions"] == pytest.approx(
            d["compute_seconds"] / d["predictions"] * 1000, abs=1e-3
        )
    # the unified defect-rate trend is kpi.kpi_daily's
    got = [(t["plant"], t["date"], t["defect_rate"]) for t in rv["defect_rate_trend"]["daily"]]
    assert [(p, d) for p, d, _ in got] == [(p, d) for p, d, _ in trend]
    for (_, _, g), (_, _, v) in zip(got, trend, strict=True):
        assert (g is None and v != v) or g == pytest.approx(v, abs=1e-6)
    assert rv["defect_rate_trend"]["weekly"]
    # the Markdown tells the same
    first = rv["defect_rate_trend"]["daily"][0]
    assert (
        f"| {first['plant']} | {first['date']} | {first['defect_rate']:.4g} | {first['defective']} |"
        in rv["markdown"]
    )
    assert f"| plant_a | {preds['plant_a']} | 3 | 2 |" in rv["markdown"]
    assert "out_of_range" in rv["markdown"] and "C-M01" in rv["markdown"]
    # a month ending at the last day with data (the default end) holds the same six production days
    rc, mo = qp(
        capsys, "report", "review", "--period", "month", "--plant", "plant_a", "--as", "aud.it"
    )
    assert rc == 0 and (mo["start"], mo["end"], mo["plants"]) == (
        "2026-02-22",
        "2026-03-21",
        ["plant_a"],
    )
    assert mo["per_plant"]["plant_a"]["predictions"] == a["predictions"]
    assert sum(w["inspected"] for w in mo["defect_rate_trend"]["weekly"]) == sum(
        t["inspected"] for t in rv["defect_rate_trend"]["daily"] if t["plant"] == "plant_a"
    )


def test_event_sections_plant_scope_and_refusals(
    gov_env: GovEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    from quality_platform.incidents.actions import close_incident, open_incident

    log = gov_env.audit
    # refusals: a plant manager asking for another plant, a role without report_review
    rc, out = qp(capsys, "report", "review", "--plant", "plant_c", "--as", "paul.plant_a")
    assert rc == 2 and "may not report_review at plant_c" in out["error"]
    rc, out = qp(capsys, "report", "review", "--as", "quinn.quality")
    assert rc == 2 and "may not report_review" in out["error"]
    denied = [r for r in log.records() if r.outcome == "denied"]
    assert [(r.action, r.actor, r.plant) for r in denied] == [
        ("report_review", "paul.plant_a", "plant_c"),
        ("report_review", "quinn.quality", None),
    ]
    inc = open_incident(
        "carl.control",
        "minor",
        "review test: suspicious predictions",
        plant="plant_a",
        paths=gov_env.paths,
        audit=log,
        evidence=False,
    )
    today = dt.datetime.now(dt.UTC).date()
    rc, rv = qp(capsys, "report", "review", "--end", str(today), "--as", "carl.control")
    assert rc == 0, rv
    since, until = rv["windows"]["events_utc"]
    window = log.records(since=since, until=until)
    assert rv["promotions"] == sum(r.action == "promote" and r.outcome == "ok" for r in window) == 1
    pe = rv["policy_exceptions"]
    assert pe["denied"] == sum(r.outcome == "denied" for r in window) == 2
    assert pe["denied_by_action"] == {"report_review": 2}
    assert pe["freezes"] == 1 and pe["freeze_records"][0]["incident_id"] == inc.id
    (i,) = rv["incidents"]
    assert (i["id"], i["status"], i["plant"], i["hours_to_resolution"]) == (
        inc.id,
        "open",
        "plant_a",
        None,
    )
    events = {(e["action"], e["subject"]) for e in rv["lifecycle_events"]}
    assert {
        ("register", "model:defect_model/1"),
        ("gate", "model:defect_model/1"),
        ("approve", "model:defect_model/1"),
        ("promote", "model:defect_model/1"),
    } <= events
    assert rv["per_plant"]["plant_a"]["predictions"] == 0  # no production days in this event window

    close_incident(
        inc.id, "carl.control", "false alarm: sensor cleaned", paths=gov_env.paths, audit=log
    )
    # the plant manager's review: own plant only; the other plant's refusal is not theirs to see
    rc, rv = qp(capsys, "report", "review", "--end", str(today), "--as", "paul.plant_a")
    assert rc == 0 and rv["plants"] == ["plant_a"] and list(rv["per_plant"]) == ["plant_a"]
    assert [(r["actor"], r["plant"]) for r in rv["policy_exceptions"]["denied_records"]] == [
        ("quinn.quality", None)
    ]
    (i,) = rv["incidents"]
    assert (
        i["status"] == "closed"
        and i["hours_to_resolution"] is not None
        and i["hours_to_resolution"] >= 0
    )
    with connect(
        gov_env.paths.warehouse_path
    ):  # a writer holds the warehouse: a clear error, not a traceback
        rc, out = qp(capsys, "report", "review", "--as", "carl.control")
        assert rc == 2 and "cannot be opened read-only" in out["error"]
    reviews = [r for r in log.records(action="report_review") if r.outcome == "ok"]
    assert [(r.actor, r.refs["plants"]) for r in reviews] == [
        ("carl.control", ["plant_a", "plant_c"]),
        ("paul.plant_a", ["plant_a"]),
    ]
