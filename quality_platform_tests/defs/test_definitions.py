"""The asset graph is what the design says, every asset is catalogued, and a plant is a config file."""

from __future__ import annotations

import re
import shutil

import dagster as dg
import yaml

from quality_platform.definitions import build_definitions
from quality_platform.settings import Paths

STANDARD = {"sensor_readings", "production_units", "unit_attributes", "quarantine"}
KPI = {"kpi_daily", "plant_reported_kpis", "kpi_reconciliation"}
FEATURES = {"unit_features"}
ML = {
    "training_dataset",
    "defect_model",
    "model_evaluation",
    "model_documentation",
    "predictions",
    "canary_evaluation",
    "champion",
}
MONITORING = {"drift_metrics", "model_performance", "ops_metrics"}


def _graph(defs: dg.Definitions) -> dict[str, set[str]]:
    g = defs.resolve_asset_graph()
    return {
        k.to_user_string(): {p.to_user_string() for p in g.get(k).parent_keys}
        for k in g.get_all_asset_keys()
    }


def test_asset_graph(qp_env: Paths) -> None:
    graph = _graph(build_definitions(qp_env))
    raws = {f"raw_{p}" for p in ("ai4i2020", "plant_a", "plant_b", "plant_c")}
    assert (
        set(graph) == raws | STANDARD | KPI | FEATURES | ML | MONITORING
    )  # no misspelled dependency became an external asset
    for t in STANDARD:
        assert graph[t] == raws
    assert graph["kpi_daily"] == {"production_units"}
    assert graph["plant_reported_kpis"] == {"production_units"}
    assert graph["kpi_reconciliation"] == {"kpi_daily", "plant_reported_kpis"}
    assert graph["unit_features"] == {"sensor_readings", "production_units", "unit_attributes"}
    assert graph["training_dataset"] == {"unit_features", "production_units"}
    assert graph["defect_model"] == {"training_dataset"}
    assert graph["model_evaluation"] == {"defect_model"}
    assert graph["model_documentation"] == {"defect_model", "model_evaluation"}
    assert graph["predictions"] == {"unit_features", "defect_model"}
    assert graph["canary_evaluation"] == {"predictions", "production_units"}
    assert graph["champion"] == {"defect_model", "model_evaluation", "canary_evaluation"}
    assert graph["drift_metrics"] == {"unit_features", "predictions"}
    assert graph["model_performance"] == {"predictions", "production_units"}
    assert graph["ops_metrics"] == {"quarantine", "predictions", "drift_metrics"}


def test_loop_wiring(qp_env: Paths) -> None:
    """The retrain sensor launches train_job, the monitor sensor follows standardize_job, alerts
    follow failed runs; schedules exist per plant and are off until switched on."""
    defs = build_definitions(qp_env)
    assert {j.name for j in defs.resolve_sensor_def("retrain_on_drift").jobs} == {
        "train_job",
        "ops_job",
    }
    assert defs.resolve_sensor_def("monitor_after_standardize") is not None
    assert defs.resolve_sensor_def("alert_on_run_failure") is not None
    canary = defs.resolve_sensor_def("canary_after_performance")
    assert {j.name for j in canary.jobs} == {"canary_job"}
    names = {s.name for s in defs.schedules}
    assert {"daily_plant_a", "daily_ai4i2020", "periodic_retrain"} <= names
    assert all(s.default_status == dg.DefaultScheduleStatus.STOPPED for s in defs.schedules)
    checks = {k.name for a in defs.asset_checks for k in a.check_keys}
    assert {"input_drift", "sensor_faults", "prediction_drift", "performance"} <= checks


def test_every_asset_is_catalogued(qp_env: Paths) -> None:
    g = build_definitions(qp_env).resolve_asset_graph()
    for key in g.get_all_asset_keys():
        node = g.get(key)
        assert node.description and len(node.description) > 40, key
        assert node.owners and node.group_name and node.code_version and node.kinds, key
    for t in STANDARD | FEATURES:
        schema = g.get(dg.AssetKey(t)).metadata["dagster/column_schema"]
        assert all(c.description for c in schema.columns)


#: ``<word>`` outside a code span: the UI renders descriptions as Markdown, which takes it for an
#: HTML tag and shows nothing (issue 13, item 7: "column descriptions render")
_SWALLOWED = re.compile(r"<[A-Za-z_][A-Za-z0-9_ ]*>")


def _outside_code(text: str) -> str:
    return re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def test_ui_texts_have_no_placeholder_markdown_would_swallow(qp_env: Paths) -> None:
    defs = build_definitions(qp_env)
    g = defs.resolve_asset_graph()
    texts: list[tuple[str, str]] = []
    for key in g.get_all_asset_keys():
        node = g.get(key)
        texts.append((key.to_user_string(), node.description or ""))
        meta = node.metadata or {}
        schema = meta.get("dagster/column_schema")
        for c in schema.columns if schema is not None else []:
            texts.append((f"{key.to_user_string()}.{c.name}", c.description or ""))
        texts += [
            (f"{key.to_user_string()}:{k}", v.md_str)
            for k, v in meta.items()
            if hasattr(v, "md_str")
        ]
    texts += [(str(k), g.get_check_spec(k).description or "") for k in g.asset_check_keys]
    texts += [(s.name, s.description or "") for s in [*defs.sensors, *defs.schedules]]
    texts += [(j.name, j.description or "") for j in defs.resolve_all_job_defs()]
    assert len(texts) > 100
    swallowed = [(where, m) for where, t in texts for m in _SWALLOWED.findall(_outside_code(t))]
    assert not swallowed, swallowed
    # the column that had it now shows its placeholder as code
    drift = g.get(dg.AssetKey("drift_metrics")).metadata["dagster/column_schema"]
    assert (
        "`<quantity>__<statistic>`"
        in next(c for c in drift.columns if c.name == "feature").description
    )


def test_raw_partitions_map_only_to_their_plant(qp_env: Paths) -> None:
    g = build_definitions(qp_env).resolve_asset_graph()
    parents = g.get_parent_partition_keys_for_child(
        "2026-03-16|plant_b", dg.AssetKey("raw_plant_a"), dg.AssetKey("sensor_readings")
    )
    assert list(parents.partitions_subset.get_partition_keys()) == []
    parents = g.get_parent_partition_keys_for_child(
        "2026-03-16|plant_a", dg.AssetKey("raw_plant_a"), dg.AssetKey("sensor_readings")
    )
    assert list(parents.partitions_subset.get_partition_keys()) == ["2026-03-16|plant_a"]


def test_adding_a_plant_is_one_config_file(qp_env: Paths) -> None:
    doc = yaml.safe_load((qp_env.plants_dir / "plant_a.yaml").read_text())
    doc.update(
        plant_id="plant_d",
        name="Plant D",
        timezone="Asia/Tokyo",
        machines=[f"D-M{i:02d}" for i in range(1, 4)],
    )
    (qp_env.plants_dir / "plant_d.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    defs = build_definitions(qp_env)
    graph = _graph(defs)
    assert "raw_plant_d" in graph and "raw_plant_d" in graph["sensor_readings"]
    assert defs.resolve_job_def("land_plant_d") is not None
    pd_ = defs.resolve_asset_graph().get(dg.AssetKey("kpi_daily")).partitions_def
    assert "2026-03-16|plant_d" in pd_.get_partition_keys()
    shutil.os.remove(qp_env.plants_dir / "plant_d.yaml")
