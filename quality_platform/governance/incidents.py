"""Incidents (F24): open -> freeze (+ safe state) -> evidence bundle -> report -> close.

An incident is opened by a policy user allowed to ``open_incident`` (``qp incident open``). While it
is open and ``frozen``, the affected model does not change: every lifecycle action (retrain,
promotion, rollback, canary decision, alias move, training) calls :func:`assert_not_frozen`, which
audits the refused attempt (with the incident id) and raises :class:`FrozenError`. With
``safe_state`` the predictions of the incident's plant (all plants when it names none) are made by
the documented rule-based limits of ``data/ml/safe_state.yaml`` instead of the model
(:mod:`quality_platform.ml.safe_state`). Closing (``close_incident``) releases both.

The reporting deadline is computed from the severity (``data/governance/incidents.yaml``, EU AI Act
Art. 73 style; the clock starts at opening). At opening, the evidence is preserved under
``<data_dir>/incidents/<id>/`` (:func:`build_evidence`): the champion's and challenger's MLflow
model version (model files and run artifacts), the warehouse tables of the data window as Parquet
(never raw tables), the audit records and the Dagster run event logs of the window as JSONL, and
``manifest.json`` with the SHA-256 of every file; the bundle path and the manifest's hash go to the
audit log. :func:`incident_report` produces the complete event record as JSON and Markdown.

Storage: ``<data_dir>/audit/incidents.db`` (SQLite next to the audit log; WAL, busy timeout,
short-lived connections, safe for several processes). Rows are never deleted; a trigger allows only
the open -> closed transition and setting the evidence once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import Field, field_validator

from quality_platform.audit import (
    AuditLog,
    AuditRecord,
    audit_db_path,
    now_text,
    sqlite_connect,
    sqlite_init,
    utc_text,
)
from quality_platform.config import ConfigModel, load_yaml_model
from quality_platform.governance.policy import (
    Policy,
    PolicyError,
    Principal,
    authorize,
    is_system_actor,
    load_policy,
)
from quality_platform.settings import Paths, get_paths

if TYPE_CHECKING:
    import dagster as dg

ACTION = "incident"
FRAME_COLUMNS: tuple[str, ...] = (
    "id",
    "severity",
    "status",
    "plant",
    "model",
    "summary",
    "opened_by",
    "opened_utc",
    "closed_by",
    "closed_utc",
    "resolution",
    "deadline_utc",
    "safe_state",
    "frozen",
)


class IncidentError(ValueError):
    """Bad input to the incident workflow (unknown incident or severity, closing twice, ...)."""


class FrozenError(PolicyError):
    """An action refused because an open incident freezes the model (audited as denied)."""


# --------------------------------------------------------------------------- config


class SeverityConfig(ConfigModel):
    description: str = ""
    report_within_hours: float = Field(gt=0)
    basis: str = Field(min_length=1)
    regulatory: bool = False
    freeze: bool = True
    safe_state: bool = False


class EvidenceConfig(ConfigModel):
    window_days: int = Field(14, ge=1, le=366)
    max_runs: int = Field(200, ge=0)
    tables: list[str] = Field(default_factory=list)

    @field_validator("tables")
    @classmethod
    def _tables(cls, v: list[str]) -> list[str]:
        for t in v:
            parts = t.split(".")
            if len(parts) != 2 or not all(p.replace("_", "").isalnum() for p in parts):
                raise ValueError(f"table {t!r} must be 'schema.table'")
            if parts[0] == "raw":
                raise ValueError(
                    f"table {t!r}: raw tables (personal data) never go into an evidence bundle"
                )
        return v


class IncidentConfig(ConfigModel):
    """``<config_dir>/governance/incidents.yaml``."""

    version: int = Field(ge=1)
    severities: dict[str, SeverityConfig] = Field(min_length=1)
    evidence: EvidenceConfig = EvidenceConfig()


def config_path(paths: Paths | None = None) -> Path:
    return (paths or get_paths()).config_dir / "governance" / "incidents.yaml"


def load_incident_config(paths: Paths | None = None) -> IncidentConfig:
    """The incident configuration, validated (errors name the file and the field)."""
    return load_yaml_model(config_path(paths), IncidentConfig)


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class Incident:
    """One incident as stored. Times are ISO-8601 UTC text (``...Z``); ``data_from``/``data_to`` are
    the production days (partition dates) of the data window, ``events_from`` the start of the
    wall-clock window of audit records and runs preserved."""

    id: int
    severity: str
    status: str
    plant: str | None
    model: str
    summary: str
    opened_by: str
    opened_utc: str
    closed_by: str | None
    closed_utc: str | None
    resolution: str | None
    deadline_utc: str
    safe_state: bool
    frozen: bool
    data_from: str
    data_to: str
    events_from: str
    evidence_dir: str | None
    manifest_sha256: str | None

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    @property
    def subject(self) -> str:
        return f"incident:{self.id}"

    def covers(self, plant: str | None) -> bool:
        """Whether the incident concerns ``plant`` (an incident without a plant covers all)."""
        return self.plant is None or plant is None or self.plant == plant

    def time_left_hours(self, now: dt.datetime | None = None) -> float:
        """Hours until the reporting deadline (negative = overdue)."""
        now = now or dt.datetime.now(dt.UTC)
        return round((_parse(self.deadline_utc) - now).total_seconds() / 3600, 2)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLS = tuple(Incident.__dataclass_fields__)

_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS incidents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    severity        TEXT NOT NULL CHECK (severity <> ''),
    status          TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    plant           TEXT,
    model           TEXT NOT NULL CHECK (model <> ''),
    summary         TEXT NOT NULL CHECK (summary <> ''),
    opened_by       TEXT NOT NULL CHECK (opened_by <> ''),
    opened_utc      TEXT NOT NULL,
    closed_by       TEXT,
    closed_utc      TEXT,
    resolution      TEXT,
    deadline_utc    TEXT NOT NULL,
    safe_state      INTEGER NOT NULL CHECK (safe_state IN (0, 1)),
    frozen          INTEGER NOT NULL CHECK (frozen IN (0, 1)),
    data_from       TEXT NOT NULL,
    data_to         TEXT NOT NULL,
    events_from     TEXT NOT NULL,
    evidence_dir    TEXT,
    manifest_sha256 TEXT
)""",
    "CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status)",
    """CREATE TRIGGER IF NOT EXISTS incidents_no_delete BEFORE DELETE ON incidents
BEGIN
    SELECT RAISE(ABORT, 'incidents are never deleted');
END""",
    """CREATE TRIGGER IF NOT EXISTS incidents_guarded_update BEFORE UPDATE ON incidents
WHEN NEW.id IS NOT OLD.id OR NEW.severity IS NOT OLD.severity OR NEW.plant IS NOT OLD.plant
  OR NEW.model IS NOT OLD.model OR NEW.summary IS NOT OLD.summary OR NEW.opened_by IS NOT OLD.opened_by
  OR NEW.opened_utc IS NOT OLD.opened_utc OR NEW.deadline_utc IS NOT OLD.deadline_utc
  OR NEW.safe_state IS NOT OLD.safe_state OR NEW.frozen IS NOT OLD.frozen OR NEW.data_from IS NOT OLD.data_from
  OR NEW.data_to IS NOT OLD.data_to OR NEW.events_from IS NOT OLD.events_from
  OR (OLD.status = 'closed' AND (NEW.status IS NOT OLD.status OR NEW.closed_by IS NOT OLD.closed_by
      OR NEW.closed_utc IS NOT OLD.closed_utc OR NEW.resolution IS NOT OLD.resolution))
  OR (OLD.evidence_dir IS NOT NULL AND NEW.evidence_dir IS NOT OLD.evidence_dir)
  OR (OLD.manifest_sha256 IS NOT NULL AND NEW.manifest_sha256 IS NOT OLD.manifest_sha256)
BEGIN
    SELECT RAISE(ABORT, 'incidents: only open -> closed and setting the evidence once are allowed');
END""",
)


