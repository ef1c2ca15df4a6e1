"""The one exception tree of floworch.

Every error floworch raises on purpose derives from :class:`FlowError`. Each concern has its own
subtree (validation, storage, transport, step) and errors carry typed fields so callers can react
without parsing messages. Messages say what was wrong, where, and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class FlowError(Exception):
    """Root of every error floworch raises on purpose."""


# --- validation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a manifest, located by its path (``steps.ship.runAfter.aprove``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class FlowValidationError(FlowError):
    """A manifest (or trigger input) is invalid. ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[ValidationIssue], *, source: str | None = None) -> None:
        self.issues: tuple[ValidationIssue, ...] = tuple(issues)
        self.source = source
        head = f"{source}: " if source else ""
        count = len(self.issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        noun = "error" if count == 1 else "errors"
        super().__init__(f"{head}invalid flow manifest ({count} {noun}):\n{lines}")


# --- lookups and control ----------------------------------------------------------------------


class FlowNotFoundError(FlowError):
    """No flow with this id is registered."""

    def __init__(self, flow_id: str) -> None:
        self.flow_id = flow_id
        super().__init__(f"no flow with id {flow_id!r} is registered")


class RunNotFoundError(FlowError):
    """No run with this id exists in the store."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}")


class StepNotFoundError(FlowError):
    """The run has no step with this key."""

    def __init__(self, run_id: str, step_key: str) -> None:
        self.run_id = run_id
        self.step_key = step_key
        super().__init__(f"run {run_id!r} has no step {step_key!r}")


class TriggerNotFoundError(FlowError):
    """The flow has no trigger with this key."""

    def __init__(self, flow_id: str, trigger_key: str, known: Sequence[str]) -> None:
        self.flow_id = flow_id
        self.trigger_key = trigger_key
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"flow {flow_id!r} has no trigger {trigger_key!r} (its triggers: {names})")


class InvalidInputError(FlowError):
    """A value given to the engine at run time breaks a limit of :mod:`floworch.limits` (an
    idempotency key or signal name too long, or holding control characters); nothing was stored.

    Attributes:
        field: what the value is, e.g. ``"idempotency key"``.
        reason: what is wrong with it (also the message).
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class InvalidOperationError(FlowError):
    """The operation does not apply to the object in its current state."""


class HandlerNotFoundError(FlowError):
    """No handler is registered for a step type."""

    def __init__(self, step_type: str, known: Sequence[str]) -> None:
        self.step_type = step_type
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"no handler registered for step type {step_type!r} (registered: {names})")


# --- storage ----------------------------------------------------------------------------------


class StorageError(FlowError):
    """The store failed (database unreachable, schema mismatch, driver error)."""


class StorageUnavailableError(StorageError):
    """The database cannot be reached or refused the connection; the operation may be retried."""


class SchemaVersionError(StorageError):
    """The database schema is at a revision this version of floworch does not know."""


class ConflictError(StorageError):
    """A write lost a race it should not have lost (an invariant was violated)."""


# --- transport --------------------------------------------------------------------------------


class TransportError(FlowError):
    """Sending or receiving a message failed."""


class EnvelopeError(TransportError):
    """A message body is not a valid step envelope (unparseable, unknown version)."""


# --- steps ------------------------------------------------------------------------------------


class StepError(FlowError):
    """Raised by handlers to fail a step with a typed, non-retryable error.

    Args:
        message: what went wrong.
        retryable: whether the step's retry policy may retry it (default True).
        details: JSON-serialisable data stored with the error.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, details: object | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.details = details


class StepTimeoutError(StepError):
    """The step ran longer than its ``timeoutSeconds``."""


class StepCancelledError(StepError):
    """The run was cancelled while the step was running."""
