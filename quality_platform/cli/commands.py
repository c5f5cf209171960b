"""``qp`` commands of the platform, the pipeline and the model lifecycle, and the parser that
assembles every command group (the governance groups live beside this module)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from quality_platform.cli._common import (
    AS_HELP,
    CliError,
    dagster_instance,
    emit,
    text_table,
)
from quality_platform.settings import Paths, get_paths

if TYPE_CHECKING:
    from quality_platform.demo import ReleaseStep

# --------------------------------------------------------------------------- commands


def cmd_simulate(args: argparse.Namespace) -> int:
    from quality_platform.simulation import simulate

    t0 = time.perf_counter()
    truth = simulate(
        Path(args.out),
        days=args.days,
        seed=args.seed,
        scenario=args.scenario,
        start=dt.date.fromisoformat(args.start),
    )
    secs = time.perf_counter() - t0
    counts = truth.get("counts", {})
    emit(
        args,
        {"out": str(Path(args.out).resolve()), "seconds": round(secs, 2), "truth": truth},
        f"simulated scenario {args.scenario!r} ({args.days} days from {args.start}, seed {args.seed}) "
        f"into {args.out} in {secs:.1f} s\n"
        + "\n".join(f"  {p}: {c}" for p, c in counts.items())
        + f"\n  truth: {Path(args.out) / 'truth.json'}",
    )
    return 0


def cmd_dev_key(args: argparse.Namespace) -> int:
    from quality_platform.privacy import create_dev_key

    path = Path(args.path)
    created = create_dev_key(path)
    emit(
        args,
        {"path": str(path), "created": created},
        (
            f"created a LOCAL DEVELOPMENT pseudonymisation key in {path} (git-ignored). "
            "In production set QP_PSEUDONYM_KEY from your secret store instead."
        )
        if created
        else f"using the existing development pseudonymisation key {path}",
    )
    return 0


def cmd_plants(args: argparse.Namespace) -> int:
    from quality_platform.config import load_plants

    plants = load_plants()
    rows = [
        {
            "plant": p.plant_id,
            "name": p.name,
            "source": p.source,
            "timezone": p.timezone,
            "readings_format": f"{p.streams.readings.format}/{p.streams.readings.layout}",
            "machines": len(p.machines),
            "personal_data": p.personal_data,
            "owner": p.owner,
        }
        for p in plants.values()
    ]
    emit(args, rows, text_table(pd.DataFrame(rows).drop(columns=["personal_data"])))
    return 0


def _plant_range(plant_id: str, first: str | None, last: str | None) -> tuple[dt.date, dt.date]:
    """Days to process: given, or the days that have landing files."""
    from quality_platform.config import load_plants
    from quality_platform.ingest.readers import LandingRefused, discover, parse_file, record_days

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
        # one file for many days: the days its records fall on, as landing places them
        for path in discover(plant, "readings", [], paths):
            try:
                res = parse_file(plant, "readings", path, paths)
            except LandingRefused:
                continue  # not read; landing reports it in the quarantine
            local = record_days(plant, "readings", res.table)
            if local is None:
                continue
            local = local.dropna()
            days.extend(local.unique())
    if not days:
        raise CliError(f"no landing files for plant {plant_id!r} under {plant.landing_path(paths)}")
    lo, hi = min(days), max(days)
    return (dt.date.fromisoformat(first) if first else lo), (
        dt.date.fromisoformat(last) if last else hi
    )


def cmd_backfill(args: argparse.Namespace) -> int:
    from quality_platform.config import load_plants
    from quality_platform.definitions import build_definitions
    from quality_platform.runner import backfill

    plants = load_plants()
    ids = args.plant or sorted(plants)
    unknown = [p for p in ids if p not in plants]
    if unknown:
        raise CliError(f"unknown plant(s) {unknown}; configured: {sorted(plants)}")
    defs, instance = build_definitions(), dagster_instance()
    outcomes = []
    for p in ids:
        first, last = _plant_range(p, args.date_from, args.date_to)
        for o in backfill(defs, instance, p, first, last, tags={"trigger": args.trigger}):
            outcomes.append(o)
            if not args.json:
                status = "ok" if o.success else "FAILED"
                checks = f"; failed checks: {', '.join(o.failed_checks)}" if o.failed_checks else ""
                print(
                    f"{o.job:<18} {p:<10} {o.first}..{o.last} {status} in {o.seconds:.1f} s "
                    f"(run {o.run_id[:8]}){checks}",
                    flush=True,
                )
    if args.json:
        print(json.dumps([o.__dict__ for o in outcomes], default=str, indent=2))
    return 0 if all(o.success for o in outcomes) else 1


def _format_summary(s: dict[str, Any]) -> str:
    lines = ["", "== Rows per plant and table =="]
    lines.append(text_table(pd.DataFrame(s["tables"])))
    lines += [
        "",
        "== Quarantine: what was held back and why (items = values for readings, records otherwise) ==",
    ]
    qd = pd.DataFrame(s["quarantine"])
    if not qd.empty:
        qd["items"] = qd["items"].astype("int64")
    lines.append(
        text_table(qd.drop(columns=["example"])) if not qd.empty else "(nothing quarantined)"
    )
    if not qd.empty:
        lines += ["", "Example messages:"]
        lines += [f"  - {m}" for m in qd.drop_duplicates("rule")["example"].head(12)]
    lines += [
        "",
        "== Unified KPIs per plant (whole period) next to each plant's own legacy figure ==",
    ]
    for k in s["kpis"]:
        lines.append(
            f"{k['plant']}: produced {k['produced']}, inspected {k['inspected']} | defect rate "
            f"{k['defect_rate']:.4f}, first-pass yield {k['first_pass_yield']:.4f}, scrap rate {k['scrap_rate']:.4f}"
        )
        for lg in k["legacy"]:
            lines.append(
                f"    legacy '{lg['name']}' = {lg['legacy_value']:.3f} {lg['unit']} vs unified {lg['maps_to']} = "
                f"{lg['unified_in_legacy_unit']:.3f} {lg['unit']} (diff {lg['difference']:+.3f}): "
                f"{lg['explanation']}"
            )
    return "\n".join(lines)


def cmd_summary(args: argparse.Namespace) -> int:
    from quality_platform.reports.summary import platform_summary

    s = platform_summary(get_paths())
    emit(args, s, _format_summary(s))
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    from quality_platform.reports.summary import json_records
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
        df = con.execute(
            f"SELECT plant, partition_date, stream, source_file, source_row, source_column, rule, "
            f"severity, n_items, message FROM standard.quarantine WHERE {' AND '.join(where)} "
            f"ORDER BY plant, partition_date, source_file, source_row LIMIT ?",
            [*params, args.limit],
        ).df()
    emit(args, json_records(df), "\n".join(df["message"]) if not df.empty else "(none)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate the scenario, run every plant end to end and print the summary.

    With a drift scenario (one affected plant, an onset), the affected plant's last days are held
    back; after the first release the demo starts the Dagster daemon and delivers them as files,
    one day at a time, and the daemon's sensors run the closed loop: landing, standardisation,
    scoring + monitoring, performance, canary, retrain (quality_platform.demo)."""
    from quality_platform import demo
    from quality_platform.config import load_plants
    from quality_platform.reports.summary import model_summary, platform_summary

    paths = get_paths()
    t0 = time.perf_counter()
    onset = (
        args.onset_day
        if args.onset_day is not None
        else (args.days - 8 if args.days >= 16 else None)
    )
    truth = demo.simulate_scenario(
        paths,
        days=args.days,
        seed=args.seed,
        scenario=args.scenario,
        start=dt.date.fromisoformat(args.start),
        onset_day=onset,
    )
    t_sim = time.perf_counter() - t0
    say = (lambda m: None) if args.json else (lambda m: print(m, flush=True))
    say(
        f"simulated {args.scenario!r}: {args.days} days from {args.start}, seed {args.seed} -> {paths.landing_dir} ({t_sim:.1f} s)"
    )
    archived = demo.reset(paths)
    if archived:
        say(
            f"previous demo state (model registry, audit log, overrides, alerts) archived to {archived}"
        )
    plants = sorted(load_plants(paths))
    affected = (truth.get("affected") or {}).get("plant")
    loop_days = demo.loop_days(truth) if not args.skip_model else []
    if loop_days:
        demo.hold_back(paths, affected, loop_days)
    rc = 0
    with contextlib.redirect_stdout(io.StringIO()) if args.json else contextlib.nullcontext():
        for p in plants:
            until = (
                str(loop_days[0] - dt.timedelta(days=1)) if loop_days and p == affected else None
            )
            ns = argparse.Namespace(
                plant=[p],
                date_from=args.start if until else None,
                date_to=until,
                json=args.json,
                trigger="demo",
            )
            rc = max(rc, cmd_backfill(ns))
    loop: dict[str, Any] | None = None
    if not args.skip_model and (rc == 0 or args.continue_on_gate_failure):
        rc = max(rc, _demo_model(args, paths, say))
        if loop_days and rc == 0:
            loop = _demo_loop(paths, affected, loop_days, truth, say)
            rc = max(rc, 0 if loop["ok"] else 1)
    total = time.perf_counter() - t0
    s = platform_summary(paths)
    s.update(
        scenario=truth.get("scenario"),
        seconds=round(total, 1),
        simulation_seconds=round(t_sim, 1),
        success=rc == 0,
        model=model_summary(paths) if not args.skip_model else None,
        loop=loop,
    )
    emit(
        args,
        s,
        _format_summary(s)
        + (_format_model_summary(s["model"]) if s["model"] else "")
        + (_format_loop(loop) if loop else "")
        + f"\n\ndemo finished in {total:.1f} s (simulation {t_sim:.1f} s). Browse it: make ui (http://127.0.0.1:3000)",
    )
    return rc


