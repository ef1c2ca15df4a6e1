"""``floworch emulator``: run the local Service Bus emulator until interrupted."""

from __future__ import annotations

import json
import shlex
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

from floworch.emulator.server import ServiceBusEmulator

#: The variables the emulator's addresses are printed as: the names ``floworch worker``,
#: ``floworch trigger`` and ``floworch topology`` read them from.
CONNECTION_VARIABLE = "FLOWORCH_SERVICEBUS_CONNECTION"
MANAGEMENT_VARIABLE = "FLOWORCH_SERVICEBUS_MANAGEMENT_CONNECTION"
CA_FILE_VARIABLE = "FLOWORCH_SERVICEBUS_CA_FILE"


def describe(emulator: ServiceBusEmulator) -> dict[str, Any]:
    """What ``--json`` prints: the addresses of a running emulator."""
    return {
        "connectionString": emulator.connection_string,
        "managementConnectionString": emulator.management_connection_string,
        "caFile": str(emulator.ca_file),
        "port": emulator.port,
        "managementPort": emulator.management_port,
        "strictAuth": emulator.strict_auth,
    }


def shell_lines(emulator: ServiceBusEmulator) -> list[str]:
    """What is printed without ``--json``: each address labelled, as ``export`` lines a POSIX
    shell can source (``. emulator.env``), comments saying what each one is for."""
    auth = (
        "keys and token audiences are checked (--strict-auth)"
        if emulator.strict_auth
        else "any key is accepted on AMQP; see --strict-auth"
    )
    return [
        f"# floworch Service Bus emulator; {auth}. Ctrl-C or SIGTERM stops it.",
        "# data plane (AMQP): ServiceBusClient, floworch worker, floworch trigger",
        f"export {CONNECTION_VARIABLE}={shlex.quote(emulator.connection_string)}",
        "# management (HTTPS): ServiceBusAdministrationClient, floworch topology plan/apply",
        f"export {MANAGEMENT_VARIABLE}={shlex.quote(emulator.management_connection_string)}",
        "# CA file of the management endpoint's self-signed certificate (connection_verify)",
        f"export {CA_FILE_VARIABLE}={shlex.quote(str(emulator.ca_file))}",
    ]


@click.command("emulator")
@click.option(
    "--topology",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Topology JSON declaring queues, topics, subscriptions and rules.",
)
@click.option("--port", type=int, default=0, show_default=True, help="AMQP port (0: a free one).")
@click.option(
    "--management-port", type=int, default=0, show_default=True, help="HTTPS management port."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the addresses as one JSON object instead."
)
@click.option(
    "--strict-auth",
    is_flag=True,
    help="Check every shared access signature as Service Bus does: on AMQP and on the "
    "management API, the key and the token's audience (sr) must match.",
)
def emulator_command(
    topology: Path | None,
    port: int,
    management_port: int,
    host: str,
    as_json: bool,
    strict_auth: bool,
) -> None:
    """Run a local Azure Service Bus emulator until SIGINT or SIGTERM.

    Prints, labelled, the data-plane connection string, the management connection string and
    the CA certificate file of the management endpoint, as shell lines that export
    FLOWORCH_SERVICEBUS_CONNECTION, FLOWORCH_SERVICEBUS_MANAGEMENT_CONNECTION and
    FLOWORCH_SERVICEBUS_CA_FILE (save them to a file and source it in another shell), or with
    --json as one JSON object.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    emulator = ServiceBusEmulator(
        topology, host=host, port=port, management_port=management_port, strict_auth=strict_auth
    )
    try:
        try:
            emulator.start()
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {host} (AMQP port {port or 'any'}, management port "
                f"{management_port or 'any'}): {exc.strerror or exc}; choose other ports"
            ) from exc
        try:
            if as_json:
                click.echo(json.dumps(describe(emulator)))
            else:
                for line in shell_lines(emulator):
                    click.echo(line)
            # Event.wait with a timeout keeps the main thread responsive to signals.
            while not stop.wait(0.5):
                pass
        finally:
            emulator.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
