"""Governed queries (F10): SQL over the warehouse as a policy user, with row filters, column masks
and a session that SQL cannot escape.

How a governed session is built (:class:`GovernedSession`):

1. An in-memory DuckDB database. The warehouse file is ATTACHed ``READ_ONLY`` under a random alias
   (the alias is never needed by, nor usable from, user SQL).
2. For every warehouse table the user's role may read (:func:`~quality_platform.governance.policy.readable`;
   ``schema.*`` patterns expand against the tables that exist) a VIEW with the *same* qualified name
   (``raw.plant_a__units``, ``standard.production_units``, ...) is created in the in-memory database.
   The view applies

   * the row filter: every table with a ``plant`` column keeps only the rows of the user's
     ``plants`` attribute (``["*"]`` = all; a plant manager sees only their own plant; rows
     without a plant, e.g. global audit records, only for users of all plants);
   * the column masks of the policy (``masks``: ``redact`` -> ``'***'``, ``null`` -> NULL);
   * personal data of the raw layer: the columns each plant declares as ``personal_data``
     (``data/plants/*.yaml``) are replaced by their keyed pseudonym (the same HMAC as
     ``standard.production_units.operator_pseudonym``, computed by a private UDF with the
     installation's key) for the roles that see that column in clear, and masked like it for
     everyone else; ``raw.parse_issues.line_text`` of a plant with personal data is redacted
     (unless its stream's raw table has no personal column) and its ``value`` treated like a
     personal column when it comes from one. The raw id never leaves the session (only
     ``qp reidentify`` returns it, audited).
3. ``governance.*`` tables, loaded into memory (only those the role may read, each when a query
   first names it or :meth:`~GovernedSession.tables` lists them; same row filter): ``audit_log``
   (refs as JSON text), ``alerts``, ``model_versions`` (MLflow registry) and ``incidents``.
4. Lock-down: the policy's ``query_limits`` (``memory_limit`` = ``max_memory`` with no spilling to
   disk, ``threads`` = ``max_threads``), ``enable_external_access=false`` (no file, network or
   ATTACH), no extension install or autoload, no community extensions, no Python replacement
   scans, and ``lock_configuration=true`` (no setting can be changed afterwards).
5. Every user statement is checked before it runs (:func:`check_sql`): exactly one statement, of
   type SELECT; its parsed tree (``json_serialize_sql``) nests at most ``max_nesting_depth``
   levels (measured on its text, so a deep query is refused, never a ``RecursionError``), may
   reference only the views above (or its own CTEs), no catalog-qualified names, only a few table
   functions (``range``, ``generate_series``, ``unnest``) and none of the functions that read
   files, settings, the catalog, view definitions or statistics, wait, or run SQL text
   (``read_*``, ``glob``, ``query``, ``query_table``, ``getenv``, ``duckdb_*``, ``pragma_*``,
   ``pg_get_viewdef``, ``stats``, ``pg_sleep``, ..., and every macro that expands to one of them:
   :func:`denied_macros`).
6. While it runs: interrupted after ``max_seconds`` (rule ``time_limit``); DuckDB running out of
   its memory limit, or a result larger than ``max_memory``, refuses it (rule ``memory_limit``);
   at most ``max_rows`` rows are kept (all are counted).

Every query is audited (action ``query``): user, role, SHA-256 of the query text (never the text),
tables touched, rows returned, and the outcome ``ok`` / ``denied`` (with the rule that refused
it, including the limits above) / ``failed`` (the SQL error).

Results shown as text or CSV go through :func:`safe_frame`: no cell starts a spreadsheet formula
and no control character or terminal escape sequence reaches the screen.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from quality_platform.governance.policy import (
    Policy,
    PolicyError,
    Principal,
    QueryLimits,
    authorize,
    column_mask,
    load_policy,
    readable,
)
from quality_platform.settings import Paths, get_paths
from quality_platform.warehouse import quote_ident as _ident
from quality_platform.warehouse import quote_literal as _literal

if TYPE_CHECKING:
    from quality_platform.audit import AuditLog

#: Schemas of the warehouse that governed sessions expose (when the role may read them).
WAREHOUSE_SCHEMAS: tuple[str, ...] = ("raw", "standard", "kpi", "features", "ml")
#: In-memory governance tables (loaded when the role may read them).
GOVERNANCE_TABLES: tuple[str, ...] = ("audit_log", "alerts", "model_versions", "incidents")
#: Table functions user SQL may call (they read no catalog object, file or setting).
ALLOWED_TABLE_FUNCTIONS: frozenset[str] = frozenset({"range", "generate_series", "unnest"})
#: Functions user SQL may never call (file/network access, settings, catalog metadata, SQL text).
DENIED_FUNCTIONS: frozenset[str] = frozenset(
    {
        "getenv",
        "current_setting",
        "getvariable",
        "query",
        "query_table",
        "glob",
        "sniff_csv",
        "sql_auto_complete",
        "json_serialize_sql",
        "json_deserialize_sql",
        "json_serialize_plan",
        "json_execute_serialized_sql",
        "which_secret",
        "checkpoint",
        "force_checkpoint",
        "current_database",
        "current_catalog",
        "current_schema",
        "current_schemas",
        "load_extension",
        "install_extension",
        "test_all_types",
        "test_vector_types",
        # catalog metadata behind built-in macros: view and constraint definitions (the masking SQL and
        # the warehouse's hidden alias), database sizes, the type catalog
        "pg_get_viewdef",
        "pg_get_constraintdef",
        "pg_get_expr",
        "get_block_size",
        "format_type",
        # statistics of the column under a view: min/max of rows the row filter hides
        "stats",
        # waiting and side effects
        "pg_sleep",
        "sleep_ms",
        "write_log",
    }
)
_UDF_PREFIX = "qp_private_"
DENIED_FUNCTION_PREFIXES: tuple[str, ...] = (
    "read_",
    "duckdb_",
    "pragma_",
    "parquet_",
    "iceberg_",
    "delta_",
    "sqlite_",
    "postgres_",
    "mysql_",
    "json_execute",
    _UDF_PREFIX,
)
REDACTED = "***"
_IDENT_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class QueryDenied(PolicyError):
    """A governed query refused by a rule of the session (the message names the rule); audited.

    ``audit_reason`` is what the audit log records: the message without text copied from the
    query (a user may type anything into a query, even a raw id; the log keeps only its hash)."""

    def __init__(self, message: str, rule: str, audit_reason: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.audit_reason = audit_reason or message


class QueryFailed(RuntimeError):
    """A governed query that passed the checks but failed in DuckDB (e.g. a column that does not exist)."""


@dataclass
class QueryResult:
    """The result of one governed query.

    ``frame`` holds at most ``max_rows`` rows (``truncated`` says when more were returned);
    ``row_count`` is the number of rows the query returned in total; ``tables`` the views it read
    (``schema.table``); ``query_sha256`` is the hash that the audit record carries."""

    columns: list[str]
    frame: pd.DataFrame
    row_count: int
    tables: list[str]
    user: str
    role: str
    query_sha256: str
    seconds: float
    truncated: bool = False
    audit_seq: int | None = None

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        return list(self.frame.itertuples(index=False, name=None))

    def records(self) -> list[dict[str, Any]]:
        """Rows as JSON-safe dicts (dates and timestamps as ISO text)."""
        if self.frame.empty:
            return []
        return json.loads(
            self.frame.to_json(orient="records", date_format="iso", default_handler=str)
        )

    def metadata(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "role": self.role,
            "columns": self.columns,
            "row_count": self.row_count,
            "rows_shown": len(self.frame),
            "truncated": self.truncated,
            "tables": self.tables,
            "query_sha256": self.query_sha256,
            "seconds": round(self.seconds, 3),
            "audit_seq": self.audit_seq,
        }


@dataclass(frozen=True)
class ViewInfo:
    """One table a governed session exposes: its name, columns, and the filters/masks applied."""

    schema: str
    table: str
    columns: tuple[str, ...]
    row_filter: str | None = None
    masked: dict[str, str] = field(default_factory=dict)  # column -> redact | null | pseudonym

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


def query_sha256(sql: str) -> str:
    return hashlib.sha256(sql.encode("utf-8")).hexdigest()


def _plant_filter(who: Principal) -> str | None:
    if who.plants is None:
        return None
    if not who.plants:
        return "FALSE"
    return "plant IN (" + ", ".join(_literal(p) for p in sorted(who.plants)) + ")"


# --------------------------------------------------------------------------- SQL check


@dataclass
class _Check:
    allowed: dict[str, str]  # lower-case schema.table -> canonical name
    known: set[str]  # lower-case schema.table of every table of the installation
    reserved: set[str]  # lower-case names a CTE may not take (catalog objects)
    role: str
    denied: frozenset[str] = frozenset()  # further functions of this session (see denied_macros)
    touched: set[str] = field(default_factory=set)

    def deny(self, message: str, rule: str, audit_reason: str | None = None) -> QueryDenied:
        return QueryDenied(message, rule, audit_reason)

    def base_table(self, node: dict[str, Any], ctes: frozenset[str]) -> None:
        catalog = str(node.get("catalog_name") or "")
        schema = str(node.get("schema_name") or "")
        table = str(node.get("table_name") or "")
        shown = ".".join(p for p in (catalog, schema, table) if p)
        if catalog and catalog.lower() != "memory":
            raise self.deny(
                f"catalog-qualified name {shown!r} is not allowed in a governed session: "
                "name tables as schema.table",
                "catalog_prefix",
                "a catalog-qualified name is not allowed in a governed session",
            )
        if not schema:
            if table.lower() in ctes:
                return
            raise self.deny(
                f"table {table!r} is not readable by role {self.role}: name tables as schema.table "
                f"(readable: {', '.join(sorted(self.allowed.values())) or 'none'})",
                "unknown_table",
                f"an unqualified name that is not a table readable by role {self.role}",
            )
        key = f"{schema.lower()}.{table.lower()}"
        if key in self.allowed:
            self.touched.add(self.allowed[key])
            return
        if key in self.known:
            raise self.deny(
                f"table {schema}.{table} is not readable by role {self.role}", "table_not_readable"
            )
        raise self.deny(
            f"table {shown!r} does not exist or is not readable by role {self.role} "
            f"(readable: {', '.join(sorted(self.allowed.values())) or 'none'})",
            "unknown_table",
            f"a table that does not exist or is not readable by role {self.role}",
        )

    def function(self, node: dict[str, Any], table_function: bool) -> None:
        name = str(node.get("function_name") or "").lower()
        if node.get("catalog") or node.get("schema"):
            qual = ".".join(p for p in (node.get("catalog"), node.get("schema"), name) if p)
            raise self.deny(
                f"qualified function name {qual!r} is not allowed in a governed session",
                "qualified_function",
                "a qualified function name is not allowed in a governed session",
            )
        refused = name in DENIED_FUNCTIONS or name in self.denied
        safe = name if refused or _plain_identifier(name) else "(a function)"
        if refused or name.startswith(DENIED_FUNCTION_PREFIXES):
            raise self.deny(
                f"function {name} is not allowed in a governed session",
                "function_not_allowed",
                f"function {safe} is not allowed in a governed session",
            )
        if table_function and name not in ALLOWED_TABLE_FUNCTIONS:
            raise self.deny(
                f"table function {name} is not allowed in a governed session (allowed: "
                f"{', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))})",
                "function_not_allowed",
                f"table function {safe} is not allowed in a governed session",
            )

    def walk(self, node: Any, ctes: frozenset[str]) -> None:
        if isinstance(node, list):
            for item in node:
                self.walk(item, ctes)
            return
        if not isinstance(node, dict):
            return
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict) and cte_map.get("map"):
            names = []
            for entry in cte_map["map"]:
                name = str(entry.get("key", "")).lower()
                if name in self.reserved:
                    raise self.deny(
                        f"CTE name {entry.get('key')!r} shadows a catalog object: choose another name",
                        "cte_shadowing",
                    )
                names.append(name)
            ctes = ctes | frozenset(names)
        kind = node.get("type")
        if kind == "BASE_TABLE":
            self.base_table(node, ctes)
        elif kind == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            if fn.get("class") != "FUNCTION":
                raise self.deny(
                    "this table function call is not allowed in a governed session",
                    "function_not_allowed",
                )
            self.function(fn, table_function=True)
            self.walk(fn.get("arguments"), ctes)
            return
        elif kind == "SHOW_REF":
            show = node.get("show_type")
            if show not in ("DESCRIBE", "SUMMARY") or node.get("query") is None:
                raise self.deny(
                    "SHOW is not allowed in a governed session: list your tables with "
                    "`qp query --tables`",
                    "statement_not_allowed",
                )
        elif node.get("class") == "FUNCTION":
            self.function(node, table_function=False)
        for value in node.values():
            if isinstance(value, dict | list):
                self.walk(value, ctes)


def _plain_identifier(name: str) -> bool:
    return (
        name.replace("_", "").isalnum() and len(name) <= 40 and not any(ch.isdigit() for ch in name)
    )


def _denied_name(name: str, denied: frozenset[str]) -> bool:
    return name in DENIED_FUNCTIONS or name in denied or name.startswith(DENIED_FUNCTION_PREFIXES)


def denied_macros(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The scalar macros of ``con`` (built-in or not) whose definition calls a denied function,
    directly or through another such macro - e.g. ``pg_get_viewdef`` (``duckdb_views()``) or
    ``pg_sleep`` (``sleep_ms``): the check sees a macro's name only, not what it expands to.
    (Table macros need no list: only :data:`ALLOWED_TABLE_FUNCTIONS` may be called as tables.)"""
    macros: dict[str, set[str]] = {}
    for name, definition in con.execute(
        "SELECT function_name, macro_definition FROM duckdb_functions() "
        "WHERE function_type = 'macro' AND macro_definition IS NOT NULL"
    ).fetchall():
        macros.setdefault(name.lower(), set()).update(
            m.lower() for m in _IDENT_CALL.findall(definition)
        )
    denied: set[str] = set()
    while True:
        more = {
            n
            for n, calls in macros.items()
            if n not in denied and any(_denied_name(c, frozenset(denied)) for c in calls)
        }
        if not more:
            return frozenset(denied)
        denied |= more


