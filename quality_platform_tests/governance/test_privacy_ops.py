"""Re-identification and key rotation (F11) on the governed installation, through the CLI.

Re-identification: only the data owner, only at their plants, audited without the raw id.
Rotation: every pseudonym re-keyed consistently across tables, key ids recorded, all or nothing,
refused when the warehouse is locked, and re-identification keeps working afterwards (with the
new key, and with the retired key for old pseudonyms when the key lives in a file).
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from quality_platform.cli import main
from quality_platform.ml.dataset import load_snapshot
from quality_platform.privacy import key_id, pseudonym
from quality_platform.warehouse import connect
from quality_platform_tests.conftest import TEST_KEY, GovEnv

NEW_KEY = "rotated-key-9876543210-zyxwvutsrq"
RAW_UNIT_COLUMNS = {"plant_a": ("Auftrag", "Werker"), "plant_c": ("batch_id", "operator.badge")}


def qp(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    """Run ``qp ... --json``; returns exit code, parsed JSON and the raw output."""
    capsys.readouterr()
    rc = main([*argv, "--json"])
    out = capsys.readouterr()
    text = out.out + out.err
    try:
        payload = json.loads(out.out) if out.out.strip() else {}
    except json.JSONDecodeError:
        payload = {}
    return rc, payload, text


def units(env: GovEnv, table: str = "standard.production_units") -> pd.DataFrame:
    with connect(env.paths.warehouse_path, read_only=True) as con:
        return con.execute(
            f"SELECT plant, unit_id, operator_pseudonym, pseudonym_key_id FROM {table} "
            "ORDER BY plant, unit_id"
        ).df()


def raw_operators(env: GovEnv) -> pd.DataFrame:
    """plant, unit_id, raw operator id, straight from the raw tables (the ground truth)."""
    parts = []
    with connect(env.paths.warehouse_path, read_only=True) as con:
        for plant, (uid, op) in RAW_UNIT_COLUMNS.items():
            parts.append(
                con.execute(
                    f'SELECT plant, "{uid}" AS unit_id, "{op}" AS raw_id FROM raw.{plant}__units'
                ).df()
            )
    return pd.concat(parts, ignore_index=True)


def audit_bytes(env: GovEnv) -> bytes:
    db = env.paths.data_dir / "audit"
    return b"".join(f.read_bytes() for f in sorted(db.glob("*")) if f.is_file())


def last_record(env: GovEnv, action: str) -> Any:
    recs = env.audit.records(action=action)
    assert recs, f"no {action} record"
    return recs[-1]


def add_policy_user(env: GovEnv, name: str, role: str, plants: list[str]) -> None:
    f = env.paths.config_dir / "governance" / "policy.yaml"
    pol = yaml.safe_load(f.read_text())
    pol["users"][name] = {"role": role, "plants": plants}
    f.write_text(yaml.safe_dump(pol, sort_keys=False))


def test_key_id_is_in_the_lineage(gov_env: GovEnv) -> None:
    kid = key_id(TEST_KEY.encode())
    assert set(units(gov_env)["pseudonym_key_id"].dropna()) == {kid}
    v = gov_env.registry.version("1")
    assert v.tag("pseudonym_key_id") == kid
    sheet = load_snapshot(gov_env.paths, v.tag("data_hash") or "").datasheet
    assert sheet["pseudonym_key_ids"] == [kid]
    assert all(p["pseudonym_key_ids"] == [kid] for p in sheet["plants"])


def test_reidentify_only_data_owner_at_own_plants(
    gov_env: GovEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    u = units(gov_env).merge(raw_operators(gov_env), on=["plant", "unit_id"])
    row = u[u["plant"] == "plant_c"].iloc[0]
    p, raw = row["operator_pseudonym"], row["raw_id"]
    assert pseudonym(raw, TEST_KEY.encode()) == p  # the ground truth is what standardisation did

    rc, out, _ = qp(capsys, "reidentify", p, "--as", "dana.data", "--reason", "incident follow-up")
    assert rc == 0, out
    assert out["raw_ids"] == [raw] and out["key_id"] == key_id(TEST_KEY.encode())
    assert out["key_status"] == "current" and {m["plant"] for m in out["matches"]} == {"plant_c"}
    rec = last_record(gov_env, "reidentify")
    assert (rec.actor, rec.outcome, rec.subject) == ("dana.data", "ok", f"pseudonym:{p}")
    assert rec.refs["matches"] == 1 and rec.refs["key_id"] == key_id(TEST_KEY.encode())
    assert rec.refs["pseudonym"] == p and rec.reason == "incident follow-up"
    assert raw.encode() not in audit_bytes(gov_env), "the raw id reached the audit log"

    # every other role is refused, audited, and sees no raw id
    for user in (
        "quinn.quality",
        "mia.model",
        "carl.control",
        "olga.ops",
        "paul.plant_a",
        "petra.plant_b",
        "aud.it",
    ):
        n = len(gov_env.audit.records(action="reidentify"))
        rc, _, text = qp(capsys, "reidentify", p, "--reason", "works council request", "--as", user)
        assert rc == 2 and "may not reidentify" in text and raw not in text, (user, text)
        recs = gov_env.audit.records(action="reidentify")
        assert len(recs) == n + 1 and (recs[-1].actor, recs[-1].outcome) == (user, "denied")

    # a data owner only at their plants: refused for another plant, and never searches it
    add_policy_user(gov_env, "dora.data", "data_owner", ["plant_a"])
    rc, _, text = qp(
        capsys,
        "reidentify",
        p,
        "--reason",
        "works council request",
        "--as",
        "dora.data",
        "--plant",
        "plant_c",
    )
    assert rc == 2 and "at plant_c" in text and raw not in text
    assert (
        last_record(gov_env, "reidentify").outcome,
        last_record(gov_env, "reidentify").plant,
    ) == ("denied", "plant_c")
    rc, out, text = qp(
        capsys, "reidentify", p, "--reason", "works council request", "--as", "dora.data"
    )
    assert (
        rc == 0
        and out["matches"] == []
        and out["plants_searched"] == ["plant_a"]
        and raw not in text
    )
    # ... and a plant_a pseudonym is hers to see
    pa_row = u[u["plant"] == "plant_a"].iloc[0]
    rc, out, _ = qp(
        capsys,
        "reidentify",
        pa_row["operator_pseudonym"],
        "--reason",
        "works council request",
        "--as",
        "dora.data",
    )
    assert rc == 0 and out["raw_ids"] == [pa_row["raw_id"]]

    # something that is not a pseudonym (it might be a raw id) is refused and never audited
    n = len(gov_env.audit.records())
    rc, _, text = qp(
        capsys, "reidentify", raw, "--reason", "works council request", "--as", "dana.data"
    )
    assert rc == 2 and "not a pseudonym" in text
    assert len(gov_env.audit.records()) == n + 1  # only the impersonation record
    assert raw.encode() not in audit_bytes(gov_env)
    assert gov_env.audit.verify().ok


def test_rotation_rekeys_every_pseudonym_consistently(
    gov_env: GovEnv, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old_id, new_id = key_id(TEST_KEY.encode()), key_id(NEW_KEY.encode())
    # a second place pseudonyms live (a downstream copy): rotation must find and re-key it too
    with connect(gov_env.paths.warehouse_path) as con:
        con.execute(
            "CREATE TABLE ml.operator_shifts AS SELECT plant, unit_id, operator_pseudonym, pseudonym_key_id "
            "FROM standard.production_units WHERE operator_pseudonym IS NOT NULL"
        )
    before = units(gov_env)
    monkeypatch.setenv("QP_PSEUDONYM_KEY_NEW", NEW_KEY)

    rc, _, text = qp(capsys, "keys", "rotate", "--as", "mia.model")  # not a data owner
    assert rc == 2 and "may not rotate_key" in text
    assert last_record(gov_env, "rotate_key").outcome == "denied"
    pd.testing.assert_frame_equal(units(gov_env), before)

    rc, out, _ = qp(capsys, "keys", "rotate", "--as", "dana.data", "--reason", "yearly rotation")
    assert rc == 0, out
    assert (out["old_key_id"], out["new_key_id"]) == (old_id, new_id)
    assert out["tables"] == {
        "ml.operator_shifts": int(before["operator_pseudonym"].notna().sum()),
        "standard.production_units": len(before),
    }
    assert out["key_config"] == "environment" and any(
        "QP_PSEUDONYM_KEY" in s for s in out["next_steps"]
    )
    rec = last_record(gov_env, "rotate_key")
    assert rec.outcome == "ok" and (rec.refs["old_key_id"], rec.refs["new_key_id"]) == (
        old_id,
        new_id,
    )

    after = units(gov_env)
    truth = after.merge(raw_operators(gov_env), on=["plant", "unit_id"])
    assert len(truth) == len(after) and truth["operator_pseudonym"].notna().all()
    assert (
        truth["operator_pseudonym"] == truth["raw_id"].map(lambda r: pseudonym(r, NEW_KEY.encode()))
    ).all()
    assert set(after["pseudonym_key_id"]) == {new_id}
    pair = before.merge(after, on=["plant", "unit_id"], suffixes=("_old", "_new"))
    assert len(pair) == len(before)
    assert (pair.groupby("operator_pseudonym_old")["operator_pseudonym_new"].nunique() == 1).all()
    assert (pair.groupby("operator_pseudonym_new")["operator_pseudonym_old"].nunique() == 1).all()
    assert not set(pair["operator_pseudonym_old"]) & set(pair["operator_pseudonym_new"])
    copy = units(gov_env, "ml.operator_shifts").merge(
        after, on=["plant", "unit_id"], suffixes=("", "_std")
    )
    assert (copy["operator_pseudonym"] == copy["operator_pseudonym_std"]).all()
    assert set(copy["pseudonym_key_id"]) == {new_id}

    # until the key is swapped `qp keys id` warns; after the swap, re-identification uses the new key
    rc, out, _ = qp(capsys, "keys", "id")
    assert rc == 0 and out["key_id"] == old_id and "warning" in out
    monkeypatch.setenv("QP_PSEUDONYM_KEY", NEW_KEY)
    monkeypatch.delenv("QP_PSEUDONYM_KEY_NEW")
    rc, out, _ = qp(capsys, "keys", "id")
    assert out["key_id"] == new_id and "warning" not in out
    assert out["warehouse"]["standard.production_units"] == {new_id: len(after)}
    row = truth.iloc[0]
    rc, out, _ = qp(
        capsys,
        "reidentify",
        row["operator_pseudonym"],
        "--reason",
        "works council request",
        "--as",
        "dana.data",
    )
    assert rc == 0 and out["raw_ids"] == [row["raw_id"]] and out["key_id"] == new_id
    old_p = pair.loc[
        pair["operator_pseudonym_new"] == row["operator_pseudonym"], "operator_pseudonym_old"
    ].iloc[0]
    rc, out, _ = qp(
        capsys, "reidentify", old_p, "--reason", "works council request", "--as", "dana.data"
    )
    assert (
        rc == 0 and out["matches"] == []
    )  # environment keys are not kept: the old pseudonym is unlinkable
    assert gov_env.audit.verify().ok


def test_rotation_is_all_or_nothing(
    gov_env: GovEnv, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pseudonym that cannot be re-keyed (no raw id behind it) in a table processed after
    production_units aborts the rotation: production_units, already updated in the transaction,
    is rolled back too."""
    with connect(gov_env.paths.warehouse_path) as con:
        con.execute(
            "CREATE TABLE standard.zz_operator_notes AS SELECT plant, unit_id, operator_pseudonym, "
            "pseudonym_key_id FROM standard.production_units LIMIT 5"
        )
        con.execute(
            "UPDATE standard.zz_operator_notes SET operator_pseudonym = 'op_" + "0" * 20 + "' "
            "WHERE unit_id = (SELECT max(unit_id) FROM standard.zz_operator_notes)"
        )
    before, before_notes = units(gov_env), units(gov_env, "standard.zz_operator_notes")
    monkeypatch.setenv("QP_PSEUDONYM_KEY_NEW", NEW_KEY)
    rc, _, text = qp(capsys, "keys", "rotate", "--as", "dana.data")
    assert rc == 2 and "zz_operator_notes" in text and "nothing was changed" in text
    pd.testing.assert_frame_equal(units(gov_env), before)
    pd.testing.assert_frame_equal(units(gov_env, "standard.zz_operator_notes"), before_notes)
    rec = last_record(gov_env, "rotate_key")
    assert rec.outcome == "failed" and rec.refs["new_key_id"] == key_id(NEW_KEY.encode())


