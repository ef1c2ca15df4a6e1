"""A store that fails on purpose, for tests of what runtimes do when the store misbehaves.

Wrap any store (memory or SQL); then, while :attr:`StoreFaults.down` is set, every call raises
:class:`~floworch.errors.StorageUnavailableError` as an unreachable database would, and a step
claim of a run in :attr:`StoreFaults.poisoned_runs` raises a ``RuntimeError`` (an exception
nobody raised on purpose: a bug that repeats); :attr:`StoreFaults.refuse_claims` fails just the
next few step claims. Example::

    faults = StoreFaults()
    store = faulty_store(MemoryStore(), faults)
    faults.down = True   # the database is gone
    faults.down = False  # and back
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from floworch.errors import StorageUnavailableError
from floworch.storage.port import Store, StoreTx


@dataclass
class StoreFaults:
    """The faults a :func:`faulty_store` shows now (change them at any time).

    Attributes:
        down: every store call fails as if the database were unreachable.
        poisoned_runs: run ids whose step claims raise an unexpected ``RuntimeError``.
        unavailable_runs: run ids whose step claims fail as if the store were down.
        refuse_claims: the next this many step claims fail as if the store were down.
        calls_refused: how many calls failed because the store was down.
    """

    down: bool = False
    poisoned_runs: set[str] = field(default_factory=set)
    unavailable_runs: set[str] = field(default_factory=set)
    refuse_claims: int = 0
    calls_refused: int = 0

    def check(self, what: str) -> None:
        if self.down:
            self.calls_refused += 1
            raise StorageUnavailableError(f"the test store is down ({what} refused)")


class _FaultyTx:
    def __init__(self, inner: StoreTx, faults: StoreFaults) -> None:
        self._inner = inner
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target
        return _guard(target, self._faults, name)


class _FaultyStore:
    def __init__(self, inner: Store, faults: StoreFaults) -> None:
        self._inner = inner
        self._faults = faults

    def transaction(self) -> AbstractAsyncContextManager[StoreTx]:
        return self._tx(self._inner.transaction)

    def run_transaction(
        self, run_id: str, *, steps: Collection[str] = ()
    ) -> AbstractAsyncContextManager[StoreTx]:
        return self._tx(lambda: self._inner.run_transaction(run_id, steps=steps))

    @asynccontextmanager
    async def _tx(
        self, opener: Callable[[], AbstractAsyncContextManager[StoreTx]]
    ) -> AsyncIterator[StoreTx]:
        self._faults.check("transaction")
        async with opener() as tx:
            yield cast(StoreTx, _FaultyTx(tx, self._faults))
            self._faults.check("commit")

    async def close(self) -> None:
        await self._inner.close()

    async def claim_step(self, run_id: str, *args: Any, **kwargs: Any) -> Any:
        self._faults.check("claim_step")
        refuse = run_id in self._faults.unavailable_runs
        if not refuse and self._faults.refuse_claims > 0:
            self._faults.refuse_claims -= 1
            refuse = True
        if refuse:
            self._faults.calls_refused += 1
            raise StorageUnavailableError("the test store refused a step claim")
        if run_id in self._faults.poisoned_runs:
            raise RuntimeError(f"claiming a step of run {run_id} hit a bug (test poison)")
        return await self._inner.claim_step(run_id, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target
        return _guard(target, self._faults, name)


def _guard(target: Callable[..., Any], faults: StoreFaults, name: str) -> Callable[..., Any]:
    @functools.wraps(target)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        faults.check(name)
        return await target(*args, **kwargs)

    return guarded


def faulty_store(inner: Store, faults: StoreFaults) -> Store:
    """``inner``, failing as ``faults`` says."""
    return cast(Store, _FaultyStore(inner, faults))
