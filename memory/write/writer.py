"""The write-back loop: exchanges queued in the outbox are archived, scored, gated, embedded
and stored (new memories or reinforcements) by one background task after the responses have
ended; failures go back to the outbox with exponential back-off."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time

import numpy as np

from memory.config import MemoryConfig, MetabolismConfig
from memory.embedders import Embedder, Vectors
from memory.errors import MemoryLayerError
from memory.recall.cache import IndexCache
from memory.recall.index import unit_rows
from memory.score.keeper import ScoreKeeper
from memory.score.symbiosis import Score
from memory.store.archive import RawArchive
from memory.store.chroma import Store
from memory.store.outbox import Outbox, OutboxRow
from memory.types import Exchange
from memory.write.access import AccessStats
from memory.write.gate import importance
from memory.write.judge_worker import JudgeWorker
from memory.write.reinforce import Target, plan_batch, reinforces
from memory.write.stats import WriteStats

log = logging.getLogger(__name__)

POLL_S = 0.01
"""How often ``flush`` looks at the outbox."""

PENDING_TTL_S = 0.1
"""How long :meth:`Writer.behind` reuses its count of the outbox (it is asked at every hand-over
of the model lane, hundreds of times a second under load)."""

COST_WEIGHT = 0.3
"""Weight of the newest batch in the writer's running mean of seconds per exchange."""


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Delay before the next try of a row that failed ``attempts`` times before:
    ``base_s * 2**attempts``, capped at ``max_s``.

    >>> [backoff_s(n, 0.5, 3.0) for n in range(4)]
    [0.5, 1.0, 2.0, 3.0]
    """
    return min(max_s, base_s * 2.0**attempts)


class Writer:
    """The outbox's consumer. ``embedder`` and ``store`` are the write path's guarded ones
    (configured budgets, not adaptive); ``cache`` is told of every write; ``access`` is flushed
    between batches; ``judge`` (optional) is offered every written exchange."""

    def __init__(
        self,
        outbox: Outbox,
        config: MemoryConfig,
        metabolism: MetabolismConfig,
        embedder: Embedder,
        store: Store,
        scores: ScoreKeeper,
        cache: IndexCache,
        access: AccessStats,
        stats: WriteStats,
        archive: RawArchive | None = None,
        judge: JudgeWorker | None = None,
    ) -> None:
        self.outbox = outbox
        self.config = config
        self.metabolism = metabolism
        self.embedder = embedder
        self.store = store
        self.scores = scores
        self.cache = cache
        self.access = access
        self.stats = stats
        self.archive = archive
        self.judge = judge
        self._wake = asyncio.Event()
        self._urgent = False
        self.seconds_per_exchange: float | None = None
        """Running mean (weight :data:`COST_WEIGHT` per batch) of a batch's wall time per row;
        None before the first batch."""
        self._pending: tuple[float, int] = (-1.0, 0)
        self.stalled = False
        """Whether the last batch wrote nothing (the embedder or store failing: its rows wait
        for their back-off). Requests are then not held for a writer that cannot write."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background loop (it first writes what the outbox already holds)."""
        self._task = asyncio.create_task(self._drain(), name="memory-writer")

    async def close(self, timeout_s: float) -> None:
        """Try to write what is queued (up to ``timeout_s``), then stop; rows still queued stay
        in the outbox."""
        if self._task is None:
            return
        if not await self.flush(timeout_s):
            log.warning("shutdown: %d exchanges stay in the outbox", self.outbox.count())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def wake(self) -> None:
        """Something was queued: look at the outbox."""
        at, due = self._pending
        self._pending = (at, due + 1)  # counted without a query: the request path calls this
        self._wake.set()

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Retry every queued exchange now and wait until the outbox is empty; False if
        ``timeout_s`` passed first (the rows stay queued)."""
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

    def lag_s(self, coming: int = 0, congested: bool = False) -> float:
        """Estimated seconds of work the writer has now: the rows due (not those waiting out
        a back-off) times :attr:`seconds_per_exchange` (0.0 before the first batch), plus
        ``coming`` exchanges not queued yet when any row is due or ``congested`` (requests
        are waiting; without either, an idle writer is behind nobody, however many answers
        are streaming). The count is at most :data:`PENDING_TTL_S` old; when the outbox
        cannot be read the last count stands."""
        now = time.monotonic()
        if now - self._pending[0] > PENDING_TTL_S:
            with contextlib.suppress(sqlite3.Error, MemoryLayerError):
                self._pending = (now, self.outbox.count_due(time.time()))
        due = self._pending[1]
        rows = due + coming if due or congested else 0
        return rows * (self.seconds_per_exchange or 0.0)

    def behind(self, coming: int = 0, congested: bool = False) -> bool:
        """Whether :meth:`lag_s` is over ``memory.max_lag_s`` (0: never), unless the writer is
        :attr:`stalled` or not running (an outage is not made worse by holding chats). Then
        the writer's model calls go before recall's
        (:attr:`memory.lane.ModelLane.write_first`) and new chat requests wait
        (:meth:`memory.service.MemoryService.backlog_room`)."""
        bound = self.config.max_lag_s
        running = self._task is not None and not self._task.done()
        lag = self.lag_s(coming, congested)
        return bound > 0 and running and not self.stalled and lag > bound

    async def _drain(self) -> None:
        failures = 0
        while True:
            try:
                await self._turn()
                failures = 0
            except (sqlite3.Error, MemoryLayerError) as exc:
                # The outbox itself failed (a disk I/O error, a full disk refusing an update):
                # the loop must outlive it, or nothing is written until a restart. Rows stay
                # queued; a batch written but not marked done is replayed, which is safe.
                delay = backoff_s(failures, self.config.retry_base_s, self.config.retry_max_s)
                failures += 1
                self.stalled = True
                log.error("writer: the outbox failed (%s); next look in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _turn(self) -> None:
        """One batch of what is due (or an idle wait), then the access statistics."""
        rows = self.outbox.due(time.time(), self.config.write_batch_max)
        if rows:
            started, before = time.monotonic(), vars(self.stats).copy()
            await self.write_rows(rows)
            written = self.stats.written - before["written"]
            failed = self.stats.failed_attempts - before["failed_attempts"]
            self.stalled = bool(failed) and not written
            if written and not failed:  # a batch that failed says nothing of what a write costs
                self._learn_cost((time.monotonic() - started) / len(rows))
        else:
            await self._idle()
        await self.access.flush_quietly()

    def _learn_cost(self, seconds: float) -> None:
        # Wall time, lane waits included: while recall goes first this overstates the cost, so
        # the writer claims the lane early rather than late.
        last = self.seconds_per_exchange
        self.seconds_per_exchange = (
            seconds if last is None else (1 - COST_WEIGHT) * last + COST_WEIGHT * seconds
        )
        self._pending = (-1.0, 0)

    async def _idle(self) -> None:
        """Sleep until woken or until the next row is due, then let the answer finish."""
        self._wake.clear()
        next_at = self.outbox.next_due_at()
        timeout = None if next_at is None else max(0.0, next_at - time.time())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel
                await self._wake.wait()
        if not self._urgent:  # let the answer finish and more exchanges gather
            await asyncio.sleep(self.config.write_delay_ms / 1000)

    async def write_rows(self, rows: list[OutboxRow]) -> None:
        """Write a batch: archive every exchange, score it, gate it, then one embedding call for
        the kept ones and one store call per user (new memories, or reinforcements of existing
        ones). A failure puts the rows it concerns back for a later attempt; the others are
        done. Replaying a row is safe: the archive ignores a known exchange, and a memory whose
        provenance already holds the exchange is not reinforced again."""
        exchanges = [row.exchange for row in rows]
        try:
            if self.archive is not None:
                await asyncio.to_thread(self.archive.add, exchanges)
            scores = await self.scores.score(exchanges)
        except MemoryLayerError as exc:
            self._retry_later(rows, exc)
            return
        weights = [importance(e.user_text, e.reply) for e in exchanges]
        keep = self._gate(rows, scores, weights)
        if not keep:
            return
        try:
            vectors = await self.embedder.embed([exchanges[i].text for i in keep])
        except MemoryLayerError as exc:
            self._retry_later([rows[i] for i in keep], exc)
            return
        by_user: dict[str, list[int]] = {}
        for position, i in enumerate(keep):
            by_user.setdefault(exchanges[i].scope.user, []).append(position)
        for user, positions in by_user.items():
            batch = [keep[p] for p in positions]
            await self._write_user(
                user, [rows[i] for i in batch], vectors[positions], scores, weights, batch
            )

    def _gate(
        self, rows: list[OutboxRow], scores: list[Score | None], weights: list[float]
    ) -> list[int]:
        """Positions of the rows the write gate keeps; the others are done (archived only)."""
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
        self.scores.log_scores([(rows[i].exchange, None, scores[i]) for i in gated])
        return keep

    async def _write_user(
        self,
        user: str,
        rows: list[OutboxRow],
        vectors: Vectors,
        scores: list[Score | None],
        weights: list[float],
        batch: list[int],
    ) -> None:
        """Store one user's kept rows (``batch``: their positions in ``scores``/``weights``)."""
        exchanges = [row.exchange for row in rows]
        mine = [scores[i] for i in batch]
        try:
            written = await self.store_batch(
                user, exchanges, vectors, mine, [weights[i] for i in batch]
            )
        except MemoryLayerError as exc:
            self._retry_later(rows, exc)
            return
        for row in rows:
            self.outbox.done(row.seq)
        self.stats.written += len(rows)
        self.scores.log_scores(list(zip(exchanges, written, mine, strict=True)))
        if self.judge is not None:
            for exchange, mid in zip(exchanges, written, strict=True):
                self.judge.offer(exchange, mid)

    async def write_now(self, exchange: Exchange) -> str:
        """Archive, score, embed and store one exchange now (no write gate: an explicit write
        is always kept); returns the id of the memory it went to.

        Raises:
            EmbedderError, StoreError, BreakerOpenError, DimensionMismatchError.
        """
        if self.archive is not None:
            await asyncio.to_thread(self.archive.add, [exchange])
        vectors = await self.embedder.embed([exchange.text])
        scores = await self.scores.score([exchange])
        weight = importance(exchange.user_text, exchange.reply)
        written = await self.store_batch(exchange.scope.user, [exchange], vectors, scores, [weight])
        self.scores.log_scores([(exchange, written[0], scores[0])])
        return written[0]

    async def store_batch(
        self,
        user: str,
        exchanges: list[Exchange],
        vectors: Vectors,
        scores: list[Score | None],
        weights: list[float],
    ) -> list[str]:
        """Store ``exchanges`` of one user (one row of ``vectors`` each) as
        :func:`~memory.write.reinforce.plan_batch` plans it: reinforcements of memories that
        say the same, new memories for the others. Returns the memory id each exchange went
        to.

        Raises:
            MemoryLayerError: the store failed.
        """
        targets = await self.targets(user, exchanges, vectors, scores)
        plan = plan_batch(
            exchanges, scores, list(weights), targets, self.embedder.name, self.scores.threshold
        )
        self.stats.repulsors += plan.repulsors
        self.stats.reinforced += plan.reinforced
        if plan.ids:
            await self.store.upsert_many(user, plan.ids, vectors[plan.rows], plan.texts, plan.metas)
        if plan.updates:
            await self.store.update_metadata(user, plan.updates)
        change = plan.index_change(vectors)
        if change is not None:
            self.cache.changed(user, change)
        return plan.written

    async def targets(
        self, user: str, exchanges: list[Exchange], vectors: Vectors, scores: list[Score | None]
    ) -> list[Target | None]:
        """For each exchange, the memory it reinforces (record and unit vector) or None: the
        most similar memory of the user (in the in-memory index, else from the store) when
        :func:`~memory.write.reinforce.reinforces` says so. Near-duplicates within one batch
        are both written; the sleep cycle consolidates them."""
        out: list[Target | None] = [None] * len(exchanges)
        if not self.metabolism.enabled or not exchanges:
            return out
        if self.cache.busy(user):
            await self.cache.ready(user)
        index = self.cache.loaded(user)
        unit = unit_rows(np.asarray(vectors, dtype=np.float32))
        threshold = self.scores.threshold
        for i, exchange in enumerate(exchanges):
            score = scores[i]
            polarity = score.polarity(threshold) if score is not None else None
            if index is not None and index.vectors is not None:
                if not len(index):
                    break
                hit, similarity, vector = index.nearest(unit[i])
            else:  # not loaded (no recall for this user yet): ask the store
                nearest = await self.store.query(user, unit[i], 1)
                if not nearest:
                    continue
                hit, similarity, vector = nearest[0], nearest[0].similarity or 0.0, unit[i]
            if reinforces(
                hit, similarity, exchange, polarity, self.metabolism.reinforce_similarity
            ):
                out[i] = (hit, vector)
        return out

    def _retry_later(self, rows: list[OutboxRow], exc: Exception) -> None:
        for row in rows:
            delay = backoff_s(row.attempts, self.config.retry_base_s, self.config.retry_max_s)
            self.outbox.retry_later(row.seq, str(exc), delay)
        self.stats.failed_attempts += len(rows)
        log.warning(
            "write-back of %d exchanges failed (next try in >= %.1fs): %s",
            len(rows),
            self.config.retry_base_s,
            exc,
        )
