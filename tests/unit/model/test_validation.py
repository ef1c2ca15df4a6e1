"""validate_manifest: every rule, each error located by its manifest path."""

from __future__ import annotations

from typing import Any

import pytest

from floworch.errors import FlowValidationError, ValidationIssue
from floworch.model import FlowManifest, validate_manifest

from .example_manifest import example

HANDLERS = ["FetchOrders", "Charge", "Ship", "Notify"]


def issues_of(data: Any, **kwargs: Any) -> list[ValidationIssue]:
    with pytest.raises(FlowValidationError) as caught:
        validate_manifest(data, **kwargs)
    return list(caught.value.issues)


def only_issue(data: Any, **kwargs: Any) -> ValidationIssue:
    issues = issues_of(data, **kwargs)
    assert len(issues) == 1, issues
    return issues[0]


def test_the_example_is_valid() -> None:
    manifest = validate_manifest(example(), step_types=HANDLERS)
    assert isinstance(manifest, FlowManifest)
    assert manifest.steps["ship"].run_after["approve"].when == (
        "@steps('approve').output.approved == true"
    )
    assert manifest.steps["each"].run_after["fetch"].statuses == ["Succeeded"]


def test_a_numeric_version_becomes_text() -> None:
    data = example()
    data["version"] = 2
    assert validate_manifest(data).version == "2"


def test_unknown_predecessor_suggests_the_closest_step() -> None:
    data = example()
    data["steps"]["ship"]["runAfter"] = {"aprove": ["Succeeded"]}
    issue = only_issue(data)
    assert issue.path == "steps.ship.runAfter.aprove"
    assert issue.message == "no step named 'aprove' (did you mean 'approve'?)"


def test_cycle_is_named_at_its_first_step() -> None:
    data = example()
    steps = data["steps"]
    steps["a"] = {"type": "X", "runAfter": {"b": []}}
    steps["b"] = {"type": "X", "runAfter": {"c": []}}
    steps["c"] = {"type": "X", "runAfter": {"a": []}}
    issue = only_issue(data)
    assert issue.path == "steps.a"
    assert issue.message.startswith("cycle: a -> b -> c -> a")


def test_step_depending_on_itself() -> None:
    data = example()
    data["steps"]["ship"]["runAfter"]["ship"] = ["Failed"]
    issue = only_issue(data)
    assert issue.path == "steps.ship.runAfter.ship"
    assert issue.message == "step 'ship' cannot run after itself"


def test_unknown_step_type_lists_registered_types() -> None:
    data = example()
    data["steps"]["ship"]["type"] = "Shp"
    issue = only_issue(data, step_types=HANDLERS)
    assert issue.path == "steps.ship.type"
    assert issue.message == (
        "unknown step type 'Shp' (did you mean 'Ship'?); registered: Charge, FetchOrders, "
        "Notify, Ship; built-in: Delay, ForEach, WaitForSignal"
    )


def test_step_types_are_not_checked_without_a_registry() -> None:
    data = example()
    data["steps"]["ship"]["type"] = "Anything"
    assert validate_manifest(data).steps["ship"].type == "Anything"


def test_bad_cron_says_why() -> None:
    data = example()
    data["triggers"]["nightly"]["cron"] = "0 2 * *"
    issue = only_issue(data)
    assert issue.path == "triggers.nightly.cron"
    assert issue.message == (
        "cron expression '0 2 * *' has 4 fields; expected 5 (minute hour day month weekday) "
        "or 6 (seconds first)"
    )


def test_out_of_range_cron_field() -> None:
    data = example()
    data["triggers"]["nightly"]["cron"] = "61 * * * *"
    issue = only_issue(data)
    assert issue.path == "triggers.nightly.cron"
    assert issue.message.startswith("invalid cron expression '61 * * * *': ")


def test_six_field_cron_has_seconds_first() -> None:
    data = example()
    data["triggers"]["nightly"]["cron"] = "30 0 2 * * *"
    validate_manifest(data)
    data["triggers"]["nightly"]["cron"] = "0 2 * * * 61"  # seconds last is not accepted
    assert only_issue(data).path == "triggers.nightly.cron"


