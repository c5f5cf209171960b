"""A plant with quantities the platform has never seen joins by one YAML and touches nothing else:
four thermometers as channels of ``temperature``, a plant-local ``coolant_flow`` with its own unit
and range, a derived ``hydraulic_power`` (pressure x flow, by pint) and a channel sampled at its own
rate. The feature table evolves in place - no feature_set_version bump, no DROP TABLE, no re-run of
the plant that was there first, whose rows stay exactly as they were."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from quality_platform.config import ConfigError, load_plants, load_registry
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform_tests.test_onboarding import _new_plant, _onboard

DAY = dt.date(2026, 3, 16)
RIG = "rig_e"
#: the rig's four thermometers: offsets from the simulated melt temperature [degC]
CHANNELS = {"TS1": 0.0, "TS2": 1.5, "TS3": -2.0, "TS4": 4.0}


def _rig_config(d: dict[str, Any]) -> None:
    """What the plant's data engineer writes: channels, a local quantity, a derived one."""
    d.update(name="Test rig E", machines=["E-M01", "E-M02"], legacy_kpis=[])
    d["quantities"] = {
        "coolant_flow": {
            "unit": "l/min",
            "min": 0,
            "max": 500,
            "description": "Coolant flow through the tool (rig E only).",
            "process_limits": {"lower": 25, "upper": 38},  # its window, declared with it
        },
        "hydraulic_power": {
            "unit": "W",
            "min": 0,
            "max": 1000000,
            "description": "Hydraulic power: process pressure x coolant flow.",
            "expression": "pressure * coolant_flow",
        },
    }
    q = {
        ch: {"field": ch, "unit": "°C", "quantity": "temperature"}
        for ch in CHANNELS  # four channels of the shared quantity
    }
    q["pressure"] = {"field": "Druck", "unit": "bar"}
    # flow is logged every 30 s by its own transmitter (the plant's interval is 60 s)
    q["coolant_flow"] = {"field": "Durchfluss", "unit": "l/min", "interval_seconds": 30}
    d["streams"]["readings"]["quantities"] = q


def _rewrite_readings(landing: Path, days: int) -> pd.DataFrame:
    """Turn the simulated files into the rig's export: TS1..TS4 instead of one temperature column,
    a flow column, no moisture or vibration. Returns every value written, for the assertions."""
    rng = np.random.default_rng(7)
    out = []
    for k in range(days):
        f = landing / RIG / (DAY + dt.timedelta(days=k)).isoformat() / "sensoren.csv"
        df = pd.read_csv(f)
        t = df.pop("Temperatur [°C]")
        rig = df[["Zeitstempel", "Maschine", "Druck [bar]"]].copy()
        for ch, off in CHANNELS.items():
            rig[f"{ch} [°C]"] = (t + off).round(3)
        rig["Durchfluss [l/min]"] = rng.uniform(20, 40, len(rig)).round(2)
        rig.to_csv(f, index=False)
        out.append(rig.assign(file=f))
    return pd.concat(out, ignore_index=True)


def _features(qp_env: Paths, plant: str) -> pd.DataFrame:
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        return con.sql(
            f"SELECT * FROM features.unit_features WHERE plant = '{plant}' ORDER BY unit_id"
        ).df()
    finally:
        con.close()


