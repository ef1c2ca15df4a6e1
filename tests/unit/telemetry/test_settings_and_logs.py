"""Telemetry settings from the environment, masking secrets, and log records that name their
flow, run, step and attempt (text and JSON)."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import pytest

from floworch.hosting.observability import LogFormat, console_logging, telemetry_settings
from floworch.telemetry import (
    EntraIngestion,
    LogContextFilter,
    TelemetrySettingsError,
    event,
    log_context,
)
from floworch.telemetry.propagation import carrier_from_properties, message_properties
from floworch.telemetry.redaction import redact

CONNECTION = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
    "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"
)
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_nothing_set_exports_nothing() -> None:
    settings = telemetry_settings({}, service_name="floworch-worker")
    assert not settings.exporting and settings.describe() == "nowhere"


def test_settings_from_the_environment() -> None:
    settings = telemetry_settings(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=abc-123;Authorization=AAD",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%3Dcret,x-team=flows",
            "OTEL_SERVICE_NAME": "orders-worker",
            "OTEL_METRIC_EXPORT_INTERVAL": "5000",
            "FLOWORCH_TELEMETRY_OFFLINE_STORAGE": "false",
        },
        service_name="floworch-worker",
    )
    assert settings.azure_monitor == CONNECTION
    assert settings.entra == EntraIngestion(client_id="abc-123")
    assert settings.otlp_headers == {"api-key": "s=cret", "x-team": "flows"}
    assert settings.service_name == "orders-worker"
    assert settings.metric_interval == timedelta(seconds=5)
    assert not settings.offline_storage and not settings.capture_payloads
    described = settings.describe()
    assert "Entra ID" in described and "collector:4318" in described
    assert "00000000" not in described and "s=cret" not in described


def test_the_functions_host_exports_itself_when_its_worker_telemetry_is_on() -> None:
    env = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
    }
    assert telemetry_settings(env, service_name="f").host_managed
    env["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] = "false"
    assert not telemetry_settings(env, service_name="f").host_managed


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=x"}, "Authorization=AAD"),
        ({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "nonsense"}, "is not Key=Value"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "is not key=value"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "soon"}, "milliseconds"),
        ({"FLOWORCH_TELEMETRY_LOG_LEVEL": "LOUD"}, "DEBUG, INFO"),
    ],
)
def test_a_bad_setting_is_one_clear_error(env: dict[str, str], says: str) -> None:
    with pytest.raises(TelemetrySettingsError, match=says) as info:
        telemetry_settings(env, service_name="f")
    assert "\n" not in str(info.value)


def test_secrets_are_masked() -> None:
    text = (
        "sb Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;"
        "SharedAccessKey=abc+/def=; db postgresql+psycopg://app:pa55w0rd@db:5432/flows "
        "odbc Server=x;Password=hunter2;Database=y sas ?sv=1&sig=Zm9v%3D Bearer eyJhbGciOiJIUzI1"
    )
    masked = redact(text)
    for secret in ("abc+/def=", "pa55w0rd", "hunter2", "Zm9v%3D", "eyJhbGciOiJIUzI1"):
        assert secret not in masked
    assert "SharedAccessKeyName=root" in masked and "app:***@db:5432" in masked
    assert redact("nothing to hide") == "nothing to hide"


def test_trace_context_in_message_properties() -> None:
    properties = message_properties({"traceparent": TP, "tracestate": "a=b"})
    assert properties == {"traceparent": TP, "Diagnostic-Id": TP, "tracestate": "a=b"}
    # As the Azure SDK writes them (bytes keys), or only the older Diagnostic-Id.
    assert carrier_from_properties({b"traceparent": TP.encode()}) == {"traceparent": TP}
    assert carrier_from_properties({"Diagnostic-Id": TP}) == {"traceparent": TP}
    assert carrier_from_properties({"Diagnostic-Id": "|abc.1."}) == {}  # not W3C: ignored


def _record(logger: logging.Logger, stream: io.StringIO) -> str:
    return stream.getvalue().strip().splitlines()[-1]


@pytest.mark.parametrize("fmt", [LogFormat.TEXT, LogFormat.JSON])
def test_log_records_name_their_flow_run_step_and_attempt(fmt: LogFormat) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        console_logging("INFO", fmt, stream)
        log = logging.getLogger("floworch.test.logs")
        with log_context(flow_id="orders", run_id="r1", step_key="ship"), log_context(attempt=2):
            log.warning("lost %s", "sb://x/;SharedAccessKey=k3y", extra=event("step.lost"))
        log.info("outside")
        lines = stream.getvalue().strip().splitlines()
    finally:
        for handler in list(root.handlers):
            if handler not in before[0]:
                root.removeHandler(handler)
        root.setLevel(before[1])
    if fmt == LogFormat.JSON:
        entry = json.loads(lines[0])
        assert entry["flow_id"] == "orders" and entry["run_id"] == "r1"
        assert entry["step_key"] == "ship" and entry["attempt"] == 2
        assert entry["event"] == "step.lost" and entry["level"] == "WARNING"
        assert "k3y" not in entry["message"]
        assert "run_id" not in json.loads(lines[1])
    else:
        assert lines[0].endswith("[flow_id=orders run_id=r1 step_key=ship attempt=2]")
        assert "k3y" not in lines[0] and "SharedAccessKey=***" in lines[0]
        assert "[" not in lines[1]


def test_a_handler_record_keeps_its_own_step() -> None:
    record = logging.LogRecord("floworch.step.Work", logging.INFO, __file__, 1, "m", None, None)
    record.run_id, record.step_key = "r2", "each.3.w"
    with log_context(run_id="other", attempt=1):
        LogContextFilter().filter(record)
    assert record.__dict__["floworch.run_id"] == "other"  # the context was set first ...
    plain = logging.LogRecord("floworch.step.Work", logging.INFO, __file__, 1, "m", None, None)
    plain.run_id, plain.step_key = "r2", "each.3.w"
    LogContextFilter().filter(plain)
    assert plain.__dict__["floworch.run_id"] == "r2"  # ... and outside one, its own names count
    assert plain.__dict__["floworch.step_key"] == "each.3.w"
