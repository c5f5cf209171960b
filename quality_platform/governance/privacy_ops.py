"""Re-identification and key rotation (F11): the two operations on pseudonymised data that need the
raw layer, both governed by the policy and audited.

Re-identification (``qp reidentify PSEUDONYM [--plant P]``)
    Only the ``data_owner`` role (policy action ``reidentify``), and only at the plants of the
    user's ``plants`` attribute. The raw operator ids are never stored next to their pseudonyms:
    the pseudonym is found by recomputing the keyed pseudonym of every distinct value of the
    plants' ``personal_data`` columns in the raw tables (``raw.<plant>__<stream>``) with the current
    key, then with the retired keys kept beside a key file (old pseudonyms, e.g. in exports made
    before a rotation). The audit record (action ``reidentify``) names the pseudonym, the plants
    searched, the key id and the number of matches -- never the raw id. Denials are audited too.

Key rotation (``qp keys rotate``; policy action ``rotate_key``, data_owner)
    1. Stop what writes the warehouse (the Dagster daemon's schedules and sensors, ``dagster dev``,
       running jobs): DuckDB allows one writing process, and a run between step 3 and step 4 would
       pseudonymise with the old key. The command fails clearly if the warehouse is locked.
    2. Put the new key (at least 16 characters) in ``QP_PSEUDONYM_KEY_NEW``; keep
       ``QP_PSEUDONYM_KEY`` (or ``QP_PSEUDONYM_KEY_FILE``) on the current key.
    3. ``qp keys rotate --as <data owner>``: in one DuckDB transaction (all or nothing) every
       pseudonym column outside the raw schema (every column named ``*_pseudonym``, today
       ``standard.production_units.operator_pseudonym``) is recomputed from the raw ids with the
       new key and its ``pseudonym_key_id`` set to the new key id. Every pseudonym must be
       re-keyed: one that cannot be traced back to a raw id (raw data deleted, or written with an
       unknown key) aborts the rotation and nothing changes. The audit log records the old and
       new key id and the rows per table. A rotation interrupted after the commit can be run
       again: rows already on the new key are kept.
    4. Swap the key: with ``QP_PSEUDONYM_KEY_FILE`` the command does it (the new key replaces the
       file atomically; the old key is kept as ``<file>.retired-<old key id>``, mode 0600, for
       re-identifying old pseudonyms -- delete it when those must become unlinkable); with
       ``QP_PSEUDONYM_KEY`` set ``QP_PSEUDONYM_KEY`` to the new key yourself and unset
       ``QP_PSEUDONYM_KEY_NEW`` (the platform does not keep environment keys: old pseudonyms can
       then no longer be re-identified). Then restart the daemon / code location.

What rotation does not rewrite, by design: training snapshots and the MLflow runs hold no
pseudonyms (features and labels only); they record the key id of their source data
(``pseudonym_key_ids`` in the datasheet, tag ``pseudonym_key_id`` of the model version), which
stays the old id because it is the lineage of the data they were built from. The audit log is
append-only: earlier ``reidentify`` records keep naming old pseudonyms, and so do the copies of
audit records in audit exports and incident evidence bundles. Files users exported from
governed queries keep old pseudonyms; they stay re-identifiable only while the retired key file
is kept.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from quality_platform.audit import AuditLog, audit_db_path
from quality_platform.config import PlantConfig, load_plants
from quality_platform.governance.policy import Policy, Principal, authorize, load_policy
from quality_platform.ingest.readers import plant_streams
from quality_platform.privacy import (
    KEY_ENV,
    NEW_KEY_ENV,
    PSEUDONYM_HEX,
    PSEUDONYM_PREFIX,
    is_pseudonym,
    key_file,
    key_id,
    load_key,
    load_new_key,
    pseudonym,
    raw_personal_columns,
    retired_key_path,
    retired_keys,
)
from quality_platform.settings import Paths, get_paths
from quality_platform.warehouse import WarehouseBusyError, connect, quote_ident

RAW_SCHEMA = "raw"
KEY_ID_COLUMN = "pseudonym_key_id"
PSEUDONYM_SUFFIX = "pseudonym"
NOT_REKEYED = (
    "training snapshots and MLflow runs hold no pseudonyms; their datasheets/tags keep the old key id "
    "as the lineage of the data they were built from",
    "the append-only audit log and its copies (audit exports, incident evidence bundles): earlier "
    "reidentify records keep naming old pseudonyms",
    "files users exported from governed queries keep old pseudonyms",
)


class PrivacyOpError(RuntimeError):
    """A re-identification or rotation that cannot be done (the message says why; nothing changed)."""


# --------------------------------------------------------------------------- raw ids


def _open(
    path: Path, read_only: bool
) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
    """The warehouse (``WarehouseBusyError`` from warehouse.connect while another process holds it)."""
    if not path.exists():
        raise PrivacyOpError(f"no warehouse at {path}: nothing is pseudonymised yet")
    return connect(path, read_only=read_only)


def personal_columns(con: duckdb.DuckDBPyConnection, plant: PlantConfig) -> list[tuple[str, str]]:
    """(raw table, column) of the plant's declared ``personal_data`` columns present in its raw tables."""
    found = raw_personal_columns(con, {plant.plant_id: plant.personal_data})
    return [
        (table, c)
        for table in (f"{plant.plant_id}__{s}" for s in plant_streams(plant))
        for c in found.get(table, [])
    ]


