"""What telemetry a process exports, and where: a frozen value the hosts build and pass in.

Nothing here reads the environment: :func:`floworch.hosting.observability.telemetry_settings`
builds these from ``APPLICATIONINSIGHTS_CONNECTION_STRING``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` and
friends for the CLI hosts and the Function App.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from floworch.errors import FlowError


class TelemetrySettingsError(FlowError):
    """A telemetry setting cannot be used (a malformed connection or authentication string)."""


@dataclass(frozen=True)
class EntraIngestion:
    """Entra ID (managed identity) authentication for Application Insights ingestion, as
    ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` (``ClientId=<id>;Authorization=AAD``) says.

    Attributes:
        client_id: the user-assigned identity's client id (None: the system-assigned one).
    """

    client_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> EntraIngestion | None:
        """Parses an authentication string; None for an empty one.

        Raises:
            TelemetrySettingsError: not ``Key=Value`` pairs with ``Authorization=AAD``.
        """
        if not text.strip():
            return None
        pairs: dict[str, str] = {}
        for part in text.split(";"):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise TelemetrySettingsError(
                    f"APPLICATIONINSIGHTS_AUTHENTICATION_STRING: {part.strip()!r} is not "
                    "Key=Value; expected 'ClientId=<identity client id>;Authorization=AAD'"
                )
            pairs[key.strip().lower()] = value.strip()
        if pairs.get("authorization", "").upper() != "AAD":
            raise TelemetrySettingsError(
                "APPLICATIONINSIGHTS_AUTHENTICATION_STRING must contain Authorization=AAD "
                "(e.g. 'ClientId=<identity client id>;Authorization=AAD')"
            )
        return cls(client_id=pairs.get("clientid") or None)


@dataclass(frozen=True)
class TelemetrySettings:
    """Where this process's spans, metrics and log records go.

    Attributes:
        service_name: ``service.name`` of the resource (Application Insights' cloud role).
        service_instance: ``service.instance.id`` (default: host name and process id).
        azure_monitor: an Application Insights connection string: export there.
        entra: authenticate ingestion with a managed identity (otherwise the connection
            string's instrumentation key alone, i.e. local auth).
        otlp_endpoint: an OTLP/HTTP base URL (``http://collector:4318``): export there too.
        otlp_headers: extra HTTP headers for the OTLP exporter (``OTEL_EXPORTER_OTLP_HEADERS``).
        host_managed: the hosting platform already exports this process's telemetry (the
            Functions host with ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``): use the
            providers it installed, add no Azure Monitor exporter of our own.
        offline_storage: let the Azure Monitor exporter keep failed batches on disk and retry.
        metric_interval: how often metrics are exported.
        log_level: floworch log records from this level up are exported.
        capture_payloads: add trigger bodies and step outputs (cut to 4 KB) to spans. Off by
            default: they may hold personal data or secrets.
    """

    service_name: str = "floworch"
    service_instance: str | None = None
    azure_monitor: str | None = None
    entra: EntraIngestion | None = None
    otlp_endpoint: str | None = None
    otlp_headers: Mapping[str, str] = field(default_factory=dict)
    host_managed: bool = False
    offline_storage: bool = True
    metric_interval: timedelta = timedelta(seconds=60)
    log_level: int = logging.INFO
    capture_payloads: bool = False

    @property
    def exporting(self) -> bool:
        """Whether anything is exported (by us or by the host)."""
        return bool(self.azure_monitor or self.otlp_endpoint or self.host_managed)

    def describe(self) -> str:
        """One line naming the destinations, without keys or tokens."""
        targets: list[str] = []
        if self.host_managed:
            targets.append("the host's OpenTelemetry pipeline")
        if self.azure_monitor and not self.host_managed:
            endpoint = _connection_field(self.azure_monitor, "IngestionEndpoint") or "default"
            auth = "Entra ID" if self.entra else "instrumentation key"
            targets.append(f"Azure Monitor ({endpoint}, {auth})")
        if self.otlp_endpoint:
            targets.append(f"OTLP/HTTP {self.otlp_endpoint}")
        return ", ".join(targets) or "nowhere"


def _connection_field(connection_string: str, name: str) -> str | None:
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name.lower():
            return value.strip() or None
    return None
