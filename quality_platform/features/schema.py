"""The one schema of ``features.unit_features``, declared once as :class:`Col` (as the standard
tables in :mod:`quality_platform.standard.schemas`).

The table has the same columns for every plant: the unit's context, then, for EVERY signal of the
registry (shared, plant-local and derived quantities, plant channels ``<quantity>@<channel>``) and
every configured statistic, a column ``<signal>__<statistic>``.
Each statistic is declared once here - its SQL aggregate, formula, unit and description - and from
that come the DuckDB query (:mod:`.compute`), the DDL, the pandera gate, the Dagster column schema
and the feature-definitions table shown in the catalog.

The generic helpers (DDL, pandera, dtypes, Dagster column schema of any column list) are the
ones of :mod:`quality_platform.standard.schemas`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from quality_platform.config import QuantityRegistry, QuantitySpec
from quality_platform.features.config import FeatureConfig
from quality_platform.standard.schemas import Col
from quality_platform.standard.schemas import columns_pandera as pandera_schema

FEATURE_SCHEMA = "features"
TABLE = "unit_features"
SEP = "__"
#: the one statistic of a unit attribute (a value per unit, not a series): ``<quantity>__value``
ATTRIBUTE_VALUE = "value"


@dataclass(frozen=True)
class Statistic:
    """One per-quantity feature statistic.

    ``sql`` is a DuckDB aggregate over the readings of one unit and quantity, with the columns
    ``value``, ``ts_utc``, ``hours`` (hours since the unit's start) and ``outside`` (value outside
    the plant's limits of the quantity); ``{interval}`` is the plant's reading interval in seconds.
    """

    name: str
    type: str
    sql: str
    formula: str
    unit: str  # '{unit}' = the quantity's canonical unit
    description: str  # '{q}' = quantity, '{unit}' = canonical unit
    nullable: bool = True
    checks: tuple[pa.Check, ...] = ()


_WINDOW = "over the unit's readings of {q} on its machine with start_utc <= ts_utc < end_utc"

STATISTICS: dict[str, Statistic] = {
    s.name: s
    for s in (
        Statistic(
            "mean",
            "float",
            "avg(value)",
            "avg(value)",
            "{unit}",
            "Mean of {q} [{unit}] " + _WINDOW + "; NULL without readings.",
        ),
        Statistic(
            "std",
            "float",
            "stddev_samp(value)",
            "stddev_samp(value) (n - 1 denominator)",
            "{unit}",
            "Sample standard deviation of {q} [{unit}] "
            + _WINDOW
            + "; NULL with fewer than 2 readings.",
            checks=(pa.Check.ge(0),),
        ),
        Statistic(
            "min",
            "float",
            "min(value)",
            "min(value)",
            "{unit}",
            "Minimum of {q} [{unit}] " + _WINDOW + "; NULL without readings.",
        ),
        Statistic(
            "max",
            "float",
            "max(value)",
            "max(value)",
            "{unit}",
            "Maximum of {q} [{unit}] " + _WINDOW + "; NULL without readings.",
        ),
        Statistic(
            "last",
            "float",
            "arg_max(value, ts_utc)",
            "value at max(ts_utc)",
            "{unit}",
            "Value of {q} [{unit}] at the latest reading time "
            + _WINDOW
            + "; NULL without readings.",
        ),
        Statistic(
            "slope",
            "float",
            "regr_slope(value, hours)",
            "regr_slope(value, hours since start_utc) (least squares)",
            "{unit}/h",
            "Least-squares slope of {q} over time [{unit} per hour] "
            + _WINDOW
            + "; NULL with fewer than 2 reading times.",
        ),
        Statistic(
            "n",
            "int",
            "count(*)",
            "count(readings)",
            "1",
            "Number of readings of {q} "
            + _WINDOW
            + "; 0 when there are none (or the plant has no {q}).",
            nullable=False,
            checks=(pa.Check.ge(0),),
        ),
        Statistic(
            "time_outside_s",
            "float",
            "count(*) FILTER (WHERE outside) * {interval}",
            "count(value < lower OR value > upper) * reading_interval_seconds",
            "s",
            "Seconds {q} was outside its process limits (data/features.yaml): readings outside "
            "[lower, upper] x the plant's reading interval, "
            + _WINDOW
            + "; NULL without readings or without limits for {q} at the plant.",
            checks=(pa.Check.ge(0),),
        ),
    )
}

CONTEXT: tuple[Col, ...] = (
    Col("plant", "label", "Plant id (`data/plants/<plant>.yaml`)."),
    Col(
        "partition_date",
        "date",
        "The plant's LOCAL production day of the unit (partition key; as in production_units).",
    ),
    Col(
        "unit_id", "text", "Produced unit or batch id (production_units.unit_id), one row per unit."
    ),
    Col(
        "machine_id",
        "label",
        "Machine that produced the unit; its readings are the unit's readings.",
    ),
    Col("line", "label", "Production line (categorical context).", nullable=True),
    Col("product", "label", "Product code / variant (categorical context).", nullable=True),
    Col("material_lot", "text", "Material lot used (categorical context).", nullable=True),
    Col("supplier", "label", "Material supplier (categorical context).", nullable=True),
    Col("start_utc", "timestamp", "Start of the production window (UTC, inclusive)."),
    Col("end_utc", "timestamp", "End of the production window (UTC, exclusive)."),
    Col(
        "time_basis",
        "label",
        "'clock' for real timestamps, 'synthetic: ...' for a derived time index.",
    ),
    Col(
        "n_readings",
        "int",
        "Readings of all quantities in the window (0: the unit had none; its statistics are NULL).",
        checks=(pa.Check.ge(0),),
    ),
)


def feature_name(quantity: str, statistic: str) -> str:
    return f"{quantity}{SEP}{statistic}"


def statistics_of(config: FeatureConfig) -> list[Statistic]:
    """The configured statistics, in the catalogue's order."""
    return [s for name, s in STATISTICS.items() if name in config.statistics]


def _describe(s: Statistic, q: str, spec: QuantitySpec) -> str:
    text = s.description.format(q=q, unit=spec.unit)
    if spec.expression is not None:
        text += f" {q} is derived: {spec.expression} per machine and reading time (pint)."
    return text


def _describe_attribute(q: str, spec: QuantitySpec) -> str:
    return (
        f"The unit's {q} [{spec.unit}]: the value its plant delivers for the unit in the "
        f"attributes stream (standard.unit_attributes, converted into {spec.unit}); NULL when "
        f"the unit has none. Not a reading (not in n_readings). {spec.description}"
    )


def attribute_columns(registry: QuantityRegistry) -> tuple[Col, ...]:
    """``<quantity>__value`` for every quantity some installed plant delivers as a unit attribute
    (``QuantityRegistry.attributes``, sorted)."""
    return tuple(
        Col(feature_name(q, ATTRIBUTE_VALUE), "float", _describe_attribute(q, spec), nullable=True)
        for q, spec in registry.attributes().items()
    )


def feature_columns(registry: QuantityRegistry, config: FeatureConfig) -> tuple[Col, ...]:
    """``<signal>__<statistic>`` for every signal of the registry (every quantity - shared,
    plant-local, derived - in registry order, then every plant channel ``<quantity>@<channel>``)
    and statistic, then ``<quantity>__value`` for every unit attribute quantity of the installed
    plants. A plant that joins with new quantities, channels or attributes adds columns; the
    table evolves (``evolve_table``), other plants' rows are untouched."""
    return (
        *(
            Col(
                feature_name(q, s.name),
                s.type,
                _describe(s, q, spec),
                nullable=s.nullable,
                checks=s.checks,
            )
            for q, spec in registry.signals().items()
            for s in statistics_of(config)
        ),
        *attribute_columns(registry),
    )


def columns(registry: QuantityRegistry, config: FeatureConfig) -> tuple[Col, ...]:
    """All columns of features.unit_features."""
    return (*CONTEXT, *feature_columns(registry, config))


def feature_definitions(registry: QuantityRegistry, config: FeatureConfig) -> pd.DataFrame:
    """One row per feature column: name, formula, unit, source quantity (for the catalog)."""
    rows = [
        {
            "name": "n_readings",
            "formula": "count(readings of all quantities in the window)",
            "unit": "1",
            "source_quantity": "(all)",
        }
    ]
    for q, spec in registry.signals().items():
        for s in statistics_of(config):
            formula = s.formula
            if spec.expression is not None:
                formula += f" of {q} = {spec.expression}"
            if s.name == "time_outside_s":
                per_plant = sorted(
                    {
                        f"{p}: {_limits_text(lim)}"
                        for p, over in config.plant_limits.items()
                        for qq, lim in over.items()
                        if qq == q
                    }
                )
                formula += f"; limits {_limits_text(config.limits.get(q))}"
                if per_plant:
                    formula += f" ({'; '.join(per_plant)})"
            rows.append(
                {
                    "name": feature_name(q, s.name),
                    "formula": formula,
                    "unit": s.unit.format(unit=spec.unit),
                    "source_quantity": q,
                }
            )
    for q, spec in registry.attributes().items():
        rows.append(
            {
                "name": feature_name(q, ATTRIBUTE_VALUE),
                "formula": f"unit_attributes.value of the unit (plant, unit_id) where quantity = {q}",
                "unit": spec.unit,
                "source_quantity": q,
            }
        )
    return pd.DataFrame(rows)


def _limits_text(lim: object) -> str:
    if lim is None or not lim.defined:  # type: ignore[attr-defined]
        return "none"
    lo, hi = lim.lower, lim.upper  # type: ignore[attr-defined]
    return f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"


def _consistent(registry: QuantityRegistry, statistics: Iterable[str]) -> pa.Check:
    """Row-wise: min <= mean <= max and last within [min, max]; stats NULL exactly when n = 0;
    n_readings = sum of the measured (not derived) signals' counts."""
    qs, stats = list(registry.signals()), set(statistics)
    measured = {q for q in qs if registry.measured(q)}

    def _check(df: pd.DataFrame) -> pd.Series:
        ok = pd.Series(True, index=df.index)
        total = pd.Series(0, index=df.index, dtype="int64")
        for q in qs:
            n = df[feature_name(q, "n")]
            if q in measured:
                total = total + n
            if "mean" in stats:
                ok &= (n > 0) == df[feature_name(q, "mean")].notna()
            lo = df[feature_name(q, "min")] if "min" in stats else None
            hi = df[feature_name(q, "max")] if "max" in stats else None
            if lo is not None and hi is not None:
                tol = 1e-9 * (1 + np.abs(hi.fillna(0)))
                for s in ("mean", "last"):
                    if s in stats:
                        v = df[feature_name(q, s)]
                        ok &= v.isna() | ((v >= lo - tol) & (v <= hi + tol))
        return ok & (total == df["n_readings"])

    return pa.Check(_check, name="consistent_statistics")


def pandera_for(registry: QuantityRegistry, config: FeatureConfig) -> pa.DataFrameSchema:
    """The pandera gate of features.unit_features (strict: no missing or extra columns)."""
    return pandera_schema(
        columns(registry, config),
        TABLE,
        checks=[_consistent(registry, config.statistics)],
    )
