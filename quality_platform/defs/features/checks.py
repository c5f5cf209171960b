"""Quality gates on the per-unit features: schema, one row per unit, coverage per plant."""

from typing import Any

import dagster as dg
import pandas as pd

from quality_platform.config import PlantConfig, QuantityRegistry, signal_name
from quality_platform.defs._checks import keys_query, md_table, pandera_result, warehouse_check
from quality_platform.defs.features.assets import QUALIFIED
from quality_platform.features.compute import STANDARD
from quality_platform.features.config import CoverageThresholds, FeatureConfig, load_features
from quality_platform.features.schema import (
    FEATURE_SCHEMA,
    TABLE,
    columns,
    feature_name,
    pandera_for,
)
from quality_platform.partitions import Keys
from quality_platform.standard.schemas import columns_conform as conform
from quality_platform.warehouse import (
    read_partitions,
    table_exists,
)


def check_feature_schema(
    con: Any, keys: Keys, registry: QuantityRegistry, config: FeatureConfig
) -> dg.AssetCheckResult:
    """pandera (from the one schema) on the run's partitions, read back."""
    t = read_partitions(con, FEATURE_SCHEMA, TABLE, keys)
    if t is None or not t.num_rows:
        return dg.AssetCheckResult(
            passed=True, description="no rows in these partitions", metadata={"rows": 0}
        )
    cols = columns(registry, config)
    df = t.to_pandas()
    missing = [c.name for c in cols if c.name not in df.columns]
    if missing:
        return dg.AssetCheckResult(
            passed=False, description=f"columns missing: {missing[:10]}", metadata={"rows": len(df)}
        )
    return pandera_result(pandera_for(registry, config), conform(df, cols), TABLE)


def check_one_row_per_unit(con: Any, keys: Keys) -> dg.AssetCheckResult:
    """Per plant-day: exactly the units of production_units, once each; unit ids unique per plant."""
    if not keys:
        return dg.AssetCheckResult(passed=True, description="no partitions", metadata={})
    units_src = (
        f"SELECT plant, partition_date, unit_id FROM {STANDARD}.production_units"
        if table_exists(con, STANDARD, "production_units")
        else "SELECT NULL::VARCHAR AS plant, NULL::DATE AS partition_date, NULL::VARCHAR AS unit_id WHERE FALSE"
    )
    per_day = (
        keys_query(
            con,
            f"""
        WITH f AS (SELECT t.plant, t.partition_date, t.unit_id FROM {QUALIFIED} t SEMI JOIN _keys k
                     ON t.plant = k.plant AND t.partition_date = k.partition_date),
             u AS (SELECT t.plant, t.partition_date, t.unit_id FROM ({units_src}) t SEMI JOIN _keys k
                     ON t.plant = k.plant AND t.partition_date = k.partition_date),
             fc AS (SELECT plant, partition_date, count(*) AS feature_rows, count(DISTINCT unit_id) AS unit_ids
                    FROM f GROUP BY ALL),
             uc AS (SELECT plant, partition_date, count(*) AS units FROM u GROUP BY ALL),
             missing AS (SELECT plant, partition_date, count(*) AS missing
                         FROM (SELECT * FROM u ANTI JOIN f USING (plant, partition_date, unit_id)) GROUP BY ALL),
             extra AS (SELECT plant, partition_date, count(*) AS extra
                       FROM (SELECT * FROM f ANTI JOIN u USING (plant, partition_date, unit_id)) GROUP BY ALL)
        SELECT k.plant, k.partition_date, coalesce(uc.units, 0) AS units,
               coalesce(fc.feature_rows, 0) AS feature_rows, coalesce(fc.unit_ids, 0) AS unit_ids,
               coalesce(missing.missing, 0) AS missing, coalesce(extra.extra, 0) AS extra
        FROM _keys k LEFT JOIN uc USING (plant, partition_date) LEFT JOIN fc USING (plant, partition_date)
        LEFT JOIN missing USING (plant, partition_date) LEFT JOIN extra USING (plant, partition_date)
        ORDER BY 1, 2""",
            keys,
        )
        if table_exists(con, FEATURE_SCHEMA, TABLE)
        else pd.DataFrame()
    )
    if per_day.empty:
        return dg.AssetCheckResult(
            passed=False, description=f"{QUALIFIED} does not exist", metadata={}
        )
    bad_days = per_day[
        (per_day["units"] != per_day["feature_rows"])
        | (per_day["unit_ids"] != per_day["feature_rows"])
        | (per_day["missing"] > 0)
        | (per_day["extra"] > 0)
    ]
    dupes = keys_query(
        con,
        f"""
        SELECT plant, unit_id, count(*) AS n, list(DISTINCT partition_date ORDER BY partition_date) AS days
        FROM {QUALIFIED} WHERE plant IN (SELECT DISTINCT plant FROM _keys)
        GROUP BY plant, unit_id HAVING count(*) > 1 LIMIT 1000""",
        keys,
    )
    passed = bad_days.empty and dupes.empty
    return dg.AssetCheckResult(
        passed=passed,
        description=(
            "one row per unit"
            if passed
            else f"{len(bad_days)} plant-days whose rows differ from production_units; "
            f"{len(dupes)} unit ids with more than one row"
        ),
        metadata={
            "units": int(per_day["units"].sum()),
            "feature_rows": int(per_day["feature_rows"].sum()),
            "mismatched_days": md_table(bad_days),
            "duplicated_unit_ids": md_table(dupes.astype(str)),
        },
    )


