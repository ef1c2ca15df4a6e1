"""Loading manifests from dicts, JSON/YAML text and files (.json, .yaml, .yml, .py).

JSON and YAML parsing report duplicate keys with their manifest path and syntax errors with
line and column; those issues are reported together with every validation issue. YAML aliases
are counted while the document is composed, so an alias bomb is refused before anything is
expanded (see :data:`floworch.limits.MAX_YAML_ALIAS_NODES`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, SequenceNode

from floworch import limits
from floworch.errors import FlowValidationError, ValidationIssue
from floworch.model.manifest import FlowManifest
from floworch.model.pydantic_errors import format_path
from floworch.model.validation import validate_manifest

MANIFEST_SUFFIXES = (".json", ".yaml", ".yml", ".py")


class _ParsedObject(dict[Any, Any]):
    """A parsed mapping that remembers the keys it saw more than once."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[tuple[object, str]] = []  # (key, where: "line 3" or "")


def _json_object(pairs: list[tuple[str, Any]]) -> _ParsedObject:
    result = _ParsedObject()
    for key, value in pairs:
        if key in result:
            result.duplicates.append((key, ""))
        result[key] = value
    return result


class _ManifestYamlLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate keys, keeps timestamps as strings (JSON data) and
    refuses documents whose aliases would expand to more than ``MAX_YAML_ALIAS_NODES`` nodes.

    Aliases share their anchor's node while composing, but become copies when the data is turned
    into plain dicts and validated; nine levels of nine aliases each ("billion laughs") would be
    9**9 nodes. Each composed node's expanded size is recorded, and every alias adds the size of
    the node it names to a running total.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded: dict[int, int] = {}  # id(node) -> its node count with aliases expanded
        self._alias_nodes = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if not self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if node is not None:
                self._expanded[id(node)] = 1 + sum(self._expanded[id(c)] for c in _children(node))
            return node
        event: yaml.AliasEvent = self.peek_event()  # type: ignore[no-untyped-call]
        mark = event.start_mark if isinstance(event.start_mark, Mark) else None
        node = super().compose_node(parent, index)
        size = self._expanded.get(id(node)) if node is not None else 0
        if size is None:
            raise ComposerError(
                None,
                None,
                f"alias *{event.anchor} refers to a node that contains it",
                mark,
            )
        self._alias_nodes += size
        if self._alias_nodes > limits.MAX_YAML_ALIAS_NODES:
            raise ComposerError(
                None,
                None,
                f"aliases expand to more than {limits.MAX_YAML_ALIAS_NODES} nodes; "
                "use fewer aliases (or write the repeated parts out)",
                mark,
            )
        return node


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Iterator[_ParsedObject]:
    result = _ParsedObject()
    yield result
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue  # unhashable key: construct_mapping below raises the proper error
        if duplicate:
            result.duplicates.append((key, f"line {key_node.start_mark.line + 1}"))
    result.update(loader.construct_mapping(node, deep=True))


_ManifestYamlLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_ManifestYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _plain(value: object, path: tuple[object, ...], issues: list[ValidationIssue]) -> object:
    """Turn parsed objects into plain dicts, reporting duplicate keys at their path."""
    if isinstance(value, _ParsedObject):
        for key, where in value.duplicates:
            suffix = f" ({where})" if where else ""
            issues.append(
                ValidationIssue(
                    format_path((*path, key)), f"duplicate key {key!r}{suffix}; keys must be unique"
                )
            )
        return {key: _plain(item, (*path, key), issues) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item, (*path, index), issues) for index, item in enumerate(value)]
    return value


