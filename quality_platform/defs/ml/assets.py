"""The ML layer (F9, F12-F18): training_dataset -> defect_model -> model_evaluation (release gate)
-> predictions (plant x day) -> canary_evaluation.

Every step is an asset, so the lineage plant data -> snapshot -> model version -> prediction is in
the catalog; the MLflow run and registered version are linked from the materialisations, and the
snapshot's hash and partitions are tags of the version (answerable both ways with ``qp lineage``).
"""

import datetime as dt
import json
import subprocess
import time
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from quality_platform.audit_anchors import anchor_version
from quality_platform.config import PlantConfig
from quality_platform.defs._assets import CODE_VERSIONS, preview, warehouse_path
from quality_platform.defs.ml import GROUP, OWNERS
from quality_platform.features.config import load_features
from quality_platform.features.schema import FEATURE_SCHEMA, TABLE
from quality_platform.governance.freeze import (
    FrozenError,
    assert_not_frozen,
    safe_state_for,
    safe_state_incidents,
)
from quality_platform.ml import lifecycle as L
from quality_platform.ml.config import (
    load_approval_policy,
    load_behaviour_cases,
    load_model_config,
    load_monitoring_config,
)
from quality_platform.ml.dataset import (
    LABEL,
    build_snapshot,
    datasheet_markdown,
    load_snapshot,
    save_snapshot,
)
from quality_platform.ml.frame import FeatureSpec, feature_spec, model_frame
from quality_platform.ml.gate import GATE_CHECKS, ScoredModel, evaluate
from quality_platform.ml.monitor import build_reference
from quality_platform.ml.registry import CHALLENGER, CHAMPION, VersionInfo
from quality_platform.ml.safe_state import RULES, SafeStateConfig, load_safe_state, score_rules
from quality_platform.ml.schema import ML_SCHEMA, PREDICTIONS, prediction_columns
from quality_platform.ml.scoring import challenger_share, global_importance, score, top_reasons
from quality_platform.ml.train import fit, predict
from quality_platform.partitions import by_plant, keys_of, plant_day
from quality_platform.resources import AuditLogResource, ModelRegistryResource, PlatformResource
from quality_platform.settings import REPO_ROOT, Paths
from quality_platform.standard.schemas import columns_conform, columns_ddl, columns_table_schema
from quality_platform.warehouse import (
    WAREHOUSE_POOL,
    connect,
    read_partitions,
    replace_partitions,
    table_exists,
)

QUALITY_ASSETS = ("sensor_readings", "production_units", "quarantine", "unit_features")
CHUNK_DAYS = 7


def git_commit() -> str:
    """The repository's commit, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _spec(platform: PlatformResource) -> FeatureSpec:
    paths = platform.paths()
    return feature_spec(platform.quantities(), load_features(paths), load_model_config(paths))


def latest_meta(instance: dg.DagsterInstance, asset: str, key: str) -> Any:
    ev = instance.get_latest_materialization_event(dg.AssetKey(asset))
    if (
        ev is None
        or ev.asset_materialization is None
        or key not in ev.asset_materialization.metadata
    ):
        raise dg.Failure(
            description=f"{asset} has no materialisation with '{key}' yet: materialise it first"
        )
    return ev.asset_materialization.metadata[key].value


def _latest_quality(
    instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey]
) -> list[dict[str, Any]]:
    out = []
    for key in sorted(keys, key=lambda k: k.to_user_string()):
        rec = instance.get_latest_asset_check_evaluation_record(key)
        ev = rec.event.asset_check_evaluation if rec and rec.event else None
        out.append(
            {
                "check": key.to_user_string(),
                "passed": None if ev is None else bool(ev.passed),
                "severity": None if ev is None else ev.severity.value,
                "run_id": None if rec is None else rec.run_id,
            }
        )
    return out


# --------------------------------------------------------------------------- training_dataset


class TrainingWindowConfig(dg.Config):
    """Optionally cap the window's last day (YYYY-MM-DD), e.g. to rebuild a past snapshot."""

    end_date: str | None = None


