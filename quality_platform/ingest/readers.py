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
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from quality_platform.config import (
    LandingLimits,
    PlantConfig,
    ReadingsStream,
    StreamBase,
    TimestampSpec,
)
from quality_platform.settings import Paths

STREAMS = ("readings", "units", "inspections")
#: the optional fourth stream: unit-level attributes joined to the units by id
ATTRIBUTES = "attributes"
#: streams whose records take their unit's day (by unit id in the units file)
BY_UNIT = ("inspections", ATTRIBUTES)
META_COLS = ("plant", "partition_date", "_source_file", "_source_row", "_source_item")
_OTHER_DELIMITERS = (";", "\t", "|", ",")


@dataclass
class FileResult:
    """What one landing file yielded."""

    table: pa.Table  # text columns as in the source, plus _source_row (and _source_item)
    header: list[str]
    issues: list[dict[str, Any]] = field(default_factory=list)
    #: records in the file as counted from its bytes (non-blank data lines; Parquet: its row count)
    file_lines: int = 0
    #: how many of those lie in parsed records (the rest are in ``issues``)
    record_lines: int = 0


@dataclass
class RawStream:
    """The raw copy of one plant stream for a set of local days."""

    plant: str
    stream: str
    table: pa.Table
    receipts: list[dict[str, Any]]
    issues: list[dict[str, Any]]
    #: units stream: the day of every unit in its files for many days (all days, not only these)
    unit_days: dict[str, dt.date] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return self.table.num_rows


def plant_streams(plant: PlantConfig) -> tuple[str, ...]:
    """The streams a plant delivers: readings, units, inspections, and attributes when declared
    (units first among the unit-keyed ones: inspections and attributes take their unit's day)."""
    return (*STREAMS, ATTRIBUTES) if plant.streams.attributes is not None else STREAMS


def items_per_record(plant: PlantConfig, stream: str) -> int:
    """How many reconciled items one source record carries: for readings its values (one per
    quantity in the wide layout, one per sample of each quantity in the array layout, see
    :attr:`ReadingsStream.values_per_record`), for attributes one per declared quantity,
    otherwise 1."""
    if stream == "readings":
        return plant.streams.readings.values_per_record
    if stream == ATTRIBUTES and plant.streams.attributes is not None:
        return len(plant.streams.attributes.values)
    return 1


def issue(
    source_file: str,
    source_row: int,
    rule: str,
    message: str,
    *,
    scope: str = "row",
    severity: str = "reject",
    n_records: int = 1,
    line_text: str | None = None,
    column: str | None = None,
    value: str | None = None,
) -> dict[str, Any]:
    """A parse-stage problem; the message always names the file, the row and the rule."""
    where = f"{source_file} row {source_row}" if source_row else f"{source_file}"
    return {
        "source_file": source_file,
        "source_row": source_row,
        "scope": scope,
        "rule": rule,
        "severity": severity,
        "message": f"{where}: [{rule}] {message}",
        "n_records": n_records,
        "line_text": line_text,
        "source_column": column,
        "value": value,
    }


# --------------------------------------------------------------------------- CSV

_UTF8 = ("utf-8", "utf8", "utf-8-sig", "utf8-sig")
_MAX_RECORD_LINES = 100  # a quoted value may span at most this many physical lines


def _empty() -> pa.Table:
    return pa.table({"_source_row": pa.array([], pa.int64())})


def _strip_bom(data: bytes, encoding: str) -> bytes:
    """A UTF-8 byte-order mark is not part of the first column's name (Excel writes one)."""
    if encoding.lower().replace("_", "-") in _UTF8 and data.startswith(b"\xef\xbb\xbf"):
        return data[3:]
    return data


def _preview(b: bytes, encoding: str) -> str:
    return b[:200].decode(encoding, errors="replace")


def _decode_lines(
    data: bytes, encoding: str, rel: str, max_line_bytes: int | None = None
) -> tuple[list[str | None], list[str], list[dict]]:
    """Physical lines of a file as text, and the line break after each ('' after the last line).

    A line that does not decode, or that is longer than ``max_line_bytes``, is None (+ an issue):
    the line is held back on its own, the rest of the file flows."""
    data = _strip_bom(data, encoding)
    codec = "utf-8" if encoding.lower().replace("_", "-") in _UTF8 else encoding
    issues: list[dict] = []
    # Lines end with \n, \r\n or a bare \r - the same rule the CSV parser applies.
    if max_line_bytes is None or max(map(len, data.split(b"\n")), default=0) <= max_line_bytes:
        try:  # fast path: the whole file decodes (one C call instead of one per line)
            lines, seps = _split_lines(data.decode(codec), _NEWLINE_SPLIT, "")
            return lines, seps, issues
        except UnicodeDecodeError:
            pass
    raw_lines, seps_b = _split_lines(data, _NEWLINE_B_SPLIT, b"")
    seps = [x.decode("ascii") for x in seps_b]
    lines: list[str | None] = []
    for i, b in enumerate(raw_lines, start=1):
        if max_line_bytes is not None and len(b) > max_line_bytes:
            lines.append(None)
            issues.append(
                issue(
                    rel,
                    i,
                    "line_too_long",
                    f"the line has {len(b):,} bytes, over the plant's limit landing_limits."
                    f"max_line_bytes={max_line_bytes:,}; the record is held back",
                    line_text=_preview(b, codec),
                )
            )
            continue
        try:
            lines.append(b.decode(codec))
        except UnicodeDecodeError as exc:
            lines.append(None)
            issues.append(
                issue(
                    rel,
                    i,
                    "encoding",
                    f"bytes {b[exc.start : exc.end + 3]!r} at position {exc.start} are not valid "
                    f"{encoding}; the record is held back",
                    line_text=_preview(b, codec),
                )
            )
    return lines, seps, issues


