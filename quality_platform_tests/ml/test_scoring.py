"""Scoring: risks equal CatBoost's own, reasons are exact SHAP contributions, routing is stable."""

from __future__ import annotations

import hashlib
import re
from fractions import Fraction

import catboost
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quality_platform.ml.frame import MISSING_CATEGORY, FeatureSpec, model_frame
from quality_platform.ml.scoring import (
    challenger_share,
    global_importance,
    reason_columns,
    score,
    top_reasons,
)

SPEC = FeatureSpec(
    ("machine_id", "supplier"), ("x0", "x1", "x2", "x3", "x4", "x5"), feature_set_version=1
)
DRIVER = "x0"
REASON = re.compile(r"^(?P<feature>[^=]+)=(?P<value>.+) \((?P<shap>[+-]\d+\.\d{3})\)$")


def _rows(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature rows like unit_features (NULLs in both kinds of columns) and a label driven by x0."""
    rng = np.random.default_rng(seed)
    machine = np.array([f"M{i}" for i in range(6)], dtype=object)[rng.integers(0, 6, n)]
    supplier = np.array(["S1", "S2", "S3"], dtype=object)[rng.integers(0, 3, n)]
    machine[rng.random(n) < 0.05] = None
    supplier[rng.random(n) < 0.05] = None
    x = rng.normal(size=(n, 6))
    logit = -1.0 + 3.0 * x[:, 0] + 0.7 * x[:, 1] - 0.5 * x[:, 2] + 0.8 * (machine == "M3")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    x[:, 0][rng.random(n) < 0.08] = (
        np.nan
    )  # the driver is missing sometimes: "missing" must show up as a value
    x[:, 1:][rng.random((n, 5)) < 0.05] = np.nan
    df = pd.DataFrame(
        {
            "machine_id": machine,
            "supplier": supplier,
            **{f"x{j}": x[:, j] * 10 + j for j in range(6)},
            "unit_id": [f"U{i}" for i in range(n)],
        }
    )
    return df, y


@pytest.fixture(scope="module")
def model() -> catboost.CatBoostClassifier:
    rows, y = _rows(3000, seed=1)
    m = catboost.CatBoostClassifier(
        iterations=50,
        depth=4,
        learning_rate=0.2,
        random_seed=7,
        thread_count=2,
        allow_writing_files=False,
        verbose=False,
    )
    m.fit(model_frame(rows, SPEC), y, cat_features=[0, 1])
    return m


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rows, _ = _rows(1500, seed=2)
    f = model_frame(rows, SPEC)
    return f.set_axis(
        pd.RangeIndex(1000, 1000 + len(f), name="row")
    )  # a non-default index must be kept


def _direct_shap(model: catboost.CatBoostClassifier, frame: pd.DataFrame) -> np.ndarray:
    """SHAP values straight from CatBoost on the plain frame (strings, no conversion)."""
    pool = catboost.Pool(frame, cat_features=[0, 1])
    return model.get_feature_importance(pool, type="ShapValues", shap_calc_type="Regular")


# --- score ---------------------------------------------------------------------------------------


def test_score_equals_predict_proba_exactly(
    model: catboost.CatBoostClassifier, frame: pd.DataFrame
) -> None:
    assert (frame["machine_id"] == MISSING_CATEGORY).any() and frame["x0"].isna().any()
    s = score(model, frame, SPEC)
    assert s.dtype == np.float64 and s.shape == (len(frame),)
    np.testing.assert_array_equal(s, model.predict_proba(frame)[:, 1])


def test_score_keeps_row_order_and_ignores_column_order(
    model: catboost.CatBoostClassifier, frame: pd.DataFrame
) -> None:
    perm = np.random.default_rng(3).permutation(len(frame))
    shuffled = frame.iloc[perm]
    reordered = shuffled[list(reversed(shuffled.columns))].assign(extra=1.0)
    np.testing.assert_array_equal(score(model, reordered, SPEC), score(model, frame, SPEC)[perm])


def test_score_of_no_rows_and_of_one_row(
    model: catboost.CatBoostClassifier, frame: pd.DataFrame
) -> None:
    assert score(model, frame.iloc[:0], SPEC).shape == (0,)
    np.testing.assert_array_equal(
        score(model, frame.iloc[[5]], SPEC), model.predict_proba(frame.iloc[[5]])[:, 1]
    )


def test_score_rejects_frames_not_built_by_model_frame(
    model: catboost.CatBoostClassifier, frame: pd.DataFrame
) -> None:
    with pytest.raises(ValueError, match="lacks the model's columns"):
        score(model, frame.drop(columns=["x3"]), SPEC)
    raw = frame.astype({"supplier": object})
    raw.loc[raw.index[0], "supplier"] = None
    with pytest.raises(ValueError, match="missing values"):
        score(model, raw, SPEC)


# --- top_reasons ---------------------------------------------------------------------------------


def test_reason_columns_and_index(model: catboost.CatBoostClassifier, frame: pd.DataFrame) -> None:
    r = top_reasons(model, frame, SPEC, k=3)
    assert (
        list(r.columns)
        == reason_columns(3)
        == [
            "reason_1",
            "reason_1_feature",
            "reason_1_shap",
            "reason_2",
            "reason_2_feature",
            "reason_2_shap",
            "reason_3",
            "reason_3_feature",
            "reason_3_shap",
        ]
    )
    assert r.index.equals(frame.index)
    assert r["reason_1"].notna().all() and r["reason_1_shap"].dtype == np.float64
    assert list(top_reasons(model, frame.iloc[:10], SPEC, k=0).columns) == []
    # More reasons than features: the slots beyond are empty.
    wide = top_reasons(model, frame.iloc[:10], SPEC, k=10)
    assert list(wide.columns) == reason_columns(10)
    assert wide["reason_9"].isna().all() and wide["reason_10_shap"].isna().all()
    assert top_reasons(model, frame.iloc[:0], SPEC, k=2).shape == (0, 6)


def test_reasons_are_the_largest_exact_shap_contributions(
    model: catboost.CatBoostClassifier, frame: pd.DataFrame
) -> None:
    direct = _direct_shap(model, frame)
    # SHAP (log-odds) of all features plus the expected value add up to the raw log-odds prediction.
    raw = model.predict(frame, prediction_type="RawFormulaVal")
    np.testing.assert_allclose(direct.sum(axis=1), raw, rtol=0, atol=1e-9)
    p = score(model, frame, SPEC)
    np.testing.assert_allclose(direct.sum(axis=1), np.log(p / (1 - p)), rtol=0, atol=1e-7)

    k = 3
    r = top_reasons(model, frame, SPEC, k=k)
    contrib = direct[:, :-1]
    col = {c: j for j, c in enumerate(SPEC.columns)}
    kth_largest = -np.sort(-np.abs(contrib), axis=1)[:, :k]
    for i in range(1, k + 1):
        j = r[f"reason_{i}_feature"].map(col).to_numpy(dtype=np.intp)
        got = r[f"reason_{i}_shap"].to_numpy()
        np.testing.assert_array_equal(
            got, contrib[np.arange(len(frame)), j]
        )  # the feature's own SHAP value
        np.testing.assert_array_equal(
            np.abs(got), kth_largest[:, i - 1]
        )  # ordered by |SHAP| descending
    assert (
        len(
            set(
                zip(
                    r["reason_1_feature"], r["reason_2_feature"], r["reason_3_feature"], strict=True
                )
            )
        )
        > 1
    )


def test_reason_text_names_feature_value_and_signed_shap(
    model: catboost.CatBoostClassifier, frame: pd.DataFrame
) -> None:
    r = top_reasons(model, frame, SPEC, k=3)
    seen_missing = False
    for i in range(1, 4):
        for pos, (text, feat, shap) in enumerate(
            zip(r[f"reason_{i}"], r[f"reason_{i}_feature"], r[f"reason_{i}_shap"], strict=True)
        ):
            m = REASON.match(text)
            assert m, text
            assert m["feature"] == feat and m["shap"] == f"{shap:+.3f}"
            value = frame[feat].iloc[pos]
            if feat in SPEC.categorical:
                expected = "missing" if value == MISSING_CATEGORY else value
            else:
                expected = "missing" if np.isnan(value) else f"{value:.4g}"
            assert m["value"] == expected, (text, value)
            seen_missing |= expected == "missing"
    assert seen_missing
    # Sign: + pushes towards defect. A very high driver value raises the risk.
    high = frame[frame[DRIVER] > 25]
    assert (top_reasons(model, high, SPEC, k=1)["reason_1"].str.startswith(f"{DRIVER}=")).all()


def test_an_extreme_driver_is_the_top_reason(
    model: catboost.CatBoostClassifier, frame: pd.DataFrame
) -> None:
    extreme = frame[frame[DRIVER].abs() > 20]  # |x0| beyond 2 standard deviations
    assert len(extreme) > 20
    r = top_reasons(model, extreme, SPEC, k=2)
    assert (r["reason_1_feature"] == DRIVER).all()
    sign = np.sign(r["reason_1_shap"].to_numpy())
    np.testing.assert_array_equal(sign, np.where(extreme[DRIVER].to_numpy() > 0, 1.0, -1.0))


def test_reasons_are_deterministic(model: catboost.CatBoostClassifier, frame: pd.DataFrame) -> None:
    base = frame.iloc[:200]
    # Each row twice, shuffled, explained in small chunks: identical inputs, identical reasons.
    doubled = pd.concat([base, base]).reset_index(drop=True)
    perm = np.random.default_rng(5).permutation(len(doubled))
    shuffled = doubled.iloc[perm]
    r = top_reasons(model, shuffled, SPEC, k=3, chunk_rows=37).sort_index()
    pd.testing.assert_frame_equal(
        r.iloc[:200].reset_index(drop=True), r.iloc[200:].reset_index(drop=True)
    )
    once = top_reasons(model, base, SPEC, k=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(r.iloc[:200].reset_index(drop=True), once)


# --- global_importance ---------------------------------------------------------------------------


def test_global_importance(model: catboost.CatBoostClassifier) -> None:
    imp = global_importance(model, SPEC)
    assert list(imp.columns) == ["feature", "importance"]
    assert sorted(imp["feature"]) == sorted(SPEC.columns)
    assert imp["importance"].is_monotonic_decreasing
    assert imp["feature"].iloc[0] == DRIVER
    assert imp["importance"].sum() == pytest.approx(100.0)


# --- challenger_share ----------------------------------------------------------------------------


def _reference_route(plant: str, unit: str, share: float) -> bool:
    """The routing rule as written in the docs, in exact arithmetic."""
    h = int(hashlib.blake2b(f"{plant}|{unit}".encode(), digest_size=8).hexdigest(), 16)
    return Fraction(h, 2**64) < Fraction(share)


_ids = [(f"P{i % 4}", f"UNIT-{i:06d}") for i in range(20_000)]
_plants = pd.Series([p for p, _ in _ids])
_units = pd.Series([u for _, u in _ids])


def test_share_zero_routes_none_and_one_routes_all() -> None:
    assert not challenger_share(_plants, _units, 0.0).any()
    assert challenger_share(_plants, _units, 1.0).all()
    assert challenger_share([], [], 0.1).shape == (0,)


@pytest.mark.parametrize("share", [0.01, 0.1, 0.5])
def test_share_routes_about_the_share(share: float) -> None:
    routed = challenger_share(_plants, _units, share)
    assert routed.dtype == bool and routed.shape == (len(_ids),)
    sd = (share * (1 - share) / len(_ids)) ** 0.5
    assert abs(routed.mean() - share) < 5 * sd


def test_routing_follows_the_documented_rule() -> None:
    routed = challenger_share(_plants[:500], _units[:500], 0.3)
    expected = [_reference_route(p, u, 0.3) for p, u in _ids[:500]]
    assert routed.tolist() == expected
    # The plant is part of the key: the same unit id in two plants is routed independently.
    assert not np.array_equal(
        challenger_share(["A"] * 500, _units[:500], 0.5),
        challenger_share(["B"] * 500, _units[:500], 0.5),
    )


def test_routing_is_pinned() -> None:
    """Hard-coded routes: a change of the rule (key format, digest, byte order) would re-route live units."""
    h = 0xB5808FA851A2F719  # blake2b(b"P1|U-42", digest_size=8), big-endian
    assert challenger_share(["P1"], ["U-42"], h / 2**64 + 1e-12).tolist() == [True]
    assert challenger_share(["P1"], ["U-42"], h / 2**64 - 1e-12).tolist() == [False]
    routed = challenger_share(["P1"] * 24, [f"U-{i}" for i in range(24)], 0.5)
    assert "".join("1" if r else "0" for r in routed) == "101111100110100101100011"


def test_lists_and_series_route_alike_and_bad_input_is_rejected() -> None:
    as_list = challenger_share(list(_plants[:100]), list(_units[:100]), 0.2)
    as_series = challenger_share(
        _plants[:100].astype("category"), _units[:100].set_axis(range(500, 600)), 0.2
    )
    np.testing.assert_array_equal(as_list, as_series)
    with pytest.raises(ValueError, match="plants but"):
        challenger_share(["P1"], ["U1", "U2"], 0.1)
    with pytest.raises(ValueError, match="share"):
        challenger_share(["P1"], ["U1"], 1.5)
    with pytest.raises(ValueError, match="share"):
        challenger_share(["P1"], ["U1"], float("nan"))
    with pytest.raises(ValueError, match="missing unit_id"):
        challenger_share(["P1", "P1"], ["U1", None], 0.1)


_label = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    units=st.lists(
        st.tuples(st.sampled_from(["P1", "P2", "plant-ü"]), _label), min_size=1, max_size=40
    ),
    share=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_routing_of_a_unit_ignores_position_and_other_rows(
    units: list[tuple[str, str]], share: float, seed: int
) -> None:
    plants, ids = [p for p, _ in units], [u for _, u in units]
    routed = challenger_share(plants, ids, share)
    perm = np.random.default_rng(seed).permutation(len(units))
    permuted = challenger_share([plants[i] for i in perm], [ids[i] for i in perm], share)
    np.testing.assert_array_equal(permuted, routed[perm])
    alone = [bool(challenger_share([p], [u], share)[0]) for p, u in units]
    assert routed.tolist() == alone == [_reference_route(p, u, share) for p, u in units]


@settings(max_examples=60, deadline=None)
@given(a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0))
def test_routing_is_monotone_in_the_share(a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)
    small = challenger_share(_plants[:2000], _units[:2000], lo)
    large = challenger_share(_plants[:2000], _units[:2000], hi)
    assert not (small & ~large).any()