def build_training_dataset_asset(quality_checks: list[dg.AssetCheckKey]) -> dg.AssetsDefinition:
    """training_dataset; its datasheet records the latest results of ``quality_checks``."""
    keys = [k for k in quality_checks if k.asset_key.to_user_string() in QUALITY_ASSETS]

    @dg.asset(
        name="training_dataset",
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb", "parquet"},
        deps=["unit_features", "production_units"],
        pool=WAREHOUSE_POOL,
        code_version=CODE_VERSIONS["ml"],
        tags={"layer": "ml", "personal_data": "no"},
        description="Time-bounded training snapshot: per plant, the last window_days days whose inspection labels are "
        "complete (label latency respected), units with a known outcome only, split by whole days into "
        "train/validation/holdout (the latest labelled day and every 5th before it: holdout); immutable, content-hashed, with a datasheet (sources, period, label "
        "distribution per plant and split, data-quality results).",
    )
    def training_dataset(
        context: dg.AssetExecutionContext,
        config: TrainingWindowConfig,
        platform: PlatformResource,
        warehouse: DuckDBResource,
    ) -> dg.MaterializeResult:
        paths, plants = platform.paths(), platform.plants()
        cfg = load_model_config(paths)
        spec = _spec(platform)
        end = dt.date.fromisoformat(config.end_date) if config.end_date else None
        with connect(warehouse_path(warehouse), read_only=True) as con:
            snap = build_snapshot(
                con, plants, cfg, spec, end=end, quality=_latest_quality(context.instance, keys)
            )
        where = save_snapshot(paths, snap)
        counts = snap.data.groupby(["plant", "split"])[LABEL].agg(["size", "sum"]).reset_index()
        counts.columns = ["plant", "split", "units", "positives"]
        context.log.info(
            f"snapshot {snap.short_hash}: {len(snap.data)} rows, partitions {snap.partitions}"
        )
        return dg.MaterializeResult(
            metadata={
                "data_hash": snap.data_hash,
                "snapshot": dg.MetadataValue.path(str(where)),
                "partitions": dg.MetadataValue.json(snap.partitions),
                "dagster/row_count": len(snap.data),
                "excluded_plants": dg.MetadataValue.json(snap.excluded_plants),
                "rows_per_plant_split": dg.MetadataValue.md(counts.to_markdown(index=False)),
                "datasheet": dg.MetadataValue.md(datasheet_markdown(snap.datasheet)),
            }
        )

    return training_dataset


# --------------------------------------------------------------------------- defect_model


def model_card(
    version_hint: str,
    cfg: Any,
    sheet: dict[str, Any],
    metrics: dict[str, float],
    threshold: float,
    importance: pd.DataFrame,
    params: dict[str, Any],
) -> str:
    """Model card generated from evidence (config, datasheet, metrics); the gate adds its report."""
    per_plant = pd.DataFrame(sheet["label_distribution"])
    return "\n".join(
        [
            f"# Model card: {cfg.model_name} ({version_hint})",
            "",
            "## Intended purpose",
            "",
            cfg.intended_purpose.strip(),
            "",
            "## Training data",
            "",
            f"snapshot `{sheet['data_hash'][:16]}`: {sheet['rows']:,} units; "
            f"{sheet['window_rule']}; {sheet['split_rule']}.",
            "",
            per_plant.to_markdown(index=False),
            "",
            "## Model",
            "",
            f"CatBoost classifier, parameters: `{json.dumps(params, sort_keys=True)}`; decision threshold "
            f"{threshold:.4f} (max F1 on the validation split).",
            "",
            "## Metrics (validation / holdout)",
            "",
            pd.Series(
                {k: v for k, v in metrics.items() if k.startswith(("validation_", "holdout_"))}
            )
            .rename("value")
            .to_markdown(),
            "",
            "## Global feature importance (top 15)",
            "",
            importance.head(15).to_markdown(index=False),
            "",
            "## Limitations",
            "",
            "See gate/report.md (release gate: per-plant results, calibration, behavioural cases). "
            "Plants with too little holdout data are listed there as not judged.",
            "",
        ]
    )


