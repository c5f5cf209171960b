"""Model-quality statistics: agreement with scikit-learn, bootstrap properties, model comparisons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from quality_platform.ml import metrics as m

# --- strategies ----------------------------------------------------------------------------------

# Scores on a coarse grid so that ties are common, or arbitrary floats in [0, 1].
_grid_score = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0])
_float_score = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def labelled_scores(
    draw: st.DrawFn, min_size: int = 1, max_size: int = 60
) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(min_size, max_size))
    y = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    score_strategy = draw(st.sampled_from([_grid_score, _float_score]))
    s = np.array(draw(st.lists(score_strategy, min_size=n, max_size=n)), dtype=float)
    return y, s


def _sample(
    n: int, seed: int, signal: float = 1.5, rate: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and an informative probability score."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < rate
    logit = np.log(rate / (1 - rate)) + signal * (y - rate) + rng.normal(0, 1, n)
    return y, 1 / (1 + np.exp(-logit))


# --- point metrics agree with scikit-learn --------------------------------------------------------


@given(labelled_scores())
def test_roc_auc_matches_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    if y.all() or not y.any():
        assert math.isnan(m.roc_auc(y, s))
    else:
        assert m.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


@given(labelled_scores())
def test_pr_auc_matches_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    if not y.any():
        assert math.isnan(m.pr_auc(y, s))
    else:
        assert m.pr_auc(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


@given(labelled_scores())
def test_brier_and_log_loss_match_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    assert m.brier(y, s) == pytest.approx(skm.brier_score_loss(y, s, pos_label=True), abs=1e-12)
    clipped = np.clip(
        s, 1e-12, 1 - 1e-12
    )  # our clipping; sklearn's own (machine eps) is then a no-op
    expected = skm.log_loss(y, clipped, labels=[False, True])
    assert m.log_loss(y, s) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert m.metric("log_loss", y, s) == m.log_loss(y, s)


@given(labelled_scores(min_size=2), st.integers(0, 2**32 - 1))
@settings(max_examples=50)
def test_weighted_kernel_equals_metric_on_repeated_rows(
    data: tuple[np.ndarray, np.ndarray], seed: int
) -> None:
    """The bootstrap's weighted computation is the metric of the resampled rows."""
    y, s = data
    counts = np.random.default_rng(seed).integers(0, 4, size=(3, y.size))
    for name in m.METRICS:
        weighted = m._weighted_metric(name, y, s, counts)
        for row, value in zip(counts, weighted, strict=True):
            assume(row.sum() > 0)
            expected = m.metric(name, np.repeat(y, row), np.repeat(s, row))
            if math.isnan(expected):
                assert math.isnan(value)
            else:
                assert value == pytest.approx(expected, abs=1e-9)


def test_perfect_and_reversed_scores() -> None:
    y = np.array([0, 0, 1, 0, 1, 1])
    perfect = np.array([0.1, 0.2, 0.8, 0.3, 0.9, 0.7])
    assert m.roc_auc(y, perfect) == 1.0
    assert m.pr_auc(y, perfect) == 1.0
    assert m.roc_auc(y, 1 - perfect) == 0.0
    assert m.roc_auc(y, np.full(6, 0.4)) == 0.5  # all tied: chance
    assert m.brier(y, y.astype(float)) == 0.0
    assert m.log_loss(y, y.astype(float)) == pytest.approx(0.0, abs=1e-11)
    assert m.brier(y, 1.0 - y) == 1.0
    assert m.log_loss(y, 1.0 - y) == pytest.approx(-math.log(1e-12))


