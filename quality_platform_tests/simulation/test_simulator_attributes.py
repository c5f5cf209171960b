"""The simulator writes a unit attributes file for a plant whose config declares the stream: one
record per unit, each declared quantity in the plant's unit label, inside the quantity's range,
the same values however many days are simulated; a plant without the stream gets none."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from quality_platform.config import PlantConfig, load_plants
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform.units import convert

DAY = dt.date(2026, 3, 16)


def _plant(paths: Paths, many_days: bool) -> PlantConfig:
    doc = yaml.safe_load((paths.plants_dir / "plant_a.yaml").read_text())
    doc.update(plant_id="press_s", machines=["S-M01", "S-M02"])
    doc["quantities"] = {"api_d50": {"unit": "um", "min": 1, "max": 500, "description": "d50"}}
    doc["streams"]["attributes"] = {
        "format": "jsonl",
        "path": "rohstoffe.jsonl" if many_days else "{date}/rohstoffe.jsonl",
        "fields": {"unit_id": "batch"},
        "values": {
            "api_d50": {"field": "d50", "unit": "mm"},
            "material_moisture": {"field": "lod", "unit": "%"},
        },
    }
    if many_days:
        doc["streams"]["units"]["path"] = "auftraege.csv"
        doc["streams"]["inspections"]["path"] = "pruefung_*.csv"
    (paths.plants_dir / "press_s.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    return load_plants(paths)["press_s"]


def _read(f: Path) -> pd.DataFrame:
    return pd.DataFrame([json.loads(x) for x in f.read_text().splitlines()])


@pytest.mark.parametrize("many_days", [False, True])
def test_an_attributes_file_holds_one_record_per_unit_in_the_declared_units(
    qp_env: Paths, tmp_path: Path, many_days: bool
) -> None:
    plant = _plant(qp_env, many_days)
    out = tmp_path / "landing"
    truth = simulate(out, days=2, seed=1, start=DAY, plants={"press_s": plant})
    files = [f for f in truth["plants"]["press_s"]["files"] if "rohstoffe" in f]
    assert files == (
        ["press_s/rohstoffe.jsonl"]
        if many_days
        else [
            f"press_s/{DAY}/rohstoffe.jsonl",
            f"press_s/{DAY + dt.timedelta(days=1)}/rohstoffe.jsonl",
        ]
    )
    att = pd.concat([_read(out / f) for f in files], ignore_index=True)
    units = pd.concat(
        [pd.read_csv(f, dtype=str) for f in sorted((out / "press_s").rglob("auftraege.csv"))]
    )
    assert sorted(att["batch"]) == sorted(units["Auftrag"])  # one record per unit
    assert list(att.columns) == ["batch", "d50", "lod"]
    d50_um = convert(att["d50"].to_numpy(float), "mm", "um")
    assert ((d50_um >= 1) & (d50_um <= 500)).all() and att["d50"].nunique() > len(att) // 2
    assert ((att["lod"] >= 0) & (att["lod"] <= 100)).all()
    # a shorter simulation starts with the same values
    short = tmp_path / "short"
    simulate(short, days=1, seed=1, start=DAY, plants={"press_s": plant})
    first = _read(
        short / "press_s" / ("rohstoffe.jsonl" if many_days else f"{DAY}/rohstoffe.jsonl")
    )
    merged = first.merge(att, on="batch", suffixes=("", "_long"))
    assert len(merged) == len(first) and np.array_equal(merged["d50"], merged["d50_long"])


def test_a_plant_without_the_stream_gets_no_attributes_file(qp_env: Paths, tmp_path: Path) -> None:
    a = load_plants(qp_env)["plant_a"]
    truth = simulate(tmp_path, days=1, seed=1, start=DAY, plants={"plant_a": a})
    assert not any("rohstoffe" in f for f in truth["plants"]["plant_a"]["files"])
