"""Scoring benchmark: how fast a defect model of production size turns feature rows into risks,
reasons and canary routing. Prints figures; asserts nothing.

A CatBoost model (300 trees, depth 6, seed 42, 2 threads) is trained on 50,000 generated rows with
5 low-cardinality categorical columns (plant 4 values, machine 40, line 6, product 8, supplier 5)
and 56 numeric columns (some NaN), then measured on ``--rows`` generated rows:

- ``score()``: defect probability per row,
- ``top_reasons()``: the 3 largest SHAP contributions per row (on at most 100,000 rows),
- ``challenger_share()``: hash-based canary routing per unit.

Usage: ``.venv/bin/python benchmarks/scoring_bench.py --rows 1000000`` (or ``main(["--rows", "..."])``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import catboost
import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality_platform.ml.frame import FeatureSpec, model_frame
from quality_platform.ml.scoring import challenger_share, score, top_reasons

#: Categorical columns and their number of distinct values.
CATEGORIES = {"plant": 4, "machine_id": 40, "line": 6, "product": 8, "supplier": 5}
N_NUMERIC = 56
TRAIN_ROWS = 50_000
REASON_ROWS = 100_000
SEED = 42
THREADS = 2

T = TypeVar("T")


def bench_spec() -> FeatureSpec:
    numeric = tuple(
        f"q{i // 4:02d}__{('mean', 'std', 'min', 'max')[i % 4]}" for i in range(N_NUMERIC)
    )
    return FeatureSpec(tuple(CATEGORIES), numeric, feature_set_version=1)


def make_rows(
    n: int, seed: int, spec: FeatureSpec | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` feature rows (as in unit_features: categorical strings with some NULLs, numeric with NaN)
    and a defect label driven by a few numeric features, categories and their interaction."""
    spec = spec or bench_spec()
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    codes: dict[str, np.ndarray] = {}
    for c, card in CATEGORIES.items():
        codes[c] = rng.integers(0, card, n)
        values = np.array([f"{c[:2].upper()}{i:02d}" for i in range(card)], dtype=object)[codes[c]]
        values[rng.random(n) < 0.01] = None
        cols[c] = values
    x = rng.normal(size=(n, N_NUMERIC))
    x[rng.random((n, N_NUMERIC)) < 0.03] = np.nan
    for j, c in enumerate(spec.numeric):
        cols[c] = x[:, j] * (1 + j % 7) + 10 * (j % 5)
    z = np.nan_to_num(x[:, :6])
    logit = (
        -3.0
        + 1.4 * z[:, 0]
        - 0.9 * z[:, 1]
        + 0.6 * z[:, 2] * z[:, 3]
        + 0.8 * (z[:, 4] > 1.2)
        + 0.5 * (codes["machine_id"] % 7 == 0)
        + 0.4 * (codes["supplier"] == 3)
        - 0.3 * (codes["plant"] == 1)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame(cols), y


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}"


def _timed(fn: Callable[..., T], *args: object, **kwargs: object) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rows", type=int, default=1_000_000, help="rows to score and route (default 1,000,000)"
    )
    ap.add_argument(
        "--reason-rows",
        type=int,
        default=REASON_ROWS,
        help="rows for top_reasons (default 100,000)",
    )
    ap.add_argument(
        "--no-compare",
        dest="compare",
        action="store_false",
        help="skip the comparison figures (CatBoost predict_proba, raw SHAP Regular vs Approximate)",
    )
    args = ap.parse_args(argv)

    spec = bench_spec()
    print(
        f"# scoring benchmark - {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, catboost {catboost.__version__}, pandas {pd.__version__}, "
        f"numpy {np.__version__}"
    )
    print(
        f"# features: {len(spec.categorical)} categorical + {len(spec.numeric)} numeric; model: 300 trees depth 6, "
        f"trained on {TRAIN_ROWS:,} rows, thread_count={THREADS}"
    )

    train_rows, y = make_rows(TRAIN_ROWS, SEED, spec)
    model = catboost.CatBoostClassifier(
        iterations=300,
        depth=6,
        learning_rate=0.08,
        random_seed=SEED,
        thread_count=THREADS,
        loss_function="Logloss",
        allow_writing_files=False,
        verbose=False,
    )
    t0 = time.perf_counter()
    model.fit(model_frame(train_rows, spec), y, cat_features=list(range(len(spec.categorical))))
    t_train = time.perf_counter() - t0

    rows, _ = make_rows(args.rows, SEED + 1, spec)
    t_frame, frame = _timed(model_frame, rows, spec)
    t_score, risk = _timed(score, model, frame, spec)
    t_proba, proba = _timed(model.predict_proba, frame) if args.compare else (float("nan"), None)

    n_reasons = min(args.reason_rows, args.rows)
    sub = frame.iloc[:n_reasons]
    t_reasons, _ = _timed(top_reasons, model, sub, spec, 3)
    shap_s: dict[str, float] = {}
    if args.compare:
        pool = catboost.Pool(sub, cat_features=list(range(len(spec.categorical))))
        for kind in ("Regular", "Approximate"):
            shap_s[kind], _ = _timed(
                model.get_feature_importance,
                pool,
                type="ShapValues",
                shap_calc_type=kind,
                thread_count=-1,
            )

    plants = rows["plant"].fillna("P0").astype(str)
    units = pd.Series(np.char.add("U", np.arange(args.rows).astype(str)))
    t_route, _ = _timed(challenger_share, plants, units, 0.1)

    cmp = "  for comparison: "
    table: list[tuple[str, int, float]] = [
        ("training (300 trees, depth 6)", TRAIN_ROWS, t_train),
        ("model_frame()", args.rows, t_frame),
        ("score()", args.rows, t_score),
        *([(f"{cmp}model.predict_proba(frame)", args.rows, t_proba)] if args.compare else []),
        ("top_reasons(k=3), SHAP Regular", n_reasons, t_reasons),
        *((f"{cmp}SHAP matrix only, {kind}", n_reasons, t) for kind, t in shap_s.items()),
        ("challenger_share()", args.rows, t_route),
    ]
    cells = [(name, f"{n:,}", f"{t:.2f}", _rate(n, t)) for name, n, t in table]
    head = ("step", "rows", "seconds", "rows/s")
    widths = [max(len(r[i]) for r in [head, *cells]) for i in range(4)]
    print()
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(head, widths, strict=True))
        )
    )
    for r in cells:
        print(
            "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    if proba is not None:
        print(
            f"\nscore() identical to predict_proba(frame)[:, 1]: {bool(np.array_equal(risk, proba[:, 1]))}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
