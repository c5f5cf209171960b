"""Anchors of the audit chain (issue 11 item 13): the head published outside the audit file catches
what the file alone cannot show - a truncated tail with a lowered ``sqlite_sequence`` and a chain
recomputed after an edit - from an anchor file, a real MLflow model version tag and the run tag of
a real Dagster run."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from quality_platform.audit import GENESIS_HASH, AuditLog, AuditRecord, audit_db_path, record_hash
from quality_platform.settings import Paths
from quality_platform_tests.conftest import tiny_plant_a_day
from quality_platform_tests.test_audit import _tamper

D1 = dt.date(2026, 3, 16)


def _fill(log: AuditLog, n: int) -> list[AuditRecord]:
    return [
        log.append(
            "gate", "system:test", actor_kind="system", subject=f"model:m/{i}", refs={"i": i}
        )
        for i in range(n)
    ]


def truncate_tail(log: AuditLog, keep: int) -> None:
    """Delete every record after seq ``keep`` and lower SQLite's counter to match (triggers back)."""
    _tamper(
        log,
        ("DELETE FROM audit_log WHERE seq > ?", (keep,)),
        ("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit_log'", (keep,)),
    )


def rewrite_from(log: AuditLog, seq: int, reason: str) -> None:
    """Edit record ``seq`` and recompute its hash and every later link (triggers back)."""
    recs = log.records()
    statements: list[tuple[str, tuple]] = []
    prev = recs[seq - 2].hash if seq > 1 else GENESIS_HASH
    for r in recs[seq - 1 :]:
        fields = {**r.__dict__, "prev_hash": prev, **({"reason": reason} if r.seq == seq else {})}
        fields["hash"] = record_hash(fields)
        statements.append(
            (
                "UPDATE audit_log SET reason = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (fields["reason"], fields["prev_hash"], fields["hash"], r.seq),
            )
        )
        prev = fields["hash"]
    _tamper(log, *statements)


# ------------------------------------------------------------------------------ head and text


def test_head_and_anchor_text(tmp_path: Path) -> None:
    from quality_platform.audit_anchors import (
        anchor_text,
        format_anchor,
        parse_anchor,
        read_anchor_file,
    )

    log = AuditLog(tmp_path / "audit.db")
    assert log.head() is None
    assert anchor_text(log) == f"0:{GENESIS_HASH}"
    recs = _fill(log, 3)
    assert log.head() == (3, recs[-1].hash) and log.head().seq == 3
    text = anchor_text(log)
    assert text == f"3:{recs[-1].hash}" == format_anchor(3, recs[-1].hash)
    a = parse_anchor(text, "here")
    assert (a.seq, a.hash, a.where, a.source) == (3, recs[-1].hash, "here", "file")
    for bad in ("", "3", f"x:{recs[-1].hash}", "3:abc", f"3:{recs[-1].hash.upper()}"):
        with pytest.raises(ValueError, match="not an audit anchor"):
            parse_anchor(bad, "here")
    f = tmp_path / "anchors.txt"
    f.write_text(f"# taken before the audit\n\n{text}\n")
    assert [(x.seq, x.hash) for x in read_anchor_file(f)] == [(3, recs[-1].hash)]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no audit anchor"):
        read_anchor_file(tmp_path / "empty.txt")


# ---------------------------------------------------------------------- what the file cannot show


def test_truncated_tail_with_lowered_sequence_is_named_by_an_anchor(tmp_path: Path) -> None:
    from quality_platform.audit_anchors import anchor_text, read_anchor_file

    log = AuditLog(tmp_path / "audit.db")
    recs = _fill(log, 8)
    anchor_file = tmp_path / "elsewhere" / "head.txt"
    anchor_file.parent.mkdir()
    anchor_file.write_text(anchor_text(log) + "\n")
    truncate_tail(log, keep=5)

    alone = log.verify()
    assert alone.ok and alone.records == 5  # the file alone: 'OK, chain intact'
    anchors = read_anchor_file(anchor_file)
    res = log.verify(anchors=anchors)
    assert not res.ok
    assert res.problems == [
        f"seq 6..8 missing: the tail was truncated (chain head seq 8 anchored in file "
        f"{anchor_file} line 1)"
    ]
    # appending after the truncation reuses seq 6..: the anchored seq 8 now has another hash
    _fill(log, 3)
    res = AuditLog(log.path).verify(anchors=anchors)
    assert res.problems == [
        f"seq 8: hash differs from the anchor in file {anchor_file} line 1 (chain rewritten)"
    ]
    assert recs[-1].hash != log.records()[-1].hash


def test_chain_recomputed_after_an_edit_is_named_by_an_anchor(tmp_path: Path) -> None:
    from quality_platform.audit_anchors import parse_anchor

    log = AuditLog(tmp_path / "audit.db")
    recs = _fill(log, 6)
    old = parse_anchor(f"4:{recs[3].hash}", "an older report")
    head = parse_anchor(f"6:{recs[5].hash}", "the release notes")
    rewrite_from(log, 3, "nothing to see")
    assert log.records()[2].reason == "nothing to see"
    assert log.verify().ok  # self-consistent again
    res = log.verify(anchors=[head, old, head])  # the same anchor twice is reported once
    assert res.problems == [
        "seq 4: hash differs from the anchor in an older report (chain rewritten)",
        "seq 6: hash differs from the anchor in the release notes (chain rewritten)",
    ]
    # an anchor that matches and one of an older, intact prefix are no problem
    assert log.verify(
        anchors=[parse_anchor(f"2:{recs[1].hash}", "x"), parse_anchor(f"0:{GENESIS_HASH}", "y")]
    ).ok


