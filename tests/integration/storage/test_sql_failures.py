"""Bad input and broken databases give clear floworch errors and lose nothing committed."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from floworch.errors import StorageError, StorageUnavailableError
from floworch.model.statuses import StepStatus
from floworch.storage.factory import open_store
from floworch.storage.memory import MemoryStore
from floworch.storage.records import RunRecord, StepRecord
from floworch.storage.sql.engine import SqlStoreOptions
from floworch.storage.sql.postgres_db import PgConnection
from floworch.storage.sql.sqlite_db import SqliteConnection, SqliteDatabase
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.tx import SqlTx
from floworch.storage.sql.urls import default_database_url, to_driver_url

from .conftest import running_run

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _run(run_id: str, remaining: int = 50) -> RunRecord:
    return running_run(run_id, remaining=remaining, created_at=T0)


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[SqlStore]:
    store = await open_store(sqlite_url)
    assert isinstance(store, SqlStore)
    yield store
    await store.close()


async def test_unreachable_server_names_the_host_but_not_the_password() -> None:
    with pytest.raises(StorageUnavailableError) as caught:
        await open_store("postgresql://floworch:s3cret-pw@127.0.0.1:1/nowhere")
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "nowhere" in message
    assert "s3cret-pw" not in message


@pytest.mark.parametrize(
    "url", ["oracle://scott@db/x", "not a url at all", "sqlite://", "sqlite:///:memory:"]
)
async def test_unsupported_or_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(StorageError):
        await open_store(url)


async def test_memory_url_gives_the_memory_store() -> None:
    assert isinstance(await open_store("memory://"), MemoryStore)
    assert isinstance(await open_store(None), MemoryStore)


def test_urls_map_to_floworch_drivers(tmp_path: Path) -> None:
    assert to_driver_url("sqlite:///x.db").drivername == "sqlite+pysqlite"
    assert to_driver_url("sqlite+aiosqlite:///x.db").drivername == "sqlite+pysqlite"
    assert to_driver_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert to_driver_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert to_driver_url("mssql+aioodbc://@s/db?driver=x").drivername == "mssql+pyodbc"
    default = default_database_url(tmp_path)
    assert default == f"sqlite:///{tmp_path.resolve()}/.floworch/floworch.db"


async def test_the_default_sqlite_directory_is_created(tmp_path: Path) -> None:
    store = await open_store(default_database_url(tmp_path))
    await store.close()
    assert (tmp_path / ".floworch" / "floworch.db").is_file()


async def test_sqlite_pragmas_are_applied(sqlite_store: SqlStore) -> None:
    database = sqlite_store.database
    assert isinstance(database, SqliteDatabase)
    for write in (True, False):
        async with database.connection(write=write) as conn:
            assert isinstance(conn, SqliteConnection)
            assert conn.raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert conn.raw.execute("PRAGMA foreign_keys").fetchone() == (1,)
            assert conn.raw.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL


@pytest.mark.parametrize(
    ("url_suffix", "options", "expected"),
    [
        ("?synchronous=full", None, 2),
        ("", SqlStoreOptions(sqlite_synchronous="full"), 2),
        ("?synchronous=normal", SqlStoreOptions(sqlite_synchronous="full"), 1),
    ],
)
async def test_sqlite_durability_is_chosen_in_the_url_or_the_options(
    sqlite_url: str, url_suffix: str, options: SqlStoreOptions | None, expected: int
) -> None:
    store = await open_store(sqlite_url + url_suffix, options=options)
    try:
        database = store.database  # type: ignore[attr-defined]
        for write in (True, False):
            async with database.connection(write=write) as conn:
                assert conn.raw.execute("PRAGMA synchronous").fetchone() == (expected,)
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
    finally:
        await store.close()


async def test_an_unknown_sqlite_durability_is_refused_in_one_line(sqlite_url: str) -> None:
    with pytest.raises(StorageError, match=r"unknown SQLite synchronous mode 'fsync'.*full") as e:
        await open_store(sqlite_url + "?synchronous=fsync")
    assert "\n" not in str(e.value)


async def test_read_only_sqlite_file_gives_a_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "floworch.db"
    store = await open_store(sqlite_url)
    async with store.transaction() as tx:
        await tx.insert_run(_run("kept"))
    await store.close()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    store = await open_store(read_only)
    try:
        assert (await store.get_run("kept")) is not None
        with pytest.raises(StorageError, match="read-only") as caught:
            async with store.transaction() as tx:
                await tx.insert_run(_run("lost"))
        assert not isinstance(caught.value, StorageUnavailableError)
    finally:
        await store.close()
    store = await open_store(sqlite_url)
    assert await store.get_run("kept") is not None and await store.get_run("lost") is None
    await store.close()


async def test_read_only_unmigrated_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    with pytest.raises(StorageError, match="read-only"):
        await open_store(f"sqlite:///file:{path}?mode=ro&uri=true")


async def test_datetimes_come_back_utc_and_compare_as_instants(sqlite_store: SqlStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    async with sqlite_store.transaction() as tx:
        await tx.insert_run(_run("r"))
        await tx.insert_steps([StepRecord("r", "a", "Work", StepStatus.PENDING, created_at=T0)])
    # 13:00+02:00 is 11:00 UTC: before T0 (12:00 UTC), so the lease has lapsed at T0.
    lease = datetime(2026, 1, 1, 13, tzinfo=plus_two)
    claimed = await sqlite_store.claim_step("r", "a", 1, owner="w", lease_until=lease, now=lease)
    assert claimed.step is not None and claimed.step.lease_expires_at == lease
    assert claimed.step.lease_expires_at.tzinfo is UTC
    expired = await sqlite_store.expired_leases(T0, limit=10)
    assert [s.step_key for s in expired] == ["a"]


async def test_naive_datetimes_are_refused(sqlite_store: SqlStore) -> None:
    with pytest.raises(StorageError, match="naive datetime"):
        async with sqlite_store.transaction() as tx:
            await tx.insert_run(
                _run("r").__class__(**{**_run("r").__dict__, "created_at": datetime(2026, 1, 1)})
            )


@pytest.mark.postgres
async def test_dropped_connection_mid_transaction(pg_store: SqlStore) -> None:
    async with pg_store.transaction() as tx:
        await tx.insert_run(_run("r", remaining=5))
    with pytest.raises(StorageUnavailableError, match="lost the connection"):
        async with pg_store.run_transaction("r") as tx:
            await tx.update_run("r", remaining_delta=-1)
            assert isinstance(tx, SqlTx)
            conn = tx._conn
            assert isinstance(conn, PgConnection)
            pid = conn.raw.info.backend_pid
            with pg_store.engine.connect() as killer:
                assert killer.scalar(select(func.pg_terminate_backend(pid)))
            await tx.update_run("r", remaining_delta=-1)
    # Nothing committed was lost, nothing uncommitted leaked, and the store still works.
    run = await pg_store.get_run("r")
    assert run is not None and run.remaining == 5
    async with pg_store.run_transaction("r") as tx:
        await tx.update_run("r", remaining_delta=-1)
    run = await pg_store.get_run("r")
    assert run is not None and run.remaining == 4