@dg.asset(
    name="defect_model",
    group_name=GROUP,
    owners=OWNERS,
    kinds={"catboost", "mlflow"},
    deps=["training_dataset"],
    pool="model_training",
    code_version=CODE_VERSIONS["ml"],
    tags={"layer": "ml"},
    description="CatBoost defect classifier trained reproducibly (fixed seed and thread count) on the latest "
    "training snapshot, logged to MLflow (parameters, metrics, signature, explicit requirements, "
    "datasheet, model card) and registered as a new version tagged with the data hash, partitions, "
    "code version, git commit and Dagster run.",
)
def defect_model(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    model_registry: ModelRegistryResource,
    audit_log: AuditLogResource,
) -> dg.MaterializeResult:
    paths = platform.paths()
    cfg = load_model_config(paths)
    audit = audit_log.log()
    actor = context.run.tags.get("qp/actor") or "system:dagster"  # `qp train` records its caller
    try:  # an open incident freezes the model: no training, whoever launched it (UI, CLI, sensor, schedule)
        assert_not_frozen(
            "train",
            actor,
            audit,
            paths,
            model=cfg.mlflow.registered_model,
            subject=f"model:{cfg.mlflow.registered_model}",
            refs={
                "run_id": context.run.run_id,
                "trigger": context.run.tags.get("trigger", "manual"),
            },
        )
    except FrozenError as exc:
        raise dg.Failure(description=str(exc)) from exc
    data_hash = str(latest_meta(context.instance, "training_dataset", "data_hash"))
    snap = load_snapshot(paths, data_hash)
    spec = _spec(
        platform
    )  # the model's inputs now (data/ml/model.yaml); the snapshot holds every feature column
    missing = [c for c in spec.columns if c not in snap.data.columns]
    if missing or spec.feature_set_version != snap.datasheet["features"]["feature_set_version"]:
        raise dg.Failure(
            description=f"the latest training snapshot was built for another feature set (missing "
            f"{missing[:5]}): re-materialise training_dataset"
        )
    trained = fit(snap.data, spec, cfg.catboost)
    importance = global_importance(trained.model, spec)
    params = cfg.catboost.model_dump()
    run_id = context.run.run_id
    tags = {
        "data_hash": data_hash,
        "partitions": json.dumps(snap.partitions, sort_keys=True),
        "code_version": CODE_VERSIONS["ml"],
        "git_commit": git_commit(),
        "dagster_run_id": run_id,
        "feature_spec": json.dumps(spec.as_dict()),
        "threshold": f"{trained.threshold:.6f}",
        "params": json.dumps(params, sort_keys=True),
        "label": cfg.label,
        "feature_set_version": str(spec.feature_set_version),
        "trained_by": actor,
        "trigger": context.run.tags.get("trigger", "manual"),
        "pseudonym_key_id": ",".join(snap.datasheet.get("pseudonym_key_ids", [])),
        **(
            {
                "retrain_key": context.run.tags["qp/retrain_key"],
                "trigger_check": context.run.tags.get("qp/check", ""),
                "trigger_check_record_id": context.run.tags.get("qp/check_record_id", ""),
                "trigger_check_run_id": context.run.tags.get("qp/check_run_id", ""),
            }
            if "qp/retrain_key" in context.run.tags
            else {}
        ),
    }
    hold = snap.data[snap.data["split"] == "holdout"]
    reference = build_reference(
        snap.data[snap.data["split"] == "train"],
        hold,
        predict(trained.model, hold, spec),
        list(spec.numeric),
        load_monitoring_config(paths),
    )
    artifacts = {
        "drift/reference.json": json.dumps(reference),
        "datasheet.md": datasheet_markdown(snap.datasheet),
        "datasheet.json": json.dumps(snap.datasheet, indent=2, default=str),
        "feature_spec.json": json.dumps(spec.as_dict(), indent=2),
        "feature_importance.md": importance.to_markdown(index=False),
        "model_card.md": model_card(
            "new version",
            cfg,
            snap.datasheet,
            trained.metrics,
            trained.threshold,
            importance,
            params,
        ),
    }
    reg = model_registry.registry(paths)
    info = reg.log_and_register(
        trained.model,
        spec,
        params={**params, "threshold": trained.threshold},
        metrics={**trained.metrics, "train_seconds": trained.seconds},
        tags=tags,
        artifacts=artifacts,
        run_name=f"defect_model {data_hash[:12]}",
    )
    L.register_challenger(reg, audit, info.version, run_id)
    audit.append(
        "register",
        "system:dagster",
        actor_kind="system",
        subject=L.subject(reg, info.version),
        reason="trained on the latest training snapshot",
        refs=reg.refs(
            model_version=info.version,
            run_id=run_id,
            data_hash=data_hash,
            mlflow_run_id=info.run_id,
            partitions=snap.partitions,
        ),
    )
    anchor_version(reg, info.version, audit)  # the audit chain head, kept outside the audit file
    context.log.info(f"registered {reg.name} version {info.version} (MLflow run {info.run_id})")
    return dg.MaterializeResult(
        metadata={
            "model_version": info.version,
            "mlflow_run_id": info.run_id,
            "mlflow_tracking_uri": reg.tracking_uri,
            "registry_store": reg.store_id or "",
            "data_hash": data_hash,
            "partitions": dg.MetadataValue.json(snap.partitions),
            "threshold": trained.threshold,
            "train_seconds": round(trained.seconds, 2),
            **{
                k: float(v)
                for k, v in trained.metrics.items()
                if k.startswith("holdout_") and v == v
            },
            "feature_importance": dg.MetadataValue.md(importance.head(15).to_markdown(index=False)),
            "trigger": tags["trigger"],
            # a retrain started by a failed check links back to the run that evaluated it
            **(
                {
                    "trigger_check": tags["trigger_check"],
                    "trigger_check_record_id": tags["trigger_check_record_id"],
                    "trigger_check_run": dg.MetadataValue.dagster_run(tags["trigger_check_run_id"]),
                }
                if tags.get("trigger_check_run_id")
                else {}
            ),
        }
    )