def test_unknown_time_zone() -> None:
    data = example()
    data["triggers"]["nightly"]["timezone"] = "Mars/Olympus"
    issue = only_issue(data)
    assert issue.path == "triggers.nightly.timezone"
    assert issue.message == "unknown time zone 'Mars/Olympus' (use an IANA name such as 'UTC')"


def test_malformed_expression_has_column_and_path_inside_inputs() -> None:
    data = example()
    data["steps"]["fetch"]["inputs"] = {"customer": "@triggerBody()?.", "list": ["ok", "@steps("]}
    issues = issues_of(data)
    assert [issue.path for issue in issues] == [
        "steps.fetch.inputs.customer",
        "steps.fetch.inputs.list[1]",
    ]
    assert issues[0].message.startswith("unexpected end of expression at column 17")


def test_malformed_when_clause() -> None:
    data = example()
    data["steps"]["ship"]["runAfter"]["approve"]["when"] = "@steps('approve').output.ok =="
    issue = only_issue(data)
    assert issue.path == "steps.ship.runAfter.approve.when"
    assert "at column" in issue.message


def test_unknown_field_suggests_the_right_name() -> None:
    data = example()
    data["steps"]["ship"]["timeoutSecond"] = 5
    issue = only_issue(data)
    assert issue.path == "steps.ship.timeoutSecond"
    assert issue.message == "unknown field 'timeoutSecond' (did you mean 'timeoutSeconds'?)"


def test_unknown_field_in_a_trigger() -> None:
    data = example()
    data["triggers"]["nightly"]["timeZone"] = "UTC"
    issue = only_issue(data)
    assert issue.path == "triggers.nightly.timeZone"
    assert issue.message == "unknown field 'timeZone' (did you mean 'timezone'?)"


def test_unknown_trigger_type() -> None:
    data = example()
    data["triggers"]["manual"]["type"] = "Manul"
    issue = only_issue(data)
    assert issue.path == "triggers.manual.type"
    assert issue.message.startswith("unknown trigger type 'Manul' (did you mean 'Manual'?)")


def test_body_step_cannot_run_after_a_step_outside_the_loop() -> None:
    data = example()
    data["steps"]["each"]["steps"]["charge"]["runAfter"] = {"fetch": ["Succeeded"]}
    issue = only_issue(data)
    assert issue.path == "steps.each.steps.charge.runAfter.fetch"
    assert issue.message == (
        "step 'fetch' is outside this ForEach body (steps.fetch); a body step can only run "
        "after steps of the same body"
    )


def test_top_level_step_cannot_run_after_a_body_step() -> None:
    data = example()
    data["steps"]["notify"]["runAfter"] = {"charge": ["Failed"]}
    issue = only_issue(data)
    assert issue.path == "steps.notify.runAfter.charge"
    assert issue.message == (
        "step 'charge' is inside the ForEach body of 'each' (steps.each.steps.charge); steps "
        "outside that body cannot run after it"
    )


def test_body_steps_may_run_after_each_other() -> None:
    data = example()
    data["steps"]["each"]["steps"]["receipt"] = {"type": "Mail", "runAfter": {"charge": []}}
    validate_manifest(data)


def test_for_each_field_on_another_step_type() -> None:
    data = example()
    data["steps"]["ship"]["forEach"] = [1, 2]
    issue = only_issue(data)
    assert issue.path == "steps.ship.forEach"
    assert issue.message == "'forEach' is only allowed on ForEach steps (this step is a 'Ship')"


def test_for_each_needs_items_and_a_body() -> None:
    data = example()
    del data["steps"]["each"]["forEach"]
    data["steps"]["each"]["steps"] = {}
    issues = issues_of(data)
    assert [(issue.path, issue.message) for issue in issues] == [
        ("steps.each.forEach", "a ForEach step needs 'forEach': an expression or a list"),
        ("steps.each.steps", "a ForEach step needs a non-empty 'steps' map (its body)"),
    ]


