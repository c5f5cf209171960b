"""A killed run never blocks later runs: runs record the process that executes them, and a run
whose process is gone is failed (with the reason in its event log) and its pool slots are freed
before the next run starts and by `qp free-slots`. A run waiting for a slot still obeys SIGTERM.

Every run here is a real Dagster run in a real subprocess on the test's instance (the repository's
dagster.yaml: every pool limited to 1), killed with a real SIGKILL / SIGTERM."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from quality_platform.settings import Paths
from quality_platform.warehouse import WAREHOUSE_POOL
from quality_platform_tests.conftest import tiny_plant_a_day

D1 = dt.date(2026, 3, 16)
QP = [sys.executable, "-m", "quality_platform.cli"]
TRAINING_POOL = "model_training"

# Jobs in the model_training pool, run through quality_platform.runner like every platform run:
# `hold` keeps its slot for a minute, `quick` needs the slot for a moment.
POOL_SCRIPT = textwrap.dedent("""
    import datetime as dt, sys, time
    import dagster as dg
    from quality_platform.cli._common import dagster_instance as _instance
    from quality_platform.runner import run_range

    @dg.op(pool="model_training")
    def hold() -> None:
        time.sleep(60)

    @dg.op(pool="model_training")
    def quick() -> None:
        pass

    inproc = dg.in_process_executor  # like every job of the platform (qp executes runs in its process)
    defs = dg.Definitions(jobs=[dg.GraphDefinition("hold", node_defs=[hold]).to_job(executor_def=inproc),
                                dg.GraphDefinition("quick", node_defs=[quick]).to_job(executor_def=inproc)])
    day = dt.date(2026, 3, 16)
    o = run_range(defs, _instance(), sys.argv[1], "plant_a", day, day)
    print("RESULT", o.run_id, o.success, flush=True)
""")


def _instance() -> dg.DagsterInstance:
    from quality_platform.cli._common import dagster_instance as cli_instance

    return (
        cli_instance()
    )  # the instance `qp` uses: $DAGSTER_HOME with the repository's dagster.yaml


def _wait_for(what: str, cond: Callable[[], object], timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _holder_of(instance: dg.DagsterInstance, pool: str) -> dg.DagsterRun | None:
    """The STARTED run holding a slot of ``pool`` (the test starts one run at a time)."""
    for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots:
        run = instance.get_run_by_id(slot.run_id)
        if run is not None and run.status == dg.DagsterRunStatus.STARTED:
            return run
    return None


def _kill(p: subprocess.Popen[str]) -> None:
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)


def _kill_while_holding(
    argv: list[str], instance: dg.DagsterInstance, pool: str
) -> tuple[object, int]:
    """Start ``argv``, SIGKILL it once its run holds a slot of ``pool``; returns (that run, the pid)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        dead = _wait_for(
            f"the run of {argv[1:3]} to hold a {pool} slot", lambda: _holder_of(instance, pool)
        )
        _kill(proc)
    finally:
        proc.kill()
    return dead, proc.pid


