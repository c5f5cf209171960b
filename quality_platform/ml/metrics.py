"""Model-quality statistics: the one implementation that the release gate, the canary evaluation and
monitoring all use, so that a number means the same thing wherever it is reported.

Conventions
-----------
* ``y`` holds binary labels (1 = defect / positive class) as bool, int or float 0/1; scores are
  predicted probabilities of the positive class in [0, 1]. Lists, numpy arrays and pandas Series are
  accepted. Empty input, length mismatches, missing values, labels other than 0/1 and scores outside
  [0, 1] raise ``ValueError`` naming the problem (only :func:`canary_verdict` drops rows with a
  missing label or score, because a canary compares only units that have everything).
* Metrics: ``roc_auc`` and ``pr_auc`` are higher-is-better, ``brier`` and ``log_loss`` are
  lower-is-better. A metric that is undefined on the data (ROC-AUC with one class, PR-AUC without
  positives) is ``NaN``, never an exception, so callers can decide what "no evidence" means.
* Comparisons (:func:`non_inferiority`, :func:`canary_verdict`) orient differences so that *positive
  means the new model / challenger is better*, whichever direction the metric runs.

Implementation note: the bootstrap does not materialise resampled arrays. A resample with replacement
is a vector of integer row multiplicities; every metric here is computed as a weighted statistic over
the rows sorted once by score (rank-based Mann-Whitney ROC-AUC, step-wise average precision, weighted
means), vectorised over a block of resamples. The point estimates use the same code with all weights
1, so a bootstrap resample and the plain metric on the resampled rows agree exactly up to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

METRICS = ("roc_auc", "pr_auc", "brier", "log_loss")
_HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "brier": False, "log_loss": False}
_LOG_LOSS_EPS = 1e-12
# Upper bound on elements of one (resamples x rows) weight block, to cap bootstrap memory (~32 MB).
_BLOCK_ELEMENTS = 4_000_000


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _as_float_array(values: Any, what: str) -> np.ndarray:
    """1-D float array; missing values (None, NaN, pd.NA) become NaN."""
    if isinstance(values, pd.Series | pd.Index):
        arr = values.to_numpy(dtype=float, na_value=np.nan)
    else:
        try:
            arr = np.asarray(values, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_labels(y: np.ndarray, what: str = "y") -> np.ndarray:
    if np.isnan(y).any():
        raise ValueError(f"{what} has {int(np.isnan(y).sum())} missing label(s)")
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise ValueError(f"{what} must contain only 0/1 labels, found e.g. {y[bad][0]!r}")
    return y.astype(bool)


def _check_scores(s: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(s).all():
        raise ValueError(
            f"{what} has {int((~np.isfinite(s)).sum())} missing or non-finite score(s)"
        )
    if s.size and (s.min() < 0.0 or s.max() > 1.0):
        raise ValueError(
            f"{what} must be probabilities in [0, 1], found range [{s.min():g}, {s.max():g}]"
        )
    return s


def _inputs(
    y: Any, allow_empty: bool = False, **scores: Any
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Validated (bool labels, [float scores...]); the keyword names are used in error messages."""
    yy = _as_float_array(y, "y")
    if yy.size == 0 and not allow_empty:
        raise ValueError("y is empty: no rows to evaluate")
    out = []
    for what, values in scores.items():
        s = _as_float_array(values, what)
        if s.size != yy.size:
            raise ValueError(f"length mismatch: y has {yy.size} rows but {what} has {s.size}")
        out.append(s)
    labels = _check_labels(yy)
    return labels, [_check_scores(s, what) for s, what in zip(out, scores, strict=True)]


def _check_metric(name: str) -> str:
    if name not in _HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}")
    return name


def _check_confidence(confidence: float, resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    if int(resamples) != resamples or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples}")


