"""Reading landing files: every record is either in the raw table or a parse issue with its row."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from quality_platform.ingest.readers import read_csv_file, read_jsonl_file, read_parquet_file

HEADER = "Zeitstempel,Maschine,Temperatur [°C]\n"


def _w(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


def test_csv_rows_keep_physical_line_numbers(tmp_path: Path) -> None:
    p = _w(
        tmp_path,
        "a.csv",
        (HEADER + "2026-03-16 00:00:00,A-M01,200.1\n\n2026-03-16 00:01:00,A-M01,200.2\n").encode(),
    )
    r = read_csv_file(p, "a.csv", ",", "utf-8")
    assert r.table["_source_row"].to_pylist() == [2, 4]
    assert r.table["Temperatur [°C]"].to_pylist() == ["200.1", "200.2"]
    assert r.issues == []


def test_truncated_last_line(tmp_path: Path) -> None:
    p = _w(
        tmp_path,
        "a.csv",
        (HEADER + "2026-03-16 00:00:00,A-M01,200.1\n2026-03-16 00:01:00,A-M").encode(),
    )
    r = read_csv_file(p, "a.csv", ",", "utf-8")
    assert r.table.num_rows == 1
    (i,) = r.issues
    assert (i["rule"], i["source_row"]) == ("truncated_row", 3)
    assert "a.csv row 3: [truncated_row]" in i["message"]


def test_wrong_delimiter_holds_back_every_row(tmp_path: Path) -> None:
    p = _w(tmp_path, "a.csv", b"Zeitstempel;Maschine;T\n1;2;3\n4;5;6\n")
    r = read_csv_file(p, "a.csv", ",", "utf-8")
    (i,) = r.issues
    assert i["rule"] == "wrong_delimiter" and i["n_records"] == 2 and i["scope"] == "file"
    assert "';'" in i["message"]


def test_invalid_utf8_lines_are_isolated(tmp_path: Path) -> None:
    data = HEADER.encode() + b"2026-03-16 00:00:00,A-M0\xe9,1\n2026-03-16 00:01:00,A-M01,2\n"
    r = read_csv_file(_w(tmp_path, "a.csv", data), "a.csv", ",", "utf-8")
    assert r.table["_source_row"].to_pylist() == [3]
    (i,) = r.issues
    assert (i["rule"], i["source_row"]) == ("encoding", 2)


def test_empty_files(tmp_path: Path) -> None:
    for reader in (
        lambda p: read_csv_file(p, "e", ",", "utf-8"),
        lambda p: read_parquet_file(p, "e"),
        lambda p: read_jsonl_file(p, "e", None, []),
    ):
        r = reader(_w(tmp_path, "e", b""))
        assert r.table.num_rows == 0
        assert [i["rule"] for i in r.issues] == ["empty_file"]


def test_jsonl_explode_and_invalid_line(tmp_path: Path) -> None:
    good = {
        "batch_id": "b1",
        "machine": "C-M01",
        "operator": {"badge": "X"},
        "readings": [{"t": 1, "temp_K": 470.0}, {"t": 2, "temp_K": None}],
    }
    data = (json.dumps(good) + "\n" + '{"batch_id": "b2", "readin' + "\n").encode()
    r = read_jsonl_file(
        _w(tmp_path, "b.jsonl", data), "b.jsonl", "readings", ["batch_id", "machine"]
    )
    assert r.table["_source_row"].to_pylist() == [1, 1]
    assert r.table["_source_item"].to_pylist() == [1, 2]
    assert r.table["temp_K"].to_pylist() == ["470.0", None]
    assert [(i["rule"], i["source_row"]) for i in r.issues] == [("invalid_json", 2)]
    flat = read_jsonl_file(
        _w(tmp_path, "c.jsonl", data), "c.jsonl", None, [], frozenset({"readings"})
    )
    assert "operator.badge" in flat.header and "readings" not in flat.header


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.just("2026-03-16 00:00:00,A-M01,1.5"),
            st.just("x,y"),
            st.just("1,2,3,4"),
            st.just(""),
            st.just("   "),
            st.binary(min_size=1, max_size=8).map(
                lambda b: b.replace(b"\n", b"").decode("latin-1")
            ),
        ),
        max_size=30,
    )
)
def test_every_line_is_accounted_for(tmp_path_factory, lines: list[str]) -> None:
    tmp = tmp_path_factory.mktemp("csv")
    p = tmp / "x.csv"
    p.write_bytes(
        (HEADER + "\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape")
        if lines
        else HEADER.encode()
    )
    r = read_csv_file(p, "x.csv", ",", "utf-8")
    physical = re.split(r"\r\n|\r|\n", HEADER + "\n".join(lines))[1:] if lines else []
    nonblank = sum(1 for ln in physical if ln != "")
    assert r.table.num_rows + sum(i["n_records"] for i in r.issues) == nonblank


# --------------------------------------------------------------------------- files without header row

NAMES = ["Zeitstempel", "Maschine", "Temperatur [°C]"]


def test_csv_without_header_row_reads_every_line_with_its_own_row_number(tmp_path: Path) -> None:
    body = '2026-03-16 00:00:00,A-M01,200.1\n\n2026-03-16 00:01:00,A-M01\n"2026-03-16\n00:02",A-M01,3\n'
    p = _w(tmp_path, "a.csv", body.encode())
    r = read_csv_file(p, "a.csv", ",", "utf-8", columns=NAMES)
    assert r.header == NAMES
    assert r.table["_source_row"].to_pylist() == [1, 4]  # the first line is a record, row 1
    assert r.table["Temperatur [°C]"].to_pylist() == ["200.1", "3"]
    (i,) = r.issues
    assert (i["rule"], i["source_row"]) == ("wrong_field_count", 3)
    assert "a.csv row 3: [wrong_field_count] expected 3 fields, found 2" in i["message"]
    assert r.file_lines == 4 and r.record_lines == 3  # 1, and 4-5 (a quoted line break)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.just("2026-03-16 00:00:00,A-M01,1.5"),
            st.just('"a\nb",A-M01,2'),
            st.just("x,y"),
            st.just(""),
            st.just('"open,1,2'),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_a_file_without_header_reads_as_the_same_file_with_one(tmp_path_factory, lines) -> None:
    """Property: the records of a header-less file are those of the same lines under a header row,
    each one row earlier; so are the issues."""
    tmp = tmp_path_factory.mktemp("csv")
    body = "\n".join(lines) + "\n"
    if not body.strip():
        return
    bare = read_csv_file(_w(tmp, "b.csv", body.encode()), "x.csv", ",", "utf-8", columns=NAMES)
    headed = read_csv_file(_w(tmp, "h.csv", (HEADER + body).encode()), "x.csv", ",", "utf-8")
    assert bare.table.drop(["_source_row"]).equals(headed.table.drop(["_source_row"]))
    assert bare.table["_source_row"].to_pylist() == [
        r - 1 for r in headed.table["_source_row"].to_pylist()
    ]
    assert [(i["rule"], i["source_row"]) for i in bare.issues] == [
        (i["rule"], i["source_row"] - 1) for i in headed.issues
    ]
    assert (bare.file_lines, bare.record_lines) == (headed.file_lines, headed.record_lines)
