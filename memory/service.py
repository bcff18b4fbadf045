"""The memory service: the only object the proxy talks to.

It owns the embedder, the store and the write-back worker. ``observe`` never blocks: exchanges
are queued and written (embed, then store) by a background task after the response has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import aiohttp
import numpy as np

from memory.archive import RawArchive
from memory.audit import ScoreLog
from memory.config import (
    EmbedderConfig,
    MemoryConfig,
    MetabolismConfig,
    ResilienceConfig,
    StoreConfig,
    SymbiosisConfig,
    default_outbox_path,
)
from memory.embedders import Embedder, Vectors, make_embedder
from memory.errors import EmbedderError, MemoryLayerError, StoreError
from memory.judge import Judge
from memory.metabolism.resonance import Resonance, resonate, says_same
from memory.metabolism.sleep import CycleReport, metabolize_user
from memory.outbox import Outbox, OutboxRow
from memory.recall.index import IndexChange, UserIndex, apply_changes, unit_rows
from memory.recall.recaller import Recaller
from memory.record import SCHEMA_VERSION, provenance, signals_of
from memory.resilience import CircuitBreaker
from memory.store import SHARED, ChromaStore, Store, to_chroma_metadata
from memory.symbiosis import Score, Scorer, Turn, make_scorer
from memory.types import Exchange, MemoryBlock, MemoryHit, Scope, sha256_json
from memory.write.gate import importance

log = logging.getLogger(__name__)
T = TypeVar("T")

INGEST_ENDPOINT = "ingest"
"""``Exchange.endpoint`` of memories loaded by ``symbiotic-memory ingest``."""
REINFORCE_STEP = 0.25
"""Strength an exchange adds to the memory it reinforces (capped at 1; a dormant memory wakes).
Adaptive Neural Memory adds ``0.5 * importance``; a fixed step keeps it explainable."""
POLL_S = 0.01
"""How often ``flush`` looks at the outbox."""


@dataclass
class WriteStats:
    """Counters of the write-back path since start."""

    queued: int = 0
    written: int = 0
    skipped: int = 0
    failed_attempts: int = 0
    gated: int = 0
    """Exchanges the write gate kept in the raw archive only."""
    reinforced: int = 0
    """Exchanges that strengthened an existing memory instead of adding a copy."""
    repulsors: int = 0
    """Memories written (or reinforced) as repulsors."""
    judged: int = 0
    """Scores revised by the LLM judge."""
    judge_failed: int = 0
    """Judge calls that gave no usable rating (the score stayed as it was)."""
    judge_skipped: int = 0
    """Exchanges not sent to the judge because its queue was full."""


def memory_id(exchange: Exchange) -> str:
    """Content address of the memory an exchange becomes: the same words said again by the same
    user map to the same id, so a repeated exchange replaces rather than duplicates."""
    return sha256_json([exchange.scope.user, exchange.user_text, exchange.reply])[:32]


def memory_metadata(
    exchange: Exchange,
    embedder: str,
    score: Score | None = None,
    threshold: float = 0.4,
    weight: float | None = None,
) -> dict[str, Any]:
    """What is stored beside a memory's text and vector (schema version ``SCHEMA_VERSION``):
    scope, tier, event and storage times, the upstream's metrics, strength and access
    statistics, provenance, and (when scored) the symbiosis score, its signals, definition hash
    and polarity, and the write gate's ``importance``."""
    scored = score.as_metadata(threshold) if score is not None else {}
    return {
        **scored,
        **({"importance": round(weight, 4)} if weight is not None else {}),
        "reinforcements": 0,
        "phase": "free",
        "dormant": False,
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
        symbiosis: SymbiosisConfig | None = None,
        metabolism: MetabolismConfig | None = None,
        archive: RawArchive | None = None,
        score_log: ScoreLog | None = None,
        scorer: Scorer | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.symbiosis = symbiosis or SymbiosisConfig(enabled=False)
        """Scoring settings; ``enabled: false`` writes unscored memories."""
        self.metabolism = metabolism or MetabolismConfig(enabled=False)
        """Gate, reinforcement and decay settings; ``enabled: false`` keeps every exchange."""
        self.archive = archive
        self.score_log = score_log
        self.scorer = scorer
        """Built at :meth:`start` when scoring is enabled and none was given."""
        self.judge = judge if self.symbiosis.enabled else None
        """The optional LLM judge (``symbiosis.judge_model``), run in the background."""
        self._judge_queue: asyncio.Queue[tuple[str, str, str, str, str]] = asyncio.Queue(
            self.symbiosis.judge_queue
        )
        self._judge_worker: asyncio.Task[None] | None = None
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
        self.recaller = Recaller(
            self._recall_embed,
            self._recall_query,
            config,
            self._index_for,
            metabolism=self.metabolism if self.metabolism.enabled else None,
            symbiosis=self.symbiosis if self.symbiosis.enabled else None,
            shared=self._shared_tier if self.sharing else None,
        )
        self.resonance: Resonance | None = None
        """What the last full sleep cycle's resonance pass did (None: not run)."""
        self._shared: tuple[list[MemoryHit], np.ndarray] = ([], np.zeros((0, 0), np.float32))
        self._shared_loaded_at = -math.inf
        self._shared_task: asyncio.Task[None] | None = None
        self._index: dict[str, UserIndex] = {}
        self._index_pending: dict[str, list[IndexChange]] = {}
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
            if self.archive is not None:
                self.archive.open()
            if self.symbiosis.enabled and self.scorer is None:
                self.scorer = await asyncio.to_thread(make_scorer, self.symbiosis)
                if self.scorer.degraded:
                    log.warning("symbiosis: lexical signals only: %s", self.scorer.degraded)
            await self.store.open()
            try:
                dim = int((await self.embedder.embed(["dimension probe"])).shape[1])
            except EmbedderError as exc:
                log.warning("embedder not available at start-up (%s); will retry per request", exc)
            else:
                await self.store.check_dimension(self.embedder.name, dim)
        except BaseException:
            self.outbox.close()
            if self.archive is not None:
                self.archive.close()
            raise
        if waiting := self.outbox.count():
            log.info("replaying %d exchanges left in the outbox", waiting)
            self.outbox.retry_all_now()
        if self.sharing:
            await self._load_shared()
        self._worker = asyncio.create_task(self._drain(), name="memory-writer")
        if self.judge is not None:
            self._judge_worker = asyncio.create_task(self._judging(), name="memory-judge")

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
        for background in (self._shared_task, self._judge_worker):
            if background is not None:
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)
        if waiting := self._judge_queue.qsize():
            log.info("shutdown: %d exchanges were not judged (they keep their score)", waiting)
        with contextlib.suppress(MemoryLayerError):
            await self._flush_access()
        self.outbox.close()
        if self.archive is not None:
            self.archive.close()
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
        """Write a batch: archive every exchange, score it, gate it, then one embedding call for
        the kept ones and one store call per user (new memories, or reinforcements of existing
        ones). A failure puts the rows it concerns back for a later attempt; the others are
        done. Replaying a row is safe: the archive ignores a known exchange, and a memory whose
        provenance already holds the exchange is not reinforced again."""
        exchanges = [row.exchange for row in rows]
        try:
            if self.archive is not None:
                await asyncio.to_thread(self.archive.add, exchanges)
            scores = await self._score(exchanges)
        except MemoryLayerError as exc:
            self._retry_later(rows, exc)
            return
        weights = [importance(e.user_text, e.reply) for e in exchanges]
        keep = [
            i
            for i, w in enumerate(weights)
            if not self.metabolism.enabled or w >= self.metabolism.gate_threshold
        ]
        kept = set(keep)
        gated = [i for i in range(len(rows)) if i not in kept]
        for i in gated:
            self.outbox.done(rows[i].seq)
        self.stats.gated += len(gated)
        self._log_scores([(exchanges[i], None, scores[i]) for i in gated])
        if not keep:
            return
        try:
            vectors = await self._embed_for_write([exchanges[i].text for i in keep])
        except MemoryLayerError as exc:
            self._retry_later([rows[i] for i in keep], exc)
            return
        by_user: dict[str, list[int]] = {}
        for position, i in enumerate(keep):
            by_user.setdefault(exchanges[i].scope.user, []).append(position)
        for user, positions in by_user.items():
            batch = [keep[p] for p in positions]
            try:
                written = await self._store_batch(
                    user,
                    [exchanges[i] for i in batch],
                    vectors[positions],
                    [scores[i] for i in batch],
                    [weights[i] for i in batch],
                )
            except MemoryLayerError as exc:
                self._retry_later([rows[i] for i in batch], exc)
                continue
            for i in batch:
                self.outbox.done(rows[i].seq)
            self.stats.written += len(batch)
            self._log_scores(
                [(exchanges[i], mid, scores[i]) for i, mid in zip(batch, written, strict=True)]
            )
            if self.judge is not None:
                for i, mid in zip(batch, written, strict=True):
                    self._to_judge(exchanges[i], mid)

    def _to_judge(self, exchange: Exchange, mid: str) -> None:
        """Queue a written exchange for the judge (never waits; a full queue skips it)."""
        if not exchange.reply.strip():
            return
        item = (exchange.scope.user, mid, exchange.id, exchange.user_text, exchange.reply)
        try:
            self._judge_queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.judge_skipped += 1

    async def _judging(self) -> None:
        """The judge's worker: one exchange at a time, off the response and write paths; a
        failed rating leaves the score as the default scorer gave it."""
        assert self.judge is not None
        while True:
            user, mid, exchange_id, text, reply = await self._judge_queue.get()
            try:
                signals = await self.judge.rate(text, reply)
                await self._apply_judge(user, mid, exchange_id, signals)
            except MemoryLayerError as exc:
                self.stats.judge_failed += 1
                log.warning("judge gave no rating for memory %s (score unchanged): %s", mid, exc)

    async def _apply_judge(
        self, user: str, mid: str, exchange_id: str, signals: dict[str, float]
    ) -> None:
        """Revise memory ``mid``'s score with the judge's ``signals`` and log the revision."""
        hit = await self.store.get(user, mid)
        if hit is None or self.scorer is None:
            return  # deleted meanwhile
        revised = self.scorer.revise({**signals_of(hit.metadata), **signals})
        update = {mid: revised.as_metadata(self.symbiosis.threshold)}
        await self.store.update_metadata(user, update)
        self._index_changed(user, update)
        self.stats.judged += 1
        self._append_log(
            [revised.log_record(exchange_id, mid, user, self.symbiosis.threshold, "judge")]
        )

    async def _score(self, exchanges: list[Exchange]) -> list[Score | None]:
        """Symbiosis scores of ``exchanges`` (provisional: the next turn is not known yet), or
        Nones when scoring is off."""
        if self.scorer is None or not self.symbiosis.enabled:
            return [None] * len(exchanges)
        turns = [Turn(e.user_text, e.reply, None, e.metrics) for e in exchanges]
        scores = await asyncio.to_thread(self.scorer.score, turns)
        return list(scores)

    def _log_scores(self, entries: list[tuple[Exchange, str | None, Score | None]]) -> None:
        """Append scores to the tamper-evident log; a failure is logged (the score is also in
        the memory's metadata) and never loses the write."""
        self._append_log(
            [
                score.log_record(
                    exchange.id,
                    mid,
                    exchange.scope.user,
                    self.symbiosis.threshold,
                    "scored" if mid is not None else "scored, gated (archive only)",
                )
                for exchange, mid, score in entries
                if score is not None
            ]
        )

    def _append_log(self, records: list[dict[str, Any]]) -> None:
        if self.score_log is None or not records:
            return
        try:
            self.score_log.append(records)
        except StoreError as exc:
            log.warning("score log not written: %s", exc)

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

    def _index_changed(self, user: str, change: IndexChange | None = None) -> None:
        """Memories of ``user`` were written (``change``: their records and vectors), had
        metadata updated (``change``: memory id -> keys set, as given to the store), or were
        deleted (None): extend or update the index in place, or reload it from the store, in
        the background, in the order the changes happened."""
        if change is not None:
            if user not in self._index and user not in self._index_tasks:
                return  # not loaded: built from the store at the user's first recall
            self._index_pending.setdefault(user, []).append(change)
        else:
            self._index_reload.add(user)
        if user not in self._index_tasks:
            task = asyncio.create_task(self._update_index(user), name=f"index-{user[:16]}")
            self._index_tasks[user] = task

    async def _update_index(self, user: str) -> None:
        try:
            while user in self._index_reload or self._index_pending.get(user):
                if user in self._index_reload or user not in self._index:
                    self._index_reload.discard(user)
                    self._index_pending.pop(user, None)  # the reload sees them
                    hits, vectors = await self.store.snapshot(user)
                    dense = vectors if vectors.shape[0] == len(hits) and len(hits) else None
                    self._index[user] = await asyncio.to_thread(UserIndex, hits, dense)
                    continue
                changes = self._index_pending.pop(user, [])
                index = await asyncio.to_thread(apply_changes, self._index[user], changes)
                if index is None:
                    self._index_reload.add(user)  # the old index serves recall meanwhile
                else:
                    self._index[user] = index
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

    @property
    def sharing(self) -> bool:
        """Whether the shared tier is kept and recalled (``metabolism.shared``)."""
        return self.metabolism.enabled and self.metabolism.shared

    SHARED_REFRESH_S = 60.0
    """How old the in-memory copy of the shared tier may get before a recall refreshes it in
    the background (a sleep cycle run by another process shows up within this)."""

    def _shared_tier(self) -> tuple[list[MemoryHit], np.ndarray]:
        """The shared tier's awake memories and their unit vectors ``(n, dim)``, from memory;
        a stale copy starts a background reload (recall never waits for the store here)."""
        stale = time.monotonic() - self._shared_loaded_at > self.SHARED_REFRESH_S
        if stale and (self._shared_task is None or self._shared_task.done()):
            self._shared_task = asyncio.create_task(self._load_shared(), name="shared-tier")
        return self._shared

    async def _load_shared(self) -> None:
        """Read the shared tier's awake memories into memory (a failure keeps the old copy)."""
        self._shared_loaded_at = time.monotonic()
        try:
            hits, vectors = await self.store.snapshot(SHARED)
        except StoreError as exc:
            log.warning("shared tier not reloaded: %s", exc)
            return
        keep = [i for i, h in enumerate(hits) if not h.metadata.get("dormant")]
        unit = unit_rows(vectors[keep]) if keep else np.zeros((0, 0), np.float32)
        self._shared = ([hits[i] for i in keep], unit)

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
        self,
        user: str,
        exchanges: list[Exchange],
        vectors: Vectors,
        scores: list[Score | None] | None = None,
        weights: list[float] | None = None,
    ) -> list[str]:
        """Store ``exchanges`` of one user (one row of ``vectors`` each): an exchange that says
        again what a memory of the same polarity says (cosine >=
        ``metabolism.reinforce_similarity``) reinforces that memory; the others are upserted
        as new memories. Returns the memory id each exchange went to."""
        scores = scores or [None] * len(exchanges)
        weights = weights or [None] * len(exchanges)  # type: ignore[list-item]
        threshold = self.symbiosis.threshold
        targets = await self._reinforce_targets(user, exchanges, vectors, scores)
        ids, texts, metas, rows = [], [], [], []
        updates: dict[str, dict[str, Any]] = {}
        changed: dict[str, tuple[MemoryHit, np.ndarray]] = {}
        out: list[str] = []
        for i, exchange in enumerate(exchanges):
            target = targets[i]
            score = scores[i]
            if score is not None and score.polarity(threshold) == "repulsor":
                self.stats.repulsors += 1
            if target is None:
                mid = memory_id(exchange)
                ids.append(mid)
                texts.append(exchange.text)
                metas.append(
                    memory_metadata(exchange, self.embedder.name, score, threshold, weights[i])
                )
                rows.append(i)
                out.append(mid)
                continue
            hit, vector = target
            meta = {**hit.metadata, **updates.get(hit.id, {})}
            sources = provenance(meta)
            out.append(hit.id)
            if exchange.id in sources:
                continue  # a replayed row: already applied
            count = meta.get("reinforcements", 0)
            strength = meta.get("strength", 1.0)
            strength = strength if isinstance(strength, int | float) else 1.0
            update = {
                "reinforcements": (count if isinstance(count, int) else 0) + 1,
                "strength": min(1.0, strength + REINFORCE_STEP),
                "last_reinforced_at": time.time(),
                "provenance": json.dumps([*sources, exchange.id][-50:]),
                "dormant": False,
            }
            updates.setdefault(hit.id, {}).update(update)
            changed[hit.id] = (MemoryHit(hit.id, hit.text, {**meta, **update}), vector)
            self.stats.reinforced += 1
        if ids:
            await self._guarded(
                "store",
                lambda: self.store.upsert_many(user, ids, vectors[rows], texts, metas),
                self.resilience.store_timeout_ms,
                False,
            )
        if updates:
            await self._guarded(
                "store",
                functools.partial(self.store.update_metadata, user, updates),
                self.resilience.store_timeout_ms,
                False,
            )
        hits = [
            MemoryHit(i, t, {"schema_version": SCHEMA_VERSION, **to_chroma_metadata(m)})
            for i, t, m in zip(ids, texts, metas, strict=True)
        ]
        hits += [hit for hit, _ in changed.values()]
        stacked = [vectors[rows]] + [v.reshape(1, -1) for _, v in changed.values()]
        if hits:
            self._index_changed(user, (hits, np.vstack(stacked)))
        return out

    async def _reinforce_targets(
        self,
        user: str,
        exchanges: list[Exchange],
        vectors: Vectors,
        scores: list[Score | None],
    ) -> list[tuple[MemoryHit, np.ndarray] | None]:
        """For each exchange, the memory it reinforces (record and unit vector) or None: the
        most similar memory of the user (in the in-memory index, else from the store), when at least
        ``metabolism.reinforce_similarity`` similar, of the same polarity, and saying the same
        (:func:`memory.metabolism.says_same`: same numbers, most words shared). Near-duplicates
        within one batch are both written; the sleep cycle consolidates them."""
        out: list[tuple[MemoryHit, np.ndarray] | None] = [None] * len(exchanges)
        if not self.metabolism.enabled or not exchanges:
            return out
        index = self._index.get(user)
        if user in self._index_tasks:
            await self.index_ready(user)
            index = self._index.get(user)
        unit = unit_rows(np.asarray(vectors, dtype=np.float32))
        threshold = self.symbiosis.threshold
        for i, exchange in enumerate(exchanges):
            score = scores[i]
            polarity = score.polarity(threshold) if score is not None else None
            if index is not None and index.vectors is not None:
                if not len(index):
                    break
                sims = index.vectors @ unit[i]
                j = int(np.argmax(sims))
                hit, similarity, vector = index.hits[j], float(sims[j]), index.vectors[j]
            else:  # not loaded (no recall for this user yet): ask the store
                nearest = await self._guarded(
                    "store",
                    functools.partial(self.store.query, user, unit[i], 1),
                    self.resilience.store_timeout_ms,
                    False,
                )
                if not nearest:
                    continue
                hit, similarity, vector = nearest[0], nearest[0].similarity or 0.0, unit[i]
            same = hit.metadata.get("polarity") == (polarity or hit.metadata.get("polarity"))
            similar = similarity >= self.metabolism.reinforce_similarity
            if similar and same and says_same(hit.text, exchange.text):
                out[i] = (hit, vector)
        return out

    async def write(self, exchange: Exchange) -> str:
        """Archive, score, embed and store one exchange now (through the breakers; no write
        gate: an explicit write is always kept); returns the id of the memory it went to.

        Raises:
            EmbedderError, StoreError, BreakerOpenError, DimensionMismatchError.
        """
        if self.archive is not None:
            await asyncio.to_thread(self.archive.add, [exchange])
        vectors = await self._embed_for_write([exchange.text])
        scores = await self._score([exchange])
        weight = importance(exchange.user_text, exchange.reply)
        written = await self._store_batch(
            exchange.scope.user, [exchange], vectors, scores, [weight]
        )
        self._log_scores([(exchange, written[0], scores[0])])
        return written[0]

    async def feedback(self, user: str, ident: str, value: float) -> dict[str, Any] | None:
        """Record explicit feedback ``value`` in [0, 1] on a memory of ``user``, named by its
        memory id or by the id of an exchange in its provenance; rescore it and log the
        revision. Returns ``{"memory_id", "symbiosis", "polarity", "signals"}`` or None when
        ``user`` has no such memory.

        Raises:
            ValueError: ``value`` outside [0, 1]; MemoryLayerError: store failures.
        """
        if not 0.0 <= value <= 1.0:
            raise ValueError("feedback must be a number in [0, 1]")
        await self.flush(5.0)
        await self.index_ready(user)
        hit = await self.store.get(user, ident)
        if hit is None:
            index = self._index.get(user)
            found = [h for h in (index.hits if index else []) if ident in provenance(h.metadata)]
            hit = found[0] if found else None
        if hit is None:
            return None
        signals = signals_of(hit.metadata)
        signals["feedback"] = float(value)
        scorer = self.scorer or Scorer(self.symbiosis, None, None)
        score = scorer.revise(signals)
        update = score.as_metadata(self.symbiosis.threshold)
        await self.store.update_metadata(user, {hit.id: update})
        threshold = self.symbiosis.threshold
        exchange_id = hit.metadata.get("exchange_id")
        self._append_log([score.log_record(exchange_id, hit.id, user, threshold, "feedback")])
        self._index_changed(user, {hit.id: update})
        return {
            "memory_id": hit.id,
            "symbiosis": score.value,
            "polarity": update["polarity"],
            "signals": score.signals,
        }

    async def metabolize(
        self, users: list[str] | None = None, now: float | None = None
    ) -> dict[str, CycleReport]:
        """One sleep cycle (see :func:`memory.metabolism.metabolize_user`) over ``users``
        (default: every user in the store): hindsight rescoring, migration of older records,
        consolidation, phases, dormancy, promotion and quadrant labels, written back as
        metadata updates; revisions go to the score log. Returns a report per user.

        Raises:
            MemoryLayerError: the store failed (users done before stay done).
        """
        await self.flush(30.0)
        await self._flush_access()  # recalls so far count as uses
        if self.scorer is None:
            self.scorer = await asyncio.to_thread(make_scorer, self.symbiosis)
        reports: dict[str, CycleReport] = {}
        awake: list[tuple[str, MemoryHit, np.ndarray]] = []
        for user in users if users is not None else await self.store.users():
            hits, vectors = await self.store.snapshot(user)
            updates, report = await asyncio.to_thread(
                metabolize_user,
                user,
                hits,
                vectors,
                self.scorer,
                self.symbiosis.threshold,
                self.metabolism,
                time.time() if now is None else now,
            )
            if updates:
                await self.store.update_metadata(user, updates)
                self._index_changed(user, updates)
            self._append_log(report.log)
            reports[user] = report
            if self.sharing and users is None and len(vectors) == len(hits):
                unit = unit_rows(vectors)
                for i, hit in enumerate(hits):
                    meta = {**hit.metadata, **updates.get(hit.id, {})}
                    if not meta.get("dormant"):
                        awake.append((user, MemoryHit(hit.id, hit.text, meta), unit[i]))
        if self.sharing and users is None:
            await self._resonate(awake, time.time() if now is None else now)
        return reports

    async def _resonate(self, awake: list[tuple[str, MemoryHit, np.ndarray]], now: float) -> None:
        """The resonance pass over every user's awake memories (``(user, memory, unit
        vector)``; :func:`memory.metabolism.resonate`), written to the shared tier;
        :attr:`resonance` holds its counts."""
        hits, vectors = await self.store.snapshot(SHARED)
        unit = unit_rows(vectors) if len(hits) else np.zeros((0, 0), np.float32)
        new, updates, report = await asyncio.to_thread(
            resonate, awake, hits, unit, self.metabolism, now
        )
        if updates:
            await self.store.update_metadata(SHARED, updates)
        if new:
            await self.store.upsert_many(
                SHARED,
                [n[0] for n in new],
                np.stack([n[2] for n in new]),
                [n[1] for n in new],
                [n[3] for n in new],
            )
        self.resonance = report
        await self._load_shared()

    async def search(self, user: str, query: str, k: int) -> list[MemoryHit]:
        """The ``k`` memories of ``user`` nearest to ``query`` (no similarity floor)."""
        return await self.recaller.candidates(Scope(user), query, k)

    async def get(self, user: str, mid: str) -> MemoryHit | None:
        """One memory of ``user``, or None."""
        return await self.store.get(user, mid)

    async def delete(self, user: str, mid: str) -> bool:
        """Hard-delete one memory of ``user`` and, on this request of the user's, the archived
        exchanges it came from; False if ``user`` has none with that id."""
        hit = await self.store.get(user, mid)
        deleted = await self.store.delete(user, mid)
        if deleted and self.archive is not None and hit is not None:
            sources = provenance(hit.metadata) or [str(hit.metadata.get("exchange_id", ""))]
            await asyncio.to_thread(self.archive.delete, user, sources)
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
    symbiosis: SymbiosisConfig | None = None,
    metabolism: MetabolismConfig | None = None,
    upstream_kind: str = "ollama",
) -> MemoryService:
    """The default service: Chroma store, the configured embedder, the SQLite outbox, the raw
    archive and the score log beside the store (nothing is opened yet); scoring and metabolism
    on with their defaults unless configs are given; the judge (``symbiosis.judge_model``) on
    the upstream at ``upstream_url`` speaking ``upstream_kind`` (``ollama`` or ``openai``)."""
    outbox = Outbox(memory.outbox_path or default_outbox_path(store))
    symbiosis = symbiosis or SymbiosisConfig()
    metabolism = metabolism or MetabolismConfig()
    beside = store.path.parent
    judge = None
    if symbiosis.judge_model:
        judge = Judge(
            symbiosis.judge_model,
            upstream_url,
            upstream_kind,
            session,
            symbiosis.principles,
            symbiosis.judge_timeout_s,
        )
    return MemoryService(
        memory,
        ChromaStore(store),
        make_embedder(embedder, upstream_url, session),
        outbox,
        resilience,
        symbiosis,
        metabolism,
        RawArchive(symbiosis.archive_path or beside / f"{store.path.name}-archive.sqlite3"),
        ScoreLog(symbiosis.log_path or beside / f"{store.path.name}-scores.jsonl"),
        judge=judge,
    )
