"""A click group whose commands are imported only when they run.

``floworch --help`` lists every command from a table of names and one-line helps, so it imports
none of them; ``floworch runs list`` imports the one module that holds ``runs``. A command whose
module needs an extra that is not installed is still listed and says which extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class LazyCommand:
    """One entry of the command table.

    Attributes:
        name: the command name (``floworch NAME``).
        module: the module that defines it, imported on first use.
        attribute: the click command (or group) in that module.
        help: the one-line help shown by ``floworch --help`` (a test checks it matches).
        extra: the pip extra the module needs, named when importing it fails.
        failure_exit: the exit code of every failure of this command, when its own rule
            differs from floworch's (``topology``: 1, so that 2 only means "changes pending").
    """

    name: str
    module: str
    attribute: str
    help: str
    extra: str | None = None
    failure_exit: int | None = None


class LazyGroup(click.Group):
    """A group that imports a command's module when the command is looked up."""

    def __init__(self, *args: object, table: Sequence[LazyCommand], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.table = {entry.name: entry for entry in table}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.table, *(n for n in super().list_commands(ctx) if n not in self.table)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.table.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        return load_command(entry)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, entry.help) for name, entry in self.table.items()]
        rows += [
            (name, command.get_short_help_str())
            for name, command in self.commands.items()
            if name not in self.table and not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def load_command(entry: LazyCommand) -> click.Command:
    """Imports the command of ``entry`` (or a stand-in that explains the missing extra)."""
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        if entry.extra is None:
            raise
        return _missing_extra(entry, exc)
    command = getattr(module, entry.attribute)
    if not isinstance(command, click.Command):  # pragma: no cover - a wrong table entry
        raise TypeError(f"{entry.module}.{entry.attribute} is not a click command")
    return command


def _missing_extra(entry: LazyCommand, exc: ImportError) -> click.Command:
    def explain() -> None:
        raise click.ClickException(
            f"floworch {entry.name} needs the {entry.extra!r} extra ({exc}); install it with: "
            f"pip install 'floworch[{entry.extra}]'"
        )

    return click.Command(
        entry.name,
        callback=explain,
        help=entry.help,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
