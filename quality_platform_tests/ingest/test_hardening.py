"""Hostile and careless landing files (hardening issue): injection through names, links out of the
landing folder, personal values in the quarantine, oversized input, and records that used to crash
the run or vanish. Each test lands a simulated day that one file spoils, and checks that the spoiled
part is quarantined with its rule while the rest flows and every count reconciles."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from quality_platform.config import load_plants
from quality_platform.defs.ingest.checks import reconciliation_table
from quality_platform.ingest.pipeline import land
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform_tests.conftest import TEST_KEY, land_and_standardize, make_installation

DAY = dt.date(2026, 3, 16)
DAYS = [DAY]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hard_tpl")
    paths = make_installation(root)
    # 4 days: DAY's labels have arrived at every plant (plant_b's come 3 days late)
    simulate(paths.landing_dir, days=4, seed=5, scenario="stable", start=DAY)
    return root


@pytest.fixture
def inst(template: Path, tmp_path: Path) -> Paths:
    """A private copy of the one-day installation (so each test may spoil it)."""
    shutil.copytree(template, tmp_path / "i", symlinks=True)
    data = tmp_path / "i" / "data"
    return Paths(data_dir=data, config_dir=data)


def _day(paths: Paths, plant: str) -> Path:
    return paths.landing_dir / plant / DAY.isoformat()


def _run(paths: Paths, plant: str) -> pd.DataFrame:
    now = pd.Timestamp("2026-03-30", tz="UTC")
    return land_and_standardize(paths, load_plants(paths)[plant], DAYS, now).quarantine


def _sql(paths: Paths, sql: str) -> list[tuple]:
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _reconciles(paths: Paths, plant: str) -> pd.DataFrame:
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        rec = reconciliation_table(con, [(plant, DAY)], load_plants(paths))
    finally:
        con.close()
    assert (rec["difference"] == 0).all(), rec
    return rec


def _warehouse_text(paths: Paths) -> str:
    """Every text value of every table outside the raw schema, as one string."""
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        out = []
        for schema, table in con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema <> 'raw'"
        ).fetchall():
            out.append(
                con.execute(f'SELECT * FROM "{schema}"."{table}"').df().astype(str).to_json()
            )
        return "\n".join(out)
    finally:
        con.close()


# --------------------------------------------------------------------------- 1: injection

HOSTILE = [
    'X" VARCHAR; COMMIT; UPDATE standard.sensor_readings SET value=-1; CREATE TABLE pwned AS SELECT 1; '
    "BEGIN TRANSACTION; --",
    "a'b",
    'q"; DROP TABLE raw.receipts; --',
    "Ünï cödé ; '--",
    'x"y"z',
]


def _tables(paths: Paths) -> set[tuple[str, str]]:
    return set(_sql(paths, "SELECT table_schema, table_name FROM information_schema.tables"))


@pytest.mark.parametrize("plant", ["plant_a", "plant_b", "plant_c"])
def test_hostile_column_names_stay_names_in_every_reader(inst: Paths, plant: str) -> None:
    """A header field, Parquet column or JSON key that is SQL stays one column of the raw table."""
    _run(inst, plant)  # the day as delivered: creates the raw tables, so later names are ALTERs
    before = _tables(inst)
    d = _day(inst, plant)
    if plant == "plant_a":
        f = d / "sensoren.csv"
        lines = f.read_text(encoding="utf-8").splitlines()
        lines[0] += "," + ",".join('"' + h.replace('"', '""') + '"' for h in HOSTILE)
        lines[1:] = [ln + "," + ",".join("1" for _ in HOSTILE) for ln in lines[1:]]
        f.write_text("\n".join(lines) + "\n", encoding="utf-8")
        table = "plant_a__readings"
    elif plant == "plant_b":
        f = d / "readings.parquet"
        t = pq.read_table(f)
        for h in HOSTILE:
            t = t.append_column(h, pa.array(["1"] * t.num_rows))
        pq.write_table(t, f)
        table = "plant_b__readings"
    else:
        f = d / "batches.jsonl"
        recs = [json.loads(x) for x in f.read_text().splitlines()]
        for r in recs:
            r.update(dict.fromkeys(HOSTILE, 1))
        f.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
        table = "plant_c__units"
    _run(inst, plant)
    cols = {
        r[0]
        for r in _sql(
            inst,
            "SELECT column_name FROM information_schema.columns "
            f"WHERE table_schema = 'raw' AND table_name = '{table}'",
        )
    }
    assert set(HOSTILE) <= cols
    assert _tables(inst) == before  # nothing created, nothing dropped
    assert _sql(inst, "SELECT count(*) FROM standard.sensor_readings WHERE value = -1")[0][0] == 0
    unknown = _sql(
        inst, "SELECT source_column FROM standard.quarantine WHERE rule = 'unknown_column'"
    )
    assert set(HOSTILE) <= {r[0] for r in unknown}
    _reconciles(inst, plant)


# --------------------------------------------------------------------------- 2: links


def test_links_and_special_files_are_never_read(inst: Paths) -> None:
    secret = inst.data_dir.parent / "outside-secret.txt"
    secret.write_text("TOPSECRET-KEY-MATERIAL,aaa\nsecond-line-of-secret,bbb\n")
    d = _day(inst, "plant_a")
    (d / "pruefung_2026-03-18.csv").rename(d / "pruefung_2026-03-18.keep")
    os.symlink(secret, d / "pruefung_2026-03-18.csv")  # a link named like a day file
    os.symlink("/etc/passwd", d / "pruefung_passwd.csv")
    # a day folder that is a link to a folder outside the landing folder
    elsewhere = inst.data_dir.parent / "elsewhere"
    shutil.copytree(d, elsewhere, symlinks=True)
    (elsewhere / "pruefung_2026-03-18.keep").rename(elsewhere / "pruefung_x.csv")
    os.mkfifo(d / "pruefung_fifo.csv")  # reading a pipe would hang the run
    day2 = d.parent / "2026-03-20"
    os.symlink(elsewhere, day2)

    q = _run(inst, "plant_a")
    text = (
        _warehouse_text(inst)
        + json.dumps(_sql(inst, "SELECT * FROM raw.receipts"), default=str)
        + json.dumps(_sql(inst, "SELECT * FROM raw.parse_issues"), default=str)
    )
    assert "TOPSECRET" not in text and "root:" not in text
    rules = dict(zip(q["source_file"], q["rule"], strict=False))
    assert rules["2026-03-16/pruefung_2026-03-18.csv"] == "symlink"
    assert rules["2026-03-16/pruefung_passwd.csv"] == "symlink"
    assert rules["2026-03-16/pruefung_fifo.csv"] == "not_a_regular_file"
    assert all(
        "row" not in m or "symbolic link" in m or "regular" in m
        for m in q[q["rule"].isin(["symlink", "not_a_regular_file"])]["message"]
    )
    # the linked day folder: not read either (landed as its own day)
    plants = load_plants(inst)
    land(plants["plant_a"], [dt.date(2026, 3, 20)], inst, inst.warehouse_path)
    rows = _sql(
        inst, "SELECT DISTINCT rule FROM raw.parse_issues WHERE partition_date = DATE '2026-03-20'"
    )
    assert {r[0] for r in rows} == {"symlink"}
    assert (
        _sql(
            inst,
            "SELECT count(*) FROM raw.plant_a__readings WHERE partition_date = DATE '2026-03-20'",
        )[0][0]
        == 0
    )


# --------------------------------------------------------------------------- 3: personal values


def test_swapped_header_names_leak_no_operator_id(inst: Paths) -> None:
    f = _day(inst, "plant_a") / "auftraege.csv"
    lines = f.read_text(encoding="utf-8").splitlines()
    ids = {ln.split(",")[-1] for ln in lines[1:]}
    lines[0] = lines[0].replace("Start", "TMP").replace("Werker", "Start").replace("TMP", "Werker")
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    q = _run(inst, "plant_a")
    units_q = q[q["stream"] == "units"]
    assert len(units_q[units_q["rule"] == "invalid_timestamp"]) == len(lines) - 1
    text = _warehouse_text(inst)
    assert ids and not any(i in text for i in ids)
    assert units_q["value"].dropna().str.startswith("op_").all()
    _reconciles(inst, "plant_a")


# --------------------------------------------------------------------------- 4 + 10: size limits


def _set_limits(paths: Paths, plant: str, **limits: int) -> None:
    f = paths.plants_dir / f"{plant}.yaml"
    f.write_text(f.read_text() + "landing_limits: " + json.dumps(limits) + "\n")


def test_a_header_of_many_fields_is_quarantined_not_a_crash(inst: Paths) -> None:
    f = _day(inst, "plant_a") / "sensoren.csv"
    lines = f.read_text(encoding="utf-8").splitlines()
    lines[0] += "," + ",".join(f"f{i}" for i in range(20_000))
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    q = _run(inst, "plant_a")
    hit = q[(q["source_file"] == "2026-03-16/sensoren.csv") & (q["rule"] == "too_many_fields")]
    assert len(hit) == 1 and "max_fields=1,000" in hit["message"].iloc[0]
    assert hit["n_items"].iloc[0] == (len(lines) - 1) * 4
    ncols = _sql(
        inst,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'plant_a__readings'",
    )
    assert ncols[0][0] < 20
    rec = _reconciles(inst, "plant_a")
    assert rec.set_index("stream").loc["units", "accepted"] > 0  # the other streams flow


def test_file_and_line_limits_from_config(inst: Paths) -> None:
    _set_limits(inst, "plant_a", max_file_bytes=200_000, max_line_bytes=120)
    d = _day(inst, "plant_a")
    size = (d / "sensoren.csv").stat().st_size
    assert size > 200_000
    f = d / "auftraege.csv"
    lines = f.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3] + "x" * 200  # one line over 120 bytes
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    q = _run(inst, "plant_a")
    big = q[q["rule"] == "file_too_large"]
    assert list(big["source_file"]) == ["2026-03-16/sensoren.csv"]
    n_lines = sum(1 for ln in (d / "sensoren.csv").read_bytes().splitlines() if ln.strip())
    assert big["n_items"].iloc[0] == n_lines * 4  # counted from the file without loading it
    long = q[q["rule"] == "line_too_long"]
    assert list(long["source_row"]) == [4] and long["stream"].iloc[0] == "units"
    _reconciles(inst, "plant_a")


def test_a_line_over_one_megabyte_and_nested_parquet_columns_land(inst: Paths) -> None:
    _set_limits(inst, "plant_a", max_line_bytes=4 * 2**20)
    f = _day(inst, "plant_a") / "auftraege.csv"
    lines = f.read_text(encoding="utf-8").splitlines()
    lines[0] += ",Notiz"
    lines[1:] = [ln + "," + ("n" * (1_500_000 if i == 2 else 3)) for i, ln in enumerate(lines[1:])]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    g = _day(inst, "plant_b") / "production.parquet"
    t = pq.read_table(g)
    t = t.append_column("tags", pa.array([["a", "b"]] * t.num_rows, pa.list_(pa.string())))
    t = t.append_column("meta", pa.array([{"k": 1}] * t.num_rows, pa.struct([("k", pa.int64())])))
    pq.write_table(t, g)
    _run(inst, "plant_a")
    _run(inst, "plant_b")
    assert _sql(inst, 'SELECT max(length("Notiz")) FROM raw.plant_a__units')[0][0] == 1_500_000
    assert _sql(inst, "SELECT DISTINCT tags, meta FROM raw.plant_b__units") == [
        ('["a", "b"]', '{"k": 1}')
    ]
    _reconciles(inst, "plant_a")
    _reconciles(inst, "plant_b")


# --------------------------------------------------------------------------- 7: KPIs of an empty day


def test_kpis_of_a_day_without_units_materialise(
    inst: Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from quality_platform.definitions import build_definitions
    from quality_platform.runner import backfill

    monkeypatch.setenv("QP_DATA_DIR", str(inst.data_dir))
    monkeypatch.setenv("QP_CONFIG_DIR", str(inst.config_dir))
    monkeypatch.setenv("QP_PSEUDONYM_KEY", TEST_KEY)
    for var in ("QP_LANDING_DIR", "QP_WAREHOUSE", "QP_AUDIT_DB"):
        monkeypatch.delenv(var, raising=False)
    defs = build_definitions(inst)
    (tmp_path / "dh").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dh")) as instance:
        assert all(o.success for o in backfill(defs, instance, "plant_a", DAY, DAY))
        (_day(inst, "plant_a") / "auftraege.csv").unlink()  # the day is re-delivered without units
        runs = backfill(defs, instance, "plant_a", DAY, DAY)
        assert [o.success for o in runs] == [True, True], runs
    assert _sql(inst, "SELECT count(*) FROM standard.production_units")[0][0] == 0
    assert _sql(inst, "SELECT count(*) FROM kpi.kpi_daily")[0][0] == 0  # stale KPIs were cleared
    assert _sql(inst, "SELECT count(*) FROM kpi.kpi_reconciliation")[0][0] == 0


# --------------------------------------------------------------------------- 11: nothing silent


def test_unknown_and_garbled_machines_are_quarantined(inst: Paths) -> None:
    f = _day(inst, "plant_a") / "sensoren.csv"
    lines = f.read_text(encoding="utf-8").splitlines()
    bad = ["A-M99", "Ａ-M01", "' OR 1=1 --"]
    for i, m in enumerate(bad, start=1):
        lines[i] = lines[i].replace(lines[i].split(",")[1], m, 1)
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    g = _day(inst, "plant_a") / "auftraege.csv"
    ul = g.read_text(encoding="utf-8").splitlines()
    ul[1] = ul[1].replace(",A-M01,", ",A-M77,", 1)
    g.write_text("\n".join(ul) + "\n", encoding="utf-8")
    q = _run(inst, "plant_a")
    hit = q[q["rule"] == "unknown_machine"]
    r = hit[hit["stream"] == "readings"]
    assert sorted(set(r["source_row"])) == [2, 3, 4] and len(r) == 3 * 4
    assert list(hit[hit["stream"] == "units"]["source_row"]) == [2]
    got = {m for (m,) in _sql(inst, "SELECT DISTINCT machine_id FROM standard.sensor_readings")}
    assert got <= set(load_plants(inst)["plant_a"].machines)
    _reconciles(inst, "plant_a")


def test_duplicate_header_column_is_held_back_and_counted(inst: Paths) -> None:
    f = _day(inst, "plant_a") / "sensoren.csv"
    lines = f.read_text(encoding="utf-8").splitlines()
    lines[0] += ",Temperatur [°C]"
    lines[1:] = [ln + ",1.0" for ln in lines[1:]]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    q = _run(inst, "plant_a")
    hit = q[q["rule"] == "duplicate_column"]
    assert len(hit) == 1 and hit["n_items"].iloc[0] == len(lines) - 1
    assert (
        _sql(inst, "SELECT count(*) FROM standard.sensor_readings WHERE quantity = 'temperature'")[
            0
        ][0]
        == 0
    )
    assert (
        _sql(inst, "SELECT count(*) FROM standard.sensor_readings WHERE quantity = 'pressure'")[0][
            0
        ]
        == len(lines) - 1
    )
    _reconciles(inst, "plant_a")


def test_duplicate_json_key_header_only_bom_and_quoted_newline(inst: Paths) -> None:
    c = _day(inst, "plant_c") / "inspections_2026-03-17.jsonl"
    lines = c.read_text().splitlines()
    lines[0] = lines[0][:-1] + ', "result": "scrap"}'  # result given twice
    c.write_text("\n".join(lines) + "\n")
    d = _day(inst, "plant_a")
    (d / "pruefung_extra.csv").write_text(
        "Auftrag,Pruefzeit,Nacharbeit,Ausschuss\n", encoding="utf-8"
    )
    f = d / "sensoren.csv"
    f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    g = d / "auftraege.csv"
    ul = g.read_text(encoding="utf-8").splitlines()
    parts = ul[1].split(",")
    parts[5] = '"line one\nline two, with comma"'  # Produkt spans two lines, quoted
    ul[1] = ",".join(parts)
    g.write_text("\n".join(ul) + "\n", encoding="utf-8")

    qc = _run(inst, "plant_c")
    dk = qc[qc["rule"] == "duplicate_key"]
    assert list(dk["source_row"]) == [1] and "'result'" in dk["message"].iloc[0]
    qa = _run(inst, "plant_a")
    assert list(qa[qa["rule"] == "no_records"]["source_file"]) == ["2026-03-16/pruefung_extra.csv"]
    assert (
        qa[qa["stream"] == "readings"]["rule"].isin(["unknown_column"]).all()
        or qa[qa["stream"] == "readings"].empty
    )
    assert "unbalanced_quote" not in set(qa["rule"])
    prod = _sql(
        inst,
        "SELECT product FROM standard.production_units WHERE source_row = 2 "
        "AND source_file = '2026-03-16/auftraege.csv'",
    )
    assert prod == [("line one\nline two, with comma",)]
    n = len(f.read_text(encoding="utf-8-sig").splitlines()) - 1
    assert (
        _sql(inst, "SELECT count(*) FROM standard.sensor_readings WHERE plant = 'plant_a'")[0][0]
        == n * 4
    )
    _reconciles(inst, "plant_a")
    _reconciles(inst, "plant_c")


# ------------------------------------------------- a config field the files do not have


def _source_fields(doc: dict, path: tuple = ()) -> list[tuple]:
    """Every place a plant config names a source field (paths into its YAML)."""
    out: list[tuple] = []
    for k, v in doc.items():
        here = (*path, k)
        names_field = k in ("field", "quantity_field", "value_field", "unit_field") or path[
            -1:
        ] in (("fields",), ("flags",))
        if isinstance(v, str) and names_field:
            out.append(here)
        elif isinstance(v, dict):
            out += _source_fields(v, here)
    return out


_COMMITTED = Path(__file__).resolve().parents[2] / "data" / "plants"
# the optional unit fields behave alike; one of them (the personal one) stands for the rest
_ALIKE = {"line", "product", "material_lot", "supplier"}
_CASES = [
    (plant, where)
    for plant in ("plant_a", "plant_b", "plant_c", "ai4i2020")
    for where in _source_fields(
        yaml.safe_load((_COMMITTED / f"{plant}.yaml").read_text())["streams"]
    )
    if where[-1] not in _ALIKE
]


@pytest.mark.parametrize(("plant", "where"), _CASES, ids=[f"{p}:{'.'.join(w)}" for p, w in _CASES])
def test_a_configured_field_missing_from_the_files_is_named_not_a_crash(
    inst: Paths, plant: str, where: tuple
) -> None:
    """Renaming any source field in a plant's config (so no file has it) never fails the run with
    a bare KeyError or a SQL binder error: the records it spoils are held back under a rule that
    names the field (or, for an optional field, a warning does), and received = accepted +
    quarantined still holds."""
    f = inst.plants_dir / f"{plant}.yaml"
    doc = yaml.safe_load(f.read_text())
    node = doc["streams"]
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = "no_such_field"
    f.write_text(yaml.safe_dump(doc, allow_unicode=True))
    q = _run(inst, plant)
    _reconciles(inst, plant)
    if where[:2] == ("readings", "quantities") and load_plants(inst)[plant].streams.readings.long:
        # long layout: a quantity's name is a value in the file, not a column; the signal the
        # config no longer maps is held back value by value
        assert set(q.loc[q["stream"] == "readings", "rule"]) == {"unknown_quantity"}
        return
    named = q[
        (q["stream"] == where[0])
        & (
            (q["source_column"] == "no_such_field")
            | q["message"].str.contains("no_such_field", regex=False)
        )
    ]
    assert not named.empty, q[["stream", "rule", "message"]]
    assert set(named["rule"]) <= {"missing_required_column", "missing_optional_column"}