def _split_lines(text: Any, pattern: re.Pattern, empty: Any) -> tuple[list, list]:
    """(lines, the line break after each) of text or bytes; a final line break ends the last line."""
    parts = pattern.split(text)
    lines, seps = parts[0::2], [*parts[1::2], empty]
    if lines and lines[-1] == empty:
        lines.pop()
        seps.pop()
    return lines, seps


_NEWLINE_B_SPLIT = re.compile(rb"(\r\n|\r|\n)")
_NEWLINE_SPLIT = re.compile(r"(\r\n|\r|\n)")


def _csv_fields(text: str, delimiter: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False))


def _records(
    lines: list[str | None],
    seps: list[str],
    n_fields: int,
    delimiter: str,
    rel: str,
    issues: list[dict[str, Any]],
    first: int = 2,
) -> list[tuple[int, int, str]]:
    """Data records as (first line, last line, text), from line ``first`` on (2 after a header
    row, 1 in a file without one). A record is one physical line, unless a quoted value holds line
    breaks: then the record runs on until its quotes balance and it has the header's field count.
    A quote that never balances holds back its own line only."""
    body = lines[first - 1 :]
    if not any(ln is not None and '"' in ln for ln in body):  # no quotes: a record a line
        return [(i, i, ln) for i, ln in enumerate(body, start=first) if ln]
    out: list[tuple[int, int, str]] = []
    i, n = first, len(lines)
    while i <= n:
        ln = lines[i - 1]
        if ln is None or ln == "":
            i += 1
            continue
        if ln.count('"') % 2 == 0:
            out.append((i, i, ln))
            i += 1
            continue
        text, q, j, ok = ln, ln.count('"'), i, False
        while j < n and j - i < _MAX_RECORD_LINES and lines[j] is not None:
            text += seps[j - 1] + lines[j]
            q += lines[j].count('"')
            j += 1
            if q % 2 == 0:
                rows = _csv_fields(text, delimiter)
                ok = len(rows) == 1 and len(rows[0]) == n_fields
                break
        if ok:
            out.append((i, j, text))
            i = j + 1
        else:
            issues.append(
                issue(
                    rel,
                    i,
                    "unbalanced_quote",
                    "the line has an unbalanced '\"' (no closing "
                    "quote makes a valid record of it and the next lines)",
                    line_text=ln,
                )
            )
            i += 1
    return out


def read_csv_file(
    path: Path,
    rel: str,
    delimiter: str,
    encoding: str,
    limits: LandingLimits | None = None,
    columns: list[str] | None = None,
) -> FileResult:
    """Parse one CSV file (see :func:`read_csv_bytes`)."""
    return read_csv_bytes(path.read_bytes(), rel, delimiter, encoding, limits, columns)


def _csv_line(names: list[str], delimiter: str) -> str:
    """``names`` as one CSV line (quoted where a name needs it)."""
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="").writerow(names)
    return buf.getvalue()


