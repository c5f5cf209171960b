"""The one canonical schema of the standard tables (F2).

Each table is declared once as a list of :class:`Col`; from that single declaration come the
pandera schema that gates data before it is written, the DuckDB DDL, the pandas dtypes used in
memory and the column schema shown in the Dagster catalog.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pandera.pandas as pa

from quality_platform.config import CHANNEL_SEP, QuantityRegistry
from quality_platform.warehouse import quote_ident

# logical type -> (DuckDB type, pandas dtype in memory, pandera dtype or None)
_TYPES: dict[str, tuple[str, str, Any]] = {
    "label": ("VARCHAR", "category", None),  # low-cardinality text
    "text": ("VARCHAR", "string", None),
    "float": ("DOUBLE", "float64", "float64"),
    "int": ("BIGINT", "int64", "int64"),
    "bool": ("BOOLEAN", "boolean", None),
    "timestamp": ("TIMESTAMP", "datetime64[us]", None),
    "date": ("DATE", "datetime64[s]", None),
}


def sql_type(logical: str) -> str:
    """The DuckDB column type of a logical column type of the standard (``float`` -> ``DOUBLE``)."""
    return _TYPES[logical][0]


@dataclass(frozen=True)
class Col:
    """One column of a standard table."""

    name: str
    type: str
    description: str
    nullable: bool = False
    checks: tuple[pa.Check, ...] = field(default_factory=tuple)


_PROVENANCE = (
    Col(
        "source_file",
        "label",
        "Landing file the value came from (path relative to the plant's landing folder).",
    ),
    Col(
        "source_row",
        "int",
        "Row in that file: CSV physical line (the header, if the file has one, is line 1), "
        "Parquet 1-based row, JSON line number.",
        checks=(pa.Check.ge(0),),
    ),
)
_KEY = (
    Col("plant", "label", "Plant id (`data/plants/<plant>.yaml`)."),
    Col(
        "partition_date",
        "date",
        "The plant's LOCAL production day this row belongs to (partition key).",
    ),
)

TABLES: dict[str, tuple[Col, ...]] = {
    "sensor_readings": (
        *_KEY,
        Col("machine_id", "label", "Machine as named by the plant."),
        Col("ts_utc", "timestamp", "Measurement time in UTC."),
        Col(
            "quantity",
            "label",
            "Canonical quantity (data/standard/quantities.yaml, or the plant's own `quantities`).",
        ),
        Col(
            "channel",
            "label",
            "The plant's channel (sensor or position) when a machine has several sensors of the "
            "quantity, e.g. `TS1`..`TS4` of temperature; NULL for a quantity's only sensor.",
            nullable=True,
        ),
        Col(
            "value",
            "float",
            "Measured value in the canonical unit of the quantity.",
            checks=(pa.Check(np.isfinite, name="finite"),),
        ),
        Col("unit", "label", "Canonical unit (pint notation)."),
        *_PROVENANCE,
    ),
    "production_units": (
        *_KEY,
        Col("unit_id", "text", "Produced unit or batch id, unique per plant."),
        Col("machine_id", "label", "Machine that produced the unit."),
        Col("line", "label", "Production line.", nullable=True),
        Col("product", "label", "Product code / variant.", nullable=True),
        Col("material_lot", "text", "Material lot used.", nullable=True),
        Col("supplier", "label", "Material supplier.", nullable=True),
        Col(
            "operator_pseudonym",
            "text",
            "Keyed HMAC pseudonym of the operator/badge id (never the raw id).",
            nullable=True,
            checks=(pa.Check.str_startswith("op_"),),
        ),
        Col(
            "pseudonym_key_id",
            "label",
            "Id of the pseudonymisation key used (not the key).",
            nullable=True,
        ),
        Col("start_utc", "timestamp", "Start of the production window (UTC)."),
        Col("end_utc", "timestamp", "End of the production window (UTC)."),
        Col(
            "time_basis",
            "label",
            "'clock' for real timestamps, 'synthetic: ...' for a derived time index.",
        ),
        Col(
            "inspected_at_utc",
            "timestamp",
            "When the inspection outcome was recorded; empty while pending.",
            nullable=True,
        ),
        Col(
            "rework",
            "bool",
            "Inspection: sent to rework (empty while the outcome is pending).",
            nullable=True,
        ),
        Col(
            "scrap",
            "bool",
            "Inspection: scrapped (empty while the outcome is pending).",
            nullable=True,
        ),
        Col(
            "defect", "bool", "rework or scrap (empty while the outcome is pending).", nullable=True
        ),
        *_PROVENANCE,
    ),
    "unit_attributes": (
        Col("plant", "label", "Plant id (`data/plants/<plant>.yaml`)."),
        Col(
            "partition_date",
            "date",
            "The LOCAL production day of the unit the value belongs to (as in production_units).",
        ),
        Col(
            "unit_id", "text", "The unit or batch (production_units.unit_id) the value belongs to."
        ),
        Col(
            "quantity",
            "label",
            "Canonical quantity (data/standard/quantities.yaml, or the plant's own `quantities`) "
            "of a per-unit value: raw-material property, recipe set-point, certificate value.",
        ),
        Col(
            "value",
            "float",
            "The unit's value in the canonical unit of the quantity (one per unit and quantity).",
            checks=(pa.Check(np.isfinite, name="finite"),),
        ),
        Col("unit", "label", "Canonical unit (pint notation)."),
        *_PROVENANCE,
    ),
    "quarantine": (
        *_KEY,
        Col(
            "stream",
            "label",
            "Landing stream: readings, units, inspections or attributes.",
            checks=(pa.Check.isin(["readings", "units", "inspections", "attributes"]),),
        ),
        Col(
            "stage",
            "label",
            "Where it was caught: parse (reading the file) or standardize (the rules).",
            checks=(pa.Check.isin(["parse", "standardize"]),),
        ),
        *_PROVENANCE,
        Col(
            "source_column",
            "text",
            "Source column/field of the value, when one value is concerned.",
            nullable=True,
        ),
        Col(
            "scope",
            "label",
            "value, row (a whole record) or file.",
            checks=(pa.Check.isin(["value", "row", "file"]),),
        ),
        Col("rule", "label", "The rule that was broken (e.g. out_of_range, duplicate, encoding)."),
        Col(
            "severity",
            "label",
            "reject (held back) or warn (data flowed, the problem is recorded).",
            checks=(pa.Check.isin(["reject", "warn"]),),
        ),
        Col("message", "text", "Human-readable explanation naming file, row and rule."),
        Col(
            "value",
            "text",
            "Offending source value (truncated; never personal data).",
            nullable=True,
        ),
        Col(
            "n_items",
            "int",
            "How many source items this entry holds back (values for readings and attributes, "
            "records otherwise).",
            checks=(pa.Check.ge(0),),
        ),
    ),
}


def signal_sql(alias: str = "") -> str:
    """SQL: a sensor_readings row's signal - its quantity, or ``<quantity>@<channel>`` (as
    :func:`quality_platform.config.signal_name`)."""
    a = f"{alias}." if alias else ""
    return (
        f"CASE WHEN {a}channel IS NULL THEN {a}quantity "
        f"ELSE {a}quantity || '{CHANNEL_SEP}' || {a}channel END"
    )


# --------------------------------------------------------------------------- generic (any column list)


def columns_ddl(cols: Iterable[Col], schema: str, table: str) -> str:
    """CREATE TABLE IF NOT EXISTS for a column list."""
    body = ",\n  ".join(
        f'"{c.name}" {_TYPES[c.type][0]}{"" if c.nullable else " NOT NULL"}' for c in cols
    )
    return f'CREATE TABLE IF NOT EXISTS "{schema}"."{table}" (\n  {body}\n)'


def evolve_table(con: Any, cols: Iterable[Col], schema: str, table: str) -> list[str]:
    """Bring an existing table to a column list in place: a declared column it lacks is added
    (existing rows get NULL, or 0 for a non-nullable count: a plant that does not measure a new
    quantity has 0 readings of it). Columns are never dropped. Returns the added names; nothing
    happens to a table that does not exist."""
    have = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = ?",
            [schema, table],
        ).fetchall()
    }
    if not have:
        return []
    name = f"{quote_ident(schema)}.{quote_ident(table)}"
    added = [c for c in cols if c.name not in have]
    for c in added:
        default = " DEFAULT 0" if c.type == "int" and not c.nullable else ""
        con.execute(
            f"ALTER TABLE {name} ADD COLUMN {quote_ident(c.name)} {_TYPES[c.type][0]}{default}"
        )
    return [c.name for c in added]


def columns_pandera(
    cols: Iterable[Col],
    name: str,
    checks: list[pa.Check] | None = None,
    overrides: dict[str, pa.Column] | None = None,
) -> pa.DataFrameSchema:
    """Strict pandera schema of a column list (types, nulls, column checks, frame checks)."""
    columns = {
        c.name: pa.Column(_TYPES[c.type][2], nullable=c.nullable, checks=list(c.checks))
        for c in cols
    }
    columns.update(overrides or {})
    return pa.DataFrameSchema(columns, checks=checks or [], strict=True, ordered=False, name=name)


def columns_conform(df: pd.DataFrame, cols: Iterable[Col]) -> pd.DataFrame:
    """Cast a frame to the columns' in-memory dtypes and order. A nullable int column with missing
    values becomes pandas' nullable ``Int64`` (NULL in DuckDB); a non-nullable one refuses them."""
    out = {}
    for c in cols:
        s, target = df[c.name], _TYPES[c.type][1]
        if c.type == "int" and c.nullable and s.isna().any():
            target = "Int64"
        if target.startswith("datetime64") and isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        out[c.name] = s if str(s.dtype) == target else s.astype(target)
    return pd.DataFrame(out, index=df.index)


