"""Property test: for any small seed/days/start, the files agree with the truth counts."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quality_platform.config import load_plants
from quality_platform.simulation import simulate

PLANTS = load_plants()


def _csv_rows(path: Path) -> int:
    return path.read_bytes().count(b"\n") - 1


def _file_counts(root: Path) -> dict[str, dict[str, int]]:
    out = {
        p: dict.fromkeys(("reading_rows", "units", "inspected_units", "defects"), 0)
        for p in ("plant_a", "plant_b", "plant_c")
    }
    for d in (root / "plant_a").iterdir():
        c = out["plant_a"]
        c["reading_rows"] += _csv_rows(d / "sensoren.csv")
        c["units"] += _csv_rows(d / "auftraege.csv")
        for f in d.glob("pruefung_*.csv"):
            lines = f.read_text().splitlines()[1:]
            c["inspected_units"] += len(lines)
            c["defects"] += sum(x.endswith((",1,0", ",0,1")) for x in lines)
    for d in (root / "plant_b").iterdir():
        c = out["plant_b"]
        c["reading_rows"] += pq.read_metadata(d / "readings.parquet").num_rows // 4
        c["units"] += pq.read_metadata(d / "production.parquet").num_rows
        for f in d.glob("qc_*.parquet"):
            disp = pq.read_table(f).column("disposition").to_pylist()
            c["inspected_units"] += len(disp)
            c["defects"] += sum(x != "PASS" for x in disp)
    for d in (root / "plant_c").iterdir():
        c = out["plant_c"]
        for line in (d / "batches.jsonl").read_text().splitlines():
            c["units"] += 1
            c["reading_rows"] += len(json.loads(line)["readings"])
        for f in d.glob("inspections_*.jsonl"):
            res = [json.loads(x)["result"] for x in f.read_text().splitlines()]
            c["inspected_units"] += len(res)
            c["defects"] += sum(x != "ok" for x in res)
    return out


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    days=st.integers(min_value=1, max_value=3),
    start=st.dates(min_value=dt.date(2026, 1, 1), max_value=dt.date(2027, 12, 31)),
    scenario=st.sampled_from(["stable", "missing_burst", "stuck_sensor"]),
)
def test_truth_counts_match_files(seed: int, days: int, start: dt.date, scenario: str) -> None:
    if scenario != "stable" and days < 2:
        days = 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        truth = simulate(root, days=days, seed=seed, start=start, scenario=scenario, plants=PLANTS)
        files = _file_counts(root)
        for plant, counts in truth["counts"].items():
            assert files[plant]["reading_rows"] == counts["reading_rows"], plant
            assert counts["reading_values"] == 4 * counts["reading_rows"]
            assert files[plant]["units"] == counts["units"], plant
            assert files[plant]["inspected_units"] == counts["inspected_units"], plant
            assert files[plant]["defects"] == counts["rework"] + counts["scrap"], plant
            n_days = len(list((root / plant).iterdir()))
            assert n_days == days == len(counts["per_day"])
            latency = truth["label_latency_days"][plant]
            labelled = max(0, days - latency)
            assert sum(c["inspected_units"] > 0 for c in counts["per_day"].values()) == labelled
