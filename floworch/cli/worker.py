"""``floworch worker``: the long-running Service Bus processor host, and ``floworch trigger``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from floworch.cli.failures import mask_secrets
from floworch.cli.inputs import check_idempotency_key, parse_body
from floworch.cli.loading import load_project, registry_of
from floworch.cli.logs import log_format_option
from floworch.cli.settings import Settings
from floworch.errors import FlowValidationError, ValidationIssue

if TYPE_CHECKING:
    from floworch.hosting.worker import WorkerSettings
    from floworch.model import FlowManifest
    from floworch.runtime.servicebus.config import ServiceBusConnection

log = logging.getLogger("floworch.cli.worker")


def _connection_options(
    settings: Settings, connection: str | None, namespace: str | None
) -> ServiceBusConnection:
    from floworch.runtime.servicebus.config import ServiceBusConnection

    conn = connection or (None if namespace else settings.servicebus_connection)
    ns = namespace or (None if conn else settings.servicebus_namespace)
    if not conn and not ns:
        raise click.UsageError(
            "no Service Bus namespace given: set FLOWORCH_SERVICEBUS_CONNECTION (or --connection) "
            "to a connection string, or FLOWORCH_SERVICEBUS_NAMESPACE (or --namespace) to "
            "<name>.servicebus.windows.net for managed identity"
        )
    if conn:
        check_connection_string(
            conn, "--connection" if connection else "FLOWORCH_SERVICEBUS_CONNECTION"
        )
    return ServiceBusConnection(connection_string=conn, namespace=ns)


def check_connection_string(value: str, hint: str) -> None:
    """Refuses a malformed Service Bus connection string before anything connects.

    Raises:
        click.BadParameter: with what a connection string looks like (never its key).
    """
    from azure.servicebus import parse_connection_string

    try:
        parse_connection_string(value)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(
            f"not a Service Bus connection string ({mask_secrets(str(exc)).rstrip('.')}); "
            "expected Endpoint=sb://<namespace>/;SharedAccessKeyName=<name>;SharedAccessKey=<key>",
            param_hint=hint,
        ) from None


@click.command("worker")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--handlers", multiple=True, help="Handlers file or module (repeatable).")
@click.option("--db", help="Database URL (default: FLOWORCH_DB_URL, else .floworch/floworch.db).")
@click.option(
    "--connection", help="Service Bus connection string [FLOWORCH_SERVICEBUS_CONNECTION]."
)
@click.option(
    "--namespace",
    help="Fully qualified namespace for DefaultAzureCredential / managed identity "
    "[FLOWORCH_SERVICEBUS_NAMESPACE].",
)
@click.option(
    "--topic",
    envvar="FLOWORCH_STEPS_TOPIC",
    show_envvar=True,
    default="flow-steps",
    show_default=True,
    help="Topic step messages travel on.",
)
@click.option(
    "--cron-queue",
    envvar="FLOWORCH_CRON_QUEUE",
    show_envvar=True,
    default="flow-cron",
    show_default=True,
    help="Queue of cron ticks.",
)
@click.option(
    "--triggers-topic",
    envvar="FLOWORCH_TRIGGERS_TOPIC",
    show_envvar=True,
    default="flow-triggers",
    show_default=True,
    help="Topic of run-starting messages (a subscription per flow, and 'unrouted').",
)
@click.option(
    "--concurrency",
    envvar="FLOWORCH_CONCURRENCY",
    show_envvar=True,
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="Messages processed at once per subscription/queue.",
)
@click.option(
    "--prefetch",
    envvar="FLOWORCH_PREFETCH",
    show_envvar=True,
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Messages each receiver fetches ahead.",
)
@click.option(
    "--max-lock-renewal",
    envvar="FLOWORCH_MAX_LOCK_RENEWAL",
    show_envvar=True,
    type=click.FloatRange(0),
    default=300.0,
    show_default=True,
    help="Seconds a message lock is renewed while its step runs.",
)
@click.option(
    "--grace",
    envvar="FLOWORCH_SHUTDOWN_GRACE",
    show_envvar=True,
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds in-flight steps get to finish on SIGTERM/SIGINT before being abandoned.",
)
@click.option(
    "--http-port",
    "--health-port",
    "health_port",
    envvar=["FLOWORCH_HTTP_PORT", "FLOWORCH_HEALTH_PORT"],
    show_envvar=True,
    type=click.IntRange(0),
    default=None,
    help="Serve the HTTP API (/api, /healthz, /readyz, /status) on this port (0: any).",
)
@click.option(
    "--http-host",
    "--health-host",
    "health_host",
    envvar=["FLOWORCH_HTTP_HOST", "FLOWORCH_HEALTH_HOST"],
    show_envvar=True,
    default="127.0.0.1",
    show_default=True,
    help="Interface of the HTTP API (0.0.0.0 in containers: then FLOWORCH_API_TOKEN is needed).",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Serve the API without authentication on a non-loopback --http-host (never in "
    "production).",
)
@click.option(
    "--auto-create-topology",
    envvar="FLOWORCH_AUTO_CREATE_TOPOLOGY",
    show_envvar=True,
    is_flag=True,
    help="Create or update the Service Bus entities at start-up (needs Manage).",
)
@click.option(
    "--management-connection",
    envvar="FLOWORCH_SERVICEBUS_MANAGEMENT_CONNECTION",
    show_envvar=True,
    help="Connection string of the management endpoint for --auto-create-topology, when it "
    "differs from the data plane's (the local emulator serves it on its own port).",
)
@click.option(
    "--ca-file",
    envvar="FLOWORCH_SERVICEBUS_CA_FILE",
    show_envvar=True,
    type=click.Path(exists=True, dir_okay=False),
    help="TLS certificate to trust for the management endpoint (the local emulator's).",
)
@click.option(
    "--lease",
    envvar="FLOWORCH_LEASE_SECONDS",
    show_envvar=True,
    type=click.FloatRange(1),
    default=30.0,
    show_default=True,
    help="Seconds a step claim lives without renewal; after a crash another worker takes the "
    "step over this long after the last renewal.",
)
@click.option(
    "--tick",
    envvar="FLOWORCH_TICK_SECONDS",
    show_envvar=True,
    type=click.FloatRange(0.1),
    default=2.0,
    show_default=True,
    help="Seconds between reconciler passes (lost messages, lapsed leases, run timeouts, cron "
    "chains).",
)
@click.option(
    "--retry-in-place",
    envvar="FLOWORCH_RETRY_IN_PLACE_SECONDS",
    show_envvar=True,
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="Seconds a message that hit a database or send failure is retried, with back-off, "
    "while it stays locked, before it is abandoned (so an outage does not use up the max "
    "delivery count).",
)
@click.option("--no-cron", is_flag=True, help="Do not run the cron hub in this worker.")
@click.option(
    "--no-triggers", is_flag=True, help="Do not receive trigger messages (topic and queues)."
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
def worker_command(
    paths: tuple[str, ...],
    handlers: tuple[str, ...],
    db: str | None,
    connection: str | None,
    namespace: str | None,
    topic: str,
    cron_queue: str,
    triggers_topic: str,
    concurrency: int,
    prefetch: int,
    max_lock_renewal: float,
    grace: float,
    health_port: int | None,
    health_host: str,
    insecure_no_auth: bool,
    auto_create_topology: bool,
    management_connection: str | None,
    ca_file: str | None,
    lease: float,
    tick: float,
    retry_in_place: float,
    no_cron: bool,
    no_triggers: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Run flows on Azure Service Bus until SIGTERM or SIGINT.

    PATHS are manifests, Python flow files or folders of them (default: FLOWORCH_FLOWS); a
    handlers.py beside a manifest or in a folder is imported unless --handlers is given. The
    database is FLOWORCH_DB_URL (or --db); every worker sharing a namespace must share it.

    The worker receives each enabled flow's subscription (flow-<flowId>) on the steps topic, the
    cron queue, and each flow's subscription (and 'unrouted') on the triggers topic; flows
    enabled, disabled or added to PATH while it runs take effect within seconds. On
    SIGTERM/SIGINT it stops receiving, lets steps in flight finish for --grace seconds, abandons
    the rest (Service Bus redelivers them) and exits 0.
    """
    from floworch.hosting.observability import LogFormat, console_logging, start_telemetry
    from floworch.hosting.worker import WorkerSettings
    from floworch.runtime.servicebus.config import ServiceBusSettings

    console_logging(log_level, LogFormat(log_format.lower()))
    from floworch.cli.session import database_url

    settings = Settings.from_env()
    targets = list(paths) or ([settings.flows] if settings.flows else [])
    if not targets:
        raise click.UsageError("say which flows to run: PATH or FLOWORCH_FLOWS")
    conn = _connection_options(settings, connection, namespace)
    from floworch.api.auth import AuthConfig

    api_auth = AuthConfig.none()
    if health_port is not None:
        from floworch.hosting.http import ApiEnvironment, auth_for

        api_auth = auth_for(
            ApiEnvironment.from_env(os.environ), health_host, insecure_no_auth=insecure_no_auth
        )
    url = database_url(db)
    worker_settings = WorkerSettings(
        servicebus=ServiceBusSettings(
            steps_topic=topic,
            cron_queue=cron_queue,
            triggers_topic=triggers_topic,
            concurrency=concurrency,
            prefetch=prefetch,
            max_lock_renewal=timedelta(seconds=max_lock_renewal),
            retry_in_place=timedelta(seconds=retry_in_place),
        ),
        grace=grace,
        lease=timedelta(seconds=lease),
        tick=timedelta(seconds=tick),
        cron=not no_cron,
        triggers=not no_triggers,
        health_host=health_host,
        health_port=health_port,
        api_auth=api_auth,
    )
    from floworch.hosting.runner import run_main

    telemetry = start_telemetry(os.environ, service_name="floworch-worker")
    try:
        # Not asyncio.run: it would wait for ever for a handler that ignores cancellation.
        code = run_main(
            _run_worker(
                targets,
                handlers,
                url,
                conn,
                worker_settings,
                auto_create_topology,
                ca_file,
                management_connection,
            )
        )
    finally:
        if telemetry is not None:
            telemetry.shutdown()
    sys.exit(code)


