"""Jobs of the ML domain: train (snapshot -> challenger -> gate -> approval -> documentation),
score, and evaluate the canary."""

from __future__ import annotations

import dagster as dg

from quality_platform.defs._jobs import asset_job

TRAIN_JOB = "train_job"
SCORE_JOB = "score_job"
CANARY_JOB = "canary_job"


def build_ml_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    """train_job, score_job and canary_job."""
    return [
        asset_job(
            TRAIN_JOB,
            dg.AssetSelection.assets(
                "training_dataset", "defect_model", "model_evaluation", "model_documentation"
            ),
            "Snapshot the training data, train and register a challenger, run the release gate and "
            "the approval policy, and generate the new version's documentation.",
            {"layer": "ml"},
        ),
        asset_job(
            SCORE_JOB,
            dg.AssetSelection.assets("predictions"),
            "Score the selected plant-days with the champion (canary/shadow challenger), with reasons.",
            {"layer": "ml"},
        ),
        asset_job(
            CANARY_JOB,
            dg.AssetSelection.assets("canary_evaluation"),
            "Compare challenger and champion on labelled units; promote, roll back or wait.",
            {"layer": "ml"},
        ),
    ]