def tree_depth(serialized: str) -> int:
    """How deeply the JSON text ``serialized`` nests (objects and arrays), found without recursion."""
    depth = deepest = 0
    for token in _JSON_TOKEN.finditer(serialized):
        c = token.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _too_deep(max_depth: int, depth: int | None = None) -> QueryDenied:
    got = f" ({depth} levels)" if depth is not None else ""
    return QueryDenied(
        f"the query nests too deeply{got}: the policy allows {max_depth} levels of the parsed query "
        "(query_limits.max_nesting_depth); flatten nested subqueries or expressions",
        "nesting_depth",
    )


def check_sql(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    *,
    allowed: dict[str, str],
    known: set[str],
    reserved: set[str],
    role: str,
    denied: frozenset[str] = frozenset(),
    max_depth: int = QueryLimits().max_nesting_depth,
) -> tuple[str, list[str]]:
    """The single SELECT statement of ``sql`` (text to execute) and the tables it reads, or
    :class:`QueryDenied` naming the rule it breaks. ``denied`` are functions refused on top of
    :data:`DENIED_FUNCTIONS`; ``max_depth`` bounds the nesting of the parsed tree (checked on its
    text, before it is decoded: deeper trees are refused, never a ``RecursionError``)."""
    if not sql.strip():
        raise QueryDenied("the query is empty", "empty")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryDenied(
            f"the query does not parse: {str(exc).splitlines()[0]}",
            "parse_error",
            "the query does not parse",
        ) from None
    if not statements:
        raise QueryDenied("the query is empty", "empty")
    types = [str(s.type).rsplit(".", 1)[-1] for s in statements]
    bad = [t for t in types if t != "SELECT"]
    if bad:
        raise QueryDenied(
            f"{bad[0]} is not allowed in a governed session: only SELECT statements may run",
            "statement_not_allowed",
        )
    if len(statements) > 1:
        raise QueryDenied(
            f"one statement per governed query (got {len(statements)})", "multiple_statements"
        )
    text = statements[0].query
    serialized = con.execute("SELECT json_serialize_sql(?)", [text]).fetchall()[0][0]
    depth = tree_depth(serialized)
    if depth > max_depth:
        raise _too_deep(max_depth, depth)
    check = _Check(allowed=allowed, known=known, reserved=reserved, role=role, denied=denied)
    try:
        tree = json.loads(serialized)
        if tree.get("error"):
            raise QueryDenied(
                f"the query cannot be checked ({tree.get('error_message', 'not a SELECT')}): "
                "only SELECT statements may run",
                "statement_not_allowed",
            )
        for st in tree.get("statements", []):
            check.walk(st, frozenset())
    except (
        RecursionError
    ):  # pragma: no cover - max_nesting_depth is bounded well below the recursion limit
        raise _too_deep(max_depth) from None
    return text, sorted(check.touched)


