"""Monitoring assets (F7, F19, F22): drift_metrics, model_performance and ops_metrics (plant x day),
with the checks the closed loop watches (``input_drift``, ``performance``; ERROR = retrain).
"""

import base64
import datetime as dt
import io
import json
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from quality_platform.alerts import Alert
from quality_platform.audit import AuditLog
from quality_platform.config import PlantConfig
from quality_platform.defs._assets import CODE_VERSIONS, warehouse_path
from quality_platform.defs._checks import keys_query, md_table
from quality_platform.features.schema import FEATURE_SCHEMA, TABLE
from quality_platform.ml import metrics as M
from quality_platform.ml.config import load_monitoring_config
from quality_platform.ml.monitor import (
    classify_day,
    holdout_auc_baseline,
    holdout_baseline,
    parse_reference,
)
from quality_platform.ml.registry import CHAMPION, ModelRegistry
from quality_platform.ml.schema import ML_SCHEMA, PREDICTIONS
from quality_platform.partitions import by_plant, key_for, keys_of, plant_day
from quality_platform.resources import (
    AlertChannelResource,
    AuditLogResource,
    ModelRegistryResource,
    PlatformResource,
)
from quality_platform.settings import Paths
from quality_platform.standard.schemas import (
    Col,
    columns_conform,
    columns_ddl,
    columns_table_schema,
)
from quality_platform.warehouse import (
    WAREHOUSE_POOL,
    connect,
    key_predicate,
    read_partitions,
    replace_partitions,
    table_exists,
)

GROUP = "monitoring"
OWNERS = ["team:ml-operations"]

