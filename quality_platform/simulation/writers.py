"""Native file writers, driven by the plant configs (format, layout, field names, unit labels).

Supported: readings as ``csv`` / ``parquet`` / ``jsonl`` in ``wide`` or ``long`` layout, or in
``array`` layout (one record per production cycle and machine, one column per sample, each
quantity at its own ``interval_seconds``; see :func:`array_columns`), or one file per batch
(``batch``: each production unit's time series of its machine in a file of its own named by the
unit id, see :func:`batch_files`), ``jsonl`` also exploded
inside the unit records (``explode`` with the same path as the units stream, plant_c); units and
inspections as ``csv`` / ``parquet`` / ``jsonl`` (dotted field names become nested JSON objects).
Timestamps follow each stream's ``timestamp.kind``: ``local``
(naive local text, or a naive ``timestamp[ms]`` in Parquet), ``utc`` (ISO text with ``Z``, or
``timestamp[ms, tz=UTC]``) or ``epoch_ms`` (integer milliseconds).

Determinism: CSV via pandas with ``\\n`` line ends, Parquet via pyarrow with fixed settings
(zstd, format 2.6, one row group, no pandas metadata), JSON lines built from fixed-order tokens.
Nothing depends on the wall clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quality_platform.config import OutcomeSpec, PlantConfig, StreamBase, TimestampSpec
from quality_platform.simulation.grid import NS_PER_MS, NS_PER_S, TimeGrid, to_local_ns
from quality_platform.simulation.schedule import Production
from quality_platform.simulation.styles import PlantStyle

DEFAULT_LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "version": "2.6",
    "use_dictionary": True,
    "write_statistics": True,
    "data_page_version": "1.0",
}
#: Canonical unit fields in the order they are written to JSON records (timestamps last).
JSONL_UNIT_ORDER = (
    "unit_id",
    "line",
    "machine_id",
    "product",
    "material_lot",
    "supplier",
    "operator",
    "start",
    "end",
)


@dataclass(frozen=True)
class Cat:
    """A string column as labels + codes (cheap to repeat)."""

    labels: tuple[str, ...]
    codes: np.ndarray


@dataclass(frozen=True)
class Ts:
    """A timestamp column: UTC epoch ns, optionally as unique values + codes."""

    ns: np.ndarray
    codes: np.ndarray | None = None


Column = np.ndarray | Cat | Ts


@dataclass(frozen=True)
class PlantFrame:
    """Everything the writers need about one simulated plant."""

    plant: PlantConfig
    grid: TimeGrid
    style: PlantStyle
    production: Production
    values: dict[str, np.ndarray]  # quantity -> (M, N) reported values in the plant's unit
    present: np.ndarray  # (M, N) bool: reading was sent
    outcome: np.ndarray  # (M, U) int8: 0 ok, 1 rework, 2 scrap
    inspected_ns: np.ndarray  # (M, U) UTC ns of the inspection

    @property
    def machines(self) -> tuple[str, ...]:
        """Machine ids in config order."""
        return self.production.machines


# --------------------------------------------------------------------------- conversions


def _strftime(ns: np.ndarray, fmt: str) -> np.ndarray:
    idx = pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).astype("datetime64[ns]"))
    return np.asarray(idx.strftime(fmt), dtype=object)


def _ts_numpy(col: Ts, spec: TimestampSpec, tz: str) -> np.ndarray:
    """Timestamps as text (local/utc) or int64 epoch ms."""
    if spec.kind == "epoch_ms":
        out = col.ns // NS_PER_MS
    elif spec.kind == "local":
        out = _strftime(to_local_ns(col.ns, tz), spec.format or DEFAULT_LOCAL_FORMAT)
    elif spec.kind == "utc":
        out = _strftime(col.ns, spec.format or DEFAULT_UTC_FORMAT)
    else:
        raise ValueError(f"timestamp kind {spec.kind!r} cannot be simulated")
    return out if col.codes is None else out[col.codes]


def _ts_arrow(col: Ts, spec: TimestampSpec, tz: str) -> pa.Array:
    ns = col.ns if col.codes is None else col.ns[col.codes]
    if spec.kind == "epoch_ms":
        return pa.array(ns // NS_PER_MS, type=pa.int64())
    if spec.kind == "local":
        return pa.array(to_local_ns(ns, tz) // NS_PER_MS, type=pa.timestamp("ms"))
    if spec.kind == "utc":
        return pa.array(ns // NS_PER_MS, type=pa.timestamp("ms", tz="UTC"))
    raise ValueError(f"timestamp kind {spec.kind!r} cannot be simulated")


def _numpy(col: Column, spec: TimestampSpec, tz: str) -> np.ndarray:
    if isinstance(col, Cat):
        return np.asarray(col.labels, dtype=object)[col.codes]
    if isinstance(col, Ts):
        return _ts_numpy(col, spec, tz)
    return col


def _arrow(col: Column, spec: TimestampSpec, tz: str) -> pa.Array:
    if isinstance(col, Cat):
        return pa.array(list(col.labels), type=pa.string()).take(pa.array(col.codes))
    if isinstance(col, Ts):
        return _ts_arrow(col, spec, tz)
    if col.dtype == object:
        return pa.array(col, type=pa.string())
    if col.dtype.kind == "f":
        return pa.array(col, type=pa.float64())
    return pa.array(col.astype(np.int64), type=pa.int64())


def _json_strings(values: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(values.astype(object), return_inverse=True)
    return np.asarray([json.dumps(str(v), ensure_ascii=False) for v in uniq], dtype=object)[inv]


def _json_tokens(col: Column, spec: TimestampSpec, tz: str) -> np.ndarray:
    """JSON text of every value of a column (object array)."""
    if isinstance(col, Cat):
        labels = np.asarray([json.dumps(s, ensure_ascii=False) for s in col.labels], dtype=object)
        return labels[col.codes]
    arr = _numpy(col, spec, tz)
    if arr.dtype == object:
        return _json_strings(arr)
    if arr.dtype.kind == "f":
        return np.where(np.isnan(arr), "null", arr.astype(str)).astype(object)
    return arr.astype(np.int64).astype(str).astype(object)


def json_objects(fields: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Vectorised JSON objects from ``(dotted name, token array)``; dots nest objects."""
    tree: dict[str, Any] = {}
    for name, tokens in fields:
        node = tree
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = tokens

    def render(node: dict[str, Any]) -> np.ndarray:
        acc: Any = None
        for key, val in node.items():
            piece = (
                json.dumps(key, ensure_ascii=False)
                + ":"
                + (render(val) if isinstance(val, dict) else val)
            )
            acc = piece if acc is None else acc + "," + piece
        return "{" + acc + "}"

    return render(tree)


