"""Indexing the Function App as the host does (``get_functions()``, once per app object): the
functions, their triggers and entities match the loaded flows and ``topology/servicebus.json``."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
import azurefunctions.extensions.bindings.servicebus as servicebus
import pytest

from floworch.hosting.app_settings import SERVICEBUS_CONNECTION
from floworch.hosting.functions import FunctionsOptions, FunctionsSettings, Settlement, build_app
from floworch.hosting.functions.plan import (
    MAX_FUNCTION_NAME,
    function_name,
    match_route,
    route_order,
)
from floworch.model import FlowManifest, load_manifest
from floworch.runtime.servicebus.config import ServiceBusConnection
from floworch.runtime.servicebus.names import subscription_name

ROOT = Path(__file__).resolve().parents[3]
TOPOLOGY = json.loads((ROOT / "topology" / "servicebus.json").read_text(encoding="utf-8"))
VALID_NAME = r"[A-Za-z][A-Za-z0-9_\-]*"


def _import_function_app() -> Any:
    spec = importlib.util.spec_from_file_location(
        "function_app_under_test", ROOT / "function_app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@pytest.fixture(scope="module")
def indexed() -> dict[str, Any]:
    """The repository's function_app.py indexed once (a second get_functions() would fail)."""
    app = _import_function_app()
    return {fn.get_function_name(): fn for fn in app.get_functions()}


def _binding(fn: Any) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(fn.get_raw_bindings()[0])
    return found


def _settings(steps_topic: str = "flow-steps") -> FunctionsSettings:
    return FunctionsSettings(
        flows_path=ROOT / "flows",
        db_url=None,
        connection=ServiceBusConnection(connection_string="Endpoint=sb://127.0.0.1:1;"),
        steps_topic=steps_topic,
        api_auth="none",
    )


def _flow(flow_id: str, **triggers: Any) -> FlowManifest:
    return load_manifest(
        {"id": flow_id, "version": "1", "triggers": triggers, "steps": {"a": {"type": "Echo"}}}
    )


def test_function_app_has_one_function_per_entity_of_the_topology(
    indexed: dict[str, Any],
) -> None:
    subscriptions = {
        (topic["name"], sub["name"])
        for topic in TOPOLOGY["topics"]
        for sub in topic["subscriptions"]
    }
    queues = {q["name"] for q in TOPOLOGY["queues"]}
    topics_seen: set[tuple[str, str]] = set()
    queues_seen: set[str] = set()
    for name, fn in indexed.items():
        binding = _binding(fn)
        if binding["type"] != "serviceBusTrigger":
            continue
        assert binding["connection"] == SERVICEBUS_CONNECTION
        assert binding["cardinality"] == "ONE"
        assert binding["autoCompleteMessages"] is True
        if "topicName" in binding:
            prefix = {"flow-steps": "steps", "flow-triggers": "triggers"}[binding["topicName"]]
            assert name == f"{prefix}-{binding['subscriptionName']}"
            topics_seen.add((binding["topicName"], binding["subscriptionName"]))
        else:
            queues_seen.add(binding["queueName"])
    assert topics_seen == subscriptions
    assert queues_seen == queues == {"flow-cron"}
    assert set(indexed) == {
        "http",
        "dashboard",
        "dashboard-assets",
        "background",
        "cron",
        "steps-flow-hello",
        "steps-flow-order-fulfilment",
        "triggers-flow-hello",
        "triggers-flow-order-fulfilment",
        "triggers-unrouted",
    }


def test_http_function_serves_every_route_with_a_function_key(indexed: dict[str, Any]) -> None:
    fn = indexed["http"]
    trigger, output = (json.loads(b) for b in fn.get_raw_bindings())
    assert fn.is_http_function()
    assert trigger["type"] == "httpTrigger" and output["type"] == "http"
    assert trigger["authLevel"] == "FUNCTION"
    assert trigger["route"] == "/{*route}"
    assert set(trigger["methods"]) >= {"GET", "POST", "PUT", "DELETE", "PATCH"}


