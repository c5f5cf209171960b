"""Opening and closing incidents (F24; ``qp incident open|close``).

An incident is opened by a policy user allowed to ``open_incident`` (a plant-scoped user only for
their plants) and closed by one allowed to ``close_incident``. Opening stores it
(:mod:`quality_platform.governance.incident_store`; the freeze of
:mod:`quality_platform.governance.freeze` holds from then on), audits, alerts and preserves the
evidence bundle (:func:`quality_platform.incidents.evidence.build_evidence`). The reporting deadline
is computed from the severity (``data/governance/incidents.yaml``, EU AI Act Art. 73 style; the
clock starts at opening). Closing releases the freeze and the safe state; both are audited and
alerted, and refusals are audited.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from quality_platform.audit import AuditLog, audit_db_path, now_text, sqlite_connect, utc_text
from quality_platform.governance.incident_store import (
    Incident,
    IncidentError,
    config_path,
    ensure_store,
    get,
    load_incident_config,
    parse_utc,
)
from quality_platform.governance.policy import (
    Policy,
    PolicyError,
    Principal,
    authorize,
    load_policy,
)
from quality_platform.incidents.evidence import build_evidence
from quality_platform.settings import Paths, get_paths

if TYPE_CHECKING:
    import dagster as dg

#: the audit action of the incident workflow's records
ACTION = "incident"


def _alert(
    paths: Paths, severity: str, summary: str, plant: str | None, details: dict[str, Any]
) -> None:
    from quality_platform.alerts import Alert, send_alert

    send_alert(
        Alert(
            kind="incident", severity=severity, summary=summary[:500], plant=plant, details=details
        ),
        paths,
    )


def default_data_window(
    paths: Paths, plant: str | None, days: int, today: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """The last ``days`` production days up to the newest scored day (not after today; today when
    nothing was scored): in live operation simply the last ``days`` days."""
    from quality_platform.warehouse import connect, table_exists

    today = today or dt.datetime.now(dt.UTC).date()
    end = today
    if paths.warehouse_path.exists():
        try:
            with connect(paths.warehouse_path, read_only=True) as con:
                if table_exists(con, "ml", "predictions"):
                    sql = "SELECT max(CAST(partition_date AS DATE)) FROM ml.predictions WHERE CAST(partition_date AS DATE) <= ?"
                    params: list[Any] = [today]
                    if plant:
                        sql += " AND plant = ?"
                        params.append(plant)
                    newest = con.execute(sql, params).fetchall()[0][0]
                    if newest is not None:
                        end = newest
        except Exception:  # warehouse busy (a writer holds it): fall back to today
            pass
    return end - dt.timedelta(days=days - 1), end


def open_incident(
    who: Principal | str,
    severity: str,
    summary: str,
    *,
    plant: str | None = None,
    model: str | None = None,
    safe_state: bool | None = None,
    paths: Paths | None = None,
    audit: AuditLog | None = None,
    policy: Policy | None = None,
    instance: dg.DagsterInstance | None = None,
    data_from: dt.date | None = None,
    data_to: dt.date | None = None,
    evidence: bool = True,
) -> Incident:
    """Open an incident: authorise (``open_incident``; a plant-scoped user only for their plants),
    store it (the freeze holds from here), audit, alert, then preserve the evidence bundle.

    ``safe_state`` None takes the severity's default from the config. The data window defaults to
    :func:`default_data_window`; audit records and runs of the last ``evidence.window_days`` days
    are preserved. Raises :class:`IncidentError` for bad input and ``PolicyError`` when refused."""
    paths = paths or get_paths()
    if model is None:  # the registered model of this installation (the one the freeze checks name)
        from quality_platform.ml.config import load_model_config

        model = load_model_config(paths).mlflow.registered_model
    audit = audit or AuditLog(audit_db_path(paths))
    cfg = load_incident_config(paths)
    if severity not in cfg.severities:
        raise IncidentError(
            f"unknown severity {severity!r}; {config_path(paths)} defines {sorted(cfg.severities)}"
        )
    if not isinstance(summary, str) or not summary.strip():
        raise IncidentError("an incident needs a summary (--summary TEXT)")
    if plant is not None:
        from quality_platform.config import load_plants

        plants = load_plants(paths)
        if plant not in plants:
            raise IncidentError(f"unknown plant {plant!r}; configured: {sorted(plants)}")
    policy = policy or load_policy(paths)
    sev = cfg.severities[severity]
    principal_ = authorize(
        policy,
        who,
        "open_incident",
        audit,
        subject=f"model:{model}",
        plant=plant,
        reason=summary,
        refs={"severity": severity},
    )
    if (
        plant is None and principal_.plants is not None
    ):  # a plant-scoped user speaks for their plants only
        why = (
            f"user {principal_.name} (role {principal_.role}) may open incidents only for their plants "
            f"{sorted(principal_.plants)}: name the plant (--plant)"
        )
        audit.append(
            "open_incident",
            principal_.name,
            subject=f"model:{model}",
            reason=summary,
            outcome="denied",
            refs={"denied_because": why, "role": principal_.role, "severity": severity},
        )
        raise PolicyError(why)
    safe = sev.safe_state if safe_state is None else bool(safe_state)
    opened = dt.datetime.now(dt.UTC)
    if data_from is None or data_to is None:
        dfrom, dto = default_data_window(paths, plant, cfg.evidence.window_days)
        data_from, data_to = data_from or dfrom, data_to or dto
    if data_from > data_to:
        raise IncidentError(f"data window: from {data_from} is after to {data_to}")
    row = {
        "severity": severity,
        "status": "open",
        "plant": plant,
        "model": model,
        "summary": summary.strip(),
        "opened_by": principal_.name,
        "opened_utc": utc_text(opened),
        "deadline_utc": utc_text(opened + dt.timedelta(hours=sev.report_within_hours)),
        "safe_state": int(safe),
        "frozen": int(sev.freeze),
        "data_from": data_from.isoformat(),
        "data_to": data_to.isoformat(),
        "events_from": utc_text(opened - dt.timedelta(days=cfg.evidence.window_days)),
    }
    db = ensure_store(paths)
    with sqlite_connect(db) as con:
        cur = con.execute(
            f"INSERT INTO incidents ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
            list(row.values()),
        )
        iid = int(cur.lastrowid or 0)
    inc = get(iid, paths)
    refs = {
        "incident_id": iid,
        "severity": severity,
        "basis": sev.basis,
        "regulatory": sev.regulatory,
        "model": model,
        "frozen": inc.frozen,
        "safe_state": inc.safe_state,
        "deadline_utc": inc.deadline_utc,
        "data_window": [inc.data_from, inc.data_to],
        "events_from": inc.events_from,
        "role": principal_.role,
        "via": principal_.via,
    }
    audit.append(
        ACTION,
        principal_.name,
        subject=inc.subject,
        plant=plant,
        reason=f"opened: {inc.summary}",
        refs=refs,
    )
    _alert(
        paths,
        "error",
        f"incident {iid} opened ({severity}) by {principal_.name}: {inc.summary}"
        + (f"; model {model} frozen" if inc.frozen else "")
        + ("; safe state: rule-based limits" if safe else ""),
        plant,
        refs,
    )
    if evidence:
        try:
            out = build_evidence(inc, paths, audit, instance=instance, cfg=cfg)
            with sqlite_connect(db) as con:
                con.execute(
                    "UPDATE incidents SET evidence_dir = ?, manifest_sha256 = ? WHERE id = ?",
                    [out["bundle"], out["manifest_sha256"], iid],
                )
            audit.append(
                ACTION,
                principal_.name,
                subject=inc.subject,
                plant=plant,
                reason="evidence bundle preserved",
                refs={
                    "incident_id": iid,
                    **{
                        k: out[k]
                        for k in ("bundle", "manifest_sha256", "files", "bytes", "seconds", "notes")
                    },
                },
            )
        except Exception as exc:  # the freeze holds even when the evidence could not be collected
            audit.append(
                ACTION,
                principal_.name,
                subject=inc.subject,
                plant=plant,
                outcome="failed",
                reason=f"evidence bundle failed: {type(exc).__name__}: {exc}"[:1000],
                refs={"incident_id": iid},
            )
    return get(iid, paths)


def close_incident(
    incident_id: int | str,
    who: Principal | str,
    resolution: str,
    *,
    paths: Paths | None = None,
    audit: AuditLog | None = None,
    policy: Policy | None = None,
) -> Incident:
    """Close an open incident (``close_incident``): the freeze and the safe state end. Audited and
    alerted; closing twice or without a resolution is refused (audited)."""
    paths = paths or get_paths()
    audit = audit or AuditLog(audit_db_path(paths))
    inc = get(incident_id, paths)
    policy = policy or load_policy(paths)
    p = authorize(
        policy,
        who,
        "close_incident",
        audit,
        subject=inc.subject,
        plant=inc.plant,
        reason=resolution,
    )
    why = None
    if not inc.is_open:
        why = f"incident {inc.id} is already closed (by {inc.closed_by} at {inc.closed_utc})"
    elif not isinstance(resolution, str) or not resolution.strip():
        why = "closing an incident needs a resolution (--resolution TEXT)"
    if why:
        audit.append(
            ACTION,
            p.name,
            subject=inc.subject,
            plant=inc.plant,
            outcome="denied",
            reason=resolution or None,
            refs={"incident_id": inc.id, "denied_because": why},
        )
        raise IncidentError(why)
    closed = now_text()
    with sqlite_connect(ensure_store(paths)) as con:
        n = con.execute(
            "UPDATE incidents SET status = 'closed', closed_by = ?, closed_utc = ?, resolution = ? "
            "WHERE id = ? AND status = 'open'",
            [p.name, closed, resolution.strip(), inc.id],
        ).rowcount
    if n != 1:
        raise IncidentError(f"incident {inc.id} was closed concurrently")
    out = get(inc.id, paths)
    late = parse_utc(closed) > parse_utc(inc.deadline_utc)
    refs = {
        "incident_id": inc.id,
        "severity": inc.severity,
        "opened_utc": inc.opened_utc,
        "deadline_utc": inc.deadline_utc,
        "after_deadline": late,
        "released_freeze": inc.frozen,
        "ended_safe_state": inc.safe_state,
        "role": p.role,
        "via": p.via,
    }
    audit.append(
        ACTION,
        p.name,
        subject=inc.subject,
        plant=inc.plant,
        reason=f"closed: {resolution.strip()}",
        refs=refs,
    )
    _alert(
        paths,
        "warning",
        f"incident {inc.id} closed by {p.name}: {resolution.strip()}"
        + ("; freeze released" if inc.frozen else ""),
        inc.plant,
        refs,
    )
    return out


__all__ = [
    "ACTION",
    "close_incident",
    "default_data_window",
    "open_incident",
]
