"""The flow manifest: the pydantic models at the JSON/YAML/Python boundary.

Models here check shapes, types and ranges. Rules that need the whole manifest (predecessors,
cycles, expressions, step-type specific fields) live in :mod:`floworch.model.validation`; call
:func:`floworch.model.validate_manifest` (or a loader) rather than ``FlowManifest.model_validate``
to get every check.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, JsonValue, ValidationInfo, field_validator

from floworch import limits
from floworch.model.triggers import SLUG_PATTERN, ManifestModel, Trigger

FOR_EACH = "ForEach"
WAIT_FOR_SIGNAL = "WaitForSignal"
DELAY = "Delay"
BUILTIN_STEP_TYPES: frozenset[str] = frozenset({FOR_EACH, WAIT_FOR_SIGNAL, DELAY})
"""Step types the engine implements itself; always known to validation."""

DEFAULT_CONCURRENCY_LIMIT = 10
"""How many ForEach iterations run at once when ``concurrencyLimit`` is not given."""

RunAfterStatus = Literal["Succeeded", "Failed", "Skipped", "TimedOut", "Cancelled"]
"""A terminal step status a ``runAfter`` rule can wait for."""

_MAX_SECONDS = limits.MAX_DURATION_SECONDS


_STEP_KEYS: dict[str, Any] = {
    "propertyNames": {
        "pattern": f"^{limits.STEP_KEY_PATTERN}$",
        "maxLength": limits.STEP_KEY_MAX_LENGTH,
    }
}
_TRIGGER_KEYS: dict[str, Any] = {
    "propertyNames": {
        "pattern": f"^{limits.ID_PATTERN}$",
        "maxLength": limits.TRIGGER_KEY_MAX_LENGTH,
    }
}


def _checked(problem: str | None) -> None:
    if problem:
        raise ValueError(problem)


class RetryPolicy(ManifestModel):
    """Automatic retries of a failed step with exponential backoff.

    The delay before attempt ``n + 1`` is ``initialIntervalSeconds * backoffCoefficient**(n - 1)``,
    capped at ``maxIntervalSeconds``.
    """

    max_attempts: int = Field(
        default=3,
        ge=1,
        le=limits.MAX_ATTEMPTS,
        description="Attempts in total, counting the first try.",
    )
    initial_interval_seconds: float = Field(
        default=1.0, gt=0, le=_MAX_SECONDS, description="Delay before the first retry."
    )
    backoff_coefficient: float = Field(
        default=2.0, ge=1, description="Each further delay is the previous one times this."
    )
    max_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        le=_MAX_SECONDS,
        description="Upper bound of a delay (>= initialIntervalSeconds).",
    )
    retry_on: list[str] | None = Field(
        default=None,
        description="Retry only errors of these type names (e.g. 'TimeoutError'); "
        "default: every retryable error.",
    )

    @field_validator("max_interval_seconds")
    @classmethod
    def _check_max_interval(cls, value: float | None, info: ValidationInfo) -> float | None:
        initial = info.data.get("initial_interval_seconds")
        if value is not None and isinstance(initial, float | int) and value < initial:
            raise ValueError(
                f"maxIntervalSeconds ({value:g}) must be >= initialIntervalSeconds ({initial:g})"
            )
        return value

    def delay_before(self, attempt: int) -> timedelta:
        """Return the delay before ``attempt`` (2 for the first retry, 3 for the next, ...).

        The delay never exceeds ``maxIntervalSeconds``, nor the longest duration a manifest may
        ask for (:data:`floworch.limits.MAX_DURATION`).
        """
        exponent = max(attempt - 2, 0)
        try:
            seconds = self.initial_interval_seconds * self.backoff_coefficient**exponent
        except OverflowError:
            seconds = float("inf")
        if self.max_interval_seconds is not None:
            seconds = min(seconds, self.max_interval_seconds)
        return timedelta(seconds=min(seconds, _MAX_SECONDS))


class PollPolicy(ManifestModel):
    """How the engine re-runs a step whose handler returned Pending."""

    interval_seconds: float = Field(gt=0, le=_MAX_SECONDS, description="Delay between polls.")
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=_MAX_SECONDS,
        description="Fail the step with TimedOut after polling this long.",
    )
    min_attempts: int | None = Field(
        default=None,
        ge=1,
        le=limits.MAX_ATTEMPTS,
        description="Poll at least this many times, even past the timeout.",
    )
    condition_path: str | None = Field(
        default=None,
        min_length=1,
        description="Dotted path into the handler output; polling stops when it equals "
        "conditionEquals.",
    )
    condition_equals: JsonValue = Field(
        default=None, description="Value at conditionPath that ends polling."
    )


class RunAfterSpec(ManifestModel):
    """When a step may run after one predecessor.

    In a manifest, ``"pred": ["Succeeded"]`` is short for ``"pred": {"statuses": ["Succeeded"]}``.
    """

    statuses: list[RunAfterStatus] = Field(
        default_factory=list,
        description="Predecessor statuses that let this step run; empty = any terminal status.",
    )
    when: str | None = Field(
        default=None,
        description="Condition expression; when false the step is skipped.",
        examples=["@steps('approve').output.approved == true"],
    )


def _run_after_shorthand(value: object) -> object:
    if isinstance(value, list | tuple):
        return {"statuses": list(value)}
    return value


RunAfterValue = Annotated[
    RunAfterSpec,
    BeforeValidator(
        _run_after_shorthand, json_schema_input_type=list[RunAfterStatus] | RunAfterSpec
    ),
]


class StepSpec(ManifestModel):
    """One step: a handler (by type name) or a built-in (ForEach, WaitForSignal, Delay)."""

    type: str = Field(
        min_length=1,
        max_length=limits.STEP_TYPE_MAX_LENGTH,
        description="Handler name, or ForEach, WaitForSignal or Delay.",
        examples=["ForEach", "WaitForSignal", "Delay"],
    )
    description: str | None = Field(default=None, description="What this step does.")
    inputs: JsonValue = Field(
        default_factory=dict,
        description="Handler inputs; any JSON value; strings starting with '@' are expressions "
        "resolved when the step runs.",
    )
    run_after: dict[str, RunAfterValue] = Field(
        default_factory=dict,
        description="Predecessors and the statuses they must end in; none = entry step.",
    )
    retry: RetryPolicy | None = Field(default=None, description="Automatic retry policy.")
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=_MAX_SECONDS,
        description="Fail an attempt that runs longer than this.",
    )
    poll: PollPolicy | None = Field(default=None, description="Polling of a Pending handler.")
    for_each: JsonValue = Field(
        default=None,
        description="ForEach only: the items, an expression or a literal list.",
        json_schema_extra={"anyOf": [{"type": "string"}, {"type": "array"}]},
    )
    concurrency_limit: int | None = Field(
        default=None,
        ge=1,
        le=limits.MAX_FOR_EACH_ITEMS,
        description=f"ForEach only: iterations run at once (default {DEFAULT_CONCURRENCY_LIMIT}).",
    )
    steps: dict[str, StepSpec] | None = Field(
        default=None,
        description="ForEach only: the loop body, its own DAG of steps.",
        json_schema_extra=_STEP_KEYS,
    )

    @field_validator("type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        _checked(limits.step_type_problem(value))
        return value

    @field_validator("for_each")
    @classmethod
    def _check_for_each(cls, value: JsonValue) -> JsonValue:
        if value is not None and not isinstance(value, str | list):
            raise ValueError("must be an expression string or a list of items")
        return value


def _version_from_number(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class FlowManifest(ManifestModel):
    """A flow: its id, version, triggers and steps."""

    schema_: str | None = Field(
        default=None, alias="$schema", description="URL of this JSON Schema, for editors."
    )
    id: str = Field(
        pattern=SLUG_PATTERN,
        max_length=limits.FLOW_ID_MAX_LENGTH,
        description="Stable flow id: letters, digits, '-', '_', '.'.",
    )
    version: Annotated[
        str, BeforeValidator(_version_from_number, json_schema_input_type=str | int | float)
    ] = Field(
        min_length=1,
        max_length=limits.FLOW_VERSION_MAX_LENGTH,
        description="Flow version; a number is read as text.",
    )
    description: str | None = Field(default=None, description="What this flow does.")
    enabled: bool = Field(default=True, description="Disabled flows start no runs.")
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=_MAX_SECONDS,
        description="Time out a run that lasts longer than this.",
    )
    triggers: dict[str, Trigger] = Field(
        default_factory=dict,
        description="Named triggers that start runs.",
        json_schema_extra=_TRIGGER_KEYS,
    )
    steps: dict[str, StepSpec] = Field(
        min_length=1, description="Named steps (a DAG).", json_schema_extra=_STEP_KEYS
    )

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        _checked(limits.flow_version_problem(value))
        return value

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as JSON-ready data in manifest (camelCase) names."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
