"""``floworch db``: migrate, inspect and prune the SQL database.

The lead wires :data:`db_group` into the main ``floworch`` command. ``--db`` defaults to
``FLOWORCH_DB_URL``, else the SQLite file under ``.floworch/`` in the working directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import click

from floworch.errors import FlowError
from floworch.storage.sql import migrate
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import (
    default_database_url,
    is_memory_url,
    sqlite_file,
    to_async_url,
)

T = TypeVar("T")

db_option = click.option(
    "--db",
    "db_url",
    envvar="FLOWORCH_DB_URL",
    default=None,
    metavar="URL",
    help="Database URL (default: $FLOWORCH_DB_URL, else .floworch/floworch.db here).",
)


def resolve_db_url(db_url: str | None) -> str:
    """The URL to use: the option/env value, else the default SQLite file under the cwd."""
    url = db_url or default_database_url(Path.cwd())
    if is_memory_url(url):
        raise click.UsageError("`floworch db` needs a database URL, not memory://")
    return url


def _run(
    work: Callable[[SqlStore], Awaitable[T]], db_url: str | None, *, read_only: bool = False
) -> T:
    url = to_async_url(resolve_db_url(db_url))
    path = sqlite_file(url)
    if read_only and path is not None and not path.is_file():
        raise click.ClickException(
            f"no floworch database at {path} (this command never creates one); "
            "check --db or FLOWORCH_DB_URL"
        )

    async def main() -> T:
        store = SqlStore.from_url(url, read_only=read_only)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except FlowError as exc:
        raise click.ClickException(str(exc)) from exc


def _where(store: SqlStore) -> str:
    return store.url.render_as_string(hide_password=True)


@click.group("db")
def db_group() -> None:
    """Manage the SQL database: schema migrations and retention."""


@db_group.command("upgrade")
@db_option
def upgrade_command(db_url: str | None) -> None:
    """Apply every pending schema migration."""

    async def work(store: SqlStore) -> str:
        before = await migrate.current_revision(store.engine)
        after = await migrate.upgrade(store.engine)
        return f"{_where(store)}: {before or '(empty)'} -> {after}"

    click.echo(_run(work, db_url))


@db_group.command("current")
@db_option
def current_command(db_url: str | None) -> None:
    """Show the database's schema revision and the newest one this floworch knows."""

    async def work(store: SqlStore) -> str:
        current = await migrate.current_revision(store.engine)
        head = migrate.head_revision()
        state = "up to date" if current == head else "run `floworch db upgrade`"
        return f"{_where(store)}: revision {current or '(none)'}, newest {head} ({state})"

    path = sqlite_file(to_async_url(resolve_db_url(db_url)))
    if path is not None and not path.is_file():
        # Reading creates nothing: say what is missing instead of making an empty file.
        head = migrate.head_revision()
        click.echo(f"{path}: no database yet, newest {head} (run `floworch db upgrade`)")
        return
    click.echo(_run(work, db_url, read_only=True))


@db_group.command("prune")
@db_option
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    required=True,
    metavar="DAYS",
    help="Delete finished runs completed more than DAYS days ago.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
def prune_command(db_url: str | None, days: float, batch_size: int) -> None:
    """Delete old finished runs with their steps, attempts, ledger rows, signals and events."""
    cut_off = datetime.now(UTC) - timedelta(days=days)

    async def work(store: SqlStore) -> int:
        await migrate.check_schema(store.engine)
        total = 0
        batch = 1
        while True:
            deleted = await store.prune_runs(cut_off, batch_size=batch_size)
            if deleted == 0:
                return total
            total += deleted
            click.echo(f"batch {batch}: deleted {deleted} runs ({total} so far)")
            batch += 1

    total = _run(work, db_url)
    click.echo(f"pruned {total} runs completed before {cut_off.isoformat(timespec='seconds')}")
