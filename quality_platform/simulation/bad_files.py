"""Malformed landing files for the ``bad_files`` scenario, each with the rule that must catch it.

The scenario first writes the stable data, then replaces (or adds) single files. Day ``i`` is
``start + i`` days in the plant's own local calendar. A case goes to its preferred plant when
that plant is simulated and has the needed format, else to the first simulated plant that has it;
cases without a fitting plant or whose day lies outside the simulated days are skipped and listed
in ``truth["bad_files_skipped"]``.

=====  =========  ===  =================================================  =========================
 no.   plant      day  change                                             expected_rule
=====  =========  ===  =================================================  =========================
  1    plant_a    1    readings CSV: last line cut inside a field,        truncated_row
                       no trailing newline
  2    plant_a    2    readings CSV written with ';'                      wrong_delimiter
  3    plant_a    3    readings CSV: every number as quoted "182,4"       not_a_number
  4    plant_a    4    readings CSV: extra text column ``Kommentar``      unknown_column
  5    plant_a    5    units CSV without the unit id column               missing_required_column
  6    plant_a    6    readings CSV header: temperature unit label        unit_label_mismatch
                       of another unit (°F), values unchanged
  7    plant_a    7    readings CSV: 20 lines with a Latin-1 byte         encoding
                       in the machine id
  8    plant_b    1    readings Parquet: 500 rows appended again          duplicate
  9    plant_b    2    readings Parquet: 100 timestamps in 2099           timestamp_in_future
 10    plant_b    3    readings Parquet: 50 values 1e308 and              out_of_range,
                       2000 values NaN                                    missing_value
 11    plant_b    4    readings Parquet: unit label of another quantity   unit_label_mismatch
                       (psi) on the temperature rows of one machine
 12    plant_c    1    units JSONL: one line cut in half                  invalid_json
 13    plant_c    2    an extra EMPTY inspections file ``*-late``         empty_file
 14    plant_c    3    embedded readings: temperature null for one batch  missing_value
=====  =========  ===  =================================================  =========================

``rows``: CSV = physical line numbers (header = line 1), Parquet = 1-based row index, JSONL =
1-based line number; ``scope`` says whether rows, a column or the whole file are affected.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quality_platform.config import PlantConfig, QuantityRegistry
from quality_platform.simulation.grid import rng_for
from quality_platform.simulation.writers import stream_path, write_parquet
from quality_platform.units import ureg

COMMENTS = ("", "ok", "Sensor geprüft", "Schichtwechsel", "Wartung fällig", "Materialwechsel")


@dataclass(frozen=True)
class Ctx:
    """What a case needs: where, which plant and day, and a seeded generator."""

    out_dir: Path
    plant: PlantConfig
    registry: QuantityRegistry
    day: dt.date
    rng: np.random.Generator

    @property
    def iso(self) -> str:
        """The day as YYYY-MM-DD."""
        return self.day.isoformat()

    def path(self, stream: str) -> Path:
        """The day's file of ``stream`` (readings/units)."""
        template = getattr(self.plant.streams, stream).path
        return stream_path(self.out_dir, self.plant.plant_id, template, self.iso)

    def entry(
        self, path: Path, case: str, rule: str, rows: list[int], scope: str, **extra: Any
    ) -> dict[str, Any]:
        """One ``truth["bad_files"]`` record."""
        return {
            "plant": self.plant.plant_id,
            "date": self.iso,
            "file": path.relative_to(self.out_dir).as_posix(),
            "case": case,
            "expected_rule": rule,
            "rows": rows,
            "n_rows": len(rows),
            "scope": scope,
            **extra,
        }


# --------------------------------------------------------------------------- predicates


def _csv_wide(p: PlantConfig) -> bool:
    rs = p.streams.readings
    return rs.format == "csv" and rs.layout == "wide" and "{date}" in rs.path and rs.batch is None


def _csv_wide_units_in_header(p: PlantConfig) -> bool:
    return (
        _csv_wide(p)
        and p.streams.readings.header_units
        and ("temperature" in p.streams.readings.quantities)
    )


def _csv_machine_field(p: PlantConfig) -> bool:
    return _csv_wide(p) and p.streams.readings.machine.field is not None


def _csv_units(p: PlantConfig) -> bool:
    us = p.streams.units
    return us.format == "csv" and "{date}" in us.path


