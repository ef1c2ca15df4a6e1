"""Whole-manifest validation: every problem, each located by its path in the manifest.

:func:`validate_manifest` runs the pydantic models (shapes, types, ranges) and the semantic rules
(predecessors, cycles, loop scopes, expressions, step-type specific fields) over the same raw
data, so that one call reports every error it can find.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from floworch import limits
from floworch.errors import FlowValidationError, ValidationIssue
from floworch.expressions import (
    ExpressionSyntaxError,
    compile_condition,
    compile_value,
    compile_value_errors,
    is_expression,
)
from floworch.model.manifest import (
    BUILTIN_STEP_TYPES,
    DELAY,
    FOR_EACH,
    WAIT_FOR_SIGNAL,
    FlowManifest,
)
from floworch.model.pydantic_errors import did_you_mean, json_type_name, pydantic_issues

MAX_DEPTH = limits.MAX_MANIFEST_NESTING
_FOR_EACH_ONLY = ("forEach", "concurrencyLimit", "steps")


def validate_manifest(
    manifest: FlowManifest | Mapping[str, Any],
    *,
    step_types: Collection[str] | None = None,
    source: str | None = None,
    issues: Iterable[ValidationIssue] = (),
) -> FlowManifest:
    """Validate a manifest completely and return it as a :class:`FlowManifest`.

    Args:
        manifest: a FlowManifest or raw manifest data (as parsed from JSON or YAML).
        step_types: registered handler names; when given, other step types are errors
            (the built-ins ForEach, WaitForSignal and Delay are always known).
        source: where the manifest came from (a file name), used in the error message.
        issues: problems already found (by a loader), reported together with the rest.

    Raises:
        FlowValidationError: listing every problem found, each with its manifest path.
    """
    found = list(issues)
    model: FlowManifest | None = None
    if isinstance(manifest, FlowManifest):
        model = manifest
        data: object = manifest.model_dump(mode="python", by_alias=True)
    else:
        data = manifest
        problem = structure_problem(data)
        if problem is not None:
            raise FlowValidationError([*found, problem], source=source)
        try:
            model = FlowManifest.model_validate(data)
        except ValidationError as exc:
            found.extend(pydantic_issues(exc))
    found.extend(semantic_issues(data, step_types=step_types))
    unique = list(dict.fromkeys(found))
    if unique or model is None:
        raise FlowValidationError(unique, source=source)
    return model


def structure_problem(data: object) -> ValidationIssue | None:
    """Report a reference cycle or excessive nesting, which the other checks cannot walk."""
    stack: list[tuple[object, int, frozenset[int]]] = [(data, 0, frozenset())]
    while stack:
        value, depth, ancestors = stack.pop()
        if not isinstance(value, Mapping | list | tuple):
            continue
        if id(value) in ancestors:
            return ValidationIssue("", "the manifest contains itself (a reference cycle)")
        if depth > MAX_DEPTH:
            return ValidationIssue("", f"the manifest is nested more than {MAX_DEPTH} levels")
        children = value.values() if isinstance(value, Mapping) else value
        inner = ancestors | {id(value)}
        stack.extend((child, depth + 1, inner) for child in children)
    return None


# --- semantic rules ---------------------------------------------------------------------------


def semantic_issues(
    data: object, *, step_types: Collection[str] | None = None
) -> list[ValidationIssue]:
    """Check the rules that span steps, on raw manifest data (tolerating malformed parts)."""
    if not isinstance(data, Mapping):
        return []
    steps = data.get("steps")
    if not isinstance(steps, Mapping):
        return []
    checker = _SemanticChecker(steps, step_types)
    checker.check_trigger_keys(data.get("triggers"))
    checker.check_scope(steps, "steps", visible={}, owner=None, loops=())
    return checker.issues


class _SemanticChecker:
    def __init__(self, root: Mapping[Any, Any], step_types: Collection[str] | None) -> None:
        self.issues: list[ValidationIssue] = []
        self.step_types = None if step_types is None else set(step_types) | BUILTIN_STEP_TYPES
        # Every step key in the manifest -> (its path, the ForEach owning its scope).
        self.locations: dict[str, tuple[str, str | None]] = {}
        self._index(root, "steps", None)

    def _index(self, steps: Mapping[Any, Any], path: str, owner: str | None) -> None:
        for key, raw in steps.items():
            if not isinstance(key, str):
                continue
            self.locations.setdefault(key, (f"{path}.{_seg(key)}", owner))
            if isinstance(raw, Mapping) and isinstance(raw.get("steps"), Mapping):
                self._index(raw["steps"], f"{path}.{_seg(key)}.steps", key)

    def add(self, path: str, message: str) -> None:
        self.issues.append(ValidationIssue(path, message))

    def check_trigger_keys(self, triggers: object) -> None:
        if not isinstance(triggers, Mapping):
            return
        for key in triggers:
            problem = limits.trigger_key_problem(key)
            if problem:
                self.add(f"triggers.{_seg(key)}", problem)

    def check_scope(
        self,
        steps: Mapping[Any, Any],
        path: str,
        *,
        visible: Mapping[str, str],
        owner: str | None,
        loops: tuple[str, ...],
    ) -> None:
        """Check one scope; ``loops`` are the keys of the ForEach steps enclosing it."""
        keys = [key for key in steps if isinstance(key, str)]
        for key in keys:
            step_path = f"{path}.{_seg(key)}"
            problem = limits.step_key_problem(key)
            longest = limits.instance_key_length([*loops, key])
            if problem:
                self.add(step_path, problem)
            elif longest > limits.INSTANCE_KEY_MAX_LENGTH:
                example = "".join(
                    f"{loop}.{'9' * limits.FOR_EACH_INDEX_MAX_LENGTH}." for loop in loops
                )
                self.add(
                    step_path,
                    f"this step's instance key ({example}{key}) can be {longest} characters "
                    f"long inside {len(loops)} ForEach loop(s); the limit is "
                    f"{limits.INSTANCE_KEY_MAX_LENGTH}: use shorter step keys or nest fewer loops",
                )
            elif key in visible:
                self.add(
                    step_path,
                    f"step key {key!r} is already used by {visible[key]}; a ForEach body "
                    "cannot reuse the key of a step outside it",
                )
        inner_visible = {**visible, **{key: f"{path}.{_seg(key)}" for key in keys}}
        edges: dict[str, list[str]] = {key: [] for key in keys}
        for key in keys:
            raw = steps[key]
            if isinstance(raw, Mapping):
                preds = self.check_step(
                    key, raw, f"{path}.{_seg(key)}", keys, inner_visible, owner, loops
                )
                edges[key] = preds
        self.check_cycles(edges, path)

    def check_step(
        self,
        key: str,
        raw: Mapping[Any, Any],
        path: str,
        scope_keys: list[str],
        visible: Mapping[str, str],
        owner: str | None,
        loops: tuple[str, ...],
    ) -> list[str]:
        step_type = raw.get("type")
        if isinstance(step_type, str) and step_type:
            self.check_type(step_type, raw, path, visible, (*loops, key))
        references: list[tuple[str, str]] = []
        in_loop = owner is not None
        references += self.check_expressions(raw.get("inputs"), f"{path}.inputs", in_loop)
        if raw.get("forEach") is not None:
            references += self.check_expressions(raw["forEach"], f"{path}.forEach", in_loop)
        preds = self.check_run_after(key, raw.get("runAfter"), path, scope_keys, owner, references)
        for ref_path, ref in references:
            self.check_reference(key, ref, ref_path, visible)
        return preds

    def check_type(
        self,
        step_type: str,
        raw: Mapping[Any, Any],
        path: str,
        visible: Mapping[str, str],
        loops: tuple[str, ...],
    ) -> None:
        if self.step_types is not None and step_type not in self.step_types:
            known = ", ".join(sorted(self.step_types - BUILTIN_STEP_TYPES)) or "none"
            self.add(
                f"{path}.type",
                f"unknown step type {step_type!r}{did_you_mean(step_type, self.step_types)}; "
                f"registered: {known}; built-in: {', '.join(sorted(BUILTIN_STEP_TYPES))}",
            )
        if step_type != FOR_EACH:
            for name in _FOR_EACH_ONLY:
                if raw.get(name) is not None:
                    self.add(
                        f"{path}.{name}",
                        f"{name!r} is only allowed on ForEach steps (this step is a {step_type!r})",
                    )
        inputs = raw.get("inputs")
        inputs = inputs if isinstance(inputs, Mapping) else {}
        if step_type == FOR_EACH:
            items = raw.get("forEach")
            if items is None:
                self.add(
                    f"{path}.forEach", "a ForEach step needs 'forEach': an expression or a list"
                )
            elif isinstance(items, str) and not is_expression(items):
                self.add(f"{path}.forEach", "must be an expression (starting with '@') or a list")
            body = raw.get("steps")
            if body is None or (isinstance(body, Mapping) and not body):
                self.add(f"{path}.steps", "a ForEach step needs a non-empty 'steps' map (its body)")
            elif isinstance(body, Mapping):
                body_visible = {k: v for k, v in visible.items()}
                self.check_scope(
                    body,
                    f"{path}.steps",
                    visible=body_visible,
                    owner=path.rsplit(".", 1)[-1],
                    loops=loops,
                )
        elif step_type == WAIT_FOR_SIGNAL:
            signal = inputs.get("signalName")
            if not isinstance(signal, str) or not signal:
                self.add(
                    f"{path}.inputs.signalName", "WaitForSignal needs a non-empty string signalName"
                )
            elif not is_expression(signal) and (problem := limits.signal_name_problem(signal)):
                self.add(f"{path}.inputs.signalName", problem)
            if "timeoutSeconds" in inputs:
                self.check_number(
                    inputs["timeoutSeconds"], f"{path}.inputs.timeoutSeconds", strict=True
                )
        elif step_type == DELAY:
            has_seconds, has_until = "delaySeconds" in inputs, "until" in inputs
            if has_seconds == has_until:
                self.add(
                    f"{path}.inputs",
                    "a Delay step needs exactly one of inputs.delaySeconds and inputs.until",
                )
            elif has_seconds:
                self.check_number(
                    inputs["delaySeconds"], f"{path}.inputs.delaySeconds", strict=False
                )
            else:
                self.check_timestamp(inputs["until"], f"{path}.inputs.until")

    def check_number(self, value: object, path: str, *, strict: bool) -> None:
        if isinstance(value, str) and is_expression(value):
            return
        operator = ">" if strict else ">="
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(
                path,
                f"must be a number {operator} 0 or an expression (got {json_type_name(value)})",
            )
        elif value < 0 or (strict and value == 0) or value != value:
            self.add(path, f"must be {operator} 0 (got {value!r})")
        elif problem := limits.duration_problem(value):
            self.add(path, f"{problem} (got {value!r})")

    def check_timestamp(self, value: object, path: str) -> None:
        if isinstance(value, str) and is_expression(value):
            return
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                if moment.tzinfo is None:
                    self.add(path, f"timestamp {value!r} needs a time zone (e.g. 'Z' or '+01:00')")
                    return
                try:
                    moment.astimezone(UTC)
                except OverflowError:
                    self.add(path, f"timestamp {value!r} is out of range in UTC")
                return
        self.add(path, f"must be an ISO 8601 timestamp or an expression (got {value!r})")

    def check_expressions(self, value: object, path: str, in_loop: bool) -> list[tuple[str, str]]:
        """Report syntax errors; return (path, step key) for each steps('key') reference."""
        try:
            errors = compile_value_errors(value)
        except Exception as exc:  # never report "valid" after a failure
            self.add(path, _internal_failure(exc))
            return []
        for inner, error in errors:
            self.add(_join(path, inner), str(error))
        references = []
        for leaf_path, leaf in _string_leaves(value, path):
            if not is_expression(leaf):
                continue
            try:
                compiled = compile_value(leaf)
            except ExpressionSyntaxError:
                continue
            except Exception as exc:
                self.add(leaf_path, _internal_failure(exc))
                continue
            references += [(leaf_path, ref) for ref in sorted(compiled.step_references)]
            if compiled.uses_item and not in_loop:
                self.add(leaf_path, "item() and index() are only available inside a ForEach body")
        return references

    def check_run_after(
        self,
        key: str,
        run_after: object,
        path: str,
        scope_keys: list[str],
        owner: str | None,
        references: list[tuple[str, str]],
    ) -> list[str]:
        if not isinstance(run_after, Mapping):
            return []
        preds = []
        for pred, rule in run_after.items():
            if not isinstance(pred, str):
                continue
            pred_path = f"{path}.runAfter.{_seg(pred)}"
            if pred == key:
                self.add(pred_path, f"step {key!r} cannot run after itself")
            elif pred in scope_keys:
                preds.append(pred)
            else:
                self.add(pred_path, self.unknown_step(pred, scope_keys, owner))
            when = rule.get("when") if isinstance(rule, Mapping) else None
            if isinstance(when, str):
                references += self.check_condition(when, f"{pred_path}.when")
        return preds

    def check_condition(self, text: str, path: str) -> list[tuple[str, str]]:
        try:
            compiled = compile_condition(text)
        except ExpressionSyntaxError as error:
            self.add(path, str(error))
            return []
        except Exception as exc:  # never report "valid" after a failure
            self.add(path, _internal_failure(exc))
            return []
        return [(path, ref) for ref in sorted(compiled.step_references)]

    def unknown_step(self, name: str, scope_keys: list[str], owner: str | None) -> str:
        located = self.locations.get(name)
        if located is not None:
            where, loop = located
            if (
                owner is not None
                and loop != owner
                and (loop is None or self._encloses(loop, owner))
            ):
                return (
                    f"step {name!r} is outside this ForEach body ({where}); a body step can "
                    "only run after steps of the same body"
                )
            if loop is not None and loop != owner:
                return (
                    f"step {name!r} is inside the ForEach body of {loop!r} ({where}); steps "
                    "outside that body cannot run after it"
                )
        return f"no step named {name!r}{did_you_mean(name, scope_keys)}"

    def _encloses(self, loop: str, owner: str) -> bool:
        """Whether the body of ``loop`` contains (at any depth) the body of ``owner``."""
        current: str | None = owner
        while current is not None:
            current = self.locations.get(current, ("", None))[1]
            if current == loop:
                return True
        return False

    def check_reference(self, key: str, ref: str, path: str, visible: Mapping[str, str]) -> None:
        if ref == key:
            self.add(path, f"step {key!r} cannot reference its own output")
        elif ref not in visible:
            owner = self.locations.get(ref, ("", None))[1]
            if owner is not None:
                self.add(
                    path,
                    f"steps({ref!r}) refers to a step inside the ForEach body of {owner!r}, "
                    "which is not visible here",
                )
            else:
                self.add(path, f"steps({ref!r}): no step named {ref!r}{did_you_mean(ref, visible)}")

    def check_cycles(self, edges: Mapping[str, list[str]], path: str) -> None:
        """Report each cycle once, at its first step in manifest order.

        The cycle reads in ``runAfter`` direction: ``a -> b`` means a runs after b.
        """
        order = {key: position for position, key in enumerate(edges)}
        for component in _strongly_connected(edges):
            if len(component) < 2:
                continue
            start = min(component, key=order.__getitem__)
            cycle = _cycle_through(start, edges, component)
            self.add(
                f"{path}.{_seg(start)}",
                "cycle: " + " -> ".join(cycle) + " (each step runs after the next)",
            )


def _internal_failure(exc: Exception) -> str:
    """The issue for an expression that could not be checked (so validation cannot pass)."""
    if isinstance(exc, MemoryError | RecursionError):
        reason = "ran out of memory" if isinstance(exc, MemoryError) else "nested too deeply"
        return f"this expression could not be checked ({reason}); make it shorter or simpler"
    return (
        f"this expression could not be checked ({type(exc).__name__}: {exc}); this is a bug "
        "in floworch, please report it"
    )


def _seg(key: str) -> str:
    """A path segment: the key itself, or its repr when it holds a newline or other control."""
    return key if key.isprintable() else repr(key)


def _join(base: str, inner: str) -> str:
    if not inner:
        return base
    return f"{base}{inner}" if inner.startswith("[") else f"{base}.{inner}"


def _string_leaves(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _string_leaves(item, f"{path}.{_seg(str(key))}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _string_leaves(item, f"{path}[{index}]")


def _strongly_connected(successors: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (manifests may be large)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in successors:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child_index = work.pop()
            if child_index == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = successors[node]
            if child_index < len(children):
                work.append((node, child_index + 1))
                child = children[child_index]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _cycle_through(
    start: str, successors: Mapping[str, list[str]], members: list[str]
) -> list[str]:
    """Shortest path from ``start`` back to itself inside one strongly connected component."""
    allowed = set(members)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in successors[node]:
                if child not in allowed or child in previous:
                    continue
                previous[child] = node
                if child == start:
                    path = [start]
                    while path[-1] != start or len(path) == 1:
                        path.append(previous[path[-1]])
                    return list(reversed(path))
                following.append(child)
        frontier = following
    return [start, start]
