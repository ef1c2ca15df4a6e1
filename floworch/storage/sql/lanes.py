"""Lanes: a thread per database connection, for drivers whose calls block.

A lane runs the functions submitted to it one at a time, in submission order, on its own thread,
and hands each result back to the submitting coroutine. A driver call blocks only the lane's
thread (the driver releases the GIL while it waits on the network), never the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class Lane:
    """A thread that runs submitted functions one at a time, in submission order."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[], T]) -> T:
        """Runs ``fn`` on the lane's thread and returns its result (or raises its error).

        A caller cancelled while waiting does not stop ``fn``; whatever it submits next runs
        after ``fn`` finished, so a rollback submitted on cancellation still comes in order.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, future, loop))
        return await future

    def stop(self) -> None:
        self._jobs.put(None)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, future, loop = job
            try:
                result = fn()
            except BaseException as exc:
                _settle(loop, future, None, exc)
            else:
                _settle(loop, future, result, None)


def _settle(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    def apply() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    # RuntimeError: the loop closed while the job ran, so nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(apply)


async def shielded(step: Awaitable[None]) -> None:
    """Runs a clean-up step to its end even when the caller is being cancelled."""
    task = asyncio.ensure_future(step)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
