"""A tablet press whose batches come with per-batch values - a raw-material property the platform
has never seen (API particle size d50, declared plant-local in um, delivered in mm) and the shared
material moisture - joins by one YAML next to an existing plant: the values land in
standard.unit_attributes on their unit's day, every bad record is quarantined with file, row,
column and rule (received = accepted + quarantined), each quantity becomes one feature column
``<quantity>__value`` of its unit, and the existing plant's feature rows stay as they were."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import yaml

from quality_platform.config import ConfigError, load_plants, load_registry
from quality_platform.governance.policy import load_policy, principal
from quality_platform.governance.query import QueryDenied, governed_query
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform_tests.test_onboarding import _new_plant, _onboard

DAY = dt.date(2026, 3, 16)
PRESS = "press_t"
FILE = f"{DAY.isoformat()}/rohstoffe.csv"


def _press_config(d: dict[str, Any]) -> None:
    """What the plant's data engineer writes: a plant-local quantity and the attributes stream."""
    d.update(name="Tablet press T", machines=["T-M01", "T-M02"], legacy_kpis=[])
    d["quantities"] = {
        "api_d50": {
            "unit": "um",
            "min": 1,
            "max": 500,
            "description": "Particle size d50 of the active ingredient lot (certificate).",
        }
    }
    d["streams"]["attributes"] = {
        "format": "csv",
        "path": "{date}/rohstoffe.csv",
        "fields": {"unit_id": "Auftrag"},
        "values": {
            "api_d50": {"field": "API_d50", "unit": "mm"},
            "material_moisture": {"field": "Feuchte", "unit": "%"},
        },
    }


def _features(qp_env: Paths, plant: str) -> pd.DataFrame:
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        return con.sql(
            f"SELECT * FROM features.unit_features WHERE plant = '{plant}' ORDER BY unit_id"
        ).df()
    finally:
        con.close()


def test_a_press_with_unit_attributes_joins_by_one_yaml(qp_env: Paths, tmp_path: Path) -> None:
    # plant_a is there first, without attributes
    a = load_plants(qp_env)["plant_a"]
    simulate(qp_env.landing_dir, days=1, seed=3, start=DAY, plants={"plant_a": a})
    (tmp_path / "a").mkdir()
    _onboard(qp_env, tmp_path / "a", "plant_a", DAY, DAY)
    before = _features(qp_env, "plant_a")
    assert not any(c.endswith("__value") for c in before.columns)

    press = _new_plant(qp_env, PRESS, _press_config)  # the one file the user writes
    assert set(load_registry(qp_env).attributes()) == {"api_d50", "material_moisture"}
    truth = simulate(qp_env.landing_dir, days=1, seed=4, start=DAY, plants={PRESS: press})
    assert f"{PRESS}/{FILE}" in truth["plants"][PRESS]["files"]
    f = qp_env.landing_dir / PRESS / FILE
    src = pd.read_csv(f, dtype=str)
    n = len(src)
    assert list(src.columns) == ["Auftrag", "API_d50", "Feuchte"] and n > 50
    # what a real delivery brings: one record per kind of mistake (file line = index + 2)
    src.loc[3, "Auftrag"] = "T-NOT-PRODUCED"  # unknown unit: both values held back
    src.loc[5, "API_d50"] = ""  # missing value
    src.loc[7, "Feuchte"] = "12,5"  # not a number (decimal comma)
    src.loc[9, "API_d50"] = "0.9"  # 900 um: outside [1, 500] um
    again = src.loc[[11]].assign(API_d50="0.123", Feuchte="3.5")  # the unit delivered twice
    src = pd.concat([src, again], ignore_index=True)
    src.to_csv(f, index=False, lineterminator="\n")
    expected_q = sorted(
        [
            (5, "Auftrag", "unknown_unit", 2),
            (7, "API_d50", "missing_value", 1),
            (9, "Feuchte", "not_a_number", 1),
            (11, "API_d50", "out_of_range", 1),
            (n + 2, "API_d50", "duplicate", 1),
            (n + 2, "Feuchte", "duplicate", 1),
        ]
    )

    (tmp_path / "press").mkdir()
    outcomes = _onboard(qp_env, tmp_path / "press", PRESS, DAY, DAY)
    assert outcomes[1].failed_checks == []  # reconciliation included

    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        att = con.sql(
            f"SELECT * FROM standard.unit_attributes WHERE plant = '{PRESS}' ORDER BY source_row"
        ).df()
        q = con.sql(
            f"""SELECT source_row, source_column, rule, n_items, source_file
                FROM standard.quarantine WHERE plant = '{PRESS}' AND stream = 'attributes'
                ORDER BY ALL"""
        ).fetchall()
        units = con.sql(
            f"SELECT unit_id, partition_date FROM standard.production_units WHERE plant = '{PRESS}'"
        ).df()
        received = con.sql(
            f"""SELECT sum(records * items_per_record) FROM raw.receipts
                WHERE plant = '{PRESS}' AND stream = 'attributes'"""
        ).fetchall()[0][0]
    finally:
        con.close()
    assert [r[:4] for r in q] == expected_q and {r[4] for r in q} == {FILE}
    # received = accepted + quarantined, for the file: 2 values per record
    assert received == 2 * (n + 1) == len(att) + sum(r[3] for r in q)
    assert set(att["source_file"]) == {FILE} and set(att["unit_id"]) <= set(units["unit_id"])
    assert att.groupby("quantity")["unit"].first().to_dict() == {
        "api_d50": "um",
        "material_moisture": "percent",
    }
    day_of = dict(zip(units["unit_id"], units["partition_date"], strict=True))
    assert (att["partition_date"] == att["unit_id"].map(day_of)).all()  # on its unit's day

    # the values per unit, from the file: mm -> um, the first delivery kept
    delivered = src.iloc[:n]
    want_d50 = {
        u: float(v) * 1000
        for i, (u, v) in enumerate(zip(delivered["Auftrag"], delivered["API_d50"], strict=True))
        if i not in (3, 5, 9)
    }
    want_moist = {
        u: float(v)
        for i, (u, v) in enumerate(zip(delivered["Auftrag"], delivered["Feuchte"], strict=True))
        if i not in (3, 7)
    }
    feats = _features(qp_env, PRESS).set_index("unit_id")
    assert len(feats) == len(units)
    for u, row in feats.iterrows():
        for col, want in (("api_d50__value", want_d50), ("material_moisture__value", want_moist)):
            if u in want:
                assert row[col] == pytest.approx(want[u], rel=1e-12), (u, col)
            else:
                assert pd.isna(row[col]), (u, col)
    assert feats["api_d50__value"].notna().sum() == len(want_d50) > 50
    # attributes are not readings: n_readings counts the four sensor quantities only
    assert (feats["n_readings"] == sum(feats[f"{x}__n"] for x in press.signals())).all()

    # governed: a role that reads the standard reads the table, its own plants' rows only
    policy_file = qp_env.config_dir / "governance" / "policy.yaml"
    doc = yaml.safe_load(policy_file.read_text())
    doc["users"]["dana.data"]["plants"].append(PRESS)  # the owner is granted the new plant
    policy_file.write_text(yaml.safe_dump(doc, allow_unicode=True))
    policy = load_policy(qp_env)
    sql = "SELECT plant, quantity, count(*) AS n FROM standard.unit_attributes GROUP BY ALL"
    res = governed_query(sql, principal(policy, "dana.data"), paths=qp_env)
    assert sorted(map(tuple, res.frame.values.tolist())) == sorted(
        (PRESS, qq, n) for qq, n in att.groupby("quantity").size().items()
    )
    # quality engineers and model owners read it (all plants); rita only her plants' rows
    for user in ("quinn.quality", "mia.model"):
        res = governed_query(sql, principal(policy, user), paths=qp_env)
        assert sum(n for *_, n in res.frame.values.tolist()) == len(att), user
    res = governed_query(sql, principal(policy, "rita.quality"), paths=qp_env)
    assert res.frame.empty  # plant_a and plant_b only
    # a plant manager and operations read no standard table of this kind
    for user in ("paul.plant_a", "olga.ops"):
        with pytest.raises(QueryDenied):
            governed_query(sql, principal(policy, user), paths=qp_env)

    # plant_a's rows are untouched; the new columns read NULL for it
    after = _features(qp_env, "plant_a")
    pd.testing.assert_frame_equal(after[before.columns], before)
    assert after["api_d50__value"].isna().all() and after["material_moisture__value"].isna().all()


