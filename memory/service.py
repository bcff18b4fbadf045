"""The memory service: the only object the proxy talks to.

A facade: it wires the parts (the writer loop, the index and shared-tier caches, access
statistics, the judge worker, the sleep cycle, the recaller) over one store, one embedder and
one outbox, owns their lifecycle, and offers the operations the proxy and the admin commands
use. ``observe`` never blocks: exchanges are queued in the outbox and written by the writer
after the response has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import aiohttp

from memory.batching import BatchingEmbedder, CachingEmbedder
from memory.config import (
    EmbedderConfig,
    MemoryConfig,
    MetabolismConfig,
    ResilienceConfig,
    StoreConfig,
    SymbiosisConfig,
    default_outbox_path,
)
from memory.embedders import Embedder, SentenceTransformerEmbedder, make_embedder
from memory.errors import EmbedderError, MemoryLayerError, StoreError
from memory.forget import Erasure, erase
from memory.guarded import GuardedEmbedder, GuardedStore
from memory.lane import LaneEmbedder, ModelLane
from memory.metabolism.cycle import SleepCycle
from memory.metabolism.resonance import Resonance
from memory.metabolism.sleep import CycleReport
from memory.recall.cache import IndexCache, SharedTier
from memory.recall.coherence import ChangeFeed
from memory.recall.recaller import Recaller
from memory.record import signals_of
from memory.resilience import CircuitBreaker
from memory.score.judge import Judge
from memory.score.keeper import ScoreKeeper
from memory.score.symbiosis import Scorer
from memory.snapshot import one_view
from memory.store.archive import RawArchive
from memory.store.chroma import ChromaStore, Store
from memory.store.outbox import Outbox
from memory.store.score_log import ScoreLog
from memory.types import Exchange, MemoryBlock, MemoryHit, Scope
from memory.write.access import AccessStats
from memory.write.judge_worker import JudgeWorker
from memory.write.spill import Spill
from memory.write.stats import WriteStats
from memory.write.writer import Writer

log = logging.getLogger(__name__)

INGEST_ENDPOINT = "ingest"

ADMITTED_TTL_S = 30.0
"""How long an admitted request counts toward the writer's backlog without its exchange being
queued (a request that failed, or a stream longer than this, stops counting)."""
"""``Exchange.endpoint`` of memories loaded by ``symbiotic-memory ingest``."""


def keepable(exchange: Exchange) -> bool:
    """Only complete, successful exchanges with a user turn and an answer become memories
    (ingested history may also hold single messages)."""
    if exchange.status != "ok" or not exchange.user_text.strip():
        return False
    return bool(exchange.reply.strip()) or exchange.endpoint == INGEST_ENDPOINT


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
        self.config = config
        self.store = store
        self.embedder = embedder
        self.outbox = outbox
        self.archive = archive
        self.score_log = score_log
        self.symbiosis = symbiosis or SymbiosisConfig(enabled=False)
        """Scoring settings; ``enabled: false`` writes unscored memories."""
        self.metabolism = metabolism or MetabolismConfig(enabled=False)
        """Gate, reinforcement and decay settings; ``enabled: false`` keeps every exchange."""
        self.resilience = resilience or ResilienceConfig()
        self.judge = judge if self.symbiosis.enabled else None
        """The optional LLM judge (``symbiosis.judge_model``), run in the background."""
        self.stats = WriteStats()
        self.breakers = self._breakers(self.resilience)
        self.lane = ModelLane()
        """One model call at a time, recall first (:mod:`memory.lane`); the scorer's encoder
        joins it when the embedder runs in this process too (it shares the CPU)."""
        self.query_embedder = self._query_embedder()
        """The recall path's embedder: concurrent queries share one model call, repeated ones
        are not embedded again (``memory.batching``), each model call through the embedder's
        breaker within an adaptive budget."""
        self.scores = ScoreKeeper(
            self.symbiosis,
            score_log,
            scorer,
            self.lane if isinstance(embedder, SentenceTransformerEmbedder) else None,
            max(1, config.write_chunk // 2),  # it encodes two texts per exchange
        )
        self.cache, self.feed = self._index_cache(store, config)
        self.shared = SharedTier(store) if self.sharing else None
        self.access = AccessStats(self._write_store(), self.cache.loaded)
        self.judging = self._judge_worker()
        self.writer = self._writer()
        self.spill = Spill(outbox, config.spill_max)
        """Exchanges the outbox could not take (a full disk), until it can again."""
        self._spill_task: asyncio.Task[None] | None = None
        self.lane.write_first = self.writer.behind
        self._admitted: deque[float] = deque()
        """When each request admitted by :meth:`backlog_room` was, until its exchange is queued
        (or :data:`ADMITTED_TTL_S` passed: a request that ends without one)."""
        self._waiting: deque[asyncio.Event] = deque()
        """Requests waiting in :meth:`backlog_room`, first come first."""
        self.cycle = SleepCycle(store, self.scores, self.metabolism, self.cache, self.shared)
        self.recaller = self._recaller()

    @staticmethod
    def _index_cache(store: Store, config: MemoryConfig) -> tuple[IndexCache, ChangeFeed | None]:
        """The index cache and, with a store other replicas write to, its change feed."""
        limit = config.index_cache_mb * 2**20
        if not store.logs_changes:
            return IndexCache(store, limit_bytes=limit), None
        cache = IndexCache(store, config.coherence_stale_ms / 1000, limit)
        return cache, ChangeFeed(store, cache, config.coherence_ms / 1000)

    @staticmethod
    def _breakers(resilience: ResilienceConfig) -> dict[str, CircuitBreaker]:
        return {
            name: CircuitBreaker(
                name,
                resilience.failure_threshold,
                resilience.reset_timeout_s,
                resilience.min_budget_ms,
            )
            for name in ("embedder", "store")
        }

    def _write_store(self) -> Store:
        """The store as the write path uses it: the store breaker, the configured budget."""
        return GuardedStore(
            self.store, self.breakers["store"], self.resilience.store_timeout_ms, False
        )

    def _judge_worker(self) -> JudgeWorker | None:
        if self.judge is None:
            return None
        return JudgeWorker(
            self.judge,
            self.symbiosis.judge_queue,
            self.store,
            self.scores,
            self.cache.changed,
            self.stats,
        )

    def _query_embedder(self) -> CachingEmbedder:
        # The breaker judges model calls, not callers: N recalls sharing a batch that times out
        # are one failure, and time spent queued for the lane is not the embedder's. A caller's
        # own wait is bounded by ``memory.timeout_ms`` (proxy.chat).
        guarded = GuardedEmbedder(
            self.embedder,
            self.breakers["embedder"],
            min(self.resilience.embed_timeout_ms, self.config.timeout_ms),
            True,
        )
        return CachingEmbedder(BatchingEmbedder(LaneEmbedder(guarded, self.lane, "recall")))

    def _writer(self) -> Writer:
        # The budget is per chunk: time spent waiting for the lane is not the embedder's.
        guarded = GuardedEmbedder(
            self.embedder, self.breakers["embedder"], self.resilience.embed_timeout_ms, False
        )
        embedder = LaneEmbedder(guarded, self.lane, "write", self.config.write_chunk)
        return Writer(
            self.outbox,
            self.config,
            self.metabolism,
            embedder,
            self._write_store(),
            self.scores,
            self.cache,
            self.access,
            self.stats,
            self.archive,
            self.judging,
        )

    def _recaller(self) -> Recaller:
        """The recaller over the recall path's guarded embedder and store: the request's
        budget (``memory.timeout_ms``) or less, tightened adaptively."""
        store_ms = min(self.resilience.store_timeout_ms, self.config.timeout_ms)
        return Recaller(
            self.query_embedder,
            GuardedStore(self.store, self.breakers["store"], store_ms, True),
            self.config,
            self.cache,
            metabolism=self.metabolism if self.metabolism.enabled else None,
            symbiosis=self.symbiosis if self.symbiosis.enabled else None,
            shared=self.shared,
        )

    @property
    def sharing(self) -> bool:
        """Whether the shared tier is kept and recalled (``metabolism.shared``)."""
        return self.metabolism.enabled and self.metabolism.shared

    @property
    def scorer(self) -> Scorer | None:
        """The symbiosis scorer (built at :meth:`start` when scoring is enabled)."""
        return self.scores.scorer

    @property
    def resonance(self) -> Resonance | None:
        """What the last full sleep cycle's resonance pass did (None: not run)."""
        return self.cycle.resonance

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
            await self._open()
        except BaseException:
            self.outbox.close()
            if self.archive is not None:
                self.archive.close()
            raise
        if waiting := self.outbox.count():
            log.info("replaying %d exchanges left in the outbox", waiting)
            self.outbox.retry_all_now()
        if self.shared is not None:
            await self.shared.load()
        self.writer.start()
        self._spill_task = asyncio.create_task(self._retry_spilled(), name="memory-spill")
        if self.feed is not None:
            self.feed.start()
        if self.judging is not None:
            self.judging.start()

    async def _open(self) -> None:
        """Open the archive, build the scorer, open the store and check its dimension."""
        if self.archive is not None:
            self.archive.open()
        if self.symbiosis.enabled and self.scorer is None:
            scorer = await self.scores.load()
            if scorer.degraded:
                log.warning("symbiosis: lexical signals only: %s", scorer.degraded)
        await self.store.open()
        try:
            dim = int((await self.embedder.embed(["dimension probe"])).shape[1])
        except EmbedderError as exc:
            log.warning("embedder not available at start-up (%s); will retry per request", exc)
        else:
            await self.store.check_dimension(self.embedder.name, dim)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Try to write what is queued (up to ``timeout_s``), then stop. Rows still queued stay
        in the outbox for the next start; spilled exchanges the outbox still cannot take are
        lost (logged as an error)."""
        if self._spill_task is not None:
            self._spill_task.cancel()
            await asyncio.gather(self._spill_task, return_exceptions=True)
        self.spill.retry()
        await self.writer.close(timeout_s)
        self.spill.abandon()
        if self.feed is not None:
            await self.feed.close()
        await self.cache.close()
        if self.shared is not None:
            await self.shared.close()
        if self.judging is not None:
            await self.judging.close()
        with contextlib.suppress(MemoryLayerError):
            await self.access.flush()
        self.outbox.close()
        if self.archive is not None:
            self.archive.close()
        await self.query_embedder.aclose()  # closes self.embedder too
        await self.store.close()

    async def recall(
        self,
        scope: Scope,
        query: str,
        knobs: Mapping[str, float] | None = None,
        in_context: frozenset[str] = frozenset(),
        shown: frozenset[str] = frozenset(),
    ) -> MemoryBlock:
        """The memory block for ``query`` in ``scope``; raises MemoryLayerError subclasses.
        ``in_context``: user turns the request already carries (their memories are left out);
        ``shown``: ids of memories already injected earlier in the conversation (left out).

        The injected memories' ``access_count`` and ``last_access_at`` are updated in the
        store later, by the writer (never on the response path)."""
        block = await self.recaller.recall(scope, query, knobs, in_context, shown)
        if block.ids:
            self.access.touch(scope.user, block.ids, time.time())
        return block

    def observe(self, exchange: Exchange) -> bool:
        """Durably queue a finished exchange for write-back (an outbox append, well under a
        millisecond); returns False when the exchange is not one to remember.

        When the outbox cannot take it (a full disk, an I/O error), it waits in memory behind
        what was spilled before (:class:`~memory.write.spill.Spill`, at most
        ``memory.spill_max``; beyond that it is lost, logged) and :attr:`unsaved` is true.
        Never raises for a failing outbox.
        """
        if self._admitted:  # its request's exchange is here: counted in the outbox from now
            self._admitted.popleft()
        if not keepable(exchange):
            self.stats.skipped += 1
            return False
        self.stats.queued += 1
        if self.spill.put(exchange):
            self.writer.wake()
        return True

    @property
    def unsaved(self) -> bool:
        """Whether an exchange answered now may not be saved: the outbox's last append failed
        or exchanges are spilled in memory (responses then say ``X-Memory-Status: unsaved``)."""
        return self.spill.unsaved

    async def _retry_spilled(self) -> None:
        """Offer spilled exchanges to the outbox every ``memory.spill_retry_s``."""
        while True:
            await asyncio.sleep(self.config.spill_retry_s)
            if self.spill.queue and self.spill.retry():
                self.writer.wake()

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Retry every queued exchange now (spilled ones first) and wait until the outbox is
        empty.

        Returns False if ``timeout_s`` passed first (the rows stay queued) or exchanges stay
        spilled because the outbox still cannot take them.
        """
        moved = self.spill.retry()
        return await self.writer.flush(timeout_s) and moved

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[MemoryService]:
        """The service opened for reading only (the outbox shared, the store open, no writer):
        for export while another process (a running proxy) owns the outbox.

        Raises:
            StoreError: the store or the outbox cannot be opened.
        """
        self.outbox.open(exclusive=False)
        try:
            await self.store.open()
            yield self
        finally:
            self.outbox.close()
            await self.store.close()

    @property
    def embedder_down(self) -> bool:
        """Whether the embedder's circuit breaker is open (writes wait for it)."""
        return self.breakers["embedder"].state == "open"

    @property
    def pending(self) -> int:
        """Exchanges waiting in the outbox."""
        return self.outbox.count()

    def backlog_full(self) -> bool:
        """Whether the writer's backlog is over a bound: its work in the outbox, counting the
        requests admitted whose exchanges are not queued yet, exceeds ``memory.max_lag_s``
        seconds (:meth:`Writer.behind`), or the outbox holds more than ``memory.max_backlog``
        exchanges (when set)."""
        horizon = time.monotonic() - ADMITTED_TTL_S
        while self._admitted and self._admitted[0] < horizon:
            self._admitted.popleft()
        bound = self.config.max_backlog
        # while requests wait, those let in count until their exchanges are queued, so the
        # next are let in as room appears, not all at once when the writer empties the outbox
        behind = self.writer.behind(len(self._admitted), congested=bool(self._waiting))
        return behind or (bound > 0 and self.pending > bound)

    async def backlog_room(self) -> float:
        """Admission control: wait while :meth:`backlog_full`, in arrival order, at most
        ``memory.backlog_wait_ms``, then admit the request (its exchange counts toward the
        backlog from now, so waiters are let in as room appears, not all at once); returns the
        seconds waited (0.0 when there was room and nobody waiting).

        The writer is not stopped meanwhile: an exchange that waits is written like any other.
        """
        if not self._waiting and not self.backlog_full():
            self._admitted.append(time.monotonic())
            return 0.0
        started = time.monotonic()
        deadline = started + self.config.backlog_wait_ms / 1000
        turn = asyncio.Event()
        self._waiting.append(turn)
        try:
            while time.monotonic() < deadline:
                if self._waiting[0] is turn and not self.backlog_full():
                    break
                # the writer drains in chunks of a few hundred ms: looking every 50 ms is enough
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(0.05, max(0.0, deadline - time.monotonic()))):
                        await turn.wait()
                turn.clear()
        finally:
            self._waiting.remove(turn)
            if self._waiting:
                self._waiting[0].set()  # the next in line looks now, not at its next poll
        self.stats.backlog_waits += 1
        self._admitted.append(time.monotonic())
        return time.monotonic() - started

    async def index_ready(self, user: str) -> None:
        """Wait until the user's in-memory index reflects every memory written so far."""
        await self.cache.ready(user)

    async def write(self, exchange: Exchange) -> str:
        """Archive, score, embed and store one exchange now (through the breakers; no write
        gate: an explicit write is always kept); returns the id of the memory it went to.

        Raises:
            EmbedderError, StoreError, BreakerOpenError, DimensionMismatchError.
        """
        return await self.writer.write_now(exchange)

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
        hit = await self._find(user, ident)
        if hit is None:
            return None
        signals = signals_of(hit.metadata)
        signals["feedback"] = float(value)
        score = self.scores.reviser().revise(signals)
        threshold = self.scores.threshold
        update = score.as_metadata(threshold)
        await self.store.update_metadata(user, {hit.id: update})
        exchange_id = hit.record.exchange_id
        self.scores.append([score.log_record(exchange_id, hit.id, user, threshold, "feedback")])
        self.cache.changed(user, {hit.id: update})
        return {
            "memory_id": hit.id,
            "symbiosis": score.value,
            "polarity": update["polarity"],
            "signals": score.signals,
        }

    async def _find(self, user: str, ident: str) -> MemoryHit | None:
        """A memory of ``user`` by id, else by an exchange id in its provenance (searched in
        the loaded index)."""
        hit = await self.store.get(user, ident)
        if hit is not None:
            return hit
        index = self.cache.loaded(user)
        found = [h for h in (index.live() if index else []) if ident in h.record.provenance]
        return found[0] if found else None

    async def metabolize(
        self, users: list[str] | None = None, now: float | None = None
    ) -> dict[str, CycleReport]:
        """One sleep cycle (see :class:`~memory.metabolism.cycle.SleepCycle`) over ``users``
        (default: every user in the store, then the resonance pass): hindsight rescoring,
        migration of older records, consolidation, phases, dormancy, promotion and quadrant
        labels, written back as metadata updates; revisions go to the score log. Returns a
        report per user.

        Raises:
            MemoryLayerError: the store failed (users done before stay done).
        """
        await self.flush(30.0)
        await self.access.flush()  # recalls so far count as uses
        return await self.cycle.run(users, now)

    async def search(self, user: str, query: str, k: int) -> list[MemoryHit]:
        """The ``k`` memories of ``user`` nearest to ``query`` (no similarity floor)."""
        return await self.recaller.candidates(Scope(user), query, k)

    async def get(self, user: str, mid: str) -> MemoryHit | None:
        """One memory of ``user``, or None."""
        return await self.store.get(user, mid)

    async def forget(self, user: str, mid: str) -> Erasure | None:
        """Erase memory ``mid`` of ``user`` and what was made from it: the memories
        consolidated into it, its archived and queued exchanges, its share of the shared tier
        (:func:`memory.forget.erase`); None when ``user`` has no such memory.

        Raises:
            StoreError: the store, archive or outbox failed.
        """
        return await erase(self, user, mid)

    async def health(self) -> dict[str, Any]:
        """``{"store": {...}, "embedder": {...}, "outbox": {...}, "writer": {...}}`` with ``ok``
        flags; ``outbox`` is :meth:`Spill.snapshot` (``ok`` false while exchanges cannot be
        saved, ``spilled``: how many wait in memory, ``dropped``: lost since start)."""
        report: dict[str, Any] = {}
        try:
            await self.store.heartbeat()
            report["store"] = {"ok": True}
        except StoreError as exc:
            report["store"] = {"ok": False, "error": str(exc)}
        try:
            probe = LaneEmbedder(self.embedder, self.lane, "recall")
            dim = int((await probe.embed(["health probe"])).shape[1])
            report["embedder"] = {"ok": True, "name": self.embedder.name, "dim": dim}
        except EmbedderError as exc:
            report["embedder"] = {"ok": False, "name": self.embedder.name, "error": str(exc)}
        report["outbox"] = self.spill.snapshot()
        report["writer"] = {
            "pending": self.pending,
            "lag_s": round(self.writer.lag_s(), 2),
            **vars(self.stats),
        }
        report["breakers"] = {name: b.snapshot() for name, b in self.breakers.items()}
        return report

    async def export(self, user: str) -> list[dict[str, Any]]:
        """Every memory of ``user`` (state ``stored``) and every exchange of theirs still queued
        (state ``pending``: in the outbox, or spilled in memory), as JSON-ready dicts, each
        exchange once even while the writer runs (:func:`memory.snapshot.one_view`: outbox,
        store, outbox again, in that order).

        Raises:
            StoreError: the store or the outbox cannot be read.
        """
        # spilled ones read first and last too: one moved into the outbox and written during
        # the store read is then in the first read (the same argument as for the outbox)
        spilled = [*self.spill.queue]
        before = self.outbox.for_user(user)
        stored = await self.store.all(user)
        after = self.outbox.for_user(user)
        spilled += self.spill.queue
        mine = [e for e in spilled if e.scope.user == user]
        return one_view(user, before, stored, after, mine)


