"""The privacy scan (F11): no raw operator id from the simulated source files reaches any place data
goes, after the pipeline ran (data, training, scoring: the gov_env fixture, plus one ingestion
and one scoring run captured here) and after every governance operation that writes data
(governed queries, override, re-identification, audit verify/export, incident open/report/close
with its evidence bundle, operating review, model documentation).

Scanned: every column of every warehouse table outside the ``raw`` schema (the raw layer
legitimately holds raw data and is restricted; ``standard.quarantine.value`` is scanned: personal
values are blanked there), and every file of the installation and of the base installation whose
MLflow artifacts the copy shares -- training snapshots, the MLflow SQLite db and every artifact,
the Dagster instance (run/event-log SQLite, compute logs), the audit db, alerts, overrides db,
incidents and their evidence bundles, reports and exports -- except the landing files (the
source) and the warehouse file (scanned by SQL above). Files are searched as bytes, and decoded
where the bytes could hide a value (SQLite rows incl. overflow pages, Parquet, gzip, zip). The
captured stdout/stderr and log records of the runs and commands are searched too (except the
output of ``qp reidentify`` to the data owner, which is its purpose and is a positive control).
Positive controls prove the scanners find ids planted into copies of real files.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import logging
import re
import shutil
import sqlite3
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quality_platform.audit import audit_db_path
from quality_platform.cli import main
from quality_platform.config import load_plants
from quality_platform.ingest.readers import STREAMS, read_raw
from quality_platform.overrides import overrides_db_path
from quality_platform.warehouse import connect
from quality_platform_tests.conftest import GOV_D1, GovEnv

NON_TEXT_TYPES = (
    "BIGINT",
    "INTEGER",
    "SMALLINT",
    "TINYINT",
    "HUGEINT",
    "UBIGINT",
    "UINTEGER",
    "DOUBLE",
    "FLOAT",
    "REAL",
    "DECIMAL",
    "BOOLEAN",
    "DATE",
    "TIMESTAMP",
    "TIME",
    "INTERVAL",
)


# --------------------------------------------------------------------------- the raw ids


def raw_operator_ids(env: GovEnv) -> set[str]:
    """Every value of the plants' personal_data columns in the landing files, read with the
    project's own readers (independently of what the pipeline stored)."""
    ids: set[str] = set()
    for plant in load_plants(env.paths).values():
        if not plant.personal_data:
            continue
        root = plant.landing_path(env.paths)
        days = sorted(dt.date.fromisoformat(d.name) for d in root.iterdir() if d.is_dir())
        for stream in STREAMS:
            t = read_raw(plant, stream, days, env.paths).table
            if t is None:
                continue
            for col in set(plant.personal_data) & set(t.column_names):
                ids |= {v for v in t.column(col).to_pylist() if v not in (None, "")}
    return ids


# --------------------------------------------------------------------------- scanners


