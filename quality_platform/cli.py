"""``qp``: the command line for what the Dagster UI does not do. Every command speaks ``--json``."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from quality_platform.settings import get_paths


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


# --------------------------------------------------------------------------- output


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, default=str, sort_keys=True))
    else:
        print(text)


def _table(df: pd.DataFrame) -> str:
    return df.to_string(index=False) if not df.empty else "(none)"


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", date_format="iso")) if not df.empty else []


# --------------------------------------------------------------------------- commands


def cmd_simulate(args: argparse.Namespace) -> int:
    from quality_platform.simulation import simulate

    t0 = time.perf_counter()
    truth = simulate(Path(args.out), days=args.days, seed=args.seed, scenario=args.scenario,
                     start=dt.date.fromisoformat(args.start))
    secs = time.perf_counter() - t0
    counts = truth.get("counts", {})
    _emit(args, {"out": str(Path(args.out).resolve()), "seconds": round(secs, 2), "truth": truth},
          f"simulated scenario {args.scenario!r} ({args.days} days from {args.start}, seed {args.seed}) "
          f"into {args.out} in {secs:.1f} s\n" + "\n".join(f"  {p}: {c}" for p, c in counts.items())
          + f"\n  truth: {Path(args.out) / 'truth.json'}")
    return 0


def cmd_dev_key(args: argparse.Namespace) -> int:
    from quality_platform.privacy import create_dev_key

    path = Path(args.path)
    created = create_dev_key(path)
    _emit(args, {"path": str(path), "created": created},
          (f"created a LOCAL DEVELOPMENT pseudonymisation key in {path} (git-ignored). "
           "In production set QP_PSEUDONYM_KEY from your secret store instead.") if created
          else f"using the existing development pseudonymisation key {path}")
    return 0


def cmd_plants(args: argparse.Namespace) -> int:
    from quality_platform.config import load_plants

    plants = load_plants()
    rows = [{"plant": p.plant_id, "name": p.name, "source": p.source, "timezone": p.timezone,
             "readings_format": f"{p.streams.readings.format}/{p.streams.readings.layout}",
             "machines": len(p.machines), "personal_data": p.personal_data, "owner": p.owner}
            for p in plants.values()]
    _emit(args, rows, _table(pd.DataFrame(rows).drop(columns=["personal_data"])))
    return 0


def _instance() -> Any:
    import dagster as dg

    home = get_paths().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    cfg = home / "dagster.yaml"
    repo_cfg = Path(__file__).resolve().parents[1] / "dagster.yaml"
    if not cfg.exists() and repo_cfg.exists():
        shutil.copy(repo_cfg, cfg)
    return dg.DagsterInstance.get()


def _plant_range(plant_id: str, first: str | None, last: str | None) -> tuple[dt.date, dt.date]:
    """Days to process: given, or the days that have landing files."""
    from quality_platform.config import load_plants
    from quality_platform.ingest.readers import discover, parse_file, sequence_times

    paths = get_paths()
    plant = load_plants(paths)[plant_id]
    if first and last:
        return dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    spec = plant.streams.readings
    days: list[dt.date] = []
    if spec.per_day_files:
        root = plant.landing_path(paths)
        for d in root.iterdir() if root.exists() else []:
            try:
                days.append(dt.date.fromisoformat(d.name))
            except ValueError:
                continue
    else:
        # one file for many days: the days its timestamps cover
        for path in discover(plant, "readings", [], paths):
            res = parse_file(plant, "readings", path, path.name)
            ts = spec.timestamp
            col = res.table[ts.field].to_pandas()
            t = sequence_times(col, ts) if ts.kind == "sequence" else pd.to_datetime(col, utc=True, errors="coerce")
            local = t.dt.tz_convert(plant.tz).dt.date.dropna()
            days.extend(local.unique())
    if not days:
        raise CliError(f"no landing files for plant {plant_id!r} under {plant.landing_path(paths)}")
    lo, hi = min(days), max(days)
    return (dt.date.fromisoformat(first) if first else lo), (dt.date.fromisoformat(last) if last else hi)


def cmd_backfill(args: argparse.Namespace) -> int:
    from quality_platform.config import load_plants
    from quality_platform.definitions import build_definitions
    from quality_platform.runner import backfill

    plants = load_plants()
    ids = args.plant or sorted(plants)
    unknown = [p for p in ids if p not in plants]
    if unknown:
        raise CliError(f"unknown plant(s) {unknown}; configured: {sorted(plants)}")
    defs, instance = build_definitions(), _instance()
    outcomes = []
    for p in ids:
        first, last = _plant_range(p, args.date_from, args.date_to)
        for o in backfill(defs, instance, p, first, last, tags={"trigger": args.trigger}):
            outcomes.append(o)
            if not args.json:
                status = "ok" if o.success else "FAILED"
                checks = f"; failed checks: {', '.join(o.failed_checks)}" if o.failed_checks else ""
                print(f"{o.job:<18} {p:<10} {o.first}..{o.last} {status} in {o.seconds:.1f} s "
                      f"(run {o.run_id[:8]}){checks}", flush=True)
    if args.json:
        print(json.dumps([o.__dict__ for o in outcomes], default=str, indent=2))
    return 0 if all(o.success for o in outcomes) else 1


def summary_data() -> dict[str, Any]:
    """Rows per plant and table, quarantine by rule, unified vs legacy KPIs for the whole period."""
    from quality_platform import kpis as K
    from quality_platform.config import load_kpis, load_plants
    from quality_platform.warehouse import connect, table_exists

    paths = get_paths()
    if not paths.warehouse_path.exists():
        raise CliError(f"no warehouse at {paths.warehouse_path}: run `make demo` or `qp backfill` first")
    plants, reg = load_plants(paths), load_kpis(paths)
    out: dict[str, Any] = {"warehouse": str(paths.warehouse_path)}
    with connect(paths.warehouse_path, read_only=True) as con:
        def q(sql: str) -> pd.DataFrame:
            return con.sql(sql).df()

        rows = []
        for p in plants:
            r: dict[str, Any] = {"plant": p}
            for s in ("readings", "units", "inspections"):
                t = f"{p}__{s}"
                r[f"raw_{s}_records"] = int(q(f'SELECT count(*) n FROM raw."{t}"')["n"][0]) if table_exists(con, "raw", t) else 0
            for t in ("sensor_readings", "production_units", "quarantine"):
                r[t] = int(q(f"SELECT count(*) n FROM standard.{t} WHERE plant = '{p}'")["n"][0]) if table_exists(
                    con, "standard", t) else 0
            r["unit_features"] = int(q(f"SELECT count(*) n FROM features.unit_features WHERE plant = '{p}'")["n"][0]) \
                if table_exists(con, "features", "unit_features") else 0
            if table_exists(con, "standard", "sensor_readings"):
                d = q(f"SELECT min(partition_date) a, max(partition_date) b FROM standard.sensor_readings WHERE plant='{p}'")
                r["days"] = (f"{pd.Timestamp(d['a'][0]).date()}..{pd.Timestamp(d['b'][0]).date()}"
                             if pd.notna(d["a"][0]) else "")
            rows.append(r)
        out["tables"] = rows
        out["quarantine"] = _records(q("""
            SELECT plant, stream, rule, severity, count(*) AS entries, sum(n_items) AS items,
                   any_value(message) AS example
            FROM standard.quarantine GROUP BY ALL ORDER BY plant, items DESC""")) if table_exists(
            con, "standard", "quarantine") else []
        kp = []
        if table_exists(con, "kpi", "kpi_daily"):
            counts = q(f"""SELECT plant, {', '.join(f'sum({c}) AS {c}' for c in K.COUNT_COLUMNS)}
                         FROM kpi.kpi_daily WHERE line = '*' AND kpi_id = '{reg.kpis[0].id}' GROUP BY plant ORDER BY plant""")
            for row in counts.to_dict("records"):
                plant = plants.get(row["plant"])
                c1 = pd.DataFrame([row])
                entry: dict[str, Any] = {"plant": row["plant"], **{c: int(row[c]) for c in K.COUNT_COLUMNS}}
                for k in reg.kpis:
                    entry[k.id] = float(K.evaluate(k.formula, c1).iloc[0])
                legacy = []
                for lk in (plant.legacy_kpis if plant else []):
                    lv = float(K.evaluate(lk.formula, c1).iloc[0] * lk.scale)
                    uv = entry[lk.maps_to] * lk.scale
                    legacy.append({"name": lk.name, "maps_to": lk.maps_to, "legacy_value": lv, "unit": lk.unit,
                                   "unified_in_legacy_unit": uv, "difference": lv - uv,
                                   "explanation": K.explain_difference(lk.formula, lk.scale, lk.unit,
                                                                       reg.get(lk.maps_to).formula, row,
                                                                       period="over the period")})
                entry["legacy"] = legacy
                kp.append(entry)
        out["kpis"] = kp
    return out


def _format_summary(s: dict[str, Any]) -> str:
    lines = ["", "== Rows per plant and table =="]
    lines.append(_table(pd.DataFrame(s["tables"])))
    lines += ["", "== Quarantine: what was held back and why (items = values for readings, records otherwise) =="]
    qd = pd.DataFrame(s["quarantine"])
    if not qd.empty:
        qd["items"] = qd["items"].astype("int64")
    lines.append(_table(qd.drop(columns=["example"])) if not qd.empty else "(nothing quarantined)")
    if not qd.empty:
        lines += ["", "Example messages:"]
        lines += [f"  - {m}" for m in qd.drop_duplicates("rule")["example"].head(12)]
    lines += ["", "== Unified KPIs per plant (whole period) next to each plant's own legacy figure =="]
    for k in s["kpis"]:
        lines.append(f"{k['plant']}: produced {k['produced']}, inspected {k['inspected']} | defect rate "
                     f"{k['defect_rate']:.4f}, first-pass yield {k['first_pass_yield']:.4f}, scrap rate {k['scrap_rate']:.4f}")
        for lg in k["legacy"]:
            lines.append(f"    legacy '{lg['name']}' = {lg['legacy_value']:.3f} {lg['unit']} vs unified {lg['maps_to']} = "
                         f"{lg['unified_in_legacy_unit']:.3f} {lg['unit']} (diff {lg['difference']:+.3f}): "
                         f"{lg['explanation']}")
    return "\n".join(lines)


def cmd_summary(args: argparse.Namespace) -> int:
    s = summary_data()
    _emit(args, s, _format_summary(s))
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    from quality_platform.warehouse import connect, table_exists

    paths = get_paths()
    with connect(paths.warehouse_path, read_only=True) as con:
        if not table_exists(con, "standard", "quarantine"):
            raise CliError("no quarantine table yet")
        where, params = ["1=1"], []
        if args.plant:
            where.append("plant = ?")
            params.append(args.plant)
        if args.date:
            where.append("partition_date = ?")
            params.append(dt.date.fromisoformat(args.date))
        if args.rule:
            where.append("rule = ?")
            params.append(args.rule)
        df = con.execute(f"SELECT plant, partition_date, stream, source_file, source_row, source_column, rule, "
                         f"severity, n_items, message FROM standard.quarantine WHERE {' AND '.join(where)} "
                         f"ORDER BY plant, partition_date, source_file, source_row LIMIT ?",
                         [*params, args.limit]).df()
    _emit(args, _records(df), "\n".join(df["message"]) if not df.empty else "(none)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate the scenario into the landing folder, backfill every plant, print the summary."""
    from quality_platform.config import load_plants
    from quality_platform.simulation import simulate

    paths = get_paths()
    landing = paths.landing_dir
    t0 = time.perf_counter()
    if landing.exists():
        shutil.rmtree(landing)
    truth = simulate(landing, days=args.days, seed=args.seed, scenario=args.scenario,
                     start=dt.date.fromisoformat(args.start))
    t_sim = time.perf_counter() - t0
    if not args.json:
        print(f"simulated {args.scenario!r}: {args.days} days from {args.start}, seed {args.seed} -> {landing} "
              f"({t_sim:.1f} s)", flush=True)
    if paths.warehouse_path.exists():
        paths.warehouse_path.unlink()  # the demo starts from a clean warehouse; run history stays
    ns = argparse.Namespace(plant=sorted(load_plants(paths)), date_from=None, date_to=None, json=args.json,
                            trigger="demo")
    with contextlib.redirect_stdout(io.StringIO()) if args.json else contextlib.nullcontext():
        rc = cmd_backfill(ns)
    total = time.perf_counter() - t0
    s = summary_data()
    s.update(scenario=truth.get("scenario"), seconds=round(total, 1), simulation_seconds=round(t_sim, 1),
             success=rc == 0)
    _emit(args, s, _format_summary(s) + f"\n\ndemo finished in {total:.1f} s (simulation {t_sim:.1f} s). "
          "Browse it: make ui (http://127.0.0.1:3000)")
    return rc


