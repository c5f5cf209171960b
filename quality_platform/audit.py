"""Append-only, hash-chained audit log of every governed decision (EU AI Act record keeping).

Every gate result, approval, rejection, promotion, rollback, canary decision and prediction batch
(and later governed queries, overrides and incidents) is one record with actor, time, reason and
references. The log is a SQLite file -- *not* the DuckDB warehouse, which allows one writer
process only -- because Dagster runs, sensors and the ``qp`` CLI write to it concurrently from
several processes. Default location: ``<data_dir>/audit/audit.db`` (``QP_DATA_DIR``), overridden
by ``QP_AUDIT_DB``. SQLite's WAL mode needs a local file system (not NFS/SMB).

Actions (``DEFAULT_ACTIONS``; free strings are allowed, these are the ones the platform uses):

``run``       a pipeline/job run started or finished
``gate``      a quality gate evaluated (outcome ``ok``/``failed``; refs name the ``check``)
``approve``   a human approved a model version (or another governed change)
``reject``    a human rejected a model version
``promote``   a model version was promoted (e.g. to production)
``rollback``  production was rolled back to an earlier model version
``canary``    a canary decision (continue / promote / abort)
``predict``   a prediction batch was scored (refs: model_version, data_hash, rows)
``register``  a model version was registered
``retrain``   a retraining was triggered (reason says why, e.g. drift)
``override``  a human overrode an automatic decision
``query``     a governed query was run
``incident``  an incident was opened, updated or closed

Record layout (table ``audit_log``): ``seq`` (order), ``event_id`` (uuid4 hex), ``ts_utc``
(ISO-8601 with microseconds and ``Z``, taken by the writer while it holds the write lock),
``actor``, ``actor_kind`` (``user``/``system``), ``action``, ``subject`` (e.g.
``model:defect_model/3``), ``plant``, ``reason``, ``outcome`` (``ok``/``denied``/``failed``/
``info``), ``refs`` (canonical JSON object), ``prev_hash`` and ``hash``.

Integrity:

* ``hash`` is the SHA-256 of the canonical JSON (sorted keys, no whitespace) of all other fields,
  including ``seq`` and ``prev_hash``; the first record's ``prev_hash`` is 64 zeros. Editing,
  deleting, inserting or reordering records breaks the chain, which :meth:`AuditLog.verify`
  reports (naming the ``seq``).
* Triggers refuse ``UPDATE`` and ``DELETE`` and refuse an ``INSERT`` that does not extend the
  chain (seq not after the last one, or prev_hash not the last hash).
* ``seq`` is ``AUTOINCREMENT``, so SQLite's own counter remembers the highest seq ever written:
  deleting the newest records is detected as well, and later appends leave a visible gap (unless
  the counter in ``sqlite_sequence`` is lowered too - see the anchors below).
* A trigger found missing or altered when the log is opened is re-created *and* the event is
  appended to the chain (action ``integrity``, actor ``system:audit``, outcome ``failed``, refs
  naming the triggers); :meth:`AuditLog.verify` reports every such record, and reports triggers
  missing at the time it runs, so a log whose triggers were ever dropped never verifies again.
* ``append`` runs in ``BEGIN IMMEDIATE``, which serialises writers across processes (busy timeout
  30 s).

An attacker who can write the file *and* recomputes the whole chain after the point of tampering
(or truncates the tail and lowers ``sqlite_sequence``) cannot be detected from the file alone.
Therefore the chain head :meth:`AuditLog.head` ``(seq, hash)`` is published outside the file
(:mod:`quality_platform.audit_anchors`): as the tag ``qp.audit_head`` of each registered model
version, as the run tag ``qp/audit_head`` of each Dagster run of the platform's jobs, in every
``qp audit export`` and by ``qp audit anchor``. ``verify(anchors=...)`` (``qp audit verify``
collects them) reports an anchored seq beyond the stored tail (truncated) and an anchored seq whose
stored hash differs (rewritten). Tampering is still undetected when the attacker also rewrites
every place an anchor was published.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import enum
import hashlib
import json
import math
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, NamedTuple

from quality_platform.settings import Paths, get_paths

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_ACTIONS: tuple[str, ...] = (
    "run",
    "gate",
    "approve",
    "reject",
    "promote",
    "rollback",
    "canary",
    "predict",
    "register",
    "retrain",
    "override",
    "query",
    "incident",
)
ACTOR_KINDS: tuple[str, ...] = ("user", "system")
OUTCOMES: tuple[str, ...] = ("ok", "denied", "failed", "info")
GENESIS_HASH = "0" * 64
BUSY_TIMEOUT_S = 30.0

_COLUMNS: tuple[str, ...] = (
    "seq",
    "event_id",
    "ts_utc",
    "actor",
    "actor_kind",
    "action",
    "subject",
    "plant",
    "reason",
    "outcome",
    "refs",
    "prev_hash",
    "hash",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL UNIQUE,
    ts_utc     TEXT NOT NULL,
    actor      TEXT NOT NULL CHECK (actor <> ''),
    actor_kind TEXT NOT NULL CHECK (actor_kind IN ('user', 'system')),
    action     TEXT NOT NULL CHECK (action <> ''),
    subject    TEXT,
    plant      TEXT,
    reason     TEXT,
    outcome    TEXT NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed', 'info')),
    refs       TEXT NOT NULL DEFAULT '{}',
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts_utc);
CREATE INDEX IF NOT EXISTS audit_log_action ON audit_log (action);
CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject);
"""

