"""Governed queries (F10): the role x table x plant matrix, column masks and pseudonyms, an escape
battery against the locked-down session, and the `qp query` / `qp users` commands."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from quality_platform.audit import AuditRecord
from quality_platform.cli import main
from quality_platform.config import load_plants
from quality_platform.governance.policy import Policy, PolicyError, load_policy, principal, readable
from quality_platform.governance.query import (
    GOVERNANCE_TABLES,
    GovernedSession,
    QueryDenied,
    QueryFailed,
    denied_macros,
    governed_query,
    query_sha256,
)
from quality_platform_tests.conftest import GovEnv


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def _warehouse(env: GovEnv) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(env.paths.warehouse_path), read_only=True)


def _tables(env: GovEnv) -> dict[str, list[str]]:
    """schema.table -> columns, read directly from the warehouse."""
    with _warehouse(env) as con:
        rows = con.execute(
            "SELECT schema_name, table_name, list(column_name ORDER BY column_index) "
            "FROM duckdb_columns() WHERE database_name = current_database() AND NOT internal "
            "AND schema_name IN ('raw', 'standard', 'kpi', 'features', 'ml') "
            "GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()
    return {f"{s}.{t}": cols for s, t, cols in rows}


def _last(env: GovEnv) -> AuditRecord:
    return env.audit.records(action="query")[-1]


def _strings(frame: Any) -> set[str]:
    """Every cell of a result as text (for 'does this value appear anywhere')."""
    return {str(v) for col in frame.columns for v in frame[col].tolist() if v is not None}


# --------------------------------------------------------------------------- matrix


def test_role_table_plant_matrix(gov_env: GovEnv) -> None:
    """For every policy user and every warehouse and governance table: readable iff the policy says
    so, and the rows per plant are the warehouse's rows restricted to the user's plants."""
    policy = load_policy(gov_env.paths)
    tables = _tables(gov_env)
    assert {
        "raw.plant_a__units",
        "standard.production_units",
        "kpi.kpi_daily",
        "ml.predictions",
        "features.unit_features",
    } <= set(tables)
    with _warehouse(gov_env) as con:
        direct = {
            name: dict(con.execute(f"SELECT plant, count(*) FROM {name} GROUP BY 1").fetchall())
            if "plant" in cols
            else {None: con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]}
            for name, cols in tables.items()
        }
    assert direct["kpi.kpi_daily"]["plant_a"] > 0 and direct["ml.predictions"]["plant_c"] > 0
    # the governance tables' columns, as a session of a role that reads them all lists them
    with GovernedSession(
        principal(policy, "carl.control"), paths=gov_env.paths, policy=policy
    ) as session:
        gov_cols = {
            t["table"]: t["columns"]
            for t in session.tables()
            if t["table"].startswith("governance.")
        }
    checked = 0
    for user in policy.users:
        who = principal(policy, user)
        with GovernedSession(who, paths=gov_env.paths, policy=policy) as session:
            assert not any(
                v.startswith("governance.") for v in session.views
            )  # loaded when a query names them
            names = [*tables, *(f"governance.{t}" for t in GOVERNANCE_TABLES)]
            for name in names:
                schema, table = name.split(".")
                cols = tables.get(name) or gov_cols.get(name, [])
                sql = (
                    f"SELECT plant, count(*) AS n FROM {name} GROUP BY 1"
                    if "plant" in cols
                    else f"SELECT count(*) AS n FROM {name}"
                )
                if not readable(policy, who.role, schema, table):
                    with pytest.raises(
                        QueryDenied, match=f"table {name} is not readable by role {who.role}"
                    ):
                        session.query(sql)
                    rec = _last(gov_env)
                    assert (rec.outcome, rec.actor, rec.refs["rule"]) == (
                        "denied",
                        user,
                        "table_not_readable",
                    )
                    continue
                if name == "governance.incidents" and name not in gov_cols:
                    continue  # the incidents area is not installed
                res = session.query(sql)
                assert res.tables == [name] and res.row_count == len(res.frame)
                checked += 1
                if "plant" in cols:
                    got = {p: int(n) for p, n in res.rows}
                    assert all(who.sees_plant(p) for p in got if isinstance(p, str)), (
                        user,
                        name,
                        got,
                    )
                    if who.plants is not None:
                        assert None not in got, (
                            user,
                            name,
                        )  # rows without a plant are not theirs either
                    if schema != "governance":
                        want = {p: n for p, n in direct[name].items() if who.sees_plant(p)}
                        assert got == want, (user, name)
                elif schema != "governance":
                    assert res.rows == [(direct[name][None],)], (user, name)
                rec = _last(gov_env)
                assert (rec.outcome, rec.actor, rec.refs["rows"], rec.refs["tables"]) == (
                    "ok",
                    user,
                    res.row_count,
                    [name],
                )
                assert rec.refs["role"] == who.role and rec.refs["query_sha256"] == query_sha256(
                    sql
                )
    assert checked > 30
    # a plant manager of plant_b sees no row of plant_a (nor of plant_c) in this installation
    petra = principal(policy, "petra.plant_b")
    for name in ("kpi.kpi_daily", "ml.predictions"):
        res = governed_query(
            f"SELECT plant, count(*) AS n FROM {name} GROUP BY 1", petra, paths=gov_env.paths
        )
        assert res.row_count == 0
    paul = governed_query(
        "SELECT DISTINCT plant FROM kpi.kpi_daily UNION SELECT DISTINCT plant FROM ml.predictions",
        principal(policy, "paul.plant_a"),
        paths=gov_env.paths,
    )
    assert paul.frame["plant"].tolist() == ["plant_a"]


# --------------------------------------------------------------------------- masks and pseudonyms


def test_masks_and_pseudonyms(gov_env: GovEnv) -> None:
    policy = load_policy(gov_env.paths)
    plants = load_plants(gov_env.paths)
    with _warehouse(gov_env) as con:
        pseudonyms = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT operator_pseudonym FROM standard.production_units "
                "WHERE operator_pseudonym IS NOT NULL"
            ).fetchall()
        }
        raw_ids: set[str] = set()
        for plant in ("plant_a", "plant_c"):
            for col in plants[plant].personal_data:
                raw_ids |= {
                    r[0]
                    for r in con.execute(
                        f'SELECT DISTINCT "{col}" FROM raw.{plant}__units WHERE "{col}" IS NOT NULL'
                    ).fetchall()
                }
    assert len(pseudonyms) > 5 and len(raw_ids) > 5 and not pseudonyms & raw_ids
    probes = [
        "SELECT string_agg(operator_pseudonym, ',') AS s FROM standard.production_units",
        "SELECT DISTINCT operator_pseudonym FROM standard.production_units",
        "SELECT max(operator_pseudonym) AS m, min(operator_pseudonym) AS n FROM standard.production_units",
        "SELECT list(DISTINCT operator_pseudonym) AS l FROM standard.production_units",
        "SELECT a.operator_pseudonym, b.operator_pseudonym AS o2 FROM standard.production_units a "
        "JOIN standard.production_units b USING (plant, unit_id) LIMIT 50",
        "SELECT md5(operator_pseudonym) AS h, substr(operator_pseudonym, 1, 30) AS s FROM standard.production_units",
    ]
    for user in policy.users:
        who = principal(policy, user)
        clear = who.role in ("data_owner", "model_owner")
        seen: set[str] = set()
        with GovernedSession(who, paths=gov_env.paths, policy=policy) as session:
            for name in [t["table"] for t in session.tables()]:
                # every distinct value of every text column the user can get from the table
                desc = session.query(f"DESCRIBE {name}").frame
                text_cols = desc.loc[desc["column_type"] == "VARCHAR", "column_name"].tolist()
                if text_cols:
                    lists = session.query(
                        "SELECT "
                        + ", ".join(f'list(DISTINCT "{c}")' for c in text_cols)
                        + f" FROM {name}"
                    ).rows[0]
                    seen |= {
                        str(v) for values in lists for v in (values if values is not None else [])
                    }
                seen |= _strings(session.query(f"SELECT * FROM {name} LIMIT 200").frame)
            if "standard.production_units" in session.views:
                for sql in probes:
                    seen |= _strings(session.query(sql).frame)
                got = set(
                    session.query(
                        "SELECT DISTINCT operator_pseudonym FROM standard.production_units "
                        "WHERE operator_pseudonym IS NOT NULL"
                    ).frame["operator_pseudonym"]
                )
                assert got == (pseudonyms if clear else {"***"}), user
        text = "\n".join(seen)
        assert not raw_ids & seen and not any(r in text for r in raw_ids), (
            f"raw id visible to {user}"
        )
        if not clear:
            assert not any(p in text for p in pseudonyms), (
                f"operator pseudonym visible in clear to {user}"
            )
    # the data owner sees the raw personal columns as the same pseudonyms as the standard layer
    dana = principal(policy, "dana.data")
    with GovernedSession(dana, paths=gov_env.paths, policy=policy) as session:
        a = session.query(
            'SELECT r."Werker" AS raw_p, s.operator_pseudonym AS std_p FROM raw.plant_a__units r '
            'JOIN standard.production_units s ON s.plant = r.plant AND s.unit_id = r."Auftrag"'
        )
        c = session.query(
            'SELECT r."operator.badge" AS raw_p, s.operator_pseudonym AS std_p FROM raw.plant_c__units r '
            "JOIN standard.production_units s ON s.plant = r.plant AND s.unit_id = r.batch_id"
        )
        for res in (a, c):
            assert res.row_count > 100
            assert (res.frame["raw_p"] == res.frame["std_p"]).all()
            assert res.frame["raw_p"].str.startswith("op_").all()
    # raw ids are in no audit record either (queries are audited by hash, never by text)
    audit_text = gov_env.audit.frame().to_json()
    assert not any(r in audit_text for r in raw_ids)


# --------------------------------------------------------------------------- escape battery

# (user, SQL, part of the error). {wh} is the warehouse file, {alias} the session's hidden alias of
# the attached warehouse, {udf} its private pseudonym function.
ESCAPES: list[tuple[str, str, str]] = [
    ("dana.data", "ATTACH '{wh}' AS w2", "ATTACH is not allowed in a governed session"),
    ("dana.data", "ATTACH ':memory:' AS m2", "ATTACH is not allowed"),
    ("dana.data", "ATTACH '/tmp/qp_escape.duckdb' AS m3", "ATTACH is not allowed"),
    ("dana.data", "DETACH {alias}", "DETACH is not allowed"),
    ("dana.data", "USE {alias}", "SET is not allowed"),
    ("dana.data", "SELECT * FROM read_csv('/etc/passwd')", "function read_csv is not allowed"),
    ("dana.data", "SELECT * FROM read_csv_auto('{wh}')", "function read_csv_auto is not allowed"),
    ("dana.data", "SELECT * FROM read_parquet('{wh}')", "function read_parquet is not allowed"),
    ("dana.data", "SELECT * FROM read_json('/etc/passwd')", "function read_json is not allowed"),
    ("dana.data", "SELECT * FROM read_text('/etc/passwd')", "function read_text is not allowed"),
    ("dana.data", "SELECT * FROM read_blob('{wh}')", "function read_blob is not allowed"),
    ("dana.data", "SELECT * FROM glob('/*')", "function glob is not allowed"),
    (
        "dana.data",
        "SELECT * FROM '/etc/passwd'",
        "table '/etc/passwd' is not readable by role data_owner",
    ),
    ("dana.data", "FROM '{wh}'", "is not readable by role data_owner"),
    (
        "dana.data",
        "COPY (SELECT * FROM raw.plant_a__units) TO '/tmp/qp_escape.csv'",
        "COPY is not allowed",
    ),
    ("dana.data", "COPY raw.plant_a__units FROM '/etc/passwd'", "COPY is not allowed"),
    ("dana.data", "EXPORT DATABASE '/tmp/qp_escape_db'", "EXPORT is not allowed"),
    ("dana.data", "SET enable_external_access = true", "SET is not allowed"),
    ("dana.data", "SET lock_configuration = false", "SET is not allowed"),
    ("dana.data", "RESET lock_configuration", "SET is not allowed"),
    ("dana.data", "SET VARIABLE x = 1", "SET is not allowed"),
    ("dana.data", "PRAGMA enable_profiling", "PRAGMA is not allowed"),
    ("dana.data", "PRAGMA database_list", "PRAGMA is not allowed"),
    ("dana.data", "INSTALL httpfs", "LOAD is not allowed"),
    ("dana.data", "LOAD httpfs", "LOAD is not allowed"),
    ("dana.data", "CREATE TABLE t AS SELECT 1 AS x", "CREATE is not allowed"),
    (
        "dana.data",
        "CREATE OR REPLACE VIEW raw.plant_a__units AS SELECT 1 AS x",
        "CREATE is not allowed",
    ),
    ("dana.data", "CREATE MACRO m(a) AS a", "CREATE is not allowed"),
    ("dana.data", "INSERT INTO raw.receipts SELECT * FROM raw.receipts", "INSERT is not allowed"),
    ("dana.data", "UPDATE raw.plant_a__units SET \"Werker\" = 'x'", "UPDATE is not allowed"),
    ("dana.data", "DELETE FROM raw.plant_a__units", "DELETE is not allowed"),
    ("dana.data", "DROP VIEW raw.plant_a__units", "DROP is not allowed"),
    ("dana.data", "ALTER VIEW raw.plant_a__units RENAME TO x", "ALTER is not allowed"),
    ("dana.data", "CHECKPOINT", "CALL is not allowed"),
    ("dana.data", "CALL duckdb_tables()", "CALL is not allowed"),
    ("dana.data", "EXPLAIN SELECT * FROM raw.plant_a__units", "EXPLAIN is not allowed"),
    ("dana.data", "PREPARE p AS SELECT 1", "PREPARE is not allowed"),
    ("dana.data", "BEGIN TRANSACTION", "TRANSACTION is not allowed"),
    ("dana.data", "SELECT * FROM {alias}.raw.plant_a__units", "catalog-qualified name"),
    ("quinn.quality", "SELECT * FROM {alias}.standard.production_units", "catalog-qualified name"),
    ("quinn.quality", 'SELECT * FROM "{alias}"."raw"."plant_a__units"', "catalog-qualified name"),
    ("quinn.quality", "SELECT * FROM system.main.duckdb_settings", "catalog-qualified name"),
    ("dana.data", "SELECT * FROM duckdb_databases()", "function duckdb_databases is not allowed"),
    ("dana.data", "SELECT * FROM duckdb_tables()", "function duckdb_tables is not allowed"),
    ("dana.data", "SELECT * FROM duckdb_views", "is not readable by role data_owner"),
    ("dana.data", "SELECT * FROM information_schema.tables", "does not exist or is not readable"),
    ("dana.data", "SELECT * FROM sqlite_master", "is not readable by role data_owner"),
    (
        "dana.data",
        "SELECT * FROM pragma_database_list()",
        "function pragma_database_list is not allowed",
    ),
    ("dana.data", "SHOW TABLES", "SHOW is not allowed"),
    ("dana.data", "SHOW DATABASES", "SHOW is not allowed"),
    (
        "quinn.quality",
        "SELECT * FROM raw.plant_a__units",
        "table raw.plant_a__units is not readable by role quality_engineer",
    ),
    (
        "quinn.quality",
        'SELECT * FROM "RAW"."plant_a__units"',
        "table RAW.plant_a__units is not readable",
    ),
    (
        "quinn.quality",
        'SELECT * FROM "raw"."PLANT_A__UNITS"',
        "table raw.PLANT_A__UNITS is not readable",
    ),
    (
        "quinn.quality",
        "SELECT * FROM memory.raw.plant_a__units",
        "table raw.plant_a__units is not readable",
    ),
    ("quinn.quality", "DESCRIBE raw.plant_a__units", "table raw.plant_a__units is not readable"),
    ("quinn.quality", "SUMMARIZE raw.receipts", "table raw.receipts is not readable"),
    (
        "mia.model",
        "SELECT * FROM raw.plant_c__units",
        "table raw.plant_c__units is not readable by role model_owner",
    ),
    (
        "paul.plant_a",
        "SELECT * FROM standard.production_units",
        "not readable by role plant_manager",
    ),
    (
        "quinn.quality",
        "SELECT * FROM governance.audit_log",
        "table governance.audit_log is not readable by role quality_engineer",
    ),
    (
        "paul.plant_a",
        "SELECT count(*) FROM governance.audit_log",
        "not readable by role plant_manager",
    ),
    ("mia.model", "SELECT * FROM governance.audit_log", "not readable by role model_owner"),
    ("olga.ops", "SELECT * FROM governance.audit_log", "not readable by role operations_lead"),
    (
        "quinn.quality",
        "SELECT * FROM query_table('raw.plant_a__units')",
        "function query_table is not allowed",
    ),
    (
        "quinn.quality",
        "SELECT * FROM query('SELECT * FROM raw.plant_a__units')",
        "function query is not allowed",
    ),
    ("quinn.quality", "SELECT 1; ATTACH ':memory:' AS x", "ATTACH is not allowed"),
    ("quinn.quality", "SELECT 1 AS a; SELECT 2 AS b", "one statement per governed query"),
    ("quinn.quality", "SELECT 1 -- harmless\n; DROP VIEW kpi.kpi_daily", "DROP is not allowed"),
    (
        "quinn.quality",
        "WITH x AS (SELECT * FROM raw.plant_a__units) SELECT * FROM x",
        "raw.plant_a__units is not readable",
    ),
    (
        "quinn.quality",
        "WITH duckdb_databases AS (SELECT 1 AS a) SELECT * FROM duckdb_databases",
        "CTE name",
    ),
    (
        "quinn.quality",
        "SELECT * FROM (WITH sqlite_master AS (SELECT 1) SELECT * FROM sqlite_master) "
        "UNION ALL SELECT * FROM sqlite_master",
        "CTE name",
    ),
    (
        "quinn.quality",
        "SELECT * FROM (WITH y AS (SELECT 1 AS a) SELECT * FROM y) UNION ALL SELECT * FROM y",
        "table 'y' is not readable",
    ),
    (
        "quinn.quality",
        "SELECT * FROM kpi.kpi_daily WHERE plant IN (SELECT plant FROM raw.plant_a__units)",
        "raw.plant_a__units is not readable",
    ),
    (
        "quinn.quality",
        "SELECT plant FROM kpi.kpi_daily UNION ALL SELECT plant FROM raw.receipts",
        "raw.receipts is not readable",
    ),
    (
        "quinn.quality",
        "SELECT plant FROM kpi.kpi_daily WHERE EXISTS (SELECT 1 FROM governance.audit_log)",
        "governance.audit_log is not readable",
    ),
    (
        "quinn.quality",
        "SELECT * FROM /* kpi.kpi_daily */ raw.plant_a__units",
        "raw.plant_a__units is not readable",
    ),
    (
        "quinn.quality",
        "SELECT * FROM kpi.kpi_daily k, LATERAL (SELECT * FROM raw.plant_a__units r "
        "WHERE r.plant = k.plant)",
        "raw.plant_a__units is not readable",
    ),
    (
        "quinn.quality",
        "SELECT * FROM range(2) r, read_text('/etc/passwd')",
        "function read_text is not allowed",
    ),
    (
        "quinn.quality",
        "SELECT (SELECT count(*) FROM read_csv('/etc/passwd')) AS n",
        "function read_csv",
    ),
    ("quinn.quality", "SELECT getenv('HOME') AS h", "function getenv is not allowed"),
    (
        "quinn.quality",
        "SELECT current_setting('enable_external_access') AS s",
        "function current_setting",
    ),
    (
        "quinn.quality",
        "SELECT json_execute_serialized_sql('{{}}') AS j",
        "function json_execute_serialized_sql",
    ),
    ("dana.data", "SELECT {udf}('W-00001') AS p", "is not allowed in a governed session"),
    ("quinn.quality", "SELECT main.getenv('HOME') AS h", "qualified function name"),
    (
        "quinn.quality",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        "function sniff_csv is not allowed",
    ),
    (
        "quinn.quality",
        "SELECT * FROM parquet_metadata('{wh}')",
        "function parquet_metadata is not allowed",
    ),
    ("quinn.quality", "PIVOT kpi.kpi_daily ON plant USING count(*)", "is not allowed"),
    ("quinn.quality", "SELECT * FROM kpi_daily", "name tables as schema.table"),
    ("quinn.quality", "", "the query is empty"),
    ("quinn.quality", "SELEC 1", "does not parse"),
    # view definitions (the masking SQL, the hidden alias), statistics, settings, waiting
    (
        "dana.data",
        "SELECT pg_get_viewdef(oid) AS d FROM (SELECT 0 AS oid)",
        "function pg_get_viewdef is not allowed",
    ),
    (
        "dana.data",
        "SELECT pg_get_constraintdef(0) AS d",
        "function pg_get_constraintdef is not allowed",
    ),
    ("dana.data", "SELECT get_block_size('memory') AS b", "function get_block_size is not allowed"),
    (
        "paul.plant_a",
        "SELECT stats(value) AS s FROM kpi.kpi_daily",
        "function stats is not allowed",
    ),
    ("quinn.quality", "SELECT pg_sleep(5) AS s", "function pg_sleep is not allowed"),
    ("quinn.quality", "SELECT sleep_ms(5000) AS s", "function sleep_ms is not allowed"),
    ("quinn.quality", "SELECT write_log('x') AS s", "function write_log is not allowed"),
    # query limits (the battery's policy: max_seconds 3, max_memory 64MB, max_nesting_depth 200)
    (
        "quinn.quality",
        "SELECT 1 AS x FROM " + "(SELECT * FROM " * 400 + "range(1)" + ")" * 400,
        "the query nests too deeply",
    ),
    (
        "quinn.quality",
        "SELECT " + "abs(" * 400 + "1" + ")" * 400 + " AS x",
        "query_limits.max_nesting_depth",
    ),
    ("quinn.quality", "SELECT 1" + " + 1" * 400 + " AS x", "the query nests too deeply"),
    (
        "quinn.quality",
        "SELECT * FROM generate_series(1, 1000000000000)",
        "longer than the policy's limit of 3 s",
    ),
    (
        "quinn.quality",
        "SELECT count(*) AS n FROM generate_series(1, 1000000000000)",
        "query_limits.max_seconds",
    ),
    (
        "quinn.quality",
        "SELECT list(i) AS l FROM range(100000000) r(i)",
        "more memory than the policy's limit of 64MB",
    ),
    (
        "quinn.quality",
        "SELECT string_agg(repeat('x', 1000), ',') AS s FROM range(1000000)",
        "query_limits.max_memory",
    ),
    (
        "quinn.quality",
        "SELECT i, repeat('x', 1000) AS s FROM range(200000) r(i)",
        "its result did not fit",
    ),
]
#: The limits the escape battery runs under (small, so that the limit cases are quick).
BATTERY_LIMITS = {
    "max_seconds": 3,
    "max_memory": "64MB",
    "max_threads": 1,
    "max_nesting_depth": 200,
}


def test_escape_battery(gov_env: GovEnv) -> None:
    """Every attempt is refused with an error naming the rule, audited as denied (by hash, with the
    tables touched and the reason), and the warehouse file is unchanged afterwards."""
    wh = Path(gov_env.paths.warehouse_path)
    before = (hashlib.sha256(wh.read_bytes()).hexdigest(), wh.stat().st_mtime_ns)
    policy = Policy.model_validate(
        {**load_policy(gov_env.paths).model_dump(), "query_limits": BATTERY_LIMITS}
    )
    sessions: dict[str, GovernedSession] = {}
    results: list[dict[str, str]] = []
    try:
        for user, template, expected in ESCAPES:
            s = sessions.get(user)
            if s is None:
                s = sessions[user] = GovernedSession(
                    principal(policy, user), paths=gov_env.paths, policy=policy
                )
                s.open()
            sql = template.format(wh=wh, alias=s._alias, udf=s._udf or "qp_private_x")
            n = len(gov_env.audit.records(action="query"))
            with pytest.raises(QueryDenied) as info:
                s.query(sql)
            assert expected in str(info.value), (sql, str(info.value))
            recs = gov_env.audit.records(action="query")
            assert len(recs) == n + 1, sql
            rec = recs[-1]
            assert (rec.outcome, rec.actor, rec.action) == ("denied", user, "query"), sql
            assert rec.refs["query_sha256"] == query_sha256(sql) and rec.refs["role"] == s.who.role
            assert (
                rec.refs["denied_because"]
                and rec.refs["rule"] == info.value.rule
                and rec.refs["tables"] == []
            )
            if len(sql) > 25:
                assert sql not in json.dumps(rec.refs) + (rec.reason or ""), (
                    "the query text must not be audited"
                )
            results.append({"user": user, "sql": sql, "refused": str(info.value)})
        # the sessions still work after the battery (nothing was changed) and are still locked
        res = sessions["quinn.quality"].query("SELECT count(*) AS n FROM kpi.kpi_daily")
        assert res.frame["n"].iloc[0] > 0
        con = sessions["quinn.quality"]._con
        assert con is not None
        with pytest.raises(
            duckdb.Error
        ):  # even the session's own connection cannot change settings now
            con.execute("SET enable_external_access = true")
        with pytest.raises(
            duckdb.Error, match="disabled by configuration"
        ):  # no file access at all
            con.execute(f"ATTACH '{wh.parent / 'other.duckdb'}' AS other")
        with pytest.raises(duckdb.Error, match="disabled by configuration"):
            con.execute("SELECT * FROM read_csv('/etc/passwd')").fetchall()
    finally:
        for s in sessions.values():
            s.close()
    assert (hashlib.sha256(wh.read_bytes()).hexdigest(), wh.stat().st_mtime_ns) == before
    assert not Path("/tmp/qp_escape.csv").exists() and not Path("/tmp/qp_escape_db").exists()
    assert len(results) == len(ESCAPES)


def test_allowed_sql_features(gov_env: GovEnv) -> None:
    """The checks do not get in the way of ordinary analysis: CTEs, joins, window functions, table
    functions of the allowlist, DESCRIBE of a readable table, the memory catalog prefix."""
    policy = load_policy(gov_env.paths)
    quinn = GovernedSession(principal(policy, "quinn.quality"), paths=gov_env.paths, policy=policy)
    with quinn as s:
        for sql in [
            "WITH d AS (SELECT plant, partition_date, value FROM kpi.kpi_daily WHERE kpi_id = 'defect_rate') "
            "SELECT plant, avg(value) OVER (PARTITION BY plant) AS v FROM d",
            "SELECT p.plant, count(*) AS n FROM ml.predictions p JOIN standard.production_units u "
            "ON u.plant = p.plant AND u.unit_id = p.unit_id GROUP BY ALL",
            "SELECT * FROM range(3) r(i), unnest([1, 2]) AS t(j)",
            "SELECT * FROM generate_series(1, 3)",
            "DESCRIBE kpi.kpi_daily",
            "SELECT count(*) AS n FROM memory.kpi.kpi_daily",
            'SELECT count(*) AS n FROM "KPI"."KPI_DAILY"',
        ]:
            res = s.query(sql)
            assert res.row_count > 0, sql


def test_timeout_and_query_action(gov_env: GovEnv) -> None:
    """A runaway query is interrupted (refused under rule time_limit, audited as denied with the
    tables it read) and the session still works; a role without the `query` action is refused
    before any session is built (audited as denied)."""
    policy = load_policy(gov_env.paths)
    with GovernedSession(
        principal(policy, "quinn.quality"), paths=gov_env.paths, policy=policy, timeout_s=0.5
    ) as s:
        with pytest.raises(QueryDenied, match=r"longer than the policy's limit of 0\.5 s") as info:
            s.query(
                "SELECT sum(a.i * b.i) AS x FROM range(100000) a(i), range(100000) b(i), kpi.kpi_daily"
            )
        assert info.value.rule == "time_limit"
        rec = _last(gov_env)
        assert (rec.outcome, rec.refs["rule"], rec.refs["tables"]) == (
            "denied",
            "time_limit",
            ["kpi.kpi_daily"],
        )
        assert s.query("SELECT count(*) AS n FROM kpi.kpi_daily").row_count == 1
    doc = policy.model_dump()
    doc["roles"]["auditor"]["actions"] = [
        a for a in doc["roles"]["auditor"]["actions"] if a != "query"
    ]
    no_query = Policy.model_validate(doc)
    with pytest.raises(PolicyError, match="may not query"):
        governed_query(
            "SELECT 1 AS x", principal(no_query, "aud.it"), paths=gov_env.paths, policy=no_query
        )
    rec = _last(gov_env)
    assert (rec.outcome, rec.actor, rec.refs["query_sha256"]) == (
        "denied",
        "aud.it",
        query_sha256("SELECT 1 AS x"),
    )
    with pytest.raises(PolicyError, match="may not query"):
        GovernedSession(principal(no_query, "aud.it"), paths=gov_env.paths, policy=no_query).open()


def test_query_limits_from_the_policy(gov_env: GovEnv) -> None:
    """The session takes memory, threads, rows, time and nesting limits from the policy (arguments
    may only lower them), spills nothing to disk, and refuses every macro that expands to a denied
    function; an ordinary SQL error is still `failed`, not a limit."""
    doc = load_policy(gov_env.paths).model_dump()
    doc["query_limits"] = {
        "max_seconds": 7,
        "max_memory": "300MB",
        "max_threads": 1,
        "max_rows": 5,
        "max_nesting_depth": 40,
    }
    policy = Policy.model_validate(doc)
    assert load_policy(gov_env.paths).query_limits.max_memory == "1GB"  # the shipped policy's
    with GovernedSession(
        principal(policy, "quinn.quality"),
        paths=gov_env.paths,
        policy=policy,
        max_rows=1000,
        timeout_s=60,
    ) as s:
        assert (s.max_rows, s.timeout_s) == (5, 7)
        con = s._con
        assert con is not None
        got = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('memory_limit', 'threads', 'temp_directory')"
            ).fetchall()
        )
        assert got == {"memory_limit": "286.1 MiB", "threads": "1", "temp_directory": ""}
        assert {
            "pg_get_viewdef",
            "pg_sleep",
            "pg_get_constraintdef",
            "get_block_size",
        } <= denied_macros(con)
        res = s.query("SELECT * FROM kpi.kpi_daily")
        assert len(res.frame) == 5 and res.truncated and res.row_count > 5
        # 10 nested subqueries pass a limit of 40 tree levels, 12 do not
        s.query("SELECT 1 AS x FROM " + "(SELECT * FROM " * 10 + "range(1)" + ")" * 10)
        with pytest.raises(QueryDenied, match="nests too deeply") as info:
            s.query("SELECT 1 AS x FROM " + "(SELECT * FROM " * 12 + "range(1)" + ")" * 12)
        assert info.value.rule == "nesting_depth" and _last(gov_env).refs["rule"] == "nesting_depth"
        with pytest.raises(QueryFailed, match="Conversion Error"):
            s.query("SELECT CAST(kpi_id AS INTEGER) AS x FROM kpi.kpi_daily")
        assert (_last(gov_env).outcome, _last(gov_env).refs["error"]) == (
            "failed",
            "Conversion Error",
        )
    with pytest.raises(ValueError, match=r"query_limits\.max_memory"):
        Policy.model_validate({**doc, "query_limits": {"max_memory": "lots"}})
    with pytest.raises(ValueError, match="below 16MiB"):
        Policy.model_validate({**doc, "query_limits": {"max_memory": "1MB"}})


def test_text_and_csv_output_are_escaped(gov_env: GovEnv) -> None:
    """Cells that a spreadsheet would run as a formula get a leading quote; control characters and
    terminal escape sequences (in cells, nested values and column names) are shown as visible
    escapes; numbers are unchanged; JSON keeps the values (escaped by JSON itself)."""
    sql = (
        "SELECT '=HYPERLINK(''http://evil'',''x'')' AS f, '+1+1' AS p, '-2+3' AS m, '@SUM(A1)' AS a, "
        "chr(9) || '=1' AS tab, chr(13) || '=1' AS cr, chr(27) || '[2J' || chr(27) || ']0;pwned' || chr(7) AS ansi, "
        "chr(155) || '31m' AS c1, 'line' || chr(10) || 'break' AS nl, [chr(27) || '[31m'] AS l, "
        "'plain' AS ok, -3 AS neg, 'x' AS \"" + chr(27) + '[1mcol"'
    )
    raw_controls = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
    code, out = _cli("query", sql, "--as", "quinn.quality", "--format", "csv")
    assert code == 0, out
    assert not raw_controls.search(out), repr(out)
    header, row = list(csv.reader(io.StringIO(out)))
    assert header[-1] == "\\x1b[1mcol"
    assert row == [
        "'=HYPERLINK('http://evil','x')",
        "'+1+1",
        "'-2+3",
        "'@SUM(A1)",
        "'\\t=1",
        "'\\r=1",
        "\\x1b[2J\\x1b]0;pwned\\x07",
        "\\x9b31m",
        "line\\nbreak",
        "['\\x1b[31m']",
        "plain",
        "-3",
        "x",
    ]
    code, out = _cli("query", sql, "--as", "quinn.quality")
    assert code == 0 and not raw_controls.search(out), repr(out)
    assert (
        "'=HYPERLINK" in out and "\\x1b[2J" in out and "line\\nbreak" in out and "(1 rows)" in out
    )
    code, out = _cli("query", sql, "--as", "quinn.quality", "--json")
    assert code == 0 and not raw_controls.search(out)
    row = json.loads(out)["rows"][0]
    assert (
        row["f"].startswith("=HYPERLINK") and row["ansi"].startswith("\x1b[2J") and row["neg"] == -3
    )


# --------------------------------------------------------------------------- CLI and identity


def test_cli_query_users_and_impersonation(gov_env: GovEnv) -> None:
    code, out = _cli("users", "--json")
    assert code == 0
    users = {u["user"]: u for u in json.loads(out)["users"]}
    assert users["paul.plant_a"]["role"] == "plant_manager" and users["paul.plant_a"]["plants"] == [
        "plant_a"
    ]
    assert users["olga.ops"]["os_accounts"] == ["root"] and set(users) == set(
        load_policy(gov_env.paths).users
    )

    code, out = _cli(
        "query",
        "SELECT plant, count(*) AS n FROM kpi.kpi_daily GROUP BY 1",
        "--as",
        "paul.plant_a",
        "--json",
    )
    assert code == 0, out
    payload = json.loads(out)
    assert [r["plant"] for r in payload["rows"]] == ["plant_a"] and payload["tables"] == [
        "kpi.kpi_daily"
    ]
    assert payload["user"] == "paul.plant_a" and payload["role"] == "plant_manager"
    ident = gov_env.audit.records(action="identity")[-1]
    assert (ident.actor, ident.outcome, ident.refs["via"], ident.refs["command"]) == (
        "paul.plant_a",
        "info",
        "impersonation",
        "query",
    )
    rec = _last(gov_env)
    assert (rec.actor, rec.outcome, rec.refs["via"], rec.refs["rows"]) == (
        "paul.plant_a",
        "ok",
        "impersonation",
        1,
    )

    code, out = _cli(
        "query",
        "SELECT plant, partition_date FROM kpi.kpi_daily ORDER BY 1, 2",
        "--as",
        "quinn.quality",
        "--format",
        "csv",
        "--limit",
        "5",
    )
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == "plant,partition_date" and len(lines) == 6
    code, out = _cli(
        "query", "SELECT * FROM kpi.kpi_daily", "--as", "quinn.quality", "--limit", "3", "--json"
    )
    payload = json.loads(out)
    assert payload["truncated"] and len(payload["rows"]) == 3 and payload["row_count"] > 3
    code, out = _cli("query", "SELECT * FROM ml.predictions LIMIT 2", "--as", "quinn.quality")
    assert code == 0 and "(2 rows)" in out

    code, out = _cli("query", "--tables", "--as", "paul.plant_a", "--json")
    tables = {t["table"]: t for t in json.loads(out)["tables"]}
    assert set(tables) == {"kpi.kpi_daily", "ml.predictions"}
    assert tables["kpi.kpi_daily"]["row_filter"] == "plant IN ('plant_a')"

    code, out = _cli("query", "SELECT * FROM raw.plant_a__units", "--as", "quinn.quality", "--json")
    assert (
        code == 2
        and "raw.plant_a__units is not readable by role quality_engineer"
        in json.loads(out)["error"]
    )
    assert _last(gov_env).outcome == "denied"
    code, out = _cli(
        "query", "SELECT no_such_column FROM kpi.kpi_daily", "--as", "quinn.quality", "--json"
    )
    assert code == 2 and "the query failed" in json.loads(out)["error"]
    assert (_last(gov_env).outcome, _last(gov_env).refs["error"]) == ("failed", "Binder Error")
    code, out = _cli("query", "SELECT 1 AS x", "--as", "nobody", "--json")
    assert code == 2 and "unknown user 'nobody'" in json.loads(out)["error"]

    # a policy without impersonation refuses --as (audited); QP_USER still works for a service account
    f = gov_env.paths.config_dir / "governance" / "policy.yaml"
    doc = yaml.safe_load(f.read_text())
    doc["impersonation"]["allowed"] = False
    f.write_text(yaml.safe_dump(doc))
    code, out = _cli("query", "SELECT 1 AS x", "--as", "carl.control", "--json")
    assert code == 2 and "impersonation is not allowed" in json.loads(out)["error"]
    ident = gov_env.audit.records(action="identity")[-1]
    assert ident.outcome == "denied" and ident.subject == "user:carl.control"
    with pytest.MonkeyPatch.context() as mp:
        from quality_platform.governance import policy as P

        mp.setattr(P, "_os_account", lambda: "qp-service")
        mp.setenv("QP_USER", "aud.it")
        code, out = _cli("query", "SELECT count(*) AS n FROM governance.audit_log", "--json")
        assert code == 0, out
        assert json.loads(out)["user"] == "aud.it" and _last(gov_env).refs["via"] == "env"


def test_parse_issues_never_show_raw_ids(gov_env: GovEnv) -> None:
    """raw.parse_issues keeps the raw line of a broken record (it may hold an operator id): in a
    governed session that line is redacted for streams with personal columns, and a value taken
    from a personal column is shown as its pseudonym -- for the data owner and operations lead."""
    with duckdb.connect(str(gov_env.paths.warehouse_path)) as con:
        raw_id = con.execute('SELECT "Werker" FROM raw.plant_a__units LIMIT 1').fetchall()[0][0]
        pseudo = con.execute(
            "SELECT operator_pseudonym FROM standard.production_units WHERE plant = 'plant_a' "
            'AND unit_id = (SELECT "Auftrag" FROM raw.plant_a__units WHERE "Werker" = ? LIMIT 1)',
            [raw_id],
        ).fetchall()[0][0]
        con.execute(
            "INSERT INTO raw.parse_issues VALUES "
            "('plant_a', DATE '2026-03-16', 'units', 'x.csv', 7, 'Werker', 'record', 'bad_value', 'reject', "
            "'unreadable record', 1, 1, ?, ?), "
            "('plant_a', DATE '2026-03-16', 'readings', 'y.csv', 9, 'Druck [bar]', 'record', 'bad_value', "
            "'reject', 'not a number', 1, 1, 'M1,2026-03-16 06:00,abc', 'abc')",
            [f"A-1,L1,M1,06:00,07:00,P,C,S,{raw_id}", raw_id],
        )
    policy = load_policy(gov_env.paths)
    for user, shown in (
        ("dana.data", pseudo),
        ("olga.ops", "***"),
    ):  # ops does not see pseudonyms in clear
        res = governed_query(
            "SELECT stream, line_text, value FROM raw.parse_issues ORDER BY stream",
            principal(policy, user),
            paths=gov_env.paths,
            policy=policy,
        )
        assert res.rows == [
            ("readings", "M1,2026-03-16 06:00,abc", "abc"),
            ("units", "***", shown),
        ], user
        assert raw_id not in json.dumps(res.records())