def test_wait_for_signal_needs_a_signal_name() -> None:
    data = example()
    data["steps"]["approve"]["inputs"] = {"timeoutSeconds": -1}
    issues = issues_of(data)
    assert [(issue.path, issue.message) for issue in issues] == [
        ("steps.approve.inputs.signalName", "WaitForSignal needs a non-empty string signalName"),
        ("steps.approve.inputs.timeoutSeconds", "must be > 0 (got -1)"),
    ]


@pytest.mark.parametrize(
    ("inputs", "path", "message"),
    [
        (
            {},
            "steps.wait.inputs",
            "a Delay step needs exactly one of inputs.delaySeconds and inputs.until",
        ),
        (
            {"delaySeconds": 1, "until": "2030-01-01T00:00:00Z"},
            "steps.wait.inputs",
            "a Delay step needs exactly one of inputs.delaySeconds and inputs.until",
        ),
        ({"delaySeconds": -1}, "steps.wait.inputs.delaySeconds", "must be >= 0 (got -1)"),
        (
            {"until": "tomorrow"},
            "steps.wait.inputs.until",
            "must be an ISO 8601 timestamp or an expression (got 'tomorrow')",
        ),
    ],
)
def test_delay_inputs(inputs: dict[str, Any], path: str, message: str) -> None:
    data = example()
    data["steps"]["wait"] = {"type": "Delay", "inputs": inputs}
    issue = only_issue(data)
    assert (issue.path, issue.message) == (path, message)


@pytest.mark.parametrize(
    "inputs",
    [
        {"delaySeconds": 0},
        {"delaySeconds": "@triggerBody()?.wait"},
        {"until": "2030-01-01T00:00:00Z"},
        {"until": "@triggerBody()?.at"},
    ],
)
def test_valid_delay_inputs(inputs: dict[str, Any]) -> None:
    data = example()
    data["steps"]["wait"] = {"type": "Delay", "inputs": inputs}
    validate_manifest(data)


@pytest.mark.parametrize(
    ("where", "value", "path", "message"),
    [
        (
            ("steps", "ship", "retry", "maxAttempts"),
            0,
            "steps.ship.retry.maxAttempts",
            "must be >= 1 (got 0)",
        ),
        (
            ("steps", "ship", "retry", "backoffCoefficient"),
            0.5,
            "steps.ship.retry.backoffCoefficient",
            "must be >= 1 (got 0.5)",
        ),
        (
            ("steps", "ship", "retry", "maxIntervalSeconds"),
            1,
            "steps.ship.retry.maxIntervalSeconds",
            "maxIntervalSeconds (1) must be >= initialIntervalSeconds (2)",
        ),
        (
            ("steps", "ship", "timeoutSeconds"),
            0,
            "steps.ship.timeoutSeconds",
            "must be > 0 (got 0)",
        ),
        (
            ("steps", "each", "concurrencyLimit"),
            0,
            "steps.each.concurrencyLimit",
            "must be >= 1 (got 0)",
        ),
        (("timeoutSeconds",), -5, "timeoutSeconds", "must be > 0 (got -5)"),
    ],
)
def test_out_of_range_numbers(
    where: tuple[str, ...], value: object, path: str, message: str
) -> None:
    data = example()
    target = data
    for part in where[:-1]:
        target = target[part]
    target[where[-1]] = value
    issue = only_issue(data)
    assert (issue.path, issue.message) == (path, message)


def test_wrong_types_are_reported_in_manifest_terms() -> None:
    data = example()
    data["enabled"] = "yes"
    data["steps"]["ship"]["retry"]["maxAttempts"] = "5"
    issues = issues_of(data)
    assert [(issue.path, issue.message) for issue in issues] == [
        ("enabled", "must be true or false (got string)"),
        ("steps.ship.retry.maxAttempts", "must be an integer (got string)"),
    ]


def test_bad_status_name() -> None:
    data = example()
    data["steps"]["notify"]["runAfter"]["each"] = ["Faild"]
    issue = only_issue(data)
    assert issue.path == "steps.notify.runAfter.each.statuses[0]"
    assert issue.message.endswith("(got 'Faild') (did you mean 'Failed'?)")


