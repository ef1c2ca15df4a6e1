"""``floworch schedules list|pause|resume|set-cron|fire``: cron triggers of stored flows."""

from __future__ import annotations

import json
from typing import Any

import click

_db_option = click.option(
    "--db", help="Database URL (default: FLOWORCH_DB_URL, else .floworch/floworch.db)."
)


@click.group("schedules")
def schedules_group() -> None:
    """Inspect and steer cron triggers (shared by every worker on the database)."""


async def _rows(engine: Any) -> list[dict[str, Any]]:
    from floworch.engine.schedules import effective_cron, next_fire
    from floworch.model import CronTrigger

    now = engine.clock.now()
    rows = []
    for flow in engine.flows:
        for key, trigger in flow.triggers.items():
            if not isinstance(trigger, CronTrigger):
                continue
            state = await engine.store.get_schedule_state(flow.id, key)
            override = state.cron_override if state else None
            cron = effective_cron(trigger, override)
            paused = bool(state and state.paused)
            rows.append(
                {
                    "flowId": flow.id,
                    "triggerKey": key,
                    "cron": cron,
                    "override": override is not None,
                    "timezone": trigger.timezone,
                    "paused": paused,
                    "nextFireAt": None
                    if paused
                    else next_fire(cron, now, trigger.timezone).isoformat(),
                    "lastFireAt": state.last_fire_at.isoformat()
                    if state and state.last_fire_at
                    else None,
                }
            )
    return rows


@schedules_group.command("list")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(db: str | None, as_json: bool) -> None:
    """List cron triggers with their expression in force and next fire time."""
    from floworch.cli.control import with_engine

    rows = with_engine(db, _rows, read_only=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no cron triggers in the stored flows")
    for row in rows:
        cron = row["cron"] + (" (override)" if row["override"] else "")
        upcoming = "paused" if row["paused"] else f"next {row['nextFireAt']}"
        click.echo(
            f"{row['flowId']}.{row['triggerKey']:<20} {cron:<28} {row['timezone']}  {upcoming}"
        )


def _change(db: str | None, flow_id: str, key: str, message: str, **changes: Any) -> None:
    from floworch.cli.control import with_engine

    async def act(engine: Any) -> None:
        await engine.set_schedule(flow_id, key, **changes)

    with_engine(db, act)
    click.echo(f"{flow_id}.{key}: {message}")


@schedules_group.command("pause")
@click.argument("flow_id")
@click.argument("trigger_key")
@_db_option
def pause_command(flow_id: str, trigger_key: str, db: str | None) -> None:
    """Pause a cron trigger on every worker."""
    _change(db, flow_id, trigger_key, "paused", paused=True)


@schedules_group.command("resume")
@click.argument("flow_id")
@click.argument("trigger_key")
@_db_option
def resume_command(flow_id: str, trigger_key: str, db: str | None) -> None:
    """Resume a paused cron trigger."""
    _change(db, flow_id, trigger_key, "resumed", paused=False)


@schedules_group.command("set-cron")
@click.argument("flow_id")
@click.argument("trigger_key")
@click.argument("cron", required=False)
@click.option("--clear", is_flag=True, help="Go back to the manifest's expression.")
@_db_option
def set_cron_command(
    flow_id: str, trigger_key: str, cron: str | None, clear: bool, db: str | None
) -> None:
    """Override a cron trigger's expression (kept across restarts), or --clear it."""
    if clear == (cron is not None):
        raise click.UsageError("give a CRON expression or --clear, not both")
    if clear:
        _change(db, flow_id, trigger_key, "back to the manifest's cron", clear_override=True)
    else:
        _change(db, flow_id, trigger_key, f"cron is now {cron!r}", cron_override=cron)


@schedules_group.command("fire")
@click.argument("flow_id")
@click.argument("trigger_key")
@_db_option
def fire_command(flow_id: str, trigger_key: str, db: str | None) -> None:
    """Start a run of a cron trigger now (also while paused); prints the run id."""
    from floworch.cli.control import with_engine
    from floworch.errors import TriggerNotFoundError
    from floworch.model import CronTrigger

    async def act(engine: Any) -> str | None:
        flow = engine.flows.get(flow_id)
        trigger = flow.triggers.get(trigger_key)
        if not isinstance(trigger, CronTrigger):
            crons = [k for k, t in flow.triggers.items() if isinstance(t, CronTrigger)]
            raise TriggerNotFoundError(flow_id, trigger_key, crons)
        now = engine.clock.now()
        result = await engine.trigger(
            flow_id,
            trigger_key,
            trigger.body,
            {"X-Floworch-Fire-Time": now.isoformat(), "X-Floworch-Fired-By": "cli"},
        )
        return str(result.run_id) if result.run_id else None

    run_id = with_engine(db, act)
    if run_id is None:
        raise click.ClickException(f"flow {flow_id!r} is disabled; no run was started")
    click.echo(run_id)