# ----------------------------------------------------------------------------- MLflow and Dagster


def test_model_version_tag_is_an_anchor(qp_env: Paths) -> None:
    """A real registry on the test installation: the version's qp.audit_head tag is read back (from
    the SQLite store, without importing MLflow) and names the truncation."""
    from quality_platform.audit_anchors import anchor_version, collect_anchors
    from quality_platform.ml.config import load_model_config
    from quality_platform.ml.registry import ModelRegistry

    log = AuditLog(audit_db_path(qp_env))
    store = qp_env.data_dir / "mlflow" / "mlflow.db"
    found = collect_anchors(qp_env)
    assert found.anchors == [] and any("MLflow: no store" in n for n in found.notes)
    assert not store.exists()  # collecting never creates the store

    _fill(log, 4)
    reg = ModelRegistry(load_model_config(qp_env), qp_env)
    reg.client.create_registered_model(reg.name)
    src = qp_env.data_dir / "model_src"
    src.mkdir()
    mv = reg.client.create_model_version(reg.name, source=src.as_uri())
    text = anchor_version(reg, mv.version, log)
    assert text == f"4:{log.head().hash}"
    assert reg.version(mv.version).tag("audit_head") == text

    found = collect_anchors(qp_env)
    assert [(a.seq, a.hash, a.source) for a in found.anchors] == [(4, log.head().hash, "mlflow")]
    assert found.counts()["mlflow"] == 1
    where = found.anchors[0].where
    assert f"MLflow model version {reg.name}/{mv.version} tag qp.audit_head" in where
    assert log.verify(anchors=found.anchors).ok

    # reading the tags does not import MLflow (it costs seconds; `qp audit verify` stays fast)
    probe = textwrap.dedent("""
        import sys
        from quality_platform.audit_anchors import collect_anchors
        from quality_platform.settings import get_paths
        found = collect_anchors(get_paths())
        print(len([a for a in found.anchors if a.source == "mlflow"]), "mlflow" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "False"]

    truncate_tail(log, keep=2)
    res = log.verify(anchors=collect_anchors(qp_env).anchors)
    assert res.problems == [
        f"seq 3..4 missing: the tail was truncated (chain head seq 4 anchored in {where})"
    ]


def test_every_dagster_run_publishes_the_head(qp_env: Paths) -> None:
    """A real land run: its last step leaves the audit head as run tag qp/audit_head, which
    collect_anchors reads from the instance at DAGSTER_HOME."""
    from quality_platform.audit_anchors import RUN_TAG, anchor_text, collect_anchors
    from quality_platform.definitions import build_definitions
    from quality_platform.defs.ingest.jobs import land_job_name
    from quality_platform.runner import run_range

    home = qp_env.dagster_home
    assert collect_anchors(qp_env).counts()["dagster"] == 0  # an empty home holds no instance
    assert any("Dagster: no instance with runs" in n for n in collect_anchors(qp_env).notes)
    log = AuditLog(audit_db_path(qp_env))
    _fill(log, 3)
    tiny_plant_a_day(qp_env, D1)
    defs = build_definitions(qp_env)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        out = run_range(defs, instance, land_job_name("plant_a"), "plant_a", D1, D1)
        assert out.success
        tag = instance.get_run_by_id(out.run_id).tags.get(RUN_TAG)
    head = log.head()
    assert head.seq >= 3 and tag == anchor_text(log)

    found = collect_anchors(qp_env)
    assert [(a.seq, a.hash, a.source) for a in found.anchors] == [(head.seq, head.hash, "dagster")]
    assert log.verify(anchors=found.anchors).ok
    # read straight from the run storage: Dagster itself is not imported
    probe = textwrap.dedent("""
        import sys
        from quality_platform.audit_anchors import collect_anchors
        from quality_platform.settings import get_paths
        found = collect_anchors(get_paths())
        print(len([a for a in found.anchors if a.source == "dagster"]), "dagster" in sys.modules)
    """)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "False"]

    truncate_tail(log, keep=1)
    (problem,) = log.verify(anchors=collect_anchors(qp_env).anchors).problems
    assert problem == (
        f"seq 2..{head.seq} missing: the tail was truncated (chain head seq {head.seq} "
        f"anchored in Dagster run {out.run_id} tag {RUN_TAG} ({home}))"
    )
    # an instance whose dagster.yaml configures its storage is read through Dagster
    (home / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {home}\n")
    (problem,) = log.verify(anchors=collect_anchors(qp_env).anchors).problems
    assert problem.startswith(
        f"seq 2..{head.seq} missing: the tail was truncated (chain head seq {head.seq} "
        f"anchored in Dagster run tag {RUN_TAG}={head.seq}:"
    )


def test_broken_stores_are_notes_and_files_are_required(qp_env: Paths, tmp_path: Path) -> None:
    from quality_platform.audit_anchors import collect_anchors

    store = qp_env.data_dir / "mlflow" / "mlflow.db"
    store.parent.mkdir(parents=True)
    sqlite3.connect(store).close()  # a file that is no registry (yet)
    found = collect_anchors(qp_env)
    assert found.anchors == [] and any("no model version tags" in n for n in found.notes)
    with pytest.raises(ValueError, match="cannot read the anchor file"):
        collect_anchors(qp_env, [tmp_path / "missing.txt"])
