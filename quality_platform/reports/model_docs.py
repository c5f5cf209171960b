"""Generated documentation of a model version (F25): technical documentation and post-market
monitoring plan, built only from evidence.

Every section is a pair (evidence, rendering): the evidence is a JSON-able dict collected from the
place that holds the facts (config files, the version's MLflow artifacts and metrics, the audit
log, the warehouse); the Markdown is a fixed template filled from that evidence only, so the
document holds no hand-written prose beyond the templates. Each section carries the sha256 of the
canonical JSON of its evidence.

Sections and their evidence:

==================  ============================================================================
identity            the version's lineage tags (data hash, partitions, code version, git commit,
                    Dagster run) and its MLflow run
intended_purpose    ``intended_purpose`` of data/ml/model.yaml + data/ml/model_documentation.yaml
                    (intended users, out-of-scope uses)
training_data       the snapshot datasheet logged with the version (artifact ``datasheet.json``)
metrics             the release gate report (artifact ``gate/report.json``: overall and per-plant
                    holdout metrics) and the MLflow run's metrics
limitations         gate checks that did not pass (warnings/failures), plants the gate could not
                    judge, and the drift history of the version (``ml.drift_findings``)
explanation         the global feature importance logged with the version
                    (artifact ``feature_importance.md``)
approvals           lifecycle records of the version in the audit log (register, gate, approve,
                    reject, promote, rollback, canary; with their chain hashes) and its current
                    lifecycle tags and aliases
monitoring_plan     checks (the monitoring asset checks), thresholds (data/ml/monitoring.yaml),
                    cadence (schedules and sensors, read from the Dagster definitions) and owners
                    (data/ml/model_documentation.yaml)
change_envelope     data/ml/approval_policy.yaml and where this version stands against it
==================  ============================================================================

The document is stored with the version in MLflow: ``docs/model_card.md`` (the Markdown),
``docs/evidence.json`` (per section: title, sha256, evidence, Markdown) and version tags
``qp.docs_sha256`` / ``qp.docs_generated_at`` / ``qp.docs_artifact``. :func:`check` recomputes the
evidence and marks every section whose hash changed since generation as STALE.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, model_validator

from quality_platform.audit import AuditLog, canonical_json, normalise
from quality_platform.config import ConfigModel, load_yaml_model
from quality_platform.reports.review import md_table as _md_table
from quality_platform.settings import Paths
from quality_platform.warehouse import connect, table_exists

CARD_PATH = "docs/model_card.md"
EVIDENCE_PATH = "docs/evidence.json"
#: Audit actions that make up a version's approval and lifecycle record.
LIFECYCLE_ACTIONS = ("register", "gate", "approve", "reject", "promote", "rollback", "canary")
#: Lifecycle tags of a version shown in the approvals section (``qp.<name>``).
LIFECYCLE_TAGS = (
    "gate",
    "gate_at",
    "gate_champion",
    "gate_failed_checks",
    "approval",
    "approved_by",
    "approved_at",
    "approval_reason",
    "approval_needs_human",
    "rejected_by",
    "rejected_at",
    "status",
    "promoted_by",
    "promoted_at",
    "retired_at",
    "rolled_back_by",
    "rolled_back_at",
)
LINEAGE_TAGS = (
    "data_hash",
    "partitions",
    "code_version",
    "git_commit",
    "dagster_run_id",
    "feature_set_version",
    "label",
    "threshold",
    "trigger",
    "trained_by",
    "retrain_key",
    "trigger_check",
    "pseudonym_key_id",
)
MONITORING_DUTIES = (
    "input_drift",
    "sensor_faults",
    "prediction_drift",
    "performance",
    "retrain_loop",
    "canary",
    "overrides",
)


class DocsError(Exception):
    """Documentation cannot be produced (unknown version, store unreachable); the message says why."""


# --------------------------------------------------------------------------- config


class IntendedUser(ConfigModel):
    role: str
    use: str


class DutyOwner(ConfigModel):
    role: str
    team: str


class ModelDocsConfig(ConfigModel):
    """``data/ml/model_documentation.yaml``."""

    version: int
    intended_users: list[IntendedUser] = Field(min_length=1)
    out_of_scope_uses: list[str] = Field(min_length=1)
    monitoring_owners: dict[str, DutyOwner]

    @model_validator(mode="after")
    def _known(self) -> ModelDocsConfig:
        from quality_platform.governance.policy import ROLES

        for where, role in [
            *((f"intended_users[{i}].role", u.role) for i, u in enumerate(self.intended_users)),
            *((f"monitoring_owners.{d}.role", o.role) for d, o in self.monitoring_owners.items()),
        ]:
            if role not in ROLES:
                raise ValueError(f"{where}: unknown role {role!r}; the roles are {list(ROLES)}")
        unknown = sorted(set(self.monitoring_owners) - set(MONITORING_DUTIES))
        missing = sorted(set(MONITORING_DUTIES) - set(self.monitoring_owners))
        if unknown or missing:
            raise ValueError(
                f"monitoring_owners must name exactly the duties {list(MONITORING_DUTIES)} "
                f"(unknown: {unknown}, missing: {missing})"
            )
        return self


def docs_config_path(paths: Paths) -> Path:
    """``<config>/ml/model_documentation.yaml``."""
    return paths.config_dir / "ml" / "model_documentation.yaml"


def load_docs_config(paths: Paths) -> ModelDocsConfig:
    """``<config>/ml/model_documentation.yaml``, validated (errors name the file and the field)."""
    return load_yaml_model(docs_config_path(paths), ModelDocsConfig)


# --------------------------------------------------------------------------- helpers


def sha256_of(evidence: Any) -> str:
    """sha256 of the canonical JSON of ``evidence`` (sorted keys, no whitespace)."""
    return hashlib.sha256(
        canonical_json(normalise(evidence, "evidence")).encode("utf-8")
    ).hexdigest()


def _clean(value: Any) -> Any:
    """``value`` with non-finite floats (NaN in metric tables) as None, so that it is JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _missing(what: str) -> str:
    return f"_Evidence missing: {what}._"


