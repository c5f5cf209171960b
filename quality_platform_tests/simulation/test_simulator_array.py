"""The simulator writes the array readings layout (one row per production cycle and machine, one
column per sample, each quantity at its own interval) from the plant config alone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from quality_platform.config import PlantConfig, load_plants
from quality_platform.simulation import simulate

DAY = dt.date(2026, 3, 16)


def _plant(readings: dict[str, Any]) -> PlantConfig:
    """plant_a (1-minute grid, 15-minute cycles) as plant_p with two machines and ``readings``."""
    doc = load_plants()["plant_a"].model_dump(mode="json", exclude_none=True)
    doc.update(plant_id="plant_p", machines=["P-M01", "P-M02"])
    doc["streams"]["readings"] = readings
    return PlantConfig.model_validate(doc)


def _readings(layout: str, samples: dict[str, int] | None = None) -> dict[str, Any]:
    wide = layout == "wide"
    return {
        "format": "csv",
        "path": "{date}/zyklen.csv",
        "timestamp": {"field": "Zeit", "kind": "utc"},
        "machine": {"field": "Presse"},
        "layout": layout,
        **({} if wide else {"array": {"samples": samples}}),
        "quantities": {
            "temperature": {"field": "T" if wide else "T_{i}", "unit": "degC"}
            | ({} if wide else {"interval_seconds": 30}),
            "pressure": {"field": "P" if wide else "P{i:02d}", "unit": "bar"}
            | ({} if wide else {"interval_seconds": 7.5}),
        },
    }


def test_array_rows_hold_each_sample_of_the_signal_at_its_own_time(tmp_path: Path) -> None:
    """The same plant written wide (a row per minute) and as arrays (a row per cycle): sample i
    of a cycle is the signal's value at cycle start + (i - 1) x interval, i.e. the wide row of
    that minute; the truth counts one record per cycle and one value per sample."""
    samples = {"temperature": 30, "pressure": 120}  # both span the 15-minute cycle
    arr = simulate(
        tmp_path / "a",
        days=1,
        seed=3,
        start=DAY,
        plants={"plant_p": _plant(_readings("array", samples))},
    )
    simulate(
        tmp_path / "w", days=1, seed=3, start=DAY, plants={"plant_p": _plant(_readings("wide"))}
    )
    a = pd.read_csv(tmp_path / "a" / "plant_p" / DAY.isoformat() / "zyklen.csv")
    w = pd.read_csv(tmp_path / "w" / "plant_p" / DAY.isoformat() / "zyklen.csv")
    assert list(a.columns) == [
        "Zeit",
        "Presse",
        *(f"T_{i}" for i in range(1, 31)),
        *(f"P{i:02d}" for i in range(1, 121)),
    ]
    assert len(a) == 2 * 96 and list(a["Presse"][:2]) == ["P-M01", "P-M02"]
    counts = arr["counts"]["plant_p"]["per_day"][DAY.isoformat()]
    assert counts["reading_rows"] == len(a) and counts["reading_values"] == len(a) * 150
    minute = w.set_index(["Presse", pd.to_datetime(w["Zeit"])])
    for _, row in a.sample(12, random_state=0).iterrows():
        start = pd.Timestamp(row["Zeit"])
        for q, col, n, step in (("T", "T_{}", 30, 30.0), ("P", "P{:02d}", 120, 7.5)):
            for i in (1, 2, n // 2, n):
                t = (start + pd.Timedelta(seconds=(i - 1) * step)).floor("min")
                assert row[col.format(i)] == minute.loc[(row["Presse"], t), q]


def test_samples_beyond_one_cycle_are_refused(tmp_path: Path) -> None:
    """Samples that would run into the next cycle's (cycles are 15 minutes) cannot be simulated."""
    plant = _plant(_readings("array", {"temperature": 31, "pressure": 10}))  # 31 x 30 s > 900 s
    with pytest.raises(ValueError, match="samples of temperature span 900 s, not within one"):
        simulate(tmp_path, days=1, seed=3, start=DAY, plants={"plant_p": plant})