async def _run_worker(
    targets: list[str],
    handlers: tuple[str, ...],
    url: str,
    connection: ServiceBusConnection,
    settings: WorkerSettings,
    auto_create_topology: bool,
    ca_file: str | None,
    management_connection: str | None = None,
) -> int:
    from floworch.cli.loading import load_flows
    from floworch.hosting.worker import WorkerHost
    from floworch.storage.factory import open_store

    manifests, registry = load_project(targets, handlers)
    has_dir = any([await asyncio.to_thread(Path(t).is_dir) for t in targets])
    if settings.health_port is not None:
        from dataclasses import replace

        from floworch.hosting.http import webhook_secrets

        secrets, warnings = webhook_secrets(registry_of(manifests), os.environ)
        for line in warnings:
            log.warning("%s", line)
        settings = replace(settings, webhook_secrets=secrets)
    if auto_create_topology:
        from floworch.runtime.servicebus.config import ServiceBusConnection

        admin = (
            ServiceBusConnection(connection_string=management_connection)
            if management_connection
            else connection
        )
        await asyncio.to_thread(_apply_topology, admin, manifests, settings, ca_file)
    store = await open_store(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    source = (lambda: list(load_flows(targets, handlers).manifests)) if has_dir else None
    try:
        host = WorkerHost(
            store=store,
            flows=registry_of(manifests),
            connection=connection,
            handlers=registry,
            settings=settings,
            flow_source=source,
        )
        await host.start()
        if host.health is not None:
            log.info(
                "health endpoint on http://%s:%d/readyz (API under /api)",
                settings.health_host,
                host.health.port,
            )
        click.echo(
            f"floworch worker {host.engine.core.owner} running {len(host.engine.flows)} flow(s) "
            f"on {connection.describe()}; Ctrl-C or SIGTERM stops it",
            err=True,
        )
        try:
            await stop.wait()
            click.echo("stopping: finishing steps in flight", err=True)
        finally:
            await host.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await store.close()
    return 0


def _apply_topology(
    connection: ServiceBusConnection,
    manifests: list[FlowManifest],
    settings: WorkerSettings,
    ca_file: str | None,
) -> None:
    from floworch.runtime.servicebus.topology import TopologySettings
    from floworch.runtime.servicebus.topology.admin import apply_to_connection

    plan = apply_to_connection(
        connection,
        manifests,
        TopologySettings.for_runtime(settings.servicebus),
        ca_file=ca_file,
    )
    log.info("topology applied: %d change(s)", len(plan.changes))


@click.command("trigger")
@click.argument("flow_id")
@click.option("--body", help="Trigger body: JSON text, or @file.json.")
@click.option("--trigger", "trigger_key", help="The manifest trigger to start through.")
@click.option(
    "--idempotency-key",
    callback=check_idempotency_key,
    help="Starts at most one run per key (default: a new key).",
)
@click.option(
    "--servicebus",
    is_flag=True,
    help="Send a message to the triggers topic (a worker that runs the flow starts the run) "
    "instead of writing the run to the database directly.",
)
@click.option(
    "--connection", help="Service Bus connection string [FLOWORCH_SERVICEBUS_CONNECTION]."
)
@click.option("--namespace", help="Fully qualified namespace [FLOWORCH_SERVICEBUS_NAMESPACE].")
@click.option(
    "--topic",
    envvar="FLOWORCH_TRIGGERS_TOPIC",
    show_envvar=True,
    default="flow-triggers",
    show_default=True,
    help="With --servicebus: the triggers topic, or the queue of the flow's ServiceBus trigger.",
)
@click.option("--db", help="Database URL (without --servicebus).")
@click.option(
    "--wait",
    is_flag=True,
    help="Run the new run here until it ends or waits for a signal (handlers from --handlers "
    "or FLOWORCH_FLOWS).",
)
@click.option("--handlers", "handlers", multiple=True, help="Handlers file or module, for --wait.")
def trigger_command(
    flow_id: str,
    body: str | None,
    trigger_key: str | None,
    idempotency_key: str | None,
    servicebus: bool,
    connection: str | None,
    namespace: str | None,
    topic: str,
    db: str | None,
    wait: bool,
    handlers: tuple[str, ...],
) -> None:
    """Start a run of a flow.

    Prints the run id (with --servicebus, the idempotency key: a worker starts the run). The
    run's steps are executed by a running `floworch run`/`worker` serving the database, the
    next `floworch resume`, or here with --wait.
    """
    payload = parse_body(body)
    settings = Settings.from_env()
    if servicebus:
        if wait:
            raise click.UsageError("--wait runs steps here; it cannot be used with --servicebus")
        conn = _connection_options(settings, connection, namespace)
        key = asyncio.run(
            _send_trigger(conn, flow_id, payload, topic, trigger_key, idempotency_key)
        )
        click.echo(key)
        return
    from floworch.cli.control import prepare_wait, wait_here
    from floworch.cli.failures import ExitCode
    from floworch.cli.session import Session, queued_note, run_session

    prepare_wait(wait, handlers)

    async def start(session: Session) -> int:
        result = await session.engine.trigger(flow_id, trigger_key, payload, None, idempotency_key)
        if result.disabled or result.run_id is None:
            raise FlowValidationError(
                [ValidationIssue(flow_id, "the flow is disabled; no run was started")]
            )
        click.echo(result.run_id)
        if wait:
            return await wait_here(session, result.run_id)
        note = queued_note(session, result.run_id)
        if note:
            click.echo(note, err=True)
        return ExitCode.OK

    sys.exit(run_session(db, start, must_exist=False))


async def _send_trigger(
    connection: ServiceBusConnection,
    flow_id: str,
    payload: Any,
    topic: str,
    trigger_key: str | None,
    idempotency_key: str | None,
) -> str:
    from floworch.runtime.servicebus.connection import open_client
    from floworch.runtime.servicebus.triggers import send_trigger

    handle = open_client(connection)
    try:
        return await send_trigger(
            handle.client,
            flow_id,
            payload,
            topic=topic,
            trigger_key=trigger_key,
            idempotency_key=idempotency_key,
        )
    finally:
        await handle.close()
