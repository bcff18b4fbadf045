"""The memory service: the only object the proxy talks to.

It owns the embedder, the store and the write-back worker. ``observe`` never blocks: exchanges
are queued and written (embed, then store) by a background task after the response has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import aiohttp
import numpy as np

from memory import SCHEMA_VERSION
from memory.config import (
    EmbedderConfig,
    MemoryConfig,
    ResilienceConfig,
    StoreConfig,
    default_outbox_path,
)
from memory.embedders import Embedder, Vectors, make_embedder
from memory.errors import EmbedderError, MemoryLayerError, StoreError
from memory.index import UserIndex
from memory.outbox import Outbox, OutboxRow
from memory.recall import Recaller
from memory.resilience import CircuitBreaker
from memory.store import ChromaStore, Store, to_chroma_metadata
from memory.types import Exchange, MemoryBlock, MemoryHit, Scope, sha256_json

log = logging.getLogger(__name__)
T = TypeVar("T")

INGEST_ENDPOINT = "ingest"
"""``Exchange.endpoint`` of memories loaded by ``symbiotic-memory ingest``."""
POLL_S = 0.01
"""How often ``flush`` looks at the outbox."""


@dataclass
class WriteStats:
    """Counters of the write-back path since start."""

    queued: int = 0
    written: int = 0
    skipped: int = 0
    failed_attempts: int = 0


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
        "speaker": exchange.speaker,
        "strength": 1.0,
        "access_count": 0,
        "valence": 0.0,
        "provenance": [exchange.id],
        **{k: v for k, v in exchange.metrics.items() if isinstance(v, int | float | str)},
    }


class MemoryService:
    """Recall, write-back and admin operations over one store, one embedder and one outbox."""

    def __init__(
        self,
        config: MemoryConfig,
        store: Store,
        embedder: Embedder,
        outbox: Outbox,
        resilience: ResilienceConfig | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.embedder = embedder
        self.outbox = outbox
        self.resilience = resilience or ResilienceConfig()
        self.breakers = {
            name: CircuitBreaker(
                name,
                self.resilience.failure_threshold,
                self.resilience.reset_timeout_s,
                self.resilience.min_budget_ms,
            )
            for name in ("embedder", "store")
        }
        self.recaller = Recaller(self._recall_embed, self._recall_query, config, self._index_for)
        self._index: dict[str, UserIndex] = {}
        self._index_added: dict[str, list[tuple[list[MemoryHit], Vectors]]] = {}
        self._index_reload: set[str] = set()
        self._index_tasks: dict[str, asyncio.Task[None]] = {}
        self._accessed: dict[str, dict[str, float]] = {}
        self.stats = WriteStats()
        self._wake = asyncio.Event()
        self._urgent = False
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take the outbox, open the store, check dimensions, start the writer (which first
        replays what a previous run left in the outbox).

        An unreachable embedder is only a warning (memory then fails open per request).

        Raises:
            OutboxBusyError: another process owns the outbox.
            StoreError: the store or the outbox cannot be opened.
            DimensionMismatchError: the embedder and the stored collections disagree.
        """
        self.outbox.open()
        try:
            await self.store.open()
            try:
                dim = int((await self.embedder.embed(["dimension probe"])).shape[1])
            except EmbedderError as exc:
                log.warning("embedder not available at start-up (%s); will retry per request", exc)
            else:
                await self.store.check_dimension(self.embedder.name, dim)
        except BaseException:
            self.outbox.close()
            raise
        if waiting := self.outbox.count():
            log.info("replaying %d exchanges left in the outbox", waiting)
            self.outbox.retry_all_now()
        self._worker = asyncio.create_task(self._drain(), name="memory-writer")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Try to write what is queued (up to ``timeout_s``), then stop. Rows still queued stay
        in the outbox for the next start."""
        if self._worker is not None:
            if not await self.flush(timeout_s):
                log.warning("shutdown: %d exchanges stay in the outbox", self.outbox.count())
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for task in list(self._index_tasks.values()):
            task.cancel()
        await asyncio.gather(*self._index_tasks.values(), return_exceptions=True)
        with contextlib.suppress(MemoryLayerError):
            await self._flush_access()
        self.outbox.close()
        await self.embedder.aclose()
        await self.store.close()

    async def recall(
        self,
        scope: Scope,
        query: str,
        knobs: Mapping[str, float] | None = None,
        in_context: frozenset[str] = frozenset(),
    ) -> MemoryBlock:
        """The memory block for ``query`` in ``scope``; raises MemoryLayerError subclasses.
        ``in_context``: user turns the request already carries (their memories are left out).

        The injected memories' ``access_count`` and ``last_access_at`` are updated in the
        store later, by the writer (never on the response path)."""
        block = await self.recaller.recall(scope, query, knobs, in_context)
        if block.ids:
            now = time.time()
            touched = self._accessed.setdefault(scope.user, {})
            for mid in block.ids:
                touched[mid] = now
        return block

    def observe(self, exchange: Exchange) -> bool:
        """Durably queue a finished exchange for write-back (an outbox append, well under a
        millisecond); returns False when the exchange is not one to remember.

        Raises:
            StoreError: the outbox could not take it.
        """
        if not keepable(exchange):
            self.stats.skipped += 1
            return False
        self.outbox.append(exchange)
        self.stats.queued += 1
        self._wake.set()
        return True

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Retry every queued exchange now and wait until the outbox is empty.

        Returns False if ``timeout_s`` passed first (the rows stay queued).
        """
        self.outbox.retry_all_now()
        self._urgent = True
        self._wake.set()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while self.outbox.count():
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(POLL_S)
            return True
        finally:
            self._urgent = False

    @property
    def pending(self) -> int:
        """Exchanges waiting in the outbox."""
        return self.outbox.count()

    async def _drain(self) -> None:
        while True:
            rows = self.outbox.due(time.time())
            if not rows:
                self._wake.clear()
                next_at = self.outbox.next_due_at()
                timeout = None if next_at is None else max(0.0, next_at - time.time())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel
                        await self._wake.wait()
                if not self._urgent:  # let the answer finish and more exchanges gather
                    await asyncio.sleep(self.config.write_delay_ms / 1000)
                await self._flush_access_quietly()
                continue
            await self._write_rows(rows)
            await self._flush_access_quietly()

    async def _flush_access_quietly(self) -> None:
        try:
            await self._flush_access()
        except MemoryLayerError as exc:
            log.warning("access statistics not saved yet: %s", exc)

    async def _flush_access(self) -> None:
        """Write ``access_count`` / ``last_access_at`` of recalled memories (one update per
        user). Counts are read from the in-memory index, which is updated in place; a memory
        not in the index only gets its ``last_access_at``. Kept for the next try on failure."""
        while self._accessed:
            user, touched = self._accessed.popitem()
            index = self._index.get(user)
            updates: dict[str, dict[str, Any]] = {}
            for mid, at in touched.items():
                update: dict[str, Any] = {"last_access_at": at}
                record = index.record(mid) if index is not None else None
                if record is not None:
                    count = record.metadata.get("access_count", 0)
                    update["access_count"] = (count if isinstance(count, int) else 0) + 1
                    record.metadata.update(update)
                updates[mid] = update
            try:
                await self._guarded(
                    "store",
                    functools.partial(self.store.update_metadata, user, updates),
                    self.resilience.store_timeout_ms,
                    False,
                )
            except MemoryLayerError:
                pending = self._accessed.setdefault(user, {})
                for mid, at in touched.items():
                    pending.setdefault(mid, at)
                raise

    async def _write_rows(self, rows: list[OutboxRow]) -> None:
        """Write a batch: one embedding call for all, one store call per user. A failure puts
        the rows it concerns back for a later attempt; the others are done."""
        try:
            vectors = await self._embed_for_write([row.exchange.text for row in rows])
        except MemoryLayerError as exc:
            self._retry_later(rows, exc)
            return
        by_user: dict[str, list[int]] = {}
        for index, row in enumerate(rows):
            by_user.setdefault(row.exchange.scope.user, []).append(index)
        for user, indices in by_user.items():
            batch = [rows[i] for i in indices]
            try:
                hits = await self._store_batch(user, [r.exchange for r in batch], vectors[indices])
            except MemoryLayerError as exc:
                self._retry_later(batch, exc)
                continue
            for row in batch:
                self.outbox.done(row.seq)
            self.stats.written += len(batch)
            self._index_changed(user, (hits, vectors[indices]))

    def _retry_later(self, rows: list[OutboxRow], exc: Exception) -> None:
        for row in rows:
            delay = min(self.config.retry_max_s, self.config.retry_base_s * 2**row.attempts)
            self.outbox.retry_later(row.seq, str(exc), delay)
        self.stats.failed_attempts += len(rows)
        log.warning(
            "write-back of %d exchanges failed (next try in >= %.1fs): %s",
            len(rows),
            self.config.retry_base_s,
            exc,
        )

    async def _guarded(
        self, name: str, fn: Callable[[], Awaitable[T]], ceiling_ms: float, adaptive: bool
    ) -> T:
        """``fn()`` through the named breaker; a blown budget becomes that dependency's error."""
        try:
            return await self.breakers[name].call(fn, ceiling_ms, adaptive)
        except TimeoutError as exc:
            error = EmbedderError if name == "embedder" else StoreError
            raise error(f"{name} call exceeded its time budget") from exc

    async def _recall_embed(self, texts: list[str]) -> Vectors:
        ceiling = min(self.resilience.embed_timeout_ms, self.config.timeout_ms)
        return await self._guarded("embedder", lambda: self.embedder.embed(texts), ceiling, True)

    def _index_for(self, user: str) -> UserIndex | None:
        """The user's in-memory index for recall, or None (then recall asks the store); the
        first recall of a user starts building it."""
        index = self._index.get(user)
        if index is None:
            self._index_changed(user)
        return index

    def _index_changed(
        self, user: str, added: tuple[list[MemoryHit], Vectors] | None = None
    ) -> None:
        """Memories of ``user`` were written (``added``: their records and vectors) or deleted
        (None): extend the index, or reload it from the store, in the background."""
        if added is not None:
            if user not in self._index and user not in self._index_tasks:
                return  # not loaded: built from the store at the user's first recall
            self._index_added.setdefault(user, []).append(added)
        else:
            self._index_reload.add(user)
        if user not in self._index_tasks:
            task = asyncio.create_task(self._update_index(user), name=f"index-{user[:16]}")
            self._index_tasks[user] = task

    async def _update_index(self, user: str) -> None:
        try:
            while user in self._index_reload or self._index_added.get(user):
                if user in self._index_reload or user not in self._index:
                    self._index_reload.discard(user)
                    self._index_added.pop(user, None)  # the reload sees them
                    hits, vectors = await self.store.snapshot(user)
                    dense = vectors if vectors.shape[0] == len(hits) and len(hits) else None
                    self._index[user] = await asyncio.to_thread(UserIndex, hits, dense)
                    continue
                batches = self._index_added.pop(user, [])
                hits = [h for batch_hits, _ in batches for h in batch_hits]
                vectors = np.vstack([v for _, v in batches])
                current = self._index[user]
                self._index[user] = await asyncio.to_thread(current.merged, hits, vectors)
        except MemoryLayerError as exc:
            log.warning("memory index not rebuilt, recall asks the store for now: %s", exc)
        finally:
            self._index_tasks.pop(user, None)

    async def index_ready(self, user: str) -> None:
        """Wait until the user's in-memory index reflects every memory written so far."""
        if user not in self._index:
            self._index_changed(user)
        while (task := self._index_tasks.get(user)) is not None:
            await asyncio.shield(task)

    async def _recall_query(self, user: str, vector: Vectors, k: int) -> list[MemoryHit]:
        """Dense candidates from the store (while the user's in-memory index is not built)."""
        ceiling = min(self.resilience.store_timeout_ms, self.config.timeout_ms)
        return await self._guarded(
            "store", lambda: self.store.query(user, vector, k), ceiling, True
        )

    async def _embed_for_write(self, texts: list[str]) -> Vectors:
        ceiling = self.resilience.embed_timeout_ms
        return await self._guarded("embedder", lambda: self.embedder.embed(texts), ceiling, False)

    async def _store_batch(
        self, user: str, exchanges: list[Exchange], vectors: Vectors
    ) -> list[MemoryHit]:
        """Upsert the memories of ``exchanges`` (one row of ``vectors`` each); returns their
        records as stored."""
        ids = [memory_id(e) for e in exchanges]
        metas = [memory_metadata(e, self.embedder.name) for e in exchanges]
        texts = [e.text for e in exchanges]
        await self._guarded(
            "store",
            lambda: self.store.upsert_many(user, ids, vectors, texts, metas),
            self.resilience.store_timeout_ms,
            False,
        )
        return [
            MemoryHit(i, t, {"schema_version": SCHEMA_VERSION, **to_chroma_metadata(m)})
            for i, t, m in zip(ids, texts, metas, strict=True)
        ]

    async def write(self, exchange: Exchange) -> str:
        """Embed and store one exchange now (through the breakers); returns the memory id.

        Raises:
            EmbedderError, StoreError, BreakerOpenError, DimensionMismatchError.
        """
        vectors = await self._embed_for_write([exchange.text])
        hits = await self._store_batch(exchange.scope.user, [exchange], vectors)
        self._index_changed(exchange.scope.user, (hits, vectors))
        return memory_id(exchange)

    async def search(self, user: str, query: str, k: int) -> list[MemoryHit]:
        """The ``k`` memories of ``user`` nearest to ``query`` (no similarity floor)."""
        return await self.recaller.candidates(Scope(user), query, k)

    async def get(self, user: str, mid: str) -> MemoryHit | None:
        """One memory of ``user``, or None."""
        return await self.store.get(user, mid)

    async def delete(self, user: str, mid: str) -> bool:
        """Hard-delete one memory of ``user``; False if ``user`` has none with that id."""
        deleted = await self.store.delete(user, mid)
        if deleted:
            self._index.pop(user, None)  # a deleted memory must not be recalled meanwhile
            self._index_changed(user)
        return deleted

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
        report["breakers"] = {name: b.snapshot() for name, b in self.breakers.items()}
        return report

    async def export(self, user: str) -> list[dict[str, Any]]:
        """Every memory of ``user`` (state ``stored``) and every exchange of theirs still in the
        outbox (state ``pending``), as JSON-ready dicts."""
        records = [
            {"state": "stored", "id": h.id, "user": user, "text": h.text, "metadata": h.metadata}
            for h in await self.store.all(user)
        ]
        for row in self.outbox.for_user(user):
            records.append(
                {
                    "state": "pending",
                    "id": row.exchange.id,
                    "user": user,
                    "text": row.exchange.text,
                    "metadata": {
                        "exchange": asdict(row.exchange),
                        "attempts": row.attempts,
                        "last_error": row.last_error,
                    },
                }
            )
        return records


def keepable(exchange: Exchange) -> bool:
    """Only complete, successful exchanges with a user turn and an answer become memories
    (ingested history may also hold single messages)."""
    if exchange.status != "ok" or not exchange.user_text.strip():
        return False
    return bool(exchange.reply.strip()) or exchange.endpoint == INGEST_ENDPOINT


def build_memory_service(
    memory: MemoryConfig,
    store: StoreConfig,
    embedder: EmbedderConfig,
    upstream_url: str,
    session: aiohttp.ClientSession,
    resilience: ResilienceConfig | None = None,
) -> MemoryService:
    """The default service: Chroma store, the configured embedder, the SQLite outbox (nothing is
    opened yet)."""
    outbox = Outbox(memory.outbox_path or default_outbox_path(store))
    return MemoryService(
        memory,
        ChromaStore(store),
        make_embedder(embedder, upstream_url, session),
        outbox,
        resilience,
    )
