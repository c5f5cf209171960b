"""Unit conversion into the canonical standard, done by pint (no hand-written factors).

Every supported conversion is affine (``canonical = a * source + b``, e.g. °F -> °C); pint
computes ``a`` and ``b`` once per unit pair and the column is converted with one vectorised
multiply-add, which keeps standardisation fast on millions of readings.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pint

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
