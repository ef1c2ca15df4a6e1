"""The embedded host hands step messages over in memory, so a dispatch counts as sent when its
transaction commits: no "mark sent" round trip per step (issue 15), and nothing is left for the
reconciler to re-send. A wrapped dispatcher (which may fail a send) keeps marking after sending."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest

from floworch.engine.handlers import HandlerRegistry
from floworch.engine.ports import Dispatcher
from floworch.hosting.embedded import EmbeddedHost
from floworch.model import load_manifest
from floworch.storage.memory import MemoryStore

from .support import flow

CHAIN = load_manifest(
    flow(
        {
            "a": {"type": "Noop"},
            "b": {"type": "Noop", "runAfter": {"a": ["Succeeded"]}},
            "c": {"type": "Noop", "runAfter": {"b": ["Succeeded"]}},
        }
    )
)


def _registry() -> HandlerRegistry:
    reg = HandlerRegistry()
    reg.register("Noop", lambda inputs: None)
    return reg


class CountingMarks(MemoryStore):
    """The memory store, counting mark_dispatched calls."""

    def __init__(self) -> None:
        super().__init__()
        self.marked: list[tuple[str, str, int]] = []

    async def mark_dispatched(
        self, keys: Sequence[tuple[str, str, int]], sent_at: datetime
    ) -> None:
        self.marked.extend(keys)
        await super().mark_dispatched(keys, sent_at)


class Passing:
    """A dispatcher wrapper that only passes messages on (as tests' faulty transports do)."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner

    async def enqueue(self, envelopes: Sequence[Any]) -> None:
        await self.inner.enqueue(envelopes)

    async def schedule(self, envelope: Any, at: datetime) -> None:
        await self.inner.schedule(envelope, at)


@pytest.mark.parametrize("wrapped", [False, True], ids=["in-memory", "wrapped-dispatcher"])
async def test_dispatches_are_sent_at_commit_only_for_the_in_memory_hand_off(
    wrapped: bool,
) -> None:
    store = CountingMarks()
    host = EmbeddedHost(
        store=store,
        flows=[CHAIN],
        handlers=_registry(),
        dispatcher=Passing if wrapped else None,
    )
    async with host:
        started = await host.engine.trigger("f")
        assert started.run_id is not None
        run = await host.engine.wait_for_run(started.run_id, timeout=30)
        report = await host.engine.reconcile()
    assert run.status == "Succeeded"
    assert report.resent == 0 and report.redispatched == 0
    marked = sorted(key for _, key, _ in store.marked)
    assert marked == (["a", "b", "c"] if wrapped else [])
