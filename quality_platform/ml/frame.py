"""The model's view of ``features.unit_features``: which columns it sees and in which form.

One place decides the feature list (from the feature set, the quantity registry and
``data/ml/model.yaml``) and turns feature rows into the frame CatBoost trains and scores on:
numeric columns as float64 (NULL -> NaN, which CatBoost treats as missing), categorical
columns as strings with an explicit missing marker. Training, the gate, scoring and drift all
call :func:`model_frame`, so a model never sees its inputs in two different forms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from quality_platform.config import QuantityRegistry
from quality_platform.features.config import FeatureConfig
from quality_platform.features.schema import CONTEXT, feature_columns, statistics_of
from quality_platform.ml.config import ModelConfig

#: How a missing categorical value is given to CatBoost (it accepts no NaN in categorical columns).
MISSING_CATEGORY = "<missing>"
#: Context columns that may serve as categorical features.
CATEGORICAL_CANDIDATES = ("plant", "machine_id", "line", "product", "supplier", "material_lot")
#: Columns that identify a unit (kept beside the features, never fed to the model).
ID_COLUMNS = ("plant", "partition_date", "unit_id", "start_utc")


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered input columns of a model version: categorical first, then numeric."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    feature_set_version: int

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    def as_dict(self) -> dict[str, object]:
        return {
            "categorical": list(self.categorical),
            "numeric": list(self.numeric),
            "feature_set_version": self.feature_set_version,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> FeatureSpec:
        return cls(tuple(d["categorical"]), tuple(d["numeric"]), int(d["feature_set_version"]))  # type: ignore[arg-type]


def feature_spec(
    registry: QuantityRegistry, features: FeatureConfig, model: ModelConfig
) -> FeatureSpec:
    """The model's inputs: configured categorical context + every per-quantity statistic not excluded."""
    unknown = [c for c in model.features.categorical if c not in CATEGORICAL_CANDIDATES]
    if unknown:
        raise ValueError(
            f"data/ml/model.yaml features.categorical: {unknown} are not context columns of "
            f"unit_features; choose from {list(CATEGORICAL_CANDIDATES)}"
        )
    excluded_stats = set(model.features.exclude_statistics)
    known_stats = {s.name for s in statistics_of(features)}
    bad = excluded_stats - known_stats
    if bad:
        raise ValueError(
            f"data/ml/model.yaml features.exclude_statistics: {sorted(bad)} are not configured "
            f"statistics {sorted(known_stats)}"
        )
    numeric = tuple(
        c.name
        for c in feature_columns(registry, features)
        if c.name.rsplit("__", 1)[1] not in excluded_stats
        and c.name not in model.features.exclude_columns
    )
    assert {c.name for c in CONTEXT} >= set(CATEGORICAL_CANDIDATES)
    return FeatureSpec(tuple(model.features.categorical), numeric, features.feature_set_version)


def model_frame(df: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Feature rows (columns of unit_features, any extra columns ignored) -> the model's input frame."""
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"feature rows lack the model's columns {missing[:10]} (feature set changed? "
            f"the model expects feature_set_version {spec.feature_set_version})"
        )
    out = {}
    for c in spec.categorical:
        col = df[c]
        out[c] = col.astype("object").where(col.notna(), MISSING_CATEGORY).astype(str).to_numpy()
    for c in spec.numeric:
        out[c] = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(out, index=df.index)
