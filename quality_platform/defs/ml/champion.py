"""``champion``: the model version that decides production predictions, as an asset of the catalog
(issue 13, item 7).

A champion changes outside any materialisation of the model: a person promotes or rolls back
(``qp promote`` / ``qp rollback``), or the canary promotes an approved challenger inside
``canary_evaluation``. So ``champion`` is an external asset, and every change of champion is
reported as one of its materialisations: which version, who approved and who promoted it, the
release gate, the check whose failure started its retrain, the runs that trained it and that
evaluated that check (links in the UI), and the plant-days its training data really came from.
Its upstream edges put it after ``defect_model``, the release gate and the canary in the lineage
graph, so "which model decides today, and why that one" is answered from the asset's history.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from quality_platform.audit import AuditLog
from quality_platform.defs._assets import CODE_VERSIONS
from quality_platform.defs.ml import GROUP, OWNERS
from quality_platform.ml import lifecycle as L
from quality_platform.ml.registry import CHAMPION, ModelRegistry, VersionInfo

CHAMPION_ASSET = "champion"

champion_spec = dg.AssetSpec(
    CHAMPION_ASSET,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"mlflow"},
    deps=["defect_model", "model_evaluation", "canary_evaluation"],
    tags={"layer": "ml"},
    code_version=CODE_VERSIONS["ml"],
    description="The registered model version that decides production predictions (the MLflow "
    "alias `champion`). Each materialisation is a change of champion - a promotion by a person or "
    "by the canary, or a rollback - with the version, its approval (who approved, who promoted), "
    "its release gate, the check that triggered its retrain with links to that check's run and "
    "the training run, and the plant-days its training data came from.",
)


def _run_link(run_id: str | None) -> dg.MetadataValue | None:
    return dg.MetadataValue.dagster_run(run_id) if run_id else None


def champion_materialization(
    reg: ModelRegistry, action: str, actor: str, reason: str, previous: str | None
) -> dg.AssetMaterialization | None:
    """The ``champion`` materialisation after ``action`` (promote or rollback) left the registry
    with its current champion; None while there is none."""
    v: VersionInfo | None = reg.alias(CHAMPION)
    if v is None:
        return None
    meta: dict[str, Any] = {
        # a number, so the asset's Plots tab shows the champion's version over time
        "model_version": int(v.version) if v.version.isdigit() else v.version,
        "action": action,
        "changed_by": actor,
        "reason": reason,
        "previous_champion": previous or "(none)",
        "approval": v.approval,
        "approved_by": v.tag("approved_by") or "(none)",
        "promoted_by": v.tag("promoted_by") or actor,
        "gate": v.gate,
        "trigger": v.tag("trigger") or "manual",
        "trigger_check": v.tag("trigger_check") or "(none)",
        "trigger_check_record_id": v.tag("trigger_check_record_id") or "(none)",
        "training_partitions": dg.MetadataValue.json(v.partitions),
        "data_hash": v.tag("data_hash") or "",
        "mlflow_run_id": v.run_id,
        "registry_store": reg.store_id or "",
    }
    for key, run_id in (
        ("training_run", v.tag("dagster_run_id")),
        ("trigger_check_run", v.tag("trigger_check_run_id")),
    ):
        link = _run_link(run_id)
        if link is not None:
            meta[key] = link
    return dg.AssetMaterialization(
        asset_key=CHAMPION_ASSET,
        description=f"version {v.version} is the champion ({action} by {actor}: {reason})",
        metadata=meta,
    )


def report_champion(
    instance: dg.DagsterInstance,
    reg: ModelRegistry,
    action: str,
    actor: str,
    reason: str,
    previous: str | None,
) -> None:
    """Record a change of champion made outside a run (CLI, demo) in the Dagster event log."""
    event = champion_materialization(reg, action, actor, reason, previous)
    if event is not None:
        instance.report_runless_asset_event(event)


def promote(
    instance: dg.DagsterInstance,
    reg: ModelRegistry,
    audit: AuditLog,
    version: str,
    actor: str,
    reason: str,
) -> VersionInfo:
    """:func:`lifecycle.promote` (gate passed and approved, else refused) and its ``champion``
    materialisation."""
    old = reg.alias(CHAMPION)
    v = L.promote(reg, audit, version, actor, reason)
    report_champion(instance, reg, "promote", actor, reason, old.version if old else None)
    return v


def rollback(
    instance: dg.DagsterInstance, reg: ModelRegistry, audit: AuditLog, actor: str, reason: str
) -> tuple[str, str]:
    """:func:`lifecycle.rollback` to the previous approved champion and its ``champion``
    materialisation. Returns (from version, to version)."""
    old, new = L.rollback(reg, audit, actor, reason)
    report_champion(instance, reg, "rollback", actor, reason, old)
    return old, new
