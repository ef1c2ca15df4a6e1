"""manifest_json_schema: editor hints and agreement with the example."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from floworch.model import manifest_json_schema

from .example_manifest import example


def test_schema_has_metadata_and_manifest_names() -> None:
    schema = manifest_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "floworch flow manifest"
    assert schema["required"] == ["id", "version", "steps"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["timeoutSeconds"]["title"] == "timeoutSeconds"
    step = schema["$defs"]["StepSpec"]
    assert set(step["properties"]) >= {"runAfter", "forEach", "concurrencyLimit", "steps", "retry"}
    run_after = step["properties"]["runAfter"]["additionalProperties"]
    assert {"type": "array"}.items() <= run_after["anyOf"][0].items()
    json.dumps(schema)  # JSON-serialisable


def test_every_property_has_a_description() -> None:
    def walk(node: Any) -> list[str]:
        missing = []
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                if name != "type" and "description" not in prop:
                    missing.append(name)
            for value in node.values():
                missing += walk(value)
        elif isinstance(node, list):
            for value in node:
                missing += walk(value)
        return missing

    assert walk(manifest_json_schema()) == []


def test_schema_validates_the_example_and_rejects_bad_data() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = manifest_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(example())) == []
    bad = copy.deepcopy(example())
    bad["steps"]["ship"]["retry"]["maxAttempts"] = 0
    bad["steps"]["fetch"]["typo"] = 1
    assert len(list(validator.iter_errors(bad))) == 2
