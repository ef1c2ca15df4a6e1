"""The memory store passes the host-lease contract."""

from __future__ import annotations

import pytest

from floworch.storage.leases import HostLeases
from floworch.storage.memory import MemoryStore
from floworch.testing.lease_contract import LeaseContract


class TestMemoryLeases(LeaseContract):
    @pytest.fixture
    def leases(self) -> HostLeases:
        store = MemoryStore()
        assert isinstance(store, HostLeases)
        return store