# --------------------------------------------------------------------------- model_evaluation (the gate)


def trained_units(paths: Paths, info: VersionInfo) -> set[tuple[str, str]]:
    """(plant, unit_id) the version was fitted or tuned on (train + validation of its snapshot)."""
    try:
        snap = load_snapshot(paths, info.tag("data_hash") or "")
    except Exception:
        return set()
    d = snap.data[snap.data["split"] != "holdout"]
    return set(zip(d["plant"], d["unit_id"].astype(str), strict=True))


@dg.asset(
    name="model_evaluation",
    group_name=GROUP,
    owners=OWNERS,
    kinds={"mlflow"},
    deps=["defect_model"],
    code_version=CODE_VERSIONS["ml"],
    tags={"layer": "ml"},
    check_specs=[
        dg.AssetCheckSpec(name, asset="model_evaluation", blocking=True, description=desc)
        for name, desc in (
            (
                "absolute_thresholds",
                "Holdout ROC-AUC and PR-AUC reach the minimums of data/ml/model.yaml.",
            ),
            ("calibration", "Expected calibration error on the holdout at most gate.max_ece."),
            (
                "vs_champion",
                "Not worse than the current champion (beyond the margin) on the same holdout units.",
            ),
            (
                "per_plant_non_inferiority",
                "Per plant: bootstrap CI of (challenger - champion) above -margin; "
                "WARN where a plant has too little holdout data.",
            ),
            ("behaviour_cases", "Behavioural test cases of data/ml/behaviour_cases.yaml hold."),
        )
    ],
    description="Release gate of the newest registered version on its snapshot's holdout: absolute thresholds, "
    "comparison with the champion, per-plant non-inferiority with bootstrap CIs, calibration, "
    "behavioural test cases. The result is stored on the version (MLflow tags and report), the "
    "approval policy is applied, and a gated version becomes the challenger (canary/shadow).",
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    model_registry: ModelRegistryResource,
    audit_log: AuditLogResource,
) -> dg.MaterializeResult:
    assert tuple(s.name for s in context.assets_def.check_specs) == GATE_CHECKS
    paths = platform.paths()
    cfg = load_model_config(paths)
    version = str(latest_meta(context.instance, "defect_model", "model_version"))
    reg = model_registry.registry(paths)
    audit = audit_log.log()
    info = reg.version(version)
    snap = load_snapshot(paths, info.tag("data_hash") or "")
    holdout = snap.data[snap.data["split"] == "holdout"]
    challenger = ScoredModel(version, reg.load(version), info.spec)
    champ_info = reg.alias(CHAMPION)
    champion = None
    if champ_info is not None and champ_info.version != version:
        champion = ScoredModel(champ_info.version, reg.load(champ_info.version), champ_info.spec)
    report = evaluate(
        challenger,
        holdout,
        cfg.gate,
        load_behaviour_cases(paths),
        champion,
        trained_units(paths, champ_info) if champion and champ_info else None,
    )
    run_id = context.run.run_id
    L.record_gate(reg, audit, report, run_id, snap.data_hash)
    approval = L.apply_policy(reg, audit, version, load_approval_policy(paths), run_id)
    context.log.info(f"version {version}: gate {report.status}, approval {approval}")
    checks = [
        dg.AssetCheckResult(
            check_name=c.name,
            passed=c.passed,
            severity=dg.AssetCheckSeverity.ERROR
            if c.severity == "ERROR"
            else dg.AssetCheckSeverity.WARN,
            description=c.description,
            metadata={
                "model_version": version,
                **{
                    k: (dg.MetadataValue.json(v) if isinstance(v, list | dict) else v)
                    for k, v in c.metadata.items()
                    if v is not None
                },
                **(
                    {"table": dg.MetadataValue.md(c.table.to_markdown(index=False))}
                    if c.table is not None and not c.table.empty
                    else {}
                ),
            },
        )
        for c in report.checks
    ]
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "gate_status": report.status,
            "approval": approval,
            "champion_version": report.champion_version or "(none)",
            "data_hash": snap.data_hash,
            **{f"holdout_{k}": float(v) for k, v in report.metrics.items() if v == v},
            "per_plant": dg.MetadataValue.md(report.per_plant.to_markdown(index=False)),
            "report": dg.MetadataValue.md(report.markdown()),
        },
        check_results=checks,
    )