def incidents_db_path(data_dir: Path | None = None) -> Path:
    """``<data_dir>/audit/incidents.db`` (next to the audit log)."""
    return (
        Path(data_dir if data_dir is not None else get_paths().data_dir) / "audit" / "incidents.db"
    )


def _db(paths: Paths) -> Path:
    """The store, created (file, WAL, table, triggers) if missing."""
    path = incidents_db_path(paths.data_dir)
    sqlite_init(path, _SCHEMA)
    return path


def _row(r: tuple[Any, ...]) -> Incident:
    d = dict(zip(_COLS, r, strict=True))
    d["safe_state"], d["frozen"] = bool(d["safe_state"]), bool(d["frozen"])
    return Incident(**d)


def _select(paths: Paths, where: str = "", params: tuple[Any, ...] = ()) -> list[Incident]:
    path = incidents_db_path(paths.data_dir)
    if not path.exists():  # nothing opened yet: reading never creates the store
        return []
    with sqlite_connect(path) as con:
        try:
            rows = con.execute(
                f"SELECT {', '.join(_COLS)} FROM incidents {where} ORDER BY id", params
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
    return [_row(r) for r in rows]


def get(incident_id: int | str, paths: Paths | None = None) -> Incident:
    """The incident ``incident_id`` (raises :class:`IncidentError` if there is none)."""
    paths = paths or get_paths()
    try:
        iid = int(incident_id)
    except (TypeError, ValueError) as exc:
        raise IncidentError(f"incident id must be a number, got {incident_id!r}") from exc
    found = _select(paths, "WHERE id = ?", (iid,))
    if not found:
        raise IncidentError(f"there is no incident {iid} (qp incident list)")
    return found[0]


def list_incidents(paths: Paths | None = None, status: str | None = None) -> list[Incident]:
    """All incidents (oldest first), optionally only ``open`` or ``closed`` ones."""
    paths = paths or get_paths()
    return _select(paths, "WHERE status = ?", (status,)) if status else _select(paths)


def incidents_frame(paths: Paths | None = None) -> pd.DataFrame:
    """Every incident as a frame with the columns :data:`FRAME_COLUMNS` (read by the governed query
    and the operating review): id, severity, status (open/closed), plant, model, summary, opened_by,
    opened_utc, closed_by, closed_utc, resolution, deadline_utc (UTC timestamps), safe_state and
    frozen (bool; ``frozen`` is true while an open incident freezes the model)."""
    items = list_incidents(paths)
    df = pd.DataFrame(
        [{c: getattr(i, c) for c in FRAME_COLUMNS} for i in items], columns=list(FRAME_COLUMNS)
    )
    df["id"] = df["id"].astype("int64")
    for c in ("opened_utc", "closed_utc", "deadline_utc"):
        df[c] = pd.to_datetime(df[c], utc=True, format="ISO8601").astype("datetime64[us, UTC]")
    for c in ("safe_state", "frozen"):
        df[c] = df[c].astype(bool)
    df["frozen"] = df["frozen"] & (df["status"] == "open")
    return df


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


# --------------------------------------------------------------------------- open / close


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


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
    audit = audit or AuditLog(audit_db_path(paths.data_dir))
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
    db = _db(paths)
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
    audit = audit or AuditLog(audit_db_path(paths.data_dir))
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
    with sqlite_connect(_db(paths)) as con:
        n = con.execute(
            "UPDATE incidents SET status = 'closed', closed_by = ?, closed_utc = ?, resolution = ? "
            "WHERE id = ? AND status = 'open'",
            [p.name, closed, resolution.strip(), inc.id],
        ).rowcount
    if n != 1:
        raise IncidentError(f"incident {inc.id} was closed concurrently")
    out = get(inc.id, paths)
    late = _parse(closed) > _parse(inc.deadline_utc)
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


# --------------------------------------------------------------------------- evidence


def bundle_dir(paths: Paths, incident_id: int) -> Path:
    return paths.data_dir / "incidents" / str(incident_id)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(o: Any) -> Any:
    if isinstance(o, dt.datetime | dt.date):
        return o.isoformat()
    return str(o)


def _write_jsonl(path: Path, items: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for it in items:
            fh.write(
                json.dumps(it, sort_keys=True, default=_json_default, ensure_ascii=False) + "\n"
            )


def _export_tables(
    inc: Incident, paths: Paths, tables: list[str], out: Path, notes: list[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from quality_platform.warehouse import connect

    if not paths.warehouse_path.exists():
        notes.append("no warehouse yet: no tables exported")
        return
    with connect(paths.warehouse_path, read_only=True) as con:
        for t in tables:
            schema, table = t.split(".")
            cols = [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema=? "
                    "AND table_name=?",
                    [schema, table],
                ).fetchall()
            ]
            if not cols:
                notes.append(f"{t}: table does not exist (yet)")
                continue
            where, params = [], []
            if "partition_date" in cols:
                where.append("CAST(partition_date AS DATE) BETWEEN ? AND ?")
                params += [dt.date.fromisoformat(inc.data_from), dt.date.fromisoformat(inc.data_to)]
            if inc.plant and "plant" in cols:
                where.append("plant = ?")
                params.append(inc.plant)
            sql = f'SELECT * FROM "{schema}"."{table}"' + (
                " WHERE " + " AND ".join(where) if where else ""
            )
            df = con.execute(sql, params).df()
            out.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                pa.Table.from_pandas(df, preserve_index=False), out / f"{schema}.{table}.parquet"
            )


def _export_models(paths: Paths, out: Path, notes: list[str]) -> list[dict[str, Any]]:
    """Champion and challenger: version metadata, the model version's files, its run's artifacts."""
    from quality_platform.ml.config import load_model_config
    from quality_platform.ml.registry import CHALLENGER, CHAMPION, ModelRegistry, _mlflow

    reg = ModelRegistry(load_model_config(paths), paths)
    seen: list[dict[str, Any]] = []
    for alias in (CHAMPION, CHALLENGER):
        v = reg.alias(alias)
        if v is None:
            notes.append(f"no {alias} model version")
            continue
        d = out / f"{alias}_v{v.version}"
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "alias": alias,
            "version": v.version,
            "run_id": v.run_id,
            "aliases": list(v.aliases),
            "tags": v.tags,
            "registered_model": reg.name,
            "tracking_uri": reg.tracking_uri,
        }
        (d / "version.json").write_text(
            json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8"
        )
        mlflow = _mlflow()
        mlflow.set_tracking_uri(reg.tracking_uri)  # models:/ URIs resolve through the registry URI
        mlflow.set_registry_uri(reg.tracking_uri)
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{reg.name}/{v.version}",
                dst_path=str(d / "model"),
                tracking_uri=reg.tracking_uri,
            )
        except Exception as exc:
            notes.append(
                f"{alias} v{v.version}: model files not downloaded: {type(exc).__name__}: {exc}"[
                    :300
                ]
            )
        try:
            reg.client.download_artifacts(v.run_id, "", str(d / "run"))
        except Exception as exc:
            notes.append(
                f"{alias} v{v.version}: run artifacts not downloaded: {type(exc).__name__}: {exc}"[
                    :300
                ]
            )
        seen.append({"alias": alias, "version": v.version, "gate": v.gate, "approval": v.approval})
    return seen


