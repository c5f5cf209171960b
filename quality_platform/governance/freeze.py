"""The incident freeze guard (F24): what training, the lifecycle and the retrain sensor check
before the model changes.

While an open incident is ``frozen``, the affected model does not change: every lifecycle action
(retrain, promotion, rollback, canary decision, alias move, training) calls
:func:`assert_not_frozen`, which audits the refused attempt (with the incident id) and raises
:class:`FrozenError`, whoever asks. With ``safe_state`` the predictions of the incident's plant (all
plants when it names none) are made by the documented rule-based limits of
``data/ml/safe_state.yaml`` instead of the model (:mod:`quality_platform.ml.safe_state`):
:func:`safe_state_incidents` and :func:`safe_state_for` say where. Closing the incident
(:func:`quality_platform.incidents.actions.close_incident`) releases both.

A low-level guard: it reads the incident store (:mod:`quality_platform.governance.incident_store`)
and imports nothing from the incident workflow or the reports.
"""

from __future__ import annotations

from typing import Any

from quality_platform.audit import AuditLog
from quality_platform.governance.incident_store import Incident, list_incidents
from quality_platform.governance.policy import PolicyError, is_system_actor
from quality_platform.settings import Paths, get_paths


class FrozenError(PolicyError):
    """An action refused because an open incident freezes the model (audited as denied)."""


def _model_matches(inc: Incident, model: str | None) -> bool:
    return model is None or inc.model == model


def active_freeze(paths: Paths | None = None, model: str | None = None) -> Incident | None:
    """The oldest open incident that freezes ``model`` (any model when None), or None."""
    for inc in list_incidents(paths or get_paths(), status="open"):
        if inc.frozen and _model_matches(inc, model):
            return inc
    return None


def safe_state_incidents(paths: Paths | None = None, model: str | None = None) -> list[Incident]:
    """Open incidents that put ``model`` into the safe state (oldest first)."""
    return [
        i
        for i in list_incidents(paths or get_paths(), status="open")
        if i.safe_state and _model_matches(i, model)
    ]


def safe_state_for(incidents: list[Incident], plant: str) -> Incident | None:
    """The first of ``incidents`` whose safe state covers ``plant``."""
    return next((i for i in incidents if i.covers(plant)), None)


def assert_not_frozen(
    action: str,
    actor: str,
    audit: AuditLog,
    paths: Paths,
    subject: str | None = None,
    *,
    model: str | None = None,
    reason: str | None = None,
    refs: dict[str, Any] | None = None,
) -> None:
    """Refuse ``action`` while an open incident freezes the model: audit a ``denied`` record (refs
    name the incident) and raise :class:`FrozenError`. Does nothing when no freeze holds."""
    inc = active_freeze(paths, model)
    if inc is None:
        return
    why = (
        f"{action} refused: the model {inc.model} is frozen by incident {inc.id} ({inc.severity}, opened "
        f"{inc.opened_utc} by {inc.opened_by}: {inc.summary}); no automatic or manual change until it is closed "
        f"(qp incident close {inc.id} --resolution TEXT)"
    )
    audit.append(
        action,
        actor,
        actor_kind="system" if is_system_actor(actor) else "user",
        subject=subject or f"model:{inc.model}",
        plant=inc.plant,
        outcome="denied",
        reason=reason or why,
        refs={
            **(refs or {}),
            "denied_because": why,
            "incident_id": inc.id,
            "frozen_by": inc.subject,
        },
    )
    raise FrozenError(why)


__all__ = [
    "FrozenError",
    "active_freeze",
    "assert_not_frozen",
    "safe_state_for",
    "safe_state_incidents",
]
