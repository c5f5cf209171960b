"""Quality gates on the standard tables (F6): blocking asset checks over the run's plant-days.

Bad rows never land (they are quarantined before writing); these checks re-verify what was
written, so a defect in the pipeline itself cannot pass silently, and their results are the
data-quality record of every partition in the UI.
"""

import datetime as dt
from typing import Any

import dagster as dg
import pandas as pd

from quality_platform.config import PlantConfig, signal_name
from quality_platform.defs._checks import keys_query, md_table, pandera_result, warehouse_check
from quality_platform.ingest.pipeline import RAW_SCHEMA, STANDARD_SCHEMA, raw_table
from quality_platform.ingest.readers import items_per_record, plant_streams
from quality_platform.partitions import Keys
from quality_platform.standard.schemas import conform, pandera_schema, signal_sql
from quality_platform.warehouse import read_partitions, table_exists


def _result(
    failures: pd.DataFrame,
    what: str,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    **meta: Any,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=failures.empty,
        severity=severity,
        description=f"{len(failures)} {what}" if not failures.empty else f"no {what}",
        metadata={"failures": len(failures), "examples": md_table(failures), **meta},
    )


# --------------------------------------------------------------------------- check bodies


def check_schema(con: Any, keys: Keys, table: str, registry: Any) -> dg.AssetCheckResult:
    t = read_partitions(con, STANDARD_SCHEMA, table, keys)
    df = conform(t.to_pandas(), table) if t is not None and t.num_rows else None
    if df is None:
        return dg.AssetCheckResult(
            passed=True, description="no rows in these partitions", metadata={"rows": 0}
        )
    return pandera_result(
        pandera_schema(
            table, registry if table in ("sensor_readings", "unit_attributes") else None
        ),
        df,
        table,
    )


def check_plausible(con: Any, keys: Keys, registry: Any) -> dg.AssetCheckResult:
    lim = pd.DataFrame(
        [(q, s.unit, s.min, s.max) for q, s in registry.quantities.items()],
        columns=["quantity", "unit", "lo", "hi"],
    )
    con.register("_limits", lim)
    try:
        bad = keys_query(
            con,
            f"""
            SELECT r.plant, r.partition_date, r.quantity, count(*) AS n, min(r.value) AS min_value,
                   max(r.value) AS max_value, any_value(l.lo) AS lo, any_value(l.hi) AS hi
            FROM {STANDARD_SCHEMA}.sensor_readings r SEMI JOIN _keys k
              ON r.plant = k.plant AND r.partition_date = k.partition_date
            LEFT JOIN _limits l ON r.quantity = l.quantity
            WHERE l.quantity IS NULL OR r.unit <> l.unit OR r.value < l.lo OR r.value > l.hi OR NOT isfinite(r.value)
            GROUP BY ALL ORDER BY n DESC""",
            keys,
        )
    finally:
        con.unregister("_limits")
    return _result(bad, "plant-day-quantities with implausible values or non-canonical units")


