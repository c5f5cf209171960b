"""Onboarding a plant is one config file: a new plant in Tokyo time, with no code change, is
simulated, landed, standardised and gated end to end."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import yaml

from quality_platform.config import load_plants
from quality_platform.definitions import build_definitions
from quality_platform.runner import backfill
from quality_platform.settings import Paths
from quality_platform.simulation import simulate


def test_new_plant_from_config_runs_end_to_end(qp_env: Paths, tmp_path: Path) -> None:
    doc = yaml.safe_load((qp_env.plants_dir / "plant_a.yaml").read_text())
    doc.update(
        plant_id="plant_d",
        name="Plant D (new)",
        timezone="Asia/Tokyo",
        machines=[f"D-M{i:02d}" for i in range(1, 4)],
    )
    (qp_env.plants_dir / "plant_d.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    plant = load_plants(qp_env)["plant_d"]
    day = dt.date(2026, 3, 16)
    simulate(qp_env.landing_dir, days=2, seed=5, start=day, plants={"plant_d": plant})
    defs = build_definitions(qp_env)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        outcomes = backfill(defs, instance, "plant_d", day, day)
        assert [o.success for o in outcomes] == [True, True], outcomes
        assert outcomes[1].failed_checks == []
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        n, machines = con.sql(
            "SELECT count(*), count(DISTINCT machine_id) FROM standard.sensor_readings "
            "WHERE plant = 'plant_d'"
        ).fetchall()[0]
        q = con.sql("SELECT count(*) FROM standard.quarantine WHERE plant = 'plant_d'").fetchall()[
            0
        ][0]
        first = con.sql(
            "SELECT min(ts_utc) FROM standard.sensor_readings WHERE plant = 'plant_d'"
        ).fetchall()[0][0]
    finally:
        con.close()
    assert machines == 3 and n == 3 * 1440 * 4 and q == 0
    assert str(first) == "2026-03-15 15:00:00"  # local midnight in Tokyo (UTC+9)
