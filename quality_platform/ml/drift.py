"""Drift statistics: has the distribution of a feature (input drift) or of the model's risk score
(prediction drift) moved away from what the model was trained on?

This module is the platform's one implementation of drift statistics. It reports **effect sizes**
("how far did the distribution move?"), never p-values: at a million rows a Kolmogorov-Smirnov
p-value flags a harmless 0.05-sd wobble, while the classic 10-bin PSI can miss a 0.3-sd shift that
matters. Two steps:

1. At training time, :func:`build_profile` summarises the reference sample (the training data) per
   feature - fixed bin edges at reference quantiles, the reference CDF at those edges, mean, standard
   deviation and missing share - into a small :class:`Profile` that is stored with the model version
   as JSON (:meth:`Profile.to_json`). The reference data is not needed afterwards.
2. Every day, :func:`compare` makes ONE pass over the current data: per feature the current values are
   counted into the reference's bins (a binary search on the fixed edges, vectorised over all rows and
   sped up by a lookup table; the current data is never sorted and no quantiles of it are computed)
   together with the sum of the values per bin, and every statistic is derived from those.

The statistics, as a plant engineer should read them (one row per feature):

``wasserstein``
    How far, on average, the values moved, in reference standard deviations (normed Wasserstein-1 /
    "earth mover's" distance). 0.5 means "like a shift of the whole distribution by about half a
    reference sd" - whether it is a shift, a wider spread or a new cluster of values. Unlike a p-value
    it does not grow with the row count: two samples of the same process give about 0 (0.01-0.02 at
    20,000 rows, below 0.006 at 1,000,000). The platform's drift threshold is 0.1 (a tenth of a
    reference sd). Values beyond the reference's minimum and maximum are counted as if they were at the
    minimum / maximum, so that a few glitched sensor readings cannot dominate the statistic; the part
    of a shift that goes past the reference range is therefore not counted (a uniformly distributed
    feature shifted by 0.5 sd reads about 0.47; ``ks``, ``psi`` and ``mean_shift_sd`` are not clamped).
``psi``
    Population stability index on 10 reference-decile bins (the credit-risk classic, kept for people who
    know its rules of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 large shift). A value that alone
    holds at least a tenth of the reference (a level of a discrete feature) gets a bin of its own. Shares
    are floored at 1e-4 so that an empty bin does not give an infinite value.
``ks``
    The largest difference between the share of reference and of current values below a level, over
    the 101 reference-quantile levels (the Kolmogorov-Smirnov statistic on those levels, as an effect
    size, not a test): 0.1 means "at some level, 10 % more (or fewer) units are below it than in the
    reference".
``mean_shift_sd``
    (current mean - reference mean) / reference sd, with a sign: +0.5 means the average went up by half a
    reference sd. Computed on all current values (not clamped to the reference range).
``n``, ``missing_share``, ``ref_missing_share``
    Current non-missing values, and the share of missing (NaN or infinite) values now and in the
    reference. Missing values are excluded from all distribution statistics.
``ref_mean``, ``cur_mean``, ``ref_std``, ``flag``
    For context; ``flag`` lists special cases, comma-separated: ``constant_reference`` (the reference
    never varied: its sd of 0 is replaced by a tiny floor, so any change gives a huge ``wasserstein``),
    ``no_reference_values``, ``no_current_values`` (the statistics are then NaN).

How ``wasserstein`` is computed from bin counts: W1 is the area between the two CDFs,
``sum_k integral over bin k of |F_ref - F_cur|``, on fine bins at the reference quantiles 0, 0.01, ...,
1 (101 edges by default). The simplest estimate, ``|F_ref(e_k) - F_cur(e_k)| * (e_{k+1} - e_k)``, is
biased (about +0.04 at a 0.5-sd shift of a normal feature, several tenths for skewed features) because
the two outermost bins each span 1 % of the reference from its 1st / 99th percentile to its min / max,
several sd wide. Instead, per bin the area under each CDF is computed and their difference taken,
which is exact whenever the two CDFs do not cross inside a bin: for the current data it is exact from
the bin's count and the sum of the values in it (one ``np.bincount`` with weights); for the reference
the position of the values inside a bin is modelled (uniform in the inner bins, an exponential tail in
the two outer bins, ties at the edges for discrete features) and calibrated with the stored reference
mean, which fixes the total exactly. The result agrees with ``scipy.stats.wasserstein_distance`` on the
(clamped) raw values to within about 0.01 sd for references of a few thousand rows or more (within
0.03 sd at a few hundred rows; exact for discrete features whose values stay on the reference's levels).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: Floor for the PSI bin shares (an empty bin would otherwise give an infinite PSI).
PSI_EPSILON = 1e-4
#: A reference sd below ``STD_FLOOR * max(1, |mean|)`` counts as "constant" and is replaced by it.
STD_FLOOR = 1e-9
#: Threshold on ``wasserstein`` above which the platform calls a feature drifted (0.1 reference sd).
WASSERSTEIN_THRESHOLD = 0.1
#: Columns of the frames returned by :func:`compare` (and, after ``group``, by :func:`compare_groups`).
RESULT_COLUMNS = (
    "feature",
    "n",
    "missing_share",
    "ref_missing_share",
    "wasserstein",
    "psi",
    "ks",
    "mean_shift_sd",
    "ref_mean",
    "cur_mean",
    "ref_std",
    "flag",
)
_FORMAT = "quality_platform.drift.profile"
_FORMAT_VERSION = 1
#: Use a thread per core when a comparison touches at least this many values (numpy releases the GIL).
_PARALLEL_MIN_VALUES = 1_000_000
_LUT_CELLS = 4096
_LUT_MAX_STEPS = 6


@dataclass(frozen=True)
class FeatureProfile:
    """The reference distribution of one feature, as needed by :func:`compare`.

    ``edges`` are the distinct reference quantiles at ``n_edges`` evenly spaced probabilities from 0
    (the minimum) to 1 (the maximum); ``cdf[k]`` is the share of reference values ``<= edges[k]``
    (so ``cdf[-1] == 1``). ``mean``/``std`` (population sd) and ``n`` are over the non-missing
    reference values, ``missing_share`` is the share of missing (NaN or infinite) reference values.
    A feature without any reference value has empty ``edges`` and NaN ``mean``/``std``.
    """

    name: str
    edges: list[float]
    cdf: list[float]
    mean: float
    std: float
    n: int
    missing_share: float


@dataclass(frozen=True)
class Profile:
    """Reference profiles of several features; stored with a model version as JSON."""

    features: dict[str, FeatureProfile]
    n_edges: int
    psi_bins: int

    def to_json(self) -> str:
        """Compact JSON; floats are written exactly (``from_json(to_json(p)) == p``), NaN as null."""
        doc = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "n_edges": self.n_edges,
            "psi_bins": self.psi_bins,
            "features": [
                {
                    "name": f.name,
                    "edges": f.edges,
                    "cdf": f.cdf,
                    "mean": _nan_to_none(f.mean),
                    "std": _nan_to_none(f.std),
                    "n": f.n,
                    "missing_share": _nan_to_none(f.missing_share),
                }
                for f in self.features.values()
            ],
        }
        return json.dumps(doc, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str) -> Profile:
        """Inverse of :meth:`to_json`."""
        doc = json.loads(s)
        if doc.get("format") != _FORMAT or doc.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"not a drift profile (format {doc.get('format')!r}, version {doc.get('version')!r})"
            )
        features = {
            f["name"]: FeatureProfile(
                name=f["name"],
                edges=[float(v) for v in f["edges"]],
                cdf=[float(v) for v in f["cdf"]],
                mean=_none_to_nan(f["mean"]),
                std=_none_to_nan(f["std"]),
                n=int(f["n"]),
                missing_share=_none_to_nan(f["missing_share"]),
            )
            for f in doc["features"]
        }
        return cls(features=features, n_edges=int(doc["n_edges"]), psi_bins=int(doc["psi_bins"]))


# --- public functions ----------------------------------------------------------------------------


def build_profile(
    df: pd.DataFrame, columns: Sequence[str], n_edges: int = 101, psi_bins: int = 10
) -> Profile:
    """Profile the reference sample ``df`` (e.g. the training data of a model version) on ``columns``.

    ``n_edges`` reference quantiles (default 101: every percentile, min and max included) are the fine
    bin edges for ``wasserstein`` and ``ks``; ``psi_bins`` (default 10) reference-quantile bins are used
    for ``psi`` (every 10th fine edge by default). Runs once per model version; sorts each column once.
    """
    _check_profile_args(n_edges, psi_bins)
    names = _check_columns(df, columns)
    block = _float_block(df, names)
    features = {name: _profile_column(name, block[:, j], n_edges) for j, name in enumerate(names)}
    return Profile(features=features, n_edges=n_edges, psi_bins=psi_bins)


def compare(
    profile: Profile, df: pd.DataFrame, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Drift of the current data ``df`` against the reference ``profile``: one row per feature with the
    columns of :data:`RESULT_COLUMNS` (see the module docstring for their meaning).

    ``columns`` defaults to all profiled features. Columns missing from ``df`` (or from the profile)
    raise a ``ValueError`` naming them; a feature without any non-missing current value gets NaN
    statistics and the flag ``no_current_values``.
    """
    names = _profiled_columns(profile, columns)
    _check_columns(df, names)
    block = _float_block(df, names)
    rows = _compare_block(profile, names, lambda j: block[:, j], len(df))
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def compare_groups(
    profile_by_group: dict[str, Profile],
    df: pd.DataFrame,
    group_col: str,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """:func:`compare` per value of ``group_col`` (e.g. per machine, each against the reference profile
    of that same machine from :func:`build_group_profiles`), with a leading ``group`` column.

    Group values are matched to the keys of ``profile_by_group`` as strings. Groups in ``df`` without a
    profile are skipped and listed in ``result.attrs["unprofiled_groups"]``; profiled groups absent from
    ``df`` are listed in ``result.attrs["groups_without_data"]``; rows with a missing group value are
    counted in ``result.attrs["rows_without_group"]``.
    """
    _check_columns(df, [group_col])
    if columns is not None:
        names = list(columns)
    else:
        names = list(next(iter(profile_by_group.values())).features) if profile_by_group else []
    for key, p in profile_by_group.items():
        missing = [c for c in names if c not in p.features]
        if missing:
            raise ValueError(f"columns not in the profile of group {key!r}: {missing}")
    _check_columns(df, names)
    block = _float_block(df, names)
    groups = df.groupby(group_col, sort=True, dropna=True, observed=True).indices
    frames: list[pd.DataFrame] = []
    unprofiled: list[str] = []
    seen: set[str] = set()
    for value, pos in groups.items():
        key = str(value)
        seen.add(key)
        profile = profile_by_group.get(key)
        if profile is None:
            unprofiled.append(key)
            continue
        rows = _compare_block(profile, names, lambda j, pos=pos: block[pos, j], len(pos))
        frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        frame.insert(0, "group", key)
        frames.append(frame)
    columns_out = ["group", *RESULT_COLUMNS]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns_out)
    out.attrs["unprofiled_groups"] = unprofiled
    out.attrs["groups_without_data"] = sorted(set(profile_by_group) - seen)
    out.attrs["rows_without_group"] = int(df[group_col].isna().sum())
    return out


