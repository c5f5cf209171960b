"""What every ``qp`` command shares: the user-facing error, output as text or ``--json``, the
``--as`` help and the Dagster instance the commands use. No domain logic lives here."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from typing import Any

import pandas as pd

from quality_platform.location import PROJECT_ROOT
from quality_platform.settings import get_paths

AS_HELP = (
    "act as this policy user (only where data/governance/policy.yaml allows impersonation; audited); "
    "default: the OS account mapped in the policy (under sudo to a service account: the calling account; "
    "automation on a service account: QP_USER)"
)


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


# --------------------------------------------------------------------------- output


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """Print ``payload`` as JSON under ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, default=str, sort_keys=True))
    else:
        print(text)


def text_table(df: pd.DataFrame) -> str:
    """A frame as a plain text table (``(none)`` when empty)."""
    return df.to_string(index=False) if not df.empty else "(none)"


def dagster_instance() -> Any:
    """The Dagster instance at ``$DAGSTER_HOME`` (default data/state/dagster_home), with the repository's
    dagster.yaml copied in on first use."""
    import dagster as dg

    home = get_paths().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    cfg = home / "dagster.yaml"
    repo_cfg = PROJECT_ROOT / "dagster.yaml"  # the repository's template
    if not cfg.exists() and repo_cfg.exists():
        shutil.copy(repo_cfg, cfg)
    return dg.DagsterInstance.get()