def _export_runs(inc: Incident, instance: dg.DagsterInstance, max_runs: int, out: Path) -> int:
    import dagster as dg

    since = _parse(inc.events_from)
    records = instance.get_run_records(filters=dg.RunsFilter(created_after=since), limit=max_runs)
    runs = []
    for rec in records:
        run = rec.dagster_run
        runs.append(
            {
                "run_id": run.run_id,
                "job_name": run.job_name,
                "status": run.status.value,
                "tags": dict(run.tags),
                "create_timestamp": rec.create_timestamp.isoformat(),
                "start_time": rec.start_time,
                "end_time": rec.end_time,
            }
        )
        lines = [json.loads(dg.serialize_value(e)) for e in instance.all_logs(run.run_id)]
        _write_jsonl(out / f"{run.run_id}.jsonl", lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(
        json.dumps(runs, indent=2, sort_keys=True, default=_json_default), encoding="utf-8"
    )
    return len(runs)


def _default_instance(paths: Paths) -> dg.DagsterInstance | None:
    import dagster as dg

    home = os.environ.get("DAGSTER_HOME") or (
        str(paths.dagster_home) if paths.dagster_home.exists() else None
    )
    if not home or not Path(home).is_dir():
        return None
    os.environ.setdefault("DAGSTER_HOME", home)
    return dg.DagsterInstance.get()


def build_evidence(
    inc: Incident,
    paths: Paths,
    audit: AuditLog,
    *,
    instance: dg.DagsterInstance | None = None,
    cfg: IncidentConfig | None = None,
) -> dict[str, Any]:
    """Preserve the evidence of ``inc`` under ``<data_dir>/incidents/<id>/`` and write
    ``manifest.json`` (SHA-256 and size of every file). Returns bundle path, manifest hash, file
    count, bytes, seconds and notes (what could not be collected, and why)."""
    t0 = time.perf_counter()
    cfg = cfg or load_incident_config(paths)
    root = bundle_dir(paths, inc.id)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    notes: list[str] = []
    (root / "incident.json").write_text(
        json.dumps(inc.as_dict(), indent=2, sort_keys=True), encoding="utf-8"
    )
    models: list[dict[str, Any]] = []
    try:
        models = _export_models(paths, root / "model", notes)
    except Exception as exc:
        notes.append(f"models: {type(exc).__name__}: {exc}"[:300])
    try:
        _export_tables(inc, paths, cfg.evidence.tables, root / "data", notes)
    except Exception as exc:  # e.g. a writer holds the warehouse lock
        notes.append(f"warehouse tables: {type(exc).__name__}: {exc}"[:300])
    recs = audit.records(since=inc.events_from, plant=None)
    _write_jsonl(
        root / "audit" / "audit_records.jsonl",
        [
            {k: getattr(r, k) for k in r.__dataclass_fields__}
            for r in recs
            if inc.plant is None or r.plant in (None, inc.plant)
        ],
    )
    n_runs = 0
    try:
        inst = instance or _default_instance(paths)
        if inst is None:
            notes.append("no Dagster instance (DAGSTER_HOME): run logs not preserved")
        else:
            n_runs = _export_runs(inc, inst, cfg.evidence.max_runs, root / "runs")
    except Exception as exc:
        notes.append(f"run logs: {type(exc).__name__}: {exc}"[:300])
    files = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        files.append(
            {
                "path": f.relative_to(root).as_posix(),
                "bytes": f.stat().st_size,
                "sha256": _sha256(f),
            }
        )
    manifest = {
        "incident_id": inc.id,
        "created_utc": now_text(),
        "model": inc.model,
        "plant": inc.plant,
        "data_window": [inc.data_from, inc.data_to],
        "events_from": inc.events_from,
        "model_versions": models,
        "runs": n_runs,
        "audit_records": len(recs),
        "notes": notes,
        "files": files,
    }
    mpath = root / "manifest.json"
    mpath.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return {
        "bundle": str(root),
        "manifest_sha256": _sha256(mpath),
        "files": len(files),
        "bytes": sum(f["bytes"] for f in files),
        "seconds": round(time.perf_counter() - t0, 2),
        "notes": notes,
    }


def verify_evidence(inc: Incident, paths: Paths | None = None) -> dict[str, Any]:
    """Re-hash the bundle: the manifest against the audited hash, every file against the manifest."""
    paths = paths or get_paths()
    root = Path(inc.evidence_dir) if inc.evidence_dir else bundle_dir(paths, inc.id)
    mpath = root / "manifest.json"
    if not mpath.exists():
        return {
            "ok": False,
            "bundle": str(root),
            "problems": ["no manifest.json (evidence not collected)"],
        }
    problems = []
    if inc.manifest_sha256 and _sha256(mpath) != inc.manifest_sha256:
        problems.append("manifest.json differs from the hash recorded at opening")
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    listed = set()
    for f in manifest["files"]:
        listed.add(f["path"])
        p = root / f["path"]
        if not p.exists():
            problems.append(f"missing: {f['path']}")
        elif _sha256(p) != f["sha256"]:
            problems.append(f"changed: {f['path']}")
    extra = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file()
        and p.relative_to(root).as_posix()
        not in listed | {"manifest.json", "report.json", "report.md"}
    )
    problems += [f"not in the manifest: {x}" for x in extra]
    return {
        "ok": not problems,
        "bundle": str(root),
        "files": len(manifest["files"]),
        "problems": problems,
    }


