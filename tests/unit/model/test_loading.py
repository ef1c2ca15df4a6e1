"""Loading manifests from dicts, JSON, YAML and Python files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from floworch.errors import FlowValidationError
from floworch.model import Flow, FlowManifest, load_flows_from_path, load_manifest
from floworch.model.loading import module_name_for

from .example_manifest import EXAMPLE_JSON, EXAMPLE_PY, EXAMPLE_YAML, example


def test_all_three_formats_load_to_the_same_model(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(EXAMPLE_JSON)
    (tmp_path / "b.yaml").write_text(EXAMPLE_YAML)
    (tmp_path / "c.py").write_text(EXAMPLE_PY)
    from_dict = load_manifest(example())
    assert load_manifest(tmp_path / "a.json") == from_dict
    assert load_manifest(str(tmp_path / "b.yaml")) == from_dict
    assert load_manifest(tmp_path / "c.py") == from_dict
    assert load_manifest(EXAMPLE_JSON) == from_dict
    assert load_manifest(EXAMPLE_YAML) == from_dict


def test_json_duplicate_keys_are_reported_with_their_path() -> None:
    text = EXAMPLE_JSON.replace(
        '"timeoutSeconds": 30', '"timeoutSeconds": 30, "timeoutSeconds": 40'
    )
    with pytest.raises(FlowValidationError) as caught:
        load_manifest(text)
    [issue] = caught.value.issues
    assert issue.path == "steps.ship.timeoutSeconds"
    assert issue.message == "duplicate key 'timeoutSeconds'; keys must be unique"


def test_yaml_duplicate_keys_are_reported_with_path_and_line() -> None:
    text = EXAMPLE_YAML.replace("  notify:\n", "  fetch:\n    type: Again\n  notify:\n")
    with pytest.raises(FlowValidationError) as caught:
        load_manifest(text)
    [issue] = caught.value.issues
    assert issue.path == "steps.fetch"
    assert issue.message == "duplicate key 'fetch' (line 39); keys must be unique"


def test_duplicates_are_reported_with_the_other_errors() -> None:
    text = (
        '{"id": "x", "id": "y", "version": "1",'
        ' "steps": {"a": {"type": "T", "runAfter": {"b": []}}}}'
    )
    with pytest.raises(FlowValidationError) as caught:
        load_manifest(text)
    assert [issue.path for issue in caught.value.issues] == ["id", "steps.a.runAfter.b"]


def test_json_syntax_error_has_line_and_column() -> None:
    with pytest.raises(FlowValidationError) as caught:
        load_manifest('{"id": "x",\n  "version": }')
    [issue] = caught.value.issues
    assert issue.path == ""
    assert issue.message == "invalid JSON at line 2, column 14: Expecting value"


def test_yaml_syntax_error_has_line_and_column() -> None:
    with pytest.raises(FlowValidationError) as caught:
        load_manifest("id: x\nsteps:\n  a: [1, 2\n")
    [issue] = caught.value.issues
    assert issue.message.startswith("invalid YAML at line 4, column 1: ")


def test_yaml_dates_stay_text() -> None:
    data = example()
    data["steps"]["fetch"]["inputs"] = {"since": "2024-01-01"}
    text = EXAMPLE_YAML.replace(
        '      customer: "@triggerBody()?.customerId"', "      since: 2024-01-01"
    )
    assert load_manifest(text) == load_manifest(data)


def test_a_document_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(FlowValidationError) as caught:
        load_manifest(path)
    assert caught.value.source == str(path)
    assert (
        caught.value.issues[0].message == "a manifest must be an object (this document is a list)"
    )


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"id": "x", "version": "1", "steps": {"a": {"type": "T", "typo": 1}}})
    )
    with pytest.raises(FlowValidationError) as caught:
        load_flows_from_path(path)
    assert caught.value.source == str(path)
    assert (
        str(caught.value.issues[0]) == "steps.a.typo: unknown field 'typo' (did you mean 'type'?)"
    )


def test_python_module_flows_list_and_builders(tmp_path: Path) -> None:
    (tmp_path / "helper_mod.py").write_text("STEP = 'Greet'\n")
    (tmp_path / "many.py").write_text(
        "from helper_mod import STEP\n"
        "from floworch.model import Flow, FlowManifest\n"
        "a = Flow('a'); a.manual(); a.step('greet', STEP)\n"
        "flows = [FlowManifest.model_validate("
        "{'id': 'b', 'version': '2', 'steps': {'s': {'type': STEP}}})]\n"
    )
    before = list(sys.path)
    flows = load_flows_from_path(tmp_path / "many.py")
    assert [(flow.id, flow.version) for flow in flows] == [("a", "1"), ("b", "2")]
    assert sys.path == before
    assert module_name_for(tmp_path / "many.py") == module_name_for(tmp_path / "." / "many.py")
    assert module_name_for(tmp_path / "many.py") in sys.modules


def test_python_module_that_fails(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text("raise RuntimeError('no config')\n")
    with pytest.raises(FlowValidationError) as caught:
        load_flows_from_path(tmp_path / "boom.py")
    assert str(caught.value.issues[0]) == "executing the module failed: RuntimeError: no config"
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_python_module_without_flows(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(FlowValidationError, match="the module defines no flow"):
        load_flows_from_path(tmp_path / "empty.py")


def test_directory_loading_and_duplicate_ids(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(EXAMPLE_JSON)
    (tmp_path / "_skipped.yaml").write_text("not: a manifest\n")
    (tmp_path / "notes.txt").write_text("ignored")
    other = example()
    other["id"] = "other"
    (tmp_path / "b.yml").write_text(json.dumps(other))
    flows = load_flows_from_path(tmp_path)
    assert [flow.id for flow in flows] == ["order-fulfilment", "other"]
    (tmp_path / "c.yaml").write_text(EXAMPLE_YAML)
    with pytest.raises(FlowValidationError, match="is also defined in"):
        load_flows_from_path(tmp_path)


def test_missing_path() -> None:
    with pytest.raises(FileNotFoundError):
        load_flows_from_path("/nonexistent/flows")


def test_step_types_are_passed_through() -> None:
    with pytest.raises(FlowValidationError) as caught:
        load_manifest(EXAMPLE_YAML, step_types=["FetchOrders", "Charge", "Ship"])
    assert [issue.path for issue in caught.value.issues] == ["steps.notify.type"]


def test_builder_produces_a_validated_manifest() -> None:
    flow = Flow("hello", version="1", timeout=60)
    flow.manual().webhook("hello", secret="env:HELLO_SECRET")
    flow.step("greet", "Greet", inputs={"name": "@triggerBody()?.name"})
    flow.delay("pause", 5, run_after="greet")
    manifest = flow.build()
    assert isinstance(manifest, FlowManifest)
    assert manifest.timeout_seconds == 60
    assert manifest.steps["pause"].run_after["greet"].statuses == ["Succeeded"]
    assert manifest.triggers["webhook"].model_dump(exclude_none=True, exclude_defaults=True) == {
        "type": "Webhook",
        "slug": "hello",
        "secret": "env:HELLO_SECRET",
    }


def test_builder_reports_errors_and_rejects_duplicate_keys() -> None:
    flow = Flow("hello")
    flow.step("greet", "Greet", run_after="nobody")
    with pytest.raises(ValueError, match="already defined"):
        flow.step("greet", "Greet")
    with pytest.raises(FlowValidationError) as caught:
        flow.build()
    assert str(caught.value.issues[0]) == "steps.greet.runAfter.nobody: no step named 'nobody'"