DRIFT_COLS = (
    Col("plant", "label", "Plant id."),
    Col("partition_date", "date", "The plant's local day."),
    Col(
        "scope",
        "label",
        "plant (all units), machine (one machine against its own reference) or prediction (scores).",
    ),
    Col("machine_id", "label", "Machine (scope machine).", nullable=True),
    Col(
        "feature",
        "label",
        "Monitored feature (`<quantity>__<statistic>`) or 'risk' for the score distribution.",
    ),
    Col(
        "model_version", "label", "Champion version whose training reference was compared against."
    ),
    Col("n", "int", "Units with a value."),
    Col("missing_share", "float", "Share of units without a value.", nullable=True),
    Col(
        "wasserstein",
        "float",
        "Normed Wasserstein-1 distance to the reference (in reference sd).",
        nullable=True,
    ),
    Col("psi", "float", "Population stability index on 10 reference-quantile bins.", nullable=True),
    Col("ks", "float", "Kolmogorov-Smirnov statistic (max CDF gap, for context).", nullable=True),
    Col("mean_shift_sd", "float", "(current mean - reference mean) / reference sd.", nullable=True),
)
FINDING_COLS = (
    Col("plant", "label", "Plant id."),
    Col("partition_date", "date", "The plant's local day."),
    Col(
        "kind",
        "label",
        "process_drift (retrain), sensor_fault or stuck_sensor (maintenance), prediction_drift.",
    ),
    Col("feature", "label", "Feature concerned."),
    Col(
        "machines",
        "text",
        "Machines the finding is confined to (comma-separated; empty = plant-wide).",
        nullable=True,
    ),
    Col("value", "float", "Plant-level normed Wasserstein of the feature.", nullable=True),
    Col("detail", "text", "Human-readable explanation."),
    Col("model_version", "label", "Champion version."),
)
PERF_COLS = (
    Col("plant", "label", "Plant id."),
    Col("partition_date", "date", "The plant's local production day of the units."),
    Col("model_version", "label", "Deciding model version (champion)."),
    Col("units", "int", "Units scored by the champion."),
    Col("labelled", "int", "Of those, units whose inspection outcome is known."),
    Col("positives", "int", "Labelled defective units."),
    Col("precision", "float", "Flagged units that were defective.", nullable=True),
    Col("recall", "float", "Defective units that were flagged.", nullable=True),
    Col("roc_auc", "float", "Realised ROC-AUC of the champion's risk.", nullable=True),
    Col("roc_auc_upper", "float", "Upper bound of its bootstrap CI.", nullable=True),
    Col(
        "reference_roc_auc",
        "float",
        "Champion's holdout ROC-AUC at this plant (release gate).",
        nullable=True,
    ),
    Col("mean_risk", "float", "Mean predicted risk.", nullable=True),
    Col("defect_rate", "float", "Observed defect rate of the labelled units.", nullable=True),
    Col("calibration_ratio", "float", "mean_risk / defect_rate (1 = calibrated).", nullable=True),
    Col("log_loss", "float", "Realised mean log-loss of the labelled units.", nullable=True),
    Col(
        "expected_log_loss",
        "float",
        "Mean log-loss the model itself expects from its risks (binary entropy).",
        nullable=True,
    ),
    Col(
        "loss_z",
        "float",
        "Excess log-loss (realised - what the risks expect) beyond the champion's excess on its "
        "own holdout, in standard errors: how surprised the model is.",
        nullable=True,
    ),
    Col(
        "pooled_days",
        "int",
        "Labelled days pooled in the window (this day and the ones before; 0 = too few "
        "labelled units).",
    ),
    Col("pooled_loss_z", "float", "loss_z over the pooled window.", nullable=True),
    Col(
        "expected_roc_auc",
        "float",
        "ROC-AUC the champion's own risks imply on this day's units (low on a "
        "day whose units hardly differ).",
        nullable=True,
    ),
    Col(
        "auc_z",
        "float",
        "(realised - expected ROC-AUC) beyond the champion's gap on its holdout, in standard "
        "errors (Hanley-McNeil); negative = ranks worse than it promises.",
        nullable=True,
    ),
    Col("pooled_roc_auc", "float", "ROC-AUC over the pooled window.", nullable=True),
    Col("pooled_auc_z", "float", "auc_z over the pooled window.", nullable=True),
    Col(
        "degraded",
        "bool",
        "The outcomes no longer follow the model (concept drift): on the day or over the "
        "pooled window, the log-loss surprise is too high or the ranking falls too far behind "
        "what the risks promise (thresholds in data/ml/monitoring.yaml); enough labelled units.",
    ),
)
OPS_COLS = (
    Col("plant", "label", "Plant id."),
    Col("partition_date", "date", "The plant's local day."),
    Col("quarantined_items", "int", "Values/records held back by the quality rules."),
    Col("quality_incidents", "int", "Distinct quarantine rules broken + sensor faults found."),
    Col("drift_alarms", "int", "Process-drift findings (features)."),
    Col("sensor_faults", "int", "Suspected sensor faults (incl. stuck sensors)."),
    Col("units", "int", "Units produced."),
    Col("predictions", "int", "Units scored."),
    Col(
        "overrides",
        "int",
        "Predictions overridden by quality engineers (decisions of the day's units).",
    ),
    Col("override_rate", "float", "overrides / predictions.", nullable=True),
    Col(
        "retrains",
        "int",
        "Retrains this plant-day triggered (counted when the retrain sensor acts: it "
        "refreshes the row).",
    ),
    Col(
        "cycle_time_hours",
        "float",
        "Decision cycle time: last landing file of the day received -> "
        "predictions available (hours).",
        nullable=True,
    ),
)


def as_day(col: pd.Series) -> pd.Series:
    """A partition-date column as one dtype for merging (DuckDB DATE, Python dates, timestamps)."""
    return pd.to_datetime(col).astype("datetime64[ns]")


def rounded(df: pd.DataFrame, digits: int) -> pd.DataFrame:
    """Numeric columns rounded (dates and labels left alone), for the metadata tables."""
    return df.round({c: digits for c in df.select_dtypes("number").columns})


