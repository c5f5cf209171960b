"""Public API, argument checks, determinism and truth.json of the simulator."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from quality_platform.simulation import SCENARIOS, simulate

from .helpers import all_files


def test_scenarios_constant() -> None:
    assert SCENARIOS == (
        "stable",
        "moisture_drift",
        "sensor_offset",
        "stuck_sensor",
        "missing_burst",
        "concept_drift",
        "bad_files",
    )


def test_unknown_scenario_raises_and_lists_valid(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown scenario 'flood'") as exc:
        simulate(tmp_path, days=2, scenario="flood")
    for name in SCENARIOS:
        assert name in str(exc.value)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs", [{"days": 0}, {"days": -3}, {"seed": -1}])
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        simulate(tmp_path, **{"days": 2, **kwargs})


def test_onset_scenario_needs_two_days(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="days >= 2"):
        simulate(tmp_path, days=1, scenario="sensor_offset")


def test_only_simulated_plants(stable8: tuple[Path, dict]) -> None:
    root, truth = stable8
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["plant_a", "plant_b", "plant_c"]
    assert sorted(truth["counts"]) == ["plant_a", "plant_b", "plant_c"]


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    a = all_files(_run(tmp_path / "a", seed=11))
    b = all_files(_run(tmp_path / "b", seed=11))
    assert a.keys() == b.keys()
    assert len(a) > 10
    for name in a:
        assert a[name] == b[name], name


def test_different_seed_gives_different_files(tmp_path: Path) -> None:
    a = all_files(_run(tmp_path / "a", seed=11))
    b = all_files(_run(tmp_path / "b", seed=12))
    assert a.keys() == b.keys()
    data_files = [n for n in a if n != "truth.json"]
    assert all(a[n] != b[n] for n in data_files)


def test_longer_run_starts_with_the_same_data(tmp_path: Path) -> None:
    short = all_files(_run(tmp_path / "short", seed=3, days=2))
    long = all_files(_run(tmp_path / "long", seed=3, days=3))
    first = dt.date(2026, 3, 16).isoformat()
    shared = [
        n
        for n in short
        if f"/{first}/" in n and "inspections_" not in n and "pruefung_" not in n and "qc_" not in n
    ]
    assert len(shared) == 5  # sensoren, auftraege, readings, production, batches
    for name in shared:
        assert short[name] == long[name], name


def _run(root: Path, seed: int, days: int = 2) -> Path:
    simulate(root, days=days, seed=seed)
    return root


def test_truth_file_matches_return_value(stable8: tuple[Path, dict]) -> None:
    root, truth = stable8
    text = (root / "truth.json").read_text(encoding="utf-8")
    assert json.loads(text) == truth
    assert text == json.dumps(truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    for key in (
        "scenario",
        "seed",
        "start",
        "days",
        "onset_day",
        "onset_date",
        "affected",
        "expected_incidents",
        "label_latency_days",
        "cycle_minutes",
        "mechanism",
        "counts",
        "bad_files",
    ):
        assert key in truth
    assert truth["scenario"] == "stable" and truth["seed"] == 7 and truth["days"] == 8
    assert truth["label_latency_days"] == {"plant_a": 2, "plant_b": 3, "plant_c": 1}
    assert truth["cycle_minutes"] == {"plant_a": 15, "plant_b": 20, "plant_c": 30}
    assert truth["expected_incidents"] == [] and truth["onset_day"] is None
    assert "formula" in truth["mechanism"] and truth["mechanism"]["coefficients"]["moisture"] > 0


def test_truth_has_no_operator_ids(stable8: tuple[Path, dict]) -> None:
    root, _ = stable8
    text = (root / "truth.json").read_text(encoding="utf-8")
    badge = re.compile(r"W-\d{5}|BDG-\d{4}|OP\d{4}")
    assert badge.search((root / "plant_a" / "2026-03-16" / "auftraege.csv").read_text())
    assert not badge.search(text)


def test_stable_defect_rate_in_range(stable8: tuple[Path, dict]) -> None:
    _, truth = stable8
    for plant, counts in truth["counts"].items():
        assert 0.02 <= counts["true_defect_rate"] <= 0.09, plant
        assert counts["true_scrap"] > 0 and counts["true_rework"] > 0
