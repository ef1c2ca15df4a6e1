"""Who owns a flow's enabled flag (issue 9 item 5): the manifest sets the default, an operator's
choice is kept across restarts, and an edited manifest value applies again."""

from __future__ import annotations

from typing import Any

from floworch.engine.engine import Engine
from floworch.engine.handlers import HandlerRegistry
from floworch.model import load_manifest
from floworch.storage.memory import MemoryStore

from .support import RecordingDispatcher, flow


def _engine(store: MemoryStore, enabled: bool) -> Engine:
    manifest: dict[str, Any] = flow({"a": {"type": "Delay", "inputs": {"delaySeconds": 1}}})
    manifest["enabled"] = enabled
    return Engine(
        store=store,
        dispatcher=RecordingDispatcher(),
        flows=[load_manifest(manifest)],
        handlers=HandlerRegistry(),
    )


async def _restart(store: MemoryStore, enabled: bool) -> bool:
    """Starts a host on ``store`` with the manifest's ``enabled``; True when a run starts."""
    engine = _engine(store, enabled)
    await engine.sync_flows()
    return not (await engine.trigger("f")).disabled


async def test_a_manifest_edited_from_disabled_to_enabled_starts_runs_again() -> None:
    store = MemoryStore()
    assert await _restart(store, enabled=False) is False
    assert await _restart(store, enabled=False) is False
    assert await _restart(store, enabled=True) is True


async def test_a_manifest_edited_to_disabled_stops_runs() -> None:
    store = MemoryStore()
    assert await _restart(store, enabled=True) is True
    assert await _restart(store, enabled=False) is False


async def test_an_operator_disable_survives_a_restart_with_the_same_manifest() -> None:
    store = MemoryStore()
    engine = _engine(store, enabled=True)
    await engine.sync_flows()
    await engine.set_flow_enabled("f", False)
    assert await _restart(store, enabled=True) is False


async def test_an_operator_enable_of_a_manifest_disabled_flow_survives_a_restart() -> None:
    store = MemoryStore()
    engine = _engine(store, enabled=False)
    await engine.sync_flows()
    await engine.set_flow_enabled("f", True)
    assert await _restart(store, enabled=False) is True
    # ...until the manifest's value changes: then it applies again.
    assert await _restart(store, enabled=True) is True
    assert await _restart(store, enabled=False) is False