def test_the_dashboard_page_and_files_are_anonymous_get_functions(indexed: dict[str, Any]) -> None:
    routes = {}
    for name in ("dashboard", "dashboard-assets"):
        fn = indexed[name]
        trigger, output = (json.loads(b) for b in fn.get_raw_bindings())
        assert fn.is_http_function() and output["type"] == "http"
        assert trigger["authLevel"] == "ANONYMOUS" and trigger["methods"] == ["GET"]
        assert fn.get_user_function().__annotations__["req"] is func.HttpRequest
        routes[name] = trigger["route"]
    assert routes == {
        "dashboard": "{page:maxlength(0)?}",
        "dashboard-assets": "assets/{version}/{*name}",
    }


def _served_by(indexed: dict[str, Any], method: str, path: str) -> str:
    """The HTTP function the host picks: the first, by name, whose methods and route match."""
    http = [name for name, fn in indexed.items() if fn.is_http_function()]
    for name in route_order(http):
        trigger = json.loads(indexed[name].get_raw_bindings()[0])
        if method in trigger["methods"] and match_route(trigger["route"], path) is not None:
            return name
    raise AssertionError(f"no function serves {method} {path}")


@pytest.mark.parametrize(
    ("method", "path", "function"),
    [
        ("GET", "/", "dashboard"),
        ("GET", "/?x=1", "dashboard"),
        ("GET", "/assets/0123abcd/app.js", "dashboard-assets"),
        ("GET", "/assets/0123abcd/pages/run.js", "dashboard-assets"),
        ("POST", "/", "http"),
        ("GET", "/api/runs", "http"),
        ("GET", "/api/docs", "http"),
        ("GET", "/api/stream", "http"),
        ("POST", "/api/webhooks/inbox", "http"),
        ("GET", "/status", "http"),
        ("GET", "/healthz", "http"),
        ("GET", "/readyz", "http"),
        ("GET", "/assets", "http"),
        ("GET", "/index.html", "http"),
    ],
)
def test_only_the_dashboard_shell_escapes_the_function_key(
    indexed: dict[str, Any], method: str, path: str, function: str
) -> None:
    # The host tries routes by function name; the catch-all of "http" matches every path, so
    # the dashboard's names must sort before it, and no API path may match their routes.
    assert _served_by(indexed, method, path) == function
    level = json.loads(indexed[function].get_raw_bindings()[0])["authLevel"]
    assert level == ("ANONYMOUS" if function.startswith("dashboard") else "FUNCTION")


def test_route_templates_match_as_the_host_reads_them() -> None:
    root = "{page:maxlength(0)?}"
    assert match_route(root, "/") == {} and match_route(root, "") == {}
    assert match_route(root, "/api") is None
    assets = "assets/{version}/{*name}"
    assert match_route(assets, "/Assets/v1/pages/run.js") == {
        "version": "v1",
        "name": "pages/run.js",
    }
    assert match_route(assets, "/assets") is None
    assert match_route("/{*route}", "/api/runs?x=1") == {"route": "api/runs"}
    assert match_route("runs/{id}", "/runs/a/b") is None
    with pytest.raises(ValueError, match="not supported"):
        match_route("runs/{id:int}", "/runs/1")


def test_background_timer_runs_every_ten_seconds_not_at_start_up(indexed: dict[str, Any]) -> None:
    binding = _binding(indexed["background"])
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "*/10 * * * * *"
    assert binding["runOnStartup"] is False


def test_function_names_are_valid_and_the_message_parameter_is_typed(
    indexed: dict[str, Any],
) -> None:
    import re

    for name, fn in indexed.items():
        assert re.fullmatch(VALID_NAME, name) and len(name) <= MAX_FUNCTION_NAME, name
        hints = fn.get_user_function().__annotations__
        if _binding(fn)["type"] == "serviceBusTrigger":
            assert hints == {"msg": func.ServiceBusMessage}


