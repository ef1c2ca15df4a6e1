"""Daemon threads for sync step handlers.

asyncio's default executor uses ordinary threads, which the interpreter joins at exit: one sync
handler that never returns (it ignores ``ctx.cancellation`` past its timeout) would keep
``floworch run`` alive for ever after its run ended. These threads are daemons, so the process
can exit and leave such a handler behind (the executor says so in one line).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

_IDLE_SECONDS = 30.0
"""A thread with nothing to do for this long exits (the pool shrinks back after a burst)."""


@dataclass(eq=False)
class _Job:
    fn: Callable[[], Any]
    future: Future[Any] = field(default_factory=Future)
    abandoned: bool = False


class HandlerThreads:
    """A pool of daemon threads that grows on demand up to ``max_threads``.

    Args:
        max_threads: handlers running at once; more calls wait their turn. A thread held by an
            abandoned handler (see :meth:`abandon`) does not count.
        name: thread name prefix.
    """

    def __init__(self, *, max_threads: int = 32, name: str = "floworch-handler") -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self._limit = max_threads
        self._name = name
        self._work: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._threads = 0
        self._idle = 0  # threads waiting for work that no submitted job has reserved yet
        self._backlog = 0  # jobs queued with no thread reserved for them (the pool was full)
        self._started = 0

    @property
    def threads(self) -> int:
        """Live pool threads (abandoned ones included)."""
        return self._threads

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Runs ``fn`` on a pool thread; the future gets its result or exception (any
        ``BaseException``: a ``SystemExit`` raised by a handler stays in its future)."""
        job = _Job(fn)
        with self._lock:
            self._jobs[id(job.future)] = job
            spawn = False
            if self._idle > 0:
                self._idle -= 1  # that waiting thread is this job's
            elif self._threads < self._limit:
                self._threads += 1
                self._started += 1
                spawn = True
            else:
                self._backlog += 1
            number = self._started
        self._work.put(job)
        if spawn:
            threading.Thread(target=self._serve, name=f"{self._name}-{number}", daemon=True).start()
        return job.future

    def abandon(self, future: Future[Any]) -> None:
        """Gives up on a job still running: another thread may take its thread's place, and
        that thread exits once the job returns. Nothing happens for a finished job."""
        with self._lock:
            job = self._jobs.get(id(future))
            if job is None or job.abandoned or future.done():
                return
            job.abandoned = True
            self._limit += 1

    def _serve(self) -> None:
        while True:
            try:
                job = self._work.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody reserved this thread: leave
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            if job.future.set_running_or_notify_cancel():
                try:
                    result = job.fn()
                except BaseException as exc:  # a handler's SystemExit must not end the thread
                    job.future.set_exception(exc)
                else:
                    job.future.set_result(result)
            with self._lock:
                self._jobs.pop(id(job.future), None)
                if job.abandoned:
                    self._limit -= 1
                    if self._backlog == 0 or self._threads > self._limit:
                        self._threads -= 1
                        return
                if self._backlog > 0:
                    self._backlog -= 1  # this thread takes a waiting job next
                else:
                    self._idle += 1
