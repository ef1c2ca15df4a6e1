"""A small Python builder for flows, for users who prefer code to JSON or YAML.

Example::

    flow = Flow("orders", version="1")
    flow.manual()
    flow.step("fetch", "FetchOrders", inputs={"customer": "@triggerBody()?.customerId"})
    each = flow.for_each("each", "@steps('fetch').output.orders", run_after="fetch")
    each.step("charge", "Charge", inputs={"order": "@item()"})
    flow.step("ship", "Ship", run_after={"each": ["Succeeded"]}, retry=Retry(max_attempts=3))
    manifest = flow.build()  # a validated FlowManifest

Durations are seconds (int or float) or ``timedelta``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal, TypeAlias

from pydantic import JsonValue

from floworch.model.manifest import (
    DELAY,
    FOR_EACH,
    WAIT_FOR_SIGNAL,
    FlowManifest,
    PollPolicy,
    RetryPolicy,
)

Retry = RetryPolicy
"""Retry policy; ``Retry(max_attempts=5, initial_interval_seconds=2)``."""
Poll = PollPolicy
"""Polling policy; ``Poll(interval_seconds=10, timeout_seconds=600)``."""

Seconds: TypeAlias = float | timedelta
RunAfter: TypeAlias = str | Sequence[str] | Mapping[str, Sequence[str] | Mapping[str, Any]] | None
"""``"a"`` or ``["a", "b"]`` (after they succeed), or the manifest's ``{"a": ["Failed"]}`` form."""


def _seconds(value: Seconds | None) -> float | None:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def _run_after(value: RunAfter) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {value: ["Succeeded"]}
    if isinstance(value, Mapping):
        return {
            key: list(rule) if isinstance(rule, Sequence) and not isinstance(rule, str) else rule
            for key, rule in value.items()
        }
    return {key: ["Succeeded"] for key in value}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _Steps:
    """A map of steps being built: the flow's top level or a ForEach body."""

    def __init__(self) -> None:
        self._steps: dict[str, dict[str, Any]] = {}

    def step(
        self,
        key: str,
        type: str,
        *,
        inputs: JsonValue = None,
        run_after: RunAfter = None,
        retry: RetryPolicy | None = None,
        timeout: Seconds | None = None,
        poll: PollPolicy | None = None,
        description: str | None = None,
    ) -> str:
        """Add a step running the handler registered as ``type``; return its key."""
        spec: dict[str, Any] = {"type": type, "runAfter": _run_after(run_after)}
        if inputs is not None:
            spec["inputs"] = inputs
        if retry is not None:
            spec["retry"] = retry.model_dump(exclude_none=True)
        if timeout is not None:
            spec["timeoutSeconds"] = _seconds(timeout)
        if poll is not None:
            spec["poll"] = poll.model_dump(exclude_none=True)
        if description is not None:
            spec["description"] = description
        return self._add(key, spec)

    def for_each(
        self,
        key: str,
        items: str | list[JsonValue],
        *,
        concurrency_limit: int | None = None,
        run_after: RunAfter = None,
        description: str | None = None,
    ) -> ForEachBody:
        """Add a ForEach step over ``items``; add the loop body's steps to the returned body."""
        body = ForEachBody(key)
        spec: dict[str, Any] = {
            "type": FOR_EACH,
            "forEach": items,
            "runAfter": _run_after(run_after),
            "steps": body._steps,  # filled in by the caller through ``body``
        }
        if concurrency_limit is not None:
            spec["concurrencyLimit"] = concurrency_limit
        if description is not None:
            spec["description"] = description
        self._add(key, spec)
        return body

    def wait_for_signal(
        self,
        key: str,
        signal_name: str,
        *,
        timeout: Seconds | None = None,
        run_after: RunAfter = None,
    ) -> str:
        """Add a step that waits for the signal ``signal_name``; its payload is the output."""
        inputs: dict[str, JsonValue] = {"signalName": signal_name}
        if timeout is not None:
            inputs["timeoutSeconds"] = _seconds(timeout)
        return self._add(
            key, {"type": WAIT_FOR_SIGNAL, "inputs": inputs, "runAfter": _run_after(run_after)}
        )

    def delay(
        self,
        key: str,
        seconds: Seconds | str | None = None,
        *,
        until: str | None = None,
        run_after: RunAfter = None,
    ) -> str:
        """Add a step that waits ``seconds`` (or an expression) or ``until`` a timestamp."""
        inputs: dict[str, JsonValue] = {}
        if seconds is not None:
            inputs["delaySeconds"] = seconds if isinstance(seconds, str) else _seconds(seconds)
        if until is not None:
            inputs["until"] = until
        return self._add(key, {"type": DELAY, "inputs": inputs, "runAfter": _run_after(run_after)})

    def _add(self, key: str, spec: dict[str, Any]) -> str:
        if key in self._steps:
            raise ValueError(f"step {key!r} is already defined")
        self._steps[key] = spec
        return key


