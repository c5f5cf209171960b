"""Units, time zones, label latency and the learnability of the defect mechanism."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from quality_platform.config import PlantConfig, load_quantities
from quality_platform.simulation import simulate
from quality_platform.units import convert

from .helpers import (
    auc,
    day_dirs,
    plant_a_inspections,
    plant_a_readings,
    plant_a_units,
    plant_c_batches,
    plant_c_readings,
)


def _canonical(values: np.ndarray, label: str, quantity: str) -> np.ndarray:
    reg = load_quantities()
    return convert(values, reg.pint_unit(label), reg.quantities[quantity].unit)


def test_plant_b_units_convert_back(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    df = pq.read_table(root / "plant_b" / "2026-03-16" / "readings.parquet").to_pandas()
    expected = {
        "TEMP": ("temperature", 200, 5),
        "PRES": ("pressure", 800, 25),
        "MOIST": ("material_moisture", 12, 1.5),
        "VIB": ("vibration", 3, 0.6),
    }
    quantities = {
        "TEMP": "temperature",
        "PRES": "pressure",
        "MOIST": "material_moisture",
        "VIB": "vibration",
    }
    for signal, g in df.groupby("signal"):
        q, mean, tol = expected[signal]
        assert quantities[signal] == q
        back = _canonical(g["value"].to_numpy(), g["uom"].iloc[0], q)
        assert abs(back.mean() - mean) < tol, signal
    temp_f = df.loc[df["signal"] == "TEMP", "value"]
    assert 380 < temp_f.mean() < 405  # ~200 degC in degF


def test_plant_c_kelvin_and_g_per_kg(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    r = plant_c_readings(plant_c_batches(root)[:200])
    assert abs(_canonical(r["temp_K"].to_numpy(), "K", "temperature").mean() - 200) < 5
    assert abs(_canonical(r["moist_gkg"].to_numpy(), "g/kg", "material_moisture").mean() - 12) < 2


def test_dst_fall_back_has_25_hours(tmp_path: Path, plants: dict[str, PlantConfig]) -> None:
    simulate(tmp_path, days=3, start=dt.date(2026, 10, 24), plants={"plant_a": plants["plant_a"]})
    df = pd.read_csv(tmp_path / "plant_a" / "2026-10-25" / "sensoren.csv")
    per_machine = df.groupby("Maschine").size()
    assert (per_machine == 25 * 60).all()
    m1 = df.loc[df["Maschine"] == "A-M01", "Zeitstempel"].tolist()
    repeated = [i for i, t in enumerate(m1) if t == "2026-10-25 02:30:00"]
    assert len(repeated) == 2 and repeated[1] - repeated[0] == 60
    # chronological: 02:00..02:59 (CEST), then 02:00..02:59 again (CET), then 03:00
    first = m1.index("2026-10-25 02:00:00")
    assert m1[first + 59] == "2026-10-25 02:59:00"
    assert m1[first + 60] == "2026-10-25 02:00:00"
    assert m1[first + 120] == "2026-10-25 03:00:00"
    # machines interleaved per minute: the first 12 rows of the repeated hour are one minute
    rows = df.iloc[first * 12 : first * 12 + 12]
    assert rows["Zeitstempel"].nunique() == 1 and rows["Maschine"].is_unique
    assert (
        pd.read_csv(tmp_path / "plant_a" / "2026-10-24" / "sensoren.csv").groupby("Maschine").size()
        == 24 * 60
    ).all()
    units = pd.read_csv(tmp_path / "plant_a" / "2026-10-25" / "auftraege.csv")
    assert (units.groupby("Maschine").size() == 100).all()


def test_dst_spring_forward_has_23_hours(tmp_path: Path, plants: dict[str, PlantConfig]) -> None:
    simulate(tmp_path, days=2, start=dt.date(2026, 3, 28), plants={"plant_a": plants["plant_a"]})
    df = pd.read_csv(tmp_path / "plant_a" / "2026-03-29" / "sensoren.csv")
    assert (df.groupby("Maschine").size() == 23 * 60).all()
    assert not df["Zeitstempel"].str.startswith("2026-03-29 02:").any()
    # every local timestamp maps to a distinct UTC minute
    local = pd.to_datetime(df["Zeitstempel"]).dt.tz_localize("Europe/Berlin")
    assert local.drop_duplicates().diff().dropna().eq(pd.Timedelta(minutes=1)).all()


def test_label_latency(stable8: tuple[Path, dict]) -> None:
    root, truth = stable8
    last = dt.date.fromisoformat(truth["end"])
    globs = {
        "plant_a": "pruefung_*.csv",
        "plant_b": "qc_*.parquet",
        "plant_c": "inspections_*.jsonl",
    }
    for plant, pattern in globs.items():
        latency = truth["label_latency_days"][plant]
        found = []
        for d in day_dirs(root, plant):
            files = sorted(d.glob(pattern))
            day = dt.date.fromisoformat(d.name)
            arrival = day + dt.timedelta(days=latency)
            if arrival <= last:
                assert [f.name for f in files] == [pattern.replace("*", arrival.isoformat())]
                found.append(d.name)
            else:
                assert files == [], (plant, d.name)
            for f in files:
                stamp = re.search(r"\d{4}-\d{2}-\d{2}", f.name)
                assert stamp and dt.date.fromisoformat(stamp.group()) <= last
        assert len(found) == truth["days"] - latency


def test_inspection_times_after_unit_end(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    units = plant_a_units(root)
    ins = plant_a_inspections(root).merge(units, on="Auftrag")
    tz = zoneinfo.ZoneInfo("Europe/Berlin")
    end = pd.to_datetime(ins["Ende"]).dt.tz_localize(tz)
    at = pd.to_datetime(ins["Pruefzeit"]).dt.tz_localize(tz)
    assert (at > end).all()
    arrival = ins["file"].str.extract(r"pruefung_(\d{4}-\d{2}-\d{2})")[0]
    assert (ins["Pruefzeit"].str[:10] <= arrival).all()


def _plant_a_windows(root: Path) -> pd.DataFrame:
    """Window aggregates per order joined with its inspection outcome."""
    r = plant_a_readings(root)
    r["Start"] = pd.to_datetime(r["Zeitstempel"]).dt.floor("15min").dt.strftime("%Y-%m-%d %H:%M:%S")
    w = (
        r.groupby(["Maschine", "Start"])
        .agg(
            moisture=("Materialfeuchte [%]", "mean"),
            temperature=("Temperatur [°C]", "mean"),
            pressure=("Druck [bar]", "mean"),
            vibration_max=("Vibration [mm/s]", "max"),
            vibration=("Vibration [mm/s]", "mean"),
        )
        .reset_index()
    )
    x = (
        plant_a_units(root)
        .merge(w, on=["Maschine", "Start"])
        .merge(plant_a_inspections(root), on="Auftrag")
    )
    x["defect"] = (x["Nacharbeit"] + x["Ausschuss"]) > 0
    return x


def test_defects_learnable_from_window_means(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    x = _plant_a_windows(root)
    assert len(x) == 6 * 96 * 12
    y = x["defect"].to_numpy()
    assert 0.01 < y.mean() < 0.12
    assert auc(x["moisture"].to_numpy(), y) > 0.6
    # a small logistic regression on window means (fit on the first half, scored on the rest)
    feats = np.column_stack(
        [
            x["moisture"],
            x["moisture"] ** 2,
            x["temperature"],
            x["temperature"] ** 2,
            x["vibration_max"],
            x["pressure"],
        ]
    )
    z = (feats - feats.mean(0)) / feats.std(0)
    z = np.column_stack([np.ones(len(z)), z])
    half = len(z) // 2
    w = np.zeros(z.shape[1])
    for _ in range(3000):
        p = 1.0 / (1.0 + np.exp(-z[:half] @ w))
        w += 0.5 * z[:half].T @ (y[:half] - p) / half
    assert auc(z[half:] @ w, y[half:]) > 0.7


def test_wet_material_raises_defect_rate(stable8: tuple[Path, dict]) -> None:
    x = _plant_a_windows(stable8[0])
    wet = x["moisture"] > 12.8
    assert x.loc[wet, "defect"].mean() > 2 * x.loc[~wet, "defect"].mean()
