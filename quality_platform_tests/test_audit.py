"""Audit log: append/read/filter, hash chain, append-only triggers, tamper detection, concurrency."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quality_platform.audit import (
    DEFAULT_ACTIONS,
    GENESIS_HASH,
    TRIGGERS,
    AuditLog,
    AuditRecord,
    audit_db_path,
    record_hash,
)
from quality_platform.settings import Paths


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit" / "audit.db")


def _fill(log: AuditLog, n: int = 5) -> list[AuditRecord]:
    return [
        log.append("gate", "system:pipeline", subject=f"model:m/{i}", refs={"i": i})
        for i in range(n)
    ]


def _tamper(
    log: AuditLog, *statements: tuple[str, tuple] | str, restore_triggers: bool = True
) -> None:
    """What an attacker with file access does: drop the triggers, edit the table and (a careful
    one, the default) put the triggers back, so only the chain shows the tampering."""
    con = sqlite3.connect(log.path, isolation_level=None)
    try:
        for trig in TRIGGERS:
            con.execute(f"DROP TRIGGER IF EXISTS {trig}")
        for st in statements:
            sql, params = (st, ()) if isinstance(st, str) else st
            con.execute(sql, params)
        if restore_triggers:
            for sql in TRIGGERS.values():
                con.execute(sql)
    finally:
        con.close()


def _problems_for(result, seq: int) -> list[str]:
    return [
        p for p in result.problems if p.startswith(f"seq {seq}:") or p.startswith(f"seq {seq}..")
    ]


# ------------------------------------------------------------------------------------ basics


def test_append_and_read_back_with_filters(log: AuditLog) -> None:
    import pandas as pd  # imported here: the spawned writer processes import this module

    assert log.path.is_file()
    assert "promote" in DEFAULT_ACTIONS and "incident" in DEFAULT_ACTIONS
    r1 = log.append(
        "gate",
        "scheduler",
        actor_kind="system",
        subject="model:defect_model/3",
        plant="plant_a",
        outcome="failed",
        reason="recall below threshold",
        refs={"check": "min_recall", "run_id": "abc"},
    )
    r2 = log.append(
        "approve", "alice", subject="model:defect_model/3", plant="plant_a", reason="ok"
    )
    r3 = log.append("promote", "alice", subject="model:defect_model/3", plant="plant_b")
    log.append(
        "predict", "scheduler", actor_kind="system", subject="batch:2024-05-01", outcome="info"
    )

    assert (r1.seq, r2.seq, r3.seq) == (1, 2, 3)
    assert len(r1.event_id) == 32 and r1.event_id != r2.event_id
    assert r1.ts_utc.endswith("Z") and len(r1.ts_utc) == len("2024-01-01T00:00:00.000000Z")
    assert r1.ts_utc <= r2.ts_utc <= r3.ts_utc

    all_ = log.records()
    assert [r.seq for r in all_] == [1, 2, 3, 4]
    assert all_[0] == r1
    assert all_[0].refs == {"check": "min_recall", "run_id": "abc"}
    assert [r.seq for r in log.records(action="approve")] == [2]
    assert [r.seq for r in log.records(action=["approve", "promote"])] == [2, 3]
    assert log.records(action=[]) == []
    assert [r.seq for r in log.records(subject="model:defect_model/3")] == [1, 2, 3]
    assert [r.seq for r in log.records(subject_prefix="model:")] == [1, 2, 3]
    assert [r.seq for r in log.records(subject_prefix="batch:")] == [4]
    assert [r.seq for r in log.records(subject_prefix="model:defect_model/3_")] == []
    assert [r.seq for r in log.records(plant="plant_a")] == [1, 2]
    assert [r.seq for r in log.records(plant="plant_a", action="approve")] == [2]
    assert [r.seq for r in log.records(limit=2)] == [3, 4]  # the newest two, oldest first
    assert log.records(limit=0) == []

    # time filters: since inclusive, until exclusive; strings and datetimes, naive = UTC
    t2 = datetime.fromisoformat(r2.ts_utc)
    assert [r.seq for r in log.records(since=r2.ts_utc)] == [2, 3, 4]
    assert [r.seq for r in log.records(until=r2.ts_utc)] == [1]
    assert [r.seq for r in log.records(since=t2, until=r3.ts_utc)] == [2]
    assert [r.seq for r in log.records(since=t2.replace(tzinfo=None))] == [2, 3, 4]
    later = datetime.now(UTC) + timedelta(days=1)
    assert log.records(since=later) == []
    assert len(log.records(until=later.isoformat())) == 4
    with pytest.raises(ValueError, match="ISO-8601"):
        log.records(since="yesterday")

    df = log.frame(plant="plant_a")
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == list(AuditRecord.__dataclass_fields__)
    assert df["seq"].tolist() == [1, 2]
    assert df.loc[0, "refs"] == {"check": "min_recall", "run_id": "abc"}
    empty = log.frame(action="rollback")
    assert empty.empty and list(empty.columns) == list(df.columns)

    # a second instance on the same file sees the same records
    assert AuditLog(log.path).records() == all_


def test_invalid_arguments_are_rejected(log: AuditLog) -> None:
    for bad in ("", "   ", None, 3):
        with pytest.raises(ValueError, match="actor"):
            log.append("gate", bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="action"):
            log.append(bad, "alice")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outcome"):
        log.append("gate", "alice", outcome="maybe")
    with pytest.raises(ValueError, match="actor_kind"):
        log.append("gate", "alice", actor_kind="robot")
    with pytest.raises(ValueError, match="refs"):
        log.append("gate", "alice", refs=["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        log.append("gate", "alice", refs={"x": object()})
    with pytest.raises(ValueError, match="non-finite"):
        log.append("gate", "alice", refs={"x": float("nan")})
    with pytest.raises(ValueError, match="subject"):
        log.append("gate", "alice", subject=5)  # type: ignore[arg-type]
    assert log.records() == []
    assert log.verify().ok


def test_refs_are_canonicalised_and_round_trip(log: AuditLog) -> None:
    import pandas as pd

    refs = {
        "z": 1,
        "a": {"when": datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "day": date(2024, 5, 1)},
        "path": Path("/data/models/m.cbm"),
        "nested": {"b": [1, 2.5, None, True], "a": ("x", "y")},
        "tags": {"beta", "alpha"},
        "price": Decimal("1.10"),
        "ts": pd.Timestamp("2024-05-01T00:00:00Z"),
        "n": pd.Series([7]).iloc[0],  # a numpy scalar
        3: "int key",
        "umlaut": "Prüfstand",
    }
    expected = {
        "z": 1,
        "a": {"when": "2024-05-01T12:30:00+00:00", "day": "2024-05-01"},
        "path": "/data/models/m.cbm",
        "nested": {"b": [1, 2.5, None, True], "a": ["x", "y"]},
        "tags": ["alpha", "beta"],
        "price": "1.10",
        "ts": "2024-05-01T00:00:00+00:00",
        "n": 7,
        "3": "int key",
        "umlaut": "Prüfstand",
    }
    rec = log.append("register", "alice", refs=refs)
    assert rec.refs == expected
    assert log.records()[0].refs == expected
    raw = sqlite3.connect(log.path).execute("SELECT refs FROM audit_log").fetchone()[0]
    assert raw.startswith('{"3":"int key","a":{"day":"2024-05-01"')  # sorted keys
    assert " " not in raw.replace("int key", "")  # no whitespace
    # key order of the input does not change the stored text or the hash inputs
    rec2 = log.append("register", "alice", refs=dict(reversed(list(refs.items()))))
    raw2 = sqlite3.connect(log.path).execute("SELECT refs FROM audit_log WHERE seq = 2").fetchone()
    assert raw2[0] == raw and rec2.refs == expected
    assert log.append("run", "alice").refs == {}
    assert log.verify().ok


def test_default_path_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QP_AUDIT_DB", raising=False)
    monkeypatch.setenv("QP_DATA_DIR", str(tmp_path / "data"))
    assert audit_db_path() == (tmp_path / "data").resolve() / "audit" / "audit.db"
    other = Paths(data_dir=tmp_path / "other", config_dir=tmp_path / "other")
    assert audit_db_path(other) == tmp_path / "other" / "audit" / "audit.db"

    target = tmp_path / "elsewhere" / "my_audit.db"
    monkeypatch.setenv("QP_AUDIT_DB", str(target))
    assert audit_db_path() == target
    log = AuditLog()
    assert log.path == target
    log.append("run", "alice")
    assert target.is_file()
    assert not (tmp_path / "data" / "audit").exists()
    assert AuditLog(str(target)).records()[0].actor == "alice"


# ------------------------------------------------------------------------ chain and triggers


def test_records_are_hash_chained(log: AuditLog) -> None:
    recs = _fill(log, 5)
    assert recs[0].prev_hash == GENESIS_HASH
    for a, b in itertools.pairwise(recs):
        assert b.prev_hash == a.hash
    for r in recs:
        assert len(r.hash) == 64 and r.hash == record_hash(r.__dict__)
    result = log.verify()
    assert result.ok and result.records == 5 and result.problems == []


def test_update_and_delete_are_refused_by_triggers(log: AuditLog) -> None:
    _fill(log, 3)
    con = sqlite3.connect(log.path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE"):
            con.execute("UPDATE audit_log SET reason = 'changed' WHERE seq = 2")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE"):
            con.execute("DELETE FROM audit_log WHERE seq = 3")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE"):
            con.execute("DELETE FROM audit_log")
        # an insert that does not extend the chain is refused too
        with pytest.raises(sqlite3.IntegrityError, match="hash chain"):
            con.execute(
                "INSERT INTO audit_log (seq, event_id, ts_utc, actor, actor_kind, action, outcome,"
                " refs, prev_hash, hash) VALUES (4, 'e', 't', 'mallory', 'user', 'approve', 'ok',"
                " '{}', ?, 'h')",
                (GENESIS_HASH,),
            )
    finally:
        con.close()
    assert [r.seq for r in log.records()] == [1, 2, 3]
    assert log.verify().ok


# ---------------------------------------------------------------------------- tamper detection


def test_verify_detects_edit(log: AuditLog) -> None:
    _fill(log, 5)
    _tamper(log, "UPDATE audit_log SET reason = 'looked fine to me' WHERE seq = 3")
    result = log.verify()
    assert not result.ok and result.records == 5
    assert result.problems == ["seq 3: content does not match its hash (record edited)"]


def test_verify_detects_edit_with_recomputed_hash(log: AuditLog) -> None:
    recs = _fill(log, 5)
    forged = {**recs[2].__dict__, "outcome": "failed"}
    _tamper(
        log,
        (
            "UPDATE audit_log SET outcome = 'failed', hash = ? WHERE seq = 3",
            (record_hash(forged),),
        ),
    )
    result = log.verify()
    assert not result.ok
    assert _problems_for(result, 3) == []  # seq 3 itself is self-consistent ...
    (problem,) = result.problems  # ... but seq 4 no longer links to it
    assert problem.startswith("seq 4: prev_hash does not match the hash of seq 3")
    assert "seq 3 rewritten" in problem


def test_verify_detects_deletion(log: AuditLog) -> None:
    _fill(log, 5)
    _tamper(log, "DELETE FROM audit_log WHERE seq = 3")
    result = log.verify()
    assert not result.ok and result.records == 4
    problems = _problems_for(result, 4)
    assert result.problems == problems
    assert "seq 4: seq 3 missing (record deleted)" in problems
    assert any("record deleted before it" in p for p in problems)


def test_verify_detects_deletion_of_first_and_newest_records(tmp_path: Path) -> None:
    first = AuditLog(tmp_path / "first.db")
    _fill(first, 3)
    _tamper(first, "DELETE FROM audit_log WHERE seq = 1")
    problems = first.verify().problems
    assert "seq 2: seq 1 missing (record deleted)" in problems
    assert any(p.startswith("seq 2:") and "earlier records deleted" in p for p in problems)

    newest = AuditLog(tmp_path / "newest.db")
    _fill(newest, 5)
    _tamper(newest, "DELETE FROM audit_log WHERE seq >= 4")
    result = newest.verify()
    assert result.records == 3
    assert result.problems == ["seq 4..5: after seq 3 deleted (sequence counter reached 5)"]
    # appending afterwards does not reuse the deleted seqs, so the gap stays visible
    assert newest.append("run", "alice").seq == 6
    assert newest.verify().problems == ["seq 6: seq 4..5 missing (record deleted)"]


def test_verify_detects_insertion(log: AuditLog) -> None:
    recs = _fill(log, 5)
    # The attacker makes room at seq 3 by renumbering the later records and inserts a record
    # that links correctly to seq 2 and carries a correct hash of its own.
    forged = {
        **recs[2].__dict__,
        "event_id": "f" * 32,
        "action": "approve",
        "actor": "mallory",
        "refs": {},
        "prev_hash": recs[1].hash,
    }
    forged["hash"] = record_hash(forged)
    cols = [c for c in AuditRecord.__dataclass_fields__]
    values = [forged[c] if c != "refs" else "{}" for c in cols]
    _tamper(
        log,
        "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000",
        (
            f"INSERT INTO audit_log ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
            tuple(values),
        ),
    )
    assert [r.actor for r in log.records()][2] == "mallory"
    result = log.verify()
    assert not result.ok and result.records == 6
    assert _problems_for(result, 3) == []  # the forged record is self-consistent
    assert (
        "seq 4: prev_hash links to seq 2, so seq 3 was inserted before it (record inserted)"
        in result.problems
    )
    # the renumbered records no longer match their hashes
    assert "seq 4: content does not match its hash (record edited)" in result.problems


def test_verify_detects_reordering(log: AuditLog) -> None:
    _fill(log, 5)
    # swap the positions of seq 2 and seq 3
    _tamper(
        log,
        "UPDATE audit_log SET seq = 1002 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 1002",
    )
    result = log.verify()
    assert not result.ok and result.records == 5
    assert (
        "seq 2: prev_hash links to seq 3, which is stored after it (records reordered)"
        in result.problems
    )
    assert "seq 2: content does not match its hash (record edited)" in result.problems
    assert any(p.startswith("seq 3:") for p in result.problems)
    assert any(p.startswith("seq 4:") for p in result.problems)  # 4 followed the old seq 3
    assert _problems_for(result, 5) == [] and _problems_for(result, 1) == []


def _triggers(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    finally:
        con.close()


def test_dropped_trigger_is_reported_recreated_and_recorded(log: AuditLog) -> None:
    _fill(log, 3)
    con = sqlite3.connect(log.path, isolation_level=None)  # nothing else touched
    con.execute("DROP TRIGGER audit_log_no_delete")
    con.close()
    # verify before anything re-creates it: the missing trigger is named
    result = log.verify()
    assert not result.ok
    assert result.problems == [
        "seq 0: append-only triggers audit_log_no_delete (dropped): the log is not protected "
        "against edits and deletions (file tampered)"
    ]
    # the next open re-creates it and puts the event into the chain
    reopened = AuditLog(log.path)
    assert _triggers(log.path) == set(TRIGGERS)
    rec = reopened.records()[-1]
    assert (rec.seq, rec.action, rec.actor, rec.actor_kind, rec.outcome) == (
        4,
        "integrity",
        "system:audit",
        "system",
        "failed",
    )
    assert rec.refs["triggers_recreated"] == ["audit_log_no_delete"]
    with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE"):
        con = sqlite3.connect(log.path, isolation_level=None)
        try:
            con.execute("DELETE FROM audit_log WHERE seq = 4")
        finally:
            con.close()
    # verify is not OK afterwards, for good; opening again records nothing more
    AuditLog(log.path).append("run", "alice")
    result = AuditLog(log.path).verify()
    assert result.records == 5
    assert result.problems == [
        f"seq 4: trigger audit_log_no_delete found dropped at {rec.ts_utc} and re-created "
        "(the log was not append-only before it)"
    ]


def test_altered_trigger_is_replaced_and_recorded(log: AuditLog) -> None:
    _fill(log, 2)
    con = sqlite3.connect(log.path, isolation_level=None)
    con.execute("DROP TRIGGER audit_log_chain")
    con.execute(
        "CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log WHEN 0 BEGIN SELECT 1; END"
    )
    con.close()
    assert "audit_log_chain (altered)" in log.verify().problems[0]
    AuditLog(log.path)
    result = log.verify()
    (problem,) = result.problems
    assert problem.startswith("seq 3: trigger audit_log_chain found altered at ")
    # the real chain trigger is back
    con = sqlite3.connect(log.path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="hash chain"):
            con.execute(
                "INSERT INTO audit_log (seq, event_id, ts_utc, actor, actor_kind, action, outcome,"
                " refs, prev_hash, hash) VALUES (9, 'e', 't', 'mallory', 'user', 'approve', 'ok',"
                " '{}', ?, 'h')",
                (GENESIS_HASH,),
            )
    finally:
        con.close()


def test_opening_an_intact_log_writes_nothing(log: AuditLog) -> None:
    _fill(log, 2)
    for _ in range(3):
        AuditLog(log.path)
    assert [r.action for r in log.records()] == ["gate", "gate"] and log.verify().ok


# -------------------------------------------------------------------------------- concurrency


def _writer(path: str, worker: int, n: int, start: Any) -> None:
    log = AuditLog(path)  # every process also creates/opens the schema concurrently
    start.wait(timeout=30)  # then all of them append at the same time
    for i in range(n):
        log.append(
            "predict", f"worker-{worker}", actor_kind="system", refs={"worker": worker, "i": i}
        )


def test_concurrent_writers_from_several_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "audit.db"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(5)
    procs = [ctx.Process(target=_writer, args=(str(path), w, 50, start)) for w in range(4)]
    for p in procs:
        p.start()
    start.wait(timeout=30)
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]

    log = AuditLog(path)
    recs = log.records()
    assert [r.seq for r in recs] == list(range(1, 201))
    assert sorted((r.refs["worker"], r.refs["i"]) for r in recs) == [
        (w, i) for w in range(4) for i in range(50)
    ]
    assert [r.ts_utc for r in recs] == sorted(r.ts_utc for r in recs)  # seq order = time order
    for w in range(4):  # each writer's own records stay in its order
        assert [r.refs["i"] for r in recs if r.actor == f"worker-{w}"] == list(range(50))
    result = log.verify()
    assert result.ok and result.records == 200, result.problems
