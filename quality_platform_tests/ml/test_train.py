"""Reproducible training and the snapshot's content hash, on generated feature rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quality_platform.ml.config import CatBoostParams, load_model_config
from quality_platform.ml.dataset import LABEL, _split, content_hash, holdout_day
from quality_platform.ml.frame import MISSING_CATEGORY, FeatureSpec, model_frame
from quality_platform.ml.train import fit, predict

SPEC = FeatureSpec(
    ("plant", "product"), ("material_moisture__mean", "temperature__mean", "vibration__max"), 1
)


def _rows(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    moist = rng.normal(12, 0.6, n)
    temp = rng.normal(200, 2, n)
    vib = rng.lognormal(1.1, 0.15, n)
    logit = -4 + 3.5 * np.maximum(0, moist - 12.5) + 0.8 * ((temp - 200) / 4) ** 2
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    df = pd.DataFrame(
        {
            "plant": rng.choice(["p1", "p2"], n),
            "product": rng.choice(["A", "B", None], n),
            "unit_id": [f"u{i}" for i in range(n)],
            "material_moisture__mean": moist,
            "temperature__mean": temp,
            "vibration__max": vib,
            LABEL: y.astype(int),
        }
    )
    df.loc[rng.random(n) < 0.05, "vibration__max"] = np.nan
    df["split"] = np.where(
        np.arange(n) < 0.7 * n, "train", np.where(np.arange(n) < 0.8 * n, "validation", "holdout")
    )
    return df


def test_same_inputs_give_identical_predictions() -> None:
    data = _rows()
    params = CatBoostParams(iterations=60, depth=4, thread_count=2, random_seed=7)
    a, b = fit(data, SPEC, params), fit(data, SPEC, params)
    pa_, pb = predict(a.model, data, SPEC), predict(b.model, data, SPEC)
    assert np.array_equal(pa_, pb)
    assert a.threshold == b.threshold and a.metrics == b.metrics
    # another seed is another model: the test can fail
    c = fit(data, SPEC, CatBoostParams(iterations=60, depth=4, thread_count=2, random_seed=8))
    assert not np.array_equal(pa_, predict(c.model, data, SPEC))
    assert a.metrics["holdout_roc_auc"] > 0.7 and 0 < a.threshold < 1


def test_fit_needs_both_classes() -> None:
    data = _rows(500)
    data[LABEL] = 0
    with pytest.raises(ValueError, match="one class"):
        fit(data, SPEC, CatBoostParams(iterations=10))


def test_model_frame_types_and_missing_categories() -> None:
    f = model_frame(_rows(50), SPEC)
    assert list(f.columns) == SPEC.columns
    assert f["product"].map(type).eq(str).all() and (f["product"] == MISSING_CATEGORY).any()
    assert f["vibration__max"].dtype == np.float64
    with pytest.raises(ValueError, match="feature_set_version 1"):
        model_frame(_rows(5).drop(columns=["temperature__mean"]), SPEC)


def test_content_hash_ignores_row_order_but_not_values() -> None:
    data = _rows(400)
    cols = ["plant", "unit_id", *SPEC.numeric, LABEL, "split"]
    h = content_hash(data, cols)
    assert content_hash(data.sample(frac=1, random_state=3), cols) == h
    changed = data.copy()
    changed.loc[5, "temperature__mean"] += 0.001
    assert content_hash(changed, cols) != h
    flipped = data.copy()
    flipped.loc[7, LABEL] = 1 - flipped.loc[7, LABEL]
    assert content_hash(flipped, cols) != h


@settings(max_examples=60, deadline=None)
@given(n_days=st.integers(3, 120), holdout=st.floats(0.05, 0.45))
def test_the_latest_day_is_holdout_and_the_day_before_trains(n_days: int, holdout: float) -> None:
    base = load_model_config()
    cfg = base.model_copy(
        update={"training": base.training.model_copy(update={"holdout_fraction": holdout})}
    )
    hold = [holdout_day(r, cfg) for r in range(n_days)]
    assert hold[0] and not hold[1], "a shift's first day trains once the next day is labelled"
    if n_days >= 20:
        # every round(1 / holdout_fraction)-th day: the nearest whole-day rhythm
        assert abs(sum(hold) / n_days - 1 / max(2, round(1 / holdout))) <= 0.05


def test_the_split_holds_out_whole_days_and_falls_back_to_units_below_three_days() -> None:
    cfg = load_model_config()
    days = pd.date_range("2026-03-01", periods=10).date
    df = pd.DataFrame(
        {
            "partition_date": np.repeat(days, 400),
            "start_utc": pd.date_range("2026-03-01", periods=4000, freq="3min"),
            "unit_id": [f"u{i:04d}" for i in range(4000)],
        }
    )
    split = _split(df, cfg)
    hold = split.eq("holdout").groupby(df["partition_date"]).mean()
    assert set(hold[hold > 0].index) == {days[-1], days[-6]} and (hold[hold > 0] == 1).all()
    # validation: 1/8 of every other day's units (10 % overall), the same units every time
    val = split.eq("validation").groupby(df["partition_date"]).mean().drop([days[-1], days[-6]])
    assert ((val > 0.08) & (val < 0.17)).all(), val
    assert split.equals(_split(df.sample(frac=1, random_state=1), cfg).reindex(df.index))
    two = df[df["partition_date"] >= days[-2]]
    s2 = _split(two, cfg)
    assert (s2 == "holdout").sum() == 160 and (s2 == "validation").sum() == 80
    assert set(s2[two["unit_id"] >= "u3840"]) == {"holdout"}, "the latest units are the holdout"


@pytest.mark.parametrize(
    ("n_days", "latency", "end", "own_window", "after", "cause"),
    [
        (2, 2, None, None, 2, "label_latency_days=2"),  # a 2-day data set: nothing labelled yet
        (30, 2, None, None, 2, "label_latency_days=2"),
        (30, 0, "2026-03-25", None, 10, "end_date 2026-03-25"),  # data to 04-04
        (30, 2, None, 7, 2, "label_latency_days=2"),  # the plant's own 7-day window
    ],
)
def test_the_snapshot_says_how_many_units_fall_outside_the_window_and_why(
    qp_env,
    n_days: int,
    latency: int,
    end: str | None,
    own_window: int | None,
    after: int,
    cause: str,
) -> None:
    """Units on days the window leaves out are counted with the reason, so a plant's data that
    falls wholly outside (a short data set under the default label latency) is not silent."""
    import datetime as dt

    import duckdb

    from quality_platform.config import load_plants
    from quality_platform.ml.dataset import outside_window, plant_windows, window_days

    cfg = load_model_config(qp_env)
    plant = load_plants(qp_env)["plant_a"].model_copy(
        update={"label_latency_days": latency, "training_window_days": own_window}
    )
    first_day = dt.date(2026, 3, 6)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA features")
    con.execute(
        "CREATE TABLE features.unit_features AS SELECT 'plant_a' AS plant, "
        f"DATE '{first_day}' + CAST(d AS INTEGER) AS partition_date, u AS unit "
        f"FROM range({n_days}) t(d), range(10) v(u)"
    )
    stop = dt.date.fromisoformat(end) if end else None
    (first, last, latest) = plant_windows(con, {"plant_a": plant}, cfg, stop)["plant_a"]
    window = window_days(plant, cfg)
    assert window == (own_window or cfg.training.window_days)
    assert (last - first).days == window - 1
    got = outside_window(con, plant, first, last, latest, window)
    before = max(0, (first - first_day).days) * 10
    if own_window:  # 30 days, the last 2 unlabelled, a 7-day window: 21 days before it
        assert before == 21 * 10 and f"(window_days={own_window})" in got["left_out_because"]
    assert got["units_after_window"] == after * 10
    assert got["units_before_window"] == before
    assert cause in got["left_out_because"]
    assert (f"before {first}" in got["left_out_because"]) == (before > 0)
    if n_days == 2:  # the whole data set lies after the window: all 20 units, said so
        assert got["units_after_window"] == 20 and last < first_day
        assert got["left_out_because"] == (
            "20 unit(s) on 2026-03-06..2026-03-07 (label_latency_days=2)"  # as in the README
        )
