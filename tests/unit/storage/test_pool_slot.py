"""An exhausted connection pool ends in one error that names the database and what to change."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.engine import make_url

from floworch.errors import StorageUnavailableError
from floworch.storage.sql.database import acquire_pool_slot


async def test_an_exhausted_pool_says_so_and_hides_the_password() -> None:
    url = make_url("postgresql+psycopg://app:secret@db.example:5432/floworch")
    with pytest.raises(StorageUnavailableError) as caught:
        await acquire_pool_slot(asyncio.Semaphore(0), 0.01, url)
    message = str(caught.value)
    assert "pool exhausted" in message and "within 0.01 s" in message
    assert "secret" not in message


async def test_a_free_slot_is_taken() -> None:
    slots = asyncio.Semaphore(1)
    await acquire_pool_slot(slots, 1, make_url("sqlite://"))
    assert slots.locked()
