"""Detection benchmark: for every drift scenario over several seeds, the detection delay in
plant-days after the true onset, and false alarms per 100 stable plant-days.

Per (scenario, seed): a temporary installation with the affected plant only (``stable``: the three
simulated plants), ``--days`` days simulated with the onset on day ``--onset``; the champion is
trained on the first ``--train-days`` days (the real train_job, release gate with relaxed absolute
thresholds - see run_one -, approval and promotion), then monitor_job and performance_job run over the remaining days exactly as the loop
runs them. Everything goes through Dagster in-process on a temporary instance.

Detection = the first plant-day on/after the onset with the finding the scenario calls for
(moisture_drift: process_drift; sensor_offset: sensor_fault on the affected machine;
stuck_sensor: stuck_sensor on it; concept_drift: model_performance degraded). Delay 0 = found on
the onset day. False alarms = any finding that would alarm (process_drift, sensor_fault,
stuck_sensor, degraded performance) on a monitored plant-day before the onset, or on any day of
``stable``; counted per 100 such plant-days. Prints a table and one JSON line; asserts nothing.

    .venv/bin/python -m benchmarks.detection_bench --seeds 1,2,3,4,5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

D0 = dt.date(2026, 3, 16)
AFFECTED = {
    "moisture_drift": ("plant_a", "process_drift"),
    "sensor_offset": ("plant_b", "sensor_fault"),
    "stuck_sensor": ("plant_c", "stuck_sensor"),
    "concept_drift": ("plant_c", "performance"),
    "stable": (None, None),
}
ALARMS = ("process_drift", "sensor_fault", "stuck_sensor")


def bench_installation(root: Path, plants: tuple[str, ...]) -> Any:
    """A temporary installation of ``plants`` under ``root``, wired through this process's
    environment. The benchmarks measure monitoring and recovery, not model quality: on two weeks of
    one plant the default release gate (ROC-AUC >= 0.75 overall) is not always reached, so the
    gate's absolute floors are relaxed here (and only here) and the behaviour case two weeks cannot
    teach is dropped, so that every seed gets a champion; calibration, the comparison with the
    champion and the other cases still apply to every retrain."""
    from quality_platform.settings import copy_installation

    paths = copy_installation(root, plants)
    import yaml

    f = paths.config_dir / "ml" / "model.yaml"
    cfg = yaml.safe_load(f.read_text())
    cfg["gate"].update(min_roc_auc=0.6, min_pr_auc=0.05, per_plant_min_metric=0.55)
    f.write_text(yaml.safe_dump(cfg))
    cases = (
        paths.config_dir / "ml" / "behaviour_cases.yaml"
    )  # 10 degC above nominal: not seen in 2 weeks
    doc = yaml.safe_load(cases.read_text())
    doc["cases"] = [c for c in doc["cases"] if c["name"] != "hot_process_raises_risk"]
    cases.write_text(yaml.safe_dump(doc))
    os.environ.update(
        QP_DATA_DIR=str(paths.data_dir),
        QP_CONFIG_DIR=str(paths.config_dir),
        DAGSTER_HOME=str(root / "dagster_home"),
    )
    os.environ.setdefault("QP_PSEUDONYM_KEY", "benchmark-key-0123456789abcdef")
    for k in (
        "QP_LANDING_DIR",
        "QP_WAREHOUSE",
        "QP_AUDIT_DB",
        "QP_MLFLOW_TRACKING_URI",
        "QP_MLFLOW_ARTIFACT_ROOT",
    ):
        os.environ.pop(k, None)
    (root / "dagster_home").mkdir()
    return paths


def run_one(scenario: str, seed: int, days: int, onset: int, train_days: int, root: Path) -> dict:
    """One scenario x seed; returns per-plant-day alarms and the detection."""
    plant, _ = AFFECTED[scenario]
    plants = (plant,) if plant else ("plant_a", "plant_b", "plant_c")
    paths = bench_installation(root, plants)
    import dagster as dg

    from quality_platform.audit import AuditLog, audit_db_path
    from quality_platform.config import load_plants
    from quality_platform.definitions import build_definitions
    from quality_platform.defs.monitoring.jobs import MONITOR_JOB, PERFORMANCE_JOB
    from quality_platform.ml import lifecycle as L
    from quality_platform.ml.config import load_model_config
    from quality_platform.ml.registry import ModelRegistry
    from quality_platform.runner import backfill, run_range, train
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
    last = D0 + dt.timedelta(days=days - 1)
    first_mon = D0 + dt.timedelta(days=train_days)
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        defs = build_definitions(paths)
        for p in plants:
            assert all(o.success for o in backfill(defs, instance, p, D0, last)), f"backfill {p}"
        t = train(defs, instance, end_date=str(first_mon - dt.timedelta(days=1)))
        assert t.success, f"training failed: {t.failed_checks}"
        reg, audit = (
            ModelRegistry(load_model_config(paths), paths),
            AuditLog(audit_db_path(paths)),
        )
        L.approve(reg, audit, "1", "carl.control", "benchmark champion")
        L.promote(reg, audit, "1", "carl.control", "benchmark champion")
        for p in plants:
            assert run_range(defs, instance, MONITOR_JOB, p, first_mon, last).success, (
                f"monitor {p}"
            )
            assert run_range(defs, instance, PERFORMANCE_JOB, p, first_mon, last).success, (
                f"performance {p}"
            )
    con = duckdb.connect(str(paths.warehouse_path), read_only=True)
    try:
        found = con.sql("SELECT plant, partition_date, kind, machines FROM ml.drift_findings").df()
        perf = con.sql(
            "SELECT plant, partition_date, degraded, labelled, positives, mean_risk, defect_rate, roc_auc, "
            "roc_auc_upper, reference_roc_auc, loss_z, pooled_roc_auc, pooled_loss_z, expected_roc_auc, auc_z, pooled_auc_z "
            "FROM ml.model_performance"
        ).df()
        stats = con.sql(
            "SELECT plant, partition_date::VARCHAR AS day, scope, coalesce(machine_id, '') AS machine, "
            "feature, round(wasserstein, 3) AS w, round(mean_shift_sd, 3) AS shift FROM ml.drift_metrics"
        ).df()
    finally:
        con.close()
    found["partition_date"] = pd.to_datetime(found["partition_date"]).dt.date
    perf["partition_date"] = pd.to_datetime(perf["partition_date"]).dt.date
    onset_date = dt.date.fromisoformat(truth["onset_date"]) if truth.get("onset_date") else None
    machine = (truth.get("affected") or {}).get("machine")
    judged_perf = perf[perf["labelled"] > 0]
    day_rows = []
    for p in plants:
        d = first_mon
        while d <= last:
            f = found[(found["plant"] == p) & (found["partition_date"] == d)]
            kinds = sorted(set(f["kind"]) & set(ALARMS))
            g = judged_perf[(judged_perf["plant"] == p) & (judged_perf["partition_date"] == d)]
            if len(g) and bool(g["degraded"].any()):
                kinds.append("performance")
            pre = scenario == "stable" or onset_date is None or d < onset_date
            day_rows.append(
                {
                    "plant": p,
                    "day": d,
                    "kinds": kinds,
                    "stable_day": pre,
                    "perf_known": bool(len(g)),
                    "fault_machines": sorted(
                        {
                            m
                            for ms in f.loc[
                                f["kind"].isin(["sensor_fault", "stuck_sensor"]), "machines"
                            ]
                            for m in str(ms).split(",")
                            if m
                        }
                    ),
                }
            )
            d += dt.timedelta(days=1)
    delay = None
    if plant and onset_date:
        want = AFFECTED[scenario][1]
        for r in day_rows:
            if r["day"] < onset_date or want not in r["kinds"]:
                continue
            if want in ("sensor_fault", "stuck_sensor") and machine not in r["fault_machines"]:
                continue
            delay = (r["day"] - onset_date).days
            break
    after_retrain = sum(
        1 for r in day_rows if not r["stable_day"] and "process_drift" in r["kinds"]
    )
    dump = os.environ.get("QP_BENCH_DUMP")
    if dump:  # per-day statistics, to calibrate thresholds offline
        Path(dump).mkdir(parents=True, exist_ok=True)
        stats.assign(scenario=scenario, seed=seed).to_csv(
            Path(dump) / f"drift_{scenario}_{seed}.csv", index=False
        )
        perf.assign(scenario=scenario, seed=seed).to_csv(
            Path(dump) / f"perf_{scenario}_{seed}.csv", index=False
        )
    return {
        "scenario": scenario,
        "seed": seed,
        "delay_days": delay,
        "onset": str(onset_date),
        "monitored_days": len(day_rows),
        "stable_days": sum(r["stable_day"] for r in day_rows),
        "stable_perf_days": sum(r["stable_day"] and r["perf_known"] for r in day_rows),
        "false_alarms": sum(1 for r in day_rows if r["stable_day"] and r["kinds"]),
        "false_alarm_days": [
            f"{r['plant']} {r['day']} {r['kinds']}"
            for r in day_rows
            if r["stable_day"] and r["kinds"]
        ],
        "process_drift_days_after_onset": after_retrain,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument(
        "--scenarios", default="stable,moisture_drift,sensor_offset,stuck_sensor,concept_drift"
    )
    ap.add_argument("--days", type=int, default=22)
    ap.add_argument("--onset", type=int, default=17)
    ap.add_argument("--train-days", type=int, default=14)
    a = ap.parse_args()
    results = []
    for scenario in a.scenarios.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            with tempfile.TemporaryDirectory(prefix="qp-detect-") as t:
                r = run_one(scenario, seed, a.days, a.onset, a.train_days, Path(t))
            results.append(r)
            print(json.dumps(r, default=str), file=sys.stderr, flush=True)
    df = pd.DataFrame(results)
    print(
        f"\n## Detection ({a.days} days, champion trained on days 0-{a.train_days - 1}, onset day {a.onset}, "
        f"seeds {a.seeds})"
    )
    print(
        f"{'scenario':<15} {'delays (plant-days)':<22} {'detected':>8} {'false alarms':>12} {'stable plant-days':>17}"
    )
    for scenario, g in df.groupby("scenario", sort=False):
        delays = ",".join("-" if pd.isna(x) else str(int(x)) for x in g["delay_days"])
        det = f"{g['delay_days'].notna().sum()}/{len(g)}" if scenario != "stable" else "n/a"
        print(
            f"{scenario:<15} {delays:<22} {det:>8} {int(g['false_alarms'].sum()):>12} {int(g['stable_days'].sum()):>17}"
        )
    fa, sd = int(df["false_alarms"].sum()), int(df["stable_days"].sum())
    print(f"false alarms: {fa} on {sd} stable plant-days = {100 * fa / sd:.2f} per 100 plant-days")
    for r in results:
        for x in r["false_alarm_days"]:
            print(f"  false alarm: {r['scenario']} seed {r['seed']}: {x}")
    print(json.dumps({"detection": results}, default=str))


if __name__ == "__main__":
    main()