def read_csv_bytes(
    data: bytes,
    rel: str,
    delimiter: str,
    encoding: str,
    limits: LandingLimits | None = None,
    columns: list[str] | None = None,
) -> FileResult:
    """Parse one CSV file into text columns, one record per line (or per quoted multi-line value).

    The first line is the header, unless ``columns`` names the fields of a file without header row
    (plant config ``csv.header: false``): then every line is a record, and rows keep the file's
    own numbers (its first line is row 1). Every non-blank data line ends in a record or in a
    parse issue naming its row."""
    lim = limits or LandingLimits()
    first = 2 if columns is None else 1
    if not data.strip():
        return FileResult(
            _empty(),
            [],
            [
                issue(
                    rel,
                    0,
                    "empty_file",
                    "the file is empty; nothing to load",
                    scope="file",
                    severity="warn",
                    n_records=0,
                )
            ],
        )
    lines, seps, issues = _decode_lines(data, encoding, rel, lim.max_line_bytes)
    nonblank = [i for i, ln in enumerate(lines, start=1) if ln != ""]
    data_lines = [i for i in nonblank if i >= first]
    file_lines = len(data_lines)
    if columns is None and (lines[0] is None or lines[0] == ""):
        head = [x for x in issues if x["source_row"] == 1]
        rule, why = (
            (head[0]["rule"], head[0]["message"].split("] ", 1)[1])
            if head
            else ("missing_header", "the first line (header) is empty")
        )
        rest = [x for x in issues if x["source_row"] != 1]
        return FileResult(
            _empty(),
            [],
            [
                *rest,
                issue(
                    rel,
                    1,
                    "missing_header" if rule == "missing_header" else rule,
                    f"the header cannot be read ({why}); every record is held back",
                    scope="file",
                    n_records=file_lines - len(rest),
                ),
            ],
            file_lines=file_lines,
        )
    if columns is not None:
        header, header_line = list(columns), _csv_line(list(columns), delimiter)
    else:
        header = _csv_fields(lines[0], delimiter)[0] if lines[0] else []
        header_line = lines[0]
    if len(header) > lim.max_fields:
        return FileResult(
            _empty(),
            [],
            [
                issue(
                    rel,
                    first - 1,
                    "too_many_fields",
                    f"the header has {len(header):,} fields, over the plant's limit "
                    f"landing_limits.max_fields={lim.max_fields:,}; all {file_lines} data rows are held back",
                    scope="file",
                    n_records=file_lines,
                )
            ],
            file_lines=file_lines,
        )
    if len(header) == 1 and columns is None:
        for other in _OTHER_DELIMITERS:
            if other != delimiter and len(_csv_fields(lines[0], other)[0]) > 1:
                n = len(_csv_fields(lines[0], other)[0])
                return FileResult(
                    _empty(),
                    header,
                    [
                        issue(
                            rel,
                            1,
                            "wrong_delimiter",
                            f"header has 1 column when split by {delimiter!r} but {n} when split by {other!r}; "
                            f"the plant config expects {delimiter!r}; all {file_lines} data rows are held back",
                            scope="file",
                            n_records=file_lines,
                        )
                    ],
                    file_lines=file_lines,
                )
    names = _dedupe(header)
    records = _records(lines, seps, len(header), delimiter, rel, issues, first)
    if not records:
        empty = {c: pa.array([], pa.string()) for c in names}
        if not issues:
            issues.append(
                issue(
                    rel,
                    0,
                    "no_records",
                    "the file has a header but no records",
                    scope="file",
                    severity="warn",
                    n_records=0,
                )
            )
        return _accounted(
            FileResult(
                pa.table({**empty, "_source_row": pa.array([], pa.int64())}),
                header,
                issues,
                file_lines=file_lines,
            ),
            rel,
            data_lines,
            [],
        )
    ends_newline = data.endswith((b"\n", b"\r"))
    res = None
    if all(a == b for a, b, _ in records):
        res = _parse_records_arrow(
            records, names, header_line, delimiter, rel, issues, lim, ends_newline
        )
    if res is None:  # a multi-line record, or Arrow and the line rules disagree: record by record
        res = _parse_records_python(records, names, delimiter, rel, issues, ends_newline)
    res.header, res.file_lines = header, file_lines
    spans = {a: b for a, b, _ in records if b > a}
    return _accounted(res, rel, data_lines, res.table["_source_row"].to_pylist(), spans)


def _parse_records_arrow(
    records: list[tuple[int, int, str]],
    names: list[str],
    header_line: str,
    delimiter: str,
    rel: str,
    issues: list[dict[str, Any]],
    lim: LandingLimits,
    ends_newline: bool,
) -> FileResult | None:
    """Fast path (Arrow's C++ parser) for files whose records are one line each; None when Arrow
    cannot parse the file the way the line rules do (the exact path then takes over)."""
    rows_of = [a for a, _, _ in records]
    rejected: dict[int, str] = {}
    found: list[dict[str, Any]] = []
    last_line = rows_of[-1]

    def _bad(row: Any) -> str:
        k = row.number - 2  # Arrow counts the header as row 1
        phys = rows_of[k] if 0 <= k < len(rows_of) else -1
        rule = (
            "truncated_row"
            if phys == last_line and not ends_newline and row.actual_columns < row.expected_columns
            else "wrong_field_count"
        )
        rejected[phys] = rule
        found.append(
            issue(
                rel,
                phys,
                rule,
                f"expected {row.expected_columns} fields, found {row.actual_columns}",
                line_text=row.text,
            )
        )
        return "skip"

    clean = "\n".join([header_line, *(t for _, _, t in records)])
    try:
        table = pacsv.read_csv(
            io.BytesIO(clean.encode("utf-8")),
            read_options=pacsv.ReadOptions(
                use_threads=False,
                column_names=names,
                skip_rows=1,
                block_size=max(1 << 20, 2 * lim.max_line_bytes + 1024),
            ),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=_bad),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    rows = [r for r in rows_of if r not in rejected]
    if table.num_rows != len(rows) or -1 in rejected:
        return None
    issues.extend(found)
    return FileResult(table.append_column("_source_row", pa.array(rows, pa.int64())), [], issues)


def _parse_records_python(
    records: list[tuple[int, int, str]],
    names: list[str],
    delimiter: str,
    rel: str,
    issues: list[dict[str, Any]],
    ends_newline: bool,
) -> FileResult:
    """Exact (slow) path: each record parsed on its own by the csv module."""
    cols: dict[str, list[str]] = {c: [] for c in names}
    rows = []
    last = records[-1][0] if records else -1
    for i, _, text in records:
        parsed = _csv_fields(text, delimiter)
        fields = parsed[0] if len(parsed) == 1 else []
        if len(fields) != len(names):
            found = sum(len(f) for f in parsed)
            rule = (
                "truncated_row"
                if i == last and not ends_newline and found < len(names)
                else "wrong_field_count"
            )
            issues.append(
                issue(
                    rel,
                    i,
                    rule,
                    f"expected {len(names)} fields, found {found}",
                    line_text=text[:200],
                )
            )
            continue
        for c, v in zip(names, fields, strict=True):
            cols[c].append(v)
        rows.append(i)
    arrays = {c: pa.array(v, pa.string()) for c, v in cols.items()}
    return FileResult(pa.table({**arrays, "_source_row": pa.array(rows, pa.int64())}), [], issues)


