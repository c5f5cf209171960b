"""Lineage both ways, from the model registry and the audit log: what a model version was trained
on and which prediction batches it made (:func:`lineage_of_model`), and which model versions a
plant-day trained and what they predicted (:func:`lineage_of_data`). ``qp lineage`` prints them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from quality_platform.ml.lifecycle import open_stores
from quality_platform.ml.registry import RegistryError
from quality_platform.settings import Paths


class LineageError(LookupError):
    """The model version asked about does not exist (the message names it)."""


def lineage_of_model(version: str, paths: Paths) -> dict[str, Any]:
    """Plants, partitions, data hash, code version and run that produced a model version.

    Raises :class:`LineageError` when the registry has no such version."""
    reg, audit = open_stores(paths)
    try:
        v = reg.version(version)
    except RegistryError as exc:
        raise LineageError(str(exc)) from exc
    batches = [
        {
            "run_id": r.refs.get("run_id"),
            "ts_utc": r.ts_utc,
            "partitions": r.refs.get("partitions"),
            "rows": r.refs.get("rows"),
            "role": "champion" if r.refs.get("champion_version") == version else "challenger",
        }
        for r in audit.records(action="predict")
        if version in (r.refs.get("champion_version"), r.refs.get("challenger_version"))
    ]
    return {
        "model": reg.name,
        "version": version,
        "plants": sorted(v.partitions),
        "partitions": v.partitions,
        "data_hash": v.tag("data_hash"),
        "code_version": v.tag("code_version"),
        "git_commit": v.tag("git_commit"),
        "dagster_run_id": v.tag("dagster_run_id"),
        "mlflow_run_id": v.run_id,
        "params": v.params,
        "feature_set_version": v.tag("feature_set_version"),
        "gate": v.gate,
        "approval": v.approval,
        "status": v.status,
        "prediction_batches": batches,
    }


def lineage_of_data(plant: str, day: dt.date, paths: Paths) -> dict[str, Any]:
    """Model versions whose training used (plant, day), and the prediction batches made with them."""
    reg, audit = open_stores(paths)
    used = []
    for v in reg.versions():
        rng = v.partitions.get(plant)
        if rng and dt.date.fromisoformat(rng[0]) <= day <= dt.date.fromisoformat(rng[1]):
            used.append(v.version)
    batches = [
        {
            "run_id": r.refs.get("run_id"),
            "ts_utc": r.ts_utc,
            "champion_version": r.refs.get("champion_version"),
            "challenger_version": r.refs.get("challenger_version"),
            "partitions": r.refs.get("partitions"),
            "rows": r.refs.get("rows"),
        }
        for r in audit.records(action="predict")
        if r.refs.get("champion_version") in used or r.refs.get("challenger_version") in used
    ]
    return {
        "plant": plant,
        "date": day.isoformat(),
        "model_versions": used,
        "prediction_batches": batches,
    }
