"""Configuration of the ML lifecycle, validated like every config file (errors name file and field).

- ``data/ml/model.yaml``: intended purpose, features, training window, CatBoost parameters, the
  release gate's thresholds, canary/shadow settings and where MLflow keeps its store.
- ``data/ml/approval_policy.yaml``: which changes need a human approval and the declared change
  envelope inside which a gated challenger may be approved automatically.
- ``data/ml/behaviour_cases.yaml``: behavioural test cases of the release gate, kept as data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from quality_platform.config import ConfigError, ConfigModel, load_yaml_model
from quality_platform.settings import Paths, get_paths

ML_DIR = "ml"


class FeatureSelection(ConfigModel):
    """Which columns of ``features.unit_features`` the model sees."""

    categorical: list[str] = Field(min_length=1)
    #: Statistics left out of the model (e.g. ``n``: reading counts describe data coverage, not the process).
    exclude_statistics: list[str] = Field(default_factory=list)
    #: Individual feature columns left out.
    exclude_columns: list[str] = Field(default_factory=list)


class TrainingWindow(ConfigModel):
    """The time-bounded training snapshot."""

    #: Days (per plant, ending at the plant's last day with complete labels) in the snapshot.
    window_days: int = Field(21, ge=1, le=3650)
    #: Per plant, split of the snapshot (ml.dataset._split: holdout days, validation units): train | validation | holdout.
    validation_fraction: float = Field(0.1, gt=0, lt=0.5)
    holdout_fraction: float = Field(0.2, gt=0, lt=0.5)
    #: A plant with fewer labelled units in the window is left out of the snapshot (and says so).
    min_units_per_plant: int = Field(200, ge=10)


class CatBoostParams(ConfigModel):
    """CatBoost parameters. Same seed AND same thread count give identical predictions."""

    iterations: int = Field(300, ge=10, le=20000)
    depth: int = Field(6, ge=2, le=12)
    learning_rate: float = Field(0.08, gt=0, le=1)
    l2_leaf_reg: float = Field(3.0, ge=0)
    random_seed: int = 42
    thread_count: int = Field(2, ge=1, le=64)

    def as_catboost(self) -> dict[str, object]:
        return {
            **self.model_dump(),
            "loss_function": "Logloss",
            "eval_metric": "AUC",
            "allow_writing_files": False,
            "verbose": False,
        }


class SampleRule(ConfigModel):
    """How much labelled data a statistical judgement needs, and its bootstrap."""

    min_units: int = Field(300, ge=1)
    min_positives: int = Field(15, ge=1)
    bootstrap_resamples: int = Field(200, ge=20, le=5000)
    confidence: float = Field(0.95, gt=0.5, lt=1)


class NonInferiorityRule(SampleRule):
    metric: Literal["roc_auc", "pr_auc", "brier", "log_loss"] = "roc_auc"
    margin: float = Field(0.02, ge=0, le=1)


class GateThresholds(ConfigModel):
    """The release gate (checks on ``model_evaluation``)."""

    min_roc_auc: float = Field(0.75, ge=0, le=1)
    min_pr_auc: float = Field(0.15, ge=0, le=1)
    max_ece: float = Field(0.05, ge=0, le=1)
    calibration_bins: int = Field(10, ge=2, le=100)
    #: Overall holdout metric of the challenger may trail the champion's by at most this much.
    vs_champion_metric: Literal["roc_auc", "pr_auc", "brier", "log_loss"] = "roc_auc"
    vs_champion_margin: float = Field(0.01, ge=0, le=1)
    per_plant: NonInferiorityRule = Field(default_factory=NonInferiorityRule)
    #: Without a champion, each plant's metric lower bound must reach this.
    per_plant_min_metric: float = Field(0.65, ge=0, le=1)


class CanarySettings(ConfigModel):
    """Routing of new units between champion and challenger, and the canary decision rule."""

    #: Stable hash-based share of units decided by the challenger (0 = none).
    share: float = Field(0.1, ge=0, le=0.5)
    #: Score every unit with the challenger too (its decisions unused outside its share).
    shadow: bool = True
    metric: Literal["roc_auc", "pr_auc", "brier", "log_loss"] = "roc_auc"
    promote_margin: float = Field(0.01, ge=0, le=1)
    rollback_margin: float = Field(0.02, ge=0, le=1)
    min_labelled_units: int = Field(500, ge=10)
    min_positives: int = Field(15, ge=1)
    bootstrap_resamples: int = Field(200, ge=20, le=5000)


class MlflowSettings(ConfigModel):
    """Where MLflow keeps runs and the registry. ``None`` = the embedded default under the data folder
    (``sqlite:///<data>/mlflow/mlflow.db``, artifacts in ``<data>/mlflow/artifacts``); the environment
    variables ``QP_MLFLOW_TRACKING_URI`` / ``QP_MLFLOW_ARTIFACT_ROOT`` override both."""

    tracking_uri: str | None = None
    artifact_root: str | None = None
    experiment: str = "quality_platform/defect_model"
    registered_model: str = "defect_model"


class ModelConfig(ConfigModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model_name: str = "defect_model"
    intended_purpose: str
    label: Literal["defect", "scrap", "rework"] = "defect"
    owner: str
    features: FeatureSelection
    training: TrainingWindow = Field(default_factory=TrainingWindow)
    catboost: CatBoostParams = Field(default_factory=CatBoostParams)
    #: Top reasons (SHAP) stored with each prediction.
    reasons_per_prediction: int = Field(3, ge=0, le=10)
    gate: GateThresholds = Field(default_factory=GateThresholds)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)


class ParamRange(ConfigModel):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> ParamRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class ChangeEnvelope(ConfigModel):
    """What an automatically approvable retrain may change (anything else needs a human)."""

    same_feature_set: bool = True
    same_data_sources: bool = True
    same_label: bool = True
    parameters: dict[str, ParamRange] = Field(default_factory=dict)
    #: Parameters that must equal the champion's.
    fixed_parameters: list[str] = Field(default_factory=list)


class ApprovalPolicy(ConfigModel):
    """Which model changes a human must approve; the rest may be approved automatically."""

    version: int = Field(ge=1)
    #: The first version of a model (no champion to compare with) always needs a human.
    first_version_requires_human: bool = True
    #: Automatic approval inside the envelope; False = every version needs a human.
    auto_approve_within_envelope: bool = True
    change_envelope: ChangeEnvelope = Field(default_factory=ChangeEnvelope)


Expectation = Literal["increase", "decrease", "above", "below"]


class BehaviourCase(ConfigModel):
    """A defined input with an expected output.

    The input is a reference unit of ``plant`` (the median of each numeric feature and the most
    frequent category of the holdout's units of that plant), with ``set`` applied on top. With
    ``expect: increase|decrease`` the risk must move by at least ``min_change`` against the
    reference unit; with ``above|below`` the risk itself is compared with ``value``.
    """

    name: str
    description: str
    plant: str
    set: dict[str, float | str] = Field(min_length=1)
    expect: Expectation
    min_change: float = Field(0.0, ge=0, le=1)
    value: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _value_needed(self) -> BehaviourCase:
        if self.expect in ("above", "below") and self.value is None:
            raise ValueError(f"expect: {self.expect} needs a 'value'")
        return self


class BehaviourCases(ConfigModel):
    version: int = Field(ge=1)
    cases: list[BehaviourCase] = Field(default_factory=list)


def ml_dir(paths: Paths | None = None) -> Path:
    """``<config>/ml``."""
    return (paths or get_paths()).config_dir / ML_DIR


def load_model_config(paths: Paths | None = None) -> ModelConfig:
    """``data/ml/model.yaml``."""
    return load_yaml_model(ml_dir(paths) / "model.yaml", ModelConfig)


def load_approval_policy(paths: Paths | None = None) -> ApprovalPolicy:
    """``data/ml/approval_policy.yaml``; the envelope may only name known CatBoost parameters."""
    path = ml_dir(paths) / "approval_policy.yaml"
    policy: ApprovalPolicy = load_yaml_model(path, ApprovalPolicy)
    known = set(CatBoostParams.model_fields)
    for name in [*policy.change_envelope.parameters, *policy.change_envelope.fixed_parameters]:
        if name not in known:
            raise ConfigError(
                f"{path}: field 'change_envelope.parameters.{name}': unknown CatBoost parameter; "
                f"known: {sorted(known)}"
            )
    return policy


def load_behaviour_cases(paths: Paths | None = None) -> BehaviourCases:
    """``data/ml/behaviour_cases.yaml``."""
    return load_yaml_model(ml_dir(paths) / "behaviour_cases.yaml", BehaviourCases)


def mlflow_uris(cfg: ModelConfig, paths: Paths | None = None) -> tuple[str, str]:
    """(tracking URI, artifact root): the deployment's (``QP_MLFLOW_*``), else data/ml/model.yaml,
    else local files below the data dir."""
    paths = paths or get_paths()
    base = paths.data_dir / "mlflow"
    tracking = (
        paths.mlflow_tracking_uri or cfg.mlflow.tracking_uri or f"sqlite:///{base / 'mlflow.db'}"
    )
    artifacts = (
        paths.mlflow_artifact_root or cfg.mlflow.artifact_root or (base / "artifacts").as_uri()
    )
    return tracking, artifacts


# --------------------------------------------------------------------------- monitoring (data/ml/monitoring.yaml)


class DriftSettings(ConfigModel):
    """Input and prediction drift per plant-day against the champion's training reference."""

    #: Statistics whose per-quantity features are monitored (e.g. ``mean`` -> ``<quantity>__mean``).
    monitored_statistics: list[str] = Field(default_factory=lambda: ["mean"], min_length=1)
    #: Normed Wasserstein-1 (in reference standard deviations) at which a plant-day drifts.
    alarm: float = Field(0.4, gt=0)
    #: The alarm is raised to this factor x the reference's largest single-day distance per feature.
    noise_factor: float = Field(1.25, ge=0)
    #: Per machine: mean shift against the machine's own reference, in its reference sd, beyond the
    #: plant's common mode (the median machine) - used to tell sensor faults apart.
    machine_alarm: float = Field(3.0, gt=0)
    prediction_alarm: float = Field(0.5, gt=0)
    #: Fewer units in a plant-day (or machine-day) than this: not judged.
    min_units: int = Field(100, ge=1)
    min_machine_units: int = Field(30, ge=1)
    n_edges: int = Field(101, ge=11, le=1001)


class FaultSettings(ConfigModel):
    """Sensor fault or process drift? (F7)."""

    #: A shift confined to at most this many machines AND this share of the plant's machines is a
    #: suspected sensor fault (maintenance), not process drift (retrain).
    max_machines: int = Field(2, ge=1)
    max_machine_share: float = Field(0.25, gt=0, le=1)
    #: Flat values: the share of a machine's units whose window std is (almost) zero.
    stuck_std_below: float = Field(1e-9, ge=0)
    stuck_unit_share: float = Field(0.5, gt=0, le=1)


class PerformanceSettings(SampleRule):
    """Realised performance once labels arrive (model_performance)."""

    #: ERROR when a plant-day's realised log-loss exceeds what the champion's own risks predict by
    #: this many standard errors (see quality_platform.ml.metrics.loss_surprise).
    loss_z_alarm: float = Field(4.0, gt=0)
    #: Or the same surprise over the last ``window_days`` labelled days reaches this (more units,
    #: so a smaller but lasting change is seen too).
    window_days: int = Field(3, ge=1, le=30)
    pooled_loss_z_alarm: float = Field(3.5, gt=0)
    #: Or the realised ROC-AUC falls this many standard errors behind the ROC-AUC the champion's own
    #: risks imply on the same units (beyond its gap on the holdout): the ranking broke.
    auc_z_alarm: float = Field(3.0, gt=0)
    pooled_auc_z_alarm: float = Field(3.0, gt=0)


class LoopSettings(ConfigModel):
    """The closed loop (F20): when a failed drift/performance check starts a retrain."""

    #: The drift (or performance drop) must persist for this many consecutive plant-days.
    debounce_plant_days: int = Field(1, ge=1, le=30)
    #: Plant time, per plant: after a retrain triggered by a plant's days up to D, that plant's next
    #: trigger must cover a day >= D + this many plant-days (another plant is never held back),
    #: unless the retrain's version was rejected or failed the gate. Counting partition dates, not
    #: wall-clock hours, makes a backfill, a replay and live operation decide alike.
    cooldown_plant_days: int = Field(7, ge=0, le=365)
    #: Label latency: a retrain waits until the plant's labelled units produced on or after the
    #: shift's first day (the failing streak's first plant-day) that a retrain's train split would
    #: hold (``ml.dataset``) number at least this many units and this many defective
    #: ones, so the new model learns the new regime instead of the old one; the wait is audited.
    #: 0 and 0: retrain at once.
    min_post_shift_labelled_units: int = Field(300, ge=0)
    min_post_shift_defects: int = Field(15, ge=0)
    #: ... but no longer than this many plant-days after the shift's first day (labels that never
    #: come, a shift that does not change the defect rate): then it retrains with what there is.
    max_label_wait_plant_days: int = Field(7, ge=0, le=365)
    #: Fallback: retrain on a schedule even without drift (cron, UTC).
    periodic_retrain_cron: str = "0 3 * * 1"
    daily_cron: str = "30 5 * * *"
    #: How often the daemon evaluates the loop's sensors (landing, standardisation, monitoring,
    #: retrain, alerts), in seconds; the daemon's own loop runs every 5 s. A tick is cheap (a folder
    #: listing, a look at the event log); a smaller value shortens the way from file to score.
    sensor_interval_seconds: int = Field(30, ge=5, le=3600)


class MonitoringConfig(ConfigModel):
    drift: DriftSettings = Field(default_factory=DriftSettings)
    fault: FaultSettings = Field(default_factory=FaultSettings)
    performance: PerformanceSettings = Field(default_factory=PerformanceSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)


def load_monitoring_config(paths: Paths | None = None) -> MonitoringConfig:
    """``data/ml/monitoring.yaml``."""
    return load_yaml_model(ml_dir(paths) / "monitoring.yaml", MonitoringConfig)