def _demo_model(args: argparse.Namespace, paths: Paths, say: Any) -> int:
    """Release the first version (train, gate, approve and promote as the demo's control owner:
    quality_platform.demo); then score and monitor every plant's standardised days with it."""
    from quality_platform import demo
    from quality_platform.definitions import build_definitions

    defs, instance = build_definitions(), dagster_instance()
    if not demo.release_first_version(
        paths, defs, instance, lambda step: say(_format_release_step(step))
    ):
        return 1
    ns = argparse.Namespace(
        plant=None, date_from=None, date_to=None, json=args.json, trigger="demo"
    )
    with contextlib.redirect_stdout(io.StringIO()) if args.json else contextlib.nullcontext():
        return cmd_monitor(ns)


def _format_release_step(s: ReleaseStep) -> str:
    from quality_platform.demo import DEMO_APPROVER

    if s.step == "train_failed":
        return f"train_job FAILED in {s.seconds:.1f} s (run {s.run_id[:8]}): no model version registered"
    if s.step == "trained":
        return f"train_job: version {s.version} registered, gate {s.gate}, approval {s.approval} ({s.seconds:.1f} s)"
    if s.step == "approved":
        return f"approved version {s.version} as {DEMO_APPROVER} (impersonated by the demo script; audited)"
    if s.step == "promoted":
        return f"promoted version {s.version} to champion"
    return "no champion (the gate did not let the version through): nothing scored"


