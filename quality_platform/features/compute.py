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
``n_readings = 0``, ``<q>__n = 0`` and NULL statistics. The statistics are pivoted into one fixed
set of columns ``<quantity>__<statistic>`` for every quantity of the registry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import duckdb
import pyarrow as pa

from quality_platform.config import QuantityRegistry
from quality_platform.features.config import FeatureConfig, Limits
from quality_platform.features.schema import CONTEXT, columns, feature_name, statistics_of
from quality_platform.standard.schemas import TABLES, sql_type
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


def unit_features_sql(
    con: duckdb.DuckDBPyConnection,
    plant_id: str,
    days: Iterable[dt.date],
    registry: QuantityRegistry,
    config: FeatureConfig,
    reading_interval_seconds: float,
    schema: str = STANDARD,
) -> str:
    """The query computing the features of a plant's units of ``days`` (columns in schema order)."""
    days = sorted(set(days))
    unit_keys = [(plant_id, d) for d in days]
    reading_keys = sorted({(plant_id, d + dt.timedelta(days=k)) for d in days for k in (-1, 0, 1)})
    stats = statistics_of(config)
    limits = {
        q: lim for q in registry.quantities if (lim := config.limits_for(plant_id, q)) is not None
    }
    agg = ",\n      ".join(
        f'CAST({s.sql.format(interval=_num(reading_interval_seconds))} AS {sql_type(s.type)}) AS "{s.name}"'
        for s in stats
    )
    pivot = []
    for q in registry.quantities:
        for s in stats:
            name = feature_name(q, s.name)
            if s.name == "time_outside_s" and q not in limits:
                pivot.append(f'CAST(NULL AS DOUBLE) AS "{name}"')
            else:
                pivot.append(
                    f'any_value("{s.name}") FILTER (WHERE quantity = {_lit(q)}) AS "{name}"'
                )
    out = []
    for c in columns(registry, config):
        if c.name in _UNIT_COLS:
            out.append(f'u."{c.name}"')
        elif c.type == "int":  # counts: 0, not NULL, for a unit without readings
            out.append(f'CAST(coalesce(p."{c.name}", 0) AS BIGINT) AS "{c.name}"')
        else:
            out.append(f'p."{c.name}"')
    units_src = _source(schema, "production_units", key_predicate(unit_keys), con)
    readings_src = _source(schema, "sensor_readings", key_predicate(reading_keys), con)
    sep = ",\n      "
    return f"""
WITH u AS (
  SELECT row_number() OVER () AS _u, {", ".join(f'"{c}"' for c in _UNIT_COLS)}
  FROM ({units_src})
),
r AS (
  SELECT machine_id, ts_utc, quantity, value FROM ({readings_src})
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
  FROM (SELECT *, {_outside(limits)} AS outside FROM w)
  GROUP BY _u, quantity
),
p AS (
  SELECT _u, sum("n") AS n_readings,
      {sep.join(pivot)}
  FROM a GROUP BY _u
)
SELECT {", ".join(out)}
FROM u LEFT JOIN p USING (_u)
ORDER BY u.partition_date, u.start_utc, u.machine_id, u.unit_id
"""


def compute_unit_features(
    con: duckdb.DuckDBPyConnection,
    plant_id: str,
    days: Iterable[dt.date],
    registry: QuantityRegistry,
    config: FeatureConfig,
    reading_interval_seconds: float,
    schema: str = STANDARD,
) -> pa.Table:
    """The features of a plant's units of ``days`` as Arrow (one row per unit)."""
    return con.sql(
        unit_features_sql(con, plant_id, days, registry, config, reading_interval_seconds, schema)
    ).to_arrow_table()