def raw_personal_values(
    con: duckdb.DuckDBPyConnection, plant: PlantConfig
) -> dict[tuple[str, str], list[str]]:
    """(raw table, column) -> distinct non-empty raw values of the plant's personal columns.

    The values are text exactly as standardisation pseudonymises them (raw tables are text-valued)."""
    out = {}
    for table, col in personal_columns(con, plant):
        c = quote_ident(col)
        rows = con.execute(
            f"SELECT DISTINCT CAST({c} AS VARCHAR) FROM {RAW_SCHEMA}.{quote_ident(table)} "
            f"WHERE {c} IS NOT NULL"
        ).fetchall()
        out[(table, col)] = sorted(r[0] for r in rows if r[0] != "")
    return out


# --------------------------------------------------------------------------- re-identification


@dataclass
class Reidentification:
    """The raw id(s) behind one pseudonym, at the plants searched."""

    pseudonym: str
    plants_searched: list[str]
    key_id: str | None  # the key whose pseudonym matched (None: no match)
    key_status: str | None  # current | retired
    matches: list[dict[str, str]] = field(default_factory=list)  # plant, table, column, raw_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "pseudonym": self.pseudonym,
            "plants_searched": self.plants_searched,
            "key_id": self.key_id,
            "key_status": self.key_status,
            "matches": self.matches,
            "raw_ids": sorted({m["raw_id"] for m in self.matches}),
        }