def _demo_loop(
    paths: Paths, plant: str, days: list[dt.date], truth: dict[str, Any], say: Any
) -> dict[str, Any]:
    """The affected plant's days through the closed loop, one line per day as it finishes."""
    from quality_platform import demo
    from quality_platform.definitions import build_definitions

    defs, instance = build_definitions(), dagster_instance()
    say(
        f"\n== Closed loop under the Dagster daemon: {plant}, {days[0]}..{days[-1]} delivered as files "
        f"one day at a time (true onset of {truth['scenario']}: {truth['onset_date']}); "
        f"sensors every {demo.DEMO_SENSOR_INTERVAL} s =="
    )
    return demo.run_loop(
        paths, defs, instance, plant, days, truth, lambda row: say(_format_loop_day(row))
    )


def _format_loop_day(row: dict[str, Any]) -> str:
    return (
        f"{row['day']}  findings {', '.join(row['findings']) or '-':<40} "
        f"champion v{','.join(row['champion_versions']) or '?'}  "
        f"{'; '.join(row['events']) or ''}  ({len(row['runs'])} runs launched by sensors, "
        f"{row['seconds']} s)"
    )


def _format_loop(loop: dict[str, Any]) -> str:
    lines = ["", f"== Closed loop at {loop['plant']} (true onset {loop['onset']}) =="]
    lines.append(
        f"orchestrated by the Dagster daemon (log: {loop['daemon_log']}); every run is in the UI"
    )
    lines.append(f"drift first detected on {loop['first_detected'] or '(not detected)'}")
    r = loop.get("retrain")
    lines.append(f"retrain: {'started by ' + r['check'] + ' - ' + r['reason'] if r else '(none)'}")
    for rv in loop.get("retrained_versions", []):
        lines.append(f"retrained version {rv['version']}: gate {rv['gate']}, status {rv['status']}")
    v = loop.get("retrained_version")
    if v:
        by = f" by {v['approved_by']}" if v.get("approved_by") else ""
        lines.append(
            f"challenger version {v['version']}: gate {v['gate']}, approval {v['approval']}{by}, "
            f"status {v['status']}"
        )
    if loop.get("retrains_held_back"):
        lines.append(
            f"retrain triggers held back (stale, debounce, cooldown): {len(loop['retrains_held_back'])} "
            f"(e.g. {loop['retrains_held_back'][0]})"
        )
    if loop.get("check_to_gated_challenger_s") is not None:
        lines.append(
            f"loop latency: failing drift check -> gated challenger registered in "
            f"{loop['check_to_gated_challenger_s']} s"
        )
    p = loop.get("promotion")
    lines.append(
        f"canary: {'promoted by ' + p['by'] + ' - ' + p['reason'] if p else 'no promotion (yet)'}"
    )
    lines.append(
        f"champion now: version {loop['champion']}; predictions of the last day from "
        f"v{','.join(loop['days'][-1]['champion_versions'])}"
    )
    return "\n".join(lines)


