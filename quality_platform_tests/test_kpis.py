"""Unified KPI registry and the reconciliation of legacy figures."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quality_platform import kpis as K
from quality_platform.config import load_kpis, load_plants
from quality_platform.settings import Paths


def _units(
    outcomes: list[str | None], line: str = "L1", day: dt.date = dt.date(2026, 3, 16)
) -> pd.DataFrame:
    rows = []
    for o in outcomes:
        rows.append(
            {
                "plant": "plant_a",
                "partition_date": pd.Timestamp(day),
                "line": line,
                "rework": None if o is None else o == "rework",
                "scrap": None if o is None else o == "scrap",
                "defect": None if o is None else o in ("rework", "scrap"),
            }
        )
    return pd.DataFrame(rows)


def test_counts_and_unified_kpis(qp_env: Paths) -> None:
    u = pd.concat(
        [_units(["ok"] * 7 + ["rework", "scrap", None]), _units(["ok", "scrap"], line="L2")]
    )
    kd = K.kpi_daily(u, load_kpis(qp_env))
    whole = kd[kd["line"] == "*"].set_index("kpi_id")
    assert whole.loc["defect_rate", "value"] == pytest.approx(3 / 11)
    assert whole.loc["scrap_rate", "value"] == pytest.approx(2 / 11)
    assert whole.loc["first_pass_yield", "value"] == pytest.approx(8 / 11)
    assert whole.loc["inspection_coverage", "value"] == pytest.approx(11 / 12)
    l2 = kd[(kd["line"] == "L2") & (kd["kpi_id"] == "defect_rate")]
    assert l2["value"].iloc[0] == pytest.approx(0.5)


def test_zero_denominator_is_null(qp_env: Paths) -> None:
    kd = K.kpi_daily(_units([None, None]), load_kpis(qp_env))
    assert kd[kd["kpi_id"] == "defect_rate"]["value"].isna().all()


def test_legacy_reconciliation_explains_each_plant(qp_env: Paths) -> None:
    plants, reg = load_plants(qp_env), load_kpis(qp_env)
    u = _units(["ok"] * 90 + ["rework"] * 5 + ["scrap"] * 3 + [None] * 10)
    kd = K.kpi_daily(u, reg)
    a = K.reconcile(kd, K.plant_reported_kpis(u, plants["plant_a"]), plants["plant_a"], reg).iloc[0]
    assert a["legacy_value"] == pytest.approx(100 * 3 / 108)  # scrap / produced in percent
    assert a["unified_in_legacy_unit"] == pytest.approx(100 * 3 / 98)
    assert (
        "denominator differs: legacy 'produced' vs unified 'inspected' (108 vs 98"
        in a["explanation"]
    )
    ub = u.assign(plant="plant_b")
    b = K.reconcile(
        kd.assign(plant="plant_b"),
        K.plant_reported_kpis(ub, plants["plant_b"]),
        plants["plant_b"],
        reg,
    ).iloc[0]
    assert b["legacy_value"] == pytest.approx(100 * 95 / 98)  # rework counted as good
    assert "numerator differs" in b["explanation"]
    uc = u.assign(plant="plant_c")
    c = K.reconcile(
        kd.assign(plant="plant_c"),
        K.plant_reported_kpis(uc, plants["plant_c"]),
        plants["plant_c"],
        reg,
    ).iloc[0]
    assert c["difference_in_legacy_unit"] == pytest.approx(0)
    assert c["explanation"].startswith("scale: legacy reports in ppm")


@given(st.lists(st.sampled_from(["ok", "rework", "scrap", None]), min_size=1, max_size=60))
def test_kpi_identities_hold_for_any_outcomes(outcomes: list[str | None]) -> None:
    c = K.daily_counts(_units(outcomes))
    whole = c[c["line"] == "*"].iloc[0]
    assert whole["good"] + whole["defective"] == whole["inspected"]
    assert whole["rework"] + whole["scrap"] == whole["defective"]
    assert whole["inspected"] <= whole["produced"] == len(outcomes)
    v = K.evaluate("defective / inspected", c[c["line"] == "*"]).iloc[0]
    assert (np.isnan(v) and whole["inspected"] == 0) or 0 <= v <= 1