def reidentify(
    who: Principal,
    pseudonym_value: str,
    *,
    plant: str | None = None,
    reason: str | None = None,
    paths: Paths | None = None,
    policy: Policy | None = None,
    audit: AuditLog | None = None,
) -> Reidentification:
    """Pseudonym -> raw operator id(s), for a data owner at their plants (audited without the raw id).

    Raises :class:`ValueError` for input that is not a pseudonym (not audited: it might be a raw
    id), :class:`~quality_platform.governance.policy.PolicyError` when refused (audited as denied)."""
    paths = paths or get_paths()
    policy = policy or load_policy(paths)
    audit = audit or AuditLog(audit_db_path(paths))
    value = pseudonym_value.strip()
    if not is_pseudonym(value):
        raise ValueError(
            f"not a pseudonym: expected {PSEUDONYM_PREFIX!r} followed by {PSEUDONYM_HEX} lowercase hex "
            "digits (as in standard.production_units.operator_pseudonym)"
        )
    plants = load_plants(paths)
    if plant is not None and plant not in plants:
        raise ValueError(f"unknown plant {plant!r}; configured: {sorted(plants)}")
    subject = f"pseudonym:{value}"
    authorize(policy, who, "reidentify", audit, subject=subject, plant=plant, reason=reason)
    searched = [p for p in sorted(plants) if (plant is None or p == plant) and who.sees_plant(p)]
    current = load_key()
    keys = {key_id(current): ("current", current)}
    for kid, k in retired_keys().items():
        keys.setdefault(kid, ("retired", k))
    result = Reidentification(value, searched, None, None)
    try:
        with _open(paths.warehouse_path, read_only=True) as con:
            values = {p: raw_personal_values(con, plants[p]) for p in searched}
    except (PrivacyOpError, WarehouseBusyError) as exc:
        audit.append(
            "reidentify",
            who.name,
            subject=subject,
            plant=plant,
            reason=reason,
            outcome="failed",
            refs={"pseudonym": value, "plants_searched": searched, "error": str(exc)},
        )
        raise
    for kid, (status, k) in keys.items():  # the current key first
        for p, cols in values.items():
            for (table, col), raws in cols.items():
                result.matches += [
                    {"plant": p, "table": f"{RAW_SCHEMA}.{table}", "column": col, "raw_id": r}
                    for r in raws
                    if pseudonym(r, k) == value
                ]
        if result.matches:
            result.key_id, result.key_status = kid, status
            break
    audit.append(
        "reidentify",
        who.name,
        subject=subject,
        plant=plant,
        reason=reason,
        outcome="ok" if result.matches else "info",
        refs={
            "pseudonym": value,
            "plants_searched": searched,
            "key_id": result.key_id,
            "key_status": result.key_status,
            "keys_tried": list(keys),
            "matches": len(result.matches),
            "role": who.role,
            "via": who.via,
        },
    )
    return result


# --------------------------------------------------------------------------- key rotation


@dataclass
class Rotation:
    """What a key rotation changed."""

    old_key_id: str
    new_key_id: str
    tables: dict[str, int]  # schema.table -> rows re-keyed
    key_config: str  # file | environment
    key_file: str | None = None
    retired_key_file: str | None = None
    audit_seq: int | None = None
    next_steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "old_key_id": self.old_key_id,
            "new_key_id": self.new_key_id,
            "tables": self.tables,
            "rows": sum(self.tables.values()),
            "key_config": self.key_config,
            "key_file": self.key_file,
            "retired_key_file": self.retired_key_file,
            "audit_seq": self.audit_seq,
            "next_steps": self.next_steps,
            "not_rekeyed": list(NOT_REKEYED),
        }


def pseudonym_tables(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[list[str], bool]]:
    """schema.table -> (pseudonym columns, has a key id column), for every table outside the raw
    schema with a column named ``*pseudonym`` (the places pseudonyms live)."""
    rows = con.execute(
        """SELECT table_schema, table_name, column_name FROM information_schema.columns
        WHERE table_schema <> ? ORDER BY table_schema, table_name, ordinal_position""",
        [RAW_SCHEMA],
    ).fetchall()
    cols: dict[str, list[str]] = {}
    for schema, table, col in rows:
        cols.setdefault(f"{quote_ident(schema)}.{quote_ident(table)}", []).append(col)
    out = {}
    for name, cs in cols.items():
        ps = [c for c in cs if c.endswith(PSEUDONYM_SUFFIX)]
        if ps:
            out[name] = (ps, KEY_ID_COLUMN in cs)
    return out


def _mapping(
    con: duckdb.DuckDBPyConnection, plants: dict[str, PlantConfig], old: bytes, new: bytes
) -> pd.DataFrame:
    raws = sorted(
        {r for p in plants.values() for vals in raw_personal_values(con, p).values() for r in vals}
    )
    return pd.DataFrame(
        {"old_p": [pseudonym(r, old) for r in raws], "new_p": [pseudonym(r, new) for r in raws]},
        dtype="string",
    ).drop_duplicates("old_p")


