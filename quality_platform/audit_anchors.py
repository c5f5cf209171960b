"""Anchors of the audit chain: its head ``(seq, hash)`` published outside the audit file.

The hash chain of :mod:`quality_platform.audit` shows edits, insertions and gaps, but an attacker
who controls the SQLite file can cut off its newest records (and lower ``sqlite_sequence``) or
recompute the chain after the point of tampering, and the file alone looks intact. A head that
was written somewhere else before the tampering exposes both: a published seq beyond the stored
tail (truncated) or a published seq whose stored hash differs (rewritten).

Where the head is published:

* the tag ``qp.audit_head`` of a registered model version (:func:`anchor_version`, called when a
  version is registered or changes state);
* the run tag ``qp/audit_head`` of every run of the platform's Dagster jobs (a success and a
  failure hook on each job, :func:`anchor_run`; the last step to finish leaves the run's final
  value);
* every ``qp audit export`` output (``head``) and ``qp audit anchor [--out FILE]``, a plain text
  file ``<seq>:<hash>`` for the operator to store elsewhere.

Where it is read back (:func:`collect_anchors`, used by ``qp audit verify``): the model version
tags of the MLflow store (only if it exists), the run tags of the Dagster instance at
``DAGSTER_HOME`` (only if it exists), and the files given with ``--anchor``. SQLite stores (the
default for both) are read directly and read-only, without importing MLflow or Dagster, which
would cost seconds on every ``qp audit verify``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_platform.audit import GENESIS_HASH, Anchor, AuditLog, VerifyResult

if TYPE_CHECKING:
    import dagster as dg

    from quality_platform.ml.registry import ModelRegistry
    from quality_platform.settings import Paths

#: Model version tag (``ModelRegistry.set_tags`` adds the ``qp.`` prefix).
VERSION_TAG = "audit_head"
#: Dagster run tag.
RUN_TAG = "qp/audit_head"
SOURCES: tuple[str, ...] = ("mlflow", "dagster", "file")

_ANCHOR_RE = re.compile(r"^\s*(\d+):([0-9a-f]{64})\s*$")

__all__ = [
    "RUN_TAG",
    "VERSION_TAG",
    "Anchor",
    "AnchorCollection",
    "anchor_run",
    "anchor_text",
    "anchor_version",
    "collect_anchors",
    "format_anchor",
    "parse_anchor",
    "read_anchor_file",
    "verify_with_anchors",
]


# --------------------------------------------------------------------------- the text form


def format_anchor(seq: int, hash_: str) -> str:
    """``"<seq>:<hash>"``."""
    return f"{int(seq)}:{hash_}"


def anchor_text(audit: AuditLog) -> str:
    """The current head of ``audit`` as ``"<seq>:<hash>"`` (``"0:<genesis>"`` for an empty log)."""
    head = audit.head()
    return format_anchor(head.seq, head.hash) if head else format_anchor(0, GENESIS_HASH)


def parse_anchor(text: str, where: str, source: str = "file") -> Anchor:
    """An :class:`Anchor` from ``"<seq>:<hash>"`` (raises ``ValueError`` for anything else)."""
    m = _ANCHOR_RE.match(str(text))
    if not m:
        raise ValueError(
            f"{where}: not an audit anchor '<seq>:<64 hex digits>': {str(text)[:100]!r}"
        )
    return Anchor(seq=int(m.group(1)), hash=m.group(2), where=where, source=source)


# --------------------------------------------------------------------------- publishing


def anchor_version(reg: ModelRegistry, version: str | int, audit: AuditLog) -> str:
    """Tag model ``version`` with the current audit head (``qp.audit_head``); returns the text."""
    text = anchor_text(audit)
    reg.set_tags(str(version), {VERSION_TAG: text})
    return text


def anchor_run(instance: dg.DagsterInstance, run_id: str, audit: AuditLog) -> str:
    """Tag Dagster run ``run_id`` with the current audit head (``qp/audit_head``; a later call
    replaces the value); returns the text."""
    text = anchor_text(audit)
    instance.add_run_tags(run_id, {RUN_TAG: text})
    return text


# --------------------------------------------------------------------------- reading back


@dataclass
class AnchorCollection:
    """Anchors found, and notes on the places that had none to offer (missing stores etc.)."""

    anchors: list[Anchor] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(a.source for a in self.anchors)
        return {s: c.get(s, 0) for s in SOURCES}

    def summary(self) -> str:
        c = self.counts()
        return (
            f"{len(self.anchors)} anchor(s): {c['mlflow']} from MLflow model versions, "
            f"{c['dagster']} from Dagster runs, {c['file']} from files"
        )


def read_anchor_file(path: Path | str) -> list[Anchor]:
    """Anchors in a file: ``<seq>:<hash>`` lines (``qp audit anchor --out``; blank and ``#`` lines
    ignored), a JSON object (``qp audit export --json`` / ``qp audit anchor --json`` output: its
    ``head``, and the window's last record), or JSONL audit records (``qp audit export --out``: the
    newest record). Raises ``ValueError`` when the file holds no anchor."""
    path = Path(path)
    where = f"file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: cannot read the anchor file: {exc}") from exc
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return _json_anchors(json.loads(stripped), where)
        except json.JSONDecodeError:
            return _jsonl_anchors(stripped, where)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(parse_anchor(line, f"{where} line {n}"))
    if not out:
        raise ValueError(f"{where}: no audit anchor in the file")
    return out


def _pair(obj: Any, seq_key: str, where: str) -> Anchor | None:
    if not isinstance(obj, dict) or obj.get(seq_key) is None or obj.get("hash") is None:
        return None
    return parse_anchor(f"{obj[seq_key]}:{obj['hash']}", where)


def _json_anchors(obj: Any, where: str) -> list[Anchor]:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: no audit anchor in the file")
    found = [
        a
        for a in (
            _pair(obj.get("head"), "seq", f"{where} (head)"),
            _pair(obj.get("anchor"), "last_seq", f"{where} (window's last record)"),
            _pair(obj, "seq", where),
        )
        if a is not None
    ]
    if not found:
        raise ValueError(
            f"{where}: no audit anchor in the file (expected 'head' with seq and hash)"
        )
    return found


def _jsonl_anchors(text: str, where: str) -> list[Anchor]:
    newest: Anchor | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            a = _pair(json.loads(line), "seq", f"{where} line {n}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where} line {n}: not JSON: {exc}") from exc
        if a is not None and (newest is None or a.seq > newest.seq):
            newest = a
    if newest is None:
        raise ValueError(f"{where}: no audit record with seq and hash in the file")
    return [newest]


def _read_only(db: Path, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Rows of one query on a SQLite file opened read-only (nothing is created or locked for
    writing)."""
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def _mlflow_anchors(paths: Paths, out: AnchorCollection) -> None:
    """Version tags ``qp.audit_head`` of the registered model, if the store exists. A SQLite store
    is read directly (read-only; importing MLflow costs seconds); a server through MLflow."""
    from quality_platform.ml.config import load_model_config, mlflow_uris

    cfg = load_model_config(paths)
    tracking, _ = mlflow_uris(cfg, paths)
    name, key = cfg.mlflow.registered_model, f"qp.{VERSION_TAG}"
    rows: list[tuple[str, str]]
    if tracking.startswith("sqlite:///"):
        store = Path(tracking.removeprefix("sqlite:///"))
        if not store.is_file():
            out.notes.append(f"MLflow: no store at {store}")
            return
        try:
            rows = _read_only(
                store,
                "SELECT version, value FROM model_version_tags WHERE name = ? AND key = ?",
                (name, key),
            )
        except sqlite3.OperationalError as exc:  # not (yet) a registry database
            out.notes.append(f"MLflow: no model version tags in {store} ({exc})")
            return
        where_store = str(store)
    else:
        from quality_platform.ml.registry import ModelRegistry

        reg = ModelRegistry(cfg, paths, check=False)
        rows = [(v.version, v.tags[key]) for v in reg.versions() if key in v.tags]
        where_store = tracking
    for version, value in sorted(rows, key=lambda r: int(r[0])):
        where = f"MLflow model version {name}/{version} tag {key} ({where_store})"
        try:
            out.anchors.append(parse_anchor(value, where, "mlflow"))
        except ValueError as exc:
            out.notes.append(str(exc))


