"""The Function App reads its app settings (and only those) into FunctionsSettings."""

from __future__ import annotations

from pathlib import Path

import pytest

from floworch.hosting.functions.settings import FunctionsConfigError, FunctionsSettings, Settlement

ROOT = Path("/srv/app")


def test_deployed_settings_use_the_namespace_by_identity() -> None:
    settings = FunctionsSettings.from_env(
        {
            "FLOWORCH_FLOWS": "my-flows",
            "FLOWORCH_DB_URL": "mssql+aioodbc://@s.database.windows.net/db?driver=x",
            "FLOWORCH_SERVICEBUS_NAMESPACE": "ns.servicebus.windows.net",
            "ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
            "FLOWORCH_STEPS_TOPIC": "steps",
            "FLOWORCH_API_AUTH": "none",
        },
        root=ROOT,
    )
    assert settings.flows_path == ROOT / "my-flows"
    assert settings.db_url is not None and settings.db_url.startswith("mssql+aioodbc://@")
    assert settings.connection is not None
    assert settings.connection.namespace == "ns.servicebus.windows.net"
    assert settings.steps_topic == "steps" and settings.api_auth == "none"


def test_defaults_follow_app_settings_py() -> None:
    settings = FunctionsSettings.from_env({}, root=ROOT)
    assert settings.flows_path == ROOT / "flows"
    assert settings.steps_topic == "flow-steps"
    assert settings.api_auth == "appservice"
    assert settings.db_url is None and settings.connection is None


def test_locally_the_binding_connection_string_serves_the_engine_too() -> None:
    local = "Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=k;SharedAccessKey=v"
    settings = FunctionsSettings.from_env({"ServiceBusConnection": local}, root=ROOT)
    assert settings.connection is not None and settings.connection.connection_string == local
    both = FunctionsSettings.from_env(
        {"ServiceBusConnection": local, "FLOWORCH_SERVICEBUS_NAMESPACE": "ns.example"}, root=ROOT
    )
    assert both.connection is not None and both.connection.namespace == "ns.example"


@pytest.mark.parametrize("value", ["token", "basic", "APPSERVICEX"])
def test_an_auth_mode_a_function_app_cannot_use_is_one_clear_error(value: str) -> None:
    with pytest.raises(FunctionsConfigError, match=r"FLOWORCH_API_AUTH=.*'appservice'.*'none'"):
        FunctionsSettings.from_env({"FLOWORCH_API_AUTH": value}, root=ROOT)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", Settlement.AUTO), ("ACTIONS", Settlement.ACTIONS), (" actions ", Settlement.ACTIONS)],
)
def test_the_settlement_mode_is_an_app_setting(value: str, expected: Settlement) -> None:
    settings = FunctionsSettings.from_env({"FLOWORCH_FUNCTIONS_SETTLEMENT": value}, root=ROOT)
    assert settings.settlement is expected
    assert FunctionsSettings.from_env({}, root=ROOT).settlement is None  # the option decides


@pytest.mark.parametrize("value", ["sdk", "manual", "auto-complete"])
def test_a_settlement_mode_that_does_not_exist_is_one_clear_error(value: str) -> None:
    with pytest.raises(FunctionsConfigError) as raised:
        FunctionsSettings.from_env({"FLOWORCH_FUNCTIONS_SETTLEMENT": value}, root=ROOT)
    message = str(raised.value)
    assert "\n" not in message
    assert f"FLOWORCH_FUNCTIONS_SETTLEMENT={value!r}" in message
    assert "'auto'" in message and "'actions'" in message