def _label(name: str) -> str:
    return name.replace('"', "")


def rekey_warehouse(
    con: duckdb.DuckDBPyConnection, plants: dict[str, PlantConfig], old: bytes, new: bytes
) -> dict[str, int]:
    """Re-pseudonymise every pseudonym column (outside raw) from old to new key in ONE transaction.
    Returns rows re-keyed per table; raises :class:`PrivacyOpError` (rolled back) when a pseudonym
    cannot be re-keyed."""
    old_id, new_id = key_id(old), key_id(new)
    tables = pseudonym_tables(con)
    mapping = _mapping(con, plants, old, new)
    con.register("_qp_rekey", mapping)
    changed: dict[str, int] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        for name, (cols, has_key_id) in sorted(tables.items(), key=lambda kv: _label(kv[0])):
            if has_key_id:
                other = con.execute(
                    f"SELECT {KEY_ID_COLUMN}, count(*) FROM {name} WHERE {KEY_ID_COLUMN} IS NOT NULL "
                    f"AND {KEY_ID_COLUMN} NOT IN (?, ?) GROUP BY 1",
                    [old_id, new_id],
                ).fetchall()
                if other:
                    raise PrivacyOpError(
                        f"{_label(name)}: {sum(n for _, n in other)} rows are pseudonymised with key id(s) "
                        f"{sorted(k for k, _ in other)}, neither the current key {old_id} nor the new key {new_id}: "
                        "re-standardise them with the current key first"
                    )
                todo, t_todo = f"{KEY_ID_COLUMN} = '{old_id}'", f"t.{KEY_ID_COLUMN} = '{old_id}'"
            else:
                todo = t_todo = "TRUE"
            n = int(con.execute(f"SELECT count(*) FROM {name} WHERE {todo}").fetchall()[0][0])
            for col in cols:
                c = quote_ident(col)
                con.execute(
                    f"UPDATE {name} AS t SET {c} = m.new_p FROM _qp_rekey m "
                    f"WHERE t.{c} = m.old_p AND {t_todo}"
                )
                left = con.execute(
                    f"SELECT count(*) FROM {name} WHERE {c} IS NOT NULL AND {todo} AND "
                    f"{c} NOT IN (SELECT new_p FROM _qp_rekey)"
                ).fetchall()[0][0]
                if left:
                    raise PrivacyOpError(
                        f"{_label(name)}.{col}: {left} pseudonyms have no raw id in the raw layer under the current "
                        f"key {old_id} (raw data deleted, plant no longer configured, or another key): they cannot be "
                        "re-keyed, so nothing was changed"
                    )
            if has_key_id:
                con.execute(f"UPDATE {name} SET {KEY_ID_COLUMN} = ? WHERE {todo}", [new_id])
            changed[_label(name)] = n
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("_qp_rekey")
    return changed


