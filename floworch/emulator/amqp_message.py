"""AMQP 1.0 messages as the emulator keeps them: a decoded envelope plus the sender's raw bytes.

The broker must hand every message back exactly as it was sent (application properties of every
AMQP type, any body shape), while rewriting the header and the message annotations on each
delivery. Decoding and re-encoding whole messages would both cost time and risk narrowing types,
so :class:`AmqpMessage` keeps the bare message (properties, application properties, body, footer)
as the bytes the client sent and only decodes what the broker reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from proton import Array, Data, Described, char, symbol, timestamp, ulong

from floworch.emulator.entities import PropertyValue
from floworch.emulator.filter_message import FilterMessage

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
FOOTER = 0x78

# Positions in the AMQP properties list (section 3.2.4 of the spec).
P_MESSAGE_ID, P_USER_ID, P_TO, P_SUBJECT, P_REPLY_TO, P_CORRELATION_ID = range(6)
P_CONTENT_TYPE, P_CONTENT_ENCODING, P_ABSOLUTE_EXPIRY, P_CREATION_TIME = range(6, 10)
P_GROUP_ID, P_GROUP_SEQUENCE, P_REPLY_TO_GROUP_ID = range(10, 13)
_PROPERTY_COUNT = 13

X_SEQUENCE_NUMBER = symbol("x-opt-sequence-number")
X_ENQUEUED_TIME = symbol("x-opt-enqueued-time")
X_LOCKED_UNTIL = symbol("x-opt-locked-until")
X_SCHEDULED_ENQUEUE_TIME = symbol("x-opt-scheduled-enqueue-time")
X_DEADLETTER_SOURCE = symbol("x-opt-deadletter-source")
X_PARTITION_KEY = symbol("x-opt-partition-key")
X_MESSAGE_STATE = symbol("x-opt-message-state")
X_ENQUEUE_SEQUENCE_NUMBER = symbol("x-opt-enqueue-sequence-number")


class AmqpDecodeError(ValueError):
    """The bytes are not an AMQP 1.0 message this emulator can store."""


@dataclass(frozen=True, slots=True)
class AmqpMessage:
    """One message: what the broker reads decoded, the bare message kept as received.

    Attributes:
        durable: Header ``durable``.
        priority: Header ``priority``.
        ttl_ms: Header ``ttl`` in milliseconds (``None`` when the sender set none).
        annotations: The sender's message annotations (symbol keys, proton-typed values).
        properties: The AMQP properties list, padded to its 13 fields.
        application_properties: Application properties (proton-typed values).
        properties_raw: The encoded properties section, or ``b""``.
        application_properties_raw: The encoded application-properties section, or ``b""``.
        body_raw: Every body section and the footer, as received.
    """

    durable: bool
    priority: int
    ttl_ms: int | None
    annotations: Mapping[Any, Any]
    properties: tuple[Any, ...]
    application_properties: Mapping[str, Any]
    properties_raw: bytes
    application_properties_raw: bytes
    body_raw: bytes

    @property
    def size(self) -> int:
        """Bytes of the bare message, the figure Service Bus reports as the message size."""
        return len(self.properties_raw) + len(self.application_properties_raw) + len(self.body_raw)

    @property
    def message_id(self) -> str | None:
        """The message id as text (Service Bus ids are strings; others are rendered)."""
        return _text(self.properties[P_MESSAGE_ID])

    @property
    def session_id(self) -> str | None:
        """The Service Bus session id (AMQP ``group-id``)."""
        return _text(self.properties[P_GROUP_ID])

    @property
    def scheduled_enqueue_ms(self) -> int | None:
        """``x-opt-scheduled-enqueue-time`` in epoch milliseconds, when the sender set it."""
        value = self.annotations.get(X_SCHEDULED_ENQUEUE_TIME)
        if isinstance(value, datetime):
            return int(value.timestamp() * 1000)
        return int(value) if isinstance(value, int) else None

    def with_application_properties(self, values: Mapping[str, Any]) -> AmqpMessage:
        """A copy whose application properties are ``values`` (proton-typed, re-encoded)."""
        owned = dict(values)
        raw = _encode_section(APPLICATION_PROPERTIES, owned) if owned else b""
        return replace(self, application_properties=owned, application_properties_raw=raw)

    def with_properties(self, values: tuple[Any, ...]) -> AmqpMessage:
        """A copy whose AMQP properties list is ``values`` (re-encoded)."""
        return replace(self, properties=values, properties_raw=_encode_properties(values))

    def encode(self, annotations: Mapping[Any, Any], delivery_count: int) -> bytes:
        """Encode for a delivery: a fresh header and annotations, then the bare message as received.

        The header is always written, even when every field has its default, because the SDK
        reads ``delivery_count`` from it and shows ``None`` when the section is missing.
        """
        data = Data()
        data.put_described()
        data.enter()
        data.put_ulong(HEADER)
        data.put_list()
        data.enter()
        data.put_bool(self.durable)
        data.put_ubyte(self.priority)
        if self.ttl_ms is None:
            data.put_null()
        else:
            data.put_uint(self.ttl_ms)
        data.put_bool(delivery_count == 0)
        data.put_uint(delivery_count)
        data.exit()
        data.exit()
        merged = dict(self.annotations)
        merged.update(annotations)
        data.put_object(Described(ulong(MESSAGE_ANNOTATIONS), merged))
        return (
            bytes(data.encode())
            + self.properties_raw
            + self.application_properties_raw
            + self.body_raw
        )


def decode_message(payload: bytes) -> AmqpMessage:
    """Split an encoded message into its sections, decoding all but the body.

    Raises:
        AmqpDecodeError: when ``payload`` is not a sequence of AMQP message sections.
    """
    durable, priority, ttl_ms = False, 4, None
    annotations: dict[Any, Any] = {}
    properties: tuple[Any, ...] = (None,) * _PROPERTY_COUNT
    app_properties: dict[str, Any] = {}
    properties_raw = app_properties_raw = b""
    pos = 0
    data = Data()
    view = memoryview(payload)
    while pos < len(payload):
        if _is_body_section(view, pos):
            # The body and footer are never read by the broker; keep them as sent.
            return AmqpMessage(
                durable=durable,
                priority=priority,
                ttl_ms=ttl_ms,
                annotations=annotations,
                properties=properties,
                application_properties=app_properties,
                properties_raw=properties_raw,
                application_properties_raw=app_properties_raw,
                body_raw=bytes(view[pos:]),
            )
        code, value, size = _decode_section(data, view[pos:])
        if code == HEADER and isinstance(value, list):
            fields = [*value, None, None, None][:3]
            durable = bool(fields[0])
            priority = 4 if fields[1] is None else int(fields[1])
            ttl_ms = None if not fields[2] else int(fields[2])
        elif code == MESSAGE_ANNOTATIONS and isinstance(value, dict):
            annotations = value
        elif code == PROPERTIES and isinstance(value, list):
            properties = tuple([*value, *(None,) * _PROPERTY_COUNT][:_PROPERTY_COUNT])
            properties_raw = bytes(view[pos : pos + size])
        elif code == APPLICATION_PROPERTIES and isinstance(value, dict):
            app_properties = {str(k): v for k, v in value.items()}
            app_properties_raw = bytes(view[pos : pos + size])
        elif code not in (DELIVERY_ANNOTATIONS, FOOTER):
            raise AmqpDecodeError(f"section 0x{code:x} is not an AMQP message section")
        pos += size
    raise AmqpDecodeError("the message has no body section")


def split_batch(payload: bytes) -> list[bytes] | None:
    """The encoded messages inside a batch (transfer message-format 0x80013700), else ``None``.

    proton's Python binding does not expose a transfer's message-format, so a batch is recognised
    by its shape: a body made only of data sections that each decode as a whole AMQP message.
    A single message whose only body is one encoded AMQP message would be misread as a batch of
    one; the SDK never sends that.
    """
    try:
        envelope = decode_message(payload)
    except AmqpDecodeError:
        return None
    view = memoryview(envelope.body_raw)
    pos = 0
    data = Data()
    inner: list[bytes] = []
    while pos < len(view):
        try:
            code, value, size = _decode_section(data, view[pos:])
        except AmqpDecodeError:
            return None
        if code == FOOTER:
            break
        if code != DATA or not isinstance(value, bytes) or not _looks_like_message(value):
            return None
        inner.append(value)
        pos += size
    for part in inner:
        try:
            decode_message(part)
        except AmqpDecodeError:
            return None
    return inner or None


def _is_body_section(view: memoryview, pos: int) -> bool:
    # Body sections (data, amqp-sequence, amqp-value) are never read, so they are not decoded.
    return (
        len(view) - pos > 3
        and view[pos] == 0
        and view[pos + 1] == 0x53
        and DATA <= view[pos + 2] <= 0x77
    )


def _looks_like_message(value: bytes) -> bool:
    # Every AMQP section starts with a small-ulong descriptor: 0x00 0x53 <code>.
    return len(value) > 3 and value[0] == 0 and value[1] == 0x53 and HEADER <= value[2] <= FOOTER


def _decode_section(data: Data, view: memoryview) -> tuple[int, Any, int]:
    data.clear()
    try:
        size = data.decode(view)  # type: ignore[arg-type]  # proton accepts any buffer
        data.rewind()
        data.next()
        section = data.get_object()
    except Exception as exc:  # proton raises its own DataException and others on garbage
        raise AmqpDecodeError(f"undecodable AMQP section: {exc}") from exc
    if not isinstance(section, Described) or not isinstance(section.descriptor, int):
        raise AmqpDecodeError("an AMQP message section must be a described type")
    return int(section.descriptor), owned(section.value), size


def owned(value: Any) -> Any:
    """A deep copy of a decoded value with proton's memoryviews turned into ``bytes``.

    proton returns binary values as views into a buffer it reuses on the next decode.
    """
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, dict):
        return {owned(k): owned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [owned(v) for v in value]
    if isinstance(value, Described):
        return Described(value.descriptor, owned(value.value))
    if isinstance(value, Array):
        return Array(value.descriptor, value.type, *[owned(v) for v in value.elements])
    return value


def encode_value(value: Any) -> bytes:
    """Encode one AMQP value (proton-typed) to bytes."""
    data = Data()
    data.put_object(value)
    return bytes(data.encode())


def decode_value(payload: bytes) -> Any:
    """Decode one AMQP value, copying binary values out of proton's buffer.

    Raises:
        AmqpDecodeError: when ``payload`` is not an AMQP value.
    """
    data = Data()
    try:
        data.decode(payload)
        data.rewind()
        data.next()
        return owned(data.get_object())
    except Exception as exc:
        raise AmqpDecodeError(f"undecodable AMQP value: {exc}") from exc


def _encode_section(code: int, value: Any) -> bytes:
    return encode_value(Described(ulong(code), value))


def _encode_properties(values: tuple[Any, ...]) -> bytes:
    trimmed = list(values)
    while trimmed and trimmed[-1] is None:
        trimmed.pop()
    return _encode_section(PROPERTIES, trimmed) if trimmed else b""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_property_value(value: Any) -> PropertyValue | bytes:
    """An AMQP application-property value as a rule filter sees it."""
    if value is None or isinstance(value, bool | float | uuid.UUID | bytes):
        return value
    if isinstance(value, timestamp):
        return ms_to_datetime(int(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return repr(value)


def from_property_value(value: Any) -> Any:
    """A value a SQL rule action produced, typed for AMQP."""
    if isinstance(value, datetime):
        return timestamp(int(value.timestamp() * 1000))
    if isinstance(value, timedelta):
        # .NET TimeSpan ticks (100 ns), the unit Service Bus uses on the wire.
        return int(value / timedelta(microseconds=1)) * 10
    if isinstance(value, str) and not isinstance(value, symbol | char):
        return str(value)
    return value


_FILTER_FIELDS: tuple[tuple[str, int], ...] = (
    ("message_id", P_MESSAGE_ID),
    ("correlation_id", P_CORRELATION_ID),
    ("to", P_TO),
    ("reply_to", P_REPLY_TO),
    ("subject", P_SUBJECT),
    ("session_id", P_GROUP_ID),
    ("reply_to_session_id", P_REPLY_TO_GROUP_ID),
    ("content_type", P_CONTENT_TYPE),
)


def filter_view(message: AmqpMessage, *, sequence_number: int, enqueued_ms: int) -> FilterMessage:
    """The message as subscription rules see it."""
    view = FilterMessage(
        sequence_number=sequence_number,
        enqueued_sequence_number=sequence_number,
        enqueued_time_utc=ms_to_datetime(enqueued_ms),
        time_to_live=None if message.ttl_ms is None else timedelta(milliseconds=message.ttl_ms),
        size=message.size,
        partition_key=_text(message.annotations.get(X_PARTITION_KEY)),
        properties={
            k: v
            for k, v in (
                (k, to_property_value(v)) for k, v in message.application_properties.items()
            )
            if not isinstance(v, bytes)
        },
    )
    for attr, index in _FILTER_FIELDS:
        setattr(view, attr, _text(message.properties[index]))
    return view


def apply_filter_changes(
    message: AmqpMessage, before: FilterMessage, after: FilterMessage
) -> AmqpMessage:
    """Write back what a SQL rule action changed in ``after`` (compared with ``before``)."""
    result = message
    if after.properties != before.properties:
        values: dict[str, Any] = {}
        for key, new in after.properties.items():
            original = message.application_properties.get(key)
            if key in before.properties and before.properties[key] == new:
                values[key] = original  # unchanged: keep the exact AMQP type
            else:
                values[key] = from_property_value(new)
        result = result.with_application_properties(values)
    changed = [
        (index, getattr(after, attr))
        for attr, index in _FILTER_FIELDS
        if getattr(after, attr) != getattr(before, attr)
    ]
    if changed:
        fields = list(result.properties)
        for index, value in changed:
            fields[index] = value
        result = result.with_properties(tuple(fields))
    return result
