"""The Function App run by ``python -m floworch.hosting.functions.local`` in a subprocess, from a
copy of the app's files (the repository root is the app; the copy keeps the tests' database and
``local.settings.json`` out of it), as docs/functions.md runs it.

Tests synchronise on state: :func:`wait_for_runs` reads the runs from the app's SQLite file in
this process until a condition holds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from floworch.engine.views import RunState, build_run_state
from floworch.storage.factory import open_store
from tests.acceptance.conftest import ROOT

APP_FILES = ("function_app.py", "host.json", "local.settings.json.example")
APP_FOLDERS = ("flows", "topology")
_OWN_SETTINGS = ("FLOWORCH_", "OTEL_", "APPLICATIONINSIGHTS_", "ServiceBusConnection")


def app_copy(root: Path) -> Path:
    """The Function App's files under ``root`` (``examples/`` linked, not copied)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in APP_FILES:
        shutil.copy(ROOT / name, root / name)
    for name in APP_FOLDERS:
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    return root


def app_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without the caller's floworch, telemetry and Service Bus settings, with
    this interpreter's ``bin`` first on PATH (``floworch`` and ``python`` are the venv's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_SETTINGS)}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **(extra or {})}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A long-running command; :meth:`wait_for` reads its stdout until a line holds a text."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        self._err = log.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=self._err, text=True
        )
        self.out: list[str] = []

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(timeout=10)
                raise AssertionError(
                    f"{self.args} exited {self.proc.returncode} before printing {text!r}:\n"
                    f"{''.join(self.out)}{self.stderr()}"
                )
            self.out.append(line)
            if text in line:
                return line
        raise AssertionError(f"{self.args} printed no {text!r} in {timeout:g}s")

    def stderr(self) -> str:
        self._err.flush()
        return self.log.read_text(encoding="utf-8")

    def stop(self, timeout: float = 60) -> int:
        """Ctrl-C, then waits for the exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self._err.close()
        return self.proc.returncode


def read_runs(db_file: Path) -> list[RunState]:
    """Every run in the SQLite file, newest first ([] before the schema exists)."""
    if not db_file.exists():
        return []

    async def read() -> list[RunState]:
        from floworch.storage.records import RunQuery

        store = await open_store(f"sqlite:///{db_file}", migrate=False)
        try:
            return [
                build_run_state(run, await store.get_steps(run.run_id))
                for run in await store.list_runs(RunQuery(limit=1000))
            ]
        finally:
            await store.close()

    try:
        return asyncio.run(read())
    except Exception:  # the schema is not there yet
        return []


def wait_for_runs(
    db_file: Path,
    condition: Callable[[list[RunState]], bool],
    *,
    what: str,
    process: Process,
    timeout: float = 90,
) -> list[RunState]:
    """Polls the runs until ``condition`` holds; fails at once if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        runs = read_runs(db_file)
        if condition(runs):
            return runs
        if process.proc.poll() is not None:
            raise AssertionError(f"{what}: the Function App exited first\n{process.stderr()}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s\n{process.stderr()}")
        time.sleep(0.1)