def numbers(values: dict[str, Any]) -> dict[str, float]:
    """The figures of a run as numeric metadata, so the UI's Plots tab of the asset shows their
    trend over the plant-days (a missing figure - no labels yet, no rows - is left out)."""
    out = {}
    for k, v in values.items():
        if v is not None and pd.notna(v):
            out[k] = float(v)
    return out


def _monitoring_asset(
    name: str,
    deps: tuple[str, ...],
    cols: tuple[Col, ...],
    plants: dict[str, PlantConfig],
    start: dt.date,
    description: str,
) -> Any:
    """The decorator shared by the monitoring assets: plant x day, single-run backfills, the
    warehouse pool, same-partition dependencies, column schema in the catalog."""
    return dg.asset(
        name=name,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb"},
        partitions_def=plant_day(plants, start),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        deps=[dg.AssetDep(a, partition_mapping=dg.IdentityPartitionMapping()) for a in deps],
        code_version=CODE_VERSIONS["monitoring"],
        tags={"layer": "monitoring"},
        description=description,
        metadata={
            "dagster/column_schema": columns_table_schema(cols),
            "dagster/table_name": f"{ML_SCHEMA}.{name}",
        },
    )


def load_reference(reg: ModelRegistry, version: str) -> dict[str, Any]:
    text = reg.download_text(version, "drift/reference.json")
    if not text:
        raise dg.Failure(
            description=f"model version {version} has no drift reference (drift/reference.json)"
        )
    return json.loads(text)


def _png_md(ref_cdf: tuple[list[float], list[float]], cur: np.ndarray, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 2.4), dpi=80)
    edges, cdf = ref_cdf
    ax.plot(edges, cdf, label="reference", lw=1.5)
    c = np.sort(cur[~np.isnan(cur)])
    if len(c):
        ax.plot(c, np.arange(1, len(c) + 1) / len(c), label="this day", lw=1.5)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


# --------------------------------------------------------------------------- drift_metrics


