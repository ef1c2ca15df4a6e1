"""``configure``: installs this process's OpenTelemetry providers and exporters, once.

Decision: the Azure Monitor *exporter* with our own SDK providers, not the distro
(``azure-monitor-opentelemetry``). The distro also instruments FastAPI, requests, urllib and
psycopg2 and turns on Azure SDK tracing: under the Functions host that duplicates the host's own
request telemetry, and the Service Bus SDK would then overwrite the ``traceparent`` floworch writes
on each step message with a span of its own. With the exporter, what floworch emits is all that is
sent: the ``flow.*`` spans, the ``floworch.*`` metrics and floworch's log records.

Both destinations may be set at once (as the Functions host does); with neither, nothing is
installed and the engine's calls stay no-ops.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from floworch.telemetry.log_export import OtelLogHandler
from floworch.telemetry.settings import TelemetrySettings, TelemetrySettingsError

log = logging.getLogger("floworch.telemetry")

EXPORTED_LOGGER = "floworch"
"""Records of this logger and its children are exported (not third-party libraries')."""


@dataclass
class TelemetryHandle:
    """What :func:`configure` installed; :meth:`shutdown` flushes and stops it.

    Attributes:
        settings: what was asked for.
        exporters: the destinations installed (``azure-monitor``, ``otlp``), or ``()``.
        owned: False when providers installed by someone else (the host, an earlier call)
            are used: then :meth:`shutdown` leaves them running.
    """

    settings: TelemetrySettings
    exporters: tuple[str, ...] = ()
    owned: bool = False
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    logger_provider: LoggerProvider | None = None
    log_handler: logging.Handler | None = None
    _closed: bool = field(default=False, repr=False)

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        """Exports what is buffered now (spans, log records, metrics)."""
        for provider in (self.tracer_provider, self.logger_provider, self.meter_provider):
            if provider is not None:
                provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flushes and stops the providers this call installed (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.log_handler is not None:
            logging.getLogger(EXPORTED_LOGGER).removeHandler(self.log_handler)
        if not self.owned:
            return
        for provider in (self.tracer_provider, self.logger_provider, self.meter_provider):
            if provider is not None:
                try:
                    provider.shutdown()
                except Exception as exc:  # exporting at exit must not fail the exit
                    log.warning("stopping telemetry export failed: %s", exc)


def configure(settings: TelemetrySettings) -> TelemetryHandle:
    """Installs providers and exporters for ``settings`` as this process's global ones.

    Once per process: when SDK providers are installed already (an earlier call, or the
    Functions host's OpenTelemetry mode), they are used as they are and nothing is added, so
    nothing is exported twice.

    Raises:
        TelemetrySettingsError: an exporter cannot be built from the settings.
    """
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider) or settings.host_managed:
        return _adopt(settings, existing)
    if not (settings.azure_monitor or settings.otlp_endpoint):
        return TelemetryHandle(settings)
    resource = Resource.create(
        {
            "service.name": settings.service_name,
            "service.instance.id": settings.service_instance
            or f"{socket.gethostname()}-{os.getpid()}",
        }
    )
    span_exporters, metric_exporters, log_exporters, names = _exporters(settings)
    tracer_provider = TracerProvider(resource=resource)
    for span_exporter in span_exporters:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    interval = max(settings.metric_interval.total_seconds(), 0.1) * 1000
    readers = [
        PeriodicExportingMetricReader(m, export_interval_millis=interval) for m in metric_exporters
    ]
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    logger_provider = LoggerProvider(resource=resource)
    for log_exporter in log_exporters:
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    set_logger_provider(logger_provider)
    handler = OtelLogHandler(logger_provider, settings.log_level)
    logging.getLogger(EXPORTED_LOGGER).addHandler(handler)
    log.info("telemetry: exporting to %s", settings.describe())
    return TelemetryHandle(
        settings,
        exporters=tuple(names),
        owned=True,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        log_handler=handler,
    )


def _adopt(settings: TelemetrySettings, existing: Any) -> TelemetryHandle:
    """Uses providers someone else installed; exports floworch's log records through the
    host's logger provider when it has one (the Functions host's)."""
    logger_provider = get_logger_provider()
    handler: logging.Handler | None = None
    if isinstance(logger_provider, LoggerProvider):
        handler = OtelLogHandler(logger_provider, settings.log_level)
        logging.getLogger(EXPORTED_LOGGER).addHandler(handler)
    meter_provider = metrics.get_meter_provider()
    return TelemetryHandle(
        settings,
        owned=False,
        tracer_provider=existing if isinstance(existing, TracerProvider) else None,
        meter_provider=meter_provider if isinstance(meter_provider, MeterProvider) else None,
        logger_provider=logger_provider if isinstance(logger_provider, LoggerProvider) else None,
        log_handler=handler,
    )


def _exporters(
    settings: TelemetrySettings,
) -> tuple[list[SpanExporter], list[MetricExporter], list[LogRecordExporter], Sequence[str]]:
    spans: list[SpanExporter] = []
    metric: list[MetricExporter] = []
    logs: list[LogRecordExporter] = []
    names: list[str] = []
    if settings.azure_monitor:
        s, m, lg = _azure_monitor(settings)
        spans.append(s)
        metric.append(m)
        logs.append(lg)
        names.append("azure-monitor")
    if settings.otlp_endpoint:
        s, m, lg = _otlp(settings)
        spans.append(s)
        metric.append(m)
        logs.append(lg)
        names.append("otlp")
    return spans, metric, logs, names


def _azure_monitor(
    settings: TelemetrySettings,
) -> tuple[SpanExporter, MetricExporter, LogRecordExporter]:
    try:
        from azure.monitor.opentelemetry.exporter import (
            AzureMonitorLogExporter,
            AzureMonitorMetricExporter,
            AzureMonitorTraceExporter,
        )
    except ImportError as exc:
        raise TelemetrySettingsError(
            "APPLICATIONINSIGHTS_CONNECTION_STRING is set but azure-monitor-opentelemetry-exporter "
            "is not installed: pip install 'floworch[otel]'"
        ) from exc
    credential: Any = None
    if settings.entra is not None:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=settings.entra.client_id)
    # credential is passed even when None, so the exporter never reads the environment itself.
    options: dict[str, Any] = {
        "connection_string": settings.azure_monitor,
        "credential": credential,
        "disable_offline_storage": not settings.offline_storage,
    }
    try:
        return (
            AzureMonitorTraceExporter(**options),
            AzureMonitorMetricExporter(**options),
            AzureMonitorLogExporter(**options),
        )
    except ValueError as exc:
        raise TelemetrySettingsError(
            f"APPLICATIONINSIGHTS_CONNECTION_STRING cannot be used: {exc} (copy it from the "
            "Application Insights resource's overview page)"
        ) from exc


def _otlp(settings: TelemetrySettings) -> tuple[SpanExporter, MetricExporter, LogRecordExporter]:
    try:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise TelemetrySettingsError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp-proto-http is not "
            "installed: pip install 'floworch[otel]'"
        ) from exc
    assert settings.otlp_endpoint is not None
    base = settings.otlp_endpoint.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise TelemetrySettingsError(
            f"OTEL_EXPORTER_OTLP_ENDPOINT {settings.otlp_endpoint!r} must be an http(s) URL such "
            "as http://localhost:4318 (floworch exports OTLP over HTTP/protobuf)"
        )
    headers = dict(settings.otlp_headers)
    return (
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=headers),
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=headers),
        OTLPLogExporter(endpoint=f"{base}/v1/logs", headers=headers),
    )
