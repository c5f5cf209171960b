"""`qp audit verify` and `qp audit export` (F23) through the CLI: tampering is named by seq, the export
is the complete record of a window with its chain anchor, refusals are audited, and concurrent writers
(CLI processes, API processes and a Dagster run) never fork or corrupt the chain."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from quality_platform.audit import AuditLog, AuditRecord, audit_db_path, record_hash
from quality_platform.cli import main
from quality_platform.settings import Paths
from quality_platform_tests.conftest import GOV_D1, GovEnv
from quality_platform_tests.test_audit import _tamper as tamper_log


def qp(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main([*argv, "--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out) if out.strip() else {}


def _tamper(path: Path, *statements: tuple[str, tuple] | str) -> None:
    """What an attacker with file access does (the one helper of test_audit.py, on a file path)."""
    tamper_log(AuditLog(path), *statements)


def _fill(log: AuditLog, n: int) -> list[AuditRecord]:
    return [
        log.append(
            "gate", "system:test", actor_kind="system", subject=f"model:m/{i}", refs={"i": i}
        )
        for i in range(n)
    ]


def test_verify_names_each_kind_of_tampering(
    qp_env: Paths,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clean = tmp_path / "clean.db"
    recs = _fill(AuditLog(clean), 6)
    monkeypatch.setenv("QP_AUDIT_DB", str(clean))
    rc, out = qp(capsys, "audit", "verify", "--as", "aud.it")
    assert (
        rc == 0 and out["ok"] and out["problems"] == [] and out["records"] == 7
    )  # + the identity record
    assert AuditLog(clean).records(action="audit_verify")[-1].outcome == "ok"

    forged = {
        **recs[2].__dict__,
        "event_id": "f" * 32,
        "actor": "mallory",
        "action": "approve",
        "refs": {},
        "prev_hash": recs[1].hash,
    }
    forged["hash"] = record_hash(forged)
    cols = list(AuditRecord.__dataclass_fields__)
    cases = {
        "edited": (
            ["UPDATE audit_log SET reason = 'looked fine to me' WHERE seq = 3"],
            "seq 3: content does not match its hash (record edited)",
        ),
        "deleted": (
            ["DELETE FROM audit_log WHERE seq = 4"],
            "seq 5: seq 4 missing (record deleted)",
        ),
        "inserted": (
            [
                "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3",
                "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000",
                (
                    f"INSERT INTO audit_log ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                    tuple(forged[c] if c != "refs" else "{}" for c in cols),
                ),
            ],
            "seq 4: prev_hash links to seq 2, so seq 3 was inserted before it (record inserted)",
        ),
        "reordered": (
            [
                "UPDATE audit_log SET seq = 1002 WHERE seq = 2",
                "UPDATE audit_log SET seq = 2 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = 1002",
            ],
            "seq 2: prev_hash links to seq 3, which is stored after it (records reordered)",
        ),
    }
    for name, (statements, expected) in cases.items():
        db = tmp_path / f"{name}.db"
        shutil.copy(clean, db)
        _tamper(db, *statements)
        monkeypatch.setenv("QP_AUDIT_DB", str(db))
        rc, out = qp(capsys, "audit", "verify", "--as", "carl.control")
        assert rc == 1 and not out["ok"], name
        assert expected in out["problems"], (name, out["problems"])
        # the failed verification is itself on the record
        assert AuditLog(db).records(action="audit_verify")[-1].outcome == "failed"
    # text output names the problem too
    monkeypatch.setenv("QP_AUDIT_DB", str(tmp_path / "edited.db"))
    capsys.readouterr()
    assert main(["audit", "verify", "--as", "olga.ops"]) == 1
    assert "seq 3: content does not match its hash (record edited)" in capsys.readouterr().out


def test_verify_and_export_refused_for_roles_without_the_action(
    qp_env: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    log = AuditLog(audit_db_path(qp_env))
    _fill(log, 2)
    rc, out = qp(capsys, "audit", "verify", "--as", "quinn.quality")
    assert rc == 2 and "may not audit_verify" in out["error"]
    rc, out = qp(
        capsys, "audit", "export", "--from", "2020-01-01", "--to", "2100-01-01", "--as", "mia.model"
    )
    assert rc == 2 and "may not audit_export" in out["error"]
    denied = [(r.action, r.actor) for r in log.records() if r.outcome == "denied"]
    assert denied == [("audit_verify", "quinn.quality"), ("audit_export", "mia.model")]
    # operations_lead may verify but not export
    assert qp(capsys, "audit", "verify", "--as", "olga.ops")[0] == 0
    assert (
        qp(
            capsys,
            "audit",
            "export",
            "--from",
            "2020-01-01",
            "--to",
            "2100-01-01",
            "--as",
            "olga.ops",
        )[0]
        == 2
    )


def test_export_is_the_complete_record_of_a_window(
    qp_env: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = AuditLog(audit_db_path(qp_env))
    before = log.append("run", "system:test", actor_kind="system", reason="before the window")
    time.sleep(0.01)
    t1 = dt.datetime.now(dt.UTC)
    inside = [
        log.append("override", "quinn.quality", plant="plant_a", subject="unit:plant_a/A-1"),
        log.append("override", "quinn.quality", plant="plant_b", subject="unit:plant_b/B-1"),
        log.append(
            "predict",
            "system:dagster",
            actor_kind="system",
            subject="model:defect_model/1",
            refs={"partitions": {"plant_a": ["2026-03-16", "2026-03-16"]}},
        ),  # key names plant_a
        log.append(
            "retrain", "system:retrain_sensor", actor_kind="system", refs={"plants": ["plant_b"]}
        ),
        log.append(
            "approve", "carl.control", subject="model:defect_model/1"
        ),  # platform-wide, no plant
        log.append("query", "paul.plant_a", subject="plant:plant_a"),  # subject names plant_a
        log.append(
            "query", "dana.data", refs={"tables": ["raw.plant_a_units"]}
        ),  # only a substring: no
    ]
    time.sleep(0.01)
    t2 = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    log.append("run", "system:test", actor_kind="system", reason="after the window")

    out_file = tmp_path / "export.jsonl"
    rc, out = qp(
        capsys,
        "audit",
        "export",
        "--from",
        t1.isoformat(),
        "--to",
        t2.isoformat(),
        "--out",
        str(out_file),
        "--as",
        "aud.it",
    )
    # the identity record of this very command is written before the export reads: after t2, not in it
    assert rc == 0 and out["count"] == len(inside)
    assert [r["seq"] for r in out["records"]] == [r.seq for r in inside]
    a = out["anchor"]
    assert a["verified"] and a["prev_hash"] == before.hash and a["hash"] == inside[-1].hash
    assert (a["first_seq"], a["last_seq"]) == (inside[0].seq, inside[-1].seq)
    text = out_file.read_text()
    assert [json.loads(line)["seq"] for line in text.splitlines()] == [r.seq for r in inside]
    assert out["out"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()

    rc, out = qp(
        capsys,
        "audit",
        "export",
        "--from",
        t1.isoformat(),
        "--to",
        t2.isoformat(),
        "--plant",
        "plant_a",
        "--as",
        "carl.control",
    )
    assert rc == 0 and [r["seq"] for r in out["records"]] == [inside[i].seq for i in (0, 2, 5)]
    assert out["anchor"]["hash"] == inside[-1].hash  # the anchor is the whole window's
    exports = log.records(action="audit_export")
    assert [(r.actor, r.plant, r.refs["count"]) for r in exports] == [
        ("aud.it", None, 7),
        ("carl.control", "plant_a", 3),
    ]

    # a plant manager may not export, not even their own plant
    assert (
        qp(
            capsys,
            "audit",
            "export",
            "--from",
            t1.isoformat(),
            "--to",
            t2.isoformat(),
            "--plant",
            "plant_a",
            "--as",
            "paul.plant_a",
        )[0]
        == 2
    )
    # an edited record inside the window: the export says the window does not verify (exit 1)
    _tamper(log.path, ("UPDATE audit_log SET reason = 'edited' WHERE seq = ?", (inside[3].seq,)))
    rc, out = qp(
        capsys,
        "audit",
        "export",
        "--from",
        t1.isoformat(),
        "--to",
        t2.isoformat(),
        "--as",
        "aud.it",
    )
    assert rc == 1 and not out["anchor"]["verified"]
    assert (
        f"seq {inside[3].seq}: content does not match its hash (record edited)"
        in out["anchor"]["problems"]
    )
    assert (
        qp(
            capsys,
            "audit",
            "export",
            "--from",
            t2.isoformat(),
            "--to",
            t1.isoformat(),
            "--as",
            "aud.it",
        )[0]
        == 2
    )


APPENDER = textwrap.dedent("""
    import sys, time
    from quality_platform.audit import AuditLog
    path, worker, start, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    log = AuditLog(path)
    while time.time() < start:
        time.sleep(0.005)
    n = 0
    while time.time() < start + seconds:
        log.append("predict", f"system:worker-{worker}", actor_kind="system", refs={"worker": worker, "i": n})
        n += 1
        time.sleep(0.01)
    print(n)
