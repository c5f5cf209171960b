"""Raw -> canonical standard: mapping, unit conversion, UTC, pseudonymisation and the row rules.

Everything here is vectorised over a whole run's rows. Each source value ends in exactly one
place: the standard table, or the quarantine with the file, row, column and the rule it broke.
Rules (first that applies wins):

record level  missing_required_column, missing_machine, invalid_timestamp, nonexistent_local_time,
              timestamp_in_future, timestamp_outside_partition
value level   unknown_quantity, unit_label_mismatch, missing_value, not_a_number, out_of_range
then          duplicate (same machine, time and quantity; the first one is kept)
file level    unknown_column and missing_optional_column (warnings: data flows, problem recorded)

Unit attributes (the optional ``attributes`` stream, :func:`standardize_attributes`) join their
unit by id on the unit's day, as inspections do, with the value rules above and ``duplicate`` per
unit and quantity.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quality_platform.config import (
    PlantConfig,
    QualitySettings,
    QuantityRegistry,
)
from quality_platform.ingest.readers import parse_times
from quality_platform.privacy import key_id, pseudonymise
from quality_platform.standard.schemas import TABLES, conform, empty_frame
from quality_platform.units import convert

_HEADER_UNIT = re.compile(r"^(.*?)\s*\[(.*)\]\s*$")
_DECIMAL_COMMA = re.compile(r"^\s*-?\d+,\d+\s*$")
QUARANTINE_COLS = [c.name for c in TABLES["quarantine"]]


@dataclass
class StandardizeContext:
    """Everything the rules need besides the data."""

    plant: PlantConfig
    registry: QuantityRegistry
    quality: QualitySettings
    now_utc: pd.Timestamp
    pseudonym_key: bytes

    @property
    def future_limit(self) -> pd.Timestamp:
        return self.now_utc + pd.Timedelta(minutes=self.quality.future_tolerance_minutes)


# --------------------------------------------------------------------------- helpers


Detail = str | pd.Series | Callable[[pd.Index], "pd.Series | str"]


class RuleBook:
    """The first broken rule per row, with its explanation; explanations are only built for the
    rows that broke the rule (building text for every accepted row would dominate the cost)."""

    def __init__(self, index: pd.Index) -> None:
        self.rule = pd.Series(pd.NA, index=index, dtype="string")
        self.detail = pd.Series(pd.NA, index=index, dtype="string")
        self.column = pd.Series(pd.NA, index=index, dtype="string")
        self.value = pd.Series(pd.NA, index=index, dtype="string")

    def apply(
        self,
        mask: pd.Series,
        rule: str,
        detail: Detail,
        column: str | None = None,
        value: pd.Series | None = None,
    ) -> None:
        m = mask.fillna(False).astype(bool) & self.rule.isna()
        if not m.any():
            return
        idx = m.index[m.to_numpy()]
        self.rule[idx] = rule
        d = detail(idx) if callable(detail) else detail
        self.detail[idx] = d.loc[idx].astype("string") if isinstance(d, pd.Series) else d
        if column is not None:
            self.column[idx] = column
        if value is not None:
            self.value[idx] = value.loc[idx].astype("string")

    @property
    def ok(self) -> pd.Series:
        return self.rule.isna()


def split_header(name: str) -> tuple[str, str | None]:
    """'Temperatur [°C]' -> ('Temperatur', '°C'); a plain name has no unit label."""
    m = _HEADER_UNIT.match(name)
    return (m.group(1), m.group(2)) if m else (name, None)


def _local_dates(ts_utc: pd.Series, tz: Any) -> pd.Series:
    return ts_utc.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()


def _outside_partition(
    ts_utc: pd.Series, partition: pd.Series, tz: Any, grace_minutes: float
) -> pd.Series:
    """True where the local time lies outside [day start - grace, day end + grace)."""
    local = ts_utc.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None)
    day = pd.to_datetime(partition)
    g = pd.Timedelta(minutes=grace_minutes)
    return local.notna() & ((local < day - g) | (local >= day + pd.Timedelta(days=1) + g))


def quarantine_frame(rows: dict[str, Any] | pd.DataFrame) -> pd.DataFrame:
    """Quarantine entries in the canonical schema."""
    df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
    if df.empty:
        return empty_frame("quarantine")
    for c in QUARANTINE_COLS:
        if c not in df:
            df[c] = None
    df = df[QUARANTINE_COLS].copy()
    df["value"] = df["value"].astype("string").str.slice(0, 80)
    df["source_row"] = df["source_row"].fillna(0).astype("int64")
    df["n_items"] = df["n_items"].fillna(0).astype("int64")
    return conform(df, "quarantine")


def personal_streams(plant: PlantConfig, receipts: pd.DataFrame) -> set[str]:
    """The streams of ``plant`` whose files may carry personal data: a personal-data column is
    mapped by the stream's config or stands in a received file's header. In a misaligned file
    (e.g. two header names swapped) *any* value of such a stream may be a person's id."""
    personal = set(plant.personal_data)
    if not personal:
        return set()
    out = set()
    s = plant.streams
    mapped = {
        "units": set(s.units.fields.values()),
        "inspections": set(s.inspections.fields.values()),
        "readings": {m.field for m in s.readings.quantities.values()}
        | set(s.readings.parent_fields),
    }
    if s.attributes is not None:
        mapped["attributes"] = set(s.attributes.fields.values()) | {
            v.field for v in s.attributes.values.values()
        }
    for stream, cols in mapped.items():
        if cols & personal:
            out.add(stream)
    if not receipts.empty:
        for r in receipts.itertuples(index=False):
            if personal & set(json.loads(r.header)):
                out.add(r.stream)
    return out