def test_a_plant_with_channels_local_and_derived_quantities_joins_without_touching_others(
    qp_env: Paths, tmp_path: Path
) -> None:
    # plant_a is there first: its features are built under the shared quantities only
    a = load_plants(qp_env)["plant_a"]
    simulate(qp_env.landing_dir, days=1, seed=3, start=DAY, plants={"plant_a": a})
    (tmp_path / "a").mkdir()
    _onboard(qp_env, tmp_path / "a", "plant_a", DAY, DAY)
    before = _features(qp_env, "plant_a")
    assert not any("@" in c or "coolant" in c for c in before.columns)

    # the rig: simulated as plant_a's shape, then written as the rig exports it
    template = _new_plant(qp_env, RIG, lambda d: d.update(machines=["E-M01", "E-M02"]))
    simulate(qp_env.landing_dir, days=1, seed=4, start=DAY, plants={RIG: template})
    written = _rewrite_readings(qp_env.landing_dir, days=1)
    doc = yaml.safe_load((qp_env.plants_dir / f"{RIG}.yaml").read_text())
    _rig_config(doc)  # the one file the user writes
    (qp_env.plants_dir / f"{RIG}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    reg = load_registry(qp_env)
    assert {"coolant_flow", "hydraulic_power"} <= set(reg.quantities)
    assert {f"temperature@{ch}" for ch in CHANNELS} <= set(reg.signals())

    (tmp_path / "rig").mkdir()
    outcomes = _onboard(qp_env, tmp_path / "rig", RIG, DAY, DAY)
    assert [c for c in outcomes[1].failed_checks if "(ERROR)" in c] == []

    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        per_signal = con.sql(
            f"""SELECT quantity, channel, count(*), any_value(unit)
                FROM standard.sensor_readings WHERE plant = '{RIG}' GROUP BY ALL ORDER BY ALL"""
        ).fetchall()
        quarantined = con.sql(
            f"SELECT count(*) FROM standard.quarantine WHERE plant = '{RIG}' AND severity = 'reject'"
        ).fetchall()[0][0]
        units = con.sql(
            f"""SELECT unit_id, machine_id, start_utc, end_utc FROM standard.production_units
                WHERE plant = '{RIG}' ORDER BY unit_id"""
        ).df()
    finally:
        con.close()
    n = len(written)
    assert quarantined == 0
    assert per_signal == [
        ("coolant_flow", None, n, "l/min"),
        ("pressure", None, n, "kPa"),
        *(("temperature", ch, n, "degC") for ch in sorted(CHANNELS)),
    ]

    # plant_a's rows are untouched; the new columns read "not measured" for it
    after = _features(qp_env, "plant_a")
    pd.testing.assert_frame_equal(after[before.columns], before)
    assert (after["temperature@TS2__n"] == 0).all() and after["coolant_flow__mean"].isna().all()
    assert (after["hydraulic_power__n"] == 0).all()

    # the rig's features, recomputed from the files it delivered
    rig = _features(qp_env, RIG).set_index("unit_id")
    src = written.assign(
        ts=pd.to_datetime(written["Zeitstempel"])
        .dt.tz_localize("Europe/Berlin")
        .dt.tz_convert("UTC")
        .dt.tz_localize(None)
    )
    checked = 0
    for u in units.itertuples():
        win = src[
            (src["Maschine"] == u.machine_id) & (src["ts"] >= u.start_utc) & (src["ts"] < u.end_utc)
        ]
        if win.empty:
            continue
        row = rig.loc[u.unit_id]
        for ch in CHANNELS:
            assert row[f"temperature@{ch}__mean"] == pytest.approx(win[f"{ch} [°C]"].mean())
            assert row[f"temperature@{ch}__n"] == len(win)
        assert row["temperature__n"] == 0  # every thermometer is a channel here
        flow = win["Durchfluss [l/min]"]
        assert row["coolant_flow__max"] == pytest.approx(flow.max())
        # outside its own window, counted at its own 30 s interval
        assert row["coolant_flow__time_outside_s"] == 30.0 * ((flow < 25) | (flow > 38)).sum()
        # bar x l/min -> W: 1 bar = 1e5 Pa, 1 l/min = 1e-3/60 m3/s
        power = win["Druck [bar]"] * 1e5 * win["Durchfluss [l/min]"] * 1e-3 / 60
        assert row["hydraulic_power__mean"] == pytest.approx(power.mean(), rel=1e-9)
        assert row["hydraulic_power__n"] == len(win)
        # readings of measured signals only: 4 channels + pressure + flow per time
        assert row["n_readings"] == 6 * len(win)
        checked += 1
    assert checked > 20


@pytest.mark.parametrize(
    ("edit", "field", "says"),
    [
        (
            lambda d: d.update(
                quantities={
                    "flow": {
                        "unit": "l/min",
                        "min": 0,
                        "max": 9,
                        "description": "x",
                        "process_limits": {"lower": 5, "upper": 2},
                    }
                }
            ),
            "quantities.flow.process_limits",
            "must be below upper",
        ),
        (
            lambda d: d.update(
                quantities={"pressure": {"unit": "bar", "min": 0, "max": 9, "description": "x"}}
            ),
            "quantities.pressure",
            "shared quantity",
        ),
        (
            lambda d: d["streams"]["readings"]["quantities"].update(
                TS9={"field": "TS9", "unit": "°C", "quantity": "tempreature"}
            ),
            "streams.readings.quantities.TS9.quantity",
            "unknown quantity 'tempreature'",
        ),
        (
            lambda d: d.update(
                quantities={
                    "bad_power": {
                        "unit": "W",
                        "min": 0,
                        "max": 1,
                        "description": "x",
                        "expression": "pressure + vibration",
                    }
                }
            ),
            "quantities.bad_power.expression",
            "Cannot convert",
        ),
        (
            lambda d: d["streams"]["readings"]["quantities"].update(
                pressure={"field": "Druck", "unit": "degC"}
            ),
            "streams.readings.quantities.pressure.unit",
            "cannot be converted",
        ),
    ],
)
def test_signal_config_mistakes_name_file_and_field(
    qp_env: Paths, edit: Any, field: str, says: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _new_plant(qp_env, "plant_x", edit)
    msg = str(err.value)
    assert "plant_x.yaml" in msg and f"field '{field}'" in msg and says in msg, msg


def test_two_plants_declaring_one_local_quantity_differently_is_an_error(qp_env: Paths) -> None:
    spec = {"unit": "l/min", "min": 0, "max": 500, "description": "Coolant flow."}
    _new_plant(qp_env, "plant_x", lambda d: d.update(quantities={"coolant_flow": spec}))
    _new_plant(qp_env, "plant_y", lambda d: d.update(quantities={"coolant_flow": spec}))
    assert "coolant_flow" in load_registry(qp_env).quantities  # the same definition: one quantity
    doc = yaml.safe_load((qp_env.plants_dir / "plant_y.yaml").read_text())
    doc["quantities"]["coolant_flow"]["unit"] = "m**3/h"
    (qp_env.plants_dir / "plant_y.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(
        ConfigError, match=r"plant_y\.yaml: field 'quantities\.coolant_flow'.*plant_x\.yaml"
    ):
        load_registry(qp_env)


def test_a_local_quantitys_process_window_is_given_in_one_place(qp_env: Paths) -> None:
    """The window of a plant-local quantity comes with it from the plant file; giving it in
    data/features.yaml as well, or giving a shared quantity a window in quantities.yaml, is an
    error naming the file and field."""
    from quality_platform.features.config import load_features

    spec = {
        "unit": "l/min",
        "min": 0,
        "max": 500,
        "description": "Coolant flow.",
        "process_limits": {"upper": 40},
    }
    _new_plant(qp_env, "plant_x", lambda d: d.update(quantities={"coolant_flow": spec}))
    assert load_features(qp_env).limits_for("plant_x", "coolant_flow").upper == 40
    assert load_features(qp_env).limits_for("plant_a", "coolant_flow") is None
    f = qp_env.config_dir / "features.yaml"
    doc = yaml.safe_load(f.read_text())
    doc["limits"]["coolant_flow"] = {"upper": 45}
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(
        ConfigError, match=r"plant_x\.yaml: field 'quantities\.coolant_flow\.process_limits'"
    ):
        load_features(qp_env)
    doc["limits"].pop("coolant_flow")
    f.write_text(yaml.safe_dump(doc))
    q = qp_env.config_dir / "standard" / "quantities.yaml"
    shared = yaml.safe_load(q.read_text())
    shared["quantities"]["pressure"]["process_limits"] = {"upper": 900}
    q.write_text(yaml.safe_dump(shared, allow_unicode=True))
    with pytest.raises(ConfigError, match=r"field 'quantities\.pressure\.process_limits'"):
        load_features(qp_env)
