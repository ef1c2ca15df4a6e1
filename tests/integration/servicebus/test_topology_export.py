"""``floworch topology export``: the repository's topology/servicebus.json is what the example
flows need, the emulator loads it, and a namespace built from it plans clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.servicebus.management import ServiceBusAdministrationClient
from click.testing import CliRunner

from floworch.cli.topology import topology_group
from floworch.emulator.topology import load_topology
from floworch.engine.flows import FlowRegistry
from floworch.model import load_flows_from_path
from floworch.runtime.servicebus.topology import (
    SCHEMA_ID,
    Topology,
    TopologyDocumentError,
    desired_topology,
    plan_topology,
    read_document,
    render_document,
    schema_file_for,
    schema_reference,
)
from floworch.runtime.servicebus.topology import document as document_module
from floworch.runtime.servicebus.topology.document import SCHEMA_FILE
from floworch.testing.servicebus import start_servicebus_emulator

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = (ROOT / "examples/hello/flow.yaml", ROOT / "examples/order_fulfilment/flow.json")
REPO_FILE = ROOT / "topology" / "servicebus.json"


@pytest.fixture
def desired() -> Topology:
    flows = [m for path in EXAMPLES for m in load_flows_from_path(path)]
    return desired_topology(FlowRegistry(flows))


def test_the_repository_file_is_what_export_writes_for_the_examples(desired: Topology) -> None:
    expected = render_document(desired, schema=schema_reference(REPO_FILE))
    assert REPO_FILE.read_text(encoding="utf-8") == expected, (
        "topology/servicebus.json is stale; regenerate it with "
        "`floworch topology export --flows <dir with the example manifests>`"
    )
    assert json.loads(expected)["$schema"] == "servicebus.schema.json"
    assert (REPO_FILE.parent / "servicebus.schema.json").read_text(encoding="utf-8") == (
        SCHEMA_FILE.read_text(encoding="utf-8")
    ), "topology/servicebus.schema.json is stale; rerun `floworch topology export`"


@pytest.mark.emulator
def test_the_emulator_loads_the_export_and_its_namespace_plans_clean(desired: Topology) -> None:
    loaded = load_topology(REPO_FILE)
    assert {q.name for q in loaded.queues} == {"flow-cron"}
    assert [(r.topic_name, r.subscription_name, r.name) for r in loaded.rules] == [
        ("flow-steps", "flow-hello", "flow"),
        ("flow-steps", "flow-order-fulfilment", "flow"),
        ("flow-triggers", "flow-hello", "flow"),
        ("flow-triggers", "flow-order-fulfilment", "flow"),
        ("flow-triggers", "unrouted", "unrouted"),
    ]
    assert read_document(REPO_FILE) == desired
    emulator = start_servicebus_emulator(REPO_FILE)
    try:
        with ServiceBusAdministrationClient.from_connection_string(
            emulator.management_connection_string,
            connection_verify=str(emulator.ca_file),
            retry_total=0,
        ) as admin:
            plan = plan_topology(admin, desired)
    finally:
        emulator.stop()
    assert not plan.pending, plan.changes
    assert plan.extras == ()


def test_cli_export_writes_checks_and_prints(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hello.yaml").write_bytes(EXAMPLES[0].read_bytes())
    (flows / "orders.yaml").write_text(
        "id: orders\nversion: '1'\n"
        "triggers: {in: {type: ServiceBus, queue: orders-in}}\n"
        "steps: {ship: {type: Ship}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "topology" / "servicebus.json"
    runner = CliRunner()
    written = runner.invoke(topology_group, ["export", "--flows", str(flows), "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert "2 topic(s), 5 subscription(s), 2 queue(s)" in written.output
    loaded = load_topology(out)  # relative $schema is ignored by the loader, kept for editors
    assert [q.name for q in loaded.queues] == ["flow-cron", "orders-in"]
    schema = json.loads(out.read_text(encoding="utf-8"))["$schema"]
    assert schema == "servicebus.schema.json"
    assert (out.parent / schema).read_bytes() == SCHEMA_FILE.read_bytes()

    fresh = runner.invoke(
        topology_group, ["export", "--flows", str(flows), "--out", str(out), "--check"]
    )
    assert fresh.exit_code == 0, fresh.output
    (flows / "more.yaml").write_text(
        "id: more\nversion: '1'\ntriggers: {m: {type: Manual}}\nsteps: {a: {type: A}}\n",
        encoding="utf-8",
    )
    stale = runner.invoke(
        topology_group, ["export", "--flows", str(flows), "--out", str(out), "--check"]
    )
    assert stale.exit_code == 1
    assert "out of date" in stale.output
    (flows / "more.yaml").unlink()
    (out.parent / schema).write_text("{}", encoding="utf-8")  # a floworch upgrade changed it
    old_schema = runner.invoke(
        topology_group, ["export", "--flows", str(flows), "--out", str(out), "--check"]
    )
    assert old_schema.exit_code == 1
    assert "servicebus.schema.json out of date" in old_schema.output

    with_id = runner.invoke(topology_group, ["export", "--flows", str(flows), "--out", "-"])
    assert json.loads(with_id.output)["$schema"] == SCHEMA_ID

    printed = runner.invoke(
        topology_group, ["export", "--flows", str(flows), "--out", "-", "--schema-ref", ""]
    )
    assert printed.exit_code == 0
    document = json.loads(printed.output)
    assert "$schema" not in document
    assert len(document["topics"][0]["subscriptions"]) == 2


@pytest.mark.emulator
def test_cli_plan_against_a_topology_file_needs_no_flows(tmp_path: Path) -> None:
    emulator = start_servicebus_emulator(REPO_FILE)
    try:
        result = CliRunner().invoke(
            topology_group,
            [
                "plan",
                "--topology-file",
                str(REPO_FILE),
                "--connection",
                emulator.management_connection_string,
                "--ca-file",
                str(emulator.ca_file),
            ],
        )
    finally:
        emulator.stop()
    assert result.exit_code == 0, result.output
    assert "No changes" in result.output


def test_a_file_that_is_not_json_says_where(tmp_path: Path) -> None:
    bad = tmp_path / "t.json"
    bad.write_text('{"queues": [', encoding="utf-8")
    with pytest.raises(
        TopologyDocumentError, match=r"(?s)t\.json: .*not valid JSON: .*\(line 1, column 13\)"
    ):
        read_document(bad)


def test_schema_reference_names_the_copy_beside_the_document(tmp_path: Path) -> None:
    assert SCHEMA_FILE.is_file()
    document = tmp_path / "topology" / "servicebus.json"
    assert schema_reference(document) == "servicebus.schema.json"
    assert schema_file_for(document) == tmp_path / "topology" / "servicebus.schema.json"
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))["$id"] == SCHEMA_ID


def test_export_check_passes_where_floworch_is_installed_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 9.18: the document is exported on a laptop (editable install) and checked in CI,
    # where floworch sits in site-packages. Nothing in it may depend on the install location.
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hello.yaml").write_bytes(EXAMPLES[0].read_bytes())
    out = tmp_path / "repo" / "topology" / "servicebus.json"
    args = ["export", "--flows", str(flows), "--out", str(out)]
    runner = CliRunner()
    assert runner.invoke(topology_group, args).exit_code == 0
    elsewhere = tmp_path / "ci" / "site-packages" / "floworch" / "emulator" / "topology.schema.json"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(SCHEMA_FILE.read_bytes())
    monkeypatch.setattr(document_module, "SCHEMA_FILE", elsewhere)
    checked = runner.invoke(topology_group, [*args, "--check"])
    assert checked.exit_code == 0, checked.output
