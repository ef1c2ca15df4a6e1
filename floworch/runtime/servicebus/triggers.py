"""Runs started by Service Bus messages: the ``flow-triggers`` topic (and any queue a flow's
``ServiceBus`` trigger names).

A trigger message has application property ``FlowId`` (optional ``TriggerKey`` and
``IdempotencyKey``; the idempotency key defaults to the message id) and a JSON body that becomes
the run's trigger body. Application properties other than those are passed as trigger headers.
Each idempotency key starts at most one run, however often the message is delivered.

On the triggers topic, each flow's subscription (``flow-<flowId>``, a correlation filter on
``FlowId``) routes its messages to the workers that run it, and they wait there while none does;
the subscription ``unrouted`` catches what no flow's subscription takes, which a worker
dead-letters with the reason (``FlowIdMissing``, ``UnknownFlow``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from azure.core.exceptions import AzureError
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient

from floworch import strict_json
from floworch.engine.consumer import (
    COMPLETE,
    DeadLetter,
    Delivery,
    RetryPolicy,
    Verdict,
    failure_verdict,
)
from floworch.engine.engine import Engine
from floworch.errors import (
    FlowNotFoundError,
    InvalidInputError,
    TransportError,
    TriggerNotFoundError,
)
from floworch.runtime.servicebus.messages import application_property, body_bytes
from floworch.runtime.servicebus.names import DEFAULT_TRIGGERS_TOPIC, UNROUTED_SUBSCRIPTION
from floworch.telemetry.hooks import TriggerOrigin

REASON_NO_FLOW_ID = "FlowIdMissing"
REASON_UNKNOWN_FLOW = "UnknownFlow"
REASON_UNKNOWN_TRIGGER = "UnknownTrigger"
REASON_BAD_BODY = "BodyNotJson"
REASON_FLOW_DISABLED = "FlowDisabled"
REASON_INVALID_INPUT = "TriggerInvalid"
_RESERVED = {"FlowId", "TriggerKey", "IdempotencyKey"}


def trigger_message(
    flow_id: str,
    body: Any = None,
    *,
    trigger_key: str | None = None,
    idempotency_key: str | None = None,
    headers: dict[str, str] | None = None,
) -> ServiceBusMessage:
    """A message that starts one run of ``flow_id`` when it reaches the triggers topic (or a
    queue of the flow's ``ServiceBus`` trigger).

    Raises:
        ValueError: ``body`` is not JSON (NaN or Infinity included), or a header is reserved.
    """
    properties: dict[str | bytes, Any] = {"FlowId": flow_id}
    if trigger_key:
        properties["TriggerKey"] = trigger_key
    key = idempotency_key or uuid.uuid4().hex
    properties["IdempotencyKey"] = key
    for name, value in (headers or {}).items():
        if name in _RESERVED:
            raise ValueError(f"header {name!r} is reserved for the trigger message contract")
        properties[name] = value
    try:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:  # a worker would dead-letter it as BodyNotJson
        raise ValueError(f"the trigger body of {flow_id!r} is not JSON: {exc}") from exc
    return ServiceBusMessage(
        text,
        message_id=key,
        content_type="application/json",
        application_properties=properties,
    )


async def send_trigger(
    client: ServiceBusClient,
    flow_id: str,
    body: Any = None,
    *,
    topic: str = DEFAULT_TRIGGERS_TOPIC,
    trigger_key: str | None = None,
    idempotency_key: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """Sends one trigger message (opening a sender for it: use :class:`TriggerSender` to start
    many runs); returns its idempotency key (a new one unless given).

    Args:
        topic: the triggers topic, or the queue of the flow's ``ServiceBus`` trigger (Service
            Bus addresses both by name).

    Raises:
        ValueError: ``body`` is not JSON (NaN or Infinity included), or a header is reserved.
        TransportError: the message could not be sent.
    """
    message = trigger_message(
        flow_id, body, trigger_key=trigger_key, idempotency_key=idempotency_key, headers=headers
    )
    try:
        async with client.get_topic_sender(topic) as sender:
            await sender.send_messages(message)
    except AzureError as exc:
        raise TransportError(f"sending a trigger of {flow_id!r} to {topic!r}: {exc}") from exc
    return str(message.message_id)


class TriggerSender:
    """A long-lived sender of trigger messages, for applications that start many runs (one
    sender link for all of them; use ``async with``)."""

    def __init__(self, client: ServiceBusClient, *, topic: str = DEFAULT_TRIGGERS_TOPIC) -> None:
        self._sender = client.get_topic_sender(topic)
        self._topic = topic
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> TriggerSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(
        self,
        flow_id: str,
        body: Any = None,
        *,
        trigger_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Sends one trigger message; returns its idempotency key.

        Raises:
            TransportError: the message could not be sent.
        """
        message = trigger_message(
            flow_id, body, trigger_key=trigger_key, idempotency_key=idempotency_key, headers=headers
        )
        try:
            async with self._lock:  # the SDK's async sender is not safe for concurrent use
                await self._sender.send_messages(message)
        except AzureError as exc:
            raise TransportError(
                f"sending a trigger of {flow_id!r} to {self._topic!r}: {exc}"
            ) from exc
        return str(message.message_id)

    async def close(self) -> None:
        await self._sender.close()


