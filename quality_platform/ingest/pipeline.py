"""The two ingestion steps behind the assets: land (files -> raw) and standardise (raw -> standard).

Both work on a set of a plant's local days at once (a single-run backfill), and write each day as
its own partition (delete + insert), so re-running a day replaces it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from quality_platform.config import PlantConfig, QualitySettings, QuantityRegistry
from quality_platform.ingest.readers import BY_UNIT, RawStream, plant_streams, read_raw
from quality_platform.ingest.readings_sql import standardize_readings
from quality_platform.ingest.standardize import (
    StandardizeContext,
    parse_issues_to_quarantine,
    personal_streams,
    redact_personal,
    standardize_attributes,
    standardize_units,
)
from quality_platform.settings import Paths
from quality_platform.standard.schemas import (
    TABLES,
    conform,
    duckdb_ddl,
    evolve_table,
    pandera_schema,
)
from quality_platform.warehouse import connect, read_partitions, replace_partitions, transaction

RAW_SCHEMA = "raw"
STANDARD_SCHEMA = "standard"

RECEIPTS_DDL = f"""CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.receipts (
  plant VARCHAR NOT NULL, partition_date DATE NOT NULL, stream VARCHAR NOT NULL,
  source_file VARCHAR NOT NULL, header VARCHAR, records BIGINT NOT NULL,
  rejected_records BIGINT NOT NULL, items_per_record BIGINT NOT NULL, size_bytes BIGINT,
  sha256 VARCHAR, modified_utc TIMESTAMP, file_records BIGINT)"""
#: columns added to raw.receipts after its first release (an existing warehouse is migrated)
RECEIPTS_MIGRATIONS = (
    f"ALTER TABLE {RAW_SCHEMA}.receipts ADD COLUMN IF NOT EXISTS file_records BIGINT",
)
PARSE_ISSUES_DDL = f"""CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.parse_issues (
  plant VARCHAR NOT NULL, partition_date DATE NOT NULL, stream VARCHAR NOT NULL,
  source_file VARCHAR NOT NULL, source_row BIGINT NOT NULL, source_column VARCHAR,
  scope VARCHAR NOT NULL, rule VARCHAR NOT NULL, severity VARCHAR NOT NULL, message VARCHAR NOT NULL,
  n_records BIGINT NOT NULL, n_items BIGINT NOT NULL, line_text VARCHAR, value VARCHAR)"""


def raw_table(plant_id: str, stream: str) -> str:
    """Name of a plant stream's raw table (schema ``raw``)."""
    return f"{plant_id}__{stream}"


@dataclass
class LandResult:
    """What landing a plant's days produced."""

    records: dict[str, int] = field(default_factory=dict)
    files: int = 0
    parse_issues: int = 0
    per_day: dict[dt.date, dict[str, int]] = field(default_factory=dict)
    preview: pd.DataFrame | None = None


def land(
    plant: PlantConfig, dates: list[dt.date], paths: Paths, warehouse: Path, chunk_days: int = 1
) -> LandResult:
    """Read the plant's landing files for ``dates`` into the raw layer, a chunk of days at a time."""
    out = LandResult()
    with connect(warehouse) as con:
        for chunk in chunks(dates, chunk_days):
            _land_chunk(plant, chunk, paths, con, out)
    return out


