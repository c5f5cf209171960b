"""Pseudonymisation of personal data (F11) at the raw -> standard boundary.

Operator/badge ids are replaced by a keyed HMAC-SHA256 pseudonym. The key never lives in the
repository: it comes from ``QP_PSEUDONYM_KEY`` or from the file named by ``QP_PSEUDONYM_KEY_FILE``
(``make demo`` creates a local development key file under data/.secrets/, git-ignored). The same
key gives the same pseudonym, so an operator can be followed across tables without being named;
the key id (a hash of the key, not the key) is recorded with the data for lineage.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pandas as pd

PSEUDONYM_PREFIX = "op_"


class MissingKeyError(RuntimeError):
    """No pseudonymisation key is configured."""


def load_key() -> bytes:
    """The pseudonymisation key from the environment (``QP_PSEUDONYM_KEY`` or ``..._FILE``)."""
    value = os.environ.get("QP_PSEUDONYM_KEY")
    if not value:
        key_file = os.environ.get("QP_PSEUDONYM_KEY_FILE")
        if key_file and Path(key_file).is_file():
            value = Path(key_file).read_text(encoding="utf-8").strip()
    if not value:
        raise MissingKeyError(
            "No pseudonymisation key: set QP_PSEUDONYM_KEY (or QP_PSEUDONYM_KEY_FILE to a file "
            "holding it). For local development `make demo` creates data/.secrets/pseudonym.key."
        )
    if len(value) < 16:
        raise MissingKeyError("QP_PSEUDONYM_KEY must be at least 16 characters long")
    return value.encode("utf-8")


def key_id(key: bytes) -> str:
    """A short, non-reversible identifier of the key (for lineage; not the key itself)."""
    return "k" + hashlib.sha256(b"qp-key-id:" + key).hexdigest()[:12]


def pseudonym(raw_id: str, key: bytes) -> str:
    """Keyed pseudonym of one identifier."""
    return PSEUDONYM_PREFIX + hmac.new(key, raw_id.encode("utf-8"), hashlib.sha256).hexdigest()[:20]


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