def _accounted(
    res: FileResult,
    rel: str,
    data_lines: list[int],
    rows: list[int],
    spans: dict[int, int] | None = None,
) -> FileResult:
    """The reader's own proof that nothing vanished: every non-blank data line of the file lies in
    a parsed record (first line ``rows``; a multi-line record's last line in ``spans``) or in a parse
    issue. A line that does not (a parser bug) is held back as ``unaccounted_line``, not lost."""
    covered = set(rows)
    for a, b in (spans or {}).items():
        if b > a and a in covered:
            covered.update(range(a + 1, b + 1))
    lines = set(data_lines)
    res.record_lines = len(covered & lines)
    if any(i["scope"] == "file" and i["n_records"] for i in res.issues):
        return res
    missing = lines - covered - {i["source_row"] for i in res.issues if i["scope"] == "row"}
    for x in sorted(missing):
        res.issues.append(
            issue(
                rel,
                x,
                "unaccounted_line",
                "the line was neither parsed nor rejected "
                "by the reader; it is held back (please report this file)",
            )
        )
    return res


def _dedupe(names: list[str]) -> list[str]:
    """Unique raw column names for a header: a repeated name becomes 'X.1', 'X.2', ..., and so does
    a name the raw layer uses itself (``plant``, ``_source_row``, ...), never colliding with a
    name the header also has. The receipt keeps the header as delivered."""
    taken = set(names) | set(META_COLS)
    seen: set[str] = set(META_COLS)
    out = []
    for n in names:
        if n not in seen:
            seen.add(n)
            out.append(n)
            continue
        k = 1
        while f"{n}.{k}" in taken or f"{n}.{k}" in seen:
            k += 1
        seen.add(f"{n}.{k}")
        out.append(f"{n}.{k}")
    return out


# --------------------------------------------------------------------------- Parquet


def read_parquet_file(path: Path, rel: str, limits: LandingLimits | None = None) -> FileResult:
    """Parse one Parquet file (see :func:`read_parquet_bytes`)."""
    return read_parquet_bytes(path.read_bytes(), rel, limits)


