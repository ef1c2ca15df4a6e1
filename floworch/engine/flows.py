"""The registry of flows an engine knows: compiled definitions by flow id."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from floworch.errors import FlowNotFoundError
from floworch.model import FlowDefinition, FlowManifest


class FlowRegistry:
    """Flow definitions by id. Pass one to the engine; it is an ordinary object, not a global."""

    def __init__(self, flows: Iterable[FlowManifest | FlowDefinition] = ()) -> None:
        self._flows: dict[str, FlowDefinition] = {}
        for flow in flows:
            self.add(flow)

    def add(self, flow: FlowManifest | FlowDefinition) -> FlowDefinition:
        """Adds or replaces a flow; returns its compiled definition."""
        definition = (
            flow if isinstance(flow, FlowDefinition) else FlowDefinition.from_manifest(flow)
        )
        self._flows[definition.id] = definition
        return definition

    def get(self, flow_id: str) -> FlowDefinition:
        """The definition of a flow.

        Raises:
            FlowNotFoundError: no flow with that id.
        """
        found = self._flows.get(flow_id)
        if found is None:
            raise FlowNotFoundError(flow_id)
        return found

    def find(self, flow_id: str) -> FlowDefinition | None:
        """The definition of a flow, or None."""
        return self._flows.get(flow_id)

    def __iter__(self) -> Iterator[FlowDefinition]:
        return iter(self._flows[key] for key in sorted(self._flows))

    def __len__(self) -> int:
        return len(self._flows)

    def ids(self) -> list[str]:
        """Every flow id, sorted."""
        return sorted(self._flows)
