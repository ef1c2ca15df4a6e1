"""Every limit floworch puts on names, keys, durations and sizes, in one place.

The SQL schema sizes its key columns from these constants (``tests/unit/test_limits.py``
asserts that they agree), and manifest validation and the engine check values against them, so a
value that validation accepts always fits the store. Lengths count characters (``nvarchar`` on SQL
Server, ``varchar`` on PostgreSQL, both sized in characters).

The ``*_problem`` functions return why a value breaks its rule, or None when it is fine; callers
turn the text into a located :class:`~floworch.errors.ValidationIssue` or an
:class:`~floworch.errors.InvalidInputError`.
"""

from __future__ import annotations

import re
from datetime import timedelta

# --- identifiers and keys (characters) --------------------------------------------------------

FLOW_ID_MAX_LENGTH = 100
"""Flow ids (``flows.flow_id``, ``runs.flow_id``, ...)."""
FLOW_VERSION_MAX_LENGTH = 100
"""Flow versions (``flows.version``, ``runs.flow_version``)."""
RUN_ID_MAX_LENGTH = 100
"""Run ids (the engine makes 32-character ones)."""
TRIGGER_KEY_MAX_LENGTH = 100
"""Trigger keys of a manifest (``runs.trigger_key``, schedule and cron tables)."""
STEP_TYPE_MAX_LENGTH = 100
"""Step types: handler names and the built-ins (``steps.step_type``)."""
STEP_KEY_MAX_LENGTH = 80
"""One step key as written in the manifest (``charge``)."""
INSTANCE_KEY_MAX_LENGTH = 300
"""A stored step instance key, ForEach prefixes included (``each.3.charge``)."""
SIGNAL_NAME_MAX_LENGTH = 100
"""Signal names (``signal_waiters.signal_name``, ``buffered_signals.signal_name``)."""
IDEMPOTENCY_KEY_MAX_LENGTH = 200
"""Idempotency keys given with a trigger (``runs.idempotency_key``)."""
CRON_EXPRESSION_MAX_LENGTH = 100
"""Cron expressions, in a manifest or as a schedule override (``schedule_states.cron_override``)."""
OWNER_MAX_LENGTH = 100
"""Lease owners: the worker ids that hold claims (``claims.owner``, ``steps.lease_owner``)."""
LEASE_NAME_MAX_LENGTH = 100
"""Names of host leases (``host_leases.lease_name``: e.g. the Function App's background pass)."""
EVENT_KIND_MAX_LENGTH = 100
"""Run event kinds (``events.kind``), chosen by the engine."""
WEBHOOK_SLUG_MAX_LENGTH = 200
"""Webhook URL path segments (``webhook_rejections.slug``)."""
WEBHOOK_DELIVERY_ID_MAX_LENGTH = 200
"""A webhook delivery's id, kept to refuse replays (``webhook_deliveries.delivery_id``)."""
WEBHOOK_SENDER_DELIVERY_ID_MAX_LENGTH = 150
"""A delivery id a webhook sender gives in its delivery id header: ``webhook:<id>`` becomes the
run's idempotency key, so it must fit :data:`IDEMPOTENCY_KEY_MAX_LENGTH` with room to spare."""
WEBHOOK_REJECTION_REASON_MAX_LENGTH = 40
"""Why a webhook request was refused, a short code chosen by floworch."""
HTTP_HEADER_NAME_MAX_LENGTH = 100
"""Header names a manifest gives (a Webhook's ``signatureHeader``, ``timestampHeader``,
``deliveryIdHeader``)."""
QUEUE_NAME_MAX_LENGTH = 260
"""Service Bus queue names (Service Bus allows 260 characters)."""
STATUS_MAX_LENGTH = 20
"""Run and step statuses (``Succeeded``, ``TimedOut``, ...), chosen by floworch."""
SERVICE_BUS_MESSAGE_ID_MAX_LENGTH = 128
"""Service Bus refuses longer ``MessageId`` values (the SDK raises ValueError)."""

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
"""Flow ids, trigger keys and webhook slugs: a letter or digit, then letters, digits, ``._-``."""
STEP_KEY_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]*"
"""Step keys: no dots, since instance keys of ForEach bodies join keys with dots."""
QUEUE_NAME_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?"
"""Service Bus queue names: letters, digits, ``._-/``; a letter or digit first and last."""
HTTP_HEADER_NAME_PATTERN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
"""An HTTP field name: an RFC 9110 token (ASCII letters, digits and ``!#$%&'*+-.^_`|~``; no
space, colon, newline or other control character)."""

