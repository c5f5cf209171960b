"""Quality engineers overriding the model's prediction for a unit (decision support, F22).

Overrides live in a SQLite file, ``<data_dir>/audit/overrides.db`` (``QP_OVERRIDES_DB`` wins) --
*not* the DuckDB warehouse, which allows one writer process only: the CLI must work while
Dagster runs hold the warehouse lock. Table ``overrides``:

``id`` (write order), ``ts_utc`` (ISO-8601 UTC with microseconds and ``Z``, taken while holding
the write lock), ``plant``, ``unit_id``, ``decision`` (``ok``/``defect``), ``actor``, ``reason``,
and what the model said, when known: ``model_version``, ``predicted_defect`` (0/1), ``risk``
(probability in [0, 1]).

The table is append-only (triggers refuse ``UPDATE`` and ``DELETE``). A later override of the
same unit supersedes the earlier one for "current" queries; both are kept. Every override is
also recorded in the audit log (action ``override``, subject ``unit:<plant>/<unit_id>``); the
override row is committed only after its audit record was written.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from quality_platform.audit import (
    AuditLog,
    audit_db_path,
    now_text,
    sqlite_connect,
    sqlite_init,
    utc_text,
)
from quality_platform.config import PLANT_ID_RE
from quality_platform.settings import Paths, get_paths

DECISIONS: tuple[str, ...] = ("ok", "defect")

COLUMNS: tuple[str, ...] = (
    "id",
    "ts_utc",
    "plant",
    "unit_id",
    "decision",
    "actor",
    "reason",
    "model_version",
    "predicted_defect",
    "risk",
)

_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS overrides (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_utc           TEXT NOT NULL,
    plant            TEXT NOT NULL CHECK (plant <> ''),
    unit_id          TEXT NOT NULL CHECK (unit_id <> ''),
    decision         TEXT NOT NULL CHECK (decision IN ('ok', 'defect')),
    actor            TEXT NOT NULL CHECK (actor <> ''),
    reason           TEXT NOT NULL CHECK (reason <> ''),
    model_version    TEXT,
    predicted_defect INTEGER CHECK (predicted_defect IS NULL OR predicted_defect IN (0, 1)),
    risk             REAL CHECK (risk IS NULL OR (risk >= 0 AND risk <= 1))
)""",
    "CREATE INDEX IF NOT EXISTS overrides_unit ON overrides (plant, unit_id, id)",
    "CREATE INDEX IF NOT EXISTS overrides_ts ON overrides (ts_utc)",
    """CREATE TRIGGER IF NOT EXISTS overrides_no_update BEFORE UPDATE ON overrides
BEGIN
    SELECT RAISE(ABORT, 'overrides is append-only: UPDATE is not allowed');
END""",
    """CREATE TRIGGER IF NOT EXISTS overrides_no_delete BEFORE DELETE ON overrides
BEGIN
    SELECT RAISE(ABORT, 'overrides is append-only: DELETE is not allowed');
END""",
)


def overrides_db_path(paths: Paths | None = None) -> Path:
    """The overrides database of ``paths`` (default: the current deployment's):
    ``QP_OVERRIDES_DB`` if the deployment sets it, else ``<data_dir>/audit/overrides.db``."""
    return (paths or get_paths()).overrides_db_path


