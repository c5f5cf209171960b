"""Pseudonymisation of personal data (F11) at the raw -> standard boundary.

Operator/badge ids are replaced by a keyed HMAC-SHA256 pseudonym. The key never lives in the
repository: it comes from ``QP_PSEUDONYM_KEY`` or from the file named by ``QP_PSEUDONYM_KEY_FILE``
(``make demo`` creates a local development key file under data/state/.secrets/, git-ignored). The same
key gives the same pseudonym, so an operator can be followed across tables without being named;
the key id (a hash of the key, not the key) is recorded with the data for lineage.

Key rotation and re-identification (both policy-governed and audited) live in
:mod:`quality_platform.governance.privacy_ops`; this module only holds the key handling they share:
the new key of a rotation comes from ``QP_PSEUDONYM_KEY_NEW``, and a key file that was rotated is
kept beside it as ``<file>.retired-<key id>`` (mode 0600) so old pseudonyms stay re-identifiable.
It also says which raw columns hold personal data (:func:`raw_personal_columns`), for those
operations and for the governed query session, which shows them as pseudonyms.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from quality_platform.settings import PSEUDONYM_KEY_ENV as KEY_ENV
from quality_platform.settings import PSEUDONYM_KEY_NEW_ENV as NEW_KEY_ENV
from quality_platform.settings import current_deployment

PSEUDONYM_PREFIX = "op_"
PSEUDONYM_HEX = 20
MIN_KEY_CHARS = 16
RETIRED_SUFFIX = ".retired-"


class MissingKeyError(RuntimeError):
    """No pseudonymisation key is configured."""


def load_key() -> bytes:
    """The pseudonymisation key from the environment (``QP_PSEUDONYM_KEY`` or ``..._FILE``)."""
    value = current_deployment().pseudonym_key
    path = key_file()
    if path is not None and path.is_file():
        value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise MissingKeyError(
            "No pseudonymisation key: set QP_PSEUDONYM_KEY (or QP_PSEUDONYM_KEY_FILE to a file "
            "holding it). For local development `make demo` creates data/state/.secrets/pseudonym.key."
        )
    if len(value) < MIN_KEY_CHARS:
        raise MissingKeyError(f"{KEY_ENV} must be at least {MIN_KEY_CHARS} characters long")
    return value.encode("utf-8")


def key_file() -> Path | None:
    """The key file when the key is configured by ``QP_PSEUDONYM_KEY_FILE`` (and not overridden by
    ``QP_PSEUDONYM_KEY``), else None."""
    dep = current_deployment()
    return None if dep.pseudonym_key else dep.pseudonym_key_file


def load_new_key() -> bytes:
    """The key to rotate to, from ``QP_PSEUDONYM_KEY_NEW`` (at least 16 characters)."""
    value = current_deployment().pseudonym_key_new or ""
    if not value:
        raise MissingKeyError(
            f"no new key: set {NEW_KEY_ENV} to the new pseudonymisation key (at least "
            f"{MIN_KEY_CHARS} characters; e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`)"
        )
    if len(value) < MIN_KEY_CHARS:
        raise MissingKeyError(f"{NEW_KEY_ENV} must be at least {MIN_KEY_CHARS} characters long")
    return value.encode("utf-8")


def retired_key_path(path: Path, retired_key_id: str) -> Path:
    """Where a rotated key file keeps its predecessor: ``<file>.retired-<key id>``."""
    return path.with_name(path.name + RETIRED_SUFFIX + retired_key_id)


def retired_keys() -> dict[str, bytes]:
    """key id -> key of the retired key files beside the configured key file (none when the key
    comes from ``QP_PSEUDONYM_KEY``: the platform does not keep environment keys)."""
    path = key_file()
    if path is None:
        return {}
    out = {}
    for f in sorted(path.parent.glob(path.name + RETIRED_SUFFIX + "*")):
        value = f.read_text(encoding="utf-8").strip().encode("utf-8")
        if len(value) >= MIN_KEY_CHARS:
            out[key_id(value)] = value
    return out


def is_pseudonym(value: str) -> bool:
    """Whether ``value`` has the form of a pseudonym (``op_`` + 20 lowercase hex digits)."""
    body = value[len(PSEUDONYM_PREFIX) :]
    return (
        value.startswith(PSEUDONYM_PREFIX)
        and len(body) == PSEUDONYM_HEX
        and all(c in "0123456789abcdef" for c in body)
    )


def key_id(key: bytes) -> str:
    """A short, non-reversible identifier of the key (for lineage; not the key itself)."""
    return "k" + hashlib.sha256(b"qp-key-id:" + key).hexdigest()[:12]


def pseudonym(raw_id: str, key: bytes) -> str:
    """Keyed pseudonym of one identifier."""
    return (
        PSEUDONYM_PREFIX
        + hmac.new(key, raw_id.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
    )


def pseudonymise(values: pd.Series, key: bytes) -> pd.Series:
    """Pseudonymise a column; HMAC is computed once per distinct id. Missing stays missing."""
    uniques = values.dropna().unique()
    mapping = {v: pseudonym(str(v), key) for v in uniques if str(v) != ""}
    return values.map(mapping).astype("string")


def raw_personal_columns(
    con: Any, personal_data: Mapping[str, Sequence[str]], *, catalog: str | None = None
) -> dict[str, list[str]]:
    """Raw table -> its personal columns, for every raw table ``<plant>__<stream>`` of a plant in
    ``personal_data`` (plant id -> the columns its config declares as ``personal_data``,
    data/plants/*.yaml): the declared columns the table has, in declared order ([] when none).

    ``con`` is a DuckDB connection to the warehouse, or one where it is attached as ``catalog``."""
    rows = con.execute(
        "SELECT table_name, list(column_name) FROM duckdb_columns() WHERE database_name = "
        "coalesce(?, current_database()) AND schema_name = 'raw' GROUP BY 1 ORDER BY 1",
        [catalog],
    ).fetchall()
    out = {}
    for table, cols in rows:
        plant = table.split("__", 1)[0]
        if "__" in table and plant in personal_data:
            out[table] = [c for c in personal_data[plant] if c in cols]
    return out


def create_dev_key(path: Path) -> bool:
    """Create a random development key file if none exists. Returns True when created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return True