_ID = re.compile(ID_PATTERN)
_STEP_KEY = re.compile(STEP_KEY_PATTERN)
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)
_HTTP_HEADER_NAME = re.compile(HTTP_HEADER_NAME_PATTERN)
_ID_RULE = "must start with a letter or digit and contain only letters, digits, '-', '_' and '.'"

# --- ForEach ------------------------------------------------------------------------------------

MAX_FOR_EACH_ITEMS = 100_000
"""Items one ForEach may iterate over; more fail the ForEach step at run time."""
FOR_EACH_INDEX_MAX_LENGTH = len(str(MAX_FOR_EACH_ITEMS - 1))
"""Digits of the largest iteration index; each ForEach level adds ``.<index>.`` to a key."""
FOR_EACH_PREFIX_EXTRA = FOR_EACH_INDEX_MAX_LENGTH + 2
"""Characters one ForEach level adds to an instance key besides the loop's own key."""

# --- numbers and durations ----------------------------------------------------------------------

MAX_DURATION = timedelta(days=366)
"""The longest duration a manifest may ask for: timeouts, retry and poll intervals, delays."""
MAX_DURATION_SECONDS = int(MAX_DURATION.total_seconds())
"""``MAX_DURATION`` in whole seconds: 31622400."""
MAX_ATTEMPTS = 10_000
"""The most attempts a retry policy (or a poll's ``minAttempts``) may ask for."""

# --- sizes of manifests and expressions ---------------------------------------------------------

MAX_EXPRESSION_LENGTH = 8_192
"""Characters in one expression: a whole ``@...`` value, one ``@{...}`` or one When clause."""
MAX_EXPRESSION_DEPTH = 48
"""Deepest nesting of calls, brackets, parentheses and ``!`` in one expression."""
MAX_MANIFEST_NESTING = 100
"""Deepest nesting of objects and arrays in a manifest."""
MAX_YAML_ALIAS_NODES = 10_000
"""Nodes that YAML aliases (``*name``, ``<<: *name``) may add to a document, all counted."""


# --- values the engine stores -------------------------------------------------------------------

MAX_STORED_JSON_BYTES = 2 * 1024 * 1024
"""UTF-8 bytes of one JSON value the engine stores for a step: its output, its resolved inputs,
a ForEach's items, an error's details. Larger values fail the step (``OutputNotStorable``)."""
MAX_STORED_JSON_NESTING = 100
"""Deepest nesting of objects and arrays in a stored value (deeper ones could not be read back
without exhausting the interpreter's recursion limit)."""
MAX_ERROR_MESSAGE_LENGTH = 8_000
"""Characters of an error message the engine keeps (longer ones are cut, with a note)."""
MAX_TRACEBACK_LENGTH = 32_000
"""Characters of a traceback the engine keeps (the end, where the error is, is kept)."""


def _text_problem(value: object, what: str, max_length: int) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string"
    if not value:
        return f"{what} must not be empty"
    if len(value) > max_length:
        return f"{what} is {len(value)} characters long; the limit is {max_length}"
    return None


def _printable_problem(value: str, what: str) -> str | None:
    if not value.isprintable():
        bad = next(ch for ch in value if not ch.isprintable())
        return f"{what} {_short(value)} contains {bad!r}; only printable characters are allowed"
    return None


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def flow_id_problem(value: object) -> str | None:
    """Why ``value`` is not a valid flow id, or None."""
    return _id_problem(value, "flow id", FLOW_ID_MAX_LENGTH)


