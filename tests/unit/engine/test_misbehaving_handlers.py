"""A handler can fail its step, never the host: BaseExceptions it raises, a CancelledError of
its own, and handlers that ignore their timeout or cancellation (issue 16, items 4 and 7)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.embedded import EmbeddedHost, EmbeddedSettings
from floworch.model import load_manifest
from floworch.storage.memory import MemoryStore
from floworch.testing.host import FlowTestHost

from .support import flow


def _raising(exc: BaseException, *, is_async: bool) -> HandlerRegistry:
    reg = HandlerRegistry()
    if is_async:

        @reg.handler("Bad")
        async def bad_async(inputs: Any) -> Any:
            await asyncio.sleep(0)
            raise exc

    else:

        @reg.handler("Bad")
        def bad_sync(inputs: Any) -> Any:
            raise exc

    @reg.handler("Good")
    async def good(inputs: Any) -> Any:
        return "fine"

    return reg


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
@pytest.mark.parametrize(
    "exc",
    [SystemExit(3), KeyboardInterrupt(), asyncio.CancelledError(), GeneratorExit()],
    ids=lambda e: type(e).__name__,
)
async def test_a_base_exception_from_a_handler_fails_its_step_and_the_host_goes_on(
    exc: BaseException, is_async: bool
) -> None:
    manifests = [
        flow({"a": {"type": "Bad"}}, flow_id="bad"),
        flow({"a": {"type": "Good"}}, flow_id="good"),
    ]
    # One worker: had the exception killed it, the second run would never start.
    async with FlowTestHost(manifests, _raising(exc, is_async=is_async), concurrency=1) as host:
        bad = await host.wait(await host.trigger("bad"))
        good = await host.wait(await host.trigger("good"))
    assert bad.status == "Failed"
    error = bad.steps["a"].error
    assert error is not None and error["type"] == type(exc).__name__
    assert good.status == "Succeeded"


async def test_stopping_the_host_cancels_a_running_async_handler() -> None:
    reg = HandlerRegistry()
    started, cleaned_up = asyncio.Event(), asyncio.Event()

    @reg.handler("Wait")
    async def wait(inputs: Any) -> Any:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.set()

    host = FlowTestHost([flow({"a": {"type": "Wait"}})], reg)
    async with host:
        await host.engine.trigger("f")
        await asyncio.wait_for(started.wait(), 10)
    assert cleaned_up.is_set()
    assert host.engine.core.executor.abandoned == []


def _stubborn_registry(release: threading.Event) -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler("StubbornAsync")
    async def stubborn_async(inputs: Any) -> Any:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # ignores it on purpose
                await asyncio.sleep(0.01)
        return "late"

    @reg.handler("StubbornSync")
    def stubborn_sync(inputs: Any) -> Any:
        while not release.is_set():  # never looks at ctx.cancellation
            time.sleep(0.01)
        return "late"

    return reg


@pytest.mark.parametrize("step_type", ["StubbornAsync", "StubbornSync"])
async def test_a_handler_that_ignores_its_timeout_is_abandoned_with_one_line(
    step_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    manifest = load_manifest(flow({"a": {"type": step_type, "timeoutSeconds": 0.2}}))
    host = EmbeddedHost(
        store=MemoryStore(),
        flows=[manifest],
        handlers=_stubborn_registry(release),
        settings=EmbeddedSettings(cron=False, handler_grace=timedelta(milliseconds=200)),
    )
    try:
        async with host:
            started = await host.engine.trigger("f")
            assert started.run_id is not None
            run = await host.engine.wait_for_run(started.run_id, timeout=30)
            assert [h.step_key for h in host.engine.core.executor.abandoned] == ["a"]
        lines = [r.getMessage() for r in caplog.records if r.name == "floworch.hosting.embedded"]
    finally:
        release.set()
    assert run.status == "Failed" and run.steps["a"].status == "TimedOut"
    assert len(lines) == 1, lines
    assert "abandoned 1 handler(s) that ignored cancellation" in lines[0]
    assert step_type in lines[0] and "'a'" in lines[0]
    for _ in range(500):  # once released, the handler returns and is forgotten
        if not host.engine.core.executor.abandoned:
            break
        await asyncio.sleep(0.01)
    assert host.engine.core.executor.abandoned == []
