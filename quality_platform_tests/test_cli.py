"""The `qp` command line, end to end on a small scenario; every command speaks --json."""

from __future__ import annotations

import json
import shutil

import pytest

from quality_platform.cli import main
from quality_platform.settings import Paths


def _json(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 0):
    rc = main(argv)
    out = capsys.readouterr().out
    assert rc == code, out
    return json.loads(out)


def test_simulate_and_plants(qp_env: Paths, capsys, tmp_path) -> None:
    res = _json(
        capsys,
        ["simulate", "--out", str(tmp_path / "l"), "--days", "2", "--scenario", "stable", "--json"],
    )
    assert res["truth"]["scenario"] == "stable" and (tmp_path / "l" / "truth.json").exists()
    plants = _json(capsys, ["plants", "--json"])
    assert {p["plant"] for p in plants} == {"ai4i2020", "plant_a", "plant_b", "plant_c"}


def test_demo_backfill_summary_quarantine(qp_env: Paths, capsys) -> None:
    shutil.rmtree(qp_env.data_dir / "datasets")  # keep the test small: the three simulated plants
    (qp_env.plants_dir / "ai4i2020.yaml").unlink()
    rc = main(["demo", "--days", "2", "--scenario", "stable", "--skip-model"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "== Rows per plant and table ==" in out and "legacy 'Ausschussquote'" in out
    s = _json(capsys, ["summary", "--json"])
    tables = {t["plant"]: t for t in s["tables"]}
    assert tables["plant_a"]["sensor_readings"] == 2 * 12 * 1440 * 4
    assert tables["plant_b"]["quarantine"] == 0
    kp = {k["plant"]: k for k in s["kpis"]}
    assert 0 < kp["plant_c"]["defect_rate"] < 0.2
    assert kp["plant_c"]["legacy"][0]["unit"] == "ppm"
    runs = _json(
        capsys,
        ["backfill", "--plant", "plant_b", "--from", "2026-03-17", "--to", "2026-03-17", "--json"],
    )
    assert [r["job"] for r in runs] == ["land_plant_b", "standardize_job"] and all(
        r["success"] for r in runs
    )
    s2 = _json(capsys, ["summary", "--json"])
    assert {t["plant"]: t for t in s2["tables"]}["plant_b"]["sensor_readings"] == tables["plant_b"][
        "sensor_readings"
    ]
    assert _json(capsys, ["quarantine", "--plant", "plant_a", "--json"]) == []
    _assert_no_raw_operator_ids(qp_env)


def _assert_no_raw_operator_ids(paths: Paths) -> None:
    """Raw operator/badge ids from the landing files appear nowhere downstream of the raw layer:
    not in the standard or KPI tables, nor in the Dagster event log (metadata, previews)."""
    import duckdb
    import pandas as pd

    land = paths.data_dir / "landing"
    ids: set[str] = set()
    for f in land.glob("plant_a/*/auftraege.csv"):
        ids |= set(pd.read_csv(f, dtype=str)["Werker"].dropna())
    for f in land.glob("plant_b/*/production.parquet"):
        ids |= set(pd.read_parquet(f)["badge_id"].dropna())
    for f in land.glob("plant_c/*/batches.jsonl"):
        ids |= {json.loads(line)["operator"]["badge"] for line in f.read_text().splitlines()}
    assert len(ids) > 10
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        raw_hits = con.sql(
            "SELECT count(*) FROM raw.plant_a__units WHERE Werker IS NOT NULL"
        ).fetchall()[0][0]
        assert raw_hits > 0  # the restricted raw layer keeps the source faithfully
        for schema, table in con.sql(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('standard', 'kpi')"
        ).fetchall():
            text = con.sql(f'SELECT * FROM {schema}."{table}"').df().astype(str).to_csv()
            assert not any(i in text for i in ids), f"raw operator id in {schema}.{table}"
    finally:
        con.close()
    home = paths.dagster_home
    blobs = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert blobs and not any(i.encode() in blobs for i in ids)


def test_free_slots_releases_only_finished_runs(qp_env: Paths, capsys) -> None:
    import dagster as dg

    from quality_platform.cli._common import dagster_instance as _instance
    from quality_platform.warehouse import WAREHOUSE_POOL

    instance = _instance()
    instance.event_log_storage.set_concurrency_slots(WAREHOUSE_POOL, 1)
    dead = instance.create_run_for_job(
        dg.GraphDefinition("g").to_job(), run_id="00000000-0000-4000-8000-000000000001"
    )
    instance.report_run_failed(dead)
    assert instance.event_log_storage.claim_concurrency_slot(
        WAREHOUSE_POOL, dead.run_id, "step"
    ).is_claimed
    res = _json(capsys, ["free-slots", "--json"])
    assert res["freed"] == [dead.run_id]
    assert instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots == []


def test_errors_are_clear(qp_env: Paths, capsys, monkeypatch) -> None:
    err = _json(capsys, ["backfill", "--plant", "nowhere", "--json"], code=2)
    assert "unknown plant" in err["error"]
    monkeypatch.delenv("QP_PSEUDONYM_KEY")
    monkeypatch.delenv("QP_PSEUDONYM_KEY_FILE", raising=False)
    rc = main(["dev-key", "--path", str(qp_env.data_dir / ".secrets" / "k"), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["created"] is True
