"""``build_app``: the Function App (Python v2 programming model) for a set of flows.

The functions, generated at import from the flows (see :mod:`floworch.hosting.functions.plan`):
one Service Bus topic trigger per flow's subscription on the steps topic and on the triggers
topic, one for the triggers topic's catch-all ``unrouted``, queue triggers for the cron queue and
every queue a ``ServiceBus`` flow trigger names, the ``background`` timer
(reconciler and cron chains under a SQL lease), ``http``: the API's ASGI app through
``func.AsgiFunctionApp`` at every route (auth level ``function``), and the anonymous
``dashboard`` and ``dashboard-assets`` functions serving the dashboard's page and files
(:mod:`floworch.hosting.functions.dashboard`). Nothing heavy is imported or opened until the first
invocation (:class:`~floworch.hosting.functions.runtime.FunctionsRuntime`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import azure.functions as func

from floworch.hosting.app_settings import SERVICEBUS_CONNECTION
from floworch.hosting.functions.dashboard import register_dashboard
from floworch.hosting.functions.inbound import Inbound
from floworch.hosting.functions.plan import (
    BACKGROUND_FUNCTION,
    HTTP_FUNCTION,
    FunctionKind,
    TriggerFunction,
    function_plan,
)
from floworch.hosting.functions.runtime import FunctionsRuntime
from floworch.hosting.functions.settings import (
    FunctionsConfigError,
    FunctionsOptions,
    FunctionsSettings,
    Settlement,
)
from floworch.hosting.functions.settle import decide, settle_actions, settle_auto

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from floworch.engine.consumer import Delivery, Verdict
    from floworch.engine.handlers import HandlerRegistry
    from floworch.engine.ports import Dispatcher
    from floworch.model import FlowManifest
    from floworch.storage.port import Store

log = logging.getLogger("floworch.hosting.functions")

_WHAT = {
    FunctionKind.STEPS: "step message",
    FunctionKind.CRON: "cron tick",
    FunctionKind.TRIGGERS: "trigger message",
    FunctionKind.UNROUTED: "trigger message",
}


class FloworchFunctionApp(func.AsgiFunctionApp):
    """The Function App: an ``AsgiFunctionApp`` (the API) plus floworch's trigger functions.

    Attributes:
        runtime: the engine and clients the functions share (built on first use).
        plan: the Service Bus trigger functions, in registration order.
    """

    runtime: FunctionsRuntime
    plan: list[TriggerFunction]

    def __del__(self) -> None:
        # AsgiFunctionApp's __del__ runs the ASGI shutdown with asyncio.run, which fails when
        # the app is collected inside a running loop; the lazy API app has nothing to shut down.
        pass


class _LazyApi:
    """The API's ASGI app, built over the engine on the first request."""

    def __init__(self, runtime: FunctionsRuntime) -> None:
        self._runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to start before the first request
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        from floworch.errors import FlowError

        try:
            app = await self._runtime.asgi()
        except FlowError as exc:  # not configured, or the database does not answer
            log.error("the HTTP API cannot start: %s", exc)
            await _unavailable(send, str(exc))
            return
        await app(scope, receive, send)


