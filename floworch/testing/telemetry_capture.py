"""Ingestion stand-ins on loopback for testing telemetry export with the real exporters.

- :class:`AppInsightsCapture`: the Application Insights ingestion endpoint (``POST
  /v2.1/track``, a JSON array of envelopes). Point a connection string at it with
  :attr:`AppInsightsCapture.connection_string`.
- :class:`OtlpCapture`: an OTLP/HTTP collector (``POST /v1/traces``, ``/v1/metrics``,
  ``/v1/logs``, protobuf), decoded into plain dicts; point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at
  :attr:`OtlpCapture.endpoint`.

Both keep every raw request body (:meth:`raw`), so a test can check that no secret left the
process in any form. Test hygiene for the Azure Monitor exporter (no network beyond loopback):
:data:`QUIET_AZURE_MONITOR` is the environment that turns off statsbeat and the control plane.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

QUIET_AZURE_MONITOR = {
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "FLOWORCH_TELEMETRY_OFFLINE_STORAGE": "false",
}
"""Environment for processes exporting to a capture server: no statsbeat, no remote
configuration, no offline storage (unset ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` too)."""

INSTRUMENTATION_KEY = "00000000-0000-0000-0000-000000000000"


class _Server:
    """A threaded HTTP server on 127.0.0.1 with a free port, collecting request bodies."""

    def __init__(self, answer: Callable[[str, bytes], tuple[int, str, bytes]]) -> None:
        self._lock = threading.Lock()
        self._raw: list[tuple[str, bytes]] = []
        collect = self._collect

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                collect(self.path, body)
                status, content_type, reply = answer(self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def _collect(self, path: str, body: bytes) -> None:
        with self._lock:
            self._raw.append((path, body))
        self.received(path, body)

    def received(self, path: str, body: bytes) -> None:
        """Decodes one request (subclasses)."""

    def raw(self) -> list[tuple[str, bytes]]:
        """Every request so far: (path, body)."""
        with self._lock:
            return list(self._raw)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AppInsightsCapture(_Server):
    """Answers ``/v2.1/track`` as Application Insights does and keeps the envelopes."""

    def __init__(self) -> None:
        self._envelopes: list[dict[str, Any]] = []
        super().__init__(self._answer)

    @property
    def connection_string(self) -> str:
        url = f"http://127.0.0.1:{self.port}/"
        return (
            f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={url};LiveEndpoint={url}"
        )

    def _answer(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        try:
            count = len(json.loads(body)) if path.endswith("/track") else 0
        except ValueError:
            count = 0
        reply = {"itemsReceived": count, "itemsAccepted": count, "errors": []}
        return 200, "application/json", json.dumps(reply).encode()

    def received(self, path: str, body: bytes) -> None:
        if not path.endswith("/track"):
            return
        items = json.loads(body)
        with self._lock:
            self._envelopes.extend(items if isinstance(items, list) else [items])

    def envelopes(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Envelopes received, optionally of one kind (``Request``, ``RemoteDependency``,
        ``Message``, ``Exception``, ``Metric``)."""
        with self._lock:
            found = list(self._envelopes)
        if kind is None:
            return found
        return [e for e in found if e.get("name") == f"Microsoft.ApplicationInsights.{kind}"]


class OtlpCapture(_Server):
    """Answers OTLP/HTTP protobuf requests and keeps spans, metric points and log records."""

    def __init__(self) -> None:
        self._spans: list[dict[str, Any]] = []
        self._metrics: list[dict[str, Any]] = []
        self._logs: list[dict[str, Any]] = []
        super().__init__(self._answer)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answer(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        return 200, "application/x-protobuf", b""

    def received(self, path: str, body: bytes) -> None:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        if path.endswith("/v1/traces"):
            traces = ExportTraceServiceRequest.FromString(body)
            found = [
                _span(span, _attrs(rs.resource.attributes))
                for rs in traces.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]
            with self._lock:
                self._spans.extend(found)
        elif path.endswith("/v1/metrics"):
            request = ExportMetricsServiceRequest.FromString(body)
            points: list[dict[str, Any]] = []
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        kind = metric.WhichOneof("data")
                        for point in getattr(metric, kind).data_points if kind else []:
                            value: dict[str, Any] = {}
                            for name in ("as_int", "as_double", "count", "sum"):
                                if hasattr(point, name):
                                    value[name] = getattr(point, name)
                            points.append(
                                {
                                    "name": metric.name,
                                    "kind": kind,
                                    "attributes": _attrs(point.attributes),
                                    "point": value,
                                }
                            )
            with self._lock:
                self._metrics.extend(points)
        elif path.endswith("/v1/logs"):
            logs = ExportLogsServiceRequest.FromString(body)
            records = [
                {
                    "body": record.body.string_value,
                    "severity": record.severity_text,
                    "trace_id": record.trace_id.hex(),
                    "span_id": record.span_id.hex(),
                    "attributes": _attrs(record.attributes),
                }
                for rl in logs.resource_logs
                for sl in rl.scope_logs
                for record in sl.log_records
            ]
            with self._lock:
                self._logs.extend(records)

    def spans(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._spans)

    def metric_points(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._metrics)

    def log_records(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._logs)


_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _attrs(values: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for kv in values:
        which = kv.value.WhichOneof("value")
        found[kv.key] = getattr(kv.value, which) if which else None
    return found


def _span(span: Any, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": _KINDS.get(span.kind, str(span.kind)),
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "attributes": _attrs(span.attributes),
        "status": span.status.code,
        "resource": resource,
    }
