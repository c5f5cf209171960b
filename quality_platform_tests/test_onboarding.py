"""Onboarding a plant is one config file: a new plant in Tokyo time, a plant whose CSV exports
have no header row and no legacy KPIs, one labelled by lab thresholds, one delivering one file
for many days, one exporting one row per production cycle with a column per sample (two
quantities at different sample rates) and one delivering one file per batch are, with no code
change, simulated, landed, standardised and gated end to end."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from quality_platform.config import PlantConfig, load_plants
from quality_platform.definitions import build_definitions
from quality_platform.runner import RunOutcome, backfill
from quality_platform.settings import Paths
from quality_platform.simulation import simulate


def _new_plant(qp_env: Paths, plant_id: str, edit: Callable[[dict[str, Any]], None]) -> PlantConfig:
    """A new plant's YAML in data/plants/: plant_a's, changed by ``edit`` (the only step a user
    takes), loaded as the platform loads it."""
    doc = yaml.safe_load((qp_env.plants_dir / "plant_a.yaml").read_text())
    doc["plant_id"] = plant_id
    edit(doc)
    (qp_env.plants_dir / f"{plant_id}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    return load_plants(qp_env)[plant_id]


def _onboard(
    qp_env: Paths, tmp_path: Path, plant: str, first: dt.date, last: dt.date
) -> list[RunOutcome]:
    """Land, then standardise + KPIs, the plant's days through the code location's runs; both
    runs must succeed."""
    defs = build_definitions(qp_env)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        outcomes = backfill(defs, instance, plant, first, last)
    assert [o.success for o in outcomes] == [True, True], outcomes
    return outcomes


def test_new_plant_from_config_runs_end_to_end(qp_env: Paths, tmp_path: Path) -> None:
    plant = _new_plant(
        qp_env,
        "plant_d",
        lambda d: d.update(
            name="Plant D (new)",
            timezone="Asia/Tokyo",
            machines=[f"D-M{i:02d}" for i in range(1, 4)],
        ),
    )
    day = dt.date(2026, 3, 16)
    simulate(qp_env.landing_dir, days=2, seed=5, start=day, plants={"plant_d": plant})
    outcomes = _onboard(qp_env, tmp_path, "plant_d", day, day)
    assert outcomes[1].failed_checks == []
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        n, machines = con.sql(
            "SELECT count(*), count(DISTINCT machine_id) FROM standard.sensor_readings "
            "WHERE plant = 'plant_d'"
        ).fetchall()[0]
        q = con.sql("SELECT count(*) FROM standard.quarantine WHERE plant = 'plant_d'").fetchall()[
            0
        ][0]
        first = con.sql(
            "SELECT min(ts_utc) FROM standard.sensor_readings WHERE plant = 'plant_d'"
        ).fetchall()[0][0]
    finally:
        con.close()
    assert machines == 3 and n == 3 * 1440 * 4 and q == 0
    assert str(first) == "2026-03-15 15:00:00"  # local midnight in Tokyo (UTC+9)


def _written_columns(plant: PlantConfig) -> dict[str, list[str]]:
    """The fields plant_a's CSV streams carry, in file order, as its config declares them (what a
    header-less export of the same plant is configured with)."""
    rs, us, ins = plant.streams.readings, plant.streams.units, plant.streams.inspections
    quantities = [
        f"{m.field} [{m.unit}]" if rs.header_units else m.field for m in rs.quantities.values()
    ]
    return {
        "readings": [rs.timestamp.field, rs.machine.field, *quantities],
        "units": list(us.fields.values()),
        "inspections": [*ins.fields.values(), *(ins.outcome.flags or {}).values()],
    }


def test_a_plant_without_header_rows_or_legacy_kpis_onboards_by_one_yaml(
    qp_env: Paths, tmp_path: Path
) -> None:
    columns = _written_columns(load_plants(qp_env)["plant_a"])

    def edit(d: dict[str, Any]) -> None:
        d.update(name="Plant H (headerless)", machines=["H-M01", "H-M02"], legacy_kpis=[])
        for stream, names in columns.items():
            d["streams"][stream]["csv"].update(header=False, columns=names)

    plant = _new_plant(qp_env, "plant_h", edit)
    day, days = dt.date(2026, 3, 16), 4
    simulate(qp_env.landing_dir, days=days, seed=5, start=day, plants={"plant_h": plant})
    first_file = qp_env.landing_dir / "plant_h" / day.isoformat() / "sensoren.csv"
    lines = first_file.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith(day.isoformat())  # no header row: the first line is a record
    lines[4] = lines[4].rsplit(",", 1)[0]  # row 5 loses its last field
    first_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    outcomes = _onboard(qp_env, tmp_path, "plant_h", day, day + dt.timedelta(days=days - 1))
    failed = [c for c in outcomes[1].failed_checks if "(ERROR)" in c]
    assert failed == [], outcomes[1].failed_checks
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        n = con.sql(
            "SELECT count(*) FROM standard.sensor_readings WHERE plant = 'plant_h'"
        ).fetchall()[0][0]
        q = con.sql(
            "SELECT source_file, source_row, rule, n_items FROM standard.quarantine "
            "WHERE plant = 'plant_h'"
        ).fetchall()
        units, labelled = con.sql(
            "SELECT count(*), count(defect) FROM standard.production_units WHERE plant = 'plant_h'"
        ).fetchall()[0]
        kpi_days = con.sql(
            "SELECT count(DISTINCT partition_date) FROM kpi.kpi_daily WHERE plant = 'plant_h'"
        ).fetchall()[0][0]
        legacy = con.sql(
            "SELECT count(*) FROM kpi.kpi_reconciliation WHERE plant = 'plant_h'"
        ).fetchall()[0][0]
    finally:
        con.close()
    # every value of every record, less the one record held back with its file and row
    assert n == days * 2 * 1440 * 4 - 4
    assert q == [(f"{day.isoformat()}/sensoren.csv", 5, "wrong_field_count", 4)]
    assert units > 0 and 0 < labelled < units  # inspections read and joined; the last days pending
    assert kpi_days == days and legacy == 0  # unified KPIs, and no legacy figures to reconcile


def test_a_plant_whose_labels_are_lab_thresholds_onboards_by_one_yaml(
    qp_env: Paths, tmp_path: Path
) -> None:
    """Labels from measured lab values by threshold rules (a tablet press: dissolution below 80 %
    is scrap, hardness above 12 kP rework), not from flags or a value list; a lab value that is
    not a number is held back with file, row and field, and every other unit's outcome is what
    the rules say about the values in the files."""
    rules = [
        {"field": "Aufloesung_pct", "below": 80, "then": "scrap"},
        {"field": "Haerte_kP", "above": 12, "then": "rework"},
    ]

    def edit(d: dict[str, Any]) -> None:
        d.update(name="Plant L (lab thresholds)", machines=["L-M01", "L-M02"])
        d["streams"]["inspections"]["outcome"] = {"rules": rules}

    plant = _new_plant(qp_env, "plant_l", edit)
    day, days = dt.date(2026, 3, 16), 4
    simulate(qp_env.landing_dir, days=days, seed=7, start=day, plants={"plant_l": plant})
    files = sorted((qp_env.landing_dir / "plant_l").rglob("pruefung_*.csv"))
    assert files
    lab = pd.concat([pd.read_csv(f) for f in files])
    assert set(lab.columns) >= {"Auftrag", "Pruefzeit", "Aufloesung_pct", "Haerte_kP"}
    bad_file = files[0]
    lines = bad_file.read_text(encoding="utf-8").splitlines()
    cols = lines[0].split(",")
    row = lines[3].split(",")
    bad_unit = row[cols.index("Auftrag")]
    row[cols.index("Aufloesung_pct")] = "n/a"
    lines[3] = ",".join(row)
    bad_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    _onboard(qp_env, tmp_path, "plant_l", day, day + dt.timedelta(days=days - 1))
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        got = con.sql(
            "SELECT unit_id, rework, scrap FROM standard.production_units "
            "WHERE plant = 'plant_l' AND defect IS NOT NULL"
        ).df()
        q = con.sql(
            "SELECT source_file, source_row, source_column, rule FROM standard.quarantine "
            "WHERE plant = 'plant_l'"
        ).fetchall()
    finally:
        con.close()
    rel = bad_file.relative_to(qp_env.landing_dir / "plant_l").as_posix()
    assert q == [(rel, 4, "Aufloesung_pct", "invalid_measurement")]
    lab = lab[lab["Auftrag"] != bad_unit]
    want = pd.DataFrame(
        {
            "unit_id": lab["Auftrag"],
            "scrap": lab["Aufloesung_pct"] < 80,
            "rework": lab["Haerte_kP"] > 12,
        }
    )
    merged = want.merge(got, on="unit_id", suffixes=("_want", "_got"))
    assert len(merged) == len(lab) == len(got)  # every other inspected unit, each once
    assert (merged["scrap_want"] == merged["scrap_got"].astype(bool)).all()
    assert (merged["rework_want"] == merged["rework_got"].astype(bool)).all()
    assert merged["scrap_got"].sum() > 0 and merged["rework_got"].sum() > 0


def test_a_plant_whose_labels_are_conditions_over_several_lab_fields_onboards_by_one_yaml(
    qp_env: Paths, tmp_path: Path
) -> None:
    """Outcome rules as conditions over several lab fields (a tablet out of its dissolution window,
    or soft for its dissolution; a source field named by an alias): every unit's rework/scrap is
    what the conditions say about the values in the delivered files."""
    thresholds = [
        {"field": "Aufloesung_pct", "below": 80, "then": "scrap"},
        {"field": "Haerte_kP", "above": 12, "then": "rework"},
    ]
    plant = _new_plant(
        qp_env,
        "plant_e",
        lambda d: (
            d.update(name="Plant E (lab conditions)", machines=["E-M01"]),
            d["streams"]["inspections"].update(outcome={"rules": thresholds}),
        ),
    )
    day, days = dt.date(2026, 3, 16), 4
    # the lab files (the simulator writes values for threshold rules; the plant's real rules are
    # conditions over the same fields)
    simulate(qp_env.landing_dir, days=days, seed=8, start=day, plants={"plant_e": plant})
    conditions = [
        {"expression": "d < 80 or d > 86", "fields": {"d": "Aufloesung_pct"}, "then": "scrap"},
        {
            "expression": "Haerte_kP > 12 and not d > 84",
            "fields": {"d": "Aufloesung_pct"},
            "then": "rework",
        },
        {"expression": "11 < Haerte_kP < 11.3", "then": "rework"},
    ]
    f = qp_env.plants_dir / "plant_e.yaml"
    doc = yaml.safe_load(f.read_text())
    doc["streams"]["inspections"]["outcome"] = {"rules": conditions}
    f.write_text(yaml.safe_dump(doc, allow_unicode=True))

    _onboard(qp_env, tmp_path, "plant_e", day, day + dt.timedelta(days=days - 1))
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        got = con.sql(
            "SELECT unit_id, rework, scrap FROM standard.production_units "
            "WHERE plant = 'plant_e' AND defect IS NOT NULL"
        ).df()
    finally:
        con.close()
    lab = pd.concat(
        pd.read_csv(p) for p in sorted((qp_env.landing_dir / "plant_e").rglob("pruefung_*.csv"))
    )
    d, h = lab["Aufloesung_pct"], lab["Haerte_kP"]
    scrap = (d < 80) | (d > 86)
    hard, window = (h > 12) & ~(d > 84), (h > 11) & (h < 11.3)
    want = pd.DataFrame({"unit_id": lab["Auftrag"], "scrap": scrap, "rework": hard | window})
    merged = want.merge(got, on="unit_id", suffixes=("_want", "_got"))
    assert len(merged) == len(lab) == len(got)
    assert (merged["scrap_want"] == merged["scrap_got"].astype(bool)).all()
    assert (merged["rework_want"] == merged["rework_got"].astype(bool)).all()
    # every condition decides some units, and 'not' and the chained comparison matter
    assert scrap.sum() > 0 and hard.sum() > 0 and window.sum() > 0
    assert ((h > 12) & (d > 84)).any() and ((h > 11.3) & (h <= 12)).any()


def test_a_plant_delivering_one_file_for_many_days_lands_every_record_once(
    qp_env: Paths, tmp_path: Path
) -> None:
    """A plant whose exports are one file for many days (readings and units; inspections one file
    per arrival day), landed one day per run as the daily schedule and the UI do: every record
    lands on its own local day exactly once (a reading by its local time, even in the hour before
    midnight; a unit by its start; an inspection on its unit's day), and the one record without a
    valid time and the one inspection of an unknown unit are each held back once, with file, row
    and field - not once per run."""

    def edit(d: dict[str, Any]) -> None:
        d.update(name="Plant M (many-day files)", machines=["M-M01", "M-M02"])
        for s in ("readings", "units", "inspections"):
            d["streams"][s]["path"] = d["streams"][s]["path"].replace("{date}/", "")

    plant = _new_plant(qp_env, "plant_m", edit)
    day, days = dt.date(2026, 3, 16), 4
    simulate(qp_env.landing_dir, days=days, seed=3, start=day, plants={"plant_m": plant})
    root = qp_env.landing_dir / "plant_m"
    readings = root / "sensoren.csv"
    lines = readings.read_text(encoding="utf-8").splitlines()
    bad_row = 2 * 1440 * 2 + 100  # a record of the third day (2 machines, 1 per minute)
    lines[bad_row] = "16.03.2026 25:00," + lines[bad_row].split(",", 1)[1]
    readings.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ins_file = sorted(root.glob("pruefung_*.csv"))[-1]
    ins = ins_file.read_text(encoding="utf-8").splitlines()
    cols = ins[0].split(",")
    row = ins[2].split(",")
    row[cols.index("Auftrag")] = "M-NOT-PRODUCED"
    ins[2] = ",".join(row)
    ins_file.write_text("\n".join(ins) + "\n", encoding="utf-8")
    assert sorted(p.name for p in root.iterdir()) == [
        "auftraege.csv",
        *sorted(p.name for p in root.glob("pruefung_*.csv")),
        "sensoren.csv",
    ]

    defs = build_definitions(qp_env)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        for i in range(days):
            d = day + dt.timedelta(days=i)
            assert [o.success for o in backfill(defs, instance, "plant_m", d, d)] == [True, True]
    files = {p.name: pd.read_csv(p, dtype=str) for p in root.iterdir()}
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        landed = con.sql(
            "SELECT source_file, sum(records), sum(rejected_records) FROM raw.receipts "
            "WHERE plant = 'plant_m' GROUP BY 1"
        ).fetchall()
        per_day = dict(
            con.sql(
                "SELECT partition_date, count(*) FROM standard.sensor_readings "
                "WHERE plant = 'plant_m' GROUP BY 1"
            ).fetchall()
        )
        units = con.sql(
            "SELECT unit_id, partition_date, defect FROM standard.production_units "
            "WHERE plant = 'plant_m'"
        ).df()
        q = con.sql(
            "SELECT partition_date, source_file, source_row, source_column, rule FROM "
            "standard.quarantine WHERE plant = 'plant_m' ORDER BY rule"
        ).fetchall()
    finally:
        con.close()
    # received = landed + held back, per file, over all four runs: nothing twice, nothing lost
    assert {f: (n, r) for f, n, r in landed} == {
        f: (
            len(df) - (f in ("sensoren.csv", ins_file.name)),
            int(f in ("sensoren.csv", ins_file.name)),
        )
        for f, df in files.items()
    }
    # each local day holds its own 2 machines x 1440 minutes x 4 quantities (less the bad record)
    assert per_day == {day + dt.timedelta(days=i): 2 * 1440 * 4 - 4 * (i == 2) for i in range(days)}
    want_days = pd.to_datetime(files["auftraege.csv"]["Start"]).dt.date
    assert len(units) == units["unit_id"].nunique() == len(files["auftraege.csv"])
    got_days = dict(
        zip(units["unit_id"], pd.to_datetime(units["partition_date"]).dt.date, strict=True)
    )
    assert got_days == dict(zip(files["auftraege.csv"]["Auftrag"], want_days, strict=True))
    inspected = sum(len(df) for f, df in files.items() if f.startswith("pruefung_")) - 1
    assert units["defect"].notna().sum() == inspected > 0
    assert q == [
        (day, "sensoren.csv", bad_row + 1, "Zeitstempel", "invalid_timestamp"),  # file lines
        # under the first day the file's records fall on (it holds day 2's inspections)
        (day + dt.timedelta(days=1), ins_file.name, 3, "Auftrag", "unknown_unit"),
    ]


def test_a_plant_exporting_one_row_per_cycle_at_two_sample_rates_onboards_by_one_yaml(
    qp_env: Paths, tmp_path: Path
) -> None:
    """A press whose export is one row per 15-minute production cycle: 90 temperature samples
    every 10 s and 450 pressure samples every 2 s (in bar, columns P_001 ... P_450) in the same
    row, declared by the array layout in its YAML alone. Every sample lands at cycle start +
    (i - 1) x its own interval with its value in canonical units; one bad sample is held back
    with file, row and column, and received = accepted + quarantined per file."""
    readings = {
        "format": "csv",
        "path": "{date}/zyklen.csv",
        "timestamp": {"field": "Zyklusstart", "kind": "local", "format": "%Y-%m-%d %H:%M:%S"},
        "machine": {"field": "Presse"},
        "layout": "array",
        "array": {"samples": {"temperature": 90, "pressure": 450}},
        "quantities": {
            "temperature": {"field": "T_{i}", "unit": "°C", "interval_seconds": 10},
            "pressure": {"field": "P_{i:03d}", "unit": "bar", "interval_seconds": 2},
        },
    }

    def edit(d: dict[str, Any]) -> None:
        # a cycle record every 15 minutes: what the completeness check expects
        d.update(
            name="Plant P (per-cycle arrays)",
            machines=["P-M01", "P-M02"],
            reading_interval_seconds=900,
        )
        d["streams"]["readings"] = readings

    plant = _new_plant(qp_env, "plant_p", edit)
    day, days = dt.date(2026, 3, 16), 2
    simulate(qp_env.landing_dir, days=days, seed=11, start=day, plants={"plant_p": plant})
    second = qp_env.landing_dir / "plant_p" / (day + dt.timedelta(days=1)).isoformat()
    lines = (second / "zyklen.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    row = lines[6].split(",")  # the file's row 7
    row[header.index("P_150")] = '"8,1"'  # a decimal comma
    lines[6] = ",".join(row)
    (second / "zyklen.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    first = pd.read_csv(qp_env.landing_dir / "plant_p" / day.isoformat() / "zyklen.csv")
    assert len(first) == 2 * 96 and len(first.columns) == 2 + 90 + 450  # 15-minute cycles

    outcomes = _onboard(qp_env, tmp_path, "plant_p", day, day + dt.timedelta(days=days - 1))
    failed = [c for c in outcomes[1].failed_checks if "(ERROR)" in c]
    assert failed == [], outcomes[1].failed_checks
    # 96 cycles a day with all their samples: complete (it expects cycles x samples, not seconds)
    assert not [c for c in outcomes[1].failed_checks if "completeness" in c]
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        counts = con.sql(
            "SELECT partition_date, quantity, count(*) FROM standard.sensor_readings "
            "WHERE plant = 'plant_p' GROUP BY ALL"
        ).fetchall()
        cycle = con.sql(
            "SELECT quantity, ts_utc, value FROM standard.sensor_readings WHERE plant = 'plant_p' "
            "AND source_file = '2026-03-16/zyklen.csv' AND source_row = 2 ORDER BY quantity, ts_utc"
        ).df()
        q = con.sql(
            "SELECT source_file, source_row, source_column, rule, n_items FROM standard.quarantine "
            "WHERE plant = 'plant_p'"
        ).fetchall()
        received = con.sql(
            "SELECT sum(records * items_per_record) FROM raw.receipts "
            "WHERE plant = 'plant_p' AND stream = 'readings'"
        ).fetchall()[0][0]
    finally:
        con.close()
    d1, d2 = day, day + dt.timedelta(days=1)
    assert sorted(counts) == [
        (d1, "pressure", 192 * 450),
        (d1, "temperature", 192 * 90),
        (d2, "pressure", 192 * 450 - 1),
        (d2, "temperature", 192 * 90),
    ]
    assert q == [(f"{d2.isoformat()}/zyklen.csv", 7, "P_150", "not_a_number", 1)]
    assert received == days * 192 * 540 == sum(n for _, _, n in counts) + 1
    # the first cycle of P-M01: local midnight in Berlin is 23:00 UTC
    start = pd.Timestamp("2026-03-15 23:00:00")
    temp = cycle[cycle["quantity"] == "temperature"]
    pres = cycle[cycle["quantity"] == "pressure"]
    assert list(temp["ts_utc"]) == [start + pd.Timedelta(seconds=10 * i) for i in range(90)]
    assert list(pres["ts_utc"]) == [start + pd.Timedelta(seconds=2 * i) for i in range(450)]
    assert first["Presse"].iloc[0] == "P-M01"
    assert temp["value"].tolist() == pytest.approx(
        first[[f"T_{i}" for i in range(1, 91)]].iloc[0].tolist()
    )
    assert pres["value"].tolist() == pytest.approx(  # bar -> kPa
        (first[[f"P_{i:03d}" for i in range(1, 451)]].iloc[0] * 100).tolist()
    )


def test_a_plant_delivering_one_file_per_batch_onboards_by_one_yaml(
    qp_env: Paths, tmp_path: Path
) -> None:
    """A reactor plant whose historian exports one CSV per batch (``BATCH-ID.csv``: a
    ``batch_start`` column, ``t_s`` seconds since it, temperature and pressure), declared by
    ``batch`` in its YAML alone: the batch id from the file name is the unit id, every row lands
    at batch start + t_s inside its unit's window on its reactor, one bad elapsed time is held
    back with file, row and column, and received = accepted + quarantined per file."""
    readings = {
        "format": "csv",
        "path": "{date}/batches/*.csv",
        "timestamp": {"field": "batch_start", "kind": "local", "format": "%Y-%m-%d %H:%M:%S"},
        "machine": {"field": "reactor"},
        "layout": "wide",
        "batch": {"from_filename": r"(?P<batch>[^/]+)\.csv$", "elapsed_seconds": "t_s"},
        "quantities": {
            "temperature": {"field": "temp_C", "unit": "°C"},
            "pressure": {"field": "pressure_bar", "unit": "bar"},
        },
    }

    def edit(d: dict[str, Any]) -> None:
        d.update(name="Plant R (a file per batch)", machines=["R1", "R2"])
        d["streams"]["readings"] = readings

    plant = _new_plant(qp_env, "plant_r", edit)
    day, days = dt.date(2026, 3, 16), 2
    simulate(qp_env.landing_dir, days=days, seed=7, start=day, plants={"plant_r": plant})
    root = qp_env.landing_dir / "plant_r"
    second = sorted((root / (day + dt.timedelta(days=1)).isoformat() / "batches").glob("*.csv"))
    assert len(second) == 2 * 96  # a file per 15-minute batch and reactor
    bad = second[10]
    lines = bad.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].replace(",180,", ",3 min,")  # the file's row 5
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")

    outcomes = _onboard(qp_env, tmp_path, "plant_r", day, day + dt.timedelta(days=days - 1))
    failed = [c for c in outcomes[1].failed_checks if "(ERROR)" in c]
    assert failed == [], outcomes[1].failed_checks
    assert not [c for c in outcomes[1].failed_checks if "completeness" in c]
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        counts = dict(
            con.sql(
                "SELECT partition_date, count(*) FROM standard.sensor_readings "
                "WHERE plant = 'plant_r' GROUP BY ALL"
            ).fetchall()
        )
        outside = con.sql(
            """SELECT count(*) FROM standard.sensor_readings r JOIN standard.production_units u
                 ON u.plant = r.plant AND r.source_file LIKE '%/' || u.unit_id || '.csv'
               WHERE r.plant = 'plant_r' AND (r.ts_utc < u.start_utc OR r.ts_utc >= u.end_utc
                 OR r.machine_id <> u.machine_id)"""
        ).fetchall()[0][0]
        joined = con.sql(
            """SELECT count(*) FROM standard.sensor_readings r JOIN standard.production_units u
                 ON u.plant = r.plant AND r.source_file LIKE '%/' || u.unit_id || '.csv'
               WHERE r.plant = 'plant_r'"""
        ).fetchall()[0][0]
        q = con.sql(
            "SELECT source_file, source_row, source_column, rule, n_items FROM standard.quarantine "
            "WHERE plant = 'plant_r' ORDER BY source_column"
        ).fetchall()
        received = con.sql(
            "SELECT sum(records * items_per_record), count(DISTINCT source_file) FROM raw.receipts "
            "WHERE plant = 'plant_r' AND stream = 'readings'"
        ).fetchall()[0]
    finally:
        con.close()
    d1, d2 = day, day + dt.timedelta(days=1)
    assert counts == {d1: 2 * 1440 * 2, d2: 2 * 1440 * 2 - 2}
    assert joined == sum(counts.values()) and outside == 0  # each batch's rows: its unit's
    rel = bad.relative_to(root).as_posix()
    assert q == [
        (rel, 5, "pressure_bar", "invalid_elapsed_time", 1),
        (rel, 5, "temp_C", "invalid_elapsed_time", 1),
    ]
    assert received == (days * 2 * 1440 * 2, days * 192)


def test_a_plant_with_history_before_the_partition_start_brings_its_start_in_its_own_yaml(
    qp_env: Paths, tmp_path: Path
) -> None:
    """A plant whose history is older than data/platform.yaml's start_date says so in its own file
    (history_start): the partitions begin there and its old days land, no platform edit."""
    old = dt.date(2026, 3, 9)
    before = build_definitions(qp_env).resolve_assets_def("production_units").partitions_def
    assert old.isoformat() not in {k.split("|")[0] for k in before.get_partition_keys()}
    plant = _new_plant(
        qp_env,
        "plant_o",
        lambda d: d.update(name="Plant O (old history)", machines=["O-M01"], history_start=old),
    )
    simulate(qp_env.landing_dir, days=2, seed=9, start=old, plants={"plant_o": plant})
    _onboard(qp_env, tmp_path, "plant_o", old, old + dt.timedelta(days=1))
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        days = con.sql(
            "SELECT DISTINCT partition_date FROM standard.sensor_readings WHERE plant = 'plant_o' "
            "ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert [d for (d,) in days] == [old, old + dt.timedelta(days=1)]
