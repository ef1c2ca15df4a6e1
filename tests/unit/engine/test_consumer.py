"""The step consumer's rules: outage vs poison vs unexpected, back-off, when to give up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from floworch.engine.consumer import (
    COMPLETE,
    DeadLetter,
    DeadLetterReason,
    Delivery,
    FailureKind,
    Retry,
    RetryPolicy,
    StepConsumer,
    classify,
    failure_verdict,
)
from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry
from floworch.errors import (
    ConflictError,
    EnvelopeError,
    FlowNotFoundError,
    InvalidOperationError,
    SchemaVersionError,
    StorageError,
    StorageUnavailableError,
    TransportError,
)
from floworch.testing.faulty_store import StoreFaults, faulty_store

from .support import flow, manual_engine

POLICY = RetryPolicy()


def test_failures_are_classified_by_their_kind() -> None:
    assert classify(StorageUnavailableError("down")) == (
        FailureKind.OUTAGE,
        DeadLetterReason.STORE_UNAVAILABLE,
    )
    assert classify(SchemaVersionError("old"))[0] is FailureKind.OUTAGE
    assert classify(StorageError("failed"))[0] is FailureKind.OUTAGE
    assert classify(TransportError("send")) == (
        FailureKind.OUTAGE,
        DeadLetterReason.TRANSPORT_UNAVAILABLE,
    )
    assert classify(EnvelopeError("bad")) == (
        FailureKind.POISON,
        DeadLetterReason.ENVELOPE_INVALID,
    )
    assert classify(FlowNotFoundError("x")) == (FailureKind.POISON, DeadLetterReason.UNKNOWN_FLOW)
    assert classify(InvalidOperationError("no")) == (
        FailureKind.POISON,
        DeadLetterReason.REJECTED,
    )
    assert classify(ConflictError("race"))[0] is FailureKind.UNEXPECTED
    assert classify(ValueError("bug")) == (
        FailureKind.UNEXPECTED,
        DeadLetterReason.UNEXPECTED_ERROR,
    )


def test_back_off_grows_by_the_factor_up_to_the_cap() -> None:
    policy = RetryPolicy(
        first_delay=timedelta(seconds=1), factor=3, max_delay=timedelta(seconds=20)
    )
    assert [policy.delay(n).total_seconds() for n in range(1, 6)] == [1, 3, 9, 20, 20]
    assert policy.delay(10_000) == timedelta(seconds=20)  # no float overflow


@pytest.mark.parametrize(
    "options",
    [
        {"first_delay": timedelta(0)},
        {"max_delay": timedelta(milliseconds=100)},
        {"factor": 0.5},
        {"unexpected_tries": 0},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**options)


def test_an_outage_is_retried_with_back_off() -> None:
    first = failure_verdict(StorageUnavailableError("db down"), Delivery("m"), POLICY)
    third = failure_verdict(StorageUnavailableError("db down"), Delivery("m", attempt=3), POLICY)
    assert first == Retry(timedelta(milliseconds=500), "StorageUnavailableError: db down")
    assert isinstance(third, Retry) and third.after == timedelta(seconds=2)


def test_an_outage_that_lasts_past_give_up_after_is_dead_lettered_with_its_reason() -> None:
    delivery = Delivery("m", attempt=40, failing_for=timedelta(minutes=10))
    verdict = failure_verdict(StorageUnavailableError("db down"), delivery, POLICY)
    assert isinstance(verdict, DeadLetter)
    assert verdict.reason == "StoreUnavailable"
    assert "db down" in verdict.description and "still failing after" in verdict.description


def test_the_last_delivery_is_dead_lettered_with_its_real_reason_once_it_cannot_be_held() -> None:
    last = Delivery("m", delivery_count=10, max_delivery_count=10, hold_remaining=timedelta(0))
    verdict = failure_verdict(TransportError("send failed"), last, POLICY)
    assert verdict == DeadLetter(
        "TransportUnavailable", "TransportError: send failed (delivery 10 of 10)"
    )
    holdable = Delivery(
        "m", delivery_count=10, max_delivery_count=10, hold_remaining=timedelta(seconds=30)
    )
    assert isinstance(failure_verdict(TransportError("x"), holdable, POLICY), Retry)
    earlier = Delivery("m", delivery_count=9, max_delivery_count=10, hold_remaining=timedelta(0))
    assert isinstance(failure_verdict(TransportError("x"), earlier, POLICY), Retry)


def test_an_unexpected_error_is_retried_a_few_times_in_all_then_dead_lettered() -> None:
    policy = RetryPolicy(unexpected_tries=3)
    bug = KeyError("k")
    assert isinstance(failure_verdict(bug, Delivery("m"), policy), Retry)
    assert isinstance(failure_verdict(bug, Delivery("m", attempt=2), policy), Retry)
    # Tries count across deliveries: the second delivery's second attempt is the third try.
    verdict = failure_verdict(bug, Delivery("m", delivery_count=2, attempt=2), policy)
    assert verdict == DeadLetter("UnexpectedError", "KeyError: 'k' (failed 3 times)")


def test_poison_is_dead_lettered_at_once() -> None:
    verdict = failure_verdict(EnvelopeError("not JSON"), Delivery("m"), POLICY)
    assert verdict == DeadLetter("EnvelopeInvalid", "EnvelopeError: not JSON")


def test_descriptions_are_one_line_of_bounded_length() -> None:
    verdict = failure_verdict(ValueError("a\nb" + "x" * 5000), Delivery("m", attempt=3), POLICY)
    assert isinstance(verdict, DeadLetter)
    assert "\n" not in verdict.description and len(verdict.description) <= 1024


def test_a_delivery_counts_from_one() -> None:
    with pytest.raises(ValueError):
        Delivery("m", delivery_count=0)
    assert Delivery("m", delivery_count=3, attempt=2).tries == 4
    assert not Delivery("m", delivery_count=3).last_delivery
    assert Delivery("m", delivery_count=3, max_delivery_count=3).last_delivery


# -- the consumer on a real engine -------------------------------------------------------------


def _engine(faults: StoreFaults | None = None) -> Any:
    reg = HandlerRegistry()

    @reg.handler("Echo")
    async def echo(inputs: Any) -> Any:
        return inputs

    engine, dispatcher, _ = manual_engine(flow({"a": {"type": "Echo", "inputs": 7}}), reg)
    if faults is not None:
        engine.core.store = faulty_store(engine.core.store, faults)
    return engine, dispatcher


async def test_a_step_message_runs_and_completes_from_bytes_or_an_envelope() -> None:
    engine, dispatcher = _engine()
    consumer = StepConsumer(engine)
    first = await engine.trigger("f")
    assert first.run_id is not None
    [envelope] = dispatcher.take()
    assert await consumer.handle(envelope.to_json().encode(), Delivery("m")) == COMPLETE
    assert (await engine.get_run(first.run_id)).steps["a"].output == 7
    # A duplicate of a step that already ran completes without running it again.
    assert await consumer.handle(envelope, Delivery("m", delivery_count=2)) == COMPLETE


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{", "not JSON"),
        (b'{"v": 2}', "version 2"),
        (b'{"v": 1, "flowId": "f"}', "lacks runId"),
        (
            b'{"v": 1, "flowId": "f", "runId": "r", "stepKey": "a", "stepType": "Echo", '
            b'"seq": 1, "traceContext": "oops"}',
            "traceContext must be an object",
        ),
    ],
)
async def test_a_body_that_is_not_an_envelope_is_dead_lettered(body: bytes, expected: str) -> None:
    engine, _ = _engine()
    verdict = await StepConsumer(engine).handle(body, Delivery("m"))
    assert isinstance(verdict, DeadLetter) and verdict.reason == "EnvelopeInvalid"
    assert expected in verdict.description


async def test_an_unknown_flow_is_dead_lettered_naming_the_flows_here() -> None:
    engine, _ = _engine()
    body = StepEnvelope("ghost", "r", "a", "Echo", 1).to_json().encode()
    verdict = await StepConsumer(engine).handle(body, Delivery("m"))
    assert isinstance(verdict, DeadLetter) and verdict.reason == "UnknownFlow"
    assert "'ghost'" in verdict.description and "this worker runs f" in verdict.description


async def test_a_store_outage_asks_for_a_retry_and_the_retry_runs_the_step() -> None:
    faults = StoreFaults()
    engine, dispatcher = _engine(faults)
    consumer = StepConsumer(engine)
    started = await engine.trigger("f")
    assert started.run_id is not None
    [envelope] = dispatcher.take()
    faults.down = True
    verdict = await consumer.handle(envelope, Delivery("m"))
    assert isinstance(verdict, Retry) and "down" in verdict.why
    faults.down = False
    assert await consumer.handle(envelope, Delivery("m", attempt=2)) == COMPLETE
    assert (await engine.get_run(started.run_id)).steps["a"].status == "Succeeded"


async def test_a_bug_in_the_store_is_retried_then_dead_lettered_as_unexpected() -> None:
    faults = StoreFaults()
    engine, dispatcher = _engine(faults)
    consumer = StepConsumer(engine, policy=RetryPolicy(unexpected_tries=2))
    started = await engine.trigger("f")
    assert started.run_id is not None
    faults.poisoned_runs.add(started.run_id)
    [envelope] = dispatcher.take()
    assert isinstance(await consumer.handle(envelope, Delivery("m")), Retry)
    verdict = await consumer.handle(envelope, Delivery("m", attempt=2))
    assert isinstance(verdict, DeadLetter) and verdict.reason == "UnexpectedError"
    assert "RuntimeError" in verdict.description
