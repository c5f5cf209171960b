"""Reading landing files into the raw layer: a faithful, text-valued copy of every source record.

Each plant stream (readings, units, inspections) is read by its configured format. Every value is
kept as text exactly as the source had it (typed Parquet values are rendered losslessly by Arrow),
with the file and row it came from. Records that cannot even be parsed (bad encoding, wrong field
count, invalid JSON, wrong delimiter, empty file) are not dropped: they become *parse issues*
naming file, row and rule, and the standardisation step carries them into the quarantine.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from quality_platform.config import PlantConfig, ReadingsStream, StreamBase, TimestampSpec
from quality_platform.settings import Paths

STREAMS = ("readings", "units", "inspections")
META_COLS = ("plant", "partition_date", "_source_file", "_source_row", "_source_item")
_OTHER_DELIMITERS = (";", "\t", "|", ",")
_NEWLINE = re.compile(r"\r\n|\r|\n")
_NEWLINE_B = re.compile(rb"\r\n|\r|\n")


@dataclass
class FileResult:
    """What one landing file yielded."""

    table: pa.Table  # text columns as in the source, plus _source_row (and _source_item)
    header: list[str]
    issues: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RawStream:
    """The raw copy of one plant stream for a set of local days."""

    plant: str
    stream: str
    table: pa.Table
    receipts: list[dict[str, Any]]
    issues: list[dict[str, Any]]

    @property
    def records(self) -> int:
        return self.table.num_rows


def items_per_record(plant: PlantConfig, stream: str) -> int:
    """How many reconciled items one source record carries (values for wide readings)."""
    s = plant.streams.readings
    if stream == "readings" and s.layout == "wide":
        return len(s.quantities)
    return 1


def issue(source_file: str, source_row: int, rule: str, message: str, *, scope: str = "row",
          severity: str = "reject", n_records: int = 1, line_text: str | None = None,
          column: str | None = None, value: str | None = None) -> dict[str, Any]:
    """A parse-stage problem; the message always names the file, the row and the rule."""
    where = f"{source_file} row {source_row}" if source_row else f"{source_file}"
    return {"source_file": source_file, "source_row": source_row, "scope": scope, "rule": rule,
            "severity": severity, "message": f"{where}: [{rule}] {message}",
            "n_records": n_records, "line_text": line_text, "source_column": column, "value": value}


# --------------------------------------------------------------------------- CSV


def _decode_lines(data: bytes, encoding: str, rel: str) -> tuple[list[str | None], list[dict]]:
    """Physical lines of a file as text; lines that do not decode are None (+ an issue each)."""
    if encoding.lower().replace("_", "-") in ("utf-8-sig", "utf8-sig") and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        encoding = "utf-8"
    # Lines end with \n, \r\n or a bare \r - the same rule the CSV parser applies.
    raw_lines = _NEWLINE_B.split(data)
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    try:
        lines: list[str | None] = list(_NEWLINE.split(data.decode(encoding)))
        if lines and lines[-1] == "":
            lines.pop()
        return lines, []
    except UnicodeDecodeError:
        pass
    lines, issues = [], []
    for i, b in enumerate(raw_lines, start=1):
        try:
            lines.append(b.decode(encoding))
        except UnicodeDecodeError as exc:
            lines.append(None)
            issues.append(issue(rel, i, "encoding",
                                f"bytes {b[exc.start:exc.end + 3]!r} at position {exc.start} are not valid "
                                f"{encoding}; the record is held back",
                                line_text=b.decode(encoding, errors="replace")))
    return lines, issues


def read_csv_file(path: Path, rel: str, delimiter: str, encoding: str) -> FileResult:
    """Parse one CSV file into text columns, one record per physical line."""
    data = path.read_bytes()
    if not data.strip():
        return FileResult(pa.table({"_source_row": pa.array([], pa.int64())}), [],
                          [issue(rel, 0, "empty_file", "the file is empty; nothing to load",
                                 scope="file", severity="warn", n_records=0)])
    lines, issues = _decode_lines(data, encoding, rel)
    nonblank = [i for i, ln in enumerate(lines, start=1) if ln is not None and ln != ""]
    if not nonblank or lines[0] is None:
        issues.append(issue(rel, 1, "missing_header", "the first line (header) is missing or unreadable; "
                            "every record is held back", scope="file",
                            n_records=max(len(nonblank) - (lines[0] is not None), 0)))
        return FileResult(pa.table({"_source_row": pa.array([], pa.int64())}), [], issues)
    header = next(csv.reader([lines[0]], delimiter=delimiter))
    # One record per line: a line with an unbalanced quote would make the parser run into the
    # next line, so it is held back on its own.
    for i in nonblank[1:]:
        if lines[i - 1].count('"') % 2:
            issues.append(issue(rel, i, "unbalanced_quote", "the line has an unbalanced '\"'",
                                line_text=lines[i - 1]))
            lines[i - 1] = ""
    nonblank = [i for i in nonblank if lines[i - 1] != ""]
    data_lines = nonblank[1:]
    if len(header) == 1:
        for other in _OTHER_DELIMITERS:
            if other != delimiter and len(next(csv.reader([lines[0]], delimiter=other))) > 1:
                n = len(next(csv.reader([lines[0]], delimiter=other)))
                issues.append(issue(
                    rel, 1, "wrong_delimiter",
                    f"header has 1 column when split by {delimiter!r} but {n} when split by {other!r}; "
                    f"the plant config expects {delimiter!r}; all {len(data_lines)} data rows are held back",
                    scope="file", n_records=len(data_lines)))
                return FileResult(pa.table({"_source_row": pa.array([], pa.int64())}), header, issues)
    if not data_lines:
        empty = {c: pa.array([], pa.string()) for c in _dedupe(header)}
        return FileResult(pa.table({**empty, "_source_row": pa.array([], pa.int64())}), header, issues)
    rejected: dict[int, str] = {}
    last_line = nonblank[-1]
    ends_newline = data.endswith((b"\n", b"\r"))

    def _bad(row: Any) -> str:
        phys = nonblank[row.number - 1]
        rule = ("truncated_row" if phys == last_line and not ends_newline
                and row.actual_columns < row.expected_columns else "wrong_field_count")
        rejected[phys] = rule
        issues.append(issue(rel, phys, rule,
                            f"expected {row.expected_columns} fields, found {row.actual_columns}",
                            line_text=row.text))
        return "skip"

    clean = "\n".join(ln if ln is not None else "" for ln in lines)
    table = pacsv.read_csv(
        io.BytesIO(clean.encode("utf-8")),
        read_options=pacsv.ReadOptions(use_threads=False, column_names=_dedupe(header), skip_rows=1),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=_bad),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in _dedupe(header)},
                                             strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    rows = [r for r in data_lines if r not in rejected]
    if table.num_rows != len(rows):  # the parser and our line count disagree: parse line by line
        return _read_lines_python(lines, data_lines, header, delimiter, rel,
                                  [i for i in issues if i["rule"] in ("encoding", "unbalanced_quote")])
    table = table.append_column("_source_row", pa.array(rows, pa.int64()))
    return FileResult(table, header, issues)


def _read_lines_python(lines: list[str | None], data_lines: list[int], header: list[str], delimiter: str,
                       rel: str, issues: list[dict[str, Any]]) -> FileResult:
    """Exact (slow) path: each line parsed on its own by the csv module."""
    names = _dedupe(header)
    cols: dict[str, list[str]] = {c: [] for c in names}
    rows = []
    for i in data_lines:
        fields = next(csv.reader([lines[i - 1]], delimiter=delimiter), [])
        if len(fields) != len(names):
            issues.append(issue(rel, i, "wrong_field_count", f"expected {len(names)} fields, found {len(fields)}",
                                line_text=lines[i - 1]))
            continue
        for c, v in zip(names, fields, strict=True):
            cols[c].append(v)
        rows.append(i)
    arrays = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    return FileResult(pa.table({**arrays, "_source_row": pa.array(rows, pa.int64())}), header, issues)


def _dedupe(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        out.append(n if k == 0 else f"{n}.{k}")
        seen[n] = k + 1
    return out


# --------------------------------------------------------------------------- Parquet


def read_parquet_file(path: Path, rel: str) -> FileResult:
    """Parse one Parquet file; every column rendered as text (lossless for numbers and times)."""
    if path.stat().st_size == 0:
        return FileResult(pa.table({"_source_row": pa.array([], pa.int64())}), [],
                          [issue(rel, 0, "empty_file", "the file is empty; nothing to load",
                                 scope="file", severity="warn", n_records=0)])
    try:
        table = pq.read_table(path)
    except Exception as exc:
        return FileResult(pa.table({"_source_row": pa.array([], pa.int64())}), [],
                          [issue(rel, 0, "unreadable_file", f"not a readable Parquet file ({exc}); "
                                 "the number of records in it is unknown", scope="file", n_records=1)])
    # Arrow renders numbers losslessly and zoned timestamps as ISO 8601 with 'Z' (C++, no Python loop).
    cols = {name: table[name].cast(pa.string()) for name in table.column_names}
    cols["_source_row"] = pa.array(np.arange(1, table.num_rows + 1), pa.int64())
    return FileResult(pa.table(cols), list(table.column_names))


# --------------------------------------------------------------------------- JSON lines


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(v, sort_keys=True)


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def read_jsonl_file(path: Path, rel: str, explode: str | None, parent_fields: list[str],
                    ignored: frozenset[str] = frozenset()) -> FileResult:
    """Parse JSON lines; nested objects become dotted fields; ``explode`` yields one row per item.

    A list-valued field the stream declares as ignored (e.g. a batch's readings, which the
    readings stream explodes) is not copied again into this stream's raw table.
    """
    data = path.read_bytes()
    if not data.strip():
        return FileResult(pa.table({"_source_row": pa.array([], pa.int64())}), [],
                          [issue(rel, 0, "empty_file", "the file is empty; nothing to load",
                                 scope="file", severity="warn", n_records=0)])
    lines, issues = _decode_lines(data, "utf-8", rel)
    records: list[dict[str, Any]] = []
    header: dict[str, None] = {}
    for i, ln in enumerate(lines, start=1):
        if ln is None or not ln.strip():
            continue
        try:
            obj = json.loads(ln)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            issues.append(issue(rel, i, "invalid_json", f"line is not a valid JSON object ({exc})",
                                line_text=ln[:200]))
            continue
        if explode:
            items = obj.get(explode)
            if not isinstance(items, list):
                issues.append(issue(rel, i, "missing_required_column",
                                    f"field {explode!r} (a list of readings) is missing", line_text=ln[:200]))
                continue
            parent = {f: obj.get(f) for f in parent_fields}
            for j, item in enumerate(items, start=1):
                rec = {**parent, **(_flatten(item) if isinstance(item, dict) else {"value": item})}
                rec["_source_row"], rec["_source_item"] = i, j
                records.append(rec)
                header.update(dict.fromkeys(rec))
        else:
            rec = {k: v for k, v in _flatten(obj).items()
                   if not (isinstance(v, list) and k in ignored)}
            rec["_source_row"] = i
            records.append(rec)
            header.update(dict.fromkeys(rec))
    cols = [c for c in header if c not in ("_source_row", "_source_item")]
    arrays = {c: pa.array([_text(r.get(c)) for r in records], pa.string()) for c in cols}
    arrays["_source_row"] = pa.array([r["_source_row"] for r in records], pa.int64())
    if explode:
        arrays["_source_item"] = pa.array([r["_source_item"] for r in records], pa.int64())
    return FileResult(pa.table(arrays), cols, issues)


# --------------------------------------------------------------------------- streams


def stream_spec(plant: PlantConfig, stream: str) -> StreamBase:
    return getattr(plant.streams, stream)


def discover(plant: PlantConfig, stream: str, dates: list[dt.date], paths: Paths) -> dict[Path, dt.date | None]:
    """Landing files of a stream for the given local days (None: a file spanning many days)."""
    spec = stream_spec(plant, stream)
    root = plant.landing_path(paths)
    found: dict[Path, dt.date | None] = {}
    if spec.per_day_files:
        for d in dates:
            for p in sorted(root.glob(spec.path.format(date=d.isoformat()))):
                if p.is_file():
                    found[p] = d
    else:
        for p in sorted(root.glob(spec.path)):
            if p.is_file():
                found[p] = None
    return found


def parse_file(plant: PlantConfig, stream: str, path: Path, rel: str) -> FileResult:
    spec = stream_spec(plant, stream)
    if spec.format == "csv":
        return read_csv_file(path, rel, spec.csv.delimiter, spec.csv.encoding)
    if spec.format == "parquet":
        return read_parquet_file(path, rel)
    explode = spec.explode if isinstance(spec, ReadingsStream) else None
    parents = spec.parent_fields if isinstance(spec, ReadingsStream) else []
    return read_jsonl_file(path, rel, explode, parents, frozenset(spec.ignore_fields))


def sequence_times(values: pd.Series, ts: TimestampSpec) -> pd.Series:
    """Synthetic UTC times ``start + (n - 1) * step`` from a sequence-number column."""
    n = pd.to_numeric(values, errors="coerce")
    start = pd.Timestamp(ts.start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    return start + pd.to_timedelta((n - 1) * ts.step_seconds, unit="s")


def file_fingerprint(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    st = path.stat()
    return {"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "modified_utc": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).replace(tzinfo=None)}


def read_raw(plant: PlantConfig, stream: str, dates: list[dt.date], paths: Paths) -> RawStream:
    """Read every landing file of ``stream`` for the plant's local ``dates`` into one raw table."""
    root = plant.landing_path(paths)
    spec = stream_spec(plant, stream)
    k = items_per_record(plant, stream)
    wanted = set(dates)
    tables: list[pa.Table] = []
    receipts: list[dict[str, Any]] = []
    issues: list[dict[str, Any]] = []
    for path, day in discover(plant, stream, dates, paths).items():
        rel = path.relative_to(root).as_posix()
        res = parse_file(plant, stream, path, rel)
        fp = file_fingerprint(path)
        if day is not None:
            per_day = {day: res.table}
            day_issues = {day: res.issues}
        else:
            per_day, day_issues = _split_by_day(plant, spec, res, rel, wanted, dates[0])
        for d, tbl in per_day.items():
            if d not in wanted:
                continue
            iss = day_issues.get(d, [])
            n = tbl.num_rows
            tbl = tbl.append_column("plant", pa.array([plant.plant_id] * n, pa.string()))
            tbl = tbl.append_column("partition_date", pa.array([d] * n, pa.date32()))
            tbl = tbl.append_column("_source_file", pa.array([rel] * n, pa.string()))
            tables.append(tbl)
            for i in iss:
                issues.append({**i, "plant": plant.plant_id, "partition_date": d, "stream": stream,
                               "n_items": i["n_records"] * k})
            receipts.append({
                "plant": plant.plant_id, "partition_date": d, "stream": stream, "source_file": rel,
                "header": json.dumps(res.header, ensure_ascii=False), "records": n,
                "rejected_records": sum(i["n_records"] for i in iss), "items_per_record": k, **fp})
    if tables:
        table = pa.concat_tables(tables, promote_options="default")
    else:
        table = pa.table({"plant": pa.array([], pa.string()),
                          "partition_date": pa.array([], pa.date32()),
                          "_source_file": pa.array([], pa.string()),
                          "_source_row": pa.array([], pa.int64())})
    return RawStream(plant.plant_id, stream, table, receipts, issues)