# --------------------------------------------------------------------------- predictions


def _score_rows(
    rows: pd.DataFrame,
    champ: VersionInfo,
    champ_model: Any,
    chall: VersionInfo | None,
    chall_model: Any,
    route_share: float,
    k: int,
) -> pd.DataFrame:
    """Champion (and challenger) scores, routing, decisions and reasons of feature rows."""
    spec_c = champ.spec
    s_c = score(champ_model, model_frame(rows, spec_c), spec_c)
    out = pd.DataFrame(
        {
            "plant": rows["plant"].astype(str).to_numpy(),
            "partition_date": rows["partition_date"].to_numpy(),
            "unit_id": rows["unit_id"].astype(str).to_numpy(),
            "machine_id": rows["machine_id"].astype(str).to_numpy(),
            "start_utc": rows["start_utc"].to_numpy(),
            "champion_version": champ.version,
            "champion_score": s_c,
        }
    )
    routed = np.zeros(len(rows), dtype=bool)
    if chall is not None:
        spec_x = chall.spec
        s_x = score(chall_model, model_frame(rows, spec_x), spec_x)
        out["challenger_version"], out["challenger_score"] = chall.version, s_x
        if route_share > 0:
            routed = challenger_share(out["plant"], out["unit_id"], route_share)
    else:
        out["challenger_version"], out["challenger_score"] = None, np.nan
    out["decided_by"] = np.where(routed, CHALLENGER, CHAMPION)
    out["model_version"] = np.where(routed, chall.version if chall else "", champ.version)
    out["risk"] = np.where(routed, out["challenger_score"], s_c)
    out["threshold"] = np.where(routed, chall.threshold if chall else np.nan, champ.threshold)
    out["predicted_defect"] = out["risk"] >= out["threshold"]
    if k:
        parts = []
        for mask, info, model in ((~routed, champ, champ_model), (routed, chall, chall_model)):
            if info is None or not mask.any():
                continue
            sub = rows[mask]
            parts.append(
                top_reasons(model, model_frame(sub, info.spec), info.spec, k).set_axis(
                    np.flatnonzero(mask)
                )
            )
        reasons = pd.concat(parts).sort_index()
        for c in reasons.columns:
            out[c] = reasons[c].to_numpy()
    return out


