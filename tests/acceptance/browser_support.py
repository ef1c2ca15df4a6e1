"""The dashboard under a real browser: Debian's chromium driven by Playwright, against a real
``floworch serve`` subprocess on 127.0.0.1.

Chromium missing (or Playwright not installed): the browser tests skip, and fail under
``CI=true``. Playwright's own browser download is never used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .serve_support import Serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
_URL = re.compile(r"floworch serve: (http://127\.0\.0\.1:\d+)")

SHOP = {
    "id": "shop",
    "version": "1",
    "description": "Charge an order, then ship it; wrap a gift when asked.",
    "triggers": {
        "manual": {"type": "Manual"},
        "nightly": {"type": "Cron", "cron": "0 3 * * *"},
    },
    "steps": {
        "charge": {"type": "Charge", "inputs": {"order": "@triggerBody()"}},
        "ship": {"type": "Echo", "inputs": {"x": 1}, "runAfter": {"charge": ["Succeeded"]}},
        "gift": {
            "type": "Echo",
            "inputs": {"wrap": True},
            "runAfter": {
                "charge": {
                    "statuses": ["Succeeded"],
                    "when": "@triggerBody()?.gift == true",
                }
            },
        },
    },
}
APPROVAL = {
    "id": "approval",
    "version": "1",
    "steps": {
        "prepare": {"type": "Echo", "inputs": {"x": 1}},
        "approve": {
            "type": "WaitForSignal",
            "inputs": {"signalName": "approval"},
            "runAfter": {"prepare": ["Succeeded"]},
        },
        "done": {
            "type": "Echo",
            "inputs": {"by": "@steps('approve').output?.by"},
            "runAfter": {"approve": ["Succeeded"]},
        },
    },
}
HANDLERS = """
from pathlib import Path

import floworch

@floworch.handler("Echo")
async def echo(inputs):
    return inputs

@floworch.handler("Charge")
async def charge(inputs):
    if Path("charge-fails").exists():
        raise floworch.StepError("card declined", retryable=False)
    return {"charged": True}
"""


def require_browser() -> None:
    """Skips (locally) or fails (CI=true) when the browser tests cannot run."""
    reason = None
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium; bash scripts/setup does it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed (bash scripts/setup)"
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


def write_project(root: Path) -> Path:
    flows = root / "flows"
    flows.mkdir(parents=True, exist_ok=True)
    (flows / "shop.json").write_text(json.dumps(SHOP), encoding="utf-8")
    (flows / "approval.json").write_text(json.dumps(APPROVAL), encoding="utf-8")
    (flows / "handlers.py").write_text(HANDLERS, encoding="utf-8")
    return flows


class Server:
    """``floworch serve`` with its output in files (a long test never fills a pipe)."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        flows = write_project(root)
        self.out = (root / "serve.out").open("w")
        self.err = (root / "serve.err").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "floworch", "serve", str(flows), "--port", "0"],
            cwd=root,
            env=Serve.clean_env({"FLOWORCH_LOG_LEVEL": "WARNING", **(env or {})}),
            stdout=self.out,
            stderr=self.err,
            text=True,
        )
        self.url = self._wait_url()
        self.token: str | None = (env or {}).get("FLOWORCH_API_TOKEN")

    def _wait_url(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _URL.search((self.root / "serve.out").read_text())
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"floworch serve exited: {self.stderr()}")
            time.sleep(0.05)
        raise AssertionError(f"floworch serve printed no URL: {self.stderr()}")

    def stderr(self) -> str:
        return (self.root / "serve.err").read_text()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            f"{self.url}/api/{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()!r}") from None

    def trigger(self, flow: str, body: Any = None) -> str:
        started = self.api("POST", f"flows/{flow}/runs", {} if body is None else body)
        return str(started["runId"])

    def wait(self, run_id: str, condition: Any, what: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            run = self.api("GET", f"runs/{run_id}")
            if condition(run):
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s: {run}")
            time.sleep(0.05)

    def step(self, run: Any, key: str) -> str | None:
        return next((s["status"] for s in run["steps"] if s["stepKey"] == key), None)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def reset_artifacts() -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
