"""Log correlation: every floworch log record names the flow, run, step and attempt it is about.

The step consumer and the stepper set a :class:`LogContext` for the message they handle
(:func:`log_context`); :class:`LogContextFilter`, installed on the hosts' log handlers, copies it
onto each record as the attributes ``floworch.flow_id``, ``floworch.run_id``,
``floworch.step_key``, ``floworch.attempt`` and ``floworch.seq`` (a record that already has one,
such as a handler's ``ctx.logger`` record, keeps its own). :class:`ContextFormatter` appends them
to text lines, :class:`JsonFormatter` writes one JSON object per record with the trace and span
ids, and the OpenTelemetry log export sends them as attributes.

Stable event names: a record may carry ``floworch.event`` (``extra=event("step.dead_lettered")``);
:data:`EVENT` is the attribute name.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from floworch.telemetry.redaction import redact

FLOW_ID = "floworch.flow_id"
RUN_ID = "floworch.run_id"
STEP_KEY = "floworch.step_key"
ATTEMPT = "floworch.attempt"
SEQ = "floworch.seq"
EVENT = "floworch.event"
CONTEXT_ATTRIBUTES = (FLOW_ID, RUN_ID, STEP_KEY, ATTEMPT, SEQ)
"""The correlation attributes a record can carry, in the order text lines show them."""


@dataclass(frozen=True)
class LogContext:
    """What the code running now works on (None: not known here)."""

    flow_id: str | None = None
    run_id: str | None = None
    step_key: str | None = None
    attempt: int | None = None
    seq: int | None = None

    def attributes(self) -> dict[str, str | int]:
        """The set fields as ``floworch.*`` attributes."""
        return {
            f"floworch.{f.name}": value
            for f in fields(self)
            if (value := getattr(self, f.name)) is not None
        }


_EMPTY = LogContext()
_CURRENT: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "floworch_log_context", default=None
)


def current_log_context() -> LogContext:
    """The context of the code running now."""
    return _CURRENT.get() or _EMPTY


@contextmanager
def log_context(
    *,
    flow_id: str | None = None,
    run_id: str | None = None,
    step_key: str | None = None,
    attempt: int | None = None,
    seq: int | None = None,
) -> Iterator[LogContext]:
    """Sets the given fields (others are kept from the enclosing context) for the block."""
    current = current_log_context()
    updated = LogContext(
        flow_id=flow_id if flow_id is not None else current.flow_id,
        run_id=run_id if run_id is not None else current.run_id,
        step_key=step_key if step_key is not None else current.step_key,
        attempt=attempt if attempt is not None else current.attempt,
        seq=seq if seq is not None else current.seq,
    )
    token = _CURRENT.set(updated)
    try:
        yield updated
    finally:
        _CURRENT.reset(token)


def event(name: str, **more: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the stable event name (and more attributes)."""
    return {EVENT: name, **more}


class LogContextFilter(logging.Filter):
    """Adds the current :class:`LogContext` to each record it sees (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current_log_context()
        for name, value in ctx.attributes().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        # A handler's ctx.logger names its step with the short names of older releases.
        for short, full in (("run_id", RUN_ID), ("flow_id", FLOW_ID), ("step_key", STEP_KEY)):
            found = record.__dict__.get(short)
            if found is not None and not hasattr(record, full):
                setattr(record, full, found)
        return True


def record_context(record: logging.LogRecord) -> dict[str, Any]:
    """The correlation attributes a record carries."""
    return {name: record.__dict__[name] for name in CONTEXT_ATTRIBUTES if name in record.__dict__}


class ContextFormatter(logging.Formatter):
    """The usual ``%(asctime)s %(levelname)s %(name)s: %(message)s`` line, then the record's
    correlation attributes (``flow=orders run=3f2a... step=ship attempt=2``); secrets masked."""

    def __init__(self, fmt: str | None = None, *, tracebacks: bool = True) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record) if self.tracebacks else self._without_traceback(record)
        ctx = record_context(record)
        if ctx:
            line += " [" + " ".join(f"{k.split('.', 1)[1]}={v}" for k, v in ctx.items()) + "]"
        return redact(line)

    def _without_traceback(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        exc = record.exc_info[1] if record.exc_info else None
        record.exc_info, record.exc_text = None, None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text = saved
        return f"{line}: {type(exc).__name__}: {exc}" if exc is not None else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, ``event``, the
    correlation attributes (short names: ``flow_id``, ``run_id``...), ``trace_id``/``span_id``
    of the current span, and ``exception`` (type, message, traceback); secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        name = record.__dict__.get(EVENT)
        if name:
            entry["event"] = name
        for key, value in record_context(record).items():
            entry[key.split(".", 1)[1]] = value
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = f"{span.trace_id:032x}"
            entry["span_id"] = f"{span.span_id:016x}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["exception"] = {
                "type": type(exc).__name__,
                "message": redact(str(exc)),
                "traceback": redact(self.formatException(record.exc_info)),
            }
        return json.dumps(entry, default=str, ensure_ascii=False)
