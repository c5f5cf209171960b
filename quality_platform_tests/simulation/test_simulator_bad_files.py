"""The bad_files scenario: every listed file exists and is malformed exactly as stated."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from quality_platform.simulation import simulate

from .helpers import all_files

HEADER = [
    "Zeitstempel",
    "Maschine",
    "Temperatur [°C]",
    "Druck [bar]",
    "Materialfeuchte [%]",
    "Vibration [mm/s]",
]
EXPECTED = [
    ("plant_a", "2026-03-17", "plant_a/2026-03-17/sensoren.csv", "truncated_row"),
    ("plant_a", "2026-03-18", "plant_a/2026-03-18/sensoren.csv", "wrong_delimiter"),
    ("plant_a", "2026-03-19", "plant_a/2026-03-19/sensoren.csv", "not_a_number"),
    ("plant_a", "2026-03-20", "plant_a/2026-03-20/sensoren.csv", "unknown_column"),
    ("plant_a", "2026-03-21", "plant_a/2026-03-21/auftraege.csv", "missing_required_column"),
    ("plant_a", "2026-03-22", "plant_a/2026-03-22/sensoren.csv", "unit_label_mismatch"),
    ("plant_a", "2026-03-23", "plant_a/2026-03-23/sensoren.csv", "encoding"),
    ("plant_b", "2026-03-17", "plant_b/2026-03-17/readings.parquet", "duplicate"),
    ("plant_b", "2026-03-18", "plant_b/2026-03-18/readings.parquet", "timestamp_in_future"),
    ("plant_b", "2026-03-19", "plant_b/2026-03-19/readings.parquet", "out_of_range"),
    ("plant_b", "2026-03-19", "plant_b/2026-03-19/readings.parquet", "missing_value"),
    ("plant_b", "2026-03-20", "plant_b/2026-03-20/readings.parquet", "unit_label_mismatch"),
    ("plant_c", "2026-03-17", "plant_c/2026-03-17/batches.jsonl", "invalid_json"),
    ("plant_c", "2026-03-18", "plant_c/2026-03-18/inspections_2026-03-18-late.jsonl", "empty_file"),
    ("plant_c", "2026-03-19", "plant_c/2026-03-19/batches.jsonl", "missing_value"),
]


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, stable8) -> tuple[Path, dict, Path]:
    root = tmp_path_factory.mktemp("bad_files")
    return root, simulate(root, days=8, scenario="bad_files"), stable8[0]


def _entries(truth: dict, rule: str, plant: str) -> dict:
    (entry,) = [b for b in truth["bad_files"] if b["expected_rule"] == rule and b["plant"] == plant]
    return entry


def test_listing(bad) -> None:
    root, truth, _ = bad
    got = [(b["plant"], b["date"], b["file"], b["expected_rule"]) for b in truth["bad_files"]]
    assert got == EXPECTED
    assert truth["bad_files_skipped"] == []
    for b in truth["bad_files"]:
        assert (root / b["file"]).is_file()
        assert b["n_rows"] == len(b["rows"])
    incidents = truth["expected_incidents"]
    assert [
        (i["type"], i["plant"], i["from_date"], i["file"], i["expected_rule"]) for i in incidents
    ] == [("bad_file", *e) for e in EXPECTED]


def test_other_files_are_the_stable_ones(bad) -> None:
    root, truth, stable_root = bad
    bad_names = {b["file"] for b in truth["bad_files"]}
    files, stable = all_files(root), all_files(stable_root)
    assert set(files) - set(stable) == {"plant_c/2026-03-18/inspections_2026-03-18-late.jsonl"}
    for name, data in stable.items():
        if name != "truth.json" and name not in bad_names:
            assert files[name] == data, name


def test_truncated_row(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "truncated_row", "plant_a")
    raw = (root / e["file"]).read_bytes()
    assert not raw.endswith(b"\n")
    lines = raw.decode("utf-8").split("\n")
    assert e["rows"] == [len(lines)] == [17281]
    assert len(lines[-1].split(",")) < len(HEADER)
    assert all(len(x.split(",")) == len(HEADER) for x in lines[:-1])


def test_wrong_delimiter(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "wrong_delimiter", "plant_a")
    text = (root / e["file"]).read_text(encoding="utf-8")
    assert text.splitlines()[0] == ";".join(HEADER)
    assert "," not in text
    assert pd.read_csv(io.StringIO(text)).shape[1] == 1  # one column with the configured ','


def test_decimal_comma(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "not_a_number", "plant_a")
    text = (root / e["file"]).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == HEADER
    assert e["rows"] == list(range(2, len(rows) + 1))
    assert all(len(r) == len(HEADER) and all("," in v for v in r[2:]) for r in rows[1:])
    assert text.splitlines()[1].count('"') == 8
    df = pd.read_csv(io.StringIO(text))
    assert all(df[c].dtype == object or str(df[c].dtype) == "str" for c in HEADER[2:])


def test_unknown_column(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "unknown_column", "plant_a")
    df = pd.read_csv(root / e["file"], keep_default_na=False)
    assert list(df.columns) == [*HEADER, "Kommentar"] and e["column"] == "Kommentar"
    assert df["Temperatur [°C]"].between(180, 220).all()
    assert df["Kommentar"].str.len().max() > 0


def test_missing_required_column(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "missing_required_column", "plant_a")
    df = pd.read_csv(root / e["file"])
    assert "Auftrag" not in df.columns and e["column"] == "Auftrag"
    assert list(df.columns) == [
        "Linie",
        "Maschine",
        "Start",
        "Ende",
        "Produkt",
        "Charge",
        "Lieferant",
        "Werker",
    ]
    assert len(df) == 96 * 12


def test_header_unit_label(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "unit_label_mismatch", "plant_a")
    df = pd.read_csv(root / e["file"])
    assert list(df.columns)[2] == "Temperatur [°F]" and e["rows"] == [1]
    assert df["Temperatur [°F]"].between(180, 220).all()  # values still in degC


def test_encoding(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "encoding", "plant_a")
    lines = (root / e["file"]).read_bytes().split(b"\n")
    bad_lines = []
    for i, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.append(i)
            assert line.split(b",")[1][:-1] in {b"A-M0", b"A-M1"}
            assert line.split(b",")[1].endswith(b"\xe9")
    assert bad_lines == e["rows"] and len(bad_lines) == 20


def test_duplicates(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "duplicate", "plant_b")
    df = pq.read_table(root / e["file"]).to_pandas()
    n = 1440 * 10 * 4
    assert len(df) == n + 500 and e["rows"] == list(range(n + 1, n + 501))
    dup = df.iloc[n:].reset_index(drop=True)
    orig = df.iloc[np.asarray(e["duplicate_of_rows"]) - 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(dup, orig)
    assert df.duplicated().sum() == 500


def test_future_timestamps(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "timestamp_in_future", "plant_b")
    df = pq.read_table(root / e["file"]).to_pandas()
    future = np.flatnonzero(df["ts"].dt.year == 2099) + 1
    assert future.tolist() == e["rows"] and len(future) == 100


def test_extreme_values_and_nan_storm(bad) -> None:
    root, truth, _ = bad
    big = _entries(truth, "out_of_range", "plant_b")
    nan = _entries(truth, "missing_value", "plant_b")
    assert big["file"] == nan["file"]
    values = pq.read_table(root / big["file"]).column("value").to_numpy()
    assert (np.flatnonzero(values == 1e308) + 1).tolist() == big["rows"] and len(big["rows"]) == 50
    assert (np.flatnonzero(np.isnan(values)) + 1).tolist() == nan["rows"]
    assert len(nan["rows"]) == 2000


def test_wrong_uom(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "unit_label_mismatch", "plant_b")
    df = pq.read_table(root / e["file"]).to_pandas()
    wrong = np.flatnonzero((df["signal"] == "TEMP") & (df["uom"] == "psi")) + 1
    assert wrong.tolist() == e["rows"] and len(wrong) == 1440
    assert set(df.iloc[wrong - 1]["asset_tag"]) == {e["machine"]}
    assert df.iloc[wrong - 1]["value"].between(350, 430).all()  # still degF values


def test_invalid_json(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "invalid_json", "plant_c")
    lines = (root / e["file"]).read_text(encoding="utf-8").splitlines()
    failing = []
    for i, line in enumerate(lines, start=1):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            failing.append(i)
    assert failing == e["rows"] and len(lines) == 48 * 11


def test_empty_file(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "empty_file", "plant_c")
    path = root / e["file"]
    assert path.stat().st_size == 0
    assert path in set(path.parent.glob("inspections_*.jsonl"))


def test_null_temperature(bad) -> None:
    root, truth, _ = bad
    e = _entries(truth, "missing_value", "plant_c")
    lines = (root / e["file"]).read_text(encoding="utf-8").splitlines()
    records = [json.loads(x) for x in lines]
    null_lines = [
        i for i, r in enumerate(records, start=1) if any(x["temp_K"] is None for x in r["readings"])
    ]
    assert null_lines == e["rows"]
    rec = records[e["rows"][0] - 1]
    assert rec["machine"] == e["machine"] and rec["batch_id"] == e["unit_id"]
    assert all(x["temp_K"] is None for x in rec["readings"]) and len(rec["readings"]) == 30
    assert all(x["press_kPa"] is not None for x in rec["readings"])


def test_short_run_skips_cases(tmp_path: Path) -> None:
    truth = simulate(tmp_path, days=3, scenario="bad_files")
    dates = {b["date"] for b in truth["bad_files"]}
    assert dates == {"2026-03-17", "2026-03-18"}
    skipped = {s["case"] for s in truth["bad_files_skipped"]}
    assert "csv_decimal_comma" in skipped and "jsonl_null_temperature" in skipped
    assert "csv_truncated_last_line" not in skipped
    assert all("outside" in s["reason"] for s in truth["bad_files_skipped"])
    assert len(truth["bad_files"]) == 6 and len(truth["bad_files_skipped"]) == 8
