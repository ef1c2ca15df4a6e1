"""Manifest limits: every id and key fits its SQL column, every duration fits a datetime.

Issue 16 items 8 (limits aligned with the schema), 10 (durations) and 14 (``$`` before a newline).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from floworch import limits
from floworch.errors import FlowValidationError, ValidationIssue
from floworch.model import Flow, FlowDefinition, validate_manifest, validation

from .example_manifest import example


def issues_of(data: Any) -> list[ValidationIssue]:
    with pytest.raises(FlowValidationError) as caught:
        validate_manifest(data)
    return list(caught.value.issues)


def only_issue(data: Any) -> ValidationIssue:
    issues = issues_of(data)
    assert len(issues) == 1, issues
    return issues[0]


def segment(key: str) -> str:
    """How an issue path shows a key: as is, or as its repr when it holds control characters."""
    return key if key.isprintable() else repr(key)


def flow(**fields: Any) -> dict[str, Any]:
    return {"id": "f", "version": "1", "steps": {"a": {"type": "T"}}, **fields}


def with_step(key: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"id": "f", "version": "1", "steps": {key: spec}}


# --- item 14: keys that end in a newline, or hold NUL ------------------------------------------


@pytest.mark.parametrize("key", ["a\n", "a\x00", "a\r\n", "\na", "a b", "a.b", "a\u2028"])
def test_step_keys_with_control_characters_or_dots_are_refused(key: str) -> None:
    issue = only_issue(with_step(key, {"type": "T"}))
    assert issue.path == f"steps.{segment(key)}"
    assert "must start with a letter or '_'" in issue.message


def test_a_body_step_key_ending_in_a_newline_is_refused() -> None:
    data = example()
    data["steps"]["each"]["steps"]["charge\n"] = data["steps"]["each"]["steps"].pop("charge")
    issue = only_issue(data)
    assert issue.path == "steps.each.steps.'charge\\n'"  # a path stays on one line


def test_issue_paths_stay_on_one_line() -> None:
    data = with_step("a\n", {"type": "T", "bogus": 1, "runAfter": {"b\r": []}})
    data["triggers"] = {"t\n": {"type": "Manual", "extra": 1}}
    issues = issues_of(data)
    assert {issue.path for issue in issues} == {
        "steps.'a\\n'",
        "steps.'a\\n'.bogus",
        "steps.'a\\n'.runAfter.'b\\r'",
        "triggers.'t\\n'",
        "triggers.'t\\n'.extra",
    }
    assert all(str(issue).isprintable() for issue in issues)


@pytest.mark.parametrize("key", ["a\n", "a\x00", "", "-a", "a:b", "a/b", "é"])
def test_trigger_keys_are_checked(key: str) -> None:
    issue = only_issue(flow(triggers={key: {"type": "Manual"}}))
    assert issue.path == f"triggers.{segment(key)}"
    assert "trigger key" in issue.message


@pytest.mark.parametrize("key", ["manual", "nightly", "k-1", "order_42", "v1.2", "9am"])
def test_ordinary_trigger_keys_pass(key: str) -> None:
    assert key in validate_manifest(flow(triggers={key: {"type": "Manual"}})).triggers


@pytest.mark.parametrize(
    ("trigger", "field"),
    [
        ({"type": "Webhook", "slug": "a\n"}, "slug"),
        ({"type": "ServiceBus", "queue": "q\n"}, "queue"),
        ({"type": "ServiceBus", "queue": "q\x00"}, "queue"),
        ({"type": "ServiceBus", "queue": "-q"}, "queue"),
    ],
)
def test_trigger_names_ending_in_a_newline_are_refused(trigger: dict[str, Any], field: str) -> None:
    issue = only_issue(flow(triggers={"t": trigger}))
    assert issue.path == f"triggers.t.{field}"


_HEADER_FIELDS = ["signatureHeader", "timestampHeader", "deliveryIdHeader"]


@pytest.mark.parametrize("field", _HEADER_FIELDS)
@pytest.mark.parametrize(
    "name", ["X-Sig\n", "X-Sig\r\nX-Other: 1", "X\x00Sig", "X Sig", "X-Sig:", "\tX", "X-Sé"]
)
def test_webhook_header_names_must_be_http_tokens(field: str, name: str) -> None:
    hook = {"type": "Webhook", "slug": "s", "secretFrom": {"env": "S"}, field: name}
    issue = only_issue(flow(triggers={"h": hook}))
    assert issue.path == f"triggers.h.{field}"
    assert "must be an HTTP header name" in issue.message, issue.message


@pytest.mark.parametrize("field", _HEADER_FIELDS)
def test_ordinary_webhook_header_names_pass(field: str) -> None:
    for name in ("X-Hub-Signature-256", "Stripe-Signature", "x_custom.header~1", "H" * 100):
        hook = {"type": "Webhook", "slug": "s", "secretFrom": {"env": "S"}, field: name}
        assert validate_manifest(flow(triggers={"h": hook}))
    hook = {"type": "Webhook", "slug": "s", "secretFrom": {"env": "S"}, field: "H" * 101}
    assert "the limit is 100" in only_issue(flow(triggers={"h": hook})).message


@pytest.mark.parametrize("version", ["1\n", "1\x00", "\t1"])
def test_versions_with_control_characters_are_refused(version: str) -> None:
    issue = only_issue(flow(version=version))
    assert issue.path == "version"
    assert "printable" in issue.message


def test_step_types_with_control_characters_are_refused() -> None:
    issue = only_issue(with_step("a", {"type": "Charge\n"}))
    assert issue.path == "steps.a.type"
    assert "printable" in issue.message


@pytest.mark.parametrize("name", ["approval\n", "a\x00b"])
def test_literal_signal_names_with_control_characters_are_refused(name: str) -> None:
    data = with_step("w", {"type": "WaitForSignal", "inputs": {"signalName": name}})
    issue = only_issue(data)
    assert issue.path == "steps.w.inputs.signalName"
    assert "printable" in issue.message


# --- item 8: lengths agree with the SQL columns -------------------------------------------------


def test_a_flow_id_longer_than_its_column_is_refused() -> None:
    assert validate_manifest(flow(id="f" * limits.FLOW_ID_MAX_LENGTH))
    issue = only_issue(flow(id="f" * (limits.FLOW_ID_MAX_LENGTH + 1)))
    assert (issue.path, issue.message) == ("id", "must be at most 100 characters long")


def test_a_version_longer_than_its_column_is_refused() -> None:
    assert validate_manifest(flow(version="1" * limits.FLOW_VERSION_MAX_LENGTH))
    issue = only_issue(flow(version="1" * (limits.FLOW_VERSION_MAX_LENGTH + 1)))
    assert issue.path == "version"


def test_a_trigger_key_longer_than_its_column_is_refused() -> None:
    key = "t" * (limits.TRIGGER_KEY_MAX_LENGTH + 1)
    issue = only_issue(flow(triggers={key: {"type": "Manual"}}))
    assert issue.message == "trigger key is 101 characters long; the limit is 100"


def test_a_step_type_longer_than_its_column_is_refused() -> None:
    issue = only_issue(with_step("a", {"type": "T" * (limits.STEP_TYPE_MAX_LENGTH + 1)}))
    assert issue.path == "steps.a.type"


def test_a_step_key_longer_than_the_limit_is_refused() -> None:
    assert validate_manifest(with_step("k" * limits.STEP_KEY_MAX_LENGTH, {"type": "T"}))
    issue = only_issue(with_step("k" * (limits.STEP_KEY_MAX_LENGTH + 1), {"type": "T"}))
    assert issue.message == "step key is 81 characters long; the limit is 80"


def _nested(keys: list[str]) -> dict[str, Any]:
    """A flow of ForEach loops nested along ``keys``; the last key is a handler step."""
    spec: dict[str, Any] = {"type": "T"}
    for key in reversed(keys[1:]):
        spec = {"type": "ForEach", "forEach": [1], "steps": {key: spec}}
    return with_step(keys[0], spec) if len(keys) > 1 else with_step(keys[0], {"type": "T"})


def test_instance_keys_inside_foreach_loops_must_fit_the_step_key_column() -> None:
    # Three levels of 80-character keys: 80 + 7 + 80 + 7 + 80 = 254 characters at most.
    fits = [c * limits.STEP_KEY_MAX_LENGTH for c in "abc"]
    assert limits.instance_key_length(fits) <= limits.INSTANCE_KEY_MAX_LENGTH
    validate_manifest(_nested([*fits[:2], *fits[2:]]))
    too_long = [c * limits.STEP_KEY_MAX_LENGTH for c in "abcd"]
    issue = only_issue(_nested(too_long))
    a, b, c, d = too_long
    assert issue.path == f"steps.{a}.steps.{b}.steps.{c}.steps.{d}"
    assert "can be 341 characters long inside 3 ForEach loop(s); the limit is 300" in issue.message
    assert f"({a}.99999.{b}.99999.{c}.99999.{d})" in issue.message


def test_the_longest_instance_key_is_what_the_engine_builds() -> None:
    keys = ["outer", "inner", "child"]
    last = limits.MAX_FOR_EACH_ITEMS - 1
    built = f"outer.{last}.inner.{last}.child"
    assert limits.instance_key_length(keys) == len(built)


def test_a_literal_signal_name_longer_than_its_column_is_refused() -> None:
    name = "s" * (limits.SIGNAL_NAME_MAX_LENGTH + 1)
    issue = only_issue(with_step("w", {"type": "WaitForSignal", "inputs": {"signalName": name}}))
    assert issue.message == "signal name is 101 characters long; the limit is 100"


def test_a_signal_name_expression_is_checked_when_it_resolves_not_here() -> None:
    data = with_step("w", {"type": "WaitForSignal", "inputs": {"signalName": "@triggerBody().s"}})
    validate_manifest(data)


def test_a_cron_expression_longer_than_its_column_is_refused() -> None:
    cron = "0 " + ",".join(["1"] * 60) + " * * *"
    assert len(cron) > limits.CRON_EXPRESSION_MAX_LENGTH
    issue = only_issue(flow(triggers={"c": {"type": "Cron", "cron": cron}}))
    assert issue.path == "triggers.c.cron"
    assert "the limit is 100" in issue.message


def test_a_queue_name_longer_than_service_bus_allows_is_refused() -> None:
    queue = "q" * (limits.QUEUE_NAME_MAX_LENGTH + 1)
    issue = only_issue(flow(triggers={"t": {"type": "ServiceBus", "queue": queue}}))
    assert issue.path == "triggers.t.queue"


# --- item 10: durations -------------------------------------------------------------------------


_DURATION_PATHS = [
    "timeoutSeconds",
    "steps.a.timeoutSeconds",
    "steps.a.retry.initialIntervalSeconds",
    "steps.a.retry.maxIntervalSeconds",
    "steps.a.poll.intervalSeconds",
    "steps.a.poll.timeoutSeconds",
    "steps.a.inputs.timeoutSeconds",
    "steps.a.inputs.delaySeconds",
    "triggers.w.replayWindowSeconds",
]


def _with_duration(path: str, seconds: float) -> dict[str, Any]:
    """A valid manifest with the duration at ``path`` set to ``seconds``."""
    step: dict[str, Any] = {"type": "T"}
    data = with_step("a", step)
    if path == "timeoutSeconds":
        data["timeoutSeconds"] = seconds
    elif path == "steps.a.timeoutSeconds":
        step["timeoutSeconds"] = seconds
    elif path.startswith("steps.a.retry."):
        step["retry"] = {path.rsplit(".", 1)[1]: seconds}
    elif path.startswith("steps.a.poll."):
        step["poll"] = {"intervalSeconds": 1, path.rsplit(".", 1)[1]: seconds}
    elif path == "triggers.w.replayWindowSeconds":
        data["triggers"] = {"w": {"type": "Webhook", "slug": "w", "replayWindowSeconds": seconds}}
    elif path == "steps.a.inputs.timeoutSeconds":
        step.update(type="WaitForSignal", inputs={"signalName": "s", "timeoutSeconds": seconds})
    else:
        step.update(type="Delay", inputs={"delaySeconds": seconds})
    return data


@pytest.mark.parametrize("path", _DURATION_PATHS)
def test_every_duration_is_bounded(path: str) -> None:
    issue = only_issue(_with_duration(path, 1e20))
    assert issue.path == path
    assert "31622400 seconds (366 days)" in issue.message
    assert "1e+20" in issue.message


@pytest.mark.parametrize("path", _DURATION_PATHS)
def test_infinite_durations_are_refused(path: str) -> None:
    assert only_issue(_with_duration(path, float("inf"))).path == path


@pytest.mark.parametrize("path", _DURATION_PATHS)
def test_the_longest_duration_is_accepted_and_compiles(path: str) -> None:
    manifest = validate_manifest(_with_duration(path, limits.MAX_DURATION_SECONDS))
    assert FlowDefinition.from_manifest(manifest).id == "f"


def test_a_run_timeout_of_1e20_seconds_no_longer_overflows_when_compiled() -> None:
    # Before: validation passed and FlowDefinition.from_manifest raised OverflowError.
    with pytest.raises(FlowValidationError):
        FlowDefinition.from_manifest(validate_manifest(flow(timeoutSeconds=1e20)))


def test_the_builder_checks_durations_too() -> None:
    builder = Flow("f")
    builder.step("a", "T", timeout=timedelta(days=400))
    with pytest.raises(FlowValidationError) as caught:
        builder.build()
    assert [issue.path for issue in caught.value.issues] == ["steps.a.timeoutSeconds"]


def test_retry_delays_never_exceed_the_longest_duration() -> None:
    policy = validate_manifest(
        with_step("a", {"type": "T", "retry": {"maxAttempts": 100, "backoffCoefficient": 1e6}})
    ).steps["a"]
    assert policy.retry is not None
    delay = policy.retry.delay_before(100)
    assert delay == limits.MAX_DURATION
    assert datetime.now(UTC) + delay > datetime.now(UTC)  # no OverflowError


def test_attempt_counts_are_bounded() -> None:
    data = with_step("a", {"type": "T", "retry": {"maxAttempts": 10**12}})
    issue = only_issue(data)
    assert issue.path == "steps.a.retry.maxAttempts"
    assert "<= 10000" in issue.message


def test_a_delay_until_a_time_that_overflows_in_utc_is_refused() -> None:
    data = with_step("a", {"type": "Delay", "inputs": {"until": "9999-12-31T23:59:59-01:00"}})
    issue = only_issue(data)
    assert issue.path == "steps.a.inputs.until"
    assert "out of range" in issue.message


def test_the_example_still_validates() -> None:
    validate_manifest(copy.deepcopy(example()))


# --- item 6: expressions too big to check -------------------------------------------------------


def test_a_350_kb_expression_is_one_located_issue() -> None:
    data = with_step("a", {"type": "T", "inputs": {"x": "@triggerBody()" + ".a" * 175_000}})
    issue = only_issue(data)
    assert issue.path == "steps.a.inputs.x"
    assert issue.message.startswith("expression is longer than 8192 characters at column 2")


def test_a_when_clause_too_long_is_located_at_its_rule() -> None:
    data = flow()
    data["steps"]["b"] = {
        "type": "T",
        "runAfter": {"a": {"when": " || ".join(["@triggerBody().ok == true"] * 400)}},
    }
    issue = only_issue(data)
    assert issue.path == "steps.b.runAfter.a.when"
    assert "longer than 8192 characters" in issue.message


@pytest.mark.parametrize("error", [MemoryError(), RecursionError("too deep"), KeyError("bug")])
def test_validation_never_passes_when_an_expression_could_not_be_checked(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def fail(value: object) -> object:
        raise error

    monkeypatch.setattr(validation, "compile_value_errors", fail)
    issue = only_issue(with_step("a", {"type": "T", "inputs": {"x": "@triggerBody()"}}))
    assert issue.path == "steps.a.inputs"
    assert issue.message.startswith("this expression could not be checked")


def test_validation_never_passes_when_a_when_clause_could_not_be_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(text: str) -> object:
        raise MemoryError

    monkeypatch.setattr(validation, "compile_condition", fail)
    data = flow()
    data["steps"]["b"] = {"type": "T", "runAfter": {"a": {"when": "@triggerBody().ok"}}}
    issue = only_issue(data)
    assert issue.path == "steps.b.runAfter.a.when"
    assert "(ran out of memory)" in issue.message
