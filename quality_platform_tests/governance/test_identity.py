"""Identity comes from the process's real uid and a verifiable sudo context, never from variables a
caller sets (hardening #11, item 6): ``LOGNAME``/``USER`` are ignored, ``SUDO_USER`` is believed
only on a service account with a matching ``SUDO_UID``, ``QP_USER`` only on a service account (or
where impersonation is allowed). Spoofing attempts that claim a policy user are refused and audited.

The subprocess tests run real processes with spoofed environments; the genuine service-account
path runs a process whose real uid is the existing ``nobody`` account (made a service account in
a test policy), which needs root to start it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from quality_platform.audit import AuditLog, audit_db_path
from quality_platform.governance import policy as P
from quality_platform.settings import REPO_ROOT, Paths

REAL = pwd.getpwuid(os.getuid()).pw_name

#: resolve_principal in a fresh process; prints the principal (or the refusal) as JSON.
_SCRIPT = """
import json, os, sys
from pathlib import Path
import quality_platform.audit  # imported before a uid switch (the interpreter's files may be private to root)
from quality_platform.governance.policy import PolicyError, load_policy, resolve_principal
from quality_platform.settings import Paths
root = Path(sys.argv[1])
load_policy(Paths(data_dir=root / "data", config_dir=root / "config"))
if len(sys.argv) > 2:  # become this account for real: real, effective and saved uid
    os.setgid(int(sys.argv[3]))
    os.setresuid(int(sys.argv[2]), int(sys.argv[2]), int(sys.argv[2]))
    assert os.getuid() == int(sys.argv[2])
try:
    who = resolve_principal(command="identity test", paths=Paths(data_dir=root / "data", config_dir=root / "config"))
    print(json.dumps({"name": who.name, "via": who.via, "os_account": who.os_account}))
except PolicyError as exc:
    print(json.dumps({"refused": str(exc)}))
