"""What ``qp demo`` (``make demo``) does besides printing: simulate a scenario into a fresh landing
folder, start from a clean platform state, release the first model version as the policy's
control owner, and then start the Dagster daemon and deliver the drifting plant's last days as
files, one at a time: the daemon's sensors run the closed loop. Every step returns plain data (or
hands it to a callback as it happens); ``qp demo`` prints it."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_platform.defs.ml import champion
from quality_platform.defs.ml.jobs import TRAIN_JOB
from quality_platform.defs.ml.sensors import RETRAIN_SENSOR, current_cursor
from quality_platform.governance.policy import resolve_principal
from quality_platform.ml import lifecycle as L
from quality_platform.runner import train
from quality_platform.settings import Paths
from quality_platform.simulation import simulate
from quality_platform.warehouse import connect

if TYPE_CHECKING:
    import dagster as dg

DEMO_APPROVER = (
    "carl.control"  # the demo acts as the policy's control owner (impersonation, audited)
)
#: Seconds between sensor ticks of the daemon the demo starts (production: 30, monitoring.yaml).
DEMO_SENSOR_INTERVAL = 5
#: Audit actions the loop reports per day.
LOOP_EVENTS = ("retrain", "gate", "approve", "promote", "rollback", "incident")


def simulate_scenario(
    paths: Paths,
    *,
    days: int,
    seed: int,
    scenario: str,
    start: dt.date,
    onset_day: int | None,
) -> dict[str, Any]:
    """Landing files of every simulated plant in a fresh landing folder; returns the truth."""
    landing = paths.landing_dir
    if landing.exists():
        shutil.rmtree(landing)
    return simulate(
        landing, days=days, seed=seed, scenario=scenario, start=start, onset_day=onset_day
    )


def reset(paths: Paths) -> Path | None:
    """The demo starts from a clean platform state: the warehouse is rebuilt; the previous demo's
    model registry, audit log, overrides, incidents (store and evidence bundles) and alerts are moved
    (never deleted) to data/state/archive/<UTC time>/, which is returned (None when there was nothing to
    move). Dagster's run history stays."""
    if paths.warehouse_path.exists():
        paths.warehouse_path.unlink()
    moved = [
        d
        for d in (paths.data_dir / n for n in ("mlflow", "audit", "alerts", "incidents"))
        if d.exists()
    ]
    if not moved:
        return None
    dest = paths.data_dir / "archive" / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    dest.mkdir(parents=True, exist_ok=True)
    for d in moved:
        shutil.move(str(d), str(dest / d.name))
    return dest


def loop_days(truth: dict[str, Any]) -> list[dt.date]:
    """The days the affected plant goes through the closed loop: two days before the scenario's
    onset to its end (none without an affected plant and an onset)."""
    if not ((truth.get("affected") or {}).get("plant") and truth.get("onset_date")):
        return []
    onset = dt.date.fromisoformat(truth["onset_date"])
    last = dt.date.fromisoformat(truth["end"])
    return [
        onset - dt.timedelta(days=2) + dt.timedelta(days=i) for i in range((last - onset).days + 3)
    ]


@dataclass(frozen=True)
class ReleaseStep:
    """One step of the first release, reported as it happens.

    ``step``: ``train_failed`` (no version registered), ``trained`` (version registered; gate and
    approval as registered), ``approved`` / ``promoted`` (by :data:`DEMO_APPROVER`) or
    ``no_champion`` (the gate did not let the version through)."""

    step: str
    version: str | None = None
    gate: str | None = None
    approval: str | None = None
    seconds: float = 0.0
    run_id: str = ""


def release_first_version(
    paths: Paths,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    on_step: Callable[[ReleaseStep], None] = lambda s: None,
) -> bool:
    """Train + gate the first version; as the demo's control owner approve and promote it when the
    gate let it through. Whether there is a champion to score with."""
    o = train(defs, instance, tags={"trigger": "demo"})
    reg, audit = L.open_stores(paths)
    versions = reg.versions()
    if not versions:
        on_step(ReleaseStep("train_failed", seconds=o.seconds, run_id=o.run_id))
        return False
    v = versions[-1]
    on_step(ReleaseStep("trained", v.version, v.gate, v.approval, o.seconds, o.run_id))
    if v.gate in L.PASSING and v.approval == "pending":
        reason = (
            "make demo: initial release approved by the demo script after reading the release gate "
            "(in production a control owner runs qp approve)"
        )
        resolve_principal(
            DEMO_APPROVER, command="demo: approve and promote the first version", audit=audit
        )
        L.approve(reg, audit, v.version, DEMO_APPROVER, reason)
        on_step(ReleaseStep("approved", v.version))
    v = reg.version(v.version)
    if v.gate in L.PASSING and v.approval == "approved" and reg.alias("champion") is None:
        champion.promote(
            instance, reg, audit, v.version, DEMO_APPROVER, "make demo: first champion"
        )
        on_step(ReleaseStep("promoted", v.version))
    if reg.alias("champion") is None:
        on_step(ReleaseStep("no_champion"))
        return False
    return True


