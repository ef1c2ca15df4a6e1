"""The ``floworch`` command: a table of lazily imported commands, and one way every command ends.

Only click and this package's small CLI modules are imported at start-up; a command's own
module (and SQLAlchemy, the engine, the Service Bus SDK or the emulator behind it) is imported
when that command runs, so ``floworch --help`` starts at once. To add a command, add a
:class:`LazyCommand` row to :data:`COMMANDS`.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Sequence

import click

from floworch.cli.failures import ExitCode, describe_failure, exit_code_for
from floworch.cli.lazy import LazyCommand, LazyGroup
from floworch.cli.settings import Settings

COMMANDS: tuple[LazyCommand, ...] = (
    LazyCommand(
        "validate", "floworch.cli.project", "validate_command", "Check flows; list every error."
    ),
    LazyCommand("run", "floworch.cli.run", "run_command", "Run a flow here until it finishes."),
    LazyCommand(
        "resume", "floworch.cli.resume", "resume_command", "Continue unfinished runs after a crash."
    ),
    LazyCommand("runs", "floworch.cli.inspect", "runs_group", "List and show stored runs."),
    LazyCommand(
        "signal", "floworch.cli.control", "signal_command", "Deliver a signal to a waiting run."
    ),
    LazyCommand("cancel", "floworch.cli.control", "cancel_command", "Cancel a running run."),
    LazyCommand("retry", "floworch.cli.control", "retry_command", "Retry a failed step of a run."),
    LazyCommand(
        "rerun", "floworch.cli.control", "rerun_command", "Start a run again from its data."
    ),
    LazyCommand("trigger", "floworch.cli.worker", "trigger_command", "Start a run of a flow."),
    LazyCommand(
        "worker",
        "floworch.cli.worker",
        "worker_command",
        "Run flows on Azure Service Bus until SIGTERM or SIGINT.",
        extra="servicebus",
    ),
    LazyCommand(
        "topology",
        "floworch.cli.topology",
        "topology_group",
        "The Service Bus entities the flows need: export, plan, apply.",
        extra="servicebus",
        failure_exit=1,  # docs/topology.md: 2 means "changes pending", every error is 1
    ),
    LazyCommand(
        "emulator",
        "floworch.emulator.cli",
        "emulator_command",
        "Run a local Azure Service Bus emulator until SIGINT or SIGTERM.",
        extra="emulator",
    ),
    LazyCommand(
        "db",
        "floworch.cli.db",
        "db_group",
        "Manage the SQL database: schema migrations and retention.",
    ),
    LazyCommand(
        "serve",
        "floworch.cli.serve",
        "serve_command",
        "Serve the HTTP API and run flows on the embedded runtime until Ctrl-C.",
    ),
    LazyCommand(
        "flows", "floworch.cli.flows", "flows_group", "List, enable and disable stored flows."
    ),
    LazyCommand(
        "schedules",
        "floworch.cli.schedules",
        "schedules_group",
        "Inspect and steer cron triggers (shared by every worker on the database).",
    ),
    LazyCommand("graph", "floworch.cli.project", "graph_command", "Print a flow as Mermaid."),
    LazyCommand(
        "schema", "floworch.cli.project", "schema_command", "Print the manifest JSON Schema."
    ),
)


@click.group(cls=LazyGroup, table=COMMANDS)
@click.version_option(package_name="floworch")
def cli() -> None:
    """floworch: durable DAG workflows on Azure Service Bus and SQL.

    Environment: FLOWORCH_DB_URL (database), FLOWORCH_FLOWS (flows module or path),
    FLOWORCH_RUNTIME (memory | servicebus). Exit codes: 0 done, 1 the run or operation
    failed, 2 invalid input, 3 database or Service Bus unavailable, 130 interrupted.
    """


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Runs one ``floworch`` invocation and returns its exit code; never raises.

    Every failure ends in one line on stderr (a manifest with several problems lists each on
    its own line) and the exit code of :class:`~floworch.cli.failures.ExitCode`. With
    ``FLOWORCH_DEBUG=1`` the traceback of an unexpected error is printed too.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args, prog_name="floworch", standalone_mode=False)
    except SystemExit as exc:
        return _system_exit_code(exc)
    except BrokenPipeError:
        return ExitCode.OK  # `floworch runs list | head`: the reader left; nothing is wrong
    except (Exception, KeyboardInterrupt) as exc:
        if Settings.from_env().debug and not isinstance(exc, click.ClickException):
            traceback.print_exc()
        _echo_err(describe_failure(exc))
        code = exit_code_for(exc)
        entry = _invoked(args)
        if entry is not None and entry.failure_exit is not None and code != ExitCode.INTERRUPTED:
            return entry.failure_exit
        return code
    return result if isinstance(result, int) else ExitCode.OK


def _invoked(args: Sequence[str]) -> LazyCommand | None:
    """The table row of the command in ``args`` (the first word that is not an option)."""
    table = {entry.name: entry for entry in COMMANDS}
    for word in args:
        if not word.startswith("-"):
            return table.get(word)
    return None


def _system_exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return ExitCode.OK
    if isinstance(exc.code, int):
        return exc.code
    _echo_err(str(exc.code))
    return ExitCode.FAILED


def _echo_err(text: str) -> None:
    with contextlib.suppress(OSError):
        click.echo(text, err=True)


def main() -> None:
    """Entry point of the ``floworch`` script."""
    sys.exit(run_cli())
