"""The DuckDB warehouse: short-lived connections and idempotent partition writes.

DuckDB allows one read-write process per file, so every asset that writes here runs in the
Dagster pool ``duckdb_warehouse`` (limit 1, see dagster.yaml) and holds its connection only for
the write itself. A partition write deletes the partition's rows and inserts the new ones in one
transaction: re-materialising a partition replaces it, never duplicates it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

WAREHOUSE_POOL = "duckdb_warehouse"


class WarehouseBusyError(RuntimeError):
    """The warehouse file is held by another process (DuckDB allows one writing process, and no
    reader in another process while it writes)."""


@contextlib.contextmanager
def connect(path: Path | str, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse file for the duration of a ``with`` block. Raises
    :class:`WarehouseBusyError` with a clear message when another process holds it."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        if isinstance(exc, duckdb.IOException) and "lock" not in str(exc).lower():
            raise  # e.g. a read-only open of a file that does not exist
        raise WarehouseBusyError(
            f"the warehouse {path} cannot be opened{' read-only' if read_only else ''}: it is in use by another "
            f"process ({str(exc).splitlines()[0]}). DuckDB allows one writing process: retry when its run has "
            "finished (or stop the Dagster daemon / `dagster dev`)") from exc
    try:
        yield con
    finally:
        con.close()


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table]).fetchall()[0][0])


def key_predicate(keys: Iterable[tuple[str, dt.date]], alias: str = "") -> str:
    """SQL predicate selecting the (plant, partition_date) keys, with literals so that DuckDB can
    prune row groups by their min/max (a join against a key table cannot)."""
    by_plant: dict[str, list[dt.date]] = {}
    for plant, day in keys:
        by_plant.setdefault(plant, []).append(day)
    a = f"{alias}." if alias else ""
    parts = []
    for plant, days in sorted(by_plant.items()):
        if not plant.replace("_", "").isalnum():
            raise ValueError(f"invalid plant id {plant!r}")
        ds = sorted(set(days))
        in_list = ", ".join(f"DATE '{d.isoformat()}'" for d in ds)
        parts.append(f"({a}plant = '{plant}' AND {a}partition_date BETWEEN DATE '{ds[0]}' AND DATE '{ds[-1]}'"
                     f" AND {a}partition_date IN ({in_list}))")
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def _as_arrow(df: pd.DataFrame | pa.Table) -> pa.Table:
    return df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)


def replace_partitions(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    data: pd.DataFrame | pa.Table,
    keys: Iterable[tuple[str, dt.date]],
    ddl: str | None = None,
    in_transaction: bool = False,
) -> int:
    """Replace the rows of the given (plant, partition_date) keys by ``data``; returns rows written.

    With ``ddl`` the table is created from it; without, it is created from the data and new
    columns of later data are added (raw tables keep every source column a file ever had).
    Runs in its own transaction unless ``in_transaction`` (the caller's :func:`transaction`).
    """
    arrow = _as_arrow(data)
    keys = sorted(set(keys))
    if ddl is None and arrow.num_rows == 0 and not table_exists(con, schema, table):
        return 0  # nothing to replace, and an empty frame cannot define the column types
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    con.register("_incoming", arrow)
    try:
        with contextlib.nullcontext() if in_transaction else transaction(con):
            _replace(con, schema, table, arrow, keys, ddl)
    finally:
        con.unregister("_incoming")
    return arrow.num_rows


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction: several partition writes become visible together, or not at all."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _replace(con: duckdb.DuckDBPyConnection, schema: str, table: str, arrow: pa.Table,
             keys: list[tuple[str, dt.date]], ddl: str | None) -> None:
    if ddl is not None:
        con.execute(ddl)
    elif not table_exists(con, schema, table):
        con.execute(f'CREATE TABLE "{schema}"."{table}" AS SELECT * FROM _incoming LIMIT 0')
    else:
        existing = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema=? AND table_name=?",
            [schema, table]).fetchall()}
        for name in arrow.column_names:
            if name not in existing:
                con.execute(f'ALTER TABLE "{schema}"."{table}" ADD COLUMN "{name}" VARCHAR')
    if keys:
        con.execute(f'DELETE FROM "{schema}"."{table}" WHERE {key_predicate(keys)}')
    con.execute(f'INSERT INTO "{schema}"."{table}" BY NAME SELECT * FROM _incoming')


def read_partitions(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    keys: Iterable[tuple[str, dt.date]],
    columns: str = "*",
) -> pa.Table | None:
    """Rows of the given (plant, partition_date) keys as Arrow, or None if the table is missing."""
    if not table_exists(con, schema, table):
        return None
    return con.sql(f'SELECT {columns} FROM "{schema}"."{table}" WHERE {key_predicate(keys)}').to_arrow_table()
