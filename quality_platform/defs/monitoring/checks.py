"""Monitoring gates: input drift (process drift vs suspected sensor fault), prediction drift and realised performance per plant-day. A failing ERROR check is what the retrain sensor acts on."""

import datetime as dt
from typing import Any

import dagster as dg
import pandas as pd

from quality_platform.defs._checks import keys_query, md_table
from quality_platform.defs.monitoring.assets import rounded
from quality_platform.ml.schema import ML_SCHEMA
from quality_platform.partitions import Keys
from quality_platform.warehouse import (
    table_exists,
)


def _findings(con: Any, keys: Keys, kinds: tuple[str, ...]) -> pd.DataFrame:
    if not keys or not table_exists(con, ML_SCHEMA, "drift_findings"):
        return pd.DataFrame(
            columns=[
                "plant",
                "partition_date",
                "kind",
                "feature",
                "machines",
                "value",
                "detail",
                "model_version",
            ]
        )
    kl = ", ".join(f"'{k}'" for k in kinds)
    return keys_query(
        con,
        f"""
        SELECT f.plant, f.partition_date, f.kind, f.feature, f.machines, f.value, f.detail,
               f.model_version
        FROM {ML_SCHEMA}.drift_findings f SEMI JOIN _keys k ON f.plant = k.plant AND f.partition_date = k.partition_date
        WHERE f.kind IN ({kl}) ORDER BY 1, 2""",
        keys,
    )


def persisted_days(
    con: Any,
    plant: str,
    last: dt.date,
    kinds: tuple[str, ...],
    table: str = "drift_findings",
    flag: str | None = None,
) -> int:
    """Consecutive plant-days up to ``last`` with a finding of ``kinds`` (or ``flag`` true)."""
    if not table_exists(con, ML_SCHEMA, table):
        return 0
    cond = flag or f"kind IN ({', '.join(repr(k) for k in kinds)})"
    days = {
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT partition_date FROM {ML_SCHEMA}.{table} WHERE plant = ? "
            f"AND {cond} AND partition_date <= ?",
            [plant, last],
        ).fetchall()
    }
    n, d = 0, last
    while d in days:
        n += 1
        d -= dt.timedelta(days=1)
    return n


def _scope(failed: pd.DataFrame) -> dict[str, Any]:
    """What a failing loop check covers, for the retrain sensor: its plant-days (first/last overall
    and the last per plant, in plant time) and the champion version(s) it was measured against (a
    record measured against an earlier champion is stale once another one decides)."""
    return {
        "first_day": str(min(failed["partition_date"])),
        "last_day": str(max(failed["partition_date"])),
        "last_day_by_plant": dg.MetadataValue.json(
            {str(p): str(max(g["partition_date"])) for p, g in failed.groupby("plant")}
        ),
        "model_versions": sorted({str(v) for v in failed["model_version"].dropna()}),
    }


def check_input_drift(con: Any, keys: Keys) -> dg.AssetCheckResult:
    """ERROR when a plant-day of the run shows process drift (the loop's trigger)."""
    f = _findings(con, keys, ("process_drift",))
    if f.empty:
        return dg.AssetCheckResult(
            passed=True, description="no process drift", metadata={"plants": []}
        )
    f["partition_date"] = pd.to_datetime(f["partition_date"]).dt.date
    persisted = {
        p: persisted_days(con, p, max(g["partition_date"]), ("process_drift",))
        for p, g in f.groupby("plant")
    }
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"process drift at {sorted(persisted)}: "
        + "; ".join(f["detail"].astype(str).head(3)),
        metadata={
            "plants": sorted(persisted),
            "persisted_plant_days": max(persisted.values()),
            "persisted_by_plant": dg.MetadataValue.json(persisted),
            **_scope(f),
            "findings": md_table(f.astype(str)),
        },
    )


def check_sensor_faults(con: Any, keys: Keys) -> dg.AssetCheckResult:
    """WARN: suspected sensor faults / stuck sensors (maintenance, not a retrain)."""
    f = _findings(con, keys, ("sensor_fault", "stuck_sensor"))
    return dg.AssetCheckResult(
        passed=f.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description="no sensor faults"
        if f.empty
        else f"{len(f)} suspected sensor faults: " + "; ".join(f["detail"].astype(str).head(3)),
        metadata={
            "findings": md_table(f.astype(str)),
            "plants": sorted(set(f["plant"])) if len(f) else [],
        },
    )


def check_prediction_drift(con: Any, keys: Keys) -> dg.AssetCheckResult:
    f = _findings(con, keys, ("prediction_drift",))
    return dg.AssetCheckResult(
        passed=f.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description="score distribution stable"
        if f.empty
        else "; ".join(f["detail"].astype(str).head(3)),
        metadata={"findings": md_table(f.astype(str))},
    )


def check_performance(con: Any, keys: Keys) -> dg.AssetCheckResult:
    """ERROR when realised performance degraded on a plant-day of the run (the loop's second trigger)."""
    if not keys or not table_exists(con, ML_SCHEMA, "model_performance"):
        return dg.AssetCheckResult(passed=True, description="nothing to judge yet", metadata={})
    t = keys_query(
        con,
        f"""SELECT m.* FROM {ML_SCHEMA}.model_performance m SEMI JOIN _keys k
                             ON m.plant = k.plant AND m.partition_date = k.partition_date""",
        keys,
    )
    deg = t[t["degraded"].astype(bool)] if len(t) else t
    if deg.empty:
        return dg.AssetCheckResult(
            passed=True,
            description=f"{int(t['labelled'].sum()) if len(t) else 0} labelled "
            "units, no degradation",
            metadata={"plants": []},
        )
    deg = deg.assign(partition_date=pd.to_datetime(deg["partition_date"]).dt.date)
    persisted = {
        p: persisted_days(
            con, p, max(g["partition_date"]), (), table="model_performance", flag="degraded"
        )
        for p, g in deg.groupby("plant")
    }
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"realised performance degraded at {sorted(persisted)}",
        metadata={
            "plants": sorted(persisted),
            "persisted_plant_days": max(persisted.values()),
            "persisted_by_plant": dg.MetadataValue.json(persisted),
            **_scope(deg),
            "degraded": md_table(rounded(deg, 4).astype(str)),
        },
    )


def build_monitoring_checks() -> list[dg.AssetChecksDefinition]:
    """The checks the loop watches (non-blocking: a drift alarm must not stop scoring)."""
    from quality_platform.defs._checks import warehouse_check

    return [
        warehouse_check(
            "drift_metrics",
            "input_drift",
            "ERROR when a plant-day shows process drift (normed "
            "Wasserstein >= drift.alarm across the plant): the retrain sensor's trigger.",
            lambda con, keys, p: check_input_drift(con, keys),
            blocking=False,
        ),
        warehouse_check(
            "drift_metrics",
            "sensor_faults",
            "WARN on suspected sensor faults / stuck sensors "
            "(data-quality incident for maintenance; never a retrain).",
            lambda con, keys, p: check_sensor_faults(con, keys),
            blocking=False,
        ),
        warehouse_check(
            "drift_metrics",
            "prediction_drift",
            "WARN when the champion's score distribution drifts.",
            lambda con, keys, p: check_prediction_drift(con, keys),
            blocking=False,
        ),
        warehouse_check(
            "model_performance",
            "performance",
            "ERROR when the labelled outcomes of a plant-day no "
            "longer follow the champion's risks (log-loss surprise z >= performance.loss_z_alarm, "
            "minimum sample): concept drift, which input drift cannot see.",
            lambda con, keys, p: check_performance(con, keys),
            blocking=False,
        ),
    ]
