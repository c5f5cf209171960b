"""The incident store and its configuration (F24): the lowest layer of the incident workflow.

``<config_dir>/governance/incidents.yaml`` (severities with their reporting deadlines and freeze /
safe-state defaults, what the evidence bundle keeps) is validated by :func:`load_incident_config`.
Incidents live in ``<data_dir>/audit/incidents.db`` (SQLite next to the audit log; WAL, busy
timeout, short-lived connections, safe for several processes). Rows are never deleted; a trigger
allows only the open -> closed transition and setting the evidence once. Reading (:func:`get`,
:func:`list_incidents`, :func:`incidents_frame`) never creates the store.

Read by the freeze guard (:mod:`quality_platform.governance.freeze`), the governed query and the
operating review; written by the incident workflow (:mod:`quality_platform.incidents`: open, close,
evidence bundle, report). It imports none of them.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, field_validator

from quality_platform.audit import sqlite_connect, sqlite_init
from quality_platform.config import ConfigModel, load_yaml_model
from quality_platform.settings import Paths, get_paths

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


def parse_utc(text: str) -> dt.datetime:
    """A stored UTC time text (``...Z``) as an aware datetime."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


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
        return round((parse_utc(self.deadline_utc) - now).total_seconds() / 3600, 2)

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


def incidents_db_path(paths: Paths | None = None) -> Path:
    """The incident store of ``paths`` (default: the current deployment's):
    ``<data_dir>/audit/incidents.db``, next to the audit log."""
    return (paths or get_paths()).incidents_db_path


def ensure_store(paths: Paths) -> Path:
    """The store, created (file, WAL, table, triggers) if missing."""
    path = incidents_db_path(paths)
    sqlite_init(path, _SCHEMA)
    return path


def _row(r: tuple[Any, ...]) -> Incident:
    d = dict(zip(_COLS, r, strict=True))
    d["safe_state"], d["frozen"] = bool(d["safe_state"]), bool(d["frozen"])
    return Incident(**d)


def _select(paths: Paths, where: str = "", params: tuple[Any, ...] = ()) -> list[Incident]:
    path = incidents_db_path(paths)
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


__all__ = [
    "FRAME_COLUMNS",
    "EvidenceConfig",
    "Incident",
    "IncidentConfig",
    "IncidentError",
    "SeverityConfig",
    "config_path",
    "ensure_store",
    "get",
    "incidents_db_path",
    "incidents_frame",
    "list_incidents",
    "load_incident_config",
    "parse_utc",
]
