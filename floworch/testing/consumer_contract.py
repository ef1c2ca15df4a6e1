"""The shared contract suite of the step consumer: every runtime must pass it.

A runtime (the in-process one, the Service Bus worker, later the Functions host) hands received
step messages to :class:`floworch.engine.consumer.StepConsumer` and maps its verdicts onto its
transport. This suite checks the result end to end: duplicates run a handler once per attempt, a
crashed worker's message is redelivered and its step finished, a store outage is retried until
the store is back, malformed bodies and unknown flows are dead-lettered at once with their
reason, a bug that repeats is dead-lettered without holding up healthy runs, and an outcome the
store cannot keep fails its step once.

Subclass :class:`ConsumerContract` and provide an async ``environment`` fixture yielding a
:class:`ConsumerEnvironment` (one fresh store and transport per test)::

    class TestMyRuntime(ConsumerContract):
        @pytest.fixture
        async def environment(self):
            async with MyEnvironment() as env:
                yield env

Tests wait on state with generous timeouts and never assert how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import pytest

from floworch.engine.context import StepContext
from floworch.engine.engine import Engine
from floworch.engine.envelope import StepEnvelope
from floworch.engine.handlers import HandlerRegistry
from floworch.engine.ports import Dispatcher
from floworch.model import FlowManifest, load_manifest
from floworch.model.statuses import RunStatus
from floworch.testing.faulty_store import StoreFaults

DispatcherWrapper = Callable[[Dispatcher], Dispatcher]


@dataclass(frozen=True)
class DeadLettered:
    """A message a runtime dead-lettered."""

    message_id: str
    reason: str
    description: str


class RuntimeUnderTest(Protocol):
    """One started runtime: an engine whose step messages travel through the runtime."""

    @property
    def engine(self) -> Engine:
        """The engine (trigger runs and read state through it)."""

    @property
    def retried(self) -> int:
        """How many times step messages were handed over again after a ``Retry`` verdict."""

    async def send_raw(self, body: bytes, *, route_flow_id: str, message_id: str) -> None:
        """Delivers a raw step message body (to the subscription of ``route_flow_id``)."""

    async def dead_letters(self) -> list[DeadLettered]:
        """Every step message dead-lettered so far."""

    async def crash(self) -> None:
        """Stops at once: steps in flight are abandoned, nothing is finished."""


class ConsumerEnvironment(Protocol):
    """One fresh store and transport; runtimes started from it share both.

    Attributes:
        faults: faults of the store the runtimes use (``poisoned_runs``).
        timeout: seconds the suite waits for anything before failing.
    """

    faults: StoreFaults
    timeout: float

    def runtime(
        self,
        flows: Sequence[FlowManifest],
        handlers: HandlerRegistry,
        *,
        dispatcher: DispatcherWrapper | None = None,
    ) -> AbstractAsyncContextManager[RuntimeUnderTest]:
        """Starts a runtime (receiving by the time it is entered); ``dispatcher`` wraps what the
        engine sends through."""

    async def set_store_down(self, down: bool) -> None:
        """Makes the store unreachable (a real outage where the store allows) or reachable."""


# -- transports' helpers ----------------------------------------------------------------------


class Duplicating:
    """Sends every step message twice, as a redelivering transport would."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        await self.inner.enqueue(envelopes)
        await self.inner.enqueue(envelopes)

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        await self.inner.schedule(envelope, at)
        await self.inner.schedule(envelope, at)


class Gate:
    """Holds every step message sent while closed and sends them when opened, so a test can
    line up a store outage (or a poisoned run) before the messages arrive."""

    def __init__(self) -> None:
        self.closed = True
        self.inner: Dispatcher | None = None
        self._held: list[tuple[StepEnvelope, datetime | None]] = []

    def wrap(self, inner: Dispatcher) -> Dispatcher:
        self.inner = inner
        return self

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        if self.closed:
            self._held.extend((e, None) for e in envelopes)
            return
        assert self.inner is not None
        await self.inner.enqueue(envelopes)

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        if self.closed:
            self._held.append((envelope, at))
            return
        assert self.inner is not None
        await self.inner.schedule(envelope, at)

    @property
    def held(self) -> int:
        return len(self._held)

    async def open(self) -> None:
        assert self.inner is not None
        self.closed = False
        held, self._held = self._held, []
        now = [e for e, at in held if at is None]
        if now:
            await self.inner.enqueue(now)
        for envelope, at in held:
            if at is not None:
                await self.inner.schedule(envelope, at)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Polls ``check`` until it holds; fails the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def _flow(flow_id: str, steps: dict[str, Any]) -> FlowManifest:
    return load_manifest({"id": flow_id, "version": "1", "steps": steps})