def _split_by_day(plant: PlantConfig, spec: Any, res: FileResult, rel: str, wanted: set[dt.date],
                  fallback: dt.date) -> tuple[dict[dt.date, pa.Table], dict[dt.date, list[dict]]]:
    """Split a many-day file by the local day of each record's timestamp."""
    ts_spec: TimestampSpec = spec.timestamp
    if ts_spec.field is None or ts_spec.field not in res.table.column_names:
        return {fallback: res.table}, {fallback: res.issues}
    col = res.table[ts_spec.field].to_pandas()
    if ts_spec.kind == "sequence":
        t = sequence_times(col, ts_spec)
    elif ts_spec.kind == "epoch_ms":
        t = pd.to_datetime(pd.to_numeric(col, errors="coerce"), unit="ms", utc=True)
    else:
        t = pd.to_datetime(col, utc=True, errors="coerce", format=ts_spec.format)
    local = t.dt.tz_convert(plant.tz).dt.date
    out: dict[dt.date, pa.Table] = {}
    issues: dict[dt.date, list[dict]] = {fallback: list(res.issues)}
    idx = np.arange(len(local))
    for d in sorted({x for x in local.dropna().unique() if x in wanted}):
        out[d] = res.table.take(pa.array(idx[(local == d).to_numpy()]))
    bad = idx[local.isna().to_numpy()]
    if len(bad):
        rows = res.table["_source_row"].to_pandas().iloc[bad]
        for r in rows:
            issues[fallback].append(issue(rel, int(r), "invalid_timestamp",
                                          f"field {ts_spec.field!r} does not give a time; the day of "
                                          f"the record is unknown (reported under {fallback})"))
    return out, issues

