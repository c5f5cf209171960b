"""data/features.yaml: the committed file is valid; a bad file names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from quality_platform.config import ConfigError, load_quantities
from quality_platform.features.config import load_features
from quality_platform.settings import REPO_ROOT, Paths
from quality_platform_tests.conftest import make_installation

DEFAULT_FEATURES_FILE = REPO_ROOT / "data" / "features.yaml"


@pytest.fixture
def inst(tmp_path: Path) -> Paths:
    return make_installation(tmp_path)


def _write(paths: Paths, **changes: object) -> Path:
    doc = yaml.safe_load(DEFAULT_FEATURES_FILE.read_text(encoding="utf-8"))
    doc.update(changes)
    p = paths.config_dir / "features.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return p


def test_committed_feature_set_is_valid() -> None:
    cfg = load_features()
    reg = load_quantities()
    assert cfg.feature_set_version >= 1 and "n" in cfg.statistics
    assert set(cfg.limits) <= set(reg.quantities)
    assert cfg.limits_for("plant_a", "vibration").upper == 4.5
    assert cfg.limits_for("plant_a", "material_moisture").upper == 12.5
    assert (
        cfg.limits_for("ai4i2020", "temperature") is None
    )  # plant override: no melt-temperature window
    assert cfg.limits_for("ai4i2020", "torque") is None
    assert 0 <= cfg.coverage.error_below <= cfg.coverage.warn_below <= 1


def test_installation_file_wins_over_the_default(inst: Paths) -> None:
    assert load_features(inst).feature_set_version == load_features().feature_set_version  # default
    _write(inst, feature_set_version=7)
    assert load_features(inst).feature_set_version == 7


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"limits": {"humidity": {"upper": 3}}}, "limits.humidity"),
        ({"limits": {"temperature": {"lower": 210, "upper": 190}}}, "limits.temperature"),
        ({"plant_limits": {"plant_a": {"humidity": {}}}}, "plant_limits.plant_a.humidity"),
        ({"statistics": ["mean", "median", "n"]}, "statistics.1"),
        ({"statistics": ["mean"]}, "statistics"),
        ({"coverage": {"warn_below": 0.4, "error_below": 0.5}}, "coverage"),
        ({"feature_set_version": 0}, "feature_set_version"),
    ],
)
def test_errors_name_file_and_field(inst: Paths, changes: dict, field: str) -> None:
    path = _write(inst, **changes)
    with pytest.raises(ConfigError, match=rf"{path}: field '{field}'"):
        load_features(inst)
