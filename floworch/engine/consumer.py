"""The step consumer: one runtime-neutral answer to "what becomes of this step message?".

Every runtime (the in-process dispatcher, the Service Bus pump, later the Functions triggers)
hands a received step message to :meth:`StepConsumer.handle` together with the delivery facts
it knows (:class:`Delivery`) and maps the :data:`Verdict` onto its transport:

- :class:`Complete`: the step ran and its result is committed, or the message was a duplicate or
  stale dispatch. Remove the message.
- :class:`Retry`: the store or the transport is unavailable (an outage), or an unexpected error
  that may be transient. Keep the message and hand it over again after ``after``.
- :class:`DeadLetter`: the message can never succeed (poison). Set it aside with its reason.

The rules live here once:

- ``StorageError`` / ``TransportError`` (not ``EnvelopeError``, not ``ConflictError``) mean the
  infrastructure is unavailable: retried with exponential back-off for as long as
  :attr:`RetryPolicy.give_up_after` allows (and, on a transport with a max delivery count, until
  the last delivery can be held no longer), then dead-lettered with the outage as its reason.
- A body that is not a step envelope, a flow this worker does not run, and any other
  ``FlowError`` are poison: dead-lettered at once.
- Any other exception is unexpected: retried :attr:`RetryPolicy.unexpected_tries` times in all,
  then dead-lettered as ``UnexpectedError`` with its type and message.

Handler exceptions never reach here: they are step failures the engine records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from floworch.engine.envelope import StepEnvelope
from floworch.errors import (
    ConflictError,
    EnvelopeError,
    FlowError,
    FlowNotFoundError,
    StorageError,
    TransportError,
)
from floworch.telemetry.logs import log_context

if TYPE_CHECKING:
    from floworch.engine.engine import Engine

log = logging.getLogger("floworch.engine.consumer")

_DESCRIPTION_LIMIT = 1024
"""Service Bus keeps at most 4 KB of dead-letter description; a clear line needs far less."""


class DeadLetterReason(StrEnum):
    """Why a step message was dead-lettered (the transport's dead-letter reason)."""

    ENVELOPE_INVALID = "EnvelopeInvalid"
    UNKNOWN_FLOW = "UnknownFlow"
    REJECTED = "MessageRejected"
    UNEXPECTED_ERROR = "UnexpectedError"
    STORE_UNAVAILABLE = "StoreUnavailable"
    TRANSPORT_UNAVAILABLE = "TransportUnavailable"


class FailureKind(StrEnum):
    """How a failure to handle a message is treated."""

    OUTAGE = "outage"
    """The store or transport is unavailable: retry for as long as the policy allows."""
    POISON = "poison"
    """The message itself is bad: dead-letter at once."""
    UNEXPECTED = "unexpected"
    """An exception floworch did not raise on purpose: retry a few times, then dead-letter."""


@dataclass(frozen=True)
class Delivery:
    """What the transport knows about this hand-over of a message.

    Attributes:
        message_id: the transport's message id (``<runId>:<stepKey>:<seq>`` for step messages).
        delivery_count: how often the transport has delivered the message, this time included
            (1 on the first delivery).
        max_delivery_count: the entity's max delivery count, when the transport has one and
            knows it; the last delivery is then dead-lettered with its real reason instead of
            being given back for the transport to dead-let as "max delivery count exceeded".
        enqueued_at: when the message was enqueued, when known.
        attempt: handling attempts of this delivery, this one included (retries in place or
            re-queues add one; a redelivery by the transport starts again at 1).
        failing_for: how long ago the first failed attempt the transport knows of happened.
        hold_remaining: how much longer the transport can keep this delivery for a retry (the
            pump's lock-renewal budget); None when it has no such limit.
    """

    message_id: str
    delivery_count: int = 1
    max_delivery_count: int | None = None
    enqueued_at: datetime | None = None
    attempt: int = 1
    failing_for: timedelta = timedelta(0)
    hold_remaining: timedelta | None = None

    def __post_init__(self) -> None:
        if self.delivery_count < 1 or self.attempt < 1:
            raise ValueError("delivery_count and attempt count from 1")

    @property
    def tries(self) -> int:
        """Attempts known so far across deliveries (at least one per earlier delivery)."""
        return self.attempt + self.delivery_count - 1

    @property
    def last_delivery(self) -> bool:
        """Whether the transport dead-letters the message once it is given back."""
        return self.max_delivery_count is not None and (
            self.delivery_count >= self.max_delivery_count
        )


@dataclass(frozen=True)
class Complete:
    """The message was handled (or is a harmless duplicate): remove it."""


@dataclass(frozen=True)
class Retry:
    """Keep the message and hand it over again after ``after`` (an outage, or an unexpected
    error that may pass)."""

    after: timedelta
    why: str


@dataclass(frozen=True)
class DeadLetter:
    """The message can never succeed: set it aside with a reason and a description."""

    reason: str
    description: str


Verdict = Complete | Retry | DeadLetter
COMPLETE = Complete()


@dataclass(frozen=True)
class RetryPolicy:
    """How failures to handle a message are retried before the message is dead-lettered.

    Attributes:
        first_delay: the back-off before the second attempt.
        factor: each further back-off is this many times the previous one.
        max_delay: the back-off never exceeds this.
        give_up_after: an outage that has kept one message failing this long dead-letters it
            (the reconciler re-sends a step dispatch whose message was lost, so nothing of the
            run is lost with it).
        unexpected_tries: attempts an unexpected exception gets in all before the message is
            dead-lettered as poison.
    """

    first_delay: timedelta = timedelta(milliseconds=500)
    factor: float = 2.0
    max_delay: timedelta = timedelta(seconds=10)
    give_up_after: timedelta = timedelta(minutes=10)
    unexpected_tries: int = 3

    def __post_init__(self) -> None:
        if self.first_delay <= timedelta(0) or self.max_delay < self.first_delay:
            raise ValueError("retry delays must be positive, with max_delay >= first_delay")
        if self.factor < 1:
            raise ValueError(f"the back-off factor must be at least 1, not {self.factor}")
        if self.unexpected_tries < 1:
            raise ValueError("unexpected_tries must be at least 1")

    def delay(self, attempt: int) -> timedelta:
        """The back-off after failed attempt number ``attempt`` (1-based)."""
        first = self.first_delay.total_seconds()
        cap = self.max_delay.total_seconds()
        # Capped before exponentiating grows out of float range after many attempts.
        exponent = min(max(attempt - 1, 0), 64)
        return timedelta(seconds=min(first * self.factor**exponent, cap))


def classify(exc: BaseException) -> tuple[FailureKind, str]:
    """The kind of a failure and the dead-letter reason it would carry."""
    if isinstance(exc, EnvelopeError):
        return FailureKind.POISON, DeadLetterReason.ENVELOPE_INVALID
    if isinstance(exc, FlowNotFoundError):
        return FailureKind.POISON, DeadLetterReason.UNKNOWN_FLOW
    if isinstance(exc, ConflictError):
        # A lost race that should not happen; it may not happen again, so not poison at once.
        return FailureKind.UNEXPECTED, DeadLetterReason.UNEXPECTED_ERROR
    if isinstance(exc, StorageError):
        return FailureKind.OUTAGE, DeadLetterReason.STORE_UNAVAILABLE
    if isinstance(exc, TransportError):
        return FailureKind.OUTAGE, DeadLetterReason.TRANSPORT_UNAVAILABLE
    if isinstance(exc, FlowError):
        return FailureKind.POISON, DeadLetterReason.REJECTED
    return FailureKind.UNEXPECTED, DeadLetterReason.UNEXPECTED_ERROR


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, cut to what a dead-letter description keeps."""
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line[:_DESCRIPTION_LIMIT]


def failure_verdict(exc: BaseException, delivery: Delivery, policy: RetryPolicy) -> Verdict:
    """The verdict for a message whose handling raised ``exc``: retry or dead-letter."""
    kind, reason = classify(exc)
    what = describe(exc)
    if kind is FailureKind.POISON:
        return DeadLetter(reason, what)
    if kind is FailureKind.UNEXPECTED and delivery.tries >= policy.unexpected_tries:
        return DeadLetter(reason, f"{what} (failed {delivery.tries} times)"[:_DESCRIPTION_LIMIT])
    after = policy.delay(delivery.attempt)
    if kind is FailureKind.OUTAGE and delivery.failing_for + after > policy.give_up_after:
        return DeadLetter(
            reason, f"{what} (still failing after {delivery.failing_for})"[:_DESCRIPTION_LIMIT]
        )
    held_no_longer = delivery.hold_remaining is not None and after > delivery.hold_remaining
    if delivery.last_delivery and held_no_longer:
        # Given back now, the transport would dead-letter it without saying why.
        return DeadLetter(
            reason,
            f"{what} (delivery {delivery.delivery_count} of {delivery.max_delivery_count})"[
                :_DESCRIPTION_LIMIT
            ],
        )
    return Retry(after, what)


async def consume(
    operation: Callable[[], Awaitable[Verdict]],
    delivery: Delivery,
    policy: RetryPolicy,
    *,
    what: str = "message",
) -> Verdict:
    """Runs ``operation`` and turns whatever it raises into a verdict (never raises, except
    for the cancellation of the calling task itself)."""
    try:
        return await operation()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        verdict = failure_verdict(exc, delivery, policy)
        _log_failure(what, delivery, exc, verdict)
        return verdict


def _log_failure(what: str, delivery: Delivery, exc: Exception, verdict: Verdict) -> None:
    # Transports log each retry and dead letter in one line. An exception nobody raised on
    # purpose is a bug somewhere: its traceback is logged once, when the message is given up.
    if isinstance(verdict, DeadLetter) and verdict.reason == DeadLetterReason.UNEXPECTED_ERROR:
        log.error(
            "%s %s failed unexpectedly; dead-lettering it",
            what,
            delivery.message_id,
            exc_info=exc,
        )


class StepConsumer:
    """Turns a received step message into a :data:`Verdict` (see the module docstring).

    Args:
        engine: runs the step.
        policy: retry and poison rules (default :class:`RetryPolicy`).
    """

    def __init__(self, engine: Engine, *, policy: RetryPolicy | None = None) -> None:
        self._engine = engine
        self.policy = policy or RetryPolicy()

    async def handle(self, body: bytes | StepEnvelope, delivery: Delivery) -> Verdict:
        """Decodes the message (a transport that carries envelopes passes one as is), runs the
        step, and says what the transport should do with the message. Never raises, except for
        the cancellation of the calling task."""
        if isinstance(body, StepEnvelope):
            envelope = body
        else:
            try:
                envelope = StepEnvelope.from_json(body)
            except Exception as exc:  # any decoding failure means the body is not an envelope
                return DeadLetter(DeadLetterReason.ENVELOPE_INVALID, describe(exc))
        with log_context(
            flow_id=envelope.flow_id,
            run_id=envelope.run_id,
            step_key=envelope.step_key,
            seq=envelope.seq,
        ):
            return await consume(lambda: self._run(envelope), delivery, self.policy, what="step")

    async def _run(self, envelope: StepEnvelope) -> Verdict:
        try:
            await self._engine.run_step(envelope)
        except FlowNotFoundError as exc:
            runs = ", ".join(self._engine.flows.ids()) or "no flows"
            return DeadLetter(DeadLetterReason.UNKNOWN_FLOW, f"{exc}; this worker runs {runs}")
        return COMPLETE