def columns_table_schema(cols: Iterable[Col]) -> dg.TableSchema:
    """Column schema for the Dagster catalog (``dagster/column_schema``)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                _TYPES[c.type][0].lower(),
                description=c.description,
                constraints=dg.TableColumnConstraints(nullable=c.nullable),
            )
            for c in cols
        ]
    )


# --------------------------------------------------------------------------- the standard tables


def duckdb_ddl(table: str, schema: str = "standard") -> str:
    """CREATE TABLE statement for a standard table."""
    return columns_ddl(TABLES[table], schema, table)


def pandera_schema(table: str, quantities: QuantityRegistry | None = None) -> pa.DataFrameSchema:
    """The pandera schema that gates ``table`` (strict: no missing or extra columns).

    For ``sensor_readings`` and ``unit_attributes`` with a quantity registry, it also checks that
    every quantity is canonical, in its canonical unit, and within its plausibility range.
    """
    checks: list[pa.Check] = []
    overrides: dict[str, pa.Column] = {}
    if table in ("sensor_readings", "unit_attributes") and quantities is not None:
        reg = quantities.quantities
        overrides["quantity"] = pa.Column(None, checks=[pa.Check.isin(sorted(reg))])

        def _plausible(df: pd.DataFrame) -> pd.Series:
            # Per-category lookups (a few categories, millions of rows): no per-row string work.
            q = df["quantity"].astype("category")
            u = df["unit"].astype("category")
            cats = list(q.cat.categories)
            lo = np.array([reg[c].min if c in reg else np.nan for c in cats] + [np.nan])
            hi = np.array([reg[c].max if c in reg else np.nan for c in cats] + [np.nan])
            want = np.array(
                [reg[c].unit if c in reg else None for c in cats] + [None], dtype=object
            )
            qc = q.cat.codes.to_numpy()  # -1 (missing) indexes the trailing NaN/None
            have = np.array([*u.cat.categories, None], dtype=object)[u.cat.codes.to_numpy()]
            v = df["value"].to_numpy()
            with np.errstate(invalid="ignore"):
                ok = (v >= lo[qc]) & (v <= hi[qc]) & (want[qc] == have)
            return pd.Series(ok, index=df.index)

        checks.append(pa.Check(_plausible, name="plausible_range_and_canonical_unit"))
    return columns_pandera(TABLES[table], table, checks, overrides)


def empty_frame(table: str) -> pd.DataFrame:
    """An empty frame with the table's columns and in-memory dtypes."""
    return pd.DataFrame({c.name: pd.Series(dtype=_TYPES[c.type][1]) for c in TABLES[table]})


def conform(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Cast a frame to the table's in-memory dtypes and column order."""
    return columns_conform(df, TABLES[table]).reset_index(drop=True)


def table_schema(table: str) -> dg.TableSchema:
    """Column schema for the Dagster catalog (``dagster/column_schema``)."""
    return columns_table_schema(TABLES[table])
