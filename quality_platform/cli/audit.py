"""`qp` commands of the audit, review and model-documentation areas (registered by
quality_platform.cli.build_parser):

* ``qp audit verify [--anchor FILE ...]``: walk the hash chain (F23) and compare it with the chain heads
  published outside the file (MLflow version tags, Dagster run tags, the given files; see
  quality_platform/audit_anchors.py); exit 1 when it does not verify;
* ``qp audit export --from T1 --to T2 [--plant P] [--out FILE]``: the complete event record of a window
  with its chain anchor and the chain head it covered;
* ``qp audit anchor [--out FILE]``: the current chain head ``<seq>:<hash>``, to be stored elsewhere;
* ``qp report review --period week|month [--end DATE] [--plant P]``: the operating review (F29);
* ``qp docs model VERSION [--regenerate]``: the generated model documentation (F25), stale sections marked.

Every command acts as a policy user (``--as USER`` where the policy allows impersonation, else
``QP_USER``, else the OS account) and is authorised by the policy (actions ``audit_verify`` - also for
``qp audit anchor`` -, ``audit_export``, ``report_review``, ``model_docs``); a refusal is audited and exits with code 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from quality_platform.audit import AuditLog, AuditRecord

EXPORT_SELECTION_RULE = (
    "records with plant = P, plus platform-wide records (plant NULL) that reference P: their subject names it "
    "as a component (e.g. plant:P, unit:P/...) or their refs contain P as a value or as a key (e.g. "
    "partitions {P: [...]}, plants [P])"
)


def _governed(
    args: argparse.Namespace,
    command: str,
    action: str,
    *,
    plant: str | None = None,
    subject: str | None = None,
) -> tuple[Any, Any, AuditLog]:
    """(paths, principal, audit log) after resolving and authorising the caller."""
    from quality_platform.audit import audit_db_path
    from quality_platform.governance.policy import authorize, load_policy, resolve_principal
    from quality_platform.settings import get_paths

    paths = get_paths()
    policy = load_policy(paths)
    audit = AuditLog(audit_db_path(paths))
    who = resolve_principal(args.actor, command=command, policy=policy, audit=audit, paths=paths)
    authorize(policy, who, action, audit, plant=plant, subject=subject)
    return paths, who, audit


def _command(
    group: Any, name: str, fn: Any, help_: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A sub-command of ``group`` running ``fn``, with --json and --as."""
    from quality_platform.cli._common import AS_HELP

    p = group.add_parser(name, help=help_, description=description)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--as", dest="actor", help=AS_HELP)
    p.set_defaults(fn=fn)
    return p


# --------------------------------------------------------------------------- qp audit verify


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from quality_platform.audit_anchors import verify_with_anchors
    from quality_platform.cli._common import CliError, emit

    # Opening the log (in _governed) re-creates dropped triggers and records that it did: verify
    # reports that record, so the order does not hide the tampering.
    paths, who, audit = _governed(args, "qp audit verify", "audit_verify", subject="audit_log")
    try:
        res, found = verify_with_anchors(audit, paths, args.anchor or ())
    except ValueError as exc:  # an --anchor file without an anchor
        raise CliError(str(exc)) from exc
    head = audit.head()
    anchors = {
        "checked": len(found.anchors),
        "by_source": found.counts(),
        "notes": found.notes,
        "max_seq": max((a.seq for a in found.anchors), default=None),
    }
    payload = {
        "ok": res.ok,
        "records": res.records,
        "problems": res.problems,
        "path": str(audit.path),
        "last_seq": head.seq if head else 0,
        "last_hash": head.hash if head else None,
        "anchors": anchors,
    }
    audit.append(
        "audit_verify",
        who.name,
        subject="audit_log",
        outcome="ok" if res.ok else "failed",
        reason="audit chain verified"
        if res.ok
        else f"audit chain broken: {len(res.problems)} problem(s)",
        refs={
            "records": res.records,
            "problems": res.problems[:50],
            "last_seq": payload["last_seq"],
            "last_hash": payload["last_hash"],
            "anchors": anchors["by_source"],
        },
    )
    checked = f"checked against {found.summary()}"
    text = (
        f"audit log {audit.path}: OK, {res.records} records, chain intact (last seq {payload['last_seq']}, "
        f"hash {str(payload['last_hash'])[:16]}); {checked}"
        if res.ok
        else f"audit log {audit.path}: NOT OK, {res.records} records, {len(res.problems)} problem(s):\n"
        + "\n".join(f"  {p}" for p in res.problems)
        + f"\n{checked}"
    )
    text += "".join(f"\n  note: {n}" for n in found.notes)
    emit(args, payload, text)
    return 0 if res.ok else 1