def parse_manifest_text(
    text: str, *, format: str | None = None
) -> tuple[object, list[ValidationIssue]]:
    """Parse JSON or YAML text into plain data and the problems found while parsing.

    Args:
        text: the document.
        format: "json" or "yaml"; by default JSON when the text starts with '{', else YAML
            (which also reads JSON).

    Returns:
        The data (None when the text could not be parsed) and the issues (syntax errors with
        line and column, duplicate keys with their path).
    """
    kind = format or ("json" if text.lstrip().startswith("{") else "yaml")
    issues: list[ValidationIssue] = []
    try:
        if kind == "json":
            raw: object = json.loads(text, object_pairs_hook=_json_object)
        else:
            raw = yaml.load(text, Loader=_ManifestYamlLoader)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        return None, [ValidationIssue("", f"invalid JSON at {where}: {exc.msg}")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = exc.problem or exc.context or "syntax error"
        return None, [ValidationIssue("", f"invalid YAML{where}: {reason}")]
    except yaml.YAMLError as exc:
        return None, [ValidationIssue("", f"invalid YAML: {exc}")]
    except RecursionError:
        return None, [ValidationIssue("", f"invalid {kind.upper()}: nested too deeply")]
    except ValueError as exc:  # e.g. integers too long to convert
        return None, [ValidationIssue("", f"invalid {kind.upper()}: {exc}")]
    try:
        data = _plain(raw, (), issues)
    except RecursionError:
        return None, [ValidationIssue("", f"invalid {kind.upper()}: nested too deeply")]
    return data, issues


def load_manifest(
    source: FlowManifest | Mapping[str, Any] | str | os.PathLike[str],
    *,
    step_types: Collection[str] | None = None,
) -> FlowManifest:
    """Load and fully validate one manifest.

    Args:
        source: a FlowManifest, a dict, JSON or YAML text, or the path of a .json, .yaml, .yml
            or .py file (a .py file must define exactly one flow). A string is read as a path
            when it names an existing file, else as text.
        step_types: registered handler names, to reject unknown step types.

    Raises:
        FlowValidationError: every problem found, each with its path in the manifest.
    """
    if isinstance(source, FlowManifest | Mapping):
        return validate_manifest(source, step_types=step_types)
    path = _as_existing_file(source)
    if path is None:
        text = os.fspath(source)
        data, issues = parse_manifest_text(text)
        return _validate_parsed(data, issues, step_types=step_types, source=None)
    flows = load_flows_from_path(path, step_types=step_types)
    if len(flows) != 1:
        raise FlowValidationError(
            [ValidationIssue("", f"expected exactly one flow, found {len(flows)}")],
            source=str(path),
        )
    return flows[0]


def load_flows_from_path(
    path: str | os.PathLike[str], *, step_types: Collection[str] | None = None
) -> list[FlowManifest]:
    """Load every flow from a file or from the files of a directory.

    A .json, .yaml or .yml file holds one manifest. A .py file is executed as a module (named
    from its path, with its directory on ``sys.path`` while it runs); every FlowManifest or
    :class:`~floworch.model.Flow` builder at module level or in a module-level ``flows`` list is
    collected, in definition order. Executing the module registers its decorated handlers as a
    side effect. A directory loads its files with those suffixes (not recursively, skipping
    names starting with '_' or '.'), in name order.

    Raises:
        FlowValidationError: a manifest is invalid, a module failed to run, or two flows share
            an id.
        FileNotFoundError: the path does not exist.
    """
    root = Path(path)
    if root.is_dir():
        files = sorted(
            child
            for child in root.iterdir()
            if child.is_file()
            and child.suffix in MANIFEST_SUFFIXES
            and not child.name.startswith(("_", "."))
        )
    elif root.exists():
        files = [root]
    else:
        raise FileNotFoundError(f"no flow file or directory at {root}")
    flows: list[FlowManifest] = []
    seen: dict[str, Path] = {}
    for file in files:
        for flow in _load_file(file, step_types):
            if flow.id in seen:
                raise FlowValidationError(
                    [
                        ValidationIssue(
                            "id", f"flow id {flow.id!r} is also defined in {seen[flow.id]}"
                        )
                    ],
                    source=str(file),
                )
            seen[flow.id] = file
            flows.append(flow)
    return flows


def _load_file(file: Path, step_types: Collection[str] | None) -> list[FlowManifest]:
    if file.suffix == ".py":
        return [
            validate_manifest(found, step_types=step_types, source=str(file))
            for found in _collect_from_module(_execute_module(file), file)
        ]
    if file.suffix not in MANIFEST_SUFFIXES:
        raise FlowValidationError(
            [
                ValidationIssue(
                    "", f"unsupported file type {file.suffix!r}; use .json, .yaml, .yml or .py"
                )
            ],
            source=str(file),
        )
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FlowValidationError(
            [ValidationIssue("", f"file is not UTF-8 text: {exc.reason}")], source=str(file)
        ) from exc
    data, issues = parse_manifest_text(text, format="json" if file.suffix == ".json" else "yaml")
    return [_validate_parsed(data, issues, step_types=step_types, source=str(file))]


def _validate_parsed(
    data: object,
    issues: list[ValidationIssue],
    *,
    step_types: Collection[str] | None,
    source: str | None,
) -> FlowManifest:
    if data is None and issues:
        raise FlowValidationError(issues, source=source)
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        issues.append(
            ValidationIssue("", f"a manifest must be an object (this document is {kind})")
        )
        raise FlowValidationError(issues, source=source)
    return validate_manifest(data, step_types=step_types, source=source, issues=issues)


def module_name_for(file: Path) -> str:
    """A stable module name for a flow file: the same path always gives the same name."""
    resolved = str(file.resolve())
    digest = hashlib.sha1(resolved.encode("utf-8")).hexdigest()[:12]
    stem = "".join(ch if ch.isalnum() else "_" for ch in file.stem)
    return f"floworch_flows.{stem}_{digest}"


def _execute_module(file: Path) -> ModuleType:
    name = module_name_for(file)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise FlowValidationError(
            [ValidationIssue("", "cannot load this file as a module")], source=str(file)
        )
    module = importlib.util.module_from_spec(spec)
    directory = str(file.resolve().parent)
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise FlowValidationError(
            [ValidationIssue("", f"executing the module failed: {type(exc).__name__}: {exc}")],
            source=str(file),
        ) from exc
    finally:
        if added and directory in sys.path:
            sys.path.remove(directory)
    return module


def _collect_from_module(module: ModuleType, file: Path) -> list[FlowManifest]:
    from floworch.model.builder import Flow

    candidates: list[object] = []
    for name, value in vars(module).items():
        if name == "flows" and isinstance(value, list | tuple):
            candidates.extend(value)
        elif not name.startswith("_"):
            candidates.append(value)
    found: list[FlowManifest] = []
    seen: set[int] = set()
    for value in candidates:
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, Flow):
            found.append(value.build())
        elif isinstance(value, FlowManifest):
            found.append(value)
    if not found:
        raise FlowValidationError(
            [
                ValidationIssue(
                    "",
                    "the module defines no flow (a FlowManifest or Flow at module level "
                    "or in 'flows')",
                )
            ],
            source=str(file),
        )
    return found


def _as_existing_file(source: str | os.PathLike[str]) -> Path | None:
    if not isinstance(source, str):
        return Path(source)
    if "\n" in source or source.lstrip().startswith("{") or len(source) > 4096:
        return None
    try:
        candidate = Path(source)
        return candidate if candidate.is_file() else None
    except (OSError, ValueError):
        return None