# --------------------------------------------------------------------------- report


def _records_df(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", date_format="iso")) if len(df) else []


def _warehouse_sections(inc: Incident, paths: Paths) -> dict[str, Any]:
    from quality_platform.warehouse import connect

    out: dict[str, Any] = {
        "predictions": [],
        "model_versions_used": [],
        "drift_findings": [],
        "drift_summary": [],
        "performance": [],
        "quarantine": [],
        "units_in_window": set(),
        "notes": [],
    }
    if not paths.warehouse_path.exists():
        out["notes"].append("no warehouse")
        return out
    d0, d1 = dt.date.fromisoformat(inc.data_from), dt.date.fromisoformat(inc.data_to)
    pf = " AND plant = ?" if inc.plant else ""
    params: list[Any] = [d0, d1] + ([inc.plant] if inc.plant else [])
    win = f"CAST(partition_date AS DATE) BETWEEN ? AND ?{pf}"
    with connect(paths.warehouse_path, read_only=True) as con:
        have = {
            f"{s}.{t}"
            for s, t in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
            ).fetchall()
        }

        def q(sql: str) -> pd.DataFrame:
            return con.execute(sql, params).df()

        if "ml.predictions" in have:
            out["predictions"] = _records_df(
                q(f"""
                SELECT plant, strftime(CAST(partition_date AS DATE), '%Y-%m-%d') AS day, count(*) AS units,
                       sum(predicted_defect::INT) AS flagged, string_agg(DISTINCT decided_by, ',') AS decided_by,
                       string_agg(DISTINCT model_version, ',') AS model_versions, min(scored_at_utc) AS first_scored,
                       max(scored_at_utc) AS last_scored
                FROM ml.predictions WHERE {win} GROUP BY 1, 2 ORDER BY 1, 2""")
            )
            out["model_versions_used"] = _records_df(
                q(f"""
                SELECT decided_by, model_version, champion_version, challenger_version, count(*) AS units,
                       sum(predicted_defect::INT) AS flagged, strftime(min(CAST(partition_date AS DATE)), '%Y-%m-%d') AS first_day,
                       strftime(max(CAST(partition_date AS DATE)), '%Y-%m-%d') AS last_day
                FROM ml.predictions WHERE {win} GROUP BY ALL ORDER BY first_day, model_version""")
            )
            out["units_in_window"] = {
                (r[0], r[1])
                for r in con.execute(
                    f"SELECT plant, unit_id FROM ml.predictions WHERE {win}", params
                ).fetchall()
            }
        if "ml.drift_findings" in have:
            out["drift_findings"] = _records_df(
                q(f"""
                SELECT plant, strftime(CAST(partition_date AS DATE), '%Y-%m-%d') AS day, kind, feature, machines, round(value, 4) AS value,
                       detail, model_version FROM ml.drift_findings WHERE {win} ORDER BY 1, 2, 3, 4""")
            )
        if "ml.drift_metrics" in have:
            out["drift_summary"] = _records_df(
                q(f"""
                SELECT plant, strftime(CAST(partition_date AS DATE), '%Y-%m-%d') AS day, arg_max(feature, wasserstein) AS worst_feature,
                       round(max(wasserstein), 4) AS max_wasserstein, count(*) AS measures
                FROM ml.drift_metrics WHERE {win} AND scope = 'plant' GROUP BY 1, 2 ORDER BY 1, 2""")
            )
        if "ml.model_performance" in have:
            out["performance"] = _records_df(
                q(f"""
                SELECT plant, strftime(CAST(partition_date AS DATE), '%Y-%m-%d') AS day, model_version, units, labelled, positives,
                       round(precision, 4) AS precision, round(recall, 4) AS recall, round(roc_auc, 4) AS roc_auc,
                       degraded FROM ml.model_performance WHERE {win} ORDER BY 1, 2""")
            )
        if "standard.quarantine" in have:
            out["quarantine"] = _records_df(
                q(f"""
                SELECT plant, strftime(CAST(partition_date AS DATE), '%Y-%m-%d') AS day, rule, severity, sum(n_items) AS items,
                       count(*) AS rows FROM standard.quarantine WHERE {win} GROUP BY ALL ORDER BY 1, 2, 3""")
            )
    return out


