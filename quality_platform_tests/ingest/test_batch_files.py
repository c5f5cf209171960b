"""Readings delivered one file per batch (``streams.readings.batch``): each file holds one batch's
time series, the batch id from the file name or a column, times absolute or seconds since the
batch start. Files are written by the simulator, or by hand where the inputs are open-ended or
broken; the expected readings are computed here from the files themselves, and every count
reconciles per file (received = accepted + quarantined)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quality_platform.config import ConfigError, PlantConfig, load_plants
from quality_platform.ingest.pipeline import StandardResult
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform_tests.ingest.test_array_layout import new_plant, reconciles, run

DAY = dt.date(2026, 3, 16)
TZ = "Europe/Berlin"
PLANT = "plant_r"
MACHINES = ("R1", "R2")
LOCAL = "%Y-%m-%d %H:%M:%S"
#: a row's own local time, to the microsecond (a batch may sample faster than once a second)
LOCAL_US = "%Y-%m-%d %H:%M:%S.%f"
TO_CANONICAL = {"temperature": 1.0, "pressure": 100.0}  # degC -> degC, bar -> kPa
FIELDS = {"temperature": "temp_C", "pressure": "pressure_bar"}
UNITS_HEADER = "Auftrag,Linie,Maschine,Start,Ende,Produkt,Charge,Lieferant,Werker\n"
#: the batch id is the file's name without its extension
BY_NAME = r"(?P<batch>[^/]+)\.csv$"


def batch_readings(
    elapsed: bool = True, by_name: bool = True, path: str = "{date}/batches/*.csv", **extra: Any
) -> dict[str, Any]:
    """The readings section of one file per batch: ``elapsed``: a ``batch_start`` column and
    ``t_s`` seconds since it (else each row's own local time in ``time``); ``by_name``: the batch
    id from the file name (else a ``batch`` column)."""
    return {
        "format": "csv",
        "path": path,
        "timestamp": {
            "field": "batch_start" if elapsed else "time",
            "kind": "local",
            "format": LOCAL if elapsed else LOCAL_US,
        },
        "machine": {"field": "reactor"},
        "layout": "wide",
        "batch": {
            **({"from_filename": BY_NAME} if by_name else {"field": "batch"}),
            **({"elapsed_seconds": "t_s"} if elapsed else {}),
        },
        "quantities": {
            "temperature": {"field": FIELDS["temperature"], "unit": "°C"},
            "pressure": {"field": FIELDS["pressure"], "unit": "bar"},
        },
        **extra,
    }


def plant_with(paths: Paths, readings: dict[str, Any], many_days: bool = False) -> PlantConfig:
    """plant_a's YAML with ``readings`` as plant_r (two reactors; ``many_days``: its units and
    inspections in one folder for all days too), loaded as the platform loads it."""
    f = new_plant(paths, PLANT, readings)
    doc = yaml.safe_load(f.read_text())
    doc["machines"] = list(MACHINES)
    if many_days:
        for s in ("units", "inspections"):
            doc["streams"][s]["path"] = doc["streams"][s]["path"].replace("{date}/", "")
    f.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return load_plants(paths)[PLANT]


def write(paths: Paths, rel: str, text: str) -> Path:
    f = paths.landing_dir / PLANT / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text, encoding="utf-8")
    return f


def units_file(paths: Paths, rel: str, units: list[tuple[str, str, str, str]]) -> None:
    """A units file of (unit id, machine, local start, local end)."""
    rows = "".join(f"{u},L1,{m},{s},{e},P1,LOT1,S1,W1\n" for u, m, s, e in units)
    write(paths, rel, UNITS_HEADER + rows)


def batch_file(
    paths: Paths,
    rel: str,
    machine: str,
    start: pd.Timestamp,
    offsets: list[float],
    elapsed: bool = True,
    batch: str | None = None,
) -> Path:
    """A hand-written batch file: one row per offset (seconds since ``start``, local), temperature
    20 + i / 10 and pressure 1 + i / 100 in row i."""
    head = ["batch_start", "reactor", "t_s"] if elapsed else ["time", "reactor"]
    head += [] if batch is None else ["batch"]
    lines = [",".join([*head, FIELDS["temperature"], FIELDS["pressure"]])]
    for i, off in enumerate(offsets):
        t = [start.strftime(LOCAL), machine, repr(off)] if elapsed else []
        if not elapsed:
            t = [(start + pd.Timedelta(microseconds=round(off * 1e6))).strftime(LOCAL_US), machine]
        t += [] if batch is None else [batch]
        lines.append(",".join([*t, f"{20 + i / 10:.1f}", f"{1 + i / 100:.2f}"]))
    return write(paths, rel, "\n".join(lines) + "\n")


def expected(files: list[Path], root: Path, elapsed: bool) -> pd.DataFrame:
    """(source_file, source_row, machine_id, quantity, ts_utc, value) of every value of the batch
    files, computed from the files: a row at batch start + t_s (or its own time), local -> UTC."""
    parts = []
    for f in files:
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        fmt = LOCAL if elapsed else LOCAL_US
        local = pd.to_datetime(df["batch_start" if elapsed else "time"], format=fmt)
        if elapsed:
            local = local + pd.to_timedelta(df["t_s"].astype(float).mul(1e6).round(), unit="us")
        start = pd.to_datetime(df["batch_start" if elapsed else "time"], format=fmt)
        utc = (
            start.dt.tz_localize(TZ).dt.tz_convert("UTC").dt.tz_localize(None)
            + (local - start)  # the elapsed seconds are added to the start's instant
        )
        for q, col in FIELDS.items():
            parts.append(
                pd.DataFrame(
                    {
                        "source_file": f.relative_to(root).as_posix(),
                        "source_row": range(2, len(df) + 2),
                        "machine_id": df["reactor"],
                        "quantity": q,
                        "ts_utc": utc.astype("datetime64[us]"),
                        "value": df[col].astype(float) * TO_CANONICAL[q],
                    }
                )
            )
    return _key(pd.concat(parts, ignore_index=True))


def _key(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["source_file", "source_row", "machine_id", "quantity", "ts_utc", "value"]
    out = df[cols].copy()
    for c in ("source_file", "machine_id", "quantity"):
        out[c] = out[c].astype(str)
    out["source_row"] = out["source_row"].astype(int)
    out["ts_utc"] = pd.to_datetime(out["ts_utc"]).astype("datetime64[us]")
    out["value"] = out["value"].astype(float).round(6)
    return out.sort_values(cols[:4]).reset_index(drop=True)


def quarantined(res: StandardResult) -> list[tuple[Any, ...]]:
    """(file, row, column, rule, items) of every quarantine entry, sorted."""
    q = res.quarantine[["source_file", "source_row", "source_column", "rule", "n_items"]]
    q = q.astype(object).where(q.notna(), None)
    return sorted(q.itertuples(index=False, name=None), key=str)


# --------------------------------------------------------------------------- simulated files


@pytest.mark.parametrize(
    ("elapsed", "by_name"), [(True, True), (False, False)], ids=["elapsed+name", "absolute+column"]
)
def test_every_row_of_every_batch_file_lands_at_its_own_time(
    qp_env: Paths, elapsed: bool, by_name: bool
) -> None:
    plant = plant_with(qp_env, batch_readings(elapsed, by_name))
    simulate(qp_env.landing_dir, days=1, seed=5, start=DAY, plants={PLANT: plant})
    root = qp_env.landing_dir / PLANT
    files = sorted((root / DAY.isoformat() / "batches").glob("*.csv"))
    units = pd.read_csv(root / DAY.isoformat() / "auftraege.csv", dtype=str)
    # one file per unit, named by its id: 2 reactors x 96 cycles of 15 minutes
    assert sorted(f.stem for f in files) == sorted(units["Auftrag"]) and len(files) == 192
    res = run(qp_env, plant, [DAY])
    assert res.quarantine.empty, res.quarantine["message"].head().tolist()
    want = expected(files, root, elapsed)
    assert len(want) == 2 * 1440 * 2
    pd.testing.assert_frame_equal(_key(res.readings), want)
    # a batch's readings lie in its unit's window on its machine (what the features select)
    first = units.iloc[0]
    rows = res.readings[res.readings["source_file"].str.endswith(f"/{first['Auftrag']}.csv")]
    start = pd.Timestamp(first["Start"]).tz_localize(TZ).tz_convert("UTC").tz_localize(None)
    end = pd.Timestamp(first["Ende"]).tz_localize(TZ).tz_convert("UTC").tz_localize(None)
    assert set(rows["machine_id"].astype(str)) == {first["Maschine"]}
    assert rows["ts_utc"].min() == start and rows["ts_utc"].max() < end
    rec = reconciles(qp_env, PLANT, [DAY])
    assert rec.loc["readings", "received"] == 2 * 1440 * 2


def test_files_of_many_days_in_one_folder_land_once_each_on_their_start_day(
    qp_env: Paths,
) -> None:
    """``batches/*.csv`` without ``{date}``: landed one day per run, as the schedule does, every
    batch lands once, on the local day it starts, and its issues are reported once."""
    plant = plant_with(qp_env, batch_readings(path="batches/*.csv"), many_days=True)
    simulate(qp_env.landing_dir, days=2, seed=5, start=DAY, plants={PLANT: plant})
    root = qp_env.landing_dir / PLANT
    files = sorted((root / "batches").glob("*.csv"))
    assert len(files) == 2 * 192
    bad = files[200]  # a batch of the second day: one elapsed time is no number
    lines = bad.read_text().splitlines()
    lines[3] = lines[3].replace(",120,", ",zwei,", 1)
    bad.write_text("\n".join(lines) + "\n")
    days = [DAY, DAY + dt.timedelta(days=1)]
    results = {d: run(qp_env, plant, [d]) for d in days}
    assert {d: len(r.readings) for d, r in results.items()} == {
        DAY: 2 * 1440 * 2,
        days[1]: 2 * 1440 * 2 - 2,
    }
    for d, r in results.items():
        assert set(r.readings["partition_date"].dt.date) == {d}
        starts = r.readings["source_file"].str.extract(r"-(\d{8})-")[0]
        assert set(starts) == {d.strftime("%Y%m%d")}  # the unit id holds its start day
    assert results[DAY].quarantine.empty
    assert quarantined(results[days[1]]) == [
        (bad.relative_to(root).as_posix(), 4, col, "invalid_elapsed_time", 1)
        for col in sorted(FIELDS.values())
    ]
    rec = reconciles(qp_env, PLANT, days)
    assert rec.loc["readings", "received"].tolist() == [2 * 1440 * 2] * 2


# --------------------------------------------------------------------------- hand-written files


def _two_units(paths: Paths, day: dt.date = DAY, folder: str | None = None) -> None:
    folder = day.isoformat() if folder is None else folder
    units_file(
        paths,
        f"{folder}/auftraege.csv",
        [
            ("B-0001", "R1", f"{day} 08:00:00", f"{day} 09:00:00"),
            ("B-0002", "R2", f"{day} 23:30:00", f"{day + dt.timedelta(days=1)} 01:30:00"),
        ],
    )


def test_a_batch_past_midnight_belongs_to_the_day_it_starts(qp_env: Paths) -> None:
    """A 2-hour batch from 23:30 keeps every row on its start day (past the 60-minute grace),
    for absolute times (its earliest row) and for seconds since a start column alike."""
    for elapsed in (True, False):
        plant = plant_with(qp_env, batch_readings(elapsed, by_name=elapsed))
        _two_units(qp_env)
        start = pd.Timestamp(f"{DAY} 23:30:00")
        f = batch_file(
            qp_env,
            f"{DAY}/batches/B-0002.csv",
            "R2",
            start,
            [0, 1800, 3600, 5400, 7199],
            elapsed,
            None if elapsed else "B-0002",
        )
        res = run(qp_env, plant, [DAY])
        assert res.quarantine.empty, res.quarantine["message"].tolist()
        assert len(res.readings) == 10 and set(res.readings["partition_date"].dt.date) == {DAY}
        assert res.readings["ts_utc"].max() == pd.Timestamp("2026-03-17 00:29:59")  # CET
        pd.testing.assert_frame_equal(
            _key(res.readings), expected([f], qp_env.landing_dir / PLANT, elapsed)
        )
        reconciles(qp_env, PLANT, [DAY])
        f.unlink()


def test_bad_files_and_rows_are_held_back_with_file_row_column_and_rule(qp_env: Paths) -> None:
    plant = plant_with(qp_env, batch_readings())
    _two_units(qp_env)
    start = pd.Timestamp(f"{DAY} 08:00:00")
    good = batch_file(qp_env, f"{DAY}/batches/B-0001.csv", "R1", start, [0, 60, 120, 180])
    lines = good.read_text().splitlines()
    lines[2] = lines[2].replace(",60,", ",1 min,")  # row 3: elapsed time no number
    lines[4] = lines[4].replace(",180,", ",inf,")  # row 5: not finite
    good.write_text("\n".join(lines) + "\n")
    late = pd.Timestamp(f"{DAY} 23:30:00")
    batch_file(qp_env, f"{DAY}/batches/B-9999.csv", "R2", late, [0, 60])  # not a unit
    batch_file(qp_env, f"{DAY}/batches/b0002 (copy).txt.csv", "R2", late, [0])  # name gives none
    lost = batch_file(qp_env, f"{DAY}/batches/B-0002.csv", "R2", late, [0, 60, 120])
    df = pd.read_csv(lost, dtype=str).drop(columns=["t_s"])  # its elapsed column is missing
    df.to_csv(lost, index=False, lineterminator="\n")

    res = run(qp_env, plant, [DAY])
    b = f"{DAY}/batches/"
    # the file name of BY_NAME is the whole name, so 'b0002 (copy).txt' would be an id: it is
    # no unit; a name the pattern does not match at all is held back whole (below)
    assert quarantined(res) == sorted(
        [
            (f"{b}B-0001.csv", 3, "pressure_bar", "invalid_elapsed_time", 1),
            (f"{b}B-0001.csv", 3, "temp_C", "invalid_elapsed_time", 1),
            (f"{b}B-0001.csv", 5, "pressure_bar", "invalid_elapsed_time", 1),
            (f"{b}B-0001.csv", 5, "temp_C", "invalid_elapsed_time", 1),
            (f"{b}B-0002.csv", 1, "t_s", "missing_required_column", 3 * 2),
            (f"{b}B-9999.csv", 2, "pressure_bar", "unknown_unit", 1),
            (f"{b}B-9999.csv", 2, "temp_C", "unknown_unit", 1),
            (f"{b}B-9999.csv", 3, "pressure_bar", "unknown_unit", 1),
            (f"{b}B-9999.csv", 3, "temp_C", "unknown_unit", 1),
            (f"{b}b0002 (copy).txt.csv", 2, "pressure_bar", "unknown_unit", 1),
            (f"{b}b0002 (copy).txt.csv", 2, "temp_C", "unknown_unit", 1),
        ],
        key=str,
    )
    messages = res.quarantine.set_index("rule")["message"].astype(str)
    assert "B-0001.csv row 3: [invalid_elapsed_time] elapsed time '1 min' in 't_s'" in str(
        messages["invalid_elapsed_time"].iloc[0]
    )
    assert "batch 'B-9999' is not among the units of this day" in messages["unknown_unit"].iloc[0]
    # the valid rows keep flowing: B-0001's rows 2 and 4
    assert sorted(res.readings["source_row"].tolist()) == [2, 2, 4, 4]
    rec = reconciles(qp_env, PLANT, [DAY])
    assert rec.loc["readings", "received"] == (4 + 2 + 1 + 3) * 2


def test_a_file_name_the_pattern_does_not_match_is_held_back_whole(qp_env: Paths) -> None:
    readings = batch_readings()
    readings["batch"]["from_filename"] = r"(?P<batch>B-\d{4})\.csv$"
    plant = plant_with(qp_env, readings)
    _two_units(qp_env)
    start = pd.Timestamp(f"{DAY} 08:00:00")
    batch_file(qp_env, f"{DAY}/batches/B-0001.csv", "R1", start, [0, 60])
    batch_file(qp_env, f"{DAY}/batches/batch_1.csv", "R1", start, [0, 60, 120])
    res = run(qp_env, plant, [DAY])
    assert quarantined(res) == [(f"{DAY}/batches/batch_1.csv", 1, None, "invalid_file_name", 6)]
    assert "does not match '2026-03-16/batches/batch_1.csv'" in str(
        res.quarantine["message"].iloc[0]
    )
    assert len(res.readings) == 4
    reconciles(qp_env, PLANT, [DAY])


def test_a_batch_id_column_left_empty_holds_back_its_rows(qp_env: Paths) -> None:
    plant = plant_with(qp_env, batch_readings(elapsed=False, by_name=False))
    _two_units(qp_env)
    start = pd.Timestamp(f"{DAY} 08:00:00")
    f = batch_file(qp_env, f"{DAY}/batches/one.csv", "R1", start, [0, 60, 120], False, "B-0001")
    lines = f.read_text().splitlines()
    lines[2] = lines[2].replace(",B-0001,", ",,")
    f.write_text("\n".join(lines) + "\n")
    res = run(qp_env, plant, [DAY])
    assert quarantined(res) == [
        (f"{DAY}/batches/one.csv", 3, col, "missing_batch_id", 1) for col in sorted(FIELDS.values())
    ]
    assert len(res.readings) == 4
    reconciles(qp_env, PLANT, [DAY])


def test_the_machine_may_come_from_the_file_name(qp_env: Paths) -> None:
    readings = batch_readings(path="{date}/*/*.csv")
    readings["machine"] = {"from_filename": r"^[^/]+/(?P<machine>R\d)/"}
    readings["batch"]["from_filename"] = r"/(?P<batch>[^/]+)\.csv$"
    plant = plant_with(qp_env, readings)
    _two_units(qp_env)
    start = pd.Timestamp(f"{DAY} 08:00:00")
    f = batch_file(qp_env, f"{DAY}/R1/B-0001.csv", "R1", start, [0, 60])
    pd.read_csv(f, dtype=str).drop(columns=["reactor"]).to_csv(f, index=False, lineterminator="\n")
    g = batch_file(qp_env, f"{DAY}/reactor-2/B-0002.csv", "R2", start, [0])
    pd.read_csv(g, dtype=str).drop(columns=["reactor"]).to_csv(g, index=False, lineterminator="\n")
    res = run(qp_env, plant, [DAY])
    assert set(res.readings["machine_id"].astype(str)) == {"R1"} and len(res.readings) == 4
    assert quarantined(res) == [(f"{DAY}/reactor-2/B-0002.csv", 1, None, "invalid_file_name", 2)]
    reconciles(qp_env, PLANT, [DAY])


