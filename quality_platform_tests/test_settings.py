"""The deployment module is the one reader of the environment (issue 12: backends per deployment)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from quality_platform.settings import (
    ENVIRONMENT,
    REPO_ROOT,
    DeploymentError,
    current_deployment,
)

PACKAGE = REPO_ROOT / "quality_platform"
#: Modules that may touch ``os.environ`` and why: settings resolves the deployment; the CLI and
#: the registry set the defaults Dagster and MLflow themselves read (DAGSTER_HOME, MLFLOW_*).
ENV_WRITERS = {"settings.py", "cli/_common.py", "ml/registry.py"}


def _environment_users() -> set[str]:
    users = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in {"environ", "getenv", "putenv"}
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                users.add(path.relative_to(PACKAGE).as_posix())
    return users


def test_only_the_deployment_module_reads_the_environment() -> None:
    assert _environment_users() == ENV_WRITERS


def test_qp_variables_are_only_named_in_settings() -> None:
    """Another module naming ``"QP_..."`` as a string is a second place that reads one."""
    named = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if re.search(r"[\"']QP_[A-Z_]+[\"']", path.read_text(encoding="utf-8"))
    }
    assert named == {"settings.py"}


def test_readme_lists_every_variable() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Deployment and environment", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"^\| `([A-Z_]+)` \| (.+) \|$", section, flags=re.M))
    assert listed == ENVIRONMENT  # names, order and meanings as settings.py declares them
    assert list(listed) == list(ENVIRONMENT)


def test_locations_follow_the_data_folder(tmp_path: Path) -> None:
    dep = current_deployment({"QP_DATA_DIR": str(tmp_path)})
    assert dep.name == "local"
    p = dep.paths
    assert p.config_dir == tmp_path.resolve()
    assert p.warehouse_path == tmp_path.resolve() / "warehouse" / "quality.duckdb"
    assert p.audit_db_path == tmp_path.resolve() / "audit" / "audit.db"
    assert p.dagster_home == tmp_path.resolve() / "dagster_home"
    assert dep.set_by_environment == {"QP_DATA_DIR"}


def test_a_variable_overrides_one_location(tmp_path: Path) -> None:
    audit = tmp_path / "elsewhere" / "audit.db"
    p = current_deployment({"QP_DATA_DIR": str(tmp_path), "QP_AUDIT_DB": str(audit)}).paths
    assert p.audit_db_path == audit
    assert p.overrides_db_path == tmp_path.resolve() / "audit" / "overrides.db"


def test_an_unknown_deployment_is_refused() -> None:
    with pytest.raises(DeploymentError, match=r"QP_DEPLOYMENT='cluster'.*known: local"):
        current_deployment({"QP_DEPLOYMENT": "cluster"})


def test_secrets_are_not_printed(tmp_path: Path) -> None:
    dep = current_deployment(
        {
            "QP_DATA_DIR": str(tmp_path),
            "QP_ALERT_WEBHOOK_URL": "https://hooks.example/s3cr3t-token",
            "QP_PSEUDONYM_KEY": "k3y-material",
        }
    )
    assert dep.alert_webhook_url == "https://hooks.example/s3cr3t-token"
    text = repr(dep)
    assert "s3cr3t" not in text and "k3y-material" not in text
    assert "QP_ALERT_WEBHOOK_URL" in text  # which variables are set is not secret