""")


def test_concurrent_cli_api_and_dagster_writers_keep_one_chain(gov_env: GovEnv) -> None:
    """Two API writer processes append for 15 s while two real `qp` processes verify (each writes an
    identity and a verification record) and a Dagster score run in this process writes its
    prediction record: one unbroken chain, nothing lost, per-writer order kept."""
    from quality_platform.definitions import build_definitions
    from quality_platform.defs.ml.jobs import SCORE_JOB
    from quality_platform.runner import run_range

    log = gov_env.audit
    n0 = len(log.records())
    start = time.time() + 1.0
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(log.path), str(w), str(start), "15"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(2)
    ]
    qp_bin = Path(sys.executable).parent / "qp"
    clis = [
        subprocess.Popen(
            [str(qp_bin), "audit", "verify", "--as", "olga.ops", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    defs = build_definitions(gov_env.paths)
    while time.time() < start + 2:
        time.sleep(0.05)
    run = run_range(
        defs, gov_env.instance, SCORE_JOB, "plant_a", GOV_D1, GOV_D1 + dt.timedelta(days=5)
    )
    assert run.success
    counts = []
    for p in workers:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0
        counts.append(int(out.strip()))
    for p in clis:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        assert json.loads(out)["ok"]

    res = log.verify()
    assert res.ok, res.problems  # no fork, no corruption
    recs = log.records()
    assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
    assert (
        len(recs) == n0 + sum(counts) + 2 * 2 + 1
    )  # workers + (identity + audit_verify) per qp + the run's batch
    for w, n in enumerate(counts):
        mine = [r.refs["i"] for r in recs if r.actor == f"system:worker-{w}"]
        assert mine == list(range(n)) and n > 100
    batch = [r for r in recs if r.action == "predict" and r.refs.get("run_id") == run.run_id]
    verifies = [r for r in recs if r.action == "audit_verify"]
    assert len(batch) == 1 and len(verifies) == 2
    worker_seqs = [r.seq for r in recs if r.actor.startswith("system:worker-")]
    # the writers really overlapped: the run's record and the CLI's records fall among the workers' records
    for r in [*batch, *verifies]:
        assert min(worker_seqs) < r.seq < max(worker_seqs), r


def test_verify_names_dropped_triggers_even_though_opening_recreates_them(
    qp_env: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    """`qp audit verify` opens the log (which re-creates the trigger) before it verifies: the record of
    the re-creation makes it fail, this time and every later time."""
    log = AuditLog(audit_db_path(qp_env))
    _fill(log, 3)
    con = sqlite3.connect(log.path, isolation_level=None)
    con.execute("DROP TRIGGER audit_log_no_update")
    con.close()
    for _ in range(2):
        rc, out = qp(capsys, "audit", "verify", "--as", "aud.it")
        assert rc == 1 and not out["ok"]
        (problem,) = out["problems"]
        assert problem.startswith("seq 4: trigger audit_log_no_update found dropped at ")
    assert [r.action for r in log.records(action="integrity")] == ["integrity"]


def test_export_and_anchor_files_catch_a_truncated_tail(
    qp_env: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The head in `qp audit export` output and the file of `qp audit anchor --out` are anchors for
    `qp audit verify --anchor`: deleting the newest records and lowering sqlite_sequence no longer
    passes as 'OK, chain intact'."""
    log = AuditLog(audit_db_path(qp_env))
    recs = _fill(log, 5)
    rc, exported = qp(
        capsys, "audit", "export", "--from", "2020-01-01", "--to", "2100-01-01", "--as", "aud.it"
    )
    assert rc == 0
    # the head it covered: the newest record before the export's own record
    assert (
        exported["head"]["seq"] == exported["anchor"]["last_seq"] == recs[-1].seq + 1
    )  # + identity record
    assert log.records(action="audit_export")[-1].refs["head"] == exported["head"]
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(exported))
    anchor_file = tmp_path / "head.txt"
    rc, anchored = qp(capsys, "audit", "anchor", "--out", str(anchor_file), "--as", "aud.it")
    last = log.records()[-1]
    assert (
        rc == 0
        and last.action == "audit_anchor"
        and anchored["anchor"] == f"{last.seq}:{last.hash}"
    )
    assert anchor_file.read_text() == f"{last.seq}:{last.hash}\n"

    rc, out = qp(
        capsys,
        "audit",
        "verify",
        "--anchor",
        str(export_file),
        "--anchor",
        str(anchor_file),
        "--as",
        "aud.it",
    )
    assert (
        rc == 0 and out["ok"] and out["anchors"]["checked"] == 3
    )  # export: head + window end; anchor file
    assert out["anchors"]["by_source"] == {"mlflow": 0, "dagster": 0, "file": 3}

    keep = recs[2].seq
    _tamper(
        log.path,
        ("DELETE FROM audit_log WHERE seq > ?", (keep,)),
        ("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit_log'", (keep,)),
    )
    assert log.verify().ok  # without anchors the file alone looks intact
    rc, out = qp(
        capsys,
        "audit",
        "verify",
        "--anchor",
        str(anchor_file),
        "--anchor",
        str(export_file),
        "--as",
        "aud.it",
    )
    assert rc == 1 and not out["ok"]
    # this call's identity record took seq keep + 1 before the chain was verified
    assert log.records()[keep].action == "identity"
    head = exported["head"]["seq"]
    assert (
        f"seq {keep + 2}..{head} missing: the tail was truncated (chain head seq {head} anchored in file "
        f"{export_file} (head); file {export_file} (window's last record))"
    ) in out["problems"]
    assert (
        f"seq {keep + 2}..{last.seq} missing: the tail was truncated (chain head seq {last.seq} anchored "
        f"in file {anchor_file} line 1)"
    ) in out["problems"]
    assert AuditLog(log.path).records(action="audit_verify")[-1].outcome == "failed"
    # text output says how many anchors were checked, from where
    capsys.readouterr()
    assert main(["audit", "verify", "--anchor", str(anchor_file), "--as", "aud.it"]) == 1
    text = capsys.readouterr().out
    assert "the tail was truncated" in text
    assert (
        "checked against 1 anchor(s): 0 from MLflow model versions, 0 from Dagster runs, 1 from files"
        in text
    )
    # a file that holds no anchor is an error of the call (exit 2), not a verification result
    (tmp_path / "junk.txt").write_text("hello\n")
    rc, out = qp(
        capsys, "audit", "verify", "--anchor", str(tmp_path / "junk.txt"), "--as", "aud.it"
    )
    assert rc == 2 and "not an audit anchor" in out["error"]