# --------------------------------------------------------------------------- qp audit anchor


def cmd_audit_anchor(args: argparse.Namespace) -> int:
    """Print (and with --out write) the chain head ``<seq>:<hash>``; the command's own audit record is
    the head it reports, so the anchor also covers who took it."""
    from quality_platform.audit_anchors import format_anchor
    from quality_platform.cli._common import emit

    _, who, audit = _governed(args, "qp audit anchor", "audit_verify", subject="audit_log")
    out = Path(args.out) if args.out else None
    rec = audit.append(
        "audit_anchor",
        who.name,
        subject="audit_log",
        outcome="ok",
        reason="chain head taken for storage outside the audit log",
        refs={"out": str(out) if out else None},
    )
    text = format_anchor(rec.seq, rec.hash)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    payload = {
        "anchor": text,
        "head": {"seq": rec.seq, "hash": rec.hash},
        "path": str(audit.path),
        "out": str(out) if out else None,
    }
    emit(
        args,
        payload,
        text
        + (
            f"\nwritten to {out}: store it outside this machine; check later with "
            f"`qp audit verify --anchor {out}`"
            if out
            else ""
        ),
    )
    return 0


# --------------------------------------------------------------------------- qp audit export


def _mentions(value: Any, plant: str) -> bool:
    if isinstance(value, str):
        return value == plant
    if isinstance(value, dict):
        return any(k == plant or _mentions(v, plant) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_mentions(v, plant) for v in value)
    return False


def references_plant(rec: AuditRecord, plant: str) -> bool:
    """Whether a record belongs to ``plant``'s event record (see :data:`EXPORT_SELECTION_RULE`)."""
    if rec.plant is not None:
        return rec.plant == plant
    subject = rec.subject or ""
    parts = subject.replace(":", "/").split("/")
    return plant in parts or _mentions(rec.refs, plant)


def window_check(records: list[AuditRecord]) -> list[str]:
    """Problems of a contiguous window of records: content vs hash, seq gaps and links between
    consecutive records (the first record's prev_hash is the anchor into the earlier chain)."""
    from quality_platform.audit import record_hash

    problems = []
    for i, r in enumerate(records):
        if record_hash(r.__dict__) != r.hash:
            problems.append(f"seq {r.seq}: content does not match its hash (record edited)")
        if i:
            prev = records[i - 1]
            if r.seq != prev.seq + 1:
                problems.append(
                    f"seq {r.seq}: follows seq {prev.seq} in the window (records missing or out of "
                    "time order)"
                )
            if r.prev_hash != prev.hash:
                problems.append(f"seq {r.seq}: prev_hash is not the hash of seq {prev.seq}")
    return problems


def export_window(
    audit: AuditLog, start: str, end: str, plant: str | None = None
) -> dict[str, Any]:
    """The event record of ``[start, end)`` (optionally of one plant) with its chain anchor."""
    from quality_platform.audit import GENESIS_HASH, utc_text

    frm, to = utc_text(start, "--from"), utc_text(end, "--to")
    if to <= frm:
        raise ValueError(f"--to ({to}) must be after --from ({frm})")
    head = (
        audit.head()
    )  # the chain as the export found it: an anchor for `qp audit verify --anchor`
    window = audit.records(since=frm, until=to)
    problems = window_check(window)
    before = audit.records(until=frm, limit=1)
    if window and before and window[0].prev_hash != before[0].hash:
        problems.insert(
            0,
            f"seq {window[0].seq}: prev_hash is not the hash of the record before the window "
            f"(seq {before[0].seq})",
        )
    chosen = [r for r in window if plant is None or references_plant(r, plant)]
    anchor = {
        "first_seq": window[0].seq if window else None,
        "prev_hash": window[0].prev_hash if window else None,
        "last_seq": window[-1].seq if window else None,
        "hash": window[-1].hash if window else None,
        "window_records": len(window),
        "verified": not problems,
        "problems": problems,
    }
    return {
        "from": frm,
        "to": to,
        "plant": plant,
        "selection_rule": EXPORT_SELECTION_RULE
        if plant
        else "every audit record with from <= ts_utc < to",
        "count": len(chosen),
        "records": [r.__dict__ for r in chosen],
        "anchor": anchor,
        "head": {"seq": head.seq if head else 0, "hash": head.hash if head else GENESIS_HASH},
    }


