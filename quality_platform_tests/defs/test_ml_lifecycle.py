"""The ML lifecycle through Dagster and the CLI on a small simulated installation (plant_a and
plant_c, 6 days): snapshot -> challenger in MLflow -> release gate -> approval -> champion ->
predictions with reasons -> second version in canary -> promotion, rollback, history, lineage;
and a failing gate that can never become champion."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from quality_platform.audit import AuditLog, audit_db_path
from quality_platform.cli import main
from quality_platform.config import load_plants
from quality_platform.definitions import build_definitions
from quality_platform.defs.ml.jobs import CANARY_JOB, SCORE_JOB
from quality_platform.ml import lifecycle as L
from quality_platform.ml.config import load_model_config
from quality_platform.ml.registry import CHALLENGER, CHAMPION, ModelRegistry
from quality_platform.runner import backfill, run_range, train
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform_tests.conftest import TEST_KEY, make_installation, tune_small_model

D1 = dt.date(2026, 3, 16)
DAYS = 6
PLANTS = ("plant_a", "plant_c")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """plant_a and plant_c standardised with features for 6 days (built once, copied per test)."""
    root = tmp_path_factory.mktemp("ml_base")
    paths = make_installation(root, plants=PLANTS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QP_DATA_DIR", str(paths.data_dir))
        mp.setenv("QP_CONFIG_DIR", str(paths.config_dir))
        mp.setenv("QP_PSEUDONYM_KEY", TEST_KEY)
        simulate(paths.landing_dir, days=DAYS, start=D1, plants=load_plants(paths))
        defs = build_definitions(paths)
        (root / "dagster").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
            for p in PLANTS:
                outs = backfill(defs, instance, p, D1, D1 + dt.timedelta(days=DAYS - 1))
                assert all(o.success for o in outs), outs
    return root


@pytest.fixture
def env(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Paths, dg.DagsterInstance]]:
    paths = make_installation(tmp_path, plants=PLANTS)
    shutil.copytree(built / "data" / "warehouse", paths.data_dir / "warehouse")
    tune_small_model(paths)
    monkeypatch.setenv("QP_DATA_DIR", str(paths.data_dir))
    monkeypatch.setenv("QP_CONFIG_DIR", str(paths.config_dir))
    monkeypatch.setenv("QP_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield paths, instance


def _registry(paths: Paths) -> tuple[ModelRegistry, AuditLog]:
    return ModelRegistry(load_model_config(paths), paths), AuditLog(audit_db_path(paths))


def _cli(*argv: str) -> tuple[int, object]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([*argv, "--json"])
    return rc, json.loads(buf.getvalue())


def _checks(instance: dg.DagsterInstance) -> dict[str, bool]:
    out = {}
    for name in (
        "absolute_thresholds",
        "calibration",
        "vs_champion",
        "per_plant_non_inferiority",
        "behaviour_cases",
    ):
        rec = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey("model_evaluation"), name)
        )
        out[name] = rec.event.asset_check_evaluation.passed
    return out


def _preds(paths: Paths) -> pd.DataFrame:
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        return con.sql("SELECT * FROM ml.predictions").df()
    finally:
        con.close()


def test_lifecycle_end_to_end(env: tuple[Paths, dg.DagsterInstance]) -> None:
    paths, instance = env
    defs = build_definitions(paths)
    o = train(defs, instance)
    assert o.success, o
    reg, audit = _registry(paths)
    v1 = reg.version("1")
    # lineage tags on the version
    assert set(v1.partitions) == set(PLANTS) and len(v1.tag("data_hash")) == 64
    assert v1.tag("dagster_run_id") == o.run_id and v1.tag("code_version")
    # the gate ran; the first version needs a human
    checks = _checks(instance)
    assert checks["absolute_thresholds"] and checks["calibration"] and checks["behaviour_cases"], (
        checks
    )
    assert v1.gate in L.PASSING and v1.approval == "pending" and reg.alias(CHAMPION) is None
    # not approved -> cannot be promoted; without an approved champion the rule-based limits decide (safe state)
    rc, out = _cli("promote", "1", "--as", "carl.control")
    assert rc == 2 and "not approved" in out["error"]
    assert run_range(defs, instance, SCORE_JOB, "plant_a", D1, D1).success
    safe = _preds(paths)
    assert (
        len(safe)
        and (safe["decided_by"] == "rules").all()
        and (safe["model_version"] == "rules:v1").all()
    )
    assert safe["reason_1"].notna().all()
    rc, out = _cli(
        "approve", "1", "--as", "carl.control", "--reason", "gate read, per-plant results fine"
    )
    assert rc == 0 and out["approval"] == "approved"
    rc, out = _cli("promote", "1", "--as", "carl.control")
    assert rc == 0 and CHAMPION in out["aliases"]

    # predictions: every unit, champion version, threshold, three reasons
    for p in PLANTS:
        assert run_range(defs, instance, SCORE_JOB, p, D1, D1 + dt.timedelta(days=DAYS - 1)).success
    pr = _preds(paths)
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    n_units = con.execute("SELECT count(*) FROM features.unit_features").fetchall()[0][0]
    con.close()
    assert len(pr) == n_units and pr["unit_id"].is_unique
    assert (pr["model_version"] == "1").all() and (pr["decided_by"] == CHAMPION).all()
    assert pr["reason_1"].notna().all() and pr["reason_3"].notna().all()
    assert (pr["reason_1_shap"].abs() >= pr["reason_2_shap"].abs()).all()
    assert pr["predicted_defect"].equals(pr["risk"] >= pr["threshold"])
    assert "operator_pseudonym" not in pr.columns

    # a second version (inside the envelope) is auto-approved and enters canary + shadow
    o2 = train(defs, instance)
    assert o2.success
    v2 = reg.version("2")
    assert v2.gate in L.PASSING
    if v2.gate == "passed":
        assert v2.approval == "approved" and v2.tag("approved_by") == L.AUTO_APPROVER
    else:  # per-plant data too thin to judge -> a human must approve
        assert v2.approval == "pending"
        L.approve(reg, audit, "2", "carl.control", "reviewed the warnings")
    assert reg.alias(CHALLENGER).version == "2"
    assert run_range(
        defs, instance, SCORE_JOB, "plant_a", D1, D1 + dt.timedelta(days=DAYS - 1)
    ).success
    pr = _preds(paths)
    a = pr[pr["plant"] == "plant_a"]
    assert a["challenger_score"].notna().all() and set(a["challenger_version"]) == {"2"}
    share = (a["decided_by"] == CHALLENGER).mean()
    assert 0.2 < share < 0.4  # canary share 0.3, stable hash routing
    assert (a.loc[a["decided_by"] == CHALLENGER, "model_version"] == "2").all()

    # canary evaluation: identical training data -> non-inferior -> promoted automatically
    res = defs.resolve_job_def(CANARY_JOB).execute_in_process(instance=instance)
    assert res.success
    assert reg.alias(CHAMPION).version == "2" and reg.alias(CHALLENGER) is None

    # rollback in one command, back to version 1
    rc, out = _cli("rollback", "--as", "olga.ops", "--reason", "plant reports more false alarms")
    assert rc == 0 and out == {"from_version": "2", "to_version": "1", "actor": "olga.ops"}
    assert reg.alias(CHAMPION).version == "1" and reg.version("2").status == "rolled_back"

    # every change of champion is a materialisation of the `champion` asset: by hand (CLI, no run),
    # by the canary (inside its run), the rollback (CLI)
    changes = [
        r.asset_materialization
        for r in instance.fetch_materializations(dg.AssetKey("champion"), limit=10).records
    ][::-1]
    meta = [{k: v.value for k, v in m.metadata.items()} for m in changes]
    assert [(m["model_version"], m["action"], m["changed_by"]) for m in meta] == [
        (1, "promote", "carl.control"),
        (2, "promote", "system:canary"),
        (1, "rollback", "olga.ops"),
    ], meta
    assert meta[0]["approved_by"] == "carl.control" and meta[0]["previous_champion"] == "(none)"
    assert meta[1]["previous_champion"] == "1" and meta[1]["gate"] == v2.gate
    assert meta[2]["previous_champion"] == "2"
    assert meta[0]["training_partitions"] == v1.partitions
    # links to the runs that trained them (a dagster_run value: a link in the UI)
    assert [m.metadata["training_run"] for m in changes[:2]] == [
        dg.MetadataValue.dagster_run(o.run_id),
        dg.MetadataValue.dagster_run(o2.run_id),
    ]
    by_run = instance.fetch_materializations(dg.AssetKey("champion"), limit=10).records
    assert [r.run_id for r in by_run][::-1] == ["", res.run_id, ""]

    # promotions and rollbacks reached the alert channel (file channel by default)
    from quality_platform.alerts import read_alerts

    kinds = [a["kind"] for a in read_alerts(paths=paths)]
    assert kinds.count("promotion") == 2 and kinds.count("rollback") == 1, kinds

    # a quality engineer overrides a prediction: stored and audited apart from the inspection labels
    unit = pr[pr["plant"] == "plant_a"].sort_values("risk").iloc[-1]
    decision = "ok" if bool(unit["predicted_defect"]) else "defect"
    rc, ov = _cli(
        "override",
        str(unit["unit_id"]),
        "--decision",
        decision,
        "--as",
        "quinn.quality",
        "--reason",
        "visual re-inspection",
    )
    assert (
        rc == 0
        and ov["plant"] == "plant_a"
        and ov["decision"] == decision
        and ov["model_version"] in ("1", "2")
    )
    rc, err = _cli(
        "override", "no-such-unit", "--decision", "ok", "--as", "quinn.quality", "--reason", "x"
    )
    assert rc == 2 and "no prediction" in err["error"]
    assert any(r.action == "override" and r.actor == "quinn.quality" for r in audit.records())
    # ... and never feeds back into training: a new snapshot has the same content hash
    o3 = train(defs, instance)
    assert o3.success and reg.version("3").tag("data_hash") == v1.tag("data_hash")

    rc, hist = _cli("models", "history")
    assert rc == 0
    assert [p["version"] for p in hist["champion_periods"]] == ["1", "2", "1"]
    assert hist["champion_periods"][0]["by"] == "carl.control"
    actions = [e["action"] for e in hist["events"]]
    for a_ in ("register", "gate", "approve", "promote", "canary", "rollback"):
        assert a_ in actions
    assert any(e["outcome"] == "denied" and e["action"] == "promote" for e in hist["events"])

    # lineage both ways
    rc, lm = _cli("lineage", "model", "1")
    assert rc == 0 and lm["plants"] == sorted(PLANTS) and lm["data_hash"] == v1.tag("data_hash")
    assert lm["prediction_batches"] and lm["dagster_run_id"] == o.run_id
    first, _last = v1.partitions["plant_a"]
    rc, ld = _cli("lineage", "data", "--plant", "plant_a", "--date", first)
    assert rc == 0 and ld["model_versions"] == ["1", "2", "3"] and ld["prediction_batches"]
    rc, ld = _cli(
        "lineage", "data", "--plant", "plant_a", "--date", "2026-03-21"
    )  # after the window
    assert rc == 0 and ld["model_versions"] == []
    assert audit.verify().ok


def test_failing_gate_never_becomes_champion(env: tuple[Paths, dg.DagsterInstance]) -> None:
    paths, instance = env
    tune_small_model(paths, min_roc_auc=0.999)
    defs = build_definitions(paths)
    o = train(defs, instance)
    assert not o.success and any("absolute_thresholds" in c for c in o.failed_checks)
    reg, audit = _registry(paths)
    v = reg.version("1")
    assert v.gate == "failed" and v.approval == "blocked"
    rc, out = _cli("approve", "1", "--as", "carl.control", "--reason", "looks fine to me")
    assert rc == 2 and "can never be approved" in out["error"]
    rc, out = _cli("promote", "1", "--as", "carl.control")
    assert rc == 2 and "can never become champion" in out["error"]
    assert reg.alias(CHAMPION) is None and reg.alias(CHALLENGER) is None
    denied = [r for r in audit.records() if r.outcome == "denied"]
    assert {r.action for r in denied} == {"approve", "promote"}
    assert all(r.actor == "carl.control" for r in denied)


def test_worse_challenger_is_rolled_back_by_the_canary(
    env: tuple[Paths, dg.DagsterInstance],
) -> None:
    paths, instance = env
    defs = build_definitions(paths)
    assert train(defs, instance).success
    reg, audit = _registry(paths)
    L.approve(reg, audit, "1", "carl.control", "first release")
    L.promote(reg, audit, "1", "carl.control", "first release")
    # v2 loses the moisture features (the main defect driver); a lenient gate lets it through
    f = paths.config_dir / "ml" / "model.yaml"
    cfg = yaml.safe_load(f.read_text())
    cfg["features"]["exclude_columns"] = [
        f"material_moisture__{s}"
        for s in ("mean", "std", "min", "max", "last", "slope", "time_outside_s")
    ]
    cfg["gate"].update(min_roc_auc=0.5, min_pr_auc=0.0, max_ece=0.2, vs_champion_margin=0.5)
    cfg["gate"]["per_plant"].update(margin=0.5)
    f.write_text(yaml.safe_dump(cfg))
    (paths.config_dir / "ml" / "behaviour_cases.yaml").write_text("version: 1\ncases: []\n")
    defs = build_definitions(paths)
    assert train(defs, instance).success
    v2 = reg.version("2")
    assert (
        v2.gate in L.PASSING and v2.approval == "pending"
    )  # feature set changed: outside the envelope
    assert "feature set differs" in v2.tag("approval_needs_human")
    assert reg.alias(CHALLENGER).version == "2"
    # shadow only until approved: every unit scored by v2, none decided by it
    assert run_range(defs, instance, SCORE_JOB, "plant_a", D1, D1 + dt.timedelta(days=3)).success
    assert (_preds(paths)["decided_by"] == CHAMPION).all()
    rc, _ = _cli("approve", "2", "--as", "carl.control", "--reason", "try it on a canary share")
    assert rc == 0
    for p in PLANTS:
        assert run_range(defs, instance, SCORE_JOB, p, D1, D1 + dt.timedelta(days=3)).success
    assert (_preds(paths)["decided_by"] == CHALLENGER).any()
    rc, out = _cli("canary")
    assert rc == 0 and out["decision"] == "rollback", out
    assert reg.alias(CHAMPION).version == "1" and reg.alias(CHALLENGER) is None
    assert reg.version("2").status == "rolled_back"
    # a rolled-back version cannot come back, and the champion cannot be rejected
    rc, out = _cli("promote", "2", "--as", "carl.control")
    assert rc == 2 and "rolled_back" in out["error"]
    rc, out = _cli("reject", "1", "--as", "carl.control", "--reason", "x")
    assert rc == 2 and "is the champion" in out["error"]
    ev = [r for r in audit.records(action="rollback")]
    assert ev[-1].actor == "system:canary" and ev[-1].refs["scope"] == "challenger"


def test_a_missing_or_moved_registry_is_an_error_and_a_new_one_never_mixes_into_the_old_history(
    env: tuple[Paths, dg.DagsterInstance],
) -> None:
    """Issue 11 item 9: with data/state/mlflow moved away, scoring and training used to report ok on a
    silently created empty registry and register a phantom "version 1" whose records mixed into
    the real version 1's audit history."""
    paths, instance = env
    store = paths.data_dir / "mlflow"
    defs = build_definitions(paths)
    # a fresh installation: reading the registry creates nothing, training creates it
    reg, audit = _registry(paths)
    assert reg.versions() == [] and reg.alias(CHAMPION) is None and not store.exists()
    assert train(defs, instance).success
    reg, audit = _registry(paths)
    first = reg.store_id
    assert first and len(first) == 32
    registered = audit.records(action="register")
    assert [r.refs["registry_store"] for r in registered] == [first]
    assert _cli("approve", "1", "--as", "carl.control", "--reason", "gate read")[0] == 0
    # every lifecycle change publishes the audit chain head in its version (issue 11 item 13)
    head = audit.head()
    assert reg.version("1").tag("audit_head") == f"{head.seq}:{head.hash}"
    assert audit.records(limit=1)[0].action == "approve"

    shutil.move(str(store), str(paths.data_dir / "mlflow.moved"))
    for attempt in (
        lambda: run_range(defs, instance, SCORE_JOB, "plant_a", D1, D1),
        lambda: train(defs, instance),
    ):
        o = attempt()
        assert not o.success
        assert (
            not store.exists() or not (store / "mlflow.db").exists()
        )  # nothing created behind the error
    failures = [
        e.dagster_event.event_specific_data.error.to_string()
        for e in instance.all_logs(o.run_id)
        if e.dagster_event and e.dagster_event.is_step_failure
    ]
    assert any(
        f"registry store {store / 'mlflow.db'} is missing" in m and first in m for m in failures
    ), failures
    rc, out = _cli("models", "history")
    assert rc == 2 and str(store / "mlflow.db") in out["error"] and "init-registry" in out["error"]
    # an empty store at the configured place (e.g. created by hand or by an older release) is refused too
    import subprocess
    import sys

    uri = f"sqlite:///{store / 'mlflow.db'}"  # a new process: MLflow caches its store per URI in this one
    subprocess.run(
        [sys.executable, "-c", f"import mlflow; mlflow.MlflowClient({uri!r}).search_experiments()"],
        check=True,
        capture_output=True,
    )
    assert (store / "mlflow.db").exists()
    qp = subprocess.run(
        [sys.executable, "-m", "quality_platform.cli", "models", "history", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert qp.returncode == 2 and "is an empty registry" in json.loads(qp.stdout)["error"], (
        qp.stdout + qp.stderr
    )

    # a new registry only on purpose: refused for a role without the action, then audited
    rc, out = _cli("models", "init-registry", "--as", "quinn.quality", "--reason", "store lost")
    assert rc == 2 and "may not registry_init" in out["error"]
    rc, out = _cli(
        "models",
        "init-registry",
        "--as",
        "carl.control",
        "--reason",
        "store lost with the old disk",
    )
    assert rc == 0 and out["registry_store"] != first
    assert train(defs, instance).success
    reg, audit = _registry(paths)
    assert reg.store_id == out["registry_store"] and [v.version for v in reg.versions()] == ["1"]
    # the new version 1 is (new store, 1): the old version 1's approval is not in its history
    h = L.history(reg, audit)
    assert not [e for e in h["events"] if e["action"] == "approve" and e["outcome"] == "ok"]
    assert {e["refs"].get("registry_store") for e in h["events"]} == {out["registry_store"]}
    assert [r.refs["registry_store"] for r in audit.records(action="register")] == [
        first,
        out["registry_store"],
    ]
    rc, out2 = _cli("models", "init-registry", "--as", "carl.control", "--reason", "again")
    assert rc == 2 and "holds 1 version" in out2["error"]
    assert audit.verify().ok
