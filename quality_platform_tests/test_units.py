"""Unit conversion comes from pint and is exact for the affine conversions we use."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quality_platform.units import affine, check_convertible, convert, ureg


@pytest.mark.parametrize(
    ("src", "dst", "x", "y"),
    [
        ("degF", "degC", 212.0, 100.0),
        ("kelvin", "degC", 273.15, 0.0),
        ("psi", "kPa", 1.0, 6.894757),
        ("bar", "kPa", 2.5, 250.0),
        ("dimensionless", "percent", 0.12, 12.0),
        ("g/kg", "percent", 120.0, 12.0),
        ("inch/s", "mm/s", 1.0, 25.4),
    ],
)
def test_known_conversions(src: str, dst: str, x: float, y: float) -> None:
    assert convert(np.array([x]), src, dst)[0] == pytest.approx(y, rel=1e-6)


def test_incompatible_units_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be converted"):
        check_convertible("psi", "degC")
    with pytest.raises(ValueError, match="unknown unit"):
        check_convertible("furlongs_per_fortnight_x", "mm/s")


@given(
    st.sampled_from([("degF", "degC"), ("kelvin", "degC"), ("psi", "kPa"), ("inch/s", "mm/s")]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
def test_vectorised_conversion_matches_pint(pair: tuple[str, str], x: float) -> None:
    src, dst = pair
    expected = ureg().Quantity(x, src).to(dst).magnitude
    assert convert(np.array([x]), src, dst)[0] == pytest.approx(expected, rel=1e-9, abs=1e-6)
    a, _b = affine(src, dst)
    assert a != 0
