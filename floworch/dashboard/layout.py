"""A left-to-right layered layout of a flow's DAG, computed once per flow for the dashboard.

Each scope (the top level, each ForEach body) is laid out on its own: a step's layer is the
longest ``runAfter`` path from an entry step, the order within a layer is refined by a few
barycenter sweeps (fewer crossings), and a ForEach step becomes a group box holding its body's
layout. Coordinates are absolute SVG user units; the browser only draws.

Node keys are step templates: ``fetch`` at the top level, ``each.*.charge`` inside a ForEach
(the same pattern the stats use), so a run's instance keys (``each.3.charge``) map onto them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from floworch.model.manifest import FOR_EACH, FlowManifest, StepSpec

NODE_WIDTH = 180.0
NODE_HEIGHT = 46.0
LAYER_GAP = 90.0
ROW_GAP = 18.0
GROUP_PAD = 14.0
GROUP_HEADER = 26.0
SWEEPS = 4
_DEFAULT_STATUSES = ["Succeeded"]


@dataclass(frozen=True)
class LaidNode:
    """One step drawn as a box (a ForEach step is a group box around its body)."""

    key: str
    step_key: str
    type: str
    x: float
    y: float
    width: float
    height: float
    parent: str | None
    group: bool
    depth: int


@dataclass(frozen=True)
class LaidEdge:
    """A ``runAfter`` dependency: from the predecessor's right side to the step's left side."""

    source: str
    target: str
    points: tuple[tuple[float, float], ...]
    label: str | None


@dataclass(frozen=True)
class FlowLayout:
    """The whole drawing: boxes in drawing order (groups before their children) and edges."""

    width: float
    height: float
    nodes: tuple[LaidNode, ...]
    edges: tuple[LaidEdge, ...]


@dataclass
class _Box:
    """A scope's layout relative to its own top-left corner."""

    width: float = 0.0
    height: float = 0.0
    nodes: list[LaidNode] = field(default_factory=list)
    edges: list[LaidEdge] = field(default_factory=list)


def layout_flow(manifest: FlowManifest) -> FlowLayout:
    """Lays out every step of ``manifest`` left to right (ForEach bodies as nested groups)."""
    box = _layout_scope(manifest.steps, "", None, 0)
    return FlowLayout(
        width=round(box.width, 1),
        height=round(box.height, 1),
        nodes=tuple(box.nodes),
        edges=tuple(box.edges),
    )


def _layers(steps: Mapping[str, StepSpec]) -> dict[str, int]:
    layer: dict[str, int] = {}
    remaining = dict(steps)
    while remaining:  # manifests are validated acyclic; the guard keeps a bad one finite
        progressed = False
        for key, spec in list(remaining.items()):
            preds = [p for p in spec.run_after if p in steps]
            if all(p in layer for p in preds):
                layer[key] = 1 + max((layer[p] for p in preds), default=-1)
                del remaining[key]
                progressed = True
        if not progressed:
            for key in remaining:
                layer[key] = 0
            break
    return layer


def _order(steps: Mapping[str, StepSpec], layer: Mapping[str, int]) -> list[list[str]]:
    count = 1 + max(layer.values(), default=-1)
    rows: list[list[str]] = [[] for _ in range(count)]
    for key in steps:  # manifest order first
        rows[layer[key]].append(key)
    preds = {k: [p for p in s.run_after if p in steps] for k, s in steps.items()}
    succs: dict[str, list[str]] = {k: [] for k in steps}
    for key, ps in preds.items():
        for p in ps:
            succs[p].append(key)

    def sweep(index: int, neighbours: Mapping[str, list[str]], ref: list[str]) -> None:
        pos = {k: i for i, k in enumerate(ref)}
        current = {k: i for i, k in enumerate(rows[index])}

        def weight(key: str) -> float:
            near = [pos[n] for n in neighbours[key] if n in pos]
            return sum(near) / len(near) if near else float(current[key])

        rows[index].sort(key=lambda k: (weight(k), current[k]))

    for _ in range(SWEEPS):
        for i in range(1, count):
            sweep(i, preds, rows[i - 1])
        for i in range(count - 2, -1, -1):
            sweep(i, succs, rows[i + 1])
    return rows


