"""to_mermaid: flowchart export."""

from __future__ import annotations

from floworch.model import load_manifest, to_mermaid

from .example_manifest import example


def test_example_as_mermaid() -> None:
    data = example()
    data["steps"]["audit"] = {"type": "Audit", "runAfter": {"ship": []}}
    assert to_mermaid(load_manifest(data)) == (
        "flowchart TD\n"
        '  fetch["fetch: FetchOrders"]\n'
        "  subgraph each [\"each: ForEach @steps('fetch').output.orders\"]\n"
        "    direction TB\n"
        '    each__charge["charge: Charge"]\n'
        "  end\n"
        '  approve["approve: WaitForSignal"]\n'
        '  ship["ship: Ship"]\n'
        '  notify["notify: Notify"]\n'
        '  audit["audit: Audit"]\n'
        "  fetch --> each\n"
        "  each --> approve\n"
        "  approve -->|\"when @steps('approve').output.approved == true\"| ship\n"
        '  each -->|"Failed, TimedOut"| notify\n'
        '  ship -->|"any"| audit\n'
    )


def test_body_edges_stay_in_the_subgraph_and_labels_are_escaped() -> None:
    data = example()
    body = data["steps"]["each"]["steps"]
    body["receipt"] = {
        "type": "Mail",
        "runAfter": {"charge": {"statuses": [], "when": "@steps('charge').output.note == '<x>'"}},
    }
    text = to_mermaid(load_manifest(data))
    assert (
        "    each__charge -->|\"any; when @steps('charge').output.note == '#lt;x#gt;'\"|"
        " each__receipt\n"
    ) in text