def test_the_sdk_type_binding_turns_auto_complete_off_and_asks_for_the_settlement_client() -> None:
    app = build_app(
        [_flow("orders")],
        settings=_settings(),
        options=FunctionsOptions(settlement=Settlement.ACTIONS),
        handlers=None,
    )
    functions = {fn.get_function_name(): fn for fn in app.get_functions()}
    for name in ("steps-flow-orders", "triggers-flow-orders", "triggers-unrouted", "cron"):
        assert _binding(functions[name])["autoCompleteMessages"] is False
        assert functions[name].get_user_function().__annotations__ == {
            "msg": servicebus.ServiceBusReceivedMessage,
            "message_actions": servicebus.ServiceBusMessageActions,
        }


def test_a_servicebus_trigger_with_its_own_queue_gets_its_own_function() -> None:
    flows = [
        _flow("billing", inbox={"type": "ServiceBus", "queue": "billing-in"}),
        _flow("audit", inbox={"type": "ServiceBus", "queue": "flow-triggers"}),
    ]
    app = build_app(flows, settings=_settings("steps-x"), handlers=None)
    bindings = {fn.get_function_name(): _binding(fn) for fn in app.get_functions()}
    assert bindings["queue-billing-in"]["queueName"] == "billing-in"
    assert bindings["steps-flow-audit"]["topicName"] == "steps-x"
    # A ServiceBus trigger naming the triggers topic is served by the flow's subscription there.
    assert bindings["triggers-flow-audit"]["topicName"] == "flow-triggers"
    assert not [b for b in bindings.values() if b.get("queueName") == "flow-triggers"]


def test_names_stay_unique_and_valid_for_ids_the_rules_would_merge() -> None:
    ids = ["a.b", "a_b", "a-b", "x" * 100, "x" * 99 + "y"]
    app = build_app([_flow(i) for i in ids], settings=_settings(), handlers=None)
    functions = app.get_functions()  # raises on a duplicate name
    names = [str(fn.get_function_name()) for fn in functions]
    assert len({n.lower() for n in names}) == len(names)
    subscriptions = {_binding(fn).get("subscriptionName") for fn in functions}
    assert {subscription_name(i) for i in ids} <= subscriptions
    assert function_name("steps", "flow-a.b") != function_name("steps", "flow-a_b")


def test_fifty_flows_index_to_a_hundred_and_two_service_bus_functions() -> None:
    app = build_app([_flow(f"flow{i:02d}") for i in range(50)], settings=_settings(), handlers=None)
    functions = app.get_functions()
    kinds = [_binding(fn)["type"] for fn in functions]
    assert kinds.count("serviceBusTrigger") == 102 and len(functions) == 106


def test_the_settlement_app_setting_builds_the_sdk_type_binding() -> None:
    from floworch.hosting.functions import app_from_environment

    env = {"FLOWORCH_FUNCTIONS_SETTLEMENT": "actions", "FLOWORCH_API_AUTH": "none"}
    app = app_from_environment(env, root=ROOT, options=FunctionsOptions())
    assert app.runtime.options.settlement is Settlement.ACTIONS
    functions = {fn.get_function_name(): fn for fn in app.get_functions()}
    assert _binding(functions["steps-flow-hello"])["autoCompleteMessages"] is False


def test_sdk_type_settlement_without_the_binding_installed_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from floworch.hosting.functions.settings import FunctionsConfigError

    monkeypatch.setitem(sys.modules, "azurefunctions.extensions.bindings.servicebus", None)
    with pytest.raises(FunctionsConfigError, match=r"floworch\[functions-actions\]"):
        build_app(
            [_flow("orders")],
            settings=_settings(),
            options=FunctionsOptions(settlement=Settlement.ACTIONS),
            handlers=None,
        )
