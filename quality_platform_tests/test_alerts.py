"""The alert channel: file and webhook delivery (against a real local HTTP server), the fallback
to the file when the webhook fails, min_severity filtering, audit records and config errors."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from quality_platform.alerts import (
    Alert,
    AlertConfig,
    load_alert_config,
    read_alerts,
    send_alert,
)
from quality_platform.audit import AuditLog, audit_db_path
from quality_platform.config import ConfigError
from quality_platform.settings import REPO_ROOT, Paths

PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A bare installation: only ``ml/`` in the config dir, environment cleaned."""
    data = tmp_path / "data"
    (data / "ml").mkdir(parents=True)
    for var in ("QP_AUDIT_DB", "QP_ALERT_WEBHOOK_URL", *PROXY_VARS):
        monkeypatch.delenv(var, raising=False)
    return Paths(data_dir=data, config_dir=data)


def write_config(paths: Paths, text: str) -> Path:
    p = paths.config_dir / "ml" / "alerts.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def audit_alerts(paths: Paths) -> list[Any]:
    return AuditLog(audit_db_path(paths)).records(action="alert")


class Receiver:
    """A real HTTP server on 127.0.0.1 recording every POST (status configurable)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- config


def test_committed_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QP_ALERT_WEBHOOK_URL", raising=False)
    cfg = load_alert_config(Paths(data_dir=REPO_ROOT / "data", config_dir=REPO_ROOT / "data"))
    assert cfg.channel == "file"


def test_missing_or_empty_file_means_defaults(paths: Paths) -> None:
    assert load_alert_config(paths) == AlertConfig()
    write_config(paths, "# only comments\n")
    cfg = load_alert_config(paths)
    assert cfg.channel == "file" and cfg.file.path == "alerts/alerts.jsonl"
    assert cfg.min_severity == "info" and cfg.webhook.timeout_seconds == 5


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("channel: pager\n", "channel"),
        ("min_severity: critical\n", "min_severity"),
        ("webhook: {url: 'ftp://x', timeout_seconds: 1}\n", "webhook.url"),
        ("webhook: {url: 'http://x', timeout_seconds: 0}\n", "webhook.timeout_seconds"),
        ("webhook: {headers: {Authorization: 'Bearer abc'}}\n", "webhook.headers"),
        ("webhook: {headers_from_env: {X-Token: 'not a var'}}\n", "webhook.headers_from_env"),
        ("file: {path: ''}\n", "file.path"),
        ("file: {pth: x}\n", "file.pth"),
        ("channel: webhook\n", "webhook.url"),
    ],
)
def test_config_errors_name_file_and_field(paths: Paths, text: str, field: str) -> None:
    p = write_config(paths, text)
    with pytest.raises(ConfigError) as exc:
        load_alert_config(paths)
    assert str(p) in str(exc.value)
    assert f"field '{field}'" in str(exc.value)


def test_webhook_url_from_env(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(paths, "channel: webhook\n")
    monkeypatch.setenv("QP_ALERT_WEBHOOK_URL", "https://hooks.example.com/abc")
    assert load_alert_config(paths).channel == "webhook"
    monkeypatch.setenv("QP_ALERT_WEBHOOK_URL", "not-a-url")
    with pytest.raises(ConfigError, match="QP_ALERT_WEBHOOK_URL"):
        load_alert_config(paths)


def test_alert_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        Alert("bogus", "info", "x")
    with pytest.raises(ValueError, match="severity"):
        Alert("drift_alarm", "fatal", "x")
    with pytest.raises(ValueError, match="summary"):
        Alert("drift_alarm", "info", " ")


# --------------------------------------------------------------------------- file channel


def test_file_channel_writes_json_lines(paths: Paths) -> None:
    a1 = Alert(
        "drift_alarm",
        "warning",
        "PSI 0.31 on spindle_temp",
        plant="plant_a",
        details={"psi": 0.31, "feature": "spindle_temp"},
    )
    a2 = Alert("promotion", "info", "defect_model v4 promoted")
    r1 = send_alert(a1, paths)
    r2 = send_alert(a2, paths)
    assert r1["sent"] and r1["delivered"] and r1["channel"] == "file" and r1["error"] is None
    assert r2["delivered"]
    f = paths.data_dir / "alerts" / "alerts.jsonl"
    lines = f.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["kind"] == "drift_alarm" and first["plant"] == "plant_a"
    assert first["details"] == {"psi": 0.31, "feature": "spindle_temp"}
    assert first["delivered"] is True and first["ts_utc"] == a1.ts_utc
    got = read_alerts(paths)
    assert [a["kind"] for a in got] == ["drift_alarm", "promotion"]
    assert [a["kind"] for a in read_alerts(paths, plant="plant_a")] == ["drift_alarm"]
    assert [a["kind"] for a in read_alerts(paths, limit=1)] == ["promotion"]


def test_audit_record_for_each_alert(paths: Paths) -> None:
    r = send_alert(
        Alert(
            "gate_failed", "error", "release gate failed: auc 0.61 < 0.7", details={"version": "5"}
        ),
        paths,
    )
    send_alert(Alert("rollback", "warning", "rolled back to v3", plant="plant_b"), paths)
    recs = audit_alerts(paths)
    assert len(recs) == 2
    assert recs[0].seq == r["audit_seq"]
    assert recs[0].actor == "system:alerts" and recs[0].actor_kind == "system"
    assert recs[0].outcome == "ok" and recs[0].reason.startswith("release gate failed")
    assert recs[0].refs["kind"] == "gate_failed" and recs[0].refs["severity"] == "error"
    assert recs[0].refs["channel"] == "file" and recs[0].refs["delivered"] is True
    assert recs[1].plant == "plant_b"
    assert AuditLog(audit_db_path(paths)).verify().ok


def test_min_severity_filters(paths: Paths) -> None:
    write_config(paths, "min_severity: warning\n")
    r = send_alert(Alert("retrain", "info", "retrain triggered"), paths)
    assert r["sent"] is False and "min_severity" in r["reason"]
    assert send_alert(Alert("run_failure", "error", "run failed"), paths)["sent"] is True
    assert [a["kind"] for a in read_alerts(paths)] == ["run_failure"]
    assert [rec.refs["kind"] for rec in audit_alerts(paths)] == ["run_failure"]


def test_unserialisable_details_do_not_raise(paths: Paths) -> None:
    r = send_alert(
        Alert(
            "sensor_fault", "warning", "sensor stuck", details={"obj": object(), "path": Path("/x")}
        ),
        paths,
    )
    assert r["delivered"]
    assert read_alerts(paths)[0]["details"]["path"] == "/x"


def test_bad_config_falls_back_to_file_and_never_raises(paths: Paths) -> None:
    write_config(paths, "channel: [\n")
    r = send_alert(Alert("run_failure", "error", "run failed"), paths)
    assert r["sent"] and r["delivered"] is False and "alert config" in r["error"]
    assert (paths.data_dir / "alerts" / "alerts.jsonl").exists()
    assert audit_alerts(paths)[0].outcome == "failed"


# --------------------------------------------------------------------------- webhook


def test_webhook_delivery(
    paths: Paths, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        paths,
        "channel: webhook\n"
        "webhook:\n"
        f"  url: {receiver.url}\n"
        "  timeout_seconds: 2\n"
        "  headers: {X-Source: qp-test}\n"
        "  headers_from_env: {Authorization: TEST_ALERT_TOKEN}\n",
    )
    monkeypatch.setenv("TEST_ALERT_TOKEN", "Bearer s3cret")
    alert = Alert(
        "drift_alarm", "warning", "drift on plant_a", plant="plant_a", details={"psi": 0.4}
    )
    r = send_alert(alert, paths)
    assert r["delivered"] is True and r["http_status"] == 200 and r["error"] is None
    assert r["file"] is None
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    assert req["path"] == "/hooks/secret-token"
    assert req["headers"]["Authorization"] == "Bearer s3cret"
    assert req["headers"]["X-Source"] == "qp-test"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["body"]["kind"] == "drift_alarm" and req["body"]["plant"] == "plant_a"
    assert req["body"]["details"] == {"psi": 0.4} and req["body"]["ts_utc"] == alert.ts_utc
    assert not (paths.data_dir / "alerts" / "alerts.jsonl").exists()
    rec = audit_alerts(paths)[0]
    assert rec.outcome == "ok" and rec.refs["delivered"] is True
    assert rec.refs["channel"] == "webhook" and rec.refs["http_status"] == 200
    # neither the token in the URL path nor the secret header reaches the audit log
    text = json.dumps(rec.refs)
    assert "secret-token" not in text and "s3cret" not in text
    assert rec.refs["target"].startswith("http://127.0.0.1:")


def test_webhook_url_env_wins(
    paths: Paths, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        paths, f"channel: webhook\nwebhook: {{url: 'http://127.0.0.1:{closed_port()}/'}}\n"
    )
    monkeypatch.setenv("QP_ALERT_WEBHOOK_URL", receiver.url)
    assert send_alert(Alert("promotion", "info", "v4 promoted"), paths)["delivered"] is True
    assert len(receiver.requests) == 1


def test_webhook_http_500_falls_back_to_file(paths: Paths, receiver: Receiver) -> None:
    receiver.status = 500
    write_config(paths, f"channel: webhook\nwebhook: {{url: '{receiver.url}'}}\n")
    r = send_alert(Alert("rollback", "error", "rolled back"), paths)
    assert r["sent"] and r["delivered"] is False and "500" in r["error"]
    assert len(receiver.requests) == 1
    lines = read_alerts(paths)
    assert len(lines) == 1 and lines[0]["delivered"] is False and "500" in lines[0]["error"]
    assert lines[0]["channel"] == "webhook"
    rec = audit_alerts(paths)[0]
    assert rec.outcome == "failed" and rec.refs["delivered"] is False
    assert "500" in rec.refs["error"]


def test_webhook_closed_port_falls_back_to_file(paths: Paths) -> None:
    cfg = AlertConfig.model_validate(
        {
            "channel": "webhook",
            "webhook": {"url": f"http://127.0.0.1:{closed_port()}/x", "timeout_seconds": 2},
        }
    )
    r = send_alert(Alert("performance_drop", "warning", "auc dropped"), paths, config=cfg)
    assert r["delivered"] is False and "unreachable" in r["error"]
    assert read_alerts(paths, config=cfg)[0]["delivered"] is False
    assert audit_alerts(paths)[0].outcome == "failed"


def test_webhook_timeout_falls_back_to_file(paths: Paths) -> None:
    # a listening socket that never answers
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/"
        cfg = AlertConfig.model_validate(
            {"channel": "webhook", "webhook": {"url": url, "timeout_seconds": 0.3}}
        )
        r = send_alert(Alert("sensor_fault", "warning", "sensor flatlined"), paths, config=cfg)
    assert r["delivered"] is False and "timed out" in r["error"]
    assert len(read_alerts(paths, config=cfg)) == 1


def test_missing_secret_env_fails_closed(
    paths: Paths, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_ALERT_TOKEN", raising=False)
    cfg = AlertConfig.model_validate(
        {
            "channel": "webhook",
            "webhook": {
                "url": receiver.url,
                "headers_from_env": {"Authorization": "TEST_ALERT_TOKEN"},
            },
        }
    )
    r = send_alert(Alert("gate_failed", "error", "gate failed"), paths, config=cfg)
    assert r["delivered"] is False and "TEST_ALERT_TOKEN" in r["error"]
    assert receiver.requests == []


def test_unwritable_fallback_still_does_not_raise(paths: Paths) -> None:
    blocker = paths.data_dir / "blocked"
    blocker.write_text("a file, not a folder")
    cfg = AlertConfig.model_validate({"file": {"path": "blocked/alerts.jsonl"}})
    r = send_alert(Alert("run_failure", "error", "run failed"), paths, config=cfg)
    assert r["delivered"] is False and "alert file" in r["error"]
    assert audit_alerts(paths)[0].outcome == "failed"
