"""Lifecycle of model versions: gate record, approval policy, approve/reject, promote, roll back,
canary decisions and history (F14-F17). Used by the Dagster assets and by the ``qp`` CLI alike.

Invariants enforced here, whoever calls:

- a version whose gate ``failed`` (or was never run) can never be approved, promoted or routed;
- promotion needs an approval (human, or automatic inside the policy's change envelope);
- every change is written to the audit log with actor, time, reason and references; a refused
  action is audited as ``denied`` and changes nothing;
- a human actor must be a policy user whose role may take the action
  (data/governance/policy.yaml); nobody approves a version they trained or proposed (separation
  of duties); system actors (``system:...``, ``policy:...``) are the platform's own automation;
- while an open incident freezes the model, no promotion, rollback, alias move or automatic
  approval happens, whoever asks (quality_platform.governance.freeze).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from quality_platform.audit import AuditLog, audit_db_path
from quality_platform.ml.config import ApprovalPolicy, load_model_config
from quality_platform.ml.gate import GateReport
from quality_platform.ml.registry import (
    CHALLENGER,
    CHAMPION,
    ModelRegistry,
    RegistryError,
    VersionInfo,
)
from quality_platform.settings import Paths

PASSING = ("passed", "passed_with_warnings")
AUTO_APPROVER = "policy:auto-approval"


class LifecycleError(RegistryError):
    """A refused lifecycle action (the message says why; it was audited as denied)."""


def open_stores(paths: Paths) -> tuple[ModelRegistry, AuditLog]:
    """The model registry and the audit log of an installation: what the lifecycle functions take."""
    return ModelRegistry(load_model_config(paths), paths), AuditLog(audit_db_path(paths))


def subject(reg: ModelRegistry, version: str) -> str:
    return f"model:{reg.name}/{version}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _deny(
    reg: ModelRegistry,
    audit: AuditLog,
    action: str,
    version: str | None,
    actor: str,
    reason: str | None,
    why: str,
) -> LifecycleError:
    audit.append(
        action,
        actor,
        subject=subject(reg, version) if version else f"model:{reg.name}",
        reason=reason,
        outcome="denied",
        refs=reg.refs(**{"denied_because": why, "model_version": version}),
    )
    return LifecycleError(why)


def _record(
    reg: ModelRegistry,
    audit: AuditLog,
    versions: str | tuple[str, ...],
    action: str,
    actor: str,
    *,
    refs: dict[str, Any],
    **record: Any,
) -> None:
    """Audit a lifecycle change of ``versions`` (the first is the record's subject) with the
    registry store in its refs, then publish the audit chain head in the MLflow version(s) it is
    about (``qp.audit_head``): the head lives outside the audit file, so cutting off the newest
    records is detected by ``qp audit verify``."""
    from quality_platform.audit_anchors import anchor_version

    versions = (versions,) if isinstance(versions, str) else versions
    audit.append(action, actor, subject=subject(reg, versions[0]), refs=reg.refs(**refs), **record)
    for version in versions:
        anchor_version(reg, version, audit)


def _guard(
    reg: ModelRegistry,
    audit: AuditLog,
    action: str,
    version: str | None,
    actor: str,
    reason: str | None,
    *,
    freeze: bool,
    approving: VersionInfo | None = None,
) -> None:
    """The policy check for human actors (with separation of duties when ``approving`` a version)
    and, for changes that move the model, the incident freeze. A refusal is audited (by the policy,
    the duty rule or the freeze) and raised as :class:`LifecycleError`."""
    from quality_platform.governance.policy import (
        PolicyError,
        authorize,
        is_system_actor,
        load_policy,
    )

    subj = subject(reg, version) if version else f"model:{reg.name}"
    try:
        if not is_system_actor(actor):
            policy = load_policy(reg.paths)
            authorize(
                policy,
                actor,
                action,
                audit,
                subject=subj,
                reason=reason,
                refs=reg.refs(**{"model_version": version}),
            )
            if approving is not None and policy.separation_of_duties.approver_not_trainer:
                _separation_of_duties(reg, audit, approving, actor, reason or "")
        if freeze:
            from quality_platform.governance.freeze import assert_not_frozen

            assert_not_frozen(action, actor, audit, reg.paths, subject=subj, model=reg.name)
    except PolicyError as exc:
        raise LifecycleError(str(exc)) from exc


def _alert(
    reg: ModelRegistry, kind: str, severity: str, summary: str, details: dict[str, Any]
) -> None:
    """Send a lifecycle alert to the configured channel (never raises; see quality_platform.alerts)."""
    from quality_platform.alerts import Alert, send_alert

    send_alert(Alert(kind=kind, severity=severity, summary=summary, details=details), reg.paths)


def record_gate(
    reg: ModelRegistry, audit: AuditLog, report: GateReport, run_id: str, data_hash: str
) -> None:
    """Store the gate result on the version (tags + report artifacts) and in the audit log."""
    v = report.version
    reg.set_tags(
        v,
        {
            "gate": report.status,
            "gate_run_id": run_id,
            "gate_at": _now(),
            "gate_champion": report.champion_version or "",
            "gate_failed_checks": ",".join(c.name for c in report.checks if not c.passed),
        },
    )
    if report.status not in PASSING:
        ch = reg.alias(CHALLENGER)
        if ch is not None and ch.version == v:
            reg.delete_alias(CHALLENGER)
        reg.set_tags(v, {"status": "gate_failed"})
    reg.log_text(v, "gate/report.md", report.markdown())
    reg.log_text(v, "gate/report.json", json.dumps(report.as_dict(), indent=2, default=str))
    _record(
        reg,
        audit,
        v,
        "gate",
        "system:dagster",
        actor_kind="system",
        outcome="ok" if report.status in PASSING else "failed",
        reason=f"release gate {report.status}",
        refs={
            "model_version": v,
            "run_id": run_id,
            "data_hash": data_hash,
            "status": report.status,
            "champion_version": report.champion_version,
            "checks": {
                c.name: ("pass" if c.passed else f"fail:{c.severity}") for c in report.checks
            },
        },
    )
    if report.status not in PASSING:
        _alert(
            reg,
            "gate_failed",
            "error",
            f"model version {v} failed the release gate: "
            + ", ".join(c.name for c in report.checks if not c.passed),
            {"model_version": v, "run_id": run_id, "data_hash": data_hash},
        )


def envelope_violations(
    new: VersionInfo, champion: VersionInfo | None, policy: ApprovalPolicy
) -> list[str]:
    """Why ``new`` is outside the declared change envelope (empty list = inside)."""
    if champion is None:
        return (
            ["first version of the model (no champion to compare with)"]
            if policy.first_version_requires_human
            else []
        )
    env, out = policy.change_envelope, []
    if env.same_feature_set and new.tags.get("qp.feature_spec") != champion.tags.get(
        "qp.feature_spec"
    ):
        out.append("feature set differs from the champion's")
    if env.same_data_sources and set(new.partitions) != set(champion.partitions):
        out.append(
            f"data sources differ: {sorted(new.partitions)} vs champion {sorted(champion.partitions)}"
        )
    if env.same_label and new.tag("label") != champion.tag("label"):
        out.append(f"label differs: {new.tag('label')} vs {champion.tag('label')}")
    params, cparams = new.params, champion.params
    for name, rng in env.parameters.items():
        val = params.get(name)
        if val is None or not (rng.min <= float(val) <= rng.max):
            out.append(f"parameter {name}={val} outside [{rng.min}, {rng.max}]")
    for name in env.fixed_parameters:
        if params.get(name) != cparams.get(name):
            out.append(f"parameter {name} changed: {cparams.get(name)} -> {params.get(name)}")
    return out


def apply_policy(
    reg: ModelRegistry, audit: AuditLog, version: str, policy: ApprovalPolicy, run_id: str
) -> str:
    """After the gate: approve automatically inside the envelope, else leave it to a human.

    Returns the approval state: ``auto_approved``, ``pending`` or ``blocked`` (gate failed)."""
    v = reg.version(version)
    if v.gate not in PASSING:
        reg.set_tags(version, {"approval": "blocked", "approval_reason": f"gate {v.gate}"})
        return "blocked"
    champion = reg.alias(CHAMPION)
    try:
        _guard(
            reg,
            audit,
            "approve",
            version,
            AUTO_APPROVER,
            "automatic approval inside the change envelope",
            freeze=True,
        )
    except LifecycleError as exc:
        reg.set_tags(version, {"approval": "pending", "approval_needs_human": str(exc)})
        return "pending"
    why = envelope_violations(v, champion, policy)
    if v.gate != "passed":
        why.append(f"gate {v.gate}")
    if not policy.auto_approve_within_envelope:
        why.append("policy: every version needs a human approval")
    if why:
        reg.set_tags(version, {"approval": "pending", "approval_needs_human": "; ".join(why)})
        audit.append(
            "approve",
            AUTO_APPROVER,
            actor_kind="system",
            subject=subject(reg, version),
            outcome="info",
            reason="human approval required: " + "; ".join(why),
            refs=reg.refs(**{"model_version": version, "run_id": run_id}),
        )
        return "pending"
    reg.set_tags(
        version,
        {
            "approval": "approved",
            "approved_by": AUTO_APPROVER,
            "approved_at": _now(),
            "approval_reason": "inside the declared change envelope (data/ml/approval_policy.yaml)",
        },
    )
    _record(
        reg,
        audit,
        version,
        "approve",
        AUTO_APPROVER,
        actor_kind="system",
        reason="automatic approval inside the declared change envelope",
        refs={
            "model_version": version,
            "run_id": run_id,
            "policy_version": policy.version,
            "champion_version": champion.version if champion else None,
        },
    )
    return "auto_approved"


def approve(
    reg: ModelRegistry, audit: AuditLog, version: str, actor: str, reason: str
) -> VersionInfo:
    """A human approves ``version`` (it must have passed the gate)."""
    v = _existing(reg, audit, "approve", version, actor, reason)
    _guard(reg, audit, "approve", version, actor, reason, freeze=False, approving=v)
    if not reason.strip():
        raise _deny(reg, audit, "approve", version, actor, reason, "an approval needs a reason")
    if v.gate not in PASSING:
        raise _deny(
            reg,
            audit,
            "approve",
            version,
            actor,
            reason,
            f"version {version} has gate status '{v.gate}': a version that did not pass the release gate "
            "can never be approved",
        )
    if v.approval == "rejected" or v.status in ("rolled_back", "rejected"):
        raise _deny(
            reg,
            audit,
            "approve",
            version,
            actor,
            reason,
            f"version {version} was {v.status if v.status != 'registered' else v.approval}; train a new version",
        )
    reg.set_tags(
        version,
        {
            "approval": "approved",
            "approved_by": actor,
            "approved_at": _now(),
            "approval_reason": reason,
        },
    )
    _record(
        reg,
        audit,
        version,
        "approve",
        actor,
        reason=reason,
        refs={"model_version": version, "gate": v.gate, "data_hash": v.tag("data_hash")},
    )
    return reg.version(version)


def reject(
    reg: ModelRegistry, audit: AuditLog, version: str, actor: str, reason: str
) -> VersionInfo:
    """A human rejects ``version``: it leaves the canary and can never be promoted."""
    v = _existing(reg, audit, "reject", version, actor, reason)
    _guard(reg, audit, "reject", version, actor, reason, freeze=False)
    if v.status == CHAMPION or CHAMPION in v.aliases:
        raise _deny(
            reg,
            audit,
            "reject",
            version,
            actor,
            reason,
            f"version {version} is the champion: roll back first (qp rollback)",
        )
    reg.set_tags(
        version,
        {
            "approval": "rejected",
            "rejected_by": actor,
            "rejected_at": _now(),
            "approval_reason": reason,
            "status": "rejected",
        },
    )
    if CHALLENGER in v.aliases:
        reg.delete_alias(CHALLENGER)
    _record(
        reg,
        audit,
        version,
        "reject",
        actor,
        reason=reason,
        refs={"model_version": version},
    )
    return reg.version(version)


def promote(
    reg: ModelRegistry,
    audit: AuditLog,
    version: str,
    actor: str,
    reason: str,
    automatic: bool = False,
) -> VersionInfo:
    """Make ``version`` the champion (gate passed and approved, else refused)."""
    v = _existing(reg, audit, "promote", version, actor, reason)
    _guard(reg, audit, "promote", version, actor, reason, freeze=True)
    if v.gate not in PASSING:
        raise _deny(
            reg,
            audit,
            "promote",
            version,
            actor,
            reason,
            f"version {version} has gate status '{v.gate}': it can never become champion",
        )
    if v.approval != "approved":
        raise _deny(
            reg,
            audit,
            "promote",
            version,
            actor,
            reason,
            f"version {version} is not approved (approval: {v.approval}): qp approve {version} --as USER --reason TEXT",
        )
    if v.status in ("rolled_back", "rejected"):
        raise _deny(
            reg, audit, "promote", version, actor, reason, f"version {version} was {v.status}"
        )
    old = reg.alias(CHAMPION)
    if old is not None and old.version == version:
        raise _deny(
            reg,
            audit,
            "promote",
            version,
            actor,
            reason,
            f"version {version} is already the champion",
        )
    reg.set_alias(CHAMPION, version)
    reg.set_tags(version, {"status": CHAMPION, "promoted_by": actor, "promoted_at": _now()})
    if old is not None:
        reg.set_tags(old.version, {"status": "retired", "retired_at": _now()})
    ch = reg.alias(CHALLENGER)
    if ch is not None and ch.version == version:
        reg.delete_alias(CHALLENGER)
    _record(
        reg,
        audit,
        version,
        "promote",
        actor,
        actor_kind="system" if automatic else "user",
        reason=reason,
        refs={
            "model_version": version,
            "previous_champion": old.version if old else None,
            "approved_by": v.tag("approved_by"),
            "gate": v.gate,
            "data_hash": v.tag("data_hash"),
        },
    )
    _alert(
        reg,
        "promotion",
        "info",
        f"model version {version} is the champion (was "
        f"{old.version if old else 'none'}; by {actor}: {reason})",
        {
            "model_version": version,
            "previous_champion": old.version if old else None,
            "actor": actor,
        },
    )
    return reg.version(version)


def register_challenger(reg: ModelRegistry, audit: AuditLog, version: str, run_id: str) -> None:
    """A newly registered version is the ``challenger``. It scores nothing until it passes the gate;
    then it scores in shadow and, once approved, decides the canary share. A challenger it replaces
    is retired."""
    _guard(reg, audit, "register", version, "system:dagster", "register as challenger", freeze=True)
    old = reg.alias(CHALLENGER)
    if old is not None and old.version != version:
        reg.set_tags(old.version, {"status": "retired", "retired_at": _now()})
    reg.set_alias(CHALLENGER, version)
    reg.set_tags(version, {"status": CHALLENGER})
    _record(
        reg,
        audit,
        version,
        "canary",
        "system:dagster",
        actor_kind="system",
        reason="registered as challenger (shadow/canary after the release gate)",
        refs={
            "model_version": version,
            "run_id": run_id,
            "replaced_challenger": old.version if old else None,
        },
    )


def rollback(reg: ModelRegistry, audit: AuditLog, actor: str, reason: str) -> tuple[str, str]:
    """Back to the previous approved champion in one step. Returns (from version, to version)."""
    _guard(reg, audit, "rollback", None, actor, reason, freeze=True)
    current = reg.alias(CHAMPION)
    if current is None:
        raise _deny(
            reg, audit, "rollback", None, actor, reason, "there is no champion to roll back"
        )
    promotions = [
        r.refs.get("model_version")
        for r in audit.records(action="promote", subject_prefix=f"model:{reg.name}/")
        if r.outcome == "ok" and reg.owns(r)
    ]
    target = None
    for ver in reversed(promotions):
        if ver is None or ver == current.version:
            continue
        v = reg.version(ver)
        if (
            v.gate in PASSING
            and v.approval == "approved"
            and v.status not in ("rolled_back", "rejected")
        ):
            target = v
            break
    if target is None:
        raise _deny(
            reg,
            audit,
            "rollback",
            current.version,
            actor,
            reason,
            f"no earlier approved champion to return to (current champion {current.version})",
        )
    reg.set_alias(CHAMPION, target.version)
    reg.set_tags(
        current.version,
        {"status": "rolled_back", "rolled_back_by": actor, "rolled_back_at": _now()},
    )
    reg.set_tags(target.version, {"status": CHAMPION})
    _record(
        reg,
        audit,
        (current.version, target.version),
        "rollback",
        actor,
        reason=reason,
        refs={"from_version": current.version, "to_version": target.version},
    )
    _alert(
        reg,
        "rollback",
        "warning",
        f"champion rolled back {current.version} -> {target.version} by {actor}: {reason}",
        {"from_version": current.version, "to_version": target.version, "actor": actor},
    )
    return current.version, target.version


def end_canary(
    reg: ModelRegistry,
    audit: AuditLog,
    version: str,
    decision: str,
    reason: str,
    refs: dict[str, Any],
) -> None:
    """Act on a canary verdict: ``promote`` (approved challenger becomes champion) or ``rollback``."""
    if decision == "promote":
        promote(reg, audit, version, "system:canary", reason, automatic=True)
    elif decision == "rollback":
        _guard(reg, audit, "rollback", version, "system:canary", reason, freeze=True)
        reg.delete_alias(CHALLENGER)
        reg.set_tags(
            version,
            {"status": "rolled_back", "rolled_back_by": "system:canary", "rolled_back_at": _now()},
        )
        _record(
            reg,
            audit,
            version,
            "rollback",
            "system:canary",
            actor_kind="system",
            reason=reason,
            refs={**refs, "model_version": version, "scope": "challenger"},
        )
        _alert(
            reg,
            "rollback",
            "warning",
            f"challenger {version} rolled back by the canary: {reason}",
            {**refs, "model_version": version},
        )


def history(reg: ModelRegistry, audit: AuditLog) -> dict[str, Any]:
    """Versions (gate, approval, status) and the timeline of lifecycle events."""
    versions = [
        {
            "version": v.version,
            "created_utc": dt.datetime.fromtimestamp(v.created_ms / 1000, dt.UTC).isoformat(
                timespec="seconds"
            ),
            "aliases": list(v.aliases),
            "status": v.status,
            "gate": v.gate,
            "approval": v.approval,
            "approved_by": v.tag("approved_by"),
            "data_hash": (v.tag("data_hash") or "")[:16],
            "plants": sorted(v.partitions),
            "dagster_run_id": v.tag("dagster_run_id"),
        }
        for v in reg.versions()
    ]
    events = [
        {
            "seq": r.seq,
            "ts_utc": r.ts_utc,
            "action": r.action,
            "actor": r.actor,
            "outcome": r.outcome,
            "subject": r.subject,
            "reason": r.reason,
            "refs": r.refs,
        }
        for r in audit.records(
            action=["register", "gate", "approve", "reject", "promote", "rollback", "canary"],
            subject_prefix=f"model:{reg.name}",
        )
        if reg.owns(r)
    ]
    # champion periods from promotions and rollbacks
    periods: list[dict[str, Any]] = []
    for e in events:
        to = None
        if e["action"] == "promote" and e["outcome"] == "ok":
            to = e["refs"].get("model_version")
        elif (
            e["action"] == "rollback"
            and e["outcome"] == "ok"
            and e["refs"].get("scope") != "challenger"
        ):
            to = e["refs"].get("to_version")
        if to is None:
            continue
        if periods:
            periods[-1]["until"] = e["ts_utc"]
        periods.append(
            {
                "version": to,
                "since": e["ts_utc"],
                "until": None,
                "by": e["actor"],
                "action": e["action"],
                "reason": e["reason"],
            }
        )
    return {"model": reg.name, "versions": versions, "champion_periods": periods, "events": events}


def _separation_of_duties(
    reg: ModelRegistry, audit: AuditLog, v: VersionInfo, actor: str, reason: str
) -> None:
    """Nobody approves a version they trained or proposed (policy ``separation_of_duties``)."""
    roles = {
        r: v.tag(t)
        for r, t in (("trained", "trained_by"), ("proposed", "proposed_by"))
        if v.tag(t) == actor
    }
    if roles:
        raise _deny(
            reg,
            audit,
            "approve",
            v.version,
            actor,
            reason,
            f"separation of duties: {actor} {' and '.join(roles)} version {v.version} and may not approve it; "
            "another control owner must",
        )


def _existing(
    reg: ModelRegistry, audit: AuditLog, action: str, version: str, actor: str, reason: str
) -> VersionInfo:
    if not actor or not actor.strip():
        raise _deny(
            reg,
            audit,
            action,
            version,
            actor or "(unknown)",
            reason,
            "an action needs an actor (--as USER)",
        )
    try:
        return reg.version(version)
    except RegistryError as exc:
        raise _deny(reg, audit, action, version, actor, reason, str(exc)) from exc
