"""unit_features through Dagster: the real AI4I plant (one reading per quantity and unit) and a
simulated plant (features carry the defect signal), with every gate passing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from quality_platform.config import load_plants
from quality_platform.definitions import build_definitions
from quality_platform.runner import backfill, run_range
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform_tests.simulation.helpers import auc

D1, D2 = dt.date(2026, 3, 16), dt.date(2026, 3, 17)
FEATURE_CHECKS = ("schema", "one_row_per_unit", "coverage")
AI4I_QUANTITIES = ("air_temperature", "temperature", "rotational_speed", "torque", "tool_wear")


def _df(paths: Paths, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        return con.sql(sql).df()
    finally:
        con.close()


def _assert_feature_checks_passed(instance: dg.DagsterInstance) -> None:
    for name in FEATURE_CHECKS:
        rec = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey("unit_features"), name)
        )
        assert rec is not None and rec.event.asset_check_evaluation.passed, name


def test_readings_mapping_reads_the_neighbouring_days(qp_env: Paths) -> None:
    g = build_definitions(qp_env).resolve_asset_graph()
    parents = g.get_parent_partition_keys_for_child(
        "2026-03-20|plant_a", dg.AssetKey("sensor_readings"), dg.AssetKey("unit_features")
    )
    assert sorted(parents.partitions_subset.get_partition_keys()) == [
        "2026-03-19|plant_a",
        "2026-03-20|plant_a",
        "2026-03-21|plant_a",
    ]
    # the first partition day (data/platform.yaml) has no day before it
    parents = g.get_parent_partition_keys_for_child(
        "2026-03-16|plant_a", dg.AssetKey("sensor_readings"), dg.AssetKey("unit_features")
    )
    assert sorted(parents.partitions_subset.get_partition_keys()) == [
        "2026-03-16|plant_a",
        "2026-03-17|plant_a",
    ]
    parents = g.get_parent_partition_keys_for_child(
        "2026-03-16|plant_a", dg.AssetKey("production_units"), dg.AssetKey("unit_features")
    )
    assert list(parents.partitions_subset.get_partition_keys()) == ["2026-03-16|plant_a"]
    node = g.get(dg.AssetKey("unit_features"))
    assert node.group_name == "features" and node.owners == ["team:data-science"]
    assert (
        "feature_definitions" in node.metadata
        and "temperature__slope" in node.metadata["feature_definitions"].value
    )


def test_ai4i_one_reading_per_quantity_and_unit(qp_env: Paths, tmp_path: Path) -> None:
    defs = build_definitions(qp_env)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        outcomes = backfill(defs, instance, "ai4i2020", D1, D2)
        assert [o.success for o in outcomes] == [True, True]
        assert outcomes[1].failed_checks == []
        _assert_feature_checks_passed(instance)
        mat = instance.fetch_materializations(dg.AssetKey("unit_features"), limit=5).records
        assert {m.partition_key for m in mat} == {"2026-03-16|ai4i2020", "2026-03-17|ai4i2020"}
        meta = mat[0].asset_materialization.metadata
        assert meta["dagster/row_count"].value == 720
        assert meta["share_units_with_readings"].value == 1.0
        assert meta["feature_set_version"].value >= 1

        f = _df(qp_env, "SELECT * FROM features.unit_features")
        units = _df(qp_env, "SELECT unit_id, start_utc, end_utc FROM standard.production_units")
        assert len(f) == len(units) == 720 and f["unit_id"].is_unique
        assert (f["n_readings"] == len(AI4I_QUANTITIES)).all()
        r = _df(qp_env, "SELECT ts_utc, quantity, value FROM standard.sensor_readings").pivot(
            index="ts_utc", columns="quantity", values="value"
        )
        x = f.merge(
            r, left_on="start_utc", right_index=True, how="left"
        )  # one reading at each unit's start
        for q in AI4I_QUANTITIES:
            assert (x[f"{q}__n"] == 1).all()
            for s in ("mean", "min", "max", "last"):
                assert (x[f"{q}__{s}"] == x[q]).all(), (q, s)
            assert x[f"{q}__std"].isna().all() and x[f"{q}__slope"].isna().all()
        for q in ("pressure", "material_moisture", "vibration"):  # not measured by AI4I
            assert (f[f"{q}__n"] == 0).all() and f[f"{q}__mean"].isna().all()
        assert f["temperature__time_outside_s"].isna().all()  # no limits for AI4I temperature
        assert (x["tool_wear__time_outside_s"] == 240.0 * (x["tool_wear"] > 200)).all()
        assert (x["tool_wear"] > 200).any()
        assert "operator_pseudonym" not in f.columns and "defect" not in f.columns

        # Re-materialising a day replaces its features.
        again = run_range(defs, instance, "standardize_job", "ai4i2020", D2, D2)
        assert again.success and again.failed_checks == []
        assert len(_df(qp_env, "SELECT unit_id FROM features.unit_features")) == 720


def test_simulated_plant_features_carry_the_defect_signal(qp_env: Paths, tmp_path: Path) -> None:
    # Inspections of D1 arrive two days later (in D1's folder): simulate 3 days, process D1 only.
    simulate(
        qp_env.landing_dir, days=3, start=D1, plants={"plant_a": load_plants(qp_env)["plant_a"]}
    )
    defs = build_definitions(qp_env)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        outcomes = backfill(defs, instance, "plant_a", D1, D1)
        assert [o.success for o in outcomes] == [True, True]
        assert outcomes[1].failed_checks == []
        _assert_feature_checks_passed(instance)
        rec = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey("unit_features"), "coverage")
        )
        assert rec.event.asset_check_evaluation.metadata["min_coverage"].value == 1.0
    x = _df(
        qp_env,
        """SELECT f.*, u.defect FROM features.unit_features f
                       JOIN standard.production_units u USING (plant, unit_id)""",
    )
    assert len(x) == 12 * 96 and x["defect"].notna().all()
    assert (x["n_readings"] == 15 * 4).all()  # 15 one-minute readings x 4 quantities per unit
    y = x["defect"].astype(bool).to_numpy()
    assert 0.02 < y.mean() < 0.15
    assert auc(x["material_moisture__mean"].to_numpy(), y) > 0.65
    assert (
        x.loc[y, "material_moisture__time_outside_s"].mean()
        > 1.5 * x.loc[~y, "material_moisture__time_outside_s"].mean()
    )
