"""The database and engine behind a CLI command that runs no steps itself.

``runs``, ``signal``, ``cancel``, ``retry``, ``rerun`` and ``trigger`` open the database, build an
engine from the flows stored in it (no handlers needed) and act. The step messages they make
ready stay in the dispatch ledger for whatever runtime serves the database (a running
``floworch run``/``worker``, or the next ``floworch resume``), or go straight to Service Bus with
``FLOWORCH_RUNTIME=servicebus``. Which of the two happened is reported in :class:`Queued`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from floworch.cli.failures import mask_secrets
from floworch.cli.settings import Settings
from floworch.errors import FlowError, TransportError

if TYPE_CHECKING:
    from floworch.engine.engine import Engine
    from floworch.engine.envelope import StepEnvelope
    from floworch.engine.ports import Dispatcher
    from floworch.storage.port import Store

T = TypeVar("T")

db_option = click.option(
    "--db",
    metavar="URL",
    help="Database URL (default: FLOWORCH_DB_URL, else .floworch/floworch.db here).",
)


class NoRuntimeHere(TransportError):
    """Raised by :class:`LedgerDispatcher`: this process runs no steps, so the ledger keeps the
    message for a runtime that serves the database."""


class LedgerDispatcher:
    """A dispatcher for processes that run no steps: every message stays unsent in the ledger
    (a running ``floworch run`` or worker re-sends it within about a second; ``floworch resume``
    at start-up) and is remembered in :attr:`queued` so the command can say so."""

    def __init__(self) -> None:
        self.queued: list[StepEnvelope] = []

    async def enqueue(self, envelopes: Sequence[StepEnvelope]) -> None:
        self.queued.extend(envelopes)
        raise NoRuntimeHere("no runtime in this process")

    async def schedule(self, envelope: StepEnvelope, at: datetime) -> None:
        self.queued.append(envelope)
        raise NoRuntimeHere("no runtime in this process")


class _HideNoRuntimeHere(logging.Filter):
    """Drops the engine's "sending failed; the reconciler will retry" warning for messages the
    :class:`LedgerDispatcher` kept on purpose: the command explains what happens instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, NoRuntimeHere) for arg in args)


@dataclass
class Session:
    """What a control command works with."""

    engine: Engine
    url: str
    ledger: LedgerDispatcher | None
    servicebus: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def queued_steps(self) -> list[str]:
        """Step keys whose messages this command left in the ledger."""
        return [env.step_key for env in self.ledger.queued] if self.ledger else []


def database_url(db: str | None) -> str:
    """The database a command uses: ``--db``, else ``FLOWORCH_DB_URL``, else SQLite here.

    Raises:
        click.BadParameter: the URL cannot be parsed or names an unsupported database (the
            message never shows its password).
    """
    from floworch.errors import StorageError
    from floworch.storage.sql.urls import is_memory_url, to_async_url

    url = Settings.from_env().database_url(db)
    if not is_memory_url(url):
        try:
            to_async_url(url)
        except StorageError as exc:
            hint = "--db" if db else "FLOWORCH_DB_URL"
            raise click.BadParameter(mask_secrets(str(exc)), param_hint=hint) from None
    return url


