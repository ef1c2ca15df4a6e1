"""Mermaid flowchart export of a flow manifest."""

from __future__ import annotations

import re
from collections.abc import Mapping

from floworch.model.manifest import FOR_EACH, FlowManifest, StepSpec

_DEFAULT_STATUSES = ["Succeeded"]


def to_mermaid(manifest: FlowManifest) -> str:
    """Render the flow as a Mermaid ``flowchart TD``.

    Steps are nodes labelled with their key and type; ForEach bodies are subgraphs; an edge is
    labelled when its statuses are not just Succeeded (``any`` for an empty list) and with its
    ``when`` clause.
    """
    lines = ["flowchart TD"]
    _render_scope(manifest.steps, "", lines, "  ")
    return "\n".join(lines) + "\n"


def _node_id(prefix: str, key: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", key)


def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") + '"'


def _render_scope(
    steps: Mapping[str, StepSpec], prefix: str, lines: list[str], indent: str
) -> None:
    for key, spec in steps.items():
        node = _node_id(prefix, key)
        if spec.type == FOR_EACH and spec.steps:
            items = spec.for_each if isinstance(spec.for_each, str) else "list"
            lines.append(f"{indent}subgraph {node} [{_label(f'{key}: ForEach {items}')}]")
            lines.append(f"{indent}  direction TB")
            _render_scope(spec.steps, f"{node}__", lines, indent + "  ")
            lines.append(f"{indent}end")
        else:
            lines.append(f"{indent}{node}[{_label(f'{key}: {spec.type}')}]")
    for key, spec in steps.items():
        for pred, rule in spec.run_after.items():
            parts = []
            if rule.statuses != _DEFAULT_STATUSES:
                parts.append(", ".join(rule.statuses) if rule.statuses else "any")
            if rule.when:
                parts.append(f"when {rule.when}")
            arrow = f" -->|{_label('; '.join(parts))}| " if parts else " --> "
            lines.append(f"{indent}{_node_id(prefix, pred)}{arrow}{_node_id(prefix, key)}")
