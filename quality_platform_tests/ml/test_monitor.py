"""Fault or drift (F7) on small generated plant-days: classify_day against a reference built the
way defect_model builds it."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from quality_platform.ml.config import MonitoringConfig
from quality_platform.ml.monitor import (
    alarm_threshold,
    build_reference,
    classify_day,
    parse_reference,
)

MACHINES = [f"M{i:02d}" for i in range(1, 11)]
CFG = MonitoringConfig()


def _units(
    rng: np.random.Generator, days: int, start: dt.date, per_machine: int = 60
) -> pd.DataFrame:
    rows = []
    for d in range(days):
        lot = rng.normal(0.0, 0.08)  # a day-level effect every machine shares (material lots)
        for k, m in enumerate(MACHINES):
            n = per_machine
            temp = 200 + 2.0 * (k - 5) / 5 + rng.normal(0, 1.0, n)
            moist = 12 + lot + 0.05 * k + rng.normal(0, 0.5, n)
            rows.append(
                pd.DataFrame(
                    {
                        "plant": "p",
                        "machine_id": m,
                        "partition_date": start + dt.timedelta(days=d),
                        "temperature__mean": temp,
                        "temperature__std": rng.uniform(0.3, 0.6, n),
                        "material_moisture__mean": moist,
                        "material_moisture__std": rng.uniform(0.02, 0.05, n),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def ref() -> dict:
    rng = np.random.default_rng(11)
    train = _units(rng, 12, dt.date(2026, 3, 1))
    hold = _units(rng, 2, dt.date(2026, 3, 13)).assign(label=0)
    return build_reference(
        train,
        hold,
        rng.uniform(0, 0.1, len(hold)),
        ["temperature__mean", "material_moisture__mean", "temperature__std"],
        CFG,
    )


def _day(seed: int = 1) -> pd.DataFrame:
    return _units(np.random.default_rng(seed), 1, dt.date(2026, 3, 20))


def _kinds(findings: list[dict]) -> set[tuple[str, str]]:
    return {(f["kind"], f["feature"]) for f in findings}


def test_reference_is_per_plant_machine_and_knows_its_day_noise(ref: dict) -> None:
    p = ref["plants"]["p"]
    assert set(p["machines"]) == set(MACHINES)
    assert set(p["day_noise"]) == {"temperature__mean", "material_moisture__mean"}
    assert p["holdout_loss"]["n"] > 0
    assert alarm_threshold(p, "temperature__mean", CFG) >= CFG.drift.alarm


def test_an_ordinary_day_raises_nothing(ref: dict) -> None:
    for seed in range(5):
        table, findings = classify_day(_day(seed), None, parse_reference(ref), "p", CFG)
        assert not findings, findings
        assert set(table["scope"]) == {"plant", "machine"}


def test_one_miscalibrated_sensor_is_a_sensor_fault_not_drift(ref: dict) -> None:
    day = _day()
    day.loc[day["machine_id"] == "M03", "temperature__mean"] += 8.0
    _, findings = classify_day(day, None, parse_reference(ref), "p", CFG)
    assert _kinds(findings) == {("sensor_fault", "temperature__mean")}
    assert findings[0]["machines"] == ["M03"]


def test_a_plant_wide_shift_is_process_drift(ref: dict) -> None:
    day = _day()
    day["material_moisture__mean"] += 1.0  # two reference sd, every machine
    _, findings = classify_day(day, None, parse_reference(ref), "p", CFG)
    assert ("process_drift", "material_moisture__mean") in _kinds(findings)
    assert not any(f["kind"] == "sensor_fault" for f in findings)


def test_a_flat_signal_is_a_stuck_sensor_not_drift(ref: dict) -> None:
    day = _day()
    sel = day["machine_id"] == "M07"
    day.loc[sel, "temperature__std"] = 0.0
    day.loc[sel, "temperature__mean"] = 230.0  # frozen at an odd value: still no process drift
    _, findings = classify_day(day, None, parse_reference(ref), "p", CFG)
    assert ("stuck_sensor", "temperature__mean") in _kinds(findings)
    assert not any(f["kind"] == "process_drift" for f in findings)


def test_an_unknown_plant_or_an_empty_day_is_not_judged(ref: dict) -> None:
    for table, findings in (
        classify_day(_day(), None, parse_reference(ref), "other", CFG),
        classify_day(_day().iloc[:0], None, parse_reference(ref), "p", CFG),
    ):
        assert table.empty and findings == []