#: The triggers that make the table append-only and chain-extending, by name.
TRIGGERS: dict[str, str] = {
    "audit_log_no_update": """
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed');
END""",
    "audit_log_no_delete": """
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed');
END""",
    "audit_log_chain": f"""
CREATE TRIGGER IF NOT EXISTS audit_log_chain BEFORE INSERT ON audit_log
WHEN NEW.seq IS NULL
  OR NEW.seq <= COALESCE((SELECT MAX(seq) FROM audit_log), 0)
  OR NEW.prev_hash IS NOT COALESCE(
       (SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), '{GENESIS_HASH}')
BEGIN
    SELECT RAISE(ABORT, 'audit_log insert does not extend the hash chain');
END""",
}
#: Action, actor and ``refs`` key of the record written when triggers were found dropped or altered.
INTEGRITY_ACTION = "integrity"
INTEGRITY_ACTOR = "system:audit"
INTEGRITY_REF = "triggers_recreated"


@dataclass(frozen=True)
class AuditRecord:
    """One audit record as stored (``refs`` decoded from its canonical JSON)."""

    seq: int
    event_id: str
    ts_utc: str
    actor: str
    actor_kind: str
    action: str
    subject: str | None
    plant: str | None
    reason: str | None
    outcome: str
    refs: dict
    prev_hash: str
    hash: str


class Head(NamedTuple):
    """The newest record of the chain: its ``seq`` and ``hash``."""

    seq: int
    hash: str


