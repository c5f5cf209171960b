"""The ingest domain's assets: ``raw_<plant>``, the faithful copy of a plant's landing files (one
asset per plant config), and the canonical standard built from them: sensor_readings,
production_units and quarantine (F2, F6, F11)."""

import datetime as dt

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from quality_platform.config import PlantConfig
from quality_platform.defs._assets import CODE_VERSIONS, per_day_table, preview, warehouse_path
from quality_platform.ingest.pipeline import land, raw_table, standardize
from quality_platform.ingest.readers import plant_streams
from quality_platform.partitions import (
    by_plant,
    keys_of,
    plant_day,
    raw_partitions,
    raw_to_standard_mapping,
)
from quality_platform.resources import PlatformResource
from quality_platform.standard.schemas import table_schema
from quality_platform.warehouse import WAREHOUSE_POOL


def build_raw_asset(plant: PlantConfig, start: dt.date) -> dg.AssetsDefinition:
    """The raw asset of one plant (built from its YAML file; no code per plant)."""
    s = plant.streams
    fmt = {getattr(s, st).format for st in plant_streams(plant)}

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
            f"Faithful text copy of every record {plant.name} delivered ({', '.join(plant_streams(plant))}), "
            f"per local day in {plant.timezone}, with file and row; restricted: may hold personal data "
            f"({', '.join(plant.personal_data) or 'none'}). {plant.description}"
        ),
        metadata={
            "plant_config": f"data/plants/{plant.plant_id}.yaml",
            "tables": dg.MetadataValue.md(
                "\n".join(f"- `raw.{raw_table(plant.plant_id, st)}`" for st in plant_streams(plant))
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


STANDARD_TABLES = ("sensor_readings", "production_units", "unit_attributes", "quarantine")


_DESCRIPTIONS = {
    "sensor_readings": "Every accepted sensor value of every plant, one row per machine, time and quantity, "
    "in canonical units and UTC (standard.sensor_readings).",
    "production_units": "One row per produced unit or batch: machine, line, product, material lot, window in UTC, "
    "pseudonymised operator and the inspection outcome once it has arrived (standard.production_units).",
    "unit_attributes": "One row per unit and attribute quantity: values a plant delivers per unit or batch "
    "(raw-material properties, recipe set-points, supplier certificate values) in canonical units, on the unit's "
    "day (standard.unit_attributes).",
    "quarantine": "Every source value, record or file that was held back or flagged, with file, row, column and "
    "the rule it broke; received = accepted + quarantined, always (standard.quarantine).",
}


_KINDS = {
    "sensor_readings": {"duckdb", "pandas", "pandera"},
    "production_units": {"duckdb", "pandas", "pandera"},
    "unit_attributes": {"duckdb", "pandas", "pandera"},
    "quarantine": {"duckdb", "pandas"},
}


def _column_lineage(table: str, plants: dict[str, PlantConfig]) -> dg.TableColumnLineage:
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for p in plants.values():
        key = dg.AssetKey(f"raw_{p.plant_id}")
        if table == "sensor_readings":
            r = p.streams.readings
            if r.layout == "long" and r.long:
                deps.setdefault("value", []).append(
                    dg.TableColumnDep(asset_key=key, column_name=r.long.value_field)
                )
                deps.setdefault("quantity", []).append(
                    dg.TableColumnDep(asset_key=key, column_name=r.long.quantity_field)
                )
            else:
                for m in r.quantities.values():
                    deps.setdefault("value", []).append(
                        dg.TableColumnDep(asset_key=key, column_name=m.field)
                    )
            if r.timestamp.field:
                deps.setdefault("ts_utc", []).append(
                    dg.TableColumnDep(asset_key=key, column_name=r.timestamp.field)
                )
            if r.machine.field:
                deps.setdefault("machine_id", []).append(
                    dg.TableColumnDep(asset_key=key, column_name=r.machine.field)
                )
        elif table == "production_units":
            u = p.streams.units
            target = {"operator": "operator_pseudonym", "start": "start_utc", "end": "end_utc"}
            for canon, src in u.fields.items():
                deps.setdefault(target.get(canon, canon), []).append(
                    dg.TableColumnDep(asset_key=key, column_name=src)
                )
            i = p.streams.inspections
            if "inspected_at" in i.fields:
                deps.setdefault("inspected_at_utc", []).append(
                    dg.TableColumnDep(asset_key=key, column_name=i.fields["inspected_at"])
                )
            for col in (
                [i.outcome.field] if i.outcome.field else list((i.outcome.flags or {}).values())
            ):
                for t in ("rework", "scrap", "defect"):
                    deps.setdefault(t, []).append(dg.TableColumnDep(asset_key=key, column_name=col))
        elif table == "unit_attributes" and p.streams.attributes is not None:
            a = p.streams.attributes
            deps.setdefault("unit_id", []).append(
                dg.TableColumnDep(asset_key=key, column_name=a.fields["unit_id"])
            )
            for v in a.values.values():
                deps.setdefault("value", []).append(
                    dg.TableColumnDep(asset_key=key, column_name=v.field)
                )
    return dg.TableColumnLineage(deps_by_column=deps)


def build_standard_assets(plants: dict[str, PlantConfig], start: dt.date) -> dg.AssetsDefinition:
    """One step standardises a run's plant-days into the three standard tables."""
    partitions = plant_day(plants, start)
    deps = [dg.AssetDep(f"raw_{p}", partition_mapping=raw_to_standard_mapping(p)) for p in plants]
    specs = [
        dg.AssetSpec(
            t,
            group_name="standard",
            description=_DESCRIPTIONS[t],
            deps=deps,
            partitions_def=partitions,
            owners=["team:data-engineering"],
            kinds=_KINDS[t],
            code_version=CODE_VERSIONS["standard"],
            tags={
                "layer": "standard",
                "personal_data": "pseudonymised" if t == "production_units" else "no",
            },
            metadata={
                "dagster/column_schema": table_schema(t),
                "dagster/table_name": f"standard.{t}",
            },
        )
        for t in STANDARD_TABLES
    ]

    @dg.multi_asset(
        name="standardize",
        specs=specs,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        can_subset=False,
    )
    def _standardize(
        context: dg.AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
    ):
        cfg = platform.plants()
        registry, quality = platform.quantities(), platform.platform().quality
        key = platform.pseudonym_key()
        results = {}
        for plant_id, dates in by_plant(keys_of(context)).items():
            res = standardize(
                cfg[plant_id],
                dates,
                warehouse_path(warehouse),
                registry,
                quality,
                key,
                collect=False,
            )
            results[plant_id] = res
            context.log.info(
                f"{plant_id}: {res.total('sensor_readings')} readings, "
                f"{res.total('production_units')} units, {res.total('quarantine')} quarantine entries"
            )
        for t in STANDARD_TABLES:
            per_day = pd.Series(
                {(p, d): n for p, r in results.items() for d, n in sorted(r.rows[t].items())},
                dtype="int64",
            )
            meta: dict[str, object] = {
                "dagster/row_count": int(per_day.sum()),
                "dagster/column_lineage": _column_lineage(t, cfg),
            }
            if not per_day.empty:
                meta["rows_per_day"] = per_day_table(per_day, "rows")
            previews = [r.previews[t] for r in results.values() if t in r.previews]
            head = pd.concat(previews, ignore_index=True) if previews else pd.DataFrame()
            if t == "quarantine":
                sums = [
                    r.quarantine_summary
                    for r in results.values()
                    if r.quarantine_summary is not None
                ]
                if sums:
                    meta["by_rule"] = dg.MetadataValue.md(pd.concat(sums).to_markdown(index=False))
                meta["preview"] = preview(head, n=5)
            elif t == "production_units":
                meta["preview"] = preview(head, drop=("operator_pseudonym",))
                units = sum(r.total(t) for r in results.values())
                if units:
                    meta["label_coverage"] = round(
                        sum(r.units_labelled for r in results.values()) / units, 4
                    )
            else:
                meta["preview"] = preview(head)
            yield dg.MaterializeResult(asset_key=t, metadata=meta)

    return _standardize