@pytest.mark.parametrize(
    ("edit", "field", "says"),
    [
        (
            lambda v: v.update(api_d5O={"field": "X", "unit": "mm"}),
            "streams.attributes.values.api_d5O",
            "unknown quantity 'api_d5O'",
        ),
        (
            lambda v: v.update(api_d50={"field": "API_d50", "unit": "kg"}),
            "streams.attributes.values.api_d50.unit",
            "cannot be converted",
        ),
        (
            lambda v: v.update(material_moisture={"field": "API_d50", "unit": "%"}),
            "streams.attributes",
            "'API_d50' is mapped twice",
        ),
        (
            lambda v: v.update(material_moisture={"field": "Auftrag", "unit": "%"}),
            "streams.attributes",
            "'Auftrag' is mapped twice",
        ),
        (
            lambda v: v.update(api_power={"field": "P", "unit": "W"}),
            "streams.attributes.values.api_power",
            "is derived",
        ),
    ],
)
def test_attribute_config_mistakes_name_file_and_field(
    qp_env: Paths, edit: Any, field: str, says: str
) -> None:
    def config(d: dict[str, Any]) -> None:
        _press_config(d)
        d["quantities"]["api_power"] = {
            "unit": "W/m**2",
            "min": 0,
            "max": 1e9,
            "description": "x",
            "expression": "pressure * vibration",
        }
        edit(d["streams"]["attributes"]["values"])

    with pytest.raises(ConfigError) as err:
        _new_plant(qp_env, "plant_x", config)
    msg = str(err.value)
    assert "plant_x.yaml" in msg and f"field '{field}" in msg and says in msg, msg


def test_a_many_day_attributes_file_needs_a_many_day_units_file(qp_env: Paths) -> None:
    def config(d: dict[str, Any]) -> None:
        _press_config(d)
        d["streams"]["attributes"]["path"] = "rohstoffe.csv"

    with pytest.raises(ConfigError, match=r"plant_x\.yaml: field 'streams'.*attributes\.path"):
        _new_plant(qp_env, "plant_x", config)


def test_a_plant_without_attributes_has_no_attribute_stream_or_columns(qp_env: Paths) -> None:
    plants = load_plants(qp_env)
    assert all(p.streams.attributes is None for p in plants.values())
    assert load_registry(qp_env).attributes() == {}
    doc = yaml.safe_load((qp_env.plants_dir / "plant_a.yaml").read_text())
    assert "attributes" not in doc["streams"]
