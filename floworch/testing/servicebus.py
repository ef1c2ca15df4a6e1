"""Pytest support for the local Service Bus emulator.

Use the ``servicebus_emulator`` fixture (register this module as a plugin, e.g.
``pytest_plugins = ["floworch.testing.servicebus"]``) or call :func:`start_servicebus_emulator`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from floworch.emulator import ServiceBusEmulator
from floworch.emulator.entities import Topology


def start_servicebus_emulator(
    topology: Topology | Path | str | Mapping[str, Any] | None = None, **options: Any
) -> ServiceBusEmulator:
    """Start an emulator on free loopback ports; the caller must call ``stop()`` on it.

    Args:
        topology: Entities to declare (see :class:`ServiceBusEmulator`).
        **options: Further keyword options of :class:`ServiceBusEmulator`.
    """
    return ServiceBusEmulator(topology, **options).start()


@pytest.fixture
def servicebus_emulator() -> Iterator[ServiceBusEmulator]:
    """A started, empty emulator; declare entities with ``emulator.backend``."""
    emulator = start_servicebus_emulator()
    try:
        yield emulator
    finally:
        emulator.stop()
