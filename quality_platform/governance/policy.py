"""The access and action policy (F10): roles, users, table grants, row scopes, column masks, actions.

One file, ``<config_dir>/governance/policy.yaml``, says

* which tables each role may read (``schema.table`` or ``schema.*``),
* which rows: a user's ``plants`` attribute filters every table that has a ``plant`` column
  (attribute-based; ``["*"]`` = all plants; roles with ``own_plants_only`` must name plants),
* which columns are masked for whom (``masks``; raw personal columns come from the plants'
  ``personal_data`` and are always pseudonymised),
* which actions each role may take (:data:`ACTIONS`), with separation of duties for approvals,
* what one governed query may use (``query_limits``: time, memory, threads, rows, nesting depth),
* who the caller is: the OS account of the process's real uid mapped to a user (never
  ``LOGNAME``/``USER``); under ``sudo`` to a service account, the calling account (``SUDO_USER``
  verified against ``SUDO_UID``); ``QP_USER`` for automation running as a service account; or
  ``--as USER`` where the policy allows impersonation (audited as such) - see
  :func:`resolve_principal` and :func:`identify`.

Everything that enforces the policy goes through :func:`authorize` (actions) and the governed
query session (:mod:`quality_platform.governance.query`, reads); a denial is audited and changes
nothing.
"""

from __future__ import annotations

import fnmatch
import os
import pwd
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from quality_platform.config import ConfigModel, load_yaml_model
from quality_platform.settings import USER_ENV, Paths, current_deployment, get_paths

if TYPE_CHECKING:
    from quality_platform.audit import AuditLog

ROLES: tuple[str, ...] = (
    "data_owner",
    "quality_engineer",
    "model_owner",
    "control_owner",
    "operations_lead",
    "plant_manager",
    "auditor",
)
ACTIONS: tuple[str, ...] = (
    "query",  # run a governed query (what it may read is the role's `read`)
    "train",  # start a training run by hand
    "approve",  # approve a model version (human in the loop)
    "reject",  # reject a model version
    "promote",  # make an approved version the champion by hand
    "rollback",  # return to the previous approved champion
    "override",  # record a decision against a prediction
    "open_incident",  # open an incident (freezes the model)
    "close_incident",  # close an incident (releases the freeze)
    "reidentify",  # pseudonym -> raw id
    "rotate_key",  # rotate the pseudonymisation key
    "audit_verify",  # verify the audit chain
    "audit_export",  # export the audit record of a window
    "report_review",  # operating review report
    "model_docs",  # generate/read model documentation
    "registry_init",  # start a new, empty model registry (the old store is lost or retired)
)
ALL_PLANTS = "*"
SYSTEM_PREFIXES: tuple[str, ...] = ("system:", "policy:")


class PolicyError(PermissionError):
    """A refused action or read (the message says who, what and why; it was audited as denied)."""


class Impersonation(ConfigModel):
    allowed: bool = False


class SeparationOfDuties(ConfigModel):
    approver_not_trainer: bool = True