def check_completeness(
    con: Any,
    keys: Keys,
    plants: dict[str, PlantConfig],
    registry: Any,
    warn_below: float,
    error_below: float,
) -> dg.AssetCheckResult:
    rows = []
    for plant_id, day in keys:
        p = plants[plant_id]
        start = pd.Timestamp(day).tz_localize(p.tz)
        seconds = (
            pd.Timestamp(day + dt.timedelta(days=1)).tz_localize(p.tz) - start
        ).total_seconds()
        signals, rs = p.signals(), p.streams.readings
        for m in p.machines:
            for k, mapping in rs.quantities.items():
                if rs.array is not None:  # a record per cycle (every reading_interval_seconds)
                    per_day = seconds / p.reading_interval_seconds * rs.array.samples[k]
                else:  # a channel sampled at its own rate
                    per_day = seconds / (mapping.interval_seconds or p.reading_interval_seconds)
                rows.append((plant_id, day, m, signal_name(*signals[k]), per_day))
    expected = pd.DataFrame(
        rows, columns=["plant", "partition_date", "machine_id", "quantity", "expected"]
    )
    con.register("_expected", expected)
    try:
        cov = (
            keys_query(
                con,
                f"""
            WITH got AS (
              SELECT r.plant, r.partition_date, r.machine_id, {signal_sql("r")} AS quantity, count(*) AS n
              FROM {STANDARD_SCHEMA}.sensor_readings r SEMI JOIN _keys k
                ON r.plant = k.plant AND r.partition_date = k.partition_date GROUP BY ALL)
            SELECT e.plant, e.partition_date, e.machine_id, e.quantity, e.expected,
                   coalesce(g.n, 0) AS received, coalesce(g.n, 0) / e.expected AS coverage
            FROM _expected e LEFT JOIN got g USING (plant, partition_date, machine_id, quantity)
            ORDER BY coverage""",
                keys,
            )
            if table_exists(con, STANDARD_SCHEMA, "sensor_readings")
            else pd.DataFrame(columns=["coverage"])
        )
    finally:
        con.unregister("_expected")
    if cov.empty:
        return dg.AssetCheckResult(passed=True, description="no partitions", metadata={})
    low = cov[cov["coverage"] < warn_below]
    severe = cov[cov["coverage"] < error_below]
    severity = dg.AssetCheckSeverity.ERROR if not severe.empty else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=low.empty,
        severity=severity,
        description=(
            f"{len(low)} machine-quantity-days below {warn_below:.0%} coverage "
            f"({len(severe)} below {error_below:.0%})"
        )
        if not low.empty
        else "complete",
        metadata={
            "min_coverage": float(cov["coverage"].min()),
            "mean_coverage": float(cov["coverage"].mean()),
            "machine_quantity_days": len(cov),
            "below_warn": len(low),
            "below_error": len(severe),
            "worst": md_table(low.assign(coverage=low["coverage"].round(3)), 20),
        },
    )


def check_reading_duplicates(con: Any, keys: Keys) -> dg.AssetCheckResult:
    bad = keys_query(
        con,
        f"""
        SELECT r.plant, r.machine_id, r.ts_utc, r.quantity, r.channel, count(*) AS n
        FROM {STANDARD_SCHEMA}.sensor_readings r SEMI JOIN _keys k
          ON r.plant = k.plant AND r.partition_date = k.partition_date
        GROUP BY ALL HAVING count(*) > 1 ORDER BY n DESC LIMIT 1000""",
        keys,
    )
    return _result(bad, "duplicated (machine, time, quantity, channel) readings")


def _local_bounds(plants: dict[str, PlantConfig], keys: Keys, grace_min: float) -> pd.DataFrame:
    rows = []
    for plant_id, day in keys:
        tz = plants[plant_id].tz
        g = pd.Timedelta(minutes=grace_min)
        lo = (pd.Timestamp(day).tz_localize(tz) - g).tz_convert("UTC").tz_localize(None)
        hi = (
            (pd.Timestamp(day + dt.timedelta(days=1)).tz_localize(tz) + g)
            .tz_convert("UTC")
            .tz_localize(None)
        )
        rows.append((plant_id, day, lo, hi))
    return pd.DataFrame(rows, columns=["plant", "partition_date", "lo", "hi"])


def check_timestamps(
    con: Any,
    keys: Keys,
    plants: dict[str, PlantConfig],
    grace_min: float,
    future_min: float,
    table: str,
    column: str,
) -> dg.AssetCheckResult:
    con.register("_bounds", _local_bounds(plants, keys, grace_min))
    try:
        bad = keys_query(
            con,
            f"""
            SELECT t.plant, t.partition_date, count(*) AS n, min(t.{column}) AS earliest, max(t.{column}) AS latest
            FROM {STANDARD_SCHEMA}.{table} t JOIN _bounds b
              ON t.plant = b.plant AND t.partition_date = b.partition_date
            WHERE t.{column} IS NULL OR t.{column} < b.lo OR t.{column} >= b.hi
               OR t.{column} > (now() AT TIME ZONE 'UTC') + INTERVAL {float(future_min)} MINUTE
            GROUP BY ALL""",
            keys,
        )
    finally:
        con.unregister("_bounds")
    return _result(bad, f"plant-days with {column} outside the local day (±grace) or in the future")


def check_unit_ids_unique(con: Any, keys: Keys) -> dg.AssetCheckResult:
    bad = keys_query(
        con,
        f"""
        SELECT u.plant, u.unit_id, count(*) AS n, list(DISTINCT u.partition_date) AS days
        FROM {STANDARD_SCHEMA}.production_units u
        WHERE u.plant IN (SELECT DISTINCT plant FROM _keys)
        GROUP BY u.plant, u.unit_id HAVING count(*) > 1 LIMIT 1000""",
        keys,
    )
    return _result(bad, "unit ids that occur more than once in a plant (across all days)")


