"""The bad_files scenario: every malformed file gets a clear message naming file, row and rule;
good rows and other plants keep flowing; received = accepted + quarantined everywhere."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from quality_platform.config import load_plants
from quality_platform.defs.ingest.checks import reconciliation_table
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform.warehouse import connect
from quality_platform_tests.conftest import land_and_standardize, make_installation

START, DAYS = dt.date(2026, 3, 16), 8
SIMULATED = ("plant_a", "plant_b", "plant_c")


@pytest.fixture(scope="module")
def ingested(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Paths, dict, dict[str, pd.DataFrame]]:
    paths = make_installation(tmp_path_factory.mktemp("bad"))
    truth = simulate(paths.landing_dir, days=DAYS, seed=11, scenario="bad_files", start=START)
    plants = load_plants(paths)
    dates = [START + dt.timedelta(days=i) for i in range(DAYS)]
    quarantine = {}
    for pid in SIMULATED:
        quarantine[pid] = land_and_standardize(paths, plants[pid], dates).quarantine
    return paths, truth, quarantine


def _cases() -> list[str]:
    return [
        "csv_truncated_last_line",
        "csv_semicolon_delimiter",
        "csv_decimal_comma",
        "csv_extra_column",
        "csv_units_without_id_column",
        "csv_header_unit_label",
        "csv_latin1_bytes",
        "parquet_duplicate_rows",
        "parquet_future_timestamps",
        "parquet_extreme_values",
        "parquet_nan_storm",
        "parquet_wrong_uom",
        "jsonl_truncated_line",
        "empty_inspections_file",
        "jsonl_null_temperature",
    ]


def test_scenario_has_at_least_ten_malformed_files(ingested) -> None:
    _, truth, _ = ingested
    files = {b["file"] for b in truth["bad_files"]}
    assert len(files) >= 10
    assert {b["case"] for b in truth["bad_files"]} == set(_cases())


@pytest.mark.parametrize("case", _cases())
def test_each_bad_file_is_reported_with_file_row_and_rule(ingested, case: str) -> None:
    _, truth, quarantine = ingested
    (b,) = [x for x in truth["bad_files"] if x["case"] == case]
    rel = b["file"].split("/", 1)[1]
    q = quarantine[b["plant"]]
    hits = q[(q["source_file"] == rel) & (q["rule"] == b["expected_rule"])]
    assert not hits.empty, (
        f"{case}: rules found {sorted(q[q['source_file'] == rel]['rule'].unique())}"
    )
    for m, row in zip(hits["message"], hits["source_row"], strict=True):
        assert m.startswith(rel) and f"[{b['expected_rule']}]" in m
        if row:
            assert f"row {row}:" in m
    if b.get("rows") and b["expected_rule"] not in (
        "wrong_delimiter",
        "unit_label_mismatch",
        "missing_required_column",
        "not_a_number",
    ):
        assert set(b["rows"]) <= set(hits["source_row"])


def test_counts_reconcile_and_good_data_flows(ingested) -> None:
    paths, truth, _ = ingested
    plants = load_plants(paths)
    keys = [(p, START + dt.timedelta(days=i)) for p in SIMULATED for i in range(DAYS)]
    with connect(paths.warehouse_path, read_only=True) as con:
        rec = reconciliation_table(con, keys, plants)
        per_plant = con.sql(
            "SELECT plant, count(*) AS n FROM standard.sensor_readings GROUP BY plant"
        ).df()
        per_day = con.sql(
            "SELECT plant, partition_date, count(*) AS n FROM standard.sensor_readings GROUP BY ALL"
        ).df()
    assert (rec["difference"] == 0).all(), rec[rec["difference"] != 0]
    assert set(per_plant["plant"]) == set(SIMULATED)
    # A day with one bad file still delivers its other streams, and every plant has every other day.
    assert (
        len(per_day) >= len(keys) - 2
    )  # wrong delimiter and decimal commas empty plant_a's readings of 2 days
    # Nothing lost: on every plant-day whose readings file is intact, what arrived is exactly what
    # the simulator wrote, and all of it is accepted (stable scenario underneath).
    bad_reading_days = {
        (b["plant"], b["date"])
        for b in truth["bad_files"]
        if b["file"].rsplit("/", 1)[-1].startswith(("sensoren", "readings", "batches"))
    }
    r = rec[rec["stream"] == "readings"]
    checked = 0
    for row in r.itertuples():
        day = row.partition_date.date().isoformat()
        if (row.plant, day) in bad_reading_days:
            continue
        assert row.received == truth["counts"][row.plant]["per_day"][day]["reading_values"]
        assert row.accepted == row.received
        checked += 1
    assert checked >= len(r) - len(bad_reading_days)


def test_quarantine_never_holds_personal_data(ingested) -> None:
    paths, _, quarantine = ingested
    raw_ids = set()
    for f in (paths.landing_dir / "plant_a").glob("*/auftraege.csv"):
        raw_ids |= set(
            pd.read_csv(f, dtype=str, on_bad_lines="skip")
            .get("Werker", pd.Series(dtype=str))
            .dropna()
        )
    text = json.dumps({p: q.astype(str).to_dict("records") for p, q in quarantine.items()})
    assert raw_ids and not any(r in text for r in raw_ids)
