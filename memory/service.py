"""The memory service: the only object the proxy talks to.

It owns the embedder, the store and the write-back worker. ``observe`` never blocks: exchanges
are queued and written (embed, then store) by a background task after the response has ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from memory import SCHEMA_VERSION
from memory.config import EmbedderConfig, MemoryConfig, StoreConfig
from memory.embedders import Embedder, make_embedder
from memory.errors import DimensionMismatchError, EmbedderError, MemoryLayerError, StoreError
from memory.recall import Recaller
from memory.store import ChromaStore, Store
from memory.types import Exchange, MemoryBlock, MemoryHit, Scope, sha256_json

log = logging.getLogger(__name__)

RETRY_BASE_S = 0.5
"""First back-off between write attempts; doubles each attempt."""


@dataclass
class WriteStats:
    """Counters of the write-back worker since start."""

    written: int = 0
    skipped: int = 0
    failed: int = 0


def memory_id(exchange: Exchange) -> str:
    """Content address of the memory an exchange becomes: the same words said again by the same
    user map to the same id, so a repeated exchange replaces rather than duplicates."""
    return sha256_json([exchange.scope.user, exchange.user_text, exchange.reply])[:32]


def memory_metadata(exchange: Exchange, embedder: str) -> dict[str, Any]:
    """What is stored beside a memory's text and vector (schema version ``SCHEMA_VERSION``)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "user": exchange.scope.user,
        "session": exchange.scope.session,
        "tier": "session" if exchange.scope.session else "user",
        "model": exchange.model,
        "endpoint": exchange.endpoint,
        "exchange_id": exchange.id,
        "event_at": exchange.started_at,
        "created_at": time.time(),
        "finished_at": exchange.finished_at,
        "embedder": embedder,
        "thinking_chars": len(exchange.thinking),
        **{k: v for k, v in exchange.metrics.items() if isinstance(v, int | float | str)},
    }


class MemoryService:
    """Recall, write-back and admin operations over one store and one embedder."""

    def __init__(self, config: MemoryConfig, store: Store, embedder: Embedder) -> None:
        self.config = config
        self.store = store
        self.embedder = embedder
        self.recaller = Recaller(store, embedder, config)
        self.stats = WriteStats()
        self._queue: asyncio.Queue[Exchange] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the store, check the embedder's dimension against it, start the writer.

        An unreachable embedder is only a warning (memory then fails open per request).

        Raises:
            StoreError: the store cannot be opened.
            DimensionMismatchError: the embedder and the stored collections disagree.
        """
        await self.store.open()
        try:
            dim = int((await self.embedder.embed(["dimension probe"])).shape[1])
        except EmbedderError as exc:
            log.warning("embedder not available at start-up (%s); will retry per request", exc)
        else:
            await self.store.check_dimension(self.embedder.name, dim)
        self._worker = asyncio.create_task(self._drain(), name="memory-writer")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Finish queued writes (up to ``timeout_s``), then stop the writer and the embedder."""
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except TimeoutError:
            log.error("shutdown: %d exchanges still queued were not written", self._queue.qsize())
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await self.embedder.aclose()
        await self.store.close()

    async def recall(self, scope: Scope, query: str) -> MemoryBlock:
        """The memory block for ``query`` in ``scope``; raises MemoryLayerError subclasses."""
        return await self.recaller.recall(scope, query)

    def observe(self, exchange: Exchange) -> None:
        """Queue a finished exchange for write-back; returns at once."""
        self._queue.put_nowait(exchange)

    async def flush(self) -> None:
        """Wait until every exchange queued so far has been written or given up."""
        await self._queue.join()

    @property
    def pending(self) -> int:
        """Exchanges waiting for write-back."""
        return self._queue.qsize()

    async def _drain(self) -> None:
        while True:
            exchange = await self._queue.get()
            try:
                await self._write_with_retries(exchange)
            finally:
                self._queue.task_done()

    async def _write_with_retries(self, exchange: Exchange) -> None:
        if not keepable(exchange):
            self.stats.skipped += 1
            return
        for attempt in range(1, self.config.write_attempts + 1):
            try:
                await self.write(exchange)
            except DimensionMismatchError as exc:
                self.stats.failed += 1
                log.error("write-back refused: %s", exc)
                return
            except MemoryLayerError as exc:
                if attempt == self.config.write_attempts:
                    self.stats.failed += 1
                    log.error("write-back of exchange %s failed: %s", exchange.id[:12], exc)
                    return
                log.warning("write-back attempt %d failed: %s", attempt, exc)
                await asyncio.sleep(RETRY_BASE_S * 2 ** (attempt - 1))
            else:
                self.stats.written += 1
                return

    async def write(self, exchange: Exchange) -> str:
        """Embed and store one exchange now; returns the memory id.

        Raises:
            EmbedderError, StoreError, DimensionMismatchError.
        """
        vector = (await self.embedder.embed([exchange.text]))[0]
        mid = memory_id(exchange)
        meta = memory_metadata(exchange, self.embedder.name)
        await self.store.upsert(exchange.scope.user, mid, vector, exchange.text, meta)
        return mid

    async def search(self, user: str, query: str, k: int) -> list[MemoryHit]:
        """The ``k`` memories of ``user`` nearest to ``query`` (no similarity floor)."""
        return await self.recaller.candidates(Scope(user), query, k)

    async def get(self, user: str, mid: str) -> MemoryHit | None:
        """One memory of ``user``, or None."""
        return await self.store.get(user, mid)

    async def delete(self, user: str, mid: str) -> bool:
        """Hard-delete one memory of ``user``; False if ``user`` has none with that id."""
        return await self.store.delete(user, mid)

    async def health(self) -> dict[str, Any]:
        """``{"store": {...}, "embedder": {...}, "writer": {...}}`` with ``ok`` flags."""
        report: dict[str, Any] = {}
        try:
            await self.store.heartbeat()
            report["store"] = {"ok": True}
        except StoreError as exc:
            report["store"] = {"ok": False, "error": str(exc)}
        try:
            dim = int((await self.embedder.embed(["health probe"])).shape[1])
            report["embedder"] = {"ok": True, "name": self.embedder.name, "dim": dim}
        except EmbedderError as exc:
            report["embedder"] = {"ok": False, "name": self.embedder.name, "error": str(exc)}
        report["writer"] = {"pending": self.pending, **vars(self.stats)}
        return report


def keepable(exchange: Exchange) -> bool:
    """Only complete, successful exchanges with a user turn and an answer become memories."""
    return exchange.status == "ok" and bool(exchange.user_text.strip() and exchange.reply.strip())


def build_memory_service(
    memory: MemoryConfig,
    store: StoreConfig,
    embedder: EmbedderConfig,
    upstream_url: str,
    session: aiohttp.ClientSession,
) -> MemoryService:
    """The default service: Chroma store and the configured embedder (nothing is opened yet)."""
    return MemoryService(memory, ChromaStore(store), make_embedder(embedder, upstream_url, session))
