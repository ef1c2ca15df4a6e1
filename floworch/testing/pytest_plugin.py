"""A pytest plugin that runs ``async def`` tests, so FlowTestHost tests need no configuration.

floworch registers it as a pytest plugin (entry point ``pytest11``), so it is active wherever
floworch is installed. It runs an ``async def`` test function that no other plugin takes
(nothing marked ``asyncio``, ``anyio`` or ``trio``) on a fresh event loop, with
:func:`asyncio.run`. With pytest-asyncio in ``auto`` mode, or tests marked
``@pytest.mark.asyncio``, pytest-asyncio runs them as before and this plugin stays out of the
way. It does not run ``async`` fixtures: use ``async with FlowTestHost(...)`` inside the test,
or pytest-asyncio for async fixtures.

To turn it off: ``pytest -p no:floworch``.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

_OTHER_RUNNERS = ("asyncio", "anyio", "trio")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Runs a coroutine test function that no other async plugin claimed."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    if any(pyfuncitem.get_closest_marker(name) is not None for name in _OTHER_RUNNERS):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    arguments: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(function(**arguments))
    return True