class ForEachBody(_Steps):
    """The body of a ForEach step: add its steps with :meth:`step` (and the other methods)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


class Flow(_Steps):
    """Builds a :class:`FlowManifest` in code. Call :meth:`build` for the validated manifest."""

    def __init__(
        self,
        id: str,
        *,
        version: str = "1",
        description: str | None = None,
        enabled: bool = True,
        timeout: Seconds | None = None,
    ) -> None:
        super().__init__()
        self.id = id
        self._head: dict[str, Any] = {"id": id, "version": version, "enabled": enabled}
        if description is not None:
            self._head["description"] = description
        if timeout is not None:
            self._head["timeoutSeconds"] = _seconds(timeout)
        self._triggers: dict[str, dict[str, Any]] = {}

    def manual(self, key: str = "manual") -> Flow:
        """Add a Manual trigger."""
        return self._trigger(key, {"type": "Manual"})

    def cron(
        self,
        cron: str,
        *,
        key: str = "schedule",
        timezone: str = "UTC",
        missed_fires: Literal["fireOnce", "skip"] = "fireOnce",
        body: JsonValue = None,
    ) -> Flow:
        """Add a Cron trigger (5 fields, or 6 with seconds first)."""
        spec: dict[str, Any] = {"type": "Cron", "cron": cron, "timezone": timezone}
        spec["missedFires"] = missed_fires
        if body is not None:
            spec["body"] = body
        return self._trigger(key, spec)

    def webhook(
        self,
        slug: str,
        *,
        key: str = "webhook",
        secret_env: str | None = None,
        secret: str | None = None,
        max_body_bytes: int | None = None,
        rate_limit_per_minute: int | None = None,
        **settings: Any,
    ) -> Flow:
        """Add a Webhook trigger at ``/api/webhooks/<slug>``.

        ``secret_env`` names the environment variable holding the HMAC secret (``secret`` is
        the older ``"env:NAME"`` spelling). Other settings (``signature_header``,
        ``timestamp_header``, ...) are the manifest's fields in snake_case.
        """
        spec: dict[str, Any] = {"type": "Webhook", "slug": slug}
        optional = {
            "secretFrom": {"env": secret_env} if secret_env is not None else None,
            "secret": secret,
            "maxBodyBytes": max_body_bytes,
            "rateLimitPerMinute": rate_limit_per_minute,
            **{_camel(name): value for name, value in settings.items()},
        }
        spec.update({name: value for name, value in optional.items() if value is not None})
        return self._trigger(key, spec)

    def service_bus(self, *, key: str = "servicebus", queue: str | None = None) -> Flow:
        """Add a ServiceBus trigger (runs started by messages)."""
        spec: dict[str, Any] = {"type": "ServiceBus"}
        if queue is not None:
            spec["queue"] = queue
        return self._trigger(key, spec)

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest data built so far (not validated)."""
        return {**self._head, "triggers": dict(self._triggers), "steps": self._steps}

    def build(self, *, step_types: Collection[str] | None = None) -> FlowManifest:
        """Validate and return the manifest.

        Raises:
            FlowValidationError: listing every problem, located by manifest path.
        """
        from floworch.model.validation import validate_manifest

        return validate_manifest(self.to_dict(), step_types=step_types, source=f"Flow({self.id!r})")

    def _trigger(self, key: str, spec: dict[str, Any]) -> Flow:
        if key in self._triggers:
            raise ValueError(f"trigger {key!r} is already defined")
        self._triggers[key] = spec
        return self