def _run(argv: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """A run in its own process, bounded: a run that hangs fails the test instead of blocking it."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{argv[3:]} still waiting after {timeout} s (a dead run blocks it): "
            f"{(exc.stderr or b'')[-2000:]!r}"
        ) from None


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    return " | ".join(r.event_log_entry.dagster_event.message or "" for r in records)


def _slots_of(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    storage = instance.event_log_storage
    return [
        pool
        for pool in storage.get_concurrency_keys()
        for slot in storage.get_concurrency_info(pool).claimed_slots
        if slot.run_id == run_id
    ]


def test_killed_backfill_does_not_block_the_next(qp_env: Paths) -> None:
    """`qp backfill` SIGKILLed while its land step holds the warehouse slot (the step waits for the
    warehouse file, which a reader here holds): the next `qp backfill` completes."""
    tiny_plant_a_day(qp_env, D1)
    wh = qp_env.warehouse_path
    wh.parent.mkdir(parents=True)
    duckdb.connect(str(wh)).close()
    instance = _instance()
    argv = [
        *QP,
        "backfill",
        "--plant",
        "plant_a",
        "--from",
        D1.isoformat(),
        "--to",
        D1.isoformat(),
        "--json",
    ]
    reader = duckdb.connect(str(wh), read_only=True)  # the land step cannot open the file meanwhile
    try:
        dead, _ = _kill_while_holding(argv, instance, WAREHOUSE_POOL)
    finally:
        reader.close()
    assert isinstance(dead, dg.DagsterRun) and dead.job_name == "land_plant_a"
    assert (
        instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.STARTED
    )  # nobody said it died

    again = _run(argv)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = json.loads(again.stdout)
    assert [(r["job"], r["success"]) for r in runs] == [
        ("land_plant_a", True),
        ("standardize_job", True),
    ]
    after = instance.get_run_by_id(dead.run_id)
    assert after is not None and after.status == dg.DagsterRunStatus.FAILURE
    assert "process" in _failure_message(instance, dead.run_id) and "is gone" in _failure_message(
        instance, dead.run_id
    )
    assert _slots_of(instance, dead.run_id) == []
    with duckdb.connect(str(wh), read_only=True) as con:  # re-runs stay idempotent
        assert con.execute("SELECT count(*) FROM standard.production_units").fetchall()[0][0] == 1


def test_free_slots_reaps_a_killed_run_in_every_pool(qp_env: Paths, tmp_path: Path) -> None:
    """A run SIGKILLed while it holds the model_training slot: `qp free-slots` fails it and frees its
    slot, and the next run in that pool completes."""
    script = tmp_path / "pool_job.py"
    script.write_text(POOL_SCRIPT)
    instance = _instance()
    dead, pid = _kill_while_holding([sys.executable, str(script), "hold"], instance, TRAINING_POOL)
    assert isinstance(dead, dg.DagsterRun)

    res = _run([*QP, "free-slots", "--json"], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert [r["run_id"] for r in out["reaped"]] == [dead.run_id]
    assert out["reaped"][0]["pid"] == pid and out["reaped"][0]["pools"] == [TRAINING_POOL]
    assert dead.run_id in out["freed"] and out["active"] == []
    assert (
        TRAINING_POOL in out["pools"]
    )  # every pool of the instance is looked at, not only the warehouse
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    assert "is gone" in _failure_message(instance, dead.run_id)
    assert _slots_of(instance, dead.run_id) == []

    quick = _run([sys.executable, str(script), "quick"], timeout=120)
    assert quick.returncode == 0 and " True" in quick.stdout, quick.stderr[-3000:]


def test_a_run_waiting_for_a_slot_obeys_sigterm(qp_env: Paths, tmp_path: Path) -> None:
    """A live run holds the model_training slot; a second run waits for it and is SIGTERMed: it
    stops within seconds (was: ignored SIGTERM and kept polling), and gives back its place in the queue."""
    script = tmp_path / "pool_job.py"
    script.write_text(POOL_SCRIPT)
    instance = _instance()
    holder = subprocess.Popen(
        [sys.executable, str(script), "hold"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    waiter = None
    try:
        _wait_for("the hold run to claim the slot", lambda: _holder_of(instance, TRAINING_POOL))
        waiter = subprocess.Popen(
            [sys.executable, str(script), "quick"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        info = lambda: instance.event_log_storage.get_concurrency_info(TRAINING_POOL)  # noqa: E731
        _wait_for("the second run to queue for the slot", lambda: info().pending_run_ids)
        waiting = next(iter(info().pending_run_ids))
        time.sleep(1.0)
        waiter.send_signal(signal.SIGTERM)
        try:
            rc = waiter.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the waiting run ignored SIGTERM for 30 s")
        assert rc == 128 + signal.SIGTERM, waiter.stderr.read()[-3000:] if waiter.stderr else ""
        run = instance.get_run_by_id(waiting)
        assert run is not None and run.status == dg.DagsterRunStatus.CANCELED
        assert waiting not in info().pending_run_ids
        assert holder.poll() is None  # the live holder was left alone
    finally:
        for p in (holder, waiter):
            if p is not None:
                p.kill()
                p.wait(timeout=30)
