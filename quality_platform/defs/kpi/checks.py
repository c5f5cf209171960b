"""Quality gates on the unified KPIs."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from quality_platform.defs._assets import warehouse_path
from quality_platform.defs._checks import keys_query, md_table
from quality_platform.defs.kpi.assets import KPI_SCHEMA
from quality_platform.partitions import keys_of
from quality_platform.warehouse import (
    WAREHOUSE_POOL,
    connect,
    table_exists,
)


def _violations(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource, table: str, where: str
) -> dg.AssetCheckResult:
    """Rows of the run's partitions of ``kpi.<table>`` that match ``where`` (none = pass). A table that
    does not exist yet (every plant-day so far had no units) has no violating rows."""
    with connect(warehouse_path(warehouse), read_only=True) as con:
        if not table_exists(con, KPI_SCHEMA, table):
            return dg.AssetCheckResult(
                passed=True, metadata={"violations": 0, "examples": md_table(pd.DataFrame())}
            )
        bad = keys_query(
            con,
            f"""SELECT * FROM {KPI_SCHEMA}.{table} t SEMI JOIN _keys k
            ON t.plant = k.plant AND t.partition_date = k.partition_date WHERE {where} LIMIT 100""",
            keys_of(context),
        )
    return dg.AssetCheckResult(
        passed=bad.empty, metadata={"violations": len(bad), "examples": md_table(bad)}
    )


def build_kpi_checks() -> list[dg.AssetChecksDefinition]:
    """KPI gates: rates are rates and counts add up; legacy differences are explained."""

    @dg.asset_check(
        asset="kpi_daily",
        name="valid_rates",
        blocking=True,
        pool=WAREHOUSE_POOL,
        description="Ratio KPIs within [0, 1] (or NULL when the denominator is 0); "
        "good + defective = inspected; defective = rework + scrap.",
    )
    def valid_rates(
        context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
    ) -> dg.AssetCheckResult:
        return _violations(
            context,
            warehouse,
            "kpi_daily",
            "(unit = 'ratio' AND (value < 0 OR value > 1)) OR good + defective <> inspected "
            "OR defective <> rework + scrap OR inspected > produced",
        )

    @dg.asset_check(
        asset="kpi_reconciliation",
        name="differences_explained",
        blocking=False,
        pool=WAREHOUSE_POOL,
        description="Every legacy figure has an explanation, and where the definitions are the same "
        "the figures agree.",
    )
    def differences_explained(
        context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
    ) -> dg.AssetCheckResult:
        return _violations(
            context,
            warehouse,
            "kpi_reconciliation",
            "explanation IS NULL OR explanation = '' OR "
            "(explanation LIKE 'same definition%' AND abs(difference_in_legacy_unit) > 1e-9)",
        )

    return [valid_rates, differences_explained]
