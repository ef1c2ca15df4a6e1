"""Running a Function App without the Functions host: what the host does, in Python.

:class:`LocalFunctionsHost` indexes the app (``get_functions()``, once), receives from each
trigger's entity in peek-lock with the real ``azure-servicebus`` SDK (the local emulator, or a
namespace by connection string), hands each message to its function as the worker would (an
``azure.functions.ServiceBusMessage`` with message id, delivery count from 1 and application
properties for auto-complete; the SDK's ``ServiceBusReceivedMessage`` and a settlement client for
the SDK-type binding), renews the lock while the function runs and settles like the host:
auto-complete completes on return and abandons on an exception; the SDK-type binding settles
what the function asked for, and a message it did not settle keeps its lock until it lapses.
The timer function runs every ``timer_every``; :meth:`LocalFunctionsHost.http` calls the HTTP
function whose route matches first (in the host's order: by function name) with a
``func.HttpRequest``. Like Core Tools, it checks no function keys.

``python -m floworch.hosting.functions.local`` runs ``function_app.py`` this way and serves its
HTTP function on 127.0.0.1 (docs/functions.md); tests and ``bench/functions.py`` use the
class directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import azure.functions as func
from azure.functions.servicebus import ServiceBusMessage as WorkerServiceBusMessage
from azure.functions.timer import TimerRequest
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from floworch.hosting.functions.app import FloworchFunctionApp
from floworch.hosting.functions.plan import BACKGROUND_FUNCTION, match_route, route_order
from floworch.hosting.functions.settings import Settlement

log = logging.getLogger("floworch.hosting.functions.local")


@dataclass
class HostStats:
    """What the local host did, for tests and figures."""

    invocations: int = 0
    completed: int = 0
    abandoned: int = 0
    dead_lettered: int = 0
    failures: int = 0
    """Invocations that raised (auto-complete: each one abandoned its message)."""
    unsettled: int = 0
    """SDK-type binding: messages the function left unsettled (their lock lapses)."""
    timer_runs: int = 0


@dataclass(frozen=True)
class Invocation:
    """One function invocation: function, message id, delivery count and how it ended."""

    function: str
    message_id: str
    delivery_count: int
    outcome: str


@dataclass
class _Context:
    """The parts of ``func.Context`` the ASGI adapter reads."""

    function_name: str
    invocation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    function_directory: str = ""
    thread_local_storage: Any = None
    trace_context: Any = None
    retry_context: Any = None


class RecordingActions:
    """A settlement client in place of ``ServiceBusMessageActions`` (which needs the host's
    gRPC endpoint): it records what the function asks for; the local host then settles it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None, str | None]] = []

    def complete(self, message: Any) -> None:
        self.requests.append(("complete", None, None))

    def abandon(self, message: Any) -> None:
        self.requests.append(("abandon", None, None))

    def deadletter(
        self,
        message: Any,
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None:
        self.requests.append(("deadletter", deadletter_reason, deadletter_error_description))


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def functions_message(message: ServiceBusReceivedMessage) -> WorkerServiceBusMessage:
    """The ``azure.functions`` message the worker builds for a received message: text keys and
    values in application properties, the host's delivery count (from 1)."""
    properties = {
        str(_text(k)): _text(v) for k, v in (message.application_properties or {}).items()
    }
    body = message.body
    raw = bytes(body) if isinstance(body, bytes | bytearray) else b"".join(bytes(p) for p in body)
    return WorkerServiceBusMessage(
        body=raw,
        message_id=str(message.message_id or ""),
        application_properties=properties,
        user_properties=dict(properties),
        delivery_count=int(message.delivery_count or 0) + 1,
        enqueued_time_utc=message.enqueued_time_utc,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        subject=message.subject,
        sequence_number=message.sequence_number,
        lock_token=str(message.lock_token),
        locked_until=message.locked_until_utc,
    )


class LocalFunctionsHost:
    """Runs the functions of ``app`` (see the module docstring). ``async with`` it.

    Args:
        app: the Function App.
        connection_string: where its trigger bindings' entities are.
        max_concurrent_calls: messages handled at once per function (host.json).
        lock_renew_every: how often a running function's message lock is renewed.
        timer_every: how often the timer function runs (None: never).
        functions: names of the trigger functions to run (default: all).
    """

    def __init__(
        self,
        app: FloworchFunctionApp,
        *,
        connection_string: str,
        max_concurrent_calls: int = 8,
        lock_renew_every: timedelta = timedelta(seconds=10),
        timer_every: timedelta | None = timedelta(seconds=10),
        functions: set[str] | None = None,
    ) -> None:
        self.app = app
        self.functions: dict[str, Any] = {
            str(fn.get_function_name()): fn for fn in app.get_functions()
        }
        self.stats = HostStats()
        self.invocations: list[Invocation] = []
        self._settlement = app.runtime.options.settlement
        self._client = ServiceBusClient.from_connection_string(connection_string)
        self._concurrency = max_concurrent_calls
        self._renew_every = lock_renew_every.total_seconds()
        self._timer_every = timer_every
        self._only = functions
        self._stopping = asyncio.Event()
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._receiving: dict[str, asyncio.Event] = {}

    async def __aenter__(self) -> LocalFunctionsHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _trigger_functions(self) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = []
        for name, fn in self.functions.items():
            trigger = fn.get_trigger()
            if trigger is None or trigger.get_binding_name() != "serviceBusTrigger":
                continue
            if self._only is None or name in self._only:
                found.append((name, fn))
        return found

    async def start(self, timeout: float = 60.0) -> None:
        """Opens a receiver per trigger function and waits until all are open."""
        for name, fn in self._trigger_functions():
            self._receiving[name] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._receive(name, fn), name=f"local-{name}"))
        if self._timer_every is not None and BACKGROUND_FUNCTION in self.functions:
            self._tasks.append(asyncio.create_task(self._timer(), name="local-timer"))
        waits = [event.wait() for event in self._receiving.values()]
        await asyncio.wait_for(asyncio.gather(*waits), timeout)

    async def stop(self, grace: float = 5.0) -> None:
        """Stops receiving; running functions get ``grace`` seconds, then are cancelled."""
        self._stopping.set()
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_client()

    async def _close_client(self) -> None:
        self._tasks = []
        if not self._closed:
            self._closed = True
            await self._client.close()

    async def crash(self) -> None:
        """Stops at once: running functions are cancelled, their messages left locked."""
        self._stopping.set()
        for task in [*self._inflight, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._inflight, *self._tasks, return_exceptions=True)
        await self._close_client()

    # -- Service Bus triggers -----------------------------------------------------------------

    def _receiver(self, fn: Any) -> ServiceBusReceiver:
        trigger = fn.get_trigger()
        queue = getattr(trigger, "queue_name", None)
        if queue:
            return self._client.get_queue_receiver(queue, prefetch_count=0)
        return self._client.get_subscription_receiver(
            trigger.topic_name, trigger.subscription_name, prefetch_count=0
        )

    async def _receive(self, name: str, fn: Any) -> None:
        slots = asyncio.Semaphore(self._concurrency)
        user = fn.get_user_function()
        while not self._stopping.is_set():
            try:
                async with self._receiver(fn) as receiver:
                    self._receiving[name].set()
                    while not self._stopping.is_set():
                        await slots.acquire()
                        try:
                            messages = await receiver.receive_messages(
                                max_message_count=1, max_wait_time=0.5
                            )
                        except BaseException:
                            slots.release()
                            raise
                        if not messages:
                            slots.release()
                        for message in messages:
                            task = asyncio.create_task(
                                self._invoke(name, user, receiver, message, slots)
                            )
                            self._inflight.add(task)
                            task.add_done_callback(self._inflight.discard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken link: open a new one, as the host does
                log.warning("receiving for function %s failed (%s); reconnecting", name, exc)
                await asyncio.sleep(0.5)

    async def _invoke(
        self,
        name: str,
        user: Any,
        receiver: ServiceBusReceiver,
        message: ServiceBusReceivedMessage,
        slots: asyncio.Semaphore,
    ) -> None:
        renewing = asyncio.create_task(self._renew(receiver, message))
        self.stats.invocations += 1
        delivery = int(message.delivery_count or 0) + 1
        try:
            if self._settlement is Settlement.ACTIONS:
                outcome = await self._invoke_actions(user, receiver, message)
            else:
                outcome = await self._invoke_auto(user, receiver, message)
            self.invocations.append(Invocation(name, str(message.message_id), delivery, outcome))
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            slots.release()

    async def _invoke_auto(
        self, user: Any, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage
    ) -> str:
        try:
            await user(msg=functions_message(message))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.failures += 1
            log.info("function failed (%s): abandoning %s", exc, message.message_id)
            await self._settle(receiver.abandon_message(message))
            self.stats.abandoned += 1
            return f"abandoned: {exc}"
        await self._settle(receiver.complete_message(message))
        self.stats.completed += 1
        return "completed"

    async def _invoke_actions(
        self, user: Any, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage
    ) -> str:
        actions = RecordingActions()
        try:
            await user(msg=message, message_actions=actions)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.failures += 1
            log.warning("function failed (%s); %s stays locked", exc, message.message_id)
        if not actions.requests:
            self.stats.unsettled += 1
            return "unsettled"
        action, reason, description = actions.requests[0]
        if action == "complete":
            await self._settle(receiver.complete_message(message))
            self.stats.completed += 1
        elif action == "abandon":
            await self._settle(receiver.abandon_message(message))
            self.stats.abandoned += 1
        else:
            await self._settle(
                receiver.dead_letter_message(message, reason=reason, error_description=description)
            )
            self.stats.dead_lettered += 1
        return action

    async def _settle(self, settling: Any) -> None:
        try:
            await settling
        except Exception as exc:  # the lock was lost: Service Bus redelivers the message
            log.warning("settling failed: %s", exc)

    async def _renew(
        self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage
    ) -> None:
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                await receiver.renew_message_lock(message)
            except Exception as exc:
                log.warning("renewing the lock of %s failed: %s", message.message_id, exc)
                return

    # -- the timer and HTTP --------------------------------------------------------------------

    async def run_timer(self) -> None:
        """Runs the timer function once, as its schedule would."""
        user = self.functions[BACKGROUND_FUNCTION].get_user_function()
        await user(timer=TimerRequest())
        self.stats.timer_runs += 1

    async def _timer(self) -> None:
        assert self._timer_every is not None
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._timer_every.total_seconds())
            if self._stopping.is_set():
                return
            try:
                await self.run_timer()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the timer function failed: %s", exc)

    async def http(
        self,
        method: str,
        path: str,
        *,
        body: bytes | str | Any = b"",
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> func.HttpResponse:
        """Calls the HTTP function serving ``path`` with a ``func.HttpRequest`` (a JSON body for
        anything that is not bytes or text); no function answering is a 404, as with the host."""
        if isinstance(body, str):
            raw = body.encode()
        elif isinstance(body, bytes):
            raw = body
        else:
            raw = json.dumps(body).encode()
        found = self.http_function(method, path)
        if found is None:
            return func.HttpResponse(status_code=404)
        name, route = found
        request = func.HttpRequest(
            method.upper(),
            f"http://localhost{path}",
            headers=dict(headers or {}),
            params=dict(params or {}),
            route_params=route,
            body=raw,
        )
        user = self.functions[name].get_user_function()
        response: func.HttpResponse = await user(req=request, context=_Context(name))
        return response

    def http_function(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        """The HTTP function the host would call for ``method path`` and its route values."""
        for name in route_order([n for n, fn in self.functions.items() if fn.is_http_function()]):
            trigger = json.loads(self.functions[name].get_raw_bindings()[0])
            if method.upper() not in {m.upper() for m in trigger.get("methods") or [method]}:
                continue
            values = match_route(trigger["route"], path)
            if values is not None:
                return name, values
        return None

    def auth_level(self, name: str) -> str:
        """An HTTP function's auth level as indexed (``ANONYMOUS``, ``FUNCTION``, ``ADMIN``)."""
        level: str = json.loads(self.functions[name].get_raw_bindings()[0])["authLevel"]
        return level


if __name__ == "__main__":  # python -m floworch.hosting.functions.local (docs/functions.md)
    from floworch.hosting.functions.serve_local import main

    raise SystemExit(main())
