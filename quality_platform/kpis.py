"""Unified KPIs (F3): one registry, one formula evaluator, each plant's legacy figure reconciled.

All KPIs are ratios of daily counts of ``production_units`` (see data/kpis.yaml). A plant's legacy
KPI is a formula over the same counts with its own scale, so the difference to the unified figure
can be explained term by term (numerator, denominator, scale) rather than just shown.
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np
import pandas as pd

from quality_platform.config import COUNT_NAMES, KpiRegistry, PlantConfig, parse_formula
from quality_platform.expressions import evaluate as evaluate_tree
from quality_platform.standard.schemas import Col

ALL_LINES = "*"
COUNT_COLUMNS = list(COUNT_NAMES)

_COUNT_DOC = {
    "produced": "Units produced on the day (inspected or not).",
    "inspected": "Units whose inspection outcome is known.",
    "rework": "Inspected units sent to rework (and not scrapped).",
    "scrap": "Inspected units scrapped.",
    "defective": "Inspected units that are rework or scrap.",
    "good": "Inspected units that are neither.",
}
_DAY = (
    Col("plant", "label", "Plant id (`data/plants/<plant>.yaml`)."),
    Col("partition_date", "date", "The plant's local production day (partition key)."),
)

#: The columns of the KPI tables (schema ``kpi``), declared once: the DDL that creates them (so a
#: table exists, empty, once its asset ran, e.g. reconciliation for a plant without legacy KPIs),
#: the frame each computation returns, and the column schema of the catalog.
KPI_TABLES: dict[str, tuple[Col, ...]] = {
    "kpi_daily": (
        *_DAY,
        Col("line", "label", "Production line; '*' is the whole plant."),
        Col("kpi_id", "label", "Unified KPI id (data/kpis.yaml)."),
        Col("kpi_version", "int", "Version of that KPI's definition."),
        Col("registry_version", "int", "Version of the KPI registry."),
        Col("value", "float", "The KPI; empty when its denominator is 0.", nullable=True),
        Col("unit", "label", "Unit of the value (ratio, ...)."),
        Col("formula", "text", "The formula over the day's counts."),
        *(Col(c, "int", _COUNT_DOC[c]) for c in COUNT_COLUMNS),
    ),
    "plant_reported_kpis": (
        *_DAY,
        Col("legacy_name", "label", "The plant's own name of its KPI (plant config legacy_kpis)."),
        Col("maps_to", "label", "The unified KPI it corresponds to."),
        Col("value", "float", "The legacy figure, in the plant's unit.", nullable=True),
        Col("unit", "label", "The plant's unit (percent, ...)."),
        Col("scale", "float", "Factor from ratio to the plant's unit."),
        Col("formula", "text", "The plant's formula over the day's counts."),
        Col("note", "text", "How the plant defines it, as written in its config."),
    ),
    "kpi_reconciliation": (
        *_DAY,
        Col("legacy_name", "label", "The plant's own KPI name."),
        Col("kpi_id", "label", "The unified KPI it maps to."),
        Col("legacy_value", "float", "The legacy figure.", nullable=True),
        Col("legacy_unit", "label", "The legacy figure's unit."),
        Col("unified_value", "float", "The unified KPI (ratio).", nullable=True),
        Col(
            "unified_in_legacy_unit", "float", "The unified KPI in the legacy unit.", nullable=True
        ),
        Col(
            "difference_in_legacy_unit",
            "float",
            "Legacy minus unified, in the legacy unit.",
            nullable=True,
        ),
        Col("explanation", "text", "Why they differ: numerator, denominator, scale, and the note."),
    ),
}


def kpi_columns(table: str) -> list[str]:
    """The column names of a KPI table, in table order."""
    return [c.name for c in KPI_TABLES[table]]


def daily_counts(units: pd.DataFrame) -> pd.DataFrame:
    """Counts per plant, partition_date and line; line '*' is the whole plant."""
    cols = ["plant", "partition_date", "line", *COUNT_COLUMNS]
    if units.empty:
        return pd.DataFrame(columns=cols)
    u = units.copy()
    u["line"] = u["line"].astype("string").fillna("(none)")
    inspected = u["defect"].notna()
    scrap = u["scrap"].fillna(False).astype(bool) & inspected
    rework = u["rework"].fillna(False).astype(bool) & ~scrap & inspected
    defective = u["defect"].fillna(False).astype(bool) & inspected
    flags = pd.DataFrame(
        {
            "plant": u["plant"].astype("string"),
            "partition_date": u["partition_date"],
            "line": u["line"],
            "produced": 1,
            "inspected": inspected.astype(int),
            "rework": rework.astype(int),
            "scrap": scrap.astype(int),
            "defective": defective.astype(int),
            "good": (inspected & ~defective).astype(int),
        }
    )
    by_line = flags.groupby(["plant", "partition_date", "line"], as_index=False)[
        COUNT_COLUMNS
    ].sum()
    whole = flags.groupby(["plant", "partition_date"], as_index=False)[COUNT_COLUMNS].sum()
    whole["line"] = ALL_LINES
    return pd.concat([whole, by_line], ignore_index=True)[cols]


def _divide(a: Any, b: Any) -> Any:
    """A KPI's division: a zero denominator gives NULL (NaN), never inf."""
    b = b.where(b != 0) if isinstance(b, pd.Series) else (b if b != 0 else np.nan)
    return a / b


