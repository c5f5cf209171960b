"""unit_features SQL on a tiny hand-made warehouse: every statistic exact, the window crossing
midnight into the next partition, the grace before midnight, a unit without readings, the gates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from quality_platform.config import PlantConfig, load_plants, load_quantities, merged_registry
from quality_platform.defs.features.checks import (
    check_coverage,
    check_feature_schema,
    check_one_row_per_unit,
)
from quality_platform.features.compute import compute_unit_features
from quality_platform.features.config import FeatureConfig, Limits
from quality_platform.features.schema import (
    CONTEXT,
    FEATURE_SCHEMA,
    STATISTICS,
    TABLE,
    columns,
    feature_definitions,
    pandera_for,
)
from quality_platform.standard.schemas import columns_conform as conform
from quality_platform.standard.schemas import columns_ddl as ddl
from quality_platform.standard.schemas import columns_table_schema as table_schema
from quality_platform.standard.schemas import duckdb_ddl
from quality_platform.warehouse import replace_partitions

D = dt.date(2026, 3, 16)
PLANT = "plant_a"
INTERVAL = 120.0  # seconds between readings of the plant
CFG = FeatureConfig(
    feature_set_version=1,
    statistics=list(STATISTICS),
    limits={"temperature": Limits(lower=195, upper=205), "vibration": Limits(upper=4.5)},
)


def _plant() -> PlantConfig:
    """plant_a's config with the test's reading interval."""
    return load_plants()[PLANT].model_copy(update={"reading_interval_seconds": INTERVAL})


def _ts(day: dt.date, hhmm: str) -> dt.datetime:
    h, m = map(int, hhmm.split(":"))
    return dt.datetime(day.year, day.month, day.day, h, m)


def _unit(uid: str, day: dt.date, machine: str, start: dt.datetime, end: dt.datetime) -> dict:
    return dict(
        plant=PLANT,
        partition_date=day,
        unit_id=uid,
        machine_id=machine,
        line="L1",
        product="P1",
        material_lot="LOT1",
        supplier="S1",
        operator_pseudonym="op_x",
        pseudonym_key_id="k1",
        start_utc=start,
        end_utc=end,
        time_basis="clock",
        inspected_at_utc=None,
        rework=None,
        scrap=None,
        defect=None,
        source_file="f.csv",
        source_row=1,
    )


def _reading(day: dt.date, machine: str, ts: dt.datetime, quantity: str, value: float) -> dict:
    units = {"temperature": "degC", "pressure": "kPa", "vibration": "mm/s"}
    return dict(
        plant=PLANT,
        partition_date=day,
        machine_id=machine,
        ts_utc=ts,
        quantity=quantity,
        value=value,
        unit=units[quantity],
        source_file="s.csv",
        source_row=1,
    )


#: U1's temperature readings inside its window [10:00, 10:10) (times in minutes after 10:00).
U1_TEMPS = {0: 200.0, 2: 202.0, 4: 198.0, 6: 210.0, 8: 206.0}


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(":memory:")
    c.execute("CREATE SCHEMA standard")
    c.execute(duckdb_ddl("production_units"))
    c.execute(duckdb_ddl("sensor_readings"))
    prev, nxt = D - dt.timedelta(days=1), D + dt.timedelta(days=1)
    units = [
        _unit("U1", D, "M1", _ts(D, "10:00"), _ts(D, "10:10")),
        _unit("U2-midnight", D, "M1", _ts(D, "23:50"), _ts(nxt, "00:20")),  # runs into the next day
        _unit("U3-empty", D, "M3", _ts(D, "12:00"), _ts(D, "12:30")),  # no readings at all
        _unit(
            "U4-grace", D, "M2", _ts(prev, "23:30"), _ts(prev, "23:45")
        ),  # starts before midnight
        _unit("U0-other-day", prev, "M1", _ts(prev, "10:00"), _ts(prev, "10:10")),  # not requested
    ]
    readings = [
        _reading(D, "M1", _ts(D, "10:00") + dt.timedelta(minutes=k), "temperature", v)
        for k, v in U1_TEMPS.items()
    ]
    readings += [
        _reading(D, "M1", _ts(D, "09:58"), "temperature", 500.0),  # before the window
        _reading(D, "M1", _ts(D, "10:10"), "temperature", 500.0),  # at end_utc: excluded
        _reading(D, "M2", _ts(D, "10:04"), "temperature", 500.0),  # other machine
        _reading(D, "M1", _ts(D, "10:05"), "pressure", 800.0),  # one reading of a second quantity
        _reading(D, "M1", _ts(D, "23:55"), "vibration", 1.0),  # U2, partition D
        _reading(nxt, "M1", _ts(nxt, "00:05"), "vibration", 2.0),  # U2, next partition
        _reading(nxt, "M1", _ts(nxt, "00:15"), "vibration", 6.0),  # U2, next partition, > upper
        _reading(prev, "M2", _ts(prev, "23:40"), "temperature", 199.0),  # U4, previous partition
    ]
    for table, rows in (("production_units", units), ("sensor_readings", readings)):
        df = pd.DataFrame(rows)
        c.register("_rows", df)
        c.execute(f"INSERT INTO standard.{table} BY NAME SELECT * FROM _rows")
        c.unregister("_rows")
    return c


def _features(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    reg = load_quantities()
    t = compute_unit_features(con, _plant(), [D], reg, CFG)
    return t.to_pandas().set_index("unit_id", drop=False)


def test_statistics_are_exact(con: duckdb.DuckDBPyConnection) -> None:
    f = _features(con)
    u1 = f.loc["U1"]
    v = np.array(list(U1_TEMPS.values()))
    hours = np.array(list(U1_TEMPS)) / 60.0
    assert u1["temperature__n"] == 5
    assert u1["temperature__mean"] == pytest.approx(v.mean())
    assert u1["temperature__std"] == pytest.approx(v.std(ddof=1))
    assert (u1["temperature__min"], u1["temperature__max"]) == (198.0, 210.0)
    assert u1["temperature__last"] == 206.0  # value at the latest time in the window
    assert u1["temperature__slope"] == pytest.approx(np.polyfit(hours, v, 1)[0])  # per hour
    assert u1["temperature__time_outside_s"] == 2 * INTERVAL  # 210 and 206 are above 205
    # one pressure reading: no spread, no slope; pressure has no limits here -> NULL
    assert (
        u1["pressure__n"] == 1 and u1["pressure__mean"] == 800.0 and u1["pressure__last"] == 800.0
    )
    assert pd.isna(u1["pressure__std"]) and pd.isna(u1["pressure__slope"])
    assert pd.isna(u1["pressure__time_outside_s"])
    assert u1["n_readings"] == 6
    # quantities the unit has no readings of: NULL statistics, count 0
    assert (
        u1["vibration__n"] == 0
        and pd.isna(u1["vibration__mean"])
        and pd.isna(u1["vibration__time_outside_s"])
    )


def test_window_crossing_midnight_reads_the_next_partition(con: duckdb.DuckDBPyConnection) -> None:
    u2 = _features(con).loc["U2-midnight"]
    assert u2["vibration__n"] == 3 and u2["n_readings"] == 3
    assert u2["vibration__mean"] == pytest.approx(3.0)
    assert u2["vibration__last"] == 6.0
    assert u2["vibration__slope"] == pytest.approx(
        np.polyfit([5 / 60, 15 / 60, 25 / 60], [1, 2, 6], 1)[0]
    )
    assert u2["vibration__time_outside_s"] == INTERVAL
    assert u2["partition_date"] == D  # the unit stays on its own production day


def test_grace_before_midnight_reads_the_previous_partition(con: duckdb.DuckDBPyConnection) -> None:
    u4 = _features(con).loc["U4-grace"]
    assert u4["temperature__n"] == 1 and u4["temperature__mean"] == 199.0 and u4["n_readings"] == 1


def test_every_unit_gets_one_row_even_without_readings(con: duckdb.DuckDBPyConnection) -> None:
    f = _features(con)
    assert sorted(f["unit_id"]) == ["U1", "U2-midnight", "U3-empty", "U4-grace"]  # day D only
    u3 = f.loc["U3-empty"]
    assert u3["n_readings"] == 0
    reg = load_quantities()
    for q in reg.quantities:
        assert u3[f"{q}__n"] == 0
        assert all(pd.isna(u3[f"{q}__{s}"]) for s in STATISTICS if s != "n")


def test_fixed_schema_matches_the_one_declaration(con: duckdb.DuckDBPyConnection) -> None:
    reg = load_quantities()
    cols = columns(reg, CFG)
    f = _features(con).reset_index(drop=True)
    assert list(f.columns) == [c.name for c in cols]
    assert len(cols) == len(CONTEXT) + len(reg.quantities) * len(STATISTICS)
    assert "operator_pseudonym" not in f.columns and not {"defect", "rework", "scrap"} & set(
        f.columns
    )
    pandera_for(reg, CFG).validate(conform(f, cols), lazy=True)
    assert all(c.description for c in table_schema(cols).columns)
    defs = feature_definitions(reg, CFG)
    assert set(defs["name"]) == {c.name for c in cols[len(CONTEXT) - 1 :]}  # n_readings + features
    assert defs.set_index("name").loc["torque__slope", "unit"] == "N*m/h"
    # the gate catches an inconsistent row
    bad = conform(f, cols)
    bad.loc[0, "temperature__mean"] = 1e6
    with pytest.raises(Exception, match="consistent_statistics"):
        pandera_for(reg, CFG).validate(bad, lazy=True)


def test_gates_on_the_written_table(con: duckdb.DuckDBPyConnection) -> None:
    reg = load_quantities()
    plants = load_plants()
    keys = [(PLANT, D)]
    t = compute_unit_features(con, _plant(), [D], reg, CFG)
    replace_partitions(
        con, FEATURE_SCHEMA, TABLE, t, keys, ddl=ddl(columns(reg, CFG), FEATURE_SCHEMA, TABLE)
    )
    assert check_feature_schema(con, keys, reg, CFG).passed
    assert check_one_row_per_unit(con, keys).passed
    # 4 units, 1-2 of them with readings per quantity of plant_a: far below the thresholds
    cov = check_coverage(con, keys, plants, CFG.coverage)
    assert not cov.passed and cov.severity == dg.AssetCheckSeverity.ERROR
    # a unit lost from the features, and one counted twice, are caught
    con.execute(f"DELETE FROM {FEATURE_SCHEMA}.{TABLE} WHERE unit_id = 'U3-empty'")
    assert not check_one_row_per_unit(con, keys).passed
    con.execute(
        f"INSERT INTO {FEATURE_SCHEMA}.{TABLE} SELECT * FROM {FEATURE_SCHEMA}.{TABLE} WHERE unit_id = 'U1'"
    )
    con.execute(
        f"UPDATE {FEATURE_SCHEMA}.{TABLE} SET unit_id = 'U3-empty' WHERE rowid = "
        f"(SELECT max(rowid) FROM {FEATURE_SCHEMA}.{TABLE})"
    )
    assert check_one_row_per_unit(con, keys).passed  # counts and ids line up again
    con.execute(
        f"INSERT INTO {FEATURE_SCHEMA}.{TABLE} SELECT * FROM {FEATURE_SCHEMA}.{TABLE} WHERE unit_id = 'U1'"
    )
    res = check_one_row_per_unit(con, keys)
    assert not res.passed and "more than one row" in res.description


def test_no_units_no_rows_and_missing_tables() -> None:
    c = duckdb.connect(":memory:")
    t = compute_unit_features(c, _plant(), [D], load_quantities(), CFG)
    assert t.num_rows == 0 and t.column_names == [
        col.name for col in columns(load_quantities(), CFG)
    ]


def test_a_channel_is_its_own_signal_with_its_own_sample_interval(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """Readings of a channel (``temperature`` channel ``TS1``, sampled every 30 s) are features
    of ``temperature@TS1``, apart from the quantity's own sensor; ``time_outside_s`` counts the
    channel's samples at its own interval."""
    plant = _plant()
    rs = plant.streams.readings
    q = dict(rs.quantities)
    q["TS1"] = type(rs.quantities["temperature"])(
        field="TS1", unit="°C", quantity="temperature", interval_seconds=30
    )
    plant = plant.model_copy(
        update={
            "streams": plant.streams.model_copy(
                update={"readings": rs.model_copy(update={"quantities": q})}
            )
        }
    )
    shared = load_quantities()
    reg = merged_registry(shared, {PLANT: plant}, Path("plants"))
    ts1 = {1: 196.0, 3: 207.0, 5: 190.0}  # two outside [195, 205]
    rows = pd.DataFrame(
        [
            {**_reading(D, "M1", _ts(D, "10:00") + dt.timedelta(minutes=k), "temperature", v)}
            | {"channel": "TS1"}
            for k, v in ts1.items()
        ]
    )
    con.register("_rows", rows)
    con.execute("INSERT INTO standard.sensor_readings BY NAME SELECT * FROM _rows")
    con.unregister("_rows")
    u1 = compute_unit_features(con, plant, [D], reg, CFG).to_pandas().set_index("unit_id").loc["U1"]
    assert u1["temperature@TS1__n"] == 3
    assert u1["temperature@TS1__mean"] == pytest.approx(np.mean(list(ts1.values())))
    assert u1["temperature@TS1__time_outside_s"] == 2 * 30.0  # its own interval
    assert u1["temperature__n"] == 5  # the quantity's own sensor, unchanged
    assert u1["temperature__time_outside_s"] == 2 * INTERVAL
    assert u1["n_readings"] == 6 + 3
    # the gate's consistency rule (n_readings = sum of measured counts) holds with channels
    t = compute_unit_features(con, plant, [D], reg, CFG).to_pandas()
    pandera_for(reg, CFG).validate(conform(t, columns(reg, CFG)))