# --------------------------------------------------------------------------- the session


def _audit_log(paths: Paths) -> pd.DataFrame:
    from quality_platform.audit import AuditLog, audit_db_path

    df = AuditLog(audit_db_path(paths)).frame()
    df["refs"] = [json.dumps(r, sort_keys=True, default=str) for r in df["refs"]]
    return df


def _alerts(paths: Paths) -> pd.DataFrame:
    from quality_platform.alerts import read_alerts

    cols = ["ts_utc", "kind", "severity", "plant", "summary", "delivered", "details"]
    recs = [
        {
            "ts_utc": a.get("ts_utc"),
            "kind": a.get("kind"),
            "severity": a.get("severity"),
            "plant": a.get("plant"),
            "summary": a.get("summary"),
            "delivered": a.get("delivered", True),
            "details": json.dumps(a.get("details", {}), sort_keys=True, default=str),
        }
        for a in read_alerts(paths)
    ]
    return pd.DataFrame(recs, columns=cols).astype(
        {
            "ts_utc": "string",
            "kind": "string",
            "severity": "string",
            "plant": "string",
            "summary": "string",
            "delivered": "boolean",
            "details": "string",
        }
    )


def _incidents(paths: Paths) -> pd.DataFrame:
    from quality_platform.governance.incident_store import incidents_frame

    return incidents_frame(paths)