def build_drift_asset(plants: dict[str, PlantConfig], start: dt.date) -> dg.AssetsDefinition:
    @_monitoring_asset(
        "drift_metrics",
        ("unit_features", "predictions"),
        DRIFT_COLS,
        plants,
        start,
        "Drift of each plant-day's inputs and scores against the champion's training reference (stored "
        "with the model version): normed Wasserstein (effect size), PSI and KS per monitored feature, "
        "per plant and per machine; findings classify a shift as process drift (retrain) or a "
        "suspected sensor fault / stuck sensor (maintenance) (ml.drift_metrics, ml.drift_findings).",
    )
    def drift_metrics(
        context: dg.AssetExecutionContext,
        platform: PlatformResource,
        warehouse: DuckDBResource,
        model_registry: ModelRegistryResource,
        audit_log: AuditLogResource,
        alerts: AlertChannelResource,
    ) -> dg.MaterializeResult:
        paths = platform.paths()
        mcfg = load_monitoring_config(paths)
        reg = model_registry.registry(paths)
        champ = reg.alias(CHAMPION)
        if champ is None:
            raise dg.Failure(
                description="no champion: drift is measured against the champion's training reference"
            )
        keys = keys_of(context)
        refs = parse_reference(load_reference(reg, champ.version), by_plant(keys))
        all_rows, all_findings, plots = [], [], []
        with connect(warehouse_path(warehouse)) as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {ML_SCHEMA}")
            for plant_id, days in by_plant(keys).items():
                for d in days:
                    key = [(plant_id, d)]
                    t = read_partitions(con, FEATURE_SCHEMA, TABLE, key)
                    rows = t.to_pandas() if t is not None else pd.DataFrame()
                    p = read_partitions(con, ML_SCHEMA, PREDICTIONS, key, columns="champion_score")
                    scores = (
                        p.to_pandas()["champion_score"].to_numpy()
                        if p is not None and p.num_rows
                        else None
                    )
                    table, findings = classify_day(rows, scores, refs, plant_id, mcfg)
                    if not table.empty:
                        table = table.assign(
                            plant=plant_id, partition_date=d, model_version=champ.version
                        )
                    dr = columns_conform(
                        table
                        if not table.empty
                        else pd.DataFrame({c.name: [] for c in DRIFT_COLS}),
                        DRIFT_COLS,
                    )
                    fr = pd.DataFrame(
                        [
                            {
                                **f,
                                "machines": ",".join(f["machines"]),
                                "plant": plant_id,
                                "partition_date": d,
                                "model_version": champ.version,
                            }
                            for f in findings
                        ]
                    )
                    fr = columns_conform(
                        fr if not fr.empty else pd.DataFrame({c.name: [] for c in FINDING_COLS}),
                        FINDING_COLS,
                    )
                    replace_partitions(
                        con,
                        ML_SCHEMA,
                        "drift_metrics",
                        dr,
                        key,
                        ddl=columns_ddl(DRIFT_COLS, ML_SCHEMA, "drift_metrics"),
                    )
                    replace_partitions(
                        con,
                        ML_SCHEMA,
                        "drift_findings",
                        fr,
                        key,
                        ddl=columns_ddl(FINDING_COLS, ML_SCHEMA, "drift_findings"),
                    )
                    all_rows.append(dr)
                    all_findings.append(fr)
                    worst = (
                        dr[dr["scope"] == "plant"]
                        .sort_values("wasserstein", ascending=False)
                        .head(1)
                    )
                    if len(plots) < 2 and not worst.empty and findings:
                        f = str(worst["feature"].iloc[0])
                        fp = refs[plant_id].profile.features[f]
                        plots.append(
                            _png_md(
                                (fp.edges, fp.cdf),
                                rows[f].to_numpy(dtype=float),
                                f"{plant_id} {d} {f}: W={worst['wasserstein'].iloc[0]:.2f}",
                            )
                        )
        drift = pd.concat(all_rows, ignore_index=True) if all_rows else pd.DataFrame()
        found = pd.concat(all_findings, ignore_index=True) if all_findings else pd.DataFrame()
        _notify(paths, audit_log.log(), alerts, found, context.run.run_id, champ.version)
        top = (
            drift[drift["scope"] == "plant"].sort_values("wasserstein", ascending=False).head(10)
            if len(drift)
            else drift
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(drift),
                "model_version": champ.version,
                "findings": md_table(found.astype(str))
                if len(found)
                else dg.MetadataValue.md("_(none)_"),
                "worst_features": md_table(
                    top[
                        [
                            "plant",
                            "partition_date",
                            "feature",
                            "wasserstein",
                            "psi",
                            "ks",
                            "mean_shift_sd",
                        ]
                    ]
                    .pipe(rounded, 4)
                    .astype(str)
                )
                if len(top)
                else dg.MetadataValue.md("_(none)_"),
                "plots": dg.MetadataValue.md("\n\n".join(plots) if plots else "_(no findings)_"),
                **numbers(
                    {
                        "max_wasserstein": top["wasserstein"].max() if len(top) else None,
                        "max_psi": drift.loc[drift["scope"] == "plant", "psi"].max()
                        if len(drift)
                        else None,
                        "process_drift_findings": (found["kind"] == "process_drift").sum()
                        if len(found)
                        else 0,
                        "sensor_fault_findings": found["kind"]
                        .isin(["sensor_fault", "stuck_sensor"])
                        .sum()
                        if len(found)
                        else 0,
                    }
                ),
            }
        )

    return drift_metrics