def _parquet(p: PlantConfig) -> bool:
    rs = p.streams.readings
    return rs.format == "parquet" and "{date}" in rs.path and rs.batch is None


def _parquet_long_uom(p: PlantConfig) -> bool:
    rs = p.streams.readings
    return (
        _parquet(p)
        and rs.layout == "long"
        and rs.long is not None
        and rs.long.unit_field is not None
        and "temperature" in rs.quantities
        and len(rs.quantities) > 1
    )


def _jsonl_units(p: PlantConfig) -> bool:
    us = p.streams.units
    return us.format == "jsonl" and "{date}" in us.path


def _jsonl_embedded(p: PlantConfig) -> bool:
    rs = p.streams.readings
    return (
        _jsonl_units(p)
        and rs.format == "jsonl"
        and bool(rs.explode)
        and rs.path == p.streams.units.path
        and "temperature" in rs.quantities
    )


def _inspection_glob(p: PlantConfig) -> bool:
    return "*" in p.streams.inspections.path and "{date}" in p.streams.inspections.path


# --------------------------------------------------------------------------- CSV cases


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _delim(ctx: Ctx) -> bytes:
    return ctx.plant.streams.readings.csv.delimiter.encode()


def truncated_row(ctx: Ctx) -> list[dict[str, Any]]:
    """Cut the last data line inside its first quantity field; no trailing newline."""
    path = ctx.path("readings")
    lines = _lines(path)
    fields = lines[-1].split(_delim(ctx))
    k = min(2, len(fields) - 1)
    value = fields[k]
    cut = value[: max(1, len(value) // 2)]
    lines[-1] = _delim(ctx).join([*fields[:k], cut])
    path.write_bytes(b"\n".join(lines))
    return [ctx.entry(path, "csv_truncated_last_line", "truncated_row", [len(lines)], "rows")]


def wrong_delimiter(ctx: Ctx) -> list[dict[str, Any]]:
    """Write the day's readings with ';' (',' if the plant already uses ';')."""
    path = ctx.path("readings")
    data = path.read_bytes()
    if b'"' in data:
        raise ValueError(f"{path}: quoted CSV cannot be re-delimited by replacement")
    other = b";" if _delim(ctx) != b";" else b","
    path.write_bytes(data.replace(_delim(ctx), other))
    return [
        ctx.entry(
            path, "csv_semicolon_delimiter", "wrong_delimiter", [], "file", delimiter=other.decode()
        )
    ]


def _quantity_positions(ctx: Ctx, header: bytes) -> list[int]:
    names = header.decode("utf-8").split(_delim(ctx).decode())
    rs = ctx.plant.streams.readings
    wanted = {
        f"{m.field} [{m.unit}]" if rs.header_units else m.field for m in rs.quantities.values()
    }
    return [i for i, n in enumerate(names) if n in wanted]


def decimal_comma(ctx: Ctx) -> list[dict[str, Any]]:
    """Every numeric value as a quoted decimal-comma string, e.g. ``"182,4"``."""
    path = ctx.path("readings")
    lines = _lines(path)
    d = _delim(ctx)
    pos = set(_quantity_positions(ctx, lines[0]))
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split(d)
        out.append(
            d.join(
                b'"' + f.replace(b".", b",") + b'"' if i in pos else f for i, f in enumerate(fields)
            )
        )
    path.write_bytes(b"\n".join(out) + b"\n")
    rows = list(range(2, len(lines) + 1))
    return [ctx.entry(path, "csv_decimal_comma", "not_a_number", rows, "rows")]


def unknown_column(ctx: Ctx) -> list[dict[str, Any]]:
    """Append a free-text column ``Kommentar``; the rows stay good."""
    path = ctx.path("readings")
    lines = _lines(path)
    d = _delim(ctx)
    enc = ctx.plant.streams.readings.csv.encoding
    picks = ctx.rng.integers(0, len(COMMENTS), size=len(lines) - 1)
    out = [lines[0] + d + b"Kommentar"]
    out += [
        line + d + COMMENTS[int(k)].encode(enc) for line, k in zip(lines[1:], picks, strict=True)
    ]
    path.write_bytes(b"\n".join(out) + b"\n")
    return [ctx.entry(path, "csv_extra_column", "unknown_column", [], "column", column="Kommentar")]


def missing_required_column(ctx: Ctx) -> list[dict[str, Any]]:
    """Drop the unit id column from the day's units CSV."""
    us = ctx.plant.streams.units
    path = ctx.path("units")
    d = us.csv.delimiter.encode()
    lines = _lines(path)
    if b'"' in b"\n".join(lines):
        raise ValueError(f"{path}: quoted CSV cannot be edited by splitting")
    column = us.fields["unit_id"]
    idx = lines[0].decode(us.csv.encoding).split(us.csv.delimiter).index(column)
    out = [d.join(f for i, f in enumerate(line.split(d)) if i != idx) for line in lines]
    path.write_bytes(b"\n".join(out) + b"\n")
    return [
        ctx.entry(
            path,
            "csv_units_without_id_column",
            "missing_required_column",
            [],
            "column",
            column=column,
        )
    ]


def _other_label(ctx: Ctx, quantity: str) -> str:
    """A unit label of the same dimension as the configured one but a different unit."""
    label = ctx.plant.streams.readings.quantities[quantity].unit
    unit = ureg().Unit(ctx.registry.pint_unit(label))
    for alias, expr in ctx.registry.unit_aliases.items():
        other = ureg().Unit(expr)
        if other.dimensionality == unit.dimensionality and other != unit:
            return alias
    raise ValueError(f"no other unit label for {quantity!r}")


def header_unit_label(ctx: Ctx) -> list[dict[str, Any]]:
    """Temperature header with another unit label (values unchanged)."""
    path = ctx.path("readings")
    lines = _lines(path)
    m = ctx.plant.streams.readings.quantities["temperature"]
    other = _other_label(ctx, "temperature")
    enc = ctx.plant.streams.readings.csv.encoding
    old, new = f"{m.field} [{m.unit}]", f"{m.field} [{other}]"
    lines[0] = lines[0].decode(enc).replace(old, new).encode(enc)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return [
        ctx.entry(
            path,
            "csv_header_unit_label",
            "unit_label_mismatch",
            [1],
            "column",
            column=new,
            configured_unit=m.unit,
            written_unit=other,
            values_unit=m.unit,
        )
    ]


def latin1_bytes(ctx: Ctx) -> list[dict[str, Any]]:
    """20 data lines whose machine id ends in the Latin-1 byte 0xE9 (invalid UTF-8)."""
    path = ctx.path("readings")
    lines = _lines(path)
    d = _delim(ctx)
    rs = ctx.plant.streams.readings
    names = lines[0].decode(rs.csv.encoding).split(rs.csv.delimiter)
    col = names.index(str(rs.machine.field))
    picks = np.sort(
        ctx.rng.choice(np.arange(1, len(lines)), size=min(20, len(lines) - 1), replace=False)
    )
    for i in picks.tolist():
        fields = lines[i].split(d)
        fields[col] = fields[col][:-1] + "é".encode("latin-1")
        lines[i] = d.join(fields)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return [
        ctx.entry(
            path,
            "csv_latin1_bytes",
            "encoding",
            [i + 1 for i in picks.tolist()],
            "rows",
            byte="0xE9",
        )
    ]


# --------------------------------------------------------------------------- Parquet cases


def _value_column(ctx: Ctx) -> str:
    rs = ctx.plant.streams.readings
    if rs.layout == "long":
        assert rs.long is not None
        return rs.long.value_field
    m = (
        rs.quantities["temperature"]
        if "temperature" in rs.quantities
        else next(iter(rs.quantities.values()))
    )
    return f"{m.field} [{m.unit}]" if rs.header_units else m.field


def duplicate_rows(ctx: Ctx) -> list[dict[str, Any]]:
    """Append 500 existing rows again."""
    path = ctx.path("readings")
    table = pq.read_table(path)
    n = table.num_rows
    k = min(500, n)
    idx = np.sort(ctx.rng.choice(n, size=k, replace=False))
    write_parquet(path, pa.concat_tables([table, table.take(pa.array(idx))]))
    return [
        ctx.entry(
            path,
            "parquet_duplicate_rows",
            "duplicate",
            list(range(n + 1, n + k + 1)),
            "rows",
            duplicate_of_rows=(idx + 1).tolist(),
        )
    ]


def future_timestamps(ctx: Ctx) -> list[dict[str, Any]]:
    """Move 100 rows' timestamps to the same day of the year 2099."""
    path = ctx.path("readings")
    table = pq.read_table(path)
    field = str(ctx.plant.streams.readings.timestamp.field)
    n = table.num_rows
    idx = np.sort(ctx.rng.choice(n, size=min(100, n), replace=False))
    target = ctx.day.replace(year=2099, day=min(ctx.day.day, 28))
    shift_ms = (target - ctx.day).days * 86_400_000
    col = table.column(field)
    ms = pc.cast(col, pa.int64()).to_numpy().copy()
    ms[idx] += shift_ms
    new = pa.array(ms, type=pa.int64()).cast(col.type)
    table = table.set_column(table.schema.get_field_index(field), field, new)
    write_parquet(path, table)
    return [
        ctx.entry(
            path,
            "parquet_future_timestamps",
            "timestamp_in_future",
            (idx + 1).tolist(),
            "rows",
            year=2099,
        )
    ]


def extreme_and_nan(ctx: Ctx) -> list[dict[str, Any]]:
    """50 values set to 1e308 and 2000 others to NaN (NaN storm)."""
    path = ctx.path("readings")
    table = pq.read_table(path)
    field = _value_column(ctx)
    n = table.num_rows
    perm = ctx.rng.permutation(n)
    big, nan = np.sort(perm[:50]), np.sort(perm[50:2050])
    values = table.column(field).to_numpy().copy()
    values[big] = 1e308
    values[nan] = np.nan
    table = table.set_column(
        table.schema.get_field_index(field), field, pa.array(values, type=pa.float64())
    )
    write_parquet(path, table)
    return [
        ctx.entry(
            path,
            "parquet_extreme_values",
            "out_of_range",
            (big + 1).tolist(),
            "rows",
            column=field,
            value=1e308,
        ),
        ctx.entry(
            path, "parquet_nan_storm", "missing_value", (nan + 1).tolist(), "rows", column=field
        ),
    ]


def wrong_uom(ctx: Ctx) -> list[dict[str, Any]]:
    """The temperature rows of one machine carry the unit label of another quantity."""
    rs = ctx.plant.streams.readings
    assert rs.long is not None and rs.long.unit_field is not None
    path = ctx.path("readings")
    table = pq.read_table(path)
    machine = str(ctx.rng.choice(np.asarray(ctx.plant.machines, dtype=object)))
    signal = rs.quantities["temperature"].field
    label = next(
        m.unit
        for q, m in rs.quantities.items()
        if q != "temperature" and m.unit != rs.quantities["temperature"].unit
    )
    sig = table.column(rs.long.quantity_field).to_numpy(zero_copy_only=False)
    mach = table.column(str(rs.machine.field)).to_numpy(zero_copy_only=False)
    mask = (sig == signal) & (mach == machine)
    uom = table.column(rs.long.unit_field).to_numpy(zero_copy_only=False).astype(object)
    uom[mask] = label
    table = table.set_column(
        table.schema.get_field_index(rs.long.unit_field),
        rs.long.unit_field,
        pa.array(uom.tolist(), type=pa.string()),
    )
    write_parquet(path, table)
    rows = (np.flatnonzero(mask) + 1).tolist()
    return [
        ctx.entry(
            path,
            "parquet_wrong_uom",
            "unit_label_mismatch",
            rows,
            "rows",
            machine=machine,
            signal=signal,
            written_unit=label,
            configured_unit=rs.quantities["temperature"].unit,
        )
    ]


# --------------------------------------------------------------------------- JSONL cases


def truncated_json(ctx: Ctx) -> list[dict[str, Any]]:
    """Cut one line of the units file in half (the newline stays)."""
    path = ctx.path("units")
    lines = _lines(path)
    i = int(ctx.rng.integers(len(lines) // 4, max(len(lines) // 4 + 1, 3 * len(lines) // 4)))
    lines[i] = lines[i][: len(lines[i]) // 2]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return [ctx.entry(path, "jsonl_truncated_line", "invalid_json", [i + 1], "rows")]


def empty_inspections(ctx: Ctx) -> list[dict[str, Any]]:
    """An extra 0-byte file matching the inspections glob."""
    ins = ctx.plant.streams.inspections
    path = stream_path(ctx.out_dir, ctx.plant.plant_id, ins.path, ctx.iso, f"{ctx.iso}-late")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return [ctx.entry(path, "empty_inspections_file", "empty_file", [], "file", extra_file=True)]


def null_temperature(ctx: Ctx) -> list[dict[str, Any]]:
    """Temperature null in every embedded reading of one batch of one machine."""
    rs = ctx.plant.streams.readings
    us = ctx.plant.streams.units
    path = ctx.path("units")
    lines = _lines(path)
    machine_key = us.fields["machine_id"]
    machine = str(ctx.rng.choice(np.asarray(ctx.plant.machines, dtype=object)))
    objs = [json.loads(line) for line in lines]
    candidates = [
        i for i, o in enumerate(objs) if o.get(machine_key) == machine and o.get(str(rs.explode))
    ]
    i = candidates[int(ctx.rng.integers(0, len(candidates)))]
    field = rs.quantities["temperature"].field
    for r in objs[i][str(rs.explode)]:
        r[field] = None
    lines[i] = json.dumps(objs[i], ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return [
        ctx.entry(
            path,
            "jsonl_null_temperature",
            "missing_value",
            [i + 1],
            "rows",
            machine=machine,
            field=field,
            unit_id=objs[i][us.fields["unit_id"]],
        )
    ]


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class Case:
    """One malformed-file case."""

    name: str
    plant: str
    day: int
    fits: Callable[[PlantConfig], bool]
    apply: Callable[[Ctx], list[dict[str, Any]]]


CASES: tuple[Case, ...] = (
    Case("csv_truncated_last_line", "plant_a", 1, _csv_wide, truncated_row),
    Case("csv_semicolon_delimiter", "plant_a", 2, _csv_wide, wrong_delimiter),
    Case("csv_decimal_comma", "plant_a", 3, _csv_wide, decimal_comma),
    Case("csv_extra_column", "plant_a", 4, _csv_wide, unknown_column),
    Case("csv_units_without_id_column", "plant_a", 5, _csv_units, missing_required_column),
    Case("csv_header_unit_label", "plant_a", 6, _csv_wide_units_in_header, header_unit_label),
    Case("csv_latin1_bytes", "plant_a", 7, _csv_machine_field, latin1_bytes),
    Case("parquet_duplicate_rows", "plant_b", 1, _parquet, duplicate_rows),
    Case("parquet_future_timestamps", "plant_b", 2, _parquet, future_timestamps),
    Case("parquet_extreme_values_and_nan_storm", "plant_b", 3, _parquet, extreme_and_nan),
    Case("parquet_wrong_uom", "plant_b", 4, _parquet_long_uom, wrong_uom),
    Case("jsonl_truncated_line", "plant_c", 1, _jsonl_units, truncated_json),
    Case("empty_inspections_file", "plant_c", 2, _inspection_glob, empty_inspections),
    Case("jsonl_null_temperature", "plant_c", 3, _jsonl_embedded, null_temperature),
)


def _plant_for(case: Case, plants: dict[str, PlantConfig]) -> str | None:
    if case.plant in plants and case.fits(plants[case.plant]):
        return case.plant
    return next((pid for pid in sorted(plants) if case.fits(plants[pid])), None)


def apply_bad_files(
    out_dir: Path,
    plants: dict[str, PlantConfig],
    registry: QuantityRegistry,
    start: dt.date,
    days: int,
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Corrupt the written stable data; returns ``(bad_files, skipped)`` for truth.json."""
    entries: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for case in CASES:
        pid = _plant_for(case, plants)
        day = start + dt.timedelta(days=case.day)
        if pid is None:
            skipped.append(
                {
                    "case": case.name,
                    "plant": case.plant,
                    "date": day.isoformat(),
                    "reason": "no simulated plant with the needed format",
                }
            )
            continue
        if case.day > days - 1:
            skipped.append(
                {
                    "case": case.name,
                    "plant": pid,
                    "date": day.isoformat(),
                    "reason": f"day {case.day} is outside the {days} simulated days",
                }
            )
            continue
        ctx = Ctx(
            out_dir=out_dir,
            plant=plants[pid],
            registry=registry,
            day=day,
            rng=rng_for(seed, pid, "bad_files", case.name),
        )
        entries += case.apply(ctx)
    return entries, skipped
