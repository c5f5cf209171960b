"""Dagster resources: one per backend of the deployment (see quality_platform/settings.py).

``platform`` (configuration and file locations), ``warehouse`` (DuckDB), ``model_registry`` (MLflow
tracking and model registry), ``audit_log`` (the hash-chained audit log) and ``alerts`` (the alert
channel). :func:`deployment_resources` builds them for the current deployment; a URI or secret
that the environment sets is bound as ``dg.EnvVar`` so the UI's Resources page names the variable
and never shows the value. Assets, checks, sensors and hooks take these resources instead of
building a backend themselves.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from quality_platform.config import (
    KpiRegistry,
    PlantConfig,
    PlatformConfig,
    QuantityRegistry,
    load_kpis,
    load_plants,
    load_platform,
    load_registry,
)
from quality_platform.privacy import load_key
from quality_platform.settings import (
    ALERT_WEBHOOK_URL_ENV,
    AUDIT_DB_ENV,
    MLFLOW_ARTIFACT_ROOT_ENV,
    MLFLOW_TRACKING_URI_ENV,
    WAREHOUSE_ENV,
    Paths,
    current_deployment,
)

if TYPE_CHECKING:
    from quality_platform.alerts import Alert
    from quality_platform.audit import AuditLog
    from quality_platform.ml.registry import ModelRegistry


class PlatformResource(dg.ConfigurableResource):
    """Configuration and file locations of the installation (the deployment's; ``data_dir`` and
    ``config_dir`` as bound here)."""

    data_dir: str | None = None
    config_dir: str | None = None

    def paths(self) -> Paths:
        base = current_deployment().paths
        changes: dict[str, Path] = {}
        if self.data_dir:
            changes["data_dir"] = Path(self.data_dir)
        if self.config_dir:
            changes["config_dir"] = Path(self.config_dir)
        return dataclasses.replace(base, **changes)

    def plants(self) -> dict[str, PlantConfig]:
        return load_plants(self.paths())

    def quantities(self) -> QuantityRegistry:
        return load_registry(self.paths())

    def kpis(self) -> KpiRegistry:
        return load_kpis(self.paths())

    def platform(self) -> PlatformConfig:
        return load_platform(self.paths())

    def pseudonym_key(self) -> bytes:
        """The pseudonymisation key (from the environment; never stored in the repo)."""
        return load_key()


class ModelRegistryResource(dg.ConfigurableResource):
    """The MLflow tracking store and model registry of the defect model (F15)."""

    tracking_uri: str
    artifact_root: str

    def registry(self, paths: Paths, *, check: bool = True) -> ModelRegistry:
        """The registry at this resource's URIs, for the installation at ``paths`` (its model
        config and audit log); ``check`` refuses a store the audit log does not expect."""
        from quality_platform.ml.config import load_model_config
        from quality_platform.ml.registry import ModelRegistry

        paths = dataclasses.replace(
            paths, mlflow_tracking_uri=self.tracking_uri, mlflow_artifact_root=self.artifact_root
        )
        return ModelRegistry(load_model_config(paths), paths, check=check)


class AuditLogResource(dg.ConfigurableResource):
    """The append-only, hash-chained audit log (F26) every decision is written to."""

    path: str

    def log(self) -> AuditLog:
        from quality_platform.audit import AuditLog

        return AuditLog(Path(self.path))


class AlertChannelResource(dg.ConfigurableResource):
    """The alert channel: data/ml/alerts.yaml's channel (file or webhook); the webhook URL is a
    secret (``QP_ALERT_WEBHOOK_URL``) and wins over the file's."""

    webhook_url: str | None = None

    def send(self, alert: Alert, paths: Paths) -> dict[str, Any]:
        """Send ``alert`` (and audit it); never raises, see :func:`quality_platform.alerts.send_alert`."""
        from quality_platform.alerts import send_alert

        return send_alert(alert, paths, webhook_url=self.webhook_url)


def _bound(env_name: str, value: str | None, set_by_env: frozenset[str]) -> Any:
    """``dg.EnvVar(env_name)`` when the environment sets the value, else the value itself."""
    return dg.EnvVar(env_name) if env_name in set_by_env else value


def deployment_resources(paths: Paths | None = None) -> dict[str, Any]:
    """The resources of the current deployment, for the installation at ``paths`` (default: the
    deployment's own locations)."""
    from quality_platform.ml.config import load_model_config, mlflow_uris

    dep = current_deployment()
    # the environment's variables are named only for the deployment's own locations (an
    # installation passed in, e.g. a copy, is bound by value)
    env = dep.set_by_environment if paths is None or paths == dep.paths else frozenset()
    paths = paths or dep.paths
    tracking, artifacts = mlflow_uris(load_model_config(paths), paths)
    return {
        "platform": PlatformResource(
            data_dir=str(paths.data_dir), config_dir=str(paths.config_dir)
        ),
        "warehouse": DuckDBResource(database=_bound(WAREHOUSE_ENV, str(paths.warehouse_path), env)),
        "model_registry": ModelRegistryResource(
            tracking_uri=_bound(MLFLOW_TRACKING_URI_ENV, tracking, env),
            artifact_root=_bound(MLFLOW_ARTIFACT_ROOT_ENV, artifacts, env),
        ),
        "audit_log": AuditLogResource(path=_bound(AUDIT_DB_ENV, str(paths.audit_db_path), env)),
        "alerts": AlertChannelResource(
            # a secret: always by name when the environment sets it
            webhook_url=_bound(ALERT_WEBHOOK_URL_ENV, dep.alert_webhook_url, dep.set_by_environment)
        ),
    }
