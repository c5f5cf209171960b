"""Pseudonymisation: keyed, deterministic, never the raw id, key from the environment only."""

from __future__ import annotations

import pandas as pd
import pytest

from quality_platform.privacy import MissingKeyError, create_dev_key, key_id, load_key, pseudonymise


def test_key_comes_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("QP_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("QP_PSEUDONYM_KEY_FILE", raising=False)
    with pytest.raises(MissingKeyError, match="QP_PSEUDONYM_KEY"):
        load_key()
    f = tmp_path / "k"
    assert create_dev_key(f) is True
    assert create_dev_key(f) is False
    assert oct(f.stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("QP_PSEUDONYM_KEY_FILE", str(f))
    assert load_key() == f.read_text().strip().encode()


def test_pseudonyms_are_keyed_and_stable() -> None:
    ids = pd.Series(["W-10234", "W-10234", None, "BDG-4711"], dtype="string")
    a = pseudonymise(ids, b"k" * 32)
    b = pseudonymise(ids, b"k" * 32)
    c = pseudonymise(ids, b"j" * 32)
    assert a.equals(b)
    assert a[0] == a[1] and a[0] != a[3]
    assert pd.isna(a[2])
    assert (a.dropna() != c.dropna()).all()
    assert not a.dropna().str.contains("10234|4711").any()
    assert key_id(b"k" * 32) != key_id(b"j" * 32) and "k" * 8 not in key_id(b"k" * 32)[1:]