def _as_text(col: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """A column as text: Arrow's own rendering (lossless for numbers and times, zoned timestamps as
    ISO 8601 'Z'); nested or binary values, which Arrow cannot cast, as JSON text."""
    try:
        return col.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return pa.array(
            [
                None
                if v is None
                else json.dumps(v, sort_keys=True, default=_json_default, ensure_ascii=False)
                for v in col.to_pylist()
            ],
            pa.string(),
        )


def _json_default(v: Any) -> str:
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def read_parquet_bytes(data: bytes, rel: str, limits: LandingLimits | None = None) -> FileResult:
    """Parse one Parquet file; every column rendered as text."""
    lim = limits or LandingLimits()
    if len(data) == 0:
        return FileResult(
            _empty(),
            [],
            [
                issue(
                    rel,
                    0,
                    "empty_file",
                    "the file is empty; nothing to load",
                    scope="file",
                    severity="warn",
                    n_records=0,
                )
            ],
        )
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        n_rows, n_cols = pf.metadata.num_rows, pf.metadata.num_columns
    except Exception as exc:
        return FileResult(
            _empty(),
            [],
            [
                issue(
                    rel,
                    0,
                    "unreadable_file",
                    f"not a readable Parquet file ({exc}); the number of records in it is unknown",
                    scope="file",
                    n_records=1,
                )
            ],
            file_lines=1,
        )
    if n_cols > lim.max_fields:
        return FileResult(
            _empty(),
            [],
            [
                issue(
                    rel,
                    0,
                    "too_many_fields",
                    f"the file has {n_cols:,} columns, over the plant's limit "
                    f"landing_limits.max_fields={lim.max_fields:,}; all {n_rows} records are held back",
                    scope="file",
                    n_records=n_rows,
                )
            ],
            file_lines=n_rows,
        )
    try:
        table = pf.read()
    except Exception as exc:
        return FileResult(
            _empty(),
            [],
            [
                issue(
                    rel,
                    0,
                    "unreadable_file",
                    f"the Parquet data cannot be read ({exc}); all {n_rows} records are held back",
                    scope="file",
                    n_records=n_rows,
                )
            ],
            file_lines=n_rows,
        )
    header = list(table.column_names)
    names = _dedupe(header)
    cols = {name: _as_text(table.column(i)) for i, name in enumerate(names)}
    cols["_source_row"] = pa.array(np.arange(1, table.num_rows + 1), pa.int64())
    issues = (
        []
        if table.num_rows
        else [
            issue(
                rel,
                0,
                "no_records",
                "the file has columns but no records",
                scope="file",
                severity="warn",
                n_records=0,
            )
        ]
    )
    res = FileResult(pa.table(cols), header, issues, file_lines=n_rows)
    res.record_lines = table.num_rows
    return res


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


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _DuplicateKey(dup)
    return d


def read_jsonl_file(
    path: Path,
    rel: str,
    explode: str | None,
    parent_fields: list[str],
    ignored: frozenset[str] = frozenset(),
    limits: LandingLimits | None = None,
) -> FileResult:
    """Parse one JSON-lines file (see :func:`read_jsonl_bytes`)."""
    return read_jsonl_bytes(path.read_bytes(), rel, explode, parent_fields, ignored, limits)


def read_jsonl_bytes(
    data: bytes,
    rel: str,
    explode: str | None,
    parent_fields: list[str],
    ignored: frozenset[str] = frozenset(),
    limits: LandingLimits | None = None,
) -> FileResult:
    """Parse JSON lines; nested objects become dotted fields; ``explode`` yields one row per item.

    A list-valued field the stream declares as ignored (e.g. a batch's readings, which the
    readings stream explodes) is not copied again into this stream's raw table. A record with a
    key given twice is held back (``duplicate_key``): which of the two values is meant is unknown.
    """
    lim = limits or LandingLimits()
    if not data.strip():
        return FileResult(
            _empty(),
            [],
            [
                issue(
                    rel,
                    0,
                    "empty_file",
                    "the file is empty; nothing to load",
                    scope="file",
                    severity="warn",
                    n_records=0,
                )
            ],
        )
    lines, _, issues = _decode_lines(data, "utf-8", rel, lim.max_line_bytes)
    data_lines = [i for i, ln in enumerate(lines, start=1) if ln is None or ln.strip()]
    records: list[tuple[int, int, dict[str, Any]]] = []  # (line, item, flattened fields)
    header: dict[str, Any] = {}
    parsed: list[int] = []
    for i, ln in enumerate(lines, start=1):
        if ln is None or not ln.strip():
            continue
        try:
            obj = json.loads(ln, object_pairs_hook=_no_duplicates)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except _DuplicateKey as exc:
            issues.append(
                issue(
                    rel,
                    i,
                    "duplicate_key",
                    f"key {str(exc)!r} is given twice in one object; "
                    "which value is meant is unknown, the record is held back",
                    line_text=ln[:200],
                )
            )
            continue
        except (ValueError, RecursionError) as exc:
            issues.append(
                issue(
                    rel,
                    i,
                    "invalid_json",
                    f"line is not a valid JSON object ({str(exc)[:200]})",
                    line_text=ln[:200],
                )
            )
            continue
        if explode:
            items = obj.get(explode)
            if not isinstance(items, list):
                issues.append(
                    issue(
                        rel,
                        i,
                        "missing_required_column",
                        f"field {explode!r} (a list of readings) is missing",
                        line_text=ln[:200],
                    )
                )
                continue
            parent = {f: obj.get(f) for f in parent_fields}
            recs = [
                (
                    i,
                    j,
                    {**parent, **(_flatten(item) if isinstance(item, dict) else {"value": item})},
                )
                for j, item in enumerate(items, start=1)
            ]
        else:
            recs = [
                (
                    i,
                    0,
                    {
                        k: v
                        for k, v in _flatten(obj).items()
                        if not (isinstance(v, list) and k in ignored)
                    },
                )
            ]
        for _, _, r in recs:
            header.update(r)  # the keys, in file order (the values are not used)
        records.extend(recs)
        parsed.append(i)
    if (
        len(header) > lim.max_fields
    ):  # rare: redo the file line by line, holding back what goes over
        records, parsed, header = _within_field_limit(records, parsed, rel, lim.max_fields, issues)
    cols = list(header)
    arrays = {
        n: pa.array([_text(r.get(c)) for _, _, r in records], pa.string())
        for c, n in zip(cols, _dedupe(cols), strict=True)
    }
    arrays["_source_row"] = pa.array([i for i, _, _ in records], pa.int64())
    if explode:
        arrays["_source_item"] = pa.array([j for _, j, _ in records], pa.int64())
    res = FileResult(pa.table(arrays), cols, issues, file_lines=len(data_lines))
    return _accounted(res, rel, data_lines, parsed)


def _within_field_limit(
    records: list[tuple[int, int, dict[str, Any]]],
    lines: list[int],
    rel: str,
    max_fields: int,
    issues: list[dict[str, Any]],
) -> tuple[list, list[int], dict[str, Any]]:
    """The records of a JSON-lines file whose fields together exceed ``max_fields``: kept line by line
    while the file's fields stay within the limit; a line that would bring it over is held back."""
    kept: list[tuple[int, int, dict[str, Any]]] = []
    parsed: list[int] = []
    header: dict[str, Any] = {}
    by_line: dict[int, list[tuple[int, int, dict[str, Any]]]] = {}
    for rec in records:
        by_line.setdefault(rec[0], []).append(rec)
    for line in lines:
        recs = by_line.get(line, [])
        keys = dict.fromkeys(k for _, _, r in recs for k in r)
        n = len(keys.keys() | header.keys())
        if n > max_fields:
            issues.append(
                issue(
                    rel,
                    line,
                    "too_many_fields",
                    f"the record brings the file to {n:,} fields, over "
                    f"the plant's limit landing_limits.max_fields={max_fields:,}; the record is held back",
                )
            )
            continue
        header.update(keys)
        kept.extend(recs)
        parsed.append(line)
    return kept, parsed, header


# --------------------------------------------------------------------------- streams


def stream_spec(plant: PlantConfig, stream: str) -> StreamBase:
    return getattr(plant.streams, stream)


class LandingRefused(Exception):
    """A landing path that is not read: a link, not a regular file, outside the plant's folder, or
    over the size limit. ``rule`` names why; ``n_records`` is what it held when that is countable."""

    def __init__(self, rule: str, message: str, n_records: int = 0) -> None:
        super().__init__(message)
        self.rule, self.n_records = rule, n_records


def discover(
    plant: PlantConfig, stream: str, dates: list[dt.date], paths: Paths
) -> dict[Path, dt.date | None]:
    """Landing paths of a stream for the given local days (None: a file spanning many days).

    Every match of the stream's pattern is listed, links and special files included, so that
    :func:`read_landing` can refuse them with a reason instead of skipping them unseen;
    directories are not files and are left out."""
    spec = stream_spec(plant, stream)
    root = plant.landing_path(paths)
    found: dict[Path, dt.date | None] = {}
    patterns = (
        [(spec.path.format(date=d.isoformat()), d) for d in dates]
        if spec.per_day_files
        else [(spec.path, None)]
    )
    for pattern, day in patterns:
        for p in sorted(root.glob(pattern)):
            try:
                st_mode = p.lstat().st_mode
            except OSError:
                continue
            if not stat.S_ISDIR(st_mode):
                found[p] = day
    return found


def _count_lines(fd: int, limit: int) -> int:
    """Non-empty lines of an open file, read in 1 MiB blocks (memory stays bounded)."""
    n, last, total = 0, b"\n", 0
    os.lseek(fd, 0, os.SEEK_SET)
    while block := os.read(fd, 1 << 20):
        n += block.count(b"\n")
        last = block[-1:]
        total += len(block)
        if total > 64 * limit:  # a pathological size: stop counting, report what was counted
            break
    return n + (last != b"\n")


def read_landing(path: Path, root: Path, limits: LandingLimits) -> tuple[bytes, dict[str, Any]]:
    """The bytes of one landing file and its fingerprint, read only when it is a regular file inside
    the plant's landing folder: no symbolic link anywhere below the folder, no '..', no device or
    pipe, not over ``limits.max_file_bytes``. Anything else raises :class:`LandingRefused`.

    The file is opened without following links and checked again after opening (same inode as the
    path that was checked), so a link swapped in between is refused too."""
    rel = path.relative_to(root)
    if ".." in rel.parts:
        raise LandingRefused(
            "outside_landing_folder", "the path leaves the plant's landing folder; not read"
        )
    cur = root
    for part in rel.parts:
        cur = cur / part
        st = os.lstat(cur)
        if stat.S_ISLNK(st.st_mode):
            raise LandingRefused(
                "symlink",
                f"{cur.relative_to(root).as_posix()!r} is a symbolic link; landing "
                "reads only regular files inside the plant's landing folder, so neither the link "
                "nor its target is read",
            )
    if not stat.S_ISREG(st.st_mode):
        raise LandingRefused(
            "not_a_regular_file", "not a regular file (a device, pipe or socket); not read"
        )
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        fst = os.fstat(fd)
        real = Path(os.path.realpath(path))
        if (
            (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino)
            or not stat.S_ISREG(fst.st_mode)
            or not real.is_relative_to(Path(os.path.realpath(root)))
        ):
            raise LandingRefused(
                "symlink", "the file changed into a link or moved while it was opened; not read"
            )
        if fst.st_size > limits.max_file_bytes:
            raise LandingRefused(
                "file_too_large",
                f"the file has {fst.st_size:,} bytes, over the plant's limit "
                f"landing_limits.max_file_bytes={limits.max_file_bytes:,}; not loaded",
                n_records=_count_lines(fd, limits.max_file_bytes),
            )
        chunks = []
        while block := os.read(fd, 1 << 22):
            chunks.append(block)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    return data, {
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "modified_utc": dt.datetime.fromtimestamp(fst.st_mtime, dt.UTC).replace(tzinfo=None),
    }


def parse_bytes(plant: PlantConfig, stream: str, data: bytes, rel: str) -> FileResult:
    """Parse one landing file's bytes by the stream's format. A reader that fails on a file it
    cannot handle quarantines the file (``unreadable_file``) instead of failing the run."""
    spec = stream_spec(plant, stream)
    lim = plant.landing_limits
    try:
        if spec.format == "csv":
            return read_csv_bytes(
                data, rel, spec.csv.delimiter, spec.csv.encoding, lim, spec.csv.columns
            )
        if spec.format == "parquet":
            return read_parquet_bytes(data, rel, lim)
        explode = spec.explode if isinstance(spec, ReadingsStream) else None
        parents = spec.parent_fields if isinstance(spec, ReadingsStream) else []
        return read_jsonl_bytes(data, rel, explode, parents, frozenset(spec.ignore_fields), lim)
    except Exception as exc:  # the file, not the run, is what failed
        n = sum(1 for ln in data.splitlines() if ln.strip()) - (
            spec.format == "csv" and spec.csv.header
        )
        return FileResult(
            _empty(),
            [],
            [
                issue(
                    rel,
                    0,
                    "unreadable_file",
                    f"the {spec.format} reader failed on this file "
                    f"({type(exc).__name__}: {str(exc)[:200]}); all its records are "
                    "held back",
                    scope="file",
                    n_records=max(n, 1),
                )
            ],
            file_lines=max(n, 1),
        )


def parse_file(plant: PlantConfig, stream: str, path: Path, paths: Paths) -> FileResult:
    """Read (safely, see :func:`read_landing`) and parse one landing file of a plant stream."""
    root = plant.landing_path(paths)
    data, _ = read_landing(path, root, plant.landing_limits)
    return parse_bytes(plant, stream, data, path.relative_to(root).as_posix())


def sequence_times(values: pd.Series, ts: TimestampSpec) -> pd.Series:
    """Synthetic UTC times ``start + (n - 1) * step`` from a sequence-number column."""
    n = pd.to_numeric(values, errors="coerce")
    start = pd.Timestamp(ts.start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    return start + pd.to_timedelta((n - 1) * ts.step_seconds, unit="s")


def parse_times(
    values: pd.Series, spec: TimestampSpec, tz: Any, group: pd.Series | None = None
) -> tuple[pd.Series, pd.Series]:
    """Parse source times into naive UTC. Returns (times, nonexistent_mask).

    Local times are localised in the plant's zone. In the autumn fall-back hour a local time
    occurs twice; the first occurrence (per ``group``, e.g. machine, in file order) is taken as
    daylight time and the second as standard time. Local times that do not exist (spring-forward
    gap) are flagged, not guessed.
    """
    none = pd.Series(False, index=values.index)
    if spec.kind == "sequence":
        t = sequence_times(values, spec)
        return t.dt.tz_localize(None), none
    if spec.kind == "epoch_ms":
        ms = pd.to_numeric(values, errors="coerce")
        return pd.to_datetime(ms, unit="ms", errors="coerce"), none
    if spec.kind == "utc":
        t = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        return t.dt.tz_localize(None), none
    naive = pd.to_datetime(values, format=spec.format, errors="coerce")
    keys = [naive] if group is None else [group.astype("string").fillna(""), naive]
    first = (
        pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)})
        .groupby([f"k{i}" for i in range(len(keys))], dropna=False, sort=False)
        .cumcount()
        .to_numpy()
        == 0
    )
    local = naive.dt.tz_localize(tz, ambiguous=first, nonexistent="NaT")
    nonexistent = naive.notna() & local.isna()
    return local.dt.tz_convert("UTC").dt.tz_localize(None), nonexistent


