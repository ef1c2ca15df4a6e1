"""Trigger types of a flow manifest: Manual, Cron, Webhook and ServiceBus."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator
from pydantic.alias_generators import to_camel

from floworch import limits

SLUG_PATTERN = rf"^{limits.ID_PATTERN}$"
"""Flow ids and webhook slugs (pydantic's regex engine matches ``$`` only at the very end)."""


class ManifestModel(BaseModel):
    """Base of every manifest model: camelCase JSON names, snake_case Python names, strict."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        frozen=True,
    )


def cron_problem(expression: str) -> str | None:
    """Say why a cron expression is invalid, or return None when it is valid.

    Five fields (minute hour day-of-month month day-of-week) or six with seconds first.
    """
    if len(expression) > limits.CRON_EXPRESSION_MAX_LENGTH:
        return (
            f"cron expression is {len(expression)} characters long; the limit is "
            f"{limits.CRON_EXPRESSION_MAX_LENGTH}"
        )
    fields = expression.split()
    if len(fields) not in (5, 6):
        return (
            f"cron expression {expression!r} has {len(fields)} fields; expected 5 "
            "(minute hour day month weekday) or 6 (seconds first)"
        )
    # croniter takes the seconds field last; the manifest puts it first like Quartz/NCrontab.
    normalised = " ".join(fields[1:] + fields[:1]) if len(fields) == 6 else expression
    try:
        croniter(normalised)
    except Exception as exc:  # croniter raises several unrelated types for bad input
        reason = str(exc) or type(exc).__name__
        return f"invalid cron expression {expression!r}: {reason}"
    return None


def croniter_expression(expression: str) -> str:
    """Return ``expression`` in croniter's field order (seconds, if any, moved last)."""
    fields = expression.split()
    return " ".join(fields[1:] + fields[:1]) if len(fields) == 6 else " ".join(fields)


class ManualTrigger(ManifestModel):
    """A run started on demand (CLI, API, dashboard, test host)."""

    type: Literal["Manual"]
    description: str | None = Field(default=None, description="What this trigger is for.")


class CronTrigger(ManifestModel):
    """A run started on a schedule."""

    type: Literal["Cron"]
    cron: str = Field(
        description="5 fields (minute hour day month weekday) or 6 with seconds first.",
        examples=["0 2 * * *", "*/30 * * * * *"],
    )
    timezone: str = Field(default="UTC", description="IANA time zone name, e.g. Europe/Paris.")
    missed_fires: Literal["fireOnce", "skip"] = Field(
        default="fireOnce",
        description="What to do with fire times missed while nothing was running: "
        "fire once for all of them, or skip them.",
    )
    body: JsonValue = Field(default=None, description="Trigger body given to each run.")
    description: str | None = Field(default=None, description="What this trigger is for.")

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        problem = cron_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            message = f"unknown time zone {value!r} (use an IANA name such as 'UTC')"
            raise ValueError(message) from exc
        return value


class WebhookTrigger(ManifestModel):
    """A run started by an HTTP POST to ``/webhooks/<slug>``."""

    type: Literal["Webhook"]
    slug: str = Field(
        pattern=SLUG_PATTERN,
        max_length=limits.WEBHOOK_SLUG_MAX_LENGTH,
        description="URL path segment.",
    )
    secret: str | None = Field(
        default=None,
        description="HMAC secret for the signature header; 'env:NAME' reads environment "
        "variable NAME when the host starts.",
    )
    max_body_bytes: int | None = Field(
        default=None, gt=0, description="Reject bodies larger than this many bytes."
    )
    rate_limit_per_minute: int | None = Field(
        default=None, gt=0, description="Reject requests above this rate (per flow and slug)."
    )
    description: str | None = Field(default=None, description="What this trigger is for.")


class ServiceBusTrigger(ManifestModel):
    """A run started by a Service Bus message (queue ``flow-triggers`` unless ``queue`` is set)."""

    type: Literal["ServiceBus"]
    queue: str | None = Field(
        default=None,
        min_length=1,
        max_length=limits.QUEUE_NAME_MAX_LENGTH,
        pattern=f"^{limits.QUEUE_NAME_PATTERN}$",
        description="Queue to listen on.",
    )
    description: str | None = Field(default=None, description="What this trigger is for.")

    @field_validator("queue", mode="before")
    @classmethod
    def _check_queue(cls, value: object) -> object:
        # Checked here so the message names the rule; the Field bounds feed the JSON Schema.
        problem = limits.queue_name_problem(value) if isinstance(value, str) else None
        if problem:
            raise ValueError(problem)
        return value


Trigger = Annotated[
    ManualTrigger | CronTrigger | WebhookTrigger | ServiceBusTrigger,
    Field(discriminator="type"),
]
"""Any trigger; the ``type`` field selects the kind."""

TRIGGER_MODELS: dict[str, type[ManifestModel]] = {
    "Manual": ManualTrigger,
    "Cron": CronTrigger,
    "Webhook": WebhookTrigger,
    "ServiceBus": ServiceBusTrigger,
}
