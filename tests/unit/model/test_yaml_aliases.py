"""YAML aliases are bounded: an alias bomb is refused while it is read (issue 16 item 5).

A 700-byte document with 7 levels of nine aliases each took 113 s and 1.7 GB to load, and 9
levels never finished: every alias is expanded into a copy when the data becomes plain dicts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from floworch import limits
from floworch.errors import FlowValidationError
from floworch.model import load_flows_from_path, load_manifest, parse_manifest_text

HEAD = "id: f\nversion: '1'\n"


def bomb(levels: int) -> str:
    """The 'billion laughs': each level is a list of nine aliases of the level below."""
    lines = ["x:", '  - &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        lines.append(f"  - &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]")
    body = f"steps: {{s: {{type: T, inputs: {{b: *a{levels - 1}}}}}}}\n"
    return "\n".join(lines) + "\n" + HEAD + body


def test_a_nine_level_alias_bomb_is_refused_with_its_line() -> None:
    text = bomb(9)
    assert len(text) < 800
    data, issues = parse_manifest_text(text)
    assert data is None
    (issue,) = issues
    assert issue.path == ""
    assert issue.message.startswith("invalid YAML at line 6, column ")
    assert f"aliases expand to more than {limits.MAX_YAML_ALIAS_NODES} nodes" in issue.message


def test_the_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(9), encoding="utf-8")
    with pytest.raises(FlowValidationError) as caught:
        load_flows_from_path(path)
    assert str(caught.value).startswith(f"{path}: invalid flow manifest (1 error):")
    assert caught.value.source == str(path)
    assert "aliases expand to more than" in str(caught.value)


def test_a_merge_key_bomb_is_refused() -> None:
    lines = ["x:", "  - &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    for level in range(1, 12):
        keys = ", ".join(f"k{n}: *m{level - 1}" for n in range(4))
        lines.append(f"  - &m{level} {{<<: *m{level - 1}, {keys}}}")
    text = "\n".join(lines) + "\n" + HEAD + "steps: {s: {type: T, inputs: *m11}}\n"
    _, issues = parse_manifest_text(text)
    assert "aliases expand to more than" in issues[0].message


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    _, issues = parse_manifest_text(HEAD + "steps: {s: {type: T, inputs: &loop [1, *loop]}}\n")
    (issue,) = issues
    assert "alias *loop refers to a node that contains it" in issue.message


def test_aliases_up_to_the_limit_are_expanded() -> None:
    # An anchored list of 99 items is 100 nodes; 100 aliases of it add exactly the limit.
    per_alias = 100
    count = limits.MAX_YAML_ALIAS_NODES // per_alias
    items = ", ".join(["1"] * (per_alias - 1))
    refs = ", ".join(f"r{n}: *big" for n in range(count))
    text = HEAD + f"x: &big [{items}]\nsteps: {{s: {{type: T, inputs: {{{refs}}}}}}}\n"
    data, issues = parse_manifest_text(text)
    assert issues == []
    assert isinstance(data, dict)
    assert data["steps"]["s"]["inputs"]["r99"] == [1] * (per_alias - 1)
    _, issues = parse_manifest_text(text.replace("r0: *big", "r0: *big, extra: *big"))
    assert "aliases expand to more than" in issues[0].message


def test_ordinary_anchors_still_work() -> None:
    text = (
        "id: f\nversion: '1'\n"
        "x-retry: &retry {maxAttempts: 5, initialIntervalSeconds: 2}\n"
        "steps:\n" + "".join(f"  s{n}: {{type: T, retry: *retry}}\n" for n in range(50))
    )
    data, issues = parse_manifest_text(text)
    assert issues == []
    assert isinstance(data, dict)
    del data["x-retry"]
    manifest = load_manifest(data)
    assert {step.retry.max_attempts for step in manifest.steps.values() if step.retry} == {5}
