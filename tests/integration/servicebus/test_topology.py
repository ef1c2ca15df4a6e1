"""The topology manager against the local emulator's management API (real HTTPS, real SDK):
apply, idempotence, drift, extras, conflicts, errors, and the CLI with its exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import (
    CorrelationRuleFilter,
    ServiceBusAdministrationClient,
    TrueRuleFilter,
)

from floworch.cli.main import run_cli
from floworch.emulator import ServiceBusEmulator
from floworch.engine.flows import FlowRegistry
from floworch.model import load_flows_from_path
from floworch.runtime.servicebus.config import ServiceBusConnection, ServiceBusSettings
from floworch.runtime.servicebus.topology import (
    Action,
    ExtraEntity,
    Kind,
    Topology,
    TopologyAccessError,
    TopologyConflictError,
    TopologySettings,
    apply_topology,
    desired_topology,
    plan_topology,
)
from floworch.runtime.servicebus.topology.admin import AdminNamespace, apply_to_connection
from floworch.testing.servicebus import start_servicebus_emulator

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = (ROOT / "examples/hello/flow.yaml", ROOT / "examples/order_fulfilment/flow.json")
STEPS = "flow-steps"


@pytest.fixture
def emulator() -> Iterator[ServiceBusEmulator]:
    emu = start_servicebus_emulator()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def admin(emulator: ServiceBusEmulator) -> Iterator[ServiceBusAdministrationClient]:
    with ServiceBusAdministrationClient.from_connection_string(
        emulator.management_connection_string,
        connection_verify=str(emulator.ca_file),
        retry_total=0,
    ) as client:
        yield client


@pytest.fixture
def desired() -> Topology:
    flows = [m for path in EXAMPLES for m in load_flows_from_path(path)]
    return desired_topology(FlowRegistry(flows))


def test_apply_creates_everything_and_routes_each_flows_steps(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient, desired: Topology
) -> None:
    plan = apply_topology(admin, desired)
    assert plan.count(Action.CREATE) == 8  # 1 queue, 2 topics, 2 + 3 subscriptions
    assert plan.count(Action.ADD) == 5 and plan.count(Action.REMOVE) == 5  # their rules / $Default

    assert admin.get_topic(STEPS).requires_duplicate_detection is True
    cron = admin.get_queue("flow-cron")
    assert (cron.requires_duplicate_detection, cron.max_delivery_count) == (True, 10)
    assert cron.dead_lettering_on_message_expiration is True
    sub = admin.get_subscription(STEPS, "flow-hello")
    assert (sub.lock_duration, sub.max_delivery_count) == (timedelta(minutes=1), 10)
    (rule,) = list(admin.list_rules(STEPS, "flow-hello"))
    assert rule.name == "flow"
    assert isinstance(rule.filter, CorrelationRuleFilter)
    assert rule.filter.properties == {"FlowId": "hello"}

    # The rules really route: a step of "hello" reaches only hello's subscription.
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_topic_sender(STEPS) as sender:
            sender.send_messages(
                ServiceBusMessage(
                    b"{}", message_id="r:greet:1", application_properties={"FlowId": "hello"}
                )
            )
        with client.get_subscription_receiver(STEPS, "flow-hello", max_wait_time=10) as receiver:
            (got,) = receiver.receive_messages(max_message_count=1, max_wait_time=10)
            assert got.message_id == "r:greet:1"
            receiver.complete_message(got)
        with client.get_subscription_receiver(STEPS, "flow-order-fulfilment") as receiver:
            assert receiver.peek_messages(max_message_count=5) == []
        # Triggers too; what no flow routes reaches "unrouted" instead of being dropped.
        with client.get_topic_sender("flow-triggers") as sender:
            for message_id, flow_id in (("t-hello", "hello"), ("t-ghost", "x")):
                sender.send_messages(
                    ServiceBusMessage(
                        b"{}", message_id=message_id, application_properties={"FlowId": flow_id}
                    )
                )
            sender.send_messages(ServiceBusMessage(b"{}", message_id="t-none"))
        for subscription, expected in (
            ("flow-hello", ["t-hello"]),
            ("flow-order-fulfilment", []),
            ("unrouted", ["t-ghost", "t-none"]),
        ):
            with client.get_subscription_receiver("flow-triggers", subscription) as receiver:
                peeked = receiver.peek_messages(max_message_count=5)
                assert sorted(str(m.message_id) for m in peeked) == expected, subscription


def test_a_second_apply_changes_nothing(
    admin: ServiceBusAdministrationClient, desired: Topology
) -> None:
    apply_topology(admin, desired)
    again = apply_topology(admin, desired)
    assert not again.pending, again.changes
    assert not plan_topology(admin, desired).pending


def test_plan_shows_manual_drift_and_apply_repairs_it(
    admin: ServiceBusAdministrationClient, desired: Topology
) -> None:
    apply_topology(admin, desired)
    sub = admin.get_subscription(STEPS, "flow-hello")
    sub.max_delivery_count = 3
    admin.update_subscription(STEPS, sub)
    admin.delete_rule(STEPS, "flow-hello", "flow")
    admin.create_rule(STEPS, "flow-order-fulfilment", "$Default", filter=TrueRuleFilter())
    queue = admin.get_queue("flow-cron")
    queue.lock_duration = timedelta(seconds=20)
    admin.update_queue(queue)

    plan = plan_topology(admin, desired)
    summary = [
        (c.action, c.path, [(f.name, f.current, f.wanted) for f in c.fields]) for c in plan.changes
    ]
    assert summary == [
        (
            Action.UPDATE,
            "flow-cron",
            [("lockDuration", timedelta(seconds=20), timedelta(minutes=1))],
        ),
        (Action.UPDATE, f"{STEPS}/subscriptions/flow-hello", [("maxDeliveryCount", 3, 10)]),
        (Action.ADD, f"{STEPS}/subscriptions/flow-hello/rules/flow", []),
        (Action.REMOVE, f"{STEPS}/subscriptions/flow-order-fulfilment/rules/$Default", []),
    ]

    apply_topology(admin, desired)
    assert not plan_topology(admin, desired).pending
    assert admin.get_subscription(STEPS, "flow-hello").max_delivery_count == 10
    assert [r.name for r in admin.list_rules(STEPS, "flow-order-fulfilment")] == ["flow"]


def test_extra_entities_are_reported_and_left_alone(
    admin: ServiceBusAdministrationClient, desired: Topology
) -> None:
    admin.create_queue("legacy-orders")
    admin.create_topic("audit-events")
    apply_topology(admin, desired)
    admin.create_subscription(STEPS, "debug-tap")

    plan = apply_topology(admin, desired)
    assert not plan.pending
    assert set(plan.extras) == {
        ExtraEntity(Kind.QUEUE, "legacy-orders"),
        ExtraEntity(Kind.TOPIC, "audit-events"),
        ExtraEntity(Kind.SUBSCRIPTION, f"{STEPS}/subscriptions/debug-tap"),
    }
    assert any("debug-tap" in w and "every step message" in w for w in plan.warnings)
    assert admin.get_queue("legacy-orders").name == "legacy-orders"
    assert [r.name for r in admin.list_rules(STEPS, "debug-tap")] == ["$Default"]
    assert plan.capacity[0].operations_per_step == 3 + 3


def test_a_setting_service_bus_cannot_change_blocks_apply(
    admin: ServiceBusAdministrationClient, desired: Topology
) -> None:
    admin.create_queue("flow-cron", requires_duplicate_detection=False)
    plan = plan_topology(admin, desired)
    (conflict,) = plan.conflicts
    assert (conflict.kind, conflict.path) == (Kind.QUEUE, "flow-cron")
    with pytest.raises(TopologyConflictError, match="requiresDuplicateDetection: false -> true"):
        apply_topology(admin, desired)
    assert [t.name for t in admin.list_topics()] == []  # nothing was changed


def test_a_refused_key_names_the_namespace_and_the_rights_needed(
    emulator: ServiceBusEmulator, desired: Topology
) -> None:
    wrong = emulator.management_connection_string.replace("SAS_KEY_VALUE", "not-the-key")
    with ServiceBusAdministrationClient.from_connection_string(
        wrong, connection_verify=str(emulator.ca_file), retry_total=0
    ) as client:
        backend = AdminNamespace(client)
        with pytest.raises(TopologyAccessError) as caught:
            plan_topology(backend, desired)
    assert caught.value.target == backend.target
    assert "cannot list topics in sb://127.0.0.1" in str(caught.value)
    assert "Manage rights" in str(caught.value)


def test_apply_to_connection_uses_the_runtimes_entity_names(
    emulator: ServiceBusEmulator, admin: ServiceBusAdministrationClient
) -> None:
    flows = load_flows_from_path(EXAMPLES[0])
    runtime = ServiceBusSettings(steps_topic="steps-x", cron_queue="cron-x", triggers_topic="in-x")
    connection = ServiceBusConnection(connection_string=emulator.management_connection_string)
    settings = TopologySettings.for_runtime(runtime, max_delivery_count=5)
    plan = apply_to_connection(connection, flows, settings, ca_file=str(emulator.ca_file))
    assert plan.count(Action.CREATE) == 6
    assert sorted(q.name for q in admin.list_queues()) == ["cron-x"]
    assert sorted(t.name for t in admin.list_topics()) == ["in-x", "steps-x"]
    assert admin.get_subscription("steps-x", "flow-hello").max_delivery_count == 5
    again = apply_to_connection(connection, flows, settings, ca_file=str(emulator.ca_file))
    assert not again.pending


# --- the CLI, as a process (exit codes are part of the contract) -------------------------------


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def floworch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Ran]:
    """Runs ``floworch topology ARGS`` as the ``floworch`` script does (run_cli: exit code,
    one-line errors), in this process: a subprocess costs seconds of start-up each, and
    tests/acceptance/test_emulator_cli.py runs ``topology plan`` as a real process."""
    for name in [k for k in os.environ if k.startswith("FLOWORCH_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Ran:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_cli(["topology", *args])
        return Ran(code, out.getvalue(), err.getvalue())

    return run


def test_cli_plan_apply_plan_exit_codes(
    emulator: ServiceBusEmulator, tmp_path: Path, floworch: Callable[..., Ran]
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    for path in EXAMPLES:
        (flows / path.name.replace("flow", path.parent.name)).write_bytes(path.read_bytes())
    target = [
        "--flows",
        str(flows),
        "--connection",
        emulator.management_connection_string,
        "--ca-file",
        str(emulator.ca_file),
    ]

    before = floworch("plan", *target)
    assert before.returncode == 2, before.stderr
    assert "+ create topic flow-steps" in before.stdout
    assert "Plan: 8 to create, 5 rules to add, 5 rules to remove." in before.stdout
    assert "1 send + 1 receive + 1 complete + 2 filter evaluations" in before.stdout

    applied = floworch("apply", *target)
    assert applied.returncode == 0, applied.stderr
    assert "create queue flow-cron" in applied.stdout
    assert "Applied to sb://127.0.0.1" in applied.stdout

    after = floworch("plan", *target, "--json")
    assert after.returncode == 0, after.stderr
    data = json.loads(after.stdout)
    assert (data["pending"], data["changes"]) == (False, [])
    assert data["capacity"][0]["operationsPerStep"] == 5


def test_cli_plan_errors_exit_1_so_that_2_only_means_pending(
    emulator: ServiceBusEmulator, floworch: Callable[..., Ran]
) -> None:
    no_flows = floworch("plan", "--connection", emulator.management_connection_string)
    assert no_flows.returncode == 1
    assert "--flows PATH or FLOWORCH_FLOWS" in no_flows.stderr

    bad_option = floworch("plan", "--no-such-option")
    assert bad_option.returncode == 1

    untrusted = floworch(
        "plan",
        "--flows",
        str(EXAMPLES[0]),
        "--connection",
        emulator.management_connection_string,
    )  # no --ca-file: the emulator's certificate is not trusted
    assert untrusted.returncode == 1
    assert "error: cannot list topics in sb://127.0.0.1" in untrusted.stderr
    assert "--ca-file" in untrusted.stderr