def read_raw(
    plant: PlantConfig,
    stream: str,
    dates: list[dt.date],
    paths: Paths,
    unit_days: dict[str, dt.date] | None = None,
) -> RawStream:
    """Read every landing file of ``stream`` for the plant's local ``dates`` into one raw table.

    A file for many days is split by the day of each record (:func:`record_days`); inspections
    follow their unit's day in ``unit_days`` (the ``unit_days`` of the units' :class:`RawStream`).

    A path that is not read (see :func:`read_landing`) gets a receipt and a file-level parse issue
    naming the rule, under the day its name belongs to (a many-day file: the first day)."""
    root = plant.landing_path(paths)
    spec = stream_spec(plant, stream)
    k = items_per_record(plant, stream)
    wanted = set(dates)
    tables: list[pa.Table] = []
    receipts: list[dict[str, Any]] = []
    issues: list[dict[str, Any]] = []
    found: dict[str, dt.date] = {}  # unit id -> day, from the units files for many days
    uid = spec.fields.get("unit_id") if stream == "units" else None
    for path, day in discover(plant, stream, dates, paths).items():
        rel = path.relative_to(root).as_posix()
        try:
            data, fp = read_landing(path, root, plant.landing_limits)
        except LandingRefused as exc:
            res = FileResult(
                _empty(),
                [],
                [issue(rel, 0, exc.rule, str(exc), scope="file", n_records=exc.n_records)],
                file_lines=exc.n_records,
            )
            fp = {"size_bytes": None, "sha256": None, "modified_utc": None}
            day = day if day is not None else min(dates)
        else:
            res = parse_bytes(plant, stream, data, rel)
        if day is not None:
            per_day = {day: res.table}
            day_issues = {day: res.issues}
        else:
            days = record_days(plant, stream, res.table, unit_days)
            per_day, day_issues = _split_by_day(plant, stream, res, rel, wanted, dates[0], days)
            if stream == "units" and days is not None and uid in res.table.column_names:
                ids = res.table[uid].to_pandas()
                found.update({u: d for u, d in zip(ids, days, strict=True) if pd.notna(d)})
        for d in sorted(set(per_day) | set(day_issues)):
            if d not in wanted:
                continue
            tbl = per_day.get(d, _empty())
            iss = day_issues.get(d, [])
            n = tbl.num_rows
            tbl = tbl.append_column("plant", pa.array([plant.plant_id] * n, pa.string()))
            tbl = tbl.append_column("partition_date", pa.array([d] * n, pa.date32()))
            tbl = tbl.append_column("_source_file", pa.array([rel] * n, pa.string()))
            tables.append(tbl)
            for i in iss:
                issues.append(
                    {
                        **i,
                        "plant": plant.plant_id,
                        "partition_date": d,
                        "stream": stream,
                        "n_items": i["n_records"] * k,
                    }
                )
            receipts.append(
                {
                    "plant": plant.plant_id,
                    "partition_date": d,
                    "stream": stream,
                    "source_file": rel,
                    "header": json.dumps(res.header, ensure_ascii=False),
                    "records": n,
                    "rejected_records": sum(i["n_records"] for i in iss),
                    "items_per_record": k,
                    "file_records": res.file_lines if day is not None else None,
                    **fp,
                }
            )
    if tables:
        table = pa.concat_tables(tables, promote_options="default")
    else:
        table = pa.table(
            {
                "plant": pa.array([], pa.string()),
                "partition_date": pa.array([], pa.date32()),
                "_source_file": pa.array([], pa.string()),
                "_source_row": pa.array([], pa.int64()),
            }
        )
    return RawStream(plant.plant_id, stream, table, receipts, issues, found)


