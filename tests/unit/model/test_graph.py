"""The compiled graph: entry, leaves, successors, order, instance-key lookup."""

from __future__ import annotations

from datetime import timedelta

import pytest

from floworch.errors import FlowValidationError, StepNotFoundError
from floworch.model import (
    DEFAULT_CONCURRENCY_LIMIT,
    FlowDefinition,
    RunAfterRule,
    StepStatus,
    UnknownStepKeyError,
    load_manifest,
    topological_order,
)

from .example_manifest import example


@pytest.fixture
def definition() -> FlowDefinition:
    return FlowDefinition.from_manifest(load_manifest(example()))


def test_root_scope(definition: FlowDefinition) -> None:
    root = definition.root
    assert list(root.steps) == ["fetch", "each", "approve", "ship", "notify"]
    assert root.entry == ("fetch",)
    assert root.leaves == ("ship", "notify")
    assert root.order == ("fetch", "each", "approve", "notify", "ship")
    assert root.steps["each"].successors == ("approve", "notify")
    assert root.steps["fetch"].successors == ("each",)


def test_step_nodes_are_precomputed(definition: FlowDefinition) -> None:
    ship = definition.root.steps["ship"]
    assert ship.path == "steps.ship"
    assert ship.timeout == timedelta(seconds=30)
    assert ship.retry is not None and ship.retry.max_attempts == 5
    rule = ship.predecessors["approve"]
    assert rule.statuses == frozenset({StepStatus.SUCCEEDED})
    assert rule.when is not None
    assert ship.step_references == frozenset({"approve"})
    notify = definition.root.steps["notify"]
    assert notify.predecessors["each"].statuses == {StepStatus.FAILED, StepStatus.TIMED_OUT}
    assert notify.predecessors["each"].when is None
    each = definition.root.steps["each"]
    assert each.concurrency_limit == 2
    assert each.for_each is not None and each.step_references == frozenset({"fetch"})
    assert definition.root.steps["fetch"].concurrency_limit == 1
    assert definition.run_timeout is None
    assert set(definition.triggers) == {"manual", "nightly", "orders"}


def test_for_each_body_is_a_scope(definition: FlowDefinition) -> None:
    body = definition.root.steps["each"].body
    assert body is not None
    assert body.entry == body.leaves == body.order == ("charge",)
    charge = body.steps["charge"]
    assert charge.path == "steps.each.steps.charge"
    assert charge.inputs.uses_item


def test_default_concurrency_limit_and_run_timeout() -> None:
    data = example()
    del data["steps"]["each"]["concurrencyLimit"]
    data["timeoutSeconds"] = 90
    definition = FlowDefinition.from_manifest(load_manifest(data))
    assert definition.root.steps["each"].concurrency_limit == DEFAULT_CONCURRENCY_LIMIT == 10
    assert definition.run_timeout == timedelta(seconds=90)


def test_instance_key_lookup(definition: FlowDefinition) -> None:
    assert definition.node("fetch").key == "fetch"
    assert definition.node("each.3.charge").path == "steps.each.steps.charge"
    assert definition.scope_of("fetch") == ("", definition.root)
    prefix, scope = definition.scope_of("each.3.charge")
    assert prefix == "each.3."
    assert scope is definition.root.steps["each"].body


def test_nested_loops() -> None:
    data = example()
    data["steps"]["each"]["steps"]["inner"] = {
        "type": "ForEach",
        "forEach": [1, 2],
        "steps": {"leaf": {"type": "Leaf", "inputs": "@item()"}},
        "runAfter": {"charge": []},
    }
    definition = FlowDefinition.from_manifest(load_manifest(data))
    assert definition.node("each.0.inner.3.leaf").path == "steps.each.steps.inner.steps.leaf"
    prefix, scope = definition.scope_of("each.0.inner.3.leaf")
    assert prefix == "each.0.inner.3."
    assert list(scope.steps) == ["leaf"]
    inner = definition.node("each.0.inner")
    assert inner.predecessors["charge"].statuses == frozenset()


@pytest.mark.parametrize(
    "key", ["nope", "each.charge", "each.x.charge", "each.-1.charge", "charge", "fetch.0.x", ""]
)
def test_unknown_instance_keys(definition: FlowDefinition, key: str) -> None:
    with pytest.raises(UnknownStepKeyError) as caught:
        definition.node(key)
    assert isinstance(caught.value, StepNotFoundError)
    assert caught.value.step_key == key
    assert str(caught.value).startswith(f"flow 'order-fulfilment' has no step {key!r}: ")


def test_run_after_rule_accepts() -> None:
    any_status = RunAfterRule(statuses=frozenset())
    assert any_status.accepts(StepStatus.SKIPPED)
    assert not any_status.accepts(StepStatus.RUNNING)
    only_failed = RunAfterRule(statuses=frozenset({StepStatus.FAILED}))
    assert only_failed.accepts(StepStatus.FAILED)
    assert not only_failed.accepts(StepStatus.SUCCEEDED)


def test_from_manifest_validates(definition: FlowDefinition) -> None:
    data = definition.manifest.to_dict()
    data["steps"]["fetch"]["runAfter"] = {"ship": []}
    from floworch.model import FlowManifest

    with pytest.raises(
        FlowValidationError, match="cycle: fetch -> ship -> approve -> each -> fetch"
    ):
        FlowDefinition.from_manifest(FlowManifest.model_validate(data))


def test_topological_order_breaks_ties_in_manifest_order() -> None:
    assert topological_order({"c": (), "b": ("c",), "a": ()}) == ("c", "a", "b")
    with pytest.raises(ValueError, match="cycle"):
        topological_order({"a": ("b",), "b": ("a",)})


def test_retry_delays() -> None:
    retry = load_manifest(example()).steps["ship"].retry
    assert retry is not None
    assert [retry.delay_before(n).total_seconds() for n in (2, 3, 4, 7, 8)] == [2, 4, 8, 60, 60]
