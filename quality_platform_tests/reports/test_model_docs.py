"""Generated model documentation (F25): every section from evidence with its sha256, stored with the
version in MLflow and linked from the Dagster asset; a section whose evidence changed is STALE until
regenerated; no personal data; refusals audited."""

from __future__ import annotations

import hashlib
import json
import re

import dagster as dg
import pytest
import yaml

from quality_platform.cli import main
from quality_platform.config import load_plants
from quality_platform.defs.monitoring.assets import FINDING_COLS
from quality_platform.reports import model_docs as D
from quality_platform.standard.schemas import columns_ddl
from quality_platform.warehouse import connect, table_exists
from quality_platform_tests.conftest import GovEnv


def qp(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main([*argv, "--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out) if out.strip() else {}


def _personal_values(env: GovEnv) -> set[str]:
    """Raw operator ids (the plants' personal_data columns) and their pseudonyms."""
    values: set[str] = set()
    with connect(env.paths.warehouse_path, read_only=True) as con:
        for plant in load_plants(env.paths).values():
            for (table,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw' "
                "AND table_name LIKE ?",
                [f"{plant.plant_id}__%"],
            ).fetchall():
                cols = {r[0] for r in con.execute(f'DESCRIBE raw."{table}"').fetchall()}
                for c in set(plant.personal_data) & cols:
                    values |= {
                        str(v[0])
                        for v in con.execute(f'SELECT DISTINCT "{c}" FROM raw."{table}"').fetchall()
                    }
        if table_exists(con, "standard", "production_units"):
            values |= {
                str(v[0])
                for v in con.execute(
                    "SELECT DISTINCT operator_pseudonym FROM standard.production_units"
                ).fetchall()
            }
    return {v for v in values if v and v not in ("None", "nan") and len(v) >= 3}


def test_documentation_of_every_section_from_evidence(
    gov_env: GovEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    # the training run materialised model_documentation, linked to the MLflow artifact, with the
    # whole document readable in the UI
    ev = gov_env.instance.get_latest_materialization_event(dg.AssetKey("model_documentation"))
    assert ev is not None
    meta = ev.asset_materialization.metadata
    assert meta["model_version"].value == "1"
    assert str(meta["mlflow_artifact"].value).endswith("/docs/model_card.md")
    shown = meta["documentation"].value
    assert all(f"## {title}" in shown for title, _, _ in D.SECTIONS.values())

    rc, doc = qp(capsys, "docs", "model", "1", "--regenerate", "--as", "aud.it")
    assert rc == 0 and doc["regenerated"] and doc["stale"] == []
    assert [s["key"] for s in doc["sections"]] == list(D.SECTIONS)
    md = doc["markdown"]
    assert "Evidence missing" not in md
    for key, (title, _, _) in D.SECTIONS.items():
        s = next(x for x in doc["sections"] if x["key"] == key)
        assert (
            re.fullmatch(r"[0-9a-f]{64}", s["sha256"])
            and f"## {title}\n\n_evidence sha256: `{s['sha256']}`_" in md
        )

    reg = gov_env.registry
    v = reg.version("1")
    # stored with the version: the card, the evidence (whose hashes are the sections'), and version tags
    card = reg.download_text("1", D.CARD_PATH)
    evidence = json.loads(reg.download_text("1", D.EVIDENCE_PATH))
    assert card == md and v.tag("docs_sha256") == hashlib.sha256(card.encode()).hexdigest()
    assert v.tag("docs_artifact") == D.CARD_PATH
    for key, s in evidence["sections"].items():
        assert D.sha256_of(s["evidence"]) == s["sha256"], key
    # the content is the evidence's
    sheet = json.loads(reg.download_text("1", "datasheet.json"))
    gate = json.loads(reg.download_text("1", "gate/report.json"))
    assert f"Snapshot `{sheet['data_hash'][:16]}` (matches" in md
    assert f"Release gate status: **{gate['status']}**" in md
    for row in gate["plant_metrics"]:
        assert f"| {row['plant']} |" in md
    assert "| 6 | " in md and "carl.control" in md and "| promote | carl.control | ok |" in md
    assert (
        "| drift_metrics:input_drift |" in md
        and "| input_drift | operations_lead | team:ml-operations |" in md
    )
    assert (
        "| periodic_retrain | 0 3 * * 1 | train_job |" in md and "| iterations | 100 | 1000 |" in md
    )
    assert evidence["sections"]["intended_purpose"]["evidence"]["intended_purpose"].split()[0] in md
    # no personal data anywhere in the document or its evidence
    personal = _personal_values(gov_env)
    assert len(personal) > 5
    stored = card + reg.download_text("1", D.EVIDENCE_PATH)
    assert [p for p in personal if p in stored] == []
    assert "operator" not in json.dumps(
        evidence["sections"]["training_data"]["evidence"]["datasheet"]["features"]
    )


def test_changed_evidence_marks_only_its_section_stale(
    gov_env: GovEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    assert qp(capsys, "docs", "model", "1", "--regenerate", "--as", "mia.model")[0] == 0
    rc, doc = qp(capsys, "docs", "model", "1", "--as", "carl.control")
    assert rc == 0 and not doc["regenerated"] and doc["stale"] == []  # reading changes no evidence

    # a drift finding for version 1 -> known limitations
    with connect(gov_env.paths.warehouse_path) as con:
        con.execute(columns_ddl(FINDING_COLS, "ml", "drift_findings"))
        con.execute(
            "INSERT INTO ml.drift_findings VALUES ('plant_a', DATE '2026-03-19', 'process_drift', "
            "'pressure__mean', NULL, 0.8, 'test', '1')"
        )
    rc, doc = qp(capsys, "docs", "model", "1", "--as", "aud.it")
    assert doc["stale"] == ["limitations"]
    assert "## Known limitations - STALE (evidence changed since" in doc["markdown"]
    assert "## Metrics overall and per plant\n" in doc["markdown"]

    # a refused approval changes nothing; an audited approval of version 1 -> approvals
    log = gov_env.audit
    log.append(
        "approve",
        "mia.model",
        subject="model:defect_model/1",
        outcome="denied",
        reason="own version",
    )
    assert qp(capsys, "docs", "model", "1", "--as", "aud.it")[1]["stale"] == ["limitations"]
    log.append(
        "approve",
        "carl.control",
        subject="model:defect_model/1",
        reason="re-confirmed after review",
    )
    assert qp(capsys, "docs", "model", "1", "--as", "aud.it")[1]["stale"] == [
        "limitations",
        "approvals",
    ]

    # a changed threshold in data/ml/monitoring.yaml -> monitoring plan
    f = gov_env.paths.config_dir / "ml" / "monitoring.yaml"
    cfg = yaml.safe_load(f.read_text())
    cfg["drift"]["alarm"] = 0.45
    f.write_text(yaml.safe_dump(cfg))
    rc, doc = qp(capsys, "docs", "model", "1", "--as", "aud.it")
    assert doc["stale"] == ["limitations", "approvals", "monitoring_plan"]
    assert all(s["sha256_now"] != s["sha256"] for s in doc["sections"] if s["stale"])

    # --regenerate clears it, and the new document holds the new evidence
    rc, doc = qp(capsys, "docs", "model", "1", "--regenerate", "--as", "carl.control")
    assert rc == 0 and doc["stale"] == []
    assert (
        "| plant_a | process_drift | 1 | 1 | 2026-03-19 | 2026-03-19 | pressure__mean |"
        in doc["markdown"]
    )
    assert (
        "re-confirmed after review" in doc["markdown"]
        and "| drift.alarm | 0.45 |" in doc["markdown"]
    )
    assert qp(capsys, "docs", "model", "1", "--as", "aud.it")[1]["stale"] == []
    reads = [
        (r.actor, r.refs["regenerated"], r.refs["stale"])
        for r in log.records(action="model_docs")
        if r.actor != "system:dagster"
    ]
    assert reads[-2:] == [("carl.control", True, []), ("aud.it", False, [])]
    assert ("aud.it", False, ["limitations", "approvals", "monitoring_plan"]) in reads


def test_docs_refused_for_roles_without_model_docs(
    gov_env: GovEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    for user in ("quinn.quality", "olga.ops", "paul.plant_a"):
        rc, out = qp(capsys, "docs", "model", "1", "--as", user)
        assert rc == 2 and "may not model_docs" in out["error"]
    denied = [
        (r.action, r.actor, r.subject) for r in gov_env.audit.records() if r.outcome == "denied"
    ]
    assert denied == [
        ("model_docs", u, "model:defect_model/1")
        for u in ("quinn.quality", "olga.ops", "paul.plant_a")
    ]
    rc, out = qp(capsys, "docs", "model", "99", "--as", "aud.it")
    assert rc == 2 and "no version '99'" in out["error"]
    with connect(
        gov_env.paths.warehouse_path
    ):  # a writer holds the warehouse: a clear error, not a traceback
        rc, out = qp(capsys, "docs", "model", "1", "--regenerate", "--as", "aud.it")
        assert rc == 2 and "cannot be opened read-only" in out["error"]


def test_new_version_documented_by_the_training_run(
    gov_env: GovEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    """A retrain materialises model_documentation for the new version; rejecting that version makes
    its approvals section stale, and leaves version 1's documentation untouched."""
    from quality_platform.definitions import build_definitions
    from quality_platform.runner import train

    assert qp(capsys, "docs", "model", "1", "--regenerate", "--as", "carl.control")[0] == 0
    out = train(build_definitions(gov_env.paths), gov_env.instance)
    assert out.success, out
    ev = gov_env.instance.get_latest_materialization_event(dg.AssetKey("model_documentation"))
    assert (
        ev.run_id == out.run_id and ev.asset_materialization.metadata["model_version"].value == "2"
    )
    reg = gov_env.registry
    assert reg.version("2").tag("docs_artifact") == D.CARD_PATH
    rc, doc = qp(capsys, "docs", "model", "2", "--as", "aud.it")
    assert rc == 0 and not doc["regenerated"] and doc["stale"] == []
    assert "champion at evaluation: 1" in doc["markdown"]

    rc, out_ = qp(
        capsys, "reject", "2", "--as", "carl.control", "--reason", "docs test: not needed"
    )
    assert rc == 0, out_
    assert qp(capsys, "docs", "model", "2", "--as", "aud.it")[1]["stale"] == ["approvals"]
    assert qp(capsys, "docs", "model", "1", "--as", "aud.it")[1]["stale"] == []
