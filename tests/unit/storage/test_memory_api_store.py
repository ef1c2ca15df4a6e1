"""The memory store passes the control plane's store contract."""

from collections.abc import AsyncIterator

import pytest

from floworch.storage.api_port import ApiStore
from floworch.storage.memory import MemoryStore
from floworch.testing.api_store_contract import ApiStoreContract


class TestMemoryApiStore(ApiStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore()
        yield store
        await store.close()


def test_the_memory_store_is_an_api_store() -> None:
    assert isinstance(MemoryStore(), ApiStore)
