"""The feature set configuration (``data/features.yaml``), validated like every config file:
errors name the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from quality_platform.config import (
    PLANT_ID_RE,
    ConfigError,
    ConfigModel,
    Limits,
    load_plants,
    load_quantities,
    load_yaml_model,
)
from quality_platform.settings import Paths, get_paths

FEATURES_FILE = "features.yaml"
#: The committed default, used when an installation's config folder has no features.yaml.

Statistic = Literal["mean", "std", "min", "max", "last", "slope", "n", "time_outside_s"]


class CoverageThresholds(ConfigModel):
    warn_below: float = Field(0.95, ge=0, le=1)
    error_below: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> CoverageThresholds:
        if self.error_below > self.warn_below:
            raise ValueError("error_below must not exceed warn_below")
        return self


class FeatureConfig(ConfigModel):
    feature_set_version: int = Field(ge=1)
    statistics: list[Statistic] = Field(min_length=1)
    limits: dict[str, Limits] = Field(default_factory=dict)
    plant_limits: dict[str, dict[str, Limits]] = Field(default_factory=dict)
    coverage: CoverageThresholds = Field(default_factory=CoverageThresholds)

    @field_validator("statistics")
    @classmethod
    def _statistics(cls, v: list[str]) -> list[str]:
        if len(v) != len(set(v)):
            raise ValueError("statistics must be unique")
        if "n" not in v:
            raise ValueError("'n' is required (the coverage check counts readings per quantity)")
        return v

    def limits_for(self, plant_id: str, quantity: str) -> Limits | None:
        """The plant's limits of ``quantity`` (plant override first), or None without limits."""
        lim = self.plant_limits.get(plant_id, {}).get(quantity, self.limits.get(quantity))
        return lim if lim is not None and lim.defined else None


def features_file(paths: Paths) -> Path:
    """``<config>/features.yaml``."""
    return paths.config_dir / FEATURES_FILE


def load_features(paths: Paths | None = None) -> FeatureConfig:
    """The feature set (``data/features.yaml``), checked against the quantity registry and plants."""
    paths = paths or get_paths()
    path = features_file(paths)
    cfg: FeatureConfig = load_yaml_model(path, FeatureConfig)
    plants = load_plants(paths)
    shared = load_quantities(paths).quantities
    for q, spec in shared.items():
        if spec.process_limits is not None:
            raise ConfigError(
                f"{paths.quantities_file}: field 'quantities.{q}.process_limits': the process "
                f"window of a shared quantity is set in {path} (limits / plant_limits)"
            )
    known = {**shared, **{q: s for p in plants.values() for q, s in p.quantities.items()}}
    for q in cfg.limits:
        if q not in known:
            raise ConfigError(
                f"{path}: field 'limits.{q}': unknown canonical quantity; known: {sorted(known)}"
            )
    # Overrides of a plant that is not installed are kept (and unused): an installation with a
    # subset of the plants shares this file.
    for plant_id, per_q in cfg.plant_limits.items():
        if not PLANT_ID_RE.match(plant_id):
            raise ConfigError(f"{path}: field 'plant_limits.{plant_id}': not a plant id")
        for q in per_q:
            if q not in known:
                raise ConfigError(
                    f"{path}: field 'plant_limits.{plant_id}.{q}': unknown canonical "
                    f"quantity; known: {sorted(known)}"
                )
    # a plant-local quantity's window comes with it from the plant file (one place each)
    own: dict[str, dict[str, Limits]] = {}
    for pid, plant in plants.items():
        for q, spec in plant.quantities.items():
            if spec.process_limits is None:
                continue
            if q in cfg.limits or q in cfg.plant_limits.get(pid, {}):
                raise ConfigError(
                    f"{paths.plants_dir / (pid + '.yaml')}: field 'quantities.{q}.process_limits': "
                    f"{q!r} also has limits in {path}; give them in one place"
                )
            own.setdefault(pid, {})[q] = spec.process_limits
    if own:
        merged = {
            p: {**cfg.plant_limits.get(p, {}), **own.get(p, {})} for p in {*cfg.plant_limits, *own}
        }
        cfg = cfg.model_copy(update={"plant_limits": merged})
    return cfg
