"""Runs one handler attempt: inputs validation, sync/async call, timeout and cancellation.

A handler can fail its step, never the host: whatever it raises, ``SystemExit``,
``KeyboardInterrupt`` and an ``asyncio.CancelledError`` of its own included, becomes a failed
outcome. Only the cancellation of the calling task itself (the worker stopping) propagates, and
then the handler is cancelled too. A handler still running after its step ended (it ignored the
timeout or the cancellation) is left behind and listed in :attr:`HandlerExecutor.abandoned`, so
hosts can say so and exit anyway.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from floworch.engine.context import StepContext
from floworch.engine.handler_threads import HandlerThreads
from floworch.engine.handlers import Handler, StepResult
from floworch.engine.outcomes import HandlerResultKind
from floworch.engine.step_errors import ErrorInfo, ErrorType
from floworch.errors import StepError


@dataclass(frozen=True)
class HandlerOutcome:
    """What one attempt produced."""

    kind: HandlerResultKind
    output: Any = None
    error: ErrorInfo | None = None
    retryable: bool = True
    pending_delay: timedelta | None = None


def _to_json_value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _check_json(value: Any, step_key: str) -> Any:
    # Whether the value can be stored (strict JSON, size, depth) is decided by the engine for
    # every outcome in one place: floworch.engine.storable (OutputNotStorable).
    return _to_json_value(value)


@dataclass(frozen=True)
class AbandonedHandler:
    """A handler still running after its step ended (timed out, cancelled, worker stopping)."""

    run_id: str
    step_key: str
    step_type: str
    attempt: int
    why: str
    since: datetime
    in_thread: bool

    def __str__(self) -> str:
        where = "sync handler thread" if self.in_thread else "async handler"
        return (
            f"{where} {self.step_type!r} of step {self.step_key!r} (run {self.run_id}, attempt "
            f"{self.attempt}) still running since {self.why} at {self.since:%H:%M:%S}"
        )


def abandoned_line(left: Sequence[AbandonedHandler]) -> str:
    """The one log line a host writes when it stops with handlers that ignored cancellation."""
    shown = "; ".join(str(handler) for handler in left[:3])
    more = f"; and {len(left) - 3} more" if len(left) > 3 else ""
    return (
        f"abandoned {len(left)} handler(s) that ignored cancellation (fix the handler to "
        f"return on ctx.cancellation): {shown}{more}"
    )


_Watched = Future[Any] | asyncio.Future[Any]


class _Escaped(Exception):
    """Wraps a BaseException a handler raised, so it ends the handler's task like an error."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(repr(original))
        self.original = original


