"""``floworch worker --auto-create-topology`` on an empty namespace: the worker creates the
entities through the management API, becomes ready, runs a flow, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from floworch.emulator import ServiceBusEmulator
from floworch.runtime.servicebus.names import subscription_name
from floworch.testing.servicebus import start_servicebus_emulator

from .conftest import ROOT, Cli

pytestmark = [pytest.mark.emulator, pytest.mark.slow]


@pytest.fixture
def empty_emulator() -> Iterator[ServiceBusEmulator]:
    emulator = start_servicebus_emulator()
    try:
        yield emulator
    finally:
        emulator.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.timeout(150)
def test_worker_creates_the_topology_runs_a_flow_and_exits_zero_on_sigterm(
    cli: Cli, empty_emulator: ServiceBusEmulator, tmp_path: Path
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    assert cli.run("db", "upgrade", "--db", db).returncode == 0
    port = _free_port()
    cli.env.update(
        FLOWORCH_SERVICEBUS_CONNECTION=empty_emulator.connection_string,
        FLOWORCH_SERVICEBUS_MANAGEMENT_CONNECTION=empty_emulator.management_connection_string,
        FLOWORCH_SERVICEBUS_CA_FILE=str(empty_emulator.ca_file),
        FLOWORCH_DB_URL=db,
    )
    flow = str(ROOT / "examples" / "hello" / "flow.yaml")
    worker = cli.popen("worker", flow, "--auto-create-topology", "--health-port", str(port))
    assert worker.stdout is not None and worker.stderr is not None  # popen pipes both
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and status != 200:
            if worker.poll() is not None:
                raise AssertionError(f"worker exited {worker.returncode}: {worker.stderr.read()}")
            try:
                status, report = _get(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                status = 0
            time.sleep(0.2)
        assert status == 200, report
        topics = {t.name for t in empty_emulator.backend.list_topics()}
        queues = {q.name for q in empty_emulator.backend.list_queues()}
        assert {"flow-steps", "flow-triggers"} <= topics and "flow-cron" in queues
        triggers = {s.name for s in empty_emulator.backend.list_subscriptions("flow-triggers")}
        assert triggers == {subscription_name("hello"), "unrouted"}
        subs = {s.name for s in empty_emulator.backend.list_subscriptions("flow-steps")}
        assert subscription_name("hello") in subs
        rules = empty_emulator.backend.list_rules("flow-steps", subscription_name("hello"))
        assert [r.name for r in rules] == ["flow"]

        started = cli.run("trigger", "hello", "--servicebus", "--body", '{"name": "bus"}')
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 60
        runs: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            runs = cli.json("runs", "list", "--json")
            if runs and all(r["status"] == "Succeeded" for r in runs):
                break
            time.sleep(0.3)
        assert len(runs) == 1 and runs[0]["status"] == "Succeeded", runs
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        worker.stdout.close()
        worker.stderr.close()