async def _unavailable(send: Send, detail: str) -> None:
    import json

    body = json.dumps(
        {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": detail}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"application/problem+json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def build_app(
    flows: Sequence[FlowManifest],
    *,
    settings: FunctionsSettings,
    handlers: HandlerRegistry | None = None,
    options: FunctionsOptions | None = None,
    store: Store | None = None,
    dispatcher: Callable[[Dispatcher], Dispatcher] | None = None,
) -> FloworchFunctionApp:
    """The Function App for ``flows``.

    Args:
        flows: the flows (their subscriptions must exist: ``topology/servicebus.json``).
        settings: the app settings (:meth:`FunctionsSettings.from_env`).
        handlers: their handlers (default: the ``@floworch.handler`` registry).
        options: host options (settlement, hold budget, timer schedule, ...).
        store: a store to use instead of opening ``FLOWORCH_DB_URL`` (tests, local runs).
        dispatcher: wraps the engine's dispatcher (tests).
    """
    from floworch.engine.handlers import default_registry

    opts = options or FunctionsOptions()
    runtime = FunctionsRuntime(
        settings,
        flows,
        handlers if handlers is not None else default_registry,
        opts,
        store=store,
        dispatcher=dispatcher,
    )
    app = FloworchFunctionApp(
        app=_LazyApi(runtime),
        http_auth_level=func.AuthLevel(opts.http_auth_level.lower()),
        function_name=HTTP_FUNCTION,
    )
    app.runtime = runtime
    app.plan = function_plan(
        flows,
        steps_topic=settings.steps_topic,
        cron_queue=opts.cron_queue,
        triggers_topic=opts.triggers_topic,
    )
    for spec in app.plan:
        _register_trigger(app, spec, runtime, opts)
    _register_background(app, runtime, opts)
    register_dashboard(app)
    return app


def app_from_environment(
    env: Mapping[str, str], *, root: Path, options: FunctionsOptions | None = None
) -> FloworchFunctionApp:
    """What ``function_app.py`` calls: the flows at ``FLOWORCH_FLOWS`` (relative to ``root``,
    the app's directory) with the handlers beside them, and the app built for them.

    ``FLOWORCH_FUNCTIONS_SETTLEMENT``, when set, replaces ``options.settlement``.

    Raises:
        FunctionsConfigError: an app setting has a value the app cannot use.
    """
    from floworch.cli.loading import load_flows
    from floworch.engine.handlers import default_registry

    settings = FunctionsSettings.from_env(env, root=root)
    if settings.settlement is not None:
        options = replace(options or FunctionsOptions(), settlement=settings.settlement)
    project = load_flows([str(settings.flows_path)])
    return build_app(
        list(project.manifests), settings=settings, handlers=default_registry, options=options
    )


# -- the trigger functions ---------------------------------------------------------------------


def _decider(
    runtime: FunctionsRuntime, spec: TriggerFunction, inbound: Inbound, message: Any
) -> Callable[[Delivery], Any]:
    async def once(delivery: Delivery) -> Verdict:
        await runtime.start()  # the store unreachable here is an outage like any other
        if spec.kind is FunctionKind.STEPS:
            return await runtime.consumer.handle(inbound.body, delivery)
        if spec.kind is FunctionKind.CRON:
            return await runtime.cron(message, delivery)
        if spec.kind is FunctionKind.UNROUTED:
            return await runtime.unrouted(message, delivery)
        return await runtime.triggers(message, delivery)

    return once


async def _on_message(
    runtime: FunctionsRuntime, spec: TriggerFunction, inbound: Inbound, message: Any
) -> Verdict:
    opts = runtime.options
    runtime.check_config()
    return await decide(
        inbound,
        _decider(runtime, spec, inbound, message),
        hold=opts.hold,
        max_delivery_count=opts.max_delivery_count,
        policy=runtime.policy,
        what=_WHAT[spec.kind],
        on_hold=runtime.count_hold,
    )


def _auto_function(runtime: FunctionsRuntime, spec: TriggerFunction) -> Callable[..., Any]:
    async def handle(msg: func.ServiceBusMessage) -> None:
        inbound = Inbound.from_functions(msg)
        # The cron hub and the trigger handler read message_id, body and application
        # properties, which Inbound has as a received SDK message does.
        verdict = await _on_message(runtime, spec, inbound, cast(Any, inbound))
        if not _is_complete(verdict) and _last_delivery(runtime, inbound):
            runtime.dead_lettered += 1
        settle_auto(verdict, inbound, _WHAT[spec.kind])

    handle.__annotations__ = {"msg": func.ServiceBusMessage}
    return handle


def _actions_function(runtime: FunctionsRuntime, spec: TriggerFunction) -> Callable[..., Any]:
    try:
        import azurefunctions.extensions.bindings.servicebus as servicebus
    except ImportError as exc:
        raise FunctionsConfigError(
            "settlement 'actions' needs the SDK-type Service Bus binding: install "
            "floworch[functions-actions] (requirements.txt from "
            "scripts/functions_requirements.py --settlement actions), or use 'auto'"
        ) from exc

    from floworch.engine.consumer import DeadLetter, DeadLetterReason, describe

    async def handle(msg: Any, message_actions: Any) -> None:
        what = _WHAT[spec.kind]
        try:
            inbound = Inbound.from_sdk(msg)
        except Exception as exc:  # a body of AMQP values, not data
            inbound = Inbound(str(getattr(msg, "message_id", "") or ""), b"")
            verdict: Verdict = DeadLetter(DeadLetterReason.ENVELOPE_INVALID, describe(exc))
        else:
            verdict = await _on_message(runtime, spec, inbound, msg)
        if await settle_actions(verdict, msg, message_actions, inbound, what):
            runtime.dead_lettered += 1

    handle.__annotations__ = {
        "msg": servicebus.ServiceBusReceivedMessage,
        "message_actions": servicebus.ServiceBusMessageActions,
    }
    return handle


def _is_complete(verdict: Verdict) -> bool:
    from floworch.engine.consumer import Complete

    return isinstance(verdict, Complete)


def _last_delivery(runtime: FunctionsRuntime, inbound: Inbound) -> bool:
    limit = runtime.options.max_delivery_count
    return limit is not None and inbound.delivery_count >= limit


def _register_trigger(
    app: FloworchFunctionApp,
    spec: TriggerFunction,
    runtime: FunctionsRuntime,
    opts: FunctionsOptions,
) -> None:
    actions = opts.settlement is Settlement.ACTIONS
    handle = _actions_function(runtime, spec) if actions else _auto_function(runtime, spec)
    handle.__name__ = handle.__qualname__ = spec.name.replace("-", "_")
    if spec.queue is not None:
        trigger = app.service_bus_queue_trigger(
            arg_name="msg",
            connection=SERVICEBUS_CONNECTION,
            queue_name=spec.queue,
            cardinality=func.Cardinality.ONE,
            auto_complete_messages=not actions,
        )
    else:
        assert spec.topic is not None and spec.subscription is not None
        trigger = app.service_bus_topic_trigger(
            arg_name="msg",
            connection=SERVICEBUS_CONNECTION,
            topic_name=spec.topic,
            subscription_name=spec.subscription,
            cardinality=func.Cardinality.ONE,
            auto_complete_messages=not actions,
        )
    app.function_name(name=spec.name)(trigger(handle))


def _register_background(
    app: FloworchFunctionApp, runtime: FunctionsRuntime, opts: FunctionsOptions
) -> None:
    async def background(timer: func.TimerRequest) -> None:
        runtime.check_config()
        if not await runtime.background_pass():
            log.debug("background pass skipped: another instance holds the lease")

    background.__annotations__ = {"timer": func.TimerRequest}
    trigger = app.timer_trigger(
        arg_name="timer",
        schedule=opts.background_schedule,
        run_on_startup=False,
        use_monitor=False,
    )
    app.function_name(name=BACKGROUND_FUNCTION)(trigger(background))
