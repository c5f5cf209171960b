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

Identity of the store: the first registration gives the registered model a random ``qp.store_id``
tag, and every audit record about a version carries it (``refs.registry_store``). A version is
therefore ``(store, number)``, not a number alone: a registry re-created somewhere else starts again
at version 1, and its records never mix into the history of the first one. A store the audit log
knows of but that is missing (moved, deleted, a wrong URI) is an error naming it
(:class:`RegistryStoreError`), never a silently created empty registry; reading a store that does
not exist yet does not create it. A new, empty registry is only started on purpose
(:func:`init_store`, ``qp models init-registry``, audited).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from quality_platform.audit import AuditLog, AuditRecord, audit_db_path
from quality_platform.ml.config import ModelConfig, mlflow_uris
from quality_platform.ml.frame import FeatureSpec
from quality_platform.settings import Paths, get_paths

CHAMPION, CHALLENGER = "champion", "challenger"
#: Lifecycle statuses of a version (tag ``qp.status``).
STATUSES = (
    "registered",
    "challenger",
    "champion",
    "retired",
    "rolled_back",
    "rejected",
    "gate_failed",
)
#: Registered-model tag holding the store's identity (random, set at the first registration).
STORE_ID_TAG = "qp.store_id"
#: Audit ``refs`` key naming the registry store a record's model version belongs to.
STORE_REF = "registry_store"
#: Audit actions that name the registry store versions are registered in (newest one wins).
STORE_ACTIONS = ("register", "registry_init")


class RegistryError(Exception):
    """A registry operation that cannot be done (message says why)."""


class RegistryStoreError(RegistryError):
    """The registry store is missing, moved or not the one the audit log's versions belong to."""


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