def _rule_rows(
    rows: pd.DataFrame, rules: SafeStateConfig, champ: VersionInfo | None, champ_model: Any, k: int
) -> pd.DataFrame:
    """Safe-state rows: the rule-based limits decide (``decided_by = 'rules'``, ``model_version =
    'rules:v<n>'``, rule score ``risk`` 1/0 with threshold 0.5, reasons naming the violated limits).
    An approved champion that is frozen still scores in shadow (``champion_score``, evidence for the
    incident); without an approved champion the champion columns carry the rule set and its score."""
    r = score_rules(rows, rules, k)
    out = pd.DataFrame(
        {
            "plant": rows["plant"].astype(str).to_numpy(),
            "partition_date": rows["partition_date"].to_numpy(),
            "unit_id": rows["unit_id"].astype(str).to_numpy(),
            "machine_id": rows["machine_id"].astype(str).to_numpy(),
            "start_utc": rows["start_utc"].to_numpy(),
        }
    )
    if champ is not None:
        out["champion_version"] = champ.version
        out["champion_score"] = score(champ_model, model_frame(rows, champ.spec), champ.spec)
    else:
        out["champion_version"], out["champion_score"] = rules.label, r["risk"].to_numpy()
    out["challenger_version"], out["challenger_score"] = None, np.nan
    out["decided_by"], out["model_version"] = RULES, rules.label
    for c in ("risk", "threshold", "predicted_defect"):
        out[c] = r[c].to_numpy()
    for i in range(1, k + 1):
        for c in (f"reason_{i}", f"reason_{i}_feature", f"reason_{i}_shap"):
            out[c] = r[c].to_numpy()
    return out