def _by_unit(spec: Any, stream: str) -> bool:
    """Whether a stream's records take their unit's day (inspections unless their time is a
    sequence; attributes always: they have no time of their own)."""
    return stream in BY_UNIT and (stream == ATTRIBUTES or spec.timestamp.kind != "sequence")


def _day_source(spec: Any, stream: str) -> str | None:
    """The source field :func:`record_days` places a stream's records by."""
    if _by_unit(spec, stream):
        return spec.fields.get("unit_id")
    if spec.timestamp.kind == "sequence" or stream == "readings":
        return spec.timestamp.field
    return spec.fields.get("start")


def record_days(
    plant: PlantConfig,
    stream: str,
    table: pa.Table,
    unit_days: dict[str, dt.date] | None = None,
) -> pd.Series | None:
    """The plant-local day each record of a many-day file belongs to (NaN where it has none).

    The one rule that places records on partitions, with the times parsed as standardisation
    parses them (local times in the plant's zone): a reading by its time, a unit by its start, an
    inspection or a unit attribute record by its unit's day in the units file (``unit_days``), or
    an inspection by its own time where the stream's time is a sequence. None when the file lacks
    the field that says."""
    spec = stream_spec(plant, stream)
    name = _day_source(spec, stream)
    if name is None or name not in table.column_names:
        return None
    if _by_unit(spec, stream):
        return table[name].to_pandas().map(unit_days or {})
    ts: TimestampSpec = spec.timestamp
    values = table[name].to_pandas()
    if ts.kind == "local":  # the day is written in the local text, even in a DST gap
        local = pd.to_datetime(values, format=ts.format, errors="coerce")
    else:
        t, _ = parse_times(values, ts, plant.tz)
        local = t.dt.tz_localize("UTC").dt.tz_convert(plant.tz).dt.tz_localize(None)
    batch = batch_of_rows(spec, table)
    if batch is not None:  # absolute times: every row of a batch is on the day it starts
        local = local.groupby(batch, dropna=False, sort=False).transform("min")
    return local.dt.date


