"""Property-based landing: hostile file names, headers, values and encodings through every reader.

Whatever a plant delivers, three invariants hold after landing and standardising a day:

1. every record is accepted or quarantined with its file, row and rule (received = accepted +
   quarantined, per stream; every quarantine message starts with its file);
2. nothing outside the plant's landing folder is read (a link to a secret next to the folder, and
   the secret's text appears nowhere in the warehouse, raw layer included);
3. no raw personal value leaves the raw layer (the operator ids planted in the personal column
   appear in no table outside ``raw``), also when the personal column's header is swapped with a
   time column, renamed, dropped or duplicated.

Header swaps of a personal column with a free-text column (e.g. product) are not generated: the
platform cannot tell an operator id under the header "Produkt" from a product code (README,
security notes).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quality_platform.config import load_plants
from quality_platform.defs.ingest.checks import reconciliation_table
from quality_platform.settings import Paths
from quality_platform_tests.conftest import land_and_standardize, make_installation

DAY = dt.date(2026, 3, 16)
SECRET = "TOPSECRET-not-for-the-warehouse"
IDS = [f"W-SECRET-{i:04d}" for i in range(6)]

NASTY = st.text(
    alphabet=st.sampled_from(list("aZ09 ,;\"'\\\n\r\t|-_.:[]{}()$%=+@ÄéЖ語\x1b\x7f\u200b\ufeff")),
    max_size=12,
)
NAME = st.one_of(
    NASTY.filter(bool),
    st.sampled_from(
        ['X" VARCHAR; DROP TABLE raw.receipts; --', "a'b", "_source_row", "plant", "partition_date"]
    ),
)
ENCODING = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "garbled"])
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    return make_installation(tmp_path_factory.mktemp("fuzz_cfg"))


def _example_paths(config: Paths, root: Path) -> Paths:
    root.mkdir(parents=True, exist_ok=True)
    return Paths(data_dir=root, config_dir=config.config_dir)


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "garbled":
        b = text.encode("utf-8")
        return b[: len(b) // 2] + b"\xff\xfe\xc3" + b[len(b) // 2 :]
    return text.encode(encoding, errors="replace")


def _csv_text(header: list[str], rows: list[list[str]], quoted: bool) -> str:
    if quoted:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        return buf.getvalue()
    return "\n".join(",".join(r) for r in [header, *rows]) + "\n"


def _mutate(header: list[str], personal: str, swap_with: list[str], draw: st.DrawFn) -> list[str]:
    h = list(header)
    op = draw(st.sampled_from(["none", "swap", "rename", "drop", "duplicate", "add"]))
    i = h.index(personal)
    if op == "swap":
        j = h.index(draw(st.sampled_from(swap_with)))
        h[i], h[j] = h[j], h[i]
    elif op == "rename":
        h[i] = draw(NAME)
    elif op == "drop":
        del h[i]
    elif op == "duplicate":
        h.append(draw(st.sampled_from(h)))
    elif op == "add":
        h.append(draw(NAME))
    return h


def _land_and_check(
    config: Paths,
    tmp: pytest.TempPathFactory,
    plant: str,
    files: dict[str, bytes],
    link: str | None,
) -> None:
    """Write one example's day files (and a link named ``link`` to a secret beside the landing
    folder), land and standardise the day, and check the three invariants."""
    paths = _example_paths(config, tmp.mktemp(f"fz_{plant}"))
    d = paths.landing_dir / plant / DAY.isoformat()
    d.mkdir(parents=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    if link:
        secret = paths.data_dir / "secret.txt"
        secret.write_text(f"{SECRET},{SECRET}\n{SECRET},x\n")
        os.symlink(secret, d / link)
    plants = load_plants(paths)
    now = pd.Timestamp("2026-03-30", tz="UTC")
    land_and_standardize(paths, plants[plant], [DAY], now, collect=False)
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        rec = reconciliation_table(con, [(plant, DAY)], plants)
        assert (rec["difference"] == 0).all(), rec
        q = con.execute("SELECT source_file, rule, message FROM standard.quarantine").df()
        assert q["rule"].notna().all() and q["source_file"].notna().all()
        assert all(m.startswith(f) for f, m in zip(q["source_file"], q["message"], strict=True))
        for schema, table in con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
        ).fetchall():
            text = con.execute(f'SELECT * FROM "{schema}"."{table}"').df().astype(str).to_json()
            assert SECRET not in text, (
                f"{schema}.{table} holds text from outside the landing folder"
            )
            if schema != "raw":
                leaked = [i for i in IDS if i in text]
                assert not leaked, f"{schema}.{table} holds raw operator ids {leaked}"
    finally:
        con.close()


# --------------------------------------------------------------------------- CSV (plant_a)

A_UNITS = [
    "Auftrag",
    "Linie",
    "Maschine",
    "Start",
    "Ende",
    "Produkt",
    "Charge",
    "Lieferant",
    "Werker",
]
A_READINGS = [
    "Zeitstempel",
    "Maschine",
    "Temperatur [°C]",
    "Druck [bar]",
    "Materialfeuchte [%]",
    "Vibration [mm/s]",
]


@st.composite
def plant_a_day(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 6))
    units = []
    for k in range(n):
        start = dt.datetime(2026, 3, 16, 1 + k)
        row = [
            f"A-FZ-{k}",
            "L1",
            draw(st.sampled_from(["A-M01", "A-M02", "B-M99", "Ａ-M01"])),
            start.strftime("%Y-%m-%d %H:%M:%S"),
            (start + dt.timedelta(minutes=15)).strftime("%Y-%m-%d %H:%M:%S"),
            draw(st.one_of(st.just("DK-110"), NASTY)),
            "CH-1",
            "Lieferant AG",
            IDS[k],
        ]
        units.append(row)
    header = _mutate(A_UNITS, "Werker", ["Start", "Ende"], draw)
    readings = [
        [
            f"2026-03-16 0{k}:00:00",
            draw(st.sampled_from(["A-M01", "A-M02", "' OR 1=1 --"])),
            draw(st.one_of(st.just("200.5"), NASTY)),
            "7.9",
            "12.5",
            "2.5",
        ]
        for k in range(n)
    ]
    r_header = list(A_READINGS)
    if draw(st.booleans()):
        r_header.append(draw(NAME))
        readings = [[*r, draw(NASTY)] for r in readings]
    return {
        "units": _encode(_csv_text(header, units, draw(st.booleans())), draw(ENCODING)),
        "readings": _encode(_csv_text(r_header, readings, draw(st.booleans())), draw(ENCODING)),
        "extra_name": draw(
            NASTY.filter(lambda s: "/" not in s and "\x00" not in s and s not in ("", ".", ".."))
        ),
        "link": draw(st.booleans()),
    }


@SETTINGS
@given(day=plant_a_day())
def test_csv_plant_invariants(
    config: Paths, tmp_path_factory: pytest.TempPathFactory, day: dict
) -> None:
    _land_and_check(
        config,
        tmp_path_factory,
        "plant_a",
        {
            "auftraege.csv": day["units"],
            "sensoren.csv": day["readings"],
            f"pruefung_{day['extra_name']}.csv": b"Auftrag,Pruefzeit,Nacharbeit,Ausschuss\nA-FZ-0,2026-03-17 10:00:00,0,1\n",
        },
        "pruefung_link.csv" if day["link"] else None,
    )


# --------------------------------------------------------------------------- Parquet (plant_b)

B_UNITS = [
    "serial",
    "line_code",
    "asset_tag",
    "start_ts",
    "end_ts",
    "sku",
    "lot_no",
    "supplier",
    "badge_id",
]


@st.composite
def plant_b_day(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 6))
    header = _mutate(B_UNITS, "badge_id", ["start_ts", "end_ts"], draw)
    cols: dict[str, list] = {h: [] for h in dict.fromkeys(header)}
    for k in range(n):
        start = pd.Timestamp("2026-03-16 08:00", tz="UTC") + pd.Timedelta(minutes=30 * k)
        values = {
            "serial": f"B-FZ-{k}",
            "line_code": "L1",
            "asset_tag": draw(st.sampled_from(["B-M01", "B-M99"])),
            "start_ts": start.isoformat(),
            "end_ts": (start + pd.Timedelta(minutes=20)).isoformat(),
            "sku": draw(NASTY),
            "lot_no": "LOT",
            "supplier": "S",
            "badge_id": IDS[k],
        }
        original = dict(zip(B_UNITS, [values[c] for c in B_UNITS], strict=True))
        # a swapped or renamed header keeps the values in their original position
        for pos, h in enumerate(cols):
            cols[h].append(original[B_UNITS[pos]] if pos < len(B_UNITS) else draw(NASTY))
    arrays = {h: pa.array(v) for h, v in cols.items()}
    if draw(st.booleans()):
        arrays[draw(NAME)] = pa.array([[draw(NASTY)] for _ in range(n)], pa.list_(pa.string()))
    buf = io.BytesIO()
    pq.write_table(pa.table(arrays), buf)
    data = buf.getvalue()
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # a truncated upload
    return {"units": data, "link": draw(st.booleans())}


@SETTINGS
@given(day=plant_b_day())
def test_parquet_plant_invariants(
    config: Paths, tmp_path_factory: pytest.TempPathFactory, day: dict
) -> None:
    _land_and_check(
        config,
        tmp_path_factory,
        "plant_b",
        {"production.parquet": day["units"]},
        "qc_link.parquet" if day["link"] else None,
    )


# --------------------------------------------------------------------------- JSON lines (plant_c)


@st.composite
def plant_c_day(draw: st.DrawFn) -> dict:
    lines = []
    for k in range(draw(st.integers(1, 5))):
        t0 = int(pd.Timestamp("2026-03-16 08:00", tz="UTC").timestamp() * 1000) + k * 1_800_000
        rec = {
            "batch_id": f"C-FZ-{k}",
            "line": "L1",
            "machine": draw(st.sampled_from(["C-M01", "C-M99"])),
            "product": {"code": draw(NASTY)},
            "material": {"lot": "L", "supplier": "S"},
            "operator": {"badge": IDS[k]},
            "start_ms": t0,
            "end_ms": t0 + 600_000,
            "readings": [
                {
                    "t": t0 + 60_000 * j,
                    "temp_K": draw(st.one_of(st.just(470.0), NASTY)),
                    "press_kPa": 800.0,
                    "moist_gkg": 130.0,
                    "vib_mms": 3.0,
                }
                for j in range(3)
            ],
        }
        if draw(st.booleans()):
            rec[draw(NAME)] = draw(NASTY)
        text = json.dumps(rec, ensure_ascii=draw(st.booleans()))
        kind = draw(st.sampled_from(["ok", "ok", "duplicate_key", "truncated", "not_object"]))
        if kind == "duplicate_key":
            text = text[:-1] + ', "operator": {"badge": "other"}}'
        elif kind == "truncated":
            text = text[: len(text) // 2]
        elif kind == "not_object":
            text = json.dumps([rec["batch_id"]])
        lines.append(text)
    return {
        "batches": _encode("\n".join(lines) + "\n", draw(ENCODING)),
        "link": draw(st.booleans()),
    }


@SETTINGS
@given(day=plant_c_day())
def test_jsonl_plant_invariants(
    config: Paths, tmp_path_factory: pytest.TempPathFactory, day: dict
) -> None:
    _land_and_check(
        config,
        tmp_path_factory,
        "plant_c",
        {"batches.jsonl": day["batches"]},
        "inspections_link.jsonl" if day["link"] else None,
    )