def _notify(
    paths: Paths,
    audit: AuditLog,
    alerts: AlertChannelResource,
    found: pd.DataFrame,
    run_id: str,
    version: str,
) -> None:
    """Alerts and audited data-quality incidents for the findings of a run."""
    if found.empty:
        return
    for (plant, kind), g in found.groupby(["plant", "kind"], observed=True):
        days = sorted({str(d)[:10] for d in g["partition_date"]})
        summary = f"{kind} at {plant} on {', '.join(days)}: " + "; ".join(
            g["detail"].astype(str).head(3)
        )
        refs = {
            "run_id": run_id,
            "model_version": version,
            "days": days,
            "features": sorted(set(g["feature"])),
            "machines": sorted(
                {m for ms in g["machines"].fillna("") for m in str(ms).split(",") if m}
            ),
        }
        if kind in ("sensor_fault", "stuck_sensor"):
            audit.append(
                "incident",
                "system:monitoring",
                actor_kind="system",
                plant=str(plant),
                outcome="info",
                subject=f"plant:{plant}",
                reason=f"data-quality incident (suspected sensor fault): {summary}",
                refs={**refs, "kind": kind, "retrain": False},
            )
            alerts.send(
                Alert(
                    kind="sensor_fault",
                    severity="warning",
                    summary=summary,
                    plant=str(plant),
                    details=refs,
                ),
                paths,
            )
        elif kind == "process_drift":
            alerts.send(
                Alert(
                    kind="drift_alarm",
                    severity="error",
                    summary=summary,
                    plant=str(plant),
                    details=refs,
                ),
                paths,
            )


# --------------------------------------------------------------------------- model_performance

#: Metadata of each model_performance materialisation: partition key -> [labelled, defective].
LABELLED_BY_PARTITION = "labelled_by_partition"


