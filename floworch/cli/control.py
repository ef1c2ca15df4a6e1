"""Steering stored runs: ``signal``, ``cancel``, ``retry`` and ``rerun``.

They need no handlers: the steps they make ready are run by whatever serves the database (a
running ``floworch run`` or ``worker``, or the next ``floworch resume``), and each command says
so. With ``--wait`` the command runs them itself, in this process, until the run ends (the
handlers then come from ``--handlers`` or ``FLOWORCH_FLOWS``).
"""

from __future__ import annotations

import difflib
import sys
from typing import TYPE_CHECKING, Any, TypeVar

import click

from floworch.cli.failures import ExitCode
from floworch.cli.inputs import check_signal_name, parse_json_option
from floworch.cli.local import handlers_option
from floworch.cli.session import Session, db_option, queued_note, run_session

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from floworch.engine.engine import Engine
    from floworch.model import FlowDefinition

T = TypeVar("T")

wait_option = click.option(
    "--wait",
    is_flag=True,
    help="Run the steps this makes ready here, until the run ends or waits for a signal "
    "(handlers from --handlers or FLOWORCH_FLOWS).",
)


def with_engine(
    db: str | None, action: Callable[[Engine], Awaitable[T]], *, read_only: bool = False
) -> T:
    """Runs ``action`` with an engine over the flows stored in the database (no step runs
    here; see :func:`floworch.cli.session.run_session`). ``read_only`` commands need the
    database to exist and change nothing in it."""
    return run_session(
        db, lambda session: action(session.engine), must_exist=read_only, read_only=read_only
    )


def signal_names(flow: FlowDefinition) -> set[str] | None:
    """The signal names the flow's WaitForSignal steps wait for; None when one of them is an
    expression (then any name might be awaited)."""
    names: set[str] = set()
    scopes = [flow.root.steps]
    while scopes:
        for node in scopes.pop().values():
            if node.type == "WaitForSignal":
                raw = node.spec.inputs
                inputs: dict[str, Any] = raw if isinstance(raw, dict) else {}
                name = inputs.get("signalName")
                if not isinstance(name, str) or name.startswith("@"):
                    return None
                names.add(name)
            if node.body is not None:
                scopes.append(node.body.steps)
    return names


def prepare_wait(wait: bool, handlers: tuple[str, ...]) -> None:
    if not wait:
        if handlers:
            raise click.UsageError("--handlers is only used with --wait")
        return
    from floworch.cli.local import load_handler_sources

    _, sources = load_handler_sources(handlers)
    if not sources:
        raise click.UsageError(
            "--wait runs the steps here and needs their handlers: give --handlers "
            "FILE_OR_MODULE or set FLOWORCH_FLOWS"
        )


async def wait_here(session: Session, run_id: str) -> int:
    """Runs the run's ready steps in this process until it ends or parks on a signal."""
    from floworch.cli.local import embedded_host, missing_handlers, send_everything_pending
    from floworch.cli.progress import RunWatch, parked_on_signals
    from floworch.cli.render import failure_lines, summary
    from floworch.cli.run import exit_code_of
    from floworch.engine.flows import FlowRegistry

    engine = session.engine
    run = await engine.get_run(run_id)
    missing = missing_handlers(engine.flows, run.flow_id)
    if missing:
        raise click.UsageError(
            f"--wait: no handler for step type(s) {', '.join(missing)} of flow {run.flow_id}; "
            "give --handlers FILE_OR_MODULE or set FLOWORCH_FLOWS"
        )
    flow = engine.flows.get(run.flow_id)
    async with embedded_host(engine.store, FlowRegistry([flow])) as host:
        await send_everything_pending(host)
        watch = RunWatch(
            host.engine,
            steps_out=sys.stdout if sys.stdout.isatty() else None,
            notes_out=sys.stderr,
            stop_when_parked=True,
        )
        final = (await watch.follow([run_id]))[run_id]
    click.echo(summary(final, flow))
    for line in failure_lines(final, flow):
        click.echo(line)
    if not final.done and parked_on_signals(final):
        return ExitCode.OK
    return exit_code_of(str(final.status))


def _note(session: Session, run_id: str) -> None:
    note = queued_note(session, run_id)
    if note:
        click.echo(note, err=True)