def cmd_audit_export(args: argparse.Namespace) -> int:
    from quality_platform.cli._common import CliError, emit

    _, who, audit = _governed(
        args, "qp audit export", "audit_export", plant=args.plant, subject="audit_log"
    )
    try:
        out = export_window(audit, args.date_from, args.date_to, args.plant)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(
            json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in out["records"]
        )
        path.write_text(text, encoding="utf-8")
        out["out"] = {
            "path": str(path),
            "format": "jsonl (one audit record per line)",
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }
    audit.append(
        "audit_export",
        who.name,
        subject="audit_log",
        plant=args.plant,
        outcome="ok",
        reason=f"exported {out['count']} record(s) of {out['from']} .. {out['to']}",
        refs={
            "from": out["from"],
            "to": out["to"],
            "plant": args.plant,
            "count": out["count"],
            "anchor": {
                k: out["anchor"][k]
                for k in ("first_seq", "prev_hash", "last_seq", "hash", "verified")
            },
            "head": out["head"],
            "file_sha256": out.get("out", {}).get("sha256"),
        },
    )
    a = out["anchor"]
    text = "\n".join(
        [
            f"{out['count']} audit record(s) {out['from']} .. {out['to']}"
            + (f" for {args.plant}" if args.plant else ""),
            f"chain anchor: seq {a['first_seq']} prev_hash {str(a['prev_hash'])[:16]} .. seq {a['last_seq']} hash "
            f"{str(a['hash'])[:16]}; window {'verifies' if a['verified'] else 'DOES NOT verify: ' + '; '.join(a['problems'])}",
            f"chain head at export: {out['head']['seq']}:{out['head']['hash']} (check later with `qp audit verify "
            "--anchor` on this output)",
            *(
                [f"written to {out['out']['path']} (sha256 {out['out']['sha256'][:16]})"]
                if "out" in out
                else []
            ),
            *(
                f"{r['seq']:>6} {r['ts_utc']} {r['action']:<12} {r['actor']:<22} {r['outcome']:<7} {r['subject'] or ''}"
                for r in out["records"][:200]
            ),
        ]
    )
    emit(args, out, text)
    return 0 if a["verified"] else 1


# --------------------------------------------------------------------------- qp report review


def cmd_report_review(args: argparse.Namespace) -> int:
    from quality_platform.cli._common import CliError, dagster_instance, emit
    from quality_platform.config import load_plants
    from quality_platform.reports.review import ReviewError, build_review, review_markdown

    paths, who, audit = _governed(
        args, "qp report review", "report_review", plant=args.plant, subject=f"review:{args.period}"
    )
    configured = sorted(load_plants(paths))
    visible = [p for p in configured if who.sees_plant(p)]
    plants = [args.plant] if args.plant else visible
    try:
        end = dt.date.fromisoformat(args.end) if args.end else None
    except ValueError as exc:
        raise CliError(f"--end: not a date (YYYY-MM-DD): {args.end!r}") from exc
    try:
        instance = dagster_instance()
    except Exception:  # no Dagster home: compute time is reported as not measured
        instance = None
    try:
        rv = build_review(paths, args.period, end, plants, instance=instance, audit=audit)
    except ReviewError as exc:
        raise CliError(str(exc)) from exc
    md = review_markdown(rv)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        stem = f"review_{rv['period']}_{rv['end']}" + (f"_{args.plant}" if args.plant else "")
        (Path(args.out) / f"{stem}.md").write_text(md, encoding="utf-8")
        (Path(args.out) / f"{stem}.json").write_text(
            json.dumps(rv, indent=2, default=str), encoding="utf-8"
        )
        rv["written"] = [str(Path(args.out) / f"{stem}.md"), str(Path(args.out) / f"{stem}.json")]
    audit.append(
        "report_review",
        who.name,
        subject=f"review:{rv['period']}",
        plant=args.plant,
        outcome="ok",
        reason=f"operating review {rv['period']} {rv['start']} .. {rv['end']}",
        refs={"plants": rv["plants"], "start": rv["start"], "end": rv["end"]},
    )
    emit(args, {**rv, "markdown": md}, md)
    return 0


# --------------------------------------------------------------------------- qp docs model