def _model_versions(paths: Paths) -> pd.DataFrame:
    from quality_platform.ml.config import load_model_config
    from quality_platform.ml.registry import ModelRegistry

    cols = [
        "version",
        "aliases",
        "status",
        "gate",
        "approval",
        "approved_by",
        "trained_by",
        "data_hash",
        "plants",
        "created_utc",
    ]
    reg = ModelRegistry(load_model_config(paths), paths)
    rows = [
        {
            "version": v.version,
            "aliases": ",".join(v.aliases),
            "status": v.status,
            "gate": v.gate,
            "approval": v.approval,
            "approved_by": v.tag("approved_by"),
            "trained_by": v.tag("trained_by"),
            "data_hash": v.tag("data_hash"),
            "plants": ",".join(sorted(v.partitions)),
            "created_utc": pd.Timestamp(v.created_ms, unit="ms"),
        }
        for v in reg.versions()
    ]
    df = pd.DataFrame(rows, columns=cols)
    return df.astype({c: "string" for c in cols if c != "created_utc"}).astype(
        {"created_utc": "datetime64[ns]"}
    )


#: How each in-memory governance table is read (when a query of a role that may read it names it).
_GOVERNANCE_FRAMES: dict[str, Callable[[Paths], pd.DataFrame]] = {
    "audit_log": _audit_log,
    "alerts": _alerts,
    "model_versions": _model_versions,
    "incidents": _incidents,
}


