"""docs/functions.md: the local run (emulator, local.settings.json from the example, the local
Functions host, a run over HTTP and one through the triggers topic) runs verbatim in a copy of
the app, changing only the two ports; the requirements and topology commands run as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.conftest import ROOT
from tests.acceptance.functions_support import (
    Process,
    app_copy,
    app_env,
    free_port,
    wait_for_runs,
)

DOC = (ROOT / "docs" / "functions.md").read_text(encoding="utf-8")
DOCS_AMQP_PORT, DOCS_HTTP_PORT = "5673", "7071"


def section(heading: str) -> str:
    return DOC.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.timeout(240)
def test_the_local_run_works_verbatim(tmp_path: Path) -> None:
    start, calls = sh_blocks(section("Running locally"))
    amqp, http = str(free_port()), str(free_port())

    def here(text: str) -> str:
        return text.replace(DOCS_AMQP_PORT, amqp).replace(DOCS_HTTP_PORT, http)

    app = app_copy(tmp_path / "app")
    example = app / "local.settings.json.example"
    assert DOCS_AMQP_PORT in example.read_text(encoding="utf-8")
    example.write_text(here(example.read_text(encoding="utf-8")), encoding="utf-8")
    env = app_env()
    emulator_line, copy_line, host_line = here(start).strip().splitlines()
    assert emulator_line.endswith(" &")
    emulator = Process(shlex.split(emulator_line[:-2]), cwd=app, env=env, log=app / "emu.log")
    host: Process | None = None
    try:
        emulator.wait_for("export FLOWORCH_SERVICEBUS_CONNECTION")
        subprocess.run(["bash", "-c", copy_line], cwd=app, env=env, check=True, timeout=30)
        host = Process(shlex.split(host_line), cwd=app, env=env, log=app / "host.log")
        host.wait_for("HTTP function at")
        over_http, over_servicebus, listing = here(calls).strip().splitlines()
        for line in (over_http, over_servicebus):
            done = subprocess.run(
                ["bash", "-c", line], cwd=app, env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
        runs = wait_for_runs(
            app / ".floworch" / "functions.db",
            lambda runs: len([r for r in runs if r.status == "Succeeded"]) == 2,
            what="both hello runs to succeed",
            process=host,
        )
        assert {r.flow_id for r in runs} == {"hello"}
        done = subprocess.run(
            ["bash", "-c", listing], cwd=app, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("Succeeded") == 2, done.stdout
    finally:
        codes = (host.stop() if host else 0, emulator.stop())
    assert codes == (0, 0), host.stderr() if host else ""


def test_the_requirements_command_writes_the_committed_file() -> None:
    (block,) = sh_blocks(section("Publishing"))
    command, _, target = block.strip().partition(" > ")
    assert shlex.split(command)[0] == "python" and target == "requirements.txt"
    done = subprocess.run(
        [sys.executable, *shlex.split(command)[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == (ROOT / target).read_text(encoding="utf-8")


def test_the_topology_check_passes_for_the_deployed_flows() -> None:
    (block,) = sh_blocks(section("Adding a flow"))
    words = shlex.split(block)
    assert words[0] == "floworch"
    done = subprocess.run(
        [sys.executable, "-m", "floworch", *words[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