def test_undefined_metrics_are_nan() -> None:
    assert math.isnan(m.roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(m.roc_auc([0, 0], [0.2, 0.5]))
    assert math.isnan(m.pr_auc([0, 0], [0.2, 0.5]))
    assert m.pr_auc([1, 1], [0.2, 0.5]) == 1.0


def test_direction_and_dispatch() -> None:
    assert [m.higher_is_better(k) for k in m.METRICS] == [True, True, False, False]
    with pytest.raises(ValueError, match=r"unknown metric 'auc'.*roc_auc, pr_auc, brier, log_loss"):
        m.metric("auc", [0, 1], [0.1, 0.9])
    with pytest.raises(ValueError, match="unknown metric"):
        m.higher_is_better("accuracy")


def test_accepts_lists_and_series() -> None:
    y, s = [0, 1, 1, 0], [0.2, 0.7, 0.6, 0.4]
    ys = pd.Series(y, dtype="boolean", index=[10, 11, 12, 13])
    ss = pd.Series(s, index=[3, 2, 1, 0])  # positional, not index-aligned
    assert m.roc_auc(ys, ss) == m.roc_auc(np.array(y), np.array(s)) == 1.0


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([], [], "y is empty"),
        ([0, 1, 1], [0.1, 0.2], "length mismatch: y has 3 rows but score has 2"),
        ([0, 2], [0.1, 0.2], "only 0/1 labels"),
        ([0, None], [0.1, 0.2], "missing label"),
        ([0, 1], [0.1, float("nan")], "missing or non-finite"),
        ([0, 1], [0.1, 1.5], r"probabilities in \[0, 1\]"),
        ([[0, 1]], [[0.1, 0.2]], "one-dimensional"),
    ],
)
def test_invalid_input(y: list, s: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        m.brier(y, s)


# --- calibration ---------------------------------------------------------------------------------


def test_calibration_of_calibrated_and_miscalibrated_scores() -> None:
    rng = np.random.default_rng(7)
    p = rng.random(20_000)
    y = rng.random(p.size) < p
    good = m.calibration(y, p)
    assert good.ece < 0.03
    assert list(good.bins.columns) == [
        "bin",
        "lower",
        "upper",
        "n",
        "mean_predicted",
        "observed_rate",
    ]
    assert len(good.bins) == 10 and good.bins["n"].sum() == p.size
    assert good.bins["n"].min() >= 1_900  # quantile bins are roughly equal
    assert good.mean_predicted == pytest.approx(p.mean()) and good.observed_rate == pytest.approx(
        y.mean()
    )

    over = m.calibration(y, 0.5 + 0.5 * p, strategy="uniform")  # everything over-predicted
    assert over.ece > 0.2
    assert (over.bins["n"] == 0).sum() == 5  # uniform bins below 0.5 are empty, kept with n = 0
    assert over.bins.loc[over.bins["n"] == 0, "mean_predicted"].isna().all()


def test_calibration_ece_by_hand_and_ties() -> None:
    y = [0, 0, 1, 1]
    s = [0.2, 0.2, 0.6, 1.0]
    cal = m.calibration(y, s, n_bins=2, strategy="uniform")  # bins [0, .5): 2 rows, [.5, 1]: 2 rows
    assert cal.bins["n"].tolist() == [2, 2]
    assert cal.ece == pytest.approx((2 * 0.2 + 2 * 0.2) / 4)
    # Heavily tied scores: duplicate quantile edges are merged, every row lands in exactly one bin.
    tied = m.calibration([0, 1, 0, 1, 1, 0], [0.3, 0.3, 0.3, 0.3, 0.3, 0.9], n_bins=10)
    assert tied.bins["n"].tolist() == [5, 1]
    assert tied.bins["observed_rate"].tolist() == [0.6, 0.0]
    assert tied.ece == pytest.approx((5 * 0.3 + 1 * 0.9) / 6)
    single = m.calibration([0, 1], [0.5, 0.5])
    assert single.bins["n"].tolist() == [2] and single.ece == 0.0
    with pytest.raises(ValueError, match="unknown strategy"):
        m.calibration(y, s, strategy="kmeans")


@given(labelled_scores(), st.integers(1, 12), st.sampled_from(["quantile", "uniform"]))
@settings(max_examples=50)
def test_calibration_properties(
    data: tuple[np.ndarray, np.ndarray], n_bins: int, strategy: str
) -> None:
    y, s = data
    cal = m.calibration(y, s, n_bins=n_bins, strategy=strategy)
    assert cal.bins["n"].sum() == y.size
    assert 0.0 <= cal.ece <= 1.0
    filled = cal.bins[cal.bins["n"] > 0]
    assert (
        (filled["mean_predicted"] >= filled["lower"] - 1e-12)
        & (filled["mean_predicted"] <= filled["upper"] + 1e-12)
    ).all()
    assert (
        cal.ece >= abs(cal.mean_predicted - cal.observed_rate) - 1e-12
    )  # ECE bounds calibration-in-the-large


# --- bootstrap -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", m.METRICS)
def test_bootstrap_interval_contains_estimate_and_is_deterministic(name: str) -> None:
    y, s = _sample(2_000, seed=1)
    iv = m.bootstrap_metric(name, y, s, resamples=200, seed=3)
    assert iv.estimate == m.metric(name, y, s)
    assert iv.lower < iv.estimate < iv.upper
    assert (iv.n, iv.positives, iv.resamples) == (2_000, int(y.sum()), 200)
    assert m.bootstrap_metric(name, y, s, resamples=200, seed=3) == iv
    assert m.bootstrap_metric(name, y, s, resamples=200, seed=4) != iv
    wider = m.bootstrap_metric(name, y, s, resamples=200, seed=3, confidence=0.99)
    assert wider.lower <= iv.lower and wider.upper >= iv.upper


def test_bootstrap_skips_undefined_resamples() -> None:
    y = np.array([1] + [0] * 9)
    s = np.linspace(0.9, 0.0, 10)
    iv = m.bootstrap_metric("roc_auc", y, s, resamples=300, seed=0)
    # The single positive is left out of about (9/10)^10 = 35% of the resamples.
    assert 150 < iv.resamples < 250
    assert iv.estimate == iv.lower == iv.upper == 1.0
    none = m.bootstrap_metric("roc_auc", [0, 0, 0], [0.1, 0.2, 0.3], resamples=10)
    assert none.resamples == 0 and math.isnan(none.estimate) and math.isnan(none.lower)


@pytest.mark.parametrize("name", m.METRICS)
def test_paired_difference_with_itself_is_exactly_zero(name: str) -> None:
    y, s = _sample(500, seed=2)
    d = m.bootstrap_difference(name, y, s, s, resamples=100)
    assert (d.estimate, d.lower, d.upper, d.resamples) == (0.0, 0.0, 0.0, 100)


def test_paired_difference_estimate_and_pairing() -> None:
    y, a = _sample(3_000, seed=5, signal=2.0)
    rng = np.random.default_rng(0)
    b = np.clip(a + rng.normal(0, 0.02, a.size), 0, 1)  # nearly the same model
    d = m.bootstrap_difference("roc_auc", y, a, b, resamples=200)
    assert d.estimate == pytest.approx(m.roc_auc(y, a) - m.roc_auc(y, b), abs=1e-15)
    assert d.lower <= d.estimate <= d.upper
    # Pairing cancels the shared sampling noise: far narrower than a single model's interval.
    single = m.bootstrap_metric("roc_auc", y, a, resamples=200)
    assert d.upper - d.lower < 0.5 * (single.upper - single.lower)


def test_bootstrap_argument_checks() -> None:
    with pytest.raises(ValueError, match="confidence"):
        m.bootstrap_metric("brier", [0, 1], [0.2, 0.8], confidence=95)
    with pytest.raises(ValueError, match="resamples"):
        m.bootstrap_metric("brier", [0, 1], [0.2, 0.8], resamples=0)
    with pytest.raises(ValueError, match="length mismatch: y has 2 rows but score_b has 1"):
        m.bootstrap_difference("brier", [0, 1], [0.2, 0.8], [0.5])


# --- non-inferiority and canary ------------------------------------------------------------------


def _models(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a good model, a copy of it with small noise, and a much weaker model."""
    y, good = _sample(n, seed=seed, signal=3.0)
    rng = np.random.default_rng(seed + 100)
    same = np.clip(good + rng.normal(0, 0.01, n), 0, 1)
    weak = np.clip(0.5 * good + 0.5 * rng.random(n), 0, 1)
    return y, good, same, weak


@pytest.mark.parametrize("name", m.METRICS)
def test_non_inferiority_verdicts(name: str) -> None:
    y, good, same, weak = _models(3_000, seed=11)
    kw = {"margin": 0.01, "min_units": 500, "min_positives": 50, "resamples": 100}

    better = m.non_inferiority(name, y, good, weak, **kw)
    assert better.verdict == "non_inferior", better.reason
    assert better.difference.estimate > 0  # oriented: positive = new is better, also for losses
    assert better.metric == name and better.margin == 0.01
    assert "non-inferior" in better.reason and f"{better.difference.lower:+.4f}" in better.reason

    assert m.non_inferiority(name, y, same, good, **kw).verdict == "non_inferior"

    worse = m.non_inferiority(name, y, weak, good, **kw)
    assert worse.verdict == "inferior", worse.reason
    assert worse.difference.upper < 0
    assert worse.difference.estimate == pytest.approx(-better.difference.estimate)

    few = m.non_inferiority(name, y[:300], good[:300], weak[:300], **kw)
    assert few.verdict == "insufficient_data"
    assert "300 units < 500 required" in few.reason


def test_non_inferiority_needs_both_classes() -> None:
    y, good, _, weak = _models(3_000, seed=12)
    res = m.non_inferiority(
        "brier", y, good, weak, margin=0.0, min_units=100, min_positives=int(y.sum()) + 1
    )
    assert res.verdict == "insufficient_data" and "positives <" in res.reason
    res = m.non_inferiority(
        "brier", ~y, good, weak, margin=0.0, min_units=100, min_positives=int(y.sum()) + 1
    )
    assert res.verdict == "insufficient_data" and "negatives <" in res.reason
    empty = m.non_inferiority("roc_auc", [], [], [], margin=0.01, min_units=1, min_positives=1)
    assert empty.verdict == "insufficient_data" and "0 units < 1 required" in empty.reason
    assert empty.difference.n == 0 and math.isnan(empty.difference.lower)
    with pytest.raises(ValueError, match="length mismatch"):
        m.non_inferiority(
            "roc_auc", [0, 1], [0.1, 0.9], [0.5], margin=0.01, min_units=1, min_positives=1
        )


def test_canary_verdicts() -> None:
    y, good, same, weak = _models(4_000, seed=13)
    kw = {
        "promote_margin": 0.01,
        "rollback_margin": 0.02,
        "min_units": 1_000,
        "min_positives": 50,
        "resamples": 100,
    }

    promote = m.canary_verdict("roc_auc", y, same, good, **kw)
    assert promote.decision == "promote", promote.reason
    assert promote.difference is not None and promote.difference.lower >= -0.01
    assert promote.reason.startswith("promote:")

    rollback = m.canary_verdict("log_loss", y, weak, good, **kw)
    assert rollback.decision == "rollback", rollback.reason
    assert rollback.difference is not None and rollback.difference.upper < -0.02

    early = m.canary_verdict("roc_auc", y[:400], weak[:400], good[:400], **kw)
    assert early.decision == "wait" and "400 units < 1000 required" in early.reason
    assert early.difference is not None  # computed for information even while waiting

    # Enough data but an interval straddling the margins: wait.
    slightly = np.clip(good + np.random.default_rng(1).normal(0, 0.25, good.size), 0, 1)
    undecided = m.canary_verdict(
        "roc_auc", y[:1_000], slightly[:1_000], good[:1_000], **{**kw, "rollback_margin": 0.2}
    )
    d = undecided.difference
    assert d is not None and d.lower < -0.01 and d.upper >= -0.2
    assert undecided.decision == "wait" and "undecided" in undecided.reason


def test_canary_uses_only_complete_units() -> None:
    y, good, same, _ = _models(2_000, seed=14)
    y_missing = pd.Series(y, dtype="boolean")
    y_missing[:500] = pd.NA
    champion = good.copy()
    champion[500:1_000] = np.nan  # champion did not score these
    kw = {
        "promote_margin": 0.01,
        "rollback_margin": 0.02,
        "min_units": 100,
        "min_positives": 10,
        "resamples": 50,
    }
    res = m.canary_verdict("pr_auc", y_missing, same, champion, **kw)
    assert res.difference is not None and res.difference.n == 1_000
    assert "1000 of 2000 units without label or both scores ignored" in res.reason
    direct = m.canary_verdict("pr_auc", y[1_000:], same[1_000:], good[1_000:], **kw)
    assert res.difference == direct.difference and res.decision == direct.decision

    nothing = m.canary_verdict("roc_auc", [None, None], [0.1, 0.2], [0.3, 0.4], **kw)
    assert nothing.decision == "wait" and nothing.difference is None
    one_class = m.canary_verdict("roc_auc", np.zeros(500), good[:500], same[:500], **kw)
    assert one_class.decision == "wait" and one_class.difference is None
    with pytest.raises(ValueError, match="length mismatch"):
        m.canary_verdict("roc_auc", [0, 1], [0.1, 0.2], [0.3], **kw)


# --- thresholds ----------------------------------------------------------------------------------


def test_best_f1_threshold_hand_checked() -> None:
    y = [1, 1, 0, 1, 0, 0]
    s = [0.9, 0.8, 0.7, 0.6, 0.3, 0.1]
    # F1 = 2TP / (2TP + FP + FN) at threshold 0.9: 2/(2+0+2) = .5; 0.8: 4/(4+0+1) = .8;
    # 0.7: 4/(4+1+1) = .667; 0.6: 6/(6+1+0) = .857; 0.3: 6/8 = .75; 0.1: 6/9 = .667
    threshold, f1 = m.best_f1_threshold(y, s)
    assert threshold == 0.6 and f1 == pytest.approx(6 / 7)
    assert m.confusion_at(y, s, threshold) == {
        "tp": 3.0,
        "fp": 1.0,
        "tn": 2.0,
        "fn": 0.0,
        "precision": 0.75,
        "recall": 1.0,
        "f1": pytest.approx(6 / 7),
    }
    # Tied scores form one threshold: 0.8 flags both rows (F1 2/4), 0.4 flags all (F1 4/6). Taking the
    # positive row at 0.8 alone (F1 2/3) would not be a threshold on the score.
    assert m.best_f1_threshold([1, 0, 1, 0], [0.8, 0.8, 0.4, 0.4]) == (0.4, pytest.approx(2 / 3))
    # Equal F1 (2/3 at 0.9 and at 0.1) resolves to the higher threshold.
    assert m.best_f1_threshold([1, 0, 0, 1], [0.9, 0.5, 0.5, 0.1]) == (0.9, pytest.approx(2 / 3))
    assert m.best_f1_threshold([0, 0, 0], [0.1, 0.5, 0.9]) == (0.5, 0.0)


@given(labelled_scores(min_size=1))
@settings(max_examples=50)
def test_best_f1_threshold_is_the_maximum(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    threshold, f1 = m.best_f1_threshold(y, s)
    if not y.any():
        assert (threshold, f1) == (0.5, 0.0)
        return
    assert f1 == pytest.approx(m.confusion_at(y, s, threshold)["f1"])
    brute = max(m.confusion_at(y, s, t)["f1"] for t in np.unique(s))
    assert f1 == pytest.approx(brute)


def test_confusion_at_degenerate_cases() -> None:
    nothing_predicted = m.confusion_at([0, 1], [0.1, 0.2], 0.5)
    assert nothing_predicted["precision"] == 0.0 and nothing_predicted["recall"] == 0.0
    assert nothing_predicted["fn"] == 1.0 and nothing_predicted["tn"] == 1.0
    no_positives = m.confusion_at([0, 0], [0.1, 0.9], 0.5)
    assert no_positives["recall"] == 0.0 and no_positives["f1"] == 0.0 and no_positives["fp"] == 1.0
    all_quiet = m.confusion_at([0, 0], [0.1, 0.2], 0.5)
    assert all_quiet == {
        "tp": 0.0,
        "fp": 0.0,
        "tn": 2.0,
        "fn": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }


def test_loss_surprise_is_standard_normal_for_a_calibrated_model_and_large_under_concept_drift() -> (
    None
):
    from quality_platform.ml.metrics import loss_surprise

    rng = np.random.default_rng(3)
    zs = []
    for _ in range(400):
        p = rng.beta(1.0, 20.0, size=1000)
        zs.append(loss_surprise(rng.random(1000) < p, p).z)
    zs = np.asarray(zs)
    assert abs(zs.mean()) < 0.2 and 0.8 < zs.std() < 1.2 and (zs >= 4).mean() == 0
    # the outcomes follow another mechanism: defects where the model saw low risk
    p = rng.beta(1.0, 20.0, size=3000)
    y = rng.random(3000) < np.clip(0.2 - p, 0.0, 1.0)
    s = loss_surprise(y, p)
    assert s.z > 4 and s.observed > s.expected
    assert np.isnan(loss_surprise(np.array([], dtype=bool), np.array([])).z)


def test_loss_surprise_baseline_absorbs_the_holdout_overconfidence() -> None:
    from quality_platform.ml.metrics import loss_surprise

    rng = np.random.default_rng(5)

    def day(n: int) -> tuple[np.ndarray, np.ndarray]:
        true = rng.beta(1.0, 20.0, size=n)
        said = np.clip(
            true * 1.8, 0.0, 0.99
        )  # an over-confident model: its extreme risks are too extreme
        return rng.random(n) < true, said

    holdout = loss_surprise(*day(20000))
    zs = np.asarray([loss_surprise(*day(1000)).z for _ in range(100)])
    zb = np.asarray([loss_surprise(*day(1000), baseline=holdout).z for _ in range(100)])
    assert abs(zb.mean()) < 0.5 and abs(zb.mean()) < abs(zs.mean())


def test_auc_shortfall_expects_what_calibrated_risks_promise_and_sees_a_broken_ranking() -> None:
    from quality_platform.ml.metrics import auc_shortfall, expected_roc_auc

    rng = np.random.default_rng(9)
    gaps, zs = [], []
    for _ in range(200):
        p = rng.beta(1.0, 20.0, size=1000)
        r = auc_shortfall(rng.random(1000) < p, p)
        gaps.append(r.gap)
        zs.append(r.z)
    assert abs(np.mean(gaps)) < 0.01 and (np.asarray(zs) <= -3).mean() <= 0.01
    # a day whose units hardly differ promises (and gets) about 0.5: no alarm for a quiet day
    assert abs(expected_roc_auc(0.04 + rng.normal(0, 1e-4, 1000)) - 0.5) < 0.05
    assert expected_roc_auc([0.2, 0.8]) == pytest.approx(0.64 / 0.68)
    # outcomes that no longer follow the risks
    p = rng.beta(1.0, 20.0, size=3000)
    assert auc_shortfall(rng.random(3000) < rng.permutation(p), p).z < -5
    # a perfect small day is no alarm even when the holdout was better than promised
    p = np.r_[np.full(50, 0.9), np.full(300, 0.01)]
    y = np.r_[np.ones(50, bool), np.zeros(300, bool)]
    assert auc_shortfall(y, p).z > 0
