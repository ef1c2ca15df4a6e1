"""The main scenarios through the HTTP API, on the memory store, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from floworch.api import create_app
from floworch.api.auth import AuthConfig
from floworch.api.context import Readiness
from floworch.model.statuses import RunStatus

from .conftest import Api


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    assert "Traceback" not in response.text
    return dict(body)


async def test_trigger_signal_and_finish(api: Api) -> None:
    c = api.client
    started = await c.post(
        "/api/flows/orders/runs", json={"orderId": 7}, headers={"X-Tenant": "acme"}
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["runId"]
    assert started.headers["location"] == f"/api/runs/{run_id}"
    assert started.json()["duplicate"] is False
    detail = await api.wait_step(run_id, "approve", "Waiting")
    assert detail["triggerBody"] == {"orderId": 7}
    assert detail["triggerHeaders"]["x-tenant"] == "acme"
    assert [w["signalName"] for w in detail["waitingFor"]] == ["approval"]
    check = next(s for s in detail["steps"] if s["stepKey"] == "check")
    assert check["output"] == {"order": {"orderId": 7}}
    assert check["attempts"][0]["startedAt"] and check["attempts"][0]["completedAt"]

    signal = await c.post(
        f"/api/runs/{run_id}/signals/approval", json={"approved": True, "by": "ops"}
    )
    assert signal.status_code == 200 and signal.json()["outcome"] == "Delivered"
    done = await api.wait_status(run_id, "Succeeded")
    ship = next(s for s in done["steps"] if s["stepKey"] == "ship")
    assert ship["output"] == {"by": "ops"}
    assert ship["whenTrace"]
    again = await c.post(f"/api/runs/{run_id}/signals/approval", json={})
    _problem(again, 409)
    _problem(await c.post("/api/runs/nope/signals/approval", json={}), 404)

    events = (await c.get(f"/api/runs/{run_id}/events", params={"limit": 2})).json()
    assert len(events["events"]) == 2 and events["events"][0]["kind"] == "RunStarted"
    rest = (await c.get(f"/api/runs/{run_id}/events", params={"after": events["nextAfter"]})).json()
    assert rest["events"][-1]["kind"] == "RunSucceeded"
    stream = (await c.get("/api/events", params={"runId": run_id})).json()
    assert [e["eventId"] for e in stream["events"]] == [
        e["eventId"] for e in events["events"] + rest["events"]
    ]


async def test_a_signal_before_the_wait_is_buffered(api: Api) -> None:
    api.switches.fail = True
    run_id = (await api.client.post("/api/flows/orders/runs", json={})).json()["runId"]
    first = await api.client.post(f"/api/runs/{run_id}/signals/approval", json={"approved": False})
    assert first.json()["outcome"] in ("Buffered", "Delivered")
    await api.wait_status(run_id, "Succeeded", "Skipped")


async def test_idempotency_key_disabled_and_unknown_flows(api: Api) -> None:
    c = api.client
    key = {"Idempotency-Key": "order-17"}
    first = await c.post("/api/flows/orders/runs", json={}, headers=key)
    second = await c.post("/api/flows/orders/runs", json={"other": 1}, headers=key)
    assert second.status_code == 202
    assert second.json() == {"runId": first.json()["runId"], "duplicate": True}
    assert (
        "idempotency-key"
        not in (await c.get(f"/api/runs/{first.json()['runId']}")).json()["triggerHeaders"]
    )
    _problem(await c.post("/api/flows/off/runs", json={}), 409)
    _problem(await c.post("/api/flows/nope/runs", json={}), 404)
    _problem(await c.post("/api/flows/orders/runs?trigger=nope", json={}), 404)
    listed = (await c.get("/api/runs", params={"q": "order-"})).json()
    assert [r["runId"] for r in listed["runs"]] == [first.json()["runId"]]


async def test_enable_disable_and_flow_views(api: Api) -> None:
    c = api.client
    flows = {f["flowId"]: f for f in (await c.get("/api/flows")).json()["flows"]}
    assert flows["off"]["enabled"] is False and flows["orders"]["enabled"] is True
    assert {t["key"] for t in flows["orders"]["triggers"]} == {"manual", "nightly", "hook"}
    enabled = await c.post("/api/flows/off/enable")
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    assert enabled.json()["manifestEnabled"] is False
    run = await c.post("/api/flows/off/runs", json={})
    assert run.status_code == 202
    await api.wait_status(run.json()["runId"], "Succeeded")
    disabled = await c.post("/api/flows/off/disable")
    assert disabled.json()["enabled"] is False
    assert (await c.get("/api/flows/off")).json()["lastRunStatus"] == "Succeeded"
    detail = (await c.get("/api/flows/orders")).json()
    assert detail["manifest"]["id"] == "orders" and "flowchart" in detail["mermaid"]
    _problem(await c.get("/api/flows/nope"), 404)


async def test_failed_step_retry_and_rerun_lineage(api: Api) -> None:
    c = api.client
    run_id = (await c.post("/api/flows/flaky/runs", json={"n": 1})).json()["runId"]
    failed = await api.wait_status(run_id, "Failed")
    work = next(s for s in failed["steps"] if s["stepKey"] == "work")
    assert work["error"]["message"] == "flaky is failing on purpose"
    _problem(await c.post(f"/api/runs/{run_id}/steps/after/retry"), 409)
    _problem(await c.post(f"/api/runs/{run_id}/steps/nope/retry"), 404)
    api.switches.fail = False
    retried = await c.post(f"/api/runs/{run_id}/steps/work/retry")
    assert retried.status_code == 202
    done = await api.wait_status(run_id, "Succeeded")
    work = next(s for s in done["steps"] if s["stepKey"] == "work")
    assert [a["status"] for a in work["attempts"]] == ["Failed", "Succeeded"]

    rerun = await c.post(f"/api/runs/{run_id}/rerun")
    assert rerun.status_code == 202
    new_id = rerun.json()["runId"]
    child = await api.wait_status(new_id, "Succeeded")
    assert child["sourceRunId"] == run_id and child["triggerBody"] == {"n": 1}
    assert (await c.get(f"/api/runs/{run_id}")).json()["reruns"] == [new_id]
    lineage = (await c.get("/api/runs", params={"sourceRunId": run_id})).json()
    assert [r["runId"] for r in lineage["runs"]] == [new_id]


async def test_cancel_and_bulk_cancel(api: Api) -> None:
    c = api.client
    ids = [(await c.post("/api/flows/orders/runs", json={})).json()["runId"] for _ in range(4)]
    for run_id in ids:
        await api.wait_step(run_id, "approve", "Waiting")
    cancelled = await c.post(f"/api/runs/{ids[0]}/cancel", json={"reason": "test"})
    assert cancelled.json() == {"runId": ids[0], "cancelled": True}
    run = (await c.get(f"/api/runs/{ids[0]}")).json()
    assert run["status"] == "Cancelled" and run["cancelReason"] == "test"
    _problem(await c.post(f"/api/runs/{ids[0]}/cancel"), 409)
    _problem(await c.post("/api/runs/nope/cancel"), 404)

    bulk = await c.post("/api/runs/bulk-cancel", json={"flowId": "orders", "limit": 2})
    assert bulk.status_code == 200, bulk.text
    assert bulk.json()["matched"] == 3 and len(bulk.json()["cancelled"]) == 2
    assert bulk.json()["remaining"] == 1
    rest = await c.post("/api/runs/bulk-cancel", json={"flowId": "orders"})
    assert rest.json()["matched"] == 1 and len(rest.json()["cancelled"]) == 1
    statuses = {(await c.get(f"/api/runs/{i}")).json()["status"] for i in ids}
    assert statuses == {"Cancelled"}


async def test_run_list_filters_paging_and_total(api: Api) -> None:
    c = api.client
    ids = []
    for i in range(5):
        ids.append((await c.post("/api/flows/flaky/runs", json={"i": i})).json()["runId"])
    for run_id in ids:
        await api.wait_status(run_id, "Failed")
    await c.post("/api/flows/orders/runs", json={})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"flowId": "flaky", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await c.get("/api/runs", params=params)).json()
        assert page["total"] == 5
        seen.extend(r["runId"] for r in page["runs"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    failed = await c.get("/api/runs", params=[("status", "Failed"), ("status", "Cancelled")])
    assert failed.json()["total"] == 5
    all_runs = (await c.get("/api/runs")).json()
    assert all_runs["total"] == 6
    newest = all_runs["runs"][0]["createdAt"]
    before = (await c.get("/api/runs", params={"startedBefore": newest})).json()
    assert before["total"] == 5
    _problem(await c.get("/api/runs", params={"cursor": "garbage"}), 400)
    _problem(await c.get("/api/runs", params={"status": "Nope"}), 422)
    _problem(await c.get("/api/runs", params={"startedAfter": "2026-01-01T00:00:00"}), 400)
    # Widened to str: mypy treats an enum literal and a str literal as never equal, though a
    # StrEnum member is equal to its value.
    failed_status: str = RunStatus.FAILED
    assert failed_status == "Failed"


async def test_schedules_pause_resume_override_and_fire(api: Api) -> None:
    c = api.client
    (schedule,) = (await c.get("/api/schedules")).json()["schedules"]
    assert schedule["flowId"] == "orders" and schedule["triggerKey"] == "nightly"
    assert schedule["effectiveCron"] == "0 2 * * *" and schedule["nextFireAt"]
    paused = (await c.post("/api/schedules/orders/nightly/pause")).json()
    assert paused["paused"] is True and paused["nextFireAt"] is None
    resumed = (await c.post("/api/schedules/orders/nightly/resume")).json()
    assert resumed["paused"] is False
    override = await c.put("/api/schedules/orders/nightly/cron", json={"cron": "*/5 * * * *"})
    assert override.json()["effectiveCron"] == "*/5 * * * *"
    bad = _problem(await c.put("/api/schedules/orders/nightly/cron", json={"cron": "nope"}), 422)
    assert "cron" in bad["detail"]
    cleared = await c.put("/api/schedules/orders/nightly/cron", json={"cron": None})
    assert cleared.json()["cronOverride"] is None
    fired = await c.post("/api/schedules/orders/nightly/fire")
    assert fired.status_code == 202
    run = await api.wait_step(fired.json()["runId"], "approve", "Waiting")
    assert run["triggerKey"] == "nightly" and run["triggerBody"] == {"nightly": True}
    _problem(await c.post("/api/schedules/orders/manual/pause"), 404)


async def test_stats(api: Api) -> None:
    c = api.client
    run_id = (await c.post("/api/flows/flaky/runs", json={})).json()["runId"]
    await api.wait_status(run_id, "Failed")
    stats = (await c.get("/api/stats", params={"hours": 1})).json()
    assert {"flowId": "flaky", "status": "Failed", "count": 1} in stats["byStatus"]
    durations = {d["stepKey"]: d for d in stats["stepDurations"] if d["flowId"] == "flaky"}
    assert durations["work"]["count"] == 1 and durations["work"]["p95Ms"] >= 0
    assert sum(h["count"] for h in stats["runsPerHour"]) == 1
    _problem(await c.get("/api/stats", params={"hours": 0}), 422)


async def test_strict_bodies_and_limits(api: Api) -> None:
    c = api.client
    for raw in (b'{"a": NaN}', b'{"a": Infinity}', b"[-Infinity]", b"{bad"):
        body = _problem(
            await c.post(
                "/api/flows/orders/runs",
                content=raw,
                headers={"Content-Type": "application/json"},
            ),
            400,
        )
        assert "JSON" in body["detail"]
    big = b'"' + b"x" * (1024 * 1024) + b'"'
    _problem(
        await c.post(
            "/api/flows/orders/runs", content=big, headers={"Content-Type": "application/json"}
        ),
        413,
    )
    _problem(
        await c.post(
            "/api/flows/orders/runs", content=b"a=1", headers={"Content-Type": "text/plain"}
        ),
        415,
    )
    _problem(
        await c.post(
            "/api/runs/bulk-cancel",
            content=b'{"limit": NaN}',
            headers={"Content-Type": "application/json"},
        ),
        400,
    )
    assert (await c.get("/api/runs")).json()["total"] == 0


async def test_values_beyond_the_limits_are_400_problems(memory_api: Api) -> None:
    """The engine refuses run-time values that break floworch.limits (InvalidInputError); the
    API answers 400 with a problem naming the value, and nothing is started or delivered."""
    c = memory_api.client
    started = await c.post("/api/flows/orders/runs", json={"orderId": 1})
    run_id = started.json()["runId"]
    for name in ("a%09b", "a%0Ab", "a%7Fb"):
        body = _problem(await c.post(f"/api/runs/{run_id}/signals/{name}", json={}), 400)
        assert body["type"] == "urn:floworch:problem:invalid-value", body
        assert body["detail"].startswith("signal name ") and "only printable" in body["detail"]
    key = {"Idempotency-Key": "order\t1"}
    body = _problem(await c.post("/api/flows/orders/runs", json={}, headers=key), 400)
    assert body["type"] == "urn:floworch:problem:invalid-value"
    assert body["detail"].startswith("idempotency key 'order\\t1' contains")
    assert (await c.get("/api/runs")).json()["total"] == 1


async def test_errors_are_problem_documents(memory_api: Api) -> None:
    c = memory_api.client
    _problem(await c.get("/api/nope"), 404)
    _problem(await c.get("/nope"), 404)
    _problem(await c.delete("/api/flows"), 405)
    _problem(await c.post("/api/runs/bulk-cancel", json={"limit": "x"}), 422)

    @memory_api.app.get("/api/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    response = await c.get("/api/boom")
    body = _problem(response, 500)
    assert "secret internals" not in response.text and "RuntimeError" not in response.text
    assert body["detail"].startswith("an unexpected error")


async def test_readiness_and_liveness(memory_api: Api) -> None:
    c = memory_api.client
    assert (await c.get("/healthz")).json() == {"status": "alive"}
    ready = await c.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    await memory_api.host.store.close()
    assert (await c.get("/status")).status_code == 200
    await asyncio.sleep(0)


async def test_readyz_answers_503_with_the_probes_reason(memory_api: Api) -> None:
    async def not_ready() -> Readiness:
        return Readiness(False, "the database does not answer: timeout", {"store": "timeout"})

    app = create_app(memory_api.host.engine, auth=AuthConfig.none(), readiness=not_ready)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/readyz")
        status = await client.get("/status")
    assert response.status_code == 503
    assert response.json() == {
        "store": "timeout",
        "status": "not ready",
        "reason": "the database does not answer: timeout",
    }
    assert status.status_code == 200 and status.json()["reason"] == response.json()["reason"]
