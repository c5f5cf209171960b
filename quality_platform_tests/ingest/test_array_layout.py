"""The ``array`` readings layout: one record per production cycle, one column per sample, each
quantity at its own sample interval (``interval_seconds``). Files are written by the simulator (or
by hand where the inputs are open-ended); the expected readings are computed here from the file
itself, independently of the standardisation, and every count reconciles per file."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quality_platform.config import (
    ConfigError,
    PlantConfig,
    load_plants,
)
from quality_platform.defs.ingest.checks import reconciliation_table
from quality_platform.ingest.pipeline import StandardResult
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform_tests.conftest import land_and_standardize

DAY = dt.date(2026, 3, 16)
NOW = pd.Timestamp("2026-03-30", tz="UTC")
TZ = "Europe/Berlin"
#: the press of these tests: temperature 60 samples at 1 Hz, pressure 300 samples at 5 Hz (bar)
SAMPLES = {"temperature": 60, "pressure": 300}
INTERVAL = {"temperature": 1.0, "pressure": 0.2}
FIELDS = {"temperature": "T_{i}", "pressure": "P_{i:03d}"}
LABELS = {"temperature": "°C", "pressure": "bar"}
TO_CANONICAL = {"temperature": 1.0, "pressure": 100.0}  # bar -> kPa
TIMESTAMPS = {
    "csv": {"field": "Zyklusstart", "kind": "local", "format": "%Y-%m-%d %H:%M:%S"},
    "parquet": {"field": "Zyklusstart", "kind": "utc"},
    "jsonl": {"field": "Zyklusstart", "kind": "epoch_ms"},
}


def array_readings(
    fmt: str = "csv",
    samples: dict[str, int] | None = None,
    intervals: dict[str, float] | None = None,
    fields: dict[str, str] | None = None,
    first_index: int = 1,
) -> dict[str, Any]:
    """The readings section of a plant YAML in the array layout."""
    samples = dict(samples or SAMPLES)  # copies: a test may change what it gets
    intervals = dict(intervals or INTERVAL)
    fields = dict(fields or FIELDS)
    return {
        "format": fmt,
        "path": "{date}/zyklen." + fmt,
        "timestamp": TIMESTAMPS[fmt],
        "machine": {"field": "Presse"},
        "layout": "array",
        "array": {"samples": samples, "first_index": first_index},
        "quantities": {
            q: {"field": fields[q], "unit": LABELS[q], "interval_seconds": intervals[q]}
            for q in samples
        },
    }


def new_plant(paths: Paths, plant_id: str, readings: dict[str, Any]) -> Path:
    """Write plant_a's YAML with ``readings`` as a new plant (two presses); returns the file."""
    doc = yaml.safe_load((paths.plants_dir / "plant_a.yaml").read_text())
    doc.update(plant_id=plant_id, machines=["P-M01", "P-M02"])
    doc["streams"]["readings"] = readings
    f = paths.plants_dir / f"{plant_id}.yaml"
    f.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return f


def run(
    paths: Paths, plant: PlantConfig, days: list[dt.date], now: pd.Timestamp = NOW
) -> StandardResult:
    return land_and_standardize(paths, plant, days, now)


def write_cycles(
    paths: Paths,
    day: dt.date,
    samples: dict[str, int],
    cycles: list[tuple[str, str]],
    first_index: int = 1,
) -> Path:
    """A hand-written CSV of ``cycles`` ((local start, press) each) in the test press's columns;
    sample j of cycle c of a quantity reads 10 + c + j / 1000."""
    names = {
        q: [
            FIELDS[q].replace("{i}", str(i)).replace("{i:03d}", f"{i:03d}")
            for i in range(first_index, first_index + n)
        ]
        for q, n in samples.items()
    }
    rows = []
    for c, (start, press) in enumerate(cycles):
        cells = [start, press]
        for q in samples:
            cells += [f"{10 + c + j / 1000:.3f}" for j in range(samples[q])]
        rows.append(",".join(cells))
    folder = paths.landing_dir / "plant_p" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "zyklen.csv"
    header = ",".join(["Zyklusstart", "Presse", *(n for q in samples for n in names[q])])
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def reconciles(paths: Paths, plant_id: str, days: list[dt.date]) -> pd.DataFrame:
    """received = accepted + quarantined for every stream and day (the platform's check)."""
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        rec = reconciliation_table(con, [(plant_id, d) for d in days], load_plants(paths))
    finally:
        con.close()
    assert (rec["difference"] == 0).all(), rec
    return rec.set_index("stream")


