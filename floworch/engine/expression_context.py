"""The expression context of one step execution: trigger data, loaded step rows, loop item."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from floworch.expressions import CaseInsensitiveHeaders, ExpressionEvaluationError, StepView
from floworch.model import FlowDefinition
from floworch.model.instance_key import InstanceKey
from floworch.storage.records import RunRecord, StepRecord

_NO_ITEM = object()


def scope_chain(flow: FlowDefinition, key: str) -> list[str]:
    """Prefixes from the step's own scope out to the root: ``["a.1.b.2.", "a.1.", ""]``."""
    return flow.instance(key).scope_prefixes()


def keys_to_load(flow: FlowDefinition, key: str, references: frozenset[str]) -> set[str]:
    """Every row a step's expressions may read: referenced steps in each enclosing scope, plus
    the enclosing ForEach rows (their counters; older runs' rows hold the items too)."""
    instance = flow.instance(key)
    wanted = {prefix + ref for prefix in instance.scope_prefixes() for ref in references}
    wanted.update(str(loop) for loop in instance.enclosing_loops())
    return wanted


class StepExpressionContext:
    """Implements :class:`floworch.expressions.ExpressionContext` for one step execution."""

    def __init__(
        self,
        run: RunRecord,
        rows: Mapping[str, StepRecord],
        chain: list[str],
        now: datetime,
        *,
        item: Any = _NO_ITEM,
        index: int | None = None,
    ) -> None:
        self._run = run
        self._rows = rows
        self._chain = chain
        self._now = now
        self._item = item
        self._index = index
        self._headers = CaseInsensitiveHeaders(run.trigger_headers)

    def trigger_body(self) -> Any:
        return self._run.trigger_body

    def trigger_headers(self) -> Mapping[str, str]:
        return self._headers

    def step(self, key: str) -> StepView | None:
        for prefix in self._chain:
            row = self._rows.get(prefix + key)
            if row is not None:
                return StepView(status=str(row.status), output=row.output, error=row.error)
        return None

    def item(self) -> Any:
        if self._item is _NO_ITEM:
            raise ExpressionEvaluationError(
                "item() is only available inside a ForEach body", expression="item()"
            )
        return self._item

    def index(self) -> int:
        if self._index is None:
            raise ExpressionEvaluationError(
                "index() is only available inside a ForEach body", expression="index()"
            )
        return self._index

    def now(self) -> datetime:
        return self._now


def loop_item(rows: Mapping[str, StepRecord], key: str) -> tuple[Any, int | None]:
    """The item and index of the innermost ForEach iteration a step belongs to."""
    instance = InstanceKey.parse(key)
    loop, index = instance.loop, instance.index
    if loop is None or index is None:
        return _NO_ITEM, None
    row = rows.get(str(loop))
    if row is None or not isinstance(row.state, dict) or "items" not in row.state:
        return _NO_ITEM, index  # the items have rows of their own (see Store.get_loop_item)
    items = row.state["items"]  # a run started before items had rows keeps them here
    return (items[index] if index < len(items) else None), index


NO_ITEM = _NO_ITEM
