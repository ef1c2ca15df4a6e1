"""Executing runs in this process (``resume``, and ``--wait`` on the control commands): which
handlers to load, which stored runs can be continued here, and the embedded host to do it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from floworch.cli.loading import import_handlers, load_flows
from floworch.cli.settings import Settings

if TYPE_CHECKING:
    from floworch.engine.flows import FlowRegistry
    from floworch.hosting.embedded import EmbeddedHost
    from floworch.model import FlowManifest
    from floworch.storage.port import Store
    from floworch.storage.records import RunRecord

EMBEDDED_LEASE = timedelta(seconds=10)
"""Embedded leases are short so that `floworch resume` takes over a crashed step quickly."""

handlers_option = click.option(
    "--handlers",
    "handlers",
    multiple=True,
    help="Handlers file or module (repeatable; default: FLOWORCH_FLOWS).",
)


def load_handler_sources(handlers: Sequence[str]) -> tuple[list[FlowManifest], list[str]]:
    """Imports ``--handlers``, else ``FLOWORCH_FLOWS`` (a module, a flow file or a folder).

    Returns the flows those sources define (a folder or Python flow file defines some) and the
    names of the sources imported.
    """
    if handlers:
        for target in handlers:
            import_handlers(target)
        return [], list(handlers)
    flows = Settings.from_env().flows
    if not flows:
        return [], []
    if Path(flows).exists():
        project = load_flows([flows])
        return list(project.manifests), [flows, *project.handler_sources]
    import_handlers(flows)
    return [], [flows]


@dataclass(frozen=True)
class Resumable:
    """The unfinished runs this process can continue, and why the others are left alone."""

    runs: tuple[RunRecord, ...]
    skipped: tuple[str, ...]


def missing_handlers(flows: FlowRegistry, flow_id: str) -> list[str]:
    """Step types of a flow that have no registered handler (loop bodies included)."""
    from floworch.engine.handlers import default_registry
    from floworch.model import BUILTIN_STEP_TYPES

    types: set[str] = set()
    scopes = [flows.get(flow_id).root.steps]
    while scopes:
        for node in scopes.pop().values():
            types.add(node.type)
            if node.body is not None:
                scopes.append(node.body.steps)
    return sorted(t for t in types if t not in BUILTIN_STEP_TYPES and t not in default_registry)


def choose_runs(
    unfinished: Sequence[RunRecord],
    flows: FlowRegistry,
    *,
    only_flows: set[str] | None,
    run_ids: Sequence[str] = (),
) -> Resumable:
    """Splits unfinished runs into those this process can run and those it must skip."""
    runs: list[RunRecord] = []
    skipped: list[str] = []
    wanted = set(run_ids)
    handlers_ok: dict[str, list[str]] = {}
    for run in unfinished:
        if wanted and run.run_id not in wanted:
            continue
        if only_flows is not None and run.flow_id not in only_flows:
            skipped.append(f"run {run.run_id} of flow {run.flow_id}: not a flow of the PATH given")
            continue
        if flows.find(run.flow_id) is None:
            skipped.append(
                f"run {run.run_id} of flow {run.flow_id}: its manifest is not in the database "
                "or cannot be read by this floworch; give the flow's PATH"
            )
            continue
        if run.flow_id not in handlers_ok:
            handlers_ok[run.flow_id] = missing_handlers(flows, run.flow_id)
        missing = handlers_ok[run.flow_id]
        if missing:
            skipped.append(
                f"run {run.run_id} of flow {run.flow_id}: no handler for step type(s) "
                f"{', '.join(missing)} (give --handlers FILE_OR_MODULE or set FLOWORCH_FLOWS)"
            )
            continue
        runs.append(run)
    return Resumable(tuple(runs), tuple(skipped))


async def unfinished_runs(store: Store) -> list[RunRecord]:
    """Every unfinished run in the store, oldest id first (paged)."""
    found: list[RunRecord] = []
    after = ""
    while True:
        page = await store.unfinished_runs(limit=1000, after_run_id=after)
        found.extend(page)
        if len(page) < 1000:
            return found
        after = page[-1].run_id


def embedded_host(store: Store, flows: FlowRegistry) -> EmbeddedHost:
    """An embedded host for continuing stored runs (handlers were checked per run)."""
    from floworch.engine.handlers import default_registry
    from floworch.hosting.embedded import EmbeddedHost, EmbeddedSettings

    return EmbeddedHost(
        store=store,
        flows=flows,
        handlers=default_registry,
        settings=EmbeddedSettings(lease=EMBEDDED_LEASE),
        check_handlers=False,
    )


async def send_everything_pending(host: EmbeddedHost) -> None:
    """The previous process's in-memory queue died with it: every pending dispatch is lost, so
    re-send every unsent or unclaimed ledger row now instead of after the usual grace."""
    from floworch.engine.reconciler import ReconcilerSettings

    await host.engine.reconcile(
        ReconcilerSettings(unsent_grace=timedelta(0), lost_after=timedelta(0))
    )