class GovernedSession:
    """A locked-down DuckDB session for one policy user (use as a context manager).

    ``paths``/``policy``/``audit`` default to the installation's. Views are built on
    entry, governance tables when a query names them; :meth:`query` runs one checked, audited
    SELECT. The policy's ``query_limits`` bound every query; ``max_rows`` and ``timeout_s`` may
    only lower them."""

    def __init__(
        self,
        who: Principal,
        *,
        paths: Paths | None = None,
        audit: AuditLog | None = None,
        policy: Policy | None = None,
        max_rows: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        from quality_platform.audit import AuditLog, audit_db_path

        self.paths = paths or get_paths()
        self.policy = policy or load_policy(self.paths)
        self.audit = audit or AuditLog(audit_db_path(self.paths))
        self.who = who
        self.limits: QueryLimits = self.policy.query_limits
        self.max_rows = min(
            self.limits.max_rows, max_rows if max_rows is not None else self.limits.max_rows
        )
        self.timeout_s = min(
            self.limits.max_seconds, timeout_s if timeout_s is not None else self.limits.max_seconds
        )
        self._denied: frozenset[str] = (
            frozenset()
        )  # macros that expand to denied functions (denied_macros)
        self.views: dict[str, ViewInfo] = {}
        self._known: set[str] = set()
        self._reserved: set[str] = set()
        self._governance: list[
            str
        ] = []  # the governance tables the role may read (loaded when named)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._authorized = False
        self._alias = ""  # the warehouse's random catalog alias (never usable from user SQL)
        self._udf = ""  # the private pseudonym function (never callable from user SQL)

    # ------------------------------------------------------------------ set-up

    def __enter__(self) -> GovernedSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def open(self) -> None:
        """Build the views and tables the role may read, then lock the session down."""
        if self._con is not None:
            return
        if not self._authorized:  # the role must hold the `query` action (a refusal is audited)
            authorize(
                self.policy,
                self.who,
                "query",
                self.audit,
                subject="query:session",
                refs={"role": self.who.role, "via": self.who.via},
            )
            self._authorized = True
        con = duckdb.connect(":memory:")
        try:
            self._build(con)
            self._denied = denied_macros(con)
            self._lock(con, self.limits)
        except BaseException:
            con.close()
            raise
        self._con = con

    def _build(self, con: duckdb.DuckDBPyConnection) -> None:
        role, plant_filter = self.who.role, _plant_filter(self.who)
        warehouse = Path(self.paths.warehouse_path)
        alias = self._alias = "wh_" + secrets.token_hex(8)
        columns: dict[
            tuple[str, str], list[tuple[str, str]]
        ] = {}  # (schema, table) -> (column, type)
        if warehouse.exists():
            try:
                con.execute(f"ATTACH {_literal(str(warehouse))} AS {alias} (READ_ONLY)")
            except duckdb.IOException as exc:  # another process holds the write lock
                raise QueryFailed(
                    f"the warehouse {warehouse} cannot be opened read-only now: "
                    f"{str(exc).splitlines()[0]} (DuckDB allows no reader in another process while a "
                    "pipeline run writes it; try again when the run has finished)"
                ) from None
            for s, t, c, d in con.execute(
                "SELECT c.schema_name, c.table_name, c.column_name, c.data_type FROM duckdb_columns() c "
                "JOIN duckdb_tables() t USING (database_name, schema_name, table_name) WHERE c.database_name = ? "
                "ORDER BY 1, 2, c.column_index",
                [alias],
            ).fetchall():
                if s in WAREHOUSE_SCHEMAS:
                    columns.setdefault((s, t), []).append((c, d))
        tables = list(columns)
        self._known = {f"{s}.{t}".lower() for s, t in tables} | {
            f"governance.{t}" for t in GOVERNANCE_TABLES
        }
        udf = None
        personal: dict[
            str, list[str]
        ] = {}  # plant id -> its personal_data columns (data/plants/*.yaml)
        raw_personal: dict[str, list[str]] = {}  # raw table -> the personal columns it has
        if any(s == "raw" and readable(self.policy, role, s, t) for s, t in tables):
            from quality_platform.config import load_plants
            from quality_platform.privacy import raw_personal_columns

            personal = {pid: list(p.personal_data) for pid, p in load_plants(self.paths).items()}
            raw_personal = raw_personal_columns(con, personal, catalog=alias)
        if any(personal.values()):
            from quality_platform.privacy import load_key, pseudonym

            key = load_key()
            udf = self._udf = _UDF_PREFIX + secrets.token_hex(6)

            def _pseudo(value: str | None) -> str | None:
                return None if value is None or value == "" else pseudonym(value, key)

            con.create_function(
                udf, _pseudo, ["VARCHAR"], "VARCHAR", null_handling="special", side_effects=False
            )
        # plant -> streams whose raw table exists and has none of the plant's personal columns (all raw
        # tables, readable or not: the lines of broken records in raw.parse_issues may hold personal data)
        clean_streams: dict[str, set[str]] = {}
        for table, cols_here in raw_personal.items():
            if not cols_here:
                plant, stream = table.split("__", 1)
                clean_streams.setdefault(plant, set()).add(stream)
        for (schema, table), cols in columns.items():
            if not readable(self.policy, role, schema, table):
                continue
            names = [c for c, _ in cols]
            plant_personal = set(raw_personal.get(table, [])) if schema == "raw" else set()
            select, masked = [], {}
            for col, dtype in cols:
                expr = _ident(col)
                mask = column_mask(self.policy, role, schema, table, col)
                if col in plant_personal:
                    expr, masked[col] = self._personal_expr(_ident(col), udf)
                elif mask == "redact":
                    expr, masked[col] = (
                        f"CASE WHEN {_ident(col)} IS NULL THEN NULL ELSE '{REDACTED}' END",
                        mask,
                    )
                elif mask == "null":
                    expr, masked[col] = f"CAST(NULL AS {dtype})", mask
                select.append(f"{expr} AS {_ident(col)}")
            where = plant_filter if plant_filter and "plant" in names else None
            self.views[f"{schema}.{table}"] = ViewInfo(schema, table, tuple(names), where, masked)
            self._view_sql(
                con, schema, table, select, f"{alias}.{_ident(schema)}.{_ident(table)}", where
            )
        # parse issues: the raw line of a record of a plant with personal data is redacted unless its
        # stream is known to carry no personal column; values of personal columns are pseudonymised
        if "raw.parse_issues" in self.views:
            self._parse_issues_view(con, alias, personal, clean_streams, udf, plant_filter)
        # governance tables are read when a query names them (:meth:`_load_governance`), not here
        self._governance = [
            t for t in GOVERNANCE_TABLES if readable(self.policy, role, "governance", t)
        ]
        if self._governance:
            con.execute("CREATE SCHEMA IF NOT EXISTS governance")
        # names a CTE may not take: every catalog object the session can resolve without a prefix
        self._reserved = {
            r[0].lower()
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views()"
            ).fetchall()
        }
        self._reserved |= set(self._governance)

    def _load_governance(self, names: list[str]) -> None:
        """Load the governance tables ``names`` (those the role may read and not loaded yet) into the
        session, with the user's plant filter."""
        con = self._con
        assert con is not None
        plant_filter = _plant_filter(self.who)
        for name in names:
            if name not in self._governance or f"governance.{name}" in self.views:
                continue
            df = _GOVERNANCE_FRAMES[name](self.paths)
            con.register("_qp_frame", df)
            where = plant_filter if plant_filter and "plant" in df.columns else None
            con.execute(
                f"CREATE TABLE governance.{name} AS SELECT * FROM _qp_frame"
                + (f" WHERE {where}" if where else "")
            )
            con.unregister("_qp_frame")
            self.views[f"governance.{name}"] = ViewInfo(
                "governance", name, tuple(df.columns), where, {}
            )

    def _view_sql(
        self,
        con: duckdb.DuckDBPyConnection,
        schema: str,
        table: str,
        select: list[str],
        source: str,
        where: str | None,
    ) -> None:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
        con.execute(
            f"CREATE OR REPLACE VIEW {_ident(schema)}.{_ident(table)} AS SELECT {', '.join(select)} "
            f"FROM {source}" + (f" WHERE {where}" if where else "")
        )

    def _parse_issues_view(
        self,
        con: duckdb.DuckDBPyConnection,
        alias: str,
        personal: dict[str, list[str]],
        clean: dict[str, set[str]],
        udf: str | None,
        where: str | None,
    ) -> None:
        info = self.views["raw.parse_issues"]
        plants = sorted(p for p, cs in personal.items() if cs)
        cols = [f"{p}:{c}" for p, cs in sorted(personal.items()) for c in cs]
        select = []
        for col in info.columns:
            expr = _ident(col)
            if col == "line_text" and plants:
                ok = [
                    f"(plant = {_literal(p)} AND stream IN ({', '.join(map(_literal, sorted(clean[p])))}))"
                    for p in plants
                    if clean.get(p)
                ]
                expr = (
                    f"CASE WHEN line_text IS NOT NULL AND plant IN ({', '.join(map(_literal, plants))})"
                    + (f" AND NOT ({' OR '.join(ok)})" if ok else "")
                    + f" THEN '{REDACTED}' ELSE line_text END"
                )
            elif col == "value" and cols and udf:
                shown = self._personal_expr("value", udf)[0]
                expr = (
                    f"CASE WHEN plant || ':' || coalesce(source_column, '') IN ({', '.join(map(_literal, cols))})"
                    f" THEN {shown} ELSE value END"
                )
            select.append(f"{expr} AS {_ident(col)}")
        masked = {
            **info.masked,
            "line_text": "redact (streams with personal data)",
            "value": f"{self._personal_expr('value', udf)[1]} (personal columns)",
        }
        self.views["raw.parse_issues"] = ViewInfo(
            info.schema, info.table, info.columns, info.row_filter, masked
        )
        self._view_sql(con, "raw", "parse_issues", select, f"{alias}.raw.parse_issues", where)

    def _personal_expr(self, col_sql: str, udf: str | None) -> tuple[str, str]:
        """How a raw personal value is shown: its keyed pseudonym to the roles that may see operator
        pseudonyms in clear (the mask of ``standard.production_units.operator_pseudonym``), masked
        like that column for everyone else. Never the raw value."""
        mask = column_mask(
            self.policy, self.who.role, "standard", "production_units", "operator_pseudonym"
        )
        if mask is None and udf:
            return f"{udf}(CAST({col_sql} AS VARCHAR))", "pseudonym"
        if mask == "null":
            return "CAST(NULL AS VARCHAR)", "null"
        return f"CASE WHEN {col_sql} IS NULL THEN NULL ELSE '{REDACTED}' END", "redact"

    @staticmethod
    def _lock(con: duckdb.DuckDBPyConnection, limits: QueryLimits) -> None:
        """The policy's memory and thread limits (no spilling to disk: the memory limit is hard), then
        no external access, no extensions, and no setting changeable afterwards."""
        settings = {r[0] for r in con.execute("SELECT name FROM duckdb_settings()").fetchall()}
        for name, value in (
            ("memory_limit", _literal(limits.max_memory)),
            ("threads", str(limits.max_threads)),
            ("temp_directory", "''"),
            ("enable_external_access", "false"),
            ("autoinstall_known_extensions", "false"),
            ("autoload_known_extensions", "false"),
            ("allow_community_extensions", "false"),
            ("allow_unsigned_extensions", "false"),
            ("python_enable_replacements", "false"),
            ("lock_configuration", "true"),
        ):
            if name in settings:
                con.execute(f"SET {name} = {value}")
        if "lock_configuration" not in settings:  # pragma: no cover - every supported DuckDB has it
            raise RuntimeError(
                "this DuckDB cannot lock its configuration: governed queries are unavailable"
            )

    # ------------------------------------------------------------------ queries

    def tables(self) -> list[dict[str, Any]]:
        """The tables this session exposes, with their row filter and masked columns."""
        if self._con is not None:
            self._load_governance(self._governance)
        return [
            {
                "table": v.name,
                "columns": list(v.columns),
                "row_filter": v.row_filter,
                "masked": v.masked,
            }
            for v in sorted(self.views.values(), key=lambda v: v.name)
        ]

    def _limit_breached(self, exc: BaseException, timed_out: bool) -> QueryDenied | None:
        """The query limit that ``exc`` (raised while the query ran) says was breached, or None
        (an ordinary SQL error). An interrupt counts only when this session's timer sent it."""
        lim = self.limits
        if timed_out and isinstance(exc, duckdb.InterruptException | OSError | RuntimeError):
            return QueryDenied(
                f"the query ran longer than the policy's limit of {self.timeout_s:g} s "
                "(query_limits.max_seconds) and was interrupted",
                "time_limit",
            )
        if isinstance(exc, duckdb.OutOfMemoryException | MemoryError | _ResultTooLarge) or (
            isinstance(exc, OSError) and "Out of Memory" in str(exc)
        ):
            where = "its result" if isinstance(exc, _ResultTooLarge) else "it"
            return QueryDenied(
                f"the query needs more memory than the policy's limit of {lim.max_memory} "
                f"(query_limits.max_memory: {where} did not fit); aggregate or filter more, "
                "or select fewer or smaller columns",
                "memory_limit",
            )
        return None

    def query(self, sql: str) -> QueryResult:
        """Run one SELECT as the session's user; audited whatever the outcome."""
        if self._con is None:
            self.open()
        con = self._con
        assert con is not None
        who, digest = self.who, query_sha256(sql)
        refs: dict[str, Any] = {"role": who.role, "via": who.via, "query_sha256": digest}
        subject = f"query:{digest[:16]}"
        allowed = {
            name.lower(): name
            for name in [*self.views, *(f"governance.{t}" for t in self._governance)]
        }

        def deny(exc: QueryDenied, tables: list[str]) -> QueryDenied:
            self.audit.append(
                "query",
                who.name,
                subject=subject,
                outcome="denied",
                reason=exc.audit_reason,
                refs={
                    **refs,
                    "tables": tables,
                    "denied_because": exc.audit_reason,
                    "rule": exc.rule,
                },
            )
            return exc

        try:
            text, touched = check_sql(
                con,
                sql,
                allowed=allowed,
                known=self._known,
                reserved=self._reserved,
                role=who.role,
                denied=self._denied,
                max_depth=self.limits.max_nesting_depth,
            )
        except QueryDenied as exc:
            raise deny(exc, []) from None
        self._load_governance([t.split(".", 1)[1] for t in touched if t.startswith("governance.")])
        t0 = time.perf_counter()
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            con.interrupt()

        timer = threading.Timer(self.timeout_s, stop)
        timer.start()
        try:
            frame, total = _fetch(con, text, self.max_rows, self.limits.memory_bytes)
        except (duckdb.Error, RuntimeError, OSError, MemoryError, _ResultTooLarge) as exc:
            timer.cancel()
            limit = self._limit_breached(exc, timed_out.is_set())
            if limit is not None:
                raise deny(limit, touched) from None
            msg = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
            # the audit keeps the kind of error only: DuckDB messages may quote literals of the query
            kind = msg.split(":", 1)[0] if ":" in msg[:40] else type(exc).__name__
            self.audit.append(
                "query",
                who.name,
                subject=subject,
                outcome="failed",
                reason=f"query failed: {kind}",
                refs={**refs, "tables": touched, "error": kind},
            )
            raise QueryFailed(msg) from None
        finally:
            timer.cancel()
        secs = time.perf_counter() - t0
        rec = self.audit.append(
            "query",
            who.name,
            subject=subject,
            outcome="ok",
            reason=f"governed query by {who.name} ({who.role}): {total} rows",
            refs={
                **refs,
                "tables": touched,
                "rows": total,
                "seconds": round(secs, 3),
                "truncated": len(frame) < total,
            },
        )
        return QueryResult(
            columns=list(frame.columns),
            frame=frame,
            row_count=total,
            tables=touched,
            user=who.name,
            role=who.role,
            query_sha256=digest,
            seconds=secs,
            truncated=len(frame) < total,
            audit_seq=getattr(rec, "seq", None),
        )


