"""The one place where a CatBoost defect model turns feature rows into risks, reasons and routing.

Every caller (training metrics, the release gate, behaviour cases, the predictions asset) scores
through :func:`score`, with the frame :func:`quality_platform.ml.frame.model_frame` built.

**Risk.** :func:`score` is the model's probability of the positive class (defect), exactly what
``model.predict_proba(frame)[:, 1]`` gives, only faster: the categorical columns (strings) are handed
to CatBoost as pandas categoricals, so each distinct category string is hashed once instead of once
per row. CatBoost hashes the category *strings* either way, so the result is bit-identical.

**Reasons.** :func:`top_reasons` explains each risk by its ``k`` largest contributions. A
contribution is the feature's exact TreeSHAP value (CatBoost ``ShapValues``, ``Regular``) on the
**log-odds** scale: for every row the contributions of all features plus the model's expected
value add up to the raw prediction ``log(p / (1 - p))``. The sign says the direction: ``+`` pushes
the unit towards *defect*, ``-`` away from it. A reason reads ``"feature=value (+0.123)"``: the
feature, the unit's value of it (4 significant digits; ``missing`` for a NULL numeric value or the
missing-category marker) and the signed contribution. Reasons are ordered by ``|SHAP|``
descending, ties in the order of the model's columns, so rows with identical inputs get identical
reasons. A feature that contributes nothing (``SHAP == 0``) is no reason: such a slot stays empty,
as do slots beyond the model's number of features. SHAP values are computed in chunks, so the
``rows x (features + 1)`` float64 matrix never holds more than about 32 MB at a time.

**Routing.** :func:`challenger_share` decides which units a challenger model decides during a
canary. A unit goes to the challenger when ``blake2b(f"{plant}|{unit_id}", digest_size=8)`` read as
an unsigned big-endian 64-bit integer ``h`` satisfies ``h / 2**64 < share`` (evaluated exactly, in
integers). The routing of a unit depends only on its plant, its id and the share: not on the
process (no salted ``hash()``), the platform, the pandas version, the other rows or their order.
It is monotone in the share: raising the share only adds units to the challenger.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import catboost
import numpy as np
import pandas as pd

from quality_platform.ml.frame import MISSING_CATEGORY, FeatureSpec

#: Threads CatBoost uses to score and explain (-1: every core). Predictions do not depend on it.
THREAD_COUNT = -1
#: Upper bound of SHAP matrix cells (float64) computed at once: 4M cells = 32 MB.
SHAP_CHUNK_CELLS = 4_000_000
#: How a missing feature value is shown in a reason.
MISSING_TEXT = "missing"


def _inputs(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The model's columns in the model's order, categorical columns as pandas categoricals.

    CatBoost reads a categorical column's categories once and the integer codes per row, instead of
    converting and hashing one Python string per row (building the Pool ~5x faster on a million rows). The
    numeric columns are passed through without a copy.
    """
    cols = spec.columns
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(
            f"the frame lacks the model's columns {missing[:10]}: build it with model_frame()"
        )
    out = frame if list(frame.columns) == cols else frame[cols]
    out = out.copy(deep=False)
    for c in spec.categorical:
        col = out[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            cat = col.cat.rename_categories([str(v) for v in col.cat.categories])
        else:
            codes, uniques = pd.factorize(col)
            cat = pd.Categorical.from_codes(codes, categories=pd.Index(uniques).astype(str))
        if (np.asarray(cat.codes) < 0).any():
            raise ValueError(
                f"categorical column {c!r} has missing values: build the frame with model_frame(), "
                f"which gives them as {MISSING_CATEGORY!r}"
            )
        out[c] = cat
    return out


def _pool(frame: pd.DataFrame, spec: FeatureSpec) -> catboost.Pool:
    return catboost.Pool(_inputs(frame, spec), cat_features=list(range(len(spec.categorical))))


def score(model: catboost.CatBoostClassifier, frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Defect probability (positive class) per row of ``frame`` (from ``model_frame``), float64, in
    frame order; equal to ``model.predict_proba(frame)[:, 1]``."""
    if len(frame) == 0:
        return np.empty(0, dtype=np.float64)
    proba = model.predict(
        _pool(frame, spec), prediction_type="Probability", thread_count=THREAD_COUNT
    )
    return np.ascontiguousarray(proba[:, 1], dtype=np.float64)


def reason_columns(k: int) -> list[str]:
    """Columns of :func:`top_reasons`: per reason ``i`` the text, the feature and its SHAP value."""
    return [
        c
        for i in range(1, k + 1)
        for c in (f"reason_{i}", f"reason_{i}_feature", f"reason_{i}_shap")
    ]


def _value_texts(
    frame: pd.DataFrame, spec: FeatureSpec, rows: np.ndarray, feat: np.ndarray
) -> np.ndarray:
    """The value of feature ``feat[i]`` in row position ``rows[i]`` of ``frame``, formatted for a reason."""
    out = np.empty(len(rows), dtype=object)
    n_cat = len(spec.categorical)
    for j in np.unique(feat).tolist():  # one feature at a time: no copy of the frame
        sel = np.flatnonzero(feat == j)
        col = frame[spec.columns[j]].iloc[rows[sel]]
        if j < n_cat:
            out[sel] = [MISSING_TEXT if v == MISSING_CATEGORY else str(v) for v in col.tolist()]
        else:
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
            out[sel] = [MISSING_TEXT if v != v else f"{v:.4g}" for v in values.tolist()]
    return out


def top_reasons(
    model: catboost.CatBoostClassifier,
    frame: pd.DataFrame,
    spec: FeatureSpec,
    k: int = 3,
    *,
    chunk_rows: int | None = None,
) -> pd.DataFrame:
    """The ``k`` features with the largest ``|SHAP|`` of each row (see the module docstring).

    Columns (:func:`reason_columns`): ``reason_i`` (``"feature=value (+0.123)"``), ``reason_i_feature``
    and ``reason_i_shap`` (log-odds; ``+`` towards defect) for ``i = 1..k``; empty (None / NaN) where
    fewer than ``i`` features contribute. Same index as ``frame``. ``chunk_rows`` overrides the number
    of rows explained at once (default: as many as fit in :data:`SHAP_CHUNK_CELLS`).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    names = np.array(spec.columns, dtype=object)
    n, n_feat = len(frame), len(names)
    kk = min(k, n_feat)
    feat = np.zeros((n, kk), dtype=np.intp)
    shap = np.zeros((n, kk), dtype=np.float64)
    step = chunk_rows or max(1, SHAP_CHUNK_CELLS // (n_feat + 1))
    for a in range(0, n if kk else 0, step):
        part = frame.iloc[a : a + step]
        values = model.get_feature_importance(
            _pool(part, spec),
            type="ShapValues",
            shap_calc_type="Regular",
            thread_count=THREAD_COUNT,
        )
        if values.shape != (len(part), n_feat + 1):
            raise ValueError(
                f"SHAP values of shape {values.shape} do not match the spec's {n_feat} features"
            )
        contrib = values[:, :n_feat]
        # Stable sort: equal |SHAP| keep the model's column order, so equal rows get equal reasons.
        order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :kk]
        feat[a : a + step] = order
        shap[a : a + step] = np.take_along_axis(contrib, order, axis=1)

    out: dict[str, np.ndarray] = {}
    for i in range(k):
        text = np.full(n, None, dtype=object)
        name = np.full(n, None, dtype=object)
        value = np.full(n, np.nan, dtype=np.float64)
        if i < kk:
            has = shap[:, i] != 0
            if has.any():
                r = np.flatnonzero(has)
                f, s = feat[r, i], shap[r, i]
                vals = _value_texts(frame, spec, r, f)
                name[r] = names[f]
                value[r] = s
                text[r] = [
                    f"{nm}={v} ({x:+.3f})"
                    for nm, v, x in zip(names[f].tolist(), vals.tolist(), s.tolist(), strict=True)
                ]
        out[f"reason_{i + 1}"], out[f"reason_{i + 1}_feature"], out[f"reason_{i + 1}_shap"] = (
            text,
            name,
            value,
        )
    return pd.DataFrame(out, index=frame.index, columns=reason_columns(k))


def global_importance(model: catboost.CatBoostClassifier, spec: FeatureSpec) -> pd.DataFrame:
    """Columns ``feature, importance`` (CatBoost ``PredictionValuesChange``), most important first
    (ties in the model's column order)."""
    imp = np.asarray(model.get_feature_importance(type="PredictionValuesChange"), dtype=np.float64)
    if len(imp) != len(spec.columns):
        raise ValueError(f"the model has {len(imp)} features, the spec {len(spec.columns)}")
    df = pd.DataFrame({"feature": spec.columns, "importance": imp})
    return df.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def _labels(values: pd.Series | Sequence[str], what: str) -> list[object]:
    s = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if s.isna().any():
        raise ValueError(f"challenger_share: {int(s.isna().sum())} missing {what} value(s)")
    return s.tolist()


def challenger_share(
    plant: pd.Series | Sequence[str], unit_id: pd.Series | Sequence[str], share: float
) -> np.ndarray:
    """Per unit, True when it is routed to the challenger: ``blake2b(f"{plant}|{unit_id}",
    digest_size=8)`` as an unsigned big-endian 64-bit integer ``h`` with ``h / 2**64 < share``.

    Positional (not index-aligned) over the two inputs; values are formatted with ``str``.
    """
    plants, units = _labels(plant, "plant"), _labels(unit_id, "unit_id")
    if len(plants) != len(units):
        raise ValueError(f"challenger_share: {len(plants)} plants but {len(units)} unit ids")
    share = float(share)
    if not 0.0 <= share <= 1.0:  # also rejects NaN
        raise ValueError(f"challenger_share: share must be within [0, 1], got {share}")
    n = len(units)
    if share == 0.0:
        return np.zeros(n, dtype=bool)
    if share == 1.0:
        return np.ones(n, dtype=bool)
    b2 = hashlib.blake2b
    digests = b"".join(
        [
            b2(f"{p}|{u}".encode(), digest_size=8).digest()
            for p, u in zip(plants, units, strict=True)
        ]
    )
    h = np.frombuffer(digests, dtype=">u8").astype(np.uint64)
    # h / 2**64 < share  <=>  h < ceil(share * 2**64) for integer h; share * 2**64 is exact (power of 2).
    return h < np.uint64(math.ceil(share * 2.0**64))
