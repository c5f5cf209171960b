"""The MLflow side of the model lifecycle (F13): runs, registered versions, tags and aliases.

One small wrapper instead of the legacy dagster-mlflow resource. MLflow is imported lazily (it
costs seconds) and is always given explicit URIs: by default a SQLite store and a local artifact
folder under the data directory, so nothing needs a server.

State of a version lives in MLflow, where any MLflow client can see it:

- aliases ``champion`` (decides predictions) and ``challenger`` (canary / shadow);
- tags ``qp.*``: lineage (data hash, partitions, code version, git commit, Dagster run), the gate
  result, the approval (who, when, why) and the lifecycle status.

Who changed what, when and why is in the audit log (:mod:`quality_platform.audit`); history is
read from there.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from quality_platform.ml.config import ModelConfig, mlflow_uris
from quality_platform.ml.frame import FeatureSpec
from quality_platform.settings import Paths, get_paths

CHAMPION, CHALLENGER = "champion", "challenger"
#: Lifecycle statuses of a version (tag ``qp.status``).
STATUSES = ("registered", "challenger", "champion", "retired", "rolled_back", "rejected", "gate_failed")


class RegistryError(Exception):
    """A registry operation that cannot be done (message says why)."""


@dataclass(frozen=True)
class VersionInfo:
    """One registered version with its ``qp.*`` tags and aliases."""

    version: str
    run_id: str
    created_ms: int
    tags: dict[str, str]
    aliases: tuple[str, ...]

    def tag(self, key: str, default: str | None = None) -> str | None:
        return self.tags.get(f"qp.{key}", default)

    @property
    def gate(self) -> str:
        return self.tag("gate", "pending") or "pending"

    @property
    def approval(self) -> str:
        return self.tag("approval", "pending") or "pending"

    @property
    def status(self) -> str:
        return self.tag("status", "registered") or "registered"

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(json.loads(self.tags["qp.feature_spec"]))

    @property
    def threshold(self) -> float:
        return float(self.tags["qp.threshold"])

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.tags.get("qp.params", "{}"))

    @property
    def partitions(self) -> dict[str, list[str]]:
        return json.loads(self.tags.get("qp.partitions", "{}"))


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    return mlflow


class ModelRegistry:
    """MLflow tracking + registry of the defect model of one installation."""

    def __init__(self, cfg: ModelConfig, paths: Paths | None = None) -> None:
        self.cfg = cfg
        self.paths = paths or get_paths()
        self.tracking_uri, self.artifact_root = mlflow_uris(cfg, self.paths)
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.name = cfg.mlflow.registered_model
        mlflow = _mlflow()
        self.client = mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # ------------------------------------------------------------------ experiment and runs

    def experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.cfg.mlflow.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        return str(self.client.create_experiment(self.cfg.mlflow.experiment,
                                                 artifact_location=f"{self.artifact_root}/{self.cfg.mlflow.experiment}"))

    def log_and_register(self, model: Any, spec: FeatureSpec, *, params: dict[str, Any], metrics: dict[str, float],
                         tags: dict[str, str], artifacts: dict[str, str], run_name: str) -> VersionInfo:
        """Log one training run (params, metrics, model with signature and explicit requirements,
        text artifacts) and register the model as a new version carrying ``tags`` (as ``qp.*``)."""
        import catboost
        import numpy as np
        import pandas as pd

        mlflow = _mlflow()
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        signature = ModelSignature(
            inputs=Schema([ColSpec("string", c) for c in spec.categorical] + [ColSpec("double", c) for c in spec.numeric]),
            outputs=Schema([ColSpec("long", "defect")]))
        requirements = [f"catboost=={catboost.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]
        with mlflow.start_run(experiment_id=self.experiment_id(), run_name=run_name):
            mlflow.log_params({k: v for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
            mlflow.set_tags(tags)
            info = mlflow.catboost.log_model(model, name="model", signature=signature, pip_requirements=requirements)
            with tempfile.TemporaryDirectory() as tmp:
                for rel, text in artifacts.items():
                    p = Path(tmp) / rel
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text(text, encoding="utf-8")
                mlflow.log_artifacts(tmp)
        mv = mlflow.register_model(info.model_uri, self.name, tags={f"qp.{k}": v for k, v in tags.items()})
        return self.version(str(mv.version))

    def log_text(self, version: str, rel_path: str, text: str) -> None:
        """Attach a text artifact (gate report, model card) to the run of ``version``."""
        self.client.log_text(self.version(version).run_id, text, rel_path)

    def download_text(self, version: str, rel_path: str) -> str | None:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                p = self.client.download_artifacts(self.version(version).run_id, rel_path, tmp)
            except Exception:
                return None
            return Path(p).read_text(encoding="utf-8")

    # ------------------------------------------------------------------ versions, tags, aliases

    def version(self, version: str | int) -> VersionInfo:
        try:
            mv = self.client.get_model_version(self.name, str(version))
        except Exception as exc:
            raise RegistryError(f"{self.name} has no version {version!r}") from exc
        return VersionInfo(str(mv.version), mv.run_id, int(mv.creation_timestamp), dict(mv.tags),
                           tuple(getattr(mv, "aliases", ()) or ()))

    def versions(self) -> list[VersionInfo]:
        """All versions, oldest first."""
        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
        except Exception:
            return []
        return sorted((self.version(mv.version) for mv in found), key=lambda v: int(v.version))

    def alias(self, alias: str) -> VersionInfo | None:
        try:
            mv = self.client.get_model_version_by_alias(self.name, alias)
        except Exception:
            return None
        return self.version(str(mv.version))

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        if self.alias(alias) is not None:
            self.client.delete_registered_model_alias(self.name, alias)

    def set_tags(self, version: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(self.name, str(version), f"qp.{k}", str(v))

    # ------------------------------------------------------------------ models

    def load(self, version: str) -> Any:
        """The native CatBoost model of ``version`` (cached per store and version)."""
        return _load_native(self.tracking_uri, self.name, str(version))


@lru_cache(maxsize=8)
def _load_native(tracking_uri: str, name: str, version: str) -> Any:
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow.catboost.load_model(f"models:/{name}/{version}")
