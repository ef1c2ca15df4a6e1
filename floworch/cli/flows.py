"""``floworch flows list|enable|disable``: the flows stored in a database and their enabled
flag (an operator's choice, kept across restarts; see docs/manifest.md)."""

from __future__ import annotations

import json
from typing import Any

import click

_db_option = click.option(
    "--db", help="Database URL (default: FLOWORCH_DB_URL, else .floworch/floworch.db)."
)


@click.group("flows")
def flows_group() -> None:
    """List, enable and disable stored flows."""


async def _rows(engine: Any) -> list[dict[str, Any]]:
    store = engine.store
    records = await store.list_flows()
    last = await store.last_run_statuses([r.flow_id for r in records])
    rows = []
    for record in records:
        manifest = record.manifest if isinstance(record.manifest, dict) else {}
        rows.append(
            {
                "flowId": record.flow_id,
                "version": record.version,
                "enabled": record.enabled,
                "manifestEnabled": bool(manifest.get("enabled", True)),
                "triggers": sorted((manifest.get("triggers") or {}).keys()),
                "steps": len(manifest.get("steps") or {}),
                "lastRunStatus": str(last[record.flow_id]) if record.flow_id in last else None,
            }
        )
    return rows


@flows_group.command("list")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(db: str | None, as_json: bool) -> None:
    """List stored flows with their enabled flag and newest run's status."""
    from floworch.cli.control import with_engine

    rows = with_engine(db, _rows, read_only=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no flows stored yet (start `floworch serve`, `run` or `worker` once)")
    for row in rows:
        state = "enabled" if row["enabled"] else "disabled"
        if row["enabled"] != row["manifestEnabled"]:
            state += " (operator override)"
        click.echo(
            f"{row['flowId']:<28} v{row['version']:<6} {state:<30} {row['steps']} steps  "
            f"last run: {row['lastRunStatus'] or '-'}"
        )


def _set(db: str | None, flow_id: str, enabled: bool) -> None:
    from floworch.cli.control import with_engine

    async def act(engine: Any) -> None:
        await engine.set_flow_enabled(flow_id, enabled)

    with_engine(db, act)
    word = "enabled" if enabled else "disabled"
    click.echo(f"{flow_id} {word} (every worker obeys within seconds; kept across restarts)")


@flows_group.command("enable")
@click.argument("flow_id")
@_db_option
def enable_command(flow_id: str, db: str | None) -> None:
    """Enable a flow: it starts runs again."""
    _set(db, flow_id, True)


@flows_group.command("disable")
@click.argument("flow_id")
@_db_option
def disable_command(flow_id: str, db: str | None) -> None:
    """Disable a flow: it starts no new runs; running ones finish."""
    _set(db, flow_id, False)
