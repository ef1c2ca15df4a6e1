"""The command table of ``floworch``: every row names a real command, with its own help."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from floworch.cli.lazy import load_command
from floworch.cli.main import COMMANDS, cli


@pytest.mark.parametrize("entry", COMMANDS, ids=lambda e: e.name)
def test_each_row_loads_its_command_with_the_listed_help(entry: object) -> None:
    from floworch.cli.lazy import LazyCommand

    assert isinstance(entry, LazyCommand)
    command = load_command(entry)
    assert command.name == entry.name
    first_line = (command.help or "").strip().splitlines()[0]
    assert first_line == entry.help


def test_unknown_names_are_not_commands() -> None:
    with click.Context(cli) as ctx:
        assert cli.get_command(ctx, "nope") is None
        assert cli.list_commands(ctx) == [entry.name for entry in COMMANDS]


def test_the_fast_run_list_looks_where_the_store_does(tmp_path: Path) -> None:
    from floworch.cli.inspect import DEFAULT_DATABASE
    from floworch.storage.sql.urls import default_database_url
    from floworch.storage.sqlite_view import sqlite_path_of

    assert sqlite_path_of(default_database_url(tmp_path)) == (tmp_path / DEFAULT_DATABASE).resolve()