def _ensure_schema(path: Path) -> None:
    sqlite_init(path, _SCHEMA)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def _validate(
    plant: Any,
    unit_id: Any,
    decision: Any,
    actor: Any,
    reason: Any,
    model_version: Any,
    predicted_defect: Any,
    risk: Any,
) -> dict[str, Any]:
    plant = _text("plant", plant)
    if not PLANT_ID_RE.match(plant):
        raise ValueError(f"plant {plant!r} is not a valid plant id")
    if isinstance(unit_id, int) and not isinstance(unit_id, bool):
        unit_id = str(unit_id)
    unit_id = _text("unit_id", unit_id)
    dec = decision.strip().lower() if isinstance(decision, str) else decision
    if dec not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    actor = _text("actor", actor)
    reason = _text("reason", reason)
    if model_version is not None:
        if isinstance(model_version, bool) or not isinstance(model_version, str | int):
            raise ValueError(f"model_version must be a string, got {model_version!r}")
        model_version = _text("model_version", str(model_version))
    if predicted_defect is not None:
        try:
            pd_int = int(predicted_defect)
        except (TypeError, ValueError):
            pd_int = -1
        if pd_int not in (0, 1) or pd_int != predicted_defect:
            raise ValueError(f"predicted_defect must be 0, 1 or None, got {predicted_defect!r}")
        predicted_defect = pd_int
    if risk is not None:
        try:
            risk_f = float(risk)
        except (TypeError, ValueError):
            risk_f = math.nan
        if isinstance(risk, bool) or not (math.isfinite(risk_f) and 0.0 <= risk_f <= 1.0):
            raise ValueError(f"risk must be a probability in [0, 1] or None, got {risk!r}")
        risk = risk_f
    return {
        "plant": plant,
        "unit_id": unit_id,
        "decision": dec,
        "actor": actor,
        "reason": reason,
        "model_version": model_version,
        "predicted_defect": predicted_defect,
        "risk": risk,
    }


