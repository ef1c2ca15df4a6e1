"""Commands that inspect or steer runs in a database: runs list/show, signal, cancel, retry,
rerun. They need no handlers: a running ``floworch run``/``worker`` (or the next ``resume``)
executes whatever they make ready."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import click

from floworch.cli.runs import parse_body
from floworch.cli.settings import Settings
from floworch.engine.engine import Engine
from floworch.engine.envelope import StepEnvelope
from floworch.engine.flows import FlowRegistry
from floworch.engine.ports import Dispatcher
from floworch.errors import FlowError, TransportError
from floworch.model import load_manifest
from floworch.model.statuses import RunStatus
from floworch.storage.factory import open_store
from floworch.storage.port import Store
from floworch.storage.records import RunQuery

T = TypeVar("T")


class DeferredDispatcher:
    """A dispatcher for processes that run no steps: messages stay unsent in the ledger, and
    the worker's reconciler sends them (within about a second for the embedded host)."""

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        raise TransportError("no runtime in this process; the worker will send it")

    async def schedule(self, envelope: StepEnvelope, at: Any) -> None:
        raise TransportError("no runtime in this process; the worker will send it")


async def _control_engine(store: Store, dispatcher: Dispatcher | None = None) -> Engine:
    flows = FlowRegistry()
    for record in await store.list_flows():
        try:
            flows.add(load_manifest(record.manifest))
        except FlowError:
            continue  # a stored flow this version cannot read; its runs cannot be steered here
    return Engine(
        store=store,
        dispatcher=dispatcher or DeferredDispatcher(),
        flows=flows,
        check_handlers=False,
    )


def with_engine(db: str | None, action: Callable[[Engine], Awaitable[T]]) -> T:
    """Runs ``action`` with an engine on the database and no step execution.

    With ``FLOWORCH_RUNTIME=servicebus`` and a namespace configured, the step messages a command
    makes ready (a signal's resumed step, a retry, a new run) go straight to Service Bus, so a
    worker picks them up at once; otherwise they wait in the ledger for a worker's reconciler.
    """
    settings = Settings.from_env()

    async def main() -> T:
        store = await open_store(settings.database_url(db))
        handle = None
        try:
            dispatcher: Dispatcher | None = None
            if settings.runtime == "servicebus" and (
                settings.servicebus_connection or settings.servicebus_namespace
            ):
                from floworch.runtime.servicebus.config import ServiceBusConnection
                from floworch.runtime.servicebus.connection import open_client
                from floworch.runtime.servicebus.dispatcher import ServiceBusDispatcher

                handle = open_client(
                    ServiceBusConnection(
                        connection_string=settings.servicebus_connection,
                        namespace=None
                        if settings.servicebus_connection
                        else settings.servicebus_namespace,
                    )
                )
                dispatcher = ServiceBusDispatcher(handle.client, topic=settings.steps_topic)
            try:
                return await action(await _control_engine(store, dispatcher))
            finally:
                close = getattr(dispatcher, "close", None)
                if close is not None:
                    await close()
                if handle is not None:
                    await handle.close()
        finally:
            await store.close()

    return asyncio.run(main())


_db_option = click.option(
    "--db", help="Database URL (default: FLOWORCH_DB_URL, else .floworch/floworch.db)."
)


@click.group("runs")
def runs_group() -> None:
    """Inspect runs stored in a database."""


@runs_group.command("list")
@click.option("--flow", "flow_id", help="Only runs of this flow.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in RunStatus]),
    help="Only runs in this status.",
)
@click.option("--limit", type=int, default=50, show_default=True)
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_runs(
    flow_id: str | None, statuses: tuple[str, ...], limit: int, db: str | None, as_json: bool
) -> None:
    """List runs, newest first."""
    query = RunQuery(
        flow_id=flow_id, statuses=frozenset(RunStatus(s) for s in statuses), limit=limit
    )
    runs = with_engine(db, lambda engine: engine.store.list_runs(query))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "runId": r.run_id,
                        "flowId": r.flow_id,
                        "status": str(r.status),
                        "createdAt": r.created_at.isoformat(),
                        "completedAt": r.completed_at.isoformat() if r.completed_at else None,
                    }
                    for r in runs
                ],
                indent=2,
            )
        )
        return
    if not runs:
        click.echo("no runs")
    for r in runs:
        click.echo(f"{r.run_id}  {r.flow_id:<24} {r.status!s:<10} {r.created_at:%Y-%m-%d %H:%M:%S}")


@runs_group.command("show")
@click.argument("run_id")
@_db_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (the shape of `floworch run --json`)."
)
def show_run(run_id: str, db: str | None, as_json: bool) -> None:
    """Show one run with its steps."""
    run = with_engine(db, lambda engine: engine.get_run(run_id))
    if as_json:
        click.echo(json.dumps(run.to_dict(), indent=2, default=str))
        return
    click.echo(f"run {run.run_id} of {run.flow_id}: {run.status}")
    for key, step in run.steps.items():
        extra = ""
        if step.error:
            message = step.error.get("message") if isinstance(step.error, dict) else step.error
            extra = f"  error: {message}"
        elif step.skip_reason:
            extra = f"  ({step.skip_reason})"
        click.echo(f"  {key:<30} {step.status!s:<10} attempts={step.attempts}{extra}")


@click.command("signal")
@click.argument("run_id")
@click.argument("name")
@click.option("--payload", help="Signal payload: JSON text or @file.json.")
@_db_option
def signal_command(run_id: str, name: str, payload: str | None, db: str | None) -> None:
    """Deliver a signal to a run's WaitForSignal step."""
    body = parse_body(payload)
    outcome = with_engine(db, lambda engine: engine.deliver_signal(run_id, name, body))
    click.echo(outcome)
    sys.exit(0 if outcome in ("Delivered", "Buffered") else 1)


@click.command("cancel")
@click.argument("run_id")
@click.option("--reason", default="cancelled from the command line", show_default=True)
@_db_option
def cancel_command(run_id: str, reason: str, db: str | None) -> None:
    """Cancel a running run."""
    done = with_engine(db, lambda engine: engine.cancel_run(run_id, reason))
    click.echo("Cancelled" if done else "the run had already finished")
    sys.exit(0 if done else 1)


@click.command("retry")
@click.argument("run_id")
@click.argument("step")
@_db_option
def retry_command(run_id: str, step: str, db: str | None) -> None:
    """Retry a failed step of a run (a running worker or `floworch resume` executes it)."""
    with_engine(db, lambda engine: engine.retry_step(run_id, step))
    click.echo(f"step {step} of run {run_id} queued for a new attempt")


@click.command("rerun")
@click.argument("run_id")
@_db_option
def rerun_command(run_id: str, db: str | None) -> None:
    """Start a new run from a run's stored trigger data."""
    result = with_engine(db, lambda engine: engine.rerun(run_id))
    click.echo(result.run_id or "the flow is disabled")