def redact_personal(q: pd.DataFrame, streams: set[str], key: bytes) -> pd.DataFrame:
    """Quarantine entries of personal ``streams`` without any raw value: a row's value becomes its
    keyed pseudonym and its message is rebuilt from file, row, rule and column only (a message may
    quote any field of a misaligned record). File-level entries name columns and counts only and
    stay as they are. The data owner finds the original by file and row in the raw layer."""
    if q.empty or not streams:
        return q
    m = q["stream"].isin(list(streams)) & (q["scope"] != "file")
    if not m.any():
        return q
    q = q.copy()
    raw = q.loc[m, "value"].astype("string")
    has = raw.notna() & (raw != "")
    ps = pseudonymise(raw.where(has), key)
    col = q.loc[m, "source_column"].astype("string")
    q.loc[m, "message"] = [
        f"{f} row {r}: [{rule}] "
        + (f"column {c!r}: " if isinstance(c, str) else "")
        + (f"value {p} (pseudonym) " if isinstance(p, str) else "")
        + "held back; values of a stream with personal data are not shown outside the raw layer"
        for f, r, rule, c, p in zip(
            q.loc[m, "source_file"],
            q.loc[m, "source_row"],
            q.loc[m, "rule"],
            col.astype(object).where(col.notna(), None),
            ps.astype(object).where(ps.notna(), None),
            strict=True,
        )
    ]
    q.loc[m, "value"] = ps.where(has, None)
    return q


def _messages(file: pd.Series, row: pd.Series, rule: pd.Series, detail: pd.Series) -> pd.Series:
    return (
        file.astype("string")
        + " row "
        + row.astype("string")
        + ": ["
        + rule.astype("string")
        + "] "
        + detail.astype("string")
    )


def parse_issues_to_quarantine(issues: pd.DataFrame) -> pd.DataFrame:
    """Parse-stage issues from the raw layer, carried into the quarantine (no line text)."""
    if issues is None or issues.empty:
        return empty_frame("quarantine")
    df = issues.copy()
    df["stage"] = "parse"
    df["value"] = None  # raw line text may hold personal data: it stays in the restricted raw layer
    return quarantine_frame(df)


def _file_headers(receipts: pd.DataFrame) -> dict[str, list[str]]:
    return {r.source_file: json.loads(r.header) for r in receipts.itertuples()}


