"""Runs ``qp`` executes are runs of the code location, as the UI and the daemon see it (issue 12:
one orchestrator): the UI's job page lists them (asked through Dagster's own GraphQL API on the
workspace.yaml the webserver loads), and a run-status sensor evaluated in the location's context
sees them - a run executed without the origin it does not."""

from __future__ import annotations

import datetime as dt
import tomllib

import dagster as dg
import yaml

from quality_platform.definitions import build_definitions
from quality_platform.location import (
    PROJECT_ROOT,
    WORKSPACE_FILE,
    repository_label,
    tick,
    workspace_entry,
)
from quality_platform.partitions import range_tags
from quality_platform.runner import run_range
from quality_platform.settings import Paths
from quality_platform_tests.conftest import tiny_plant_a_day

DAY = dt.date(2026, 3, 20)  # its labels (2 days late) are of a partition day: a performance run
JOB_RUNS = """
query JobRuns($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { runs { runId } }
  }
}
"""


def test_workspace_names_the_location_of_pyproject() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    entry = workspace_entry()
    assert entry["location_name"] == pyproject["tool"]["dagster"]["code_location_name"]
    assert entry["module_name"] == pyproject["tool"]["dagster"]["module_name"]
    assert (
        yaml.safe_load(WORKSPACE_FILE.read_text())["load_from"][0]["python_module"]["attribute"]
        == "defs"
    )


def test_qp_runs_are_runs_of_the_code_location(qp_env: Paths) -> None:
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    tiny_plant_a_day(qp_env, DAY)
    defs = build_definitions(qp_env)
    with dg.instance_for_test() as instance:
        base = tick(
            defs, instance, "monitor_after_standardize", None
        )  # the first tick sets the cursor
        assert run_range(defs, instance, "land_plant_a", "plant_a", DAY, DAY).success
        std = run_range(defs, instance, "standardize_job", "plant_a", DAY, DAY)
        bare = defs.resolve_job_def("standardize_job").execute_in_process(
            instance=instance, tags=range_tags("plant_a", DAY, DAY)
        )  # what qp did before: a run with no code-location origin
        assert std.success and bare.success

        run = instance.get_run_by_id(std.run_id)
        assert run.remote_job_origin.location_name == workspace_entry()["location_name"]
        label_filter = dg.RunsFilter(
            job_name="standardize_job", tags={".dagster/repository": repository_label()}
        )
        assert [r.run_id for r in instance.get_runs(label_filter)] == [std.run_id]

        # the job page of the UI, from the workspace the webserver loads (a code server is started)
        selector = {
            "repositoryLocationName": workspace_entry()["location_name"],
            "repositoryName": "__repository__",
            "pipelineName": "standardize_job",
        }
        with WorkspaceProcessContext(
            instance, WorkspaceFileTarget(paths=[str(WORKSPACE_FILE)])
        ) as wpc:
            res = execute_dagster_graphql(
                wpc.create_request_context(), JOB_RUNS, {"selector": selector}
            )
        assert res.errors is None, res.errors
        job = res.data["pipelineOrError"]
        assert job["__typename"] == "Pipeline", job
        listed = {r["runId"] for r in job["runs"]}
        assert std.run_id in listed and bare.run_id not in listed

        # the monitor sensor as the daemon evaluates it reacts to the location's run only
        res = tick(defs, instance, "monitor_after_standardize", base.cursor)
        assert {r.job_name for r in res.run_requests} == {"monitor_job", "performance_job"}
        assert {r.run_key for r in res.run_requests} == {
            f"monitor-{std.run_id}",
            f"performance-{std.run_id}",
        }