@dataclass
class Context:
    """Where the evidence of one version lives."""

    paths: Paths
    registry: Any  # ModelRegistry
    audit: AuditLog
    version: Any  # VersionInfo
    #: the Dagster definitions or repository the version runs in (the asset passes its own
    #: repository, the CLI the installation's definitions): the monitoring plan is read from it
    definitions: dg.Definitions | dg.RepositoryDefinition
    warehouse: Path | None = None
    _artifacts: dict[str, str | None] = field(default_factory=dict)

    @cached_property
    def repository(self) -> dg.RepositoryDefinition:
        """The repository the monitoring plan is read from."""
        defs = self.definitions
        return defs.get_repository_def() if isinstance(defs, dg.Definitions) else defs

    @cached_property
    def run(self) -> Any:
        """The version's MLflow run (read once per document)."""
        return self.registry.client.get_run(self.version.run_id)

    @cached_property
    def docs_config(self) -> ModelDocsConfig:
        return load_docs_config(self.paths)

    def artifact(self, rel: str) -> str | None:
        if rel not in self._artifacts:
            self._artifacts[rel] = self.registry.download_text(self.version.version, rel)
        return self._artifacts[rel]

    def artifact_json(self, rel: str) -> Any:
        text = self.artifact(rel)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None


# --------------------------------------------------------------------------- sections


def _identity(c: Context) -> dict[str, Any]:
    v = c.version
    return {
        "model": c.registry.name,
        "version": v.version,
        "mlflow_run_id": v.run_id,
        "registered_utc": dt.datetime.fromtimestamp(v.created_ms / 1000, dt.UTC).isoformat(
            timespec="seconds"
        ),
        "artifact_uri": c.run.info.artifact_uri,
        "lineage": {k: v.tag(k) for k in LINEAGE_TAGS if v.tag(k) is not None},
    }


def _identity_md(e: dict[str, Any]) -> str:
    rows = [{"field": k, "value": val} for k, val in e["lineage"].items()]
    return "\n".join(
        [
            f"Model `{e['model']}` version **{e['version']}**, registered {e['registered_utc']} "
            f"(MLflow run `{e['mlflow_run_id']}`, artifacts `{e['artifact_uri']}`).",
            "",
            _md_table(rows, ["field", "value"]),
        ]
    )


def _purpose(c: Context) -> dict[str, Any]:
    from quality_platform.ml.config import load_model_config

    cfg, docs = load_model_config(c.paths), c.docs_config
    return {
        "model_name": cfg.model_name,
        "owner": cfg.owner,
        "intended_purpose": cfg.intended_purpose.strip(),
        "intended_users": [u.model_dump() for u in docs.intended_users],
        "out_of_scope_uses": list(docs.out_of_scope_uses),
        "sources": [
            "data/ml/model.yaml (intended_purpose, owner)",
            "data/ml/model_documentation.yaml",
        ],
    }