def _edge_label(statuses: list[str], when: str | None) -> str | None:
    parts: list[str] = []
    if statuses != _DEFAULT_STATUSES:
        parts.append(", ".join(statuses) if statuses else "any")
    if when:
        parts.append(f"when {when}")
    return "; ".join(parts) or None


def _layout_scope(
    steps: Mapping[str, StepSpec], prefix: str, parent: str | None, depth: int
) -> _Box:
    layer = _layers(steps)
    rows = _order(steps, layer)
    inner: dict[str, _Box] = {}
    size: dict[str, tuple[float, float]] = {}
    for key, spec in steps.items():
        if spec.type == FOR_EACH and spec.steps:
            body = _layout_scope(spec.steps, f"{prefix}{key}.*.", f"{prefix}{key}", depth + 1)
            inner[key] = body
            size[key] = (
                max(NODE_WIDTH, body.width + 2 * GROUP_PAD),
                body.height + GROUP_HEADER + 2 * GROUP_PAD,
            )
        else:
            size[key] = (NODE_WIDTH, NODE_HEIGHT)
    widths = [max(size[k][0] for k in row) for row in rows]
    heights = [sum(size[k][1] for k in row) + ROW_GAP * (len(row) - 1) for row in rows]
    total_h = max(heights, default=0.0)
    box = _Box(
        width=sum(widths) + LAYER_GAP * max(0, len(rows) - 1),
        height=total_h,
    )
    place: dict[str, tuple[float, float, float, float]] = {}
    x = 0.0
    for row, col_w, col_h in zip(rows, widths, heights, strict=True):
        y = (total_h - col_h) / 2
        for key in row:
            w, h = size[key]
            place[key] = (x + (col_w - w) / 2, y, w, h)
            y += h + ROW_GAP
        x += col_w + LAYER_GAP
    for key in steps:
        nx, ny, w, h = place[key]
        node_key = f"{prefix}{key}"
        box.nodes.append(
            LaidNode(
                key=node_key,
                step_key=key,
                type=steps[key].type,
                x=round(nx, 1),
                y=round(ny, 1),
                width=round(w, 1),
                height=round(h, 1),
                parent=parent,
                group=key in inner,
                depth=depth,
            )
        )
        nested = inner.get(key)
        if nested is not None:
            dx = nx + (w - nested.width) / 2
            dy = ny + GROUP_HEADER + GROUP_PAD
            box.nodes.extend(_shift_node(n, dx, dy) for n in nested.nodes)
            box.edges.extend(_shift_edge(e, dx, dy) for e in nested.edges)
    for key, spec in steps.items():
        tx, ty, _, th = place[key]
        for pred, rule in spec.run_after.items():
            if pred not in place:
                continue
            sx, sy, sw, sh = place[pred]
            start = (round(sx + sw, 1), round(sy + sh / 2, 1))
            end = (round(tx, 1), round(ty + th / 2, 1))
            box.edges.append(
                LaidEdge(
                    source=f"{prefix}{pred}",
                    target=f"{prefix}{key}",
                    points=(start, end),
                    label=_edge_label(list(rule.statuses), rule.when),
                )
            )
    return box


def _shift_node(node: LaidNode, dx: float, dy: float) -> LaidNode:
    return LaidNode(
        key=node.key,
        step_key=node.step_key,
        type=node.type,
        x=round(node.x + dx, 1),
        y=round(node.y + dy, 1),
        width=node.width,
        height=node.height,
        parent=node.parent,
        group=node.group,
        depth=node.depth,
    )


def _shift_edge(edge: LaidEdge, dx: float, dy: float) -> LaidEdge:
    return LaidEdge(
        source=edge.source,
        target=edge.target,
        points=tuple((round(x + dx, 1), round(y + dy, 1)) for x, y in edge.points),
        label=edge.label,
    )
