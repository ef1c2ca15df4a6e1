"""Commands about flow files: ``validate``, ``graph`` and ``schema`` (no database, no runtime)."""

from __future__ import annotations

import click

from floworch.cli.inputs import dump_json
from floworch.cli.loading import check_handlers, load_flows, pick_flow


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--handlers",
    "handlers",
    multiple=True,
    help="Handlers file or module (repeatable); default: the handlers.py beside the flows.",
)
def validate_command(paths: tuple[str, ...], handlers: tuple[str, ...]) -> None:
    """Check flows; list every error.

    PATHS are manifests, Python flow files or folders of them. Step types are checked against
    the handlers that `floworch run` would use (--handlers, else the handlers.py beside the
    manifest or in the folder, or the handlers a Python flow file defines). Exit 0 when every
    flow is valid, 2 listing every error.
    """
    from floworch.engine.handlers import default_registry

    project = load_flows(paths, handlers)
    if project.has_handlers:
        check_handlers(project.manifests, default_registry)
    for manifest in project.manifests:
        steps = len(manifest.steps)
        click.echo(
            f"{manifest.id} (version {manifest.version}): valid, {steps} "
            f"step{'s' if steps != 1 else ''}"
        )
    if not project.has_handlers:
        click.echo(
            "note: no handlers found (no --handlers, no handlers.py beside the flows), so step "
            "types were not checked",
            err=True,
        )


@click.command("graph")
@click.argument("path", type=click.Path(exists=True))
@click.option("--flow", "flow_id", help="Flow id, when PATH holds several flows.")
def graph_command(path: str, flow_id: str | None) -> None:
    """Print a flow as Mermaid."""
    from floworch.model import to_mermaid

    project = load_flows([path])
    click.echo(to_mermaid(pick_flow(list(project.manifests), flow_id)))


@click.command("schema")
def schema_command() -> None:
    """Print the manifest JSON Schema."""
    from floworch.model import manifest_json_schema

    click.echo(dump_json(manifest_json_schema()))
