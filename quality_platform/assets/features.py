"""The feature layer (F12 groundwork): ``unit_features`` and its blocking gates.

``unit_features[plant, day]`` reads the plant's units of that day and the plant's readings of the
day before, the day itself and the day after (a window may start before local midnight or run
past the next one); the partition mapping says exactly that, so lineage and staleness follow it.
"""

import datetime as dt
from typing import Any

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from quality_platform.assets.common import CODE_VERSIONS, per_day_table, preview, warehouse_path
from quality_platform.assets.standard_checks import (
    keys_query,
    md_table,
    pandera_result,
    warehouse_check,
)
from quality_platform.config import PlantConfig, QuantityRegistry
from quality_platform.features.compute import STANDARD, compute_unit_features
from quality_platform.features.config import CoverageThresholds, FeatureConfig, load_features
from quality_platform.features.schema import (
    CONTEXT,
    FEATURE_SCHEMA,
    TABLE,
    columns,
    feature_definitions,
    feature_name,
    pandera_for,
)
from quality_platform.partitions import by_plant, keys_of, plant_day
from quality_platform.resources import PlatformResource
from quality_platform.standard.schemas import columns_conform as conform
from quality_platform.standard.schemas import columns_ddl as ddl
from quality_platform.standard.schemas import columns_table_schema as table_schema
from quality_platform.warehouse import (
    WAREHOUSE_POOL,
    connect,
    read_partitions,
    replace_partitions,
    table_exists,
)

Keys = list[tuple[str, dt.date]]
QUALIFIED = f"{FEATURE_SCHEMA}.{TABLE}"
#: Days computed per query: bounds memory on long single-run backfills.
CHUNK_DAYS = 7


def readings_mapping() -> dg.MultiPartitionMapping:
    """unit_features[plant, D] reads sensor_readings[plant, D-1 .. D+1]."""
    return dg.MultiPartitionMapping(
        {
            "plant": dg.DimensionPartitionMapping("plant", dg.IdentityPartitionMapping()),
            "date": dg.DimensionPartitionMapping(
                "date",
                dg.TimeWindowPartitionMapping(
                    start_offset=-1, end_offset=1, allow_nonexistent_upstream_partitions=True
                ),
            ),
        }
    )


def _column_lineage(registry: QuantityRegistry, config: FeatureConfig) -> dg.TableColumnLineage:
    units, readings = dg.AssetKey("production_units"), dg.AssetKey("sensor_readings")
    window = [
        dg.TableColumnDep(asset_key=units, column_name=c)
        for c in ("machine_id", "start_utc", "end_utc")
    ]
    signal = [
        dg.TableColumnDep(asset_key=readings, column_name=c)
        for c in ("value", "ts_utc", "quantity")
    ]
    deps = {
        c.name: [dg.TableColumnDep(asset_key=units, column_name=c.name)]
        for c in CONTEXT
        if c.name != "n_readings"
    }
    deps["n_readings"] = [*window, dg.TableColumnDep(asset_key=readings, column_name="ts_utc")]
    for c in columns(registry, config)[len(CONTEXT) :]:
        deps[c.name] = [*window, *signal]
    return dg.TableColumnLineage(deps_by_column=deps)


def _check_table_columns(con: Any, registry: QuantityRegistry, config: FeatureConfig) -> None:
    """Refuse to write into a table of another feature set (the columns would not line up)."""
    if not table_exists(con, FEATURE_SCHEMA, TABLE):
        return
    have = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [FEATURE_SCHEMA, TABLE],
        ).fetchall()
    ]
    want = [c.name for c in columns(registry, config)]
    if have != want:
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        raise dg.Failure(
            description=f"{QUALIFIED} was built for another feature set (missing columns {missing[:10]}, "
            f"extra {extra[:10]}): bump feature_set_version in data/features.yaml, drop the "
            f"table and re-materialise all partitions."
        )


