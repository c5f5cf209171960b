"""Per-unit features in DuckDB SQL (vectorised: one query per plant and chunk of days).

A unit's readings are those of its plant and machine with ``start_utc <= ts_utc < end_utc``. The
unit's production day D is its partition, but its window may start before local midnight (grace)
or run past the next one, so the readings of D-1, D and D+1 are read (literal partition
predicates, so DuckDB prunes row groups) and the window alone decides membership.

The window join is an equi-join on (machine, UTC hour) - every unit is listed once per hour its
window touches - plus the exact window condition. That keeps the join linear in the number of
readings however many days a run covers (a plain range join on machine compares every reading
with every unit of its machine).

Every unit of ``production_units`` gets exactly one row: a unit without readings has
``n_readings = 0``, ``<q>__n = 0`` and NULL statistics. The statistics are pivoted into one set of
columns ``<signal>__<statistic>`` for every signal of the registry: a quantity, a plant channel
``<quantity>@<channel>`` (its own sample interval in ``time_outside_s``), or a derived quantity,
whose readings are computed first by pint from its operands' readings at the same machine and
time (:func:`derived_readings`; they do not count in ``n_readings``). A unit attribute (a value
per unit from ``standard.unit_attributes``, e.g. a raw-material property) is one column
``<quantity>__value``, joined on (plant, unit_id); it is not a reading either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import duckdb
import pandas as pd
import pyarrow as pa

from quality_platform.config import (
    CHANNEL_SEP,
    PlantConfig,
    QuantityRegistry,
    QuantitySpec,
    operands,
    signal_name,
)
from quality_platform.features.config import FeatureConfig, Limits
from quality_platform.features.schema import (
    ATTRIBUTE_VALUE,
    CONTEXT,
    columns,
    feature_name,
    statistics_of,
)
from quality_platform.standard.schemas import TABLES, signal_sql, sql_type
from quality_platform.units import evaluate
from quality_platform.warehouse import key_predicate, table_exists

STANDARD = "standard"
_UNIT_COLS = [c.name for c in CONTEXT if c.name != "n_readings"]


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _num(x: float) -> str:
    return repr(float(x))


def _source(schema: str, table: str, where: str, con: duckdb.DuckDBPyConnection) -> str:
    """``SELECT * FROM schema.table WHERE where``, or a typed empty relation if the table is missing."""
    if table_exists(con, schema, table):
        return f'SELECT * FROM "{schema}"."{table}" WHERE {where}'
    cols = ", ".join(f'CAST(NULL AS {sql_type(c.type)}) AS "{c.name}"' for c in TABLES[table])
    return f"SELECT {cols} WHERE FALSE"


def _outside(limits: dict[str, Limits]) -> str:
    """SQL: is ``value`` of ``quantity`` outside the plant's limits (false without limits)."""
    whens = []
    for q, lim in sorted(limits.items()):
        conds = ([f"value < {_num(lim.lower)}"] if lim.lower is not None else []) + (
            [f"value > {_num(lim.upper)}"] if lim.upper is not None else []
        )
        whens.append(f"WHEN {_lit(q)} THEN ({' OR '.join(conds)})")
    return f"CASE quantity {' '.join(whens)} ELSE false END" if whens else "false"


def _reading_keys(plant_id: str, days: Iterable[dt.date]) -> list[tuple[str, dt.date]]:
    """The plant-days whose readings the feature windows of ``days`` read: each day +-1 (a unit's
    window may start the evening before or end after midnight)."""
    return sorted({(plant_id, d + dt.timedelta(days=k)) for d in days for k in (-1, 0, 1)})


def _has_channel(con: duckdb.DuckDBPyConnection, schema: str) -> bool:
    """Whether sensor_readings has its ``channel`` column (a warehouse of an earlier release gains
    it when its next day is standardised)."""
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = 'sensor_readings' AND column_name = 'channel'",
            [schema],
        ).fetchall()[0][0]
    )


def derivable(plant: PlantConfig, registry: QuantityRegistry) -> dict[str, QuantitySpec]:
    """The derived quantities of the registry a plant can compute: every operand is a quantity
    the plant measures (as the quantity itself, not only as channels)."""
    measured = {q for q, ch in plant.signals().values() if ch is None}
    return {
        q: spec
        for q, spec in registry.quantities.items()
        if spec.expression is not None and set(operands(spec.expression)) <= measured
    }


