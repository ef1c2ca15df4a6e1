"""Runs one handler attempt: inputs validation, sync/async call, timeout and cancellation."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from floworch.engine.context import StepContext
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
    value = _to_json_value(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise StepError(
            f"step {step_key!r} returned a value that is not JSON-serialisable: {exc}",
            retryable=False,
        ) from exc
    return value


async def run_handler(
    handler: Handler,
    ctx: StepContext,
    inputs: Any,
    *,
    timeout: timedelta | None,
) -> HandlerOutcome:
    """Calls the handler once and classifies the result. Never raises for handler errors."""
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
    if handler.is_async:
        task: asyncio.Future[Any] = asyncio.ensure_future(handler.fn(*args))
    else:
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, handler.fn, *args)
        task = loop.run_in_executor(None, call)
    cancel_wait = ctx.cancellation.future()
    try:
        done, _ = await asyncio.wait(
            {task, cancel_wait},
            timeout=timeout.total_seconds() if timeout is not None else None,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        cancel_wait.cancel()
    if task not in done:
        if cancel_wait in done:
            reason = ctx.cancellation.reason or "cancelled"
            kind, message = HandlerResultKind.CANCELLED, f"step cancelled: {reason}"
        else:
            ctx.cancellation.set("step timed out")
            kind = HandlerResultKind.TIMED_OUT
            message = f"step {ctx.step_key!r} exceeded its timeout of {timeout}"
        task.cancel()
        # A sync handler keeps running in its thread; it sees ctx.cancellation and should stop.
        timed_out = kind == HandlerResultKind.TIMED_OUT
        error_type = ErrorType.STEP_TIMEOUT if timed_out else ErrorType.STEP_CANCELLED
        return HandlerOutcome(kind, error=ErrorInfo(error_type, message))
    failure = task.exception()
    if failure is not None:
        retryable = failure.retryable if isinstance(failure, StepError) else True
        return HandlerOutcome(
            HandlerResultKind.FAILED, error=ErrorInfo.from_exception(failure), retryable=retryable
        )
    result = task.result()
    try:
        if isinstance(result, StepResult):
            output = _check_json(result.output, ctx.step_key)
            if result.pending_delay is not None:
                return HandlerOutcome(
                    HandlerResultKind.PENDING, output=output, pending_delay=result.pending_delay
                )
            return HandlerOutcome(HandlerResultKind.SUCCEEDED, output=output)
        return HandlerOutcome(HandlerResultKind.SUCCEEDED, output=_check_json(result, ctx.step_key))
    except StepError as err:
        return HandlerOutcome(
            HandlerResultKind.FAILED,
            error=ErrorInfo.from_exception(err, with_traceback=False),
            retryable=False,
        )
