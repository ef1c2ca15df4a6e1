"""Observability: OpenTelemetry spans, metrics and logs; trace context in messages.

Hosts build :class:`TelemetrySettings` (``floworch.hosting.observability`` reads them from the
environment) and call :func:`configure` once per process; the engine records through
:class:`Telemetry`. See docs/observability.md.
"""

from typing import TYPE_CHECKING, Any

from floworch.telemetry.hooks import MessagingTarget, OriginKind, Telemetry, TriggerOrigin
from floworch.telemetry.logs import (
    ContextFormatter,
    JsonFormatter,
    LogContext,
    LogContextFilter,
    current_log_context,
    event,
    log_context,
)
from floworch.telemetry.settings import EntraIngestion, TelemetrySettings, TelemetrySettingsError

if TYPE_CHECKING:
    from floworch.telemetry.setup import TelemetryHandle, configure


def __getattr__(name: str) -> Any:
    # configure needs opentelemetry-sdk (the `otel` extra); the engine needs only the API.
    if name in ("configure", "TelemetryHandle"):
        import importlib

        module = importlib.import_module("floworch.telemetry.setup")

        return getattr(module, name)
    raise AttributeError(f"module 'floworch.telemetry' has no attribute {name!r}")


__all__ = [
    "ContextFormatter",
    "EntraIngestion",
    "JsonFormatter",
    "LogContext",
    "LogContextFilter",
    "MessagingTarget",
    "OriginKind",
    "Telemetry",
    "TelemetryHandle",
    "TelemetrySettings",
    "TelemetrySettingsError",
    "TriggerOrigin",
    "configure",
    "current_log_context",
    "event",
    "log_context",
]