def build_group_profiles(
    df: pd.DataFrame,
    group_col: str,
    columns: Sequence[str],
    n_edges: int = 101,
    psi_bins: int = 10,
    min_rows: int = 30,
) -> dict[str, Profile]:
    """One reference :class:`Profile` per value of ``group_col`` (keys: the values as strings), e.g. per
    machine, so that each machine is compared with its own normal. Groups with fewer than ``min_rows``
    rows are left out (their statistics would be noise); rows with a missing group value are ignored."""
    _check_profile_args(n_edges, psi_bins)
    _check_columns(df, [group_col])
    names = _check_columns(df, columns)
    block = _float_block(df, names)
    out: dict[str, Profile] = {}
    for value, pos in df.groupby(group_col, sort=True, dropna=True, observed=True).indices.items():
        if len(pos) >= min_rows:
            features = {
                name: _profile_column(name, block[pos, j], n_edges) for j, name in enumerate(names)
            }
            out[str(value)] = Profile(features=features, n_edges=n_edges, psi_bins=psi_bins)
    return out


# --- profile -------------------------------------------------------------------------------------


def _profile_column(name: str, x: np.ndarray, n_edges: int) -> FeatureProfile:
    total = x.size
    finite = np.isfinite(x)
    v = x if finite.all() else x[finite]
    n = int(v.size)
    missing = (total - n) / total if total else math.nan
    if n == 0:
        return FeatureProfile(name, [], [], math.nan, math.nan, 0, missing)
    s = np.sort(v)
    k = n_edges - 1
    # Inverted-CDF quantiles at j/k: the smallest value with a CDF >= j/k (always an observed value).
    pos = np.maximum((n * np.arange(n_edges, dtype=np.int64) + k - 1) // k - 1, 0)
    edges = np.unique(s[pos])
    cdf = np.searchsorted(s, edges, side="right") / n
    return FeatureProfile(
        name, edges.tolist(), cdf.tolist(), float(s.mean()), float(s.std()), n, missing
    )


# --- comparison ----------------------------------------------------------------------------------


def _compare_block(
    profile: Profile, names: list[str], column: Callable[[int], np.ndarray], n_rows: int
) -> list[dict[str, Any]]:
    def one(j: int) -> dict[str, Any]:
        return _compare_column(
            profile.features[names[j]], column(j), profile.n_edges, profile.psi_bins
        )

    workers = min(len(names), _cpu_count())
    if workers > 1 and n_rows * len(names) >= _PARALLEL_MIN_VALUES:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, range(len(names))))
    return [one(j) for j in range(len(names))]


