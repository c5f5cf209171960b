"""Where the platform keeps its files, resolved once from the environment.

Everything generated (landing files, the DuckDB warehouse, Dagster and MLflow storage) lives
below ``QP_DATA_DIR`` (default: the repository's ``data/`` folder); committed configuration lives
in ``QP_CONFIG_DIR`` (default: the same folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Paths:
    """Resolved file locations of one platform installation."""

    data_dir: Path
    config_dir: Path

    @property
    def plants_dir(self) -> Path:
        return self.config_dir / "plants"

    @property
    def quantities_file(self) -> Path:
        return self.config_dir / "standard" / "quantities.yaml"

    @property
    def kpi_file(self) -> Path:
        return self.config_dir / "kpis.yaml"

    @property
    def platform_file(self) -> Path:
        return self.config_dir / "platform.yaml"

    @property
    def landing_dir(self) -> Path:
        return Path(os.environ.get("QP_LANDING_DIR", self.data_dir / "landing"))

    @property
    def warehouse_path(self) -> Path:
        return Path(os.environ.get("QP_WAREHOUSE", self.data_dir / "warehouse" / "quality.duckdb"))

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME", self.data_dir / "dagster_home"))


def get_paths() -> Paths:
    """Paths from ``QP_DATA_DIR`` / ``QP_CONFIG_DIR`` (both default to ``<repo>/data``)."""
    data_dir = Path(os.environ.get("QP_DATA_DIR", REPO_ROOT / "data")).resolve()
    config_dir = Path(os.environ.get("QP_CONFIG_DIR", data_dir)).resolve()
    return Paths(data_dir=data_dir, config_dir=config_dir)


def copy_installation(root: Path, plants: tuple[str, ...] | None = None) -> Paths:
    """A self-contained installation under ``root/data``: a copy of the committed configuration
    (optionally only some plants) and a link to the AI4I data set. Used by tests and benchmarks
    that must not touch the working installation."""
    import shutil

    data = root / "data"
    (data / "plants").mkdir(parents=True)
    src = REPO_ROOT / "data"
    for f in sorted((src / "plants").glob("*.yaml")):
        if plants is None or f.stem in plants:
            shutil.copy(f, data / "plants" / f.name)
    shutil.copytree(src / "standard", data / "standard")
    for name in ("kpis.yaml", "platform.yaml", "features.yaml"):
        shutil.copy(src / name, data / name)
    shutil.copytree(src / "ml", data / "ml")
    shutil.copytree(src / "governance", data / "governance")
    (data / "datasets").mkdir()
    (data / "datasets" / "ai4i2020").symlink_to(src / "datasets" / "ai4i2020")
    return Paths(data_dir=data, config_dir=data)