def build_features_asset(
    plants: dict[str, PlantConfig],
    start: dt.date,
    registry: QuantityRegistry,
    config: FeatureConfig,
) -> dg.AssetsDefinition:
    """unit_features (plant x day)."""
    cols = columns(registry, config)
    definitions = feature_definitions(registry, config)

    @dg.asset(
        name="unit_features",
        group_name="features",
        partitions_def=plant_day(plants, start),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        deps=[
            dg.AssetDep("sensor_readings", partition_mapping=readings_mapping()),
            dg.AssetDep("production_units", partition_mapping=dg.IdentityPartitionMapping()),
        ],
        owners=["team:data-science"],
        kinds={"duckdb", "sql"},
        code_version=f"{CODE_VERSIONS['features']}.fs{config.feature_set_version}",
        tags={"layer": "features", "personal_data": "no"},
        description="One row per produced unit: statistics (mean, std, min, max, last, slope per hour, count, "
        "time outside process limits) of every canonical quantity over the readings of the unit's "
        "machine inside its production window, plus line, product, material lot and supplier; "
        "no labels, no operator (features.unit_features).",
        metadata={
            "dagster/column_schema": table_schema(cols),
            "dagster/table_name": QUALIFIED,
            "feature_set_version": config.feature_set_version,
            "feature_definitions": dg.MetadataValue.md(
                f"Feature set version {config.feature_set_version} (data/features.yaml); window = "
                "the unit's machine, start_utc <= ts_utc < end_utc; values in canonical units.\n\n"
                + definitions.to_markdown(index=False)
            ),
        },
    )
    def unit_features(
        context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        keys = keys_of(context)
        cfg, reg = platform.plants(), platform.quantities()
        fcfg = load_features(platform.paths())
        table_ddl = ddl(columns(reg, fcfg), FEATURE_SCHEMA, TABLE)
        per_day: dict[tuple[str, dt.date], int] = {}
        with_readings, heads, previewed = 0, [], set()
        with connect(warehouse_path(warehouse)) as con:
            _check_table_columns(con, reg, fcfg)
            for plant_id, days in by_plant(keys).items():
                for i in range(0, len(days), CHUNK_DAYS):
                    chunk = days[i : i + CHUNK_DAYS]
                    t = compute_unit_features(
                        con, plant_id, chunk, reg, fcfg, cfg[plant_id].reading_interval_seconds
                    )
                    replace_partitions(
                        con, FEATURE_SCHEMA, TABLE, t, [(plant_id, d) for d in chunk], ddl=table_ddl
                    )
                    counts = t.select(["partition_date", "n_readings"]).to_pandas()
                    for d, n in counts.groupby("partition_date").size().items():
                        per_day[(plant_id, d)] = int(n)
                    with_readings += int((counts["n_readings"] > 0).sum())
                    for d in chunk:
                        per_day.setdefault((plant_id, d), 0)
                    if plant_id not in previewed and t.num_rows:
                        previewed.add(plant_id)
                        means = [
                            feature_name(q, "mean")
                            for q in cfg[plant_id].streams.readings.quantities
                            if "mean" in fcfg.statistics
                        ][:4]
                        heads.append(
                            t.slice(0, 3)
                            .select(
                                [
                                    "plant",
                                    "partition_date",
                                    "unit_id",
                                    "machine_id",
                                    "product",
                                    "start_utc",
                                    "n_readings",
                                    *means,
                                ]
                            )
                            .to_pandas()
                        )
                    context.log.info(f"{plant_id} {chunk[0]}..{chunk[-1]}: {t.num_rows} units")
        total = sum(per_day.values())
        head = pd.concat(heads, ignore_index=True) if heads else pd.DataFrame()
        meta: dict[str, Any] = {
            "dagster/row_count": total,
            "dagster/column_lineage": _column_lineage(reg, fcfg),
            "feature_set_version": fcfg.feature_set_version,
            "share_units_with_readings": round(with_readings / total, 4) if total else None,
            "preview": preview(head, n=12),
        }
        if per_day:
            meta["rows_per_day"] = per_day_table(
                pd.Series(per_day, dtype="int64").sort_index(), "units"
            )
        return dg.MaterializeResult(metadata=meta)

    return unit_features


# --------------------------------------------------------------------------- check bodies


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
        for q in plants[plant_id].streams.readings.quantities:
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


# --------------------------------------------------------------------------- Dagster wiring


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
