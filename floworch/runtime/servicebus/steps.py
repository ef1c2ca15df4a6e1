"""The step processor: turns a received step message into ``Engine.run_step`` and the engine's
answer into a settlement.

- complete: the step ran and its result is committed, or the message is a duplicate/stale.
- abandon: the store or the transport failed; Service Bus redelivers and the claim keeps the
  redelivery harmless (after the entity's max delivery count it is dead-lettered by Service Bus).
- dead-letter: the body is not a step envelope this floworch reads, or names a flow this worker
  does not run. Handler exceptions are step failures the engine records, not settlement errors.
"""

from __future__ import annotations

from azure.servicebus import ServiceBusReceivedMessage

from floworch.engine.engine import Engine
from floworch.errors import EnvelopeError, FlowNotFoundError, StorageError, TransportError
from floworch.runtime.servicebus.messages import envelope_of
from floworch.runtime.servicebus.pump import COMPLETE, Abandon, DeadLetter, Verdict

REASON_BAD_ENVELOPE = "EnvelopeInvalid"
REASON_UNKNOWN_FLOW = "UnknownFlow"


class StepMessageHandler:
    """The pump handler of the steps topic subscriptions."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def __call__(self, message: ServiceBusReceivedMessage) -> Verdict:
        try:
            envelope = envelope_of(message)
        except EnvelopeError as exc:
            return DeadLetter(REASON_BAD_ENVELOPE, str(exc))
        try:
            await self._engine.run_step(envelope)
        except FlowNotFoundError as exc:
            return DeadLetter(
                REASON_UNKNOWN_FLOW,
                f"{exc}; this worker runs {', '.join(self._engine.flows.ids()) or 'no flows'}",
            )
        except (StorageError, TransportError) as exc:
            return Abandon(f"{type(exc).__name__}: {exc}")
        return COMPLETE
