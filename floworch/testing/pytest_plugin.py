"""A pytest plugin that runs ``async def`` tests, so FlowTestHost tests need no configuration.

floworch registers it as a pytest plugin (entry point ``pytest11``), so it is active wherever
floworch is installed. It runs an ``async def`` test function that no other plugin takes
(nothing marked ``asyncio``, ``anyio`` or ``trio``) on a fresh event loop, with
:func:`asyncio.run`. With pytest-asyncio in ``auto`` mode, or tests marked
``@pytest.mark.asyncio``, pytest-asyncio runs them as before and this plugin stays out of the
way. It does not run ``async`` fixtures: use ``async with FlowTestHost(...)`` inside the test,
or pytest-asyncio for async fixtures.

To turn it off: ``pytest -p no:floworch``.

With pytest-asyncio 1.5 or later installed but not configured, pytest-asyncio warns at start-up
that ``asyncio_default_fixture_loop_scope`` is unset (an error under ``filterwarnings = error``).
This plugin then sets that option's default to ``fixture-scope``, pytest-asyncio's own name for
what it does when the option is unset, so behaviour is unchanged and the run is clean. A value
the project sets (ini file, ``-o``) still wins. Older pytest-asyncio versions have no such value
and are left alone.
"""

from __future__ import annotations

import asyncio
import inspect
from importlib import metadata
from typing import Any

import pytest
from packaging.version import InvalidVersion, Version

_OTHER_RUNNERS = ("asyncio", "anyio", "trio")
_FIXTURE_LOOP_SCOPE = "asyncio_default_fixture_loop_scope"
_KEEP_FIXTURE_SCOPE = "fixture-scope"  # pytest-asyncio >= 1.5: the behaviour when unset
_FIRST_WITH_KEEP = Version("1.5")


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser) -> None:
    """Makes pytest-asyncio's unset fixture loop scope explicit (see the module docstring).

    Every installed plugin has declared its options by now, so this declaration is the last.
    """
    if not early_config.pluginmanager.hasplugin("asyncio") or not _asyncio_can_keep_scope():
        return
    parser.addini(
        _FIXTURE_LOOP_SCOPE,
        type="string",
        help="default scope of the asyncio event loop used to execute async fixtures "
        f"(floworch's plugin defaults it to {_KEEP_FIXTURE_SCOPE!r}: pytest-asyncio's behaviour "
        "when unset, without its warning)",
        default=_KEEP_FIXTURE_SCOPE,
    )


def _asyncio_can_keep_scope() -> bool:
    try:
        return Version(metadata.version("pytest-asyncio")) >= _FIRST_WITH_KEEP
    except (metadata.PackageNotFoundError, InvalidVersion):
        return False


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
