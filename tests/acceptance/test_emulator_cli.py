"""``floworch emulator`` as a process (issue 9.19): labelled addresses a shell can source, the
same as JSON with ``--json``, ``--strict-auth``, and exit 0 on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from .conftest import ROOT, Cli

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

VARIABLES = (
    "FLOWORCH_SERVICEBUS_CONNECTION",
    "FLOWORCH_SERVICEBUS_MANAGEMENT_CONNECTION",
    "FLOWORCH_SERVICEBUS_CA_FILE",
)


def wait_for(
    process: subprocess.Popen[str], condition: Callable[[], bool], what: str, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            assert process.stderr is not None
            raise AssertionError(
                f"the emulator exited {process.returncode}: {process.stderr.read()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def started(
    cli: Cli, tmp_path: Path
) -> Iterator[Callable[..., tuple[subprocess.Popen[str], Path]]]:
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], Path]:
        out = tmp_path / f"emulator-{len(processes)}.out"
        with out.open("w") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "floworch", "emulator", *args],
                cwd=ROOT,
                env=cli.env,
                stdout=sink,
                stderr=subprocess.PIPE,
                text=True,
            )
        processes.append(process)
        return process, out

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()


def test_the_addresses_are_labelled_and_a_shell_can_source_them(
    cli: Cli, started: Callable[..., tuple[subprocess.Popen[str], Path]]
) -> None:
    process, out = started("--topology", "topology/servicebus.json")
    wait_for(process, lambda: "_CA_FILE=" in out.read_text(), "the emulator's addresses")
    text = out.read_text()
    assert "# data plane (AMQP)" in text and "# management (HTTPS)" in text and "# CA file" in text
    assert "any key is accepted on AMQP" in text
    # Sourced in a shell, the variables are what floworch's commands read: topology plan needs
    # no option at all to find the emulator's management endpoint and certificate.
    shell = (
        f". {out} && printf '%s\\n' "
        + " ".join(f'"${name}"' for name in VARIABLES)
        + f" && {sys.executable} -m floworch topology plan --topology-file topology/servicebus.json"
    )
    env = {k: v for k, v in cli.env.items() if not k.startswith("FLOWORCH_SERVICEBUS")}
    done = subprocess.run(
        ["sh", "-c", shell], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    connection, management, ca_file = done.stdout.splitlines()[:3]
    assert (
        connection.startswith("Endpoint=sb://127.0.0.1:") and "UseDevelopmentEmulator" in connection
    )
    assert management != connection and Path(ca_file).is_file()
    assert "No changes" in done.stdout
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def test_json_prints_one_object_and_a_port_in_use_is_one_clear_line(
    started: Callable[..., tuple[subprocess.Popen[str], Path]],
) -> None:
    process, out = started("--topology", "topology/servicebus.json", "--json", "--strict-auth")
    wait_for(process, lambda: out.read_text().endswith("\n"), "the JSON line")
    described = json.loads(out.read_text())
    assert set(described) == {
        "connectionString",
        "managementConnectionString",
        "caFile",
        "port",
        "managementPort",
        "strictAuth",
    }
    assert described["strictAuth"] is True
    assert f":{described['port']};" in described["connectionString"]
    assert Path(described["caFile"]).is_file()
    with (
        ServiceBusClient.from_connection_string(described["connectionString"]) as client,
        client.get_queue_sender("flow-cron") as sender,  # declared by the topology file
    ):
        sender.send_messages(ServiceBusMessage("via-cli"))

    second, _ = started("--port", str(described["port"]))
    assert second.wait(60) != 0
    assert second.stderr is not None
    error = second.stderr.read()
    assert "Traceback" not in error
    assert f"AMQP port {described['port']}" in error and "choose other ports" in error

    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0