def _audit_row(r: Any) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "ts_utc": r.ts_utc,
        "action": r.action,
        "actor": r.actor,
        "outcome": r.outcome,
        "subject": r.subject,
        "plant": r.plant,
        "reason": r.reason,
        "refs": r.refs,
    }


def _versions_from_audit(
    lifecycle: list[AuditRecord], model: str, versions: list[str]
) -> list[dict[str, Any]]:
    """Lineage, gate, approval and champion periods of ``versions`` from the model's lifecycle
    records of the audit log (the record of every lifecycle decision; no MLflow round trip, so the
    report stays fast)."""
    by_subject: dict[str | None, list[AuditRecord]] = {}
    for r in lifecycle:
        by_subject.setdefault(r.subject, []).append(r)
    out = []
    for v in versions:
        info: dict[str, Any] = {
            "version": v,
            "gate": None,
            "approval": "pending",
            "approved_by": None,
            "data_hash": None,
            "dagster_run_id": None,
            "trained_plants": [],
            "champion_since": [],
            "rolled_back": [],
        }
        for r in by_subject.get(f"model:{model}/{v}", []):
            if r.outcome not in ("ok", "failed"):
                continue
            if r.action == "register":
                info.update(
                    data_hash=str(r.refs.get("data_hash") or "")[:16],
                    dagster_run_id=r.refs.get("run_id"),
                    trained_plants=sorted(r.refs.get("partitions") or {}),
                )
            elif r.action == "gate":
                info["gate"] = r.refs.get("status")
            elif r.action == "approve" and r.outcome == "ok":
                info.update(approval="approved", approved_by=r.actor)
            elif r.action == "reject" and r.outcome == "ok":
                info.update(approval="rejected", approved_by=None)
            elif r.action == "promote" and r.outcome == "ok":
                info["champion_since"].append(r.ts_utc)
            elif r.action == "rollback" and r.outcome == "ok":
                info["rolled_back"].append(r.ts_utc)
        out.append(info)
    return out


