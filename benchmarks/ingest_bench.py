"""One ingestion benchmark in its own process: simulate, land (files -> raw), standardise
(raw -> validated standard tables). Prints one JSON line with the figures and this process's
peak RSS. Usage: python -m benchmarks.ingest_bench --days 30 --start 2026-03-16 --out DIR"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--start", default="2026-03-16")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", required=True)
    ap.add_argument("--chunk-days", type=int, default=1)
    args = ap.parse_args()

    out = Path(args.out)
    os.environ["QP_DATA_DIR"] = str(out)
    os.environ.setdefault("QP_CONFIG_DIR", str(Path(__file__).resolve().parents[1] / "data"))
    os.environ.setdefault("QP_PSEUDONYM_KEY", "benchmark-key-0123456789abcdef")
    from quality_platform.config import load_plants, load_platform, load_quantities
    from quality_platform.ingest.pipeline import land, standardize
    from quality_platform.privacy import load_key
    from quality_platform.settings import get_paths
    from quality_platform.simulation import simulate
    from quality_platform.warehouse import connect

    paths = get_paths()
    start = dt.date.fromisoformat(args.start)
    dates = [start + dt.timedelta(days=i) for i in range(args.days)]
    t0 = time.perf_counter()
    simulate(paths.landing_dir, days=args.days, seed=args.seed, scenario="stable", start=start)
    t_sim = time.perf_counter() - t0
    plants = {k: v for k, v in load_plants(paths).items() if v.source == "simulated"}
    reg, quality, key = load_quantities(paths), load_platform(paths).quality, load_key()
    t_land = t_std = 0.0
    for p in plants.values():
        t = time.perf_counter()
        land(p, dates, paths, paths.warehouse_path, chunk_days=args.chunk_days)
        t_land += time.perf_counter() - t
        t = time.perf_counter()
        standardize(
            p,
            dates,
            paths.warehouse_path,
            reg,
            quality,
            key,
            collect=False,
            chunk_days=args.chunk_days,
        )
        t_std += time.perf_counter() - t
    with connect(paths.warehouse_path, read_only=True) as con:
        values = con.sql(
            "SELECT sum(records * items_per_record) FROM raw.receipts WHERE stream = 'readings'"
        ).fetchall()[0][0]
        accepted = con.sql("SELECT count(*) FROM standard.sensor_readings").fetchall()[0][0]
        quarantined = con.sql(
            "SELECT coalesce(sum(n_items), 0) FROM standard.quarantine WHERE stream = 'readings'"
        ).fetchall()[0][0]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "days": args.days,
                "plants": len(plants),
                "values": int(values),
                "accepted": int(accepted),
                "quarantined": int(quarantined),
                "simulate_s": round(t_sim, 2),
                "land_s": round(t_land, 2),
                "standardize_s": round(t_std, 2),
                "land_values_per_s": round(values / t_land),
                "standardize_values_per_s": round(values / t_std),
                "raw_to_standard_values_per_s": round(values / (t_land + t_std)),
                "peak_rss_mb": round(rss_mb),
                "chunk_days": args.chunk_days,
            }
        )
    )


if __name__ == "__main__":
    main()
