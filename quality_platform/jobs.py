"""Jobs: landing per plant (raw) and the standard + KPI + feature layers (plant x day)."""

from __future__ import annotations

import dagster as dg

STANDARD_JOB = "standardize_job"
TRAIN_JOB = "train_job"
SCORE_JOB = "score_job"
CANARY_JOB = "canary_job"
MONITOR_JOB = "monitor_job"
PERFORMANCE_JOB = "performance_job"
OPS_JOB = "ops_job"


def land_job_name(plant_id: str) -> str:
    return f"land_{plant_id}"


def _publish_audit_head(context: dg.HookContext) -> None:
    """Tag the run with the audit chain's head (run tag ``qp/audit_head``, see
    quality_platform/audit_anchors.py). Runs after every step, so the last step to finish leaves
    the head as of the run's end; a failure to publish is logged and never fails the run."""
    from quality_platform.audit import AuditLog, audit_db_path
    from quality_platform.audit_anchors import anchor_run

    try:
        paths = context.resources.platform.paths()
        anchor_run(context.instance, context.run_id, AuditLog(audit_db_path(paths.data_dir)))
    except Exception as exc:  # the anchor is evidence, not part of the run's work
        context.log.warning(
            f"audit head not published on run {context.run_id}: {type(exc).__name__}: {exc}"
        )


@dg.success_hook(name="publish_audit_head_on_success", required_resource_keys={"platform"})
def publish_audit_head_on_success(context: dg.HookContext) -> None:
    _publish_audit_head(context)


@dg.failure_hook(name="publish_audit_head_on_failure", required_resource_keys={"platform"})
def publish_audit_head_on_failure(context: dg.HookContext) -> None:
    _publish_audit_head(context)


#: On every job: each run publishes the audit head as its run tag ``qp/audit_head``.
AUDIT_HEAD_HOOKS = {publish_audit_head_on_success, publish_audit_head_on_failure}


def build_jobs(plant_ids: list[str]) -> list[dg.UnresolvedAssetJobDefinition]:
    """One landing job per plant (its raw asset has its own partitions) and one standardisation job,
    both with the in-process executor; every job publishes the audit head on its runs
    (:data:`AUDIT_HEAD_HOOKS`)."""
    jobs = [
        dg.define_asset_job(
            land_job_name(p),
            selection=dg.AssetSelection.assets(f"raw_{p}"),
            description=f"Copy plant {p}'s landing files of the selected days into the raw layer.",
            tags={"layer": "raw", "plant": p},
            executor_def=dg.in_process_executor,
            hooks=AUDIT_HEAD_HOOKS,
        )
        for p in plant_ids
    ]
    jobs.append(
        dg.define_asset_job(
            STANDARD_JOB,
            selection=dg.AssetSelection.groups("standard", "kpi", "features"),
            description="Standardise the selected plant-days (quality gates, quarantine), compute the KPIs "
            "and the per-unit features.",
            tags={"layer": "standard"},
            # Steps are small and serialised on the DuckDB pool anyway; a process per step would cost
            # seconds of start-up each (~1.3 s per step on 2 cores, measured).
            executor_def=dg.in_process_executor,
            hooks=AUDIT_HEAD_HOOKS,
        )
    )
    # name, selected assets, layer, description - all asset selections, all in-process
    for name, assets, layer, description in (
        (
            TRAIN_JOB,
            ("training_dataset", "defect_model", "model_evaluation", "model_documentation"),
            "ml",
            "Snapshot the training data, train and register a challenger, run the release gate and the "
            "approval policy, and generate the new version's documentation.",
        ),
        (
            SCORE_JOB,
            ("predictions",),
            "ml",
            "Score the selected plant-days with the champion (canary/shadow challenger), with reasons.",
        ),
        (
            CANARY_JOB,
            ("canary_evaluation",),
            "ml",
            "Compare challenger and champion on labelled units; promote, roll back or wait.",
        ),
        (
            MONITOR_JOB,
            ("predictions", "drift_metrics", "ops_metrics"),
            "monitoring",
            "Score the selected plant-days, measure their drift against the champion's reference "
            "(sensor fault or process drift) and their operations metrics.",
        ),
        (
            PERFORMANCE_JOB,
            ("model_performance",),
            "monitoring",
            "Realised performance of the selected plant-days once their labels arrived.",
        ),
        (
            OPS_JOB,
            ("ops_metrics",),
            "monitoring",
            "Refresh the operations metrics of plant-days (e.g. after the retrain sensor acted on them).",
        ),
    ):
        jobs.append(
            dg.define_asset_job(
                name,
                selection=dg.AssetSelection.assets(*assets),
                description=description,
                tags={"layer": layer},
                executor_def=dg.in_process_executor,
                hooks=AUDIT_HEAD_HOOKS,
            )
        )
    return jobs
