"""The JSON Schema of flow manifests, for editors and external tooling."""

from __future__ import annotations

from typing import Any

from floworch.model.manifest import FlowManifest

SCHEMA_ID = "https://floworch.dev/schemas/flow-manifest.json"


def manifest_json_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a flow manifest.

    Field titles are the manifest's own (camelCase) names and every field carries a description,
    so editors show useful hints. Rules that span steps (predecessors, cycles, expressions) are
    beyond JSON Schema; :func:`floworch.model.validate_manifest` checks those.
    """
    schema = FlowManifest.model_json_schema(by_alias=True, mode="validation")
    _retitle(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "floworch flow manifest",
        "description": "A flow: its id, version, triggers and a DAG of steps.",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def _retitle(node: object) -> None:
    """Replace pydantic's generated property titles ("Timeoutseconds") with the field name."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, prop in properties.items():
                if isinstance(prop, dict):
                    prop["title"] = name
        for value in node.values():
            _retitle(value)
    elif isinstance(node, list):
        for value in node:
            _retitle(value)