def test_two_batches_starting_in_the_fall_back_hour_get_their_own_times(qp_env: Paths) -> None:
    """02:30 occurs twice on 2026-10-25 in Berlin: of two batches of one reactor starting then,
    the first is daylight time and the second standard time - per batch, not per row."""
    day = dt.date(2026, 10, 25)
    plant = plant_with(qp_env, batch_readings())
    units_file(
        qp_env,
        f"{day}/auftraege.csv",
        [
            ("B-1", "R1", f"{day} 01:00:00", f"{day} 02:00:00"),
            ("B-2", "R1", f"{day} 05:00:00", f"{day} 06:00:00"),
        ],
    )
    start = pd.Timestamp(f"{day} 02:30:00")
    batch_file(qp_env, f"{day}/batches/B-1.csv", "R1", start, [0, 10, 20])
    batch_file(qp_env, f"{day}/batches/B-2.csv", "R1", start, [0, 10, 20])
    res = run(qp_env, plant, [day], now=pd.Timestamp("2026-11-01", tz="UTC"))
    assert res.quarantine.empty, res.quarantine["message"].tolist()
    starts = res.readings.groupby("source_file")["ts_utc"].min().to_dict()
    assert starts == {
        f"{day}/batches/B-1.csv": pd.Timestamp("2026-10-25 00:30"),
        f"{day}/batches/B-2.csv": pd.Timestamp("2026-10-25 01:30"),
    }
    ends = res.readings.groupby("source_file")["ts_utc"].max().to_dict()
    assert ends[f"{day}/batches/B-1.csv"] == pd.Timestamp("2026-10-25 00:30:20")


