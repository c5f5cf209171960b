"""Drift benchmark: how fast :mod:`quality_platform.ml.drift` profiles a reference and compares a day
of production data, and - optionally - the same comparison with Evidently's ``DataDriftPreset``.

Data (seeded): ``--rows`` (default 1,000,000) rows x ``--features`` (default 20) float features for the
reference and, independently drawn, for the current set; five families of distributions (normal,
log-normal, gamma, uniform, Student-t), each feature with its own location and scale. In the current
set 5 known features (one of each family) are shifted by 0.5 reference sd; all others have the same
distribution as in the reference.

Measured: ``build_profile`` on the reference (once per model version, at training time) and
``compare`` on the current set (the daily job; best of ``--repeat`` runs). Printed: the timings, the
statistics per feature and the features flagged at ``wasserstein >= 0.1``. The threshold 0.1 (a
tenth of a reference sd) is Evidently's default for numerical columns with more than 1,000 rows
(normed Wasserstein distance >= 0.1), so both tools answer the same question on independent rows;
it sits far above the sampling noise of the statistic at these volumes (about 0.002 at 1,000,000
rows). (The platform's plant-day alarm in data/ml/monitoring.yaml is higher: a plant-day's units are
not independent - they share material lots - see the README.) Exit code 1 if the flagged features
are not exactly the shifted ones.

With ``--evidently PYTHON`` (an interpreter that has ``evidently``), the same data is written to
temporary Parquet files and Evidently's ``DataDriftPreset`` is run on it in a subprocess, timed inside
the subprocess around the report computation only; printed are both timings, the speed ratio, whether
the same features are flagged and how far the two Wasserstein values per feature differ. Evidently
>= 0.7 (``from evidently import Report; from evidently.presets import DataDriftPreset``) and the older
API (``evidently.report`` / ``evidently.metric_preset``) are both supported. Evidently is NOT a
project dependency; create its interpreter once with::

    python3 -m venv .bench-evidently && .bench-evidently/bin/pip install evidently "pandas<3" pyarrow

(``"pandas<3"``: evidently 0.7.23 does not import with pandas 3; plain ``pandas`` works for versions
that support it.)

Usage: ``.venv/bin/python benchmarks/drift_bench.py [--rows N] [--evidently .bench-evidently/bin/python]``
(or ``main([...])``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality_platform.ml.drift import WASSERSTEIN_THRESHOLD, build_profile, compare

SEED = 42
SHIFT_SD = 0.5
#: Indices of the shifted features: one of each distribution family (index % 5).
SHIFTED = (0, 6, 9, 12, 18)

_EVIDENTLY_SCRIPT = r"""
import json, sys, time
import pandas as pd
import evidently

ref = pd.read_parquet(sys.argv[1])
cur = pd.read_parquet(sys.argv[2])
try:  # evidently >= 0.7
    from evidently import Report
    from evidently.presets import DataDriftPreset
    new_api = True
except ImportError:  # evidently 0.4 - 0.6
    from evidently.report import Report
    from evidently.metric_preset import DataDriftPreset
    new_api = False

t0 = time.perf_counter()
if new_api:
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
else:
    report = Report(metrics=[DataDriftPreset()])
    report.run(reference_data=ref, current_data=cur)
seconds = time.perf_counter() - t0

scores, drifted, methods = {}, [], set()
if new_api:
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        if str(cfg.get("type", "")).endswith("ValueDrift"):
            col, value, threshold = cfg["column"], float(m["value"]), float(cfg["threshold"])
            method = str(cfg.get("method"))
            methods.add(method)
            scores[col] = value
            if (value < threshold) if "p_value" in method else (value >= threshold):
                drifted.append(col)
else:
    for m in report.as_dict()["metrics"]:
        by_column = (m.get("result") or {}).get("drift_by_columns")
        for col, r in (by_column or {}).items():
            scores[col] = float(r["drift_score"])
            methods.add(str(r.get("stattest_name")))
            if r["drift_detected"]:
                drifted.append(col)
print(json.dumps({"version": evidently.__version__, "api": ">=0.7" if new_api else "legacy",
                  "seconds": seconds, "drifted": sorted(drifted), "scores": scores,
                  "methods": sorted(methods)}))
"""


def feature_names(n_features: int) -> list[str]:
    return [f"x{j:02d}" for j in range(n_features)]


def _column(j: int, n: int, rng: np.random.Generator) -> np.ndarray:
    family = j % 5
    if family == 0:
        return rng.normal(20.0 + j, 1.0 + j % 3, n)
    if family == 1:
        return (1.0 + j) * rng.lognormal(0.0, 0.5, n)
    if family == 2:
        return rng.gamma(2.0, 1.5 + j / 10, n)
    if family == 3:
        return rng.uniform(0.0, 10.0 + j, n)
    return 50.0 + 2.0 * rng.standard_t(5, n)


def make_data(
    rows: int, n_features: int, seed: int = SEED
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Reference and current frames and the names of the features shifted by 0.5 reference sd."""
    names = feature_names(n_features)
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({c: _column(j, rows, rng) for j, c in enumerate(names)})
    cur = pd.DataFrame({c: _column(j, rows, rng) for j, c in enumerate(names)})
    shifted = [names[j] for j in SHIFTED if j < n_features]
    for c in shifted:
        cur[c] += SHIFT_SD * float(ref[c].std(ddof=0))
    return ref, cur, shifted


