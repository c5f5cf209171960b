"""The alert channel: drift alarms, sensor faults, gate failures, promotions, rollbacks, ...

Alerts go to one configurable channel (``<config_dir>/ml/alerts.yaml``, validated by
:class:`AlertConfig`; a missing file means the defaults):

``file``     one JSON line per alert appended to ``file.path`` (relative to the data dir,
             default ``alerts/alerts.jsonl``); :func:`read_alerts` reads it back.
``webhook``  the alert is POSTed as JSON to ``webhook.url`` (or ``QP_ALERT_WEBHOOK_URL``, which
             wins when set) with the standard library's ``urllib`` and a timeout. Secrets such
             as tokens belong in the environment: ``webhook.headers_from_env`` maps a header
             name to the environment variable holding its value.

:func:`send_alert` never raises: alerts must not break a pipeline run. When the webhook fails
(HTTP error status, timeout, connection refused, missing secret, invalid configuration) the
alert is written to the file channel instead, marked ``delivered: false`` with the error. Every
alert that passes ``min_severity`` is also recorded in the audit log (action ``alert``, actor
``system:alerts``, outcome ``ok`` or ``failed``); alerts below ``min_severity`` are neither
sent nor audited. Neither the webhook URL (it may embed a token) nor header values are ever
written to the audit log or the alert file - only the URL's scheme and host.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from quality_platform.audit import AuditLog, audit_db_path, canonical_refs, now_text
from quality_platform.config import ConfigError, ConfigModel, load_yaml_model, read_yaml
from quality_platform.settings import ALERT_WEBHOOK_URL_ENV as WEBHOOK_URL_ENV
from quality_platform.settings import Paths, current_deployment, get_paths

ALERT_KINDS: tuple[str, ...] = (
    "drift_alarm",
    "sensor_fault",
    "gate_failed",
    "promotion",
    "rollback",
    "run_failure",
    "sensor_error",
    "performance_drop",
    "retrain",
    "incident",
)
SEVERITIES: tuple[str, ...] = ("info", "warning", "error")
_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
CONFIG_FILE = "alerts.yaml"
AUDIT_ACTOR = "system:alerts"

_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_HEADER_RE = re.compile(r"authorization|token|secret|password|api[-_]?key|cookie", re.I)


# --------------------------------------------------------------------------- configuration


def _check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL with a host")
    return url


class FileChannelConfig(ConfigModel):
    """The file channel: JSON lines appended to ``path`` (relative paths: below the data dir)."""

    path: str = Field("alerts/alerts.jsonl", min_length=1)


class WebhookChannelConfig(ConfigModel):
    """The webhook channel: JSON POSTed to ``url`` (``QP_ALERT_WEBHOOK_URL`` wins when set)."""

    url: str | None = None
    timeout_seconds: float = Field(5, gt=0, le=120)
    #: Plain, non-secret headers (e.g. ``X-Source: quality-platform``).
    headers: dict[str, str] = Field(default_factory=dict)
    #: Header name -> name of the environment variable holding its (secret) value.
    headers_from_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _HEADER_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r}: value must not contain line breaks")
            if _SECRET_HEADER_RE.search(name):
                raise ValueError(
                    f"header {name!r} looks like a secret; put it in an environment "
                    "variable and name it in 'headers_from_env'"
                )
        return v

    @field_validator("headers_from_env")
    @classmethod
    def _headers_from_env(cls, v: dict[str, str]) -> dict[str, str]:
        for name, env in v.items():
            if not _HEADER_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if not _ENV_NAME_RE.match(env):
                raise ValueError(
                    f"header {name!r}: {env!r} is not a valid environment variable name"
                )
        return v

    @model_validator(mode="after")
    def _no_duplicate_header(self) -> WebhookChannelConfig:
        both = {h.lower() for h in self.headers} & {h.lower() for h in self.headers_from_env}
        if both:
            raise ValueError(
                f"header(s) {sorted(both)} given in both 'headers' and 'headers_from_env'"
            )
        return self


class AlertConfig(ConfigModel):
    """``<config_dir>/ml/alerts.yaml``: where alerts go and from which severity on."""

    version: int = Field(1, ge=1)
    channel: Literal["file", "webhook"] = "file"
    file: FileChannelConfig = Field(default_factory=FileChannelConfig)
    webhook: WebhookChannelConfig = Field(default_factory=WebhookChannelConfig)
    min_severity: Literal["info", "warning", "error"] = "info"


def alert_config_path(paths: Paths | None = None) -> Path:
    """``<config_dir>/ml/alerts.yaml``."""
    return (paths or get_paths()).config_dir / "ml" / CONFIG_FILE


def load_alert_config(paths: Paths | None = None) -> AlertConfig:
    """Load and validate the alert configuration (a missing or empty file means the defaults).

    Raises :class:`ConfigError` naming the file and the field; also when ``channel`` is
    ``webhook`` but no URL is configured (neither ``webhook.url`` nor ``QP_ALERT_WEBHOOK_URL``)
    or ``QP_ALERT_WEBHOOK_URL`` is not an http(s) URL.
    """
    path = alert_config_path(paths)
    if not path.exists():
        cfg = AlertConfig()
    else:
        try:
            raw = read_yaml(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        cfg = AlertConfig() if raw is None else load_yaml_model(path, AlertConfig)
    env_url = current_deployment().alert_webhook_url
    if env_url:
        try:
            _check_url(env_url)
        except ValueError as exc:
            raise ConfigError(
                f"{path}: environment variable {WEBHOOK_URL_ENV} (field 'webhook.url'): {exc}"
            ) from exc
    if cfg.channel == "webhook" and not (env_url or cfg.webhook.url):
        raise ConfigError(
            f"{path}: field 'webhook.url': channel 'webhook' needs a URL "
            f"(in the file or in the environment variable {WEBHOOK_URL_ENV})"
        )
    return cfg


def alert_file_path(config: AlertConfig, paths: Paths | None = None) -> Path:
    """The file channel's file (relative paths are below the data dir)."""
    p = Path(config.file.path)
    return p if p.is_absolute() else (paths or get_paths()).data_dir / p


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class Alert:
    """One alert. ``kind`` is one of :data:`ALERT_KINDS`, ``severity`` one of :data:`SEVERITIES`;
    ``details`` should be JSON-serialisable (anything else is sent as its ``str``)."""

    kind: str
    severity: str
    summary: str
    plant: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ts_utc: str = field(default_factory=now_text)

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"alert kind must be one of {ALERT_KINDS}, got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity must be one of {SEVERITIES}, got {self.severity!r}")
        if not isinstance(self.summary, str) or not self.summary.strip():
            raise ValueError("alert summary must be a non-empty string")
        if not isinstance(self.details, dict):
            raise ValueError(f"alert details must be a dict, got {type(self.details).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """The alert as the JSON object that is sent (details made JSON-safe)."""
        return {
            "source": "quality_platform",
            "ts_utc": self.ts_utc,
            "kind": self.kind,
            "severity": self.severity,
            "summary": self.summary,
            "plant": self.plant,
            "details": _json_safe(self.details),
        }


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as plain JSON (audit's canonical conversion; anything else becomes ``str``)."""
    try:
        return json.loads(canonical_refs(value))
    except (ValueError, TypeError):
        try:
            return json.loads(json.dumps(value, default=str, sort_keys=True))
        except (ValueError, TypeError):
            return {"repr": repr(value)}


def _redact_url(url: str | None) -> str | None:
    """Scheme and host only (URLs of chat webhooks embed their token in the path)."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single ``O_APPEND`` write (safe across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, ensure_ascii=False, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _post_webhook(payload: dict[str, Any], config: AlertConfig, url: str | None) -> int:
    """POST ``payload`` to ``url`` (else the file's URL); returns the HTTP status or raises with a
    readable message."""
    url = url or config.webhook.url
    if not url:
        raise RuntimeError(f"no webhook URL (webhook.url or {WEBHOOK_URL_ENV})")
    _check_url(url)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "quality-platform-alerts/1",
        **config.webhook.headers,
    }
    for name, env in config.webhook.headers_from_env.items():
        value = current_deployment().secret(env)
        if not value:
            raise RuntimeError(f"environment variable {env} for header {name!r} is not set")
        headers[name] = value
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=config.webhook.timeout_seconds) as resp:
        status = int(resp.status)
        resp.read(65536)
    if not 200 <= status < 300:
        raise RuntimeError(f"webhook answered HTTP {status}")
    return status


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"webhook answered HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"webhook unreachable: {exc.reason}"
    if isinstance(exc, TimeoutError):
        return "webhook timed out"
    return f"{type(exc).__name__}: {exc}"


def send_alert(
    alert: Alert,
    paths: Paths | None = None,
    config: AlertConfig | None = None,
    *,
    webhook_url: str | None = None,
) -> dict[str, Any]:
    """Send ``alert`` to the configured channel and record it in the audit log; never raises.
    ``webhook_url`` (the alert channel resource's) wins over the deployment's and the file's.

    Returns ``{"sent": False, "reason": ...}`` when the alert is below ``min_severity``;
    otherwise ``{"sent": True, "kind", "severity", "channel" (configured), "delivered" (bool),
    "error" (str or None), "file" (path written, or None), "target" (webhook scheme://host),
    "http_status", "audit_seq", "audit_error"}``. ``delivered`` is False when the webhook failed
    (the alert then went to the file) or nothing could be written at all.
    """
    paths = paths or get_paths()
    url = webhook_url or current_deployment().alert_webhook_url
    config_error: str | None = None
    if config is None:
        try:
            config = load_alert_config(paths)
        except Exception as exc:  # a bad config must not break the run: use the file channel
            config_error = f"alert config: {exc}"
            config = AlertConfig()

    if _SEVERITY_RANK.get(alert.severity, 0) < _SEVERITY_RANK[config.min_severity]:
        return {
            "sent": False,
            "kind": alert.kind,
            "severity": alert.severity,
            "reason": f"severity {alert.severity!r} is below min_severity {config.min_severity!r}",
        }

    payload = alert.to_dict()
    result: dict[str, Any] = {
        "sent": True,
        "kind": alert.kind,
        "severity": alert.severity,
        "channel": config.channel,
        "delivered": False,
        "error": config_error,
        "file": None,
        "target": None,
        "http_status": None,
        "audit_seq": None,
        "audit_error": None,
    }
    if config_error is None and config.channel == "webhook":
        result["target"] = _redact_url(url or config.webhook.url)
        try:
            result["http_status"] = _post_webhook(payload, config, url)
            result["delivered"] = True
        except Exception as exc:  # HTTP error, timeout, refused, bad URL, missing secret, ...
            result["error"] = _describe_error(exc)

    if not result["delivered"]:  # the file channel, or the fallback of a failed webhook
        file_path = alert_file_path(config, paths)
        line = {
            **payload,
            "channel": config.channel,
            "delivered": config.channel == "file" and config_error is None,
            "error": result["error"],
        }
        try:
            _append_line(file_path, line)
            result["file"] = str(file_path)
            result["delivered"] = line["delivered"]
        except Exception as exc:
            msg = f"alert file {file_path}: {type(exc).__name__}: {exc}"
            result["error"] = f"{result['error']}; {msg}" if result["error"] else msg

    refs = {
        k: result[k]
        for k in (
            "kind",
            "severity",
            "channel",
            "delivered",
            "error",
            "file",
            "target",
            "http_status",
        )
        if result[k] is not None or k == "delivered"
    }
    refs["alert_ts_utc"] = alert.ts_utc
    refs["details"] = payload["details"]
    try:
        rec = AuditLog(audit_db_path(paths)).append(
            "alert",
            AUDIT_ACTOR,
            actor_kind="system",
            subject=f"alert:{alert.kind}",
            plant=alert.plant,
            reason=alert.summary,
            outcome="ok" if result["delivered"] else "failed",
            refs=refs,
        )
        result["audit_seq"] = rec.seq
    except Exception as exc:
        result["audit_error"] = f"{type(exc).__name__}: {exc}"
    return result


def read_alerts(
    paths: Paths | None = None,
    *,
    config: AlertConfig | None = None,
    kind: str | None = None,
    plant: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Alerts in the file channel's file, oldest first (``limit`` keeps the newest ``limit``).

    Includes the fallback lines of failed webhook deliveries (``delivered: false``). A missing
    file gives ``[]``; lines that are not JSON objects (e.g. a torn write) are skipped.
    """
    paths = paths or get_paths()
    config = config or load_alert_config(paths)
    path = alert_file_path(config, paths)
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            if kind is not None and rec.get("kind") != kind:
                continue
            if plant is not None and rec.get("plant") != plant:
                continue
            out.append(rec)
    if limit is not None:
        out = out[-limit:] if limit > 0 else []
    return out


__all__ = [
    "ALERT_KINDS",
    "SEVERITIES",
    "WEBHOOK_URL_ENV",
    "Alert",
    "AlertConfig",
    "FileChannelConfig",
    "WebhookChannelConfig",
    "alert_config_path",
    "alert_file_path",
    "load_alert_config",
    "read_alerts",
    "send_alert",
]
