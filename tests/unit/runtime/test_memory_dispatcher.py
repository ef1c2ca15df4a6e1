"""The in-process dispatcher passes the shared dispatcher contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from floworch.runtime.memory import InProcessDispatcher
from floworch.testing.dispatcher_contract import DispatcherContract, DispatcherHarness


class TestInProcessDispatcher(DispatcherContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[DispatcherHarness]:
        dispatcher = InProcessDispatcher(concurrency=4)
        yield DispatcherHarness(dispatcher, start=dispatcher.start, stop=dispatcher.stop)
        await dispatcher.stop()


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InProcessDispatcher(concurrency=0)
