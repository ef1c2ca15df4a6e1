"""``floworch runs list`` and ``floworch runs show``: read stored runs (nothing is changed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from floworch.cli.inputs import dump_json
from floworch.cli.render import handled_failures, run_to_json, show_lines, status_text
from floworch.cli.session import Session, db_option, run_session

if TYPE_CHECKING:
    from floworch.model import FlowDefinition

DEFAULT_DATABASE = ".floworch/floworch.db"
"""The embedded default database under the working directory (as ``default_database_url``)."""
RUN_STATUSES = ("Running", "Succeeded", "Failed", "Cancelled", "TimedOut", "Skipped")


@click.group("runs")
def runs_group() -> None:
    """List and show stored runs."""


@runs_group.command("list")
@click.option("--flow", "flow_id", help="Only runs of this flow.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(RUN_STATUSES),
    help="Only runs in this status (repeatable).",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_runs(
    flow_id: str | None, statuses: tuple[str, ...], limit: int, db: str | None, as_json: bool
) -> None:
    """List runs, newest first."""

    async def work(session: Session) -> list[dict[str, Any]]:
        from floworch.model.statuses import RunStatus
        from floworch.storage.records import RunQuery

        store = session.engine.store
        query = RunQuery(
            flow_id=flow_id, statuses=frozenset(RunStatus(s) for s in statuses), limit=limit
        )
        rows = []
        for r in await store.list_runs(query):
            steps = {s.step_key: str(s.status) for s in await store.get_steps(r.run_id)}
            rows.append(
                {
                    "runId": r.run_id,
                    "flowId": r.flow_id,
                    "status": str(r.status),
                    "createdAt": r.created_at.isoformat(),
                    "completedAt": r.completed_at.isoformat() if r.completed_at else None,
                    "handledFailures": handled_failures(steps, str(r.status)),
                }
            )
        return rows

    runs = _listed_from_view(db, flow_id, statuses, limit)
    if runs is None:
        runs = run_session(db, work, read_only=True)
    if as_json:
        click.echo(dump_json(runs))
        return
    if not runs:
        click.echo("no runs")
    for r in runs:
        status = status_text(r["status"], r["handledFailures"])
        created = r["createdAt"][:19].replace("T", " ")
        click.echo(f"{r['runId']}  {r['flowId']:<24} {status:<32} {created}")


def _listed_from_view(
    db: str | None, flow_id: str | None, statuses: tuple[str, ...], limit: int
) -> list[dict[str, Any]] | None:
    """The run list read with the standard library only, on a current SQLite file (the fast
    path: no SQLAlchemy import); None when the full store must answer."""
    from pathlib import Path

    from floworch.cli.settings import Settings
    from floworch.storage.sqlite_view import open_view, sqlite_path_of

    settings = Settings.from_env()
    url = db or settings.db_url
    path = sqlite_path_of(url) if url else Path.cwd() / DEFAULT_DATABASE
    view = open_view(path) if path is not None else None
    if view is None:
        return None
    try:
        found = view.list_runs(flow_id=flow_id, statuses=statuses, limit=limit)
    except Exception:  # anything unexpected: the full store answers (and explains)
        return None
    finally:
        view.close()
    return [
        {
            "runId": r.run_id,
            "flowId": r.flow_id,
            "status": r.status,
            "createdAt": r.created_at.isoformat(),
            "completedAt": r.completed_at.isoformat() if r.completed_at else None,
            "handledFailures": handled_failures(r.step_statuses, r.status),
        }
        for r in found
    ]


@runs_group.command("show")
@click.argument("run_id")
@db_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (the shape of `floworch run --json`)."
)
def show_run(run_id: str, db: str | None, as_json: bool) -> None:
    """Show one run: each step's times, every attempt, and the traceback of failures."""

    async def work(session: Session) -> tuple[Any, Any, Any]:
        engine = session.engine
        run = await engine.get_run(run_id)
        attempts = await engine.store.get_attempts(run_id)
        flow: FlowDefinition | None = engine.flows.find(run.flow_id)
        return run, flow, attempts

    run, flow, attempts = run_session(db, work, read_only=True)
    if as_json:
        click.echo(dump_json(run_to_json(run, flow, attempts)))
        return
    for line in show_lines(run, flow, attempts):
        click.echo(line)
