"""Log output of commands that execute steps here (``run``, ``resume``, ``--wait``).

Handler records (``ctx.logger``, logger ``floworch.step.<Type>``) are shown at ``--log-level``
(INFO by default) with their run and step; floworch's own records from WARNING up (DEBUG
shows everything). All of it goes to stderr, so ``--json`` on stdout stays parseable.
"""

from __future__ import annotations

import logging
import sys

import click

from floworch.hosting.observability import ConsoleHandler
from floworch.telemetry.logs import JsonFormatter, LogContextFilter

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

log_level_option = click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    envvar="FLOWORCH_LOG_LEVEL",
    help="Handler log records (ctx.logger) at this level and above are printed to stderr.",
)


log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"], case_sensitive=False),
    default="text",
    show_default=True,
    envvar="FLOWORCH_LOG_FORMAT",
    show_envvar=True,
    help="Log records on stderr as text lines or as one JSON object per line (with flow, run, "
    "step, attempt, trace and span ids).",
)


class StepLogFormatter(logging.Formatter):
    """``  log info greet (run 3f2a9c1e): message``; floworch's own: ``  warning floworch...``."""

    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        step = getattr(record, "step_key", None)
        level = record.levelname.lower()
        if step:
            run = str(getattr(record, "run_id", ""))[:8]
            head = f"  log {level} {step} (run {run})"
        else:
            head = f"  {level} {record.name}"
        text = f"{head}: {message}"
        if record.exc_info and record.exc_info[1] is not None:
            if self.tracebacks:
                text += "\n" + self.formatException(record.exc_info)
            else:
                exc = record.exc_info[1]
                text += f": {type(exc).__name__}: {exc}"
        return text


class _CliHandler(ConsoleHandler):
    """Marks the handler this module installed, so a second call replaces it."""


def configure_logging(level: str, log_format: str = "text") -> None:
    """Shows handler logs at ``level`` and floworch's warnings on stderr (``json``: one JSON
    object per record)."""
    value = getattr(logging, level.upper())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(old)
    handler = _CliHandler(sys.stderr)
    handler.addFilter(LogContextFilter())
    if log_format.lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(StepLogFormatter(tracebacks=value <= logging.DEBUG))
    root.addHandler(handler)
    internal = logging.DEBUG if value <= logging.DEBUG else logging.WARNING
    root.setLevel(internal)
    logging.getLogger("floworch").setLevel(internal)
    logging.getLogger("floworch.step").setLevel(value)
    for noisy in ("aiosqlite", "sqlalchemy", "alembic", "asyncio", "azure", "uamqp"):
        logging.getLogger(noisy).setLevel(max(value, logging.WARNING))