# --------------------------------------------------------------------------- any batch


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.integers(1, 40),
    interval=st.sampled_from([0.001, 0.1, 0.25, 1.0, 7.5, 60.0, 600.0, 1 / 3]),
    first=st.sampled_from([0.0, 0.5, 12.0, -5.0]),
    start_min=st.integers(0, 24 * 60 - 1),
    elapsed=st.booleans(),
)
def test_any_batch_length_interval_and_offset_lands_each_row_at_start_plus_elapsed(
    qp_env: Paths, rows: int, interval: float, first: float, start_min: int, elapsed: bool
) -> None:
    """A batch of any length, sample interval, first offset and start minute (one may run far
    past midnight): each row lands once at start + elapsed seconds, all on the start day."""
    plant = plant_with(qp_env, batch_readings(elapsed, by_name=True))
    start = pd.Timestamp(DAY) + pd.Timedelta(minutes=start_min)
    units_file(
        qp_env,
        f"{DAY}/auftraege.csv",
        [("B-0001", "R1", start.strftime(LOCAL), (start + pd.Timedelta(hours=1)).strftime(LOCAL))],
    )
    first = first if elapsed else abs(first)  # absolute times: the earliest row is the start
    offsets = [round(first + i * interval, 6) for i in range(rows)]
    for f in (qp_env.landing_dir / PLANT).rglob("B-*.csv"):
        f.unlink()
    f = batch_file(qp_env, f"{DAY}/batches/B-0001.csv", "R1", start, offsets, elapsed)
    res = run(qp_env, plant, [DAY])
    assert res.quarantine.empty, res.quarantine["message"].head().tolist()
    assert len(res.readings) == 2 * rows
    assert set(res.readings["partition_date"].dt.date) == {DAY}
    pd.testing.assert_frame_equal(
        _key(res.readings), expected([f], qp_env.landing_dir / PLANT, elapsed)
    )
    reconciles(qp_env, PLANT, [DAY])


