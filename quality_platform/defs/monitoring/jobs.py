"""Jobs of the monitoring domain: score + drift + operations metrics of plant-days, realised
performance once labels arrived, and a refresh of the operations metrics."""

from __future__ import annotations

import dagster as dg

from quality_platform.defs._jobs import asset_job

MONITOR_JOB = "monitor_job"
PERFORMANCE_JOB = "performance_job"
OPS_JOB = "ops_job"


def build_monitoring_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    """monitor_job, performance_job and ops_job."""
    return [
        asset_job(
            MONITOR_JOB,
            dg.AssetSelection.assets("predictions", "drift_metrics", "ops_metrics"),
            "Score the selected plant-days, measure their drift against the champion's reference "
            "(sensor fault or process drift) and their operations metrics.",
            {"layer": "monitoring"},
        ),
        asset_job(
            PERFORMANCE_JOB,
            dg.AssetSelection.assets("model_performance"),
            "Realised performance of the selected plant-days once their labels arrived.",
            {"layer": "monitoring"},
        ),
        asset_job(
            OPS_JOB,
            dg.AssetSelection.assets("ops_metrics"),
            "Refresh the operations metrics of plant-days (e.g. after the retrain sensor acted on "
            "them).",
            {"layer": "monitoring"},
        ),
    ]