@dataclass(frozen=True)
class Anchor:
    """A chain head ``(seq, hash)`` published outside the audit file, and where it was found
    (see :mod:`quality_platform.audit_anchors`)."""

    seq: int
    hash: str
    where: str
    source: str = "file"


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`AuditLog.verify`; each problem names the ``seq`` concerned."""

    ok: bool
    records: int
    problems: list[str]


def audit_db_path(paths: Paths | None = None) -> Path:
    """Location of the audit database of ``paths`` (default: the current deployment's):
    ``QP_AUDIT_DB`` if the deployment sets it, else ``<data_dir>/audit/audit.db``."""
    return (paths or get_paths()).audit_db_path


# --------------------------------------------------------------------------------------------
# canonical JSON and hashing


def normalise(value: Any, where: str = "refs") -> Any:
    """A JSON-native copy of ``value`` (dates/paths/decimals/... become strings)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return normalise(value.value, where)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: non-finite float {value!r} is not JSON")
        return float(value)
    if isinstance(value, datetime | date | time):  # includes pandas.Timestamp
        return value.isoformat()
    if isinstance(value, PurePath | uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(k, enum.Enum):
                k = k.value
            if isinstance(k, bool) or not isinstance(k, str | int):
                raise ValueError(f"{where}: key {k!r} must be a string")
            key = str(k)
            if key in out:
                raise ValueError(f"{where}: duplicate key {key!r} after conversion to string")
            out[key] = normalise(v, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [normalise(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [normalise(v, f"{where}{{}}") for v in value]
        return sorted(items, key=canonical_json)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return normalise(dataclasses.asdict(value), where)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return normalise(item(), where)
    raise ValueError(f"{where}: {type(value).__name__} value {value!r} is not JSON-serialisable")


def canonical_json(value: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_refs(refs: Mapping[str, Any] | None) -> str:
    """The canonical JSON object stored in ``refs`` (raises ``ValueError`` if not serialisable)."""
    if refs is None:
        return "{}"
    if not isinstance(refs, Mapping):
        raise ValueError(f"refs must be a dict, got {type(refs).__name__}")
    return canonical_json(normalise(refs))


def record_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of every record field except ``hash``.

    ``fields['refs']`` may be the decoded dict or its canonical JSON text.
    """
    payload = {c: fields[c] for c in _COLUMNS if c != "hash"}
    if isinstance(payload["refs"], str):
        payload["refs"] = json.loads(payload["refs"])
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def utc_text(value: str | date | datetime, name: str = "timestamp") -> str:
    """A time bound in the stored timestamp format (naive values and dates are taken as UTC).
    One format for every SQLite store of the platform (audit log, overrides, alerts)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"{name}: not an ISO-8601 timestamp: {value!r}") from exc
    if not isinstance(value, datetime):
        if isinstance(value, date):
            value = datetime(value.year, value.month, value.day)
        else:
            raise ValueError(f"{name}: not a timestamp: {value!r}")
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_text() -> str:
    """Now, in the stored timestamp format."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextlib.contextmanager
def sqlite_connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived connection to one of the platform's SQLite stores (audit log, overrides,
    incidents): autocommit (transactions are explicit, ``BEGIN IMMEDIATE`` for writers), busy
    timeout, ``synchronous=FULL``."""
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        con.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        con.execute("PRAGMA synchronous=FULL")
        yield con
    finally:
        con.close()


def sqlite_init(path: Path, statements: Sequence[str]) -> None:
    """Create a SQLite store if missing: folders, WAL mode and ``statements`` (tables, triggers),
    in one write transaction, so concurrent first users do not race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite_connect(path) as con:
        if str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                con.execute(statement)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def _check_text(name: str, value: Any, *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or (required and not value.strip()):
        what = "a non-empty string" if required else "a string or None"
        raise ValueError(f"{name} must be {what}, got {value!r}")


# --------------------------------------------------------------------------------------------
# the log


class AuditLog:
    """The audit log in one SQLite file; safe for concurrent writers in several processes.

    Every call opens its own short-lived connection, so an instance may be shared between
    threads and survives forks.
    """

    def __init__(self, path: Path | str | None = None) -> None:
        """Open (creating file, folders, table and triggers if missing) the log at ``path``
        (default: :func:`audit_db_path`).

        A log whose table exists but whose triggers were dropped or altered gets them back, and
        the event is appended to the chain in the same transaction (action ``integrity``), so
        :meth:`verify` keeps reporting it.
        """
        self.path = Path(path) if path is not None else audit_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            if str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            if _schema_complete(_schema_objects(con)):  # the usual case: no write lock needed
                return
            con.execute("BEGIN IMMEDIATE")
            try:
                objects = _schema_objects(con)  # again, under the write lock
                existed = ("table", "audit_log") in objects
                broken = _broken_triggers(objects) if existed else {}
                for name, state in broken.items():
                    if state == "altered":
                        con.execute(f"DROP TRIGGER {name}")
                for statement in [*_split_sql(_SCHEMA), *TRIGGERS.values()]:
                    con.execute(statement)
                if broken:
                    found = ", ".join(f"{n} ({state})" for n, state in broken.items())
                    self._insert(
                        con,
                        {
                            "action": INTEGRITY_ACTION,
                            "actor": INTEGRITY_ACTOR,
                            "actor_kind": "system",
                            "subject": "audit_log",
                            "plant": None,
                            "outcome": "failed",
                            "reason": f"append-only triggers found dropped or altered and re-created: {found}",
                            "refs": canonical_refs(
                                {INTEGRITY_REF: sorted(broken), "found": broken}
                            ),
                        },
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return sqlite_connect(self.path)

    # ---------------------------------------------------------------------------- writing

    def append(
        self,
        action: str,
        actor: str,
        *,
        subject: str | None = None,
        plant: str | None = None,
        reason: str | None = None,
        outcome: str = "ok",
        refs: dict | None = None,
        actor_kind: str = "user",
    ) -> AuditRecord:
        """Append one record and return it as stored.

        The timestamp, ``seq`` and ``prev_hash`` are taken while holding the database write lock
        (``BEGIN IMMEDIATE``), so concurrent writers are serialised and ``seq`` order is the
        order of the writes. Raises ``ValueError`` for invalid arguments (empty actor/action,
        unknown outcome/actor_kind, refs that are not a JSON-serialisable dict).
        """
        _check_text("action", action, required=True)
        _check_text("actor", actor, required=True)
        for name, val in (("subject", subject), ("plant", plant), ("reason", reason)):
            _check_text(name, val, required=False)
        if actor_kind not in ACTOR_KINDS:
            raise ValueError(f"actor_kind must be one of {ACTOR_KINDS}, got {actor_kind!r}")
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        refs_text = canonical_refs(refs)

        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                fields = self._insert(
                    con,
                    {
                        "action": action,
                        "actor": actor,
                        "actor_kind": actor_kind,
                        "subject": subject,
                        "plant": plant,
                        "reason": reason,
                        "outcome": outcome,
                        "refs": refs_text,
                    },
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return _to_record(tuple(fields[c] for c in _COLUMNS))

    @staticmethod
    def _insert(con: sqlite3.Connection, values: Mapping[str, Any]) -> dict[str, Any]:
        """Insert one record (``values``: the fields chosen by the writer, ``refs`` canonical)
        inside the caller's write transaction; returns every field as stored."""
        last = con.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        counter = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'").fetchone()
        last_seq = last[0] if last else 0
        # Never reuse a seq, even if newer records were removed behind our back.
        seq = max(last_seq, counter[0] if counter else 0) + 1
        fields: dict[str, Any] = {
            "seq": seq,
            "event_id": uuid.uuid4().hex,
            "ts_utc": now_text(),
            **values,
            "prev_hash": last[1] if last else GENESIS_HASH,
        }
        fields["hash"] = record_hash(fields)
        con.execute(
            f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})",
            [fields[c] for c in _COLUMNS],
        )
        return fields

    # ---------------------------------------------------------------------------- reading

    def head(self) -> Head | None:
        """The newest record's ``(seq, hash)``, or None for an empty log (one indexed read)."""
        with self._connect() as con:
            row = con.execute(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        return Head(int(row[0]), str(row[1])) if row else None

    def records(
        self,
        *,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        action: str | Sequence[str] | None = None,
        subject: str | None = None,
        subject_prefix: str | None = None,
        plant: str | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Records matching all given filters, ordered by ``seq``.

        ``since`` is inclusive and ``until`` exclusive (ISO strings or datetimes; naive values
        are UTC). ``action`` is one action or several. ``limit`` keeps the *newest* ``limit``
        matching records (still returned oldest first), like ``tail -n``.
        """
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("ts_utc >= ?")
            params.append(utc_text(since, "since"))
        if until is not None:
            where.append("ts_utc < ?")
            params.append(utc_text(until, "until"))
        if action is not None:
            actions = [action] if isinstance(action, str) else list(action)
            if not actions:
                return []
            where.append(f"action IN ({', '.join('?' for _ in actions)})")
            params.extend(actions)
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        if subject_prefix is not None:
            where.append("substr(subject, 1, ?) = ?")
            params.extend([len(subject_prefix), subject_prefix])
        if plant is not None:
            where.append("plant = ?")
            params.append(plant)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"limit must be a non-negative int, got {limit!r}")
            sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT ?) ORDER BY seq"
            params.append(limit)
        else:
            sql += " ORDER BY seq"
        with self._connect() as con:
            rows = con.execute(sql, params).fetchall()
        return [_to_record(r) for r in rows]

    def frame(
        self,
        *,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        action: str | Sequence[str] | None = None,
        subject: str | None = None,
        subject_prefix: str | None = None,
        plant: str | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """:meth:`records` as a DataFrame (one column per field; ``refs`` holds dicts)."""
        import pandas as pd

        recs = self.records(
            since=since,
            until=until,
            action=action,
            subject=subject,
            subject_prefix=subject_prefix,
            plant=plant,
            limit=limit,
        )
        return pd.DataFrame([dataclasses.astuple(r) for r in recs] or None, columns=list(_COLUMNS))

    # ---------------------------------------------------------------------------- checking

    def verify(self, anchors: Iterable[Anchor] = ()) -> VerifyResult:
        """Recompute every hash and walk the chain, and compare it with published ``anchors``.

        Reports, by ``seq``: records whose content no longer matches their hash (edited), gaps
        in ``seq`` and missing predecessors (deleted), chain links that skip records (inserted),
        links that point to a later record (reordered), newest records removed (SQLite's
        sequence counter is ahead of the last record), triggers missing or altered now (``seq 0``)
        or found so and re-created earlier (the ``integrity`` records), anchored seqs beyond the
        last record (tail truncated) and anchored seqs whose stored hash differs (rewritten).
        """
        with self._connect() as con:
            con.execute("BEGIN")  # one read snapshot for every query
            try:
                objects = _schema_objects(con)
                rows = con.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM audit_log ORDER BY seq"
                ).fetchall()
                try:
                    counter = con.execute(
                        "SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'"
                    ).fetchone()
                    counter_missing = False
                except sqlite3.OperationalError:  # sqlite_sequence dropped
                    counter, counter_missing = None, True
            finally:
                con.execute("COMMIT")

        problems: list[str] = []
        if counter_missing:
            problems.append("seq 0: SQLite's sequence counter table is missing (file tampered)")
        broken = _broken_triggers(objects)
        if broken:
            found = ", ".join(f"{n} ({state})" for n, state in broken.items())
            problems.append(
                f"seq 0: append-only triggers {found}: the log is not protected against edits "
                "and deletions (file tampered)"
            )
        hash_to_seq: dict[str, int] = {}
        for row in rows:
            hash_to_seq.setdefault(row[-1], row[0])

        prev: tuple[Any, ...] | None = None
        for row in rows:
            rec = dict(zip(_COLUMNS, row, strict=True))
            seq = rec["seq"]
            # (a) content vs. its own hash
            try:
                refs = json.loads(rec["refs"])
            except (TypeError, ValueError):
                problems.append(f"seq {seq}: refs is not valid JSON (record edited)")
                refs = None
            if refs is not None:
                if not isinstance(refs, dict) or canonical_json(refs) != rec["refs"]:
                    problems.append(f"seq {seq}: refs is not a canonical JSON object (edited)")
                if record_hash({**rec, "refs": refs}) != rec["hash"]:
                    problems.append(f"seq {seq}: content does not match its hash (record edited)")
            if (
                rec["action"] == INTEGRITY_ACTION
                and rec["actor"] == INTEGRITY_ACTOR
                and isinstance(refs, dict)
                and isinstance(refs.get("found"), dict)
            ):
                found = refs["found"]
                states = " or ".join(sorted({str(v) for v in found.values()}, reverse=True))
                noun = "trigger" if len(found) == 1 else "triggers"
                problems.append(
                    f"seq {seq}: {noun} {', '.join(sorted(found))} found {states} at "
                    f"{rec['ts_utc']} and re-created (the log was not append-only before it)"
                )
            # (b) gaps in seq
            expected_seq = prev[0] + 1 if prev is not None else 1
            if seq != expected_seq:
                missing = (
                    f"seq {expected_seq}"
                    if seq == expected_seq + 1
                    else f"seq {expected_seq}..{seq - 1}"
                )
                problems.append(f"seq {seq}: {missing} missing (record deleted)")
            # (b)-(d) the link to the previous record
            expected_prev = prev[-1] if prev is not None else GENESIS_HASH
            if rec["prev_hash"] != expected_prev:
                link = _link_problem(seq, rec["prev_hash"], prev, hash_to_seq)
                problems.append(f"seq {seq}: {link}")
            prev = row

        last_seq = rows[-1][0] if rows else 0
        if counter is not None and counter[0] > last_seq:
            after = f"after seq {last_seq}" if rows else "all records"
            problems.append(
                f"seq {last_seq + 1}..{counter[0]}: {after} deleted "
                f"(sequence counter reached {counter[0]})"
            )
        problems += _anchor_problems(rows, anchors)
        return VerifyResult(ok=not problems, records=len(rows), problems=problems)


def _anchor_problems(rows: Sequence[Sequence[Any]], anchors: Iterable[Anchor]) -> list[str]:
    """Problems of the stored chain against published heads: an anchored seq beyond the last
    record (tail truncated, even if ``sqlite_sequence`` was lowered too) or an anchored seq whose
    stored hash differs (chain rewritten). Identical anchors found in several places are merged."""
    merged: dict[tuple[int, str], list[str]] = {}
    for a in anchors:
        places = merged.setdefault((int(a.seq), str(a.hash)), [])
        if a.where not in places:
            places.append(a.where)
    last_seq = rows[-1][0] if rows else 0
    stored = {row[0]: row[-1] for row in rows}
    problems = []
    for (seq, hash_), places in sorted(merged.items()):
        where = "; ".join(places)
        if seq == 0:
            if hash_ != GENESIS_HASH:
                problems.append(
                    f"seq 0: the anchor in {where} is not the genesis hash (bad anchor)"
                )
        elif seq > last_seq:
            missing = f"seq {seq}" if seq == last_seq + 1 else f"seq {last_seq + 1}..{seq}"
            problems.append(
                f"{missing} missing: the tail was truncated (chain head seq {seq} anchored in {where})"
            )
        elif seq not in stored:
            problems.append(f"seq {seq}: missing, but anchored in {where} (record deleted)")
        elif stored[seq] != hash_:
            problems.append(f"seq {seq}: hash differs from the anchor in {where} (chain rewritten)")
    return problems


def _schema_objects(con: sqlite3.Connection) -> dict[tuple[str, str], str | None]:
    """``(type, name) -> sql`` of the tables, indexes and triggers in the file."""
    rows = con.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    return {(str(t), str(n)): sql for t, n, sql in rows}


def _normal_sql(sql: str) -> str:
    return " ".join(sql.replace("IF NOT EXISTS ", "", 1).split()).rstrip(";").strip()


def _broken_triggers(objects: Mapping[tuple[str, str], str | None]) -> dict[str, str]:
    """The audit triggers that are ``dropped`` or ``altered`` (another body under their name)."""
    out = {}
    for name, sql in TRIGGERS.items():
        stored = objects.get(("trigger", name))
        if stored is None:
            out[name] = "dropped"
        elif _normal_sql(stored) != _normal_sql(sql):
            out[name] = "altered"
    return out


def _schema_complete(objects: Mapping[tuple[str, str], str | None]) -> bool:
    """Whether the file holds the table, its indexes and intact triggers (nothing to create)."""
    needed = [
        ("table", "audit_log"),
        ("index", "audit_log_ts"),
        ("index", "audit_log_action"),
        ("index", "audit_log_subject"),
    ]
    return all(k in objects for k in needed) and not _broken_triggers(objects)


def _link_problem(
    seq: int, prev_hash: str, prev: tuple[Any, ...] | None, hash_to_seq: Mapping[str, int]
) -> str:
    """Explain why a record's ``prev_hash`` is not the hash of the record stored before it."""
    prev_seq = prev[0] if prev is not None else None
    target = "the genesis hash" if prev_seq is None else f"the hash of seq {prev_seq}"
    if prev_hash == GENESIS_HASH:
        return (
            f"prev_hash is the genesis hash, expected {target} "
            "(records inserted before it, or reordered)"
        )
    linked = hash_to_seq.get(prev_hash)
    if linked is None:
        if prev_seq is None:
            return "prev_hash links to a missing record, expected the genesis hash (earlier records deleted)"
        return (
            f"prev_hash does not match {target} and links to no stored record "
            f"(record deleted before it, or seq {prev_seq} rewritten)"
        )
    if prev_seq is None or linked >= seq:
        return f"prev_hash links to seq {linked}, which is stored after it (records reordered)"
    between = f"seq {linked + 1}" if linked + 1 == prev_seq else f"seq {linked + 1}..{prev_seq}"
    return f"prev_hash links to seq {linked}, so {between} was inserted before it (record inserted)"


def _to_record(row: Sequence[Any]) -> AuditRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["refs"] = json.loads(values["refs"]) if values["refs"] else {}
    return AuditRecord(**values)


def _split_sql(script: str) -> list[str]:
    """Split the schema into statements (triggers contain ``;`` inside BEGIN ... END)."""
    statements: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements
