"""Telemetry and log output of the hosts (``floworch run``, ``serve``, ``worker``, the Function
App), from their environment.

- :func:`telemetry_settings` reads ``APPLICATIONINSIGHTS_CONNECTION_STRING``,
  ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
  ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``, ``OTEL_METRIC_EXPORT_INTERVAL`` and
  floworch's own ``FLOWORCH_TELEMETRY_*`` settings, and the Functions host's telemetry mode.
- :func:`console_logging` writes log records to stderr as text lines or JSON objects, each with
  the flow, run, step and attempt it is about.
- :func:`start_telemetry` configures export once for the process (nothing when no destination
  is set).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from typing import IO, TYPE_CHECKING
from urllib.parse import unquote

from floworch.telemetry.logs import ContextFormatter, JsonFormatter, LogContextFilter
from floworch.telemetry.settings import EntraIngestion, TelemetrySettings, TelemetrySettingsError

if TYPE_CHECKING:
    from floworch.telemetry.setup import TelemetryHandle

NOISY_LOGGERS = ("azure", "uamqp", "aiosqlite", "sqlalchemy", "alembic", "asyncio", "urllib3")


class LogFormat(StrEnum):
    """How log records are written to stderr."""

    TEXT = "text"
    JSON = "json"


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def telemetry_settings(env: Mapping[str, str], *, service_name: str) -> TelemetrySettings:
    """Telemetry settings from an environment (``os.environ`` in the hosts).

    Raises:
        TelemetrySettingsError: a value cannot be used (one line says which and why).
    """
    functions = bool(env.get("FUNCTIONS_WORKER_RUNTIME"))
    connection = (env.get("APPLICATIONINSIGHTS_CONNECTION_STRING") or "").strip() or None
    entra = EntraIngestion.parse(env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING") or "")
    endpoint = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip() or None
    interval = timedelta(seconds=60)
    if env.get("OTEL_METRIC_EXPORT_INTERVAL"):
        try:
            interval = timedelta(milliseconds=float(env["OTEL_METRIC_EXPORT_INTERVAL"]))
        except ValueError:
            raise TelemetrySettingsError(
                f"OTEL_METRIC_EXPORT_INTERVAL must be milliseconds, not "
                f"{env['OTEL_METRIC_EXPORT_INTERVAL']!r}"
            ) from None
    level_name = (env.get("FLOWORCH_TELEMETRY_LOG_LEVEL") or "INFO").upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        raise TelemetrySettingsError(
            "FLOWORCH_TELEMETRY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, "
            f"not {level_name!r}"
        )
    return TelemetrySettings(
        service_name=env.get("OTEL_SERVICE_NAME") or service_name,
        azure_monitor=connection,
        entra=entra,
        otlp_endpoint=endpoint,
        otlp_headers=_otlp_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""),
        # With this setting the Functions Python worker exports to Application Insights itself.
        host_managed=functions and _true(env.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY")),
        offline_storage=not _false(env.get("FLOWORCH_TELEMETRY_OFFLINE_STORAGE")),
        metric_interval=interval,
        log_level=level,
        capture_payloads=_true(env.get("FLOWORCH_TELEMETRY_PAYLOADS")),
    )


def _false(value: str | None) -> bool:
    return (value or "").strip().lower() in ("0", "false", "no", "off")


def _otlp_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise TelemetrySettingsError(
                f"OTEL_EXPORTER_OTLP_HEADERS: {key.strip()!r} is not key=value (comma-separated)"
            )
        headers[unquote(key.strip())] = unquote(value.strip())
    return headers


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks a console handler a host installed, so the next call (another command run in the
    same process) replaces it instead of writing to a stream that may be closed by then."""


def console_logging(level: str, log_format: LogFormat, stream: IO[str] | None = None) -> None:
    """Writes log records from ``level`` up to stderr, as text lines or JSON objects, with
    their flow, run, step and attempt; third-party libraries from WARNING up."""
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        value = logging.INFO
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(old)
    handler = ConsoleHandler(stream or sys.stderr)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == LogFormat.JSON else ContextFormatter())
    root.addHandler(handler)
    root.setLevel(value)
    logging.getLogger("floworch").setLevel(value)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(value, logging.WARNING))


def start_telemetry(env: Mapping[str, str], *, service_name: str) -> TelemetryHandle | None:
    """Configures export from the environment (once per process); None when nothing is set.

    Raises:
        TelemetrySettingsError: a setting cannot be used.
    """
    settings = telemetry_settings(env, service_name=service_name)
    if not settings.exporting:
        return None
    from floworch.telemetry.setup import configure

    return configure(settings)
