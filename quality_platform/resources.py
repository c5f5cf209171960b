"""Dagster resources: where the platform's files are, and the DuckDB warehouse."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from quality_platform.config import (
    KpiRegistry,
    PlantConfig,
    PlatformConfig,
    QuantityRegistry,
    load_kpis,
    load_plants,
    load_platform,
    load_quantities,
)
from quality_platform.privacy import load_key
from quality_platform.settings import Paths, get_paths


class PlatformResource(dg.ConfigurableResource):
    """Configuration and file locations of the platform (defaults from QP_DATA_DIR / QP_CONFIG_DIR)."""

    data_dir: str | None = None
    config_dir: str | None = None

    def paths(self) -> Paths:
        base = get_paths()
        data = Path(self.data_dir) if self.data_dir else base.data_dir
        cfg = Path(self.config_dir) if self.config_dir else base.config_dir
        return Paths(data_dir=data, config_dir=cfg)

    def plants(self) -> dict[str, PlantConfig]:
        return load_plants(self.paths())

    def quantities(self) -> QuantityRegistry:
        return load_quantities(self.paths())

    def kpis(self) -> KpiRegistry:
        return load_kpis(self.paths())

    def platform(self) -> PlatformConfig:
        return load_platform(self.paths())

    def pseudonym_key(self) -> bytes:
        """The pseudonymisation key (from the environment; never stored in the repo)."""
        return load_key()


def default_resources() -> dict[str, object]:
    """Resources bound in the code location: file locations and the warehouse path."""
    paths = get_paths()
    return {
        "platform": PlatformResource(
            data_dir=os.environ.get("QP_DATA_DIR"), config_dir=os.environ.get("QP_CONFIG_DIR")
        ),
        "warehouse": DuckDBResource(database=str(paths.warehouse_path)),
    }