def batch_of_rows(spec: StreamBase, table: pa.Table) -> pd.Series | None:
    """For a readings stream of one file per batch whose rows carry absolute times: the batch
    key of each row of one file's ``table`` (its batch id column; a file named for its batch is
    one batch), by which the batch's start - its earliest row - is found. None otherwise (not a
    batch stream, or the batch start is a column: ``batch.elapsed_seconds``)."""
    batch = getattr(spec, "batch", None)
    if batch is None or batch.elapsed_seconds is not None:
        return None
    if batch.field is None:
        return pd.Series("", index=range(table.num_rows))
    if batch.field not in table.column_names:
        return pd.Series("", index=range(table.num_rows))
    return table[batch.field].to_pandas().fillna("")


def _split_by_day(
    plant: PlantConfig,
    stream: str,
    res: FileResult,
    rel: str,
    wanted: set[dt.date],
    fallback: dt.date,
    days: pd.Series | None,
) -> tuple[dict[dt.date, pa.Table], dict[dt.date, list[dict]]]:
    """Split a many-day file by the day of each of its records (``days``, see
    :func:`record_days`; None: the file lacks the field that says).

    Whatever has no day of its own - the file's parse issues, records whose time or unit gives
    none - is reported under the file's first record day, so a backfill one day per run reports
    it once; only a file in which no record has a day falls back to the run's first day."""
    spec = stream_spec(plant, stream)
    if days is None:
        name = _day_source(spec, stream)
        n = res.table.num_rows
        held = issue(
            rel,
            0,
            "missing_required_column",
            f"field {name!r}, which places the records of a file for many days on their days, "
            f"is not in the file; its {n} record(s) are held back (reported under {fallback})",
            scope="file",
            n_records=n,
        )
        return {}, {fallback: [*res.issues, *([held] if n else [])]}
    known = sorted({x for x in days.dropna().unique()})
    home = known[0] if known else fallback
    out: dict[dt.date, pa.Table] = {}
    issues: dict[dt.date, list[dict]] = {home: list(res.issues)}
    idx = np.arange(len(days))
    for d in known:
        if d in wanted:
            out[d] = res.table.take(pa.array(idx[(days == d).to_numpy()]))
    bad = idx[days.isna().to_numpy()]
    if len(bad):
        by_unit = _by_unit(spec, stream)
        name = _day_source(spec, stream)
        rows = res.table["_source_row"].to_pandas().iloc[bad]
        values = res.table[name].to_pandas().iloc[bad]
        for r, v in zip(rows, values, strict=True):
            text = None if pd.isna(v) else str(v)
            rule, why = (
                ("unknown_unit", f"unit {text!r} is not in the units file; the record's")
                if by_unit
                else ("invalid_timestamp", f"{text!r} is not a {spec.timestamp.kind} time; the")
            )
            issues[home].append(
                issue(
                    rel,
                    int(r),
                    rule,
                    f"{why} day is unknown (reported under {home})",
                    column=name,
                    value=text,
                )
            )
    return out, issues
