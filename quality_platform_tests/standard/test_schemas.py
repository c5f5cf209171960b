"""columns_conform: the one cast of frames to declared column types before they are written."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from quality_platform.standard.schemas import Col, columns_conform, columns_ddl

COLS = [
    Col("plant", "label", "plant"),
    Col("n", "int", "count"),
    Col("m", "int", "optional count", nullable=True),
]


def test_nullable_int_keeps_missing_values_as_null() -> None:
    df = columns_conform(pd.DataFrame({"m": [1.0, None], "n": [1, 2], "plant": ["a", "b"]}), COLS)
    assert list(df.columns) == ["plant", "n", "m"]
    assert (
        str(df["n"].dtype) == "int64"
        and str(df["m"].dtype) == "Int64"
        and df["m"].isna().tolist() == [False, True]
    )
    con = duckdb.connect()
    con.execute(columns_ddl(COLS, "main", "t"))
    con.execute("INSERT INTO t SELECT * FROM df")
    assert con.execute("SELECT n, m FROM t ORDER BY n").fetchall() == [(1, 1), (2, None)]


def test_non_nullable_int_refuses_missing_values() -> None:
    with pytest.raises((ValueError, TypeError)):
        columns_conform(pd.DataFrame({"plant": ["a"], "n": [None], "m": [1]}), COLS)


def test_complete_int_column_stays_int64() -> None:
    df = columns_conform(pd.DataFrame({"plant": ["a"], "n": [3], "m": [4.0]}), COLS)
    assert str(df["m"].dtype) == "int64"
