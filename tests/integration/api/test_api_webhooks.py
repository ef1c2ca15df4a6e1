"""Webhooks: a good delivery starts a run; every bad one is a clear 4xx, logged as a rejection
with its reason, and starts nothing."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from floworch.api.webhooks import sign
from floworch.storage.factory import open_store
from floworch.storage.port import Store

from .conftest import SECRET, Api, start_api

URL = "/api/webhooks/orders"


def _headers(body: bytes, *, ts: int | None = None, delivery: str | None = "d-1") -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    headers = {
        "Content-Type": "application/json",
        "X-Floworch-Timestamp": str(ts),
        "X-Floworch-Signature": sign(SECRET, body, timestamp=ts),
    }
    if delivery:
        headers["X-Floworch-Delivery"] = delivery
    return headers


async def _runs(api: Api) -> int:
    return int((await api.client.get("/api/runs")).json()["total"])


async def _refused(api: Api, status: int, reason: str, **request: Any) -> dict[str, Any]:
    before = await _runs(api)
    response = await api.client.post(URL, **request)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await _runs(api) == before, "a refused delivery started a run"
    (latest,) = (await api.client.get("/api/webhooks/rejections", params={"limit": 1})).json()[
        "rejections"
    ]
    assert latest["reason"] == reason, latest
    assert SECRET not in response.text and SECRET not in json.dumps(latest)
    return dict(response.json())


async def test_a_signed_delivery_starts_one_run(api: Api) -> None:
    body = json.dumps({"orderId": 9}).encode()
    accepted = await api.client.post(URL, content=body, headers=_headers(body))
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["runId"]
    assert accepted.json()["deliveryId"] == "d-1"
    run = await api.wait_step(run_id, "check", "Succeeded")
    assert run["triggerKey"] == "hook" and run["triggerBody"] == {"orderId": 9}
    assert "x-floworch-signature" not in {k.lower() for k in run["triggerHeaders"]}
    (delivery,) = (await api.client.get("/api/webhooks/deliveries")).json()["deliveries"]
    assert delivery["runId"] == run_id
    await _refused(api, 409, "Replayed", content=body, headers=_headers(body))
    stats = (await api.client.get("/api/stats")).json()
    assert stats["webhookRejections"] == {"Replayed": 1}


async def test_bad_deliveries_are_refused_and_logged(api: Api) -> None:
    body = b'{"orderId": 1}'
    good = _headers(body, delivery=None)
    wrong = {**good, "X-Floworch-Signature": sign("not-the-secret", body, timestamp=1)}
    await _refused(api, 401, "BadSignature", content=body, headers=wrong)
    tampered = await _refused(api, 401, "BadSignature", content=b'{"orderId": 2}', headers=good)
    assert tampered["detail"] == "the signature does not match"
    no_sig = {k: v for k, v in good.items() if k != "X-Floworch-Signature"}
    await _refused(api, 401, "MissingSignature", content=body, headers=no_sig)
    no_ts = {k: v for k, v in good.items() if k != "X-Floworch-Timestamp"}
    await _refused(api, 401, "MissingTimestamp", content=body, headers=no_ts)
    old = int(time.time()) - 3600
    stale = await _refused(api, 401, "StaleTimestamp", content=body, headers=_headers(body, ts=old))
    assert "replay window" in stale["detail"]
    big = b'"' + b"x" * (1024 * 1024) + b'"'
    await _refused(api, 413, "BodyTooLarge", content=big, headers=_headers(big))
    text = {**good, "Content-Type": "text/plain"}
    await _refused(api, 415, "UnsupportedMediaType", content=body, headers=text)
    nan = b'{"a": NaN}'
    await _refused(api, 400, "BadBody", content=nan, headers=_headers(nan, delivery="n"))
    response = await api.client.post("/api/webhooks/nope", content=body, headers=good)
    assert response.status_code == 404
    reasons = [
        r["reason"] for r in (await api.client.get("/api/webhooks/rejections")).json()["rejections"]
    ]
    assert reasons[0] == "UnknownSlug" and len(reasons) == 9
    # ...and after all that, a good delivery still works: no state was poisoned.
    accepted = await api.client.post(URL, content=body, headers=good)
    assert accepted.status_code == 202


async def test_a_delivery_id_beyond_the_limits_is_refused_and_logged(memory_api: Api) -> None:
    """A delivery id becomes the run's idempotency key ``webhook:<id>``: one with a control
    character (a tab is legal in an HTTP header) must be a logged refusal, not an error that
    skips the rejection log."""
    body = b'{"orderId": 3}'
    refused = await _refused(
        memory_api, 400, "BadBody", content=body, headers=_headers(body, delivery="d\t1")
    )
    assert refused["detail"].startswith("the X-Floworch-Delivery header: delivery id "), refused
    assert "only printable" in refused["detail"]


async def test_a_replay_without_a_delivery_id_is_caught_by_its_signature(api: Api) -> None:
    body = b'{"x": 1}'
    headers = _headers(body, delivery=None)
    first = await api.client.post(URL, content=body, headers=headers)
    assert first.status_code == 202 and first.json()["deliveryId"].startswith("sig-")
    await _refused(api, 409, "Replayed", content=body, headers=headers)


async def test_form_bodies_and_stripe_and_github_styles() -> None:
    manifests = [
        {
            "id": "hooks",
            "version": "1",
            "triggers": {
                "stripe": {
                    "type": "Webhook",
                    "slug": "stripe",
                    "secretFrom": {"env": "STRIPE_SECRET"},
                    "signatureHeader": "Stripe-Signature",
                    "signatureFormat": "stripe",
                    "timestampHeader": None,
                    "deliveryIdHeader": None,
                },
                "github": {
                    "type": "Webhook",
                    "slug": "github",
                    "secretFrom": {"env": "GITHUB_SECRET"},
                    "signatureHeader": "X-Hub-Signature-256",
                    "timestampHeader": None,
                    "deliveryIdHeader": "X-GitHub-Delivery",
                },
                "nosecret": {"type": "Webhook", "slug": "nosecret"},
            },
            "steps": {"a": {"type": "Echo", "inputs": {"body": "@triggerBody()"}}},
        }
    ]
    store: Store = await open_store("memory://")
    api = await start_api(
        store,
        manifests=manifests,
        secrets={("hooks", "stripe"): "whsec_1", ("hooks", "github"): "gh-secret"},
    )
    try:
        c = api.client
        body = b'{"id": "evt_1", "type": "charge.succeeded"}'
        ts = int(time.time())
        stripe = await c.post(
            "/api/webhooks/stripe",
            content=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign("whsec_1", body, timestamp=ts, fmt="stripe"),
            },
        )
        assert stripe.status_code == 202, stripe.text
        form = b"payload=%7B%22zen%22%3A%22hi%22%7D&tag=a&tag=b"
        github = await c.post(
            "/api/webhooks/github",
            content=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Hub-Signature-256": sign("gh-secret", form),
                "X-GitHub-Delivery": "72d3162e",
            },
        )
        assert github.status_code == 202, github.text
        run = await api.wait_status(github.json()["runId"], "Succeeded")
        assert run["triggerBody"] == {"payload": '{"zen":"hi"}', "tag": ["a", "b"]}
        unsigned = await c.post(
            "/api/webhooks/nosecret", content=b"{}", headers={"Content-Type": "application/json"}
        )
        assert unsigned.status_code == 503
        listed = {w["slug"]: w for w in (await c.get("/api/webhooks")).json()["webhooks"]}
        assert listed["nosecret"]["secretConfigured"] is False
        assert listed["github"]["secretConfigured"] is True
        assert "gh-secret" not in json.dumps(listed)
    finally:
        await api.client.aclose()
        await api.host.stop()


@pytest.fixture
async def limited() -> AsyncIterator[Api]:
    manifests = [
        {
            "id": "rl",
            "version": "1",
            "triggers": {
                "hook": {
                    "type": "Webhook",
                    "slug": "rl",
                    "secretFrom": {"env": "X"},
                    "rateLimitPerMinute": 2,
                    "maxBodyBytes": 64,
                    "contentTypes": ["application/json"],
                }
            },
            "steps": {"a": {"type": "Echo"}},
        }
    ]
    api = await start_api(
        await open_store("memory://"), manifests=manifests, secrets={("rl", "hook"): SECRET}
    )
    yield api
    await api.client.aclose()
    await api.host.stop()


async def test_rate_limit_and_per_trigger_body_limit(limited: Api) -> None:
    c = limited.client
    big = b'"' + b"x" * 100 + b'"'
    assert (await c.post("/api/webhooks/rl", content=big, headers=_headers(big))).status_code == (
        413
    )
    body = b"{}"
    assert (
        await c.post("/api/webhooks/rl", content=body, headers=_headers(body, delivery="a"))
    ).status_code == 202
    assert (
        await c.post("/api/webhooks/rl", content=body, headers=_headers(body, delivery="b"))
    ).status_code == 429