def incident_report(
    incident_id: int | str, paths: Paths | None = None, out_dir: Path | None = None
) -> dict[str, Any]:
    """The complete event record of an incident (JSON-ready dict): the incident and its deadline,
    the model versions and predictions of the data window, drift, performance and data-quality
    history, approvals, overrides, every audited action of the event window, the refusals under the
    freeze, and the evidence check. Written as ``report.json`` and ``report.md`` to ``out_dir``
    (default: the evidence bundle)."""
    from quality_platform.overrides import overrides_frame

    t0 = time.perf_counter()
    paths = paths or get_paths()
    inc = get(incident_id, paths)
    cfg = load_incident_config(paths)
    sev = cfg.severities.get(inc.severity)
    audit = AuditLog(audit_db_path(paths.data_dir))
    now = dt.datetime.now(dt.UTC)
    until = inc.closed_utc or utc_text(now)
    wh = _warehouse_sections(inc, paths)
    units = wh.pop("units_in_window")
    recs = [
        r
        for r in audit.records(since=inc.events_from)
        if inc.plant is None or r.plant in (None, inc.plant)
    ]
    in_window = [r for r in recs if r.ts_utc <= until]
    versions = sorted(
        {
            str(v)
            for row in wh["model_versions_used"]
            for v in (
                row.get("model_version"),
                row.get("champion_version"),
                row.get("challenger_version"),
            )
            if v and str(v).isdigit()
        },
        key=int,
    )
    subjects = {f"model:{inc.model}/{v}" for v in versions}
    # one read of the model's lifecycle records (also every action _versions_from_audit reads)
    from quality_platform.ml.registry import current_store, in_store

    store = current_store(
        paths
    )  # a version is (registry store, number): another store's records are not its
    lifecycle = [
        r
        for r in audit.records(
            action=["approve", "reject", "promote", "rollback", "gate", "register", "canary"],
            subject_prefix=f"model:{inc.model}",
        )
        if in_store(r, store)
    ]
    approvals = [
        _audit_row(r)
        for r in lifecycle
        if r.action in ("approve", "reject")
        and (r.subject in subjects or r.ts_utc >= inc.events_from)
    ]
    model_events = [
        _audit_row(r)
        for r in lifecycle
        if r.action not in ("approve", "reject")
        and (r.subject in subjects or r.ts_utc >= inc.events_from)
    ]
    ov = overrides_frame(paths, plant=inc.plant, current_only=False)
    if len(ov):
        ov = ov[
            [
                (p, u) in units
                for p, u in zip(ov["plant"].astype(str), ov["unit_id"].astype(str), strict=True)
            ]
        ]
    counts = pd.DataFrame([{"action": r.action, "outcome": r.outcome} for r in in_window])
    action_counts = (
        _records_df(
            counts.value_counts().rename("records").reset_index().sort_values(["action", "outcome"])
        )
        if len(counts)
        else []
    )
    refused = [
        _audit_row(r)
        for r in recs
        if r.outcome == "denied" and r.refs.get("incident_id") == inc.id and r.action != ACTION
    ]
    timeline = [_audit_row(r) for r in audit.records(subject=inc.subject)]
    dq_incidents = [
        _audit_row(r)
        for r in in_window
        if r.action == "incident" and r.subject != inc.subject and r.actor.startswith("system:")
    ]
    reg_info = _versions_from_audit(lifecycle, inc.model, versions)
    rules = sorted(
        {
            str(row["model_version"])
            for row in wh["model_versions_used"]
            if str(row.get("model_version", "")).startswith("rules:")
        }
    )
    left = inc.time_left_hours(now)
    report: dict[str, Any] = {
        "incident": {
            **inc.as_dict(),
            "basis": sev.basis if sev else None,
            "regulatory": sev.regulatory if sev else None,
            "severity_description": sev.description if sev else None,
        },
        "deadline": {
            "deadline_utc": inc.deadline_utc,
            "report_within_hours": sev.report_within_hours if sev else None,
            "basis": sev.basis if sev else None,
            "time_left_hours": left,
            "overdue": left < 0 and inc.is_open,
            "as_of_utc": utc_text(now),
        },
        "window": {
            "data_from": inc.data_from,
            "data_to": inc.data_to,
            "events_from": inc.events_from,
            "events_to": until,
            "plant": inc.plant or "all",
        },
        "model_versions": {
            "used_in_window": wh["model_versions_used"],
            "registry": reg_info,
            "rule_sets": rules,
        },
        "predictions": wh["predictions"],
        "drift": {"findings": wh["drift_findings"], "worst_feature_per_day": wh["drift_summary"]},
        "performance": wh["performance"],
        "data_quality": {"quarantine": wh["quarantine"], "incidents": dq_incidents},
        "approvals": approvals,
        "model_events": model_events,
        "overrides": _records_df(ov.drop(columns=[c for c in ("is_current",) if c in ov.columns]))
        if len(ov)
        else [],
        "actions": {"counts": action_counts, "records": [_audit_row(r) for r in in_window]},
        "refused_under_freeze": refused,
        "incident_timeline": timeline,
        "evidence": {**verify_evidence(inc, paths), "manifest_sha256": inc.manifest_sha256},
        "notes": wh["notes"],
    }
    report["generated_seconds"] = round(time.perf_counter() - t0, 2)
    out = (
        Path(out_dir)
        if out_dir
        else (Path(inc.evidence_dir) if inc.evidence_dir else bundle_dir(paths, inc.id))
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps(report, indent=2, sort_keys=True, default=_json_default), encoding="utf-8"
    )
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    report["written"] = {"json": str(out / "report.json"), "markdown": str(out / "report.md")}
    return report


