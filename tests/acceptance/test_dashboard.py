"""The dashboard in a real browser (headless Debian chromium through Playwright) against a
real ``floworch serve``: the scenarios of issue 14. Screenshots of each page land in
``tests/artifacts/dashboard/`` (git-ignored)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SHOP,
    Server,
    artifacts_dir,
    require_browser,
)

pytestmark = pytest.mark.slow
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_browser()
    running = Server(tmp_path_factory.mktemp("dashboard"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1366, "height": 860}, base_url=server.url)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == [], errors  # no uncaught script error on any page


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(artifacts_dir() / f"{name}.png"), full_page=True)


def node(page: Any, key: str) -> Any:
    return page.locator(f'svg.dag [data-key="{key}"]')


def failed_run(server: Server) -> str:
    flag = server.root / "charge-fails"
    flag.touch()
    try:
        run_id = server.trigger("shop", {"order": 1})
        server.wait(run_id, lambda r: r["status"] == "Failed", "the shop run fails")
    finally:
        flag.unlink()
    return run_id


def test_overview_shows_runs_by_status_and_failures(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    run_id = failed_run(server)
    page.goto("/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_test_id("count-Failed")).not_to_have_text("0")
    failures = page.locator("section", has=page.get_by_role("heading", name="Failures"))
    expect(failures.get_by_role("link", name=run_id)).to_be_visible()
    expect(page.locator("#live")).to_have_text(re.compile("Live|Polling"))
    shot(page, "overview")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    page.emulate_media(color_scheme="light")
    light = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert dark != light
    page.emulate_media(color_scheme="dark")
    shot(page, "overview-dark")


def test_open_a_failed_run_retry_its_step_and_watch_it_turn_green(
    page: Any, server: Server
) -> None:
    from playwright.sync_api import expect

    run_id = failed_run(server)
    page.goto(f"/#/runs/{run_id}")
    expect(page.get_by_test_id("run-status")).to_have_text("Failed")
    expect(node(page, "charge")).to_have_attribute("data-status", "Failed")
    expect(node(page, "ship")).to_have_attribute("data-status", "Skipped")
    node(page, "charge").click()
    detail = page.locator(".step-detail")
    expect(detail.get_by_role("heading", name="charge")).to_be_visible()
    expect(detail.get_by_text("card declined").first).to_be_visible()
    shot(page, "run-failed")
    page.evaluate("window.__noReload = true")
    detail.get_by_role("button", name="Retry step").click()
    expect(node(page, "charge")).to_have_attribute("data-status", "Succeeded")
    expect(page.locator('tr[data-step="charge"] .badge')).to_have_text("Succeeded")
    assert page.evaluate("window.__noReload") is True  # updated live, never reloaded
    assert server.step(server.api("GET", f"runs/{run_id}"), "charge") == "Succeeded"
    shot(page, "run-retried")


def test_see_why_a_step_was_skipped(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    run_id = server.trigger("shop", {"order": 2, "gift": False})
    server.wait(run_id, lambda r: r["status"] != "Running", "the shop run ends")
    page.goto(f"/#/runs/{run_id}?step=gift")
    reason = page.get_by_test_id("skip-reason")
    expect(reason).to_contain_text("when clause of runAfter.charge is false")
    when = page.locator("table.when")
    expect(when).to_contain_text("@triggerBody()?.gift == true")
    expect(when.locator(".badge")).to_have_text("false")
    expect(node(page, "gift")).to_have_attribute("data-status", "Skipped")
    shot(page, "run-skipped")


def test_deliver_a_signal_to_a_waiting_run(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    run_id = server.trigger("approval")
    server.wait(run_id, lambda r: server.step(r, "approve") == "Waiting", "approve waits")
    page.goto(f"/#/runs/{run_id}")
    expect(node(page, "approve")).to_have_attribute("data-status", "Waiting")
    editor = page.get_by_label("Payload of signal “approval”")
    editor.fill("{not json")
    expect(page.get_by_text(re.compile("Not JSON yet"))).to_be_visible()
    editor.fill('{"approved": true, "by": "browser"}')
    shot(page, "run-waiting")
    page.get_by_role("button", name="Deliver approval").click()
    expect(page.get_by_test_id("run-status")).to_have_text("Succeeded")
    expect(node(page, "done")).to_have_attribute("data-status", "Succeeded")
    done = server.api("GET", f"runs/{run_id}")
    assert next(s for s in done["steps"] if s["stepKey"] == "done")["output"] == {"by": "browser"}


def test_cancel_a_run(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    run_id = server.trigger("approval")
    server.wait(run_id, lambda r: server.step(r, "approve") == "Waiting", "approve waits")
    page.goto(f"/#/runs/{run_id}")
    page.get_by_role("button", name="Cancel run").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Reason").fill("not needed (browser test)")
    dialog.get_by_role("button", name="Cancel run").click()
    expect(page.get_by_test_id("run-status")).to_have_text("Cancelled")
    run = server.api("GET", f"runs/{run_id}")
    assert run["status"] == "Cancelled" and run["cancelReason"] == "not needed (browser test)"


def test_pause_a_schedule(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    page.goto("/#/flows/shop")
    row = page.locator('tr[data-trigger="nightly"]')
    expect(row.get_by_test_id("schedule-state")).to_have_text("Active")
    expect(row.locator("ol li")).to_have_count(5)
    expect(node(page, "ship")).to_be_visible()
    shot(page, "flow")
    row.get_by_role("button", name="Pause").click()
    expect(row.get_by_test_id("schedule-state")).to_have_text("Paused")
    (nightly,) = [s for s in server.api("GET", "schedules")["schedules"] if s["flowId"] == "shop"]
    assert nightly["paused"] is True
    row.get_by_role("button", name="Resume").click()
    expect(row.get_by_test_id("schedule-state")).to_have_text("Active")


def test_runs_filter_and_flows_page(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    run_id = failed_run(server)
    page.goto("/#/runs")
    page.get_by_label("Flow", exact=True).select_option("shop")
    page.get_by_label("Failed", exact=True).check()
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"#/runs\?flow=shop&status=Failed"))
    expect(page.locator(f'tr[data-run="{run_id}"]')).to_be_visible()
    for status in page.locator("tbody .badge").all_inner_texts():
        assert status == "Failed"
    shot(page, "runs")
    page.goto("/#/flows")
    expect(page.locator('tr[data-flow="shop"]')).to_contain_text("Enabled")
    shot(page, "flows")


def test_keyboard_reaches_and_opens_a_step(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    run_id = server.trigger("shop", {"order": 3, "gift": True})
    server.wait(run_id, lambda r: r["status"] == "Succeeded", "the shop run succeeds")
    page.goto(f"/#/runs/{run_id}")
    expect(node(page, "gift")).to_have_attribute("data-status", "Succeeded")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(60):  # the graph's step links are in the tab order
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.key") == "gift":
            break
    else:
        raise AssertionError("Tab never reached the gift step in the graph")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"step=gift"))
    expect(page.locator(".step-detail").get_by_role("heading", name="gift")).to_be_visible()


def test_the_run_page_follows_changes_made_elsewhere(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    run_id = server.trigger("approval")
    server.wait(run_id, lambda r: server.step(r, "approve") == "Waiting", "approve waits")
    page.goto(f"/#/runs/{run_id}")
    expect(node(page, "approve")).to_have_attribute("data-status", "Waiting")
    expect(page.locator("#live")).to_have_text("Live")
    page.evaluate("window.__noReload = true")
    server.api("POST", f"runs/{run_id}/signals/approval", {"approved": True, "by": "elsewhere"})
    expect(node(page, "done")).to_have_attribute("data-status", "Succeeded")
    expect(page.get_by_test_id("run-status")).to_have_text("Succeeded")
    expect(page.locator(".events")).to_contain_text("SignalDelivered")
    assert page.evaluate("window.__noReload") is True


def test_polling_takes_over_when_the_stream_is_blocked(page: Any, server: Server) -> None:
    from playwright.sync_api import expect

    page.route(re.compile(r"/api/(runs/[^/]+/)?stream"), lambda route: route.abort())
    run_id = server.trigger("approval")
    server.wait(run_id, lambda r: server.step(r, "approve") == "Waiting", "approve waits")
    page.goto(f"/#/runs/{run_id}")
    expect(page.locator("#live")).to_have_text("Polling")
    server.api("POST", f"runs/{run_id}/signals/approval", {"approved": True, "by": "poll"})
    expect(page.get_by_test_id("run-status")).to_have_text("Succeeded")


def test_the_ui_asks_for_the_token_when_the_api_needs_one(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    secured = Server(tmp_path, env={"FLOWORCH_API_TOKEN": "dash-token"})
    try:
        context = browser.new_context(base_url=secured.url)
        tab = context.new_page()
        tab.goto("/#/flows")
        dialog = tab.get_by_role("dialog", name="Sign in to the API")
        expect(dialog).to_be_visible(timeout=WAIT_MS)
        expect(dialog).to_contain_text("bearer token")
        dialog.get_by_label(re.compile("Bearer token")).fill("wrong")
        dialog.get_by_role("button", name="Sign in").click()
        expect(dialog).to_contain_text("not valid", timeout=WAIT_MS)
        dialog.get_by_label(re.compile("Bearer token")).fill("dash-token")
        dialog.get_by_role("button", name="Sign in").click()
        expect(tab.locator('tr[data-flow="shop"]')).to_be_visible(timeout=WAIT_MS)
        assert tab.evaluate("sessionStorage.getItem('floworch.token')") == "dash-token"
        tab.reload()  # kept for the tab: no prompt again
        expect(tab.locator('tr[data-flow="shop"]')).to_be_visible(timeout=WAIT_MS)
        expect(dialog).to_be_hidden()
        context.close()
    finally:
        secured.stop()


def test_on_a_function_app_the_ui_asks_for_the_function_key(browser: Any) -> None:
    """The Function App's HTTP functions behind a stand-in for the host's key check
    (tests/acceptance/function_key_gate.py): it refuses every request to the keyed ``http``
    function with a bare 401 unless ``x-functions-key`` holds the key, as the host does before
    floworch sees a request, and lets the anonymous dashboard functions through. Not a real
    Functions host: the routing and the check are ours."""
    from playwright.sync_api import expect

    from floworch.engine.handlers import HandlerRegistry
    from floworch.model import load_manifest

    from .function_key_gate import GatedFunctionApp

    handlers = HandlerRegistry()
    for step_type in ("Charge", "Echo"):
        handlers.handler(step_type)(lambda inputs: inputs)  # never run: steps are not sent
    flow = load_manifest({**SHOP, "triggers": {"manual": {"type": "Manual"}}})
    app = GatedFunctionApp([flow], handlers, key="fn-key-1")
    try:
        run_id = app.trigger("shop", {"order": 9})
        context = browser.new_context(base_url=app.url)
        tab = context.new_page()
        # The stream would be buffered whole by the func.HttpResponse path: poll instead.
        tab.route(re.compile(r"/api/(runs/[^/]+/)?stream"), lambda route: route.abort())
        tab.goto("/#/runs")
        dialog = tab.get_by_role("dialog", name="Enter the function key")
        expect(dialog).to_be_visible(timeout=WAIT_MS)
        expect(dialog).to_contain_text("needs a function key")
        assert app.gate.refused and all(p.startswith("/api/") for p in app.gate.refused)
        dialog.get_by_label(re.compile("Function key")).fill("wrong")
        dialog.get_by_role("button", name="Sign in").click()
        expect(dialog).to_contain_text("refused this function key", timeout=WAIT_MS)
        dialog.get_by_label(re.compile("Function key")).fill("fn-key-1")
        dialog.get_by_role("button", name="Sign in").click()
        expect(tab.locator(f'tr[data-run="{run_id}"]')).to_be_visible(timeout=WAIT_MS)
        assert tab.evaluate("sessionStorage.getItem('floworch.functionKey')") == "fn-key-1"
        assert tab.evaluate("sessionStorage.getItem('floworch.token')") is None
        tab.reload()  # kept for the tab: no prompt again
        expect(tab.locator(f'tr[data-run="{run_id}"]')).to_be_visible(timeout=WAIT_MS)
        expect(dialog).to_be_hidden()
        context.close()
    finally:
        app.stop()
