"""The asset graph run through Dagster on a temporary instance: gates, idempotency, blocking."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb

from quality_platform.definitions import build_definitions
from quality_platform.runner import backfill, run_range
from quality_platform.settings import Paths
from quality_platform_tests.conftest import relax_completeness

D1, D2 = dt.date(2026, 3, 16), dt.date(2026, 3, 17)


def _count(paths: Paths, sql: str) -> int:
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        return con.execute(sql).fetchall()[0][0]
    finally:
        con.close()


def test_ai4i_end_to_end_all_gates_pass(qp_env: Paths, tmp_path: Path) -> None:
    defs = build_definitions(qp_env)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        outcomes = backfill(defs, instance, "ai4i2020", D1, D2)
        assert [o.success for o in outcomes] == [True, True]
        assert outcomes[1].failed_checks == []
        evals = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey("quarantine"), "reconciliation")
        )
        assert evals is not None and evals.event.asset_check_evaluation.passed
        # 360 units per day (one every 240 s) x 5 quantities
        assert _count(qp_env, "SELECT count(*) FROM standard.sensor_readings") == 2 * 360 * 5
        assert _count(qp_env, "SELECT count(*) FROM standard.production_units") == 720
        assert _count(qp_env, "SELECT count(*) FROM kpi.kpi_daily WHERE line = '*'") == 2 * 5
        assert (
            _count(
                qp_env,
                "SELECT count(DISTINCT time_basis) FROM standard.production_units "
                "WHERE time_basis LIKE 'synthetic%'",
            )
            == 1
        )
        mats = instance.fetch_materializations(dg.AssetKey("sensor_readings"), limit=10).records
        assert {m.partition_key for m in mats} == {"2026-03-16|ai4i2020", "2026-03-17|ai4i2020"}

        # Re-materialising a partition replaces it: same counts, no duplicates.
        again = run_range(defs, instance, "standardize_job", "ai4i2020", D2, D2)
        assert again.success and again.failed_checks == []
        assert _count(qp_env, "SELECT count(*) FROM standard.sensor_readings") == 2 * 360 * 5
        assert _count(qp_env, "SELECT count(*) FROM kpi.kpi_daily WHERE line = '*'") == 2 * 5


def test_failing_blocking_gate_stops_downstream(qp_env: Paths, tmp_path: Path) -> None:
    """A unit id delivered again on a later day passes the day's own rules but not the plant-wide
    uniqueness gate; the KPIs of that run are then not computed."""
    # This test is about unit ids: one reading per day is enough, so completeness is not gated here.
    relax_completeness(qp_env)
    defs = build_definitions(qp_env)
    land = qp_env.data_dir / "landing" / "plant_a"
    head = "Auftrag,Linie,Maschine,Start,Ende,Produkt,Charge,Lieferant,Werker\n"
    for day in (D1, D2):
        (land / day.isoformat()).mkdir(parents=True)
        (land / day.isoformat() / "sensoren.csv").write_text(
            "Zeitstempel,Maschine,Temperatur [°C],Druck [bar],Materialfeuchte [%],Vibration [mm/s]\n"
            f"{day} 10:00:00,A-M01,200,2.5,12,3\n",
            encoding="utf-8",
        )
        (land / day.isoformat() / "auftraege.csv").write_text(
            head + f"A-SAME,L1,A-M01,{day} 10:00:00,{day} 10:15:00,P1,LOT1,S1,W-1\n",
            encoding="utf-8",
        )
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        first = backfill(defs, instance, "plant_a", D1, D1)
        assert all(o.success for o in first)
        second = backfill(defs, instance, "plant_a", D2, D2)
        std = second[1]
        assert not std.success
        assert "production_units:unique_unit_ids (ERROR)" in std.failed_checks
        kpi_days = _count(qp_env, "SELECT count(DISTINCT partition_date) FROM kpi.kpi_daily")
        assert kpi_days == 1  # only the first day's KPIs exist
