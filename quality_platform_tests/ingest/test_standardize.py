"""Standardisation rules on hand-made plant_a files: DST, units, quarantine reasons, reconciliation."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quality_platform.config import load_plants
from quality_platform.settings import Paths
from quality_platform_tests.conftest import land_and_standardize

HEADER = "Zeitstempel,Maschine,Temperatur [°C],Druck [bar],Materialfeuchte [%],Vibration [mm/s]\n"
NOW = pd.Timestamp("2026-11-22 00:00", tz="UTC")


def _write_day(paths: Paths, day: str, rows: list[str], units: str | None = None) -> None:
    d = paths.data_dir / "landing" / "plant_a" / day
    d.mkdir(parents=True, exist_ok=True)
    (d / "sensoren.csv").write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    if units is not None:
        (d / "auftraege.csv").write_text(units, encoding="utf-8")


def _run(paths: Paths, days: list[dt.date]):
    return land_and_standardize(paths, load_plants(paths)["plant_a"], days, NOW)


def test_units_and_utc(qp_env: Paths) -> None:
    _write_day(qp_env, "2026-03-16", ["2026-03-16 10:00:00,A-M01,200.0,2.5,12.0,3.0"])
    res = _run(qp_env, [dt.date(2026, 3, 16)])
    r = res.readings.set_index("quantity")
    assert r.loc["pressure", "value"] == pytest.approx(250.0) and r.loc["pressure", "unit"] == "kPa"
    assert r.loc["temperature", "value"] == pytest.approx(200.0)
    assert r.loc["material_moisture", "value"] == pytest.approx(12.0)
    assert (res.readings["ts_utc"] == pd.Timestamp("2026-03-16 09:00:00")).all()  # CET = UTC+1
    assert res.quarantine.empty


def test_autumn_fall_back_hour_is_resolved_by_order(qp_env: Paths) -> None:
    rows = [f"2026-10-25 02:{m:02d}:00,A-M01,200,2.5,12,3" for m in (0, 30)] * 2
    _write_day(qp_env, "2026-10-25", rows)
    res = _run(qp_env, [dt.date(2026, 10, 25)])
    ts = sorted(res.readings[res.readings["quantity"] == "temperature"]["ts_utc"])
    assert ts == [
        pd.Timestamp(x)
        for x in ("2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 01:00", "2026-10-25 01:30")
    ]
    assert res.quarantine.empty


def test_spring_forward_gap_is_quarantined(qp_env: Paths) -> None:
    _write_day(
        qp_env,
        "2026-03-29",
        ["2026-03-29 02:30:00,A-M01,200,2.5,12,3", "2026-03-29 03:30:00,A-M01,200,2.5,12,3"],
    )
    res = _run(qp_env, [dt.date(2026, 3, 29)])
    assert set(res.quarantine["rule"]) == {"nonexistent_local_time"}
    assert res.quarantine["n_items"].sum() == 4 and len(res.readings) == 4


def test_value_rules_name_file_row_and_rule(qp_env: Paths) -> None:
    _write_day(
        qp_env,
        "2026-03-16",
        [
            "2026-03-16 10:00:00,A-M01,200,2.5,12,3",
            "2026-03-16 10:01:00,A-M01,1e308,2.5,12,3",  # out_of_range
            '2026-03-16 10:02:00,A-M01,"182,4",2.5,12,3',  # decimal comma
            "2026-03-16 10:03:00,A-M01,NaN,,12,3",  # missing values
            "2099-01-01 10:04:00,A-M01,200,2.5,12,3",  # future
            "2026-03-16 10:00:00,A-M01,201,2.5,12,3",  # duplicate of row 2
            ",A-M01,200,2.5,12,3",  # invalid timestamp
        ],
    )
    res = _run(qp_env, [dt.date(2026, 3, 16)])
    q = res.quarantine.set_index(["source_row", "source_column"])
    assert q.loc[(3, "Temperatur [°C]"), "rule"] == "out_of_range"
    assert q.loc[(4, "Temperatur [°C]"), "rule"] == "not_a_number"
    assert "decimal comma" in q.loc[(4, "Temperatur [°C]"), "message"]
    assert q.loc[(5, "Temperatur [°C]"), "rule"] == "missing_value"
    assert q.loc[(5, "Druck [bar]"), "rule"] == "missing_value"
    assert set(q.loc[6, "rule"]) == {"timestamp_in_future"}
    assert set(q.loc[7, "rule"]) == {"duplicate"}
    assert set(q.loc[8, "rule"]) == {"invalid_timestamp"}
    msg = q.loc[(3, "Temperatur [°C]"), "message"]
    assert msg.startswith("2026-03-16/sensoren.csv row 3: [out_of_range]")
    # every value is accounted for: 7 rows x 4 quantities
    assert len(res.readings) + res.quarantine["n_items"].sum() == 28


def test_units_personal_data_is_pseudonymised(qp_env: Paths) -> None:
    units = (
        "Auftrag,Linie,Maschine,Start,Ende,Produkt,Charge,Lieferant,Werker\n"
        "A-1,L1,A-M01,2026-03-16 10:00:00,2026-03-16 10:15:00,P1,LOT1,S1,W-10234\n"
        "A-2,L1,A-M01,2026-03-16 10:15:00,2026-03-16 10:30:00,P1,LOT1,S1,W-10234\n"
        "A-2,L1,A-M01,2026-03-16 10:15:00,2026-03-16 10:30:00,P1,LOT1,S1,W-99999\n"
    )
    _write_day(qp_env, "2026-03-16", ["2026-03-16 10:00:00,A-M01,200,2.5,12,3"], units)
    res = _run(qp_env, [dt.date(2026, 3, 16)])
    assert list(res.units["unit_id"]) == ["A-1", "A-2"]
    assert res.units["operator_pseudonym"].str.startswith("op_").all()
    assert res.units["operator_pseudonym"].nunique() == 1
    dump = res.units.astype(str).to_csv() + res.quarantine.astype(str).to_csv()
    assert "W-10234" not in dump and "W-99999" not in dump
    assert list(res.quarantine["rule"]) == ["duplicate"]
    assert res.units["defect"].isna().all()  # no inspection yet


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 1439),
            st.sampled_from(["A-M01", "A-M02", ""]),
            st.sampled_from(["200", "1e308", "abc", "", "NaN", "-5", "12,5", "inf"]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_values_reconcile_for_any_input(qp_env: Paths, rows) -> None:
    lines = [
        f"2026-03-16 {m // 60:02d}:{m % 60:02d}:00,{mach},{v},{v},{v},{v}" for m, mach, v in rows
    ]
    _write_day(qp_env, "2026-03-16", lines)
    res = _run(qp_env, [dt.date(2026, 3, 16)])
    assert len(res.readings) + int(res.quarantine["n_items"].sum()) == 4 * len(rows)
    assert not res.readings.duplicated(["machine_id", "ts_utc", "quantity"]).any()
