"""What the platform holds, as plain data: the platform summary (rows per plant and table,
quarantine by rule, unified KPIs next to each plant's legacy figure) and the model summary
(champion, latest version and its gate report, predictions per plant). ``qp summary`` and
``qp demo`` print them."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from quality_platform import kpis as K
from quality_platform.config import load_kpis, load_plants
from quality_platform.ml.lifecycle import open_stores
from quality_platform.ml.registry import CHALLENGER, CHAMPION, VersionInfo
from quality_platform.settings import Paths
from quality_platform.warehouse import connect, table_exists


class SummaryError(ValueError):
    """Nothing to summarise yet (the message says what to run first)."""


def json_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready records (ISO dates)."""
    return json.loads(df.to_json(orient="records", date_format="iso")) if not df.empty else []


def version_payload(v: VersionInfo) -> dict[str, Any]:
    """A model version as plain data: number, gate, approval, status, aliases, approver."""
    return {
        "version": v.version,
        "gate": v.gate,
        "approval": v.approval,
        "status": v.status,
        "aliases": list(v.aliases),
        "approved_by": v.tag("approved_by"),
    }


def platform_summary(paths: Paths) -> dict[str, Any]:
    """Rows per plant and table, quarantine by rule, unified vs legacy KPIs for the whole period.

    Raises :class:`SummaryError` when there is no warehouse yet."""
    if not paths.warehouse_path.exists():
        raise SummaryError(
            f"no warehouse at {paths.warehouse_path}: run `make demo` or `qp backfill` first"
        )
    plants, reg = load_plants(paths), load_kpis(paths)
    out: dict[str, Any] = {"warehouse": str(paths.warehouse_path)}
    with connect(paths.warehouse_path, read_only=True) as con:

        def q(sql: str) -> pd.DataFrame:
            return con.sql(sql).df()

        rows = []
        for p in plants:
            r: dict[str, Any] = {"plant": p}
            for s in ("readings", "units", "inspections"):
                t = f"{p}__{s}"
                r[f"raw_{s}_records"] = (
                    int(q(f'SELECT count(*) n FROM raw."{t}"')["n"][0])
                    if table_exists(con, "raw", t)
                    else 0
                )
            for t in ("sensor_readings", "production_units", "quarantine"):
                r[t] = (
                    int(q(f"SELECT count(*) n FROM standard.{t} WHERE plant = '{p}'")["n"][0])
                    if table_exists(con, "standard", t)
                    else 0
                )
            r["unit_features"] = (
                int(q(f"SELECT count(*) n FROM features.unit_features WHERE plant = '{p}'")["n"][0])
                if table_exists(con, "features", "unit_features")
                else 0
            )
            if table_exists(con, "standard", "sensor_readings"):
                d = q(
                    f"SELECT min(partition_date) a, max(partition_date) b FROM standard.sensor_readings WHERE plant='{p}'"
                )
                r["days"] = (
                    f"{pd.Timestamp(d['a'][0]).date()}..{pd.Timestamp(d['b'][0]).date()}"
                    if pd.notna(d["a"][0])
                    else ""
                )
            rows.append(r)
        out["tables"] = rows
        out["quarantine"] = (
            json_records(
                q("""
            SELECT plant, stream, rule, severity, count(*) AS entries, sum(n_items) AS items,
                   any_value(message) AS example
            FROM standard.quarantine GROUP BY ALL ORDER BY plant, items DESC""")
            )
            if table_exists(con, "standard", "quarantine")
            else []
        )
        kp = []
        if table_exists(con, "kpi", "kpi_daily"):
            counts = q(f"""SELECT plant, {", ".join(f"sum({c}) AS {c}" for c in K.COUNT_COLUMNS)}
                         FROM kpi.kpi_daily WHERE line = '*' AND kpi_id = '{reg.kpis[0].id}' GROUP BY plant ORDER BY plant""")
            for row in counts.to_dict("records"):
                plant = plants.get(row["plant"])
                c1 = pd.DataFrame([row])
                entry: dict[str, Any] = {
                    "plant": row["plant"],
                    **{c: int(row[c]) for c in K.COUNT_COLUMNS},
                }
                for k in reg.kpis:
                    entry[k.id] = float(K.evaluate(k.formula, c1).iloc[0])
                legacy = []
                for lk in plant.legacy_kpis if plant else []:
                    lv = float(K.evaluate(lk.formula, c1).iloc[0] * lk.scale)
                    uv = entry[lk.maps_to] * lk.scale
                    legacy.append(
                        {
                            "name": lk.name,
                            "maps_to": lk.maps_to,
                            "legacy_value": lv,
                            "unit": lk.unit,
                            "unified_in_legacy_unit": uv,
                            "difference": lv - uv,
                            "explanation": K.explain_difference(
                                lk.formula,
                                lk.scale,
                                lk.unit,
                                reg.get(lk.maps_to).formula,
                                row,
                                period="over the period",
                            ),
                        }
                    )
                entry["legacy"] = legacy
                kp.append(entry)
        out["kpis"] = kp
    return out


def model_summary(paths: Paths) -> dict[str, Any]:
    """Champion version, gate results per plant, holdout figures per plant, predictions per plant."""
    reg, _ = open_stores(paths)
    champ, chall = reg.alias(CHAMPION), reg.alias(CHALLENGER)
    out: dict[str, Any] = {
        "champion": version_payload(champ) if champ else None,
        "challenger": version_payload(chall) if chall else None,
    }
    latest = reg.versions()[-1] if reg.versions() else None
    if latest is not None:
        report = reg.download_text(latest.version, "gate/report.json")
        out["latest_version"] = version_payload(latest)
        out["gate"] = json.loads(report) if report else None
    if paths.warehouse_path.exists():
        with connect(paths.warehouse_path, read_only=True) as con:
            if table_exists(con, "ml", "predictions"):
                out["predictions"] = json_records(
                    con.sql("""
                    SELECT plant, count(*) AS units, sum(predicted_defect::INT) AS flagged,
                           round(avg(risk), 4) AS mean_risk, string_agg(DISTINCT model_version, ',') AS versions,
                           sum((decided_by = 'challenger')::INT) AS by_challenger
                    FROM ml.predictions GROUP BY plant ORDER BY plant""").df()
                )
                out["example_predictions"] = json_records(
                    con.sql("""
                    SELECT plant, unit_id, round(risk, 4) AS risk, predicted_defect, model_version, reason_1, reason_2,
                           reason_3 FROM ml.predictions WHERE predicted_defect ORDER BY risk DESC LIMIT 3""").df()
                )
    return out