def build_performance_asset(plants: dict[str, PlantConfig], start: dt.date) -> dg.AssetsDefinition:
    @_monitoring_asset(
        "model_performance",
        ("predictions", "production_units"),
        PERF_COLS,
        plants,
        start,
        "Realised performance of the champion's decisions per plant and production day, filled "
        "in once inspection labels arrive (days later): precision, recall, ROC-AUC with a "
        "bootstrap CI, calibration, and the two tests that decide 'degraded': the ranking "
        "against the ROC-AUC the champion's own risks imply, and the log-loss surprise "
        "(ml.model_performance).",
    )
    def model_performance(
        context: dg.AssetExecutionContext,
        platform: PlatformResource,
        warehouse: DuckDBResource,
        model_registry: ModelRegistryResource,
        alerts: AlertChannelResource,
    ) -> dg.MaterializeResult:
        paths = platform.paths()
        pc = load_monitoring_config(paths).performance
        reg = model_registry.registry(paths)
        refs: dict[str, dict[str, float]] = {}
        drift_refs: dict[str, dict[str, Any]] = {}
        out = []
        with connect(warehouse_path(warehouse)) as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {ML_SCHEMA}")
            keys = keys_of(context)
            if not table_exists(con, ML_SCHEMA, PREDICTIONS):
                raise dg.Failure(description="no predictions yet")
            # the run's plant-days plus the (window - 1) days before each: the pooled window
            ext = sorted(
                {(p, d - dt.timedelta(days=i)) for p, d in keys for i in range(pc.window_days)}
            )
            df = keys_query(
                con,
                f"""
                SELECT p.plant, p.partition_date, p.model_version, p.risk, p.predicted_defect, u.defect::INTEGER AS y
                FROM {ML_SCHEMA}.{PREDICTIONS} p JOIN standard.production_units u USING (plant, partition_date, unit_id)
                SEMI JOIN _keys k ON p.plant = k.plant AND p.partition_date = k.partition_date
                WHERE p.decided_by = 'champion'""",
                ext,
            )
            df["partition_date"] = pd.to_datetime(df["partition_date"]).dt.date
            wanted = set(keys)
            for (plant, day, version), g in df.groupby(
                ["plant", "partition_date", "model_version"], observed=True
            ):
                if (plant, day) not in wanted:
                    continue
                if version not in refs:
                    report = reg.download_text(str(version), "gate/report.json")
                    pm = json.loads(report).get("plant_metrics", []) if report else []
                    refs[str(version)] = {r["plant"]: r.get("roc_auc") for r in pm}
                    drift_refs[str(version)] = load_reference(reg, str(version))
                lab = g[g["y"].notna()]
                y = lab["y"].to_numpy(dtype=np.int64)
                pos = int(y.sum()) if len(y) else 0
                row: dict[str, Any] = {
                    "plant": plant,
                    "partition_date": day,
                    "model_version": str(version),
                    "units": len(g),
                    "labelled": len(lab),
                    "positives": pos,
                    "reference_roc_auc": refs[str(version)].get(plant),
                    "degraded": False,
                    "pooled_days": 0,
                }
                if len(lab):
                    flagged = lab["predicted_defect"].to_numpy(dtype=bool)
                    tp = int((flagged & (y == 1)).sum())
                    row.update(
                        precision=tp / flagged.sum() if flagged.sum() else None,
                        recall=tp / pos if pos else None,
                        mean_risk=float(lab["risk"].mean()),
                        defect_rate=float(y.mean()),
                        calibration_ratio=float(lab["risk"].mean() / y.mean())
                        if y.mean() > 0
                        else None,
                    )
                    risk = lab["risk"].to_numpy(dtype=float)
                    sur = M.loss_surprise(
                        y, risk, holdout_baseline(drift_refs[str(version)], str(plant))
                    )
                    row.update(log_loss=sur.observed, expected_log_loss=sur.expected, loss_z=sur.z)
                    auc_base = holdout_auc_baseline(drift_refs[str(version)], str(plant))
                    ranked_worse = False
                    if pos >= pc.min_positives and len(y) - pos >= pc.min_positives:
                        iv = M.bootstrap_metric(
                            "roc_auc", y, risk, pc.bootstrap_resamples, pc.confidence
                        )
                        sh = M.auc_shortfall(y, risk, auc_base)
                        row.update(
                            roc_auc=iv.estimate,
                            roc_auc_upper=iv.upper,
                            expected_roc_auc=sh.expected,
                            auc_z=sh.z,
                        )
                        ranked_worse = len(lab) >= pc.min_units and sh.z <= -pc.auc_z_alarm
                    pool = df[
                        (df["plant"] == plant)
                        & (df["model_version"] == version)
                        & df["y"].notna()
                        & (df["partition_date"] > day - dt.timedelta(days=pc.window_days))
                        & (df["partition_date"] <= day)
                    ]
                    py = pool["y"].to_numpy(dtype=np.int64)
                    pooled_surprised = False
                    if len(py) >= pc.min_units:
                        prisk = pool["risk"].to_numpy(dtype=float)
                        psur = M.loss_surprise(
                            py, prisk, holdout_baseline(drift_refs[str(version)], str(plant))
                        )
                        row.update(
                            pooled_days=int(pool["partition_date"].nunique()), pooled_loss_z=psur.z
                        )
                        pooled_surprised = psur.z == psur.z and psur.z >= pc.pooled_loss_z_alarm
                        if pc.min_positives <= py.sum() <= len(py) - pc.min_positives:
                            psh = M.auc_shortfall(py, prisk, auc_base)
                            row.update(pooled_roc_auc=psh.observed, pooled_auc_z=psh.z)
                            ranked_worse = ranked_worse or psh.z <= -pc.pooled_auc_z_alarm
                    surprised = (
                        len(lab) >= pc.min_units and sur.z == sur.z and sur.z >= pc.loss_z_alarm
                    )
                    row["degraded"] = bool(surprised or pooled_surprised or ranked_worse)
                out.append(row)
            table = columns_conform(
                pd.DataFrame(out, columns=[c.name for c in PERF_COLS]), PERF_COLS
            )
            replace_partitions(
                con,
                ML_SCHEMA,
                "model_performance",
                table,
                keys,
                ddl=columns_ddl(PERF_COLS, ML_SCHEMA, "model_performance"),
            )
        deg = table[table["degraded"].astype(bool)] if len(table) else table
        if len(deg):
            for plant, g in deg.groupby("plant", observed=True):
                alerts.send(
                    Alert(
                        kind="performance_drop",
                        severity="error",
                        plant=str(plant),
                        summary=f"outcomes no longer follow the model (log-loss surprise) at {plant} on "
                        f"{sorted(str(d)[:10] for d in g['partition_date'])}",
                        details={"run_id": context.run.run_id},
                    ),
                    paths,
                )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(table),
                "labelled_units": int(table["labelled"].sum()) if len(table) else 0,
                "degraded_days": len(deg),
                # per plant-day partition: [labelled units, defective among them]; the retrain
                # sensor counts the labelled units after a shift from these (no warehouse read)
                LABELLED_BY_PARTITION: dg.MetadataValue.json(
                    {
                        key_for(str(r.plant), pd.Timestamp(r.partition_date).date()): [
                            int(r.labelled),
                            int(r.positives),
                        ]
                        for r in table.itertuples()
                    }
                ),
                "table": md_table(rounded(table, 4).astype(str))
                if len(table)
                else dg.MetadataValue.md("_(none)_"),
                **numbers(_performance_figures(table)),
            }
        )

    return model_performance