def check_unit_windows(con: Any, keys: Keys) -> dg.AssetCheckResult:
    bad = keys_query(
        con,
        f"""
        SELECT u.plant, u.partition_date, u.unit_id, u.start_utc, u.end_utc, u.inspected_at_utc
        FROM {STANDARD_SCHEMA}.production_units u SEMI JOIN _keys k
          ON u.plant = k.plant AND u.partition_date = k.partition_date
        WHERE u.end_utc < u.start_utc OR (u.defect IS NULL) <> (u.inspected_at_utc IS NULL)
           OR u.defect <> (coalesce(u.rework, false) OR coalesce(u.scrap, false))
        LIMIT 1000""",
        keys,
    )
    return _result(bad, "units with an inverted window or an inconsistent inspection outcome")


def reconciliation_table(con: Any, keys: Keys, plants: dict[str, PlantConfig]) -> pd.DataFrame:
    """received = accepted + quarantined, per plant, day and stream (items as in the quarantine)."""
    rows = []
    for plant_id in sorted({p for p, _ in keys}):
        sub = [k for k in keys if k[0] == plant_id]
        for stream in plant_streams(plants[plant_id]):
            k = items_per_record(plants[plant_id], stream)
            rt = raw_table(plant_id, stream)
            raw = (
                keys_query(
                    con,
                    f"""SELECT r.partition_date, count(*) * {k} AS raw_items FROM {RAW_SCHEMA}."{rt}" r
                              SEMI JOIN _keys k ON r.plant = k.plant AND r.partition_date = k.partition_date
                              GROUP BY 1""",
                    sub,
                )
                if table_exists(con, RAW_SCHEMA, rt)
                else pd.DataFrame(columns=["partition_date", "raw_items"])
            )
            parse = (
                keys_query(
                    con,
                    f"""SELECT p.partition_date, sum(p.n_items) AS parse_items FROM {RAW_SCHEMA}.parse_issues p
                                SEMI JOIN _keys k ON p.plant = k.plant AND p.partition_date = k.partition_date
                                WHERE p.stream = '{stream}' GROUP BY 1""",
                    sub,
                )
                if table_exists(con, RAW_SCHEMA, "parse_issues")
                else pd.DataFrame(columns=["partition_date", "parse_items"])
            )
            if stream == "readings":
                acc_sql = f"SELECT partition_date, count(*) AS accepted FROM {STANDARD_SCHEMA}.sensor_readings t"
            elif stream == "units":
                acc_sql = f"SELECT partition_date, count(*) AS accepted FROM {STANDARD_SCHEMA}.production_units t"
            elif stream == "attributes":  # one row per accepted value
                acc_sql = f"SELECT partition_date, count(*) AS accepted FROM {STANDARD_SCHEMA}.unit_attributes t"
            else:
                acc_sql = (
                    f"SELECT partition_date, count(inspected_at_utc) AS accepted "
                    f"FROM {STANDARD_SCHEMA}.production_units t"
                )
            acc = keys_query(
                con,
                acc_sql
                + " SEMI JOIN _keys k ON t.plant = k.plant AND t.partition_date = k.partition_date "
                "GROUP BY 1",
                sub,
            )
            qua = keys_query(
                con,
                f"""SELECT q.partition_date, sum(q.n_items) AS quarantined FROM {STANDARD_SCHEMA}.quarantine q
                              SEMI JOIN _keys k ON q.plant = k.plant AND q.partition_date = k.partition_date
                              WHERE q.stream = '{stream}' GROUP BY 1""",
                sub,
            )
            days = pd.DataFrame({"partition_date": pd.to_datetime([d for _, d in sub])})
            for part in (raw, parse, acc, qua):
                if not part.empty:
                    part["partition_date"] = pd.to_datetime(part["partition_date"])
                    days = days.merge(part, on="partition_date", how="left")
            for c in ("raw_items", "parse_items", "accepted", "quarantined"):
                days[c] = days.get(c, pd.Series(0, index=days.index)).fillna(0).astype("int64")
            days["plant"], days["stream"] = plant_id, stream
            rows.append(days)
    out = pd.concat(rows, ignore_index=True)
    out["received"] = out["raw_items"] + out["parse_items"]
    out["difference"] = out["received"] - out["accepted"] - out["quarantined"]
    return out[
        ["plant", "partition_date", "stream", "received", "accepted", "quarantined", "difference"]
    ]