def _land_chunk(
    plant: PlantConfig, dates: list[dt.date], paths: Paths, con: Any, out: LandResult
) -> None:
    keys = [(plant.plant_id, d) for d in dates]
    streams: dict[str, RawStream] = {}
    # units before inspections and attributes: a many-day file's record takes its unit's day
    for s in plant_streams(plant):
        unit_days = streams["units"].unit_days if s in BY_UNIT else None
        streams[s] = read_raw(plant, s, dates, paths, unit_days)
    receipts = [r for s in streams.values() for r in s.receipts]
    issues = [i for s in streams.values() for i in s.issues]
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    rec_df = pd.DataFrame(
        receipts,
        columns=[
            "plant",
            "partition_date",
            "stream",
            "source_file",
            "header",
            "records",
            "rejected_records",
            "items_per_record",
            "size_bytes",
            "sha256",
            "modified_utc",
            "file_records",
        ],
    )
    rec_df = rec_df.astype({"size_bytes": "Int64", "file_records": "Int64"})
    iss_df = pd.DataFrame(
        issues,
        columns=[
            "plant",
            "partition_date",
            "stream",
            "source_file",
            "source_row",
            "source_column",
            "scope",
            "rule",
            "severity",
            "message",
            "n_records",
            "n_items",
            "line_text",
            "value",
        ],
    )
    con.execute(RECEIPTS_DDL)
    for migration in RECEIPTS_MIGRATIONS:
        con.execute(migration)
    with transaction(con):  # a day's raw tables, receipts and parse issues change together
        for s, rs in streams.items():
            replace_partitions(
                con, RAW_SCHEMA, raw_table(plant.plant_id, s), rs.table, keys, in_transaction=True
            )
            out.records[s] = out.records.get(s, 0) + rs.records
        replace_partitions(
            con, RAW_SCHEMA, "receipts", rec_df, keys, ddl=RECEIPTS_DDL, in_transaction=True
        )
        replace_partitions(
            con, RAW_SCHEMA, "parse_issues", iss_df, keys, ddl=PARSE_ISSUES_DDL, in_transaction=True
        )
    out.files += len({r["source_file"] for r in receipts})
    out.parse_issues += len(issues)
    for r in receipts:
        day = out.per_day.setdefault(r["partition_date"], {})
        day[r["stream"]] = day.get(r["stream"], 0) + r["records"]
    personal = set(plant.personal_data)
    t = streams["readings"].table
    keep = [c for c in t.column_names if c not in personal and c != "plant"]
    if out.preview is None and t.num_rows:
        out.preview = t.select(keep).slice(0, 5).to_pandas()


@dataclass
class StandardResult:
    """What standardising a plant's days produced.

    Days are processed one chunk at a time, so memory is bounded by a chunk (default: one
    partition), not by the range. Only counts, a quarantine summary and small previews are kept,
    unless ``collect=True`` (tests), which also keeps the written frames.
    """

    rows: dict[str, dict[dt.date, int]] = field(
        default_factory=lambda: {t: {} for t in STANDARD_TABLES}
    )
    quarantine_summary: pd.DataFrame | None = None
    previews: dict[str, pd.DataFrame] = field(default_factory=dict)
    units_labelled: int = 0
    frames: dict[str, list[pd.DataFrame]] | None = None

    def _frame(self, table: str) -> pd.DataFrame:
        if self.frames is None:
            raise ValueError("frames are only kept with collect=True")
        parts = self.frames[table]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    @property
    def readings(self) -> pd.DataFrame:
        return self._frame("sensor_readings")

    @property
    def units(self) -> pd.DataFrame:
        return self._frame("production_units")

    @property
    def quarantine(self) -> pd.DataFrame:
        return self._frame("quarantine")

    @property
    def attributes(self) -> pd.DataFrame:
        return self._frame("unit_attributes")

    def total(self, table: str) -> int:
        return sum(self.rows[table].values())


STANDARD_TABLES = ("sensor_readings", "production_units", "unit_attributes", "quarantine")


def _read(
    con: Any, table: str, keys: list[tuple[str, dt.date]], schema: str = RAW_SCHEMA
) -> pd.DataFrame:
    t: pa.Table | None = read_partitions(con, schema, table, keys)
    if t is None:
        return pd.DataFrame()
    return t.to_pandas()