@dataclass
class Scan:
    """What a scan looked at and what it found."""

    pattern: re.Pattern[bytes]
    hits: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def text(self, where: str, value: str | bytes) -> None:
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        m = self.pattern.search(data)
        if m:
            self.hits.append(f"{where}: {m.group().decode()!r}")

    def warehouse(self, path: Path, skip_schemas: tuple[str, ...] = ("raw",)) -> None:
        """Every non-numeric column of every table outside ``skip_schemas``, in SQL."""
        regex = self.pattern.pattern.decode()
        with connect(path, read_only=True) as con:
            cols = con.execute(
                "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                "ORDER BY 1, 2, 3"
            ).fetchall()
            for schema, table, col, typ in cols:
                if schema in skip_schemas or typ.upper().startswith(NON_TEXT_TYPES):
                    continue
                n = con.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}" WHERE regexp_matches('
                    f'CAST("{col}" AS VARCHAR), ?)',
                    [regex],
                ).fetchone()[0]  # type: ignore[index]
                self.tables.append(f"{schema}.{table}.{col}")
                if n:
                    self.hits.append(f"warehouse {schema}.{table}.{col}: {n} rows")

    def file(self, path: Path) -> None:
        data = path.read_bytes()
        self.files.append(path)
        self.text(str(path), data)
        if data[:2] == b"\x1f\x8b":
            self.text(f"{path} (gunzip)", gzip.decompress(data))
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for name in z.namelist():
                    self.text(f"{path}!{name}", z.read(name))
        if data[:4] == b"PAR1":
            self.parquet(str(path), pq.read_table(io.BytesIO(data)))
        if data[:16] == b"SQLite format 3\x00":
            self.sqlite(path)

    def parquet(self, where: str, t: pa.Table) -> None:
        self.text(f"{where} (column names)", "\n".join(t.column_names))
        for name in t.column_names:
            col = t.column(name)
            if (
                pa.types.is_string(col.type)
                or pa.types.is_large_string(col.type)
                or pa.types.is_dictionary(col.type)
            ):
                values = {str(v) for v in col.to_pylist() if v is not None}
                self.text(f"{where} column {name}", "\n".join(sorted(values)))

    def sqlite(self, path: Path) -> None:
        """Every text/blob value of every table (values on overflow pages are split in the bytes),
        read from a copy of the database and its write-ahead log (so the original is untouched)."""
        tmp = Path(tempfile.mkdtemp(prefix="qp_scan_"))
        for suffix in ("", "-wal"):
            if Path(f"{path}{suffix}").exists():
                shutil.copy(f"{path}{suffix}", tmp / f"db{suffix}")
        con = sqlite3.connect(tmp / "db")
        try:
            tables = [
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            for t in tables:
                for row in con.execute(f'SELECT * FROM "{t}"'):
                    for v in row:
                        if isinstance(v, str | bytes):
                            self.text(f"{path} table {t}", v)
        finally:
            con.close()
            shutil.rmtree(tmp, ignore_errors=True)

    def tree(self, root: Path, exclude: tuple[Path, ...]) -> None:
        for f in sorted(root.rglob("*")):
            if (
                f.is_file()
                and not f.is_symlink()
                and not any(f == e or e in f.parents for e in exclude)
            ):
                self.file(f)


def pattern_for(ids: set[str]) -> re.Pattern[bytes]:
    return re.compile(b"|".join(re.escape(i.encode()) for i in sorted(ids, key=len, reverse=True)))


# --------------------------------------------------------------------------- the operations


def qp(capsys: pytest.CaptureFixture[str], outputs: list[tuple[str, str]], *argv: str) -> dict:
    """Run one CLI command (must succeed); keep its output for the scan."""
    capsys.readouterr()
    rc = main([*argv, "--json"])
    out = capsys.readouterr()
    outputs.append((" ".join(argv), out.out + out.err))
    assert rc == 0, (argv, out.out, out.err)
    return json.loads(out.out)


def test_no_raw_operator_id_anywhere(
    gov_env: GovEnv,
    gov_base: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from quality_platform.definitions import build_definitions
    from quality_platform.defs.ml.jobs import SCORE_JOB
    from quality_platform.runner import backfill, run_range

    monkeypatch.delenv("QP_OVERRIDES_DB", raising=False)
    caplog.set_level(logging.DEBUG)
    root, paths = gov_env.root, gov_env.paths
    ids = raw_operator_ids(gov_env)
    assert len(ids) >= 30, (
        ids
    )  # 20 badges per plant in the pool; both plants' crews appear in 6 days
    pattern = pattern_for(ids)

    # one more ingestion + standardisation and one scoring run, with their output captured
    defs = build_definitions(paths)
    assert all(o.success for o in backfill(defs, gov_env.instance, "plant_c", GOV_D1, GOV_D1))
    assert run_range(defs, gov_env.instance, SCORE_JOB, "plant_a", GOV_D1, GOV_D1).success
    run_out = capfd.readouterr()
    captured: list[tuple[str, str]] = [("runs stdout", run_out.out), ("runs stderr", run_out.err)]

    # every governance operation that writes or shows data
    with connect(paths.warehouse_path, read_only=True) as con:
        unit, plant = con.execute(
            "SELECT unit_id, plant FROM ml.predictions ORDER BY unit_id LIMIT 1"
        ).fetchone()
        (pseudo,) = con.execute(
            "SELECT operator_pseudonym FROM standard.production_units "
            "WHERE operator_pseudonym IS NOT NULL LIMIT 1"
        ).fetchone()
    exports, reports = root / "exports", root / "reports"
    for user, sql in (
        ("dana.data", "SELECT * FROM raw.plant_a__units"),
        ("dana.data", 'SELECT "operator.badge", count(*) AS n FROM raw.plant_c__units GROUP BY 1'),
        ("dana.data", "SELECT * FROM standard.production_units"),
        ("quinn.quality", "SELECT * FROM standard.production_units"),
        ("quinn.quality", "SELECT * FROM standard.quarantine"),
        ("mia.model", "SELECT * FROM standard.production_units"),
        ("paul.plant_a", "SELECT * FROM ml.predictions"),
    ):
        qp(capfd, captured, "query", sql, "--as", user, "--limit", "100000")
        qp(capfd, captured, "query", sql, "--as", user, "--format", "csv", "--limit", "100")
    qp(capfd, captured, "users")
    qp(
        capfd,
        captured,
        "override",
        unit,
        "--plant",
        plant,
        "--decision",
        "defect",
        "--reason",
        "scan test",
        "--as",
        "quinn.quality",
    )
    qp(capfd, captured, "keys", "id")
    reid: list[tuple[str, str]] = []
    reidentified = qp(
        capfd, reid, "reidentify", pseudo, "--as", "dana.data", "--reason", "privacy scan"
    )
    inc = qp(
        capfd,
        captured,
        "incident",
        "open",
        "--severity",
        "major",
        "--summary",
        "privacy scan incident",
        "--plant",
        "plant_a",
        "--as",
        "quinn.quality",
    )
    inc_id = str(inc["id"])
    qp(capfd, captured, "incident", "report", inc_id, "--as", "carl.control")
    qp(
        capfd,
        captured,
        "incident",
        "close",
        inc_id,
        "--resolution",
        "privacy scan done",
        "--as",
        "carl.control",
    )
    qp(capfd, captured, "incident", "list", "--as", "carl.control")
    qp(
        capfd,
        captured,
        "report",
        "review",
        "--period",
        "week",
        "--out",
        str(reports),
        "--as",
        "carl.control",
    )
    qp(capfd, captured, "docs", "model", "1", "--regenerate", "--as", "mia.model")
    qp(capfd, captured, "audit", "verify", "--as", "aud.it")
    qp(
        capfd,
        captured,
        "audit",
        "export",
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--out",
        str(exports / "audit.jsonl"),
        "--as",
        "aud.it",
    )
    captured += [
        (
            "log records",
            "\n".join(f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records),
        )
    ]

    # ---------------------------------------------------------------- the scan
    scan = Scan(pattern)
    scan.warehouse(paths.warehouse_path)
    excluded = (
        paths.landing_dir,
        paths.warehouse_path,
        paths.warehouse_path.with_name(paths.warehouse_path.name + ".wal"),
    )
    scan.tree(root, excluded)
    base_data = (
        gov_base / "data"
    )  # the copy shares the base's MLflow artifact store (absolute locations)
    scan.tree(gov_base, (base_data / "landing", base_data / "warehouse"))
    for where, text in captured:
        scan.texts.append(where)
        scan.text(where, text)
    assert scan.hits == [], "raw operator ids found:\n" + "\n".join(scan.hits[:50])

    # ---------------------------------------------------------------- the scan really looked
    scanned = {str(f) for f in scan.files}

    def looked(fragment: str) -> bool:
        return any(fragment in f for f in scanned)

    for place in (
        "training_snapshots/",
        "/mlflow/mlflow.db",
        "/mlflow/artifacts/",
        "datasheet.json",
        "dagster_home/",
        str(audit_db_path(paths)),
        str(overrides_db_path(paths)),
        "alerts",
        "incident",
        str(exports / "audit.jsonl"),
        str(reports),
    ):
        assert looked(place), f"the scan did not look at {place}"
    assert audit_db_path(paths).is_relative_to(root)
    assert overrides_db_path(paths).is_relative_to(root)
    assert {
        "standard.production_units.operator_pseudonym",
        "standard.quarantine.value",
        "standard.quarantine.message",
        "features.unit_features.unit_id",
        "ml.predictions.reason_1",
    } <= set(scan.tables)
    assert len(scan.files) > 30 and any(f.suffix == ".parquet" for f in scan.files)
    assert len(captured) > 20 and len(run_out.err) + len(run_out.out) > 1000, (
        "the runs' output was not captured"
    )

    # pseudonyms live in the warehouse and in audit records only (a key rotation re-keys the warehouse;
    # audit records are append-only): none in snapshots, MLflow, the Dagster instance or reports
    pseudos = Scan(re.compile(rb"op_[0-9a-f]{20}"))
    for f in scan.files:
        pseudos.file(f)
    assert pseudos.hits, (
        "the reidentify audit record names its pseudonym: the pseudonym scan must see it"
    )
    assert not [
        h
        for h in pseudos.hits
        if any(p in h for p in ("training_snapshots", "mlflow", "dagster_home", str(reports)))
    ], pseudos.hits

    # ---------------------------------------------------------------- positive controls
    raw_id = reidentified["raw_ids"][0]
    control = Scan(pattern)
    control.text("reidentify output", reid[0][1])  # shown to the data owner: that is its purpose
    assert control.hits and raw_id in control.hits[0]
    control = Scan(pattern)
    control.warehouse(paths.warehouse_path, skip_schemas=())  # the raw layer holds them
    assert any("raw.plant_a__units.Werker" in h for h in control.hits)
    assert any("raw.plant_c__units.operator.badge" in h for h in control.hits)
    planted = tmp_path / "planted"
    planted.mkdir()
    snap = next((paths.data_dir / "training_snapshots").rglob("snapshot.parquet"))
    t = pq.read_table(snap)
    units = t.column("unit_id").to_pylist()
    units[len(units) // 2] = raw_id
    pq.write_table(
        t.set_column(t.column_names.index("unit_id"), "unit_id", pa.array(units, pa.string())),
        planted / "snapshot.parquet",
        compression="zstd",
        use_dictionary=True,
    )
    db = planted / "audit.db"
    shutil.copy(audit_db_path(paths), db)
    con = sqlite3.connect(db)  # a long value: the id lands on an SQLite overflow page
    with con:
        con.execute("CREATE TABLE planted (v TEXT)")
        con.execute("INSERT INTO planted VALUES (?)", ["x" * 9000 + raw_id + "y" * 9000])
    con.close()
    datasheet = next((paths.data_dir / "training_snapshots").rglob("datasheet.json")).read_text()
    (planted / "datasheet.json.gz").write_bytes(gzip.compress((datasheet + raw_id).encode()))
    for name in ("snapshot.parquet", "audit.db", "datasheet.json.gz"):
        control = Scan(pattern)
        control.file(planted / name)
        assert control.hits, f"the scanner missed an id planted into {name}"
