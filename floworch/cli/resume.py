"""``floworch resume``: continue every unfinished run of a database in this process."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from floworch.cli.failures import ExitCode
from floworch.cli.local import handlers_option
from floworch.cli.logs import configure_logging, log_level_option
from floworch.cli.run import db_flag, exit_code_of
from floworch.cli.session import database_url, db_option, describe_database

if TYPE_CHECKING:
    from floworch.engine.views import RunState
    from floworch.model import FlowManifest


@click.command("resume")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@handlers_option
@db_option
@click.option("--run", "run_ids", multiple=True, help="Only this run (repeatable).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop after this many seconds even if runs are still going (exit 1).",
)
@log_level_option
def resume_command(
    paths: tuple[str, ...],
    handlers: tuple[str, ...],
    db: str | None,
    run_ids: tuple[str, ...],
    timeout: float | None,
    log_level: str,
) -> None:
    """Continue unfinished runs after a crash.

    Without PATHS, every unfinished run of the database whose flow and handlers can be loaded
    is continued: flows come from the manifests the database stores, handlers from --handlers
    or FLOWORCH_FLOWS. With PATHS, only runs of the flows there (and their handlers.py).
    Runs are continued together; each prints a line when it ends. A run that can only go on
    once a signal arrives is reported with the command that delivers it and is left waiting.
    Runs whose flow or handlers cannot be loaded are skipped, saying why.

    Exit code: 0 when every resumed run Succeeded, was Skipped or waits for a signal; 1 when
    one Failed, was Cancelled or TimedOut, or --timeout passed; 2 for invalid input.
    """
    url = database_url(db)
    path_flows: list[FlowManifest] | None = None
    extra: list[FlowManifest] = []
    if paths:
        from floworch.cli.loading import load_flows

        path_flows = list(load_flows(paths, handlers).manifests)
    else:
        from floworch.cli.local import load_handler_sources

        extra, _ = load_handler_sources(handlers)
    configure_logging(log_level)
    from floworch.hosting.runner import run_main

    try:
        code = run_main(_resume(url, db, path_flows, extra, run_ids, timeout))
    except KeyboardInterrupt:
        click.echo(
            f"interrupted: unfinished runs stay Running; continue them with: "
            f"floworch resume{db_flag(db)}",
            err=True,
        )
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(code)


async def _resume(
    url: str,
    db: str | None,
    path_flows: list[FlowManifest] | None,
    extra_flows: list[FlowManifest],
    run_ids: tuple[str, ...],
    timeout: float | None,
) -> int:
    from floworch.cli.local import (
        choose_runs,
        embedded_host,
        send_everything_pending,
        unfinished_runs,
    )
    from floworch.cli.progress import RunWatch, parked_on_signals
    from floworch.cli.render import summary
    from floworch.cli.session import open_database, stored_flows_engine
    from floworch.engine.flows import FlowRegistry

    store = await open_database(url, must_exist=True)
    try:
        flows = FlowRegistry()
        if path_flows is None:
            from floworch.cli.session import LedgerDispatcher

            stored, notes = await stored_flows_engine(store, LedgerDispatcher())
            for note in notes:
                click.echo(f"warning: {note}", err=True)
            for flow in stored.flows:
                flows.add(flow)
        for manifest in [*(path_flows or []), *extra_flows]:
            flows.add(manifest)
        only = {m.id for m in path_flows} if path_flows is not None else None
        unfinished = await unfinished_runs(store)
        missing = [r for r in run_ids if r not in {u.run_id for u in unfinished}]
        for run_id in missing:
            click.echo(f"warning: run {run_id} is not unfinished (or does not exist)", err=True)
        chosen = choose_runs(unfinished, flows, only_flows=only, run_ids=run_ids)
        for reason in chosen.skipped:
            click.echo(f"skipping {reason}", err=True)
        ids = [r.run_id for r in chosen.runs]
        runnable = FlowRegistry([flows.get(f) for f in sorted({r.flow_id for r in chosen.runs})])
        click.echo(f"resuming {len(ids)} unfinished run(s) from {describe_database(url)}")
        if not ids:
            return ExitCode.OK
        failed = 0
        parked = 0

        def settled(run: RunState) -> None:
            nonlocal failed, parked
            if run.done:
                click.echo(summary(run, runnable.find(run.flow_id)))
                failed += exit_code_of(str(run.status)) != ExitCode.OK
            elif parked_on_signals(run):
                parked += 1
                click.echo(f"run {run.run_id} of {run.flow_id}: waiting for a signal (above)")

        async with embedded_host(store, runnable) as host:
            await send_everything_pending(host)
            watch = RunWatch(
                host.engine,
                steps_out=None,
                notes_out=sys.stdout,
                db_flag=db_flag(db),
                stop_when_parked=True,
                on_settled=settled,
                interval=0.2,
            )
            try:
                await asyncio.wait_for(watch.follow(ids), timeout)
            except TimeoutError:
                click.echo(
                    f"stopped after {timeout:g}s with runs still going; continue them with: "
                    f"floworch resume{db_flag(db)}",
                    err=True,
                )
                return ExitCode.FAILED
    finally:
        await store.close()
    done = len(ids) - parked
    click.echo(
        f"resumed {len(ids)} run(s): {done - failed} ended well, {failed} did not, "
        f"{parked} wait for a signal"
    )
    return ExitCode.FAILED if failed else ExitCode.OK