def _intervals(plant: PlantConfig, registry: QuantityRegistry) -> str:
    """SQL: the sample interval [s] of a reading's signal (the mapping's ``interval_seconds``, else
    the plant's ``reading_interval_seconds``), which ``time_outside_s`` multiplies."""
    default = plant.reading_interval_seconds
    signals = plant.signals()
    whens = [
        f"WHEN {_lit(signal_name(*signals[k]))} THEN {_num(m.interval_seconds)}"
        for k, m in plant.streams.readings.quantities.items()
        if m.interval_seconds is not None and m.interval_seconds != default
    ]
    return f"CASE quantity {' '.join(whens)} ELSE {_num(default)} END" if whens else _num(default)


def unit_features_sql(
    con: duckdb.DuckDBPyConnection,
    plant: PlantConfig,
    days: Iterable[dt.date],
    registry: QuantityRegistry,
    config: FeatureConfig,
    schema: str = STANDARD,
    derived_relation: str | None = None,
) -> str:
    """The query computing the features of a plant's units of ``days`` (columns in schema order).

    A reading's signal is its quantity, or ``<quantity>@<channel>``; ``derived_relation`` names a
    registered relation (machine_id, ts_utc, quantity, value) of derived readings to include."""
    plant_id = plant.plant_id
    days = sorted(set(days))
    unit_keys = [(plant_id, d) for d in days]
    reading_keys = _reading_keys(plant_id, days)
    stats = statistics_of(config)
    signals = registry.signals()
    limits = {
        q: lim
        for q in signals
        if (lim := config.limits_for(plant_id, q.split(CHANNEL_SEP, 1)[0])) is not None
    }
    derived = sorted(q for q in signals if not registry.measured(q))
    agg = ",\n      ".join(
        f'CAST({s.sql.format(interval="any_value(iv)")} AS {sql_type(s.type)}) AS "{s.name}"'
        for s in stats
    )
    pivot = []
    for q in signals:
        for s in stats:
            name = feature_name(q, s.name)
            if s.name == "time_outside_s" and q not in limits:
                pivot.append(f'CAST(NULL AS DOUBLE) AS "{name}"')
            else:
                pivot.append(
                    f'any_value("{s.name}") FILTER (WHERE quantity = {_lit(q)}) AS "{name}"'
                )
    n_readings = (
        f'sum("n") FILTER (WHERE quantity NOT IN ({", ".join(_lit(q) for q in derived)}))'
        if derived
        else 'sum("n")'
    )
    attrs = {feature_name(q, ATTRIBUTE_VALUE): q for q in registry.attributes()}
    out = []
    for c in columns(registry, config):
        if c.name in _UNIT_COLS:
            out.append(f'u."{c.name}"')
        elif c.name in attrs:  # a unit's attribute: its value, not a statistic of readings
            out.append(f'att."{c.name}"')
        elif c.type == "int":  # counts: 0, not NULL, for a unit without readings
            out.append(f'CAST(coalesce(p."{c.name}", 0) AS BIGINT) AS "{c.name}"')
        else:
            out.append(f'p."{c.name}"')
    units_src = _source(schema, "production_units", key_predicate(unit_keys), con)
    readings_src = _source(schema, "sensor_readings", key_predicate(reading_keys), con)
    signal = signal_sql() if _has_channel(con, schema) else "quantity"
    extra = (
        f"\n  UNION ALL SELECT machine_id, ts_utc, quantity, value FROM {derived_relation}"
        if derived_relation
        else ""
    )
    sep = ",\n      "
    att_cte, att_join = "", ""
    if attrs:  # one value per unit and quantity (the standard's duplicate rule keeps the first)
        att_src = _source(schema, "unit_attributes", key_predicate(unit_keys), con)
        pivot_att = sep.join(
            f'any_value(value) FILTER (WHERE quantity = {_lit(q)}) AS "{name}"'
            for name, q in attrs.items()
        )
        att_cte = f""",
att AS (
  SELECT plant, unit_id,
      {pivot_att}
  FROM ({att_src}) GROUP BY plant, unit_id
)"""
        att_join = "\nLEFT JOIN att ON att.plant = u.plant AND att.unit_id = u.unit_id"
    return f"""
WITH u AS (
  SELECT row_number() OVER () AS _u, {", ".join(f'"{c}"' for c in _UNIT_COLS)}
  FROM ({units_src})
),
r AS (
  SELECT * FROM (
    SELECT machine_id, ts_utc, {signal} AS quantity, value FROM ({readings_src}){extra}
  )
  WHERE ts_utc >= (SELECT min(start_utc) FROM u) AND ts_utc < (SELECT max(end_utc) FROM u)
),
ub AS (  -- each unit once per UTC hour its window touches
  SELECT _u, machine_id, start_utc, end_utc,
         unnest(range(date_trunc('hour', start_utc), end_utc, INTERVAL 1 HOUR)) AS hour
  FROM u WHERE end_utc > start_utc
),
w AS (
  SELECT ub._u, r.quantity, r.ts_utc, r.value,
         epoch(r.ts_utc - ub.start_utc) / 3600.0 AS hours
  FROM ub JOIN r ON r.machine_id = ub.machine_id AND date_trunc('hour', r.ts_utc) = ub.hour
   AND r.ts_utc >= ub.start_utc AND r.ts_utc < ub.end_utc
),
a AS (
  SELECT _u, quantity,
      {agg}
  FROM (SELECT *, {_outside(limits)} AS outside, {_intervals(plant, registry)} AS iv FROM w)
  GROUP BY _u, quantity
),
p AS (
  SELECT _u, {n_readings} AS n_readings,
      {sep.join(pivot)}
  FROM a GROUP BY _u
){att_cte}
SELECT {", ".join(out)}
FROM u LEFT JOIN p USING (_u){att_join}
ORDER BY u.partition_date, u.start_utc, u.machine_id, u.unit_id
"""