def _purpose_md(e: dict[str, Any]) -> str:
    return "\n".join(
        [
            e["intended_purpose"],
            "",
            f"Owner: {e['owner']}.",
            "",
            "Intended users:",
            "",
            _md_table(e["intended_users"], ["role", "use"]),
            "",
            "Out of scope:",
            "",
            *(f"- {u}" for u in e["out_of_scope_uses"]),
        ]
    )


def _training_data(c: Context) -> dict[str, Any]:
    sheet = c.artifact_json("datasheet.json")
    return {
        "artifact": "datasheet.json",
        "data_hash_tag": c.version.tag("data_hash"),
        "datasheet": sheet,
    }


def _training_data_md(e: dict[str, Any]) -> str:
    s = e["datasheet"]
    if not s:
        return _missing("the version has no datasheet.json artifact")
    match = "matches" if s.get("data_hash") == e["data_hash_tag"] else "DOES NOT match"
    return "\n".join(
        [
            f"Snapshot `{str(s.get('data_hash', ''))[:16]}` ({match} the version's `data_hash` tag): "
            f"{s.get('rows', 0):,} units; label `{s.get('label')}` - {s.get('label_definition', '')}.",
            "",
            f"- sources: {', '.join(s.get('sources', []))}",
            f"- window: {s.get('window_rule', '')}",
            f"- split: {s.get('split_rule', '')}",
            f"- personal data: {s.get('personal_data', '')}",
            f"- partitions: `{json.dumps(s.get('partitions', {}), sort_keys=True)}`",
            "",
            "Plants and periods:",
            "",
            _md_table(s.get("plants", [])),
            "",
            "Label distribution:",
            "",
            _md_table(s.get("label_distribution", [])),
            "",
            "Data-quality results at snapshot time:",
            "",
            _md_table(
                [
                    {k: r.get(k) for k in ("check", "passed", "severity")}
                    for r in s.get("data_quality", [])
                ]
            ),
        ]
    )


def _metrics(c: Context) -> dict[str, Any]:
    report = c.artifact_json("gate/report.json")
    return {
        "gate_report_artifact": "gate/report.json",
        "gate": None
        if report is None
        else {k: report.get(k) for k in ("status", "champion_version", "metrics", "plant_metrics")},
        "mlflow_metrics": {k: float(v) for k, v in sorted(c.run.data.metrics.items())},
    }


def _metrics_md(e: dict[str, Any]) -> str:
    g = e["gate"]
    lines = []
    if g is None:
        lines.append(
            _missing("no release gate report (gate/report.json): the version was never gated")
        )
    else:
        lines += [
            f"Release gate status: **{g['status']}** (champion at evaluation: {g['champion_version'] or 'none'}).",
            "",
            "Holdout, all plants:",
            "",
            _md_table([{"metric": k, "value": v} for k, v in sorted((g["metrics"] or {}).items())]),
            "",
            "Holdout per plant:",
            "",
            _md_table(g.get("plant_metrics") or []),
        ]
    split = [
        {"metric": k, "value": v}
        for k, v in e["mlflow_metrics"].items()
        if k.startswith(("validation_", "holdout_"))
    ]
    lines += [
        "",
        "Training run (MLflow) validation/holdout metrics:",
        "",
        _md_table(split, ["metric", "value"]),
    ]
    return "\n".join(lines)


def _drift_history(c: Context) -> list[dict[str, Any]]:

    if c.warehouse is None or not c.warehouse.exists():
        return []
    with connect(c.warehouse, read_only=True) as con:
        if not table_exists(con, "ml", "drift_findings"):
            return []
        rows = con.execute(
            """
            SELECT plant, kind, count(*) AS findings, count(DISTINCT partition_date) AS days,
                   strftime(min(partition_date), '%Y-%m-%d') AS first_day,
                   strftime(max(partition_date), '%Y-%m-%d') AS last_day,
                   string_agg(DISTINCT feature, ', ' ORDER BY feature) AS features
            FROM ml.drift_findings WHERE model_version = ? GROUP BY plant, kind ORDER BY plant, kind""",
            [c.version.version],
        ).fetchall()
    cols = ("plant", "kind", "findings", "days", "first_day", "last_day", "features")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def _limitations(c: Context) -> dict[str, Any]:
    report = c.artifact_json("gate/report.json") or {}
    checks = [ch for ch in report.get("checks", []) if not ch.get("passed")]
    per_plant = [r for r in report.get("per_plant", []) if r.get("verdict") != "non_inferior"]
    return {
        "gate_status": report.get("status"),
        "gate_checks_not_passed": checks,
        "per_plant_not_passed": per_plant,
        "drift_history": _drift_history(c),
    }