def import_mlflow() -> Any:
    """The ``mlflow`` module, imported the platform's way: telemetry and the artifact progress bar
    off, its database engine logging only what goes wrong."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    # engine and table creation are logged at INFO on every command; say only what goes wrong
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    return mlflow


class ModelRegistry:
    """MLflow tracking + registry of the defect model of one installation."""

    def __init__(self, cfg: ModelConfig, paths: Paths | None = None, *, check: bool = True) -> None:
        """The registry of ``cfg`` (store from data/ml/model.yaml or ``QP_MLFLOW_*``); ``check``
        refuses a store that is not the one the audit log expects (:meth:`check_store`)."""
        self.cfg = cfg
        self.paths = paths or get_paths()
        self.tracking_uri, self.artifact_root = mlflow_uris(cfg, self.paths)
        #: The SQLite file of the store (None for a server URI).
        self.store_file = (
            Path(self.tracking_uri.removeprefix("sqlite:///"))
            if self.tracking_uri.startswith("sqlite:///")
            else None
        )
        self.name = cfg.mlflow.registered_model
        self._store_id: str | None = None  # kept once read: a store's identity never changes
        if check:
            self.check_store()

    @cached_property
    def client(self) -> Any:
        """The MLflow client (created on first use: creating it creates a missing SQLite store)."""
        if self.store_file is not None:
            self.store_file.parent.mkdir(parents=True, exist_ok=True)
            # MLflow keeps one engine per URI for the life of the process; with pooled connections a
            # moved or replaced SQLite file would go on being read through its old inode. Without
            # pooling every operation opens the file by its path, so a moved store is seen as such.
            os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
        mlflow = import_mlflow()
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # ------------------------------------------------------------------ identity of the store

    def _absent(self) -> bool:
        """The store is a SQLite file that does not exist (yet): nothing to read, nothing created."""
        return self.store_file is not None and not self.store_file.exists()

    @property
    def where(self) -> str:
        return str(self.store_file) if self.store_file is not None else self.tracking_uri

    @property
    def store_id(self) -> str | None:
        """The store's identity (``qp.store_id`` of the registered model); None before the first
        registration."""
        if self._store_id is None and not self._absent():
            try:
                tags = dict(self.client.get_registered_model(self.name).tags)
            except Exception:  # no registered model yet
                return None
            self._store_id = tags.get(STORE_ID_TAG)
        return self._store_id

    def refs(self, **refs: Any) -> dict[str, Any]:
        """Audit ``refs`` for a record about a version: ``refs`` plus the store the version
        belongs to (a version is the pair store and number)."""
        return {**refs, STORE_REF: self.store_id}

    def owns(self, record: AuditRecord) -> bool:
        """Whether an audit record about a version belongs to this store (records from before store
        identities, without ``refs.registry_store``, are taken as this store's)."""
        return in_store(record, self.store_id)

    def check_store(self) -> None:
        """Refuse a store that is not the one the audit log's model versions were registered in:
        a missing or moved SQLite store, an empty one, or one with another identity. A fresh
        installation (no registration in the audit log) passes."""
        expected = expected_store(self.paths)
        if expected is None:
            return
        rec = expected
        store = rec.refs.get(STORE_REF)
        known = (
            f"{'registry store ' + store if store else 'registered model versions'} (audit seq "
            f"{rec.seq} at {rec.ts_utc}: {rec.action} of {rec.subject})"
        )
        fix = (
            f"restore the store to {self.where}, or set mlflow.tracking_uri in data/ml/model.yaml (or "
            "QP_MLFLOW_TRACKING_URI) to where it is now; `qp models init-registry` starts a new, empty "
            "registry on purpose (audited)"
        )
        if self._absent():
            raise RegistryStoreError(
                f"the MLflow model registry store {self.where} is missing, but the audit "
                f"log records {known}: {fix}"
            )
        actual = self.store_id
        if store and actual != store:
            what = (
                f"registry store {actual}" if actual else "an empty registry (no registered model)"
            )
            raise RegistryStoreError(
                f"the MLflow model registry at {self.where} is {what}, but the audit log's "
                f"model versions belong to {known}: {fix}"
            )
        if not store and actual is None and not self.versions():
            raise RegistryStoreError(
                f"the MLflow model registry at {self.where} is empty, but the audit log "
                f"records {known}: {fix}"
            )

    def _ensure_store_id(self) -> str:
        """The store's identity, created at the first registration of a store that has none."""
        current = self.store_id
        if current:
            return current
        try:
            self.client.get_registered_model(self.name)
        except Exception:
            self.client.create_registered_model(self.name)
        new = uuid.uuid4().hex
        self.client.set_registered_model_tag(self.name, STORE_ID_TAG, new)
        self._store_id = new
        return new

    # ------------------------------------------------------------------ experiment and runs

    def experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.cfg.mlflow.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        return str(
            self.client.create_experiment(
                self.cfg.mlflow.experiment,
                artifact_location=f"{self.artifact_root}/{self.cfg.mlflow.experiment}",
            )
        )

    def log_and_register(
        self,
        model: Any,
        spec: FeatureSpec,
        *,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        artifacts: dict[str, str],
        run_name: str,
    ) -> VersionInfo:
        """Log one training run (params, metrics, model with signature and explicit requirements,
        text artifacts) and register the model as a new version carrying ``tags`` (as ``qp.*``)."""
        import catboost
        import numpy as np
        import pandas as pd

        mlflow = import_mlflow()
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        signature = ModelSignature(
            inputs=Schema(
                [ColSpec("string", c) for c in spec.categorical]
                + [ColSpec("double", c) for c in spec.numeric]
            ),
            outputs=Schema([ColSpec("long", "defect")]),
        )
        requirements = [
            f"catboost=={catboost.__version__}",
            f"pandas=={pd.__version__}",
            f"numpy=={np.__version__}",
        ]
        with mlflow.start_run(experiment_id=self.experiment_id(), run_name=run_name):
            mlflow.log_params({k: v for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
            mlflow.set_tags(tags)
            info = mlflow.catboost.log_model(
                model, name="model", signature=signature, pip_requirements=requirements
            )
            with tempfile.TemporaryDirectory() as tmp:
                for rel, text in artifacts.items():
                    p = Path(tmp) / rel
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text(text, encoding="utf-8")
                mlflow.log_artifacts(tmp)
        self._ensure_store_id()
        mv = mlflow.register_model(
            info.model_uri, self.name, tags={f"qp.{k}": v for k, v in tags.items()}
        )
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
        if self._absent():
            raise RegistryError(
                f"{self.name} has no version {version!r} (no registry at {self.where} yet)"
            )
        try:
            mv = self.client.get_model_version(self.name, str(version))
        except Exception as exc:
            raise RegistryError(f"{self.name} has no version {version!r}") from exc
        return VersionInfo(
            str(mv.version),
            mv.run_id,
            int(mv.creation_timestamp),
            dict(mv.tags),
            tuple(getattr(mv, "aliases", ()) or ()),
        )

    def versions(self) -> list[VersionInfo]:
        """All versions, oldest first."""
        if self._absent():
            return []
        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
        except Exception:
            return []
        return sorted((self.version(mv.version) for mv in found), key=lambda v: int(v.version))

    def alias(self, alias: str) -> VersionInfo | None:
        if self._absent():
            return None
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


def in_store(record: AuditRecord, store: str | None) -> bool:
    """Whether an audit record about a model version belongs to registry ``store`` (records from
    before store identities, without ``refs.registry_store``, belong to any)."""
    own = record.refs.get(STORE_REF)
    return own is None or own == store


def current_store(paths: Paths) -> str | None:
    """The identity of the registry store the installation's versions live in, from the audit log
    alone (no MLflow round trip); None on a fresh installation or before store identities."""
    rec = expected_store(paths)
    return rec.refs.get(STORE_REF) if rec is not None else None


def expected_store(paths: Paths) -> AuditRecord | None:
    """The newest audit record naming the registry store model versions are registered in
    (a registration or a deliberate new registry), or None on a fresh installation."""
    path = audit_db_path(paths)
    if not path.exists():
        return None
    # one record per training or new registry: few, even in a long-lived log; refusals do not count
    found = [r for r in AuditLog(path).records(action=list(STORE_ACTIONS)) if r.outcome == "ok"]
    return found[-1] if found else None


def init_store(
    cfg: ModelConfig, paths: Paths, audit: AuditLog, actor: str, reason: str
) -> ModelRegistry:
    """Start a new, empty registry at the configured store on purpose (the old one is lost or
    retired): refused while the configured store holds versions; the new identity is audited
    (action ``registry_init``), so later checks expect this store and its versions never mix with
    the old store's in the audit history."""
    reg = ModelRegistry(cfg, paths, check=False)
    held = reg.versions()
    if held:
        raise RegistryError(
            f"the registry at {reg.where} holds {len(held)} version(s) of {reg.name}: a new "
            "registry needs a store location without versions"
        )
    previous = expected_store(paths)
    store = reg._ensure_store_id()
    audit.append(
        "registry_init",
        actor,
        subject=f"model:{reg.name}",
        reason=reason,
        refs={
            STORE_REF: store,
            "store": reg.where,
            "previous_store": previous.refs.get(STORE_REF) if previous else None,
        },
    )
    reg.check_store()
    return reg


@lru_cache(maxsize=8)
def _load_native(tracking_uri: str, name: str, version: str) -> Any:
    mlflow = import_mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow.catboost.load_model(f"models:/{name}/{version}")