def _compare_column(
    fp: FeatureProfile, x: np.ndarray, n_edges: int, psi_bins: int
) -> dict[str, Any]:
    total = x.size
    finite = np.isfinite(x)
    v = x if finite.all() else x[finite]
    n = int(v.size)
    nan = math.nan
    row: dict[str, Any] = {
        "feature": fp.name,
        "n": n,
        "missing_share": (total - n) / total if total else nan,
        "ref_missing_share": fp.missing_share,
        "wasserstein": nan,
        "psi": nan,
        "ks": nan,
        "mean_shift_sd": nan,
        "ref_mean": fp.mean,
        "cur_mean": nan,
        "ref_std": fp.std,
        "flag": "",
    }
    flags = []
    if fp.n == 0:
        flags.append("no_reference_values")
    if n == 0:
        flags.append("no_current_values")
    scale = fp.std
    if fp.n > 0 and not fp.std >= STD_FLOOR * max(1.0, abs(fp.mean)):
        scale = STD_FLOOR * max(1.0, abs(fp.mean))
        flags.append("constant_reference")
    row["flag"] = ",".join(flags)
    if fp.n == 0 or n == 0:
        if n:
            row["cur_mean"] = float(v.mean())
        return row

    e = np.asarray(fp.edges, dtype=np.float64)
    c = np.asarray(fp.cdf, dtype=np.float64)
    m = e.size - 1  # number of bins between the edges
    if m == 0:  # constant reference: compare below / at / above its single value
        below = int(np.count_nonzero(v < e[0]))
        above = int(np.count_nonzero(v > e[0]))
        cur_mean = float(v.mean())
        row.update(
            wasserstein=float(np.abs(v - e[0]).mean()) / scale,
            psi=_psi(np.array([below, n - below - above, above]) / n, np.array([0.0, 1.0, 0.0])),
            ks=max(below, above) / n,
            cur_mean=cur_mean,
            mean_shift_sd=(cur_mean - fp.mean) / scale,
        )
        return row

    # The one pass over the current values: bin index (e[i-1] < x <= e[i]; 0: x <= e[0]; m+1: x > e[m]),
    # count and sum per bin. Sums are of (x - reference mean), for precision with large offsets.
    idx = _bin_index(e, v)
    counts = np.bincount(idx, minlength=m + 2).astype(np.float64)
    sums = np.bincount(idx, weights=v - fp.mean, minlength=m + 2)
    cur_mean = fp.mean + float(sums.sum()) / n

    f_cur = np.cumsum(counts[: m + 1]) / n  # share of current values <= e[k] (unclamped)
    ks = float(np.max(np.abs(c - f_cur)))

    # W1 = sum over bins of |area under F_ref - area under F_cur|; values outside [e0, em] are clamped
    # (F_cur(e_m) becomes 1; a clamped value sits on the edge and adds nothing inside a bin).
    w = np.diff(e)
    centred = e - fp.mean
    dist_to_right_edge = np.maximum(centred[1:] * counts[1 : m + 1] - sums[1 : m + 1], 0.0)
    area_cur = w * f_cur[:-1] + dist_to_right_edge / n
    area_ref = w * c[:-1] + _ref_within_bin(e, c, fp.mean, n_edges)
    wasserstein = float(np.abs(area_ref - area_cur).sum()) / scale

    cuts = _psi_cuts(c, n_edges, psi_bins)
    psi = _psi(
        np.diff(f_cur[cuts], prepend=0.0, append=1.0), np.diff(c[cuts], prepend=0.0, append=1.0)
    )
    row.update(
        wasserstein=wasserstein,
        psi=psi,
        ks=ks,
        cur_mean=cur_mean,
        mean_shift_sd=(cur_mean - fp.mean) / scale,
    )
    return row