def _write_secret(path: Path, value: bytes) -> None:
    """Write ``value`` to ``path`` atomically with mode 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, value + b"\n")
        os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def rotate_key(
    who: Principal,
    *,
    reason: str | None = None,
    paths: Paths | None = None,
    policy: Policy | None = None,
    audit: AuditLog | None = None,
) -> Rotation:
    """Rotate the pseudonymisation key to ``QP_PSEUDONYM_KEY_NEW`` (see the module docstring for the
    procedure). All or nothing in the warehouse; audited with the old and new key id."""
    paths = paths or get_paths()
    policy = policy or load_policy(paths)
    audit = audit or AuditLog(audit_db_path(paths))
    authorize(policy, who, "rotate_key", audit, subject="pseudonym_key", reason=reason)
    old, new = load_key(), load_new_key()
    old_id, new_id = key_id(old), key_id(new)
    if old == new:
        raise PrivacyOpError(f"{NEW_KEY_ENV} is the current key ({old_id}): choose a new key")
    kfile = key_file()
    rot = Rotation(
        old_id,
        new_id,
        {},
        "file" if kfile else "environment",
        key_file=str(kfile) if kfile else None,
    )
    refs: dict[str, Any] = {
        "old_key_id": old_id,
        "new_key_id": new_id,
        "key_config": rot.key_config,
        "role": who.role,
        "via": who.via,
    }
    try:
        if kfile is not None:  # keep the old key before anything changes (harmless if we stop here)
            retired = retired_key_path(kfile, old_id)
            if not retired.exists():
                _write_secret(retired, old)
            rot.retired_key_file = str(retired)
        with _open(paths.warehouse_path, read_only=False) as con:
            rot.tables = rekey_warehouse(con, load_plants(paths), old, new)
    except Exception as exc:
        audit.append(
            "rotate_key",
            who.name,
            subject="pseudonym_key",
            reason=reason,
            outcome="failed",
            refs={**refs, "error": str(exc)},
        )
        raise
    rec = audit.append(
        "rotate_key",
        who.name,
        subject="pseudonym_key",
        reason=reason,
        outcome="ok",
        refs={
            **refs,
            "tables": rot.tables,
            "rows": sum(rot.tables.values()),
            "retired_key_file": rot.retired_key_file,
            "not_rekeyed": list(NOT_REKEYED),
        },
    )
    rot.audit_seq = rec.seq
    if kfile is not None:
        try:
            _write_secret(kfile, new)
        except OSError as exc:
            raise PrivacyOpError(
                f"the warehouse now uses the new key {new_id} (audit record {rec.seq}), but the key file {kfile} "
                f"could not be replaced ({exc}): write the value of {NEW_KEY_ENV} into it yourself (mode 0600) "
                "before any run; the old key is kept as " + str(rot.retired_key_file)
            ) from exc
        rot.next_steps = [
            f"the key file {kfile} now holds the new key {new_id}; the old key is kept as "
            f"{rot.retired_key_file} (0600) to re-identify old pseudonyms - delete it when they "
            "must become unlinkable",
            f"unset {NEW_KEY_ENV}; restart the Dagster daemon / code location so runs use the new key",
        ]
    else:
        rot.next_steps = [
            f"now set {KEY_ENV} to the new key (the value of {NEW_KEY_ENV}) wherever the platform "
            f"runs, unset {NEW_KEY_ENV}, and restart the Dagster daemon / code location: until then "
            f"new runs would pseudonymise with the old key {old_id}",
            "the platform keeps no copy of environment keys: pseudonyms made with the old key "
            "(e.g. in exported files) can no longer be re-identified once it is discarded",
        ]
    return rot


def key_status(paths: Paths | None = None) -> dict[str, Any]:
    """The current key id, how the key is configured, retired key ids and the key ids found in the
    warehouse's pseudonym tables (rows per key id; skipped when the warehouse is locked)."""
    paths = paths or get_paths()
    kfile = key_file()
    out: dict[str, Any] = {
        "key_id": key_id(load_key()),
        "key_config": "file" if kfile else "environment",
        "key_file": str(kfile) if kfile else None,
        "retired_key_ids": sorted(retired_keys()),
        "warehouse": {},
    }
    try:
        with _open(paths.warehouse_path, read_only=True) as con:
            for name, (_, has_key_id) in pseudonym_tables(con).items():
                if has_key_id:
                    out["warehouse"][_label(name)] = dict(
                        con.execute(
                            f"SELECT {KEY_ID_COLUMN}, count(*) FROM {name} WHERE {KEY_ID_COLUMN} IS NOT NULL "
                            "GROUP BY 1 ORDER BY 1"
                        ).fetchall()
                    )
    except PrivacyOpError as exc:
        out["warehouse_error"] = str(exc)
    stale = sorted({k for per in out["warehouse"].values() for k in per} - {out["key_id"]})
    if stale:
        out["warning"] = (
            f"warehouse rows are pseudonymised with key id(s) {stale}, not the current key "
            f"{out['key_id']}: finish a rotation by swapping the key (see `qp keys rotate`)"
        )
    return out
