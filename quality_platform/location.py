"""The platform's Dagster code location, as ``workspace.yaml`` declares it (the one place of truth):
its name, the module and attribute it loads, and the origin every run and sensor tick carries.

Runs the ``qp`` CLI and the demo execute are created in the instance *with this origin*, like the
runs the UI and the daemon launch from the code location: the UI lists them under the location's
Overview and each job's Runs tab, re-execution works, and run-status sensors (which only look at
runs of their own code location) see them. Sensors the CLI ticks are evaluated by Dagster's
``evaluate_tick`` in a context that names the same location, as the daemon's does.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

#: The folder holding workspace.yaml (its ``working_directory`` is relative to it).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"
#: Dagster's name of the single repository a ``Definitions`` object becomes.
REPOSITORY = "__repository__"


@lru_cache(maxsize=1)
def workspace_entry() -> dict[str, str]:
    """The ``python_module`` entry of workspace.yaml: location name, module, attribute, folder."""
    doc = yaml.safe_load(WORKSPACE_FILE.read_text(encoding="utf-8")) or {}
    entries = [e["python_module"] for e in doc.get("load_from", []) if "python_module" in e]
    if len(entries) != 1:
        raise ValueError(
            f"{WORKSPACE_FILE}: expected one python_module entry, found {len(entries)}"
        )
    entry = entries[0]
    module = entry["module_name"]
    return {
        "location_name": entry.get("location_name", module),
        "module_name": module,
        "attribute": entry.get("attribute", "defs"),
        "working_directory": str(
            (WORKSPACE_FILE.parent / entry.get("working_directory", ".")).resolve()
        ),
    }


@lru_cache(maxsize=1)
def code_location_origin() -> Any:
    """The origin of the code location as the webserver and the daemon load it from workspace.yaml."""
    from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    e = workspace_entry()
    target = LoadableTargetOrigin(
        executable_path=sys.executable,
        module_name=e["module_name"],
        attribute=e["attribute"],
        working_directory=e["working_directory"],
    )
    return ManagedGrpcPythonEnvCodeLocationOrigin(
        loadable_target_origin=target, location_name=e["location_name"]
    )


def job_origin(job_name: str) -> Any:
    """The remote origin of one of the location's jobs (stored on every run the platform creates)."""
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin

    repo = RemoteRepositoryOrigin(
        code_location_origin=code_location_origin(), repository_name=REPOSITORY
    )
    return RemoteJobOrigin(repository_origin=repo, job_name=job_name)


def repository_label() -> str:
    """The label the UI filters a location's runs by (run tag ``.dagster/repository``)."""
    return f"{REPOSITORY}@{workspace_entry()['location_name']}"


def tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, sensor_name: str, cursor: str | None
) -> Any:
    """One evaluation of sensor ``sensor_name`` the way the daemon evaluates it: Dagster's
    ``evaluate_tick`` (run requests resolved and validated against the sensor's targets), in a
    context naming this code location, with the definitions' resources. Returns Dagster's
    ``SensorExecutionData`` (``run_requests``, ``cursor``, ``skip_message``)."""
    from dagster._core.execution.build_resources import wrap_resources_for_execution

    ctx = dg.SensorEvaluationContext(
        instance_ref=None,
        last_tick_completion_time=None,
        last_run_key=None,
        cursor=cursor,
        log_key=None,
        repository_name=REPOSITORY,
        instance=instance,
        definitions=defs,
        sensor_name=sensor_name,
        code_location_origin=code_location_origin(),
        resources=wrap_resources_for_execution(defs.resources),
    )
    with ctx:
        return defs.resolve_sensor_def(sensor_name).evaluate_tick(ctx)


def sensor_origin(name: str) -> tuple[Any, str]:
    """The remote origin of the location's sensor ``name`` and its selector id: the keys the
    instance stores the sensor's state and ticks under (as the daemon computes them)."""
    from dagster._core.definitions.selector import InstigatorSelector
    from dagster._core.remote_origin import RemoteInstigatorOrigin, RemoteRepositoryOrigin
    from dagster._serdes import create_snapshot_id

    repo = RemoteRepositoryOrigin(
        code_location_origin=code_location_origin(), repository_name=REPOSITORY
    )
    selector = InstigatorSelector(
        location_name=workspace_entry()["location_name"], repository_name=REPOSITORY, name=name
    )
    return (
        RemoteInstigatorOrigin(repository_origin=repo, instigator_name=name),
        create_snapshot_id(selector),
    )


def set_sensor_cursors(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursors: dict[str, str | None]
) -> None:
    """Store the cursors the daemon's next tick of each named sensor starts from (``None``: the
    sensor's first-tick behaviour, a baseline). What ``dagster sensor cursor --set`` does, for the
    location's own sensors and without loading the code location a second time; a sensor's
    running/stopped status is kept (a sensor without a stored state keeps its default)."""
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        SensorInstigatorData,
    )

    for name, cursor in cursors.items():
        sensor = defs.resolve_sensor_def(name)
        origin, selector_id = sensor_origin(name)
        state = instance.get_instigator_state(origin.get_id(), selector_id)
        data = SensorInstigatorData(
            min_interval=sensor.minimum_interval_seconds,
            cursor=cursor,
            sensor_type=sensor.sensor_type,
        )
        if state is None:
            instance.add_instigator_state(
                InstigatorState(
                    origin, InstigatorType.SENSOR, InstigatorStatus.DECLARED_IN_CODE, data
                )
            )
        else:
            instance.update_instigator_state(state.with_data(data))
