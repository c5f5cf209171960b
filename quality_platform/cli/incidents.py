"""`qp incident open|report|close|list` (F24; registered by quality_platform.cli.build_parser).

Every command speaks --json and acts as the caller's policy user (``--as USER`` where the policy
allows impersonation, else ``QP_USER``, else the OS account); refusals exit with code 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any


def _who(args: argparse.Namespace, command: str, **kw: Any) -> Any:
    from quality_platform.governance.policy import resolve_principal

    return resolve_principal(getattr(args, "actor", None), command=command, **kw)


def _day(text: str | None, name: str) -> dt.date | None:
    from quality_platform.cli._common import CliError

    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise CliError(f"{name}: not a date (YYYY-MM-DD): {text!r}") from exc


def _short(inc: Any) -> str:
    if inc.is_open:
        state = ("frozen" if inc.frozen else "not frozen") + (
            ", safe state" if inc.safe_state else ""
        )
    else:
        state = "freeze released" if inc.frozen else "was not frozen"
    return (
        f"incident {inc.id} [{inc.status}] {inc.severity} ({state}) model {inc.model}, plant {inc.plant or 'all'}: "
        f"{inc.summary}; deadline {inc.deadline_utc}"
    )


def cmd_open(args: argparse.Namespace) -> int:
    from quality_platform.cli._common import CliError, dagster_instance, emit
    from quality_platform.governance.incident_store import IncidentError
    from quality_platform.incidents.actions import open_incident

    who = _who(args, "incident open")
    t0 = time.perf_counter()
    try:
        inc = open_incident(
            who,
            args.severity,
            args.summary,
            plant=args.plant,
            safe_state=True if args.safe_state else None,
            instance=dagster_instance(),
            data_from=_day(args.date_from, "--from"),
            data_to=_day(args.date_to, "--to"),
        )
    except IncidentError as exc:
        raise CliError(str(exc)) from exc
    seconds = round(time.perf_counter() - t0, 2)
    payload = {**inc.as_dict(), "time_left_hours": inc.time_left_hours(), "seconds": seconds}
    emit(
        args,
        payload,
        f"{_short(inc)}\nevidence: {inc.evidence_dir or '(not collected, see the audit log)'} "
        f"(manifest sha256 {inc.manifest_sha256}); opened in {seconds:.1f} s",
    )
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    from quality_platform.cli._common import CliError, emit
    from quality_platform.governance.incident_store import IncidentError
    from quality_platform.incidents.actions import close_incident

    who = _who(args, "incident close")
    try:
        inc = close_incident(args.id, who, args.resolution)
    except IncidentError as exc:
        raise CliError(str(exc)) from exc
    emit(
        args,
        inc.as_dict(),
        f"{_short(inc)}\nclosed by {inc.closed_by} at {inc.closed_utc}: {inc.resolution}",
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from quality_platform.audit import AuditLog, audit_db_path
    from quality_platform.cli._common import CliError, emit
    from quality_platform.governance.incident_store import IncidentError
    from quality_platform.governance.policy import authorize, load_policy
    from quality_platform.incidents.report import incident_report, report_markdown
    from quality_platform.settings import get_paths

    paths = get_paths()
    policy, audit = load_policy(paths), AuditLog(audit_db_path(paths))
    who = _who(args, "incident report", policy=policy, audit=audit, paths=paths)
    # the report is the event record of a window: the same right as `qp audit export`
    authorize(
        policy, who, "audit_export", audit, subject=f"incident:{args.id}", reason="incident report"
    )
    t0 = time.perf_counter()
    try:
        report = incident_report(args.id, paths, out_dir=Path(args.out) if args.out else None)
    except IncidentError as exc:
        raise CliError(str(exc)) from exc
    report["seconds"] = round(time.perf_counter() - t0, 2)
    text = report_markdown(report) + (
        f"\n(written to {report['written']['markdown']} and "
        f"{report['written']['json']} in {report['seconds']:.1f} s)"
    )
    emit(args, report, text)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from quality_platform.cli._common import emit
    from quality_platform.governance.incident_store import list_incidents

    _who(args, "incident list")
    items = list_incidents(status=args.status)
    payload = [
        {**i.as_dict(), "time_left_hours": i.time_left_hours() if i.is_open else None}
        for i in items
    ]
    emit(args, payload, "\n".join(_short(i) for i in items) or "(no incidents)")
    return 0


def register(add: Any, sub: Any) -> None:
    """`qp incident open|report|close|list` (each with --json)."""
    from quality_platform.cli._common import AS_HELP
    from quality_platform.governance.incident_store import load_incident_config

    try:
        severities = sorted(load_incident_config().severities)
    except Exception:  # a broken config must not break `qp --help`; `open` reports it
        severities = None
    inc = sub.add_parser(
        "incident",
        help="incidents: freeze the model, safe state, evidence, report (F24)",
        description="Incidents: open (freeze + evidence bundle), report, close, list.",
    )
    isub = inc.add_subparsers(dest="incident_command", required=True)

    def cmd(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        sp = isub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(fn=fn)
        return sp

    o = cmd(
        "open",
        cmd_open,
        "open an incident: freeze the model (and optionally the safe state), preserve evidence",
    )
    o.add_argument(
        "--severity",
        required=True,
        choices=severities,
        help="severity (data/governance/incidents.yaml; sets the reporting deadline)",
    )
    o.add_argument("--summary", required=True, help="what happened")
    o.add_argument("--plant", help="the affected plant (default: all plants)")
    o.add_argument(
        "--safe-state",
        action="store_true",
        help="predictions fall back to the rule-based limits of data/ml/safe_state.yaml (some severities "
        "do by default)",
    )
    o.add_argument(
        "--from",
        dest="date_from",
        help="first production day of the data window (default: the last "
        "evidence.window_days scored days)",
    )
    o.add_argument("--to", dest="date_to", help="last production day of the data window")
    o.add_argument("--as", dest="actor", help=AS_HELP)
    r = cmd("report", cmd_report, "the complete event record of an incident (Markdown and JSON)")
    r.add_argument("id", help="incident id")
    r.add_argument("--out", help="folder for report.md/report.json (default: the evidence bundle)")
    r.add_argument("--as", dest="actor", help=AS_HELP)
    c = cmd("close", cmd_close, "close an incident: release the freeze and the safe state")
    c.add_argument("id", help="incident id")
    c.add_argument("--resolution", required=True, help="how it was resolved")
    c.add_argument("--as", dest="actor", help=AS_HELP)
    lst = cmd("list", cmd_list, "list incidents")
    lst.add_argument("--status", choices=["open", "closed"])
    lst.add_argument("--as", dest="actor", help=AS_HELP)