def describe_database(url: str) -> str:
    """Where state lives, for messages (no password)."""
    from floworch.storage.sql.urls import is_memory_url

    if is_memory_url(url):
        return "memory (nothing is kept after this process)"
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            return parsed.database
        return mask_secrets(parsed.render_as_string(hide_password=True))
    except Exception:
        return mask_secrets(url)


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None for other databases)."""
    from floworch.storage.sql.urls import is_memory_url, sqlite_file, to_async_url

    if is_memory_url(url):
        return None
    path = sqlite_file(to_async_url(url))
    return str(path) if path is not None else None


async def open_database(url: str, *, must_exist: bool = False, read_only: bool = False) -> Store:
    """Opens the store (migrating it to the current schema, unless ``read_only``).

    Args:
        must_exist: refuse a SQLite file that does not exist instead of creating it (commands
            that only read or steer runs).
        read_only: open without migrating or altering anything (commands that only read).

    Raises:
        click.UsageError: ``must_exist`` and there is no such SQLite file.
    """
    import asyncio
    from pathlib import Path

    from floworch.storage.factory import open_store

    path = sqlite_path(url)
    if must_exist and path is not None and not await asyncio.to_thread(Path(path).is_file):
        raise click.UsageError(
            f"no floworch database at {path}: nothing has run here yet; point --db (or "
            "FLOWORCH_DB_URL) at the database your runs use"
        )
    return await open_store(url, read_only=read_only)


async def stored_flows_engine(store: Store, dispatcher: Dispatcher) -> tuple[Engine, list[str]]:
    """An engine over the flows stored in the database (no handlers needed), and a note for
    each stored flow this version cannot read."""
    from floworch.engine.engine import Engine
    from floworch.engine.flows import FlowRegistry
    from floworch.model import load_manifest

    flows = FlowRegistry()
    notes: list[str] = []
    for record in await store.list_flows():
        try:
            flows.add(load_manifest(record.manifest))
        except FlowError as exc:
            notes.append(f"flow {record.flow_id!r} stored in the database cannot be read: {exc}")
    engine = Engine(store=store, dispatcher=dispatcher, flows=flows, check_handlers=False)
    return engine, notes


def run_session(
    db: str | None,
    action: Callable[[Session], Awaitable[T]],
    *,
    must_exist: bool = True,
    read_only: bool = False,
) -> T:
    """Runs ``action`` with a :class:`Session` on the database; runs no steps.

    With ``FLOWORCH_RUNTIME=servicebus`` and a namespace configured, the step messages a command
    makes ready go straight to Service Bus, so a worker picks them up at once; otherwise they
    wait in the ledger for a runtime that serves the database.
    """
    settings = Settings.from_env()
    url = database_url(db)
    hide = _HideNoRuntimeHere()
    engine_log = logging.getLogger("floworch.engine")

    async def main() -> T:
        store = await open_database(url, must_exist=must_exist, read_only=read_only)
        handle: Any = None
        closer: Any = None
        try:
            dispatcher: Dispatcher
            ledger: LedgerDispatcher | None = None
            if settings.runtime == "servicebus" and (
                settings.servicebus_connection or settings.servicebus_namespace
            ):
                from floworch.runtime.servicebus.config import ServiceBusConnection
                from floworch.runtime.servicebus.connection import open_client
                from floworch.runtime.servicebus.dispatcher import ServiceBusDispatcher

                try:
                    connection = ServiceBusConnection(
                        connection_string=settings.servicebus_connection,
                        namespace=None
                        if settings.servicebus_connection
                        else settings.servicebus_namespace,
                    )
                    handle = open_client(connection)
                except ValueError as exc:
                    raise click.BadParameter(
                        mask_secrets(str(exc)), param_hint="FLOWORCH_SERVICEBUS_CONNECTION"
                    ) from None
                sb = ServiceBusDispatcher(handle.client, topic=settings.steps_topic)
                closer = getattr(sb, "close", None)
                dispatcher = sb
            else:
                ledger = LedgerDispatcher()
                dispatcher = ledger
            engine, notes = await stored_flows_engine(store, dispatcher)
            session = Session(engine, url, ledger, servicebus=ledger is None, notes=notes)
            return await action(session)
        finally:
            if closer is not None:
                await closer()
            if handle is not None:
                await handle.close()
            await store.close()

    from floworch.hosting.runner import run_main

    engine_log.addFilter(hide)
    try:
        return run_main(main())
    finally:
        engine_log.removeFilter(hide)


def queued_note(session: Session, run_id: str) -> str | None:
    """What will run the steps this command made ready (None when there are none)."""
    steps = sorted(set(session.queued_steps))
    if session.servicebus or not steps:
        return None
    names = ", ".join(steps)
    return (
        f"queued {names} of run {run_id}: a `floworch run` or `floworch worker` serving this "
        f"database runs it within about a second; if none is running, run `floworch resume` "
        f"(or repeat this command with --wait)"
    )