def record_override(
    plant: str,
    unit_id: str,
    decision: str,
    actor: str,
    reason: str,
    *,
    model_version: str | None = None,
    predicted_defect: int | None = None,
    risk: float | None = None,
    paths: Paths | None = None,
) -> dict[str, Any]:
    """Record that ``actor`` decided ``decision`` (``ok``/``defect``) for a unit, and why.

    The actor must be a policy user whose role may ``override`` at ``plant``
    (data/governance/policy.yaml); otherwise :class:`~quality_platform.governance.policy.PolicyError`
    is raised after the denial was audited. Raises ``ValueError`` for an unknown decision, an empty actor/reason/unit id, an invalid
    plant id, ``predicted_defect`` not 0/1 or ``risk`` outside [0, 1]. Writes the override and
    an audit record (action ``override``); returns the stored row plus ``supersedes`` (id of the
    unit's previous override, or None) and ``audit_seq``.
    """
    row = _validate(plant, unit_id, decision, actor, reason, model_version, predicted_defect, risk)
    paths = paths or get_paths()
    db = overrides_db_path(paths)
    audit = AuditLog(audit_db_path(paths))
    from quality_platform.governance.policy import authorize, load_policy

    authorize(
        load_policy(paths),
        row["actor"],
        "override",
        audit,
        plant=row["plant"],
        subject=f"unit:{row['plant']}/{row['unit_id']}",
        reason=row["reason"],
    )
    _ensure_schema(db)
    with sqlite_connect(db) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            prev = con.execute(
                "SELECT id, decision FROM overrides WHERE plant = ? AND unit_id = ? "
                "ORDER BY id DESC LIMIT 1",
                (row["plant"], row["unit_id"]),
            ).fetchone()
            row["ts_utc"] = now_text()
            cols = [c for c in COLUMNS if c != "id"]
            cur = con.execute(
                f"INSERT INTO overrides ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                [row[c] for c in cols],
            )
            row["id"] = int(cur.lastrowid or 0)
            refs = {
                k: row[k]
                for k in ("unit_id", "decision", "model_version", "predicted_defect", "risk")
                if row[k] is not None
            }
            refs["override_id"] = row["id"]
            if prev is not None:
                refs["supersedes"] = int(prev[0])
                refs["previous_decision"] = prev[1]
            rec = audit.append(
                "override",
                row["actor"],
                actor_kind="user",
                subject=f"unit:{row['plant']}/{row['unit_id']}",
                plant=row["plant"],
                reason=row["reason"],
                outcome="ok",
                refs=refs,
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    out = {c: row[c] for c in COLUMNS}
    out["supersedes"] = int(prev[0]) if prev is not None else None
    out["audit_seq"] = rec.seq
    return out


def _empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    return _typed(frame)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame["id"] = frame["id"].astype("int64")
    frame["ts_utc"] = pd.to_datetime(frame["ts_utc"], utc=True, format="ISO8601")
    frame["predicted_defect"] = frame["predicted_defect"].astype("Int64")
    frame["risk"] = frame["risk"].astype("float64")
    for c in ("plant", "unit_id", "decision", "actor", "reason", "model_version"):
        frame[c] = frame[c].astype("object")
    return frame


def overrides_frame(
    paths: Paths | None = None,
    plant: str | None = None,
    since: str | date | datetime | None = None,
    until: str | date | datetime | None = None,
    current_only: bool = True,
) -> pd.DataFrame:
    """Overrides as a DataFrame ordered by ``id`` (columns :data:`COLUMNS` + ``is_current``).

    ``since`` is inclusive and ``until`` exclusive (ISO text, dates or datetimes; naive = UTC);
    ``ts_utc`` is a UTC timestamp column. With ``current_only`` each unit keeps only its latest
    override made before ``until`` (the state as of ``until``), and only if that one is not
    before ``since``. ``is_current`` tells whether a row is its unit's latest override overall.
    Reading never creates the database (no file: an empty frame).
    """
    db = overrides_db_path(paths)
    if not db.exists():
        frame = _empty_frame()
        frame["is_current"] = pd.Series(dtype="bool")
        return frame
    where: list[str] = []
    params: list[Any] = []
    if plant is not None:
        where.append("o.plant = ?")
        params.append(plant)
    if until is not None:
        where.append("o.ts_utc < ?")
        params.append(utc_text(until, "until"))
    if current_only:
        later = (
            "SELECT 1 FROM overrides n WHERE n.plant = o.plant AND n.unit_id = o.unit_id "
            "AND n.id > o.id"
        )
        if until is not None:
            later += " AND n.ts_utc < ?"
            params.append(utc_text(until, "until"))
        where.append(f"NOT EXISTS ({later})")
    if since is not None:
        where.append("o.ts_utc >= ?")
        params.append(utc_text(since, "since"))
    is_current = (
        "NOT EXISTS (SELECT 1 FROM overrides c WHERE c.plant = o.plant "
        "AND c.unit_id = o.unit_id AND c.id > o.id) AS is_current"
    )
    sql = f"SELECT {', '.join('o.' + c for c in COLUMNS)}, {is_current} FROM overrides o"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY o.id"
    with sqlite_connect(db) as con:
        rows = con.execute(sql, params).fetchall()
    if not rows:
        frame = _empty_frame()
        frame["is_current"] = pd.Series(dtype="bool")
        return frame
    frame = pd.DataFrame([r[:-1] for r in rows], columns=list(COLUMNS))
    frame = _typed(frame)
    frame["is_current"] = [bool(r[-1]) for r in rows]
    return frame


def override_counts(
    paths: Paths | None,
    plant: str,
    day_start_utc: str | date | datetime,
    day_end_utc: str | date | datetime,
) -> int:
    """Number of distinct units of ``plant`` overridden in ``[day_start_utc, day_end_utc)``.

    A unit overridden twice in the window counts once (a correction of an override is not a
    second disagreement with the model). Naive bounds and dates are UTC.
    """
    db = overrides_db_path(paths)
    if not db.exists():
        return 0
    start = utc_text(day_start_utc, "day_start_utc")
    end = utc_text(day_end_utc, "day_end_utc")
    with sqlite_connect(db) as con:
        (n,) = con.execute(
            "SELECT COUNT(DISTINCT unit_id) FROM overrides "
            "WHERE plant = ? AND ts_utc >= ? AND ts_utc < ?",
            (plant, start, end),
        ).fetchone()
    return int(n)


__all__ = [
    "COLUMNS",
    "DECISIONS",
    "override_counts",
    "overrides_db_path",
    "overrides_frame",
    "record_override",
]
