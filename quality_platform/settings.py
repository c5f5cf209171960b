"""The deployment: where this installation keeps its files and which backends it runs on, resolved
from the environment in this one module. No other module reads a ``QP_*`` variable; they receive
a :class:`Paths` (locations of files and stores) or the :class:`Deployment` (locations plus the
secrets handed over by the environment), and Dagster code receives the resources that
:func:`quality_platform.resources.deployment_resources` builds from it.

Deployments (``QP_DEPLOYMENT``): ``local`` (the default, the embedded one: a DuckDB file, SQLite
for Dagster, MLflow, the audit log, overrides and incidents, everything below ``QP_DATA_DIR``).

Every variable the platform reads is optional and listed, with its meaning, in :data:`ENVIRONMENT`;
the README's "Environment" table lists the same names (a test keeps the two in step).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The repository's committed configuration and the default folder of generated state.
CONFIG_DIR = REPO_ROOT / "data"
STATE_DIR = CONFIG_DIR / "state"

DEPLOYMENT_ENV = "QP_DEPLOYMENT"
DATA_DIR_ENV = "QP_DATA_DIR"
CONFIG_DIR_ENV = "QP_CONFIG_DIR"
LANDING_DIR_ENV = "QP_LANDING_DIR"
WAREHOUSE_ENV = "QP_WAREHOUSE"
DAGSTER_HOME_ENV = "DAGSTER_HOME"
AUDIT_DB_ENV = "QP_AUDIT_DB"
OVERRIDES_DB_ENV = "QP_OVERRIDES_DB"
MLFLOW_TRACKING_URI_ENV = "QP_MLFLOW_TRACKING_URI"
MLFLOW_ARTIFACT_ROOT_ENV = "QP_MLFLOW_ARTIFACT_ROOT"
ALERT_WEBHOOK_URL_ENV = "QP_ALERT_WEBHOOK_URL"
PSEUDONYM_KEY_ENV = "QP_PSEUDONYM_KEY"
PSEUDONYM_KEY_FILE_ENV = "QP_PSEUDONYM_KEY_FILE"
PSEUDONYM_KEY_NEW_ENV = "QP_PSEUDONYM_KEY_NEW"
USER_ENV = "QP_USER"
SENSOR_INTERVAL_ENV = "QP_SENSOR_INTERVAL_SECONDS"

#: Every environment variable the platform reads, and what it sets.
ENVIRONMENT: dict[str, str] = {
    DEPLOYMENT_ENV: "deployment name (default local)",
    DATA_DIR_ENV: "generated state: landing files, stores, reports (default <repo>/data/state)",
    CONFIG_DIR_ENV: "committed configuration (default: QP_DATA_DIR if set, else <repo>/data)",
    LANDING_DIR_ENV: "where plants deliver files (default <data>/landing)",
    WAREHOUSE_ENV: "the DuckDB warehouse file (default <data>/warehouse/quality.duckdb)",
    DAGSTER_HOME_ENV: "the Dagster instance folder (default <data>/dagster_home)",
    AUDIT_DB_ENV: "the audit log (default <data>/audit/audit.db)",
    OVERRIDES_DB_ENV: "quality engineers' overrides (default <data>/audit/overrides.db)",
    MLFLOW_TRACKING_URI_ENV: "MLflow tracking and registry URI (default: data/ml/model.yaml, else "
    "sqlite under <data>/mlflow)",
    MLFLOW_ARTIFACT_ROOT_ENV: "MLflow artifact root (default: data/ml/model.yaml, else "
    "<data>/mlflow/artifacts)",
    ALERT_WEBHOOK_URL_ENV: "secret: the alert webhook URL (wins over data/ml/alerts.yaml)",
    PSEUDONYM_KEY_ENV: "secret: the pseudonymisation key",
    PSEUDONYM_KEY_FILE_ENV: "a file holding the pseudonymisation key (if QP_PSEUDONYM_KEY is unset)",
    PSEUDONYM_KEY_NEW_ENV: "secret: the key a rotation moves to (qp privacy rotate-key)",
    USER_ENV: "the policy user a service account acts as (identity, see governance/policy.py)",
    SENSOR_INTERVAL_ENV: "seconds between sensor ticks (wins over loop.sensor_interval_seconds; "
    "the demo's daemon uses 5)",
}
#: Deployment names this code knows.
DEPLOYMENTS = ("local",)
#: What identity resolution may read from the environment (besides QP_USER).
_IDENTITY_VARS = (USER_ENV, "SUDO_USER", "SUDO_UID", "LOGNAME", "USER")


class DeploymentError(ValueError):
    """The environment names a deployment this code does not know."""


@dataclass(frozen=True)
class Paths:
    """Resolved locations of one installation: its configuration, its generated state, and the
    stores (files or URIs). A location left ``None`` takes its default below ``data_dir``."""

    data_dir: Path
    config_dir: Path
    landing: Path | None = None
    warehouse: Path | None = None
    dagster_home_dir: Path | None = None
    audit_db: Path | None = None
    overrides_db: Path | None = None
    #: MLflow URIs when the deployment sets them (else data/ml/model.yaml or the local default).
    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: str | None = None

    @property
    def plants_dir(self) -> Path:
        return self.config_dir / "plants"

    @property
    def quantities_file(self) -> Path:
        return self.config_dir / "standard" / "quantities.yaml"

    @property
    def kpi_file(self) -> Path:
        return self.config_dir / "kpis.yaml"

    @property
    def platform_file(self) -> Path:
        return self.config_dir / "platform.yaml"

    @property
    def landing_dir(self) -> Path:
        return self.landing or self.data_dir / "landing"

    @property
    def warehouse_path(self) -> Path:
        return self.warehouse or self.data_dir / "warehouse" / "quality.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.dagster_home_dir or self.data_dir / "dagster_home"

    @property
    def audit_db_path(self) -> Path:
        return self.audit_db or self.data_dir / "audit" / "audit.db"

    @property
    def overrides_db_path(self) -> Path:
        return self.overrides_db or self.data_dir / "audit" / "overrides.db"

    @property
    def incidents_db_path(self) -> Path:
        return self.data_dir / "audit" / "incidents.db"


@dataclass(frozen=True)
class Deployment:
    """One deployment: its name, its locations, and the secrets the environment hands over (never
    printed: ``repr`` leaves them out)."""

    name: str
    paths: Paths
    #: Variables set in the environment among :data:`ENVIRONMENT` (resources show these by name).
    set_by_environment: frozenset[str] = frozenset()
    alert_webhook_url: str | None = field(default=None, repr=False)
    pseudonym_key: str | None = field(default=None, repr=False)
    pseudonym_key_file: Path | None = None
    #: Seconds between the daemon's ticks of each sensor, when the environment sets it.
    sensor_interval_seconds: int | None = None
    pseudonym_key_new: str | None = field(default=None, repr=False)
    identity_environment: Mapping[str, str] = field(default_factory=dict, repr=False)

    def secret(self, name: str) -> str | None:
        """A secret the configuration names by its environment variable (e.g. webhook headers)."""
        return os.environ.get(name) or None


def current_deployment(environ: Mapping[str, str] | None = None) -> Deployment:
    """The deployment the environment describes (read anew on every call: cheap, and a changed
    environment is seen)."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return env.get(name) or None

    name = get(DEPLOYMENT_ENV) or "local"
    if name not in DEPLOYMENTS:
        raise DeploymentError(
            f"{DEPLOYMENT_ENV}={name!r} is not a deployment of this platform; known: "
            f"{', '.join(DEPLOYMENTS)}"
        )
    # A QP_DATA_DIR alone is a self-contained installation (configuration and state in one
    # folder, as copy_installation makes); the repository keeps them apart: data/ is committed
    # configuration, data/state/ (git-ignored) what the platform generates.
    data_dir = Path(get(DATA_DIR_ENV) or STATE_DIR).resolve()
    config_dir = Path(
        get(CONFIG_DIR_ENV) or (data_dir if get(DATA_DIR_ENV) else CONFIG_DIR)
    ).resolve()

    def path(var: str) -> Path | None:
        value = get(var)
        return Path(value) if value else None

    paths = Paths(
        data_dir=data_dir,
        config_dir=config_dir,
        landing=path(LANDING_DIR_ENV),
        warehouse=path(WAREHOUSE_ENV),
        dagster_home_dir=path(DAGSTER_HOME_ENV),
        audit_db=path(AUDIT_DB_ENV),
        overrides_db=path(OVERRIDES_DB_ENV),
        mlflow_tracking_uri=get(MLFLOW_TRACKING_URI_ENV),
        mlflow_artifact_root=get(MLFLOW_ARTIFACT_ROOT_ENV),
    )
    interval = get(SENSOR_INTERVAL_ENV)
    if interval is not None and not (interval.isdigit() and 5 <= int(interval) <= 3600):
        raise DeploymentError(
            f"{SENSOR_INTERVAL_ENV}={interval!r} must be a whole number of seconds in 5..3600"
        )
    return Deployment(
        name=name,
        paths=paths,
        set_by_environment=frozenset(v for v in ENVIRONMENT if get(v)),
        alert_webhook_url=get(ALERT_WEBHOOK_URL_ENV),
        pseudonym_key=get(PSEUDONYM_KEY_ENV),
        pseudonym_key_file=path(PSEUDONYM_KEY_FILE_ENV),
        sensor_interval_seconds=int(interval) if interval is not None else None,
        pseudonym_key_new=(get(PSEUDONYM_KEY_NEW_ENV) or "").strip() or None,
        identity_environment={v: env[v] for v in _IDENTITY_VARS if v in env},
    )


