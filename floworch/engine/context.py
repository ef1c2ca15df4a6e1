"""What a handler sees: the step context, with cancellation that reaches sync and async code."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Cancellation:
    """A cancellation signal a handler can check (sync or async) or await.

    Set when the run is cancelled, the step times out or the worker shuts down. Sync handlers
    run in a thread and should poll :attr:`is_set` (or ``wait(timeout)``) in long loops.
    """

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[str | None]]] = []
        self._lock = threading.Lock()
        self.reason: str | None = None

    @property
    def is_set(self) -> bool:
        """Whether cancellation was requested."""
        return self._flag.is_set()

    def set(self, reason: str) -> None:
        """Requests cancellation (idempotent; the first reason is kept)."""
        with self._lock:
            if self._flag.is_set():
                return
            self.reason = reason
            self._flag.set()
            waiters = list(self._waiters)
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future, reason)

    def wait_sync(self, timeout: float | None = None) -> bool:
        """Blocks a sync handler until cancelled or ``timeout`` passes; True when cancelled."""
        return self._flag.wait(timeout)

    async def wait(self) -> str | None:
        """Waits until cancellation is requested; returns the reason."""
        return await self.future()

    def future(self) -> asyncio.Future[str | None]:
        """A future of the running loop that resolves with the reason once cancellation is
        requested (cheaper than a task around :meth:`wait`; cancel it when no longer needed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        with self._lock:
            if self._flag.is_set():
                future.set_result(self.reason)
                return future
            self._waiters.append((loop, future))
        return future


def _resolve(future: asyncio.Future[str | None], reason: str | None) -> None:
    if not future.done():
        future.set_result(reason)


@dataclass
class StepContext:
    """Everything a handler gets besides its inputs.

    Attributes:
        run_id: the run.
        flow_id: the flow.
        step_key: the step instance (``each.3.charge`` inside a ForEach).
        step_type: the handler name.
        attempt: 1 for the first try, growing with each retry.
        idempotency_key: the same for every attempt of this step in this run (automatic and
            manual retries, polls, redeliveries, a take-over after a lost lease); another run,
            a rerun included, gets another. Pass it to an external system (a payment provider)
            so that a retried call is recognised and not carried out twice.
        attempt_key: unique to this dispatch of the step: each retry (automatic or manual)
            and each poll gets a new one, a redelivered message keeps it (it is the step
            message's id, ``<runId>:<stepKey>:<seq>``). Use it where every attempt must be a
            new operation.
        trigger_body: the body the run was started with.
        trigger_headers: the trigger headers.
        logger: a logger whose records carry the run and step.
        cancellation: set when the run is cancelled or the step times out.
        item / index: the current element inside a ForEach body.
    """

    run_id: str
    flow_id: str
    step_key: str
    step_type: str
    attempt: int
    idempotency_key: str
    attempt_key: str
    trigger_body: Any
    trigger_headers: Mapping[str, str]
    logger: logging.LoggerAdapter[logging.Logger]
    cancellation: Cancellation = field(default_factory=Cancellation)
    item: Any = None
    index: int | None = None
    poll_count: int = 0

    @property
    def cancelled(self) -> bool:
        """Shorthand for ``cancellation.is_set``."""
        return self.cancellation.is_set