class UpstreamSettings(Protocol):
    """Where the judge (and an HTTP embedder) find the model server."""

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:11434``."""
        ...

    @property
    def kind(self) -> str:
        """Wire format the server speaks: ``ollama`` or ``openai``."""
        ...


class ServiceSettings(Protocol):
    """The sections of the configuration the memory service is built from (the proxy's
    ``Config`` is one)."""

    @property
    def memory(self) -> MemoryConfig: ...
    @property
    def store(self) -> StoreConfig: ...
    @property
    def embedder(self) -> EmbedderConfig: ...
    @property
    def resilience(self) -> ResilienceConfig: ...
    @property
    def symbiosis(self) -> SymbiosisConfig: ...
    @property
    def metabolism(self) -> MetabolismConfig: ...
    @property
    def upstream(self) -> UpstreamSettings: ...


def build_memory_service(config: ServiceSettings, session: aiohttp.ClientSession) -> MemoryService:
    """The default service ``config`` describes: Chroma store, the configured embedder (HTTP
    embedders use ``session``), the SQLite outbox, the raw archive and the score log beside
    the store (nothing is opened yet); the judge (``symbiosis.judge_model``) on the upstream,
    speaking its kind (``ollama`` or ``openai``)."""
    store, symbiosis = config.store, config.symbiosis
    beside = store.path.parent
    judge = None
    if symbiosis.judge_model:
        judge = Judge(
            symbiosis.judge_model,
            config.upstream.url,
            config.upstream.kind,
            session,
            symbiosis.principles,
            symbiosis.judge_timeout_s,
        )
    return MemoryService(
        config.memory,
        ChromaStore(store),
        make_embedder(config.embedder, config.upstream.url, session),
        Outbox(config.memory.outbox_path or default_outbox_path(store)),
        config.resilience,
        symbiosis,
        config.metabolism,
        RawArchive(symbiosis.archive_path or beside / f"{store.path.name}-archive.sqlite3"),
        ScoreLog(symbiosis.log_path or beside / f"{store.path.name}-scores.jsonl"),
        judge=judge,
    )