# --------------------------------------------------------------------------------------------
# Weighted kernels (weights: (R, n) row multiplicities in original row order)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sorted:
    """Rows sorted ascending by score, with the start of each run of tied scores."""

    order: np.ndarray  # permutation sorting the score ascending
    positive: np.ndarray  # labels in sorted order (float 0/1)
    starts: np.ndarray  # index (in sorted order) of the first row of each distinct score

    @classmethod
    def of(cls, y: np.ndarray, score: np.ndarray) -> _Sorted:
        order = np.argsort(score, kind="stable")
        s = score[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        return cls(order=order, positive=y[order].astype(float), starts=starts)

    def class_weights_by_score(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positive, negative) weight per distinct score, ascending; shapes (R, n_distinct)."""
        ws = w[:, self.order]
        pos = ws * self.positive
        neg = ws - pos
        return np.add.reduceat(pos, self.starts, axis=1), np.add.reduceat(neg, self.starts, axis=1)


def _auc_kernel(srt: _Sorted, w: np.ndarray) -> np.ndarray:
    pos, neg = srt.class_weights_by_score(w)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg  # negatives with a strictly lower score
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)  # ties count one half
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), wins / (n_pos * n_neg), np.nan)


def _ap_kernel(srt: _Sorted, w: np.ndarray) -> np.ndarray:
    pos, neg = srt.class_weights_by_score(w)
    pos, neg = pos[:, ::-1], neg[:, ::-1]  # thresholds from the highest score down
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    predicted = tp + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        n_pos = tp[:, -1]
        return np.where(n_pos > 0, (pos * precision).sum(axis=1) / n_pos, np.nan)


def _row_losses(name: str, y: np.ndarray, score: np.ndarray, eps: float) -> np.ndarray:
    if name == "brier":
        return (score - y.astype(float)) ** 2
    p = np.clip(score, eps, 1.0 - eps)
    return -np.where(y, np.log(p), np.log1p(-p))


class _Evaluator:
    """Evaluates one metric for one score vector under many weight vectors."""

    def __init__(self, name: str, y: np.ndarray, score: np.ndarray, eps: float = _LOG_LOSS_EPS):
        self.name = name
        if name in ("roc_auc", "pr_auc"):
            self._sorted = _Sorted.of(y, score)
        else:
            self._losses = _row_losses(name, y, score, eps)

    def __call__(self, w: np.ndarray) -> np.ndarray:
        if self.name == "roc_auc":
            return _auc_kernel(self._sorted, w)
        if self.name == "pr_auc":
            return _ap_kernel(self._sorted, w)
        return (w @ self._losses) / w.sum(axis=1)


def _weighted_metric(
    name: str, y: np.ndarray, score: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Metric of the rows repeated ``weights[r, i]`` times, for each weight row r; shape (R,)."""
    return _Evaluator(_check_metric(name), y, score)(
        np.atleast_2d(np.asarray(weights, dtype=float))
    )


def _point(name: str, y: np.ndarray, score: np.ndarray, eps: float = _LOG_LOSS_EPS) -> float:
    return float(_Evaluator(name, y, score, eps)(np.ones((1, y.size)))[0])


def _resample_weights(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap resamples as row multiplicities, shape (block, n); deterministic per seed."""
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // n)
    done = 0
    while done < resamples:
        r = min(block, resamples - done)
        idx = rng.integers(0, n, size=(r, n))
        idx += np.arange(r)[:, None] * n
        yield np.bincount(idx.ravel(), minlength=r * n).reshape(r, n).astype(float)
        done += r


# --------------------------------------------------------------------------------------------
# Point metrics
# --------------------------------------------------------------------------------------------


def higher_is_better(metric: str) -> bool:
    """True for metrics where larger is better (``roc_auc``, ``pr_auc``), False for losses."""
    return _HIGHER_IS_BETTER[_check_metric(metric)]


def roc_auc(y: Any, score: Any) -> float:
    """Area under the ROC curve: the probability that a random positive scores higher than a random
    negative (ties count one half), i.e. the normalised Mann-Whitney U statistic. 0.5 is chance,
    1.0 perfect ranking. ``NaN`` when only one class is present."""
    labels, (s,) = _inputs(y, score=score)
    return _point("roc_auc", labels, s)


def pr_auc(y: Any, score: Any) -> float:
    """Area under the precision-recall curve as average precision: the mean, over positives, of the
    precision at the threshold that first includes them, with tied scores forming one threshold
    (the step-wise definition of scikit-learn's ``average_precision_score``, no interpolation).
    Chance level is the positive rate, so it is informative for rare defects. ``NaN`` without
    positives."""
    labels, (s,) = _inputs(y, score=score)
    return _point("pr_auc", labels, s)


def brier(y: Any, score: Any) -> float:
    """Brier score: mean squared difference between predicted probability and outcome (0 is
    perfect; always predicting the base rate p scores p(1-p)). Rewards both ranking and calibration."""
    labels, (s,) = _inputs(y, score=score)
    return _point("brier", labels, s)


def log_loss(y: Any, score: Any, eps: float = _LOG_LOSS_EPS) -> float:
    """Mean negative log-likelihood of the labels under the predicted probabilities (cross-entropy,
    natural log). Probabilities are clipped to [eps, 1 - eps] so a confident mistake costs at most
    -log(eps) instead of infinity. Lower is better; log(2) ~ 0.693 is a constant 0.5 prediction."""
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    labels, (s,) = _inputs(y, score=score)
    return _point("log_loss", labels, s, eps)


@dataclass(frozen=True)
class LossSurprise:
    """Realised log-loss of probabilities against what they themselves predict."""

    observed: float  # mean log-loss of the labels
    expected: float  # mean log-loss a calibrated model expects (mean binary entropy of its risks)
    excess: float  # observed - expected (mean per unit)
    excess_sd: float  # sd of the per-unit excess (empirical)
    n: int
    z: float  # excess against the baseline excess, in standard errors; NaN without data


def loss_surprise(
    y: Any, p: Any, baseline: LossSurprise | None = None, eps: float = _LOG_LOSS_EPS
) -> LossSurprise:
    """How surprised the model is by the outcomes. If the risks ``p`` are right, unit ``i``'s
    log-loss has mean ``H(p_i)`` (binary entropy) and variance ``p_i (1 - p_i) logit(p_i)^2``; the
    per-unit excess ``loss - H`` then averages 0. A model that is somewhat over-confident on unseen
    data shows a small positive excess already on its holdout: pass that holdout's surprise as
    ``baseline`` and ``z`` measures the excess beyond it (standard error of both means). When the
    mechanism changes (concept drift) defects happen where the model did not expect them and ``z``
    grows. Unlike a day's ROC-AUC it does not depend on how much the day's units differ."""
    labels, (pp,) = _inputs(y, allow_empty=True, p=p)
    if len(labels) == 0:
        return LossSurprise(math.nan, math.nan, math.nan, math.nan, 0, math.nan)
    yy = labels.astype(np.float64)
    q = np.clip(pp, eps, 1 - eps)
    lo = np.log(q)
    l1 = np.log1p(-q)
    loss = -(yy * lo + (1 - yy) * l1)
    ent = -(q * lo + (1 - q) * l1)
    n = len(q)
    excess = loss - ent
    var_model = float((q * (1 - q) * (lo - l1) ** 2).sum()) / n**2  # variance of the mean excess
    if baseline is None or not baseline.n:
        se, ref = math.sqrt(var_model), 0.0
    else:
        se, ref = math.sqrt(var_model + baseline.excess_sd**2 / baseline.n), baseline.excess
    z = float((excess.mean() - ref) / se) if se > 0 else math.nan
    return LossSurprise(
        float(loss.mean()),
        float(ent.mean()),
        float(excess.mean()),
        float(excess.std(ddof=1)) if n > 1 else 0.0,
        n,
        z,
    )


@dataclass(frozen=True)
class AucShortfall:
    """Realised ROC-AUC against the ROC-AUC the model's own risks imply on the same units."""

    observed: float
    expected: float  # if the risks were the true probabilities
    gap: float  # observed - expected
    se: float  # Hanley-McNeil standard error at the expected AUC
    z: float  # (gap - baseline gap) / se; NaN without both classes


def expected_roc_auc(p: Any) -> float:
    """ROC-AUC a calibrated model expects on these units: each unit is a positive with probability
    ``p_i``; the expected concordant pairs over the expected positive x negative pairs (ties count
    half). Low when the units hardly differ (a day without spread), high when they do."""
    q = np.sort(np.asarray(p, dtype=np.float64))
    if len(q) < 2:
        return math.nan
    neg = 1.0 - q
    # for each distinct value: negatives strictly below + half the negatives at the same value
    _uniq, start, counts = np.unique(q, return_index=True, return_counts=True)
    cum_neg = np.concatenate([[0.0], np.cumsum(neg)])
    below = cum_neg[start]
    same = cum_neg[start + counts] - below
    pos_at = np.add.reduceat(q, start)
    # a unit is not paired with itself: remove p_i (1 - p_i) from the tie term
    self_pairs = np.add.reduceat(q * neg, start)
    concordant = float(np.sum(pos_at * below) + 0.5 * np.sum(pos_at * same - self_pairs))
    pairs = float(q.sum() * neg.sum() - np.sum(q * neg))
    return concordant / pairs if pairs > 0 else math.nan


def auc_shortfall(y: Any, p: Any, baseline: AucShortfall | None = None) -> AucShortfall:
    """How far the realised ranking falls behind what the risks promise on the same units. Unlike a
    comparison with a fixed holdout ROC-AUC, a day whose units hardly differ (low expected AUC) is no
    alarm; a changed mechanism (concept drift) ranks worse than the model itself expects. A model
    that over-promises on unseen data already shows a gap on its holdout: pass that as ``baseline``."""
    labels, (pp,) = _inputs(y, allow_empty=True, p=p)
    n1 = int(labels.sum())
    n2 = len(labels) - n1
    if n1 == 0 or n2 == 0:
        return AucShortfall(math.nan, math.nan, math.nan, math.nan, math.nan)
    a = roc_auc(labels, pp)
    e = expected_roc_auc(pp)
    # the standard error under the hypothesis "the risks are right", i.e. at the expected AUC (the
    # observed one can be 1.0 on a small day, where its own standard error vanishes)
    h = min(max(e, 0.5), 0.995) if e == e else 0.5
    q1, q2 = h / (2 - h), 2 * h * h / (1 + h)
    se = math.sqrt(
        max(h * (1 - h) + (n1 - 1) * (q1 - h * h) + (n2 - 1) * (q2 - h * h), 1e-12) / (n1 * n2)
    )
    ref = baseline.gap if baseline is not None and baseline.gap == baseline.gap else 0.0
    return AucShortfall(a, e, a - e, se, (a - e - ref) / se)


def metric(name: str, y: Any, score: Any) -> float:
    """The metric called ``name`` (one of :data:`METRICS`) of ``score`` against ``y``."""
    _check_metric(name)
    labels, (s,) = _inputs(y, score=score)
    return _point(name, labels, s)


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Reliability of predicted probabilities.

    ``ece``: expected calibration error, the n-weighted mean over bins of
    ``|mean_predicted - observed_rate|`` (0 = the predicted probabilities match observed frequencies).
    ``mean_predicted`` / ``observed_rate``: over all rows (their gap is the calibration-in-the-large).
    ``bins``: one row per bin with columns ``bin, lower, upper, n, mean_predicted, observed_rate``;
    bins are ``[lower, upper)`` except the last, which includes ``upper``. Empty bins (possible with
    ``"uniform"``) are kept with ``n = 0`` and NaN rates; they do not contribute to ``ece``.
    """

    ece: float
    mean_predicted: float
    observed_rate: float
    bins: pd.DataFrame


def calibration(y: Any, score: Any, n_bins: int = 10, strategy: str = "quantile") -> Calibration:
    """Calibration table and expected calibration error of ``score``.

    ``strategy="quantile"`` uses score quantiles as bin edges (bins of roughly equal size; edges that
    coincide because of tied scores are merged, so there may be fewer than ``n_bins`` bins);
    ``strategy="uniform"`` uses ``n_bins`` equal-width bins on [0, 1].
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    labels, (s,) = _inputs(y, score=score)
    yf = labels.astype(float)
    if strategy == "quantile":
        edges = np.unique(np.quantile(s, np.linspace(0.0, 1.0, int(n_bins) + 1)))
        if edges.size == 1:  # all scores equal: one bin
            edges = np.array([edges[0], edges[0]])
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; known: 'quantile', 'uniform'")
    k = edges.size - 1
    idx = np.searchsorted(edges[1:-1], s, side="right")
    n = np.bincount(idx, minlength=k)
    sum_pred = np.bincount(idx, weights=s, minlength=k)
    sum_obs = np.bincount(idx, weights=yf, minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_pred = np.where(n > 0, sum_pred / n, np.nan)
        observed = np.where(n > 0, sum_obs / n, np.nan)
    nonempty = n > 0
    ece = float(np.sum(n[nonempty] * np.abs(mean_pred[nonempty] - observed[nonempty])) / s.size)
    bins = pd.DataFrame(
        {
            "bin": np.arange(k),
            "lower": edges[:-1],
            "upper": edges[1:],
            "n": n.astype(np.int64),
            "mean_predicted": mean_pred,
            "observed_rate": observed,
        }
    )
    return Calibration(
        ece=ece, mean_predicted=float(s.mean()), observed_rate=float(yf.mean()), bins=bins
    )


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile-bootstrap confidence interval.

    ``n``/``positives``: rows and positive labels of the evaluated sample. ``resamples``: bootstrap
    resamples actually used, i.e. those in which the metric was defined (a resample with a single
    class is skipped for ROC-AUC, one without positives for PR-AUC). With no usable resample
    ``lower`` and ``upper`` are NaN.
    """

    estimate: float
    lower: float
    upper: float
    n: int
    positives: int
    resamples: int


def _interval(
    estimate: float, values: np.ndarray, confidence: float, labels: np.ndarray
) -> Interval:
    values = values[~np.isnan(values)]
    if values.size:
        alpha = 1.0 - confidence
        lower, upper = (float(v) for v in np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0]))
    else:
        lower = upper = float("nan")
    return Interval(
        estimate=estimate,
        lower=lower,
        upper=upper,
        n=int(labels.size),
        positives=int(labels.sum()),
        resamples=int(values.size),
    )


def _bootstrap_difference(
    name: str,
    labels: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    resamples: int,
    confidence: float,
    seed: int,
) -> Interval:
    ev_a, ev_b = _Evaluator(name, labels, a), _Evaluator(name, labels, b)
    ones = np.ones((1, labels.size))
    estimate = float(ev_a(ones)[0] - ev_b(ones)[0])
    values = np.concatenate(
        [ev_a(w) - ev_b(w) for w in _resample_weights(labels.size, resamples, seed)]
    )
    return _interval(estimate, values, confidence, labels)


def bootstrap_metric(
    name: str, y: Any, score: Any, resamples: int = 200, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Metric ``name`` with a percentile-bootstrap ``confidence`` interval.

    Rows are resampled with replacement ``resamples`` times; resamples in which the metric is
    undefined are skipped (see :class:`Interval`). ``estimate`` is the metric on the full sample.
    Deterministic for a given ``seed``.
    """
    _check_metric(name)
    _check_confidence(confidence, resamples)
    labels, (s,) = _inputs(y, score=score)
    ev = _Evaluator(name, labels, s)
    estimate = float(ev(np.ones((1, labels.size)))[0])
    values = np.concatenate([ev(w) for w in _resample_weights(labels.size, int(resamples), seed)])
    return _interval(estimate, values, confidence, labels)


def bootstrap_difference(
    name: str,
    y: Any,
    score_a: Any,
    score_b: Any,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """``metric(score_a) - metric(score_b)`` with a *paired* percentile-bootstrap interval.

    Both models are evaluated on the same resampled rows in every resample, so the variation the two
    share (which rows happen to be hard) cancels and the interval is much narrower than comparing
    two independent intervals. ``estimate`` is the difference on the full sample. Not oriented: for
    lower-is-better metrics a negative difference means ``score_a`` is better.
    """
    _check_metric(name)
    _check_confidence(confidence, resamples)
    labels, (a, b) = _inputs(y, score_a=score_a, score_b=score_b)
    return _bootstrap_difference(name, labels, a, b, int(resamples), confidence, seed)


# --------------------------------------------------------------------------------------------
# Model comparisons
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NonInferiority:
    """Outcome of a non-inferiority test of a new model against a reference.

    ``difference`` is *oriented* (positive = new model better): ``new - ref`` for higher-is-better
    metrics, ``ref - new`` for losses. ``verdict`` is ``"non_inferior"``, ``"inferior"`` or
    ``"insufficient_data"``; ``reason`` is a one-line human-readable explanation with the numbers.
    """

    metric: str
    margin: float
    difference: Interval
    verdict: str
    reason: str


def _oriented(
    name: str, labels: np.ndarray, new: np.ndarray, ref: np.ndarray, **boot: Any
) -> Interval:
    if higher_is_better(name):
        return _bootstrap_difference(name, labels, new, ref, **boot)
    return _bootstrap_difference(name, labels, ref, new, **boot)


def _describe(name: str, d: Interval, confidence: float, what: str) -> str:
    formula = f"{what[0]} - {what[1]}" if higher_is_better(name) else f"{what[1]} - {what[0]}"
    return (
        f"{name}: {formula} = {d.estimate:+.4f} ({confidence:.0%} CI {d.lower:+.4f} to {d.upper:+.4f}, "
        f"{d.resamples} resamples) on {d.n} units with {d.positives} positives"
    )


def _data_shortfall(n: int, positives: int, min_units: int, min_positives: int) -> str | None:
    negatives = n - positives
    missing = []
    if n < min_units:
        missing.append(f"{n} units < {min_units} required")
    if positives < min_positives:
        missing.append(f"{positives} positives < {min_positives} required")
    if negatives < min_positives:
        missing.append(f"{negatives} negatives < {min_positives} required")
    return "; ".join(missing) or None


def _check_margin(value: float, what: str) -> None:
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value}")


def non_inferiority(
    name: str,
    y: Any,
    score_new: Any,
    score_ref: Any,
    margin: float,
    min_units: int,
    min_positives: int,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> NonInferiority:
    """Is the new model no worse than the reference by more than ``margin``?

    The oriented paired difference ``d`` (positive = new better, see :class:`NonInferiority`) is
    bootstrapped on the same rows. Verdicts: ``"insufficient_data"`` when there are fewer than
    ``min_units`` rows or fewer than ``min_positives`` positives or negatives (or the interval is
    undefined); ``"non_inferior"`` when the lower confidence bound of ``d`` is ``>= -margin``;
    otherwise ``"inferior"``. ``margin`` is in the metric's units (e.g. 0.01 AUC). Empty input is
    not an error here but ``"insufficient_data"`` with an all-NaN ``difference`` (``n = 0``).
    """
    _check_metric(name)
    _check_confidence(confidence, resamples)
    _check_margin(margin, "margin")
    labels, (new, ref) = _inputs(y, allow_empty=True, score_new=score_new, score_ref=score_ref)
    if labels.size:
        boot = {"resamples": int(resamples), "confidence": confidence, "seed": seed}
        d = _oriented(name, labels, new, ref, **boot)
    else:  # e.g. a plant without comparable units: no evidence rather than an error
        d = Interval(math.nan, math.nan, math.nan, n=0, positives=0, resamples=0)
    summary = _describe(name, d, confidence, ("new", "ref"))
    shortfall = _data_shortfall(d.n, d.positives, min_units, min_positives)
    if shortfall is None and np.isnan(d.lower):
        shortfall = "the difference is undefined on this sample"
    if shortfall is not None:
        verdict, reason = "insufficient_data", f"insufficient data ({shortfall}); {summary}"
    elif d.lower >= -margin:
        verdict = "non_inferior"
        reason = f"non-inferior: {summary}; lower bound {d.lower:+.4f} >= -margin {-margin:+.4f}"
    else:
        verdict = "inferior"
        reason = f"inferior: {summary}; lower bound {d.lower:+.4f} < -margin {-margin:+.4f}"
    return NonInferiority(
        metric=name, margin=float(margin), difference=d, verdict=verdict, reason=reason
    )


@dataclass(frozen=True)
class CanaryVerdict:
    """Decision on a challenger model running as a canary next to the champion.

    ``decision`` is ``"promote"``, ``"rollback"`` or ``"wait"``. ``difference`` is the oriented paired
    difference (positive = challenger better), ``None`` when it could not be computed (no units, or
    only one class among the labelled units). ``reason`` explains the decision with the numbers.
    """

    decision: str
    metric: str
    difference: Interval | None
    reason: str


def canary_verdict(
    name: str,
    y: Any,
    score_challenger: Any,
    score_champion: Any,
    promote_margin: float,
    rollback_margin: float,
    min_units: int,
    min_positives: int,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> CanaryVerdict:
    """Promote, roll back or keep waiting, from a paired comparison of challenger and champion.

    Only units with a label and both scores are compared (missing values in the inputs are dropped
    here, unlike elsewhere in this module). With ``d`` the oriented difference (positive =
    challenger better) and its confidence interval, in this order:

    * ``"wait"`` when there are fewer than ``min_units`` units or fewer than ``min_positives``
      positives or negatives;
    * ``"rollback"`` when the upper bound of ``d`` is ``< -rollback_margin`` (clearly worse);
    * ``"promote"`` when the lower bound of ``d`` is ``>= -promote_margin`` (non-inferior);
    * ``"wait"`` otherwise (the interval is still too wide to decide).
    """
    _check_metric(name)
    _check_confidence(confidence, resamples)
    _check_margin(promote_margin, "promote_margin")
    _check_margin(rollback_margin, "rollback_margin")
    yy = _as_float_array(y, "y")
    ch = _as_float_array(score_challenger, "score_challenger")
    cp = _as_float_array(score_champion, "score_champion")
    if not yy.size == ch.size == cp.size:
        raise ValueError(
            f"length mismatch: y has {yy.size} rows, score_challenger {ch.size}, score_champion {cp.size}"
        )
    complete = ~(np.isnan(yy) | np.isnan(ch) | np.isnan(cp))
    labels = _check_labels(yy[complete])
    ch = _check_scores(ch[complete], "score_challenger")
    cp = _check_scores(cp[complete], "score_champion")
    n, positives = int(labels.size), int(labels.sum())
    dropped = (
        f" ({yy.size - n} of {yy.size} units without label or both scores ignored)"
        if n < yy.size
        else ""
    )

    d: Interval | None = None
    if 0 < positives < n:
        boot = {"resamples": int(resamples), "confidence": confidence, "seed": seed}
        d = _oriented(name, labels, ch, cp, **boot)
    summary = (
        _describe(name, d, confidence, ("challenger", "champion"))
        if d is not None
        else f"{name}: not computable on {n} units with {positives} positives"
    ) + dropped

    shortfall = _data_shortfall(n, positives, min_units, min_positives)
    if shortfall is None and (d is None or np.isnan(d.lower)):
        shortfall = "the difference is undefined on this sample"
    if shortfall is not None:
        decision, reason = "wait", f"wait for data ({shortfall}); {summary}"
    else:
        assert d is not None
        if d.upper < -rollback_margin:
            decision = "rollback"
            reason = f"rollback: {summary}; upper bound {d.upper:+.4f} < -rollback_margin {-rollback_margin:+.4f}"
        elif d.lower >= -promote_margin:
            decision = "promote"
            reason = f"promote: {summary}; lower bound {d.lower:+.4f} >= -promote_margin {-promote_margin:+.4f}"
        else:
            decision = "wait"
            reason = (
                f"wait: {summary}; undecided, lower bound {d.lower:+.4f} < -promote_margin {-promote_margin:+.4f}"
                f" and upper bound {d.upper:+.4f} >= -rollback_margin {-rollback_margin:+.4f}"
            )
    return CanaryVerdict(decision=decision, metric=name, difference=d, reason=reason)


# --------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------


def best_f1_threshold(y: Any, score: Any) -> tuple[float, float]:
    """``(threshold, f1)`` maximising F1 = 2TP / (2TP + FP + FN) when predicting positive for
    ``score >= threshold``, over the distinct score values. Among equally good thresholds the highest
    is returned (fewest alarms). ``(0.5, 0.0)`` when there are no positives."""
    labels, (s,) = _inputs(y, score=score)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return 0.5, 0.0
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], labels[order]
    last_of_run = np.r_[s_desc[1:] != s_desc[:-1], True]  # last row of each run of tied scores
    tp = np.cumsum(y_desc)[last_of_run]
    predicted = np.flatnonzero(last_of_run) + 1
    f1 = (
        2.0 * tp / (predicted + n_pos)
    )  # 2TP / (2TP + FP + FN) with TP + FP = predicted, TP + FN = n_pos
    best = int(np.argmax(f1))
    return float(s_desc[last_of_run][best]), float(f1[best])


def confusion_at(y: Any, score: Any, threshold: float) -> dict[str, float]:
    """Confusion counts and rates when predicting positive for ``score >= threshold``.

    Keys ``tp, fp, tn, fn`` (counts, as floats) and ``precision, recall, f1``. Undefined ratios are
    reported as 0.0 rather than NaN: precision when nothing is predicted positive, recall when there
    are no positives, f1 when both (no positives and none predicted); this keeps the dict
    JSON/MLflow-safe and means "no detections" never looks like a good precision.
    """
    labels, (s,) = _inputs(y, score=score)
    pred = s >= threshold
    tp = float(np.sum(pred & labels))
    fp = float(np.sum(pred & ~labels))
    fn = float(np.sum(~pred & labels))
    tn = float(np.sum(~pred & ~labels))
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2.0 * tp / (2.0 * tp + fp + fn) if tp + fp + fn > 0 else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
