"""The workbook parses, and its queries (and the docs' KQL) name only tables, spans, metrics and
dimensions that floworch emits: collected here from an in-memory run with the SDK."""

from __future__ import annotations

import logging
from typing import Any

from tests.unit.telemetry.test_spans import MANIFEST, Recorded, drain, engine_for, handlers
from tests.unit.telemetry.workbook_fields import (
    dimensions,
    doc_queries,
    metric_names,
    span_names,
    tables,
    workbook_queries,
)

TABLES = {"requests", "dependencies", "traces", "exceptions", "customMetrics"}


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def emitted() -> tuple[set[str], set[str], set[str]]:
    """(attribute keys, span names, metric names) of a run with a ForEach and a retry."""
    recorded = Recorded()
    keep = _Keep()
    log = logging.getLogger("floworch")
    log.addHandler(keep)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        engine, dispatcher, clock = engine_for(MANIFEST, handlers(), recorded.telemetry)
        await engine.trigger("f")
        await drain(engine, dispatcher, clock)
    finally:
        log.removeHandler(keep)
        log.setLevel(level)
    keys: set[str] = set()
    for span in recorded.finished():
        keys |= set(span.attributes or {})
    for record in keep.records:
        keys |= {k for k in vars(record) if k.startswith("floworch.")}
    metrics: set[str] = set()
    data: Any = recorded.reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                metrics.add(m.name)
                for point in m.data.data_points:
                    keys |= set(point.attributes or {})
    # Recorded by the transports, not in this run: dead letters.
    metrics.add("floworch.messages.dead_lettered")
    keys.add("floworch.reason")
    return keys, {s.name for s in recorded.finished()}, metrics


async def test_the_workbook_and_the_docs_name_only_what_floworch_emits() -> None:
    keys, spans, metrics = await emitted()
    queries = workbook_queries() + doc_queries()
    assert len(workbook_queries()) >= 4 and len(doc_queries()) >= 4
    for query in queries:
        assert tables(query) <= TABLES, query
        assert dimensions(query) <= keys, (dimensions(query) - keys, query)
        assert span_names(query) <= spans, query
        assert metric_names(query) <= metrics, query
