"""raw_<plant>: the faithful copy of a plant's landing files, one asset per plant config."""

import datetime as dt

import dagster as dg
from dagster_duckdb import DuckDBResource

from quality_platform.assets.common import CODE_VERSIONS, per_day_table, preview, warehouse_path
from quality_platform.config import PlantConfig
from quality_platform.ingest.pipeline import land, raw_table
from quality_platform.partitions import keys_of, raw_partitions
from quality_platform.resources import PlatformResource
from quality_platform.warehouse import WAREHOUSE_POOL


def build_raw_asset(plant: PlantConfig, start: dt.date) -> dg.AssetsDefinition:
    """The raw asset of one plant (built from its YAML file; no code per plant)."""
    s = plant.streams
    fmt = {s.readings.format, s.units.format, s.inspections.format}

    @dg.asset(
        name=f"raw_{plant.plant_id}",
        group_name="raw",
        partitions_def=raw_partitions(plant, start),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        owners=[f"team:{plant.owner}"],
        kinds={"duckdb", *fmt},
        code_version=CODE_VERSIONS["raw"],
        tags={
            "layer": "raw",
            "plant": plant.plant_id,
            "personal_data": "yes" if plant.personal_data else "no",
        },
        description=(
            f"Faithful text copy of every record {plant.name} delivered (readings, units, inspections), "
            f"per local day in {plant.timezone}, with file and row; restricted: may hold personal data "
            f"({', '.join(plant.personal_data) or 'none'}). {plant.description}"
        ),
        metadata={
            "plant_config": f"data/plants/{plant.plant_id}.yaml",
            "tables": dg.MetadataValue.md(
                "\n".join(
                    f"- `raw.{raw_table(plant.plant_id, st)}`"
                    for st in ("readings", "units", "inspections")
                )
                + "\n- `raw.receipts` (one row per file and day)\n- `raw.parse_issues` (records that could not be parsed)"
            ),
            "personal_data_columns": ", ".join(plant.personal_data) or "none",
            "source": plant.source,
        },
    )
    def _raw(
        context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        dates = [d for _, d in keys_of(context)]
        res = land(plant, dates, platform.paths(), warehouse_path(warehouse))
        context.log.info(
            f"{plant.plant_id}: {res.files} files, records {res.records}, "
            f"{res.parse_issues} parse issues"
        )
        per_day = {(plant.plant_id, d): sum(v.values()) for d, v in sorted(res.per_day.items())}
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(res.records.values()),
                "records_by_stream": dg.MetadataValue.json(res.records),
                "file_days": res.files,
                "parse_issues": res.parse_issues,
                "records_per_day": per_day_table(per_day, "records"),
                "preview_readings": preview(res.preview, drop=tuple(plant.personal_data)),
            }
        )

    return _raw
