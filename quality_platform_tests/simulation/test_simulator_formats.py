"""Native file formats per plant exactly as the plant configs describe them."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from quality_platform.config import OutcomeRule, OutcomeSpec, PlantConfig
from quality_platform.simulation import simulate
from quality_platform.simulation.writers import measurements

from .helpers import (
    day_dirs,
    plant_a_inspections,
    plant_a_readings,
    plant_a_units,
    plant_b_table,
    plant_c_batches,
)

DAY0 = "2026-03-16"


def test_plant_a_sensor_csv(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    raw = (root / "plant_a" / DAY0 / "sensoren.csv").read_bytes()
    lines = raw.decode("utf-8").split("\n")
    assert lines[0] == (
        "Zeitstempel,Maschine,Temperatur [°C],Druck [bar],Materialfeuchte [%],Vibration [mm/s]"
    )
    assert raw.endswith(b"\n") and b"\r" not in raw
    assert lines[1].startswith(f"{DAY0} 00:00:00,A-M01,")
    assert lines[2].startswith(f"{DAY0} 00:00:00,A-M02,")
    assert lines[13].startswith(f"{DAY0} 00:01:00,A-M01,")
    df = pd.read_csv(root / "plant_a" / DAY0 / "sensoren.csv")
    assert len(df) == 1440 * 12
    assert list(df["Maschine"].unique()) == [f"A-M{i:02d}" for i in range(1, 13)]
    parsed = pd.to_datetime(df["Zeitstempel"], format="%Y-%m-%d %H:%M:%S")
    assert (parsed.dt.strftime("%Y-%m-%d") == DAY0).all()
    for col in df.columns[2:]:
        assert df[col].dtype == np.float64
    assert df["Temperatur [°C]"].between(180, 220).all()
    assert df["Druck [bar]"].between(7, 9).all()  # ~800 kPa
    assert df["Materialfeuchte [%]"].between(8, 16).all()
    assert (df["Vibration [mm/s]"] > 0).all()


def test_plant_a_orders_and_inspections(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    units = pd.read_csv(root / "plant_a" / DAY0 / "auftraege.csv")
    assert list(units.columns) == [
        "Auftrag",
        "Linie",
        "Maschine",
        "Start",
        "Ende",
        "Produkt",
        "Charge",
        "Lieferant",
        "Werker",
    ]
    assert len(units) == 96 * 12
    assert units["Auftrag"].iloc[0] == "A-20260316-M01-0001"
    assert units["Auftrag"].str.fullmatch(r"A-\d{8}-M\d{2}-\d{4}").all()
    assert units["Werker"].str.fullmatch(r"W-\d{5}").all()
    assert set(units.loc[units["Maschine"] <= "A-M06", "Linie"]) == {"L1"}
    assert set(units.loc[units["Maschine"] > "A-M06", "Linie"]) == {"L2"}
    assert 3 <= units["Produkt"].nunique() <= 4
    assert 2 <= units["Lieferant"].nunique() <= 3
    assert 5 <= units["Werker"].nunique() <= 20
    ins_file = root / "plant_a" / DAY0 / "pruefung_2026-03-18.csv"
    ins = pd.read_csv(ins_file)
    assert list(ins.columns) == ["Auftrag", "Pruefzeit", "Nacharbeit", "Ausschuss"]
    assert ins["Nacharbeit"].dtype == np.int64 and ins["Ausschuss"].dtype == np.int64
    assert set(ins["Nacharbeit"]) <= {0, 1} and set(ins["Ausschuss"]) <= {0, 1}
    assert not ((ins["Nacharbeit"] == 1) & (ins["Ausschuss"] == 1)).any()
    assert set(ins["Auftrag"]) == set(units["Auftrag"])
    pd.to_datetime(ins["Pruefzeit"], format="%Y-%m-%d %H:%M:%S")


def test_unit_ids_unique_and_windows_contiguous(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    units = plant_a_units(root)
    assert units["Auftrag"].is_unique
    for _, g in units.groupby("Maschine"):
        start = pd.to_datetime(g["Start"]).to_numpy()
        end = pd.to_datetime(g["Ende"]).to_numpy()
        assert (end - start == np.timedelta64(15, "m")).all()
        assert (start[1:] == end[:-1]).all()
    assert (units["Start"].str[:10] == units["day"]).all()


def test_plant_b_parquet_schemas(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    day = root / "plant_b" / DAY0
    ts = pa.timestamp("ms", tz="UTC")
    readings = pq.read_table(day / "readings.parquet")
    assert readings.schema.names == ["ts", "asset_tag", "signal", "value", "uom"]
    assert [f.type for f in readings.schema] == [
        ts,
        pa.string(),
        pa.string(),
        pa.float64(),
        pa.string(),
    ]
    assert readings.num_rows == 1440 * 10 * 4
    df = readings.to_pandas()
    assert df.equals(df.sort_values(["ts", "asset_tag", "signal"]).reset_index(drop=True))
    assert dict(zip(df["signal"], df["uom"], strict=True)) == {
        "TEMP": "°F",
        "PRES": "psi",
        "MOIST": "fraction",
        "VIB": "in/s",
    }
    assert (df["ts"].dt.strftime("%Y-%m-%d") == DAY0).all()
    production = pq.read_table(day / "production.parquet")
    assert production.schema.names == [
        "serial",
        "line_code",
        "asset_tag",
        "start_ts",
        "end_ts",
        "sku",
        "lot_no",
        "supplier",
        "badge_id",
    ]
    assert production.schema.field("start_ts").type == ts
    assert production.schema.field("end_ts").type == ts
    assert production.num_rows == 72 * 10
    assert pc_all_match(production.column("badge_id").to_pylist(), r"BDG-\d{4}")
    qc = pq.read_table(day / "qc_2026-03-19.parquet")
    assert qc.schema.names == ["serial", "qc_ts", "disposition"]
    assert qc.schema.field("qc_ts").type == ts
    assert set(qc.column("disposition").to_pylist()) <= {"PASS", "REWORK", "SCRAP"}


def pc_all_match(values: list[str], pattern: str) -> bool:
    """True when every value matches ``pattern`` completely."""
    return bool(pd.Series(values).str.fullmatch(pattern).all())


def test_plant_c_batches(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    tz = zoneinfo.ZoneInfo("America/Chicago")
    batches = plant_c_batches(root)
    first = batches[0]
    assert list(first) == [
        "batch_id",
        "line",
        "machine",
        "product",
        "material",
        "operator",
        "start_ms",
        "end_ms",
        "units_in_batch",
        "readings",
        "_day",
    ]
    assert list(first["product"]) == ["code", "family"]
    assert list(first["material"]) == ["lot", "supplier"]
    assert list(first["operator"]) == ["badge"]
    assert list(first["readings"][0]) == ["t", "temp_K", "press_kPa", "moist_gkg", "vib_mms"]
    per_day = {}
    for b in batches:
        start = dt.datetime.fromtimestamp(b["start_ms"] / 1000, tz)
        assert start.date().isoformat() == b["_day"]
        assert b["end_ms"] - b["start_ms"] == 30 * 60_000
        ts = [r["t"] for r in b["readings"]]
        assert len(ts) == 30 and ts == sorted(ts)
        assert b["start_ms"] <= ts[0] and ts[-1] < b["end_ms"]
        assert 450 < b["readings"][0]["temp_K"] < 500
        per_day[b["_day"]] = per_day.get(b["_day"], 0) + 1
    assert set(per_day.values()) == {48 * 11}
    ins = (root / "plant_c" / DAY0 / "inspections_2026-03-17.jsonl").read_text().splitlines()
    rec = json.loads(ins[0])
    assert list(rec) == ["batch_id", "ts_ms", "result"] and rec["result"] in {
        "ok",
        "rework",
        "scrap",
    }


def test_plant_c_day_folders_are_chicago_days(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    text = (root / "plant_c" / DAY0 / "batches.jsonl").read_text()
    first = json.loads(text.splitlines()[0])
    # local midnight in Chicago (CDT, UTC-5 after 2026-03-08) is 05:00 UTC
    assert first["start_ms"] == int(dt.datetime(2026, 3, 16, 5, tzinfo=dt.UTC).timestamp() * 1000)


def test_plant_a_inspections_cover_labelled_days(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    ins = plant_a_inspections(root)
    units = plant_a_units(root)
    labelled = units[units["day"] <= "2026-03-21"]  # arrival day + 2 <= 2026-03-23
    assert set(ins["Auftrag"]) == set(labelled["Auftrag"])


def test_new_plant_config_needs_no_code(tmp_path: Path, plants: dict[str, PlantConfig]) -> None:
    raw = plants["plant_a"].model_dump(mode="json")
    raw.update(plant_id="plant_x", timezone="Asia/Kolkata", machines=["X-01", "X-02", "X-03"])
    raw["streams"]["readings"]["quantities"]["temperature"] = {"field": "Temp", "unit": "°F"}
    raw["streams"]["readings"]["path"] = "{date}/messwerte.csv"
    cfg = PlantConfig.model_validate(raw)
    truth = simulate(tmp_path, days=2, plants={"plant_x": cfg})
    assert truth["cycle_minutes"] == {"plant_x": 15}  # csv default
    days = [d.name for d in day_dirs(tmp_path, "plant_x")]
    assert days == ["2026-03-16", "2026-03-17"]
    df = pd.read_csv(tmp_path / "plant_x" / days[0] / "messwerte.csv")
    assert list(df.columns)[:3] == ["Zeitstempel", "Maschine", "Temp [°F]"]
    assert len(df) == 1440 * 3 and df["Zeitstempel"].iloc[0] == "2026-03-16 00:00:00"
    assert 370 < df["Temp [°F]"].mean() < 415
    units = pd.read_csv(tmp_path / "plant_x" / days[0] / "auftraege.csv")
    assert units["Auftrag"].iloc[0] == "X-20260316-01-0001"
    assert list(units["Linie"].iloc[:3]) == ["L1", "L1", "L2"]


def test_readings_per_day_file(stable8: tuple[Path, dict]) -> None:
    root, truth = stable8
    readings = plant_a_readings(root)
    per_day = readings.groupby("day").size().to_dict()
    expected = {d: c["reading_rows"] for d, c in truth["counts"]["plant_a"]["per_day"].items()}
    assert per_day == expected
    prod = plant_b_table(root, "production")
    assert len(prod) == truth["counts"]["plant_b"]["units"]


# --------------------------------------------------------------------------- outcome rules


_BOUND = st.floats(-1e4, 1e4, allow_nan=False).map(lambda x: round(x, 2))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["dissolution", "hardness"]),
            st.booleans(),
            _BOUND,
            st.sampled_from(["rework", "scrap"]),
        ),
        min_size=1,
        max_size=3,
    ),
    st.lists(st.integers(0, 2), min_size=1, max_size=200),
)
def test_written_measurements_give_back_each_units_outcome(rules, outcomes) -> None:
    """Property: from the measurements the simulator writes, the plant's own outcome rules decide
    every unit's outcome as drawn (a class without a rule reads as ok), or the simulator refuses
    the rules it cannot honour - it never writes data that silently disagrees with them."""
    specs = [
        OutcomeRule(field=f, then=then, **({"below": b} if low else {"above": b}))
        for f, low, b, then in rules
    ]
    outcome = np.array(outcomes)
    try:
        values = measurements(OutcomeSpec(rules=specs), outcome)
    except ValueError:  # only rules sharing a field can be beyond honouring (e.g. contradictory)
        assert len({r.field for r in specs}) < len(specs)
        return
    decided = np.zeros(outcome.size, dtype=int)
    for r in specs:
        code = 1 if r.then == "rework" else 2
        decided = np.where(r.hits(values), np.maximum(decided, code), decided)
    kinds = {r.then for r in specs}
    expected = np.where(
        ((outcome == 1) & ("rework" in kinds)) | ((outcome == 2) & ("scrap" in kinds)), outcome, 0
    )
    assert np.array_equal(decided, expected)


def test_nested_thresholds_on_one_field_are_honoured() -> None:
    """Rework below 85 %, scrap below 80 % on the same field: rework units land in [80, 85)."""
    specs = [
        OutcomeRule(field="d", below=80, then="scrap"),
        OutcomeRule(field="d", below=85, then="rework"),
    ]
    outcome = np.array([0, 1, 2] * 50)
    d = measurements(OutcomeSpec(rules=specs), outcome)["d"]
    assert (d[outcome == 0] >= 85).all()
    assert ((d[outcome == 1] >= 80) & (d[outcome == 1] < 85)).all()
    assert (d[outcome == 2] < 80).all()
