"""The simulator writes readings one file per batch (``streams.readings.batch``) from the plant
config alone: a file per production unit and machine, named by the unit id, holding the same
values the wide layout has for the unit's window."""

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
    """plant_a (1-minute grid, 15-minute cycles) as plant_r with two reactors and ``readings``."""
    doc = load_plants()["plant_a"].model_dump(mode="json", exclude_none=True)
    doc.update(plant_id="plant_r", machines=["R1", "R2"])
    doc["streams"]["readings"] = readings
    return PlantConfig.model_validate(doc)


def _readings(batch: dict[str, Any] | None, path: str = "{date}/batches/*.csv") -> dict[str, Any]:
    return {
        "format": "csv",
        "path": path,
        "timestamp": {
            "field": "start" if batch and "elapsed_seconds" in batch else "Zeit",
            "kind": "utc",
        },
        "machine": {"field": "Reaktor"},
        "layout": "wide",
        **({"batch": batch} if batch else {}),
        "quantities": {
            "temperature": {"field": "T", "unit": "degC"},
            "pressure": {"field": "P", "unit": "bar"},
        },
    }


@pytest.mark.parametrize(
    "batch",
    [
        {"from_filename": r"(?P<batch>[^/]+)\.csv$", "elapsed_seconds": "t_s"},
        {"field": "Charge"},
    ],
    ids=["elapsed", "absolute"],
)
def test_a_file_per_unit_holds_the_units_readings_of_its_machine(
    tmp_path: Path, batch: dict[str, Any]
) -> None:
    truth = simulate(
        tmp_path / "b", days=1, seed=3, start=DAY, plants={"plant_r": _plant(_readings(batch))}
    )
    simulate(
        tmp_path / "w",
        days=1,
        seed=3,
        start=DAY,
        plants={"plant_r": _plant(_readings(None, "{date}/w.csv"))},
    )
    root = tmp_path / "b" / "plant_r" / DAY.isoformat()
    units = pd.read_csv(root / "auftraege.csv", dtype=str)
    files = {f.stem: f for f in (root / "batches").glob("*.csv")}
    assert sorted(files) == sorted(units["Auftrag"])  # one file per unit, named by its id
    wide = pd.read_csv(tmp_path / "w" / "plant_r" / DAY.isoformat() / "w.csv")
    wide["Zeit"] = pd.to_datetime(wide["Zeit"])
    minute = wide.set_index(["Reaktor", "Zeit"])
    total = 0
    for u in units.sample(10, random_state=1).itertuples():
        df = pd.read_csv(files[u.Auftrag], dtype=str)
        assert len(df) == 15 and set(df["Reaktor"]) == {u.Maschine}  # 15 minutes at 1 a minute
        if "elapsed_seconds" in batch:
            assert list(df.columns) == ["start", "Reaktor", "t_s", "T", "P"]
            start = pd.Timestamp(u.Start).tz_localize("Europe/Berlin").tz_convert("UTC")
            assert set(pd.to_datetime(df["start"])) == {start}
            assert df["t_s"].astype(int).tolist() == [60 * i for i in range(15)]
            times = pd.to_datetime(df["start"]) + pd.to_timedelta(df["t_s"].astype(int), "s")
        else:
            assert list(df.columns) == ["Zeit", "Reaktor", "Charge", "T", "P"]
            assert set(df["Charge"]) == {u.Auftrag}
            times = pd.to_datetime(df["Zeit"])
        for t, p, temp in zip(times, df["P"].astype(float), df["T"].astype(float), strict=True):
            assert (p, temp) == tuple(minute.loc[(u.Maschine, t), ["P", "T"]])
    for f in files.values():
        total += sum(1 for _ in f.open()) - 1
    counts = truth["counts"]["plant_r"]["per_day"][DAY.isoformat()]
    assert counts["reading_rows"] == total == 2 * 1440 and counts["reading_values"] == 2 * total


def test_a_batch_path_without_a_place_for_the_id_is_refused(tmp_path: Path) -> None:
    plant = _plant(_readings({"field": "Charge"}, "{date}/batches.csv"))
    with pytest.raises(ValueError, match="needs a '\\*' where the simulator writes each batch"):
        simulate(tmp_path, days=1, seed=3, start=DAY, plants={"plant_r": plant})
