"""The compiled flow graph the engine walks.

:meth:`FlowDefinition.from_manifest` validates a manifest and precomputes everything the engine
needs per step (compiled inputs and conditions, predecessors, successors, entry and leaf steps,
topological order, ForEach bodies) so that the hot path only reads frozen values.

Step instance keys: a top-level step's key is its manifest key (``fetch``); a step inside a
ForEach body is ``<loop instance key>.<index>.<child>`` (``each.3.charge``, nested:
``outer.0.inner.3.child``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING

from floworch.errors import StepNotFoundError
from floworch.expressions import (
    CompiledCondition,
    CompiledValue,
    compile_condition,
    compile_value,
)
from floworch.model.instance_key import InstanceKey, InstanceKeyError
from floworch.model.manifest import (
    DEFAULT_CONCURRENCY_LIMIT,
    FOR_EACH,
    FlowManifest,
    RetryPolicy,
    StepSpec,
)
from floworch.model.statuses import StepStatus
from floworch.model.triggers import ManualTrigger

if TYPE_CHECKING:
    from floworch.model.triggers import CronTrigger, ServiceBusTrigger, WebhookTrigger

    AnyTrigger = ManualTrigger | CronTrigger | WebhookTrigger | ServiceBusTrigger


class UnknownStepKeyError(StepNotFoundError):
    """An instance key names no step of the flow (or is malformed)."""

    def __init__(self, flow_id: str, step_key: str, reason: str) -> None:
        # StepNotFoundError's own message is about runs; this one is about the definition.
        Exception.__init__(self, f"flow {flow_id!r} has no step {step_key!r}: {reason}")
        self.run_id = ""
        self.flow_id = flow_id
        self.step_key = step_key


@dataclass(frozen=True, slots=True)
class RunAfterRule:
    """How a step depends on one predecessor.

    Attributes:
        statuses: predecessor statuses that satisfy the rule; empty means any terminal status.
        when: the compiled ``when`` condition, or None.
    """

    statuses: frozenset[StepStatus]
    when: CompiledCondition | None = None

    def accepts(self, status: StepStatus) -> bool:
        """Whether a predecessor that ended in ``status`` satisfies the status part of the rule."""
        if not status.is_terminal:
            return False
        return not self.statuses or status in self.statuses


@dataclass(frozen=True, slots=True)
class StepNode:
    """One step of a scope, compiled.

    Attributes:
        key: the step's key within its scope (``charge``).
        path: its path in the manifest (``steps.each.steps.charge``).
        type: handler name or built-in type.
        spec: the manifest model of the step.
        inputs: compiled inputs.
        predecessors: predecessor key -> rule, in manifest order.
        successors: keys of the steps of the same scope that name this step in ``runAfter``.
        retry: the retry policy, or None for a single attempt.
        timeout: per-attempt timeout, or None.
        for_each: ForEach items (compiled), or None for other steps.
        concurrency_limit: ForEach iterations run at once (1 for other steps).
        body: the ForEach loop body, or None.
        step_references: every step key its inputs, items and ``when`` clauses reference.
    """

    key: str
    path: str
    type: str
    spec: StepSpec
    inputs: CompiledValue
    predecessors: Mapping[str, RunAfterRule]
    successors: tuple[str, ...]
    retry: RetryPolicy | None
    timeout: timedelta | None
    for_each: CompiledValue | None
    concurrency_limit: int
    body: Scope | None
    step_references: frozenset[str]

    @property
    def is_entry(self) -> bool:
        """Whether the step has no predecessors (it starts with its scope)."""
        return not self.predecessors

    @property
    def is_leaf(self) -> bool:
        """Whether no step of its scope runs after it."""
        return not self.successors


@dataclass(frozen=True, slots=True)
class Scope:
    """A DAG of steps: the flow's top level or one ForEach body.

    Attributes:
        steps: key -> node, in manifest order.
        entry: steps without predecessors, in manifest order.
        leaves: steps without successors, in manifest order.
        order: every step key in a topological order (stable: manifest order breaks ties).
    """

    steps: Mapping[str, StepNode]
    entry: tuple[str, ...]
    leaves: tuple[str, ...]
    order: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FlowDefinition:
    """A validated flow, compiled once and shared by every run of it.

    Attributes:
        id: the flow id.
        version: the flow version.
        manifest: the manifest it was compiled from.
        root: the top-level scope.
        run_timeout: the run timeout, or None.
        triggers: trigger key -> trigger.
    """

    id: str
    version: str
    manifest: FlowManifest
    root: Scope
    run_timeout: timedelta | None
    triggers: Mapping[str, AnyTrigger]
    _by_template: Mapping[str, tuple[StepNode, Scope]] = field(repr=False, compare=False)

    @classmethod
    def from_manifest(cls, manifest: FlowManifest) -> FlowDefinition:
        """Validate ``manifest`` (every rule) and compile it.

        Raises:
            FlowValidationError: the manifest breaks a rule (unknown predecessor, cycle, ...).
        """
        from floworch.model.validation import validate_manifest

        validate_manifest(manifest)
        by_template: dict[str, tuple[StepNode, Scope]] = {}
        root = _compile_scope(manifest.steps, "steps", "", by_template)
        timeout = manifest.timeout_seconds
        return cls(
            id=manifest.id,
            version=manifest.version,
            manifest=manifest,
            root=root,
            run_timeout=timedelta(seconds=timeout) if timeout is not None else None,
            triggers=MappingProxyType(dict(manifest.triggers)),
            _by_template=MappingProxyType(by_template),
        )

    def node(self, instance_key: str) -> StepNode:
        """Return the step an instance key (``fetch``, ``each.3.charge``) refers to.

        Raises:
            UnknownStepKeyError: (a StepNotFoundError) the key is malformed or names no step.
        """
        return self._lookup(instance_key)[1]

    def scope_of(self, instance_key: str) -> tuple[str, Scope]:
        """Return the instance-key prefix and the scope a step instance belongs to.

        ``scope_of("fetch")`` is ``("", root)``; ``scope_of("each.3.charge")`` is
        ``("each.3.", <body of each>)``. A sibling's instance key is ``prefix + sibling``.

        Raises:
            UnknownStepKeyError: (a StepNotFoundError) the key is malformed or names no step.
        """
        key, _, scope = self._lookup(instance_key)
        return key.prefix, scope

    def instance(self, instance_key: str) -> InstanceKey:
        """Parse an instance key of this flow (checked against the manifest).

        Raises:
            UnknownStepKeyError: (a StepNotFoundError) the key is malformed or names no step.
        """
        return self._lookup(instance_key)[0]

    def _lookup(self, instance_key: str) -> tuple[InstanceKey, StepNode, Scope]:
        try:
            key = InstanceKey.parse(instance_key)
        except InstanceKeyError as exc:
            raise UnknownStepKeyError(self.id, instance_key, exc.reason) from None
        found = self._by_template.get(key.template)
        if found is None:
            raise UnknownStepKeyError(self.id, instance_key, "no such step in the manifest")
        return key, found[0], found[1]


def _compile_scope(
    specs: Mapping[str, StepSpec],
    base_path: str,
    template_prefix: str,
    by_template: dict[str, tuple[StepNode, Scope]],
) -> Scope:
    successors: dict[str, list[str]] = {key: [] for key in specs}
    for key, spec in specs.items():
        for pred in spec.run_after:
            successors[pred].append(key)
    nodes: dict[str, StepNode] = {}
    for key, spec in specs.items():
        path = f"{base_path}.{key}"
        inputs = compile_value(spec.inputs)
        references = set(inputs.step_references)
        rules: dict[str, RunAfterRule] = {}
        for pred, rule in spec.run_after.items():
            when = compile_condition(rule.when) if rule.when is not None else None
            if when is not None:
                references |= when.step_references
            statuses = frozenset(StepStatus(status) for status in rule.statuses)
            rules[pred] = RunAfterRule(statuses=statuses, when=when)
        for_each = body = None
        limit = 1
        if spec.type == FOR_EACH:
            for_each = compile_value(spec.for_each)
            references |= for_each.step_references
            limit = spec.concurrency_limit or DEFAULT_CONCURRENCY_LIMIT
            body = _compile_scope(
                spec.steps or {}, f"{path}.steps", f"{template_prefix}{key}.", by_template
            )
        nodes[key] = StepNode(
            key=key,
            path=path,
            type=spec.type,
            spec=spec,
            inputs=inputs,
            predecessors=MappingProxyType(rules),
            successors=tuple(successors[key]),
            retry=spec.retry,
            timeout=(
                timedelta(seconds=spec.timeout_seconds)
                if spec.timeout_seconds is not None
                else None
            ),
            for_each=for_each,
            concurrency_limit=limit,
            body=body,
            step_references=frozenset(references),
        )
    scope = Scope(
        steps=MappingProxyType(nodes),
        entry=tuple(key for key, node in nodes.items() if node.is_entry),
        leaves=tuple(key for key, node in nodes.items() if node.is_leaf),
        order=topological_order({key: tuple(spec.run_after) for key, spec in specs.items()}),
    )
    for key, node in nodes.items():
        by_template[f"{template_prefix}{key}"] = (node, scope)
    return scope


def topological_order(predecessors: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Order keys so each comes after its predecessors; manifest order breaks ties.

    Predecessors not in the mapping are ignored. Raises ValueError on a cycle.
    """
    remaining = {
        key: {pred for pred in preds if pred in predecessors} for key, preds in predecessors.items()
    }
    order: list[str] = []
    while remaining:
        ready = [key for key, preds in remaining.items() if not preds]
        if not ready:
            raise ValueError("cycle among steps: " + ", ".join(remaining))
        for key in ready:
            del remaining[key]
            order.append(key)
        for preds in remaining.values():
            preds.difference_update(ready)
    return tuple(order)