def test_reference_to_an_unknown_step_in_an_expression() -> None:
    data = example()
    data["steps"]["ship"]["inputs"] = {"who": "@steps('fech').output.name"}
    issue = only_issue(data)
    assert issue.path == "steps.ship.inputs.who"
    assert issue.message == "steps('fech'): no step named 'fech' (did you mean 'fetch'?)"


def test_reference_to_a_body_step_from_outside() -> None:
    data = example()
    data["steps"]["ship"]["inputs"] = {"paid": "@steps('charge').output"}
    issue = only_issue(data)
    assert issue.path == "steps.ship.inputs.paid"
    assert issue.message == (
        "steps('charge') refers to a step inside the ForEach body of 'each', which is not "
        "visible here"
    )


def test_body_steps_see_outer_steps_in_expressions() -> None:
    data = example()
    data["steps"]["each"]["steps"]["charge"]["inputs"]["who"] = "@steps('fetch').output.name"
    validate_manifest(data)


def test_item_outside_a_loop() -> None:
    data = example()
    data["steps"]["ship"]["inputs"] = {"order": "@item()"}
    issue = only_issue(data)
    assert (issue.path, issue.message) == (
        "steps.ship.inputs.order",
        "item() and index() are only available inside a ForEach body",
    )


def test_step_keys_cannot_hold_dots() -> None:
    data = example()
    data["steps"]["a.b"] = {"type": "X"}
    issue = only_issue(data)
    assert issue.path == "steps.a.b"
    assert issue.message.startswith("step key 'a.b' must start with a letter or '_'")


def test_body_keys_cannot_shadow_outer_keys() -> None:
    data = example()
    data["steps"]["each"]["steps"]["fetch"] = {"type": "X"}
    issue = only_issue(data)
    assert issue.path == "steps.each.steps.fetch"
    assert issue.message.startswith("step key 'fetch' is already used by steps.fetch")


def test_missing_and_empty_required_fields() -> None:
    issues = issues_of({"id": "x", "steps": {}})
    assert [(issue.path, issue.message) for issue in issues] == [
        ("version", "required field is missing"),
        ("steps", "must not be empty"),
    ]


def test_manifest_must_be_an_object() -> None:
    issue = only_issue([1, 2])
    assert issue.path == ""
    assert issue.message == "must be an object (got array)"


def test_every_error_is_reported_together() -> None:
    data = example()
    data["id"] = "bad id"
    data["triggers"]["nightly"]["cron"] = "nope"
    data["steps"]["fetch"]["inputs"]["customer"] = "@triggerBody()?."
    data["steps"]["ship"]["runAfter"] = {"aprove": []}
    data["steps"]["ship"]["retry"]["maxAttempts"] = 0
    data["steps"]["notify"]["typo"] = 1
    data["steps"]["approve"]["forEach"] = "@x"
    issues = issues_of(data, step_types=["FetchOrders", "Charge", "Ship"])
    paths = [issue.path for issue in issues]
    assert sorted(paths) == sorted(
        [
            "id",
            "triggers.nightly.cron",
            "steps.fetch.inputs.customer",
            "steps.ship.runAfter.aprove",
            "steps.ship.retry.maxAttempts",
            "steps.notify.typo",
            "steps.notify.type",
            "steps.approve.forEach",
            "steps.approve.forEach",
        ]
    )


def test_the_error_names_its_source() -> None:
    with pytest.raises(FlowValidationError) as caught:
        validate_manifest({"id": "x"}, source="flows/x.json")
    assert caught.value.source == "flows/x.json"
    assert str(caught.value).startswith("flows/x.json: invalid flow manifest (2 errors):")


def test_a_manifest_model_is_checked_for_semantic_rules() -> None:
    data = example()
    data["steps"]["ship"]["runAfter"] = {"nowhere": []}
    model = FlowManifest.model_validate(data)  # shapes only
    issue = only_issue(model)
    assert issue.path == "steps.ship.runAfter.nowhere"


def test_a_self_containing_dict_is_reported_not_crashed_on() -> None:
    data = example()
    data["steps"]["fetch"]["inputs"]["me"] = data
    issue = only_issue(data)
    assert issue.message == "the manifest contains itself (a reference cycle)"
