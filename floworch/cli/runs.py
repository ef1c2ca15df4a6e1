"""``floworch run`` and ``floworch resume``: flows on the embedded runtime."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from floworch.cli.loading import load_project, pick_flow, registry_of
from floworch.cli.progress import follow
from floworch.cli.settings import Settings
from floworch.engine.reconciler import ReconcilerSettings
from floworch.engine.views import RunState
from floworch.hosting.embedded import EmbeddedHost, EmbeddedSettings
from floworch.hosting.runner import run_main
from floworch.storage.factory import open_store

_EMBEDDED_LEASE = timedelta(seconds=10)
"""Embedded leases are short so that `floworch resume` takes over a crashed step quickly."""


def parse_body(value: str | None) -> Any:
    """``--body``: JSON text, or ``@file.json``."""
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            raise click.BadParameter(f"no such file: {path}", param_hint="--body")
        text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--body") from exc


def parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    """``--header K=V`` options."""
    headers: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected K=V, got {item!r}", param_hint="--header")
        headers[name] = value
    return headers


def summary(run: RunState) -> str:
    """The closing line of ``floworch run``."""
    counts: dict[str, int] = {}
    for step in run.steps.values():
        counts[str(step.status)] = counts.get(str(step.status), 0) + 1
    detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"run {run.run_id} of {run.flow_id}: {run.status} ({detail})"


async def _run(
    path: str,
    handlers: tuple[str, ...],
    flow_id: str | None,
    trigger: str | None,
    body: Any,
    headers: dict[str, str],
    idempotency_key: str | None,
    db: str | None,
    as_json: bool,
    timeout: float | None,
) -> int:
    manifests, registry = load_project(path, handlers)
    manifest = pick_flow(manifests, flow_id)
    url = Settings.from_env().database_url(db)
    store = await open_store(url)
    try:
        async with EmbeddedHost(
            store=store,
            flows=registry_of(manifests),
            handlers=registry,
            settings=EmbeddedSettings(lease=_EMBEDDED_LEASE),
        ) as host:
            result = await host.engine.trigger(manifest.id, trigger, body, headers, idempotency_key)
            if result.run_id is None:
                click.echo(f"flow {manifest.id!r} is disabled; no run started", err=True)
                return 1
            live = sys.stdout.isatty() and not as_json
            if not as_json:
                note = " (a repeat of this idempotency key)" if result.duplicate else ""
                click.echo(f"run {result.run_id} of {manifest.id}{note}; state in {_safe(url)}")
            waiter = (
                follow(host.engine, result.run_id, sys.stdout)
                if live
                else host.engine.wait_for_run(result.run_id, timeout=float("inf"))
            )
            try:
                run = await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                click.echo(
                    f"run {result.run_id} still running after {timeout:g}s; "
                    f"continue it with: floworch resume {path}",
                    err=True,
                )
                return 1
    finally:
        await store.close()
    if as_json:
        click.echo(json.dumps(run.to_dict(), indent=2, default=str))
    else:
        click.echo(summary(run))
    return 0 if run.status == "Succeeded" else 1


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


@click.command("run")
@click.argument("path", type=click.Path(exists=True))
@click.option("--handlers", "handlers", multiple=True, help="Handlers file or module (repeatable).")
@click.option("--flow", "flow_id", help="Flow id, when PATH holds several flows.")
@click.option("--trigger", help="Trigger key (default: the flow's Manual trigger).")
@click.option("--body", help="Trigger body: JSON text or @file.json.")
@click.option("--header", "header", multiple=True, help="Trigger header K=V (repeatable).")
@click.option("--idempotency-key", help="A repeat with the same key returns the first run.")
@click.option("--db", help="Database URL (default: FLOWORCH_DB_URL, else .floworch/floworch.db).")
@click.option("--json", "as_json", is_flag=True, help="Print the finished run as JSON.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds (exit 1).")
def run_command(
    path: str,
    handlers: tuple[str, ...],
    flow_id: str | None,
    trigger: str | None,
    body: str | None,
    header: tuple[str, ...],
    idempotency_key: str | None,
    db: str | None,
    as_json: bool,
    timeout: float | None,
) -> None:
    """Run a flow on the embedded runtime until it finishes.

    PATH is a manifest (JSON/YAML) or a Python file defining flows and handlers. Exit code 0
    when the run Succeeded, 1 when it Failed, was Cancelled or TimedOut, 2 for invalid input.
    """
    code = run_main(
        _run(
            path,
            handlers,
            flow_id,
            trigger,
            parse_body(body),
            parse_headers(header),
            idempotency_key,
            db,
            as_json,
            timeout,
        )
    )
    sys.exit(code)


async def _resume(path: str, handlers: tuple[str, ...], db: str | None, timeout: float) -> int:
    manifests, registry = load_project(path, handlers)
    url = Settings.from_env().database_url(db)
    store = await open_store(url)
    try:
        host = EmbeddedHost(
            store=store,
            flows=registry_of(manifests),
            handlers=registry,
            settings=EmbeddedSettings(lease=_EMBEDDED_LEASE),
        )
        # The previous process's in-memory queue died with it: every pending dispatch is lost.
        async with host:
            await host.engine.reconcile(
                ReconcilerSettings(unsent_grace=timedelta(0), lost_after=timedelta(0))
            )
            unfinished = await store.unfinished_runs(limit=10_000)
            ids = [r.run_id for r in unfinished if r.flow_id in {m.id for m in manifests}]
            click.echo(f"resuming {len(ids)} unfinished run(s) from {_safe(url)}")
            failed = 0
            for run_id in ids:
                run = await host.engine.wait_for_run(run_id, timeout=timeout)
                click.echo(summary(run))
                failed += run.status != "Succeeded"
    finally:
        await store.close()
    return 1 if failed else 0


@click.command("resume")
@click.argument("path", type=click.Path(exists=True))
@click.option("--handlers", "handlers", multiple=True, help="Handlers file or module (repeatable).")
@click.option("--db", help="Database URL (default: FLOWORCH_DB_URL, else .floworch/floworch.db).")
@click.option(
    "--timeout", type=float, default=3600.0, show_default=True, help="Seconds to wait for each run."
)
def resume_command(path: str, handlers: tuple[str, ...], db: str | None, timeout: float) -> None:
    """Continue every unfinished run of the flows at PATH (after a crash or Ctrl-C)."""
    sys.exit(run_main(_resume(path, handlers, db, timeout)))
