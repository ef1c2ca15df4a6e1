"""Service Bus ``$management`` request/response operations on an entity.

Requests arrive as AMQP messages on ``<entity>/$management`` with the operation name in the
``operation`` application property and a map body. Each operation returns a
:class:`ManagementReply`; an unknown operation or a malformed body becomes an error status with
an AMQP error condition the SDK maps to its exceptions, never an exception out of this module.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from proton import Array, Data, Message, timestamp

from floworch.emulator.amqp_message import (
    X_MESSAGE_STATE,
    X_SCHEDULED_ENQUEUE_TIME,
    AmqpDecodeError,
    decode_message,
)
from floworch.emulator.broker import Broker, SendTarget
from floworch.emulator.entities import (
    CorrelationFilter,
    EmulatorError,
    EntityAlreadyExists,
    EntityNotFound,
    RuleFilter,
    RuleSettings,
    SqlFilter,
    TrueFilter,
)
from floworch.emulator.message_store import (
    STATE_SCHEDULED,
    EntityStore,
    LockLost,
    StoredMessage,
)

_log = logging.getLogger(__name__)

VENDOR = "com.microsoft:"
MESSAGE_NOT_FOUND = VENDOR + "message-not-found"
MESSAGE_LOCK_LOST = VENDOR + "message-lock-lost"
ARGUMENT_ERROR = VENDOR + "argument-error"
ENTITY_ALREADY_EXISTS = VENDOR + "entity-already-exists"
NOT_FOUND = "amqp:not-found"
NOT_IMPLEMENTED = "amqp:not-implemented"
INTERNAL_ERROR = "amqp:internal-error"

#: receiver-settle-mode values: 0 receive-and-delete (settle first), 1 peek-lock (second).
_RECEIVE_AND_DELETE = 0


@dataclass(frozen=True)
class ManagementReply:
    """A management response: status code, description, optional condition and body."""

    status: int
    description: str
    body: Any = None
    condition: str | None = None


class _BadRequest(Exception):
    def __init__(self, description: str, status: int = 400, condition: str = ARGUMENT_ERROR):
        super().__init__(description)
        self.status = status
        self.condition = condition


@dataclass(frozen=True)
class _Node:
    """What a ``$management`` node addresses."""

    broker: Broker
    path: str
    target: SendTarget | None
    store: EntityStore | None

    def need_target(self) -> SendTarget:
        if self.target is None:
            raise _BadRequest(f"{self.path!r} is not a queue or topic", 404, NOT_FOUND)
        return self.target

    def need_store(self) -> EntityStore:
        if self.store is None:
            raise _BadRequest(f"{self.path!r} holds no messages", 404, NOT_FOUND)
        return self.store


def handle_management_request(broker: Broker, path: str, request: Message) -> ManagementReply:
    """Run one ``$management`` request against the entity at ``path``."""
    props: dict[Any, Any] = request.properties or {}
    operation = str(props.get("operation", ""))
    try:
        target, store = broker.entity_for_management(path)
        op = _OPERATIONS.get(operation)
        if op is None:
            return ManagementReply(
                501, f"the operation {operation!r} is not supported", condition=NOT_IMPLEMENTED
            )
        body = request.body if isinstance(request.body, dict) else {}
        return op(_Node(broker, path, target, store), body)
    except EntityNotFound as exc:
        return ManagementReply(404, str(exc), condition=NOT_FOUND)
    except EntityAlreadyExists as exc:
        return ManagementReply(409, str(exc), condition=ENTITY_ALREADY_EXISTS)
    except LockLost as exc:
        return ManagementReply(410, str(exc), condition=MESSAGE_LOCK_LOST)
    except _BadRequest as exc:
        return ManagementReply(exc.status, str(exc), condition=exc.condition)
    except (EmulatorError, KeyError, TypeError, ValueError, AmqpDecodeError) as exc:
        return ManagementReply(400, f"bad {operation} request: {exc!r}", condition=ARGUMENT_ERROR)
    except Exception as exc:
        _log.exception("emulator: management operation %s failed", operation)
        return ManagementReply(500, f"{type(exc).__name__}: {exc}", condition=INTERNAL_ERROR)


def _field(body: dict[Any, Any], name: str) -> Any:
    if name not in body:
        raise _BadRequest(f"the request body has no {name!r}")
    return body[name]


def _elements(value: Any) -> list[Any]:
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, list | tuple):
        return list(value)
    raise _BadRequest(f"expected an array, got {type(value).__name__}")


def _uuids(value: Any) -> list[uuid.UUID]:
    return [v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)) for v in _elements(value)]


def _ok(body: Any = None) -> ManagementReply:
    return ManagementReply(200, "OK", body)


def _encoded(stored: StoredMessage, count: int, *, locked: bool) -> bytes:
    return stored.message.encode(stored.annotations(locked=locked), count)


# --- operations -------------------------------------------------------------------------------


def _schedule(node: _Node, body: dict[Any, Any]) -> ManagementReply:
    target = node.need_target()
    now = node.broker.now_ms()
    seqs = []
    for item in _elements(_field(body, "messages")):
        message = decode_message(bytes(_field(item, "message")))
        when = message.scheduled_enqueue_ms
        seqs.append(node.broker.schedule(target, message, now if when is None else when))
    return _ok({"sequence-numbers": Array(None, Data.LONG, *seqs)})


def _cancel(node: _Node, body: dict[Any, Any]) -> ManagementReply:
    seqs = [int(s) for s in _elements(_field(body, "sequence-numbers"))]
    node.broker.cancel_scheduled(node.need_target(), seqs)
    return _ok()


def _renew(node: _Node, body: dict[Any, Any]) -> ManagementReply:
    store, now = node.need_store(), node.broker.now_ms()
    expirations = [timestamp(store.renew(t, now)) for t in _uuids(_field(body, "lock-tokens"))]
    return _ok({"expirations": Array(None, Data.TIMESTAMP, *expirations)})


def _peek(node: _Node, body: dict[Any, Any]) -> ManagementReply:
    start = int(body.get("from-sequence-number", 1))
    count = int(body.get("message-count", 1))
    found = [
        (_encoded(m, m.delivery_count, locked=False)) for m in node.need_store().peek(start, count)
    ]
    if node.target is not None and node.store is not None and len(found) < count:
        found.extend(_peek_scheduled(node.target, start, count - len(found)))
    if not found:
        return ManagementReply(204, "No messages")
    return _ok({"messages": [{"message": raw} for raw in found]})


def _peek_scheduled(target: SendTarget, start: int, count: int) -> Iterable[bytes]:
    # Scheduled messages of a queue are visible to peek with state "scheduled".
    for seq in sorted(s for s in target.scheduled if s >= start)[:count]:
        scheduled = target.scheduled[seq]
        stored = StoredMessage(seq, scheduled.message, scheduled.enqueue_at_ms)
        annotations = stored.annotations(locked=False)
        annotations[X_MESSAGE_STATE] = STATE_SCHEDULED
        annotations.setdefault(X_SCHEDULED_ENQUEUE_TIME, timestamp(scheduled.enqueue_at_ms))
        yield scheduled.message.encode(annotations, 0)


def _receive_by_sequence_number(node: _Node, body: dict[Any, Any]) -> ManagementReply:
    store = node.need_store()
    seqs = [int(s) for s in _elements(_field(body, "sequence-numbers"))]
    peek_lock = int(body.get("receiver-settle-mode", 1)) != _RECEIVE_AND_DELETE
    try:
        taken = store.take_deferred(seqs, node.broker.now_ms(), peek_lock=peek_lock)
    except KeyError as exc:
        return ManagementReply(
            404,
            f"no deferred message with sequence number {exc.args[0]}",
            condition=MESSAGE_NOT_FOUND,
        )
    entries = []
    for stored, count in taken:
        entry: dict[str, Any] = {"message": _encoded(stored, count, locked=peek_lock)}
        if peek_lock and stored.lock_token is not None:
            entry["lock-token"] = stored.lock_token
        entries.append(entry)
    return _ok({"messages": entries})


def _update_disposition(node: _Node, body: dict[Any, Any]) -> ManagementReply:
    store, now = node.need_store(), node.broker.now_ms()
    status = str(_field(body, "disposition-status"))
    reason = body.get("deadletter-reason")
    description = body.get("deadletter-description")
    for token in _uuids(_field(body, "lock-tokens")):
        if status == "completed":
            store.complete(token, now)
        elif status == "abandoned":
            store.abandon(token, now)
        elif status == "defered":
            store.defer(token, now)
        elif status == "suspended":
            store.dead_letter(
                token,
                now,
                None if reason is None else str(reason),
                None if description is None else str(description),
            )
        else:
            raise _BadRequest(f"unknown disposition-status {status!r}")
    return _ok()


def _subscription_of(node: _Node) -> tuple[str, str]:
    parts = node.path.split("/")
    if len(parts) != 3 or parts[1].lower() != "subscriptions":
        raise _BadRequest(f"rules live on subscriptions, not on {node.path!r}")
    return parts[0], parts[2]


def _rule_filter(description: dict[Any, Any]) -> RuleFilter:
    sql = description.get("sql-filter")
    if isinstance(sql, dict):
        return SqlFilter(str(_field(sql, "expression")))
    corr = description.get("correlation-filter")
    if isinstance(corr, dict):

        def text(key: str) -> str | None:
            value = corr.get(key)
            return None if value is None else str(value)

        return CorrelationFilter(
            correlation_id=text("correlation-id"),
            message_id=text("message-id"),
            to=text("to"),
            reply_to=text("reply-to"),
            subject=text("label"),
            session_id=text("session-id"),
            reply_to_session_id=text("reply-to-session-id"),
            content_type=text("content-type"),
            properties={str(k): v for k, v in (corr.get("properties") or {}).items()},
        )
    return TrueFilter()


def _add_rule(node: _Node, body: dict[Any, Any]) -> ManagementReply:
    topic, sub = _subscription_of(node)
    description = _field(body, "rule-description")
    if not isinstance(description, dict):
        raise _BadRequest("rule-description must be a map")
    action = description.get("sql-rule-action")
    node.broker.registry.create_rule(
        RuleSettings(
            topic_name=topic,
            subscription_name=sub,
            name=str(_field(body, "rule-name")),
            filter=_rule_filter(description),
            action=str(action["expression"]) if isinstance(action, dict) else None,
        )
    )
    return _ok()


def _remove_rule(node: _Node, body: dict[Any, Any]) -> ManagementReply:
    topic, sub = _subscription_of(node)
    node.broker.registry.delete_rule(topic, sub, str(_field(body, "rule-name")))
    return _ok()


def _enumerate_rules(node: _Node, body: dict[Any, Any]) -> ManagementReply:
    topic, sub = _subscription_of(node)
    skip = int(body.get("skip", 0))
    top = int(body.get("top", 100))
    rules = list(node.broker.registry.list_rules(topic, sub))[skip : skip + top]
    if not rules:
        return ManagementReply(204, "No rules")
    return _ok({"rules": [{"rule-description": _describe_rule(r)} for r in rules]})


def _describe_rule(rule: RuleSettings) -> dict[str, Any]:
    # Rendered as the same maps add-rule accepts, which keeps the two operations symmetric.
    flt = rule.filter
    described: dict[str, Any] = {"rule-name": rule.name}
    if isinstance(flt, CorrelationFilter):
        described["correlation-filter"] = {
            k: v
            for k, v in {
                "correlation-id": flt.correlation_id,
                "message-id": flt.message_id,
                "to": flt.to,
                "reply-to": flt.reply_to,
                "label": flt.subject,
                "session-id": flt.session_id,
                "reply-to-session-id": flt.reply_to_session_id,
                "content-type": flt.content_type,
                "properties": dict(flt.properties),
            }.items()
            if v is not None
        }
    else:
        described["sql-filter"] = {"expression": flt.sql_expression}
    if rule.action is not None:
        described["sql-rule-action"] = {"expression": rule.action}
    return described


_OPERATIONS: dict[str, Callable[[_Node, dict[Any, Any]], ManagementReply]] = {
    VENDOR + "schedule-message": _schedule,
    VENDOR + "cancel-scheduled-message": _cancel,
    VENDOR + "renew-lock": _renew,
    VENDOR + "peek-message": _peek,
    VENDOR + "receive-by-sequence-number": _receive_by_sequence_number,
    VENDOR + "update-disposition": _update_disposition,
    VENDOR + "add-rule": _add_rule,
    VENDOR + "remove-rule": _remove_rule,
    VENDOR + "enumerate-rules": _enumerate_rules,
}
