"""InstanceKey.pattern, and the two readers that used to split keys by hand (issue 9.26)."""

from __future__ import annotations

import pytest

from floworch.cli.render import _enclosing_loops
from floworch.model.instance_key import InstanceKey
from floworch.storage.stats import step_pattern


@pytest.mark.parametrize(
    ("key", "pattern"),
    [("fetch", "fetch"), ("each.3.charge", "each.*.charge"), ("a.0.b.12.c", "a.*.b.*.c")],
)
def test_the_pattern_replaces_every_iteration_index(key: str, pattern: str) -> None:
    assert InstanceKey.parse(key).pattern == pattern
    assert step_pattern(key) == pattern


def test_step_durations_keep_a_key_floworch_did_not_write_as_it_is() -> None:
    assert step_pattern("not.a.key.") == "not.a.key."


def test_the_enclosing_loops_of_a_nested_step_outermost_first() -> None:
    assert _enclosing_loops("each.3.inner.1.charge") == ["each", "each.3.inner"]
    assert _enclosing_loops("fetch") == []
