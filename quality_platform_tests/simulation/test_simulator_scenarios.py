"""Each scenario changes exactly what it says, and nothing else."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from quality_platform.simulation import CONCEPT_DRIFT_COEFFICIENTS, simulate

from .conftest import SCENARIO_DAYS
from .helpers import (
    all_files,
    auc,
    plant_a_readings,
    plant_b_table,
    plant_c_batches,
    plant_c_inspections,
    plant_c_readings,
)

ONSET = dt.date(2026, 3, 16) + dt.timedelta(days=SCENARIO_DAYS // 2)


def _same_plants(a: Path, b: Path, plants: list[str]) -> None:
    fa, fb = all_files(a), all_files(b)
    for name in fa:
        if name.split("/")[0] in plants:
            assert fa[name] == fb[name], name


def test_onset_defaults_and_clamps(tmp_path: Path, runs) -> None:
    _, truth = runs("sensor_offset")
    assert truth["onset_day"] == SCENARIO_DAYS // 2
    assert truth["onset_date"] == ONSET.isoformat()
    clamped = simulate(tmp_path / "a", days=3, scenario="sensor_offset", onset_day=0)
    assert clamped["onset_day"] == 1
    clamped = simulate(tmp_path / "b", days=3, scenario="sensor_offset", onset_day=9)
    assert clamped["onset_day"] == 2


def test_moisture_drift(runs) -> None:
    stable_root, stable = runs("stable")
    root, truth = runs("moisture_drift")
    assert truth["affected"]["plant"] == "plant_a"
    assert truth["affected"]["quantity"] == "material_moisture"
    assert truth["expected_incidents"] == [
        {
            "type": "process_drift",
            "plant": "plant_a",
            "quantity": "material_moisture",
            "from_date": ONSET.isoformat(),
            "from_utc": truth["affected"]["onset_utc"],
        }
    ]
    drift = plant_a_readings(root)
    base = plant_a_readings(stable_root)
    col = "Materialfeuchte [%]"
    after = drift["day"] >= ONSET.isoformat()
    before_diff = (drift.loc[~after, col] - base.loc[~after, col]).abs().max()
    assert before_diff == 0
    diff_by_day = (drift[col] - base[col]).groupby(drift["day"]).mean()
    later = diff_by_day[diff_by_day.index >= ONSET.isoformat()]
    assert later.is_monotonic_increasing and later.iloc[0] > 0.05 and later.iloc[-1] > 0.5
    assert drift.loc[after, col].mean() > base.loc[after, col].mean() + 0.3
    # the other plants are untouched; defects rise at plant_a
    _same_plants(root, stable_root, ["plant_b", "plant_c"])
    assert truth["counts"]["plant_a"]["true_scrap"] + truth["counts"]["plant_a"]["true_rework"] > (
        stable["counts"]["plant_a"]["true_scrap"] + stable["counts"]["plant_a"]["true_rework"]
    )
    drift_days = truth["counts"]["plant_a"]["per_day"]
    stable_days = stable["counts"]["plant_a"]["per_day"]
    for day in [d for d in drift_days if d < ONSET.isoformat()]:
        assert drift_days[day] == stable_days[day]


def test_sensor_offset(runs) -> None:
    stable_root, stable = runs("stable")
    root, truth = runs("sensor_offset")
    assert truth["affected"]["plant"] == "plant_b" and truth["affected"]["machine"] == "B-M03"
    assert truth["expected_incidents"][0]["type"] == "sensor_fault"
    a = plant_b_table(root, "readings")
    b = plant_b_table(stable_root, "readings")
    diff = a["value"] - b["value"]
    hit = (
        (a["asset_tag"] == "B-M03")
        & (a["signal"] == "TEMP")
        & (a["ts"] >= pd.Timestamp(ONSET, tz="UTC"))
    )
    assert np.allclose(diff[hit], 8.0 * 1.8, atol=0.011)  # +8 degC in degF
    assert (diff[~hit] == 0).all()
    # true process unchanged: same production and inspection outcomes
    for name in ("production", "qc_*"):
        pd.testing.assert_frame_equal(plant_b_table(root, name), plant_b_table(stable_root, name))
    assert truth["counts"] == stable["counts"]


def test_stuck_sensor(runs) -> None:
    stable_root, stable = runs("stable")
    root, truth = runs("stuck_sensor")
    assert truth["affected"]["plant"] == "plant_c" and truth["affected"]["machine"] == "C-M02"
    assert truth["affected"]["quantity"] == "vibration"
    r = plant_c_readings(plant_c_batches(root))
    s = plant_c_readings(plant_c_batches(stable_root))
    onset_ms = int(pd.Timestamp(ONSET).tz_localize("America/Chicago").timestamp() * 1000)
    m2 = r["machine"] == "C-M02"
    after = r["t"] >= onset_ms
    flat = r.loc[m2 & after, "vib_mms"]
    assert flat.nunique() == 1 and len(flat) > 1000
    assert flat.iloc[0] == r.loc[m2 & ~after, "vib_mms"].iloc[-1]
    assert r.loc[m2 & ~after, "vib_mms"].nunique() > 100
    assert (r.loc[~(m2 & after), "vib_mms"] == s.loc[~(m2 & after), "vib_mms"]).all()
    assert (r.drop(columns="vib_mms") == s.drop(columns="vib_mms")).all().all()
    pd.testing.assert_frame_equal(plant_c_inspections(root), plant_c_inspections(stable_root))
    assert truth["counts"] == stable["counts"]


def test_missing_burst(runs) -> None:
    stable_root, stable = runs("stable")
    root, truth = runs("missing_burst")
    aff = truth["affected"]
    assert aff["plant"] == "plant_b" and len(aff["machines"]) == 3
    incidents = truth["expected_incidents"]
    assert [i["machine"] for i in incidents] == aff["machines"]
    assert all(
        i["type"] == "missing_data" and i["from_date"] == ONSET.isoformat() for i in incidents
    )
    t0, t1 = pd.Timestamp(aff["from_utc"]), pd.Timestamp(aff["to_utc"])
    assert pd.Timedelta(hours=3) <= t1 - t0 <= pd.Timedelta(hours=5)
    a = plant_b_table(root, "readings")
    in_window = (a["ts"] >= t0) & (a["ts"] < t1)
    assert not a.loc[in_window, "asset_tag"].isin(aff["machines"]).any()
    assert set(a.loc[in_window, "asset_tag"]) == {f"B-M{i:02d}" for i in range(1, 11)} - set(
        aff["machines"]
    )
    b = plant_b_table(stable_root, "readings")
    missing = len(b) - len(a)
    hours = (t1 - t0) / pd.Timedelta(hours=1)
    assert missing == 3 * hours * 60 * 4
    day = truth["counts"]["plant_b"]["per_day"][ONSET.isoformat()]
    assert day["reading_rows"] == 1440 * 10 - missing // 4
    for name in ("production", "qc_*"):
        pd.testing.assert_frame_equal(plant_b_table(root, name), plant_b_table(stable_root, name))
    _same_plants(root, stable_root, ["plant_a", "plant_c"])
    assert truth["counts"]["plant_b"]["units"] == stable["counts"]["plant_b"]["units"]


def test_concept_drift(runs) -> None:
    stable_root, _ = runs("stable")
    root, truth = runs("concept_drift")
    assert truth["affected"]["plant"] == "plant_c"
    assert truth["expected_incidents"] == [
        {
            "type": "concept_drift",
            "plant": "plant_c",
            "from_date": ONSET.isoformat(),
            "from_utc": truth["affected"]["onset_utc"],
        }
    ]
    change = truth["mechanism"]["changes"][0]
    assert change["coefficients"]["pressure"] == CONCEPT_DRIFT_COEFFICIENTS.pressure
    # inputs identical, relation changed after the onset only
    _same_plants(root, stable_root, ["plant_a", "plant_b"])
    for d in sorted((root / "plant_c").iterdir()):
        assert (d / "batches.jsonl").read_bytes() == (
            stable_root / "plant_c" / d.name / "batches.jsonl"
        ).read_bytes()
    drift, base = plant_c_inspections(root), plant_c_inspections(stable_root)
    batches = pd.DataFrame(
        [
            {
                "batch_id": b["batch_id"],
                "day": b["_day"],
                "pressure": np.mean([r["press_kPa"] for r in b["readings"]]),
            }
            for b in plant_c_batches(root)
        ]
    )
    d = drift.merge(batches, on="batch_id").merge(
        base[["batch_id", "result"]], on="batch_id", suffixes=("", "_stable")
    )
    before = d["day"] < ONSET.isoformat()
    assert (d.loc[before, "result"] == d.loc[before, "result_stable"]).all()
    assert (d.loc[~before, "result"] != d.loc[~before, "result_stable"]).any()
    dev = (d["pressure"] - 800).abs()
    after_drift = auc(dev[~before].to_numpy(), (d.loc[~before, "result"] != "ok").to_numpy())
    after_stable = auc(
        dev[~before].to_numpy(), (d.loc[~before, "result_stable"] != "ok").to_numpy()
    )
    assert after_drift > 0.6 and after_drift > after_stable + 0.1


@pytest.mark.parametrize(
    "scenario",
    ["sensor_offset", "stuck_sensor", "missing_burst", "concept_drift", "moisture_drift"],
)
def test_incidents_name_plant_and_date(runs, scenario: str) -> None:
    _, truth = runs(scenario)
    assert truth["scenario"] == scenario and truth["expected_incidents"]
    for inc in truth["expected_incidents"]:
        assert inc["plant"] == truth["affected"]["plant"]
        assert inc["from_date"] == truth["onset_date"]
        assert inc["type"] in {"process_drift", "sensor_fault", "missing_data", "concept_drift"}


def test_scenario_with_missing_preferred_plant(tmp_path: Path, plants) -> None:
    truth = simulate(
        tmp_path, days=2, scenario="stuck_sensor", plants={"plant_a": plants["plant_a"]}
    )
    assert truth["affected"]["plant"] == "plant_a"
    assert truth["affected"]["machine"] == "A-M02"
    df = pd.read_csv(tmp_path / "plant_a" / "2026-03-17" / "sensoren.csv")
    assert df.loc[df["Maschine"] == "A-M02", "Vibration [mm/s]"].nunique() == 1


def test_parquet_is_plain_arrow(runs) -> None:
    root, _ = runs("stable")
    meta = pq.read_metadata(root / "plant_b" / "2026-03-16" / "readings.parquet")
    assert meta.num_row_groups == 1
    assert b"pandas" not in (meta.metadata or {})
