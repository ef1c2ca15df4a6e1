"""Step handlers: the registry, the ``@handler`` decorator and what a handler may return."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, get_type_hints

from pydantic import BaseModel

from floworch.errors import HandlerNotFoundError

HandlerFn = Callable[..., Any]
F = TypeVar("F", bound=HandlerFn)


@dataclass(frozen=True)
class StepResult:
    """What a handler returns to control its step explicitly.

    Returning a plain JSON-serialisable value means "succeeded with this output".
    ``StepResult.pending(delay=...)`` parks the step and calls the handler again after the delay
    (polling); ``output`` is kept as the step's latest output meanwhile.
    """

    output: Any = None
    pending_delay: timedelta | None = None

    @classmethod
    def succeeded(cls, output: Any = None) -> StepResult:
        """The step succeeded with ``output``."""
        return cls(output=output)

    @classmethod
    def pending(cls, *, delay: timedelta, output: Any = None) -> StepResult:
        """The step is not done yet: call the handler again after ``delay``."""
        if delay < timedelta(0):
            raise ValueError("a pending delay cannot be negative")
        return cls(output=output, pending_delay=delay)

    @property
    def is_pending(self) -> bool:
        """Whether the handler asked to be called again."""
        return self.pending_delay is not None


@dataclass(frozen=True)
class Handler:
    """A registered handler: the function and how to call it."""

    step_type: str
    fn: HandlerFn
    is_async: bool
    wants_context: bool
    input_model: type[BaseModel] | None


def _describe(step_type: str, fn: HandlerFn) -> Handler:
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not 1 <= len(positional) <= 2:
        raise TypeError(
            f"handler for {step_type!r} must take (ctx, inputs) or (inputs); "
            f"{fn.__qualname__} takes {len(positional)} positional parameters"
        )
    inputs_param = positional[-1]
    model: type[BaseModel] | None = None
    try:
        hints = get_type_hints(fn)
    except Exception:
        hints = {}
    hinted = hints.get(inputs_param.name)
    if isinstance(hinted, type) and issubclass(hinted, BaseModel):
        model = hinted
    return Handler(
        step_type=step_type,
        fn=fn,
        is_async=inspect.iscoroutinefunction(fn),
        wants_context=len(positional) == 2,
        input_model=model,
    )


class HandlerRegistry:
    """Maps step types to handler functions. Pass one to the engine; ``default_registry`` is the
    one that the module-level :func:`handler` decorator fills, for convenience."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, step_type: str, fn: HandlerFn) -> Handler:
        """Registers ``fn`` for ``step_type``; registering the same function again is harmless.

        Raises:
            ValueError: another function is already registered for that type.
        """
        existing = self._handlers.get(step_type)
        if existing is not None and existing.fn is not fn:
            same_name = getattr(existing.fn, "__qualname__", None) == getattr(
                fn, "__qualname__", ""
            )
            same_module = getattr(existing.fn, "__module__", None) == getattr(fn, "__module__", "")
            if not (same_name and same_module):
                raise ValueError(
                    f"step type {step_type!r} already has a handler "
                    f"({existing.fn.__module__}.{existing.fn.__qualname__})"
                )
        described = _describe(step_type, fn)
        self._handlers[step_type] = described
        return described

    def handler(self, step_type: str) -> Callable[[F], F]:
        """Decorator form of :meth:`register`."""

        def decorate(fn: F) -> F:
            self.register(step_type, fn)
            return fn

        return decorate

    def get(self, step_type: str) -> Handler:
        """The handler of a step type.

        Raises:
            HandlerNotFoundError: nothing is registered for it.
        """
        found = self._handlers.get(step_type)
        if found is None:
            raise HandlerNotFoundError(step_type, list(self._handlers))
        return found

    def __contains__(self, step_type: object) -> bool:
        return step_type in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))

    def types(self) -> list[str]:
        """The registered step types, sorted."""
        return sorted(self._handlers)

    def merged_with(self, other: HandlerRegistry) -> HandlerRegistry:
        """A new registry holding both registries' handlers (``other`` wins on a clash)."""
        merged = HandlerRegistry()
        merged._handlers = {**self._handlers, **other._handlers}
        return merged


default_registry = HandlerRegistry()
"""The registry that :func:`handler` fills. Engines take any registry; this is a convenience."""


def handler(step_type: str, *, registry: HandlerRegistry | None = None) -> Callable[[F], F]:
    """Registers a function as the handler of ``step_type``.

    The function takes ``(ctx: StepContext, inputs)`` or just ``(inputs)``, may be sync (it then
    runs in a worker thread) or async, and returns a JSON-serialisable output or a
    :class:`StepResult`. Raising fails the step. Annotating ``inputs`` with a pydantic model gets
    validated models; invalid inputs fail the step with the validation message.

    Example::

        @floworch.handler("FetchOrders")
        async def fetch_orders(ctx: floworch.StepContext, inputs: dict) -> dict:
            return {"orders": [...]}
    """
    return (registry or default_registry).handler(step_type)
