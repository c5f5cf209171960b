"""The one schema of ``ml.predictions`` (declared once as :class:`Col`, like the standard tables)."""

from __future__ import annotations

from quality_platform.standard.schemas import Col

ML_SCHEMA = "ml"
PREDICTIONS = "predictions"


def prediction_columns(k: int) -> tuple[Col, ...]:
    """Columns of ml.predictions with ``k`` reasons per prediction."""
    reasons: list[Col] = []
    for i in range(1, k + 1):
        reasons += [
            Col(
                f"reason_{i}",
                "text",
                f"Reason {i} of the deciding model: 'feature=value (SHAP)', the feature with the "
                f"{i}. largest |SHAP| contribution (log-odds; + pushes towards defect).",
                nullable=True,
            ),
            Col(f"reason_{i}_feature", "label", f"Feature name of reason {i}.", nullable=True),
            Col(
                f"reason_{i}_shap", "float", f"SHAP value (log-odds) of reason {i}.", nullable=True
            ),
        ]
    return (
        Col("plant", "label", "Plant id."),
        Col(
            "partition_date",
            "date",
            "The plant's local production day of the unit (partition key).",
        ),
        Col("unit_id", "text", "Produced unit or batch id."),
        Col("machine_id", "label", "Machine that produced the unit."),
        Col("start_utc", "timestamp", "Start of the unit's production window (UTC)."),
        Col("risk", "float", "Defect probability from the DECIDING model."),
        Col(
            "threshold",
            "float",
            "Decision threshold of the deciding model (its validation max-F1 threshold).",
        ),
        Col("predicted_defect", "bool", "risk >= threshold: the unit is flagged for inspection."),
        Col(
            "decided_by",
            "label",
            "champion or challenger (canary share, stable hash of plant and unit id), or "
            "rules in the safe state (data/ml/safe_state.yaml).",
        ),
        Col(
            "model_version",
            "label",
            "Registered version of the deciding model (`rules:v<n>` in the safe state).",
        ),
        Col("champion_version", "label", "Champion version at scoring time."),
        Col("champion_score", "float", "Champion's risk for the unit (always scored)."),
        Col(
            "challenger_version",
            "label",
            "Challenger version at scoring time (canary/shadow), if any.",
            nullable=True,
        ),
        Col(
            "challenger_score",
            "float",
            "Challenger's risk (canary or shadow), if a challenger exists.",
            nullable=True,
        ),
        *reasons,
        Col("scored_at_utc", "timestamp", "When the prediction was made."),
        Col("run_id", "text", "Dagster run that made the prediction."),
    )
