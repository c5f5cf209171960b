"""The unit attributes stream on hand-made files: the raw layer (receipts, items per record, days
of a many-day file), every standardisation rule with its file, row, column and count, the
formats, and received = accepted + quarantined per file in the reconciliation check."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quality_platform.config import load_plants
from quality_platform.defs.ingest.checks import reconciliation_table
from quality_platform.ingest.readers import items_per_record, plant_streams, read_raw
from quality_platform.settings import Paths
from quality_platform_tests.conftest import land_and_standardize
from quality_platform_tests.test_onboarding import _new_plant

NOW = pd.Timestamp("2026-11-22 00:00", tz="UTC")
D1, D2 = dt.date(2026, 3, 16), dt.date(2026, 3, 17)
PLANT = "press_t"
UNITS_HEADER = "Auftrag,Linie,Maschine,Start,Ende,Produkt,Charge,Lieferant,Werker\n"


def _config(fmt: str = "csv", many_days: bool = False) -> Any:
    def edit(d: dict[str, Any]) -> None:
        d["quantities"] = {
            "api_d50": {"unit": "um", "min": 1, "max": 500, "description": "API d50."}
        }
        d["streams"]["attributes"] = {
            "format": fmt,
            "path": "rohstoffe." + fmt if many_days else "{date}/rohstoffe." + fmt,
            "fields": {"unit_id": "Auftrag"},
            "values": {
                "api_d50": {"field": "d50_mm", "unit": "mm"},
                "material_moisture": {"field": "Feuchte", "unit": "%"},
            },
        }
        if many_days:
            d["streams"]["units"]["path"] = "auftraege.csv"
            d["streams"]["inspections"]["path"] = "pruefung_*.csv"

    return edit


def _units(day: dt.date, ids: list[str]) -> str:
    rows = [
        f"{u},L1,A-M01,{day} {8 + i}:00:00,{day} {8 + i}:30:00,P1,LOT1,S1,W1"
        for i, u in enumerate(ids)
    ]
    return UNITS_HEADER + "".join(r + "\n" for r in rows)


def _write(paths: Paths, rel: str, text: str) -> None:
    f = paths.landing_dir / PLANT / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text, encoding="utf-8")


def _run(paths: Paths, days: list[dt.date]):
    return land_and_standardize(paths, load_plants(paths)[PLANT], days, NOW)


def _reconciliation(paths: Paths, days: list[dt.date]) -> pd.DataFrame:
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        t = reconciliation_table(con, [(PLANT, d) for d in days], load_plants(paths))
    finally:
        con.close()
    return t[t["stream"] == "attributes"]


def test_every_rule_is_quarantined_with_file_row_column_and_counts_reconcile(
    qp_env: Paths,
) -> None:
    _new_plant(qp_env, PLANT, _config())
    _write(qp_env, f"{D1}/auftraege.csv", _units(D1, ["U1", "U2", "U3", "U4", "U5", "U6"]))
    _write(
        qp_env,
        f"{D1}/rohstoffe.csv",
        "Auftrag,d50_mm,Feuchte\n"
        "U1,0.125,2.5\n"  # row 2: both accepted (125 um)
        "U9,0.1,2\n"  # row 3: unknown unit - both values
        ",0.1,2\n"  # row 4: no unit id - both values
        "U2,,2\n"  # row 5: missing value
        "U3,abc,1,5\n"  # row 6: a field too many: a parse issue (both values)
        "U3,0.2,1;5\n"  # row 7: not a number
        "U4,0.9,101\n"  # row 8: 900 um and 101 %: both out of range
        "U5,0.2,nan\n"  # row 9: missing value (as 'nan')
        "U1,0.3,3\n"  # row 10: U1 again: both duplicate (the first is kept)
        "U6,inf,4\n",  # row 11: not finite: out of range
    )
    res = _run(qp_env, [D1])
    att = res.attributes
    got = sorted(zip(att["unit_id"], att["quantity"], att["value"].round(9), strict=True))
    assert got == [
        ("U1", "api_d50", 125.0),
        ("U1", "material_moisture", 2.5),
        ("U2", "material_moisture", 2.0),
        ("U3", "api_d50", 200.0),
        ("U5", "api_d50", 200.0),
        ("U6", "material_moisture", 4.0),
    ]
    assert (
        set(att["unit"]) == {"um", "percent"}
        and (att["source_file"] == f"{D1}/rohstoffe.csv").all()
    )
    assert (att["partition_date"].dt.date == D1).all()
    q = res.quarantine
    q = q[q["stream"] == "attributes"]
    assert (q["source_file"] == f"{D1}/rohstoffe.csv").all()
    assert sorted(
        zip(q["source_row"], q["source_column"].fillna("-"), q["rule"], q["n_items"], strict=True)
    ) == [
        (3, "Auftrag", "unknown_unit", 2),
        (4, "Auftrag", "missing_value", 2),
        (5, "d50_mm", "missing_value", 1),
        (6, "-", "wrong_field_count", 2),
        (7, "Feuchte", "not_a_number", 1),
        (8, "Feuchte", "out_of_range", 1),
        (8, "d50_mm", "out_of_range", 1),
        (9, "Feuchte", "missing_value", 1),
        (10, "Feuchte", "duplicate", 1),
        (10, "d50_mm", "duplicate", 1),
        (11, "d50_mm", "out_of_range", 1),
    ]
    dup = q[q["rule"] == "duplicate"]["message"].iloc[0]
    assert "rohstoffe.csv row 10" in dup and "'U1'" in dup
    # received = accepted + quarantined: 10 records x 2 values
    rec = _reconciliation(qp_env, [D1])
    assert rec[["received", "accepted", "quarantined", "difference"]].values.tolist() == [
        [20, 6, 14, 0]
    ]


def test_raw_layer_counts_two_items_per_record_and_has_receipts(qp_env: Paths) -> None:
    plant = _new_plant(qp_env, PLANT, _config())
    assert plant_streams(plant)[-1] == "attributes" and items_per_record(plant, "attributes") == 2
    assert plant_streams(load_plants(qp_env)["plant_a"]) == ("readings", "units", "inspections")
    _write(qp_env, f"{D1}/rohstoffe.csv", "Auftrag,d50_mm,Feuchte\nU1,0.1,2\nU2,0.2,3\n")
    raw = read_raw(plant, "attributes", [D1], qp_env)
    assert raw.records == 2 and raw.issues == []
    (r,) = raw.receipts
    assert (r["source_file"], r["records"], r["items_per_record"], r["stream"]) == (
        f"{D1}/rohstoffe.csv",
        2,
        2,
        "attributes",
    )
    assert json.loads(r["header"]) == ["Auftrag", "d50_mm", "Feuchte"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_other_formats_give_the_same_values(qp_env: Paths, fmt: str) -> None:
    _new_plant(qp_env, PLANT, _config(fmt))
    _write(qp_env, f"{D1}/auftraege.csv", _units(D1, ["U1", "U2"]))
    rows = [{"Auftrag": "U1", "d50_mm": 0.25, "Feuchte": 1.5}, {"Auftrag": "U2", "d50_mm": "x"}]
    f = qp_env.landing_dir / PLANT / f"{D1}/rohstoffe.{fmt}"
    if fmt == "jsonl":
        f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        pq.write_table(
            pa.table({"Auftrag": ["U1", "U2"], "d50_mm": [0.25, None], "Feuchte": [1.5, 2.0]}), f
        )
    res = _run(qp_env, [D1])
    got = sorted(
        zip(
            res.attributes["unit_id"],
            res.attributes["quantity"],
            res.attributes["value"],
            strict=True,
        )
    )
    want = [("U1", "api_d50", 250.0), ("U1", "material_moisture", 1.5)]
    if fmt == "parquet":
        want.append(("U2", "material_moisture", 2.0))
    assert got == want
    q = res.quarantine[res.quarantine["stream"] == "attributes"]
    held = sorted(zip(q["source_row"], q["source_column"], q["rule"], strict=True))
    assert held == (
        [(2, "Feuchte", "missing_value"), (2, "d50_mm", "not_a_number")]
        if fmt == "jsonl"
        else [(2, "d50_mm", "missing_value")]
    )
    assert _reconciliation(qp_env, [D1])["difference"].tolist() == [0]


def test_a_many_day_file_puts_each_record_on_its_units_day(qp_env: Paths) -> None:
    """Placed as inspections are: by the unit's day in the units file; a unit the units file does
    not have is held back once, under the first day the file's records fall on."""
    _new_plant(qp_env, PLANT, _config(many_days=True))
    units = _units(D1, ["U1", "U2"]) + _units(D2, ["U3"]).split("\n", 1)[1]
    _write(qp_env, "auftraege.csv", units)
    _write(
        qp_env,
        "rohstoffe.csv",
        "Auftrag,d50_mm,Feuchte\nU3,0.3,3\nU1,0.1,1\nU7,0.1,1\nU2,0.2,2\n",
    )
    for d in (D1, D2):  # one day per run, as the daily schedule lands it
        res = _run(qp_env, [d])
        placed = dict(
            zip(res.attributes["unit_id"], res.attributes["partition_date"].dt.date, strict=True)
        )
        assert placed == ({"U1": D1, "U2": D1} if d == D1 else {"U3": D2})
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        held = con.sql(
            "SELECT partition_date, source_row, source_column, rule, n_items FROM "
            f"standard.quarantine WHERE plant = '{PLANT}' AND stream = 'attributes'"
        ).fetchall()
    finally:
        con.close()
    assert held == [(D1, 4, "Auftrag", "unknown_unit", 2)]
    rec = _reconciliation(qp_env, [D1, D2])
    assert rec[["received", "accepted", "quarantined", "difference"]].values.tolist() == [
        [6, 4, 2, 0],
        [2, 2, 0, 0],
    ]


def test_a_value_column_the_file_lacks_holds_back_its_records_naming_it(qp_env: Paths) -> None:
    _new_plant(qp_env, PLANT, _config())
    _write(qp_env, f"{D1}/auftraege.csv", _units(D1, ["U1", "U2"]))
    _write(qp_env, f"{D1}/rohstoffe.csv", "Auftrag,d50_mm\nU1,0.1\nU2,0.2\n")
    res = _run(qp_env, [D1])
    assert res.attributes.empty
    q = res.quarantine[res.quarantine["stream"] == "attributes"]
    assert q[["rule", "n_items", "scope"]].values.tolist() == [
        ["missing_required_column", 4, "file"]
    ]
    assert "'Feuchte'" in q["message"].iloc[0]
    assert _reconciliation(qp_env, [D1])["difference"].tolist() == [0]
