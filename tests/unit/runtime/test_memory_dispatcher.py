"""The in-process dispatcher passes the shared dispatcher contract."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from floworch.engine.consumer import COMPLETE, Delivery, Verdict
from floworch.engine.envelope import StepEnvelope
from floworch.runtime.memory import Body, InProcessDispatcher
from floworch.testing.dispatcher_contract import Consumer, DispatcherContract, DispatcherHarness


def completing(consumer: Consumer) -> Callable[[Body, Delivery], Awaitable[Verdict]]:
    """The contract's consumer sees envelopes; the runtime's consumer also says a verdict."""

    async def handle(body: Body, delivery: Delivery) -> Verdict:
        assert isinstance(body, StepEnvelope)
        await consumer(body)
        return COMPLETE

    return handle


class TestInProcessDispatcher(DispatcherContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[DispatcherHarness]:
        dispatcher = InProcessDispatcher(concurrency=4)
        yield DispatcherHarness(
            dispatcher, start=lambda c: dispatcher.start(completing(c)), stop=dispatcher.stop
        )
        await dispatcher.stop()


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InProcessDispatcher(concurrency=0)
