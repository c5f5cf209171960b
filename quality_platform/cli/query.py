"""`qp query` (governed SQL over the warehouse, F10) and `qp users` (the policy's users)."""

from __future__ import annotations

import argparse
import io
from typing import Any

FORMATS = ("table", "csv", "json")


def register(add: Any, sub: Any) -> None:
    """Add this area's sub-commands. `add(name, fn, help)` returns a parser that already has --json."""
    from quality_platform.cli._common import AS_HELP

    q = add(
        "query",
        cmd_query,
        "run one SELECT in a governed DuckDB session as a policy user: only the tables "
        "the policy allows, row filters and column masks applied, audited",
    )
    q.add_argument(
        "sql", nargs="?", help="one SELECT statement (tables as schema.table, e.g. kpi.kpi_daily)"
    )
    q.add_argument("--as", dest="actor", help=AS_HELP)
    q.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="output format (--json = json + metadata)",
    )
    q.add_argument(
        "--limit",
        type=int,
        default=1000,
        help="rows shown (default 1000; the total count is reported)",
    )
    q.add_argument(
        "--tables", action="store_true", help="list the tables you may query (filters and masks)"
    )
    add(
        "users",
        cmd_users,
        "the policy's users with role, plants and OS accounts (who may act as whom)",
    )


def cmd_query(args: argparse.Namespace) -> int:
    from quality_platform.cli._common import CliError, emit, text_table
    from quality_platform.governance.policy import resolve_principal
    from quality_platform.governance.query import (
        GovernedSession,
        QueryFailed,
        safe_frame,
        safe_text,
    )

    if args.limit < 0:
        raise CliError("--limit must be 0 or more")
    if not args.tables and not (args.sql or "").strip():
        raise CliError("give one SELECT statement (or --tables to list the tables you may query)")
    who = resolve_principal(args.actor, command="query")
    try:
        with GovernedSession(who, max_rows=args.limit) as session:
            if args.tables:
                tables = session.tables()
                text = "\n".join(
                    safe_text(
                        f"{t['table']}  ({len(t['columns'])} columns"
                        + (f"; rows: {t['row_filter']}" if t["row_filter"] else "")
                        + (
                            f"; masked: {', '.join(f'{c}={m}' for c, m in t['masked'].items())}"
                            if t["masked"]
                            else ""
                        )
                        + ")"
                    )
                    for t in tables
                )
                emit(
                    args,
                    {"user": who.name, "role": who.role, "tables": tables},
                    text or "(no tables)",
                )
                return 0
            res = session.query(args.sql)
    except QueryFailed as exc:
        raise CliError(f"the query failed: {exc}") from None
    fmt = "json" if args.json else args.format
    # table and CSV output: no spreadsheet formulas, no control characters or terminal escapes
    # (JSON escapes them itself)
    more = (
        f"({res.row_count} rows, {len(res.frame)} shown; raise --limit to see more)"
        if res.truncated
        else f"({res.row_count} rows)"
    )
    if fmt == "json":
        emit(argparse.Namespace(json=True), {**res.metadata(), "rows": res.records()}, "")
    elif fmt == "csv":
        buf = io.StringIO()
        safe_frame(res.frame).to_csv(buf, index=False)
        print(buf.getvalue(), end="")
    else:
        print(text_table(safe_frame(res.frame)) if res.columns else "(no columns)")
        print(more)
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    import pandas as pd

    from quality_platform.cli._common import emit, text_table
    from quality_platform.governance.policy import load_policy

    policy = load_policy()
    rows = [
        {
            "user": name,
            "role": u.role,
            "plants": list(u.plants),
            "os_accounts": list(u.os_accounts),
            "attributes": dict(u.attributes),
        }
        for name, u in sorted(policy.users.items())
    ]
    df = pd.DataFrame(
        [
            {
                **r,
                "plants": ", ".join(r["plants"]),
                "os_accounts": ", ".join(r["os_accounts"]),
                "attributes": ", ".join(f"{k}={v}" for k, v in r["attributes"].items()),
            }
            for r in rows
        ]
    )
    emit(
        args,
        {"impersonation_allowed": policy.impersonation.allowed, "users": rows},
        text_table(df)
        + f"\nimpersonation (--as): {'allowed' if policy.impersonation.allowed else 'not allowed'}",
    )
    return 0
