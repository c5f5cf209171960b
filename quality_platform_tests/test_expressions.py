"""Conditions in config (outcome rules) are evaluated element-wise by walking the allow-listed
tree: the same truth as Python's own evaluation of the expression on each row, for any values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quality_platform.expressions import CONDITION, CONDITION_OPS, evaluate_condition, parse

CONDITIONS = [
    "a < 80",
    "a < 80 or b > 12",
    "a - b * 2 >= 40 and not b < 3",
    "90 <= a < 110",
    "-a > b / 4 or a == b",
    "not (a > 1 and b != 2)",
]
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(finite, min_size=1, max_size=20),
    b=st.lists(finite, min_size=1, max_size=20),
    which=st.sampled_from(CONDITIONS),
)
def test_a_condition_is_python_semantics_row_by_row(a: list, b: list, which: str) -> None:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    tree, names = parse(which, "expression", CONDITION, CONDITION_OPS)
    got = evaluate_condition(tree, {"a": np.array(a), "b": np.array(b)})
    want = [bool(eval(which, {}, {"a": x, "b": y})) for x, y in zip(a, b, strict=True)]
    assert got.tolist() == want and set(names) <= {"a", "b"}


def test_a_missing_value_makes_a_comparison_false() -> None:
    tree, _ = parse("a < 80 or b > 12", "expression", CONDITION, CONDITION_OPS)
    got = evaluate_condition(tree, {"a": np.array([math.nan, 70.0]), "b": np.array([math.nan, 1])})
    assert got.tolist() == [False, True]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("open('x')", "uses Call"),
        ("a if b else c", "uses IfExp"),
        ("a[0] > 1", "uses Subscript"),
        ("'x' == a", "non-numeric constant"),
        ("a <", "not a valid expression"),
    ],
)
def test_anything_but_arithmetic_comparisons_and_logic_is_refused(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse(text, "expression", CONDITION, CONDITION_OPS)