_MEMORY_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def memory_bytes(text: str) -> int:
    """Bytes of a memory size as DuckDB writes it (``"1GB"`` = 10^9, ``"512MiB"`` = 512 * 2^20)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*", text)
    if not m or m.group(2).upper() not in _MEMORY_UNITS:
        raise ValueError(
            f"memory size {text!r}: a number and one of {', '.join(_MEMORY_UNITS)} (e.g. '1GB')"
        )
    return int(float(m.group(1)) * _MEMORY_UNITS[m.group(2).upper()])


class QueryLimits(ConfigModel):
    """What one governed query may use (each breach refuses it, audited as denied, naming the rule)."""

    max_seconds: float = Field(30.0, gt=0, le=3600)  # wall time; the query is interrupted after it
    max_memory: str = "1GB"  # DuckDB memory_limit, and the result's size
    max_threads: int = Field(2, ge=1, le=64)  # DuckDB threads of a governed session
    max_rows: int = Field(100_000, ge=1)  # rows returned at most (more are counted, not kept)
    # levels of the parsed query tree (json_serialize_sql): a subquery, function call or operator
    # adds about 3; bounded so that checking the tree never exhausts Python's recursion limit
    max_nesting_depth: int = Field(200, ge=20, le=600)

    @field_validator("max_memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        if memory_bytes(value) < 16 * 2**20:
            raise ValueError(f"max_memory {value!r} is below 16MiB: no query could run")
        return value

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.max_memory)


class RolePolicy(ConfigModel):
    description: str = ""
    read: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    own_plants_only: bool = False

    @model_validator(mode="after")
    def _known(self) -> RolePolicy:
        unknown = [a for a in self.actions if a not in ACTIONS]
        if unknown:
            raise ValueError(f"unknown action(s) {unknown}; known: {list(ACTIONS)}")
        for pattern in self.read:
            if pattern.count(".") != 1 or not all(pattern.split(".")):
                raise ValueError(f"read entry {pattern!r} must be 'schema.table' or 'schema.*'")
        return self


class MaskRule(ConfigModel):
    column: str
    tables: list[str]
    clear_for: list[str] = Field(default_factory=list)
    mask: Literal["redact", "null"] = "redact"


class UserPolicy(ConfigModel):
    role: str
    plants: list[str] = Field(default_factory=lambda: [ALL_PLANTS])
    os_accounts: list[str] = Field(default_factory=list)
    attributes: dict[str, str] = Field(default_factory=dict)


class Policy(ConfigModel):
    version: int
    impersonation: Impersonation = Impersonation()
    separation_of_duties: SeparationOfDuties = SeparationOfDuties()
    service_accounts: list[str] = Field(default_factory=list)
    query_limits: QueryLimits = QueryLimits()
    roles: dict[str, RolePolicy]
    masks: list[MaskRule] = Field(default_factory=list)
    users: dict[str, UserPolicy]

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        unknown_roles = [r for r in self.roles if r not in ROLES]
        if unknown_roles:
            raise ValueError(f"unknown role(s) {unknown_roles}; the roles are {list(ROLES)}")
        for name, user in self.users.items():
            if user.role not in self.roles:
                raise ValueError(
                    f"user {name!r} has role {user.role!r}, which the policy does not define"
                )
            if not user.plants:
                raise ValueError(f"user {name!r} has no plants (use ['*'] for all)")
            if self.roles[user.role].own_plants_only and ALL_PLANTS in user.plants:
                raise ValueError(
                    f"user {name!r} is a {user.role}, which sees its own plants only: name them"
                )
            if name.startswith(SYSTEM_PREFIXES):
                raise ValueError(
                    f"user {name!r}: names starting with {SYSTEM_PREFIXES} are reserved for the system"
                )
        both = [a for u in self.users.values() for a in u.os_accounts if a in self.service_accounts]
        if both:
            raise ValueError(
                f"OS account(s) {both} are service_accounts and also mapped to a user: a service "
                "account acts for SUDO_USER or QP_USER, never as itself"
            )
        seen: dict[str, str] = {}
        for name, user in self.users.items():
            for acc in user.os_accounts:
                if acc in seen:
                    raise ValueError(
                        f"OS account {acc!r} is mapped to both {seen[acc]!r} and {name!r}"
                    )
                seen[acc] = name
        for m in self.masks:
            bad = [r for r in m.clear_for if r not in self.roles]
            if bad:
                raise ValueError(f"mask of {m.column!r}: unknown role(s) {bad} in clear_for")
        return self


def policy_path(paths: Paths | None = None) -> Path:
    return (paths or get_paths()).config_dir / "governance" / "policy.yaml"


def load_policy(paths: Paths | None = None) -> Policy:
    """``<config_dir>/governance/policy.yaml``, validated (errors name the file and the field)."""
    return load_yaml_model(policy_path(paths), Policy)


@dataclass(frozen=True)
class Principal:
    """Who is acting: a policy user with role and attributes, and how they were identified."""

    name: str
    role: str
    plants: frozenset[str] | None  # None = all plants
    via: str  # os_account | env | impersonation | api
    os_account: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    def sees_plant(self, plant: str | None) -> bool:
        return self.plants is None or plant is None or plant in self.plants


def is_system_actor(actor: str) -> bool:
    return actor.startswith(SYSTEM_PREFIXES)


def principal(policy: Policy, name: str, via: str = "api", os_account: str = "") -> Principal:
    """The policy user ``name`` (raises :class:`PolicyError` for an unknown user)."""
    user = policy.users.get(name)
    if user is None:
        raise PolicyError(
            f"unknown user {name!r}: not in the policy ({policy_path()}); known users: "
            f"{sorted(policy.users)}"
        )
    plants = None if ALL_PLANTS in user.plants else frozenset(user.plants)
    return Principal(
        name=name,
        role=user.role,
        plants=plants,
        via=via,
        os_account=os_account,
        attributes=dict(user.attributes),
    )


def _os_account() -> str:
    """The account of the process's *real* uid (``pwd``; the uid as text when it has no entry).

    Never ``LOGNAME``/``USER``/``USERNAME`` (what :func:`getpass.getuser` reads first): whoever
    starts the process sets those."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry (some containers)
        return str(uid)