def build_prediction_asset(
    plants: dict[str, PlantConfig], start: dt.date, k: int
) -> dg.AssetsDefinition:
    """predictions (plant x day) with ``k`` reasons per row."""
    cols = prediction_columns(k)

    @dg.asset(
        name="predictions",
        group_name=GROUP,
        owners=["team:quality-engineering"],
        kinds={"duckdb", "catboost"},
        partitions_def=plant_day(plants, start),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        deps=[
            dg.AssetDep("unit_features", partition_mapping=dg.IdentityPartitionMapping()),
            "defect_model",
        ],
        code_version=CODE_VERSIONS["ml"],
        tags={"layer": "ml", "personal_data": "no"},
        description="Defect risk of every produced unit, per plant and day: the champion decides (a stable "
        "hash-based canary share goes to an approved challenger; with shadow mode the challenger scores "
        "every unit without deciding). Each row says which model version decided, the threshold and "
        "the top reasons (CatBoost SHAP values) of the deciding model (ml.predictions). Safe state "
        "(F24): while an incident freezes the model with safe state, or no approved champion exists, "
        "the rule-based limits of data/ml/safe_state.yaml decide instead (decided_by 'rules', "
        "model_version `rules:v<n>`, reasons naming the violated limits).",
        metadata={
            "dagster/column_schema": columns_table_schema(cols),
            "dagster/table_name": f"{ML_SCHEMA}.{PREDICTIONS}",
        },
    )
    def predictions(
        context: dg.AssetExecutionContext,
        platform: PlatformResource,
        warehouse: DuckDBResource,
        model_registry: ModelRegistryResource,
        audit_log: AuditLogResource,
    ) -> dg.MaterializeResult:
        paths = platform.paths()
        cfg = load_model_config(paths)
        reg = model_registry.registry(paths)
        champ = reg.alias(CHAMPION)
        no_model = None
        if champ is None:
            no_model = "no approved model: there is no champion"
        elif champ.gate not in L.PASSING or champ.approval != "approved":
            no_model = (
                f"no approved model: champion {champ.version} has gate {champ.gate}, approval "
                f"{champ.approval}"
            )
            champ = None
        # safe state (F24): an open incident with safe state (its plant, or all), or no approved model
        incidents = safe_state_incidents(paths, reg.name)
        rules = None
        if incidents or no_model:
            try:
                rules = load_safe_state(paths)
            except Exception as exc:
                raise dg.Failure(
                    description=f"safe state needed ({no_model or f'incident {incidents[0].id}'}) but "
                    f"the rule-based limits cannot be loaded: {exc}"
                ) from exc
        chall = reg.alias(CHALLENGER) if champ is not None else None
        if chall is not None and chall.gate not in L.PASSING:
            chall = None
        share = cfg.canary.share if chall is not None and chall.approval == "approved" else 0.0
        if chall is not None and not cfg.canary.shadow and share == 0:
            chall = None
        champ_model = reg.load(champ.version) if champ else None
        chall_model = reg.load(chall.version) if chall else None
        keys, run_id = keys_of(context), context.run.run_id
        safe_why: dict[str, str] = {}
        for plant_id in by_plant(keys):
            inc = safe_state_for(incidents, plant_id)
            if inc is not None or no_model:
                safe_why[plant_id] = (f"incident {inc.id}" if inc is not None else no_model) or ""
        safe_text = (
            (
                f"safe state: rule-based limits {rules.label if rules else ''} ("
                + "; ".join(f"{p}: {w}" for p, w in sorted(safe_why.items()))
                + ")"
            )
            if safe_why
            else "(none)"
        )
        if safe_why:
            context.log.warning(safe_text)
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        total, decided, flagged, heads, t0 = (
            0,
            {CHAMPION: 0, CHALLENGER: 0, RULES: 0},
            0,
            [],
            time.perf_counter(),
        )
        ddl = columns_ddl(cols, ML_SCHEMA, PREDICTIONS)
        with connect(warehouse_path(warehouse)) as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {ML_SCHEMA}")
            for plant_id, days in by_plant(keys).items():
                for i in range(0, len(days), CHUNK_DAYS):
                    chunk = [(plant_id, d) for d in days[i : i + CHUNK_DAYS]]
                    t = read_partitions(con, FEATURE_SCHEMA, TABLE, chunk)
                    rows = t.to_pandas() if t is not None else pd.DataFrame()
                    if rows.empty:
                        replace_partitions(
                            con,
                            ML_SCHEMA,
                            PREDICTIONS,
                            columns_conform(pd.DataFrame({c.name: [] for c in cols}), cols),
                            chunk,
                            ddl=ddl,
                        )
                        continue
                    if plant_id in safe_why and rules is not None:
                        out = _rule_rows(rows, rules, champ, champ_model, k)
                    else:
                        assert champ is not None
                        out = _score_rows(rows, champ, champ_model, chall, chall_model, share, k)
                    out["scored_at_utc"], out["run_id"] = now, run_id
                    out = columns_conform(out, cols)
                    replace_partitions(con, ML_SCHEMA, PREDICTIONS, out, chunk, ddl=ddl)
                    total += len(out)
                    flagged += int(out["predicted_defect"].sum())
                    for who, n in out["decided_by"].value_counts().items():
                        decided[str(who)] += int(n)
                    if len(heads) < 2:
                        heads.append(out.head(3))
        seconds = time.perf_counter() - t0
        plants_scored = {
            p: [ds[0].isoformat(), ds[-1].isoformat()] for p, ds in by_plant(keys).items()
        }
        audit_log.log().append(
            "predict",
            "system:dagster",
            actor_kind="system",
            subject=L.subject(
                reg,
                champ.version
                if champ and len(safe_why) < len(plants_scored)
                else rules.label
                if rules
                else "none",
            ),
            reason="prediction batch" + (f" ({safe_text})" if safe_why else ""),
            refs=reg.refs(
                **{
                    "run_id": run_id,
                    "champion_version": champ.version if champ else None,
                    "challenger_version": chall.version if chall else None,
                    "canary_share": share,
                    "partitions": plants_scored,
                    "rows": total,
                    "decided": decided,
                    "flagged": flagged,
                    **(
                        {"safe_state": safe_why, "rules_version": rules.label if rules else None}
                        if safe_why
                        else {}
                    ),
                }
            ),
        )
        head = pd.concat(heads, ignore_index=True) if heads else pd.DataFrame()
        show = [
            c
            for c in (
                "plant",
                "unit_id",
                "risk",
                "predicted_defect",
                "decided_by",
                "model_version",
                "reason_1",
                "reason_2",
                "reason_3",
            )
            if c in head.columns
        ]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": total,
                "champion_version": champ.version if champ else "(none)",
                "challenger_version": chall.version if chall else "(none)",
                "canary_share": share,
                "decided_by_champion": decided[CHAMPION],
                "decided_by_challenger": decided[CHALLENGER],
                "decided_by_rules": decided[RULES],
                "safe_state": safe_text,
                "flagged_units": flagged,
                "seconds": round(seconds, 2),
                "preview": preview(head[show] if show else head, n=6),
            }
        )

    return predictions


# --------------------------------------------------------------------------- canary_evaluation


