"""Reproducible CatBoost training on a snapshot (F12).

Fixed ``random_seed`` AND ``thread_count`` (both from data/ml/model.yaml): the same snapshot and
parameters give a model with identical predictions. The model is fitted on the ``train`` split
only; the ``validation`` split chooses the decision threshold (maximum F1); the ``holdout`` split
is left to the release gate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from catboost import CatBoostClassifier, Pool

from quality_platform.ml import metrics as M
from quality_platform.ml.config import CatBoostParams
from quality_platform.ml.dataset import LABEL
from quality_platform.ml.frame import FeatureSpec, model_frame


@dataclass
class Trained:
    model: CatBoostClassifier
    threshold: float
    validation_f1: float
    metrics: dict[str, float]  # on validation and holdout
    seconds: float


def fit(data: pd.DataFrame, spec: FeatureSpec, params: CatBoostParams) -> Trained:
    """Fit on ``split == 'train'``; choose the threshold on ``validation``; report both and holdout."""
    train = data[data["split"] == "train"]
    if train[LABEL].nunique() < 2:
        raise ValueError(
            f"the train split has one class only ({len(train)} rows): more data or another window"
        )
    t0 = time.perf_counter()
    model = CatBoostClassifier(**params.as_catboost())
    model.fit(
        Pool(
            model_frame(train, spec),
            train[LABEL].to_numpy(dtype=np.int64),
            cat_features=list(range(len(spec.categorical))),
        )
    )
    seconds = time.perf_counter() - t0
    out: dict[str, float] = {"train_rows": float(len(train))}
    threshold, f1 = 0.5, 0.0
    for split in ("validation", "holdout"):
        part = data[data["split"] == split]
        if part.empty:
            continue
        y = part[LABEL].to_numpy(dtype=np.int64)
        s = predict(model, part, spec)
        if split == "validation":
            threshold, f1 = M.best_f1_threshold(y, s)
        out[f"{split}_rows"] = float(len(part))
        for name in M.METRICS:
            out[f"{split}_{name}"] = M.metric(name, y, s)
    return Trained(model, float(threshold), float(f1), out, seconds)


def predict(model: CatBoostClassifier, rows: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Defect probability of feature rows (as scoring does)."""
    from quality_platform.ml.scoring import score

    return score(model, model_frame(rows, spec), spec)


def params_of(model: CatBoostClassifier) -> dict[str, Any]:
    return dict(model.get_params())
