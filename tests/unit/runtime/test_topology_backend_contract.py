"""The topology backend contract on the in-memory namespace (issue 9.25)."""

from __future__ import annotations

import pytest

from floworch.runtime.servicebus.topology import InMemoryNamespace
from floworch.testing.topology_contract import NamespaceBackendContract


class TestInMemoryNamespace(NamespaceBackendContract):
    @pytest.fixture
    def backend(self) -> InMemoryNamespace:
        return InMemoryNamespace()
