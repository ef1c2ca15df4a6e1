"""ARM mode: the topology manager through azure-mgmt-servicebus against the local HTTPS fake of
the Resource Manager endpoints (real SDK pipeline: bearer token, api-version, JSON, paging)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.servicebus import ServiceBusManagementClient
from azure.mgmt.servicebus.models import SBQueue, SBQueueProperties
from click.testing import CliRunner

from floworch.cli import topology as topology_cli
from floworch.engine.flows import FlowRegistry
from floworch.model import load_flows_from_path
from floworch.runtime.servicebus.topology import (
    Action,
    ExtraEntity,
    Kind,
    Topology,
    TopologyAccessError,
    TopologyConflictError,
    apply_topology,
    desired_topology,
    plan_topology,
)
from floworch.runtime.servicebus.topology.arm import ArmNamespace
from floworch.testing.arm_fake import ArmServiceBusFake, FakeTokenCredential

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = (ROOT / "examples/hello/flow.yaml", ROOT / "examples/order_fulfilment/flow.json")
STEPS = "flow-steps"


@pytest.fixture
def arm() -> Iterator[ArmServiceBusFake]:
    with ArmServiceBusFake(page_size=2) as fake:  # small pages: nextLink paging is exercised
        yield fake


def management_client(
    arm: ArmServiceBusFake, credential: FakeTokenCredential | None = None
) -> ServiceBusManagementClient:
    return ServiceBusManagementClient(
        credential or arm.credential(),
        arm.subscription_id,
        base_url=arm.url,
        connection_verify=str(arm.ca_file),
        retry_total=0,
    )


@pytest.fixture
def client(arm: ArmServiceBusFake) -> Iterator[ServiceBusManagementClient]:
    with management_client(arm) as mgmt:
        yield mgmt


@pytest.fixture
def namespace(arm: ArmServiceBusFake, client: ServiceBusManagementClient) -> ArmNamespace:
    return ArmNamespace(client, arm.resource_group, arm.namespace)


@pytest.fixture
def desired() -> Topology:
    flows = [m for path in EXAMPLES for m in load_flows_from_path(path)]
    return desired_topology(FlowRegistry(flows))


def test_apply_creates_everything_through_arm_and_a_second_apply_changes_nothing(
    arm: ArmServiceBusFake,
    client: ServiceBusManagementClient,
    namespace: ArmNamespace,
    desired: Topology,
) -> None:
    plan = apply_topology(namespace, desired)
    assert plan.summary() == "8 to create, 5 rules to add, 5 rules to remove"
    assert "floworch-ns" in plan.target

    queue = client.queues.get(arm.resource_group, arm.namespace, "flow-cron")
    assert queue.properties is not None
    assert queue.properties.requires_duplicate_detection is True
    assert queue.properties.lock_duration == timedelta(minutes=1)
    rules = list(
        client.rules.list_by_subscriptions(arm.resource_group, arm.namespace, STEPS, "flow-hello")
    )
    assert [r.name for r in rules] == ["flow"]
    assert rules[0].properties is not None and rules[0].properties.correlation_filter is not None
    assert rules[0].properties.correlation_filter.properties == {"FlowId": "hello"}

    arm.requests.clear()
    assert not apply_topology(namespace, desired).pending
    assert {r.method for r in arm.requests} == {"GET"}  # nothing written the second time
    # What the installed SDK sends, and what the fake checked.
    assert {r.api_version for r in arm.requests} == {client._config.api_version}


def test_drift_is_planned_and_updates_keep_unmanaged_settings(
    arm: ArmServiceBusFake,
    client: ServiceBusManagementClient,
    namespace: ArmNamespace,
    desired: Topology,
) -> None:
    apply_topology(namespace, desired)
    queue = client.queues.get(arm.resource_group, arm.namespace, "flow-cron")
    assert queue.properties is not None
    queue.properties.max_delivery_count = 2
    queue.properties.enable_batched_operations = False  # not managed: must survive the update
    client.queues.create_or_update(arm.resource_group, arm.namespace, "flow-cron", queue)
    client.rules.delete(arm.resource_group, arm.namespace, STEPS, "flow-hello", "flow")

    plan = plan_topology(namespace, desired)
    assert [(c.action, c.path) for c in plan.changes] == [
        (Action.UPDATE, "flow-cron"),
        (Action.ADD, f"{STEPS}/subscriptions/flow-hello/rules/flow"),
    ]
    assert [(f.name, f.current, f.wanted) for f in plan.changes[0].fields] == [
        ("maxDeliveryCount", 2, 10)
    ]
    apply_topology(namespace, desired)
    after = client.queues.get(arm.resource_group, arm.namespace, "flow-cron").properties
    assert after is not None
    assert (after.max_delivery_count, after.enable_batched_operations) == (10, False)
    assert not plan_topology(namespace, desired).pending


def test_extras_are_left_alone_and_conflicts_block_apply(
    arm: ArmServiceBusFake,
    client: ServiceBusManagementClient,
    namespace: ArmNamespace,
    desired: Topology,
) -> None:
    rg, ns = arm.resource_group, arm.namespace
    client.queues.create_or_update(rg, ns, "legacy", SBQueue(properties=SBQueueProperties()))
    client.queues.create_or_update(
        rg, ns, "flow-cron", SBQueue(properties=SBQueueProperties(requires_session=True))
    )
    plan = plan_topology(namespace, desired)
    assert ExtraEntity(Kind.QUEUE, "legacy") in plan.extras
    (conflict,) = plan.conflicts
    assert {f.name for f in conflict.fields} == {"requiresDuplicateDetection", "requiresSession"}
    with pytest.raises(TopologyConflictError):
        apply_topology(namespace, desired)
    assert list(client.topics.list_by_namespace(rg, ns)) == []  # nothing was changed


def test_the_fake_refuses_what_arm_refuses(
    arm: ArmServiceBusFake, client: ServiceBusManagementClient
) -> None:
    rg, ns = arm.resource_group, arm.namespace
    client.queues.create_or_update(rg, ns, "q", SBQueue(properties=SBQueueProperties()))
    with pytest.raises(HttpResponseError, match="requiresSession"):
        client.queues.create_or_update(
            rg, ns, "q", SBQueue(properties=SBQueueProperties(requires_session=True))
        )
    with pytest.raises(ResourceNotFoundError):
        client.subscriptions.get(rg, ns, "no-such-topic", "s")
    old = ServiceBusManagementClient(
        arm.credential(),
        arm.subscription_id,
        base_url=arm.url,
        connection_verify=str(arm.ca_file),
        api_version="2000-01-01",
        retry_total=0,
    )
    with old, pytest.raises(HttpResponseError, match="InvalidApiVersionParameter"):
        old.queues.get(rg, ns, "q")


def test_a_refused_token_names_the_target_and_the_role_needed(
    arm: ArmServiceBusFake, desired: Topology
) -> None:
    mgmt = management_client(arm, FakeTokenCredential("stolen"))
    with mgmt, pytest.raises(TopologyAccessError) as caught:
        plan_topology(ArmNamespace(mgmt, arm.resource_group, arm.namespace), desired)
    message = str(caught.value)
    assert "cannot list topics in ARM namespace floworch-ns" in message
    assert "Contributor" in message


def test_cli_arm_mode_plan_apply_plan(
    arm: ArmServiceBusFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = arm.credential()
    # DefaultAzureCredential cannot work offline; the CLI's factory hands out the fake's token.
    monkeypatch.setattr(topology_cli, "_default_credential", lambda: credential)
    monkeypatch.delenv("FLOWORCH_SERVICEBUS_NAMESPACE", raising=False)
    args = [
        "--flows",
        str(EXAMPLES[0]),
        "--arm",
        "--subscription-id",
        arm.subscription_id,
        "--resource-group",
        arm.resource_group,
        "--namespace",
        f"{arm.namespace}.servicebus.windows.net",  # the ARM name is its first label
        "--arm-endpoint",
        arm.url,
        "--ca-file",
        str(arm.ca_file),
    ]
    runner = CliRunner()
    before = runner.invoke(topology_cli.topology_group, ["plan", *args])
    assert before.exit_code == 2, before.output
    assert "+ create subscription flow-steps/subscriptions/flow-hello" in before.output

    applied = runner.invoke(topology_cli.topology_group, ["apply", *args])
    assert applied.exit_code == 0, applied.output
    after = runner.invoke(topology_cli.topology_group, ["plan", *args])
    assert after.exit_code == 0, after.output
    assert "No changes" in after.output
    assert credential.scopes and all(s.endswith("/.default") for s in credential.scopes)

    missing = runner.invoke(
        topology_cli.topology_group, ["plan", "--flows", str(EXAMPLES[0]), "--arm"]
    )
    assert missing.exit_code == 1
    assert "--arm needs --subscription-id, --resource-group, --namespace-name" in missing.output
