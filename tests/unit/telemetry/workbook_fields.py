"""What the Application Insights workbook (docs/observability/workbook.json) and the KQL of
docs/observability.md and docs/deploy.md refer to: tables, span names, metric names,
customDimensions keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
WORKBOOK = ROOT / "docs" / "observability" / "workbook.json"
DOCS = (ROOT / "docs" / "observability.md", ROOT / "docs" / "deploy.md")


def workbook_queries() -> list[str]:
    document = json.loads(WORKBOOK.read_text())
    return [
        item["content"]["query"]
        for item in document["items"]
        if item.get("type") == 3 and item["content"].get("version") == "KqlItem/1.0"
    ]


def doc_queries() -> list[str]:
    return [
        query
        for doc in DOCS
        for query in re.findall(r"```kusto\n(.*?)```", doc.read_text(), flags=re.S)
    ]


def dimensions(query: str) -> set[str]:
    return set(re.findall(r'customDimensions\["([^"]+)"\]', query))


def span_names(query: str) -> set[str]:
    return set(re.findall(r'name == "(flow\.[a-z.]+)"', query))


def metric_names(query: str) -> set[str]:
    return set(re.findall(r'name == "(floworch\.[a-z_.]+)"', query))


def tables(query: str) -> set[str]:
    found = set(re.findall(r"^\s*(?:union\s+)?([A-Za-z]+)\s*$", query.splitlines()[0]))
    found |= set(re.findall(r"union\s+([A-Za-z, ]+)", query))
    return {t.strip() for part in found for t in part.split(",") if t.strip()}
