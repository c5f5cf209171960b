"""The platform's feature ids (F1-F30): the one place that defines the ids cited in docstrings,
comments and the README ("F23" = the tamper-evident audit log). Each entry is the feature's title
and what it promises; the README's "Feature ids" table lists the same ids
(quality_platform_tests/test_feature_ids.py keeps code, README and this file in step)."""

from __future__ import annotations

FEATURES: dict[str, str] = {
    "F1": "Plant adapters from config: a new plant is a YAML file (format, column mapping, units, time zone, "
    "KPI habits), no code change",
    "F2": "Canonical standard: pandera models for every standard table; unit conversion by a units library",
    "F3": "Unified KPI registry: KPIs defined once, versioned, documented; legacy figures reconciled",
    "F4": "Partitions plant x day, backfills, incremental daily runs, late data",
    "F5": "Simulator: multi-plant generator with ground-truth scenarios, deterministic by seed",
    "F6": "Rule-based validation as blocking asset checks; bad rows quarantined with reasons; counts reconcile",
    "F7": "Sensor faults told apart from process drift (a data-quality incident, not a retrain)",
    "F8": "Catalogue: description, owners, group, kinds, tags, code version, column schema and lineage per asset",
    "F9": "Model-to-data lineage both ways (partitions, data hash, code version, parameters, Dagster run)",
    "F10": "RBAC per role, ABAC row filters, column masks, governed queries and actions, separation of duties",
    "F11": "Pseudonymisation of personal data with a keyed HMAC at the raw -> standard boundary",
    "F12": "Reproducible CatBoost training: seed, thread count, data hash, code version, locked dependencies",
    "F13": "MLflow tracking and registry: versions, aliases, tags, metrics, signature, datasheet, model card",
    "F14": "Release gate: absolute thresholds, vs champion, per-plant non-inferiority, behavioural cases",
    "F15": "Approval (human in the loop) with who/when/why; automatic only inside a declared change envelope",
    "F16": "Canary and shadow scoring with stable hash routing; automatic promote or roll back",
    "F17": "Rollback to the previous approved version in one command; champion history",
    "F18": "Explanations: global importance per version, top reasons per prediction",
    "F19": "Input drift, prediction drift and realised performance with delayed labels",
    "F20": "Closed loop: failed drift/performance check -> sensor -> retrain -> gate -> approval -> canary -> "
    "promotion, with debounce and cooldown",
    "F21": "Schedules (daily ingestion/scoring, periodic retrain) and alerting to a configured channel",
    "F22": "Overrides of predictions by quality engineers; override rate monitored",
    "F23": "Tamper-evident audit log with a verify command",
    "F24": "Incident workflow: freeze, safe fallback to rule-based limits, event record, deadline clock",
    "F25": "Generated documentation per model version (purpose, datasheet, metrics, limitations, monitoring "
    "plan, approvals)",
    "F26": "Embedded default: DuckDB, SQLite-backed Dagster and MLflow, two README commands from a fresh clone",
    "F27": "Scale-out: PostgreSQL-backed Dagster and MLflow, DuckLake warehouse with parallel writers",
    "F28": "Dagster UI: materialise, lineage, checks, schedules and sensors, drift alarm to retrain to promotion",
    "F29": "Operating reviews: weekly/monthly report per plant and model",
    "F30": "Model scopes: which plants share a model is configuration",
}
