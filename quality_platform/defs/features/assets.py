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

from quality_platform.config import PlantConfig, QuantityRegistry, signal_name
from quality_platform.defs._assets import CODE_VERSIONS, per_day_table, preview, warehouse_path
from quality_platform.features.compute import compute_unit_features
from quality_platform.features.config import FeatureConfig, load_features
from quality_platform.features.schema import (
    ATTRIBUTE_VALUE,
    CONTEXT,
    FEATURE_SCHEMA,
    TABLE,
    columns,
    feature_definitions,
    feature_name,
)
from quality_platform.partitions import by_plant, keys_of, plant_day
from quality_platform.resources import PlatformResource
from quality_platform.standard.schemas import columns_ddl as ddl
from quality_platform.standard.schemas import columns_table_schema as table_schema
from quality_platform.standard.schemas import evolve_table
from quality_platform.warehouse import (
    WAREHOUSE_POOL,
    connect,
    replace_partitions,
)

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
    attributes = dg.AssetKey("unit_attributes")
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
    values = {feature_name(q, ATTRIBUTE_VALUE) for q in registry.attributes()}
    for c in columns(registry, config)[len(CONTEXT) :]:
        deps[c.name] = (
            [
                dg.TableColumnDep(asset_key=attributes, column_name=x)
                for x in ("unit_id", "quantity", "value")
            ]
            if c.name in values
            else [*window, *signal]
        )
    return dg.TableColumnLineage(deps_by_column=deps)


def migrate_features_table(
    con: Any, registry: QuantityRegistry, config: FeatureConfig
) -> tuple[list[str], list[str]]:
    """Evolve features.unit_features to the feature set in force, in place: a plant that joins
    with new quantities or channels (or a new statistic) adds columns - other plants' rows get
    NULL statistics and 0 counts, which is what they are, as those plants do not measure them.
    A column no longer in the feature set (a plant or statistic removed) is kept, never dropped
    automatically: its history stays readable (and scorable by a model version that used it),
    new rows leave it NULL. No manual DROP TABLE, no re-run of the other plants. A changed
    *definition* (feature_set_version) is a new code version: Dagster marks the partitions
    computed under the old one stale. Returns (added, kept columns outside the feature set)."""
    cols = columns(registry, config)
    added = evolve_table(con, cols, FEATURE_SCHEMA, TABLE)
    declared = {c.name for c in cols}
    have = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
        "AND table_name = ? ORDER BY ordinal_position",
        [FEATURE_SCHEMA, TABLE],
    ).fetchall()
    return added, [r[0] for r in have if r[0] not in declared]


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
            dg.AssetDep("unit_attributes", partition_mapping=dg.IdentityPartitionMapping()),
        ],
        owners=["team:data-science"],
        kinds={"duckdb", "sql"},
        code_version=f"{CODE_VERSIONS['features']}.fs{config.feature_set_version}",
        tags={"layer": "features", "personal_data": "no"},
        description="One row per produced unit: statistics (mean, std, min, max, last, slope per hour, count, "
        "time outside process limits) of every quantity, channel and derived quantity over the readings of the unit's "
        "machine inside its production window, the unit's attributes (raw-material properties, set-points: "
        "`<quantity>__value`), plus line, product, material lot and supplier; "
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
            added, outside = migrate_features_table(con, reg, fcfg)
            if added:
                context.log.info(
                    f"{QUALIFIED} evolved to the feature set in force: {len(added)} column(s) "
                    f"added {added[:8]}"
                )
            for plant_id, days in by_plant(keys).items():
                for i in range(0, len(days), CHUNK_DAYS):
                    chunk = days[i : i + CHUNK_DAYS]
                    t = compute_unit_features(con, cfg[plant_id], chunk, reg, fcfg)
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
                            feature_name(signal_name(q, ch), "mean")
                            for q, ch in cfg[plant_id].signals().values()
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
            "columns_added": dg.MetadataValue.json(added),
            "columns_outside_feature_set": dg.MetadataValue.json(outside),
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


# --------------------------------------------------------------------------- Dagster wiring
