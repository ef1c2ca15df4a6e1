"""The shared contract suite of the dispatcher port.

Every dispatcher (in-process, Service Bus) must pass it. Subclass :class:`DispatcherContract` in a
test module and provide an async ``harness`` fixture yielding a :class:`DispatcherHarness`: the
dispatcher under test plus a way to attach a consumer to it::

    class TestMyDispatcher(DispatcherContract):
        @pytest.fixture
        async def harness(self):
            dispatcher = MyDispatcher(...)
            yield DispatcherHarness(dispatcher, start=dispatcher.start, stop=dispatcher.stop)

The suite runs on real time and only waits for events (with generous timeouts); it never asserts
an upper bound on how long delivery took.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from floworch.engine.envelope import StepEnvelope
from floworch.engine.ports import Dispatcher

Consumer = Callable[[StepEnvelope], Awaitable[object]]


@dataclass
class DispatcherHarness:
    """A dispatcher under test and how to run a consumer on it.

    Attributes:
        dispatcher: the port implementation.
        start: attaches a consumer that every delivered envelope is passed to.
        stop: detaches it and releases resources.
        timeout: seconds to wait for deliveries before failing (generous by default).
    """

    dispatcher: Dispatcher
    start: Callable[[Consumer], object]
    stop: Callable[[], Awaitable[None]]
    timeout: float = 30.0


@dataclass
class _Received:
    envelopes: list[StepEnvelope] = field(default_factory=list)
    times: dict[str, datetime] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def consume(self, envelope: StepEnvelope) -> None:
        self.envelopes.append(envelope)
        self.times.setdefault(envelope.message_id, datetime.now(UTC))
        self.changed.set()

    async def wait_for(self, count: int, seconds: float) -> None:
        async def enough() -> None:
            while len(self.envelopes) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(enough(), seconds)

    def ids(self) -> list[str]:
        return sorted(e.message_id for e in self.envelopes)


def _envelopes(count: int, run_id: str | None = None) -> list[StepEnvelope]:
    run = run_id or uuid.uuid4().hex
    return [
        StepEnvelope(flow_id="contract", run_id=run, step_key=f"s{i}", step_type="T", seq=1)
        for i in range(count)
    ]


class DispatcherContract:
    """Behaviour every dispatcher must show. Needs a ``harness`` fixture (see module doc)."""

    @pytest.fixture
    async def received(self, harness: DispatcherHarness) -> AsyncIterator[_Received]:
        got = _Received()
        result = harness.start(got.consume)
        if asyncio.iscoroutine(result):
            await result
        yield got
        await harness.stop()

    async def _settle(self) -> None:
        # Give a dispatcher the chance to deliver something it should not (e.g. a duplicate).
        await asyncio.sleep(0.05)

    async def test_enqueue_delivers_each_envelope_once(
        self, harness: DispatcherHarness, received: _Received
    ) -> None:
        sent = _envelopes(3)
        for envelope in sent:
            await harness.dispatcher.enqueue([envelope])
        await received.wait_for(3, harness.timeout)
        await self._settle()
        assert received.ids() == sorted(e.message_id for e in sent)

    async def test_a_batch_keeps_every_envelope(
        self, harness: DispatcherHarness, received: _Received
    ) -> None:
        sent = _envelopes(100)
        await harness.dispatcher.enqueue(sent)
        await received.wait_for(100, harness.timeout)
        await self._settle()
        assert received.ids() == sorted(e.message_id for e in sent)
        by_id = {e.message_id: e for e in received.envelopes}
        assert all(by_id[e.message_id] == e for e in sent)

    async def test_empty_batch_is_harmless(
        self, harness: DispatcherHarness, received: _Received
    ) -> None:
        await harness.dispatcher.enqueue([])
        (one,) = _envelopes(1)
        await harness.dispatcher.enqueue([one])
        await received.wait_for(1, harness.timeout)
        assert received.ids() == [one.message_id]

    async def test_schedule_delivers_at_or_after_the_time(
        self, harness: DispatcherHarness, received: _Received
    ) -> None:
        (later,) = _envelopes(1)
        (now,) = _envelopes(1)
        # Far enough ahead that a transport's first call (opening links) cannot eat it up.
        at = datetime.now(UTC) + timedelta(seconds=2)
        await harness.dispatcher.schedule(later, at)
        await harness.dispatcher.enqueue([now])
        await received.wait_for(1, harness.timeout)
        assert received.ids() == [now.message_id]  # the scheduled one is not there yet
        await received.wait_for(2, harness.timeout)
        assert received.times[later.message_id] >= at

    async def test_schedule_in_the_past_delivers_promptly(
        self, harness: DispatcherHarness, received: _Received
    ) -> None:
        (envelope,) = _envelopes(1)
        await harness.dispatcher.schedule(envelope, datetime.now(UTC) - timedelta(seconds=5))
        await received.wait_for(1, harness.timeout)
        assert received.ids() == [envelope.message_id]

    async def test_many_concurrent_enqueues_lose_nothing(
        self, harness: DispatcherHarness, received: _Received
    ) -> None:
        batches = [_envelopes(5) for _ in range(40)]
        await asyncio.gather(*(harness.dispatcher.enqueue(batch) for batch in batches))
        await received.wait_for(200, harness.timeout)
        await self._settle()
        assert received.ids() == sorted(e.message_id for batch in batches for e in batch)