def process_environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process this deployment starts (the daemon the demo runs): this
    process's own, with ``overrides`` (names from :data:`ENVIRONMENT`)."""
    unknown = set(overrides or {}) - set(ENVIRONMENT)
    if unknown:
        raise ValueError(f"not variables of this platform: {sorted(unknown)}")
    return {**os.environ, **(overrides or {})}


def get_paths() -> Paths:
    """The locations of the current deployment."""
    return current_deployment().paths


def copy_installation(root: Path, plants: tuple[str, ...] | None = None) -> Paths:
    """A self-contained installation under ``root/data``: a copy of the committed configuration
    (optionally only some plants) and a link to the AI4I data set. Used by tests and benchmarks
    that must not touch the working installation."""
    import shutil

    data = root / "data"
    (data / "plants").mkdir(parents=True)
    src = REPO_ROOT / "data"
    for f in sorted((src / "plants").glob("*.yaml")):
        if plants is None or f.stem in plants:
            shutil.copy(f, data / "plants" / f.name)
    shutil.copytree(src / "standard", data / "standard")
    for name in ("kpis.yaml", "platform.yaml", "features.yaml"):
        shutil.copy(src / name, data / name)
    shutil.copytree(src / "ml", data / "ml")
    shutil.copytree(src / "governance", data / "governance")
    (data / "datasets").mkdir()
    (data / "datasets" / "ai4i2020").symlink_to(src / "datasets" / "ai4i2020")
    return Paths(data_dir=data, config_dir=data)
