"""How a ``floworch`` command ends: exit codes, and every error as one line without a traceback.

The rule (also in docs/cli.md):

* 0: the command did what was asked (a run ended Succeeded or Skipped).
* 1: it could not: a run ended Failed, Cancelled or TimedOut, a wait timed out, or the run or
  step was not in a state the operation applies to (cancelling a finished run).
* 2: invalid input: a bad option or argument, an invalid manifest or body, an unknown flow,
  trigger, run or step, a value beyond :mod:`floworch.limits` (``InvalidInputError``).
* 3: infrastructure unavailable: the database or Service Bus could not be reached; the same
  command may succeed later.
* 130: interrupted (Ctrl-C).

Messages never show a password: database URLs, ADO.NET strings and Service Bus connection
strings are masked before anything is printed.
"""

from __future__ import annotations

import functools
import re
from enum import IntEnum

import click

from floworch.errors import (
    FlowError,
    FlowNotFoundError,
    FlowValidationError,
    HandlerNotFoundError,
    InvalidInputError,
    InvalidOperationError,
    RunNotFoundError,
    StepNotFoundError,
    StorageUnavailableError,
    TransportError,
    TriggerNotFoundError,
)


class ExitCode(IntEnum):
    """The exit codes of every ``floworch`` command (``topology plan`` adds 2 = changes pending)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNAVAILABLE = 3
    INTERRUPTED = 130


_INPUT_ERRORS: tuple[type[FlowError], ...] = (
    FlowValidationError,
    FlowNotFoundError,
    TriggerNotFoundError,
    RunNotFoundError,
    StepNotFoundError,
    HandlerNotFoundError,
    InvalidInputError,
)


@functools.cache
def _secret_patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """Compiled on first use: compiling at import would slow every command's start-up."""
    return (
        # ADO.NET / ODBC / Service Bus / storage strings: Password=...; SharedAccessKey=...
        re.compile(
            r"(?i)\b(password|pwd|sharedaccesskey|accountkey|sharedaccesssignature|secret)"
            r"(\s*=\s*)('[^']*'|\"[^\"]*\"|[^;\s'\"]+)"
        ),
        # URLs with credentials: scheme://user:password@host
        re.compile(r"(?i)([a-z][a-z0-9+.\-]*://[^:/@\s'\"]*:)([^@\s'\"]+)(@)"),
        # query parameters: ?password=...&
        re.compile(r"(?i)([?&](?:password|pwd|secret|sig|token)=)([^&\s'\"]+)"),
    )


def mask_secrets(text: str) -> str:
    """``text`` with every password, key or signature replaced by ``***``."""
    pairs, urls, query = _secret_patterns()
    text = pairs.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = urls.sub(lambda m: f"{m.group(1)}***{m.group(3)}", text)
    return query.sub(lambda m: f"{m.group(1)}***", text)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code a failure maps to."""
    if isinstance(exc, click.UsageError | click.BadParameter):
        return ExitCode.USAGE
    if isinstance(exc, _INPUT_ERRORS):
        return ExitCode.USAGE
    if isinstance(exc, StorageUnavailableError | TransportError):
        return ExitCode.UNAVAILABLE
    if isinstance(exc, KeyboardInterrupt | click.exceptions.Abort):
        return ExitCode.INTERRUPTED
    if isinstance(exc, click.ClickException):
        return ExitCode(exc.exit_code) if exc.exit_code in set(ExitCode) else ExitCode.FAILED
    return ExitCode.FAILED


def describe_failure(exc: BaseException) -> str:
    """The message for a failure: one line, or, for a manifest with several problems, a head
    line and one line per problem. Secrets are masked."""
    if isinstance(exc, click.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else "floworch"
        text = f"error: {_one_line(exc.format_message())} (see '{where} --help')"
    elif isinstance(exc, click.ClickException):
        text = f"error: {exc.format_message()}"
    elif isinstance(exc, FlowValidationError):
        head = f"{exc.source}: " if exc.source else ""
        text = f"error: {head}{exc.issues[0]}" if len(exc.issues) == 1 else str(exc)
    elif isinstance(exc, InvalidOperationError | FlowError):
        text = f"error: {_one_line(str(exc))}"
    elif isinstance(exc, KeyboardInterrupt | click.exceptions.Abort):
        text = "interrupted"
    else:
        detail = _one_line(str(exc)) or "(no message)"
        text = (
            f"error: unexpected {type(exc).__name__}: {detail} (a floworch bug: please report "
            "it; FLOWORCH_DEBUG=1 shows the traceback)"
        )
    return mask_secrets(text)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