def _dagster_anchors(paths: Paths, out: AnchorCollection) -> None:
    """Run tags ``qp/audit_head`` of the Dagster instance at ``DAGSTER_HOME``, if it exists. The
    default SQLite run storage is read directly (read-only; importing Dagster and opening the
    instance cost seconds); an instance configured with other storage through Dagster."""
    home = paths.dagster_home
    cfg_file = home / "dagster.yaml"
    custom = False
    if cfg_file.is_file():
        import yaml

        cfg = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}
        custom = isinstance(cfg, dict) and any(k in cfg for k in ("storage", "run_storage"))
    if not custom:
        runs_db = home / "history" / "runs.db"
        if not runs_db.is_file():
            out.notes.append(f"Dagster: no instance with runs at {home}")
            return
        rows = _read_only(
            runs_db, "SELECT run_id, value FROM run_tags WHERE key = ? ORDER BY id", (RUN_TAG,)
        )
        found = [(f"Dagster run {run_id} tag {RUN_TAG} ({home})", value) for run_id, value in rows]
    else:
        import dagster as dg

        instance = dg.DagsterInstance.from_config(str(home))
        try:
            tags = instance.get_run_tags(tag_keys=[RUN_TAG])
        finally:
            instance.dispose()
        values = sorted({v for key, vs in tags if key == RUN_TAG for v in vs})
        found = [(f"Dagster run tag {RUN_TAG}={v[:24]}... ({home})", v) for v in values]
    for where, value in found:
        try:
            out.anchors.append(parse_anchor(value, where, "dagster"))
        except ValueError as exc:
            out.notes.append(str(exc))


def collect_anchors(paths: Paths, extra_files: Iterable[Path | str] = ()) -> AnchorCollection:
    """Anchors from the MLflow version tags, the Dagster run tags and ``extra_files``.

    A store that does not exist is skipped with a note (nothing is created); one that exists but
    cannot be read is a note too. A given file without an anchor raises ``ValueError``.
    """
    out = AnchorCollection()
    for label, fn in (("MLflow", _mlflow_anchors), ("Dagster", _dagster_anchors)):
        try:
            fn(paths, out)
        except Exception as exc:  # a broken store must not stop the verification
            out.notes.append(f"{label}: anchors not read: {type(exc).__name__}: {exc}")
    for f in extra_files:
        out.anchors.extend(read_anchor_file(f))
    return out


def verify_with_anchors(
    audit: AuditLog, paths: Paths, extra_files: Iterable[Path | str] = ()
) -> tuple[VerifyResult, AnchorCollection]:
    """:meth:`AuditLog.verify` against every anchor :func:`collect_anchors` finds."""
    found = collect_anchors(paths, extra_files)
    return audit.verify(anchors=found.anchors), found
