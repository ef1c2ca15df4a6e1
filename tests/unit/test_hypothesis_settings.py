"""No property test of this suite has a hypothesis deadline.

Hypothesis fails an example that takes longer than its deadline (200 ms by default) with
``DeadlineExceeded``. On a loaded machine a validation of one manifest can take that long, so a
deadline turns load into a failure: an upper bound on elapsed time, which the suite never asserts
(speed is measured in ``bench/``). ``tests/conftest.py`` loads a profile without a deadline; this
test finds every ``@given`` test and checks that none sets one again.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType

from hypothesis import settings

TESTS = Path(__file__).resolve().parents[1]


def _property_test_modules() -> list[ModuleType]:
    modules = []
    for path in sorted(TESTS.rglob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        if "from hypothesis import" not in text and "import hypothesis" not in text:
            continue
        dotted = ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)
        modules.append(importlib.import_module(dotted))
    return modules


def _default_settings() -> settings:
    """The loaded profile; hypothesis types ``settings.default`` as optional before one loads."""
    default = settings.default
    assert default is not None
    return default


def test_the_suite_profile_has_no_deadline() -> None:
    assert _default_settings().deadline is None


def test_no_property_test_has_a_deadline() -> None:
    found: dict[str, object] = {}
    for module in _property_test_modules():
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if getattr(fn, "is_hypothesis_test", False):
                used: settings = getattr(
                    fn, "_hypothesis_internal_use_settings", _default_settings()
                )
                found[f"{module.__name__}::{name}"] = used.deadline
    assert len(found) >= 15, sorted(found)  # the finder still finds the property tests
    with_deadline = {name: deadline for name, deadline in found.items() if deadline is not None}
    assert not with_deadline, with_deadline