def _limitations_md(e: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Release gate status: {e['gate_status'] or 'never gated'}.",
            "",
            "Gate checks that did not pass (warnings and failures):",
            "",
            _md_table(e["gate_checks_not_passed"], ["name", "severity", "description"]),
            "",
            "Plants the per-plant gate did not pass or could not judge:",
            "",
            _md_table(e["per_plant_not_passed"]),
            "",
            "Drift history of this version (ml.drift_findings, while it was the champion):",
            "",
            _md_table(e["drift_history"]),
        ]
    )


def _explanation(c: Context) -> dict[str, Any]:
    return {
        "artifact": "feature_importance.md",
        "feature_importance_md": c.artifact("feature_importance.md"),
    }


def _explanation_md(e: dict[str, Any]) -> str:
    text = e["feature_importance_md"]
    if not text:
        return _missing("the version has no feature_importance.md artifact")
    lines = text.strip().splitlines()
    return "\n".join(
        [
            f"Global feature importance (CatBoost), top 15 of {max(len(lines) - 2, 0)} features:",
            "",
            *lines[:17],
        ]
    )


def _approvals(c: Context) -> dict[str, Any]:
    from quality_platform.ml.lifecycle import subject

    recs = [
        r
        for r in c.audit.records(
            subject=subject(c.registry, c.version.version), action=list(LIFECYCLE_ACTIONS)
        )
        if r.outcome != "denied" and c.registry.owns(r)
    ]
    return {
        "audit_records": [
            {
                "seq": r.seq,
                "ts_utc": r.ts_utc,
                "action": r.action,
                "actor": r.actor,
                "outcome": r.outcome,
                "reason": r.reason,
                "hash": r.hash,
            }
            for r in recs
        ],
        "lifecycle_tags": {
            k: c.version.tag(k) for k in LIFECYCLE_TAGS if c.version.tag(k) is not None
        },
        "aliases": sorted(c.version.aliases),
    }


def _approvals_md(e: dict[str, Any]) -> str:
    t = e["lifecycle_tags"]
    rows = [
        {
            **{k: r[k] for k in ("seq", "ts_utc", "action", "actor", "outcome", "reason")},
            "hash": r["hash"][:12],
        }
        for r in e["audit_records"]
    ]
    return "\n".join(
        [
            f"Gate: {t.get('gate', 'pending')}; approval: {t.get('approval', 'pending')}"
            + (
                f" by {t['approved_by']} at {t.get('approved_at')} ({t.get('approval_reason', '')})"
                if t.get("approved_by")
                else ""
            )
            + f"; status: {t.get('status', 'registered')}; aliases: {', '.join(e['aliases']) or 'none'}.",
            "",
            "Lifecycle record (audit log; `hash` = the record's chain hash):",
            "",
            _md_table(rows),
        ]
    )


#: The assets whose checks make up the monitoring plan, and the sensors that act on them.
MONITORED_ASSETS = ("drift_metrics", "model_performance")
PLAN_SENSORS = ("monitor_after_standardize", "retrain_on_drift", "alert_on_run_failure")


