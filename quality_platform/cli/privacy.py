"""`qp` commands of this governance area (registered by quality_platform.cli.build_parser).

Privacy (F11): ``qp reidentify PSEUDONYM [--plant P] [--reason R]`` (data_owner, own plants, audited
without the raw id), ``qp keys id`` (the current key id and the key ids in the warehouse) and
``qp keys rotate`` (data_owner; the procedure is in :mod:`quality_platform.governance.privacy_ops`).
"""

from __future__ import annotations

import argparse
from typing import Any


def cmd_reidentify(args: argparse.Namespace) -> int:
    """Pseudonym -> raw operator id(s). Prints the raw id (to the authorised data owner only);
    the audit record holds the pseudonym, plants, key id and number of matches, never the raw id."""
    from quality_platform.cli._common import CliError, emit
    from quality_platform.governance.policy import resolve_principal
    from quality_platform.governance.privacy_ops import PrivacyOpError, reidentify

    who = resolve_principal(args.actor, command="reidentify")
    try:
        res = reidentify(who, args.pseudonym, plant=args.plant, reason=args.reason)
    except (ValueError, PrivacyOpError) as exc:
        raise CliError(str(exc)) from exc
    payload = {**res.as_dict(), "user": who.name}
    if res.matches:
        lines = [f"{res.pseudonym} (key {res.key_id}, {res.key_status}) is:"]
        lines += [
            f"  {m['raw_id']}  ({m['plant']}, {m['table']}.{m['column']})" for m in res.matches
        ]
    else:
        lines = [
            f"{res.pseudonym}: no raw id at {', '.join(res.plants_searched) or 'no plant'} under the current "
            "or a retired key"
        ]
    emit(args, payload, "\n".join(lines))
    return 0


def cmd_keys_id(args: argparse.Namespace) -> int:
    """The current pseudonymisation key id (not the key) and where keys are used."""
    from quality_platform.cli._common import emit
    from quality_platform.governance.privacy_ops import key_status

    st = key_status()
    text = [
        f"current key id: {st['key_id']} (from the {st['key_config']}"
        + (f" {st['key_file']})" if st["key_file"] else ")")
    ]
    if st["retired_key_ids"]:
        text.append(f"retired key ids kept: {', '.join(st['retired_key_ids'])}")
    for table, per_key in st["warehouse"].items():
        text.append(f"{table}: " + ", ".join(f"{k}: {n:,} rows" for k, n in per_key.items()))
    if "warning" in st:
        text.append(f"WARNING: {st['warning']}")
    if "warehouse_error" in st:
        text.append(f"(warehouse not read: {st['warehouse_error']})")
    emit(args, st, "\n".join(text))
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Rotate the pseudonymisation key to QP_PSEUDONYM_KEY_NEW (data_owner; all or nothing; audited)."""
    from quality_platform.cli._common import CliError, emit
    from quality_platform.governance.policy import resolve_principal
    from quality_platform.governance.privacy_ops import NOT_REKEYED, PrivacyOpError, rotate_key

    who = resolve_principal(args.actor, command="keys rotate")
    try:
        rot = rotate_key(who, reason=args.reason)
    except PrivacyOpError as exc:
        raise CliError(str(exc)) from exc
    text = [
        f"rotated the pseudonymisation key {rot.old_key_id} -> {rot.new_key_id} "
        f"(audit record {rot.audit_seq}); rows re-keyed:"
    ]
    text += [f"  {t}: {n:,}" for t, n in rot.tables.items()] or ["  (no pseudonym tables)"]
    text += ["next:"] + [f"  - {s}" for s in rot.next_steps]
    text += ["not re-keyed:"] + [f"  - {s}" for s in NOT_REKEYED]
    emit(args, rot.as_dict(), "\n".join(text))
    return 0


def register(add: Any, sub: Any) -> None:
    """Add this area's sub-commands. `add(name, fn, help)` returns a parser that already has --json."""
    from quality_platform.cli._common import AS_HELP

    r = add(
        "reidentify",
        cmd_reidentify,
        "pseudonym -> raw operator id(s): data_owner only, at their plants; "
        "audited without the raw id",
    )
    r.add_argument("pseudonym", help="an operator pseudonym (op_ + 20 hex digits)")
    r.add_argument("--plant", help="search only this plant (default: every plant of the user)")
    r.add_argument(
        "--reason",
        required=True,
        help="why re-identification is needed (recorded in the audit log)",
    )
    r.add_argument("--as", dest="actor", help=AS_HELP)

    k = sub.add_parser(
        "keys",
        help="pseudonymisation key: current id, rotation",
        description="pseudonymisation key: `qp keys id`, `qp keys rotate` (see "
        "quality_platform/governance/privacy_ops.py for the procedure)",
    )
    ks = k.add_subparsers(dest="keys_command", required=True)
    i = ks.add_parser(
        "id", help="the current key id (not the key) and the key ids in the warehouse"
    )
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(fn=cmd_keys_id)
    ro = ks.add_parser(
        "rotate",
        help="re-pseudonymise the warehouse with QP_PSEUDONYM_KEY_NEW (data_owner; "
        "one transaction; audited with old and new key id)",
    )
    ro.add_argument("--json", action="store_true", help="machine-readable output")
    ro.add_argument("--reason", help="why the key is rotated (recorded in the audit log)")
    ro.add_argument("--as", dest="actor", help=AS_HELP)
    ro.set_defaults(fn=cmd_keys_rotate)
