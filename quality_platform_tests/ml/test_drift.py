"""Drift statistics: effect sizes that are ~0 without drift and right-sized with drift, agreement with
scipy's exact Wasserstein distance, NaN / constant / discrete features, JSON round trip, per-group
comparison, invariance to row order."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wasserstein_distance

from quality_platform.ml import drift
from quality_platform.ml.drift import (
    RESULT_COLUMNS,
    FeatureProfile,
    Profile,
    build_group_profiles,
    build_profile,
    compare,
    compare_groups,
)

N = 20_000


def _sample(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    return {
        "normal": lambda: rng.normal(5.0, 2.0, n),
        "exponential": lambda: rng.exponential(3.0, n),
        "lognormal": lambda: rng.lognormal(0.0, 0.7, n),
        "uniform": lambda: rng.uniform(-1.0, 1.0, n),
        "student_t4": lambda: rng.standard_t(4, n),
        "gamma": lambda: rng.gamma(2.0, 1.5, n),
        "poisson": lambda: rng.poisson(6.0, n).astype(float),
    }[kind]()


def _one(profile: Profile, values: np.ndarray, name: str = "x") -> pd.Series:
    return compare(profile, pd.DataFrame({name: values})).iloc[0]


def _profile(values: np.ndarray, name: str = "x", **kw: int) -> Profile:
    return build_profile(pd.DataFrame({name: values}), [name], **kw)


def _exact_w1(ref: np.ndarray, cur: np.ndarray) -> float:
    """scipy's exact W1 of the raw values, current clamped to the reference range, / reference sd."""
    return wasserstein_distance(ref, np.clip(cur, ref.min(), ref.max())) / ref.std()


# --- no drift / drift of known size ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["normal", "exponential", "lognormal", "student_t4", "poisson"])
def test_independent_samples_of_one_distribution_show_no_drift(kind: str) -> None:
    rng = np.random.default_rng(1)
    r = _one(_profile(_sample(kind, N, rng)), _sample(kind, N, rng))
    assert r.wasserstein < 0.05
    assert r.psi < 0.01
    assert r.ks < 0.03
    assert abs(r.mean_shift_sd) < 0.05
    assert r.flag == ""


def test_reference_against_itself_is_practically_zero() -> None:
    x = _sample("gamma", N, np.random.default_rng(2))
    r = _one(_profile(x), x)
    assert r.wasserstein < 0.005
    assert r.ks == 0.0
    assert r.psi == pytest.approx(0.0, abs=1e-12)
    assert r.mean_shift_sd == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kind", ["normal", "exponential", "lognormal", "uniform"])
def test_half_sd_mean_shift_gives_wasserstein_of_half(kind: str) -> None:
    rng = np.random.default_rng(3)
    ref = _sample(kind, N, rng)
    cur = _sample(kind, N, rng) + 0.5 * ref.std()
    r = _one(_profile(ref), cur)
    assert r.wasserstein == pytest.approx(0.5, abs=0.05)
    assert r.mean_shift_sd == pytest.approx(0.5, abs=0.05)
    assert r.psi > 0.1
    assert r.ks > 0.15


@pytest.mark.parametrize("kind", ["normal", "exponential", "lognormal", "gamma"])
def test_small_shift_is_clearly_above_sampling_noise(kind: str) -> None:
    rng = np.random.default_rng(4)
    ref = _sample(kind, N, rng)
    profile = _profile(ref)
    same = _one(profile, _sample(kind, N, rng))
    shifted = _one(profile, _sample(kind, N, rng) + 0.3 * ref.std())
    assert same.wasserstein < 0.06
    assert shifted.wasserstein > 0.2
    assert shifted.wasserstein > 4 * same.wasserstein


def test_scale_change_without_mean_change_is_detected() -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(0.0, 1.0, N)
    profile = _profile(ref)
    wider, narrower = _one(profile, rng.normal(0.0, 1.5, N)), _one(profile, rng.normal(0.0, 0.7, N))
    for r, exact in ((wider, 0.4), (narrower, 0.24)):  # W1(N(0,1), N(0,s)) = |s - 1| * sqrt(2/pi)
        assert r.wasserstein == pytest.approx(exact, abs=0.03)
        assert abs(r.mean_shift_sd) < 0.05
        assert r.ks > 0.05 and r.psi > 0.1