def _envelope_body(flow_id: str, **changes: Any) -> bytes:
    body = StepEnvelope(flow_id, uuid.uuid4().hex, "a", "Echo", 1).to_dict() | changes
    return json.dumps(body).encode()


class ConsumerContract:
    """Behaviour every runtime's step consumption must show (see the module docstring)."""

    async def _dead_letters(
        self, runtime: RuntimeUnderTest, env: ConsumerEnvironment, ids: set[str]
    ) -> dict[str, DeadLettered]:
        found: dict[str, DeadLettered] = {}

        async def all_there() -> bool:
            for letter in await runtime.dead_letters():
                found.setdefault(letter.message_id, letter)
            return ids <= set(found)

        await eventually(all_there, env.timeout, f"dead letters {sorted(ids)}")
        return found

    async def test_duplicates_run_each_handler_once_per_attempt(
        self, environment: ConsumerEnvironment
    ) -> None:
        reg = HandlerRegistry()
        calls: Counter[tuple[str, int]] = Counter()

        @reg.handler("Count")
        async def count(ctx: StepContext, inputs: Any) -> Any:
            calls[(ctx.step_key, ctx.attempt)] += 1
            if ctx.step_key == "retried" and ctx.attempt == 1:
                raise ConnectionError("once")
            return ctx.step_key

        flow = _flow(
            "dups",
            {
                "a": {"type": "Count"},
                "b": {"type": "Count", "runAfter": {"a": ["Succeeded"]}},
                "c": {"type": "Count", "runAfter": {"a": ["Succeeded"]}},
                "retried": {
                    "type": "Count",
                    "retry": {"maxAttempts": 2, "initialIntervalSeconds": 0.1},
                    "runAfter": {"b": ["Succeeded"], "c": ["Succeeded"]},
                },
            },
        )
        async with environment.runtime([flow], reg, dispatcher=Duplicating) as runtime:
            started = await runtime.engine.trigger("dups")
            assert started.run_id is not None
            run = await runtime.engine.wait_for_run(started.run_id, timeout=environment.timeout)
            dead = await runtime.dead_letters()
        assert run.status == RunStatus.SUCCEEDED, run.to_dict()
        assert calls == Counter(
            {("a", 1): 1, ("b", 1): 1, ("c", 1): 1, ("retried", 1): 1, ("retried", 2): 1}
        )
        assert dead == []

    async def test_a_crashed_workers_step_is_redelivered_and_finished(
        self, environment: ConsumerEnvironment
    ) -> None:
        reg = HandlerRegistry()
        calls: Counter[str] = Counter()
        finished: Counter[str] = Counter()
        first_call = asyncio.Event()

        @reg.handler("Work")
        async def work(ctx: StepContext, inputs: Any) -> Any:
            calls[ctx.step_key] += 1
            if ctx.step_key == "slow" and calls["slow"] == 1:
                first_call.set()
                await asyncio.Event().wait()  # the worker crashes while this runs
            finished[ctx.step_key] += 1
            return ctx.step_key

        flow = _flow(
            "crash",
            {
                "first": {"type": "Work"},
                "slow": {"type": "Work", "runAfter": {"first": ["Succeeded"]}},
                "after": {"type": "Work", "runAfter": {"slow": ["Succeeded"]}},
            },
        )
        async with environment.runtime([flow], reg) as doomed:
            started = await doomed.engine.trigger("crash")
            run_id = started.run_id
            assert run_id is not None
            await asyncio.wait_for(first_call.wait(), environment.timeout)
            await doomed.crash()
        async with environment.runtime([flow], reg) as survivor:
            run = await survivor.engine.wait_for_run(run_id, timeout=environment.timeout)
        assert run.status == RunStatus.SUCCEEDED, run.to_dict()
        assert finished == Counter({"first": 1, "slow": 1, "after": 1})
        assert calls["slow"] == 2  # once in the crashed worker, once after the take-over
        assert run.steps["slow"].status == "Succeeded"

    async def test_a_store_outage_is_retried_until_the_store_is_back(
        self, environment: ConsumerEnvironment
    ) -> None:
        reg = HandlerRegistry()
        calls: Counter[str] = Counter()

        @reg.handler("Work")
        async def work(ctx: StepContext, inputs: Any) -> Any:
            calls[ctx.step_key] += 1
            return ctx.step_key

        flow = _flow(
            "outage",
            {"a": {"type": "Work"}, "b": {"type": "Work", "runAfter": {"a": ["Succeeded"]}}},
        )
        gate = Gate()
        async with environment.runtime([flow], reg, dispatcher=gate.wrap) as runtime:
            started = await runtime.engine.trigger("outage")
            assert started.run_id is not None and gate.held == 1
            await environment.set_store_down(True)
            try:
                await gate.open()  # the first step's message arrives while the store is down

                async def retried_twice() -> bool:
                    return runtime.retried >= 2

                await eventually(retried_twice, environment.timeout, "the message to be retried")
            finally:
                await environment.set_store_down(False)
            run = await runtime.engine.wait_for_run(started.run_id, timeout=environment.timeout)
            dead = await runtime.dead_letters()
        assert run.status == RunStatus.SUCCEEDED, run.to_dict()
        assert calls == Counter({"a": 1, "b": 1})
        assert dead == []

    async def test_malformed_bodies_are_dead_lettered_at_once_with_their_reason(
        self, environment: ConsumerEnvironment
    ) -> None:
        reg = HandlerRegistry()

        @reg.handler("Echo")
        async def echo(inputs: Any) -> Any:
            return inputs

        flow = _flow("poison", {"a": {"type": "Echo", "inputs": 1}})
        bodies = {
            "not-json": b"not json {",
            "not-utf8": b"\xff\xfe\x00{",
            "version": _envelope_body("poison", v=99),
            "missing": json.dumps({"v": 1, "flowId": "poison"}).encode(),
            "trace": _envelope_body("poison", traceContext="not an object"),
        }
        async with environment.runtime([flow], reg) as runtime:
            for mid, body in bodies.items():
                await runtime.send_raw(body, route_flow_id="poison", message_id=mid)
            started = await runtime.engine.trigger("poison")
            assert started.run_id is not None
            run = await runtime.engine.wait_for_run(started.run_id, timeout=environment.timeout)
            dead = await self._dead_letters(runtime, environment, set(bodies))
            retried = runtime.retried
        assert run.status == RunStatus.SUCCEEDED
        assert {mid: d.reason for mid, d in dead.items()} == dict.fromkeys(
            bodies, "EnvelopeInvalid"
        )
        assert "not JSON" in dead["not-json"].description
        assert "version 99" in dead["version"].description
        assert "runId" in dead["missing"].description
        assert retried == 0  # poison is never retried

    async def test_an_unknown_flow_is_dead_lettered_naming_the_flows_this_worker_runs(
        self, environment: ConsumerEnvironment
    ) -> None:
        reg = HandlerRegistry()

        @reg.handler("Echo")
        async def echo(inputs: Any) -> Any:
            return inputs

        flow = _flow("known", {"a": {"type": "Echo"}})
        async with environment.runtime([flow], reg) as runtime:
            await runtime.send_raw(
                _envelope_body("ghost"), route_flow_id="known", message_id="ghost-1"
            )
            dead = await self._dead_letters(runtime, environment, {"ghost-1"})
            retried = runtime.retried
        assert dead["ghost-1"].reason == "UnknownFlow"
        assert "ghost" in dead["ghost-1"].description and "known" in dead["ghost-1"].description
        assert retried == 0

    async def test_a_bug_that_repeats_is_dead_lettered_and_healthy_runs_go_on(
        self, environment: ConsumerEnvironment
    ) -> None:
        reg = HandlerRegistry()
        calls: Counter[str] = Counter()

        @reg.handler("Work")
        async def work(ctx: StepContext, inputs: Any) -> Any:
            calls[ctx.run_id] += 1
            return "ok"

        flow = _flow("buggy", {"a": {"type": "Work"}})
        gate = Gate()
        async with environment.runtime([flow], reg, dispatcher=gate.wrap) as runtime:
            bad = await runtime.engine.trigger("buggy")
            good = await runtime.engine.trigger("buggy")
            assert bad.run_id is not None and good.run_id is not None
            environment.faults.poisoned_runs.add(bad.run_id)
            await gate.open()
            run = await runtime.engine.wait_for_run(good.run_id, timeout=environment.timeout)
            message_id = f"{bad.run_id}:a:1"
            dead = await self._dead_letters(runtime, environment, {message_id})
        assert run.status == RunStatus.SUCCEEDED
        assert calls == Counter({good.run_id: 1})
        assert dead[message_id].reason == "UnexpectedError"
        assert "RuntimeError" in dead[message_id].description
        assert "failed 3 times" in dead[message_id].description

    async def test_an_unstorable_output_fails_its_step_once(
        self, environment: ConsumerEnvironment
    ) -> None:
        reg = HandlerRegistry()
        calls: Counter[str] = Counter()

        @reg.handler("Bad")
        async def bad(ctx: StepContext, inputs: Any) -> Any:
            calls[ctx.step_key] += 1
            return {"value": float("nan")}

        flow = _flow("unstorable", {"a": {"type": "Bad"}})
        async with environment.runtime([flow], reg) as runtime:
            started = await runtime.engine.trigger("unstorable")
            assert started.run_id is not None
            run = await runtime.engine.wait_for_run(
                started.run_id, timeout=min(environment.timeout, 10.0)
            )
        assert run.status == RunStatus.FAILED, run.to_dict()
        assert run.steps["a"].status == "Failed"
        assert calls == Counter({"a": 1})
