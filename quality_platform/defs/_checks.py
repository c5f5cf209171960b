"""Check helpers every domain's asset checks share: the run's plant-day keys as a SQL table, Markdown previews, pandera results and the warehouse-reading check factory."""

from collections.abc import Callable
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from dagster_duckdb import DuckDBResource

from quality_platform.defs._assets import warehouse_path
from quality_platform.partitions import Keys, keys_of
from quality_platform.resources import PlatformResource
from quality_platform.warehouse import WAREHOUSE_POOL, connect


def keys_query(con: Any, sql: str, keys: Keys) -> pd.DataFrame:
    """Run ``sql`` with a registered ``_keys`` table (plant, partition_date) of the run."""
    con.register(
        "_keys", pa.table({"plant": [k[0] for k in keys], "partition_date": [k[1] for k in keys]})
    )
    try:
        return con.sql(sql).df()
    finally:
        con.unregister("_keys")


def md_table(df: pd.DataFrame, n: int = 15) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.head(n).to_markdown(index=False) if not df.empty else "_(none)_")


def pandera_result(schema: Any, df: pd.DataFrame, table: str) -> dg.AssetCheckResult:
    """Validate ``df`` lazily with a pandera schema; failure cases go into the check metadata."""
    try:
        schema.validate(df, lazy=True)
    except Exception as exc:  # pandera SchemaErrors
        cases = getattr(exc, "failure_cases", None)
        examples = (
            cases.head(15)
            if isinstance(cases, pd.DataFrame)
            else pd.DataFrame({"error": [str(exc)[:500]]})
        )
        return dg.AssetCheckResult(
            passed=False,
            description=f"pandera schema {table} violated",
            metadata={"rows": len(df), "failure_cases": md_table(examples.astype(str))},
        )
    return dg.AssetCheckResult(
        passed=True,
        description=f"{len(df)} rows match the pandera schema",
        metadata={"rows": len(df)},
    )


def warehouse_check(
    asset: str,
    name: str,
    description: str,
    body: Callable[[Any, Keys, PlatformResource], dg.AssetCheckResult],
    blocking: bool = True,
) -> dg.AssetChecksDefinition:
    """A check that reads the warehouse (read-only, in the DuckDB pool) for the run's plant-days."""

    @dg.asset_check(
        asset=asset, name=name, description=description, blocking=blocking, pool=WAREHOUSE_POOL
    )
    def _check(
        context: dg.AssetCheckExecutionContext,
        platform: PlatformResource,
        warehouse: DuckDBResource,
    ) -> dg.AssetCheckResult:
        keys = keys_of(context)
        with connect(warehouse_path(warehouse), read_only=True) as con:
            res = body(con, keys, platform)
        return res.with_metadata({**res.metadata, "partitions_checked": len(keys)})

    return _check
