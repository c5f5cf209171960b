"""Recovery benchmark: does the closed loop restore model quality after a shift, and how fast?

Per (scenario, seed): a temporary installation with the affected plant (moisture_drift: plant_a,
labels 2 plant-days late; concept_drift: plant_c, 1 day late), ``--days`` days simulated with the
onset on day ``--onset``. The champion is trained on the first ``--train-days`` days (train_job,
release gate, approval, promotion); then every later day goes through the loop exactly as the
in-process loop tests run it (``runner.run_day``: land, standardise, the runs the sensors request,
ticked by Dagster: scoring, monitoring, performance, canary, ``retrain_on_drift`` and its gated
retrain, promotion or rollback).

Per post-onset plant-day with labels, the realised ROC-AUC and log-loss on that day's units of

- **deciding**: the model whose risk decided the unit (``ml.predictions.risk``: the champion's, or
  the challenger's on its canary share): what the plant got;
- **never**: version 1 (never retrained), scored on the same units;
- **oracle**: a model trained (same features, same CatBoost parameters) on the labelled units of
  the ``window_days`` days before that day, labels known at once (no label latency, no detection,
  no gate): what a retrain could have reached.

Recovery: the first post-onset day from which the deciding model stays within 0.01 ROC-AUC of the
oracle on every later day; reported in plant-days after the onset, next to the goal (label latency
+ 2 plant-days), with the quality lost until then (sum over days of oracle minus deciding ROC-AUC,
and of deciding minus oracle log-loss). Retrains per shift: the train_job runs
``retrain_on_drift`` launched after the onset (goal: <= 1). Prints a table and one JSON line;
asserts nothing.

    .venv/bin/python -m benchmarks.recovery_bench --seeds 1,2,3,4,5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from benchmarks.detection_bench import D0, bench_installation

AFFECTED = {"moisture_drift": "plant_a", "concept_drift": "plant_c"}
WITHIN = 0.01


def _frame(con: Any, sql: str) -> pd.DataFrame:
    df = con.sql(sql).df()
    if "partition_date" in df.columns:
        df["partition_date"] = pd.to_datetime(df["partition_date"]).dt.date
    return df


def _day_metrics(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    from quality_platform.ml import metrics as M

    if len(y) == 0 or y.min() == y.max():
        return float("nan"), float("nan")
    return M.metric("roc_auc", y, s), M.metric("log_loss", y, s)


def run_one(scenario: str, seed: int, days: int, onset: int, train_days: int) -> dict[str, Any]:
    """One scenario x seed through the loop; per post-onset day the three models' quality."""
    with tempfile.TemporaryDirectory(prefix="qp-recovery-") as t:
        return _run(scenario, seed, days, onset, train_days, Path(t))