# --------------------------------------------------------------------------- config


def _mistake(edit: Any) -> dict[str, Any]:
    r = batch_readings()
    edit(r)
    return r


@pytest.mark.parametrize(
    ("readings", "says"),
    [
        (_mistake(lambda r: r["batch"].update(field="batch")), "give exactly one of 'field' or"),
        (_mistake(lambda r: r["batch"].pop("from_filename")), "give exactly one of 'field' or"),
        (
            _mistake(lambda r: r["batch"].update(from_filename=r"([A-Z]+)\.csv")),
            "needs a named group (?P<batch>...)",
        ),
        (
            _mistake(lambda r: r["batch"].update(from_filename="(?P<batch>[")),
            "is not a regular expression",
        ),
        (
            _mistake(lambda r: r["machine"].update(from_filename="(?P<machine>R1)")),
            "give exactly one of 'field', 'constant' or 'from_filename'",
        ),
        (
            _mistake(lambda r: r.update(machine={"from_filename": "(?P<m>R1)"})),
            "needs a named group (?P<machine>...)",
        ),
        (
            _mistake(lambda r: r["batch"].update(elapsed_seconds="batch_start")),
            "field 'batch_start' is both timestamp.field and batch.elapsed_seconds",
        ),
        (_mistake(lambda r: r["batch"].update(elapsed_seconds="temp_C")), "field 'temp_C' is"),
        (
            _mistake(
                lambda r: r.update(
                    timestamp={
                        "field": "n",
                        "kind": "sequence",
                        "start": "2026-03-16T00:00:00",
                        "step_seconds": 1,
                    }
                )
            ),
            "'batch' needs a clock",
        ),
        (
            _mistake(
                lambda r: r.update(
                    layout="array",
                    array={"samples": {"temperature": 2, "pressure": 2}},
                    quantities={
                        q: {
                            "field": f"{q}_{{i}}",
                            "unit": "bar" if q == "pressure" else "°C",
                            "interval_seconds": 1,
                        }
                        for q in ("temperature", "pressure")
                    },
                )
            ),
            "is not for layout 'array'",
        ),
    ],
)
def test_config_mistakes_are_errors_naming_file_and_field(
    qp_env: Paths, readings: dict[str, Any], says: str
) -> None:
    f = new_plant(qp_env, PLANT, readings)
    with pytest.raises(ConfigError) as exc:
        load_plants(qp_env)
    msg = str(exc.value)
    assert str(f) in msg and "streams.readings" in msg and says in msg, msg
