"""``floworch serve``: the HTTP API and the embedded runtime (reconciler, cron) in one process,
for a laptop: cron, retries, signals and webhooks without Service Bus."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import click

from floworch.cli.logs import log_format_option


@click.command("serve")
@click.argument("path", required=False, type=click.Path(exists=True))
@click.option("--handlers", multiple=True, help="Handlers file or module (repeatable).")
@click.option("--db", help="Database URL (default: FLOWORCH_DB_URL, else .floworch/floworch.db).")
@click.option(
    "--host",
    envvar="FLOWORCH_HTTP_HOST",
    show_envvar=True,
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; anything but loopback needs FLOWORCH_API_TOKEN.",
)
@click.option(
    "--port",
    envvar="FLOWORCH_HTTP_PORT",
    show_envvar=True,
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Serve without authentication on a non-loopback --host (never in production).",
)
@click.option(
    "--log-level",
    envvar="FLOWORCH_LOG_LEVEL",
    show_envvar=True,
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
)
@log_format_option
def serve_command(
    path: str | None,
    handlers: tuple[str, ...],
    db: str | None,
    host: str,
    port: int,
    insecure_no_auth: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Serve the HTTP API and run flows on the embedded runtime until Ctrl-C.

    PATH is a manifest, a directory of them or a Python flows file (default: FLOWORCH_FLOWS); a
    handlers.py beside a manifest is imported unless --handlers is given. Auth: off on loopback
    unless FLOWORCH_API_TOKEN / FLOWORCH_API_READ_TOKEN are set; required elsewhere.
    """
    from floworch.cli.settings import Settings
    from floworch.hosting.http import ApiEnvironment, auth_for
    from floworch.hosting.observability import LogFormat, console_logging, start_telemetry

    console_logging(log_level, LogFormat(log_format.lower()))
    settings = Settings.from_env()
    target = path or settings.flows
    if not target:
        raise click.UsageError("say which flows to serve: PATH or FLOWORCH_FLOWS")
    auth = auth_for(ApiEnvironment.from_env(os.environ), host, insecure_no_auth=insecure_no_auth)
    telemetry = start_telemetry(os.environ, service_name="floworch-serve")
    try:
        asyncio.run(_serve(target, handlers, settings.database_url(db), host, port, auth))
    finally:
        if telemetry is not None:
            telemetry.shutdown()


async def _serve(
    target: str,
    handlers: tuple[str, ...],
    url: str,
    host: str,
    port: int,
    auth: object,
) -> None:
    from floworch.api import AuthConfig, create_app
    from floworch.cli.loading import load_project, registry_of
    from floworch.hosting.embedded import EmbeddedHost
    from floworch.hosting.http import HttpServer, webhook_secrets
    from floworch.storage.factory import open_store

    assert isinstance(auth, AuthConfig)
    log = logging.getLogger("floworch.cli.serve")
    manifests, registry = load_project(target, handlers)
    flows = registry_of(manifests)
    secrets, warnings = webhook_secrets(flows, os.environ)
    for line in warnings:
        log.warning("%s", line)
    store = await open_store(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        embedded = EmbeddedHost(store=store, flows=flows, handlers=registry)
        await embedded.start()
        try:
            dispatcher = embedded.dispatcher

            async def dead_lettered() -> int:
                return dispatcher.dead_lettered

            app = create_app(
                embedded.engine,
                auth=auth,
                webhook_secrets=secrets,
                dead_letters=dead_lettered,
            )
            server = HttpServer(app, host=host, port=port)
            await server.start()
            try:
                click.echo(
                    f"floworch serve: {server.url} (dashboard {server.url}/, API "
                    f"{server.url}/api, docs "
                    f"{server.url}/api/docs; auth {auth.mode.value}); "
                    f"{len(flows)} flow(s); Ctrl-C stops",
                )
                sys.stdout.flush()
                await stop.wait()
                click.echo("stopping", err=True)
            finally:
                await server.stop()
        finally:
            await embedded.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await store.close()