# --- agreement with scipy's exact Wasserstein distance ---------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(
        ["normal", "exponential", "lognormal", "uniform", "student_t4", "gamma", "poisson"]
    ),
    n_ref=st.integers(300, 3000),
    n_cur=st.integers(300, 3000),
    shift=st.floats(-1.0, 1.0),
    log_scale=st.floats(-0.7, 0.7),
    seed=st.integers(0, 2**32 - 1),
)
def test_binned_wasserstein_agrees_with_scipy(
    kind: str, n_ref: int, n_cur: int, shift: float, log_scale: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ref = _sample(kind, n_ref, rng)
    cur = _sample(kind, n_cur, rng)
    if kind != "poisson":  # integers stay on their grid: shift them by whole units only
        cur = ref.mean() + (cur - ref.mean()) * math.exp(log_scale) + shift * ref.std()
    else:
        cur = cur + round(shift * 3)
    exact = _exact_w1(ref, cur)
    assert _one(_profile(ref), cur).wasserstein == pytest.approx(exact, abs=0.03 + 0.03 * exact)


def test_wasserstein_at_large_offset_keeps_its_precision() -> None:
    rng = np.random.default_rng(6)
    ref = 1e6 + rng.normal(0, 0.01, N)
    cur = 1e6 + rng.normal(0.003, 0.01, N)
    r = _one(_profile(ref), cur)
    assert r.wasserstein == pytest.approx(_exact_w1(ref, cur), abs=0.01)
    assert r.mean_shift_sd == pytest.approx(0.3, abs=0.05)


def test_values_beyond_the_reference_range_are_clamped_for_wasserstein_only() -> None:
    rng = np.random.default_rng(7)
    ref = rng.normal(0, 1, N)
    cur = rng.normal(0, 1, N)
    cur[:20] = 1e9  # a few glitched readings
    r = _one(_profile(ref), cur)
    assert r.wasserstein < 0.05  # not dominated by the glitches
    assert r.mean_shift_sd > 1000  # the mean does see them
    assert r.ks < 0.03


# --- missing values, constant and discrete features ---------------------------------------------------


def test_missing_values_are_counted_and_excluded() -> None:
    rng = np.random.default_rng(8)
    ref = rng.normal(0, 1, N)
    ref_nan = ref.copy()
    ref_nan[: N // 10] = np.nan
    cur = rng.normal(0.5, 1, N)
    cur_nan = cur.copy()
    cur_nan[rng.random(N) < 0.3] = np.nan
    cur_nan[:5] = np.inf
    r = _one(_profile(ref_nan), cur_nan)
    finite = np.isfinite(cur_nan)
    expected = _one(_profile(ref[N // 10 :]), cur_nan[finite])
    assert r.n == finite.sum()
    assert r.missing_share == pytest.approx(1 - finite.mean())
    assert r.ref_missing_share == pytest.approx(0.1)
    for col in ("wasserstein", "psi", "ks", "mean_shift_sd", "cur_mean"):
        assert r[col] == pytest.approx(expected[col], rel=1e-12)
    assert r.wasserstein == pytest.approx(0.5, abs=0.05)


def test_feature_without_current_values_gives_nan_statistics() -> None:
    profile = build_profile(
        pd.DataFrame({"x": np.arange(100.0), "y": np.arange(100.0)}), ["x", "y"]
    )
    out = compare(profile, pd.DataFrame({"x": [np.nan] * 10, "y": np.arange(10.0)}))
    x = out.set_index("feature").loc["x"]
    assert x.n == 0 and x.missing_share == 1.0 and x.flag == "no_current_values"
    assert all(math.isnan(x[c]) for c in ("wasserstein", "psi", "ks", "mean_shift_sd", "cur_mean"))
    assert not math.isnan(out.set_index("feature").loc["y", "wasserstein"])
    empty = compare(
        profile, pd.DataFrame({"x": pd.Series([], dtype=float), "y": pd.Series([], dtype=float)})
    )
    assert empty.n.tolist() == [0, 0] and empty.missing_share.isna().all()


def test_feature_without_reference_values_gives_nan_statistics() -> None:
    profile = _profile(np.full(50, np.nan))
    fp = profile.features["x"]
    assert fp.n == 0 and fp.edges == [] and fp.missing_share == 1.0
    r = _one(profile, np.arange(10.0))
    assert r.flag == "no_reference_values" and math.isnan(r.wasserstein) and r.cur_mean == 4.5


def test_constant_reference_feature() -> None:
    profile = _profile(np.full(1000, 3.0))
    fp = profile.features["x"]
    assert fp.edges == [3.0] and fp.cdf == [1.0] and fp.std == 0.0
    same = _one(profile, np.full(500, 3.0))
    assert same.flag == "constant_reference"
    assert same.wasserstein == 0.0 and same.ks == 0.0 and same.psi == pytest.approx(0.0, abs=1e-12)
    changed = _one(profile, np.r_[np.full(400, 3.0), np.full(50, 2.5), np.full(50, 3.5)])
    assert changed.flag == "constant_reference"
    assert changed.wasserstein > 1e6  # any change of a constant is "infinitely many sds"
    assert changed.ks == pytest.approx(0.1)
    assert changed.psi > 1


def test_discrete_feature_on_its_levels() -> None:
    rng = np.random.default_rng(9)
    levels = np.arange(6.0)
    ref = rng.choice(levels, N, p=[0.5, 0.2, 0.15, 0.1, 0.04, 0.01])
    profile = _profile(ref)
    assert profile.features["x"].edges == levels.tolist()
    same = _one(profile, rng.choice(levels, N, p=[0.5, 0.2, 0.15, 0.1, 0.04, 0.01]))
    moved = rng.choice(levels, N, p=[0.3, 0.25, 0.2, 0.15, 0.07, 0.03])
    r = _one(profile, moved)
    assert same.wasserstein < 0.03 and same.psi < 0.01
    assert r.wasserstein == pytest.approx(_exact_w1(ref, moved), abs=1e-9)  # exact on the levels
    assert r.wasserstein > 0.3 and r.psi > 0.1


def test_binary_feature_gets_one_psi_bin_per_level() -> None:
    rng = np.random.default_rng(10)
    profile = _profile((rng.random(N) < 0.95).astype(float))  # 5 % zeros: no decile cut below 1
    r = _one(profile, (rng.random(N) < 0.80).astype(float))
    assert r.psi > 0.1
    assert r.wasserstein == pytest.approx(0.15 / math.sqrt(0.95 * 0.05), abs=0.03)


# --- profile ------------------------------------------------------------------------------------------


def test_profile_edges_and_cdf() -> None:
    x = np.arange(1, 1001, dtype=float)
    fp = _profile(x).features["x"]
    assert len(fp.edges) == 101 and fp.edges[0] == 1.0 and fp.edges[-1] == 1000.0
    assert fp.edges[50] == 500.0 and fp.cdf[50] == 0.5 and fp.cdf[-1] == 1.0
    assert fp.mean == 500.5 and fp.n == 1000 and fp.missing_share == 0.0
    assert np.all(np.diff(fp.edges) > 0) and np.all(np.diff(fp.cdf) > 0)


def test_json_round_trip_is_exact() -> None:
    rng = np.random.default_rng(11)
    df = pd.DataFrame(
        {"a": rng.normal(size=500) / 3, "b": np.full(500, np.nan), "c": np.full(500, 0.1)}
    )
    df.loc[::7, "a"] = np.nan
    profile = build_profile(df, ["a", "b", "c"], n_edges=51, psi_bins=5)
    text = profile.to_json()
    back = Profile.from_json(text)
    assert back == profile
    assert back.to_json() == text
    assert list(back.features) == ["a", "b", "c"]
    cur = pd.DataFrame(
        {"a": rng.normal(size=300), "b": rng.normal(size=300), "c": np.full(300, 0.1)}
    )
    pd.testing.assert_frame_equal(compare(back, cur), compare(profile, cur))
    with pytest.raises(ValueError, match="not a drift profile"):
        Profile.from_json('{"format": "something else"}')


def test_invalid_arguments() -> None:
    df = pd.DataFrame({"x": np.arange(100.0), "s": ["a"] * 100})
    with pytest.raises(ValueError, match="n_edges"):
        build_profile(df, ["x"], n_edges=1)
    with pytest.raises(ValueError, match="psi_bins"):
        build_profile(df, ["x"], n_edges=11, psi_bins=20)
    with pytest.raises(ValueError, match=r"columns not in the data: \['nope'\]"):
        build_profile(df, ["x", "nope"])
    with pytest.raises(TypeError, match=r"not numeric: \['s'\]"):
        build_profile(df, ["s"])
    profile = build_profile(df, ["x"])
    with pytest.raises(ValueError, match=r"columns not in the data: \['x'\]"):
        compare(profile, pd.DataFrame({"y": [1.0]}))
    with pytest.raises(ValueError, match=r"columns not in the profile: \['y'\]"):
        compare(profile, pd.DataFrame({"x": [1.0], "y": [1.0]}), ["x", "y"])


# --- result shape, groups, invariances -----------------------------------------------------------------


def test_compare_result_has_one_row_per_feature_in_the_documented_columns() -> None:
    rng = np.random.default_rng(12)
    df = pd.DataFrame(
        {"a": rng.normal(size=200), "b": rng.integers(0, 5, 200), "c": rng.random(200) < 0.5}
    )
    profile = build_profile(df, ["a", "b", "c"])
    out = compare(profile, df.assign(extra="ignored"))
    assert tuple(out.columns) == RESULT_COLUMNS
    assert out.feature.tolist() == ["a", "b", "c"]
    assert compare(profile, df, ["c", "a"]).feature.tolist() == ["c", "a"]


def test_compare_groups_finds_the_one_shifted_machine() -> None:
    rng = np.random.default_rng(13)
    machines = [f"M{i:02d}" for i in range(6)]
    offsets = {
        m: 10.0 * i for i, m in enumerate(machines)
    }  # every machine has its own normal level

    def frame(n: int, shifted: str | None) -> pd.DataFrame:
        machine = rng.choice(machines, n)
        level = np.array([offsets[m] for m in machine])
        temp = level + rng.normal(0, 1, n) + np.where(machine == shifted, 0.6, 0.0)
        return pd.DataFrame({"machine_id": machine, "temp": temp, "vib": rng.gamma(2.0, 1.0, n)})

    reference = frame(12_000, None)
    profiles = build_group_profiles(reference, "machine_id", ["temp", "vib"])
    assert sorted(profiles) == machines
    current = pd.concat(
        [
            frame(12_000, "M03"),
            pd.DataFrame({"machine_id": ["M99"] * 40 + [None] * 3, "temp": 1.0, "vib": 1.0}),
        ]
    )
    out = compare_groups(
        {k: v for k, v in profiles.items() if k != "M05"}, current, "machine_id", ["temp", "vib"]
    )
    assert tuple(out.columns) == ("group", *RESULT_COLUMNS)
    flagged = out[out.wasserstein >= drift.WASSERSTEIN_THRESHOLD]
    assert flagged[["group", "feature"]].values.tolist() == [["M03", "temp"]]
    assert flagged.wasserstein.iloc[0] == pytest.approx(0.6, abs=0.1)
    assert out.attrs["unprofiled_groups"] == ["M05", "M99"]
    assert out.attrs["rows_without_group"] == 3
    # The pooled reference would hide the shift under the machine-to-machine spread.
    pooled = compare(build_profile(reference, ["temp"]), current[current.machine_id.isin(machines)])
    assert pooled.wasserstein.iloc[0] < drift.WASSERSTEIN_THRESHOLD


def test_build_group_profiles_leaves_out_small_groups() -> None:
    df = pd.DataFrame({"g": ["a"] * 40 + ["b"] * 10 + [None] * 5, "x": np.arange(55.0)})
    assert list(build_group_profiles(df, "g", ["x"])) == ["a"]
    assert list(build_group_profiles(df, "g", ["x"], min_rows=10)) == ["a", "b"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), nan_share=st.floats(0, 0.5))
def test_statistics_do_not_depend_on_row_order(seed: int, n: int, nan_share: float) -> None:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({"a": rng.normal(size=300), "b": rng.integers(0, 4, 300).astype(float)})
    cur = pd.DataFrame({"a": rng.normal(0.3, 1.2, n), "b": rng.integers(0, 5, n).astype(float)})
    cur = cur.mask(rng.random(cur.shape) < nan_share)
    profile = build_profile(ref, ["a", "b"])
    shuffled = cur.sample(frac=1.0, random_state=seed % 2**31)
    assert (
        build_profile(ref.sample(frac=1.0, random_state=1), ["a", "b"]).features == profile.features
    )
    pd.testing.assert_frame_equal(compare(profile, shuffled), compare(profile, cur), rtol=1e-9)


def test_parallel_and_serial_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(14)
    df = pd.DataFrame(rng.normal(size=(5000, 4)), columns=list("abcd"))
    profile = build_profile(df, list("abcd"))
    serial = compare(profile, df * 1.1)
    monkeypatch.setattr(drift, "_PARALLEL_MIN_VALUES", 0)
    monkeypatch.setattr(drift, "_cpu_count", lambda: 2)
    pd.testing.assert_frame_equal(compare(profile, df * 1.1), serial)


@settings(max_examples=60, deadline=None)
@given(
    edges=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=120, unique=True),
    extra=st.lists(st.floats(-2e6, 2e6, allow_nan=False), max_size=50),
    seed=st.integers(0, 2**32 - 1),
)
def test_fast_bin_index_equals_searchsorted(
    edges: list[float], extra: list[float], seed: int
) -> None:
    e = np.sort(np.array(edges))
    rng = np.random.default_rng(seed)
    v = np.r_[
        e,
        np.nextafter(e, np.inf),
        np.nextafter(e, -np.inf),
        extra,
        rng.uniform(e[0] - 1, e[-1] + 1, 200),
        rng.choice(e, 50),
    ]
    np.testing.assert_array_equal(drift._bin_index(e, v), np.searchsorted(e, v, side="left"))


def test_feature_profile_is_a_plain_value() -> None:
    fp = FeatureProfile("x", [0.0, 1.0], [0.5, 1.0], 0.5, 0.5, 2, 0.0)
    assert fp == FeatureProfile("x", [0.0, 1.0], [0.5, 1.0], 0.5, 0.5, 2, 0.0)
    r = _one(Profile({"x": fp}, n_edges=101, psi_bins=10), np.array([0.0, 1.0]))
    assert r.wasserstein == pytest.approx(0.0, abs=1e-12) and r.ks == 0.0
