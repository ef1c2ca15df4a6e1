"""``floworch run``: start a run of a flow and execute it in this process until it ends."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Any

import click

from floworch.cli.failures import ExitCode, mask_secrets
from floworch.cli.inputs import check_idempotency_key, dump_json, parse_body, parse_headers
from floworch.cli.loading import check_handlers, load_flows, pick_flow
from floworch.cli.logs import configure_logging, log_format_option, log_level_option
from floworch.cli.render import failure_lines, run_to_json, summary
from floworch.cli.session import database_url, db_option, describe_database

SUCCESSFUL_RUN_STATUSES = ("Succeeded", "Skipped")
"""Run statuses that exit 0: nothing failed unhandled (Skipped: every leaf's condition was
false, as the flow says). Failed, Cancelled and TimedOut exit 1."""


@dataclass
class _Started:
    """What Ctrl-C needs to say: the run that was started, if any."""

    run_id: str | None = None


def db_flag(db: str | None) -> str:
    """`` --db URL`` for hints, when ``--db`` was given (its password masked)."""
    import shlex

    return f" --db {shlex.quote(mask_secrets(db))}" if db else ""


def exit_code_of(status: str) -> ExitCode:
    """0 for a run that Succeeded or was Skipped, 1 otherwise."""
    return ExitCode.OK if status in SUCCESSFUL_RUN_STATUSES else ExitCode.FAILED


@click.command("run")
@click.argument("path", type=click.Path(exists=True))
@click.option("--handlers", "handlers", multiple=True, help="Handlers file or module (repeatable).")
@click.option("--flow", "flow_id", help="Flow id, when PATH holds several flows.")
@click.option("--trigger", help="Trigger key (default: the flow's Manual trigger).")
@click.option("--body", help="Trigger body: JSON text or @file.json.")
@click.option("--header", "header", multiple=True, help="Trigger header K=V (repeatable).")
@click.option(
    "--idempotency-key",
    callback=check_idempotency_key,
    help="A repeat with the same key returns the first run.",
)
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the finished run as JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Give up waiting after this many seconds (exit 1; `floworch resume` continues).",
)
@log_level_option
@log_format_option
def run_command(
    path: str,
    handlers: tuple[str, ...],
    flow_id: str | None,
    trigger: str | None,
    body: str | None,
    header: tuple[str, ...],
    idempotency_key: str | None,
    db: str | None,
    as_json: bool,
    timeout: float | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run a flow here until it finishes.

    PATH is a manifest (JSON/YAML), a Python file defining flows and handlers, or a folder of
    them; a handlers.py beside a manifest is imported unless --handlers is given. Progress is
    shown on a terminal; handler log records (ctx.logger) and signal notices go to stderr.
    Exit code: 0 when the run Succeeded (or was Skipped), 1 when it Failed, was Cancelled or
    TimedOut (or --timeout passed), 2 for invalid input, 3 when the database is unavailable,
    130 on Ctrl-C (the run stays Running; `floworch resume` continues it).
    """
    payload = parse_body(body)
    headers = parse_headers(header)
    url = database_url(db)
    project = load_flows([path], handlers)
    manifest = pick_flow(list(project.manifests), flow_id)
    from floworch.engine.handlers import default_registry

    check_handlers(project.manifests, default_registry)
    configure_logging(log_level, log_format)
    from floworch.hosting.observability import start_telemetry
    from floworch.hosting.runner import run_main

    telemetry = start_telemetry(os.environ, service_name="floworch-run")

    started = _Started()
    try:
        code = run_main(
            _run(
                project.manifests,
                manifest.id,
                trigger,
                payload,
                headers,
                idempotency_key,
                url,
                db,
                as_json,
                timeout,
                started,
            )
        )
    except KeyboardInterrupt:
        if started.run_id is None:
            click.echo("interrupted before the run started", err=True)
        else:
            click.echo(
                f"interrupted: run {started.run_id} of {manifest.id} is still Running; continue "
                f"it with: floworch resume{db_flag(db)}",
                err=True,
            )
        sys.exit(ExitCode.INTERRUPTED)
    finally:
        if telemetry is not None:
            telemetry.shutdown()
    sys.exit(code)


async def _run(
    manifests: Any,
    flow_id: str,
    trigger: str | None,
    body: Any,
    headers: dict[str, str],
    idempotency_key: str | None,
    url: str,
    db: str | None,
    as_json: bool,
    timeout: float | None,
    started: _Started,
) -> int:
    from floworch.cli.local import EMBEDDED_LEASE
    from floworch.cli.progress import RunWatch
    from floworch.cli.session import open_database
    from floworch.engine.flows import FlowRegistry
    from floworch.engine.handlers import default_registry
    from floworch.hosting.embedded import EmbeddedHost, EmbeddedSettings

    store = await open_database(url)
    try:
        async with EmbeddedHost(
            store=store,
            flows=FlowRegistry(manifests),
            handlers=default_registry,
            settings=EmbeddedSettings(lease=EMBEDDED_LEASE),
        ) as host:
            result = await host.engine.trigger(flow_id, trigger, body, headers, idempotency_key)
            if result.run_id is None:
                click.echo(f"error: flow {flow_id!r} is disabled; no run started", err=True)
                return ExitCode.FAILED
            started.run_id = result.run_id
            if not as_json:
                note = " (a repeat of this idempotency key)" if result.duplicate else ""
                click.echo(
                    f"run {result.run_id} of {flow_id}{note}; state in {describe_database(url)}"
                )
            live = sys.stdout.isatty() and not as_json
            watch = RunWatch(
                host.engine,
                steps_out=sys.stdout if live else None,
                notes_out=sys.stderr,
                db_flag=db_flag(db),
            )
            try:
                settled = await asyncio.wait_for(watch.follow([result.run_id]), timeout)
            except TimeoutError:
                click.echo(
                    f"run {result.run_id} still running after {timeout:g}s; continue it with: "
                    f"floworch resume{db_flag(db)}",
                    err=True,
                )
                return ExitCode.FAILED
            run = settled[result.run_id]
            flow = host.engine.flows.find(flow_id)
            attempts = await store.get_attempts(run.run_id) if as_json else []
    finally:
        await store.close()
    if as_json:
        click.echo(dump_json(run_to_json(run, flow, attempts)))
    else:
        click.echo(summary(run, flow))
        lines = failure_lines(run, flow)
        for line in lines:
            click.echo(line)
        if lines:
            click.echo(f"  tracebacks and attempts: floworch runs show {run.run_id}{db_flag(db)}")
    return exit_code_of(str(run.status))
