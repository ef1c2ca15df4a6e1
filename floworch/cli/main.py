"""The ``floworch`` command."""

from __future__ import annotations

import json
import sys

import click

from floworch.cli.control import (
    cancel_command,
    rerun_command,
    retry_command,
    runs_group,
    signal_command,
)
from floworch.cli.flows import flows_group
from floworch.cli.loading import load_project
from floworch.cli.runs import resume_command, run_command
from floworch.cli.schedules import schedules_group
from floworch.cli.serve import serve_command
from floworch.cli.topology import topology_group
from floworch.cli.worker import trigger_command, worker_command
from floworch.errors import FlowError, FlowValidationError
from floworch.model import manifest_json_schema, to_mermaid, validate_manifest
from floworch.model.manifest import BUILTIN_STEP_TYPES


@click.group()
@click.version_option(package_name="floworch")
def cli() -> None:
    """floworch: durable DAG workflows on Azure Service Bus and SQL.

    Environment: FLOWORCH_DB_URL (database), FLOWORCH_FLOWS (flows module or path),
    FLOWORCH_RUNTIME (memory | servicebus).
    """


@cli.command("validate")
@click.argument("path", type=click.Path(exists=True))
@click.option(
    "--handlers",
    "handlers",
    multiple=True,
    help="Handlers file or module; step types must then have a handler.",
)
def validate_command(path: str, handlers: tuple[str, ...]) -> None:
    """Check the flows at PATH; exit 0 when valid, 2 listing every error."""
    manifests, registry = load_project(path, handlers)
    if handlers:
        known = set(registry.types()) | BUILTIN_STEP_TYPES
        for manifest in manifests:
            validate_manifest(manifest.to_dict(), step_types=known, source=path)
    for manifest in manifests:
        click.echo(
            f"{manifest.id} (version {manifest.version}): valid, {len(manifest.steps)} steps"
        )


@cli.command("graph")
@click.argument("path", type=click.Path(exists=True))
@click.option("--flow", "flow_id", help="Flow id, when PATH holds several flows.")
def graph_command(path: str, flow_id: str | None) -> None:
    """Print a flow as a Mermaid flowchart."""
    from floworch.cli.loading import pick_flow

    manifests, _ = load_project(path)
    click.echo(to_mermaid(pick_flow(manifests, flow_id)))


@cli.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of flow manifests (for editors)."""
    click.echo(json.dumps(manifest_json_schema(), indent=2))


for command in (
    run_command,
    resume_command,
    runs_group,
    signal_command,
    cancel_command,
    retry_command,
    rerun_command,
    topology_group,
    worker_command,
    trigger_command,
    serve_command,
    flows_group,
    schedules_group,
):
    cli.add_command(command)


def _optional_commands() -> None:
    """Commands whose modules need optional extras are added when importable."""
    try:
        from floworch.cli.db import db_group
    except ImportError:
        pass
    else:
        cli.add_command(db_group)
    try:
        from floworch.emulator.cli import emulator_command  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        cli.add_command(emulator_command)


_optional_commands()


def main() -> None:
    """Entry point: runs the CLI and turns floworch errors into clear messages and exit codes."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except FlowValidationError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    except FlowError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
