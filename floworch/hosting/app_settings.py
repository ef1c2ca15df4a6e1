"""The app settings a floworch Function App reads: the one list Bicep and the Functions host share.

`infra/bicep/modules/functionapp.bicep` sets exactly these settings (a policy test in
`tests/unit/infra` compares the two), and the Functions host (`function_app.py`,
`floworch.hosting.functions*`) must read no others. Adding a setting means adding it here, in the
Bicep module and in docs/deploy.md; the test fails until all three agree.

Nothing here reads the environment: the host passes its environment mapping to whatever needs it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AppSetting:
    """One app setting of the Function App.

    Attributes:
        name: the exact setting name (case matters on Linux).
        required: True when the app cannot start without it; optional ones have ``default``.
        description: one line saying what it holds.
        default: the value the host assumes when an optional setting is absent.
    """

    name: str
    required: bool
    description: str
    default: str | None = None


DEFAULT_FLOWS_PATH = "flows"
DEFAULT_STEPS_TOPIC = "flow-steps"
SERVICEBUS_CONNECTION = "ServiceBusConnection"
"""The connection name the Service Bus trigger bindings use (``connection=...``)."""

FUNCTION_APP_SETTINGS: tuple[AppSetting, ...] = (
    AppSetting(
        "FLOWORCH_FLOWS",
        False,
        "path of the flows (manifests and handlers) inside the deployed package",
        DEFAULT_FLOWS_PATH,
    ),
    AppSetting(
        "FLOWORCH_DB_URL",
        True,
        "SQLAlchemy URL of the Azure SQL database: Entra token auth, no user name, azure_client_id",
    ),
    AppSetting(
        "FLOWORCH_SERVICEBUS_NAMESPACE",
        True,
        "the Service Bus namespace (FQDN) of the engine's own sender (DefaultAzureCredential)",
    ),
    AppSetting(
        "AZURE_CLIENT_ID",
        True,
        "client id of the user-assigned identity DefaultAzureCredential must pick",
    ),
    AppSetting(
        f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace",
        True,
        "namespace of the Service Bus trigger bindings' identity-based connection",
    ),
    AppSetting(
        f"{SERVICEBUS_CONNECTION}__credential",
        True,
        "'managedidentity': the trigger bindings authenticate with a managed identity",
    ),
    AppSetting(
        f"{SERVICEBUS_CONNECTION}__clientId",
        True,
        "client id of the user-assigned identity the trigger bindings use",
    ),
    AppSetting(
        "FLOWORCH_STEPS_TOPIC",
        False,
        "the Service Bus topic that carries step messages",
        DEFAULT_STEPS_TOPIC,
    ),
    AppSetting(
        "AzureWebJobsStorage__blobServiceUri",
        True,
        "blob endpoint of the host storage account (identity-based AzureWebJobsStorage)",
    ),
    AppSetting(
        "AzureWebJobsStorage__credential",
        True,
        "'managedidentity': the host reaches its storage with a managed identity",
    ),
    AppSetting(
        "AzureWebJobsStorage__clientId",
        True,
        "client id of the user-assigned identity the host uses for its storage",
    ),
    AppSetting(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        True,
        "Application Insights connection string (ingestion endpoint; local auth is disabled)",
    ),
    AppSetting(
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        True,
        "'ClientId=<identity client id>;Authorization=AAD': Entra auth for telemetry ingestion",
    ),
    AppSetting(
        "FLOWORCH_API_AUTH",
        False,
        "floworch.api.auth.AuthMode of the HTTP API: 'appservice' behind App Service auth, "
        "'none' when function keys at the trigger are the only gate",
        "appservice",
    ),
    AppSetting(
        "FLOWORCH_FUNCTIONS_SETTLEMENT",
        False,
        "how the Service Bus trigger functions settle messages: 'auto' (the host's auto-complete) "
        "or 'actions' (the SDK-type binding, preview: requirements.txt from --settlement actions)",
        "auto",
    ),
)
"""Every app setting the Function App reads, in the order docs/deploy.md lists them."""


LOCAL_SETTINGS: tuple[AppSetting, ...] = (
    AppSetting(
        SERVICEBUS_CONNECTION,
        False,
        "local runs only (func start, the local runner): a Service Bus connection string (the "
        "emulator's) for the trigger bindings; the engine's sender uses it too when "
        "FLOWORCH_SERVICEBUS_NAMESPACE is not set",
    ),
)
"""Settings the Functions host also reads when running locally; never deployed (Bicep sets the
identity-based ``ServiceBusConnection__*`` settings instead)."""


def local_setting_names() -> frozenset[str]:
    """The names of :data:`LOCAL_SETTINGS`."""
    return frozenset(setting.name for setting in LOCAL_SETTINGS)


def setting_names() -> frozenset[str]:
    """The names of :data:`FUNCTION_APP_SETTINGS`."""
    return frozenset(setting.name for setting in FUNCTION_APP_SETTINGS)


def required_setting_names() -> frozenset[str]:
    """The names of the settings the Function App cannot start without."""
    return frozenset(setting.name for setting in FUNCTION_APP_SETTINGS if setting.required)