def coverage_table(con: Any, keys: Keys, plants: dict[str, PlantConfig]) -> pd.DataFrame:
    """Per plant, day and quantity the plant maps: units, units with >= 1 reading, share."""
    parts = []
    for plant_id in sorted({p for p, _ in keys}):
        sub = [k for k in keys if k[0] == plant_id]
        for q in sorted({signal_name(*s) for s in plants[plant_id].signals().values()}):
            parts.append(
                keys_query(
                    con,
                    f"""
                SELECT t.plant, t.partition_date, '{q}' AS quantity, count(*) AS units,
                       count(*) FILTER (WHERE t."{feature_name(q, "n")}" > 0) AS with_readings
                FROM {QUALIFIED} t SEMI JOIN _keys k ON t.plant = k.plant AND t.partition_date = k.partition_date
                GROUP BY ALL""",
                    sub,
                )
            )
    out = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["plant", "partition_date", "quantity", "units", "with_readings"])
    )
    out["partition_date"] = pd.to_datetime(out["partition_date"]).dt.date
    out["coverage"] = (out["with_readings"] / out["units"]).astype("float64")
    return out.sort_values(["coverage", "plant", "partition_date", "quantity"]).reset_index(
        drop=True
    )


def check_coverage(
    con: Any, keys: Keys, plants: dict[str, PlantConfig], thresholds: CoverageThresholds
) -> dg.AssetCheckResult:
    """Share of units with readings, per plant-day and quantity the plant maps (WARN / ERROR below)."""
    cov = (
        coverage_table(con, keys, plants)
        if table_exists(con, FEATURE_SCHEMA, TABLE)
        else pd.DataFrame()
    )
    if cov.empty:
        return dg.AssetCheckResult(
            passed=True, description="no units in these partitions", metadata={}
        )
    low = cov[cov["coverage"] < thresholds.warn_below]
    severe = cov[cov["coverage"] < thresholds.error_below]
    severity = dg.AssetCheckSeverity.ERROR if not severe.empty else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=low.empty,
        severity=severity,
        description=(
            f"{len(low)} plant-day-quantities with less than {thresholds.warn_below:.0%} of units "
            f"covered ({len(severe)} below {thresholds.error_below:.0%})"
        )
        if not low.empty
        else "every unit-quantity covered above the threshold",
        metadata={
            "min_coverage": float(cov["coverage"].min()),
            "mean_coverage": float(cov["coverage"].mean()),
            "plant_day_quantities": len(cov),
            "below_warn": len(low),
            "below_error": len(severe),
            "worst": md_table(cov.assign(coverage=cov["coverage"].round(4)), 20),
        },
    )


def build_features_checks() -> list[dg.AssetChecksDefinition]:
    """Blocking gates on unit_features: schema, one row per unit, coverage."""

    def make(name: str, description: str, body: Any) -> dg.AssetChecksDefinition:
        return warehouse_check("unit_features", name, description, body)

    return [
        make(
            "schema",
            "pandera schema of unit_features from the one feature schema (types, nulls, "
            "non-negative counts and spreads, min <= mean, last <= max, n_readings = sum of counts).",
            lambda con, keys, p: check_feature_schema(
                con, keys, p.quantities(), load_features(p.paths())
            ),
        ),
        make(
            "one_row_per_unit",
            "Exactly one row per unit of production_units in every plant-day (counts "
            "and ids match); unit ids unique per plant.",
            lambda con, keys, p: check_one_row_per_unit(con, keys),
        ),
        make(
            "coverage",
            "Share of units with at least one reading, per plant-day and quantity the plant maps "
            "(WARN below coverage.warn_below, ERROR below coverage.error_below in data/features.yaml).",
            lambda con, keys, p: check_coverage(
                con, keys, p.plants(), load_features(p.paths()).coverage
            ),
        ),
    ]
