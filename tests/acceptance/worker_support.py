"""Support for the ``floworch worker`` process tests: fresh Service Bus entities on the emulator,
a PostgreSQL schema per test, worker subprocesses with their health endpoints, and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateSchema, DropSchema

from floworch.emulator import ServiceBusEmulator
from floworch.runtime.servicebus.names import subscription_name
from floworch.testing.servicebus import declare_flow_entities
from tests.acceptance.conftest import ROOT

T = TypeVar("T")

PG_SERVER_URL = os.environ.get(
    "FLOWORCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ORDER_FLOW = ROOT / "examples/order_fulfilment/flow.json"
_HEALTH_LINE = re.compile(r"health endpoint on http://[^:/]+:(\d+)/readyz")


# -- PostgreSQL ----------------------------------------------------------------------------------


def require_postgres() -> None:
    """Skips the calling test when PostgreSQL is absent locally; fails it when CI=true."""
    engine = create_engine(PG_SERVER_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return
    except Exception as exc:
        reason = f"PostgreSQL at {make_url(PG_SERVER_URL).host} is not reachable: {exc}"
    finally:
        engine.dispose()
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


class PgSchema:
    """A fresh, empty PostgreSQL schema; :attr:`url` points ``search_path`` at it."""

    def __init__(self) -> None:
        self.name = f"floworch_workers_{uuid.uuid4().hex[:10]}"
        self._engine = create_engine(PG_SERVER_URL)
        with self._engine.begin() as conn:
            conn.execute(CreateSchema(self.name))

    def url(self, port: int | None = None) -> str:
        """The schema's URL, optionally through another port (a proxy in front of the server)."""
        url = make_url(PG_SERVER_URL).update_query_dict({"options": f"-csearch_path={self.name}"})
        if port is not None:
            url = url.set(host="127.0.0.1", port=port)
        return url.render_as_string(hide_password=False)

    @property
    def server_port(self) -> int:
        return make_url(PG_SERVER_URL).port or 5432

    def drop(self) -> None:
        with self._engine.begin() as conn:
            conn.execute(DropSchema(self.name, cascade=True))
        self._engine.dispose()


# -- Service Bus entities ------------------------------------------------------------------------


@dataclass(frozen=True)
class Entities:
    """The names of one test's steps topic, cron queue and triggers topic."""

    topic: str
    cron_queue: str
    triggers_topic: str

    def subscription(self, flow_id: str) -> str:
        return subscription_name(flow_id)

    def step_pump(self, flow_id: str) -> str:
        """The key of a flow's step pump in a worker's ``/status`` report."""
        return f"{self.topic}/Subscriptions/{subscription_name(flow_id)}"

    def trigger_pump(self, flow_id: str) -> str:
        """The key of a flow's trigger pump in a worker's ``/status`` report."""
        return f"{self.triggers_topic}/Subscriptions/{subscription_name(flow_id)}"


def declare_entities(
    emulator: ServiceBusEmulator,
    flow_ids: list[str],
    *,
    lock_seconds: float = 30,
    max_delivery_count: int = 10,
) -> Entities:
    """Creates fresh steps and triggers topics (a subscription per flow) and a cron queue."""
    suffix = uuid.uuid4().hex[:8]
    names = Entities(f"steps-{suffix}", f"cron-{suffix}", f"triggers-{suffix}")
    declare_flow_entities(
        emulator.backend,
        flow_ids,
        steps_topic=names.topic,
        triggers_topic=names.triggers_topic,
        cron_queue=names.cron_queue,
        lock_duration=timedelta(seconds=lock_seconds),
        max_delivery_count=max_delivery_count,
    )
    return names


# -- processes -----------------------------------------------------------------------------------


