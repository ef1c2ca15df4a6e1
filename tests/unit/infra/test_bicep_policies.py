"""Policy tests over the evaluated Bicep deployment (no Bicep CLI: see bicep_eval.py).

Each policy runs on the real templates under several parameter sets, and on a copy broken on
purpose, where it must report the break (so a policy that cannot fail is caught too).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from floworch.api.auth import AuthMode
from floworch.api.routes_webhooks import router as webhooks_router
from floworch.hosting.app_settings import FUNCTION_APP_SETTINGS, setting_names
from tests.unit.infra import policies
from tests.unit.infra.bicep_eval import Deployment, EvalError, evaluate_deployment
from tests.unit.infra.bicep_source import Sources
from tests.unit.infra.conftest import MAIN, TOPOLOGY

REQUIRED = {
    "environmentName": "dev",
    "sqlAdminGroupName": "floworch-sql-admins",
    "sqlAdminGroupObjectId": "11111111-2222-3333-4444-555555555555",
}
PARAMETER_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "premium-service-bus": {"serviceBusSku": "Premium", "serviceBusPremiumPartitions": 2},
    "elastic-premium": {"hostingPlan": "ElasticPremium", "elasticPremiumSku": "EP2"},
    "app-service-auth": {"apiAuthClientId": "99999999-8888-7777-6666-555555555555"},
    "sql-no-azure-services": {"sqlAllowAzureServices": False, "deployerIpAddress": "203.0.113.7"},
    "ci-operator": {
        "operatorPrincipalId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "operatorPrincipalType": "ServicePrincipal",
    },
    "python-3.13": {"pythonVersion": "3.13", "instanceMemoryMB": 4096},
}


def deploy(sources: Sources, **params: Any) -> Deployment:
    return evaluate_deployment(sources, MAIN, {**REQUIRED, **params})


def topology_of(sources: Sources) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(sources.text(TOPOLOGY))
    return document


@pytest.fixture(scope="module")
def deployments(sources: Sources) -> dict[str, Deployment]:
    return {name: deploy(sources, **params) for name, params in PARAMETER_SETS.items()}


@pytest.mark.parametrize("parameter_set", sorted(PARAMETER_SETS))
def test_every_policy_holds(
    sources: Sources, deployments: dict[str, Deployment], parameter_set: str
) -> None:
    version = PARAMETER_SETS[parameter_set].get("pythonVersion", "3.12")
    problems = list(
        policies.all_problems(deployments[parameter_set], topology_of(sources), version)
    )
    assert problems == []


def test_parameter_sets_reach_the_branches(deployments: dict[str, Deployment]) -> None:
    plan = deployments["elastic-premium"].of_type("Microsoft.Web/serverfarms")[0]
    assert plan.body["sku"] == {"name": "EP2", "tier": "ElasticPremium"}
    namespace = deployments["premium-service-bus"].of_type(policies.SERVICEBUS)[0]
    assert namespace.properties["premiumMessagingPartitions"] == 2
    assert namespace.body["sku"]["capacity"] == 1
    auth = deployments["app-service-auth"].of_type("Microsoft.Web/sites/config")
    assert {r.body["name"] for r in auth} == {"appsettings", "authsettingsV2"}
    [easy_auth] = [r for r in auth if r.body["name"] == "authsettingsV2"]
    # Webhook senders cannot sign in; the platform must let their deliveries reach the API.
    excluded = easy_auth.properties["globalValidation"]["excludedPaths"]
    assert excluded == [f"{webhooks_router.prefix}/*"]
    settings = policies.app_settings(deployments["app-service-auth"])[0]
    assert settings is not None
    assert settings.properties["FLOWORCH_API_AUTH"] == AuthMode.APP_SERVICE.value
    rules = deployments["sql-no-azure-services"].of_type("Microsoft.Sql/servers/firewallRules")
    assert [r.body["name"] for r in rules] == ["deployer"]
    operator = deployments["ci-operator"].of_type("Microsoft.Authorization/roleAssignments")
    assert any(r.properties.get("principalType") == "ServicePrincipal" for r in operator)


def test_app_settings_module_lists_each_setting_once() -> None:
    names = [setting.name for setting in FUNCTION_APP_SETTINGS]
    assert len(names) == len(set(names))
    assert all(setting.required or setting.default is not None for setting in FUNCTION_APP_SETTINGS)
    assert setting_names() == set(names)


def test_the_steps_topic_default_matches_the_app_settings_module(sources: Sources) -> None:
    from floworch.hosting.app_settings import DEFAULT_FLOWS_PATH, DEFAULT_STEPS_TOPIC

    settings = policies.app_settings(deploy(sources))[0]
    assert settings is not None
    assert settings.properties["FLOWORCH_STEPS_TOPIC"] == DEFAULT_STEPS_TOPIC
    assert settings.properties["FLOWORCH_FLOWS"] == DEFAULT_FLOWS_PATH


# --- each policy, broken once on purpose ------------------------------------------------------

FUNCTIONAPP = "infra/bicep/modules/functionapp.bicep"
SERVICEBUS = "infra/bicep/modules/servicebus.bicep"
SQL = "infra/bicep/modules/sql.bicep"
MONITORING = "infra/bicep/modules/monitoring.bicep"
STORAGE = "infra/bicep/modules/storage.bicep"

Check = Callable[[Deployment, dict[str, Any]], list[str]]

BREAKS: list[tuple[str, str, str, str, Check, str]] = [
    (
        "app setting missing",
        FUNCTIONAPP,
        "  FLOWORCH_STEPS_TOPIC: stepsTopic\n",
        "",
        policies.check_app_settings,
        "app settings missing ['FLOWORCH_STEPS_TOPIC']",
    ),
    (
        "app setting not in the module",
        FUNCTIONAPP,
        "  FLOWORCH_FLOWS: flowsPath\n",
        "  FLOWORCH_FLOWS: flowsPath\n  FLOWORCH_EXTRA: 'x'\n",
        policies.check_app_settings,
        "not in app_settings.py: ['FLOWORCH_EXTRA']",
    ),
    (
        "trigger connection by key",
        FUNCTIONAPP,
        "ServiceBusConnection__credential: 'managedidentity'",
        "ServiceBusConnection__credential: 'connectionstring'",
        policies.check_app_settings,
        "ServiceBusConnection__credential is 'connectionstring'",
    ),
    (
        "principal headers trusted without App Service auth",
        FUNCTIONAPP,
        "FLOWORCH_API_AUTH: useAppServiceAuth ? 'appservice' : 'none'",
        "FLOWORCH_API_AUTH: 'appservice'",
        policies.check_app_settings,
        "but App Service authentication is off",
    ),
    (
        "an entity missing",
        SERVICEBUS,
        (
            "resource queueResources 'Microsoft.ServiceBus/name"
            "spaces/queues@2024-01-01' = [for queue in queues: {"
        ),
        (
            "resource queueResources 'Microsoft.ServiceBus/namespace"
            "s/queues@2024-01-01' = [for queue in take(queues, 0): {"
        ),
        lambda d, t: policies.check_entities(d, t),
        "not deployed: queues flow-cron",
    ),
    (
        "an entity the topology does not have",
        SERVICEBUS,
        "output name string",
        (
            "resource extra 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {\n"
            "  parent: namespace\n  name: 'legacy'\n}\n\noutput name string"
        ),
        lambda d, t: policies.check_entities(d, t),
        "deployed but not in the topology: queues legacy",
    ),
    (
        "a setting of the file dropped",
        SERVICEBUS,
        (
            "  'maxDeliveryCount'\n  'defaultMessageTimeToLive'\n"
            "  'deadLetteringOnMessageExpiration'\n"
            "  'deadLetteringOnFilterEvaluationExceptions'"
        ),
        (
            "  'defaultMessageTimeToLive'\n  'deadLetteringOnMessageExpiration'\n"
            "  'deadLetteringOnFilterEvaluationExceptions'"
        ),
        lambda d, t: policies.check_entities(d, t),
        "subscriptions flow-steps/flow-hello: deployed",
    ),
    (
        "match-all rule left beside the flow rule",
        SERVICEBUS,
        "name: r == 0 && !contains",
        "name: r == 99 && !contains",
        lambda d, t: policies.check_entities(d, t),
        "not deployed: rules flow-steps/flow-hello/$Default",
    ),
    (
        "Service Bus local auth",
        SERVICEBUS,
        "disableLocalAuth: true",
        "disableLocalAuth: false",
        lambda d, t: policies.check_local_auth_disabled(d),
        "Service Bus disableLocalAuth is not true",
    ),
    (
        "App Insights local auth",
        MONITORING,
        "DisableLocalAuth: true",
        "DisableLocalAuth: false",
        lambda d, t: policies.check_local_auth_disabled(d),
        "Application Insights DisableLocalAuth is not true",
    ),
    (
        "storage shared keys",
        STORAGE,
        "allowSharedKeyAccess: false",
        "allowSharedKeyAccess: true",
        lambda d, t: policies.check_local_auth_disabled(d),
        "storage allowSharedKeyAccess is not false",
    ),
    (
        "SQL logins allowed",
        SQL,
        "      azureADOnlyAuthentication: true",
        "      azureADOnlyAuthentication: false",
        lambda d, t: policies.check_sql_entra_only(d),
        "administrators.azureADOnlyAuthentication is not true",
    ),
    (
        "SQL admin password",
        SQL,
        "    minimalTlsVersion: '1.2'",
        "    minimalTlsVersion: '1.2'\n    administratorLogin: 'sqladmin'",
        lambda d, t: policies.check_sql_entra_only(d),
        "sets administratorLogin",
    ),
    (
        "role assignment on the resource group",
        SERVICEBUS,
        (
            "  scope: namespace\n  properties: {\n"
            "    roleDefinitionId: subscriptionResourceId("
            "'Microsoft.Authorization/roleDefinitions', role)"
        ),
        (
            "  properties: {\n"
            "    roleDefinitionId: subscriptionResourceId("
            "'Microsoft.Authorization/roleDefinitions', role)"
        ),
        lambda d, t: policies.check_role_assignments(d),
        "role assignment without a resource scope",
    ),
    (
        "a broader role",
        STORAGE,
        "'974c5e8b-45b9-4653-ba55-5f855dd0fb88'",
        "'b24988ac-6180-42a0-ab88-20f7382dd24c'",
        lambda d, t: policies.check_role_assignments(d),
        "role b24988ac-6180-42a0-ab88-20f7382dd24c is not allowed",
    ),
    (
        "a deprecated Flex setting",
        FUNCTIONAPP,
        "properties: isFlex ? floworchSettings : union(",
        "properties: isFlex ? union(floworchSettings, elasticPremiumPlatformSettings) : union(",
        lambda d, t: policies.check_flex_consumption(d, "3.12"),
        (
            "Flex Consumption deprecates app settings ['FUNCTIO"
            "NS_EXTENSION_VERSION', 'FUNCTIONS_WORKER_RUNTIME']"
        ),
    ),
    (
        "runtime outside functionAppConfig",
        FUNCTIONAPP,
        "siteConfig: isFlex ? commonSiteConfig :",
        "siteConfig: isFlex ? union(commonSiteConfig, { linuxFxVersion: 'PYTHON|3.12' }) :",
        lambda d, t: policies.check_flex_consumption(d, "3.12"),
        "siteConfig.linuxFxVersion is not for Flex Consumption",
    ),
    (
        "two API versions of one type",
        FUNCTIONAPP,
        "resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing",
        "resource storage 'Microsoft.Storage/storageAccounts@2023-01-01' existing",
        lambda d, t: policies.check_api_versions(d),
        "microsoft.storage/storageaccounts is used with API versions ['2023-01-01', '2023-05-01']",
    ),
    (
        "a secret in an output",
        MONITORING,
        "output workspaceName string = workspace.name",
        (
            "output workspaceName string = workspace.name\n"
            "output connection string = appInsights.properties.ConnectionString"
        ),
        lambda d, t: policies.check_outputs(d),
        "output connection = appInsights.properties.ConnectionString reads a secret",
    ),
]


@pytest.mark.parametrize(
    ("path", "old", "new", "check", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in BREAKS],
)
def test_a_broken_copy_fails_its_policy(
    sources: Sources, path: str, old: str, new: str, check: Check, expected: str
) -> None:
    assert check(deploy(sources), topology_of(sources)) == []
    broken = sources.replace(path, old, new)
    problems = check(deploy(broken), topology_of(broken))
    assert any(expected in problem for problem in problems), problems


def test_elastic_premium_break_is_caught(sources: Sources) -> None:
    broken = sources.replace(
        FUNCTIONAPP,
        "properties: union(siteProperties, isFlex ? { functionAppConfig: flexAppConfig } : {})",
        "properties: union(siteProperties, { functionAppConfig: flexAppConfig })",
    )
    problems = policies.check_flex_consumption(deploy(broken, hostingPlan="ElasticPremium"), "3.12")
    assert any("functionAppConfig on a ElasticPremium plan" in p for p in problems), problems


def test_an_evaluation_error_names_the_file_and_line(sources: Sources) -> None:
    broken = sources.replace(
        SERVICEBUS, "parent: topicResources[sub.topic]", "parent: topicResources[sub.nope]"
    )
    with pytest.raises(EvalError, match=r"servicebus\.bicep:\d+: no property 'nope'"):
        deploy(broken)
