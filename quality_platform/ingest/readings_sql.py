"""Raw readings -> sensor_readings, executed inside DuckDB.

Readings are the bulk of the data (millions of values a day across plants), so their rules run as
one vectorised SQL statement over the raw table instead of row-wise Python: per-file decisions
(which column holds which quantity, unit labels in headers, unknown columns) are made in Python
once per file, time parsing in pandas once per *distinct* timestamp text, unit conversion factors
by pint once per quantity; everything per value is SQL. Rules and their order are those listed in
``quality_platform.ingest.standardize``.

Layouts: ``wide`` (a column per quantity), ``long`` (a record per value) and ``array`` (a record
per production cycle, a column per sample: every sample column becomes one value, unpivoted in
SQL, at the record's time + the sample's offset, see ``ReadingsStream.sample_columns``). A record
is on its partition by its own time (a cycle's start), so a long cycle's later samples may lie
past the day's end; a sample in the future is held back all the same.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from quality_platform.config import MAX_ELAPSED_SECONDS, RECORD_ROLES, from_file_name
from quality_platform.ingest.readers import items_per_record, parse_times
from quality_platform.ingest.standardize import StandardizeContext, quarantine_frame, split_header
from quality_platform.standard.schemas import conform, empty_frame
from quality_platform.units import affine
from quality_platform.warehouse import key_predicate, table_exists
from quality_platform.warehouse import quote_ident as _ident
from quality_platform.warehouse import quote_literal as _lit


@dataclass
class _Projection:
    files: list[str]
    quantity: str | None  # None: from the signal map (long layout)
    column: str
    label: str | None
    offset_us: int = 0  # the column's time after the record's (array layout: a sample's offset)


def _offset_us(seconds: float) -> int:
    """A sample's offset from its record's time, in whole microseconds (the standard's grain)."""
    return round(seconds * 1_000_000)


#: columns the raw relation of a readings stream gains from its file names (see :func:`_relation`)
FILE_BATCH, FILE_MACHINE = "_qp_batch", "_qp_machine"


def _from_file_names(file: str, spec: Any) -> tuple[dict[str, str | None], str | None]:
    """What a file's name gives its records ({raw relation column: value}: the batch id and/or
    machine by ``from_filename``), or the reason it gives nothing (its records are held back)."""
    found: dict[str, str | None] = {}
    for col, pattern, group, where in (
        (FILE_BATCH, spec.batch.from_filename if spec.batch else None, "batch", "batch"),
        (FILE_MACHINE, spec.machine.from_filename, "machine", "machine"),
    ):
        if pattern is None:
            continue
        found[col] = from_file_name(pattern, group, file)
        if found[col] is None:
            return found, (
                f"the file name does not give the {group} id: streams.readings.{where}."
                f"from_filename {pattern!r} does not match {file!r}"
            )
    return found, None


def _file_plan(
    receipts: pd.DataFrame, ctx: StandardizeContext
) -> tuple[list[_Projection], list[dict[str, Any]], pd.DataFrame]:
    """Per file: where each quantity is, file-level findings (missing/unknown columns, labels, a
    file name that does not give its batch or machine) and what file names give (a frame with
    ``_source_file`` and :data:`FILE_BATCH` / :data:`FILE_MACHINE`, one row per usable file)."""
    spec = ctx.plant.streams.readings
    # the fields every record needs, each with its role in the plant config
    required = {
        f: f"the {RECORD_ROLES[role]}, streams.readings.{role}" for role, f in spec.record_fields()
    }
    used = {*required, *spec.parent_fields, *spec.ignore_fields}
    by_name: dict[str, dict[str, str | None]] = {}
    ignored_bases = {split_header(x)[0] for x in spec.ignore_fields}
    by_key: dict[tuple[str | None, str, str | None, int], list[str]] = {}
    k = items_per_record(ctx.plant, "readings")
    entries: list[dict[str, Any]] = []

    def entry(
        r: Any, rule: str, detail: str, n: int, column: str | None, severity: str = "reject"
    ) -> None:
        entries.append(
            {
                "plant": r.plant,
                "partition_date": r.partition_date,
                "stream": "readings",
                "stage": "standardize",
                "source_file": r.source_file,
                "source_row": 1,
                "source_column": column,
                "scope": "file",
                "rule": rule,
                "severity": severity,
                "message": f"{r.source_file} row 1: [{rule}] {detail}",
                "value": None,
                "n_items": n,
            }
        )

    for r in receipts.itertuples(index=False):
        header = json.loads(r.header)
        n = int(r.records)
        if n == 0:  # nothing parsed (empty, or rejected whole at parse): already reported there
            continue
        base_of = {h: split_header(h) if spec.header_units else (h, None) for h in header}
        known = set(used)
        record_fields = list(required)
        if spec.layout == "long":
            record_fields += [spec.long.quantity_field, spec.long.value_field, spec.long.unit_field]
        dup = [f for f in record_fields if f and header.count(f) > 1]
        lost = [f for f in required if f not in header]
        named, bad_name = _from_file_names(r.source_file, spec)
        if bad_name is not None:  # no record's batch or machine is known
            entry(r, "invalid_file_name", f"{bad_name}; all {n} records held back", n * k, None)
            continue
        if dup or lost:  # no record's machine/time/value is known: hold all back, naming the field
            col = (dup or lost)[0]
            rule, detail = (
                (
                    "duplicate_column",
                    f"column {col!r} appears {header.count(col)} times in the header; "
                    f"which one is meant is unknown, so all {n} records are held back",
                )
                if dup
                else (
                    "missing_required_column",
                    f"column {col!r} ({required[col]}) "
                    f"is missing from the header; all {n} records held back",
                )
            )
            entry(r, rule, detail, n * k, col)
            continue
        if named:
            by_name[r.source_file] = named
        if spec.layout == "long":
            lg = spec.long
            need = [lg.quantity_field, lg.value_field] + ([lg.unit_field] if lg.unit_field else [])
            known |= set(need)
            missing = [c for c in need if c not in header]
            if missing:
                entry(
                    r,
                    "missing_required_column",
                    f"required column(s) {missing} missing from the header; "
                    f"all {n} records held back",
                    n,
                    None,
                )
            else:
                by_key.setdefault((None, lg.value_field, None, 0), []).append(r.source_file)
        elif spec.layout == "array":
            known |= _plan_array(r, header, base_of, n, entry, by_key, spec)
        else:
            for q, m in spec.quantities.items():
                cols = [h for h, (b, _) in base_of.items() if b == m.field]
                col = cols[0] if cols else None
                known.add(col or m.field)
                if len(cols) > 1 or header.count(col) > 1:
                    entry(
                        r,
                        "duplicate_column",
                        f"quantity column {m.field!r} ({q}) appears "
                        f"{max(len(cols), header.count(col))} times in the header; which one holds the values "
                        f"is unknown, so its {n} values are held back",
                        n,
                        m.field,
                    )
                elif col is None:
                    entry(
                        r,
                        "missing_required_column",
                        f"quantity column {m.field!r} ({q}) is missing from the "
                        f"header; its {n} values are held back",
                        n,
                        m.field,
                    )
                elif spec.header_units and base_of[col][1] != m.unit:
                    entry(
                        r,
                        "unit_label_mismatch",
                        f"column {col!r} is labelled [{base_of[col][1]}] but the plant "
                        f"config declares {m.unit!r} for {m.field!r}; its {n} values are held back (change the "
                        "plant config if the plant really changed units)",
                        n,
                        col,
                    )
                else:
                    by_key.setdefault((q, col, m.unit, 0), []).append(r.source_file)
        for h in dict.fromkeys(header):
            if h not in known and base_of[h][0] not in ignored_bases:
                entry(
                    r,
                    "unknown_column",
                    f"column {h!r} is not in the plant config; it is kept in the raw "
                    "layer and ignored by the standard",
                    0,
                    h,
                    severity="warn",
                )
            elif header.count(h) > 1 and h not in known:
                entry(
                    r,
                    "duplicate_column",
                    f"column {h!r} appears {header.count(h)} times in the header; "
                    "the copies are kept in the raw layer (as '<name>.1', ...) and ignored by the standard",
                    0,
                    h,
                    severity="warn",
                )
    plan = [
        _Projection(sorted(set(files)), q, col, label, off)
        for (q, col, label, off), files in by_key.items()
    ]
    names = pd.DataFrame(
        [{"_source_file": f, **v} for f, v in by_name.items()],
        columns=["_source_file", FILE_BATCH, FILE_MACHINE],
    ).astype("string")
    return plan, entries, names


def _plan_array(
    r: Any,
    header: list[str],
    base_of: dict[str, tuple[str, str | None]],
    n: int,
    entry: Any,
    by_key: dict[tuple[str | None, str, str | None, int], list[str]],
    spec: Any,
) -> set[str]:
    """The array layout's part of a file's plan: every sample column of every quantity found once
    in ``header`` is projected with its offset; a sample column the file lacks, has twice or labels
    with another unit holds back its ``n`` values (one entry naming the column; one entry naming
    the family when the file has none of its columns). Returns the header names it placed."""
    found: dict[str, list[str]] = {}
    for h, (b, _) in base_of.items():
        found.setdefault(b, []).append(h)
    placed: set[str] = set()
    for q, m in spec.quantities.items():
        where = f"sample column(s) of {q} (streams.readings.quantities.{q}.field {m.field!r})"
        samples = spec.sample_columns(q)
        missing = [name for name, _ in samples if name not in found]
        if len(missing) == len(samples):
            entry(
                r,
                "missing_required_column",
                f"none of the {len(samples)} {where} is in the header ({samples[0][0]!r} ... "
                f"{samples[-1][0]!r}); its {n} x {len(samples)} values are held back",
                n * len(samples),
                m.field,
            )
            continue
        for name, off in samples:
            cols = found.get(name, [])
            placed.update(cols)
            if not cols:
                entry(
                    r,
                    "missing_required_column",
                    f"{where}: {name!r} is missing from the header; its {n} values are held back",
                    n,
                    name,
                )
            elif len(cols) > 1 or header.count(cols[0]) > 1:
                entry(
                    r,
                    "duplicate_column",
                    f"{where}: {name!r} appears {max(len(cols), header.count(cols[0]))} times in "
                    f"the header; which one holds the values is unknown, so its {n} values are "
                    "held back",
                    n,
                    name,
                )
            elif spec.header_units and base_of[cols[0]][1] != m.unit:
                entry(
                    r,
                    "unit_label_mismatch",
                    f"column {cols[0]!r} is labelled [{base_of[cols[0]][1]}] but the plant config "
                    f"declares {m.unit!r} for {m.field!r}; its {n} values are held back (change "
                    "the plant config if the plant really changed units)",
                    n,
                    cols[0],
                )
            else:
                by_key.setdefault((q, cols[0], m.unit, _offset_us(off)), []).append(r.source_file)
    return placed


def _times(con: Any, ctx: StandardizeContext) -> pd.DataFrame:
    """UTC time per distinct (timestamp text, occurrence) of ``_values``, parsed once per distinct text.

    Local times in the autumn fall-back hour occur twice per machine; only for those texts the
    occurrence (1st = daylight time, 2nd = standard time, in file order) is computed, in SQL. The
    time of one file per batch with ``elapsed_seconds`` is its batch's start, shared by all its
    rows: there the occurrence counts batches, not rows.
    """
    rs = ctx.plant.streams.readings
    spec = rs.timestamp
    per = "batch" if rs.batch is not None and rs.batch.elapsed_seconds else "_source_row"
    text = con.sql("SELECT DISTINCT ts_text FROM _values").df()["ts_text"].astype("string")
    if spec.kind != "local":
        ts, nonexistent = parse_times(text, spec, ctx.plant.tz)
        return pd.DataFrame(
            {
                "ts_text": text,
                "occ": 1,
                "ts_utc": ts.astype("datetime64[us]"),
                "nonexistent": nonexistent.astype(bool),
            }
        )
    naive = pd.to_datetime(text, format=spec.format, errors="coerce")
    probe = naive.dt.tz_localize(ctx.plant.tz, ambiguous="NaT", nonexistent="NaT")
    gap = (
        naive.notna() & naive.dt.tz_localize(ctx.plant.tz, ambiguous=True, nonexistent="NaT").isna()
    )
    ambiguous = naive.notna() & probe.isna() & ~gap
    if ambiguous.any():
        texts = ", ".join(_lit(t) for t in text[ambiguous])
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _values AS
            SELECT * REPLACE (dense_rank() OVER (PARTITION BY machine, occ_key, quantity, ts_text
                                 ORDER BY partition_date, _source_file, {per}) AS occ)
            FROM _values WHERE ts_text IN ({texts})
            UNION ALL SELECT * FROM _values WHERE ts_text IS NULL OR ts_text NOT IN ({texts})""")
    rows = [pd.DataFrame({"ts_text": text, "occ": 1, "naive": naive})]
    if ambiguous.any():
        for occ in (2, 3):  # a third occurrence is a duplicate of standard time
            rows.append(
                pd.DataFrame({"ts_text": text[ambiguous], "occ": occ, "naive": naive[ambiguous]})
            )
    t = pd.concat(rows, ignore_index=True)
    local = t["naive"].dt.tz_localize(
        ctx.plant.tz, ambiguous=(t["occ"] == 1).to_numpy(), nonexistent="NaT"
    )
    return pd.DataFrame(
        {
            "ts_text": t["ts_text"],
            "occ": t["occ"],
            "ts_utc": local.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]"),
            "nonexistent": (t["naive"].notna() & local.isna()).to_numpy(),
        }
    )


def _bounds(keys: list[tuple[str, dt.date]], ctx: StandardizeContext) -> pd.DataFrame:
    g = pd.Timedelta(minutes=ctx.quality.partition_grace_minutes)
    rows = []
    for _, day in keys:
        lo = (pd.Timestamp(day).tz_localize(ctx.plant.tz) - g).tz_convert("UTC").tz_localize(None)
        hi = (
            (pd.Timestamp(day + dt.timedelta(days=1)).tz_localize(ctx.plant.tz) + g)
            .tz_convert("UTC")
            .tz_localize(None)
        )
        rows.append((day, lo, hi))
    return pd.DataFrame(rows, columns=["partition_date", "lo_ts", "hi_ts"]).astype(
        {"lo_ts": "datetime64[us]", "hi_ts": "datetime64[us]"}
    )


def _unit_keys(units: pd.DataFrame | None) -> pd.DataFrame:
    """(partition_date, unit_id) of the accepted production units a batch may belong to."""
    frame = pd.DataFrame(
        {
            "partition_date": pd.Series([], dtype="datetime64[us]"),
            "unit_id": pd.Series([], dtype="string"),
        }
    )
    if units is not None and not units.empty:
        frame = pd.DataFrame(
            {
                "partition_date": pd.to_datetime(units["partition_date"]).astype("datetime64[us]"),
                "unit_id": units["unit_id"].astype("string"),
            }
        ).drop_duplicates()
    return frame.reset_index(drop=True)


def _batch_messages(spec: Any) -> str:
    """SQL CASE branches: the messages of the rules of one file per batch."""
    b = spec.batch
    if b is None:
        return ""
    source = (
        f"batch id field {b.field!r} is empty"
        if b.field
        else f"the file name gives no batch id (batch.from_filename {b.from_filename!r})"
    )
    elapsed = (
        f"' in {b.elapsed_seconds!r} is not a number of seconds within "
        f"{MAX_ELAPSED_SECONDS} s of the batch start"
    )
    q = "'" * 3
    return (
        f"WHEN 'missing_batch_id' THEN {_lit(source)}\n"
        f"                     WHEN 'unknown_unit' THEN 'batch {q} || batch || {q} is not among the "
        f"units of this day (streams.units); its readings are held back'\n"
        f"                     WHEN 'invalid_elapsed_time' THEN 'elapsed time {q} || "
        f"coalesce(elapsed, '') || {_lit(elapsed)}\n                     "
    )


def _conversions(ctx: StandardizeContext) -> pd.DataFrame:
    """Per readings mapping key (a quantity, or a channel of one): its quantity and channel,
    source field, unit label, the pint factors into the canonical unit and the plausible range."""
    rows = []
    signals = ctx.plant.signals()
    for k, m in ctx.plant.streams.readings.quantities.items():
        q, channel = signals[k]
        qs = ctx.registry.quantities[q]
        a, b = affine(ctx.registry.pint_unit(m.unit), qs.unit)
        rows.append((k, q, channel, m.field, m.unit, a, b, qs.min, qs.max, qs.unit))
    return pd.DataFrame(
        rows,
        columns=["quantity", "canon", "channel", "signal", "label", "a", "b", "lo", "hi", "unit"],
    ).astype({"channel": "string"})


def _array_selects(
    plan: list[_Projection], relation: str, pred: str, machine: str, ts_col: str
) -> list[str]:
    """The array layout's values: per group of files with the same sample columns, one UNPIVOT
    of those columns (empty cells kept: they are quarantined as missing values), each value with
    its quantity, unit label and offset from the record's time (a VALUES list keyed by column)."""
    by_files: dict[tuple[str, ...], list[_Projection]] = {}
    for p in plan:
        by_files.setdefault(tuple(p.files), []).append(p)
    out = []
    for files, ps in by_files.items():
        cols = ", ".join(_ident(p.column) for p in ps)
        samples = ", ".join(
            f"({_lit(p.column)}, {_lit(p.quantity)}, {_lit(p.label)}, {p.offset_us}::BIGINT)"
            for p in ps
        )
        in_files = ", ".join(_lit(f) for f in files)
        out.append(
            f"SELECT u._source_file, u._source_row, u.partition_date, u.machine, u.ts_text, "
            f"s.quantity, u.text, u.source_column, s.label AS unit_label, TRUE AS label_ok, "
            f"u.source_column AS occ_key, s.offset_us, NULL::VARCHAR AS batch, "
            f"NULL::VARCHAR AS elapsed "
            f"FROM (SELECT _source_file, _source_row, partition_date, {machine} AS machine, "
            f"{ts_col} AS ts_text, {cols} FROM {relation} "
            f"WHERE {pred} AND _source_file IN ({in_files})) "
            f"UNPIVOT INCLUDE NULLS (text FOR source_column IN ({cols})) u "
            f"JOIN (VALUES {samples}) s(source_column, quantity, label, offset_us) "
            f"ON u.source_column = s.source_column"
        )
    return out


def _elapsed_us(column: str) -> str:
    """SQL: a row's seconds since its batch start (text in ``column``) in whole microseconds, the
    standard's grain, as an array sample's offset is (:func:`_offset_us`); NULL where the text is
    no finite number of seconds within :data:`MAX_ELAPSED_SECONDS`."""
    num = f"CASE WHEN contains({column}, '_') THEN NULL ELSE TRY_CAST(trim({column}) AS DOUBLE) END"
    return (
        f"CASE WHEN isfinite({num}) AND abs({num}) <= {MAX_ELAPSED_SECONDS} "
        f"THEN CAST(round({num} * 1000000) AS BIGINT) END"
    )


def _relation(raw_table: str, spec: Any) -> str:
    """The raw readings as a relation; when the stream takes its batch id or machine
    ``from_filename``, with what each file's name gives joined by file (``_file_names``, from the
    plan: files whose name gives nothing are held back there and left out here)."""
    raw = f"raw.{_ident(raw_table)}"
    if spec.machine.from_filename is None and (spec.batch is None or not spec.batch.from_filename):
        return raw
    return (
        f"(SELECT r.*, f.{FILE_BATCH}, f.{FILE_MACHINE} FROM {raw} r "
        f"JOIN _file_names f ON r._source_file = f._source_file)"
    )


def _batch_sql(spec: Any, alias: str = "") -> tuple[str, str, str]:
    """SQL for each value's (batch id, offset from the record's time in microseconds, elapsed
    seconds as written) in a select over the raw relation (``alias``: its alias with a dot)."""
    b = spec.batch
    if b is None:
        return "NULL::VARCHAR", "0::BIGINT", "NULL::VARCHAR"
    batch = alias + (FILE_BATCH if b.from_filename else _ident(b.field))
    if not b.elapsed_seconds:
        return batch, "0::BIGINT", "NULL::VARCHAR"
    col = alias + _ident(b.elapsed_seconds)
    return batch, _elapsed_us(col), col


def _record_ts(spec: Any) -> str:
    """SQL: the time that places a value's record on its partition - its record's own time, the
    cycle start of an array record, the batch start of one file per batch (the start column, or
    the batch's earliest row when its rows carry absolute times)."""
    b = spec.batch
    if b is None or b.elapsed_seconds:
        return "ts.ts_utc"
    return "min(ts.ts_utc) OVER (PARTITION BY v._source_file, v.batch)"


def standardize_readings(
    con: Any,
    raw_table: str,
    keys: list[tuple[str, dt.date]],
    receipts: pd.DataFrame,
    ctx: StandardizeContext,
    units: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw readings of ``keys`` -> (sensor_readings frame, quarantine frame).

    One file per batch (``streams.readings.batch``): ``units`` are the accepted production units
    of ``keys``; a batch must be one of its day's units (``unknown_unit``, as for inspections)."""
    spec = ctx.plant.streams.readings
    if receipts.empty or not table_exists(con, "raw", raw_table):
        return empty_frame("sensor_readings"), empty_frame("quarantine")
    plan, entries, names = _file_plan(receipts, ctx)
    pred = key_predicate(keys)
    relation = _relation(raw_table, spec)
    if spec.machine.field:
        machine = _ident(spec.machine.field)
    elif spec.machine.from_filename:
        machine = FILE_MACHINE
    else:
        machine = _lit(spec.machine.constant)
    ts_col = _ident(spec.timestamp.field) if spec.timestamp.field else "NULL"
    batch, offset, elapsed = _batch_sql(spec)
    selects = []
    if spec.layout == "array":
        selects = _array_selects(plan, relation, pred, machine, ts_col)
        plan = []
    for p in plan:
        files = ", ".join(_lit(f) for f in p.files)
        where = f"{pred} AND _source_file IN ({files})"
        if spec.layout == "long":
            lg = spec.long
            uom = f"t.{_ident(lg.unit_field)}" if lg.unit_field else "m.label"
            t_batch, t_offset, t_elapsed = _batch_sql(spec, "t.")
            selects.append(
                f"SELECT t._source_file, t._source_row, t.partition_date, t.{machine} AS machine, "
                f"t.{ts_col} AS ts_text, m.quantity, t.{_ident(lg.value_field)} AS text, "
                f"t.{_ident(lg.quantity_field)} AS source_column, {uom} AS unit_label, "
                f"(m.quantity IS NULL OR coalesce({uom} = m.label, FALSE)) AS label_ok, "
                f"t.{_ident(lg.quantity_field)} AS occ_key, {t_offset} AS offset_us, "
                f"{t_batch} AS batch, {t_elapsed} AS elapsed "
                f"FROM {relation} t LEFT JOIN _conv m ON t.{_ident(lg.quantity_field)} = m.signal "
                f"WHERE {key_predicate(keys, alias='t')} AND t._source_file IN ({files})"
            )
        else:
            selects.append(
                f"SELECT _source_file, _source_row, partition_date, {machine} AS machine, {ts_col} AS ts_text, "
                f"{_lit(p.quantity)} AS quantity, {_ident(p.column)} AS text, {_lit(p.column)} AS source_column, "
                f"{_lit(p.label)} AS unit_label, TRUE AS label_ok, '' AS occ_key, "
                f"{offset} AS offset_us, {batch} AS batch, {elapsed} AS elapsed "
                f"FROM {relation} WHERE {where}"
            )
    if not selects:
        return empty_frame("sensor_readings"), quarantine_frame(pd.DataFrame(entries))
    union = " UNION ALL ".join(selects)
    con.register("_conv", _conversions(ctx))
    con.register("_file_names", names)
    con.register("_units", _unit_keys(units))
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _values AS SELECT *, 1 AS occ FROM ({union})")
        con.register("_ts", _times(con, ctx))
        con.register("_bounds", _bounds(keys, ctx))
        future = (ctx.future_limit.tz_convert("UTC").tz_localize(None)).isoformat()
        machines = "[" + ", ".join(_lit(m) for m in ctx.plant.machines) + "]::VARCHAR[]"
        not_ours = _lit(
            f"' is not one of the plant's machines (plant config 'machines' of {ctx.plant.plant_id})"
        )
        k = spec.timestamp
        batch_rules = (
            ""
            if spec.batch is None
            else """
              WHEN batch IS NULL OR trim(batch) = '' THEN 'missing_batch_id'
              WHEN NOT unit_known THEN 'unknown_unit'"""
        )
        rules = f"""
        WITH r AS (
          SELECT v.*, ts.ts_utc + to_microseconds(v.offset_us) AS ts_utc,
                 {_record_ts(spec)} AS record_ts, un.unit_id IS NOT NULL AS unit_known,
                 coalesce(ts.nonexistent, FALSE) AS nonexistent,
                 CASE WHEN contains(v.text, '_') THEN NULL ELSE TRY_CAST(v.text AS DOUBLE) END AS num,
                 c.canon, c.channel, c.a, c.b, c.lo, c.hi, c.unit, bd.lo_ts, bd.hi_ts
          FROM _values v
          LEFT JOIN _ts ts ON v.ts_text IS NOT DISTINCT FROM ts.ts_text AND v.occ = ts.occ
          LEFT JOIN _conv c ON v.quantity = c.quantity
          LEFT JOIN _bounds bd ON v.partition_date = bd.partition_date
          LEFT JOIN _units un ON v.partition_date = un.partition_date AND v.batch = un.unit_id),
        s AS (
          SELECT *, num * a + b AS val,
            CASE
              WHEN machine IS NULL OR trim(machine) = '' THEN 'missing_machine'
              WHEN NOT list_contains({machines}, machine) THEN 'unknown_machine'{batch_rules}
              WHEN nonexistent THEN 'nonexistent_local_time'
              WHEN offset_us IS NULL THEN 'invalid_elapsed_time'
              WHEN ts_utc IS NULL THEN 'invalid_timestamp'
              WHEN ts_utc > TIMESTAMP '{future}' THEN 'timestamp_in_future'
              WHEN record_ts < lo_ts OR record_ts >= hi_ts THEN 'timestamp_outside_partition'
              WHEN quantity IS NULL THEN 'unknown_quantity'
              WHEN NOT label_ok THEN 'unit_label_mismatch'
              WHEN (num IS NULL OR isnan(num)) AND (text IS NULL OR trim(text) = ''
                    OR lower(trim(text)) IN ('nan', 'null', 'none')) THEN 'missing_value'
              WHEN num IS NULL OR isnan(num) THEN 'not_a_number'
              WHEN NOT isfinite(num * a + b) OR num * a + b < lo OR num * a + b > hi THEN 'out_of_range'
            END AS rule0
          FROM r),
        dups AS (  -- (machine, time, quantity) delivered more than once: the first one is kept
          SELECT machine, ts_utc, quantity,
                 min({{'d': partition_date, 'f': _source_file, 'r': _source_row, 'c': source_column}}) AS first
          FROM s WHERE rule0 IS NULL GROUP BY ALL HAVING count(*) > 1),
        d AS (
          SELECT s.*, CASE WHEN s.rule0 IS NULL AND dups.first IS NOT NULL
                             AND dups.first <> {{'d': s.partition_date, 'f': s._source_file, 'r': s._source_row,
                                                   'c': s.source_column}}
                           THEN 'duplicate' ELSE s.rule0 END AS rule,
                 dups.first.r AS first_row
          FROM s LEFT JOIN dups ON s.rule0 IS NULL AND s.machine = dups.machine AND s.ts_utc = dups.ts_utc
                                AND s.quantity = dups.quantity)
        SELECT * FROM d"""
        con.execute(f"CREATE OR REPLACE TEMP TABLE _d AS {rules}")
        accepted = (
            con.sql(f"""
            SELECT {_lit(ctx.plant.plant_id)} AS plant, partition_date, machine AS machine_id, ts_utc,
                   canon AS quantity, channel, val AS value, unit, _source_file AS source_file, _source_row AS source_row
            FROM _d WHERE rule IS NULL""")
            .to_arrow_table()
            .to_pandas(strings_to_categorical=True)
        )
        col = "'column ''' || source_column || ''': '"
        rejected = con.sql(f"""
            SELECT {_lit(ctx.plant.plant_id)} AS plant, partition_date, 'readings' AS stream, 'standardize' AS stage,
                   _source_file AS source_file, _source_row AS source_row, source_column, 'value' AS scope, rule,
                   'reject' AS severity, text AS value, 1 AS n_items,
                   _source_file || ' row ' || _source_row || ': [' || rule || '] ' || CASE rule
                     WHEN 'missing_machine' THEN {_lit(f"machine field {spec.machine.field!r} is empty")}
                     WHEN 'unknown_machine' THEN 'machine ''' || machine || {not_ours}
                     WHEN 'nonexistent_local_time' THEN 'local time ''' || ts_text || {_lit(f"' does not exist in {ctx.plant.timezone} (DST gap)")}
                     {_batch_messages(spec)}WHEN 'invalid_timestamp' THEN 'timestamp ''' || coalesce(ts_text, '') || {_lit(f"' in {k.field!r} is not a valid {k.kind} time")}
                     WHEN 'timestamp_in_future' THEN 'time ' || ts_utc || ' UTC is after now ({ctx.now_utc})'
                     WHEN 'timestamp_outside_partition' THEN 'time ' || record_ts || ' UTC is not on the file''s local day ' || partition_date
                     WHEN 'unknown_quantity' THEN {col} || 'signal ''' || source_column || ''' is not mapped to a quantity'
                     WHEN 'unit_label_mismatch' THEN {col} || 'unit label ''' || coalesce(unit_label, '') || ''' differs from the plant config for ' || quantity
                     WHEN 'missing_value' THEN {col} || 'value is missing (' || coalesce(text, 'empty') || ')'
                     WHEN 'not_a_number' THEN {col} || 'value ''' || text || ''' is not a number' ||
                          CASE WHEN regexp_full_match(text, '\\s*-?\\d+,\\d+\\s*') THEN ' (decimal comma? the standard expects ''.'')' ELSE '' END
                     WHEN 'out_of_range' THEN {col} || 'value ' || text || ' (' || coalesce(CAST(round(val, 4) AS VARCHAR), 'inf') || ' ' || unit
                          || ') outside the plausible range [' || lo || ', ' || hi || '] of ' || quantity
                     WHEN 'duplicate' THEN 'machine ' || machine || ', time ' || ts_utc || ', ' || quantity || ' already delivered in row ' || first_row
                   END AS message
            FROM _d WHERE rule IS NOT NULL""").df()
    finally:
        con.execute("DROP TABLE IF EXISTS _values")
        con.execute("DROP TABLE IF EXISTS _d")
        for name in ("_conv", "_ts", "_bounds", "_file_names", "_units"):
            con.unregister(name)
    accepted["partition_date"] = pd.to_datetime(accepted["partition_date"])
    acc = conform(accepted, "sensor_readings")
    parts = [x for x in (pd.DataFrame(entries), rejected) if not x.empty]
    q = (
        quarantine_frame(pd.concat(parts, ignore_index=True))
        if parts
        else empty_frame("quarantine")
    )
    if not q.empty:
        q["partition_date"] = pd.to_datetime(q["partition_date"]).astype("datetime64[s]")
    return acc, q
