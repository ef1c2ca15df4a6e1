"""Errors of the topology manager. All are :class:`~floworch.errors.TransportError` subclasses
and name the entity and the namespace they concern."""

from __future__ import annotations

from collections.abc import Sequence

from floworch.errors import TransportError, ValidationIssue


class TopologyError(TransportError):
    """The topology could not be computed, read or applied."""


class TopologyDocumentError(TopologyError):
    """A topology document (``topology/servicebus.json``) is invalid; ``issues`` lists every
    problem with its JSON path."""

    def __init__(self, issues: Sequence[ValidationIssue], *, source: str | None = None) -> None:
        self.issues = tuple(issues)
        self.source = source
        head = f"{source}: " if source else ""
        count = len(self.issues)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"{head}invalid Service Bus topology ({count} {noun}):\n{lines}")


class EntityOperationError(TopologyError):
    """An operation on one entity failed.

    Attributes:
        operation: what was attempted (``"create"``, ``"update"``, ``"list"``, ...).
        kind: ``"queue"``, ``"topic"``, ``"subscription"``, ``"rule"`` or ``"namespace"``.
        path: the entity path, e.g. ``"flow-steps/subscriptions/flow-hello"``.
        target: the namespace, e.g. ``"sb://contoso.servicebus.windows.net"``.
    """

    def __init__(self, message: str, *, operation: str, kind: str, path: str, target: str) -> None:
        self.operation = operation
        self.kind = kind
        self.path = path
        self.target = target
        super().__init__(message)


class EntityExistsError(EntityOperationError):
    """A create found the entity already there (the caller updates it instead)."""


class EntityNotFoundError(EntityOperationError):
    """The entity (or its parent) does not exist."""


class TopologyAccessError(EntityOperationError):
    """The credential was rejected or lacks the rights for the operation."""


class TopologyConflictError(TopologyError):
    """The namespace differs from the topology in settings Service Bus cannot change in place.

    Attributes:
        paths: the entities concerned.
    """

    def __init__(self, message: str, *, paths: Sequence[str]) -> None:
        self.paths = tuple(paths)
        super().__init__(message)
