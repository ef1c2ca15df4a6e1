"""Running a host's main coroutine in a command-line process.

``asyncio.run`` cancels every task left when the main coroutine returns and then waits for all
of them: one step handler that ignores cancellation would keep ``floworch run`` alive for ever
after its run ended. :func:`run_main` waits a short grace period instead and then leaves such
tasks behind (the embedded host has already said, in one line, which handler it abandoned).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Coroutine
from datetime import timedelta
from types import FrameType
from typing import Any, TypeVar

log = logging.getLogger("floworch.hosting.runner")

T = TypeVar("T")


def run_main(main: Coroutine[Any, Any, T], *, abandon_after: timedelta = timedelta(seconds=1)) -> T:
    """Runs ``main`` on a new event loop, as ``asyncio.run`` does (Ctrl-C cancels it and raises
    ``KeyboardInterrupt``), except that tasks still running once it returned are cancelled and
    abandoned after ``abandon_after`` if they ignore the cancellation."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(main)
    interrupts = 0
    previous: Any = None
    install = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and not task.done():
            loop.call_soon_threadsafe(task.cancel)
            return
        raise KeyboardInterrupt()

    if install:
        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if interrupts:
                raise KeyboardInterrupt() from None
            raise
    finally:
        if install:
            signal.signal(signal.SIGINT, previous)
        try:
            _finish(loop, abandon_after.total_seconds())
        finally:
            loop.close()


def _finish(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for leftover in leftovers:
        leftover.cancel()
    if leftovers:
        _, stuck = loop.run_until_complete(asyncio.wait(leftovers, timeout=grace))
        for done in set(leftovers) - stuck:
            if not done.cancelled():
                done.exception()  # retrieved: no "exception was never retrieved" noise
        if stuck:
            log.debug("leaving %d task(s) that ignored cancellation", len(stuck))
            # Closing the loop destroys them; that is the point, so do not report it.
            loop.set_exception_handler(_quiet_about_pending_tasks)
    loop.run_until_complete(loop.shutdown_asyncgens())


def _quiet_about_pending_tasks(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if str(context.get("message", "")).startswith("Task was destroyed but it is pending"):
        return
    loop.default_exception_handler(context)
