"""Pseudonymisation of personal data (F11) at the raw -> standard boundary.

Operator/badge ids are replaced by a keyed HMAC-SHA256 pseudonym. The key never lives in the
repository: it comes from ``QP_PSEUDONYM_KEY`` or from the file named by ``QP_PSEUDONYM_KEY_FILE``
(``make demo`` creates a local development key file under data/.secrets/, git-ignored). The same
key gives the same pseudonym, so an operator can be followed across tables without being named;
the key id (a hash of the key, not the key) is recorded with the data for lineage.

Key rotation and re-identification (both policy-governed and audited) live in
:mod:`quality_platform.governance.privacy_ops`; this module only holds the key handling they share:
the new key of a rotation comes from ``QP_PSEUDONYM_KEY_NEW``, and a key file that was rotated is
kept beside it as ``<file>.retired-<key id>`` (mode 0600) so old pseudonyms stay re-identifiable.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pandas as pd

PSEUDONYM_PREFIX = "op_"
PSEUDONYM_HEX = 20
KEY_ENV = "QP_PSEUDONYM_KEY"
KEY_FILE_ENV = "QP_PSEUDONYM_KEY_FILE"
NEW_KEY_ENV = "QP_PSEUDONYM_KEY_NEW"
MIN_KEY_CHARS = 16
RETIRED_SUFFIX = ".retired-"


class MissingKeyError(RuntimeError):
    """No pseudonymisation key is configured."""


def load_key() -> bytes:
    """The pseudonymisation key from the environment (``QP_PSEUDONYM_KEY`` or ``..._FILE``)."""
    value = os.environ.get(KEY_ENV)
    if not value:
        key_file = os.environ.get(KEY_FILE_ENV)
        if key_file and Path(key_file).is_file():
            value = Path(key_file).read_text(encoding="utf-8").strip()
    if not value:
        raise MissingKeyError(
            "No pseudonymisation key: set QP_PSEUDONYM_KEY (or QP_PSEUDONYM_KEY_FILE to a file "
            "holding it). For local development `make demo` creates data/.secrets/pseudonym.key."
        )
    if len(value) < MIN_KEY_CHARS:
        raise MissingKeyError(f"{KEY_ENV} must be at least {MIN_KEY_CHARS} characters long")
    return value.encode("utf-8")


def key_file() -> Path | None:
    """The key file when the key is configured by ``QP_PSEUDONYM_KEY_FILE`` (and not overridden by
    ``QP_PSEUDONYM_KEY``), else None."""
    if os.environ.get(KEY_ENV):
        return None
    name = os.environ.get(KEY_FILE_ENV)
    return Path(name) if name else None


def load_new_key() -> bytes:
    """The key to rotate to, from ``QP_PSEUDONYM_KEY_NEW`` (at least 16 characters)."""
    value = (os.environ.get(NEW_KEY_ENV) or "").strip()
    if not value:
        raise MissingKeyError(f"no new key: set {NEW_KEY_ENV} to the new pseudonymisation key (at least "
                              f"{MIN_KEY_CHARS} characters; e.g. `python -c 'import secrets; "
                              "print(secrets.token_urlsafe(32))'`)")
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
    body = value[len(PSEUDONYM_PREFIX):]
    return (value.startswith(PSEUDONYM_PREFIX) and len(body) == PSEUDONYM_HEX
            and all(c in "0123456789abcdef" for c in body))


def key_id(key: bytes) -> str:
    """A short, non-reversible identifier of the key (for lineage; not the key itself)."""
    return "k" + hashlib.sha256(b"qp-key-id:" + key).hexdigest()[:12]


def pseudonym(raw_id: str, key: bytes) -> str:
    """Keyed pseudonym of one identifier."""
    return PSEUDONYM_PREFIX + hmac.new(key, raw_id.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def pseudonymise(values: pd.Series, key: bytes) -> pd.Series:
    """Pseudonymise a column; HMAC is computed once per distinct id. Missing stays missing."""
    uniques = values.dropna().unique()
    mapping = {v: pseudonym(str(v), key) for v in uniques if str(v) != ""}
    return values.map(mapping).astype("string")


def create_dev_key(path: Path) -> bool:
    """Create a random development key file if none exists. Returns True when created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return True