# --------------------------------------------------------------------------- file writers


def write_table(
    path: Path, columns: dict[str, Column], stream: StreamBase, spec: TimestampSpec, tz: str
) -> int:
    """Write one table in ``stream.format``; returns the number of rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = _n_rows(columns)
    if stream.format == "csv":
        df = pd.DataFrame({k: _numpy(v, spec, tz) for k, v in columns.items()})
        if not stream.csv.header:  # a file without header row: the config's columns, in its order
            names = stream.csv.columns or []
            lost = [c for c in df.columns if c not in names]
            if lost:
                raise ValueError(
                    f"{stream.path}: csv.columns {names} lacks {lost}, which the simulator writes"
                )
            df = df.reindex(columns=names)
        df.to_csv(
            path,
            sep=stream.csv.delimiter,
            header=stream.csv.header,
            index=False,
            lineterminator="\n",
            encoding=stream.csv.encoding,
        )
    elif stream.format == "parquet":
        write_parquet(path, pa.table({k: _arrow(v, spec, tz) for k, v in columns.items()}))
    else:
        lines = json_objects([(k, _json_tokens(v, spec, tz)) for k, v in columns.items()])
        write_lines(path, lines)
    return n


def write_parquet(path: Path, table: pa.Table) -> None:
    """Parquet with the simulator's fixed settings (byte-reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=max(1, table.num_rows), **PARQUET_OPTIONS)


def write_lines(path: Path, lines: np.ndarray | list[str]) -> None:
    """JSON lines, UTF-8, ``\\n`` after every line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(line + "\n" for line in lines)
    path.write_bytes(text.encode("utf-8"))


def _n_rows(columns: dict[str, Column]) -> int:
    for v in columns.values():
        if isinstance(v, Cat):
            return int(v.codes.size)
        if isinstance(v, Ts):
            return int((v.ns if v.codes is None else v.codes).size)
        return int(v.size)
    return 0


# --------------------------------------------------------------------------- readings


def header_name(frame: PlantFrame, quantity: str, field: str | None = None) -> str:
    """Column name of a quantity in a wide readings file (``field``: one of its sample columns in
    an array file), with ``[unit]`` if configured."""
    rs = frame.plant.streams.readings
    m = rs.quantities[quantity]
    name = m.field if field is None else field
    return f"{name} [{m.unit}]" if rs.header_units else name


def cycle_sent(frame: PlantFrame) -> np.ndarray:
    """``(M, U)`` bool: the array record of a machine's cycle was sent (its first reading was)."""
    spu, n_u = frame.grid.steps_per_unit, frame.grid.n_units
    return frame.present[:, : n_u * spu : spu]