def get_json(url: str, timeout: float = 3.0) -> tuple[int, Any]:
    """GETs ``url``; returns the status and the JSON body (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), json.loads(exc.read() or b"null")


@dataclass
class WorkerProcess:
    """One ``floworch worker`` subprocess; its output goes to :attr:`log_path`."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    health_port: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self, tail: int = 60) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return f"--- {self.name} (pid {self.pid}, exit {self.proc.poll()}) ---\n" + "\n".join(
            lines[-tail:]
        )

    def _health_url(self, path: str) -> str:
        if self.health_port is None:
            match = _HEALTH_LINE.search(self.log_path.read_text(errors="replace"))
            if match is None:
                raise LookupError(f"{self.name} has not logged its health port yet")
            self.health_port = int(match.group(1))
        return f"http://127.0.0.1:{self.health_port}{path}"

    def status(self) -> dict[str, Any]:
        """The worker's ``/status`` report."""
        code, body = get_json(self._health_url("/status"))
        assert code == 200, (code, body)
        assert isinstance(body, dict)
        return body

    def pump(self, source: str) -> dict[str, Any]:
        """One pump's counters from ``/status`` (all zero when the pump is not there)."""
        pumps = self.status()["pumps"]
        found = pumps.get(source)
        assert isinstance(found, dict) or found is None, pumps
        return found or {"received": 0, "completed": 0, "abandoned": 0, "dead_lettered": 0}

    async def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Waits until ``/readyz`` answers 200; fails at once if the process exits."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited before it was ready\n{self.log()}")
            try:
                code, last = await asyncio.to_thread(get_json, self._health_url("/readyz"))
                if code == 200:
                    assert isinstance(last, dict)
                    return last
            except (LookupError, OSError):
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {timeout:g}s: {last}\n{self.log()}")

    async def wait_exit(self, timeout: float) -> int:
        """Waits for the process to exit on its own; returns its exit code."""
        return await asyncio.to_thread(self.proc.wait, timeout)

    def kill(self) -> None:
        """SIGKILLs the process if it still runs, reaps it, closes its log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        finally:
            self.log_file.close()


@dataclass
class Cluster:
    """Starts ``floworch worker`` processes and runs CLI commands against one database and one
    set of Service Bus entities; :meth:`close` kills whatever still runs."""

    cwd: Path
    emulator: ServiceBusEmulator
    entities: Entities
    db_url: str
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The environment of every command: the namespace, entity names, the Service Bus
        runtime for control commands (so their messages go straight to Service Bus)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWORCH_")}
        env.update(
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            FLOWORCH_RUNTIME="servicebus",
            FLOWORCH_SERVICEBUS_CONNECTION=self.emulator.connection_string,
            FLOWORCH_STEPS_TOPIC=self.entities.topic,
            FLOWORCH_CRON_QUEUE=self.entities.cron_queue,
            FLOWORCH_TRIGGERS_TOPIC=self.entities.triggers_topic,
            FLOWORCH_DB_URL=self.db_url,
        )
        return env

    def start_worker(
        self,
        flows: Path,
        *options: str,
        db: str | None = None,
        lease: float = 3,
        tick: float = 0.5,
        grace: float = 10,
    ) -> WorkerProcess:
        """Starts ``floworch worker FLOWS`` with a health endpoint on a free port."""
        name = f"worker-{len(self.workers) + 1}"
        log_path = self.cwd / f"{name}.log"
        log_file = log_path.open("wb")
        args = [
            sys.executable,
            "-m",
            "floworch",
            "worker",
            str(flows),
            "--db",
            db or self.db_url,
            "--topic",
            self.entities.topic,
            "--cron-queue",
            self.entities.cron_queue,
            "--triggers-topic",
            self.entities.triggers_topic,
            "--lease",
            str(lease),
            "--tick",
            str(tick),
            "--grace",
            str(grace),
            "--health-port",
            "0",
            *options,
        ]
        try:
            proc = subprocess.Popen(
                args, cwd=self.cwd, env=self.env, stdout=log_file, stderr=subprocess.STDOUT
            )
        except BaseException:
            log_file.close()
            raise
        worker = WorkerProcess(name, proc, log_path, log_file)
        self.workers.append(worker)
        return worker

    async def cli(
        self, *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Runs ``python -m floworch ARGS`` to completion (in a thread)."""
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "floworch", *args],
            cwd=self.cwd,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    async def cli_ok(self, *args: str, timeout: float = 60) -> str:
        """Runs a command that must succeed; returns its stripped stdout."""
        done = await self.cli(*args, timeout=timeout)
        assert done.returncode == 0, f"floworch {' '.join(args)}: {done.stderr}\n{self.logs()}"
        return done.stdout.strip()

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)

    def close(self) -> None:
        errors: list[BaseException] = []
        for worker in self.workers:
            try:
                worker.kill()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    detail: Callable[[], str] = lambda: "",
    interval: float = 0.1,
) -> T:
    """Polls ``probe`` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout:g}s\n{detail()}")
        await asyncio.sleep(interval)


def write_flow(directory: Path, flow_id: str, steps: dict[str, Any], handlers: str) -> Path:
    """Writes ``flow.json`` and ``handlers.py`` into ``directory``; returns the manifest path."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {"id": flow_id, "version": "1", "triggers": {"manual": {"type": "Manual"}}}
    manifest["steps"] = steps
    (directory / "flow.json").write_text(json.dumps(manifest, indent=2))
    (directory / "handlers.py").write_text(handlers)
    return directory / "flow.json"
