"""The repository is a ``dg`` project (issue 12): ``dg check defs`` run from the project root finds
the project through ``[tool.dg]`` in pyproject.toml and loads the definitions of
``quality_platform.definitions`` as the code location ``quality_platform``, the name workspace.yaml
gives it (dg's default would be the checkout folder's name). Without that section ``dg`` refuses to
run ("must be run inside a Dagster workspace or project directory")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from quality_platform.location import PROJECT_ROOT, workspace_entry
from quality_platform.settings import Paths


def test_dg_check_defs_loads_the_definitions(qp_env: Paths) -> None:
    dg = Path(sys.executable).parent / "dg"
    assert dg.exists(), f"{dg}: dagster-dg-cli is not installed in this environment"
    # The test's own Dagster home (qp_env), with the instance configuration: telemetry stays off.
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **os.environ,  # QP_DATA_DIR etc. of the installation copy qp_env made under tmp_path
        "DAGSTER_HOME": str(dagster_home),
        "VIRTUAL_ENV": sys.prefix,  # dg warns when the active venv is not the project's .venv
        "NO_COLOR": "1",
    }
    started = time.monotonic()
    proc = subprocess.run(
        [str(dg), "check", "defs", "--log-level", "info"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, (
        f"dg check defs exited {proc.returncode} after {elapsed:.0f}s:\n{output}"
    )
    assert "All definitions loaded successfully." in proc.stdout, output
    location = workspace_entry()["location_name"]
    assert f"Validation successful for code location {location}." in output, output
    assert "Traceback" not in output, output