def _md_table(rows: list[dict[str, Any]], cols: list[str] | None = None, limit: int = 200) -> str:
    if not rows:
        return "_(none)_"
    df = pd.DataFrame(rows)
    if cols:
        df = df[[c for c in cols if c in df.columns]]
    more = len(df) - limit
    text = df.head(limit).astype(str).to_markdown(index=False)
    return text + (f"\n\n_... {more} more rows in report.json_" if more > 0 else "")


def report_markdown(r: dict[str, Any]) -> str:
    """The incident report as Markdown (the same content as the JSON, tables truncated)."""
    i, d, w = r["incident"], r["deadline"], r["window"]
    ev = r["evidence"]
    left = d["time_left_hours"]
    clock = (
        (f"{left:.1f} h left" if left >= 0 else f"OVERDUE by {-left:.1f} h")
        if i["status"] == "open"
        else f"closed {i['closed_utc']} ({'after' if i['closed_utc'] > d['deadline_utc'] else 'before'} the deadline)"
    )
    lines = [
        f"# Incident {i['id']}: {i['summary']}",
        "",
        "## Incident",
        "",
        f"- severity: **{i['severity']}** ({i.get('severity_description') or ''}); regulatory: {i.get('regulatory')}",
        f"- status: **{i['status']}**; model `{i['model']}`; plant: {i['plant'] or 'all'}",
        f"- opened {i['opened_utc']} by {i['opened_by']}"
        + (
            f"; closed {i['closed_utc']} by {i['closed_by']}: {i['resolution']}"
            if i["closed_utc"]
            else ""
        ),
        f"- freeze: {'yes' if i['frozen'] else 'no'}; safe state (rule-based limits): {'yes' if i['safe_state'] else 'no'}",
        "",
        "## Deadline",
        "",
        f"- reporting deadline: **{d['deadline_utc']}** ({d['report_within_hours']} h after opening; {d['basis']})",
        f"- {clock} (as of {d['as_of_utc']})",
        "",
        "## Window",
        "",
        f"- production days {w['data_from']} .. {w['data_to']} ({w['plant']}); events {w['events_from']} .. "
        f"{w['events_to']}",
        "",
        "## Model versions involved",
        "",
        _md_table(r["model_versions"]["used_in_window"]),
        "",
        _md_table(r["model_versions"]["registry"]),
        "",
        "## Predictions",
        "",
        _md_table(
            r["predictions"], ["plant", "day", "units", "flagged", "decided_by", "model_versions"]
        ),
        "",
        "## Drift history",
        "",
        _md_table(
            r["drift"]["findings"],
            ["plant", "day", "kind", "feature", "machines", "value", "detail"],
        ),
        "",
        _md_table(r["drift"]["worst_feature_per_day"]),
        "",
        "## Realised performance",
        "",
        _md_table(r["performance"]),
        "",
        "## Data-quality history",
        "",
        _md_table(r["data_quality"]["quarantine"]),
        "",
        _md_table(r["data_quality"]["incidents"], ["seq", "ts_utc", "plant", "reason"]),
        "",
        "## Approvals",
        "",
        _md_table(
            r["approvals"], ["seq", "ts_utc", "action", "actor", "outcome", "subject", "reason"]
        ),
        "",
        "## Model lifecycle events",
        "",
        _md_table(
            r["model_events"], ["seq", "ts_utc", "action", "actor", "outcome", "subject", "reason"]
        ),
        "",
        "## Overrides",
        "",
        _md_table(
            r["overrides"],
            [
                "id",
                "ts_utc",
                "plant",
                "unit_id",
                "decision",
                "actor",
                "model_version",
                "predicted_defect",
                "reason",
            ],
        ),
        "",
        "## Actions (audit log)",
        "",
        _md_table(r["actions"]["counts"]),
        "",
        _md_table(
            [a for a in r["actions"]["records"] if a["action"] not in ("query", "predict")],
            ["seq", "ts_utc", "action", "actor", "outcome", "subject", "reason"],
        ),
        "",
        "## Refused under the freeze",
        "",
        _md_table(
            r["refused_under_freeze"], ["seq", "ts_utc", "action", "actor", "subject", "reason"]
        ),
        "",
        "## Incident timeline",
        "",
        _md_table(r["incident_timeline"], ["seq", "ts_utc", "actor", "outcome", "reason"]),
        "",
        "## Evidence",
        "",
        f"- bundle `{ev['bundle']}`; manifest sha256 `{ev.get('manifest_sha256')}`; "
        f"{'verified' if ev['ok'] else 'PROBLEMS: ' + '; '.join(ev['problems'])}",
    ]
    if r.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"


__all__ = [
    "FRAME_COLUMNS",
    "FrozenError",
    "Incident",
    "IncidentConfig",
    "IncidentError",
    "active_freeze",
    "assert_not_frozen",
    "build_evidence",
    "close_incident",
    "get",
    "incident_report",
    "incidents_db_path",
    "incidents_frame",
    "list_incidents",
    "load_incident_config",
    "open_incident",
    "report_markdown",
    "safe_state_for",
    "safe_state_incidents",
    "verify_evidence",
]
