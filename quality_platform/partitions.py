"""Partitions: plant x day, where the day is the plant's LOCAL production day.

Standard and KPI assets share one ``MultiPartitionsDefinition`` (plant x date). Each plant's raw
asset has the same shape restricted to its own plant, and maps onto the standard assets with a
static mapping, so lineage shows exactly which plant's raw day fed which standard partition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import dagster as dg

from quality_platform.config import PlantConfig

#: The plant-day partitions of a run: (plant id, local production day).
Keys = list[tuple[str, dt.date]]


def date_dimension(start: dt.date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start.isoformat())


def plant_day(plants: Iterable[str], start: dt.date) -> dg.MultiPartitionsDefinition:
    """plant x day partitions of the standard, KPI and later layers."""
    return dg.MultiPartitionsDefinition(
        {
            "plant": dg.StaticPartitionsDefinition(sorted(plants)),
            "date": date_dimension(start),
        }
    )


def raw_partitions(plant: PlantConfig, start: dt.date) -> dg.MultiPartitionsDefinition:
    """A plant's raw asset: the plant x day partitions of that one plant."""
    return plant_day([plant.plant_id], start)


def raw_to_standard_mapping(plant_id: str) -> dg.MultiPartitionMapping:
    """raw_<plant>[plant, day] feeds the standard partitions [plant, day] and nothing else."""
    return dg.MultiPartitionMapping(
        {
            "plant": dg.DimensionPartitionMapping(
                "plant", dg.StaticPartitionMapping({plant_id: plant_id})
            ),
            "date": dg.DimensionPartitionMapping("date", dg.IdentityPartitionMapping()),
        }
    )


def key_for(plant_id: str, day: dt.date) -> str:
    """The partition key string of (plant, day)."""
    return str(dg.MultiPartitionKey({"plant": plant_id, "date": day.isoformat()}))


def split_key(key: str | dg.MultiPartitionKey) -> tuple[str, dt.date]:
    """(plant, day) of a plant x day partition key."""
    if not isinstance(key, dg.MultiPartitionKey):
        date_s, plant = str(key).split("|")
        return plant, dt.date.fromisoformat(date_s)
    d = key.keys_by_dimension
    return d["plant"], dt.date.fromisoformat(d["date"])


def keys_of(
    context: dg.OpExecutionContext | dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> list[tuple[str, dt.date]]:
    """The (plant, day) partitions a run covers (one key or a single-run range)."""
    op_ctx = getattr(context, "op_execution_context", context)
    if not (op_ctx.has_partition_key or op_ctx.has_partition_key_range):
        return []
    return sorted(split_key(k) for k in op_ctx.partition_keys)


def by_plant(keys: Iterable[tuple[str, dt.date]]) -> dict[str, list[dt.date]]:
    out: dict[str, list[dt.date]] = {}
    for p, d in keys:
        out.setdefault(p, []).append(d)
    return {p: sorted(ds) for p, ds in sorted(out.items())}


#: Run tags of a single-run backfill over a range of plant-day partitions (Dagster's own names).
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def contiguous_ranges(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """[(first, last)] of runs of consecutive days."""
    out: list[tuple[dt.date, dt.date]] = []
    for d in sorted(set(days)):
        if out and d == out[-1][1] + dt.timedelta(days=1):
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def range_tags(plant_id: str, first: dt.date, last: dt.date) -> dict[str, str]:
    """Run tags of a single-run backfill over a plant's days."""
    return {RANGE_START: key_for(plant_id, first), RANGE_END: key_for(plant_id, last)}
