"""Running ``floworch serve`` as a subprocess on 127.0.0.1 with a small project of its own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

FLOW = {
    "id": "orders",
    "version": "1",
    "triggers": {
        "manual": {"type": "Manual"},
        "nightly": {"type": "Cron", "cron": "0 2 * * *"},
        "hook": {"type": "Webhook", "slug": "orders", "secretFrom": {"env": "ORDERS_SECRET"}},
    },
    "steps": {
        "check": {"type": "Check", "inputs": {"order": "@triggerBody()"}},
        "approve": {
            "type": "WaitForSignal",
            "inputs": {"signalName": "approval"},
            "runAfter": {"check": ["Succeeded"]},
        },
        "ship": {
            "type": "Check",
            "inputs": {"order": "@steps('approve').output"},
            "runAfter": {"approve": ["Succeeded"]},
        },
    },
}
HANDLERS = """
import floworch

@floworch.handler("Check")
async def check(inputs: dict) -> dict:
    return {"checked": inputs.get("order")}
"""
_URL = re.compile(r"floworch serve: (http://127\.0\.0\.1:\d+)")


def write_project(root: Path) -> Path:
    """A flow directory with its handlers.py; returns the manifest path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "flow.json").write_text(json.dumps(FLOW), encoding="utf-8")
    (root / "handlers.py").write_text(HANDLERS, encoding="utf-8")
    return root / "flow.json"


class Serve:
    """``floworch serve`` in a subprocess; :attr:`url` once it listens."""

    @staticmethod
    def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment without the caller's floworch database or API settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWORCH_API")}
        env.pop("FLOWORCH_DB_URL", None)
        return {**env, "PYTHONUNBUFFERED": "1", **(extra or {})}

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.env = self.clean_env(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "floworch", "serve", *args],
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = ""

    def wait_url(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                _, err = self.proc.communicate(timeout=10)
                raise AssertionError(f"floworch serve exited {self.proc.returncode}: {err}")
            match = _URL.search(line)
            if match:
                self.url = match.group(1)
                return self.url
        raise AssertionError("floworch serve printed no URL")

    def stop(self, timeout: float = 30) -> tuple[int, str]:
        """Ctrl-C; returns the exit code and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err