def _format_model_summary(m: dict[str, Any]) -> str:
    lines = ["", "== Model =="]
    if not m.get("latest_version"):
        return "\n".join([*lines, "(no model version yet: qp train)"])
    lv, ch = m["latest_version"], m.get("champion")
    lines.append(
        f"latest version {lv['version']}: gate {lv['gate']}, approval {lv['approval']} "
        f"(by {lv['approved_by']}), status {lv['status']}; champion: {ch['version'] if ch else '(none)'}"
    )
    gate = m.get("gate") or {}
    for c in gate.get("checks", []):
        lines.append(
            f"  gate check {c['name']:<26} {'pass' if c['passed'] else 'FAIL'} ({c['severity']}): "
            f"{c['description']}"
        )
    if gate.get("per_plant"):
        cols = [
            c
            for c in (
                "plant",
                "units",
                "positives",
                "metric",
                "challenger",
                "champion",
                "ci_lower",
                "verdict",
            )
            if c in pd.DataFrame(gate["per_plant"]).columns
        ]
        lines += ["", "Gate per plant:", text_table(pd.DataFrame(gate["per_plant"])[cols].round(4))]
    if gate.get("plant_metrics"):
        pm = pd.DataFrame(gate["plant_metrics"])
        lines += [
            "",
            "Holdout figures per plant (the holdout days of each plant: the latest labelled day "
            "and every 5th before it; AI4I: failure-mode flags excluded):",
            text_table(pm.round(4)),
        ]
    if m.get("predictions"):
        lines += ["", "Predictions per plant:", text_table(pd.DataFrame(m["predictions"]))]
    for e in m.get("example_predictions", []):
        by = (
            str(e["model_version"])
            if str(e["model_version"]).startswith("rules")
            else f"v{e['model_version']}"
        )
        lines.append(
            f"  {e['plant']} unit {e['unit_id']}: risk {e['risk']} ({by}) because "
            f"{e['reason_1']}; {e['reason_2']}; {e['reason_3']}"
        )
    return "\n".join(lines)


def cmd_free_slots(args: argparse.Namespace) -> int:
    """Fail runs whose process died and release pool slots held by runs that are no longer running.

    A run killed mid-step (``kill -9`` of ``qp backfill`` / ``qp train``, the UI stopped during a
    run) stays STARTED and keeps its slot; with a pool limit of 1 every later run then waits. Every
    pool is looked at (``duckdb_warehouse``, ``model_training``, ...). A run whose recorded process
    is gone is marked failed (its event log says why) and loses its slots; finished runs lose theirs;
    slots of live runs are never touched. ``qp`` runs do the same before every run."""
    from quality_platform.runs import free_slots

    rel = free_slots(dagster_instance())
    reaped = [dict(r.__dict__) for r in rel.reaped]
    emit(
        args,
        {"pools": rel.pools, "reaped": reaped, "freed": rel.freed, "active": rel.active},
        f"pools {', '.join(rel.pools) or '(none)'}: failed {len(reaped)} run(s) whose process died "
        f"{[r['run_id'] for r in reaped]}; freed slots of {len(rel.freed)} run(s) {rel.freed}; "
        f"{len(rel.active)} active run(s) keep theirs",
    )
    return 0


# --------------------------------------------------------------------------- model lifecycle


def _lifecycle() -> tuple[Any, Any]:
    from quality_platform.audit import AuditLog, audit_db_path
    from quality_platform.ml.config import load_model_config
    from quality_platform.ml.registry import ModelRegistry

    paths = get_paths()
    return ModelRegistry(load_model_config(paths), paths), AuditLog(audit_db_path(paths))


