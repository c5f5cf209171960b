"""The policy governs actions, not only data: who may approve, reject, promote, roll back, train and
override; identity (OS account, QP_USER, --as only where impersonation is allowed); separation of
duties (nobody approves a version they trained). A denied action changes nothing, says why and is
audited."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import yaml

from quality_platform.cli import main
from quality_platform.governance import policy as P
from quality_platform.ml.registry import CHAMPION
from quality_platform_tests.conftest import GovEnv


def _cli(*argv: str) -> tuple[int, dict]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([*argv, "--json"])
    return rc, json.loads(buf.getvalue())


def _edit_policy(env: GovEnv, *changes: tuple[tuple[str, ...], object]) -> None:
    """Set values in the installation's policy file: ``((key, key, ...), value)`` pairs."""
    f = P.policy_path(env.paths)
    doc = yaml.safe_load(f.read_text())
    for (*parents, last), value in changes:
        node = doc
        for key in parents:
            node = node[key]
        node[last] = value
    f.write_text(yaml.safe_dump(doc))


def _state(env: GovEnv) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [
        (v.version, v.approval, v.status, tuple(sorted(v.aliases))) for v in env.registry.versions()
    ]


LIFECYCLE = {
    "approve": ("approve", "1", "--reason", "looks fine"),
    "reject": ("reject", "1", "--reason", "not convinced"),
    "promote": ("promote", "1", "--reason", "by hand"),
    "rollback": ("rollback", "--reason", "false alarms"),
}


def test_role_by_action_matrix_denials_change_nothing(gov_env: GovEnv) -> None:
    """Every policy user that may not take a lifecycle action is refused, audited, and nothing moves."""
    pol = P.load_policy(gov_env.paths)
    before = _state(gov_env)
    denied = 0
    for user, spec in pol.users.items():
        for action, argv in LIFECYCLE.items():
            if action in pol.roles[spec.role].actions:
                continue
            rc, out = _cli(*argv, "--as", user)
            assert rc == 2, (user, action, out)
            assert f"may not {action}" in out["error"] and spec.role in out["error"], out
            rec = gov_env.audit.records(action=action)[-1]
            assert rec.outcome == "denied" and rec.actor == user and rec.refs["role"] == spec.role
            denied += 1
    assert denied >= 20 and _state(gov_env) == before
    # the impersonation itself is audited for every command
    idents = gov_env.audit.records(action="identity")
    assert len(idents) >= denied and all(r.refs["via"] == "impersonation" for r in idents)
    assert gov_env.audit.verify().ok


def test_allowed_roles_act(gov_env: GovEnv) -> None:
    """operations_lead rolls back (no earlier champion: refused for that reason, not by the policy);
    the control owner rejects; the quality engineer may not reject."""
    rc, out = _cli("rollback", "--as", "olga.ops", "--reason", "plant reports false alarms")
    assert rc == 2 and "no earlier approved champion" in out["error"]
    rc, out = _cli("reject", "1", "--as", "quinn.quality", "--reason", "x")
    assert rc == 2 and "may not reject" in out["error"]
    rc, out = _cli("reject", "1", "--as", "carl.control", "--reason", "champion")
    assert (
        rc == 2 and "is the champion" in out["error"]
    )  # a business rule, after the policy allowed it