def array_columns(frame: PlantFrame, units: slice) -> dict[str, Column]:
    """The array-layout readings of the cycles ``units``: one row per cycle and machine (cycle
    order, machines in config order) holding the cycle start and, per quantity, one column per
    sample. Sample i of a quantity is the value the sensor reports at cycle start +
    (i - first_index) x its ``interval_seconds`` (the latest value on the simulator's grid at that
    time: a channel faster than the grid repeats it). A cycle whose first reading is missing
    (scenario ``missing_burst``) is not sent."""
    rs = frame.plant.streams.readings
    assert rs.array is not None and rs.timestamp.field is not None
    grid, machines = frame.grid, frame.machines
    u0, u1 = units.start, units.stop
    n_m, n_u = len(machines), u1 - u0
    sent = cycle_sent(frame)[:, u0:u1].T.ravel()  # time-major, like the wide layout
    u_idx = np.repeat(np.arange(u0, u1), n_m)[sent]
    m_idx = np.tile(np.arange(n_m), n_u)[sent]
    cols: dict[str, Column] = {rs.timestamp.field: Ts(grid.unit_start_ns[u0:u1], u_idx - u0)}
    if rs.machine.field is not None:
        cols[rs.machine.field] = Cat(machines, m_idx)
    step_ns = grid.step_s * NS_PER_S
    for q in rs.quantities:
        samples = rs.sample_columns(q)
        offsets = np.array([round(off * NS_PER_S) for _, off in samples], dtype=np.int64)
        if offsets[-1] >= grid.cycle_ns:
            raise ValueError(
                f"{frame.plant.plant_id}: the {len(samples)} samples of {q} span "
                f"{offsets[-1] / NS_PER_S:g} s, not within one production cycle of "
                f"{grid.cycle_ns // NS_PER_S} s (they would overlap the next cycle's)"
            )
        t = grid.unit_start_ns[u_idx][:, None] + offsets[None, :]
        k = np.minimum((t - grid.utc_ns[0]) // step_ns, grid.n_steps - 1)
        vals = frame.values[q][m_idx[:, None], k]
        for j, (name, _) in enumerate(samples):
            cols[header_name(frame, q, name)] = vals[:, j]
    return cols


def batch_files(frame: PlantFrame, units: slice) -> list[tuple[str, dict[str, Column]]]:
    """The readings of one file per batch (``streams.readings.batch``) for the production units
    ``units``: per unit and machine (unit order, machines in config order) its id and its time
    series - one row per reading sent during the unit's window, a column per quantity (the wide
    layout inside the file). Without ``batch.elapsed_seconds`` each row carries its own time;
    with it, the timestamp column holds the batch start (the unit's start) on every row and the
    elapsed column the seconds since then. A batch id ``field`` repeats the id on every row; the
    machine is its ``field`` (or a ``constant``). A unit none of whose readings was sent
    (scenario ``missing_burst``) has no file."""
    rs = frame.plant.streams.readings
    b = rs.batch
    assert b is not None and rs.timestamp.field is not None
    if rs.layout != "wide" or rs.machine.from_filename is not None:
        raise ValueError(
            f"{frame.plant.plant_id}: the simulator writes batch files in layout 'wide' with "
            "the machine as a field or a constant"
        )
    grid, machines, prod = frame.grid, frame.machines, frame.production
    spu = grid.steps_per_unit
    elapsed_s = np.arange(spu, dtype=np.int64) * grid.step_s
    out: list[tuple[str, dict[str, Column]]] = []
    for u in range(units.start, units.stop):
        steps = slice(u * spu, (u + 1) * spu)
        for m in range(len(machines)):
            sent = frame.present[m, steps]
            n = int(sent.sum())
            if n == 0:
                continue
            uid = str(prod.unit_ids[m, u])
            cols: dict[str, Column] = {}
            if b.elapsed_seconds is not None:
                start = grid.unit_start_ns[u : u + 1]
                cols[rs.timestamp.field] = Ts(start, np.zeros(n, dtype=np.int64))
            else:
                cols[rs.timestamp.field] = Ts(grid.utc_ns[steps][sent])
            if rs.machine.field is not None:
                cols[rs.machine.field] = Cat(machines, np.full(n, m, dtype=np.int64))
            if b.field is not None:
                cols[b.field] = Cat((uid,), np.zeros(n, dtype=np.int64))
            if b.elapsed_seconds is not None:
                cols[b.elapsed_seconds] = elapsed_s[sent]
            for q in rs.quantities:
                cols[header_name(frame, q)] = frame.values[q][m, steps][sent]
            out.append((uid, cols))
    return out


def readings_columns(frame: PlantFrame, steps: slice) -> dict[str, Column]:
    """The readings rows of ``steps`` in the configured layout (chronological order)."""
    rs = frame.plant.streams.readings
    grid, machines = frame.grid, frame.machines
    n_m, s0, s1 = len(machines), steps.start, steps.stop
    n_s = s1 - s0
    if rs.timestamp.field is None:
        raise ValueError(f"{frame.plant.plant_id}: readings need a timestamp field")
    if rs.layout == "array":
        raise ValueError(f"{frame.plant.plant_id}: array readings are written by array_columns")
    quantities = list(rs.quantities)
    cols: dict[str, Column] = {}
    if rs.layout == "wide":
        mask = frame.present[:, s0:s1].T.ravel()
        t_codes = np.repeat(np.arange(n_s), n_m)[mask]
        m_codes = np.tile(np.arange(n_m), n_s)[mask]
        cols[rs.timestamp.field] = Ts(grid.utc_ns[s0:s1], t_codes)
        if rs.machine.field is not None:
            cols[rs.machine.field] = Cat(machines, m_codes)
        for q in quantities:
            cols[header_name(frame, q)] = frame.values[q][:, s0:s1].T.ravel()[mask]
        return cols
    assert rs.long is not None
    m_order = np.argsort(np.asarray(machines, dtype=object), kind="stable")
    q_order = sorted(range(len(quantities)), key=lambda i: rs.quantities[quantities[i]].field)
    n_q = len(quantities)
    vals = np.stack([frame.values[quantities[i]][m_order, s0:s1].T for i in q_order], axis=-1)
    mask = np.broadcast_to(frame.present[m_order, s0:s1].T[:, :, None], vals.shape).ravel()
    shape = (n_s, n_m, n_q)
    t_codes = np.broadcast_to(np.arange(n_s)[:, None, None], shape).ravel()[mask]
    m_codes = np.broadcast_to(m_order[None, :, None], shape).ravel()[mask]
    q_codes = np.broadcast_to(np.arange(n_q)[None, None, :], shape).ravel()[mask]
    cols[rs.timestamp.field] = Ts(grid.utc_ns[s0:s1], t_codes)
    if rs.machine.field is not None:
        cols[rs.machine.field] = Cat(machines, m_codes)
    signals = tuple(rs.quantities[quantities[i]].field for i in q_order)
    cols[rs.long.quantity_field] = Cat(signals, q_codes)
    cols[rs.long.value_field] = vals.ravel()[mask]
    if rs.long.unit_field is not None:
        labels = tuple(rs.quantities[quantities[i]].unit for i in q_order)
        cols[rs.long.unit_field] = Cat(labels, q_codes)
    return cols


def _reading_tokens(frame: PlantFrame, steps: slice) -> np.ndarray:
    """JSON objects of the readings, ``(M, steps)``, for readings embedded in unit records."""
    rs = frame.plant.streams.readings
    grid, machines = frame.grid, frame.machines
    s0, s1 = steps.start, steps.stop
    n_m, n_s = len(machines), s1 - s0
    assert rs.timestamp.field is not None
    t_tok = _json_tokens(Ts(grid.utc_ns[s0:s1]), rs.timestamp, grid.tz)
    fields: list[tuple[str, np.ndarray]] = [(rs.timestamp.field, np.tile(t_tok, n_m))]
    if rs.machine.field is not None and rs.machine.field not in rs.parent_fields:
        fields.append(
            (
                rs.machine.field,
                _json_tokens(Cat(machines, np.repeat(np.arange(n_m), n_s)), rs.timestamp, grid.tz),
            )
        )
    for q, m in rs.quantities.items():
        fields.append(
            (m.field, _json_tokens(frame.values[q][:, s0:s1].ravel(), rs.timestamp, grid.tz))
        )
    return json_objects(fields).reshape(n_m, n_s)


# --------------------------------------------------------------------------- units


def unit_columns(
    frame: PlantFrame, units: slice
) -> tuple[dict[str, Column], np.ndarray, np.ndarray]:
    """Canonical unit columns for ``units`` (time-major, machines in config order).

    Returns ``(columns by canonical name, machine index per row, unit index per row)``; extra
    columns ``family`` and ``units_in_batch`` are included for formats that list them.
    """
    prod, grid, style = frame.production, frame.grid, frame.style
    u0, u1 = units.start, units.stop
    n_m, n_u = len(prod.machines), u1 - u0
    u = np.repeat(np.arange(u0, u1), n_m)
    m = np.tile(np.arange(n_m), n_u)
    lots = prod.lot_of_unit[prod.line_of_machine[m], u]
    product = prod.product[m, u]
    starts = grid.unit_start_ns[u0:u1]
    cols: dict[str, Column] = {
        "unit_id": prod.unit_ids[m, u],
        "line": Cat(prod.line_names, prod.line_of_machine[m]),
        "machine_id": Cat(prod.machines, m),
        "start": Ts(starts, u - u0),
        "end": Ts(starts + grid.cycle_ns, u - u0),
        "product": Cat(tuple(p.code for p in style.products), product),
        "material_lot": Cat(prod.lot_ids, lots),
        "supplier": Cat(tuple(s.name for s in style.suppliers), prod.lot_supplier[lots]),
        "operator": Cat(prod.operator_pool, prod.operator[m, u]),
        "family": Cat(tuple(p.family for p in style.products), product),
        "units_in_batch": prod.units_in_batch[m, u],
    }
    return cols, m, u


def _unit_stream_columns(frame: PlantFrame, canonical: dict[str, Column]) -> dict[str, Column]:
    us = frame.plant.streams.units
    order = list(us.fields)
    if us.format == "jsonl":
        order = [f for f in JSONL_UNIT_ORDER if f in us.fields]
    cols = {us.fields[f]: canonical[f] for f in order}
    ignored = set(us.ignore_fields)
    product_field = us.fields.get("product", "")
    if "." in product_field:
        family = product_field.rsplit(".", 1)[0] + ".family"
        if family in ignored:
            cols[family] = canonical["family"]
    if "units_in_batch" in ignored:
        cols["units_in_batch"] = canonical["units_in_batch"]
    return cols


def embeds_readings(plant: PlantConfig) -> bool:
    """True when readings live inside the unit records (jsonl + explode, same path)."""
    rs, us = plant.streams.readings, plant.streams.units
    if rs.format == "jsonl" and rs.explode:
        if us.format != "jsonl" or us.path != rs.path or "." in rs.explode:
            raise ValueError(
                f"{plant.plant_id}: exploded readings are simulated only inside the "
                f"jsonl unit records (same path, top-level field)"
            )
        return True
    return False


def write_units(path: Path, frame: PlantFrame, units: slice) -> int:
    """Write the units of ``units`` (with embedded readings where configured); returns rows."""
    us = frame.plant.streams.units
    canonical, m_idx, u_idx = unit_columns(frame, units)
    cols = _unit_stream_columns(frame, canonical)
    if not embeds_readings(frame.plant):
        return write_table(path, cols, us, us.timestamp, frame.grid.tz)
    rs = frame.plant.streams.readings
    spu = frame.grid.steps_per_unit
    u0, u1 = units.start, units.stop
    steps = slice(u0 * spu, u1 * spu)
    tokens = _reading_tokens(frame, steps)
    present = frame.present[:, steps]
    joined = np.empty(m_idx.size, dtype=object)
    for row, (m, u) in enumerate(zip(m_idx.tolist(), u_idx.tolist(), strict=True)):
        a, b = (u - u0) * spu, (u - u0 + 1) * spu
        tok = tokens[m, a:b]
        if not present[m, a:b].all():
            tok = tok[present[m, a:b]]
        joined[row] = "[" + ",".join(tok) + "]"
    fields = [(k, _json_tokens(v, us.timestamp, frame.grid.tz)) for k, v in cols.items()]
    fields.append((str(rs.explode), joined))
    write_lines(path, json_objects(fields))
    return int(m_idx.size)


# --------------------------------------------------------------------------- inspections


def measurements(spec: OutcomeSpec, outcome: np.ndarray) -> dict[str, np.ndarray]:
    """Measured values (one array per field the rules read) from which ``spec.rules`` give back
    ``outcome`` (0 ok, 1 rework, 2 scrap): a unit breaks one rule of its class on its field and no
    other rule; an outcome class without a rule reads as ok. Values lie 1-9 % of the bound beyond
    or within it, deterministically spread over the units."""
    rules = spec.rules or []
    conditions = [r.expression for r in rules if r.expression is not None]
    if conditions:  # an arbitrary condition has no value that is known to pass or to break it
        raise ValueError(
            f"the simulator writes measurements for threshold rules only, not for the "
            f"expression rule(s) {conditions}; simulate with thresholds and deliver real lab files"
        )
    spread = 0.01 + 0.08 * ((np.arange(outcome.size) * 7919) % 97) / 96.0
    first = {k: next((r for r in rules if r.then == k), None) for k in ("rework", "scrap")}
    out = {}
    for f in spec.measured_fields:
        mine = [r for r in rules if r.field == f]
        lows = [r.below for r in mine if r.below is not None]
        highs = [r.above for r in mine if r.above is not None]
        lo, hi = (max(lows) if lows else None), (min(highs) if highs else None)
        if lo is not None and hi is not None:
            passing = (lo + hi) / 2 + (hi - lo) * (spread - 0.05)
        elif lo is not None:
            passing = lo + (abs(lo) or 1.0) * spread
        else:
            passing = hi - (abs(hi) or 1.0) * spread
        values = np.asarray(passing, dtype=float).copy()
        for code, kind in ((1, "rework"), (2, "scrap")):
            r = first[kind]
            if r is None or r.field != f:
                continue
            bound = r.below if r.below is not None else r.above
            sign = -1.0 if r.below is not None else 1.0
            # stop short of the next bound on that side (e.g. rework below 85, scrap below 80)
            gaps = [
                abs(b - bound)
                for x in mine
                for b in (x.below, x.above)
                if b is not None and b != bound and np.sign(b - bound) == sign
            ]
            off = (abs(bound) or 1.0) * spread
            if gaps:
                off = np.minimum(off, min(gaps) * (0.1 + spread * 4))
            values = np.where(outcome == code, bound + sign * off, values)
        out[f] = np.round(values, 6)
    rework, scrap = spec.rule_outcome(out)
    got = np.where(scrap, 2, np.where(rework, 1, 0))
    want = np.where(
        ((outcome == 1) & bool(first["rework"])) | ((outcome == 2) & bool(first["scrap"])),
        outcome,
        0,
    )
    if not np.array_equal(got, want):
        raise ValueError(
            f"the simulator cannot write measurements from which the outcome rules {rules} give "
            "back each unit's outcome"
        )
    return out


def write_inspections(path: Path, frame: PlantFrame, units: slice) -> int:
    """Inspection results of ``units`` in the configured fields; returns rows."""
    ins = frame.plant.streams.inspections
    canonical, m_idx, u_idx = unit_columns(frame, units)
    outcome = frame.outcome[m_idx, u_idx]
    cols: dict[str, Column] = {}
    inspected = Ts(frame.inspected_ns[m_idx, u_idx])
    for name, src in ins.fields.items():
        cols[src] = canonical["unit_id"] if name == "unit_id" else inspected
    if ins.outcome.flags is not None:
        for kind, src in ins.outcome.flags.items():
            code = 1 if kind == "rework" else 2
            cols[src] = (outcome == code).astype(np.int64)
    elif ins.outcome.rules:
        cols.update(measurements(ins.outcome, outcome))
    else:
        assert ins.outcome.field is not None and ins.outcome.values is not None
        inverse: dict[str, str] = {}
        for source_value, canonical_value in ins.outcome.values.items():
            inverse.setdefault(canonical_value, source_value)
        labels = tuple(inverse.get(k, k) for k in ("ok", "rework", "scrap"))
        cols[ins.outcome.field] = Cat(labels, outcome.astype(np.int64))
    return write_table(path, cols, ins, ins.timestamp, frame.grid.tz)


def stream_path(
    out_dir: Path, plant_id: str, template: str, day: str | None, arrival: str | None = None
) -> Path:
    """``out_dir/<plant>/<template>`` with ``{date}`` and ``*`` filled in."""
    rel = template
    if day is not None:
        rel = rel.replace("{date}", day)
    if arrival is not None:
        rel = rel.replace("*", arrival)
    return out_dir / plant_id / rel
