"""The DAG layout the dashboard draws: left to right, ForEach bodies inside their group."""

from __future__ import annotations

from typing import Any

from floworch.dashboard.layout import LaidNode, layout_flow
from floworch.model import load_manifest


def _manifest(steps: dict[str, Any]) -> Any:
    return load_manifest({"id": "f", "version": "1", "steps": steps})


def _overlap(a: LaidNode, b: LaidNode) -> bool:
    return not (
        a.x + a.width <= b.x
        or b.x + b.width <= a.x
        or a.y + a.height <= b.y
        or b.y + b.height <= a.y
    )


ORDERS = {
    "fetch": {"type": "Fetch"},
    "each": {
        "type": "ForEach",
        "forEach": "@steps('fetch').output",
        "runAfter": {"fetch": ["Succeeded"]},
        "steps": {
            "charge": {"type": "Charge"},
            "mail": {"type": "Mail", "runAfter": {"charge": []}},
        },
    },
    "approve": {
        "type": "WaitForSignal",
        "inputs": {"signalName": "ok"},
        "runAfter": {"each": ["Succeeded"]},
    },
    "notify": {"type": "Notify", "runAfter": {"each": ["Failed", "TimedOut"]}},
    "ship": {
        "type": "Ship",
        "runAfter": {"approve": {"statuses": ["Succeeded"], "when": "@true"}},
    },
}


def test_steps_flow_left_to_right_in_layers() -> None:
    drawn = layout_flow(_manifest(ORDERS))
    x = {n.key: n.x for n in drawn.nodes}
    assert x["fetch"] < x["each"] < x["approve"] < x["ship"]
    assert x["approve"] == x["notify"]  # same layer, stacked
    assert [n.key for n in drawn.nodes][:2] == ["fetch", "each"]


def test_a_foreach_body_sits_inside_its_group_with_template_keys() -> None:
    drawn = layout_flow(_manifest(ORDERS))
    nodes = {n.key: n for n in drawn.nodes}
    group = nodes["each"]
    assert group.group and not nodes["fetch"].group
    for key in ("each.*.charge", "each.*.mail"):
        child = nodes[key]
        assert child.parent == "each" and child.depth == 1
        assert group.x < child.x and child.x + child.width < group.x + group.width
        assert group.y < child.y and child.y + child.height < group.y + group.height
    assert nodes["each.*.charge"].x < nodes["each.*.mail"].x


def test_edges_run_from_the_predecessor_to_the_step_with_labels() -> None:
    drawn = layout_flow(_manifest(ORDERS))
    nodes = {n.key: n for n in drawn.nodes}
    edges = {(e.source, e.target): e for e in drawn.edges}
    assert set(edges) == {
        ("fetch", "each"),
        ("each", "approve"),
        ("each", "notify"),
        ("approve", "ship"),
        ("each.*.charge", "each.*.mail"),
    }
    start, end = edges[("fetch", "each")].points
    assert start[0] == nodes["fetch"].x + nodes["fetch"].width
    assert end[0] == nodes["each"].x
    assert edges[("fetch", "each")].label is None
    assert edges[("each", "notify")].label == "Failed, TimedOut"
    assert edges[("approve", "ship")].label == "when @true"
    assert edges[("each.*.charge", "each.*.mail")].label == "any"


def test_two_hundred_steps_lay_out_without_overlap_inside_the_drawing() -> None:
    steps: dict[str, Any] = {}
    for i in range(200):
        preds = [f"s{j}" for j in (i - 1, i - 7) if j >= 0 and i % 3]
        steps[f"s{i}"] = {"type": "Work", "runAfter": {p: ["Succeeded"] for p in preds}}
    drawn = layout_flow(_manifest(steps))
    assert len(drawn.nodes) == 200
    for node in drawn.nodes:
        assert node.x >= 0 and node.x + node.width <= drawn.width
        assert node.y >= 0 and node.y + node.height <= drawn.height
    by_layer: dict[float, list[LaidNode]] = {}
    for node in drawn.nodes:
        by_layer.setdefault(node.x, []).append(node)
    for column in by_layer.values():
        for i, a in enumerate(column):
            for b in column[i + 1 :]:
                assert not _overlap(a, b), (a.key, b.key)


def test_barycenter_ordering_keeps_chains_straight() -> None:
    steps = {
        "a": {"type": "T"},
        "b": {"type": "T"},
        "b2": {"type": "T", "runAfter": {"b": []}},
        "a2": {"type": "T", "runAfter": {"a": []}},
    }
    # Listed crosswise in the manifest (a over b, b2 over a2): the sweeps uncross them.
    drawn = layout_flow(_manifest(steps))
    y = {n.key: n.y for n in drawn.nodes}
    assert (y["a"] < y["b"]) == (y["a2"] < y["b2"])
