"""The LLM judge's worker: written exchanges are queued (never waiting; a full queue skips
one) and rated one at a time in the background, off the response and write paths; a rating
revises the memory's score and is logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from memory.errors import MemoryLayerError
from memory.recall.index import IndexChange
from memory.record import signals_of
from memory.score.judge import Judge
from memory.score.keeper import ScoreKeeper
from memory.store.chroma import Store
from memory.types import Exchange
from memory.write.stats import WriteStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgeItem:
    """One written exchange waiting for the judge."""

    user: str
    memory_id: str
    exchange_id: str
    text: str
    reply: str


class JudgeWorker:
    """Rates written memories with ``judge`` and revises their scores in ``store`` (through
    ``scores``); ``changed(user, update)`` tells the in-memory index of each revision; the
    ``judge*`` counters of ``stats`` count what it did."""

    def __init__(
        self,
        judge: Judge,
        queue_size: int,
        store: Store,
        scores: ScoreKeeper,
        changed: Callable[[str, IndexChange], None],
        stats: WriteStats,
    ) -> None:
        self.judge = judge
        self.store = store
        self.scores = scores
        self.changed = changed
        self.stats = stats
        self._queue: asyncio.Queue[JudgeItem] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task."""
        self._task = asyncio.create_task(self._run(), name="memory-judge")

    async def close(self) -> None:
        """Stop; what is still queued is not judged (it keeps its score)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if waiting := self._queue.qsize():
            log.info("shutdown: %d exchanges were not judged (they keep their score)", waiting)

    def offer(self, exchange: Exchange, mid: str) -> None:
        """Queue exchange ``exchange``, written as memory ``mid``, for the judge (never waits;
        a full queue skips it; an exchange without reply has nothing to rate)."""
        if not exchange.reply.strip():
            return
        item = JudgeItem(exchange.scope.user, mid, exchange.id, exchange.user_text, exchange.reply)
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.judge_skipped += 1

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                signals = await self.judge.rate(item.text, item.reply)
                await self.apply(item, signals)
            except MemoryLayerError as exc:
                self.stats.judge_failed += 1
                log.warning(
                    "judge gave no rating for memory %s (score unchanged): %s", item.memory_id, exc
                )

    async def apply(self, item: JudgeItem, signals: dict[str, float]) -> None:
        """Revise the score of ``item``'s memory with the judge's ``signals`` and log it."""
        hit = await self.store.get(item.user, item.memory_id)
        scorer = self.scores.scorer
        if hit is None or scorer is None:
            return  # deleted meanwhile
        revised = scorer.revise({**signals_of(hit.metadata), **signals})
        threshold = self.scores.threshold
        update = {item.memory_id: revised.as_metadata(threshold)}
        await self.store.update_metadata(item.user, update)
        self.changed(item.user, update)
        self.stats.judged += 1
        self.scores.append(
            [revised.log_record(item.exchange_id, item.memory_id, item.user, threshold, "judge")]
        )
