"""Unit conversion into the canonical standard, done by pint (no hand-written factors).

Every supported conversion is affine (``canonical = a * source + b``, e.g. °F -> °C); pint
computes ``a`` and ``b`` once per unit pair and the column is converted with one vectorised
multiply-add, which keeps standardisation fast on millions of readings.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from typing import Any

import numpy as np
import pint

from quality_platform.expressions import ARITHMETIC, parse
from quality_platform.expressions import evaluate as evaluate_tree

_UREG = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


def ureg() -> pint.UnitRegistry:
    """The platform's one pint unit registry."""
    return _UREG


def check_convertible(source_unit: str, canonical_unit: str) -> None:
    """Raise ValueError when ``source_unit`` is unknown or not convertible to ``canonical_unit``."""
    try:
        src = _UREG.Unit(source_unit)
        dst = _UREG.Unit(canonical_unit)
    except (pint.errors.UndefinedUnitError, AttributeError, ValueError) as exc:
        raise ValueError(f"unknown unit {source_unit!r} or {canonical_unit!r}") from exc
    if src.dimensionality != dst.dimensionality:
        raise ValueError(
            f"unit {source_unit!r} ({src.dimensionality}) cannot be converted to "
            f"{canonical_unit!r} ({dst.dimensionality})"
        )


def _parsed(expression: str) -> tuple[ast.Expression, list[str]]:
    tree, names = parse(
        expression, "expression", (*ARITHMETIC, ast.Pow), "+ - * / ** over names and numbers"
    )
    if not names:
        raise ValueError(f"expression {expression!r} uses no quantity")
    return tree, names


def operands(expression: str) -> list[str]:
    """The quantity names a derived quantity's ``expression`` uses (+ - * / ** over names and
    numbers); ValueError for anything else."""
    return _parsed(expression)[1]


def evaluate(expression: str, values: dict[str, Any], units: dict[str, str], unit: str) -> Any:
    """``expression`` over quantity ``values`` (numbers or arrays) given in ``units``, computed by
    pint (so N*m x rpm is a power, degC - degC a temperature difference) and returned as
    magnitudes in ``unit``. pint's errors (incompatible dimensions, an offset unit multiplied)
    are ValueErrors naming the expression."""
    q = _UREG.Quantity
    tree, names = _parsed(expression)
    env = {n: q(values[n], units[n]) for n in names}
    try:
        out = evaluate_tree(tree, env.__getitem__)
        if not isinstance(out, pint.Quantity):
            out = q(out, "dimensionless")
        return out.to(unit).magnitude
    except (pint.errors.PintError, TypeError, ValueError) as exc:
        raise ValueError(f"expression {expression!r} in {unit!r}: {exc}") from exc


def check_expression(name: str, spec: Any, known: dict[str, Any]) -> None:
    """Raise ValueError unless the derived quantity ``spec`` (``expression`` over ``known``
    measured quantities) is computable by pint into its ``unit``."""
    names = operands(spec.expression)
    for n in names:
        if n not in known or n == name:
            raise ValueError(f"expression {spec.expression!r}: {n!r} is not a known quantity")
        if known[n].expression is not None:
            raise ValueError(
                f"expression {spec.expression!r}: {n!r} is itself derived; use measured quantities"
            )
    evaluate(
        spec.expression, dict.fromkeys(names, 1.0), {n: known[n].unit for n in names}, spec.unit
    )


@lru_cache(maxsize=256)
def affine(source_unit: str, canonical_unit: str) -> tuple[float, float]:
    """(a, b) such that ``value_in_canonical = a * value_in_source + b``, derived by pint."""
    check_convertible(source_unit, canonical_unit)
    q = _UREG.Quantity
    b = float(q(0.0, source_unit).to(canonical_unit).magnitude)
    a = float(q(1.0, source_unit).to(canonical_unit).magnitude) - b
    # Guard the affine assumption with a third point.
    probe = float(q(1000.0, source_unit).to(canonical_unit).magnitude)
    if not np.isclose(probe, a * 1000.0 + b, rtol=1e-9, atol=1e-9):
        raise ValueError(f"conversion {source_unit!r} -> {canonical_unit!r} is not affine")
    return a, b


def convert(values: np.ndarray, source_unit: str, canonical_unit: str) -> np.ndarray:
    """Convert an array of magnitudes from ``source_unit`` into ``canonical_unit``."""
    if source_unit == canonical_unit:
        return values
    a, b = affine(source_unit, canonical_unit)
    with np.errstate(over="ignore", invalid="ignore"):  # 1e308 * 100 -> inf, caught as out_of_range
        return values * a + b