class _ResultTooLarge(Exception):
    """The rows a query returns would take more memory than the policy allows."""


def _fetch(
    con: duckdb.DuckDBPyConnection, sql: str, max_rows: int, max_bytes: int | None = None
) -> tuple[pd.DataFrame, int]:
    """Run ``sql``; keep at most ``max_rows`` rows (at most ``max_bytes`` of Arrow data), count them all."""
    import pyarrow as pa

    reader = con.sql(sql).to_arrow_reader(min(max(max_rows, 1), 100_000))
    kept: list[pa.RecordBatch] = []
    total = n_kept = n_bytes = 0
    try:
        for batch in _batches(reader):
            total += batch.num_rows
            if n_kept < max_rows:
                part = batch.slice(0, max_rows - n_kept)
                n_bytes += part.nbytes
                if max_bytes is not None and n_bytes > max_bytes:
                    raise _ResultTooLarge(f"{n_bytes} bytes kept")
                kept.append(part)
                n_kept += part.num_rows
    finally:
        reader.close()  # a result left open (refused or interrupted half-way) blocks the connection
    table = pa.Table.from_batches(kept, schema=reader.schema)
    return table.to_pandas(), total


def _batches(reader: Any) -> Iterator[Any]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


#: Characters that make a spreadsheet read a CSV cell as a formula (OWASP CSV injection).
FORMULA_START: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
#: C0 and C1 control characters, DEL, and the Unicode bidirectional overrides and isolates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def _visible(ch: str) -> str:
    code = ord(ch)
    return _NAMED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def safe_text(value: str) -> str:
    """``value`` safe for a terminal and a spreadsheet: a leading ``= + - @`` tab or carriage return
    gets a ``'`` in front (so a spreadsheet shows it as text), and every control character (C0,
    DEL, C1 - hence every ANSI escape sequence - and bidirectional overrides) is replaced by a
    visible escape such as ``\\x1b`` or ``\\n``. Backslashes are left as they are."""
    if value.startswith(FORMULA_START):
        value = "'" + value
    return _CONTROL.sub(lambda m: _visible(m.group()), value)


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a result ``frame`` for table or CSV output: :func:`safe_text` on every column name
    and every cell of a text or object column (lists, structs, maps and blobs as their text: pandas
    would print the text nested in them unescaped). Numbers, dates and missing values stay."""
    out = frame.copy()
    out.columns = [safe_text(str(c)) for c in frame.columns]
    for i in range(frame.shape[1]):  # by position: a query may return two columns of one name
        values = frame.iloc[:, i]
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            out.isetitem(
                i,
                values.map(
                    lambda v: safe_text(v if isinstance(v, str) else str(v)), na_action="ignore"
                ),
            )
    return out


def governed_query(
    sql: str,
    who: Principal,
    *,
    paths: Paths | None = None,
    audit: AuditLog | None = None,
    policy: Policy | None = None,
    max_rows: int | None = None,
) -> QueryResult:
    """Run one SELECT as ``who`` in a fresh governed session (see the module docstring); audited.

    Raises :class:`QueryDenied` (a :class:`PolicyError`) when a rule refuses it and
    :class:`QueryFailed` when DuckDB cannot run it."""
    session = GovernedSession(who, paths=paths, audit=audit, policy=policy, max_rows=max_rows)
    authorize(
        session.policy,
        who,
        "query",
        session.audit,
        subject=f"query:{query_sha256(sql)[:16]}",
        refs={"role": who.role, "via": who.via, "query_sha256": query_sha256(sql)},
    )
    session._authorized = True
    with session:
        return session.query(sql)