def read_records(path: Path) -> pd.DataFrame:
    """A readings file as text columns, with its records' row numbers in the file."""
    if path.suffix == ".csv":
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        df["_row"] = range(2, len(df) + 2)
    elif path.suffix == ".parquet":
        df = pq.read_table(path).to_pandas()
        df["Zyklusstart"] = df["Zyklusstart"].dt.tz_convert("UTC").dt.tz_localize(None)
        df["_row"] = range(1, len(df) + 1)
    else:
        df = pd.DataFrame([json.loads(x) for x in path.read_text().splitlines()])
        df["_row"] = range(1, len(df) + 1)
    return df


def cycle_starts_utc(df: pd.DataFrame, fmt: str) -> pd.Series:
    t = df["Zyklusstart"]
    if fmt == "csv":
        return (
            pd.to_datetime(t, format="%Y-%m-%d %H:%M:%S")
            .dt.tz_localize(TZ)
            .dt.tz_convert("UTC")
            .dt.tz_localize(None)
        )
    if fmt == "jsonl":
        return pd.to_datetime(t, unit="ms")
    return pd.to_datetime(t)


def expected_readings(
    df: pd.DataFrame,
    starts: pd.Series,
    samples: dict[str, int],
    intervals: dict[str, float],
    fields: dict[str, str],
    first_index: int = 1,
) -> pd.DataFrame:
    """(machine, quantity, ts_utc, value, row) of every sample of every record, computed here:
    sample i at cycle start + (i - first_index) x the quantity's interval, in canonical units."""
    parts = []
    for q, n in samples.items():
        for i in range(first_index, first_index + n):
            col = fields[q].replace("{i}", str(i)).replace("{i:03d}", f"{i:03d}")
            parts.append(
                pd.DataFrame(
                    {
                        "machine_id": df["Presse"].astype(str).to_numpy(),
                        "quantity": q,
                        "ts_utc": (
                            starts
                            + pd.to_timedelta(round((i - first_index) * intervals[q] * 1e6), "us")
                        ).to_numpy(),
                        "value": df[col].astype(float).to_numpy() * TO_CANONICAL[q],
                        "source_row": df["_row"].to_numpy(),
                        "source_column": col,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def _key(df: pd.DataFrame) -> pd.DataFrame:
    out = df[["machine_id", "quantity", "ts_utc", "value", "source_row"]].copy()
    out["machine_id"] = out["machine_id"].astype(str)
    out["quantity"] = out["quantity"].astype(str)
    out["ts_utc"] = pd.to_datetime(out["ts_utc"]).astype("datetime64[us]")
    out["value"] = out["value"].astype(float).round(6)
    out["source_row"] = out["source_row"].astype(int)
    return out.sort_values(["machine_id", "quantity", "ts_utc"]).reset_index(drop=True)


def _simulated(qp_env: Paths, fmt: str, plant_id: str = "plant_p") -> tuple[PlantConfig, Path]:
    new_plant(qp_env, plant_id, array_readings(fmt))
    plant = load_plants(qp_env)[plant_id]
    simulate(qp_env.landing_dir, days=1, seed=5, start=DAY, plants={plant_id: plant})
    return plant, qp_env.landing_dir / plant_id / DAY.isoformat() / f"zyklen.{fmt}"


# --------------------------------------------------------------------------- whole files


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_every_sample_of_every_cycle_lands_at_its_own_time(qp_env: Paths, fmt: str) -> None:
    plant, path = _simulated(qp_env, fmt)
    df = read_records(path)
    n_cycles = 2 * 24 * 60 // {"csv": 15, "parquet": 20, "jsonl": 30}[fmt]  # 2 presses
    assert len(df) == n_cycles
    want = expected_readings(df, cycle_starts_utc(df, fmt), SAMPLES, INTERVAL, FIELDS)
    res = run(qp_env, plant, [DAY])
    assert res.quarantine.empty, res.quarantine[["source_row", "rule", "message"]].head()
    assert len(res.readings) == n_cycles * (60 + 300) == len(want)
    pd.testing.assert_frame_equal(_key(res.readings), _key(want))
    # the cycle's samples: T_1 at the start, T_60 59 s later, P_300 59.8 s later
    first = res.readings[(res.readings["source_row"] == df["_row"].iloc[0])]
    span = first.groupby("quantity", observed=True)["ts_utc"].agg(lambda t: t.max() - t.min())
    assert span.to_dict() == {
        "pressure": pd.Timedelta(seconds=59.8),
        "temperature": pd.Timedelta(seconds=59),
    }
    rec = reconciles(qp_env, "plant_p", [DAY])
    assert rec.loc["readings", "received"] == n_cycles * 360


def test_a_rerun_replaces_the_day(qp_env: Paths) -> None:
    plant, _ = _simulated(qp_env, "csv")
    first = run(qp_env, plant, [DAY])
    again = run(qp_env, plant, [DAY])
    assert len(first.readings) == len(again.readings) == 192 * 360
    con = duckdb.connect(str(qp_env.warehouse_path), read_only=True)
    try:
        stored = con.sql(
            "SELECT count(*) FROM standard.sensor_readings WHERE plant = 'plant_p'"
        ).fetchall()
        receipts = con.sql(
            "SELECT count(*), sum(records), max(items_per_record) FROM raw.receipts "
            "WHERE plant = 'plant_p' AND stream = 'readings'"
        ).fetchall()
    finally:
        con.close()
    assert stored == [(192 * 360,)] and receipts == [(1, 192, 360)]
    reconciles(qp_env, "plant_p", [DAY])


# --------------------------------------------------------------------------- quarantine


def test_bad_samples_cycle_times_and_short_rows_are_held_back_with_row_and_column(
    qp_env: Paths,
) -> None:
    plant, path = _simulated(qp_env, "csv")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")

    def set_cell(row: int, column: str, value: str) -> None:  # row: the file's line number
        cells = lines[row - 1].split(",")
        cells[header.index(column)] = value
        lines[row - 1] = ",".join(cells)

    set_cell(3, "T_5", "abc")  # not a number
    set_cell(4, "P_010", "")  # an empty cell
    set_cell(5, "T_60", "9999")  # beyond temperature's plausible range
    set_cell(6, "Zyklusstart", "2026-03-16 25:00:00")  # no such cycle time
    lines[9] = lines[9].rsplit(",", 5)[0]  # row 10 ends 5 samples early
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    res = run(qp_env, plant, [DAY])
    q = res.quarantine
    rel = f"{DAY.isoformat()}/zyklen.csv"
    assert set(q["source_file"]) == {rel}
    single = q[q["source_row"] != 6][["source_row", "source_column", "rule", "n_items"]]
    single = single.astype(object).where(single.notna(), None)
    assert sorted(single.itertuples(index=False, name=None), key=str) == sorted(
        [
            (3, "T_5", "not_a_number", 1),
            (4, "P_010", "missing_value", 1),
            (5, "T_60", "out_of_range", 1),
            (10, None, "wrong_field_count", 360),  # a record of 360 values, held back whole
        ],
        key=str,
    )
    row6 = q[q["source_row"] == 6]
    assert set(row6["rule"]) == {"invalid_timestamp"} and row6["n_items"].sum() == 360
    assert set(row6["source_column"]) == {f"T_{i}" for i in range(1, 61)} | {
        f"P_{i:03d}" for i in range(1, 301)
    }
    assert "zyklen.csv row 3: [not_a_number] column 'T_5'" in str(
        q.loc[q["rule"] == "not_a_number", "message"].iloc[0]
    )
    assert len(res.readings) == 192 * 360 - 3 - 360 - 360
    # the cycle of row 6 and the short row 10 are gone whole; row 3 lost only its T_5
    rows = res.readings.groupby("source_row").size()
    assert 6 not in rows.index and 10 not in rows.index and rows[3] == 359
    rec = reconciles(qp_env, "plant_p", [DAY])
    assert rec.loc["readings", "received"] == 192 * 360
    assert rec.loc["readings", "quarantined"] == 3 + 360 + 360


def test_a_missing_sample_column_or_family_is_held_back_naming_it(qp_env: Paths) -> None:
    plant, path = _simulated(qp_env, "csv")
    df = pd.read_csv(path, dtype=str)
    df = df.drop(columns=[c for c in df.columns if c.startswith("P_")])  # no pressure at all
    df = df.rename(columns={"T_60": "T60"})  # one temperature column misnamed
    df.to_csv(path, index=False, lineterminator="\n")

    res = run(qp_env, plant, [DAY])
    q = res.quarantine[["source_column", "rule", "severity", "n_items"]]
    assert sorted(q.itertuples(index=False, name=None)) == [
        ("P_{i:03d}", "missing_required_column", "reject", 192 * 300),
        ("T60", "unknown_column", "warn", 0),
        ("T_60", "missing_required_column", "reject", 192),
    ]
    family = res.quarantine[res.quarantine["source_column"] == "P_{i:03d}"]["message"].iloc[0]
    assert "'P_001' ... 'P_300'" in family and "pressure" in family
    assert len(res.readings) == 192 * 59
    assert set(res.readings["quantity"].astype(str)) == {"temperature"}
    reconciles(qp_env, "plant_p", [DAY])


def test_a_json_record_short_of_samples_holds_back_only_those(qp_env: Paths) -> None:
    plant, path = _simulated(qp_env, "jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[1])
    for c in ("T_58", "T_59", "T_60"):
        del rec[c]
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    res = run(qp_env, plant, [DAY])
    q = res.quarantine[["source_row", "source_column", "rule", "n_items"]]
    assert sorted(q.itertuples(index=False, name=None)) == [
        (2, f"T_{i}", "missing_value", 1) for i in (58, 59, 60)
    ]
    assert len(res.readings) == 96 * 360 - 3
    reconciles(qp_env, "plant_p", [DAY])


# --------------------------------------------------------------------------- any shape


CYCLES_PER_MACHINE = st.integers(1, 3)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    samples=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    intervals=st.tuples(
        st.sampled_from([0.001, 0.05, 0.1, 0.25, 1.0, 2.5, 60.0, 1 / 3]),
        st.sampled_from([0.001, 0.05, 0.1, 0.25, 1.0, 2.5, 60.0, 1 / 3]),
    ),
    first_index=st.sampled_from([0, 1]),
    cycles=CYCLES_PER_MACHINE,
)
def test_any_sample_counts_and_intervals_give_samples_times_cycles_readings(
    qp_env: Paths,
    samples: tuple[int, int],
    intervals: tuple[float, float],
    first_index: int,
    cycles: int,
) -> None:
    """Hand-written cycles of two presses: exactly cycles x (samples of each quantity) readings,
    each at cycle start + (i - first_index) x its quantity's interval, with its value."""
    qs = ("temperature", "pressure")
    n = dict(zip(qs, samples, strict=True))
    iv = dict(zip(qs, intervals, strict=True))
    new_plant(qp_env, "plant_p", array_readings("csv", n, iv, FIELDS, first_index))
    plant = load_plants(qp_env)["plant_p"]
    span = max(n[q] * iv[q] for q in qs)
    gap = int(span) + 60  # cycles never overlap
    starts = [pd.Timestamp(DAY) + pd.Timedelta(hours=6, seconds=c * gap) for c in range(cycles)]
    path = write_cycles(
        qp_env,
        DAY,
        n,
        [(t.strftime("%Y-%m-%d %H:%M:%S"), m) for t in starts for m in ("P-M01", "P-M02")],
        first_index,
    )

    res = run(qp_env, plant, [DAY])
    assert res.quarantine.empty, res.quarantine["message"].head().tolist()
    assert len(res.readings) == 2 * cycles * (n["temperature"] + n["pressure"])
    df = read_records(path)
    want = expected_readings(df, cycle_starts_utc(df, "csv"), n, iv, FIELDS, first_index)
    pd.testing.assert_frame_equal(_key(res.readings), _key(want))
    reconciles(qp_env, "plant_p", [DAY])


# --------------------------------------------------------------------------- config


def _mistake(edit: Any) -> dict[str, Any]:
    r = array_readings()
    edit(r)
    return r


@pytest.mark.parametrize(
    ("readings", "says"),
    [
        (
            _mistake(lambda r: r["quantities"]["pressure"].update(field="T_{i}")),
            "both map sample column 'T_1'",
        ),
        (  # T{i} and T1{i} overlap from T11 on
            _mistake(
                lambda r: (
                    r["quantities"]["temperature"].update(field="T{i}"),
                    r["quantities"]["pressure"].update(field="T1{i}"),
                )
            ),
            "both map sample column 'T11'",
        ),
        (
            _mistake(lambda r: r["quantities"]["pressure"].pop("interval_seconds")),
            "quantities.pressure needs 'interval_seconds' in layout 'array'",
        ),
        (
            _mistake(lambda r: r["array"]["samples"].pop("pressure")),
            "array.samples has no sample count for ['pressure']",
        ),
        (
            _mistake(lambda r: r["array"]["samples"].update(vibration=3)),
            "array.samples names ['vibration'], which 'quantities' does not map",
        ),
        (
            _mistake(lambda r: r["quantities"]["temperature"].update(field="T_")),
            "quantities.temperature.field 'T_' must hold the sample index once",
        ),
        (
            _mistake(lambda r: r["quantities"]["temperature"].update(field="T_{i:q}")),
            "quantities.temperature.field 'T_{i:q}'",
        ),
        (_mistake(lambda r: r.pop("array")), "layout 'array' needs an 'array' section"),
        (
            _mistake(lambda r: r.update(layout="wide")),
            "an 'array' section is only for layout 'array'",
        ),
        (_mistake(lambda r: r["machine"].update(field="T_7")), "field 'T_7' is the machine"),
        (
            _mistake(lambda r: r["array"]["samples"].update(pressure=0)),
            "streams.readings.array.samples.pressure",
        ),
        (
            _mistake(lambda r: r["quantities"]["pressure"].update(interval_seconds=0)),
            "streams.readings.quantities.pressure.interval_seconds",
        ),
    ],
)
def test_config_mistakes_are_errors_naming_file_and_field(
    qp_env: Paths, readings: dict[str, Any], says: str
) -> None:
    f = new_plant(qp_env, "plant_p", readings)
    with pytest.raises(ConfigError) as exc:
        load_plants(qp_env)
    msg = str(exc.value)
    assert str(f) in msg and "streams.readings" in msg and says in msg, msg


def test_a_wide_channel_may_declare_its_own_interval(qp_env: Paths) -> None:
    """``interval_seconds`` on a wide mapping is the channel's rate, loaded as given (the feature
    layer uses it); landing is unchanged."""
    doc = yaml.safe_load((qp_env.plants_dir / "plant_a.yaml").read_text())
    doc["streams"]["readings"]["quantities"]["vibration"]["interval_seconds"] = 10
    (qp_env.plants_dir / "plant_a.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    rs = load_plants(qp_env)["plant_a"].streams.readings
    assert rs.quantities["vibration"].interval_seconds == 10
    assert rs.quantities["temperature"].interval_seconds is None
    assert rs.values_per_record == 4 and rs.sample_columns("vibration") == [("Vibration", 0.0)]


# --------------------------------------------------------------------------- days and clocks


def test_a_cycle_is_on_its_start_day_even_when_its_samples_run_past_midnight(
    qp_env: Paths,
) -> None:
    """A 2-hour batch starting at 23:30 belongs to its start day, every sample with it (beyond the
    partition's 60-minute grace); a cycle that starts on another day is held back whole."""
    n = {"temperature": 120, "pressure": 2}
    new_plant(qp_env, "plant_p", array_readings("csv", n, {"temperature": 60.0, "pressure": 1.0}))
    plant = load_plants(qp_env)["plant_p"]
    cycles = [
        ("2026-03-16 23:30:00", "P-M01"),
        ("2026-03-16 12:00:00", "P-M02"),
        ("2026-03-17 02:00:00", "P-M02"),  # the next day's cycle in this day's file
    ]
    write_cycles(qp_env, DAY, n, cycles)
    res = run(qp_env, plant, [DAY])
    r = res.readings
    assert len(r) == 2 * 122 and set(r["partition_date"].dt.date) == {DAY}
    late = r[(r["source_row"] == 2) & (r["quantity"] == "temperature")]["ts_utc"]
    assert late.min() == pd.Timestamp("2026-03-16 22:30") and late.max() == pd.Timestamp(
        "2026-03-17 00:29"
    )  # 23:30 CET + 119 min
    q = res.quarantine
    assert set(zip(q["source_row"], q["rule"], strict=True)) == {(4, "timestamp_outside_partition")}
    assert q["n_items"].sum() == 122
    reconciles(qp_env, "plant_p", [DAY])


def test_the_fall_back_hour_gives_two_cycles_of_one_press_their_own_times(
    qp_env: Paths,
) -> None:
    """02:30 occurs twice on 2026-10-25 in Berlin: the press's first cycle at that local time is
    daylight time, its second standard time - per cycle, not per sample column."""
    day = dt.date(2026, 10, 25)
    n = {"temperature": 3, "pressure": 5}
    new_plant(qp_env, "plant_p", array_readings("csv", n))
    plant = load_plants(qp_env)["plant_p"]
    write_cycles(qp_env, day, n, [("2026-10-25 02:30:00", "P-M01")] * 2)
    res = run(qp_env, plant, [day], now=pd.Timestamp("2026-11-01", tz="UTC"))
    assert res.quarantine.empty, res.quarantine["message"].tolist()
    starts = res.readings.groupby("source_row")["ts_utc"].min().to_dict()
    assert starts == {2: pd.Timestamp("2026-10-25 00:30"), 3: pd.Timestamp("2026-10-25 01:30")}
    assert len(res.readings) == 2 * 8


def test_sample_columns_with_unit_labels_are_checked_column_by_column(qp_env: Paths) -> None:
    readings = {**array_readings("csv"), "header_units": True}
    new_plant(qp_env, "plant_p", readings)
    plant = load_plants(qp_env)["plant_p"]
    simulate(qp_env.landing_dir, days=1, seed=5, start=DAY, plants={"plant_p": plant})
    path = qp_env.landing_dir / "plant_p" / DAY.isoformat() / "zyklen.csv"
    text = path.read_text(encoding="utf-8")
    header, rest = text.split("\n", 1)
    assert "T_1 [°C]" in header and "P_300 [bar]" in header
    path.write_text(header.replace("T_7 [°C]", "T_7 [K]") + "\n" + rest, encoding="utf-8")
    res = run(qp_env, plant, [DAY])
    q = res.quarantine[["source_column", "rule", "n_items"]]
    assert list(q.itertuples(index=False, name=None)) == [("T_7 [K]", "unit_label_mismatch", 192)]
    assert len(res.readings) == 192 * 359
    reconciles(qp_env, "plant_p", [DAY])


def test_a_file_of_many_days_lands_each_cycle_once_on_its_day(qp_env: Paths) -> None:
    readings = {**array_readings("csv"), "path": "zyklen.csv"}
    new_plant(qp_env, "plant_p", readings)
    plant = load_plants(qp_env)["plant_p"]
    simulate(qp_env.landing_dir, days=2, seed=5, start=DAY, plants={"plant_p": plant})
    days = [DAY, DAY + dt.timedelta(days=1)]
    per_day = {}
    for d in days:  # one day per run, as the schedule does
        per_day[d] = len(run(qp_env, plant, [d]).readings)
    assert per_day == dict.fromkeys(days, 192 * 360)
    rec = reconciles(qp_env, "plant_p", days)
    assert rec.loc["readings", "received"].tolist() == [192 * 360] * 2