def test_rotation_refuses_a_locked_warehouse(
    gov_env: GovEnv, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ok', flush=True); "
            "time.sleep(60)",
            str(gov_env.paths.warehouse_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        before = gov_env.paths.warehouse_path.stat().st_mtime_ns
        monkeypatch.setenv("QP_PSEUDONYM_KEY_NEW", NEW_KEY)
        monkeypatch.setattr(
            "quality_platform.warehouse.WRITE_BUSY_TIMEOUT_S", 2.0
        )  # a writer waits, bounded
        rc, _, text = qp(capsys, "keys", "rotate", "--as", "dana.data")
        assert rc == 2 and f"in use by PID {holder.pid}" in text
        assert last_record(gov_env, "rotate_key").outcome == "failed"
        assert gov_env.paths.warehouse_path.stat().st_mtime_ns == before
    finally:
        holder.kill()
        holder.wait()


def test_rotation_with_a_key_file_keeps_the_retired_key(
    gov_env: GovEnv,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    kf = tmp_path / "secrets" / "pseudonym.key"
    kf.parent.mkdir()
    kf.write_text(TEST_KEY + "\n")
    kf.chmod(0o600)
    monkeypatch.delenv("QP_PSEUDONYM_KEY")
    monkeypatch.setenv("QP_PSEUDONYM_KEY_FILE", str(kf))
    monkeypatch.setenv("QP_PSEUDONYM_KEY_NEW", NEW_KEY)
    old_id, new_id = key_id(TEST_KEY.encode()), key_id(NEW_KEY.encode())
    row = units(gov_env).merge(raw_operators(gov_env), on=["plant", "unit_id"]).iloc[0]

    rc, out, _ = qp(capsys, "keys", "rotate", "--as", "dana.data")
    assert rc == 0 and out["key_config"] == "file"
    assert kf.read_text().strip() == NEW_KEY and stat.S_IMODE(kf.stat().st_mode) == 0o600
    retired = kf.with_name(f"pseudonym.key.retired-{old_id}")
    assert out["retired_key_file"] == str(retired)
    assert retired.read_text().strip() == TEST_KEY and stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert TEST_KEY.encode() not in audit_bytes(gov_env) and NEW_KEY.encode() not in audit_bytes(
        gov_env
    )

    monkeypatch.delenv("QP_PSEUDONYM_KEY_NEW")
    rc, out, _ = qp(capsys, "keys", "id")
    assert out["key_id"] == new_id and out["retired_key_ids"] == [old_id] and "warning" not in out
    rc, out, _ = qp(
        capsys,
        "reidentify",
        pseudonym(row["raw_id"], NEW_KEY.encode()),
        "--reason",
        "works council request",
        "--as",
        "dana.data",
    )
    assert out["raw_ids"] == [row["raw_id"]] and out["key_status"] == "current"
    rc, out, _ = qp(
        capsys,
        "reidentify",
        row["operator_pseudonym"],
        "--reason",
        "works council request",
        "--as",
        "dana.data",
    )  # an old pseudonym
    assert out["raw_ids"] == [row["raw_id"]] and (out["key_id"], out["key_status"]) == (
        old_id,
        "retired",
    )


def test_personal_columns_cover_a_plants_attributes_table(qp_env: Path) -> None:
    """A personal field in a plant's attributes file (e.g. who signed a batch certificate) is found
    in its raw attributes table like in the other raw streams, so re-identification and key
    rotation reach it."""
    import duckdb

    from quality_platform.config import load_plants
    from quality_platform.governance.privacy_ops import personal_columns

    a = load_plants(qp_env)["plant_a"]
    attrs = {
        "format": "csv",
        "path": "{date}/rohstoffe.csv",
        "fields": {"unit_id": "Auftrag"},
        "values": {"material_moisture": {"field": "Feuchte", "unit": "%"}},
    }
    plant = a.model_copy(
        update={
            "streams": a.streams.model_validate({**a.streams.model_dump(), "attributes": attrs})
        }
    )
    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw")
    for s in ("units", "attributes"):
        con.execute(f'CREATE TABLE raw.plant_a__{s} ("Auftrag" VARCHAR, "Werker" VARCHAR)')
    assert personal_columns(con, plant) == [
        ("plant_a__units", "Werker"),
        ("plant_a__attributes", "Werker"),
    ]
    assert personal_columns(con, a) == [("plant_a__units", "Werker")]  # no attributes stream
