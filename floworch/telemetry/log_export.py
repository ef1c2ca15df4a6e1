"""Sends Python log records to an OpenTelemetry logger provider.

Our own small handler rather than the SDK's ``LoggingHandler`` (deprecated): it exports only
floworch's attributes (``floworch.*`` and the code location), masks secrets in the message and
the exception, and takes the trace context current when the record was logged, so a log record
lands in the operation of the step that wrote it.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from opentelemetry._logs import LoggerProvider, LogRecord, SeverityNumber
from opentelemetry.context import get_current

from floworch.telemetry.logs import LogContextFilter
from floworch.telemetry.redaction import redact

_SEVERITY = {
    logging.DEBUG: SeverityNumber.DEBUG,
    logging.INFO: SeverityNumber.INFO,
    logging.WARNING: SeverityNumber.WARN,
    logging.ERROR: SeverityNumber.ERROR,
    logging.CRITICAL: SeverityNumber.FATAL,
}
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def _severity(levelno: int) -> SeverityNumber:
    for level in sorted(_SEVERITY, reverse=True):
        if levelno >= level:
            return _SEVERITY[level]
    return SeverityNumber.TRACE


class OtelLogHandler(logging.Handler):
    """A logging handler that emits each record through ``provider``.

    Args:
        provider: the SDK logger provider (its processors export the records).
        level: records below it are not exported.
    """

    def __init__(self, provider: LoggerProvider, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._provider = provider
        self.addFilter(LogContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._provider.get_logger(record.name).emit(self._translate(record))
        except Exception:  # a broken export must never break the code that logged
            self.handleError(record)

    @staticmethod
    def _translate(record: logging.LogRecord) -> LogRecord:
        attributes: dict[str, Any] = {
            key: value if isinstance(value, bool | int | float) else str(value)
            for key, value in record.__dict__.items()
            if key.startswith("floworch.") and value is not None
        }
        attributes["code.file.path"] = record.pathname
        attributes["code.function.name"] = record.funcName
        attributes["code.line.number"] = record.lineno
        attributes["logger.name"] = record.name
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            attributes["exception.type"] = type(exc).__name__
            attributes["exception.message"] = redact(str(exc))
            attributes["exception.stacktrace"] = redact(
                "".join(traceback.format_exception(*record.exc_info))
            )
        return LogRecord(
            timestamp=int(record.created * 1e9),
            context=get_current(),
            severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
            severity_number=_severity(record.levelno),
            body=redact(record.getMessage()),
            attributes=attributes,
        )