@dg.asset(
    name="canary_evaluation",
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=["predictions", "production_units"],
    pool=WAREHOUSE_POOL,
    code_version=CODE_VERSIONS["ml"],
    tags={"layer": "ml"},
    description="Once inspection labels arrive: the challenger against the champion on the units each decided "
    "and, paired, on every unit both scored (shadow). Promotes an approved challenger automatically "
    "when it is non-inferior, rolls it back when it is clearly worse, else waits; every decision is "
    "recorded in the audit log.",
)
def canary_evaluation(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    warehouse: DuckDBResource,
    model_registry: ModelRegistryResource,
    audit_log: AuditLogResource,
) -> dg.MaterializeResult:
    from quality_platform.ml import metrics as M

    paths = platform.paths()
    cfg = load_model_config(paths)
    reg = model_registry.registry(paths)
    chall, champ = reg.alias(CHALLENGER), reg.alias(CHAMPION)
    if chall is None or champ is None:
        return dg.MaterializeResult(
            metadata={"decision": "none", "reason": "no challenger in canary"}
        )
    with connect(warehouse_path(warehouse), read_only=True) as con:
        if not table_exists(con, ML_SCHEMA, PREDICTIONS):
            return dg.MaterializeResult(
                metadata={"decision": "wait", "reason": "no predictions yet"}
            )
        df = con.execute(
            f"""
            SELECT p.plant, p.decided_by, p.champion_score, p.challenger_score, u.defect::INTEGER AS y
            FROM {ML_SCHEMA}.{PREDICTIONS} p JOIN standard.production_units u USING (plant, partition_date, unit_id)
            WHERE p.challenger_version = ? AND p.champion_version = ? AND u.defect IS NOT NULL
              AND p.challenger_score IS NOT NULL""",
            [chall.version, champ.version],
        ).df()
    c = cfg.canary
    arms = []
    for who, col in ((CHAMPION, "champion_score"), (CHALLENGER, "challenger_score")):
        d = df[df["decided_by"] == who]
        arms.append(
            {
                "arm": f"decided by {who}",
                "units": len(d),
                "positives": int(d["y"].sum()) if len(d) else 0,
                c.metric: M.metric(c.metric, d["y"], d[col])
                if len(d) and d["y"].nunique() == 2
                else np.nan,
            }
        )
    verdict = (
        M.canary_verdict(
            c.metric,
            df["y"].to_numpy(),
            df["challenger_score"].to_numpy(),
            df["champion_score"].to_numpy(),
            c.promote_margin,
            c.rollback_margin,
            c.min_labelled_units,
            c.min_positives,
            c.bootstrap_resamples,
        )
        if len(df)
        else M.CanaryVerdict("wait", c.metric, None, "no labelled units scored by both models yet")
    )
    decision, reason = verdict.decision, verdict.reason
    if decision == "promote" and chall.approval != "approved":
        decision, reason = (
            "wait",
            f"non-inferior, but version {chall.version} awaits approval ({chall.approval}): {reason}",
        )
    audit = audit_log.log()
    refs = {
        "run_id": context.run.run_id,
        "champion_version": champ.version,
        "labelled_units": len(df),
        "verdict": verdict.decision,
    }
    if decision in ("promote", "rollback"):
        L.end_canary(reg, audit, chall.version, decision, reason, refs)
        if decision == "promote":
            from quality_platform.defs.ml.champion import champion_materialization

            event = champion_materialization(reg, "promote", "system:canary", reason, champ.version)
            if event is not None:
                context.log_event(event)
    else:
        audit.append(
            "canary",
            "system:canary",
            actor_kind="system",
            subject=L.subject(reg, chall.version),
            outcome="info",
            reason=reason,
            refs=reg.refs(**refs, model_version=chall.version, decision=decision),
        )
    context.log.info(
        f"canary of version {chall.version} vs champion {champ.version}: {decision} - {reason}"
    )
    diff = verdict.difference
    return dg.MaterializeResult(
        metadata={
            "challenger_version": chall.version,
            "champion_version": champ.version,
            "decision": decision,
            "reason": reason,
            "labelled_units": len(df),
            "difference": float(diff.estimate) if diff else float("nan"),
            "ci_lower": float(diff.lower) if diff else float("nan"),
            "ci_upper": float(diff.upper) if diff else float("nan"),
            "arms": dg.MetadataValue.md(pd.DataFrame(arms).to_markdown(index=False)),
        }
    )
