"""The DuckDB warehouse: short-lived connections and idempotent partition writes.

DuckDB allows one read-write process per file, so every asset that writes here runs in the
Dagster pool ``duckdb_warehouse`` (limit 1, see dagster.yaml) and holds its connection only for
the write itself. A partition write deletes the partition's rows and inserts the new ones in one
transaction: re-materialising a partition replaces it, never duplicates it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

WAREHOUSE_POOL = "duckdb_warehouse"


# How long a connection waits for another process's lock on the warehouse file. Writers (pipeline
# runs) wait long, so that governed queries (read-only, at most 30 s each) never fail a run;
# readers give up soon, so that a query never queues behind a long run.
WRITE_BUSY_TIMEOUT_S = 120.0
READ_BUSY_TIMEOUT_S = 3.0
_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 1.0
_WAIT_LOG_EVERY_S = 10.0
_HOLDER = re.compile(r"Conflicting lock is held in (?P<cmd>.*?) \(PID (?P<pid>\d+)\)")

log = logging.getLogger(__name__)


class WarehouseBusyError(RuntimeError):
    """The warehouse file is held by another process (DuckDB allows one writing process, and no
    reader in another process while it writes) for longer than the connection would wait.

    ``holder_pid`` is the process DuckDB names as the lock holder (None when it names none),
    ``waited_s`` how long the connection waited before giving up."""

    def __init__(self, message: str, holder_pid: int | None = None, waited_s: float = 0.0) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid
        self.waited_s = waited_s


def _is_lock_error(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _holder(exc: BaseException) -> tuple[int | None, str]:
    """(PID, description) of the lock holder DuckDB's error message names."""
    m = _HOLDER.search(str(exc))
    if m is None:
        return None, "another process"
    return int(m["pid"]), f"PID {m['pid']} ({m['cmd']})"


def _open(path: Path, read_only: bool, busy_timeout_s: float) -> duckdb.DuckDBPyConnection:
    """Open the file, retrying on the other process's lock with jittered exponential backoff
    (50 ms growing to 1 s) until ``busy_timeout_s`` has passed."""
    t0 = time.monotonic()
    delay = _BACKOFF_FIRST_S
    logged_at: float | None = None
    mode = "read-only" if read_only else "read-write"
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.ConnectionException as exc:
            # this process already holds the file with another configuration: waiting cannot help
            raise WarehouseBusyError(
                f"the warehouse {path} cannot be opened {mode}: this process already has it open in another "
                f"mode ({str(exc).splitlines()[0]})"
            ) from exc
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise  # e.g. a read-only open of a file that does not exist
            waited = time.monotonic() - t0
            pid, who = _holder(exc)
            if waited >= busy_timeout_s:
                raise WarehouseBusyError(
                    f"the warehouse {path} cannot be opened {mode}: it is in use by {who} and stayed locked for "
                    f"{waited:.1f} s (limit {busy_timeout_s:g} s; {str(exc).splitlines()[0]}). DuckDB allows one "
                    "writing process and no reader in another process while it writes: retry when that process "
                    "has finished",
                    holder_pid=pid,
                    waited_s=waited,
                ) from exc
            if logged_at is None or waited - logged_at >= _WAIT_LOG_EVERY_S:
                log.warning(
                    "the warehouse %s is locked by %s; waiting up to %g s to open it %s (%.1f s so far)",
                    path,
                    who,
                    busy_timeout_s,
                    mode,
                    waited,
                )
                logged_at = waited
            time.sleep(min(random.uniform(delay / 2, delay), max(busy_timeout_s - waited, 0.0)))
            delay = min(delay * 2, _BACKOFF_MAX_S)
            continue
        if logged_at is not None:
            log.info(
                "the warehouse %s is open %s after waiting %.1f s for its lock",
                path,
                mode,
                time.monotonic() - t0,
            )
        return con


@contextlib.contextmanager
def connect(
    path: Path | str, read_only: bool = False, busy_timeout_s: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse file for the duration of a ``with`` block.

    When another process holds the file's lock, the open is retried with jittered backoff for up to
    ``busy_timeout_s`` (default :data:`WRITE_BUSY_TIMEOUT_S` for writers, :data:`READ_BUSY_TIMEOUT_S`
    for ``read_only`` readers), logging whom it waits for; after that :class:`WarehouseBusyError`
    names the holder's PID. Writers thus wait for governed queries instead of failing their run,
    and readers fail soon instead of queueing behind a long run."""
    path = Path(path)
    if busy_timeout_s is None:
        busy_timeout_s = READ_BUSY_TIMEOUT_S if read_only else WRITE_BUSY_TIMEOUT_S
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only, busy_timeout_s)
    try:
        yield con
    finally:
        con.close()


def quote_ident(name: str) -> str:
    """A SQL identifier as a double-quoted DuckDB identifier, whatever characters it holds.

    The one quoting rule for every identifier that comes from data or configuration (a landing
    file's column names, a plant's field names): a name like ``x" VARCHAR; DROP ...`` stays one
    identifier, so DuckDB's multi-statement ``execute`` can never run what a file wrote."""
    if "\x00" in name:
        raise ValueError(f"identifier {name!r} contains a NUL character")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: object) -> str:
    """A SQL string literal for a value from data or configuration (single quotes doubled)."""
    text = str(value)
    if "\x00" in text:
        raise ValueError(f"literal {text!r} contains a NUL character")
    return "'" + text.replace("'", "''") + "'"


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        ).fetchall()[0][0]
    )


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
        parts.append(
            f"({a}plant = '{plant}' AND {a}partition_date BETWEEN DATE '{ds[0]}' AND DATE '{ds[-1]}'"
            f" AND {a}partition_date IN ({in_list}))"
        )
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
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    if arrow.num_columns:  # a frame with no columns at all (nothing computed) only clears keys
        con.register("_incoming", arrow)
    try:
        with contextlib.nullcontext() if in_transaction else transaction(con):
            _replace(con, schema, table, arrow, keys, ddl)
    finally:
        if arrow.num_columns:
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


def _replace(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    arrow: pa.Table,
    keys: list[tuple[str, dt.date]],
    ddl: str | None,
) -> None:
    name = f"{quote_ident(schema)}.{quote_ident(table)}"
    if ddl is not None:
        con.execute(ddl)
    elif not table_exists(con, schema, table):
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM _incoming LIMIT 0")
    elif arrow.num_columns:
        existing = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema=? AND table_name=?",
                [schema, table],
            ).fetchall()
        }
        for col in arrow.column_names:
            if col not in existing:
                con.execute(f"ALTER TABLE {name} ADD COLUMN {quote_ident(col)} VARCHAR")
    if keys:
        con.execute(f"DELETE FROM {name} WHERE {key_predicate(keys)}")
    if arrow.num_rows:  # an empty result (e.g. a day without units) only clears the partitions
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _incoming")


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
    return con.sql(
        f"SELECT {columns} FROM {quote_ident(schema)}.{quote_ident(table)} "
        f"WHERE {key_predicate(keys)}"
    ).to_arrow_table()
