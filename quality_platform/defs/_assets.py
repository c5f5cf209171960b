"""Small helpers shared by the asset modules (metadata, previews)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd

CODE_VERSIONS = {
    # Bump when the logic of an asset changes: Dagster then marks downstream data as stale.
    "raw": "1",
    "standard": "1",
    "kpi": "1",
    "features": "1",
    "ml": "1",
    "monitoring": "1",
}


def warehouse_path(warehouse: object) -> Path:
    """The DuckDB file behind the ``warehouse`` resource."""
    return Path(warehouse.database)  # type: ignore[attr-defined]


def preview(df: pd.DataFrame, drop: tuple[str, ...] = (), n: int = 8) -> dg.MetadataValue:
    """A small Markdown preview; personal-data columns are left out by the caller's ``drop``."""
    if df is None or df.empty:
        return dg.MetadataValue.md("_(no rows)_")
    cols = [c for c in df.columns if c not in drop]
    return dg.MetadataValue.md(df[cols].head(n).to_markdown(index=False))


def per_day_table(
    counts: dict[tuple[str, dt.date], int] | pd.Series, label: str
) -> dg.MetadataValue:
    s = pd.Series(counts) if not isinstance(counts, pd.Series) else counts
    df = s.rename(label).reset_index()
    df.columns = ["plant", "date", label]
    return dg.MetadataValue.md(df.to_markdown(index=False))
