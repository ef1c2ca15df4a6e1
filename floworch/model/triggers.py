"""Trigger types of a flow manifest: Manual, Cron, Webhook and ServiceBus."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator
from pydantic.alias_generators import to_camel

from floworch import limits

SLUG_PATTERN = rf"^{limits.ID_PATTERN}$"
"""Flow ids and webhook slugs (pydantic's regex engine matches ``$`` only at the very end)."""
_HEADER_NAME_PATTERN = rf"^{limits.HTTP_HEADER_NAME_PATTERN}$"


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


ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
WebhookContentType = Literal["application/json", "application/x-www-form-urlencoded"]


def _default_content_types() -> list[WebhookContentType]:
    return ["application/json", "application/x-www-form-urlencoded"]


class SecretFrom(ManifestModel):
    """Where a host finds a secret at start-up: an environment variable or app setting."""

    env: str = Field(
        pattern=ENV_NAME_PATTERN,
        max_length=200,
        description="Environment variable (or Function App setting) holding the secret.",
    )


class WebhookTrigger(ManifestModel):
    """A run started by an HTTP POST to ``/api/webhooks/<slug>``, signed with HMAC-SHA256.

    The secret never sits in the manifest: ``secretFrom: {env: NAME}`` names the environment
    variable or app setting the host reads when it starts (``secret: "env:NAME"`` is the older
    spelling of the same). See docs/webhooks.md for GitHub- and Stripe-style settings.
    """

    type: Literal["Webhook"]
    slug: str = Field(
        pattern=SLUG_PATTERN,
        max_length=limits.WEBHOOK_SLUG_MAX_LENGTH,
        description="URL path segment.",
    )
    secret_from: SecretFrom | None = Field(
        default=None, description="Where the host reads the HMAC secret at start-up."
    )
    secret: str | None = Field(
        default=None,
        description="Deprecated spelling of secretFrom: 'env:NAME'. A literal secret is refused.",
    )
    signature_header: str = Field(
        default="X-Floworch-Signature",
        min_length=1,
        max_length=limits.HTTP_HEADER_NAME_MAX_LENGTH,
        pattern=_HEADER_NAME_PATTERN,
        description="Header carrying the signature.",
    )
    signature_format: Literal["hex", "base64", "stripe"] = Field(
        default="hex",
        description="hex or base64 HMAC-SHA256 (an 'sha256=' prefix is accepted), or "
        "stripe: 't=<unix time>,v1=<hex>' over '<t>.<body>'.",
    )
    timestamp_header: str | None = Field(
        default="X-Floworch-Timestamp",
        min_length=1,
        max_length=limits.HTTP_HEADER_NAME_MAX_LENGTH,
        pattern=_HEADER_NAME_PATTERN,
        description="Header carrying the delivery's Unix time; the signature then covers "
        "'<timestamp>.<body>'. null: no timestamp (the signature covers the body; replays are "
        "caught by delivery id only).",
    )
    replay_window_seconds: float = Field(
        default=300,
        gt=0,
        le=limits.MAX_DURATION_SECONDS,
        description="Refuse deliveries whose timestamp is older (or newer).",
    )
    delivery_id_header: str | None = Field(
        default="X-Floworch-Delivery",
        min_length=1,
        max_length=limits.HTTP_HEADER_NAME_MAX_LENGTH,
        pattern=_HEADER_NAME_PATTERN,
        description="Header with the sender's unique delivery id (a repeat starts no second "
        "run); without one the signature identifies the delivery.",
    )
    max_body_bytes: int | None = Field(
        default=None, gt=0, description="Reject bodies larger than this (default: 1 MiB)."
    )
    content_types: list[WebhookContentType] = Field(
        default_factory=_default_content_types,
        min_length=1,
        description="Accepted request content types.",
    )
    rate_limit_per_minute: int | None = Field(
        default=None, gt=0, description="Reject requests above this rate (per host and slug)."
    )
    description: str | None = Field(default=None, description="What this trigger is for.")

    @field_validator("signature_header", "timestamp_header", "delivery_id_header", mode="before")
    @classmethod
    def _check_header_name(cls, value: object) -> object:
        # Checked here so the message names the rule; the Field bounds feed the JSON Schema.
        problem = limits.header_name_problem(value) if isinstance(value, str) else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("secret")
    @classmethod
    def _no_literal_secret(cls, value: str | None) -> str | None:
        if value is None:
            return value
        name = value[4:] if value.startswith("env:") else ""
        if not re.fullmatch(ENV_NAME_PATTERN, name):
            raise ValueError(
                "a literal secret is refused in a manifest (it would be stored in the database "
                "and in source control): put it in an environment variable or app setting and "
                "write secretFrom: {env: NAME}"
            )
        return value

    @model_validator(mode="after")
    def _one_secret_source(self) -> WebhookTrigger:
        if self.secret is not None and self.secret_from is not None:
            raise ValueError("give secretFrom or secret ('env:NAME'), not both")
        return self

    @property
    def secret_env(self) -> str | None:
        """The environment variable holding the secret, or None when none is configured."""
        if self.secret_from is not None:
            return self.secret_from.env
        if self.secret is not None:
            return self.secret[4:]
        return None


class ServiceBusTrigger(ManifestModel):
    """A run started by a Service Bus message (topic ``flow-triggers`` unless ``queue`` is set)."""

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
