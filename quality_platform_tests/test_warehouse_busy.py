"""Readers never fail writers: warehouse.connect waits for another process's lock on the DuckDB
file (bounded), and names the holder when it gives up. Every holder here is a real second process."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from quality_platform import warehouse
from quality_platform.definitions import build_definitions
from quality_platform.runner import backfill
from quality_platform.settings import Paths
from quality_platform.warehouse import WarehouseBusyError, connect
from quality_platform_tests.conftest import tiny_plant_a_day

D1 = dt.date(2026, 3, 16)


def _holder(path: Path, read_only: bool, seconds: float) -> subprocess.Popen[str]:
    """A process that opens ``path`` (read-only or read-write), says so, holds it, then exits."""
    code = textwrap.dedent(f"""
        import duckdb, time
        con = duckdb.connect({str(path)!r}, read_only={read_only})
        con.execute("SELECT count(*) FROM t").fetchall()
        print("holding", flush=True)
        time.sleep({seconds})
        con.close()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "holding"
    return p


def _warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (a INTEGER)")
    con.close()
    return path


def test_writer_waits_for_a_reader_process(tmp_path: Path) -> None:
    path = _warehouse(tmp_path)
    reader = _holder(path, read_only=True, seconds=2)
    try:
        t0 = time.monotonic()
        with connect(path, busy_timeout_s=30) as con:
            waited = time.monotonic() - t0
            con.execute("INSERT INTO t VALUES (1)")
        assert reader.wait(timeout=30) == 0
    finally:
        reader.kill()
    assert 1.0 <= waited < 30, waited  # it waited for the reader, and no longer than needed
    with connect(path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM t").fetchall()[0][0] == 1


def test_waiting_is_bounded_and_names_the_holder(tmp_path: Path) -> None:
    path = _warehouse(tmp_path)
    writer = _holder(path, read_only=False, seconds=60)
    try:
        t0 = time.monotonic()
        with pytest.raises(WarehouseBusyError) as err, connect(path, busy_timeout_s=1.5):
            pass
        waited = time.monotonic() - t0
        assert 1.5 <= waited < 8, waited
        assert err.value.holder_pid == writer.pid and f"PID {writer.pid}" in str(err.value)
        assert err.value.waited_s >= 1.5
        # a reader gives up soon by default: a query never queues behind a long run
        t0 = time.monotonic()
        with pytest.raises(WarehouseBusyError), connect(path, read_only=True):
            pass
        limit = warehouse.READ_BUSY_TIMEOUT_S
        assert limit <= time.monotonic() - t0 < limit + 5
    finally:
        writer.kill()
        writer.wait(timeout=30)


STRESS_READER = """
import sys, time
from pathlib import Path
import duckdb

path, stop = sys.argv[1], Path(sys.argv[2])
opened = busy = 0
deadline = time.monotonic() + 120  # bounded even if the test never says stop
while not stop.exists() and time.monotonic() < deadline:
    try:
        con = duckdb.connect(path, read_only=True)
    except duckdb.IOException:  # the writer holds it: a query would report the warehouse busy
        busy += 1
    else:
        con.execute("SELECT count(*) FROM information_schema.tables").fetchall()
        time.sleep(0.03)  # a governed query holds the file for its duration
        con.close()
        opened += 1
    time.sleep(0.005)
print(opened, busy, flush=True)
"""


def test_repeated_readers_never_fail_a_pipeline_run(qp_env: Paths, tmp_path: Path) -> None:
    tiny_plant_a_day(qp_env, D1)
    with connect(qp_env.warehouse_path):
        pass  # the file exists before the readers start
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", STRESS_READER, str(qp_env.warehouse_path), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # the reader loop is running
        defs = build_definitions(qp_env)
        with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
            outcomes = [o for _ in range(2) for o in backfill(defs, instance, "plant_a", D1, D1)]
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    finally:
        reader.kill()
    opened, busy = (int(x) for x in out.split())
    assert [(o.job, o.success) for o in outcomes] == [
        ("land_plant_a", True),
        ("standardize_job", True),
    ] * 2, [(o.job, o.success, o.failed_checks) for o in outcomes]
    assert opened >= 20, (opened, busy)  # the readers really kept the file busy meanwhile
    with connect(qp_env.warehouse_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM standard.production_units").fetchall()[0][0] == 1