def _performance_figures(table: pd.DataFrame) -> dict[str, Any]:
    """The run's realised quality: ROC-AUC and log-loss over its labelled plant-days (weighted by
    labelled units) and the defect rate of the labelled units."""
    lab = table[table["labelled"] > 0] if len(table) else table
    if lab.empty:
        return {}
    w = lab["labelled"].astype(float)

    def weighted(col: str) -> float | None:
        ok = lab[col].notna()
        return float((lab.loc[ok, col] * w[ok]).sum() / w[ok].sum()) if ok.any() else None

    return {
        "realised_roc_auc": weighted("roc_auc"),
        "realised_log_loss": weighted("log_loss"),
        "expected_log_loss": weighted("expected_log_loss"),
        "defect_rate": float(lab["positives"].sum() / w.sum()),
    }


# --------------------------------------------------------------------------- ops_metrics


def build_ops_asset(plants: dict[str, PlantConfig], start: dt.date) -> dg.AssetsDefinition:
    @_monitoring_asset(
        "ops_metrics",
        ("quarantine", "predictions", "drift_metrics"),
        OPS_COLS,
        plants,
        start,
        "Operations per plant and day: data-quality incidents, drift alarms, sensor faults, overrides "
        "and override rate, retrains, decision cycle time from the day's last landing file to its "
        "predictions (ml.ops_metrics).",
    )
    def ops_metrics(
        context: dg.AssetExecutionContext,
        platform: PlatformResource,
        warehouse: DuckDBResource,
        audit_log: AuditLogResource,
    ) -> dg.MaterializeResult:
        from quality_platform.overrides import overrides_frame

        paths = platform.paths()
        keys = keys_of(context)
        # retrains that a plant-day triggered (its check's last day), refs parsed once
        retrained: dict[tuple[str, str], int] = {}
        for rec in audit_log.log().records(action="retrain"):
            if rec.outcome == "ok":
                for plant_id in rec.refs.get("plants", []):
                    k = (plant_id, str(rec.refs.get("last_day")))
                    retrained[k] = retrained.get(k, 0) + 1
        frame = pd.DataFrame(keys, columns=["plant", "partition_date"])
        frame["partition_date"] = as_day(frame["partition_date"])
        pred = key_predicate(keys)
        with connect(warehouse_path(warehouse)) as con:

            def grouped(schema: str, table: str, select: str) -> pd.DataFrame | None:
                """``select`` per (plant, day) of the run in one grouped query (None: no table yet)."""
                if not table_exists(con, schema, table):
                    return None
                return con.execute(
                    f"SELECT plant, partition_date, {select} FROM {schema}.{table} WHERE {pred} "
                    "GROUP BY ALL"
                ).df()

            parts = [
                grouped(
                    "standard",
                    "quarantine",
                    "sum(n_items) FILTER (WHERE severity = 'reject') AS q_items, "
                    "count(DISTINCT rule) AS q_rules",
                ),
                grouped(
                    ML_SCHEMA,
                    "drift_findings",
                    "count(*) FILTER (WHERE kind = 'process_drift') AS drift, "
                    "count(*) FILTER (WHERE kind IN ('sensor_fault', "
                    "'stuck_sensor')) AS faults",
                ),
                grouped("standard", "production_units", "count(*) AS units"),
                grouped(ML_SCHEMA, PREDICTIONS, "count(*) AS n_pred, max(scored_at_utc) AS scored"),
                grouped("raw", "receipts", "max(modified_utc) AS landed"),
                # an override counts on its unit's production day: the day of the unit's prediction
                grouped(ML_SCHEMA, PREDICTIONS, "unit_id"),
            ]
            for part in parts[:-1]:
                if part is not None:
                    part["partition_date"] = as_day(part["partition_date"])
                    frame = frame.merge(part, on=["plant", "partition_date"], how="left")
            scored_units = parts[-1]
            if scored_units is not None and len(scored_units):
                ov = pd.concat(
                    [
                        overrides_frame(paths, plant=p)[["plant", "unit_id"]]
                        for p in frame["plant"].unique()
                    ]
                )
                hit = scored_units.merge(ov.astype({"unit_id": str}), on=["plant", "unit_id"])
                n_ov = hit.groupby(["plant", "partition_date"]).size().rename("n_ov").reset_index()
                n_ov["partition_date"] = as_day(n_ov["partition_date"])
                frame = frame.merge(n_ov, on=["plant", "partition_date"], how="left")
            for col in ("q_items", "q_rules", "drift", "faults", "units", "n_pred", "n_ov"):
                frame[col] = frame[col].fillna(0).astype(int) if col in frame else 0
            for col in ("scored", "landed"):
                if col not in frame:
                    frame[col] = pd.NaT
            rows = []
            for r in frame.itertuples(index=False):
                d = r.partition_date.date()
                cycle = (
                    (pd.Timestamp(r.scored) - pd.Timestamp(r.landed)).total_seconds() / 3600
                    if pd.notna(r.scored) and pd.notna(r.landed)
                    else None
                )
                rows.append(
                    {
                        "plant": r.plant,
                        "partition_date": d,
                        "quarantined_items": r.q_items,
                        "quality_incidents": r.q_rules + r.faults,
                        "drift_alarms": r.drift,
                        "sensor_faults": r.faults,
                        "units": r.units,
                        "predictions": r.n_pred,
                        "overrides": r.n_ov,
                        "override_rate": r.n_ov / r.n_pred if r.n_pred else None,
                        "retrains": retrained.get((r.plant, str(d)), 0),
                        "cycle_time_hours": cycle,
                    }
                )
            table = columns_conform(
                pd.DataFrame(rows) if rows else pd.DataFrame({c.name: [] for c in OPS_COLS}),
                OPS_COLS,
            )
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {ML_SCHEMA}")
            replace_partitions(
                con,
                ML_SCHEMA,
                "ops_metrics",
                table,
                keys,
                ddl=columns_ddl(OPS_COLS, ML_SCHEMA, "ops_metrics"),
            )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(table),
                "table": md_table(rounded(table, 3).astype(str)),
                **numbers(
                    {
                        "quarantined_items": table["quarantined_items"].sum(),
                        "drift_alarms": table["drift_alarms"].sum(),
                        "sensor_faults": table["sensor_faults"].sum(),
                        "predictions": table["predictions"].sum(),
                        "override_rate": table["overrides"].sum() / table["predictions"].sum()
                        if table["predictions"].sum()
                        else None,
                        "retrains": table["retrains"].sum(),
                        "max_cycle_time_hours": table["cycle_time_hours"].max(),
                    }
                ),
            }
        )

    return ops_metrics