"""


def _install(
    root: Path, *, impersonation: bool = False, service_accounts: list[str] | None = None
) -> Path:
    """A minimal installation under ``root``: the shipped policy (impersonation switched as given)
    and a data folder for the audit log, readable/writable by any account."""
    (root / "config" / "governance").mkdir(parents=True)
    (root / "data").mkdir()
    doc = yaml.safe_load((REPO_ROOT / "data" / "governance" / "policy.yaml").read_text())
    doc["impersonation"]["allowed"] = impersonation
    if service_accounts is not None:
        doc["service_accounts"] = service_accounts
    (root / "config" / "governance" / "policy.yaml").write_text(yaml.safe_dump(doc))
    for d in (root, root / "config", root / "config" / "governance", root / "data"):
        d.chmod(0o777)
    return root


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("QP_USER", "SUDO_USER", "SUDO_UID", "SUDO_GID", "SUDO_COMMAND", "LOGNAME", "USER")
    }
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return {**env, **extra}


def _resolve(root: Path, user: str | None = None, **env: str) -> dict[str, str]:
    """resolve_principal in a new process with environment ``env``; as the OS account ``user``
    (its real uid, switched to by the process itself after start-up) when given."""
    drop = [] if user is None else [str(pwd.getpwnam(user).pw_uid), str(pwd.getpwnam(user).pw_gid)]
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(root), *drop],
        env=_env(**env),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _identity_records(root: Path) -> list:
    db = audit_db_path(Paths(data_dir=root / "data", config_dir=root / "data"))
    return AuditLog(db).records(action="identity") if db.exists() else []


def _mapped(policy: P.Policy, account: str) -> str | None:
    return next((n for n, u in policy.users.items() if account in u.os_accounts), None)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every account can reach (pytest's tmp_path is private to the test's account)."""
    d = Path(tempfile.mkdtemp(prefix="qp_identity_", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- the decision


def _policy(dana: list[str] | None = None, **changes: object) -> P.Policy:
    """The shipped policy without impersonation; ``dana`` = dana.data's OS accounts."""
    doc = yaml.safe_load((REPO_ROOT / "data" / "governance" / "policy.yaml").read_text())
    doc["impersonation"]["allowed"] = False
    doc["users"]["dana.data"]["os_accounts"] = dana or []
    doc.update(changes)
    return P.Policy.model_validate(doc)


UIDS = {"root": 0, "dana": 1001, "qp-service": 990}


def test_identify_believes_only_what_cannot_lie() -> None:
    """The decision from (real uid's account, environment): each spoofing variable alone and in
    combination, and the genuine sudo / automation paths."""
    pol = _policy(dana=["dana"])

    def ident(account: str, **env: str) -> P.Identity:
        return P.identify(pol, account, env, uid_of=UIDS.get)

    # LOGNAME/USER never change who the real uid is
    assert ident("root", LOGNAME="qp-service", USER="qp-service") == P.Identity(
        "os_account", "root", "olga.ops"
    )
    # ... nor does SUDO_USER on an account that is not a service account (sudo to root sets it too)
    assert ident("root", SUDO_USER="dana", SUDO_UID="1001").name == "olga.ops"
    # QP_USER from a non-service account claims someone: refused (and the spoofed LOGNAME is named)
    got = ident("root", LOGNAME="qp-service", USER="qp-service", QP_USER="carl.control")
    assert (
        got.name is None
        and got.claimed == "carl.control"
        and "not one of the policy's service_accounts" in (got.refused or "")
        and "LOGNAME/USER=qp-service are not used" in (got.refused or "")
    )
    # genuine sudo to the service account: SUDO_USER with its own uid
    assert ident("qp-service", SUDO_USER="dana", SUDO_UID="1001") == P.Identity(
        "sudo", "dana", "dana.data"
    )
    # ... and it wins over QP_USER
    assert (
        ident("qp-service", SUDO_USER="dana", SUDO_UID="1001", QP_USER="carl.control").name
        == "dana.data"
    )
    # a SUDO_USER whose SUDO_UID does not match (or is missing, or names no account): refused
    for env in (
        {"SUDO_USER": "root", "SUDO_UID": "1001"},
        {"SUDO_USER": "root"},
        {"SUDO_USER": "ghost", "SUDO_UID": "4242"},
        {"SUDO_USER": "root", "SUDO_UID": "0x0"},
    ):
        got = ident("qp-service", **env)
        assert (
            got.name is None
            and got.claimed == env["SUDO_USER"]
            and "cannot be verified" in (got.refused or "")
        ), env
    # a verified caller that the policy does not map: refused
    pol = _policy()
    got = ident("qp-service", SUDO_USER="dana", SUDO_UID="1001")
    assert got.refused and "via sudo" in got.refused and got.os_account == "dana"
    # automation on the service account names its user
    assert ident("qp-service", QP_USER="aud.it") == P.Identity("env", "qp-service", "aud.it")
    # an unmapped account without claims: no user, no refusal (resolve_principal says what to do)
    assert ident("intruder") == P.Identity("os_account", "intruder")
    # where impersonation is allowed, QP_USER is honoured from any account (like --as)
    assert (
        P.identify(_policy(impersonation={"allowed": True}), "root", {"QP_USER": "aud.it"}).name
        == "aud.it"
    )


def test_os_account_is_the_real_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "qp-service")
    monkeypatch.setenv("USER", "qp-service")
    monkeypatch.setenv("USERNAME", "qp-service")
    assert P._os_account() == REAL != "qp-service"


# --------------------------------------------------------------------------- real processes


def test_spoofed_environment_in_a_real_process(tmp_path: Path) -> None:
    """LOGNAME/USER naming the service account, with SUDO_USER and QP_USER: the process acts as the
    real uid's mapped user, and a claim of another user is refused and audited."""
    root = _install(tmp_path / "inst")
    policy = P.load_policy(Paths(data_dir=root / "data", config_dir=root / "config"))
    mapped = _mapped(policy, REAL)
    assert REAL not in policy.service_accounts
    spoof = {"LOGNAME": "qp-service", "USER": "qp-service"}
    got = _resolve(root, **spoof, SUDO_USER=REAL, SUDO_UID=str(os.getuid()))
    if mapped:  # root -> olga.ops in the shipped policy
        assert got == {"name": mapped, "via": "os_account", "os_account": REAL}
    else:
        assert "is not mapped to a policy user" in got["refused"]
    assert _identity_records(root) == []  # nothing claimed, nothing refused

    got = _resolve(root, **spoof, QP_USER="carl.control")
    assert "QP_USER=carl.control is refused" in got["refused"] and "qp-service" in got["refused"]
    (rec,) = _identity_records(root)
    assert (rec.outcome, rec.actor, rec.subject, rec.refs["os_account"]) == (
        "denied",
        REAL,
        "user:carl.control",
        REAL,
    )


@pytest.mark.skipif(os.getuid() != 0, reason="starting a process as another account needs root")
def test_genuine_service_account_process(shared_dir: Path) -> None:
    """A process whose real uid is a service account (here the system account ``nobody``): a sudo
    context with the caller's real uid is believed, a forged SUDO_UID is refused and audited, and
    QP_USER names the automation's user."""
    svc = pwd.getpwuid(65534).pw_name if any(p.pw_uid == 65534 for p in pwd.getpwall()) else None
    if svc is None:
        pytest.skip("no account with uid 65534")
    root = _install(shared_dir / "inst", service_accounts=[svc])
    policy = P.load_policy(Paths(data_dir=root / "data", config_dir=root / "config"))
    mapped = _mapped(policy, "root")
    assert mapped == "olga.ops"  # the shipped policy maps root

    got = _resolve(root, svc, SUDO_USER="root", SUDO_UID="0", LOGNAME=svc)
    assert got == {"name": "olga.ops", "via": "sudo", "os_account": "root"}
    got = _resolve(root, svc, SUDO_USER="root", SUDO_UID="12345")
    assert "SUDO_USER=root cannot be verified" in got["refused"]
    (rec,) = _identity_records(root)
    assert (rec.outcome, rec.actor, rec.subject) == (
        "denied",
        svc,
        "user:root",
    )  # the real uid, not the claim
    got = _resolve(root, svc, QP_USER="aud.it", LOGNAME="root", USER="root")
    assert got == {"name": "aud.it", "via": "env", "os_account": svc}
