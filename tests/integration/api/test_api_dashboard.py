"""What the dashboard needs from the API app: the page and its assets at ``/``, the flow
graph, the event tail, run durations, dead-letter counts and upcoming fire times."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from floworch.api import ApiOptions, AuthConfig
from floworch.dashboard.assets import DashboardAssets
from floworch.storage.factory import open_store
from floworch.storage.port import Store

from .conftest import Api, start_api


async def test_the_page_and_its_assets_are_served_without_a_token(memory_api: Api) -> None:
    await memory_api.client.aclose()
    app = memory_api.app
    version = DashboardAssets.load().version
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as c:
        page = await c.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert f"assets/{version}/app.js" in page.text
        js = await c.get(f"/assets/{version}/pages/run.js")
        assert js.status_code == 200
        assert js.headers["content-type"].startswith("text/javascript")
        assert "immutable" in js.headers["cache-control"]
        stale = await c.get("/assets/000000000000/app.js")
        assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
        missing = await c.get(f"/assets/{version}/nope.js")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert (await c.get(f"/assets/{version}/index.html")).status_code == 404
        spec = (await c.get("/api/openapi.json")).json()
        assert not any(path.startswith("/assets") or path == "/" for path in spec["paths"])


async def test_the_page_needs_no_token_but_the_api_does(tmp_path: Path) -> None:
    store = await open_store("memory://")
    running = await start_api(store, auth=AuthConfig.tokens("op-token"))
    try:
        c = running.client
        assert (await c.get("/")).status_code == 200
        assert (await c.get("/api/flows")).status_code == 401
        assert (await c.get("/api/flows/orders/graph")).status_code == 401
        ok = await c.get("/api/flows/orders/graph", headers={"Authorization": "Bearer op-token"})
        assert ok.status_code == 200
    finally:
        await running.client.aclose()
        await running.host.stop()


async def test_the_dashboard_can_be_left_out(tmp_path: Path) -> None:
    store = await open_store("memory://")
    running = await start_api(store, options=ApiOptions(dashboard=False))
    try:
        assert (await running.client.get("/")).status_code == 404
    finally:
        await running.client.aclose()
        await running.host.stop()


async def test_flow_graph(memory_api: Api) -> None:
    graph = (await memory_api.client.get("/api/flows/orders/graph")).json()
    assert graph["flowId"] == "orders"
    assert [n["key"] for n in graph["nodes"]] == ["check", "approve", "ship"]
    assert {(e["source"], e["target"]) for e in graph["edges"]} == {
        ("check", "approve"),
        ("approve", "ship"),
    }
    label = next(e["label"] for e in graph["edges"] if e["target"] == "ship")
    assert label == "when @steps('approve').output.approved == true"
    assert graph["width"] > 0 and graph["height"] > 0
    missing = await memory_api.client.get("/api/flows/nope/graph")
    assert missing.status_code == 404


async def test_events_tail_skips_the_history(api: Api) -> None:
    c = api.client
    assert (await c.get("/api/events?tail=true")).json() == {"events": [], "nextAfter": 0}
    run_id = (await c.post("/api/flows/flaky/runs", json={})).json()["runId"]
    await api.wait_status(run_id, "Failed")
    every = (await c.get("/api/events?since=0")).json()["events"]
    tail = (await c.get("/api/events?tail=true")).json()
    assert tail["events"] == [] and tail["nextAfter"] == every[-1]["eventId"]


async def test_stats_have_run_durations_and_an_unknown_dead_letter_count(api: Api) -> None:
    c = api.client
    run_id = (await c.post("/api/flows/flaky/runs", json={})).json()["runId"]
    await api.wait_status(run_id, "Failed")
    stats = (await c.get("/api/stats?hours=1")).json()
    (flaky,) = [d for d in stats["runDurations"] if d["flowId"] == "flaky"]
    assert flaky["count"] == 1 and flaky["p95Ms"] >= 0
    assert stats["deadLettered"] is None  # this app was given no dead-letter counter


async def test_stats_show_the_hosts_dead_letter_count(tmp_path: Path) -> None:
    from floworch.api import create_app

    store = await open_store("memory://")
    running = await start_api(store)

    async def count() -> int:
        return 3

    app = create_app(running.host.engine, auth=AuthConfig.none(), dead_letters=count)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            assert (await c.get("/api/stats")).json()["deadLettered"] == 3
    finally:
        await running.client.aclose()
        await running.host.stop()


@pytest.mark.parametrize("preview", [5])
async def test_schedules_list_upcoming_fire_times_none_while_paused(
    store: Store, preview: int
) -> None:
    running = await start_api(store, options=ApiOptions(schedule_preview=preview))
    try:
        c = running.client
        (nightly,) = (await c.get("/api/schedules")).json()["schedules"]
        times = nightly["upcoming"]
        assert len(times) == preview and times[0] == nightly["nextFireAt"]
        assert times == sorted(times) and len(set(times)) == preview
        assert all(t.endswith(("T02:00:00Z", "T02:00:00+00:00")) for t in times)
        paused = (await c.post("/api/schedules/orders/nightly/pause")).json()
        assert paused["upcoming"] == [] and paused["nextFireAt"] is None
    finally:
        await running.client.aclose()
        await running.host.stop()
