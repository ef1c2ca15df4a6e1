"""The stdlib view of a SQLite file behind the fast ``floworch runs list`` answers what the SQL
store answers, knows the newest migration without Alembic, and never creates or alters a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from floworch.cli.render import handled_failures
from floworch.engine.handlers import HandlerRegistry
from floworch.hosting.embedded import EmbeddedHost
from floworch.model import load_manifest
from floworch.storage.factory import open_store
from floworch.storage.records import RunQuery
from floworch.storage.sql import migrate
from floworch.storage.sqlite_view import head_revision, open_view, sqlite_path_of


def _flow(flow_id: str, steps: dict[str, Any]) -> Any:
    return load_manifest({"id": flow_id, "version": "1", "steps": steps})


async def test_the_view_lists_what_the_store_lists(tmp_path: Path) -> None:
    reg = HandlerRegistry()

    @reg.handler("Ok")
    def ok(inputs: Any) -> Any:
        return inputs

    @reg.handler("Bad")
    def bad(inputs: Any) -> Any:
        raise ValueError("no")

    flows = [
        _flow("good", {"a": {"type": "Ok"}}),
        _flow("bad", {"a": {"type": "Bad"}}),
        _flow(
            "handled",
            {"a": {"type": "Bad"}, "b": {"type": "Ok", "runAfter": {"a": ["Failed"]}}},
        ),
    ]
    db = tmp_path / "floworch.db"
    store = await open_store(f"sqlite:///{db}")
    try:
        async with EmbeddedHost(store=store, flows=flows, handlers=reg) as host:
            ids = [await host.run_flow(f) for f in ("good", "bad", "handled", "good", "bad")]
            for run_id in ids:
                assert run_id is not None
                await host.engine.wait_for_run(run_id)
        queries = [
            RunQuery(),
            RunQuery(limit=2),
            RunQuery(flow_id="good"),
            RunQuery(statuses=frozenset({"Failed"})),  # type: ignore[arg-type]
            RunQuery(flow_id="bad", statuses=frozenset({"Failed", "Succeeded"})),  # type: ignore[arg-type]
        ]
        view = open_view(db)
        assert view is not None
        try:
            for query in queries:
                expected = []
                for run in await store.list_runs(query):
                    steps = {s.step_key: str(s.status) for s in await store.get_steps(run.run_id)}
                    expected.append(
                        (
                            run.run_id,
                            run.flow_id,
                            str(run.status),
                            run.created_at,
                            run.completed_at,
                            steps,
                        )
                    )
                got = [
                    (r.run_id, r.flow_id, r.status, r.created_at, r.completed_at, r.step_statuses)
                    for r in view.list_runs(
                        flow_id=query.flow_id, statuses=sorted(query.statuses), limit=query.limit
                    )
                ]
                assert got == expected, query
        finally:
            view.close()
    finally:
        await store.close()
    handled = [r for r in expected if r[1] == "handled"]
    assert not handled or handled_failures(handled[0][5], handled[0][2]) == ["a"]


def test_the_newest_migration_is_known_without_alembic() -> None:
    assert head_revision() == migrate.head_revision()


async def test_the_view_never_creates_or_upgrades_a_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "floworch.db"
    assert open_view(missing) is None
    assert not missing.parent.exists()
    old = tmp_path / "old.db"
    store = await open_store(f"sqlite:///{old}")
    await store.close()
    import sqlite3

    with sqlite3.connect(old) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    before = old.read_bytes()
    assert open_view(old) is None  # behind the newest migration: the full store answers
    assert old.read_bytes() == before


def test_plain_sqlite_urls_only() -> None:
    assert sqlite_path_of("sqlite:///rel/x.db") == Path("rel/x.db")
    assert sqlite_path_of("sqlite+aiosqlite:////abs/x.db") == Path("/abs/x.db")
    for url in (
        "postgresql://u@h/db",
        "sqlite:///x.db?mode=ro",
        "sqlite:///:memory:",
        "sqlite://",
        "memory://",
        "Server=x;Password=y",
    ):
        assert sqlite_path_of(url) is None, url