def _who(args: argparse.Namespace, command: str) -> str:
    """The policy user this command acts as (``--as`` where the policy allows impersonation, else
    ``QP_USER``, else the OS account); see quality_platform.governance.policy."""
    from quality_platform.governance.policy import resolve_principal

    args.actor = resolve_principal(getattr(args, "actor", None), command=command).name
    return args.actor


def _lifecycle_call(fn: Any, *a: Any) -> Any:
    from quality_platform.ml.registry import RegistryError

    try:
        return fn(*a)
    except RegistryError as exc:
        raise CliError(str(exc)) from exc


def cmd_approve(args: argparse.Namespace) -> int:
    from quality_platform.ml import lifecycle as L
    from quality_platform.reports.summary import version_payload

    _who(args, "approve")
    reg, audit = _lifecycle()
    v = _lifecycle_call(L.approve, reg, audit, args.version, args.actor, args.reason)
    emit(args, version_payload(v), f"version {v.version} approved by {args.actor} (gate {v.gate})")
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    from quality_platform.ml import lifecycle as L
    from quality_platform.reports.summary import version_payload

    _who(args, "reject")
    reg, audit = _lifecycle()
    v = _lifecycle_call(L.reject, reg, audit, args.version, args.actor, args.reason)
    emit(args, version_payload(v), f"version {v.version} rejected by {args.actor}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from quality_platform.defs.ml import champion
    from quality_platform.reports.summary import version_payload

    _who(args, "promote")
    reg, audit = _lifecycle()
    v = _lifecycle_call(
        champion.promote,
        dagster_instance(),
        reg,
        audit,
        args.version,
        args.actor,
        args.reason or "promoted by hand",
    )
    emit(
        args,
        version_payload(v),
        f"version {v.version} is now the champion (promoted by {args.actor})",
    )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from quality_platform.defs.ml import champion

    _who(args, "rollback")
    reg, audit = _lifecycle()
    old, new = _lifecycle_call(
        champion.rollback, dagster_instance(), reg, audit, args.actor, args.reason
    )
    emit(
        args,
        {"from_version": old, "to_version": new, "actor": args.actor},
        f"rolled back: champion {old} -> {new} (by {args.actor}: {args.reason})",
    )
    return 0


def cmd_models_init_registry(args: argparse.Namespace) -> int:
    """Start a new, empty model registry at the configured store, on purpose and audited: the
    only way past a missing or moved store other than restoring it."""
    from quality_platform.audit import AuditLog, audit_db_path
    from quality_platform.governance.policy import authorize, load_policy
    from quality_platform.ml.config import load_model_config
    from quality_platform.ml.registry import RegistryError, init_store

    who = _who(args, "registry_init")
    paths = get_paths()
    cfg = load_model_config(paths)
    audit = AuditLog(audit_db_path(paths))
    authorize(
        load_policy(paths),
        who,
        "registry_init",
        audit,
        subject=f"model:{cfg.mlflow.registered_model}",
        reason=args.reason,
    )
    try:
        reg = init_store(cfg, paths, audit, who, args.reason)
    except RegistryError as exc:
        raise CliError(str(exc)) from exc
    emit(
        args,
        {"registry_store": reg.store_id, "store": reg.where, "actor": who},
        f"new model registry {reg.store_id} at {reg.where} (by {who}: {args.reason}); its versions start at 1",
    )
    return 0


def cmd_models_history(args: argparse.Namespace) -> int:
    from quality_platform.ml import lifecycle as L

    reg, audit = _lifecycle()
    h = L.history(reg, audit)
    text = [
        "== Versions ==",
        text_table(pd.DataFrame(h["versions"]).drop(columns=["dagster_run_id"], errors="ignore")),
        "",
        "== Champion periods ==",
        text_table(pd.DataFrame(h["champion_periods"])),
        "",
        "== Events ==",
    ]
    ev = pd.DataFrame(h["events"])
    text.append(text_table(ev.drop(columns=["refs"])) if not ev.empty else "(none)")
    emit(args, h, "\n".join(text))
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from quality_platform.reports.lineage import lineage_of_data, lineage_of_model

    if args.what == "model":
        if not args.version:
            raise CliError("qp lineage model VERSION")
        out = lineage_of_model(args.version, get_paths())
        text = (
            f"{out['model']} version {out['version']} ({out['status']}, gate {out['gate']}, approval {out['approval']})\n"
            f"  trained on: "
            + "; ".join(f"{p} {r[0]}..{r[1]}" for p, r in out["partitions"].items())
            + f"\n  data hash {out['data_hash']}\n  code version {out['code_version']}, git {out['git_commit']}\n"
            f"  Dagster run {out['dagster_run_id']}, MLflow run {out['mlflow_run_id']}\n"
            f"  prediction batches: {len(out['prediction_batches'])}"
        )
    else:
        if not (args.plant and args.date):
            raise CliError("qp lineage data --plant PLANT --date YYYY-MM-DD")
        out = lineage_of_data(args.plant, dt.date.fromisoformat(args.date), get_paths())
        text = (
            f"{args.plant} {args.date} was used to train version(s): {out['model_versions'] or '(none)'}\n"
            f"prediction batches made with them: {len(out['prediction_batches'])}\n"
            + "\n".join(
                f"  run {b['run_id']} at {b['ts_utc']}: champion {b['champion_version']}, "
                f"challenger {b['challenger_version']}, {b['rows']} rows"
                for b in out["prediction_batches"]
            )
        )
    emit(args, out, text)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from quality_platform.audit import AuditLog, audit_db_path
    from quality_platform.definitions import build_definitions
    from quality_platform.governance.policy import authorize, load_policy
    from quality_platform.runner import train

    who = _who(args, "train")
    paths = get_paths()
    authorize(
        load_policy(paths),
        who,
        "train",
        AuditLog(audit_db_path(paths)),
        subject="job:train_job",
        reason=f"manual training ({args.trigger})",
    )
    o = train(
        build_definitions(), dagster_instance(), tags={"trigger": args.trigger, "qp/actor": who}
    )
    reg, _ = _lifecycle()
    made = [v for v in reg.versions() if v.tag("dagster_run_id") == o.run_id]
    out: dict[str, Any] = dict(o.__dict__)
    if made:
        v = made[-1]
        out.update(
            version=v.version,
            gate=v.gate,
            approval=v.approval,
            status=v.status,
            train_seconds=reg.client.get_run(v.run_id).data.metrics.get("train_seconds"),
        )
    emit(
        args,
        out,
        f"train_job {'ok' if o.success else 'FAILED'} in {o.seconds:.1f} s (run {o.run_id[:8]})"
        + (
            f": version {out['version']}, gate {out['gate']}, approval {out['approval']}"
            if made
            else ""
        )
        + (f"; failed checks: {', '.join(o.failed_checks)}" if o.failed_checks else ""),
    )
    return 0 if o.success else 1


def cmd_score(args: argparse.Namespace, jobs: tuple[str, ...] | None = None) -> int:
    from quality_platform.config import load_plants
    from quality_platform.definitions import build_definitions
    from quality_platform.defs.ml.jobs import SCORE_JOB
    from quality_platform.runner import run_range

    plants = load_plants()
    ids = args.plant or sorted(plants)
    unknown = [p for p in ids if p not in plants]
    if unknown:
        raise CliError(f"unknown plant(s) {unknown}; configured: {sorted(plants)}")
    defs, instance = build_definitions(), dagster_instance()
    outs = []
    for p in ids:
        first, last = _feature_days(p, args.date_from, args.date_to)
        for job in jobs or (SCORE_JOB,):
            o = run_range(defs, instance, job, p, first, last, {"trigger": args.trigger})
            outs.append(o)
            if not args.json:
                checks = f"; failed checks: {', '.join(o.failed_checks)}" if o.failed_checks else ""
                print(
                    f"{job:<16} {p:<10} {first}..{last} {'ok' if o.success else 'FAILED'} in {o.seconds:.1f} s "
                    f"(run {o.run_id[:8]}){checks}",
                    flush=True,
                )
    if args.json:
        print(json.dumps([o.__dict__ for o in outs], default=str, indent=2))
    return 0 if all(o.success for o in outs) else 1


def cmd_monitor(args: argparse.Namespace) -> int:
    """Score + drift + ops metrics, then realised performance, for plant-days (a monitoring backfill)."""
    from quality_platform.defs.monitoring.jobs import MONITOR_JOB, PERFORMANCE_JOB

    return cmd_score(args, (MONITOR_JOB, PERFORMANCE_JOB))


def _feature_days(plant: str, first: str | None, last: str | None) -> tuple[dt.date, dt.date]:
    from quality_platform.warehouse import connect, table_exists

    if first and last:
        return dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    with connect(get_paths().warehouse_path, read_only=True) as con:
        if not table_exists(con, "features", "unit_features"):
            raise CliError("no unit_features yet: run qp backfill first")
        lo, hi = con.execute(
            "SELECT min(partition_date), max(partition_date) FROM features.unit_features "
            "WHERE plant = ?",
            [plant],
        ).fetchall()[0]
    if lo is None:
        raise CliError(f"no unit_features for plant {plant!r}")
    return (dt.date.fromisoformat(first) if first else lo), (
        dt.date.fromisoformat(last) if last else hi
    )


def cmd_canary(args: argparse.Namespace) -> int:
    from quality_platform.definitions import build_definitions
    from quality_platform.defs.ml.jobs import CANARY_JOB
    from quality_platform.runner import run_job

    res = run_job(build_definitions(), dagster_instance(), CANARY_JOB, {"trigger": args.trigger})
    meta = {}
    for ev in res.get_asset_materialization_events():
        meta = {k: getattr(v, "value", v) for k, v in ev.materialization.metadata.items()}
    emit(
        args,
        {"success": res.success, "run_id": res.run_id, **meta},
        f"canary_evaluation: {meta.get('decision', '?')} - {meta.get('reason', '')}",
    )
    return 0 if res.success else 1


def cmd_override(args: argparse.Namespace) -> int:
    """A quality engineer overrides the decision for one unit. The override is stored apart from
    inspection labels (data/state/audit/overrides.db), so it never feeds back into training data."""
    from quality_platform.ml.schema import ML_SCHEMA, PREDICTIONS
    from quality_platform.overrides import record_override
    from quality_platform.warehouse import connect, table_exists

    _who(args, "override")
    paths = get_paths()
    with connect(paths.warehouse_path, read_only=True) as con:
        if not table_exists(con, ML_SCHEMA, PREDICTIONS):
            raise CliError("no predictions yet: run the demo or `qp score` first")
        sql = (
            f"SELECT plant, partition_date, model_version, predicted_defect, risk, decided_by FROM "
            f"{ML_SCHEMA}.{PREDICTIONS} WHERE unit_id = ?"
        ) + (" AND plant = ?" if args.plant else "")
        rows = con.execute(sql, [args.unit] + ([args.plant] if args.plant else [])).fetchall()
    if not rows:
        raise CliError(
            f"unit {args.unit!r} has no prediction"
            + (f" at {args.plant}" if args.plant else "")
            + ": only scored units can be overridden"
        )
    if len({r[0] for r in rows}) > 1:
        raise CliError(
            f"unit {args.unit!r} exists at several plants {sorted({r[0] for r in rows})}: add --plant"
        )
    plant, day, version, predicted, risk, decided_by = rows[0]
    try:
        out = record_override(
            plant,
            args.unit,
            args.decision,
            args.actor,
            args.reason,
            model_version=str(version),
            predicted_defect=int(predicted),
            risk=float(risk),
            paths=paths,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    out.update(partition_date=str(day), decided_by=decided_by)
    agree = "agrees with" if (args.decision == "defect") == bool(predicted) else "overrides"
    emit(
        args,
        out,
        f"override #{out['id']}: {args.actor} decided {args.decision} for {plant}/{args.unit} "
        f"({agree} model {version}: risk {float(risk):.3f}, predicted "
        f"{'defect' if predicted else 'ok'}); audit record {out['audit_seq']}",
    )
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qp",
        description="qp: the command line for what the Dagster UI does not do. Every command speaks --json.",
    )
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
    d.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="moisture_drift",
        help="default moisture_drift: the closed loop detects it, retrains, gates, canaries, promotes",
    )
    d.add_argument("--start", default="2026-03-16")
    d.add_argument(
        "--onset-day",
        type=int,
        help="day index of the scenario's onset (default: 8 days before the end)",
    )
    d.add_argument(
        "--continue-on-gate-failure",
        action="store_true",
        help="train and score even when a data gate failed (e.g. the bad_files scenario)",
    )
    d.add_argument(
        "--skip-model", action="store_true", help="data layers only: no training, gate or scoring"
    )

    b = add(
        "backfill",
        cmd_backfill,
        "land + standardise + KPIs for a date range (default: all landed days)",
    )
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
    for name, fn, help_ in (
        ("approve", cmd_approve, "approve a gated model version (human in the loop)"),
        ("reject", cmd_reject, "reject a model version (it leaves the canary, never promoted)"),
    ):
        a = add(name, fn, help_)
        a.add_argument("version")
        a.add_argument("--as", dest="actor", help=AS_HELP)
        a.add_argument("--reason", required=True)
    a = add("promote", cmd_promote, "make an approved, gated version the champion")
    a.add_argument("version")
    a.add_argument("--as", dest="actor", help=AS_HELP)
    a.add_argument("--reason")
    a = add("rollback", cmd_rollback, "return to the previous approved champion")
    a.add_argument("--as", dest="actor", help=AS_HELP)
    a.add_argument("--reason", required=True)
    o = add(
        "override",
        cmd_override,
        "record a quality engineer's decision for a unit against its prediction "
        "(kept apart from inspection labels: never training data)",
    )
    o.add_argument("unit", help="unit id (as in ml.predictions)")
    o.add_argument("--decision", choices=["ok", "defect"], required=True)
    o.add_argument("--as", dest="actor", help=AS_HELP)
    o.add_argument("--reason", required=True)
    o.add_argument("--plant", help="needed only when the unit id exists at several plants")
    models = sub.add_parser("models", help="model versions").add_subparsers(
        dest="models_command", required=True
    )
    mh = models.add_parser(
        "history", help="which version was champion when, approvals, gate results"
    )
    mh.add_argument("--json", action="store_true", help="machine-readable output")
    mh.set_defaults(fn=cmd_models_history)
    mi = models.add_parser(
        "init-registry",
        help="start a new, empty model registry on purpose (the old store is "
        "lost or retired; audited, control owner)",
    )
    mi.add_argument("--reason", required=True)
    mi.add_argument("--as", dest="actor", help=AS_HELP)
    mi.add_argument("--json", action="store_true", help="machine-readable output")
    mi.set_defaults(fn=cmd_models_init_registry)
    li = add(
        "lineage",
        cmd_lineage,
        "lineage both ways: model VERSION -> data, or data --plant --date -> models",
    )
    li.add_argument("what", choices=["model", "data"])
    li.add_argument("version", nargs="?")
    li.add_argument("--plant")
    li.add_argument("--date")
    t = add("train", cmd_train, "snapshot training data, train a challenger, run the release gate")
    t.add_argument("--trigger", default="cli")
    t.add_argument("--as", dest="actor", help=AS_HELP)
    sc = add("score", cmd_score, "score plant-days with the champion (predictions with reasons)")
    sc.add_argument("--plant", action="append")
    sc.add_argument("--from", dest="date_from")
    sc.add_argument("--to", dest="date_to")
    sc.add_argument("--trigger", default="cli")
    mo = add(
        "monitor",
        cmd_monitor,
        "score plant-days and measure drift, operations and realised performance",
    )
    mo.add_argument("--plant", action="append")
    mo.add_argument("--from", dest="date_from")
    mo.add_argument("--to", dest="date_to")
    mo.add_argument("--trigger", default="cli")
    c = add("canary", cmd_canary, "evaluate the canary: promote, roll back or wait")
    c.add_argument("--trigger", default="cli")
    add(
        "free-slots",
        cmd_free_slots,
        "fail runs whose process died; release pool slots (every pool) of runs "
        "that are no longer running",
    )
    k = add(
        "dev-key", cmd_dev_key, "create a local development pseudonymisation key file if missing"
    )
    k.add_argument("--path", default=str(get_paths().data_dir / ".secrets" / "pseudonym.key"))
    from quality_platform.cli import audit as cli_audit
    from quality_platform.cli import incidents as cli_incidents
    from quality_platform.cli import privacy as cli_privacy
    from quality_platform.cli import query as cli_query

    for area in (cli_query, cli_privacy, cli_audit, cli_incidents):
        area.register(add, sub)
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
        from quality_platform.governance.policy import PolicyError
        from quality_platform.ml.registry import RegistryStoreError
        from quality_platform.privacy import MissingKeyError
        from quality_platform.reports.lineage import LineageError
        from quality_platform.reports.summary import SummaryError
        from quality_platform.warehouse import WarehouseBusyError

        if isinstance(
            exc,
            ConfigError
            | MissingKeyError
            | PolicyError
            | WarehouseBusyError
            | RegistryStoreError
            | SummaryError
            | LineageError,
        ):
            print(
                json.dumps({"error": str(exc)})
                if getattr(args, "json", False)
                else f"qp: error: {exc}",
                file=sys.stdout if getattr(args, "json", False) else sys.stderr,
            )
            return 2
        raise