def run_evidently(python: str, ref: pd.DataFrame, cur: pd.DataFrame) -> dict | None:
    """Evidently's DataDriftPreset on the same data, in ``python``; None (with the reason printed) on
    failure."""
    with tempfile.TemporaryDirectory(prefix="drift_bench_") as tmp:
        ref_path, cur_path = Path(tmp) / "reference.parquet", Path(tmp) / "current.parquet"
        ref.to_parquet(ref_path, index=False)
        cur.to_parquet(cur_path, index=False)
        env = dict(
            os.environ, PYTHONWARNINGS="ignore", DO_NOT_TRACK="1", EVIDENTLY_DISABLE_TELEMETRY="1"
        )
        t0 = time.perf_counter()
        res = subprocess.run(
            [python, "-c", _EVIDENTLY_SCRIPT, str(ref_path), str(cur_path)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        wall = time.perf_counter() - t0
    if res.returncode != 0:
        print(
            f"\nEvidently failed (exit {res.returncode}):\n"
            + "\n".join(res.stderr.strip().splitlines()[-15:])
        )
        return None
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["wall_seconds"] = wall
    return out


def _print_table(table: pd.DataFrame) -> None:
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rows", type=int, default=1_000_000, help="rows per data set (default 1,000,000)"
    )
    ap.add_argument("--features", type=int, default=20, help="float features (default 20)")
    ap.add_argument(
        "--repeat", type=int, default=3, help="compare() runs, best one reported (default 3)"
    )
    ap.add_argument(
        "--evidently",
        metavar="PYTHON",
        help="interpreter with evidently installed, e.g. "
        ".bench-evidently/bin/python: also run Evidently's DataDriftPreset on the same data",
    )
    args = ap.parse_args(argv)

    print(
        f"# drift benchmark - {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}"
    )
    t0 = time.perf_counter()
    ref, cur, shifted = make_data(args.rows, args.features)
    names = list(ref.columns)
    print(
        f"# data: {args.rows:,} rows x {args.features} features, reference and current "
        f"(generated in {time.perf_counter() - t0:.1f} s); shifted by {SHIFT_SD} sd: {', '.join(shifted)}"
    )

    t0 = time.perf_counter()
    profile = build_profile(ref, names)
    t_build = time.perf_counter() - t0
    t_compare: list[float] = []
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        result = compare(profile, cur)
        t_compare.append(time.perf_counter() - t0)
    best = min(t_compare)
    size_kb = len(profile.to_json().encode()) / 1024

    print(
        f"\nbuild_profile(reference)  {t_build:6.2f} s   ({args.rows * args.features / t_build:,.0f} values/s; "
        f"profile JSON {size_kb:.0f} KiB)"
    )
    print(
        f"compare(current)          {best:6.2f} s   ({args.rows * args.features / best:,.0f} values/s; "
        f"runs: {', '.join(f'{t:.2f}' for t in t_compare)} s)"
    )
    print()
    _print_table(result[["feature", "n", "wasserstein", "psi", "ks", "mean_shift_sd"]])

    flagged = sorted(result.loc[result.wasserstein >= WASSERSTEIN_THRESHOLD, "feature"])
    ok = flagged == sorted(shifted)
    print(
        f"\nflagged at wasserstein >= {WASSERSTEIN_THRESHOLD}: {', '.join(flagged) or '-'}"
        f"  ({'exactly the shifted features' if ok else 'MISMATCH with the shifted features'})"
    )

    if args.evidently:
        ev = run_evidently(args.evidently, ref, cur)
        if ev is not None:
            ours = result.set_index("feature").wasserstein
            diff = max(
                (abs(ours[c] - v) for c, v in ev["scores"].items() if c in ours.index),
                default=float("nan"),
            )
            same = sorted(ev["drifted"]) == flagged
            print(
                f"\nEvidently {ev['version']} ({ev['api']} API) DataDriftPreset, methods: {', '.join(ev['methods'])}"
            )
            print(
                f"  report computation      {ev['seconds']:6.2f} s   (subprocess wall time incl. Parquet "
                f"read and import: {ev['wall_seconds']:.1f} s)"
            )
            print(f"  drifted: {', '.join(ev['drifted']) or '-'}")
            print(
                f"  same features flagged: {'yes' if same else 'NO'}; "
                f"largest |wasserstein difference| per feature: {diff:.4f}"
            )
            print(
                f"  speed-up: compare() {ev['seconds'] / best:,.0f}x faster; "
                f"build_profile() + compare() {ev['seconds'] / (t_build + best):,.0f}x faster"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