# --------------------------------------------------------------------------- Dagster wiring


def build_standard_checks(plant_ids: list[str]) -> list[dg.AssetChecksDefinition]:
    """Blocking checks on sensor_readings, production_units and quarantine."""

    make = warehouse_check
    q = "quality"
    return [
        make(
            "sensor_readings",
            "schema",
            "pandera schema of sensor_readings (types, nulls, canonical quantities).",
            lambda con, keys, p: check_schema(con, keys, "sensor_readings", p.quantities()),
        ),
        make(
            "sensor_readings",
            "plausible_ranges",
            "Every value within its quantity's plausibility range, canonical unit.",
            lambda con, keys, p: check_plausible(con, keys, p.quantities()),
        ),
        make(
            "sensor_readings",
            "completeness",
            "Readings per machine, quantity and local day vs expected "
            "(WARN below completeness_warn_below, ERROR below completeness_error_below).",
            lambda con, keys, p: check_completeness(
                con,
                keys,
                p.plants(),
                p.quantities(),
                getattr(p.platform(), q).completeness_warn_below,
                getattr(p.platform(), q).completeness_error_below,
            ),
        ),
        make(
            "sensor_readings",
            "no_duplicates",
            "At most one value per machine, time, quantity and channel.",
            lambda con, keys, p: check_reading_duplicates(con, keys),
        ),
        make(
            "sensor_readings",
            "timestamps",
            "Measurement times on the partition's local day (± grace), not in the future.",
            lambda con, keys, p: check_timestamps(
                con,
                keys,
                p.plants(),
                p.platform().quality.partition_grace_minutes,
                p.platform().quality.future_tolerance_minutes,
                "sensor_readings",
                "ts_utc",
            ),
        ),
        make(
            "production_units",
            "schema",
            "pandera schema of production_units (pseudonyms only, types, nulls).",
            lambda con, keys, p: check_schema(con, keys, "production_units", None),
        ),
        make(
            "production_units",
            "unique_unit_ids",
            "A unit id occurs once per plant across all days.",
            lambda con, keys, p: check_unit_ids_unique(con, keys),
        ),
        make(
            "production_units",
            "timestamps",
            "Unit windows on the partition's local day (± grace), not in the future, "
            "end after start, outcome consistent.",
            lambda con, keys, p: _combine(
                check_timestamps(
                    con,
                    keys,
                    p.plants(),
                    p.platform().quality.partition_grace_minutes,
                    p.platform().quality.future_tolerance_minutes,
                    "production_units",
                    "start_utc",
                ),
                check_unit_windows(con, keys),
            ),
        ),
        make(
            "unit_attributes",
            "schema",
            "pandera schema of unit_attributes (types, nulls, canonical quantities and units, "
            "plausibility ranges).",
            lambda con, keys, p: check_schema(con, keys, "unit_attributes", p.quantities()),
        ),
        make(
            "quarantine",
            "reconciliation",
            "received = accepted + quarantined for every plant, day and stream.",
            lambda con, keys, p: _reconciliation_result(
                reconciliation_table(con, keys, p.plants())
            ),
        ),
    ]


def _combine(a: dg.AssetCheckResult, b: dg.AssetCheckResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=a.passed and b.passed,
        description=f"{a.description}; {b.description}",
        metadata={
            **{f"window_{k}": v for k, v in a.metadata.items()},
            **{f"outcome_{k}": v for k, v in b.metadata.items()},
        },
    )


def _reconciliation_result(table: pd.DataFrame) -> dg.AssetCheckResult:
    bad = table[table["difference"] != 0]
    totals = table.groupby("stream")[["received", "accepted", "quarantined"]].sum().reset_index()
    return dg.AssetCheckResult(
        passed=bad.empty,
        description=(
            "counts reconcile" if bad.empty else f"{len(bad)} plant-day-streams do not reconcile"
        ),
        metadata={
            "totals": md_table(totals),
            "mismatches": md_table(bad),
            "plant_day_streams": len(table),
        },
    )