def standardize_chunk(
    plant: PlantConfig, dates: list[dt.date], con: Any, ctx: StandardizeContext
) -> dict[str, pd.DataFrame]:
    """Raw -> standard frames for some days, validated by pandera (not written)."""
    keys = [(plant.plant_id, d) for d in dates]
    streams = plant_streams(plant)
    raw = {s: _read(con, raw_table(plant.plant_id, s), keys) for s in streams[1:]}
    receipts = _read(con, "receipts", keys)
    issues = _read(con, "parse_issues", keys)
    rec = {
        s: (receipts[receipts["stream"] == s] if not receipts.empty else receipts) for s in streams
    }
    units, q_u = standardize_units(
        raw["units"], rec["units"], raw["inspections"], rec["inspections"], ctx
    )
    # after the units: readings of one file per batch must belong to one of the day's units
    readings, q_r = standardize_readings(
        con, raw_table(plant.plant_id, "readings"), keys, rec["readings"], ctx, units
    )
    attributes, q_a = standardize_attributes(
        raw.get("attributes", pd.DataFrame()), rec.get("attributes", receipts), units, ctx
    )
    q_p = parse_issues_to_quarantine(issues)
    quarantine = conform(
        pd.concat([q for q in (q_p, q_r, q_u, q_a) if not q.empty] or [q_p], ignore_index=True),
        "quarantine",
    )
    quarantine = redact_personal(quarantine, personal_streams(plant, receipts), ctx.pseudonym_key)
    pandera_schema("sensor_readings", ctx.registry).validate(readings, lazy=True)
    pandera_schema("production_units").validate(units, lazy=True)
    pandera_schema("unit_attributes", ctx.registry).validate(attributes, lazy=True)
    pandera_schema("quarantine").validate(quarantine, lazy=True)
    return {
        "sensor_readings": readings,
        "production_units": units,
        "unit_attributes": attributes,
        "quarantine": quarantine,
    }


def chunks(dates: list[dt.date], size: int) -> list[list[dt.date]]:
    ds = sorted(dates)
    return [ds[i : i + size] for i in range(0, len(ds), max(size, 1))]


def standardize(
    plant: PlantConfig,
    dates: list[dt.date],
    warehouse: Path,
    registry: QuantityRegistry,
    quality: QualitySettings,
    key: bytes,
    now_utc: pd.Timestamp | None = None,
    write: bool = True,
    collect: bool = True,
    chunk_days: int = 1,
) -> StandardResult:
    """Raw layer -> sensor_readings, production_units, unit_attributes and quarantine for ``dates``.

    The pandera schemas gate each chunk BEFORE it is written: a frame that violates the
    canonical schema raises (pandera SchemaErrors) and that chunk is not written.
    """
    now = now_utc if now_utc is not None else pd.Timestamp.now(tz="UTC")
    ctx = StandardizeContext(plant, registry, quality, now, key)
    out = StandardResult(frames={t: [] for t in STANDARD_TABLES} if collect else None)
    summaries = []
    with connect(warehouse, read_only=not write) as con:
        for chunk in chunks(dates, chunk_days):
            _standardize_one(plant, chunk, con, ctx, write, out, summaries)
    if summaries:
        qs = (
            pd.concat(summaries)
            .groupby(["plant", "stream", "rule", "severity"], observed=True)[["size", "sum"]]
            .sum()
            .reset_index()
        )
        out.quarantine_summary = qs.rename(columns={"size": "entries", "sum": "items"})
    return out


def _standardize_one(
    plant: PlantConfig,
    chunk: list[dt.date],
    con: Any,
    ctx: StandardizeContext,
    write: bool,
    out: StandardResult,
    summaries: list[pd.DataFrame],
) -> None:
    frames = standardize_chunk(plant, chunk, con, ctx)
    if write:
        keys = [(plant.plant_id, d) for d in chunk]
        with transaction(con):  # the standard tables of a day change together
            for name, df in frames.items():
                # a table of an earlier release gains the columns added since (e.g. channel)
                evolve_table(con, TABLES[name], STANDARD_SCHEMA, name)
                replace_partitions(
                    con,
                    STANDARD_SCHEMA,
                    name,
                    df,
                    keys,
                    ddl=duckdb_ddl(name, STANDARD_SCHEMA),
                    in_transaction=True,
                )
    for name, df in frames.items():
        if df.empty:
            continue
        for d, n in df.groupby(df["partition_date"].dt.date).size().items():
            out.rows[name][d] = int(n)
        if name not in out.previews:
            out.previews[name] = df.head(8)
        if out.frames is not None:
            out.frames[name].append(df)
    u = frames["production_units"]
    out.units_labelled += int(u["defect"].notna().sum()) if not u.empty else 0
    q = frames["quarantine"]
    if not q.empty:
        summaries.append(
            q.groupby(["plant", "stream", "rule", "severity"], observed=True)["n_items"]
            .agg(["size", "sum"])
            .reset_index()
        )