def derived_readings(
    con: duckdb.DuckDBPyConnection,
    plant: PlantConfig,
    days: Iterable[dt.date],
    registry: QuantityRegistry,
    schema: str = STANDARD,
) -> pd.DataFrame:
    """The plant's derived quantities per machine and reading time of ``days`` (+-1 day, as the
    feature windows read): each expression evaluated by pint where every operand has a reading at
    that time, in the derived quantity's unit. Columns machine_id, ts_utc, quantity, value."""
    specs = derivable(plant, registry)
    cols = ["machine_id", "ts_utc", "quantity", "value"]
    if not specs or not table_exists(con, schema, "sensor_readings"):
        return pd.DataFrame(columns=cols)
    keys = _reading_keys(plant.plant_id, days)
    names = sorted({n for spec in specs.values() for n in operands(spec.expression)})
    only_quantity = "channel IS NULL AND " if _has_channel(con, schema) else ""
    wide = con.sql(
        f"""PIVOT (SELECT machine_id, ts_utc, quantity, value FROM "{schema}".sensor_readings
                   WHERE {key_predicate(keys)} AND {only_quantity}
                         quantity IN ({", ".join(_lit(n) for n in names)}))
            ON quantity IN ({", ".join(_lit(n) for n in names)}) USING any_value(value)
            GROUP BY machine_id, ts_utc"""
    ).df()
    parts = []
    for q, spec in specs.items():
        ops = operands(spec.expression)
        have = wide.dropna(subset=ops)
        if have.empty:
            continue
        values = evaluate(
            spec.expression,
            {n: have[n].to_numpy(dtype="float64") for n in ops},
            {n: registry.quantities[n].unit for n in ops},
            spec.unit,
        )
        parts.append(
            pd.DataFrame(
                {
                    "machine_id": have["machine_id"],
                    "ts_utc": have["ts_utc"],
                    "quantity": q,
                    "value": values,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def compute_unit_features(
    con: duckdb.DuckDBPyConnection,
    plant: PlantConfig,
    days: Iterable[dt.date],
    registry: QuantityRegistry,
    config: FeatureConfig,
    schema: str = STANDARD,
) -> pa.Table:
    """The features of a plant's units of ``days`` as Arrow (one row per unit)."""
    days = sorted(set(days))
    derived = derived_readings(con, plant, days, registry, schema)
    if derived.empty:
        return con.sql(
            unit_features_sql(con, plant, days, registry, config, schema)
        ).to_arrow_table()
    con.register("_derived", derived.astype({"ts_utc": "datetime64[us]", "value": "float64"}))
    try:
        sql = unit_features_sql(con, plant, days, registry, config, schema, "_derived")
        return con.sql(sql).to_arrow_table()
    finally:
        con.unregister("_derived")
