"""Flow manifests: models, loading, validation, JSON Schema, Mermaid export and the compiled graph.

Typical use::

    from floworch.model import FlowDefinition, load_manifest

    definition = FlowDefinition.from_manifest(load_manifest("flows/orders.yaml"))
"""

from floworch.model.builder import Flow, ForEachBody, Poll, Retry
from floworch.model.graph import (
    FlowDefinition,
    RunAfterRule,
    Scope,
    StepNode,
    UnknownStepKeyError,
    topological_order,
)
from floworch.model.loading import load_flows_from_path, load_manifest, parse_manifest_text
from floworch.model.manifest import (
    BUILTIN_STEP_TYPES,
    DEFAULT_CONCURRENCY_LIMIT,
    DELAY,
    FOR_EACH,
    WAIT_FOR_SIGNAL,
    FlowManifest,
    PollPolicy,
    RetryPolicy,
    RunAfterSpec,
    RunAfterStatus,
    StepSpec,
)
from floworch.model.mermaid import to_mermaid
from floworch.model.schema import manifest_json_schema
from floworch.model.statuses import TERMINAL_STEP_STATUSES, RunStatus, StepStatus
from floworch.model.triggers import (
    CronTrigger,
    ManualTrigger,
    ServiceBusTrigger,
    Trigger,
    WebhookTrigger,
    cron_problem,
    croniter_expression,
)
from floworch.model.validation import validate_manifest

__all__ = [
    "BUILTIN_STEP_TYPES",
    "DEFAULT_CONCURRENCY_LIMIT",
    "DELAY",
    "FOR_EACH",
    "TERMINAL_STEP_STATUSES",
    "WAIT_FOR_SIGNAL",
    "CronTrigger",
    "Flow",
    "FlowDefinition",
    "FlowManifest",
    "ForEachBody",
    "ManualTrigger",
    "Poll",
    "PollPolicy",
    "Retry",
    "RetryPolicy",
    "RunAfterRule",
    "RunAfterSpec",
    "RunAfterStatus",
    "RunStatus",
    "Scope",
    "ServiceBusTrigger",
    "StepNode",
    "StepSpec",
    "StepStatus",
    "Trigger",
    "UnknownStepKeyError",
    "WebhookTrigger",
    "cron_problem",
    "croniter_expression",
    "load_flows_from_path",
    "load_manifest",
    "manifest_json_schema",
    "parse_manifest_text",
    "to_mermaid",
    "topological_order",
    "validate_manifest",
]