def _account_uid(name: str) -> int | None:
    """The uid of the OS account ``name`` (``pwd``), or None when there is no such account."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


@dataclass(frozen=True)
class Identity:
    """How the environment identifies the caller (see :func:`identify`): the policy user ``name``
    and how it was found (``via``), or ``refused`` (why) with what was ``claimed``."""

    via: str  # sudo | env | os_account
    os_account: str  # the OS account acting: the real uid's account, or the verified sudo caller
    name: str | None = None
    refused: str | None = None
    claimed: str = ""


def identify(
    policy: Policy,
    account: str,
    env: Mapping[str, str],
    *,
    uid_of: Callable[[str], int | None] = _account_uid,
) -> Identity:
    """Who the caller is, from the real uid's ``account`` and the environment ``env`` (no ``--as``).

    A pure decision (``uid_of`` looks up an account's uid): variables a caller can set are believed
    only where they cannot lie about someone else:

    * ``SUDO_USER`` only when ``account`` (the real uid) is one of the policy's ``service_accounts``
      - i.e. sudo really switched to it - and ``SUDO_UID`` is the uid of ``SUDO_USER``; otherwise,
      on a service account, refused; on any other account ignored (``sudo`` to root sets it too,
      and root is then its own mapped user);
    * ``QP_USER`` only on a service account or where the policy allows impersonation;
    * ``LOGNAME``/``USER`` never.
    """
    service = account in policy.service_accounts
    caller = env.get("SUDO_USER") if service else None
    if caller:
        sudo_uid = env.get("SUDO_UID", "")
        real_uid = uid_of(caller)
        if real_uid is None or not sudo_uid.isdigit() or int(sudo_uid) != real_uid:
            return Identity(
                "sudo",
                account,
                refused=(
                    f"SUDO_USER={caller} cannot be verified on service account {account!r}: SUDO_UID={sudo_uid or '(unset)'} "
                    f"is not the uid of OS account {caller!r} "
                    f"({'no such account' if real_uid is None else real_uid}); refused"
                ),
                claimed=caller,
            )
        for name, user in policy.users.items():
            if caller in user.os_accounts:
                return Identity("sudo", caller, name=name)
        return Identity(
            "sudo",
            caller,
            refused=f"OS account {caller!r} (via sudo to {account!r}) is not mapped to a "
            f"policy user in the policy",
            claimed=caller,
        )
    env_user = env.get(USER_ENV)
    if env_user:
        if not (service or policy.impersonation.allowed):
            spoof = sorted(
                {env[v] for v in ("LOGNAME", "USER") if env.get(v) and env[v] != account}
            )
            hint = (
                f" (LOGNAME/USER={', '.join(spoof)} are not used: the OS account is the process's real uid)"
                if spoof
                else ""
            )
            return Identity(
                "env",
                account,
                refused=(
                    f"{USER_ENV}={env_user} is refused: OS account {account!r} is not one of the policy's "
                    f"service_accounts (and impersonation is not allowed){hint}"
                ),
                claimed=env_user,
            )
        return Identity("env", account, name=env_user)
    for name, user in policy.users.items():
        if account in user.os_accounts:
            return Identity("os_account", account, name=name)
    return Identity("os_account", account)


def _refuse_identity(
    log: AuditLog, account: str, claimed: str, command: str, why: str
) -> PolicyError:
    log.append(
        "identity",
        account,
        subject=f"user:{claimed}",
        outcome="denied",
        reason=why,
        refs={"command": command, "os_account": account},
    )
    return PolicyError(why)


def resolve_principal(
    as_user: str | None = None,
    *,
    command: str = "",
    policy: Policy | None = None,
    audit: AuditLog | None = None,
    paths: Paths | None = None,
) -> Principal:
    """Who runs this command, in this order:

    1. ``--as USER``: only where the policy allows impersonation; audited (action ``identity``);
    2. under ``sudo`` to one of the policy's ``service_accounts`` (the account that owns the data,
       and the process's real uid): the OS account that called sudo (``SUDO_USER``, verified
       against ``SUDO_UID``), mapped in the policy;
    3. ``QP_USER`` (automation, e.g. a scheduler): only when the process runs as a service account
       or the policy allows impersonation - otherwise anyone could name anyone; a refusal is audited;
    4. the OS account of the process's real uid (never ``LOGNAME``/``USER``), mapped to a policy
       user by ``os_accounts``.

    See :func:`identify` for which variables are believed when.
    """
    from quality_platform.audit import AuditLog, audit_db_path

    paths = paths or get_paths()
    policy = policy or load_policy(paths)
    account = _os_account()

    def log() -> AuditLog:
        return audit or AuditLog(audit_db_path(paths))

    if as_user:
        if not policy.impersonation.allowed:
            raise _refuse_identity(
                log(),
                account,
                as_user,
                command,
                f"--as {as_user} is refused: impersonation is not allowed by the policy "
                f"({policy_path(paths)}); run as your own account",
            )
        who = principal(policy, as_user, via="impersonation", os_account=account)
        log().append(
            "identity",
            who.name,
            subject=f"user:{who.name}",
            outcome="info",
            reason=f"{command or 'command'} run as {who.name} ({who.role}) by impersonation from OS account "
            f"{account!r} (allowed by the policy)",
            refs={"command": command, "os_account": account, "via": "impersonation"},
        )
        return who
    ident = identify(policy, account, current_deployment().identity_environment)
    if ident.refused:
        raise _refuse_identity(
            log(),
            ident.os_account,
            ident.claimed,
            command,
            f"{ident.refused} ({policy_path(paths)})",
        )
    if ident.name:
        return principal(policy, ident.name, via=ident.via, os_account=ident.os_account)
    raise PolicyError(
        f"OS account {account!r} is not mapped to a policy user: add it to a user's os_accounts in "
        f"{policy_path(paths)}, run as a service account with {USER_ENV}, or use --as USER where "
        "impersonation is allowed"
    )


def may(policy: Policy, who: Principal, action: str) -> bool:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {list(ACTIONS)}")
    return action in policy.roles[who.role].actions


def roles_allowed(policy: Policy, action: str) -> list[str]:
    return sorted(r for r, rp in policy.roles.items() if action in rp.actions)


def authorize(
    policy: Policy,
    who: Principal | str,
    action: str,
    audit: AuditLog,
    *,
    subject: str | None = None,
    plant: str | None = None,
    reason: str | None = None,
    refs: dict[str, Any] | None = None,
) -> Principal:
    """Refuse (audit as ``denied`` and raise :class:`PolicyError`) unless ``who`` may take ``action``
    (for ``plant``, when given). Returns the principal. Allowed actions are audited by the code that
    carries them out, with their own references."""
    if isinstance(who, str):
        try:
            who = principal(policy, who)
        except PolicyError as exc:
            audit.append(
                action,
                who or "(unknown)",
                subject=subject,
                plant=plant,
                reason=reason,
                outcome="denied",
                refs={**(refs or {}), "denied_because": str(exc)},
            )
            raise
    why = None
    if not may(policy, who, action):
        why = (
            f"user {who.name} (role {who.role}) may not {action}: the policy allows it to "
            f"{', '.join(roles_allowed(policy, action)) or 'no role'}"
        )
    elif plant is not None and not who.sees_plant(plant):
        why = f"user {who.name} (role {who.role}) may not {action} at {plant}: their plants are {sorted(who.plants or [])}"
    if why:
        audit.append(
            action,
            who.name,
            subject=subject,
            plant=plant,
            reason=reason,
            outcome="denied",
            refs={**(refs or {}), "denied_because": why, "role": who.role, "via": who.via},
        )
        raise PolicyError(why)
    return who


def readable(policy: Policy, role: str, schema: str, table: str) -> bool:
    """Whether ``role`` may read ``schema.table``."""
    return any(
        fnmatch.fnmatchcase(f"{schema}.{table}", pattern) for pattern in policy.roles[role].read
    )


def column_mask(policy: Policy, role: str, schema: str, table: str, column: str) -> str | None:
    """The mask (``redact``/``null``) that applies to a column for ``role``, or None (clear)."""
    for m in policy.masks:
        if (
            m.column == column
            and role not in m.clear_for
            and any(fnmatch.fnmatchcase(f"{schema}.{table}", t) for t in m.tables)
        ):
            return m.mask
    return None