def _monitoring_plan(c: Context) -> dict[str, Any]:
    """The monitoring plan as the platform runs it: the checks, schedules and sensors are read
    from the Dagster definitions of the installation (the asset's own when generated by Dagster),
    so the document cannot describe a plan other than the one that runs."""
    from quality_platform.ml.config import load_monitoring_config

    mon = load_monitoring_config(c.paths)
    owners = c.docs_config.monitoring_owners
    repo = c.repository
    graph = repo.asset_graph
    keys = sorted(
        (k for k in graph.asset_check_keys if k.asset_key.to_user_string() in MONITORED_ASSETS),
        key=lambda k: (MONITORED_ASSETS.index(k.asset_key.to_user_string()), k.name),
    )
    checks = [
        {
            "check": k.to_user_string(),
            "description": graph.get_check_spec(k).description or "",
            "owner_role": owners[k.name].role if k.name in owners else None,
            "owner_team": owners[k.name].team if k.name in owners else None,
        }
        for k in keys
    ]
    schedules: list[dict[str, Any]] = []
    daily = sorted(
        (
            s
            for s in repo.schedule_defs
            if s.name.startswith("daily_") and s.job_name.startswith("land_")
        ),
        key=lambda s: s.name,
    )
    if daily:
        schedules.append(
            {
                "name": "daily_<plant>",
                "cron_utc": daily[0].cron_schedule,
                "job": "land_<plant>",
                "description": "per plant: land yesterday's files; standardisation, scoring and "
                "monitoring follow by sensors",
            }
        )
    schedules += [
        {
            "name": s.name,
            "cron_utc": s.cron_schedule,
            "job": s.job_name,
            "description": s.description or "",
        }
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
        if s not in daily
    ]
    for name in PLAN_SENSORS:
        sensor = repo.get_sensor_def(name)
        targets = ", ".join(sorted(t.job_name for t in sensor.targets)) or "alert channel"
        when = (
            "sensor, on run status"
            if isinstance(sensor, dg.RunStatusSensorDefinition)
            else f"sensor, every {sensor.minimum_interval_seconds} s"
        )
        schedules.append(
            {
                "name": name,
                "cron_utc": when,
                "job": targets,
                "description": sensor.description or "",
            }
        )
    return {
        "checks": checks,
        "thresholds": mon.model_dump(exclude={"loop"}),
        "loop": mon.loop.model_dump(),
        "schedules": schedules,
        "owners": {k: v.model_dump() for k, v in sorted(owners.items())},
        "sources": [
            "the Dagster definitions of the installation (checks, schedules, sensors)",
            "data/ml/monitoring.yaml",
            "data/ml/model_documentation.yaml",
        ],
    }


