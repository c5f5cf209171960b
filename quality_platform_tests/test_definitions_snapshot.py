"""The Dagster definitions of the committed installation as one reviewed file: every asset (deps,
group, owners, kinds, code version, partitions, pools, checks), job (selection, executor, hooks,
tags), schedule (cron, target) and sensor (kind, targets, interval, default status). A structural
change fails this test until ``quality_platform_tests/snapshots/definitions.json`` is re-written
(``QP_UPDATE_SNAPSHOT=1 pytest quality_platform_tests/test_definitions_snapshot.py``), so it shows
up as a diff in review."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from quality_platform.definitions import build_definitions
from quality_platform.settings import Paths

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def _partitions(pdef: Any) -> str | None:
    if pdef is None:
        return None
    if isinstance(pdef, dg.MultiPartitionsDefinition):
        return (
            "multi("
            + ", ".join(f"{d.name}:{_partitions(d.partitions_def)}" for d in pdef.partitions_defs)
            + ")"
        )
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        return f"time({pdef.cron_schedule}, from {pdef.start.date()}, {pdef.timezone})"
    if isinstance(pdef, dg.StaticPartitionsDefinition):
        return f"static({', '.join(pdef.get_partition_keys())})"
    return type(pdef).__name__


def snapshot(defs: dg.Definitions) -> dict[str, Any]:
    """The structure of ``defs`` as JSON-ready data (sorted, no run-time values)."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "group": node.group_name,
            "owners": sorted(node.owners),
            "kinds": sorted(node.kinds),
            "code_version": node.code_version,
            "partitions": _partitions(node.partitions_def),
            "pools": sorted(node.pools or ()),
            "checks": sorted(c.name for c in node.check_keys),
            "has_description": bool(node.description),
        }
    jobs = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        jobs[job.name] = {
            "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
            "executor": job.executor_def.name,
            "hooks": sorted(h.name for h in job.hook_defs),
            "tags": dict(sorted(job.tags.items())),
        }
    schedules = {
        s.name: {
            "cron": s.cron_schedule,
            "target": s.job_name,
            "timezone": s.execution_timezone,
            "default": s.default_status.value,
        }
        for s in sorted(defs.schedules or (), key=lambda s: s.name)
    }
    sensors = {}
    for s in sorted(defs.sensors or (), key=lambda s: s.name):
        sensors[s.name] = {
            "kind": type(s).__name__,
            "targets": sorted(t.job_name for t in s.targets),
            "interval_s": s.minimum_interval_seconds,
            "default": s.default_status.value,
        }
    return {
        "assets": assets,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
        "resources": sorted(defs.resources or {}),
    }


def test_definitions_match_the_reviewed_snapshot(qp_env: Paths) -> None:
    current = snapshot(build_definitions(qp_env))
    text = json.dumps(current, indent=1, sort_keys=True) + "\n"
    if os.environ.get("QP_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    for part in ("assets", "jobs", "schedules", "sensors", "resources"):
        assert current[part] == expected[part], (
            f"the {part} of the definitions changed; review the diff and re-write the snapshot with "
            f"QP_UPDATE_SNAPSHOT=1 ({SNAPSHOT})"
        )


def test_every_sensor_has_a_target_and_ui_launches_run_in_process(qp_env: Paths) -> None:
    """A sensor without targets is refused by Dagster when it requests a run (issue 13); ad-hoc
    materialisations from the UI use the in-process executor, like the platform's jobs."""
    defs = build_definitions(qp_env)
    snap = snapshot(defs)
    alerts_only = {"alert_on_run_failure", "alert_on_sensor_error"}
    request_runs = {n: s for n, s in snap["sensors"].items() if n not in alerts_only}
    assert request_runs and all(s["targets"] for s in request_runs.values()), request_runs
    assert defs.resolve_implicit_global_asset_job_def().executor_def.name == "in_process"
    assert {j["executor"] for j in snap["jobs"].values()} == {"in_process"}