@click.command("signal")
@click.argument("run_id")
@click.argument("name", callback=check_signal_name)
@click.option("--payload", help="Signal payload: JSON text or @file.json.")
@click.option(
    "--force",
    is_flag=True,
    help="Buffer the signal even though no step of the run's flow waits for that name.",
)
@db_option
@wait_option
@handlers_option
def signal_command(
    run_id: str,
    name: str,
    payload: str | None,
    force: bool,
    db: str | None,
    wait: bool,
    handlers: tuple[str, ...],
) -> None:
    """Deliver a signal to a waiting run.

    Prints Delivered (a waiting step resumed) or Buffered (no step waits yet; the first step to
    wait for NAME gets it). A NAME no WaitForSignal step of the flow waits for is refused
    (exit 2, with the names it knows) unless --force is given. Exit 1 when the run has ended.
    """
    body = parse_json_option(payload, "--payload")
    prepare_wait(wait, handlers)

    async def work(session: Session) -> int:
        engine = session.engine
        run = await engine.get_run(run_id)  # RunNotFoundError: exit 2
        if run.done:
            click.echo(
                f"error: run {run_id} has ended ({run.status}); a signal only reaches a "
                "running run",
                err=True,
            )
            return ExitCode.FAILED
        flow = engine.flows.find(run.flow_id)
        known = signal_names(flow) if flow is not None else None
        if known is not None and name not in known and not force:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            names = ", ".join(repr(n) for n in sorted(known)) or "none"
            raise click.UsageError(
                f"no step of flow {run.flow_id!r} waits for signal {name!r}{hint}; it waits for: "
                f"{names}. Nothing was delivered (--force buffers it anyway)"
            )
        outcome = await engine.deliver_signal(run_id, name, body)
        click.echo(outcome)
        if outcome == "NotFound":
            click.echo(f"error: run {run_id} ended before the signal arrived", err=True)
            return ExitCode.FAILED
        if outcome == "Buffered":
            click.echo(
                f"no step of run {run_id} waits for {name!r} yet; the first to wait for it gets it",
                err=True,
            )
        if wait:
            return await wait_here(session, run_id)
        _note(session, run_id)
        return ExitCode.OK if outcome in ("Delivered", "Buffered") else ExitCode.FAILED

    sys.exit(run_session(db, work))


@click.command("cancel")
@click.argument("run_id")
@click.option("--reason", default="cancelled from the command line", show_default=True)
@db_option
def cancel_command(run_id: str, reason: str, db: str | None) -> None:
    """Cancel a running run.

    Exit 0 when it was cancelled, 1 when it had already ended, 2 for an unknown run.
    """

    async def work(session: Session) -> int:
        run = await session.engine.get_run(run_id)
        if run.done or not await session.engine.cancel_run(run_id, reason):
            current = await session.engine.get_run(run_id)
            click.echo(f"error: run {run_id} had already ended ({current.status})", err=True)
            return ExitCode.FAILED
        click.echo("Cancelled")
        return ExitCode.OK

    sys.exit(run_session(db, work))


@click.command("retry")
@click.argument("run_id")
@click.argument("step")
@db_option
@wait_option
@handlers_option
def retry_command(
    run_id: str, step: str, db: str | None, wait: bool, handlers: tuple[str, ...]
) -> None:
    """Retry a failed step of a run.

    The step (and the steps skipped because it failed) run again as a new attempt, executed by
    a running `floworch run`/`worker`, the next `floworch resume`, or here with --wait.
    """
    prepare_wait(wait, handlers)

    async def work(session: Session) -> int:
        await session.engine.retry_step(run_id, step)
        click.echo(f"step {step} of run {run_id} queued for a new attempt")
        if wait:
            return await wait_here(session, run_id)
        _note(session, run_id)
        return ExitCode.OK

    sys.exit(run_session(db, work))


@click.command("rerun")
@click.argument("run_id")
@db_option
@wait_option
@handlers_option
def rerun_command(run_id: str, db: str | None, wait: bool, handlers: tuple[str, ...]) -> None:
    """Start a run again from its data.

    Prints the new run's id. Its steps are executed by a running `floworch run`/`worker`, the
    next `floworch resume`, or here with --wait.
    """
    prepare_wait(wait, handlers)

    async def work(session: Session) -> int:
        result: Any = await session.engine.rerun(run_id)
        if result.run_id is None:
            click.echo("error: the flow is disabled; no run was started", err=True)
            return ExitCode.FAILED
        click.echo(result.run_id)
        if wait:
            return await wait_here(session, result.run_id)
        _note(session, result.run_id)
        return ExitCode.OK

    sys.exit(run_session(db, work))