def _bin_index(e: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``np.searchsorted(e, v, side="left")`` (index of the first edge >= each value), about 4x faster.

    A lookup table over 4096 equal cells between e[1] and e[-2] gives, per value, a lower bound of its
    index (the number of edges below the cell before its own); one or two vectorised steps "move up
    while the edge is below the value" then make it exact. Falls back to ``np.searchsorted`` when the
    edges are too unevenly spread for the table (more than a few edges in two adjacent cells)."""
    m = e.size - 1
    if m >= 4:
        lo, hi = float(e[1]), float(e[m - 1])
        h = (hi - lo) / _LUT_CELLS
        if h > 0 and math.isfinite(h) and math.isfinite(1.0 / h):
            lut = np.searchsorted(e, lo + (np.arange(_LUT_CELLS) - 1) * h, side="left")
            lut[0] = 0
            if int(np.max(lut[2:] - lut[:-2])) <= _LUT_MAX_STEPS:
                cell = np.subtract(v, lo)
                np.multiply(cell, 1.0 / h, out=cell)
                np.clip(cell, 0, _LUT_CELLS - 1, out=cell)
                idx = lut[cell.astype(np.intp)]
                ext = np.append(e, np.inf)
                for _ in range(m + 1):
                    step = ext[idx] < v
                    if not step.any():
                        break
                    idx += step
                return idx
    return np.searchsorted(e, v, side="left")


def _open_shares(c: np.ndarray, n_edges: int) -> np.ndarray:
    """Per bin (e[i], e[i+1]]: an upper bound on the reference share strictly inside the bin.

    e[i+1] is the reference's j/k quantile for j = floor(c[i]*k) + 1 (k = n_edges - 1), so the values
    strictly between e[i] and e[i+1] hold less than j/k - c[i] (at most one quantile step); the rest of
    the bin's share is tied at e[i+1] (a level of a discrete feature)."""
    k = n_edges - 1
    p = np.diff(c)
    step_top = (np.floor(c[:-1] * k + 1e-9) + 1) / k
    return np.clip(np.minimum(p, step_top - c[:-1]), 0.0, None)


def _ref_within_bin(e: np.ndarray, c: np.ndarray, mean: float, n_edges: int) -> np.ndarray:
    """Per bin (e[i], e[i+1]]: the area under the reference CDF in the bin beyond ``w * c[i]``, i.e. the
    reference share in the bin times the mean distance of those values to the bin's right edge.

    Only the edges and the CDF are stored, so the position of the values inside a bin is modelled: the
    part tied at the right edge (see :func:`_open_shares`) sits on it; the open part is spread uniformly
    in an inner bin (nothing in a bin whose edge holds a larger tie: a discrete level) and decays
    exponentially away from the body in the two outer bins. The sum over all bins is known exactly from
    the reference mean (``e[-1] - mean = integral of F_ref``); the model is calibrated to it (which
    makes it exact for a discrete feature whose values all sit on the edges)."""
    w = np.diff(e)
    p = np.diff(c)
    m = w.size
    o = _open_shares(c, n_edges)
    cap = o * w  # the largest possible area of a bin: all of its open values at its left edge
    total = min(max(e[-1] - mean - float(np.dot(w, c[:-1])), 0.0), float(cap.sum()))
    if m == 1:
        return np.array([total])
    out = np.where(p - o > o, 0.0, cap / 2)
    out[0] = out[-1] = 0.0
    inner = float(out.sum())
    if total <= inner:  # fewer open values than modelled (discrete-like): shrink the inner bins
        return out * (total / inner) if inner > 0 else out
    # The outer bins hold the rest: P_lo = o_lo * t_lo, P_hi = o_hi * (w_hi - t_hi), with t the mean
    # distance of the open values from the bin's inner edge. Start from the tail model and move both
    # t by the smallest relative amount that meets the total (the total fixes only o_lo*t_lo - o_hi*t_hi).
    o_lo, o_hi, w_lo, w_hi = float(o[0]), float(o[-1]), float(w[0]), float(w[-1])
    t_lo, t_hi = _tail_distance(w, o, 0), _tail_distance(w, o, m - 1)
    gap = (total - inner - o_hi * w_hi) - (o_lo * t_lo - o_hi * t_hi)
    var_lo, var_hi = (o_lo * t_lo) ** 2, (o_hi * t_hi) ** 2
    if var_lo + var_hi > 0:
        t_lo = (
            min(max(t_lo + gap * var_lo / (o_lo * (var_lo + var_hi)), 0.0), w_lo)
            if o_lo > 0
            else 0.0
        )
        rest_hi = total - inner - o_lo * t_lo  # = P_hi; then clamp and give any excess back to P_lo
        p_hi = min(max(rest_hi, 0.0), o_hi * w_hi)
        p_lo = min(max(total - inner - p_hi, 0.0), o_lo * w_lo)
    else:
        p_lo = p_hi = 0.0
    out[0], out[-1] = p_lo, p_hi
    return out


def _tail_distance(w: np.ndarray, o: np.ndarray, i: int) -> float:
    """Modelled mean distance of the open values of outer bin ``i`` from its inner edge: an exponential
    tail (truncated at the outer edge) whose density at the inner edge is extrapolated log-linearly
    from the densities of the two neighbouring bins."""
    m = w.size
    step = 1 if i == 0 else -1
    length = float(w[i])
    if o[i] <= 0 or length <= 0:
        return 0.0
    dens = [
        float(o[j] / w[j]) if 0 <= j < m and w[j] > 0 else 0.0 for j in (i + step, i + 2 * step)
    ]
    if dens[0] <= 0:
        return length / 2
    f_edge = dens[0]
    if dens[1] > dens[0]:  # falling towards the tail: extrapolate to the edge (half a bin further)
        gap = (float(w[i + step]) + float(w[i + 2 * step])) / 2
        f_edge = dens[0] * (dens[0] / dens[1]) ** (float(w[i + step]) / 2 / gap)
    beta = float(o[i]) / f_edge
    ratio = length / beta
    return beta - length / math.expm1(ratio) if ratio < 700 else beta


def _psi_cuts(c: np.ndarray, n_edges: int, psi_bins: int) -> np.ndarray:
    """Indices of the fine edges that bound the PSI bins: the first edge whose reference CDF reaches
    j/psi_bins (the j/psi_bins reference quantile: every 10th edge by default), plus the edges around a
    value that alone holds at least one PSI bin's share (a level of a discrete feature gets its own bin).
    The maximum is never a cut (the last bin is open-ended)."""
    m = c.size - 1
    cuts = set(np.searchsorted(c, np.arange(1, psi_bins) / psi_bins, side="left").tolist())
    tied = np.diff(c) - _open_shares(c, n_edges)  # share tied at e[i+1]
    for i in np.flatnonzero(tied >= 1 / psi_bins).tolist():
        cuts.update((i, i + 1))
    return np.array(sorted(i for i in cuts if i < m), dtype=np.int64)


def _psi(cur_share: np.ndarray, ref_share: np.ndarray) -> float:
    a = np.maximum(cur_share, PSI_EPSILON)
    b = np.maximum(ref_share, PSI_EPSILON)
    return float(np.sum((a - b) * np.log(a / b)))


# --- helpers -------------------------------------------------------------------------------------


def _check_profile_args(n_edges: int, psi_bins: int) -> None:
    if n_edges < 2:
        raise ValueError(f"n_edges must be at least 2, got {n_edges}")
    if not 1 <= psi_bins <= n_edges - 1:
        raise ValueError(
            f"psi_bins must be between 1 and n_edges - 1 = {n_edges - 1}, got {psi_bins}"
        )


def _check_columns(df: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    if isinstance(columns, str):
        raise TypeError("columns must be a sequence of column names, not a string")
    names = list(columns)
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise ValueError(f"columns not in the data: {missing}")
    dupes = sorted(
        {str(c) for c in names if names.count(c) > 1 or int((df.columns == c).sum()) > 1}
    )
    if dupes:
        raise ValueError(f"columns requested twice or not unique in the data: {dupes}")
    return names


def _profiled_columns(profile: Profile, columns: Sequence[str] | None) -> list[str]:
    names = list(profile.features) if columns is None else list(columns)
    missing = [c for c in names if c not in profile.features]
    if missing:
        raise ValueError(f"columns not in the profile: {missing}")
    return names


def _float_block(df: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The columns as one float64 array with contiguous columns (a view where pandas allows it)."""
    bad = [c for c in names if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise TypeError(f"drift statistics need numeric columns; not numeric: {bad}")
    block = df.loc[:, names].to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asfortranarray(block)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _none_to_nan(x: float | None) -> float:
    return math.nan if x is None else float(x)