def test_identity_os_account_env_and_impersonation(
    gov_env: GovEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(P, "_os_account", lambda: "root")
    assert (
        P.resolve_principal(paths=gov_env.paths).name == "olga.ops"
    )  # root -> olga.ops in the policy
    monkeypatch.setattr(P, "_os_account", lambda: "intruder")
    with pytest.raises(P.PolicyError, match="not mapped to a policy user"):
        P.resolve_principal(paths=gov_env.paths)
    monkeypatch.setenv(
        P.USER_ENV, "aud.it"
    )  # honoured here only because the test policy allows impersonation
    who = P.resolve_principal(paths=gov_env.paths)
    assert (who.name, who.role, who.via) == ("aud.it", "auditor", "env")
    monkeypatch.delenv(P.USER_ENV)
    monkeypatch.delenv("SUDO_USER", raising=False)

    # impersonation switched off: --as is refused and audited; the command changes nothing
    _edit_policy(gov_env, (("impersonation", "allowed"), False))
    before = _state(gov_env)
    rc, out = _cli("approve", "1", "--as", "carl.control", "--reason", "fine")
    assert rc == 2 and "impersonation is not allowed" in out["error"]
    rec = gov_env.audit.records(action="identity")[-1]
    assert (
        rec.outcome == "denied" and rec.actor == "intruder" and rec.subject == "user:carl.control"
    )
    # ... and the OS account acts as itself: unmapped -> refused
    rc, out = _cli("approve", "1", "--reason", "fine")
    assert rc == 2 and "not mapped" in out["error"]
    # QP_USER from an ordinary account would let anyone name anyone: refused and audited
    monkeypatch.setenv(P.USER_ENV, "carl.control")
    rc, out = _cli("approve", "1", "--reason", "fine")
    assert rc == 2 and "not one of the policy's service_accounts" in out["error"]
    assert gov_env.audit.records(action="identity")[-1].outcome == "denied"
    # ... but automation running as the service account names its user in QP_USER
    monkeypatch.setattr(P, "_os_account", lambda: "qp-service")
    monkeypatch.setenv(P.USER_ENV, "quinn.quality")
    rc, out = _cli("approve", "1", "--reason", "fine")
    assert rc == 2 and "quinn.quality (role quality_engineer) may not approve" in out["error"]
    # a person under sudo to the service account acts as their own mapped user, whatever QP_USER says
    # (SUDO_UID must be SUDO_USER's uid: sudo sets both; see test_identity.py for real processes)
    monkeypatch.setenv("SUDO_USER", "root")
    monkeypatch.setenv("SUDO_UID", "0")
    who = P.resolve_principal(paths=gov_env.paths)
    assert (who.name, who.via, who.os_account) == ("olga.ops", "sudo", "root")
    monkeypatch.setenv("SUDO_UID", "1000")  # a forged sudo context: refused and audited
    with pytest.raises(P.PolicyError, match="SUDO_USER=root cannot be verified"):
        P.resolve_principal(paths=gov_env.paths)
    rec = gov_env.audit.records(action="identity")[-1]
    assert (rec.outcome, rec.actor, rec.subject) == ("denied", "qp-service", "user:root")
    monkeypatch.setenv("SUDO_USER", "nobody")  # a real account the policy does not map
    monkeypatch.setenv("SUDO_UID", "65534")
    with pytest.raises(P.PolicyError, match="via sudo"):
        P.resolve_principal(paths=gov_env.paths)
    assert _state(gov_env) == before


def test_policy_file_errors_name_the_field(gov_env: GovEnv) -> None:
    _edit_policy(gov_env, (("users", "paul.plant_a", "plants"), ["*"]))
    with pytest.raises(Exception, match=r"policy.yaml.*own plants only"):
        P.load_policy(gov_env.paths)
    _edit_policy(
        gov_env,
        (("users", "paul.plant_a", "plants"), ["plant_a"]),
        (("roles", "auditor", "actions"), ["query", "launch_rockets"]),
    )
    with pytest.raises(Exception, match=r"policy.yaml: field 'roles.auditor'.*launch_rockets"):
        P.load_policy(gov_env.paths)


def test_separation_of_duties(gov_env: GovEnv) -> None:
    """A control owner who trains a version (allowed to train in this plant's policy) cannot approve
    it; the second control owner can."""
    pol = P.load_policy(gov_env.paths)
    _edit_policy(
        gov_env,
        (("roles", "control_owner", "actions"), [*pol.roles["control_owner"].actions, "train"]),
    )
    rc, out = _cli("train", "--as", "quinn.quality")
    assert rc == 2 and "may not train" in out["error"]
    rc, out = _cli("train", "--as", "carl.control")
    assert rc == 0 and out["version"] == "2", out
    v2 = gov_env.registry.version("2")
    assert v2.tag("trained_by") == "carl.control"
    if (
        v2.approval == "approved"
    ):  # auto-approved inside the envelope: take the human path on a fresh version
        gov_env.registry.set_tags("2", {"approval": "pending"})
    rc, out = _cli("approve", "2", "--as", "carl.control", "--reason", "my own work is fine")
    assert rc == 2 and "separation of duties" in out["error"]
    rec = gov_env.audit.records(action="approve")[-1]
    assert rec.outcome == "denied" and "separation of duties" in rec.refs["denied_because"]
    assert gov_env.registry.version("2").approval == "pending"
    rc, out = _cli(
        "approve", "2", "--as", "cora.control", "--reason", "second pair of eyes: gate read"
    )
    assert rc == 0 and out["approval"] == "approved" and out["approved_by"] == "cora.control"
    rc, out = _cli("promote", "2", "--as", "cora.control", "--reason", "release")
    assert rc == 0 and CHAMPION in out["aliases"]
    assert gov_env.audit.verify().ok
