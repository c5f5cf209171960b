"""ml.ops_metrics (defs/monitoring/assets.py) on the governed installation: every figure of every
plant-day equals a direct count on the data it summarises - predictions, units, quarantine,
drift findings, and overrides counted on their unit's production day."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from quality_platform.definitions import build_definitions
from quality_platform.defs.monitoring.jobs import MONITOR_JOB
from quality_platform.overrides import record_override
from quality_platform.runner import run_range
from quality_platform_tests.conftest import GOV_D1, GOV_DAYS, GOV_PLANTS, GovEnv


def _sql(env: GovEnv, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(env.paths.warehouse_path), read_only=True) as con:
        return con.execute(sql).df()


def test_ops_metrics_equal_direct_counts(gov_env: GovEnv) -> None:
    units = _sql(
        gov_env,
        "SELECT plant, partition_date, unit_id FROM ml.predictions ORDER BY plant, partition_date, "
        "unit_id",
    )
    a = units[units["plant"] == "plant_a"]
    days = sorted(a["partition_date"].unique())
    picked = [
        a[a["partition_date"] == days[0]].iloc[0],
        a[a["partition_date"] == days[0]].iloc[1],
        a[a["partition_date"] == days[2]].iloc[0],
        units[units["plant"] == "plant_c"].iloc[0],
    ]
    for i, u in enumerate(picked):
        record_override(
            str(u["plant"]),
            str(u["unit_id"]),
            "ok" if i % 2 else "defect",
            "quinn.quality",
            "re-inspection",
            paths=gov_env.paths,
        )
    record_override(
        str(picked[0]["plant"]),
        str(picked[0]["unit_id"]),
        "ok",
        "quinn.quality",  # supersedes
        "second look",
        paths=gov_env.paths,
    )
    defs = build_definitions(gov_env.paths)
    last = GOV_D1 + dt.timedelta(days=GOV_DAYS - 1)
    for p in GOV_PLANTS:
        assert run_range(defs, gov_env.instance, MONITOR_JOB, p, GOV_D1, last).success

    ops = _sql(gov_env, "SELECT * FROM ml.ops_metrics ORDER BY plant, partition_date")
    assert len(ops) == GOV_DAYS * len(GOV_PLANTS)
    expected = _sql(
        gov_env,
        """
        WITH k AS (SELECT DISTINCT plant, partition_date FROM ml.ops_metrics)
        SELECT k.plant, k.partition_date,
          (SELECT count(*) FROM ml.predictions p WHERE p.plant = k.plant AND p.partition_date = k.partition_date)
            AS predictions,
          (SELECT count(*) FROM standard.production_units u WHERE u.plant = k.plant
             AND u.partition_date = k.partition_date) AS units,
          (SELECT coalesce(sum(n_items), 0) FROM standard.quarantine q WHERE q.plant = k.plant
             AND q.partition_date = k.partition_date AND severity = 'reject') AS quarantined_items,
          (SELECT count(*) FROM ml.drift_findings f WHERE f.plant = k.plant AND f.partition_date = k.partition_date
             AND kind = 'process_drift') AS drift_alarms,
          (SELECT count(*) FROM ml.drift_findings f WHERE f.plant = k.plant AND f.partition_date = k.partition_date
             AND kind IN ('sensor_fault', 'stuck_sensor')) AS sensor_faults
        FROM k ORDER BY k.plant, k.partition_date""",
    )
    for col in ("predictions", "units", "quarantined_items", "drift_alarms", "sensor_faults"):
        assert ops[col].astype(int).tolist() == expected[col].astype(int).tolist(), col
    assert (ops["predictions"] > 0).all() and (ops["retrains"] == 0).all()
    assert ops["cycle_time_hours"].notna().all()

    # overrides: one per overridden unit (the latest decision), on the unit's production day
    got = {
        (r.plant, pd.Timestamp(r.partition_date).date()): int(r.overrides) for r in ops.itertuples()
    }
    want = {k: 0 for k in got}
    for u in picked:
        want[(str(u["plant"]), pd.Timestamp(u["partition_date"]).date())] += 1
    assert got == want
    assert sum(got.values()) == 4
    rate = ops["overrides"] / ops["predictions"]
    assert (ops["override_rate"].round(12) == rate.round(12)).all()
