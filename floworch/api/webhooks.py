"""Webhook signature checks: HMAC-SHA256 over the raw body, in three header formats.

- ``hex`` / ``base64``: the header holds the MAC, optionally prefixed ``sha256=`` (GitHub's
  ``X-Hub-Signature-256``). With a timestamp header the MAC covers ``<timestamp>.<body>``,
  otherwise the body alone.
- ``stripe``: the header holds ``t=<unix time>,v1=<hex>[,v1=<hex>...]`` and the MAC covers
  ``<t>.<body>`` (Stripe's ``Stripe-Signature``).

Everything here is pure (no I/O) so it is unit-tested on its own; the route decides what to do
with each :class:`Refusal`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from floworch import limits
from floworch.model import FlowDefinition
from floworch.model.triggers import WebhookTrigger
from floworch.storage.api_records import RejectionReason


@dataclass(frozen=True)
class WebhookRoute:
    """A webhook trigger found by its slug."""

    flow: FlowDefinition
    trigger_key: str
    trigger: WebhookTrigger


class Refusal(Exception):
    """Why a delivery is refused: the reason logged, the HTTP status and a detail for the
    sender (never a secret, never the expected signature)."""

    def __init__(self, reason: RejectionReason, status: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status
        self.detail = detail


def webhook_routes(flows: Iterable[FlowDefinition]) -> dict[str, WebhookRoute]:
    """Webhook triggers by slug.

    Raises:
        ValueError: two triggers share a slug.
    """
    routes: dict[str, WebhookRoute] = {}
    for flow in flows:
        for key, trigger in flow.triggers.items():
            if not isinstance(trigger, WebhookTrigger):
                continue
            if trigger.slug in routes:
                other = routes[trigger.slug]
                raise ValueError(
                    f"webhook slug {trigger.slug!r} is used by {other.flow.id}.{other.trigger_key}"
                    f" and {flow.id}.{key}: give each webhook trigger its own slug"
                )
            routes[trigger.slug] = WebhookRoute(flow, key, trigger)
    return routes


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), payload, hashlib.sha256).digest()


def _decode(value: str, fmt: str) -> bytes | None:
    text = value.strip()
    if text.lower().startswith("sha256="):
        text = text[7:]
    try:
        if fmt == "base64":
            return base64.b64decode(text, validate=True)
        return bytes.fromhex(text)
    except (ValueError, binascii.Error):
        return None


def _stripe_parts(value: str) -> tuple[str | None, list[str]]:
    timestamp: str | None = None
    macs: list[str] = []
    for part in value.split(","):
        name, _, item = part.strip().partition("=")
        if name == "t":
            timestamp = item
        elif name == "v1":
            macs.append(item)
    return timestamp, macs


def _fresh(timestamp: str, now: datetime, window: timedelta) -> None:
    try:
        sent = float(timestamp)
    except ValueError as exc:
        raise Refusal(
            RejectionReason.MISSING_TIMESTAMP, 401, "the timestamp is not a Unix time in seconds"
        ) from exc
    age = now.timestamp() - sent
    if abs(age) > window.total_seconds():
        raise Refusal(
            RejectionReason.STALE_TIMESTAMP,
            401,
            f"the delivery's timestamp is {abs(age):.0f} s from the server's clock, outside the "
            f"replay window of {window.total_seconds():.0f} s",
        )


def verify(
    trigger: WebhookTrigger,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> str:
    """Checks a delivery's signature and timestamp; returns the signature (to derive a
    delivery id from when the sender gives none).

    Raises:
        Refusal: missing or bad signature, missing or stale timestamp.
    """
    signature = headers.get(trigger.signature_header.lower())
    if not signature:
        raise Refusal(
            RejectionReason.MISSING_SIGNATURE,
            401,
            f"the {trigger.signature_header} header is missing: sign the body with HMAC-SHA256",
        )
    window = timedelta(seconds=trigger.replay_window_seconds)
    if trigger.signature_format == "stripe":
        timestamp, macs = _stripe_parts(signature)
        if not timestamp:
            raise Refusal(
                RejectionReason.MISSING_TIMESTAMP,
                401,
                f"the {trigger.signature_header} header has no t=<timestamp>",
            )
        expected = _mac(secret, timestamp.encode() + b"." + body).hex()
        if not any(hmac.compare_digest(expected, m.strip().lower()) for m in macs):
            raise Refusal(RejectionReason.BAD_SIGNATURE, 401, "the signature does not match")
        _fresh(timestamp, now, window)
        return signature
    payload = body
    timestamp = None
    if trigger.timestamp_header is not None:
        timestamp = headers.get(trigger.timestamp_header.lower())
        if not timestamp:
            raise Refusal(
                RejectionReason.MISSING_TIMESTAMP,
                401,
                f"the {trigger.timestamp_header} header is missing: send the Unix time and sign "
                "'<timestamp>.<body>'",
            )
        payload = timestamp.encode() + b"." + body
    given = _decode(signature, trigger.signature_format)
    if given is None or not hmac.compare_digest(_mac(secret, payload), given):
        raise Refusal(RejectionReason.BAD_SIGNATURE, 401, "the signature does not match")
    if timestamp is not None:
        _fresh(timestamp, now, window)
    return signature


def delivery_id(trigger: WebhookTrigger, headers: Mapping[str, str], signature: str) -> str:
    """The sender's delivery id, or one derived from the (verified) signature."""
    if trigger.delivery_id_header is not None:
        given = headers.get(trigger.delivery_id_header.lower(), "").strip()
        if given:
            problem = limits.webhook_delivery_id_problem(given)
            if problem is not None:
                raise Refusal(
                    RejectionReason.BAD_BODY,
                    400,
                    f"the {trigger.delivery_id_header} header: {problem}",
                )
            return given
    return "sig-" + hashlib.sha256(signature.encode()).hexdigest()[:40]


def sign(secret: str, body: bytes, *, timestamp: int | None = None, fmt: str = "hex") -> str:
    """The signature header value a sender computes (for tests, docs and senders in Python)."""
    if fmt == "stripe":
        assert timestamp is not None, "stripe signatures carry a timestamp"
        mac = _mac(secret, str(timestamp).encode() + b"." + body).hex()
        return f"t={timestamp},v1={mac}"
    signed = body if timestamp is None else str(timestamp).encode() + b"." + body
    digest = _mac(secret, signed)
    return "sha256=" + (base64.b64encode(digest).decode() if fmt == "base64" else digest.hex())