def _flatten(d: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append({"setting": f"{prefix}{k}", "value": v})
    return out


def _monitoring_plan_md(e: dict[str, Any]) -> str:
    owners = [{"duty": k, **v} for k, v in e["owners"].items()]
    return "\n".join(
        [
            "Checks (evaluated on every monitored plant-day):",
            "",
            _md_table(e["checks"], ["check", "description", "owner_role", "owner_team"]),
            "",
            "Thresholds (data/ml/monitoring.yaml):",
            "",
            _md_table(_flatten(e["thresholds"]), ["setting", "value"]),
            "",
            "Cadence: schedules (UTC) and the closed loop:",
            "",
            _md_table(e["schedules"], ["name", "cron_utc", "job", "description"]),
            "",
            _md_table(_flatten(e["loop"], "loop."), ["setting", "value"]),
            "",
            "Owners per monitoring duty:",
            "",
            _md_table(owners, ["duty", "role", "team"]),
        ]
    )


def _change_envelope(c: Context) -> dict[str, Any]:
    from quality_platform.ml.config import load_approval_policy
    from quality_platform.ml.lifecycle import envelope_violations

    policy = load_approval_policy(c.paths)
    base = c.version.tag("gate_champion") or ""
    champion = c.registry.version(base) if base else None
    return {
        "policy": policy.model_dump(),
        "compared_with_version": base or None,
        "violations": envelope_violations(c.version, champion, policy),
        "approved_by": c.version.tag("approved_by"),
    }


def _change_envelope_md(e: dict[str, Any]) -> str:
    p = e["policy"]
    env = p["change_envelope"]
    params = [
        {"parameter": k, "min": r["min"], "max": r["max"]} for k, r in env["parameters"].items()
    ]
    inside = (
        "inside the envelope"
        if not e["violations"]
        else "outside the envelope: " + "; ".join(e["violations"])
    )
    return "\n".join(
        [
            f"Approval policy version {p['version']}: automatic approval within the envelope "
            f"{'on' if p['auto_approve_within_envelope'] else 'off'}; first version needs a human: "
            f"{p['first_version_requires_human']}.",
            "",
            f"- same feature set: {env['same_feature_set']}; same data sources: {env['same_data_sources']}; "
            f"same label: {env['same_label']}",
            f"- fixed parameters (must equal the champion's): {', '.join(env['fixed_parameters']) or 'none'}",
            "",
            _md_table(params, ["parameter", "min", "max"]),
            "",
            f"This version against the champion at its gate ({e['compared_with_version'] or 'none'}): {inside}; "
            f"approved by: {e['approved_by'] or 'not approved'}.",
        ]
    )


#: key -> (title, evidence collector, renderer), in document order.
SECTIONS: dict[
    str, tuple[str, Callable[[Context], dict[str, Any]], Callable[[dict[str, Any]], str]]
] = {
    "identity": ("Identity and lineage", _identity, _identity_md),
    "intended_purpose": ("Intended purpose", _purpose, _purpose_md),
    "training_data": ("Training data datasheet", _training_data, _training_data_md),
    "metrics": ("Metrics overall and per plant", _metrics, _metrics_md),
    "limitations": ("Known limitations", _limitations, _limitations_md),
    "explanation": ("Explanation summary", _explanation, _explanation_md),
    "approvals": ("Approvals and lifecycle", _approvals, _approvals_md),
    "monitoring_plan": ("Monitoring plan", _monitoring_plan, _monitoring_plan_md),
    "change_envelope": (
        "Declared change envelope for automatic retraining",
        _change_envelope,
        _change_envelope_md,
    ),
}


# --------------------------------------------------------------------------- generate / check


def _context(
    paths: Paths,
    version: str,
    definitions: dg.Definitions | dg.RepositoryDefinition,
    registry: Any = None,
    audit: AuditLog | None = None,
    warehouse: Path | None = None,
) -> Context:
    from quality_platform.audit import audit_db_path
    from quality_platform.ml.config import load_model_config
    from quality_platform.ml.registry import ModelRegistry, RegistryError

    reg = registry or ModelRegistry(load_model_config(paths), paths)
    try:
        info = reg.version(str(version))
    except RegistryError as exc:
        raise DocsError(str(exc)) from exc
    return Context(
        paths=paths,
        registry=reg,
        audit=audit or AuditLog(audit_db_path(paths)),
        version=info,
        warehouse=warehouse if warehouse is not None else paths.warehouse_path,
        definitions=definitions,
    )


def collect(ctx: Context) -> dict[str, dict[str, Any]]:
    """Per section: its evidence and the sha256 of that evidence (recomputed now)."""
    out = {}
    for key, (title, fn, _) in SECTIONS.items():
        ev = normalise(_clean(fn(ctx)), f"evidence of {key}")
        out[key] = {"title": title, "evidence": ev, "sha256": sha256_of(ev)}
    return out


def render(
    model: str,
    version: str,
    generated_utc: str,
    sections: dict[str, dict[str, Any]],
    stale: dict[str, str] | None = None,
) -> str:
    """The Markdown document; sections listed in ``stale`` get a STALE marker with the reason."""
    lines = [
        f"# Model documentation: {model} version {version}",
        "",
        f"Generated {generated_utc} from evidence only (quality_platform.reports.model_docs); every section "
        "names the sha256 of its evidence. `qp docs model "
        f"{version}` marks sections whose evidence changed since generation as STALE.",
        "",
    ]
    for key, s in sections.items():
        mark = f" - STALE ({stale[key]})" if stale and key in stale else ""
        lines += [
            f"## {s['title']}{mark}",
            "",
            f"_evidence sha256: `{s['sha256']}`_",
            "",
            s["markdown"],
            "",
        ]
    return "\n".join(lines)


@dataclass
class ModelDoc:
    """A generated or read-back document with its staleness."""

    model: str
    version: str
    generated_utc: str
    sections: dict[str, dict[str, Any]]  # key -> title, sha256, markdown (+ sha256_now, stale)
    markdown: str
    artifact_uri: str
    regenerated: bool = False

    @property
    def stale(self) -> list[str]:
        return [k for k, s in self.sections.items() if s.get("stale")]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "generated_utc": self.generated_utc,
            "artifact_uri": self.artifact_uri,
            "regenerated": self.regenerated,
            "stale": self.stale,
            "sections": [
                {
                    "key": k,
                    "title": s["title"],
                    "sha256": s["sha256"],
                    "sha256_now": s.get("sha256_now", s["sha256"]),
                    "stale": bool(s.get("stale")),
                }
                for k, s in self.sections.items()
            ],
            "markdown": self.markdown,
        }