def cmd_free_slots(args: argparse.Namespace) -> int:
    """Release DuckDB pool slots still held by runs that are no longer running.

    A run killed mid-step (e.g. the UI stopped during a run) can leave its slot claimed; with a
    pool limit of 1 every later run then waits. Slots of active runs are never touched."""
    from dagster import DagsterRunStatus

    from quality_platform.warehouse import WAREHOUSE_POOL

    instance = _instance()
    info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
    holders = {c.run_id for c in info.claimed_slots} | {p.run_id for p in info.pending_steps}
    freed, kept = [], []
    for run_id in sorted(holders):
        run = instance.get_run_by_id(run_id)
        active = run is not None and run.status in (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING,
                                                    DagsterRunStatus.CANCELING)
        if active:
            kept.append(run_id)
        else:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            freed.append(run_id)
    _emit(args, {"pool": WAREHOUSE_POOL, "freed": freed, "active": kept},
          f"pool {WAREHOUSE_POOL}: freed slots of {len(freed)} finished run(s) {freed}; "
          f"{len(kept)} active run(s) keep theirs")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qp", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(fn=fn)
        return sp

    from quality_platform.simulation import SCENARIOS

    s = add("simulate", cmd_simulate, "write landing files of every simulated plant + truth.json")
    s.add_argument("--out", required=True)
    s.add_argument("--days", type=int, default=30)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--scenario", choices=SCENARIOS, default="stable")
    s.add_argument("--start", default="2026-03-16")

    d = add("demo", cmd_demo, "simulate a scenario, run every plant end to end, print the summary")
    d.add_argument("--days", type=int, default=30)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--scenario", choices=SCENARIOS, default="stable")
    d.add_argument("--start", default="2026-03-16")

    b = add("backfill", cmd_backfill, "land + standardise + KPIs for a date range (default: all landed days)")
    b.add_argument("--plant", action="append", help="plant id (repeatable; default: all)")
    b.add_argument("--from", dest="date_from")
    b.add_argument("--to", dest="date_to")
    b.add_argument("--trigger", default="cli")

    add("summary", cmd_summary, "rows per plant/table, quarantine reasons, unified vs legacy KPIs")
    add("plants", cmd_plants, "the configured plants")
    q = add("quarantine", cmd_quarantine, "quarantined items with file, row and rule")
    q.add_argument("--plant")
    q.add_argument("--date")
    q.add_argument("--rule")
    q.add_argument("--limit", type=int, default=50)
    add("free-slots", cmd_free_slots, "release DuckDB pool slots held by runs that are no longer running")
    k = add("dev-key", cmd_dev_key, "create a local development pseudonymisation key file if missing")
    k.add_argument("--path", default=str(get_paths().data_dir / ".secrets" / "pseudonym.key"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except CliError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": str(exc)}))
        else:
            print(f"qp: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # config and key errors are user errors too
        from quality_platform.config import ConfigError
        from quality_platform.privacy import MissingKeyError

        if isinstance(exc, ConfigError | MissingKeyError):
            print(json.dumps({"error": str(exc)}) if getattr(args, "json", False) else f"qp: error: {exc}",
                  file=sys.stdout if getattr(args, "json", False) else sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
