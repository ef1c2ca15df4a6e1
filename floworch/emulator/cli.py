"""``floworch emulator``: run the local Service Bus emulator until interrupted."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from floworch.emulator.server import ServiceBusEmulator


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
def emulator_command(topology: Path | None, port: int, management_port: int, host: str) -> None:
    """Run a local Azure Service Bus emulator until SIGINT or SIGTERM.

    Prints, one per line: the data-plane connection string, the management connection string
    and the CA certificate file to pass as ``connection_verify`` to the administration client.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ServiceBusEmulator(
            topology, host=host, port=port, management_port=management_port
        ) as emulator:
            click.echo(emulator.connection_string)
            click.echo(emulator.management_connection_string)
            click.echo(str(emulator.ca_file))
            # Event.wait with a timeout keeps the main thread responsive to signals.
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