def held_dir(paths: Paths, plant: str) -> Path:
    """Where :func:`hold_back` keeps ``plant``'s undelivered day folders."""
    return paths.data_dir / "scenario" / plant


def hold_back(paths: Paths, plant: str, days: list[dt.date]) -> Path:
    """Move ``plant``'s landing folders of ``days`` out of the landing folder, to
    data/state/scenario/<plant>/ (returned): the demo delivers them one at a time while the
    daemon runs, as the plant's file transfer would."""
    from quality_platform.config import load_plants

    landing = load_plants(paths)[plant].landing_path(paths)
    held = held_dir(paths, plant)
    if held.exists():
        shutil.rmtree(held)
    held.mkdir(parents=True)
    for d in days:
        if (landing / str(d)).exists():
            shutil.move(str(landing / str(d)), str(held / str(d)))
    return held


def run_loop(
    paths: Paths,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plant: str,
    days: list[dt.date],
    truth: dict[str, Any],
    on_day: Callable[[dict[str, Any]], None] = lambda row: None,
    held: Path | None = None,
    wait_seconds: float = 600.0,
) -> dict[str, Any]:
    """The affected plant's days through the closed loop under the Dagster daemon.

    The daemon (``dagster-daemon run`` on workspace.yaml, sensors every
    :data:`DEMO_SENSOR_INTERVAL` s) is started with the sensors' cursors at "now" (a new scenario
    begins: the landing and standardisation sensors take a baseline, the run-status sensors start
    at the latest run, the retrain sensor at the latest check records); then each day's folder
    (held back in ``held`` by :func:`hold_back`) is delivered into the landing folder and the
    daemon does the rest: landing, standardisation, scoring + monitoring, performance, canary,
    retrain. A day is done when the loop is at rest (no run queued or running, every sensor ticked
    since). The daemon is stopped at the end, however the loop ends.

    ``on_day`` gets each day's row as it finishes: drift findings, the champion versions that
    predicted, the lifecycle events (:data:`LOOP_EVENTS`), the runs the daemon launched and
    seconds. Returns what the loop did: first detection, the retrain and its version, held-back
    retrains, the canary's promotion, the champion, the latency from the failing check to the
    gated challenger, and the day rows."""
    import time

    import dagster as dg

    from quality_platform.config import load_plants
    from quality_platform.daemon import Daemon, covered, deliver, sensor_state, settle
    from quality_platform.defs.monitoring.jobs import MONITOR_JOB
    from quality_platform.location import set_sensor_cursors
    from quality_platform.settings import SENSOR_INTERVAL_ENV, process_environment

    reg, audit = L.open_stores(paths)
    held = held or held_dir(paths, plant)
    landing = load_plants(paths)[plant].landing_path(paths)
    sensors = [s.name for s in defs.get_repository_def().sensor_defs]
    cursors: dict[str, str | None] = dict.fromkeys(sensors)
    cursors[RETRAIN_SENSOR] = current_cursor(instance)
    set_sensor_cursors(defs, instance, cursors)
    env = process_environment({SENSOR_INTERVAL_ENV: str(DEMO_SENSOR_INTERVAL)})
    before = audit.records()
    seen = before[-1].seq if before else 0
    rows, ok = [], True
    log = paths.data_dir / "logs" / "demo_daemon.log"
    with Daemon(log, env) as daemon:
        daemon.wait_for(
            f"the landing sensor's baseline of {plant}",
            lambda: (
                (st := sensor_state(instance, f"landing_{plant}")) and st.instigator_data.cursor
            ),
            wait_seconds,
        )
        for d in days:
            t0 = time.time()
            deliver(held / str(d), landing / str(d))
            daemon.wait_for(
                f"monitor_job over {plant} {d}",
                lambda d=d, t0=t0: covered(instance, MONITOR_JOB, plant, d, t0),
                wait_seconds,
            )
            settle(daemon, instance, sensors, wait_seconds)
            runs = [
                r.dagster_run
                for r in instance.get_run_records(
                    dg.RunsFilter(created_after=dt.datetime.fromtimestamp(t0, dt.UTC)),
                    ascending=True,
                )
            ]
            with connect(paths.warehouse_path, read_only=True) as con:
                kinds = [
                    r[0]
                    for r in con.execute(
                        "SELECT DISTINCT kind FROM ml.drift_findings WHERE plant = ? AND "
                        "partition_date = ? ORDER BY 1",
                        [plant, d],
                    ).fetchall()
                ]
                versions = [
                    r[0]
                    for r in con.execute(
                        "SELECT DISTINCT model_version FROM ml.predictions WHERE plant = ? "
                        "AND partition_date = ? AND decided_by = 'champion'",
                        [plant, d],
                    ).fetchall()
                ]
            new = [r for r in audit.records() if r.seq > seen]  # one read of the log per day
            events = [r for r in new if r.action in LOOP_EVENTS]
            seen = new[-1].seq if new else seen
            ok = ok and all(
                r.status == dg.DagsterRunStatus.SUCCESS for r in runs if r.job_name != TRAIN_JOB
            )
            retrain_run = next((r for r in runs if r.job_name == TRAIN_JOB), None)
            row = {
                "day": str(d),
                "findings": kinds,
                "champion_versions": versions,
                "events": [f"{r.action}:{r.outcome} {r.subject} by {r.actor}" for r in events],
                "runs": [
                    f"{r.job_name} by {r.tags.get('dagster/sensor_name', '?')}: {r.status.value}"
                    for r in runs
                ],
                "retrain_run": retrain_run.run_id if retrain_run else None,
                "seconds": round(time.time() - t0, 1),
            }
            rows.append(row)
            on_day(row)
    first = next((r["day"] for r in rows if "process_drift" in r["findings"]), None)
    retrain_records = audit.records(action="retrain")
    retrain = next((r for r in retrain_records if r.outcome == "ok"), None)
    retrained = [v for v in reg.versions() if v.tag("trigger") == "retrain_on_drift"]
    version = next(
        (v for v in retrained if v.gate in ("passed", "passed_with_warnings")),
        retrained[0] if retrained else None,
    )
    held_back = [r.reason for r in retrain_records if r.outcome != "ok"]
    champ = reg.alias("champion")
    promotion = next(
        (
            r
            for r in audit.records(action="promote")
            if version and r.refs.get("model_version") == version.version and r.outcome == "ok"
        ),
        None,
    )
    latency = None
    if retrain is not None and version is not None:
        # failing check (end of the monitoring run that evaluated it) -> gate of the retrained version recorded
        check_run = instance.get_run_record_by_id(str(retrain.refs.get("check_run_id")))
        gate = next(
            (
                r
                for r in audit.records(action="gate")
                if r.refs.get("model_version") == version.version
            ),
            None,
        )
        if check_run is not None and check_run.end_time and gate is not None:
            latency = round(
                dt.datetime.fromisoformat(gate.ts_utc).timestamp() - check_run.end_time, 1
            )
    return {
        "ok": ok,
        "plant": plant,
        "onset": truth["onset_date"],
        "first_detected": first,
        "check_to_gated_challenger_s": latency,
        "retrain": {
            "check": retrain.refs.get("check"),
            "at": retrain.ts_utc,
            "reason": retrain.reason,
        }
        if retrain
        else None,
        "retrained_version": {
            "version": version.version,
            "gate": version.gate,
            "approval": version.approval,
            "approved_by": version.tag("approved_by"),
            "status": version.status,
        }
        if version
        else None,
        "retrained_versions": [
            {"version": v.version, "gate": v.gate, "status": v.status} for v in retrained
        ],
        "retrains_held_back": held_back,
        "promotion": {"by": promotion.actor, "reason": promotion.reason} if promotion else None,
        "champion": champ.version if champ else None,
        "orchestrator": "dagster-daemon",
        "daemon_log": str(log),
        "days": rows,
    }
