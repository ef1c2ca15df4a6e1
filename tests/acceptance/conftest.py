"""Helpers for driving the ``floworch`` command as a subprocess.

Tests synchronise on state, never on sleeps: :meth:`Cli.wait_for_run` reads the runs straight
from the SQLite file the CLI writes (in this process, no subprocess per poll) until a condition
holds, with a generous timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from floworch.engine.views import RunState, build_run_state
from floworch.storage.factory import open_store

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    """Runs ``python -m floworch`` in a working directory of the test's own."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in ("FLOWORCH_DB_URL", "FLOWORCH_FLOWS", "FLOWORCH_RUNTIME", "FLOWORCH_DEBUG"):
            self.env.pop(name, None)

    @property
    def db_file(self) -> Path:
        """The default database of this working directory."""
        return self.cwd / ".floworch" / "floworch.db"

    def run(
        self, *args: str, timeout: float = 90, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "floworch", *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "floworch", *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def json(self, *args: str) -> Any:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def runs(self) -> list[RunState]:
        """Every run in the default database, newest first (read in this process)."""
        if not self.db_file.exists():
            return []

        async def read() -> list[RunState]:
            from floworch.storage.records import RunQuery

            store = await open_store(f"sqlite:///{self.db_file}", migrate=False)
            try:
                found = []
                for run in await store.list_runs(RunQuery(limit=1000)):
                    found.append(build_run_state(run, await store.get_steps(run.run_id)))
                return found
            finally:
                await store.close()

        try:
            return asyncio.run(read())
        except Exception:  # the schema is not there yet: nothing has run
            return []

    def wait_for_run(
        self,
        condition: Callable[[RunState], bool],
        *,
        what: str,
        timeout: float = 90.0,
        process: subprocess.Popen[str] | None = None,
    ) -> RunState:
        """Polls the database until a run meets ``condition``; returns it.

        Fails at once (with its output) if ``process`` exits first.
        """
        deadline = time.monotonic() + timeout
        while True:
            for run in self.runs():
                if condition(run):
                    return run
            if process is not None and process.poll() is not None:
                out, err = process.communicate()
                raise AssertionError(f"{what}: the process exited first\n{out}\n{err}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: not reached within {timeout:g}s")
            time.sleep(0.1)


@dataclass(frozen=True)
class Result:
    """What one in-process invocation printed and returned."""

    code: int
    out: str
    err: str


class InProcessCli(Cli):
    """Runs ``floworch`` through its entry point in this process (one import of floworch for
    every invocation: most CLI tests need no process of their own). Handlers are imported
    once per path per process, so tests give their handler types unique names."""

    def __init__(self, cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(cwd)
        self._capsys = capsys

    def __call__(self, *args: str) -> Result:
        from floworch.cli.main import run_cli

        previous = Path.cwd()
        os.chdir(self.cwd)
        try:
            code = run_cli(list(args))
        finally:
            os.chdir(previous)
        out, err = self._capsys.readouterr()
        return Result(code, out, err)

    def ok(self, *args: str) -> Result:
        done = self(*args)
        assert done.code == 0, f"floworch {' '.join(args)} -> {done.code}\n{done.out}{done.err}"
        return done


def step_status(run: RunState, key: str) -> str | None:
    """The status of one step of a run (None when the step has no row yet)."""
    step = run.steps.get(key)
    return str(step.status) if step is not None else None


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def floworch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[InProcessCli]:
    """``floworch`` in this process, in the test's own directory and environment."""
    for name in ("FLOWORCH_DB_URL", "FLOWORCH_FLOWS", "FLOWORCH_RUNTIME", "FLOWORCH_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    with logging_restored():
        yield InProcessCli(tmp_path, capsys)


@contextmanager
def logging_restored() -> Iterator[None]:
    """Undoes what in-process commands do to logging: the handlers they add to the root logger
    write to this test's captured stderr, which is closed once the test ends."""
    names = ("", "floworch", "floworch.step", "aiosqlite", "sqlalchemy", "alembic", "asyncio")
    levels = {name: logging.getLogger(name).level for name in names}
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
