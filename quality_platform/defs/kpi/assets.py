"""Unified KPIs per plant/line/day and each plant's legacy figures reconciled against them (F3)."""

import datetime as dt

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from quality_platform import kpis as K
from quality_platform.config import KpiRegistry, PlantConfig
from quality_platform.defs._assets import CODE_VERSIONS, preview, warehouse_path
from quality_platform.ingest.pipeline import STANDARD_SCHEMA
from quality_platform.partitions import by_plant, keys_of, plant_day
from quality_platform.resources import PlatformResource
from quality_platform.standard.schemas import columns_conform, columns_ddl, columns_table_schema
from quality_platform.warehouse import (
    WAREHOUSE_POOL,
    connect,
    read_partitions,
    replace_partitions,
)

KPI_SCHEMA = "kpi"


def _units(con: object, keys: list[tuple[str, dt.date]]) -> pd.DataFrame:
    t = read_partitions(
        con,
        STANDARD_SCHEMA,
        "production_units",
        keys,
        columns="plant, partition_date, line, rework, scrap, defect",
    )
    return (
        t.to_pandas()
        if t is not None
        else pd.DataFrame(columns=["plant", "partition_date", "line", "rework", "scrap", "defect"])
    )


def _write(
    warehouse: DuckDBResource, table: str, df: pd.DataFrame, keys: list[tuple[str, dt.date]]
) -> None:
    cols = K.KPI_TABLES[table]
    if not df.empty:
        df = columns_conform(df, cols)
        df["partition_date"] = df["partition_date"].dt.date
    with connect(warehouse_path(warehouse)) as con:
        replace_partitions(con, KPI_SCHEMA, table, df, keys, columns_ddl(cols, KPI_SCHEMA, table))


def _registry_md(reg: KpiRegistry) -> str:
    rows = [
        {
            "id": k.id,
            "formula": k.formula,
            "unit": k.unit,
            "version": k.version,
            "owner": k.owner,
            "description": k.description,
        }
        for k in reg.kpis
    ]
    return f"Registry version {reg.registry_version}\n\n" + pd.DataFrame(rows).to_markdown(
        index=False
    )


def build_kpi_assets(
    plants: dict[str, PlantConfig], start: dt.date, registry: KpiRegistry
) -> list[dg.AssetsDefinition]:
    """kpi_daily, plant_reported_kpis, kpi_reconciliation (plant x day)."""
    partitions = plant_day(plants, start)
    common = dict(
        group_name="kpi",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"duckdb", "pandas"},
        code_version=CODE_VERSIONS["kpi"],
        tags={"layer": "kpi", "personal_data": "no"},
    )

    @dg.asset(
        deps=["production_units"],
        owners=["team:quality-engineering"],
        description="Unified KPIs (data/kpis.yaml: defect rate, first-pass yield, scrap rate, ...) per plant, line "
        "and local day, with the counts they are computed from (kpi.kpi_daily; line '*' = whole plant).",
        metadata={
            "kpi_registry": dg.MetadataValue.md(_registry_md(registry)),
            "dagster/table_name": "kpi.kpi_daily",
            "dagster/column_schema": columns_table_schema(K.KPI_TABLES["kpi_daily"]),
        },
        **common,
    )
    def kpi_daily(
        context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        keys = keys_of(context)
        with connect(warehouse_path(warehouse), read_only=True) as con:
            units = _units(con, keys)
        df = K.kpi_daily(units, platform.kpis())
        _write(warehouse, "kpi_daily", df, keys)
        whole = df[df["line"] == K.ALL_LINES]
        summary = whole.pivot_table(
            index="plant", columns="kpi_id", values="value", aggfunc="mean"
        ).reset_index()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(df),
                "mean_per_plant": dg.MetadataValue.md(summary.round(4).to_markdown(index=False)),
                "preview": preview(whole),
                # numbers, so the asset's Plots tab shows each KPI's trend over the plant-days
                **K.pooled_kpis(df, platform.kpis()),
            }
        )

    @dg.asset(
        deps=["production_units"],
        owners=["team:quality-engineering"],
        description="Each plant's own legacy KPI definitions (plant config 'legacy_kpis') recomputed from the "
        "standard data per local day, in the plant's own units (kpi.plant_reported_kpis).",
        metadata={
            "dagster/table_name": "kpi.plant_reported_kpis",
            "dagster/column_schema": columns_table_schema(K.KPI_TABLES["plant_reported_kpis"]),
        },
        **common,
    )
    def plant_reported_kpis(
        context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        keys = keys_of(context)
        cfg = platform.plants()
        with connect(warehouse_path(warehouse), read_only=True) as con:
            units = _units(con, keys)
        frames = [K.plant_reported_kpis(units[units["plant"] == p], cfg[p]) for p in by_plant(keys)]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        _write(warehouse, "plant_reported_kpis", df, keys)
        return dg.MaterializeResult(metadata={"dagster/row_count": len(df), "preview": preview(df)})

    @dg.asset(
        deps=[kpi_daily, plant_reported_kpis],
        owners=["team:quality-engineering"],
        description="Each plant's legacy KPI next to the unified KPI it maps to, with the difference and why "
        "(numerator, denominator, scale; kpi.kpi_reconciliation).",
        metadata={
            "dagster/table_name": "kpi.kpi_reconciliation",
            "dagster/column_schema": columns_table_schema(K.KPI_TABLES["kpi_reconciliation"]),
        },
        **common,
    )
    def kpi_reconciliation(
        context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        keys = keys_of(context)
        cfg, reg = platform.plants(), platform.kpis()
        with connect(warehouse_path(warehouse), read_only=True) as con:
            kd = read_partitions(con, KPI_SCHEMA, "kpi_daily", keys)
            rep = read_partitions(con, KPI_SCHEMA, "plant_reported_kpis", keys)
        kd_df = kd.to_pandas() if kd is not None else pd.DataFrame()
        rep_df = rep.to_pandas() if rep is not None else pd.DataFrame()
        frames = [
            K.reconcile(kd_df[kd_df["plant"] == p], rep_df[rep_df["plant"] == p], cfg[p], reg)
            for p in by_plant(keys)
            if not kd_df.empty and not rep_df.empty
        ]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        _write(warehouse, "kpi_reconciliation", df, keys)
        summary = (
            df.groupby(["plant", "legacy_name", "kpi_id", "legacy_unit"])[
                ["legacy_value", "unified_in_legacy_unit", "difference_in_legacy_unit"]
            ]
            .mean()
            .round(3)
            .reset_index()
            if not df.empty
            else pd.DataFrame()
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(df),
                "mean_per_plant": dg.MetadataValue.md(
                    summary.to_markdown(index=False) if not summary.empty else "_(none)_"
                ),
                "explanations": preview(
                    df[["plant", "legacy_name", "explanation"]].drop_duplicates("plant")
                    if not df.empty
                    else df
                ),
            }
        )

    return [kpi_daily, plant_reported_kpis, kpi_reconciliation]
