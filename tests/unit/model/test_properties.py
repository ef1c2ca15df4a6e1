"""Arbitrary input never crashes validation or loading: a model or a FlowValidationError."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floworch.errors import FlowValidationError
from floworch.model import FlowDefinition, FlowManifest, load_manifest, validate_manifest

from .example_manifest import example

FIELD_NAMES = [
    "id", "version", "steps", "triggers", "type", "runAfter", "inputs", "forEach", "steps",
    "concurrencyLimit", "retry", "maxAttempts", "when", "statuses", "cron", "timeoutSeconds",
    "signalName", "delaySeconds", "until", "poll", "intervalSeconds", "ForEach", "Delay",
    "WaitForSignal", "Cron", "Manual", "Webhook", "slug", "Succeeded", "a", "b",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(FIELD_NAMES),
    st.sampled_from(["@steps('a').output", "@item()", "@triggerBody()?.", "0 2 * * *", "@("]),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8))
json_like: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=30,
)


def _mutated_example(draw: st.DrawFn) -> dict[str, Any]:
    data = example()
    target: Any = data
    for _ in range(draw(st.integers(0, 4))):
        if not isinstance(target, dict) or not target:
            break
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.booleans()):
            target[key] = draw(json_like)
            break
        target = target[key]
    return data


mutated_examples = st.composite(_mutated_example)()


def _check(data: object) -> None:
    try:
        manifest = validate_manifest(data)  # type: ignore[arg-type]
    except FlowValidationError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert isinstance(issue.path, str) and issue.message
        return
    assert isinstance(manifest, FlowManifest)
    FlowDefinition.from_manifest(manifest)  # a valid manifest always compiles


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_like)
def test_arbitrary_json_like_values(data: object) -> None:
    _check(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_examples)
def test_mutated_examples(data: dict[str, Any]) -> None:
    _check(data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="{}[]:,\"'-@ \n\tab1&*!|>", max_size=60)))
def test_arbitrary_text(text: str) -> None:
    try:
        load_manifest(text)
    except FlowValidationError as exc:
        assert exc.issues
