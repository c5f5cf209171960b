"""`make bench`: ingestion throughput at the default and a 10x larger scale, the wall time of the
whole demo (with the closed loop and its latency), peak memory, retraining, scoring, drift speed
against Evidently, drift detection delay / false alarms over seeds, the loop's recovery of
model quality after a shift (against never retraining and an oracle), and the model on the real
AI4I 2020 data against a plain CatBoost on the same split. Prints figures; asserts
nothing.

Each measurement runs in a fresh process (peak RSS is per process). Set QP_BENCH_SCALES=1 to skip
the 10x run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _env(data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        QP_DATA_DIR=str(data),
        QP_CONFIG_DIR=str(ROOT / "data"),
        DAGSTER_HOME=str(data / "dagster_home"),
        PYTHONPATH=str(ROOT),
    )
    env.setdefault("QP_PSEUDONYM_KEY", "benchmark-key-0123456789abcdef")
    return env


def ingest(days: int, start: str, tmp: Path) -> dict:
    out = tmp / f"ingest_{days}"
    cmd = [
        PY,
        "-m",
        "benchmarks.ingest_bench",
        "--days",
        str(days),
        "--start",
        start,
        "--out",
        str(out),
    ]
    res = subprocess.run(cmd, cwd=ROOT, env=_env(out), capture_output=True, text=True, check=True)
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def demo(tmp: Path) -> dict:
    data = tmp / "demo"
    (data / "dagster_home").mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", data / "dagster_home" / "dagster.yaml")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    res = subprocess.run(
        [PY, "-m", "quality_platform.cli", "demo", "--json"],
        cwd=ROOT,
        env=_env(data),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    try:
        out = json.loads(res.stdout)
    except json.JSONDecodeError:
        out = {"error": res.stderr[-500:]}
    return {
        "wall_s": round(wall, 1),
        "exit_code": res.returncode,
        "peak_rss_mb": round(max(rss, before) / 1024),
        "loop": out.get("loop"),
        "error": out.get("error"),
    }


EVIDENTLY_VENV = ROOT / ".bench-evidently"


def drift_speed() -> str:
    """Our drift computation vs Evidently's DataDriftPreset on the same 1M x 20 data. Evidently is
    installed into its own git-ignored venv, only for this benchmark (never a runtime dependency)."""
    py = EVIDENTLY_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run(["python3", "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [
                str(py),
                "-m",
                "pip",
                "install",
                "--quiet",
                "evidently==0.7.23",
                "pandas<3",
                "pyarrow",
            ],
            check=True,
        )
    res = subprocess.run(
        [PY, "benchmarks/drift_bench.py", "--rows", "1000000", "--evidently", str(py)],
        cwd=ROOT,
        env=_env(ROOT / "data" / "state"),
        capture_output=True,
        text=True,
    )
    return res.stdout.strip() + (f"\n(exit code {res.returncode})" if res.returncode else "")


def detection(seeds: str, module: str = "benchmarks.detection_bench") -> str:
    """The table of a seeds benchmark (detection, recovery) without its JSON lines."""
    return table(module, "--seeds", seeds)


def table(module: str, *args: str) -> str:
    """What a benchmark module prints, without its JSON lines."""
    res = subprocess.run(
        [PY, "-m", module, *args],
        cwd=ROOT,
        env=_env(ROOT / "data" / "state"),
        capture_output=True,
        text=True,
    )
    lines = [ln for ln in res.stdout.strip().splitlines() if not ln.startswith("{")]
    return "\n".join(lines) + (
        f"\n(exit code {res.returncode}: {res.stderr[-300:]})" if res.returncode else ""
    )


def retrain(tmp: Path) -> dict:
    """On the demo's data (a champion exists): `qp train` = training_dataset -> defect_model -> release gate
    -> approval policy -> challenger, as one Dagster run in a fresh process."""
    data = tmp / "demo"
    t0 = time.perf_counter()
    res = subprocess.run(
        [PY, "-m", "quality_platform.cli", "train", "--json"],
        cwd=ROOT,
        env=_env(data),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    out = (
        json.loads(res.stdout)
        if res.stdout.strip().startswith("{")
        else {"error": res.stderr[-500:]}
    )
    return {"wall_s": round(wall, 1), **out}


def scoring() -> str:
    res = subprocess.run(
        [PY, "benchmarks/scoring_bench.py", "--rows", "1000000"],
        cwd=ROOT,
        env=_env(ROOT / "data" / "state"),
        capture_output=True,
        text=True,
        check=True,
    )
    return res.stdout.strip()


def main() -> None:
    scales = [int(s) for s in os.environ.get("QP_BENCH_SCALES", "1,10").split(",")]
    print(
        f"# quality_platform benchmarks - {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="qp-bench-") as t:
        tmp = Path(t)
        print(
            "\n## Ingestion: landing files -> raw -> validated standard (3 simulated plants, 1 reading/min/sensor)"
        )
        print(
            f"{'scale':>5} {'days':>5} {'values':>12} {'simulate s':>10} {'land s':>7} {'standardise s':>13} "
            f"{'land v/s':>10} {'std v/s':>10} {'raw->std v/s':>12} {'peak RSS MB':>11}"
        )
        for scale in scales:
            days, start = (30, "2026-03-16") if scale == 1 else (30 * scale, "2026-01-01")
            r = ingest(days, start, tmp)
            print(
                f"{scale:>5} {r['days']:>5} {r['values']:>12,} {r['simulate_s']:>10} {r['land_s']:>7} "
                f"{r['standardize_s']:>13} {r['land_values_per_s']:>10,} {r['standardize_values_per_s']:>10,} "
                f"{r['raw_to_standard_values_per_s']:>12,} {r['peak_rss_mb']:>11}",
                flush=True,
            )
        print(
            "\n## Whole demo (`qp demo`: simulate 30 days with moisture drift at plant_a, 4 plants through Dagster, "
            "train/gate/promote, monitor, plant_a's last 10 days through the closed loop, summary)"
        )
        d = demo(tmp)
        lp = d.get("loop") or {}
        print(
            f"wall {d['wall_s']} s, exit code {d['exit_code']}, peak RSS {d['peak_rss_mb']} MB {d.get('error') or ''}"
        )
        print(
            f"closed loop: onset {lp.get('onset')}, drift detected {lp.get('first_detected')}, retrained version "
            f"{(lp.get('retrained_version') or {}).get('version')} (gate {(lp.get('retrained_version') or {}).get('gate')})"
            f", promotion {'yes' if lp.get('promotion') else 'no'}, champion {lp.get('champion')}"
        )
        print(
            f"loop latency (failing drift check -> gated challenger registered, demo scale): "
            f"{lp.get('check_to_gated_challenger_s')} s (a daemon adds up to the sensor interval, 60 s)",
            flush=True,
        )
        print(
            "\n## Retrain on the demo data: training_dataset -> gated challenger (`qp train`, fresh process)"
        )
        r = retrain(tmp)
        print(
            f"wall {r['wall_s']} s (process start and MLflow import included; Dagster run {r.get('seconds', 0):.1f} s); "
            f"CatBoost fit {r.get('train_seconds')} s; version {r.get('version')}: gate {r.get('gate')}, "
            f"approval {r.get('approval')}, status {r.get('status')}",
            flush=True,
        )
        shutil.rmtree(tmp / "demo", ignore_errors=True)
    print("\n## Scoring (benchmarks/scoring_bench.py --rows 1000000)")
    print(scoring(), flush=True)
    print(
        "\n## Drift speed (benchmarks/drift_bench.py --rows 1000000 --evidently .bench-evidently/bin/python)"
    )
    print(drift_speed(), flush=True)
    seeds = os.environ.get("QP_BENCH_SEEDS", "1,2,3,4,5")
    print(f"\n## Detection (benchmarks/detection_bench.py --seeds {seeds})")
    print(detection(seeds), flush=True)
    print(f"\n## Recovery after a shift (benchmarks/recovery_bench.py --seeds {seeds})")
    print(detection(seeds, "benchmarks.recovery_bench"), flush=True)
    print(
        "\n## AI4I 2020: the platform's model vs a plain CatBoost, same split (benchmarks/ai4i_bench.py)"
    )
    print(table("benchmarks.ai4i_bench"))


if __name__ == "__main__":
    main()