def _run(
    scenario: str, seed: int, days: int, onset: int, train_days: int, root: Path
) -> dict[str, Any]:
    plant = AFFECTED[scenario]
    paths = bench_installation(root, (plant,))
    import dagster as dg

    from quality_platform.config import load_plants
    from quality_platform.definitions import build_definitions
    from quality_platform.defs.ml.jobs import TRAIN_JOB
    from quality_platform.defs.ml.sensors import RETRAIN_SENSOR, current_cursor
    from quality_platform.defs.monitoring.jobs import MONITOR_JOB
    from quality_platform.features.schema import FEATURE_SCHEMA, TABLE
    from quality_platform.ml import lifecycle as L
    from quality_platform.ml.config import load_model_config
    from quality_platform.ml.dataset import LABEL
    from quality_platform.ml.train import fit, predict
    from quality_platform.runner import backfill, run_day, run_range, train
    from quality_platform.simulation import simulate

    t0 = time.perf_counter()
    truth = simulate(
        paths.landing_dir,
        days=days,
        start=D0,
        seed=seed,
        scenario=scenario,
        onset_day=onset,
        plants=load_plants(paths),
    )
    onset_date = dt.date.fromisoformat(truth["onset_date"])
    last_train = D0 + dt.timedelta(days=train_days - 1)
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        defs = build_definitions(paths)
        assert all(o.success for o in backfill(defs, instance, plant, D0, last_train))
        t = train(defs, instance)
        assert t.success, f"training failed: {t.failed_checks}"
        reg, audit = L.open_stores(paths)
        L.approve(reg, audit, "1", "carl.control", "benchmark champion")
        L.promote(reg, audit, "1", "carl.control", "benchmark champion")
        assert run_range(defs, instance, MONITOR_JOB, plant, D0, last_train).success
        cursors: dict[str, str | None] = {RETRAIN_SENSOR: current_cursor(instance)}
        for i in range(train_days, days):
            o = run_day(defs, instance, plant, D0 + dt.timedelta(days=i), cursors)
            cursors = o.cursors
        retrain_runs = [
            r
            for r in instance.get_runs(dg.RunsFilter(job_name=TRAIN_JOB))
            if r.tags.get("dagster/sensor_name") == RETRAIN_SENSOR
        ]
    loop_s = time.perf_counter() - t0
    cfg = load_model_config(paths)
    v1 = reg.version("1")
    spec = v1.spec
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        units = _frame(
            con,
            f"""SELECT f.*, u.defect::INTEGER AS {LABEL}
                FROM {FEATURE_SCHEMA}.{TABLE} f JOIN standard.production_units u
                USING (plant, partition_date, unit_id)
                WHERE u.defect IS NOT NULL AND f.plant = '{plant}'""",
        )
        decided = _frame(
            con,
            f"""SELECT partition_date, unit_id, model_version, risk FROM ml.predictions
                WHERE plant = '{plant}' AND risk IS NOT NULL""",
        )
    finally:
        con.close()
    never_model = reg.load("1")
    rows = []
    for day in sorted(d for d in units["partition_date"].unique() if d >= onset_date):
        today = units[units["partition_date"] == day]
        y = today[LABEL].to_numpy(dtype=np.int64)
        dec = today[["unit_id"]].merge(decided[decided["partition_date"] == day], on="unit_id")
        if len(dec) != len(today):
            continue  # a day the loop has not scored
        history = units[
            (units["partition_date"] < day)
            & (units["partition_date"] >= day - dt.timedelta(days=cfg.training.window_days))
        ].assign(split="train")
        oracle = fit(history, spec, cfg.catboost).model
        d_auc, d_ll = _day_metrics(y, dec["risk"].to_numpy(dtype=float))
        n_auc, n_ll = _day_metrics(y, predict(never_model, today, spec))
        o_auc, o_ll = _day_metrics(y, predict(oracle, today, spec))
        rows.append(
            {
                "day": str(day),
                "after_onset": (day - onset_date).days,
                "units": len(y),
                "defects": int(y.sum()),
                "deciding_versions": sorted(dec["model_version"].astype(str).unique()),
                "deciding_auc": d_auc,
                "never_auc": n_auc,
                "oracle_auc": o_auc,
                "deciding_log_loss": d_ll,
                "never_log_loss": n_ll,
                "oracle_log_loss": o_ll,
            }
        )
    recovered = None
    for i in range(len(rows)):
        if all(r["deciding_auc"] >= r["oracle_auc"] - WITHIN for r in rows[i:]):
            recovered = rows[i]["after_onset"]
            break
    before = [r for r in rows if recovered is None or r["after_onset"] < recovered]
    latency = load_plants(paths)[plant].label_latency_days
    return {
        "scenario": scenario,
        "seed": seed,
        "plant": plant,
        "onset": str(onset_date),
        "label_latency_days": latency,
        "goal_plant_days": latency + 2,
        "recovered_after_plant_days": recovered,
        "auc_lost": round(sum(max(0.0, r["oracle_auc"] - r["deciding_auc"]) for r in before), 4),
        "log_loss_lost": round(
            sum(max(0.0, r["deciding_log_loss"] - r["oracle_log_loss"]) for r in before), 4
        ),
        "retrains_after_onset": sum(
            1
            for r in retrain_runs
            if r.tags.get("qp/check_record_id") and r.status == dg.DagsterRunStatus.SUCCESS
        ),
        "retrain_runs": len(retrain_runs),
        "versions": [v.version + ":" + v.status for v in reg.versions()],
        "days": rows,
        "seconds": round(time.perf_counter() - t0, 1),
        "loop_seconds": round(loop_s, 1),
    }


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return float(np.mean(xs)) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--scenarios", default="moisture_drift,concept_drift")
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--onset", type=int, default=10)
    ap.add_argument("--train-days", type=int, default=9)
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    a = ap.parse_args()
    jobs = [(sc, int(s)) for sc in a.scenarios.split(",") for s in a.seeds.split(",")]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        futures = [
            pool.submit(run_one, sc, seed, a.days, a.onset, a.train_days) for sc, seed in jobs
        ]
        results = []
        for f in futures:
            try:
                r = f.result()
            except Exception as exc:  # a seed that fails is reported, not hidden
                r = {"error": f"{type(exc).__name__}: {exc}"}
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "days"}), file=sys.stderr)
    print(
        f"\n## Recovery ({a.days} days, champion trained on days 0-{a.train_days - 1}, onset day "
        f"{a.onset}, seeds {a.seeds}; {time.perf_counter() - t0:.0f} s, {a.jobs} in parallel)"
    )
    print(
        f"{'scenario':<15} {'seed':>4} {'recovered (plant-days)':>22} {'goal':>4} {'retrains':>8} "
        f"{'AUC lost':>8} {'logloss lost':>12} {'AUC deciding/never/oracle (post-onset mean)':>44}"
    )
    for r in results:
        if "error" in r:
            print(f"error: {r['error']}")
            continue
        d = r["days"]
        aucs = "/".join(
            f"{_mean([x[k] for x in d]):.3f}" for k in ("deciding_auc", "never_auc", "oracle_auc")
        )
        rec = "-" if r["recovered_after_plant_days"] is None else r["recovered_after_plant_days"]
        print(
            f"{r['scenario']:<15} {r['seed']:>4} {rec!s:>22} {r['goal_plant_days']:>4} "
            f"{r['retrains_after_onset']:>8} {r['auc_lost']:>8} {r['log_loss_lost']:>12} {aucs:>44}"
        )
    print(
        "\nper day (after onset: deciding version, ROC-AUC deciding/never/oracle, log-loss d/n/o)"
    )
    for r in results:
        for x in r.get("days", []):
            print(
                f"  {r['scenario']} seed {r['seed']} +{x['after_onset']} v{','.join(x['deciding_versions'])}: "
                f"{x['deciding_auc']:.3f}/{x['never_auc']:.3f}/{x['oracle_auc']:.3f}  "
                f"{x['deciding_log_loss']:.3f}/{x['never_log_loss']:.3f}/{x['oracle_log_loss']:.3f}"
            )
    print(json.dumps({"recovery": results}, default=str))


if __name__ == "__main__":
    main()
