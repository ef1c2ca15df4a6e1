"""The deployment policies of issue 12, as functions returning violations (empty = compliant).

Each takes an evaluated :class:`Deployment` (and, where needed, the topology document), so the
same check runs on the real templates and on copies broken on purpose.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from floworch.api.auth import AuthMode
from floworch.hosting.app_settings import (
    SERVICEBUS_CONNECTION,
    required_setting_names,
    setting_names,
)
from tests.unit.infra.bicep_eval import Deployment, Resource, ResourceRef, Unknown

SERVICEBUS = "Microsoft.ServiceBus/namespaces"
ENTITY_TYPES = {
    f"{SERVICEBUS}/topics",
    f"{SERVICEBUS}/topics/subscriptions",
    f"{SERVICEBUS}/topics/subscriptions/rules",
    f"{SERVICEBUS}/queues",
}

# Built-in role definition ids (learn.microsoft.com built-in-roles; see docs/deploy.md).
SERVICEBUS_DATA_RECEIVER = "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"
SERVICEBUS_DATA_SENDER = "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"

ALLOWED_ROLES: dict[str, frozenset[str]] = {
    SERVICEBUS.lower(): frozenset({SERVICEBUS_DATA_RECEIVER, SERVICEBUS_DATA_SENDER}),
    "microsoft.storage/storageaccounts": frozenset(
        {STORAGE_BLOB_DATA_OWNER, STORAGE_QUEUE_DATA_CONTRIBUTOR, STORAGE_TABLE_DATA_CONTRIBUTOR}
    ),
    "microsoft.insights/components": frozenset({MONITORING_METRICS_PUBLISHER}),
}
"""Where a role may be assigned, and which roles: data-plane roles on one resource each."""

FLEX_DEPRECATED_SETTINGS = frozenset(
    {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTOVERVNET",
        "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
        "WEBSITE_TIME_ZONE",
        "TZ",
        "AzureWebJobsStorage",
    }
)
"""App settings Flex Consumption deprecates or moves (functions-app-settings#flex-consumption-plan-
deprecations); a connection-string AzureWebJobsStorage is also refused (identity only)."""

ELASTIC_PREMIUM_PLATFORM_SETTINGS = frozenset(
    {"FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME"}
)
"""Settings the platform (not floworch's code) needs on Elastic Premium."""

SECRET_NAME = re.compile(r"key|secret|password|token|connectionstring|sas", re.IGNORECASE)
SECRET_SOURCE = re.compile(
    r"list[A-Z]\w*\(|connectionstring|primarykey|secondarykey|password|secret", re.IGNORECASE
)


def _site_plan(deployment: Deployment) -> str:
    plans = deployment.of_type("Microsoft.Web/serverfarms")
    if len(plans) != 1:
        return f"{len(plans)} plans"
    return str(plans[0].body.get("sku", {}).get("tier"))


def app_settings(deployment: Deployment) -> tuple[Resource | None, list[str]]:
    found = [
        r
        for r in deployment.of_type("Microsoft.Web/sites/config")
        if r.body.get("name") == "appsettings"
    ]
    if len(found) != 1:
        return None, [f"expected one sites/config 'appsettings', found {len(found)}"]
    return found[0], []


def check_app_settings(deployment: Deployment, topology: dict[str, Any]) -> list[str]:
    """The Function App's settings are exactly floworch.hosting.app_settings (plus platform)."""
    resource, problems = app_settings(deployment)
    if resource is None:
        return problems
    settings = resource.properties
    expected = set(setting_names())
    if _site_plan(deployment) == "ElasticPremium":
        expected |= ELASTIC_PREMIUM_PLATFORM_SETTINGS
    missing = sorted(expected - set(settings))
    extra = sorted(set(settings) - expected)
    if missing:
        problems.append(f"{resource.where}: app settings missing {missing}")
    if extra:
        problems.append(f"{resource.where}: app settings not in app_settings.py: {extra}")
    for name in sorted(required_setting_names() & set(settings)):
        if settings[name] in (None, ""):
            problems.append(f"{resource.where}: required setting {name} is empty")
    for name in (f"{SERVICEBUS_CONNECTION}__credential", "AzureWebJobsStorage__credential"):
        if settings.get(name) != "managedidentity":
            problems.append(
                f"{resource.where}: {name} is {settings.get(name)!r}, not managedidentity"
            )
    auth = settings.get("FLOWORCH_API_AUTH")
    if auth not in {mode.value for mode in AuthMode} or auth == AuthMode.TOKEN:
        problems.append(f"{resource.where}: FLOWORCH_API_AUTH={auth!r} is not appservice/none")
    auth_on = any(
        r.body.get("name") == "authsettingsV2"
        for r in deployment.of_type("Microsoft.Web/sites/config")
    )
    if (auth == AuthMode.APP_SERVICE) != auth_on:
        problems.append(
            f"{resource.where}: FLOWORCH_API_AUTH={auth!r} but App Service authentication is "
            f"{'on' if auth_on else 'off'} (principal headers are only safe behind it)"
        )
    topics = {t["name"] for t in topology.get("topics", [])}
    steps = settings.get("FLOWORCH_STEPS_TOPIC")
    if steps not in topics:
        problems.append(
            f"{resource.where}: FLOWORCH_STEPS_TOPIC={steps!r} is not a topic of {sorted(topics)}"
        )
    db_url = settings.get("FLOWORCH_DB_URL")
    text = db_url.text if isinstance(db_url, Unknown) else str(db_url)
    if not text.strip("'").startswith("mssql+aioodbc://@") or "azure_client_id=" not in text:
        problems.append(f"{resource.where}: FLOWORCH_DB_URL {text} is not an Entra-token mssql URL")
    return problems


# --- Service Bus entities -----------------------------------------------------------------------

DURATION_KEYS = frozenset(
    {
        "lockDuration",
        "defaultMessageTimeToLive",
        "duplicateDetectionHistoryTimeWindow",
        "autoDeleteOnIdle",
    }
)
STRUCTURE_KEYS = frozenset({"name", "subscriptions", "rules", "$schema"})


def _arm_duration(value: Any) -> Any:
    return value if isinstance(value, str) else f"PT{value}S"


def _arm_properties(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _arm_duration(value) if key in DURATION_KEYS else value
        for key, value in doc.items()
        if key not in STRUCTURE_KEYS and value is not None
    }


def _arm_rule(doc: dict[str, Any]) -> dict[str, Any]:
    correlation = doc.get("correlationFilter")
    if correlation is not None:
        arm: dict[str, Any] = {
            "filterType": "CorrelationFilter",
            "correlationFilter": {
                ("label" if key == "subject" else key): value
                for key, value in correlation.items()
                if value is not None
            },
        }
    else:
        arm = {
            "filterType": "SqlFilter",
            "sqlFilter": {"sqlExpression": doc.get("sqlFilter") or "1=1"},
        }
    if doc.get("action") is not None:
        arm["action"] = {"sqlExpression": doc["action"]}
    return arm


def expected_entities(
    topology: dict[str, Any],
) -> dict[tuple[str, tuple[str, ...]], dict[str, Any]]:
    """What ARM must hold for a topology document: (type, names below the namespace) -> properties.

    A subscription with rules gets its first rule under the name ``$Default`` (replacing the
    match-all rule every subscription starts with) unless one of its rules is named so.
    """
    expected: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    for topic in topology.get("topics", []):
        expected[(f"{SERVICEBUS}/topics", (topic["name"],))] = _arm_properties(topic)
        for sub in topic.get("subscriptions", []):
            path = (topic["name"], sub["name"])
            expected[(f"{SERVICEBUS}/topics/subscriptions", path)] = _arm_properties(sub)
            rules = sub.get("rules") or []
            named_default = any(rule["name"] == "$Default" for rule in rules)
            for index, rule in enumerate(rules):
                name = "$Default" if index == 0 and not named_default else rule["name"]
                expected[(f"{SERVICEBUS}/topics/subscriptions/rules", (*path, name))] = _arm_rule(
                    rule
                )
    for queue in topology.get("queues", []):
        expected[(f"{SERVICEBUS}/queues", (queue["name"],))] = _arm_properties(queue)
    return expected


def deployed_entities(deployment: Deployment) -> dict[tuple[str, tuple[str, ...]], dict[str, Any]]:
    deployed: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    for resource in deployment.deployed():
        if resource.type in ENTITY_TYPES:
            key = (resource.type, tuple(str(n) for n in resource.names[1:]))
            if key in deployed:
                deployed[("duplicate " + resource.type, key[1])] = resource.properties
            deployed[key] = resource.properties
    return deployed


def check_entities(deployment: Deployment, topology: dict[str, Any]) -> list[str]:
    """Every entity of the topology is deployed with its settings, and nothing else."""
    problems = []
    namespaces = [r for r in deployment.deployed() if r.type == SERVICEBUS]
    if len(namespaces) != 1:
        problems.append(f"expected one Service Bus namespace, found {len(namespaces)}")
    expected = expected_entities(topology)
    deployed = deployed_entities(deployment)
    for key in sorted(set(expected) - set(deployed)):
        problems.append(f"not deployed: {key[0].split('/')[-1]} {'/'.join(key[1])}")
    for key in sorted(set(deployed) - set(expected)):
        problems.append(
            f"deployed but not in the topology: {key[0].split('/')[-1]} {'/'.join(key[1])}"
        )
    for key in sorted(set(expected) & set(deployed)):
        if expected[key] != deployed[key]:
            problems.append(
                f"{key[0].split('/')[-1]} {'/'.join(key[1])}: deployed "
                f"{json.dumps(deployed[key], sort_keys=True, default=str)}, the topology says "
                f"{json.dumps(expected[key], sort_keys=True)}"
            )
    other = [
        r.where
        for r in deployment.deployed()
        if r.type.startswith(SERVICEBUS + "/") and r.type not in ENTITY_TYPES
    ]
    problems.extend(
        f"{where}: a Service Bus resource the topology does not describe" for where in other
    )
    return problems


# --- authentication -------------------------------------------------------------------------------


def check_local_auth_disabled(deployment: Deployment) -> list[str]:
    """No key-based access: Service Bus, App Insights and the storage account take Entra only."""
    problems = []
    for r in deployment.of_type(SERVICEBUS):
        if r.properties.get("disableLocalAuth") is not True:
            problems.append(f"{r.where}: Service Bus disableLocalAuth is not true")
        if r.properties.get("minimumTlsVersion") != "1.2":
            problems.append(f"{r.where}: Service Bus minimumTlsVersion is not 1.2")
    for r in deployment.of_type("Microsoft.Insights/components"):
        if not r.existing and r.properties.get("DisableLocalAuth") is not True:
            problems.append(f"{r.where}: Application Insights DisableLocalAuth is not true")
    for r in deployment.of_type("Microsoft.Storage/storageAccounts"):
        if not r.existing and r.properties.get("allowSharedKeyAccess") is not False:
            problems.append(f"{r.where}: storage allowSharedKeyAccess is not false")
    if not deployment.of_type(SERVICEBUS) or not deployment.of_type(
        "Microsoft.Insights/components"
    ):
        problems.append("no Service Bus namespace or Application Insights component to check")
    return problems


def check_sql_entra_only(deployment: Deployment) -> list[str]:
    """Azure SQL accepts Microsoft Entra authentication only; no SQL login or password exists."""
    problems = []
    servers = [r for r in deployment.of_type("Microsoft.Sql/servers") if not r.existing]
    if not servers:
        return ["no SQL server deployed"]
    for r in servers:
        admin = r.properties.get("administrators", {})
        if admin.get("azureADOnlyAuthentication") is not True:
            problems.append(f"{r.where}: administrators.azureADOnlyAuthentication is not true")
        if admin.get("administratorType") != "ActiveDirectory":
            problems.append(f"{r.where}: the administrator is not a Microsoft Entra principal")
        for key in ("administratorLogin", "administratorLoginPassword"):
            if key in r.properties:
                problems.append(f"{r.where}: sets {key} (a SQL login)")
    flags = deployment.of_type("Microsoft.Sql/servers/azureADOnlyAuthentications")
    if not any(f.properties.get("azureADOnlyAuthentication") is True for f in flags):
        problems.append("no servers/azureADOnlyAuthentications resource set to true")
    return problems


def _role_guid(value: Any) -> str:
    text = value.text if isinstance(value, Unknown) else str(value)
    return text.rstrip("/").split("/")[-1].lower()


def check_role_assignments(deployment: Deployment) -> list[str]:
    """Each role assignment is scoped to the one resource it is for, with a role allowed there."""
    problems = []
    assignments = deployment.of_type("Microsoft.Authorization/roleAssignments")
    if not assignments:
        return ["no role assignments deployed"]
    for r in assignments:
        scope = r.body.get("scope")
        if not isinstance(scope, ResourceRef):
            problems.append(
                f"{r.where}: role assignment without a resource scope (resource group or wider)"
            )
            continue
        target = deployment.instance(scope)
        allowed = ALLOWED_ROLES.get(target.type.lower())
        if allowed is None:
            problems.append(
                f"{r.where}: role assignment scoped to {target.type}, not an allowed resource"
            )
            continue
        role = _role_guid(r.properties.get("roleDefinitionId"))
        if role not in allowed:
            problems.append(f"{r.where}: role {role} is not allowed on {target.type}")
        if not r.properties.get("principalType"):
            problems.append(f"{r.where}: role assignment without principalType")
    for r in deployment.of_type("Microsoft.Authorization/roleDefinitions"):
        problems.append(f"{r.where}: defines a custom role")
    return problems


def check_flex_consumption(deployment: Deployment, python_version: str) -> list[str]:
    """Flex: the runtime only in functionAppConfig, no deprecated setting; EP: no Flex config."""
    problems = []
    sites = [r for r in deployment.of_type("Microsoft.Web/sites") if not r.existing]
    if len(sites) != 1:
        return [f"expected one Function App, found {len(sites)}"]
    site = sites[0]
    config = site.properties.get("functionAppConfig")
    site_config = site.properties.get("siteConfig", {})
    resource, found = app_settings(deployment)
    settings = resource.properties if resource else {}
    problems.extend(found)
    if _site_plan(deployment) == "FlexConsumption":
        if not isinstance(config, dict):
            return [f"{site.where}: a Flex Consumption app without functionAppConfig"]
        runtime = config.get("runtime", {})
        if runtime != {"name": "python", "version": python_version}:
            problems.append(f"{site.where}: functionAppConfig.runtime is {runtime}")
        auth = config.get("deployment", {}).get("storage", {}).get("authentication", {})
        if auth.get("type") != "UserAssignedIdentity":
            problems.append(f"{site.where}: the deployment storage is not reached by identity")
        for key in ("linuxFxVersion", "appSettings", "alwaysOn", "use32BitWorkerProcess"):
            if key in site_config:
                problems.append(f"{site.where}: siteConfig.{key} is not for Flex Consumption")
        bad = sorted(FLEX_DEPRECATED_SETTINGS & set(settings))
        if bad:
            problems.append(f"{site.where}: Flex Consumption deprecates app settings {bad}")
    elif config is not None:
        problems.append(f"{site.where}: functionAppConfig on a {_site_plan(deployment)} plan")
    if site.body.get("identity", {}).get("type") != "UserAssigned":
        problems.append(f"{site.where}: the Function App does not run as a user-assigned identity")
    return problems


def check_api_versions(deployment: Deployment) -> list[str]:
    """One API version per resource type across every file."""
    versions: dict[str, set[str]] = {}
    for r in deployment.resources:
        versions.setdefault(r.type.lower(), set()).add(r.api_version)
    return [
        f"{resource_type} is used with API versions {sorted(found)}"
        for resource_type, found in sorted(versions.items())
        if len(found) > 1
    ]


def check_outputs(deployment: Deployment) -> list[str]:
    """No output carries a secret: by its name, its source, or a @secure value."""
    problems = []
    for decl in deployment.output_declarations:
        if SECRET_NAME.search(decl.name):
            problems.append(f"{decl.where}: output {decl.name} is named like a secret")
        if SECRET_SOURCE.search(decl.value_text):
            problems.append(f"{decl.where}: output {decl.name} = {decl.value_text} reads a secret")
        if "secure" in decl.decorators:
            problems.append(f"{decl.where}: output {decl.name} is @secure")
    if not deployment.outputs:
        problems.append("main.bicep has no outputs")
    return problems


def all_problems(
    deployment: Deployment, topology: dict[str, Any], python_version: str
) -> Iterable[str]:
    yield from check_app_settings(deployment, topology)
    yield from check_entities(deployment, topology)
    yield from check_local_auth_disabled(deployment)
    yield from check_sql_entra_only(deployment)
    yield from check_role_assignments(deployment)
    yield from check_flex_consumption(deployment, python_version)
    yield from check_api_versions(deployment)
    yield from check_outputs(deployment)