async def _guarded(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> Any:
    try:
        return await fn(*args)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we cancelled it: timeout, run cancelled, worker stopping
        raise _Escaped(exc) from exc  # the handler raised it on its own
    except Exception:
        raise
    except GeneratorExit as exc:
        if not _in_a_running_task():
            # The coroutine itself is being closed: a handler abandoned at exit is destroyed
            # with its loop. Wrapping it would print "Exception ignored in: ..." at exit.
            raise
        raise _Escaped(exc) from exc  # the handler raised it on its own
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, ...
        raise _Escaped(exc) from exc


def _in_a_running_task() -> bool:
    try:
        return asyncio.current_task() is not None
    except RuntimeError:  # no running event loop
        return False


class HandlerExecutor:
    """Runs handler attempts for one engine.

    Args:
        max_threads: sync handlers running at once (each on a daemon thread).
    """

    def __init__(self, *, max_threads: int = 32) -> None:
        self._threads = HandlerThreads(max_threads=max_threads)
        self._lock = threading.Lock()  # sync handlers finish on their own threads
        self._abandoned: dict[int, tuple[AbandonedHandler, _Watched]] = {}

    @property
    def abandoned(self) -> list[AbandonedHandler]:
        """Handlers still running after their step ended."""
        with self._lock:
            return [record for record, _ in self._abandoned.values()]

    async def wait_abandoned(self, grace: timedelta) -> list[AbandonedHandler]:
        """Waits up to ``grace`` for left-behind handlers to return; the ones still running."""
        with self._lock:
            watched = [w for _, w in self._abandoned.values()]
        waits = [asyncio.wrap_future(w) if isinstance(w, Future) else w for w in watched]
        if waits:
            await asyncio.wait(waits, timeout=grace.total_seconds())
        return self.abandoned

    async def run(
        self, handler: Handler, ctx: StepContext, inputs: Any, *, timeout: timedelta | None
    ) -> HandlerOutcome:
        """Calls the handler once and classifies the result. Never raises for anything the
        handler does; raises ``CancelledError`` only when the calling task is cancelled."""
        if handler.input_model is not None:
            try:
                inputs = handler.input_model.model_validate(inputs)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or '(inputs)'}: {err['msg']}"
                    for err in exc.errors()
                )
                message = f"invalid inputs for {handler.step_type!r}: {problems}"
                return HandlerOutcome(
                    HandlerResultKind.FAILED,
                    error=ErrorInfo(ErrorType.INPUT_VALIDATION_ERROR, message),
                    retryable=False,
                )
        args = (ctx, inputs) if handler.wants_context else (inputs,)
        thread_future: Future[Any] | None = None
        if handler.is_async:
            task: asyncio.Future[Any] = asyncio.ensure_future(_guarded(handler.fn, args))
        else:
            call = functools.partial(contextvars.copy_context().run, handler.fn, *args)
            thread_future = self._threads.submit(call)
            task = asyncio.wrap_future(thread_future)
        cancel_wait = ctx.cancellation.future()
        try:
            done, _ = await asyncio.wait(
                {task, cancel_wait},
                timeout=timeout.total_seconds() if timeout is not None else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except asyncio.CancelledError:
            # Our own task is cancelled (the worker is stopping): stop the handler, do not wait.
            ctx.cancellation.set("the worker is stopping")
            self._leave_behind(task, thread_future, ctx, "the worker stopped")
            raise
        finally:
            cancel_wait.cancel()
        if task not in done:
            if cancel_wait in done:
                reason = ctx.cancellation.reason or "cancelled"
                kind, message = HandlerResultKind.CANCELLED, f"step cancelled: {reason}"
                why = "its step was cancelled"
            else:
                ctx.cancellation.set("step timed out")
                kind = HandlerResultKind.TIMED_OUT
                message = f"step {ctx.step_key!r} exceeded its timeout of {timeout}"
                why = "its step timed out"
            # A sync handler keeps running in its thread; it sees ctx.cancellation and should stop.
            self._leave_behind(task, thread_future, ctx, why)
            timed_out = kind == HandlerResultKind.TIMED_OUT
            error_type = ErrorType.STEP_TIMEOUT if timed_out else ErrorType.STEP_CANCELLED
            return HandlerOutcome(kind, error=ErrorInfo(error_type, message))
        failure = _failure_of(task)
        if failure is not None:
            retryable = failure.retryable if isinstance(failure, StepError) else True
            return HandlerOutcome(
                HandlerResultKind.FAILED,
                error=ErrorInfo.from_exception(failure),
                retryable=retryable,
            )
        result = task.result()
        try:
            if isinstance(result, StepResult):
                output = _check_json(result.output, ctx.step_key)
                if result.pending_delay is not None:
                    return HandlerOutcome(
                        HandlerResultKind.PENDING,
                        output=output,
                        pending_delay=result.pending_delay,
                    )
                return HandlerOutcome(HandlerResultKind.SUCCEEDED, output=output)
            return HandlerOutcome(
                HandlerResultKind.SUCCEEDED, output=_check_json(result, ctx.step_key)
            )
        except StepError as err:
            return HandlerOutcome(
                HandlerResultKind.FAILED,
                error=ErrorInfo.from_exception(err, with_traceback=False),
                retryable=False,
            )

    def _leave_behind(
        self,
        task: asyncio.Future[Any],
        thread_future: Future[Any] | None,
        ctx: StepContext,
        why: str,
    ) -> None:
        """Cancels the handler and remembers it until it really returns."""
        task.cancel()
        watched: _Watched = thread_future or task
        if watched.done():
            return
        if thread_future is not None:
            self._threads.abandon(thread_future)
        key = id(watched)
        record = AbandonedHandler(
            run_id=ctx.run_id,
            step_key=ctx.step_key,
            step_type=ctx.step_type,
            attempt=ctx.attempt,
            why=why,
            since=datetime.now(UTC),
            in_thread=thread_future is not None,
        )
        with self._lock:
            self._abandoned[key] = (record, watched)

        def forget(_: object) -> None:
            with self._lock:
                self._abandoned.pop(key, None)

        if thread_future is not None:
            thread_future.add_done_callback(forget)
        else:
            task.add_done_callback(forget)


def _failure_of(task: asyncio.Future[Any]) -> BaseException | None:
    if task.cancelled():  # a sync handler's future cancelled before it ran; not ours to end
        return asyncio.CancelledError("the handler was cancelled before it ran")
    failure = task.exception()
    if isinstance(failure, _Escaped):
        return failure.original
    return failure