def generate(
    paths: Paths,
    version: str,
    *,
    registry: Any = None,
    audit: AuditLog | None = None,
    warehouse: Path | None = None,
    definitions: dg.Definitions | dg.RepositoryDefinition,
) -> ModelDoc:
    """Collect the evidence of ``version``, render the document and store it with the version
    (MLflow artifacts ``docs/model_card.md`` + ``docs/evidence.json``, tags ``qp.docs_*``).
    ``definitions``: the Dagster definitions (or repository) the monitoring plan is read from."""
    return _generate(_context(paths, version, definitions, registry, audit, warehouse))


def _generate(ctx: Context) -> ModelDoc:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    sections = {}
    for key, s in collect(ctx).items():
        sections[key] = {**s, "markdown": SECTIONS[key][2](s["evidence"])}
    md = render(ctx.registry.name, ctx.version.version, now, sections)
    evidence = {
        "model": ctx.registry.name,
        "version": ctx.version.version,
        "generated_utc": now,
        "card_sha256": hashlib.sha256(md.encode("utf-8")).hexdigest(),
        "sections": sections,
    }
    reg = ctx.registry
    reg.log_text(ctx.version.version, EVIDENCE_PATH, json.dumps(evidence, indent=1, sort_keys=True))
    reg.log_text(ctx.version.version, CARD_PATH, md)
    reg.set_tags(
        ctx.version.version,
        {
            "docs_sha256": evidence["card_sha256"],
            "docs_generated_at": now,
            "docs_artifact": CARD_PATH,
        },
    )
    return ModelDoc(
        reg.name,
        ctx.version.version,
        now,
        {k: {**s, "sha256_now": s["sha256"], "stale": False} for k, s in sections.items()},
        md,
        artifact_uri(ctx),
        regenerated=True,
    )


def artifact_uri(ctx: Context) -> str:
    """Where the stored Markdown of the version lives (MLflow artifact URI of ``docs/model_card.md``)."""
    return f"{ctx.run.info.artifact_uri}/{CARD_PATH}"


def check(
    paths: Paths,
    version: str,
    *,
    registry: Any = None,
    audit: AuditLog | None = None,
    warehouse: Path | None = None,
    definitions: dg.Definitions | dg.RepositoryDefinition,
) -> ModelDoc | None:
    """The stored document of ``version`` with every section whose evidence changed since generation
    marked STALE (evidence recomputed now); None when the version has no document yet."""
    return _check(_context(paths, version, definitions, registry, audit, warehouse))


def _check(ctx: Context) -> ModelDoc | None:
    stored = ctx.registry.download_text(ctx.version.version, EVIDENCE_PATH)
    if stored is None:
        return None
    doc = json.loads(stored)
    now = collect(ctx)
    sections, stale = {}, {}
    order = [k for k in SECTIONS if k in doc["sections"]] + [
        k for k in doc["sections"] if k not in SECTIONS
    ]
    for key in order:
        s = doc["sections"][key]
        cur = now.get(key)
        sha_now = cur["sha256"] if cur else None
        is_stale = sha_now != s["sha256"]
        if is_stale:
            stale[key] = (
                f"evidence changed since {doc['generated_utc']}: sha256 {s['sha256'][:12]} -> "
                f"{(sha_now or 'section no longer produced')[:12]}; regenerate with "
                f"`qp docs model {ctx.version.version} --regenerate`"
            )
        sections[key] = {**s, "sha256_now": sha_now, "stale": is_stale}
    for key in now.keys() - doc["sections"].keys():  # a section added since generation
        stale[key] = "section added since generation"
        sections[key] = {
            "title": now[key]["title"],
            "sha256": "",
            "sha256_now": now[key]["sha256"],
            "stale": True,
            "markdown": _missing("not in the stored document"),
        }
    md = render(doc["model"], doc["version"], doc["generated_utc"], sections, stale)
    return ModelDoc(
        doc["model"], doc["version"], doc["generated_utc"], sections, md, artifact_uri(ctx)
    )


def document(
    paths: Paths,
    version: str,
    *,
    regenerate: bool = False,
    registry: Any = None,
    audit: AuditLog | None = None,
    definitions: dg.Definitions | dg.RepositoryDefinition,
) -> ModelDoc:
    """The document of ``version``: regenerated (``regenerate`` or none stored yet) or the stored one
    checked for staleness."""
    ctx = _context(paths, version, definitions, registry, audit)
    if not regenerate:
        doc = _check(ctx)
        if doc is not None:
            return doc
    return _generate(ctx)
