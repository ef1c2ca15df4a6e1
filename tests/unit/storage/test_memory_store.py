"""The memory store passes the shared store contract."""

from collections.abc import AsyncIterator

import pytest

from floworch.storage.memory import MemoryStore
from floworch.testing.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore()
        yield store
        await store.close()