# --------------------------------------------------------------------------- readings
# Readings (the bulk of the data) are standardised inside DuckDB: see readings_sql.py.


def _file_entry(
    raw: pd.DataFrame,
    idx: Any,
    rule: str,
    detail: str,
    *,
    n_items: int,
    scope: str,
    severity: str = "reject",
    column: str | None = None,
    row: int | None = None,
    stream: str = "readings",
) -> pd.DataFrame:
    first = raw.loc[idx[0]] if len(idx) else None
    f = str(first["_source_file"]) if first is not None else ""
    r = row if row is not None else 1
    return pd.DataFrame(
        [
            {
                "plant": first["plant"],
                "partition_date": first["partition_date"],
                "stream": stream,
                "stage": "standardize",
                "source_file": f,
                "source_row": r,
                "source_column": column,
                "scope": scope,
                "rule": rule,
                "severity": severity,
                "message": f"{f} row {r}: [{rule}] {detail}",
                "value": None,
                "n_items": n_items,
            }
        ]
    )


# --------------------------------------------------------------------------- units + inspections

_REQUIRED_UNIT_FIELDS = ("unit_id", "machine_id", "start")


def standardize_units(
    units_raw: pd.DataFrame,
    units_receipts: pd.DataFrame,
    insp_raw: pd.DataFrame,
    insp_receipts: pd.DataFrame,
    ctx: StandardizeContext,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw units + raw inspections -> (production_units with outcomes when known, quarantine)."""
    units, q1 = _units(units_raw, units_receipts, ctx)
    units, q2 = _attach_inspections(units, insp_raw, insp_receipts, ctx)
    qs = [q for q in (q1, q2) if not q.empty]
    return units, (pd.concat(qs, ignore_index=True) if qs else empty_frame("quarantine"))


def _field_series(raw: pd.DataFrame, name: str | None) -> pd.Series:
    if name is None or name not in raw:
        return pd.Series(pd.NA, index=raw.index, dtype="string")
    return raw[name].astype("string")


def _header_problems(
    raw: pd.DataFrame,
    receipts: pd.DataFrame,
    mapped: dict[str, str],
    required: tuple[str, ...],
    ignore: list[str],
    stream: str,
) -> tuple[pd.Series, list[pd.DataFrame]]:
    """Per file: required columns missing (records rejected) and unknown columns (warnings)."""
    headers = _file_headers(receipts)
    reject = pd.Series(False, index=raw.index)
    entries = []
    files = raw["_source_file"].astype("string")
    for f, idx in raw.groupby(files, sort=False).groups.items():
        header = headers.get(f, [])
        missing = [mapped[k] for k in required if k in mapped and mapped[k] not in header]
        dups = [v for v in dict.fromkeys(mapped.values()) if v and header.count(v) > 1]
        if missing:
            reject[idx] = True
            entries.append(
                _file_entry(
                    raw,
                    idx,
                    "missing_required_column",
                    f"required column(s) {missing} missing from the header; "
                    f"all {len(idx)} records held back",
                    n_items=len(idx),
                    scope="file",
                    stream=stream,
                )
            )
        elif dups:  # which copy holds a record's value is unknown
            reject[idx] = True
            entries.append(
                _file_entry(
                    raw,
                    idx,
                    "duplicate_column",
                    f"column(s) {dups} appear more than once in the header; which copy "
                    f"is meant is unknown, so all {len(idx)} records are held back",
                    n_items=len(idx),
                    scope="file",
                    column=dups[0],
                    stream=stream,
                )
            )
        opt_missing = [v for k, v in mapped.items() if k not in required and v not in header]
        for c in opt_missing:
            entries.append(
                _file_entry(
                    raw,
                    idx[:1],
                    "missing_optional_column",
                    f"optional column {c!r} missing; the field is left empty",
                    n_items=0,
                    scope="file",
                    severity="warn",
                    column=c,
                    stream=stream,
                )
            )
        for h in dict.fromkeys(header):
            if h not in mapped.values() and h not in ignore:
                entries.append(
                    _file_entry(
                        raw,
                        idx[:1],
                        "unknown_column",
                        f"column {h!r} is not in the plant config; kept in the raw layer "
                        "and ignored by the standard",
                        n_items=0,
                        scope="file",
                        severity="warn",
                        column=h,
                        stream=stream,
                    )
                )
            if header.count(h) > 1 and h not in mapped.values():
                entries.append(
                    _file_entry(
                        raw,
                        idx[:1],
                        "duplicate_column",
                        f"column {h!r} appears {header.count(h)} times in the header; the "
                        "copies are kept in the raw layer and ignored by the standard",
                        n_items=0,
                        scope="file",
                        severity="warn",
                        column=h,
                        stream=stream,
                    )
                )
    return reject, entries


def _row_quarantine(
    raw: pd.DataFrame,
    mask: pd.Series,
    rule: pd.Series,
    detail: pd.Series,
    column: pd.Series | None,
    value: pd.Series | None,
    stream: str,
    plant: str,
) -> pd.DataFrame:
    if not mask.any():
        return empty_frame("quarantine")
    r = raw[mask]
    return quarantine_frame(
        {
            "plant": plant,
            "partition_date": r["partition_date"].to_numpy(),
            "stream": stream,
            "stage": "standardize",
            "source_file": r["_source_file"].to_numpy(),
            "source_row": r["_source_row"].to_numpy(),
            "source_column": None if column is None else column[mask].to_numpy(),
            "scope": "row",
            "rule": rule[mask].to_numpy(),
            "severity": "reject",
            "message": _messages(
                r["_source_file"], r["_source_row"], rule[mask], detail[mask]
            ).to_numpy(),
            "value": None if value is None else value[mask].to_numpy(),
            "n_items": 1,
        }
    )


def _units(
    raw: pd.DataFrame, receipts: pd.DataFrame, ctx: StandardizeContext
) -> tuple[pd.DataFrame, pd.DataFrame]:
    plant, spec = ctx.plant, ctx.plant.streams.units
    if raw.empty:
        return empty_frame("production_units"), empty_frame("quarantine")
    raw = raw.reset_index(drop=True)
    f = dict(spec.fields)
    seq = spec.timestamp.kind == "sequence"
    mapped = {k: v for k, v in f.items()}
    if seq:
        mapped["start"] = spec.timestamp.field
    needed = _REQUIRED_UNIT_FIELDS if seq else (*_REQUIRED_UNIT_FIELDS, "end")
    required = tuple(k for k in needed if k not in spec.constants)
    reject_file, entries = _header_problems(
        raw, receipts, mapped, required, spec.ignore_fields, "units"
    )

    def val(k: str) -> pd.Series:
        if k in spec.constants:
            return pd.Series(spec.constants[k], index=raw.index, dtype="string")
        return _field_series(raw, mapped.get(k))

    unit_id = val("unit_id")
    machine = val("machine_id")
    start_txt = val("start")
    start, ne1 = parse_times(start_txt, spec.timestamp, plant.tz, group=machine)
    if seq:
        end = start + pd.Timedelta(seconds=spec.timestamp.step_seconds)
        ne2 = pd.Series(False, index=raw.index)
        end_txt = start_txt
    else:
        end_txt = val("end")
        end, ne2 = parse_times(end_txt, spec.timestamp, plant.tz, group=machine)
    part = pd.to_datetime(raw["partition_date"])
    rb = RuleBook(raw.index)
    rule, detail, column, value = rb.rule, rb.detail, rb.column, rb.value
    _set = rb.apply

    rule[reject_file] = "missing_required_column"  # already reported once per file
    _set(
        unit_id.isna() | (unit_id.str.strip() == ""),
        "missing_value",
        "unit id is empty",
        mapped.get("unit_id"),
    )
    _set(
        machine.isna() | (machine.str.strip() == ""),
        "missing_machine",
        "machine is empty",
        mapped.get("machine_id"),
    )
    _set(
        ~machine.isin(plant.machines),
        "unknown_machine",
        "machine '"
        + machine.fillna("")
        + f"' is not one of the plant's machines (plant config 'machines' "
        f"of {plant.plant_id})",
        mapped.get("machine_id"),
        machine,
    )
    _set(
        ne1 | ne2,
        "nonexistent_local_time",
        f"local time does not exist in {plant.timezone} (DST gap)",
        mapped.get("start"),
        start_txt,
    )
    _set(
        start.isna(),
        "invalid_timestamp",
        "start time '" + start_txt.fillna("") + "' is not a valid time",
        mapped.get("start"),
        start_txt,
    )
    _set(
        end.isna(),
        "invalid_timestamp",
        "end time '" + end_txt.fillna("") + "' is not a valid time",
        mapped.get("end"),
        end_txt,
    )
    _set(end < start, "invalid_window", "end time is before start time", mapped.get("end"), end_txt)
    _set(
        start > ctx.future_limit.tz_localize(None),
        "timestamp_in_future",
        "start " + start.astype("string") + " UTC is after now",
        mapped.get("start"),
        start_txt,
    )
    _set(
        _outside_partition(start, part, plant.tz, ctx.quality.partition_grace_minutes),
        "timestamp_outside_partition",
        "start "
        + start.astype("string")
        + " UTC is not on the file's local day "
        + part.dt.strftime("%Y-%m-%d"),
        mapped.get("start"),
        start_txt,
    )
    ok = rule.isna()
    dup = unit_id.where(ok).duplicated(keep="first") & ok & unit_id.notna()
    _set(
        dup,
        "duplicate",
        "unit id '" + unit_id.fillna("") + "' delivered twice; the first is kept",
        mapped.get("unit_id"),
        unit_id,
    )
    ok = rule.isna() & ~reject_file
    key = ctx.pseudonym_key
    op = (
        pseudonymise(val("operator"), key)
        if "operator" in mapped
        else pd.Series(pd.NA, index=raw.index, dtype="string")
    )
    time_basis = (
        "clock"
        if not seq
        else f"synthetic: {spec.timestamp.field} x {spec.timestamp.step_seconds:g} s from {spec.timestamp.start}"
    )
    units = pd.DataFrame(
        {
            "plant": plant.plant_id,
            "partition_date": raw["partition_date"],
            "unit_id": unit_id,
            "machine_id": machine,
            "line": val("line"),
            "product": val("product"),
            "material_lot": val("material_lot"),
            "supplier": val("supplier"),
            "operator_pseudonym": op,
            "pseudonym_key_id": key_id(key) if "operator" in mapped else None,
            "start_utc": start,
            "end_utc": end,
            "time_basis": time_basis,
            "inspected_at_utc": pd.NaT,
            "rework": pd.NA,
            "scrap": pd.NA,
            "defect": pd.NA,
            "source_file": raw["_source_file"],
            "source_row": raw["_source_row"],
        }
    )[ok]
    q = _row_quarantine(
        raw, rule.notna() & ~reject_file, rule, detail, column, value, "units", plant.plant_id
    )
    qs = [q, *entries]
    return conform(units, "production_units"), pd.concat(
        [x for x in qs if not x.empty] or [q], ignore_index=True
    )


def _attach_inspections(
    units: pd.DataFrame, raw: pd.DataFrame, receipts: pd.DataFrame, ctx: StandardizeContext
) -> tuple[pd.DataFrame, pd.DataFrame]:
    plant, spec = ctx.plant, ctx.plant.streams.inspections
    if raw.empty:
        return units, empty_frame("quarantine")
    raw = raw.reset_index(drop=True)
    mapped: dict[str, str] = dict(spec.fields)
    seq = spec.timestamp.kind == "sequence"
    if seq:
        mapped["inspected_at"] = spec.timestamp.field
    out = spec.outcome
    if out.flags:
        for k, v in out.flags.items():
            mapped[f"flag_{k}"] = v
    elif out.rules:
        for f in out.measured_fields:
            mapped[f"measured:{f}"] = f
    else:
        mapped["outcome"] = out.field
    required = tuple(mapped)
    reject_file, entries = _header_problems(
        raw, receipts, mapped, required, spec.ignore_fields, "inspections"
    )
    unit_id = _field_series(raw, mapped["unit_id"])
    at_txt = _field_series(raw, mapped["inspected_at"])
    at, ne = parse_times(at_txt, spec.timestamp, plant.tz)
    rb = RuleBook(raw.index)
    rule, detail, column, value = rb.rule, rb.detail, rb.column, rb.value
    _set = rb.apply

    rule[reject_file] = "missing_required_column"
    rework = pd.Series(False, index=raw.index)
    scrap = pd.Series(False, index=raw.index)
    if out.flags:
        for k, src in out.flags.items():
            t = _field_series(raw, src).str.strip()
            yes = pd.Series(t.isin(["1", "1.0", "true"]).to_numpy(bool), index=raw.index)
            _set(
                ~(yes | t.isin(["0", "0.0", "false"]).to_numpy(bool)),
                "invalid_flag",
                f"flag {src!r} must be 0 or 1, found '" + t.fillna("empty") + "'",
                src,
                t,
            )
            (rework if k == "rework" else scrap).loc[:] = yes
    elif out.rules:
        measured = {}
        for f in out.measured_fields:
            t = _field_series(raw, f).str.strip()
            v = pd.to_numeric(t, errors="coerce")
            _set(
                v.isna(),
                "invalid_measurement",
                f"measurement {f!r} decides the outcome and must be a number, found '"
                + t.fillna("empty")
                + "'",
                f,
                t,
            )
            measured[f] = v
        rw, sc = out.rule_outcome(measured)
        rework |= rw
        scrap |= sc
    else:
        t = _field_series(raw, out.field).str.strip()
        o = t.map(out.values)
        _set(
            o.isna(),
            "unknown_outcome",
            f"outcome {out.field!r} value '"
            + t.fillna("empty")
            + f"' is not one of {sorted(out.values)}",
            out.field,
            t,
        )
        rework[:] = (o == "rework").fillna(False)
        scrap[:] = (o == "scrap").fillna(False)
    _set(
        unit_id.isna() | (unit_id.str.strip() == ""),
        "missing_value",
        "unit id is empty",
        mapped["unit_id"],
    )
    _set(
        ne,
        "nonexistent_local_time",
        "inspection time does not exist (DST gap)",
        mapped["inspected_at"],
        at_txt,
    )
    _set(
        at.isna(),
        "invalid_timestamp",
        "inspection time '" + at_txt.fillna("") + "' is not a valid time",
        mapped["inspected_at"],
        at_txt,
    )
    _set(
        at > ctx.future_limit.tz_localize(None),
        "timestamp_in_future",
        "inspection time " + at.astype("string") + " UTC is after now",
        mapped["inspected_at"],
        at_txt,
    )
    raw_pd = pd.to_datetime(raw["partition_date"]).dt.date
    keys = _keyset(units)
    known = pd.Series([k in keys for k in zip(raw_pd, unit_id, strict=True)], index=raw.index)
    _set(
        ~known,
        "unknown_unit",
        "unit '" + unit_id.fillna("") + "' is not among the units of this day",
        mapped["unit_id"],
        unit_id,
    )
    ok = rule.isna()
    # Several outcomes for one unit: the latest inspection wins, earlier ones are quarantined.
    order = pd.DataFrame({"u": unit_id, "at": at, "i": raw.index})[ok].sort_values(["u", "at", "i"])
    superseded = order.duplicated("u", keep="last")
    sup_idx = order.index[superseded]
    m = pd.Series(False, index=raw.index)
    m[sup_idx] = True
    _set(
        m,
        "duplicate",
        "unit '" + unit_id.fillna("") + "' has a later inspection; this one is superseded",
        mapped["unit_id"],
        unit_id,
    )
    ok = rule.isna() & ~reject_file
    res = pd.DataFrame(
        {
            "unit_id": unit_id[ok],
            "inspected_at_utc": at[ok],
            "rework": rework[ok],
            "scrap": scrap[ok],
            "partition_date": raw_pd[ok],
        }
    )
    u = units.copy()
    u["_pd"] = pd.to_datetime(u["partition_date"]).dt.date
    merged = u.drop(columns=["inspected_at_utc", "rework", "scrap", "defect"]).merge(
        res.rename(columns={"partition_date": "_pd"}), on=["_pd", "unit_id"], how="left"
    )
    merged["defect"] = merged["rework"].astype("boolean") | merged["scrap"].astype("boolean")
    merged.loc[merged["inspected_at_utc"].isna(), "defect"] = pd.NA
    q = _row_quarantine(
        raw, rule.notna() & ~reject_file, rule, detail, column, value, "inspections", plant.plant_id
    )
    qs = [x for x in (q, *entries) if not x.empty]
    return (
        conform(merged.drop(columns="_pd"), "production_units"),
        pd.concat(qs, ignore_index=True) if qs else empty_frame("quarantine"),
    )


def _keyset(units: pd.DataFrame) -> set[tuple[dt.date, str]]:
    return set(zip(pd.to_datetime(units["partition_date"]).dt.date, units["unit_id"], strict=True))


# --------------------------------------------------------------------------- unit attributes


def standardize_attributes(
    raw: pd.DataFrame, receipts: pd.DataFrame, units: pd.DataFrame, ctx: StandardizeContext
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw attribute records -> (unit_attributes, quarantine).

    A record carries one value per declared quantity. It is on its unit's day as an inspection is
    (a file per day: the file's day; one file for many days: the unit's day in the units file,
    :func:`quality_platform.ingest.readers.record_days`), and its unit must be among that day's
    accepted units (``unknown_unit``, as for inspections). Record rules (the whole record, all its
    values, held back once naming the unit id column): missing_required_column, duplicate_column,
    missing_value (no unit id), unknown_unit. Value rules (one entry per value, naming its
    column): missing_value, not_a_number, out_of_range (after conversion by pint into the
    quantity's canonical unit), then duplicate (the unit already has that quantity from an
    earlier file/row; the first one is kept)."""
    plant, spec = ctx.plant, ctx.plant.streams.attributes
    if spec is None or raw.empty:
        return empty_frame("unit_attributes"), empty_frame("quarantine")
    stream = "attributes"
    k = len(spec.values)
    raw = raw.sort_values(["partition_date", "_source_file", "_source_row"], kind="stable")
    raw = raw.reset_index(drop=True)
    uid_field = spec.fields["unit_id"]
    mapped = {"unit_id": uid_field, **{f"value:{q}": v.field for q, v in spec.values.items()}}
    reject_file, entries = _header_problems(
        raw, receipts, mapped, tuple(mapped), spec.ignore_fields, stream
    )
    for e in entries:  # a held-back record holds back all its values
        e.loc[e["severity"] == "reject", "n_items"] *= k
    unit_id = _field_series(raw, uid_field)
    rb = RuleBook(raw.index)
    rb.rule[reject_file] = "missing_required_column"  # reported once per file above
    rb.apply(
        unit_id.isna() | (unit_id.str.strip() == ""),
        "missing_value",
        f"unit id is empty; the record's {k} value(s) are held back",
        uid_field,
    )
    day = pd.to_datetime(raw["partition_date"]).dt.date
    keys = _keyset(units)
    known = pd.Series([x in keys for x in zip(day, unit_id, strict=True)], index=raw.index)
    rb.apply(
        ~known,
        "unknown_unit",
        "unit '"
        + unit_id.fillna("")
        + f"' is not among the units of this day; the record's {k} value(s) are held back",
        uid_field,
        unit_id,
    )
    held = rb.rule.notna() & ~reject_file
    q_rec = _row_quarantine(
        raw, held, rb.rule, rb.detail, rb.column, rb.value, stream, plant.plant_id
    )
    if not q_rec.empty:
        q_rec["n_items"] = k
    ok = rb.rule.isna()

    # one row per (record, quantity): the values of the records that passed, in file order
    reg = ctx.registry
    parts = []
    for q, v in spec.values.items():
        canon = reg.quantities[q]
        text = _field_series(raw, v.field)[ok]
        parts.append(
            pd.DataFrame(
                {
                    "_i": text.index,
                    "quantity": q,
                    "column": v.field,
                    "text": text,
                    "value": convert(
                        pd.to_numeric(text.str.strip(), errors="coerce").to_numpy("float64"),
                        reg.pint_unit(v.unit),
                        canon.unit,
                    ),
                    "unit": canon.unit,
                    "lo": canon.min,
                    "hi": canon.max,
                }
            )
        )
    long = pd.concat(parts).sort_values(["_i"], kind="stable").reset_index(drop=True)
    rec = raw.loc[long["_i"]].reset_index(drop=True)
    long["unit_id"] = unit_id.loc[long["_i"]].to_numpy()
    vb = RuleBook(long.index)
    text = long["text"].astype("string")
    val = long["value"]
    blank = text.isna() | text.str.strip().isin(["", "nan", "NaN", "null", "none", "None"])
    vb.apply(blank, "missing_value", "column '" + long["column"] + "': value is missing", None)
    vb.apply(
        val.isna(),
        "not_a_number",
        lambda idx: (
            "column '"
            + long.loc[idx, "column"]
            + "': value '"
            + text[idx].fillna("")
            + "' is not a number"
            + pd.Series(
                np.where(
                    text[idx].fillna("").str.match(_DECIMAL_COMMA).astype(bool),
                    " (decimal comma? the standard expects '.')",
                    "",
                ),
                index=idx,
                dtype="string",
            )
        ),
    )
    vb.apply(
        ~np.isfinite(val) | (val < long["lo"]) | (val > long["hi"]),
        "out_of_range",
        lambda idx: (
            "column '"
            + long.loc[idx, "column"]
            + "': value "
            + text[idx]
            + " ("
            + val[idx].round(4).astype("string")
            + " "
            + long.loc[idx, "unit"]
            + ") outside the plausible range ["
            + long.loc[idx, "lo"].astype("string")
            + ", "
            + long.loc[idx, "hi"].astype("string")
            + "] of "
            + long.loc[idx, "quantity"]
        ),
    )
    good = vb.rule.isna()
    first = (
        pd.DataFrame({"u": long["unit_id"], "q": long["quantity"]})[good]
        .groupby(["u", "q"], sort=False)
        .cumcount()
    )
    dup = pd.Series(False, index=long.index)
    dup[first.index[first.to_numpy() > 0]] = True
    vb.apply(
        dup,
        "duplicate",
        "unit '"
        + long["unit_id"].astype("string")
        + "' already has "
        + long["quantity"]
        + " from an earlier record; the first is kept",
    )
    vb.column[:] = long["column"].to_numpy()
    vb.value[:] = text.to_numpy()
    q_val = _row_quarantine(
        rec, vb.rule.notna(), vb.rule, vb.detail, vb.column, vb.value, stream, plant.plant_id
    )
    if not q_val.empty:
        q_val["scope"] = "value"
    acc = vb.rule.isna()
    out = pd.DataFrame(
        {
            "plant": plant.plant_id,
            "partition_date": rec["partition_date"],
            "unit_id": long["unit_id"],
            "quantity": long["quantity"],
            "value": long["value"],
            "unit": long["unit"],
            "source_file": rec["_source_file"],
            "source_row": rec["_source_row"],
        }
    )[acc]
    qs = [x for x in (q_rec, q_val, *entries) if not x.empty]
    return conform(out, "unit_attributes"), (
        pd.concat(qs, ignore_index=True) if qs else empty_frame("quarantine")
    )
