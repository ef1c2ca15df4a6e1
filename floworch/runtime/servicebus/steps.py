"""The step processor: hands a received step message to the engine's step consumer and returns
its verdict for the pump to settle (see :mod:`floworch.engine.consumer` for the rules and
docs/servicebus.md for the settlement table)."""

from __future__ import annotations

from azure.servicebus import ServiceBusReceivedMessage

from floworch.engine.consumer import (
    DeadLetter,
    DeadLetterReason,
    Delivery,
    RetryPolicy,
    StepConsumer,
    Verdict,
    describe,
)
from floworch.engine.engine import Engine
from floworch.errors import EnvelopeError
from floworch.runtime.servicebus.messages import body_bytes


class StepMessageHandler:
    """The pump handler of the steps topic subscriptions."""

    def __init__(self, engine: Engine, *, policy: RetryPolicy | None = None) -> None:
        self.consumer = StepConsumer(engine, policy=policy)

    async def __call__(self, message: ServiceBusReceivedMessage, delivery: Delivery) -> Verdict:
        try:
            body = body_bytes(message)
        except EnvelopeError as exc:  # a body of AMQP values, not data
            return DeadLetter(DeadLetterReason.ENVELOPE_INVALID, describe(exc))
        return await self.consumer.handle(body, delivery)
