"""``floworch run`` with handlers that misbehave: a handler can fail its step, never the process
(issue 16, items 4 and 7). On the code before the fix the process exited 130 (the
KeyboardInterrupt; 3 for the SystemExit alone), and with only the stubborn handlers it never
exited at all."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.acceptance.conftest import Cli

pytestmark = pytest.mark.slow


def test_run_survives_base_exceptions_and_exits_though_handlers_ignore_cancellation(
    cli: Cli, tmp_path: Path
) -> None:
    flow = tmp_path / "rude.py"
    flow.write_text(
        textwrap.dedent("""
        import asyncio
        import time
        import floworch
        from floworch import Flow

        flow = Flow("rude", version="1")
        flow.manual()
        flow.step("exits", "Exit")
        flow.step("interrupts", "Interrupt")
        flow.step("cancels", "Cancel")
        flow.step("task", "StubbornTask", timeout=0.5)
        flow.step("thread", "StubbornThread", timeout=0.5)

        @floworch.handler("Exit")
        async def exits(inputs):
            raise SystemExit(3)

        @floworch.handler("Interrupt")
        async def interrupts(inputs):
            raise KeyboardInterrupt()

        @floworch.handler("Cancel")
        async def cancels(inputs):
            raise asyncio.CancelledError()

        @floworch.handler("StubbornTask")
        async def stubborn_task(inputs):
            while True:
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    pass

        @floworch.handler("StubbornThread")
        def stubborn_thread(inputs):
            while True:
                time.sleep(0.05)
    """)
    )
    done = cli.run("run", str(flow), "--json", timeout=60)
    assert done.returncode == 1, (done.returncode, done.stderr)
    run = json.loads(done.stdout)
    assert run["status"] == "Failed"
    assert {key: step["error"]["type"] for key, step in run["steps"].items()} == {
        "exits": "SystemExit",
        "interrupts": "KeyboardInterrupt",
        "cancels": "CancelledError",
        "task": "StepTimeoutError",
        "thread": "StepTimeoutError",
    }
    lines = [line for line in done.stderr.splitlines() if "abandoned" in line]
    assert len(lines) == 1, done.stderr
    assert "abandoned 2 handler(s) that ignored cancellation" in lines[0]
    assert "Traceback" not in done.stderr
