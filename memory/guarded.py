"""Circuit breakers as wrappers: an embedder or a store behind a breaker and a time budget,
with the interface of the thing it wraps (:class:`~memory.embedders.Embedder`,
:class:`~memory.store.chroma.Store`).

One breaker guards one dependency; several wrappers may share it with different budgets (the
recall path: the request's budget, tightened adaptively; the write path: the configured
ceiling). A blown budget counts as a failure of the dependency and is raised as its error
(:class:`EmbedderError`, :class:`StoreError`), so callers handle one kind of error per
dependency.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from memory.embedders import Embedder, Vectors
from memory.errors import EmbedderError, StoreError
from memory.resilience import CircuitBreaker
from memory.store.changes import Change
from memory.store.chroma import Store
from memory.types import MemoryHit

T = TypeVar("T")


async def through(
    breaker: CircuitBreaker,
    fn: Callable[[], Awaitable[T]],
    ceiling_ms: float,
    adaptive: bool,
    error: type[Exception],
    size: float = 1.0,
) -> T:
    """``fn()`` through ``breaker`` within ``ceiling_ms`` (tightened from the latency baseline
    when ``adaptive``, scaled by the call's ``size``); a blown budget is raised as ``error``.

    Raises:
        BreakerOpenError: the breaker is open (``fn`` was not called).
        error: the call exceeded its budget.
        Exception: whatever ``fn`` raised.
    """
    try:
        return await breaker.call(fn, ceiling_ms, adaptive, size)
    except TimeoutError as exc:
        raise error(f"{breaker.name} call exceeded its time budget") from exc


class GuardedEmbedder:
    """An :class:`~memory.embedders.Embedder` whose ``embed`` goes through ``breaker`` within
    ``ceiling_ms`` milliseconds (``adaptive``: see :meth:`CircuitBreaker.call`)."""

    def __init__(
        self, embedder: Embedder, breaker: CircuitBreaker, ceiling_ms: float, adaptive: bool
    ) -> None:
        self.inner = embedder
        self.breaker = breaker
        self.ceiling_ms = ceiling_ms
        self.adaptive = adaptive
        self.name = embedder.name

    async def embed(self, texts: list[str]) -> Vectors:
        """The wrapped embedder's vectors, shape ``(len(texts), dim)``. An adaptive budget
        scales with the number of texts: a batch of recalls is that many queries' work. Per
        text, a batch is cheaper than a single call (MiniLM on 2 cores: 16.5 ms for one query,
        207 ms for 64), so this errs toward waiting for a batch, and a single call learned
        after batches is still given ``min_budget_ms``.

        Raises:
            EmbedderError: the embedder failed or exceeded the budget.
            BreakerOpenError: the breaker is open.
        """
        return await through(
            self.breaker,
            lambda: self.inner.embed(texts),
            self.ceiling_ms,
            self.adaptive,
            EmbedderError,
            max(1, len(texts)),
        )

    async def aclose(self) -> None:
        """Close the wrapped embedder (not guarded: shutdown must not be refused)."""
        await self.inner.aclose()


class GuardedStore:
    """A :class:`~memory.store.chroma.Store` whose reads and writes go through ``breaker``
    within ``ceiling_ms`` milliseconds each (``adaptive``: see :meth:`CircuitBreaker.call`).
    ``open``, ``close`` and ``check_dimension`` pass through unguarded (lifecycle, not
    traffic)."""

    def __init__(
        self, store: Store, breaker: CircuitBreaker, ceiling_ms: float, adaptive: bool
    ) -> None:
        self.inner = store
        self.breaker = breaker
        self.ceiling_ms = ceiling_ms
        self.adaptive = adaptive

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await through(self.breaker, fn, self.ceiling_ms, self.adaptive, StoreError)

    async def open(self) -> None:
        """Open the wrapped store."""
        await self.inner.open()

    async def close(self) -> None:
        """Close the wrapped store."""
        await self.inner.close()

    async def check_dimension(self, embedder: str, dim: int) -> None:
        """See :meth:`Store.check_dimension`."""
        await self.inner.check_dimension(embedder, dim)

    async def upsert(
        self, user: str, memory_id: str, vector: Vectors, text: str, metadata: dict[str, Any]
    ) -> None:
        """See :meth:`Store.upsert`."""
        await self._call(lambda: self.inner.upsert(user, memory_id, vector, text, metadata))

    async def upsert_many(
        self,
        user: str,
        ids: list[str],
        vectors: Vectors,
        texts: list[str],
        metadatas: list[dict[str, Any]],
    ) -> None:
        """See :meth:`Store.upsert_many`."""
        await self._call(lambda: self.inner.upsert_many(user, ids, vectors, texts, metadatas))

    async def query(self, user: str, vector: Vectors, k: int) -> list[MemoryHit]:
        """See :meth:`Store.query`."""
        return await self._call(lambda: self.inner.query(user, vector, k))

    async def get(self, user: str, memory_id: str) -> MemoryHit | None:
        """See :meth:`Store.get`."""
        return await self._call(lambda: self.inner.get(user, memory_id))

    async def delete(self, user: str, memory_id: str) -> bool:
        """See :meth:`Store.delete`."""
        return await self._call(lambda: self.inner.delete(user, memory_id))

    async def heartbeat(self) -> None:
        """See :meth:`Store.heartbeat`."""
        await self._call(self.inner.heartbeat)

    async def all(self, user: str, batch: int = 500) -> list[MemoryHit]:
        """See :meth:`Store.all`."""
        return await self._call(lambda: self.inner.all(user, batch))

    async def snapshot(self, user: str, batch: int = 500) -> tuple[list[MemoryHit], Vectors]:
        """See :meth:`Store.snapshot`."""
        return await self._call(lambda: self.inner.snapshot(user, batch))

    async def update_metadata(self, user: str, updates: dict[str, dict[str, Any]]) -> None:
        """See :meth:`Store.update_metadata`."""
        await self._call(lambda: self.inner.update_metadata(user, updates))

    async def users(self) -> list[str]:
        """See :meth:`Store.users`."""
        return await self._call(self.inner.users)

    async def fetch(self, user: str, ids: list[str]) -> tuple[list[MemoryHit], Vectors]:
        """See :meth:`Store.fetch`."""
        return await self._call(lambda: self.inner.fetch(user, ids))

    @property
    def logs_changes(self) -> bool:
        """See :meth:`Store.logs_changes`."""
        return self.inner.logs_changes

    async def changes(self, since: float) -> list[Change]:
        """See :meth:`Store.changes`."""
        return await self._call(lambda: self.inner.changes(since))

    async def prune_changes(self, before: float) -> None:
        """See :meth:`Store.prune_changes`."""
        await self._call(lambda: self.inner.prune_changes(before))