class TriggerMessageHandler:
    """The pump handler of the triggers topic's subscriptions and of trigger queues: one run
    per idempotency key.

    Args:
        engine: the engine runs start on.
        policy: how failures are retried (an outage) or dead-lettered.
        topic: the triggers topic (for the dead-letter descriptions).
        unrouted: whether it handles the topic's catch-all subscription ``unrouted``, which
            holds what no flow's subscription routes.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        policy: RetryPolicy | None = None,
        topic: str = DEFAULT_TRIGGERS_TOPIC,
        unrouted: bool = False,
    ) -> None:
        self._engine = engine
        self._policy = policy or RetryPolicy()
        self._topic = topic
        self._unrouted = unrouted
        self.started = 0

    async def __call__(self, message: ServiceBusReceivedMessage, delivery: Delivery) -> Verdict:
        flow_id = application_property(message, "FlowId")
        if not flow_id:
            return DeadLetter(
                REASON_NO_FLOW_ID,
                "a trigger message needs application property FlowId naming the flow to start",
            )
        raw = body_bytes(message)
        try:
            body = strict_json.loads(raw) if raw.strip() else None
        except strict_json.NotStrictJsonError as exc:
            return DeadLetter(REASON_BAD_BODY, f"the trigger body is not JSON: {exc}")
        headers = {}
        for name, value in (message.application_properties or {}).items():
            text = name.decode() if isinstance(name, bytes) else str(name)
            if text not in _RESERVED:
                headers[text] = value.decode() if isinstance(value, bytes) else str(value)
        key = application_property(message, "IdempotencyKey") or str(message.message_id)
        trigger_key = application_property(message, "TriggerKey")
        flow = self._engine.flows.find(flow_id)
        if trigger_key is None and flow is not None:
            # A flow that declares a ServiceBus trigger starts through it by default.
            trigger_key = next(
                (k for k, t in flow.triggers.items() if t.type == "ServiceBus"), None
            )
        try:
            result = await self._engine.trigger(
                flow_id,
                trigger_key,
                body,
                headers,
                idempotency_key=key,
                origin=TriggerOrigin.message(message.application_properties),
            )
        except FlowNotFoundError as exc:
            if self._unrouted:  # the catch-all holds what no flow's subscription takes
                return DeadLetter(
                    REASON_UNKNOWN_FLOW,
                    f"no subscription of topic {self._topic!r} routes FlowId {flow_id!r}, so "
                    f"no flow {flow_id!r} is deployed in this namespace (the message reached "
                    f"{UNROUTED_SUBSCRIPTION!r}); deploy the flow, run `floworch topology "
                    "apply`, and resubmit the message from the dead-letter queue",
                )
            return DeadLetter(
                REASON_UNKNOWN_FLOW,
                f"{exc}; this worker runs {', '.join(self._engine.flows.ids()) or 'no flows'}",
            )
        except TriggerNotFoundError as exc:
            return DeadLetter(REASON_UNKNOWN_TRIGGER, str(exc))
        except InvalidInputError as exc:  # the same message would be refused every time
            return DeadLetter(REASON_INVALID_INPUT, str(exc))
        except Exception as exc:  # an outage is retried; anything else a few times at most
            return failure_verdict(exc, delivery, self._policy)
        if result.disabled:
            return DeadLetter(
                REASON_FLOW_DISABLED,
                f"flow {flow_id!r} is disabled; enable it and resubmit this message from the "
                "dead-letter queue",
            )
        if result.run_id is not None and not result.duplicate:
            self.started += 1
        return COMPLETE