def trigger_key_problem(value: object) -> str | None:
    """Why ``value`` is not a valid trigger key, or None."""
    return _id_problem(value, "trigger key", TRIGGER_KEY_MAX_LENGTH)


def webhook_slug_problem(value: object) -> str | None:
    """Why ``value`` is not a valid webhook slug, or None."""
    return _id_problem(value, "slug", WEBHOOK_SLUG_MAX_LENGTH)


def _id_problem(value: object, what: str, max_length: int) -> str | None:
    problem = _text_problem(value, what, max_length)
    if problem is None and isinstance(value, str) and not _ID.fullmatch(value):
        problem = f"{what} {_short(value)} {_ID_RULE}"
    return problem


def step_key_problem(value: object) -> str | None:
    """Why ``value`` is not a valid step key (as written in a manifest), or None."""
    problem = _text_problem(value, "step key", STEP_KEY_MAX_LENGTH)
    if problem is None and isinstance(value, str) and not _STEP_KEY.fullmatch(value):
        problem = (
            f"step key {_short(value)} must start with a letter or '_' and contain only "
            "letters, digits, '_' and '-'"
        )
    return problem


def instance_key_length(keys: list[str]) -> int:
    """The longest instance key of the step at the end of ``keys`` (its ForEach loops first).

    ``["each", "charge"]`` can reach ``each.99999.charge``.
    """
    return sum(len(key) for key in keys) + FOR_EACH_PREFIX_EXTRA * (len(keys) - 1)


def flow_version_problem(value: object) -> str | None:
    """Why ``value`` is not a valid flow version, or None."""
    return _printable_text_problem(value, "version", FLOW_VERSION_MAX_LENGTH)


def step_type_problem(value: object) -> str | None:
    """Why ``value`` is not a valid step type (handler name), or None."""
    return _printable_text_problem(value, "step type", STEP_TYPE_MAX_LENGTH)


def signal_name_problem(value: object) -> str | None:
    """Why ``value`` is not a valid signal name, or None."""
    return _printable_text_problem(value, "signal name", SIGNAL_NAME_MAX_LENGTH)


def idempotency_key_problem(value: object) -> str | None:
    """Why ``value`` is not a valid idempotency key, or None."""
    return _printable_text_problem(value, "idempotency key", IDEMPOTENCY_KEY_MAX_LENGTH)


def webhook_delivery_id_problem(value: object) -> str | None:
    """Why ``value`` is not a valid delivery id from a webhook sender, or None."""
    return _printable_text_problem(value, "delivery id", WEBHOOK_SENDER_DELIVERY_ID_MAX_LENGTH)


def _printable_text_problem(value: object, what: str, max_length: int) -> str | None:
    problem = _text_problem(value, what, max_length)
    if problem is None and isinstance(value, str):
        problem = _printable_problem(value, what)
    return problem


def queue_name_problem(value: object) -> str | None:
    """Why ``value`` is not a valid Service Bus queue name, or None."""
    problem = _text_problem(value, "queue name", QUEUE_NAME_MAX_LENGTH)
    if problem is None and isinstance(value, str) and not _QUEUE_NAME.fullmatch(value):
        problem = (
            f"queue name {_short(value)} must contain only letters, digits, '.', '-', '_' and "
            "'/', and start and end with a letter or digit"
        )
    return problem


def header_name_problem(value: object) -> str | None:
    """Why ``value`` is not a valid HTTP header name, or None."""
    problem = _text_problem(value, "header name", HTTP_HEADER_NAME_MAX_LENGTH)
    if problem is None and isinstance(value, str) and not _HTTP_HEADER_NAME.fullmatch(value):
        problem = (
            f"header name {_short(value)} must be an HTTP header name: ASCII letters, digits "
            "and !#$%&'*+-.^_`|~ only (no spaces, colons or control characters)"
        )
    return problem


def duration_problem(seconds: float) -> str | None:
    """Why a duration of ``seconds`` is too long, or None (the caller checks the lower bound)."""
    if seconds > MAX_DURATION_SECONDS:
        return f"must be at most {MAX_DURATION_SECONDS} seconds ({MAX_DURATION.days} days)"
    return None