def cmd_docs_model(args: argparse.Namespace) -> int:
    from quality_platform.cli._common import CliError, emit
    from quality_platform.definitions import build_definitions
    from quality_platform.ml.config import load_model_config
    from quality_platform.reports import model_docs as D
    from quality_platform.settings import get_paths

    model = load_model_config(get_paths()).mlflow.registered_model
    paths, who, audit = _governed(
        args, "qp docs model", "model_docs", subject=f"model:{model}/{args.version}"
    )
    try:
        doc = D.document(
            paths,
            args.version,
            regenerate=args.regenerate,
            audit=audit,
            definitions=build_definitions(paths),
        )
    except D.DocsError as exc:
        raise CliError(str(exc)) from exc
    audit.append(
        "model_docs",
        who.name,
        subject=f"model:{doc.model}/{doc.version}",
        outcome="ok",
        reason="model documentation regenerated" if doc.regenerated else "model documentation read",
        refs={
            "model_version": doc.version,
            "regenerated": doc.regenerated,
            "stale": doc.stale,
            "generated_utc": doc.generated_utc,
            "artifact_uri": doc.artifact_uri,
        },
    )
    head = (
        f"<!-- {doc.model} version {doc.version}: "
        + (
            "regenerated"
            if doc.regenerated
            else f"generated {doc.generated_utc}; stale sections: {', '.join(doc.stale) or 'none'}"
        )
        + f"; {doc.artifact_uri} -->\n"
    )
    emit(args, doc.as_dict(), head + doc.markdown)
    return 0


# --------------------------------------------------------------------------- registration


def register(add: Any, sub: Any) -> None:
    """Add this area's sub-commands. `add(name, fn, help)` returns a parser that already has --json."""

    def group(name: str, help_: str) -> Any:
        return sub.add_parser(name, help=help_).add_subparsers(
            dest=f"{name}_command", required=True
        )

    audit = group("audit", "the tamper-evident audit log (verify, export, anchor)")
    v = _command(
        audit,
        "verify",
        cmd_audit_verify,
        "verify the hash chain: names edited, deleted, inserted, reordered and truncated records",
        "Walk the audit log's hash chain and compare it with the chain heads published outside the "
        "file (MLflow model version tags qp.audit_head, Dagster run tags qp/audit_head, --anchor "
        "files); exit 1 when it does not verify.",
    )
    v.add_argument(
        "--anchor",
        action="append",
        metavar="FILE",
        help="also check this anchor file (`qp audit anchor --out` text, `qp audit export --json` "
        "output or an export JSONL); repeatable",
    )
    a = _command(
        audit,
        "anchor",
        cmd_audit_anchor,
        "the current chain head <seq>:<hash>, to store outside the audit log",
        "Print the audit chain's head (after this command's own record); store it elsewhere and "
        "check it later with `qp audit verify --anchor FILE`.",
    )
    a.add_argument("--out", help="also write the anchor to this file")
    e = _command(
        audit,
        "export",
        cmd_audit_export,
        "the complete event record of a time window (JSON / JSONL) with its chain anchor",
        "Audit records with from <= ts_utc < to. With --plant: " + EXPORT_SELECTION_RULE + ".",
    )
    e.add_argument(
        "--from", dest="date_from", required=True, help="window start (ISO date/time, UTC if naive)"
    )
    e.add_argument("--to", dest="date_to", required=True, help="window end, exclusive")
    e.add_argument(
        "--plant", help="only this plant's records and the platform-wide records that reference it"
    )
    e.add_argument("--out", help="also write the records to this JSONL file")

    r = _command(
        group("report", "operating reports"),
        "review",
        cmd_report_review,
        "operating review per plant and model (drift, incidents, overrides, policy exceptions, retrains, "
        "compute, defect-rate trend)",
    )
    r.add_argument("--period", choices=["week", "month"], default="week")
    r.add_argument(
        "--end", help="last production day of the period (default: the last day with data)"
    )
    r.add_argument("--plant", help="one plant (default: every plant the caller may see)")
    r.add_argument("--out", help="also write review_<period>_<end>.md/.json into this folder")

    m = _command(
        group("docs", "generated documentation"),
        "model",
        cmd_docs_model,
        "the documentation of a model version; sections whose evidence changed are marked STALE",
    )
    m.add_argument("version")
    m.add_argument(
        "--regenerate",
        action="store_true",
        help="regenerate from the current evidence and store it",
    )