def evaluate(formula: str, counts: pd.DataFrame) -> pd.Series:
    """Evaluate a KPI formula over count columns; a zero denominator gives NULL (NaN)."""
    out = evaluate_tree(
        parse_formula(formula), lambda name: counts[name].astype("float64"), divide=_divide
    )
    return out if isinstance(out, pd.Series) else pd.Series(out, index=counts.index)


def kpi_daily(units: pd.DataFrame, registry: KpiRegistry) -> pd.DataFrame:
    """Unified KPIs per plant/line/day, long format (one row per KPI)."""
    counts = daily_counts(units)
    frames = []
    for k in registry.kpis:
        f = counts[["plant", "partition_date", "line", *COUNT_COLUMNS]].copy()
        f["kpi_id"], f["kpi_version"], f["registry_version"] = (
            k.id,
            k.version,
            registry.registry_version,
        )
        f["value"] = evaluate(k.formula, counts).to_numpy()
        f["unit"], f["formula"] = k.unit, k.formula
        frames.append(f)
    cols = kpi_columns("kpi_daily")
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def pooled_kpis(kpis: pd.DataFrame, registry: KpiRegistry) -> dict[str, float]:
    """Each KPI over all whole-plant rows of a :func:`kpi_daily` frame at once: the formula on the
    summed counts (a pooled rate, not a mean of daily rates). KPIs without a denominator are left
    out."""
    whole = kpis[kpis["line"] == ALL_LINES].drop_duplicates(["plant", "partition_date"])
    if whole.empty:
        return {}
    counts = whole[COUNT_COLUMNS].sum().to_frame().T
    out = {k.id: float(evaluate(k.formula, counts).iloc[0]) for k in registry.kpis}
    return {k: v for k, v in out.items() if v == v}


def plant_reported_kpis(units: pd.DataFrame, plant: PlantConfig) -> pd.DataFrame:
    """The plant's own legacy KPI figures, recomputed from the standard data, per day."""
    counts = daily_counts(units)
    counts = counts[counts["line"] == ALL_LINES]
    frames = []
    for lk in plant.legacy_kpis:
        f = counts[["plant", "partition_date"]].copy()
        f["legacy_name"], f["maps_to"] = lk.name, lk.maps_to
        f["value"] = (evaluate(lk.formula, counts) * lk.scale).to_numpy()
        f["unit"], f["scale"], f["formula"], f["note"] = lk.unit, lk.scale, lk.formula, lk.note
        frames.append(f)
    cols = kpi_columns("plant_reported_kpis")
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def _ratio_parts(formula: str) -> tuple[str, str]:
    body = parse_formula(formula).body
    if isinstance(body, ast.BinOp) and isinstance(body.op, ast.Div):
        return ast.unparse(body.left), ast.unparse(body.right)
    return ast.unparse(body), "1"


def explain_difference(
    legacy_formula: str,
    scale: float,
    legacy_unit: str,
    unified_formula: str,
    counts: dict[str, float] | None = None,
    period: str = "on this day",
) -> str:
    """Why a legacy figure differs from the unified KPI, term by term."""
    ln, ld = _ratio_parts(legacy_formula)
    un, ud = _ratio_parts(unified_formula)
    parts = []
    if ln != un:
        parts.append(f"numerator differs: legacy '{ln}' vs unified '{un}'")
    if ld != ud:
        extra = ""
        if counts is not None:
            try:
                lv = evaluate(ld, pd.DataFrame([counts])).iloc[0]
                uv = evaluate(ud, pd.DataFrame([counts])).iloc[0]
                extra = f" ({lv:g} vs {uv:g} {period})"
            except (KeyError, ValueError):
                extra = ""
        parts.append(f"denominator differs: legacy '{ld}' vs unified '{ud}'{extra}")
    if scale != 1:
        parts.append(f"scale: legacy reports in {legacy_unit} (x{scale:g}), unified as a ratio")
    return "; ".join(parts) if parts else "same definition"


def reconcile(
    kpis: pd.DataFrame, reported: pd.DataFrame, plant: PlantConfig, registry: KpiRegistry
) -> pd.DataFrame:
    """Legacy figure next to the unified KPI, with the difference and its explanation."""
    cols = kpi_columns("kpi_reconciliation")
    if reported.empty or kpis.empty:
        return pd.DataFrame(columns=cols)
    whole = kpis[kpis["line"] == ALL_LINES]
    rows = []
    for r in reported.itertuples(index=False):
        u = whole[
            (whole["plant"] == r.plant)
            & (whole["partition_date"] == r.partition_date)
            & (whole["kpi_id"] == r.maps_to)
        ]
        if u.empty:
            continue
        u0 = u.iloc[0]
        counts = {c: float(u0[c]) for c in COUNT_COLUMNS}
        unified = float(u0["value"]) if pd.notna(u0["value"]) else np.nan
        lk = next(k for k in plant.legacy_kpis if k.name == r.legacy_name)
        in_legacy = unified * lk.scale
        diff = r.value - in_legacy if pd.notna(r.value) and pd.notna(in_legacy) else np.nan
        why = explain_difference(
            lk.formula, lk.scale, lk.unit, registry.get(lk.maps_to).formula, counts
        )
        rows.append(
            {
                "plant": r.plant,
                "partition_date": r.partition_date,
                "legacy_name": r.legacy_name,
                "kpi_id": r.maps_to,
                "legacy_value": r.value,
                "legacy_unit": lk.unit,
                "unified_value": unified,
                "unified_in_legacy_unit": in_legacy,
                "difference_in_legacy_unit": diff,
                "explanation": f"{why}. {lk.note}",
            }
        )
    return pd.DataFrame(rows, columns=cols)
