"""Session fixtures for the offline infrastructure checks: the templates read once, in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.infra.bicep_source import Sources

ROOT = Path(__file__).resolve().parents[3]
INFRA = ROOT / "infra" / "bicep"
MAIN = "infra/bicep/main.bicep"
TOPOLOGY = "topology/servicebus.json"


def read_sources() -> Sources:
    texts = {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(INFRA.rglob("*.bicep"))
    }
    texts[TOPOLOGY] = (ROOT / TOPOLOGY).read_text(encoding="utf-8")
    return Sources(texts)


@pytest.fixture(scope="session")
def sources() -> Sources:
    return read_sources()
